"""Logical backups against the lab: pg_backup, the catalog, pg_restore and retention, with real
PostgreSQL 15, real S3 endpoints (the lab's `rclone serve s3`, one per region), a local
directory, and the lab's KMS (moto, an AWS emulator).

Test data lives under a key prefix and a local directory of this run, and in databases named
dr_logical_<run>_*; everything is removed at the end. The full-size test backs up the lab's
`auditron` database (read-only); every fault is played on a small database of this run.
"""

import json
import os
import textwrap
import threading
import time
import uuid

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import catalog, logicalrestore, pgdump, prune
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, format_time, parse_time
from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import generate_key_file
from ansible_collections.auditron.dr.plugins.module_utils.storage import location_from_params
from tests.conftest import REPO
from tests.helpers.faults import (LOGICAL_BACKUP_PLAYBOOK, admin, database_exists, kms_encryption, pg_params,
                                  s3_params, sql)
from tests.helpers.tcpproxy import TcpProxy
from tests.helpers.ports import closed_port

pytestmark = pytest.mark.lab

RUN = uuid.uuid4().hex[:8]
PREFIX = "tests/logical/%s" % RUN
SMALL_DB = "dr_logical_%s_src" % RUN


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers

@pytest.fixture(scope="module")
def postgres(lab):
    return pg_params(lab)


class Places(object):
    """A local directory and both S3 regions under a prefix of this test; cleaned afterwards."""

    def __init__(self, lab, root, name):
        self.lab = lab
        self.prefix = "%s/%s" % (PREFIX, name)
        self.local_dir = str(root / name)
        self.params = [{"name": "local", "type": "local", "path": self.local_dir},
                       s3_params(lab, "us-east-1", self.prefix), s3_params(lab, "eu-west-1", self.prefix)]

        self._made = {}

    def locations(self, order=("local", "s3-us-east-1", "s3-eu-west-1")):
        return [self.by_name(name) for name in order]

    def by_name(self, name):
        if name not in self._made:  # one client per location: making one costs a fraction of a second
            params = dict((p["name"], p) for p in self.params)[name]
            self._made[name] = location_from_params(params, max_attempts=2, connect_timeout=3, read_timeout=20)
        return self._made[name]

    def clean(self):
        for location in self.locations()[1:]:
            keys = [info.key for info in location.list("")]
            if keys:
                location.delete(keys)


@pytest.fixture
def places(lab, tmp_path, request):
    made = Places(lab, tmp_path, request.node.name[:40])
    yield made
    made.clean()


@pytest.fixture(scope="module")
def small_db(postgres):
    """A small database with the awkward cases: a table in two schemas, a name that would break
    pasted SQL, a table without "createdAt"."""
    sql(postgres, 'CREATE DATABASE "%s"' % SMALL_DB)
    sql(postgres, textwrap.dedent('''
        CREATE TABLE "User" (id bigint PRIMARY KEY, email text NOT NULL, "createdAt" timestamptz NOT NULL);
        CREATE TABLE "Invoice" (id bigint PRIMARY KEY, "userId" bigint NOT NULL REFERENCES "User"(id),
                                "amountCents" bigint NOT NULL, "createdAt" timestamptz NOT NULL);
        CREATE TABLE "odd ""name""; DROP TABLE ""User""; --" (x int);
        CREATE SCHEMA archive;
        CREATE TABLE archive."Invoice" (id bigint PRIMARY KEY, note text);
        INSERT INTO "User" SELECT g, 'u' || g || '@example.test', now() - g * interval '1 hour'
          FROM generate_series(1, 300) g;
        INSERT INTO "Invoice" SELECT g, 1 + g % 300, g * 7, now() - g * interval '1 minute'
          FROM generate_series(1, 5000) g;
        INSERT INTO "odd ""name""; DROP TABLE ""User""; --" SELECT generate_series(1, 7);
        INSERT INTO archive."Invoice" SELECT g, 'old' FROM generate_series(1, 40) g;
    '''), database=SMALL_DB)
    yield SMALL_DB
    for (name,) in sql(postgres, "SELECT datname FROM pg_database WHERE datname LIKE %s",
                       args=("dr_logical_%s%%" % RUN,)):
        sql(postgres, 'DROP DATABASE "%s" WITH (FORCE)' % name)


def target(name):
    return "dr_logical_%s_%s" % (RUN, name)


def backup_small(postgres, small_db, locations, key_file, **options):
    return pgdump.backup(postgres, locations, {"key_source": "file", "key_file": key_file}, database=small_db,
                         **options)


def flip_byte(location, key, offset):
    data = bytearray(location.get_bytes(key))
    data[offset] ^= 0x01
    location.put_bytes(key, bytes(data))


# ---------------------------------------------------------------------------------------------
# The plan's flow: a backup of auditron lands everywhere, the catalog agrees, a restore matches

PLAYBOOK_BACKUP = LOGICAL_BACKUP_PLAYBOOK


def test_backup_of_auditron_lands_everywhere_and_restores_with_the_manifest_counts(
        lab, postgres, places, run_playbook, tmp_path):
    playbook = tmp_path / "backup.yml"
    out = tmp_path / "backup.json"
    playbook.write_text(PLAYBOOK_BACKUP.format(repo=REPO, out=out))
    run = run_playbook(str(playbook), extra_vars={"auditron_dr_logical_prefix": places.prefix,
                                                  "auditron_dr_logical_local_dir": places.local_dir})
    assert run.rc == 0, run
    result = json.loads(out.read_text())
    backup_id = result["backup_id"]
    assert catalog.parse_backup_id(backup_id)[0] == "auditron"
    assert result["locations"] == ["local", "s3-us-east-1", "s3-eu-west-1"] and result["failed_locations"] == {}
    assert result["encrypted"] and result["key_reference"]["provider"] == "kms"
    assert result["row_counts"]["public.Invoice"] > 0 and result["peak_rss_bytes"] < 200 * 1024 * 1024
    assert lab["backup_stores"]["us-east-1"]["secret_key"] not in run.output
    assert lab["sites"]["primary"]["postgres"]["password"] not in run.output
    # The timeline report names the backup.
    reports = list(run.report_dir.glob("*/report.json"))
    assert reports and backup_id in reports[0].read_text()

    # The catalog: present with the same checksum in every location, verified by reading each.
    cat = catalog.Catalog.load(places.locations(), series="auditron")
    entry = cat.entry(backup_id)
    assert entry.valid and [s["status"] for s in entry.locations.values()] == ["present"] * 3
    manifest = entry.manifest
    assert manifest["artifacts"][0]["sha256"] == result["sha256"]
    assert set(manifest["artifacts"][0]["locations"]) == {"local", "s3-us-east-1", "s3-eu-west-1"}
    assert manifest["server"]["system_identifier"] and manifest["tools"]["pg_dump"].startswith("pg_dump")
    invoice = [t for t in manifest["tables"] if t["name"] == "Invoice"][0]
    assert invoice["timestamp_column"] == "createdAt" and invoice["max_timestamp"].endswith("Z")
    assert "secret" not in json.dumps(manifest["encryption"]).lower()
    cat.verify_deep(entry, lambda where, item: logicalrestore.verify_copy(where, item, kms_encryption(lab)))
    assert all(state["verified"] for state in entry.deep.values()) and len(entry.deep) == 3
    assert cat.latest_valid().id == backup_id

    # Restore from the first S3 region into a new database: the manifest's row counts.
    restored = logicalrestore.restore(postgres, places.locations(("s3-us-east-1", "s3-eu-west-1", "local")),
                                      target("full"), kms_encryption(lab), latest=True, jobs=2)
    assert restored["backup_id"] == backup_id and restored["location"] == "s3-us-east-1"
    assert restored["counts_match"] and restored["mode"] == "spool"
    expected = dict(("%s.%s" % (t["schema"], t["name"]), t["rows"]) for t in manifest["tables"])
    assert dict((row["table"], row["restored"]) for row in restored["row_counts"]) == expected
    assert restored["dr_report"]["markers"]["recovery_point"] == manifest["snapshot_at"]


# ---------------------------------------------------------------------------------------------
# The modules: catalog answers, check modes write nothing

PLAYBOOK_MODULES = """
- name: The logical-backup modules, as a playbook uses them
  hosts: primary
  gather_facts: false
  vars:
    conn: &conn
      login_host: "{{{{ auditron_dr_postgres.host }}}}"
      login_port: "{{{{ auditron_dr_postgres.port }}}}"
      login_user: "{{{{ auditron_dr_postgres.user }}}}"
      login_password: "{{{{ auditron_dr_postgres.password }}}}"
  tasks:
    - name: Catalog
      auditron.dr.backup_catalog:
        series: {series}
        locations: {locations}
        latest_before: "{before}"
      register: listed
    - name: Catalog, a time before every backup
      auditron.dr.backup_catalog:
        series: {series}
        locations: {locations}
        latest_before: "2001-01-01T00:00:00Z"
      register: too_early
    - name: Backup in check mode
      auditron.dr.pg_backup:
        <<: *conn
        db: {series}
        locations: {locations}
        encryption: {{key_source: file, key_file: {key_file}}}
      check_mode: true
      register: backup_check
    - name: Restore in check mode, verifying the copy
      auditron.dr.pg_restore:
        <<: *conn
        latest: true
        series: {series}
        target_db: {target}
        locations: {locations}
        encryption: {{key_source: file, key_file: {key_file}}}
        verify_in_check_mode: true
      check_mode: true
      register: restore_check
    - name: Keep the results for the test
      ansible.builtin.copy:
        content: "{{{{ {{'listed': listed, 'too_early': too_early, 'backup_check': backup_check,
                        'restore_check': restore_check}} | to_json }}}}"
        dest: {out}
        mode: "0600"
"""


def test_catalog_latest_valid_latest_before_and_check_modes(
        lab, postgres, small_db, key_file, places, run_playbook, tmp_path):
    first = backup_small(postgres, small_db, places.locations(), key_file)
    second = backup_small(postgres, small_db, places.locations(), key_file)
    assert first["backup_id"] < second["backup_id"]
    objects_before = sorted(o.key for loc in places.locations() for o in loc.list(""))
    playbook = tmp_path / "modules.yml"
    out = tmp_path / "modules.json"
    playbook.write_text(PLAYBOOK_MODULES.format(
        series=small_db, locations=json.dumps(places.params), before=second["started_at"], key_file=key_file,
        target=target("check"), out=out))
    run = run_playbook(str(playbook))
    assert run.rc == 0, run
    results = json.loads(out.read_text())
    listed = results["listed"]
    assert listed["latest_valid_id"] == second["backup_id"]
    assert listed["latest_before_id"] == first["backup_id"]
    assert 0 <= listed["age_of_latest_valid_seconds"] < 600
    assert [b["id"] for b in listed["backups"]] == [second["backup_id"], first["backup_id"]]
    assert all(b["locations"][name]["status"] == "present" for b in listed["backups"]
               for name in ("local", "s3-us-east-1", "s3-eu-west-1"))
    assert results["too_early"]["latest_before"] is None
    check = results["backup_check"]
    assert check["changed"] and "would dump %s" % small_db in check["msg"] and check["database_bytes"] > 0
    restore_check = results["restore_check"]
    assert restore_check["backup_id"] == second["backup_id"] and restore_check["verified"] is True
    assert restore_check["location"] == "local"
    # Check modes wrote nothing and created nothing.
    assert sorted(o.key for loc in places.locations() for o in loc.list("")) == objects_before
    assert not database_exists(postgres, target("check"))


# ---------------------------------------------------------------------------------------------
# Restores: subsets, streaming, and every refusal leaving the target untouched

def test_streamed_restore_of_a_table_subset_with_awkward_names(postgres, small_db, key_file, places):
    made = backup_small(postgres, small_db, places.locations(), key_file)
    assert made["row_counts"]['public.odd "name"; DROP TABLE "User"; --'] == 7
    assert made["row_counts"]["archive.Invoice"] == 40
    with pytest.raises(DRError, match="ambiguous"):
        logicalrestore.restore(postgres, places.locations(), target("subset"), {"key_file": key_file},
                               backup_id=made["backup_id"], tables=["Invoice"], jobs=1)
    assert not database_exists(postgres, target("subset"))
    restored = logicalrestore.restore(postgres, places.locations(), target("subset"), {"key_file": key_file},
                                      backup_id=made["backup_id"], jobs=1,
                                      tables=["public.Invoice", 'odd "name"; DROP TABLE "User"; --'])
    assert restored["mode"] == "stream" and restored["counts_match"]
    assert [(r["table"], r["restored"]) for r in restored["row_counts"]] == [
        ("public.Invoice", 5000), ('public.odd "name"; DROP TABLE "User"; --', 7)]
    tables = sql(postgres, "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n "
                           "ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname NOT IN "
                           "('pg_catalog', 'information_schema') ORDER BY 1", database=target("subset"))
    assert [t[0] for t in tables] == ["public.Invoice", 'public.odd "name"; DROP TABLE "User"; --']
    # The source was not touched by the name either.
    assert sql(postgres, 'SELECT count(*) FROM "User"', database=small_db) == [(300,)]


def test_refusals_name_the_backup_and_location_and_touch_nothing(postgres, small_db, key_file, places, tmp_path):
    made = backup_small(postgres, small_db, places.locations(), key_file)
    locations = places.locations()
    name = target("refused")
    spool = tmp_path / "spool"
    spool.mkdir()

    def refused(match, **options):
        options.setdefault("encryption", {"key_file": key_file})
        with pytest.raises(DRError) as err:
            logicalrestore.restore(postgres, locations, name, jobs=2, spool_dir=str(spool), **options)
        message = str(err.value)
        assert "\n" not in message
        assert match in message, message
        assert not database_exists(postgres, name)
        assert os.listdir(str(spool)) == []  # no spool left behind
        return message

    refused("backup %s_20000101_000000 not found in any location (searched local, s3-us-east-1, s3-eu-west-1)"
            % small_db, backup_id="%s_20000101_000000" % small_db)
    message = refused("no valid backup of series %s taken at or before 2001-01-01T00:00:00Z: the oldest is %s"
                      % (small_db, made["backup_id"]), before="2001-01-01T00:00:00Z", series=small_db)
    other_key = str(tmp_path.parent / ("other-%s.key" % RUN))
    generate_key_file(other_key)
    try:
        message = refused("wrong key", backup_id=made["backup_id"], encryption={"key_file": other_key})
    finally:
        os.unlink(other_key)
    assert made["backup_id"] in message and "at location local" in message and "at location s3-eu-west-1" in message
    # A target that exists and is not empty is refused, and so is replacing the live source.
    sql(postgres, 'CREATE DATABASE "%s"' % target("busy"))
    sql(postgres, "CREATE TABLE keep_me (x int)", database=target("busy"))
    with pytest.raises(DRError, match="exists and is not empty .* set replace: true"):
        logicalrestore.restore(postgres, locations, target("busy"), {"key_file": key_file}, backup_id=made["backup_id"])
    assert sql(postgres, "SELECT count(*) FROM keep_me", database=target("busy")) == [(0,)]
    with pytest.raises(DRError, match="is the live database backup .* was taken from"):
        logicalrestore.restore(postgres, locations, small_db, {"key_file": key_file}, backup_id=made["backup_id"],
                               replace=True)


def test_a_corrupt_copy_falls_back_to_the_next_location_then_to_the_previous_backup(
        postgres, small_db, key_file, places):
    older = backup_small(postgres, small_db, places.locations(), key_file)
    newer = backup_small(postgres, small_db, places.locations(), key_file)
    key = catalog.artifact_key(newer["backup_id"])
    order = ("s3-us-east-1", "s3-eu-west-1", "local")
    flip_byte(places.by_name("s3-us-east-1"), key, newer["size"] // 2)
    restored = logicalrestore.restore(postgres, places.locations(order), target("fallback1"), {"key_file": key_file},
                                      latest=True, series=small_db, jobs=2)
    assert restored["backup_id"] == newer["backup_id"] and restored["location"] == "s3-eu-west-1"
    assert restored["counts_match"]
    first = restored["attempts"][0]
    assert (first["location"], first["ok"]) == ("s3-us-east-1", False)
    assert "authentication tag mismatch" in first["detail"] and newer["backup_id"] in first["detail"]
    assert "used the copy of %s at s3-eu-west-1 because" % newer["backup_id"] in restored["fallback"]

    # Every copy of the newer backup damaged (one flipped, one truncated, one flipped): the previous one.
    flip_byte(places.by_name("s3-eu-west-1"), key, newer["size"] // 3)
    truncated = places.by_name("local")
    truncated.put_bytes(key, truncated.get_bytes(key)[:-1000])
    restored = logicalrestore.restore(postgres, places.locations(order), target("fallback2"), {"key_file": key_file},
                                      latest=True, series=small_db, jobs=1)
    assert restored["backup_id"] == older["backup_id"] and restored["counts_match"]
    assert "used the older backup %s" % older["backup_id"] in restored["fallback"]
    details = dict((a["location"], a["detail"]) for a in restored["attempts"] if a["backup_id"] == newer["backup_id"])
    assert "authentication tag mismatch" in details["s3-eu-west-1"]
    assert "different" in details["local"] and "the manifest says" in details["local"]

    # Asked for by id, the damaged backup is refused with every reason, and nothing is created.
    with pytest.raises(DRError) as err:
        logicalrestore.restore(postgres, places.locations(order), target("fallback3"), {"key_file": key_file},
                               backup_id=newer["backup_id"])
    assert "no copy verified" in str(err.value) and "s3-us-east-1" in str(err.value)
    assert not database_exists(postgres, target("fallback3"))


def test_an_unreachable_location_falls_back_to_a_valid_copy(lab, postgres, small_db, key_file, places):
    made = backup_small(postgres, small_db, places.locations(), key_file)
    port = int(lab["backup_stores"]["us-east-1"]["endpoint"].rsplit(":", 1)[1])
    proxy = TcpProxy("127.0.0.1", port)
    proxy.refuse = True  # the region's endpoint drops every connection
    try:
        cut_off = location_from_params(s3_params(lab, "us-east-1", places.prefix,
                                                 endpoint_url="https://localhost:%d" % proxy.port),
                                       max_attempts=1, connect_timeout=2)
        gone = location_from_params(s3_params(lab, "eu-west-1", places.prefix, name="s3-closed",
                                              endpoint_url="https://localhost:%d" % closed_port()),
                                    max_attempts=1, connect_timeout=2)
        restored = logicalrestore.restore(postgres, [cut_off, gone, places.by_name("local")], target("reach"),
                                          {"key_file": key_file}, latest=True, series=small_db, jobs=2)
    finally:
        proxy.close()
    assert restored["backup_id"] == made["backup_id"] and restored["location"] == "local"
    assert restored["counts_match"]
    reasons = dict((a["location"], a["detail"]) for a in restored["attempts"] if not a["ok"])
    assert "unknown" in reasons["s3-us-east-1"] and "s3-closed" in reasons


# ---------------------------------------------------------------------------------------------
# Backups: failing locations, the lock

def test_a_failing_location_is_dropped_unless_all_are_required(lab, postgres, small_db, key_file, places):
    port = int(lab["backup_stores"]["eu-west-1"]["endpoint"].rsplit(":", 1)[1])
    proxy = TcpProxy("127.0.0.1", port)
    proxy.refuse = True
    try:
        broken = location_from_params(s3_params(lab, "eu-west-1", places.prefix,
                                                endpoint_url="https://localhost:%d" % proxy.port),
                                      max_attempts=1, connect_timeout=2)
        locations = [places.by_name("local"), places.by_name("s3-us-east-1"), broken]
        made = backup_small(postgres, small_db, locations, key_file)
        assert made["locations"] == ["local", "s3-us-east-1"]
        assert list(made["failed_locations"]) == ["s3-eu-west-1"]
        assert made["dr_report"]["checks"][-1]["result"] == "failed"
        manifest = catalog.Catalog.load(locations[:2]).entry(made["backup_id"]).manifest
        assert manifest["artifacts"][0]["locations"]["s3-eu-west-1"]["present"] is False
        with pytest.raises(DRError) as err:
            backup_small(postgres, small_db, locations, key_file, require_all_locations=True)
    finally:
        proxy.close()
    assert "not written to s3-eu-west-1 (require_all_locations)" in str(err.value)
    # The refused backup left nothing: only the first one is listed.
    assert sorted(catalog.Catalog.load(locations[:2]).entries) == [made["backup_id"]]
    assert len(list(locations[0].list(""))) == 2


def test_a_second_run_of_the_same_backup_set_waits_then_refuses(postgres, small_db, key_file, places):
    holder = admin(postgres, small_db)
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))",
                        (pgdump.LOCK_NAMESPACE + small_db,))
        started = time.monotonic()
        with pytest.raises(DRError) as err:
            backup_small(postgres, small_db, places.locations(), key_file, lock_timeout=2)
        assert 2 <= time.monotonic() - started < 10
    finally:
        holder.close()
    message = str(err.value)
    assert "backup set %s: another logical backup of this set is running (held by pid" % small_db in message
    assert "refusing" in message
    assert not os.path.isdir(places.local_dir) or list(places.by_name("local").list("")) == []  # wrote nothing
    # With the lock free again, two runs at once: the second waits for the first, both succeed.
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        backup_small(postgres, small_db, places.locations(), key_file, lock_timeout=60))) for _i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and results[0]["backup_id"] != results[1]["backup_id"]


# ---------------------------------------------------------------------------------------------
# Retention

def test_prune_playbook_check_mode_lists_then_removes_exactly_those(lab, postgres, small_db, key_file, places,
                                                                    run_playbook):
    made = [backup_small(postgres, small_db, places.locations(), key_file) for _i in range(3)]
    extra = {"auditron_dr_logical_series": small_db, "auditron_dr_logical_prefix": places.prefix,
             "auditron_dr_logical_local_dir": places.local_dir, "auditron_dr_prune_physical": False,
             "auditron_dr_backup_retention": {"daily_days": 7}}
    run = run_playbook("prune_backups.yml", extra_vars=extra, check=True)
    assert run.rc == 0, run
    older = sorted(m["backup_id"] for m in made[:2])
    output = " ".join(run.output.split())  # the YAML callback wraps long lines
    assert "would remove 2 of 3 logical backups of %s (newest valid %s kept)" % (
        small_db, made[2]["backup_id"]) in output
    assert all(backup_id in output for backup_id in older)
    assert sorted(catalog.Catalog.load(places.locations()).entries) == sorted(m["backup_id"] for m in made)

    refused = run_playbook("prune_backups.yml", extra_vars=extra)
    assert refused.rc != 0 and "auditron_dr_prune_confirm=true" in " ".join(refused.output.split())

    run = run_playbook("prune_backups.yml", extra_vars=dict(extra, auditron_dr_prune_confirm=True))
    assert run.rc == 0, run
    assert "removed 2 of 3 logical backups" in " ".join(run.output.split())
    left = catalog.Catalog.load(places.locations())
    assert list(left.entries) == [made[2]["backup_id"]] and left.latest_valid().id == made[2]["backup_id"]
    for location in places.locations():
        assert sorted(o.key for o in location.list("")) == sorted([
            catalog.artifact_key(made[2]["backup_id"]), catalog.manifest_key(made[2]["backup_id"])])


def test_prune_playbook_plans_pgbackrest_expiry_read_only(physical_backup, run_playbook):
    """Physical mode against the lab's real pgBackRest, as the PostgreSQL OS user, in check mode
    and judged a year and a half from now: every full but the newest of each repository would go."""
    later = format_time(parse_time("2026-01-01T00:00:00Z").replace(year=time.gmtime().tm_year + 2))
    run = run_playbook("prune_backups.yml", check=True, extra_vars={
        "auditron_dr_prune_logical": False, "auditron_dr_prune_now": later})
    assert run.rc == 0, run
    assert "would expire" in run.output and "pgBackRest full backup sets of stanza auditron" in run.output


def test_prune_removes_nothing_when_a_location_cannot_be_listed(lab, postgres, small_db, key_file, places):
    made = [backup_small(postgres, small_db, places.locations(), key_file) for _i in range(2)]
    gone = location_from_params(s3_params(lab, "eu-west-1", places.prefix, name="s3-closed",
                                          endpoint_url="https://localhost:%d" % closed_port()),
                                max_attempts=1, connect_timeout=2)
    with pytest.raises(DRError) as err:
        prune.prune_logical(places.locations() + [gone], small_db, retention={"daily_days": 7})
    assert "nothing removed: s3-closed could not be listed completely" in str(err.value)
    assert sorted(catalog.Catalog.load(places.locations()).entries) == sorted(m["backup_id"] for m in made)
    # A verification that failed makes the newest invalid: the previous one is the newest valid and stays.
    catalog.record_verification(places.locations(), made[1]["backup_id"], passed=False, detail="row counts differ",
                                by="test")
    result = prune.prune_logical(places.locations(), small_db, retention={"daily_days": 7},
                                 now=format_time(parse_time(made[1]["finished_at"])))
    assert result["newest_valid"] == made[0]["backup_id"] and result["deleted"] == []
    assert "kept for inspection" in result["reasons"][made[1]["backup_id"]]
