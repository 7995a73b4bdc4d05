"""Scenario 2 (failover.yml, failback.yml, setup_standby.yml) end to end in the lab: a writer
commits timestamped rows, the primary site is killed (kill -9 of its database, object store and
app), and the DR site must take over behind the switched DNS name with every row committed up to
the recovery point; then service returns to the primary with no row lost.

The tests run in order and each leaves the lab serving from the primary."""

import datetime
import glob
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request

import psycopg2
import pytest

from ansible_collections.auditron.dr.plugins.module_utils import contentsum
from lab import proc, servers
from tests.helpers.lab_db import connect, query
from tests.integration.test_verify_backups import flat

pytestmark = [pytest.mark.lab, pytest.mark.slow]

PROBE = "failover_probe"


def utc(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


class Writer:
    """Commits a timestamped row every 50 ms until the database goes away; remembers what it
    saw committed (the client's view, which is what an RPO is about)."""

    def __init__(self, lab):
        self.lab = lab
        self.committed = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        try:
            conn = connect(self.lab, "primary")
        except psycopg2.Error:
            return
        while not self.stop.is_set():
            try:
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO %s (at) VALUES (clock_timestamp()) RETURNING id, at" % PROBE)
                    self.committed.append(cur.fetchone())
            except psycopg2.Error:
                return
            time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        time.sleep(3)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)


def dns_answer(lab):
    out = subprocess.run(["dig", "+short", "@" + lab["dns"]["server"], "-p", str(lab["dns"]["port"]),
                          lab["dns"]["record"]], capture_output=True, text=True, check=True).stdout.split()
    return out


def app_at(lab, address):
    app = lab["sites"]["primary"]["app"]
    port = app["url"].rsplit(":", 1)[1]
    request = urllib.request.Request("http://%s:%s/api/invoices?limit=1" % (address, port),
                                     headers={"Authorization": "Bearer " + app["token"]})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def report(run):
    found = sorted(glob.glob(str(run.report_dir / "*-failover*" / "report.json")) +
                   glob.glob(str(run.report_dir / "*-failback*" / "report.json")))
    assert found, run
    with open(found[-1]) as handle:
        return json.load(handle)


def cleanup_aside(lab):
    for site in ("primary", "dr"):
        for path in glob.glob(lab["sites"][site]["postgres"]["data_dir"] + ".pre-*"):
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def prepared(lab, tmp_path_factory):
    """Backups of everything a failover restores, and the probe table the writer fills."""
    from tests.conftest import REPO, VENV_BIN, ansible_env  # pylint: disable=import-outside-toplevel
    query(lab, "primary", "CREATE TABLE IF NOT EXISTS %s (id bigserial PRIMARY KEY, at timestamptz NOT NULL)" % PROBE)
    reports = tmp_path_factory.mktemp("prep-reports")
    for playbook, extra in (("backup_database.yml", ["-e", "backup_type=full", "--tags", "physical"]),
                            ("backup_files.yml", []), ("backup_config.yml", [])):
        result = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(REPO / "inventories" / "local"),
                                 str(REPO / "playbooks" / playbook)] + extra, cwd=str(REPO), capture_output=True,
                                text=True, check=False, env=ansible_env({"AUDITRON_DR_REPORT_DIR": str(reports)}),
                                timeout=900)
        assert result.returncode == 0, playbook + "\n" + result.stdout[-3000:]
    yield
    cleanup_aside(lab)


def failback_and_check(lab, run_playbook):
    servers.up(quiet=True)  # the primary site comes back (its old data)
    query(lab, "dr", "INSERT INTO %s (at) VALUES (clock_timestamp())" % PROBE)  # a write during the DR era
    dr_rows = query(lab, "dr", "SELECT count(*), max(id) FROM %s" % PROBE)[0]
    run = run_playbook("failback.yml")
    assert run.rc == 0, run
    assert dns_answer(lab) == ["127.0.0.11"]
    assert query(lab, "primary", "SELECT count(*), max(id) FROM %s" % PROBE)[0] == dr_rows  # no row lost
    assert query(lab, "dr", "SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver)")[0] == \
        (True, "streaming")
    # DR streams from where auditron_dr_replication.primary_host says (the lab: localhost).
    assert "host=localhost" in query(lab, "dr", "SELECT conninfo FROM pg_stat_wal_receiver")[0][0]
    assert app_at(lab, "127.0.0.11")["site"] == "primary"
    cleanup_aside(lab)
    return run


def assert_same_content(lab):
    """Every row of every table the same at both sites (DR a standby of the primary now): the check
    failback makes, made again here by the test."""
    target = query(lab, "primary", "SELECT pg_current_wal_lsn()")[0][0]
    deadline = time.monotonic() + 60
    while not query(lab, "dr", "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,))[0][0]:
        assert time.monotonic() < deadline, "DR did not replay the primary's WAL up to %s in 60 s" % target
        time.sleep(0.5)
    conns = [connect(lab, "primary"), connect(lab, "dr")]
    try:
        primary, dr = [contentsum.content_checksums(conn) for conn in conns]
    finally:
        for conn in conns:
            conn.close()
    assert primary["public.%s" % PROBE]["rows"] > 0 and contentsum.compare(primary, dr) == []


def ensure_standby(lab, run_playbook):
    """DR as a warm site. The failback of the test before leaves it one; a test run alone
    makes it one with setup_standby.yml."""
    if query(lab, "dr", "SELECT (SELECT status FROM pg_stat_wal_receiver)")[0][0] != "streaming":
        standby = run_playbook("setup_standby.yml")
        assert standby.rc == 0, standby
        cleanup_aside(lab)
    assert query(lab, "dr", "SELECT (SELECT status FROM pg_stat_wal_receiver)")[0][0] == "streaming"


def wait_until_archived(lab, segment, timeout=120):
    """Until the primary's archiver reports `segment` pushed (pgBackRest's archive-push returns
    only once every repository has it): the row written before it is then in the backup regions,
    without waiting for archive_timeout."""
    deadline = time.monotonic() + timeout
    while (query(lab, "primary", "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")[0][0] or "") < segment:
        assert time.monotonic() < deadline, "WAL segment %s was not archived in %d s" % (segment, timeout)
        time.sleep(0.5)


def make_cold(lab):
    """DR as a cold site: a fresh, empty cluster of its own (as the lab starts), not a standby.
    (Promoting the standby instead would fork a second timeline into the archive.)"""
    data_dir = lab["sites"]["dr"]["postgres"]["data_dir"]
    servers.stop_cluster(data_dir)
    os.rename(data_dir, data_dir + ".pre-cold-%d" % int(time.time()))
    servers.up(quiet=True)  # initdb of a new DR cluster, started, database created
    # A new cold site has no failover in progress (a failed earlier test may have left its state).
    state = os.path.join(lab["lab"]["dir"], "state", "failover.json")
    if os.path.exists(state):
        os.remove(state)
    assert not query(lab, "dr", "SELECT pg_is_in_recovery()")[0][0]


def test_failover_check_mode_and_confirmation(lab, prepared, run_playbook):
    run = run_playbook("failover.yml", check=True)
    assert run.rc == 0, run
    assert "would fence the primary" in " ".join(run.stdout.split())
    assert dns_answer(lab) == ["127.0.0.11"]
    refused = run_playbook("failover.yml", extra_vars={"auditron_dr_require_confirmation": True})
    assert refused.rc != 0 and "needs confirm_failover=true" in refused.output
    assert dns_answer(lab) == ["127.0.0.11"]


def test_cold_failover_after_the_primary_site_and_a_backup_region_die(lab, prepared, run_playbook):
    """The whole primary site and the S3 primary region are lost while a writer commits: DR
    restores from the second region, says why it passed over the first, and serves every row up
    to the recovery point. A re-run once the region is back finishes only what the first run
    left (the fresh backup), and a third run finds nothing left to do."""
    make_cold(lab)
    store = "s3-us-east-1"
    with Writer(lab) as writer:
        # Some of the writer's rows reach the archive before the kill (a segment closed and
        # archived while it writes), others not: the RPO measured is the writer's, not a quiet minute's.
        segment = query(lab, "primary", "SELECT pg_walfile_name(pg_switch_wal())")[0][0]
        wait_until_archived(lab, segment)
        time.sleep(2)
        incident = now_iso()
        servers.fail("primary")
        proc.stop(store)
    committed = writer.committed
    assert len(committed) > 20
    try:
        # No backup after it: with a region down every repository waits on it (minutes; the
        # playbook reports it and does not fail). The re-run below makes it.
        run = run_playbook("failover.yml", extra_vars={"incident_start": incident, "failover_backup_after": False})
    finally:
        servers.start_object_store(store, servers.load_secrets()["object_store"][store])
    assert run.rc == 0, run
    rep = report(run)
    assert rep["backup_used"]["mode"] == "cold"
    assert rep["backup_used"]["repository"] == "repo3", rep["backup_used"]
    assert rep["backup_used"]["fallbacks"][0]["repo"] == 2, rep["backup_used"]   # says why repo2 was passed over
    assert dns_answer(lab) == ["127.0.0.12"]
    assert app_at(lab, "127.0.0.12")["site"] == "dr"
    recovery_point = utc(rep["markers"]["recovery_point"])
    have = set(r[0] for r in query(lab, "dr", "SELECT id FROM %s" % PROBE))
    missing = [row for row in committed if row[1] <= recovery_point and row[0] not in have]
    assert missing == []                                          # everything up to the recovery point
    assert [row for row in committed if row[0] in have], "none of the writer's rows came back"
    assert rep["rpo"]["achieved_seconds"] <= 60, rep["rpo"]      # cold: archive_timeout bounds it
    # Speed is reported (report.json, the notes), not asserted: this machine is shared and noisy.
    assert rep["rto"]["verdict"] == "met" and 0 < rep["rto"]["achieved_seconds"] <= 1800, rep["rto"]
    assert "did not answer" in json.dumps(rep["extra"]["fence"])  # nothing to fence: it is down
    phases = [p["name"] for p in rep["phases"]]
    for phase in ("activate_dr", "fence_primary", "restore_db", "restore_files", "restore_config", "deploy_app",
                  "verify_switch"):
        assert phase in phases
    assert [p["status"] for p in rep["phases"] if p["name"] == "backup_after"] in ([], ["skipped"])
    assert rep["dns_change"]["to"] == "127.0.0.12"

    again = run_playbook("failover.yml", extra_vars={"incident_start": incident})
    assert again.rc == 0, again                                   # resumable: a re-run finishes what is left
    assert "Restore database" not in [t for t in again.stdout.splitlines() if t.startswith("TASK [Cold")]
    made = [p for p in report(again)["phases"] if p["name"] == "backup_after"]
    assert made and made[0]["status"] == "ok", report(again)["phases"]
    third = run_playbook("failover.yml", extra_vars={"incident_start": incident})
    assert third.rc == 0, third
    assert "fresh full backup after this failover was made by an earlier run" in json.dumps(report(third)), \
        "the third run made a second full backup"
    failback_and_check(lab, run_playbook)


def test_warm_failover_promotes_the_standby(lab, prepared, run_playbook, tmp_path):
    """Here the site has no configuration bundle where the failover looks (its configuration lives
    elsewhere, say in Git; the plan's schedule makes database and file backups only)."""
    ensure_standby(lab, run_playbook)
    no_bundles = tmp_path / "no-bundles"
    no_bundles.mkdir()
    nowhere = {"auditron_dr_config_restore_locations": [{"name": "empty", "type": "local", "path": str(no_bundles)}]}
    with Writer(lab) as writer:
        time.sleep(2)
        incident = now_iso()
        servers.fail("primary")
    # A site that declares bundles required is refused by the preflight, before anything changes.
    refused = run_playbook("failover.yml", extra_vars=dict(nowhere, incident_start=incident,
                                                           auditron_dr_config_bundle_required=True))
    assert refused.rc != 0 and "failover.yml: nothing was changed. No configuration bundle in empty" in \
        flat(refused.output), refused
    assert query(lab, "dr", "SELECT pg_is_in_recovery()")[0][0] is True     # DR still a standby
    assert dns_answer(lab) == ["127.0.0.11"]                                  # the name not switched
    # By default the failover goes on with the configuration DR has, and says so.
    run = run_playbook("failover.yml", extra_vars=dict(nowhere, incident_start=incident))
    assert run.rc == 0, run
    assert "the failover goes on with the configuration dr has" in flat(run.output), run
    rep = report(run)
    [config_phase] = [phase for phase in rep["phases"] if phase["name"] == "restore_config"]
    assert "no configuration bundle in empty: dr keeps the configuration it has" in config_phase["detail"]
    assert rep["backup_used"]["mode"] == "warm"
    recovery_point = utc(rep["markers"]["recovery_point"])
    have = set(r[0] for r in query(lab, "dr", "SELECT id FROM %s" % PROBE))
    assert [row for row in writer.committed if row[1] <= recovery_point and row[0] not in have] == []
    assert rep["rpo"]["achieved_seconds"] <= 5, rep["rpo"]
    assert rep["rto"]["verdict"] == "met" and 0 < rep["rto"]["achieved_seconds"] <= 1800, rep["rto"]
    assert dns_answer(lab) == ["127.0.0.12"]

    # A failback that fails while it stops writes at DR (here: its row-for-row checksum, after DR's
    # app was stopped and its WAL pushed) starts DR's app again: DR still serves, the name still points at it.
    servers.up(quiet=True)
    broken = run_playbook("failback.yml", extra_vars={"failback_checksum_tables": ["Invoice", "no_such_table"]})
    assert broken.rc != 0 and "DR still serves" in flat(broken.output), broken
    assert "no such table: public.no_such_table" in flat(broken.output), broken
    assert app_at(lab, "127.0.0.12")["site"] == "dr"
    assert dns_answer(lab) == ["127.0.0.12"]
    assert query(lab, "dr", "SELECT pg_is_in_recovery()")[0][0] is False

    # A failback that fails inside rebuild_primary, once DR's app and database were stopped and the
    # primary's data set aside (here: after the rebuilt primary started, which forked a timeline of its
    # own into the archive): DR serves again, the primary stays out of service, and the message says so.
    rebuild_broken = run_playbook("failback.yml", extra_vars={"failback_inject_failure_after": "start"})
    output = flat(rebuild_broken.output)
    assert rebuild_broken.rc != 0 and "DR serves again" in output, rebuild_broken
    assert "nothing was changed" not in output and "The primary does not serve" in output, rebuild_broken
    assert "pre-failback-" in output and "failed-failback-" in output, rebuild_broken     # where its data went
    assert app_at(lab, "127.0.0.12")["site"] == "dr"
    assert dns_answer(lab) == ["127.0.0.12"]
    assert query(lab, "dr", "SELECT pg_is_in_recovery()")[0][0] is False
    with pytest.raises(psycopg2.OperationalError):
        connect(lab, "primary", timeout=2)                        # the rebuilt copy was stopped again
    # DR takes writes again after the failed rebuild; a plain re-run brings every one of them back.
    query(lab, "dr", "INSERT INTO %s (at) VALUES (clock_timestamp())" % PROBE)
    run = failback_and_check(lab, run_playbook)
    [rebuilt] = [check for check in report(run)["checks"] if check["name"] == "primary matches DR after the rebuild"]
    assert rebuilt["result"] == "ok" and "every table matches" in rebuilt["detail"], rebuilt
    assert_same_content(lab)


def test_failover_with_the_primary_up_fences_it_first(lab, prepared, run_playbook):
    """No kill: the primary still answers, so failover must stop its writes before DR takes over,
    and DR must recover every commit the primary made (its last WAL segment is pushed first).
    (A backup region down at the same time is not covered here: pgBackRest's archive-push waits
    io-timeout x retries on a dead repository, see docs/pgbackrest.md.)"""
    make_cold(lab)
    query(lab, "primary", "INSERT INTO %s (at) VALUES (clock_timestamp())" % PROBE)
    last_before = query(lab, "primary", "SELECT max(id) FROM %s" % PROBE)[0][0]
    run = run_playbook("failover.yml")
    assert run.rc == 0, run
    rep = report(run)
    fence = rep["extra"]["fence"]
    assert fence["database"] == "stopped" and fence["last_wal_pushed"] in (True, "True"), fence
    assert fence["last_segment_in"] == "repo2", fence
    with pytest.raises(psycopg2.OperationalError):
        connect(lab, "primary", timeout=2)                        # fenced: it takes no writes
    assert rep["backup_used"]["repository"] == "repo2"
    assert query(lab, "dr", "SELECT max(id) FROM %s" % PROBE)[0][0] == last_before   # RPO 0 when fenced
    servers.up(quiet=True)
    failback_and_check(lab, run_playbook)


def test_lab_restart_brings_back_the_standby_failback_left(lab, prepared, run_playbook):
    """failback.yml leaves DR a standby that fetches WAL from the backup regions while it
    starts. A later `lab down` + `lab up` (the next CI step, the next working day) must bring
    it back: the object stores have to be up before the clusters, or pg_ctl gives up on it and
    its postmaster is left running."""
    ensure_standby(lab, run_playbook)
    servers.down(quiet=True)
    started = servers.up(quiet=True)
    assert ("cluster", "dr") in started and ("proc", "s3-us-east-1") in started, started
    assert all(servers.status().values()), servers.status()
    assert query(lab, "dr", "SELECT pg_is_in_recovery()")[0][0] is True
    deadline = time.monotonic() + 60
    while query(lab, "dr", "SELECT (SELECT status FROM pg_stat_wal_receiver)")[0][0] != "streaming":
        assert time.monotonic() < deadline, "DR's standby did not stream again after the lab restart"
        time.sleep(1)
