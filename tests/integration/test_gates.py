"""The gates of the runs that overwrite what serves, with every gate in force
(auditron_dr_require_confirmation: true, as outside the lab): failback.yml, recover_deleted.yml,
setup_standby.yml and restore_files.yml without their confirmation, setup_standby.yml against a
DR that serves or whose state could not be read, restore_files.yml into a site that serves. Each
run must fail with its one message, and the real state must be as before: the name's answer
(dig), the databases' roles and rows, the buckets' listings, DR's data directory.

No failover is needed: "DR serves" is DR's cluster as a primary (the lab's cold DR, or a fresh
cold cluster put in place of the standby for the test and taken away after it) with the name
pointed at DR. Every test leaves the lab as it found it: the primary serving, the name at
127.0.0.11, DR's cluster as it was.
"""

import contextlib
import glob
import os
import shutil
import time

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import dnsswitch, filehistory
from lab import servers
from tests.helpers.lab_db import query
from tests.helpers.ports import closed_port
from tests.integration.test_backup_files import endpoint, store_params
from tests.integration.test_dns_switch import DR, LAB_TTL, PRIMARY, bind_params, leave_at_primary
from tests.integration.test_scenario_2 import dns_answer

pytestmark = pytest.mark.lab

GATED = {"auditron_dr_require_confirmation": True}


def nothing_changed(run, playbook, *words):
    """rc != 0 and the one message, beginning "<playbook>: nothing was changed.", with `words`."""
    assert run.rc != 0, run
    text = " ".join(run.output.split())
    start = text.find("%s: nothing was changed." % playbook)
    assert start >= 0, run
    message = text[start:start + 900]
    for word in words:
        assert word in message, (word, message)
    return message


def bucket(lab, site):
    return endpoint(store_params(lab["sites"][site]["object_store"], "minio-" + site))


def listing(location):
    return sorted((entry.key, entry.size, entry.etag) for entry in location.list())


def data_dir_state(lab, site="dr"):
    """What a wipe would change: PG_VERSION there, the set-aside copies beside it, the cluster's
    system identifier and role."""
    data_dir = lab["sites"][site]["postgres"]["data_dir"]
    return (os.path.exists(os.path.join(data_dir, "PG_VERSION")), sorted(glob.glob(data_dir + ".pre-*")),
            query(lab, site, "SELECT (SELECT system_identifier FROM pg_control_system()), pg_is_in_recovery()")[0])


def database_state(lab):
    """Each site's role and system identifier, and what its "Invoice" holds (a cold DR has none)."""
    state = {}
    for site in ("primary", "dr"):
        role = query(lab, site, "SELECT pg_is_in_recovery(), (SELECT system_identifier FROM pg_control_system()), "
                                """to_regclass('public."Invoice"') IS NOT NULL""")[0]
        rows = query(lab, site, 'SELECT count(*), max(id), sum(hashtext("Invoice"::text)) FROM "Invoice"')[0] \
            if role[2] else None
        state[site] = (role, rows)
    return state


@contextlib.contextmanager
def name_at(lab, address):
    """The API's name at `address` (BIND, which the playbooks read) for the block; at the
    primary on both providers after it."""
    dnsswitch.switch(bind_params(lab), [address], ttl=LAB_TTL)
    try:
        assert dns_answer(lab) == [address]
        yield
    finally:
        leave_at_primary(lab)
        assert dns_answer(lab) == [PRIMARY]


@contextlib.contextmanager
def dr_as_primary(lab):
    """DR's cluster a primary for the block: the lab's cold DR as it is, or, when DR is a
    standby, a fresh cold cluster in its place, after which the standby comes back as it was."""
    data_dir = lab["sites"]["dr"]["postgres"]["data_dir"]
    if not query(lab, "dr", "SELECT pg_is_in_recovery()")[0][0]:
        yield
        return
    kept = data_dir + ".gates-kept-%d" % int(time.time())
    servers.stop_cluster(data_dir)
    os.rename(data_dir, kept)
    try:
        servers.up(quiet=True)  # initdb of a cold DR cluster, started, database created
        assert not query(lab, "dr", "SELECT pg_is_in_recovery()")[0][0]
        yield
    finally:
        servers.stop_cluster(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
        os.rename(kept, data_dir)
        servers.up(quiet=True)
    assert query(lab, "dr", "SELECT pg_is_in_recovery()")[0][0]


@pytest.fixture(scope="module")
def file_backup(lab, tmp_path_factory):
    """A file backup of the primary's bucket, so that a restore that got through would write."""
    from tests.conftest import ansible_playbook  # pylint: disable=import-outside-toplevel
    run = ansible_playbook("backup_files.yml", tmp_path_factory.mktemp("gates-backup"))
    assert run.returncode == 0, run.stdout[-3000:]
    backup = endpoint(store_params(lab["backup_stores"]["us-east-1"], "s3-us-east-1", "files"))
    return filehistory.list_points(backup)["latest"]["id"]


@contextlib.contextmanager
def one_object_changed(location):
    """One object of `location` (one the backup has) holds other bytes for the block: a restore
    that got through would put the backup's bytes back. Its own bytes come back after. An empty
    bucket stays empty (a restore that got through would fill it)."""
    keys = sorted(entry.key for entry in location.list())
    if not keys:
        yield None
        return
    key = keys[0]
    original = location.get_bytes(key)
    location.put(key, b"changed by test_gates " + original[:16])
    try:
        yield key
    finally:
        location.put(key, original)


def test_restore_files_into_the_primary_needs_the_confirmation(lab, file_backup, run_playbook):
    primary = bucket(lab, "primary")
    with one_object_changed(primary) as key:
        before = listing(primary)
        run = run_playbook("restore_files.yml", extra_vars=dict(GATED, target_site="primary"))
        nothing_changed(run, "restore_files.yml", "PRIMARY (primary)", "production site", "confirm_restore_files=true")
        assert listing(primary) == before
        assert primary.get_bytes(key).startswith(b"changed by test_gates")
    assert dns_answer(lab) == [PRIMARY]


def test_restore_files_to_an_older_point_into_the_site_the_name_answers(lab, file_backup, run_playbook):
    dr_files = bucket(lab, "dr")
    with name_at(lab, DR), one_object_changed(dr_files) as key:
        before = listing(dr_files)
        run = run_playbook("restore_files.yml", extra_vars=dict(GATED, target_site="dr", as_of=file_backup))
        nothing_changed(run, "restore_files.yml", "DR (dr)", "answers its address (%s)" % DR,
                        "confirm_restore_files=true")
        assert listing(dr_files) == before
        assert key is None or dr_files.get_bytes(key).startswith(b"changed by test_gates")


def test_restore_files_into_dr_before_it_serves_needs_no_confirmation(lab, file_backup, run_playbook):
    """failover.yml's import: target_site=dr, as_of=latest, DR's database promoted (a primary),
    its app up (the lab keeps one), the failover in progress, the name still at the primary."""
    dr_files = bucket(lab, "dr")
    in_progress = '{"id": "20261208T000000Z", "fenced": true}\n'
    with dr_as_primary(lab), failover_recorded(lab, in_progress), one_object_changed(dr_files) as key:
        run = run_playbook("restore_files.yml", extra_vars=dict(GATED, target_site="dr", as_of="latest"))
        assert run.rc == 0, run
        assert listing(dr_files), "restored from the backup"
        assert key is None or not dr_files.get_bytes(key).startswith(b"changed by test_gates"), "overwritten"
    assert dns_answer(lab) == [PRIMARY]


def standby_refused(lab, run_playbook, extra, *words, check=False, gated=True):
    """setup_standby.yml with every gate in force (or, gated=False, as the lab runs it) and
    `extra`: refused with `words`, DR's data directory and cluster as they were."""
    before = data_dir_state(lab)
    run = run_playbook("setup_standby.yml", extra_vars=dict(GATED if gated else {}, **extra), check=check)
    nothing_changed(run, "setup_standby.yml", *words)
    assert data_dir_state(lab) == before


def test_setup_standby_without_its_confirmation(lab, run_playbook):
    with dr_as_primary(lab):
        standby_refused(lab, run_playbook, {}, "confirm_standby=true")
    assert dns_answer(lab) == [PRIMARY]


def test_setup_standby_never_wipes_a_dr_that_serves(lab, run_playbook):
    with dr_as_primary(lab), name_at(lab, DR):
        for extra in ({}, {"confirm_standby": True}):
            standby_refused(lab, run_playbook, extra, "DR (dr) serves", "a primary (not in recovery)",
                            "answers its address (%s)" % DR, "standby_replace_serving_dr=true")
        # Check mode says the same: a real run would refuse.
        standby_refused(lab, run_playbook, {}, "DR (dr) serves", check=True)
        # Not a confirmation: the lab, which asks none, is refused the same.
        standby_refused(lab, run_playbook, {}, "DR (dr) serves", gated=False)
        # The override (with the confirmation) gets past the gate: a check run plans the standby.
        before = data_dir_state(lab)
        planned = run_playbook("setup_standby.yml", check=True, extra_vars=dict(
            GATED, confirm_standby=True, standby_replace_serving_dr=True))
        assert planned.rc == 0, planned
        assert "nothing was changed" not in planned.output
        assert data_dir_state(lab) == before


def test_setup_standby_never_wipes_a_dr_whose_state_it_could_not_read(lab, run_playbook):
    pg = dict(lab["sites"]["dr"]["postgres"], password="not-the-password", service_manager="pg_ctl")
    standby_refused(lab, run_playbook, {"confirm_standby": True, "auditron_dr_postgres": pg},
                    "The state of DR (dr) could not be read", "password authentication failed",
                    "standby_replace_unreadable_dr=true")
    assert dns_answer(lab) == [PRIMARY]


def test_setup_standby_never_wipes_a_primary_dr_when_the_name_cannot_be_read(lab, run_playbook):
    unreachable = dict(bind_params(lab), port=closed_port())
    with dr_as_primary(lab):
        standby_refused(lab, run_playbook, {"confirm_standby": True, "auditron_dr_dns": unreachable},
                        "The state of DR (dr) could not be read", "%s could not be read" % lab["dns"]["record"],
                        "standby_replace_unreadable_dr=true")
    assert dns_answer(lab) == [PRIMARY]


def test_failback_without_its_confirmation(lab, run_playbook):
    before = database_state(lab)
    run = run_playbook("failback.yml", extra_vars=GATED)
    nothing_changed(run, "failback.yml", "confirm_failback=true")
    assert database_state(lab) == before
    assert dns_answer(lab) == [PRIMARY]


def test_recover_deleted_without_its_confirmation(lab, run_playbook):
    victim, row = query(lab, "primary", 'SELECT id, row_to_json(i)::text FROM "Invoice" i ORDER BY id DESC '
                                        "LIMIT 1 OFFSET 40")[0]
    query(lab, "primary", 'DELETE FROM "Invoice" WHERE id = %s', (victim,))
    try:
        scratch_before = sorted(glob.glob(os.path.join(lab["lab"]["pg_dir"], "recover-*")))
        before = database_state(lab)
        run = run_playbook("recover_deleted.yml", extra_vars=dict(GATED, recover_ids=[victim]))
        nothing_changed(run, "recover_deleted.yml", "confirm_restore=true")
        assert database_state(lab) == before
        assert query(lab, "primary", 'SELECT count(*) FROM "Invoice" WHERE id = %s', (victim,))[0][0] == 0
        assert sorted(glob.glob(os.path.join(lab["lab"]["pg_dir"], "recover-*"))) == scratch_before
    finally:
        query(lab, "primary", 'INSERT INTO "Invoice" SELECT * FROM json_populate_record(NULL::"Invoice", %s::json) '
                              "ON CONFLICT DO NOTHING", (row,))
    assert dns_answer(lab) == [PRIMARY]


ROLE_GATE_PLAYBOOK = """---
- name: The standby role's gate, as failback.yml reaches it at DR
  hosts: auditron_dr
  gather_facts: false
  tasks:
    - name: Gate
      ansible.builtin.include_role:
        name: auditron.dr.standby
        tasks_from: gate

    - name: What the gate saw
      ansible.builtin.debug:
        msg: "gate said: {{ standby_gate.msg }}; database {{ standby_gate.database.state }}"
"""


@contextlib.contextmanager
def failover_recorded(lab, content):
    """DR's failover run journal (journal.py's format: a run id at least) holds `content` for the
    block; as it was after it."""
    state = os.path.join(lab["lab"]["dir"], "state", "failover.json")
    kept = open(state).read() if os.path.exists(state) else None
    os.makedirs(os.path.dirname(state), exist_ok=True)
    with open(state, "w") as handle:
        handle.write(content)
    try:
        yield
    finally:
        if kept is None:
            os.remove(state)
        else:
            with open(state, "w") as handle:
                handle.write(kept)


@contextlib.contextmanager
def failover_completed_and_dr_stopped(lab):
    """DR as failback.yml leaves it before its last step: a failover to it recorded as completed,
    its database a primary, stopped. Its state file and its cluster come back after."""
    completed = '{"id": "20261208T000000Z", "completed": true, "fenced": true}\n'
    with dr_as_primary(lab), failover_recorded(lab, completed):
        data_dir = lab["sites"]["dr"]["postgres"]["data_dir"]
        servers.stop_cluster(data_dir)
        try:
            yield data_dir
        finally:
            servers.up(quiet=True)


def test_the_standby_roles_gate_lets_failback_replace_a_stopped_dr_and_no_other(lab, run_playbook, tmp_path):
    playbook = tmp_path / "role_gate.yml"
    playbook.write_text(ROLE_GATE_PLAYBOOK)
    with failover_completed_and_dr_stopped(lab) as data_dir:
        marker = sorted(os.listdir(data_dir))
        # failback.yml's last step: the name is back at the primary, DR's database stopped.
        run = run_playbook(str(playbook), extra_vars=GATED)
        assert run.rc == 0, run
        said = " ".join(run.output.split())
        assert "gate said: DR (dr) may be replaced by a standby" in said and "database stopped" in said, run
        # The same DR while the name still answers it: the only copy of what it took.
        with name_at(lab, DR):
            refused = run_playbook(str(playbook), extra_vars=GATED)
            nothing_changed(refused, "auditron.dr.standby", "DR (dr) serves", "answers its address (%s)" % DR)
        assert sorted(os.listdir(data_dir)) == marker
