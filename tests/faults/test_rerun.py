"""Failovers interrupted and run again, and journals that do not describe the sites: the run
journal (plugins/module_utils/journal.py) is checked against DR's database, never trusted alone.

Each test kills or breaks a real failover.yml in the lab (the primary site killed -9 after every
acknowledged write reached the WAL archive, or DR streaming every one of them), runs it again
the plain way, and measures what a user would: the name answers DR, DR's app serves, and "lost"
is the number of acknowledged rows (compared by content: id and time) DR's database does not
hold. Each test then fails back, leaving the lab serving from the primary as it found it.
"""

import json
import os
import signal
import subprocess
import threading
import time

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import pgbackrest_restore
from lab import proc, servers
from tests.conftest import REPO, VENV_BIN, ansible_env
from tests.helpers.lab_db import query
# `prepared`: a full physical backup, the files and a configuration bundle, as scenario 2 makes them.
from tests.integration.test_scenario_2 import (  # noqa: F401 pylint: disable=unused-import
    PROBE, Writer, app_at, dns_answer, ensure_standby, failback_and_check, make_cold, now_iso, prepared,
    wait_until_archived)

pytestmark = [pytest.mark.lab, pytest.mark.slow]


@pytest.fixture(scope="module", autouse=True)
def lab_as_found(lab):
    """The next test file on this worker finds every lab process up: what the failbacks here
    leave stopped (DR's app) is started again."""
    yield
    servers.up(quiet=True)


DR_ADDRESS, PRIMARY_ADDRESS = "127.0.0.12", "127.0.0.11"


def journal_path(lab):
    return os.path.join(lab["lab"]["dir"], "state", "failover.json")


def read_journal(lab):
    with open(journal_path(lab)) as handle:
        return json.load(handle)


def write_journal(lab, text):
    path = journal_path(lab)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)


def acknowledged_rows(writer):
    """The writer's acknowledged rows as (id, time) - the content a failover must not lose."""
    return set((row_id, at.isoformat()) for row_id, at in writer.committed)


def rows_missing_at_dr(lab, acknowledged):
    held = set((row_id, at.isoformat()) for row_id, at in query(lab, "dr", "SELECT id, at FROM %s" % PROBE))
    return len(acknowledged - held)


def kill_primary_after_every_write_is_archived(lab):
    """A writer commits for a few seconds; once it stops, the last WAL segment is archived, then
    the whole primary site is killed -9. Every acknowledged row is then in the backups."""
    with Writer(lab) as writer:
        time.sleep(2)
    segment = query(lab, "primary", "SELECT pg_walfile_name(pg_switch_wal())")[0][0]
    wait_until_archived(lab, segment)
    incident = now_iso()
    servers.fail("primary")
    assert len(writer.committed) > 10
    return incident, acknowledged_rows(writer)


def kill_primary_once_dr_replayed_everything(lab):
    """Warm: a writer commits, stops, DR replays up to the primary's last LSN; then the primary
    site is killed -9."""
    with Writer(lab) as writer:
        time.sleep(2)
    lsn = query(lab, "primary", "SELECT pg_current_wal_lsn()::text")[0][0]
    deadline = time.monotonic() + 60
    while not query(lab, "dr", "SELECT pg_last_wal_replay_lsn() >= '%s'::pg_lsn" % lsn)[0][0]:
        assert time.monotonic() < deadline, "DR did not replay the writer's rows in 60 s"
        time.sleep(0.2)
    incident = now_iso()
    servers.fail("primary")
    assert len(writer.committed) > 10
    return incident, acknowledged_rows(writer)


def playbook_process(playbook, extra_vars, log_path, cwd=REPO):
    """`playbook` as a user starts it, in a process group of its own (so that the whole
    controller can be killed at once, as a closed terminal or a killed AWX job does)."""
    command = [str(VENV_BIN / "ansible-playbook"), "-i", str(REPO / "inventories" / "local"),
               str(REPO / "playbooks" / playbook), "-e", json.dumps(extra_vars or {})]
    env = ansible_env({"AUDITRON_DR_REPORT_DIR": str(log_path) + ".d", "PYTHONUNBUFFERED": "1"})
    with open(log_path, "w") as log:
        return subprocess.Popen(command, cwd=str(cwd), env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def failover_process(extra_vars, log_path, cwd=REPO):
    return playbook_process("failover.yml", extra_vars, log_path, cwd)


def serves_from_dr(lab):
    return dns_answer(lab) == [DR_ADDRESS] and app_at(lab, DR_ADDRESS)["site"] == "dr" and \
        query(lab, "dr", "SELECT pg_is_in_recovery()")[0][0] is False


@pytest.mark.fault("Failover killed (SIGKILL of the controller's process group) while restoring DR, then run again",
                   "the pgBackRest restore the kill left running is stopped and its partial data set aside under a "
                   "name of its own; the re-run restores, promotes and switches: the name answers DR, its app "
                   "serves, no acknowledged row lost")
def test_failover_killed_while_restoring_then_run_again(fault, lab, prepared, run_playbook, tmp_path):
    make_cold(lab)
    data_dir = lab["sites"]["dr"]["postgres"]["data_dir"]
    incident, acknowledged = kill_primary_after_every_write_is_archived(lab)
    first = failover_process({"incident_start": incident, "failover_backup_after": False}, tmp_path / "first.log")
    try:
        deadline = time.monotonic() + 300
        while not pgbackrest_restore.leftover_restores(data_dir):
            assert first.poll() is None, "the failover ended before its restore was caught: %s" % (
                (tmp_path / "first.log").read_text()[-3000:])
            assert time.monotonic() < deadline, "no pgBackRest restore into %s in 300 s" % data_dir
            time.sleep(0.02)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    outlived = pgbackrest_restore.leftover_restores(data_dir)
    fault.saw("controller killed during restore_db; pgBackRest restores still running after the kill: %d; journal: "
              "database step %s" % (len(outlived), read_journal(lab)["steps"].get("database", {}).get("outcome")))
    run = run_playbook("failover.yml", extra_vars={"incident_start": incident, "failover_backup_after": False})
    assert run.rc == 0, run
    assert pgbackrest_restore.leftover_restores(data_dir) == []
    run_id = read_journal(lab)["id"]
    # The first run set DR's cold cluster aside under the run's name; the re-run, finding that name
    # taken, set the killed restore's partial data aside under a name of its own.
    assert os.path.isdir("%s.pre-failover-%s-2" % (data_dir, run_id)), os.listdir(os.path.dirname(data_dir))
    fault.saw("re-run: %s" % " ".join(line.strip() for line in run.stdout.splitlines() if "journal: " in line)[:300])
    assert serves_from_dr(lab), "DR does not serve after the re-run"
    missing = rows_missing_at_dr(lab, acknowledged)
    fault.saw("the re-run served from DR; %d acknowledged rows, %d missing at DR" % (len(acknowledged), missing))
    fault.lost(missing)
    failback_and_check(lab, run_playbook)


@pytest.mark.fault("Failover failed after DR was promoted and its app started (DNS server down at the switch), "
                   "then run again",
                   "the re-run keeps DR's database as it is (not stopped, not restored again): the writes DR took "
                   "between the runs stay; the name answers DR; no acknowledged row lost")
def test_failover_failed_after_promotion_keeps_dr_writes_on_the_rerun(fault, lab, prepared, run_playbook):
    ensure_standby(lab, run_playbook)
    incident, acknowledged = kill_primary_once_dr_replayed_everything(lab)
    # BIND goes away once the journal says DR was promoted (the preflight, which checks the DNS
    # server, has passed): the run fails at the switch, after DR's app started.
    promoted = threading.Event()

    def stop_bind_once_promoted():
        while not promoted.is_set():
            try:
                if read_journal(lab)["steps"].get("database", {}).get("outcome") == "done":
                    proc.stop("dns")
                    promoted.set()
                    return
            except (IOError, OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)

    watcher = threading.Thread(target=stop_bind_once_promoted, daemon=True)
    watcher.start()
    try:
        broken = run_playbook("failover.yml", extra_vars={"incident_start": incident, "failover_backup_after": False})
    finally:
        stopped = promoted.is_set()
        promoted.set()
        watcher.join(5)
        servers.start_dns(servers.load_secrets())   # BIND back; the primary site stays down
    assert stopped, "the journal never recorded the database step: %s" % broken
    assert broken.rc != 0, broken
    assert query(lab, "dr", "SELECT pg_is_in_recovery()")[0][0] is False          # DR was promoted
    system_before = query(lab, "dr", "SELECT system_identifier::text FROM pg_control_system()")[0][0]
    between = set()
    for _write in range(20):                                                        # DR takes writes between runs
        row_id, at = query(lab, "dr", "INSERT INTO %s (at) VALUES (clock_timestamp()) RETURNING id, at" % PROBE)[0]
        between.add((row_id, at.isoformat()))
    fault.saw("first run failed at the DNS switch after promotion; %d rows written at DR before the re-run"
              % len(between))
    run = run_playbook("failover.yml", extra_vars={"incident_start": incident, "failover_backup_after": False})
    assert run.rc == 0, run
    assert "database step: keep" in " ".join(run.stdout.split()), run
    assert query(lab, "dr", "SELECT system_identifier::text FROM pg_control_system()")[0][0] == system_before
    assert serves_from_dr(lab)
    missing = rows_missing_at_dr(lab, acknowledged | between)
    fault.saw("re-run kept DR's database (database step: keep); %d acknowledged rows (%d of them written at DR "
              "between the runs), %d missing" % (len(acknowledged | between), len(between), missing))
    # A DR primary that no journal accounts for is not thrown away: the journal gone, a failover
    # refuses before anything changes.
    os.remove(journal_path(lab))
    refused = run_playbook("failover.yml", extra_vars={"incident_start": now_iso()})
    assert refused.rc != 0 and "failover.yml: nothing was changed. DR's database is already a primary" in \
        " ".join(refused.output.split()), refused
    assert serves_from_dr(lab) and rows_missing_at_dr(lab, acknowledged | between) == 0
    fault.saw("with the journal removed, a new failover refused: DR is a primary of this system no journal "
              "accounts for; DR still serves")
    fault.lost(missing)
    failback_and_check(lab, run_playbook)


# The start of each phase of failover.yml after activation, as its output shows it (the task that opens it).
PHASE_STARTS = (("fence_primary", "TASK [Fence primary]"), ("restore_db", "TASK [Record that the database step starts"),
                ("restore_files", "PLAY [Restore file storage from the S3 backup]"),
                ("restore_config", "TASK [Restore the configuration for DR"),
                ("deploy_app", "TASK [Deploy application]"), ("verify_switch", "TASK [Verify the app at DR"))


def run_until(marker, extra_vars, log_path, timeout=600, playbook="failover.yml"):
    """`playbook` until its output shows `marker`, then SIGKILL to its whole process group.
    Returns what the output held (the run must not have ended before the marker)."""
    running = playbook_process(playbook, extra_vars, log_path)
    try:
        deadline = time.monotonic() + timeout
        while marker not in log_path.read_text():
            assert running.poll() is None, "%s ended before %r: %s" % (playbook, marker, log_path.read_text()[-3000:])
            assert time.monotonic() < deadline, "no %r in %d s" % (marker, timeout)
            time.sleep(0.02)
        os.killpg(running.pid, signal.SIGKILL)
        running.wait(30)
    finally:
        if running.poll() is None:
            os.killpg(running.pid, signal.SIGKILL)
    return log_path.read_text()


@pytest.mark.fault("Failover killed (SIGKILL of the controller's process group) at the start of each phase in turn, "
                   "each time run again",
                   "each re-run continues from the sites as they are (DR promoted once, kept after); the last run "
                   "completes: the name answers DR, its app serves, no acknowledged row lost")
def test_failover_killed_at_the_start_of_each_phase(fault, lab, prepared, run_playbook, tmp_path):
    ensure_standby(lab, run_playbook)
    incident, acknowledged = kill_primary_once_dr_replayed_everything(lab)
    extra = {"incident_start": incident, "failover_backup_after": False}
    states = []
    for phase, marker in PHASE_STARTS:
        output = run_until(marker, extra, tmp_path / ("killed-at-%s.log" % phase))
        in_recovery = query(lab, "dr", "SELECT pg_is_in_recovery()")[0][0]
        steps = read_journal(lab)["steps"] if os.path.exists(journal_path(lab)) else {}
        states.append("%s: DR %s, name %s, journal %s" % (
            phase, "standby" if in_recovery else "primary", ",".join(dns_answer(lab)),
            ",".join("%s=%s" % (name, step.get("outcome")) for name, step in sorted(steps.items())) or "-"))
        # The runs killed at restore_config and later come after one that promoted DR: they keep it.
        if phase in ("restore_config", "deploy_app", "verify_switch"):
            assert "database step: keep" in " ".join(output.split()), "the run killed at %s did not keep DR" % phase
    system_id = query(lab, "dr", "SELECT system_identifier::text FROM pg_control_system()")[0][0]
    run = run_playbook("failover.yml", extra_vars=extra)
    assert run.rc == 0, run
    assert "database step: keep" in " ".join(run.stdout.split())
    assert query(lab, "dr", "SELECT system_identifier::text FROM pg_control_system()")[0][0] == system_id
    assert serves_from_dr(lab)
    missing = rows_missing_at_dr(lab, acknowledged)
    fault.saw("killed at the start of %s; after each kill: %s" % (
        ", ".join(p for p, _m in PHASE_STARTS), "; ".join(states)))
    fault.saw("the run after the last kill completed: DR serves; %d missing of %d acknowledged rows"
              % (missing, len(acknowledged)))
    fault.lost(missing)
    failback_and_check(lab, run_playbook)


FAILBACK_PHASE_STARTS = (("stop_writes", "PLAY [Failback: stop writes at DR]"),
                         ("rebuild_primary", "PLAY [Failback: rebuild the primary from DR's WAL]"),
                         ("service_back", "PLAY [Failback: service back at the primary]"),
                         ("dr_standby", "PLAY [Failback: DR becomes a standby again]"))


@pytest.mark.fault("Failback killed (SIGKILL of the controller's process group) at the start of each phase in turn, "
                   "each time run again",
                   "each re-run finishes what the kill left: the name answers the primary, its app serves, every "
                   "row DR held is at the primary (row for row), DR a streaming standby")
def test_failback_killed_at_the_start_of_each_phase(fault, lab, prepared, run_playbook, tmp_path):
    ensure_standby(lab, run_playbook)
    incident, acknowledged = kill_primary_once_dr_replayed_everything(lab)
    run = run_playbook("failover.yml", extra_vars={"incident_start": incident, "failover_backup_after": False})
    assert run.rc == 0, run
    servers.up(quiet=True)  # the primary site comes back (its old data)
    between = set()
    for _write in range(10):                                  # writes during the DR era
        row_id, at = query(lab, "dr", "INSERT INTO %s (at) VALUES (clock_timestamp()) RETURNING id, at" % PROBE)[0]
        between.add((row_id, at.isoformat()))
    states = []
    for phase, marker in FAILBACK_PHASE_STARTS:
        run_until(marker, {}, tmp_path / ("failback-killed-at-%s.log" % phase), playbook="failback.yml")
        states.append("%s: name %s" % (phase, ",".join(dns_answer(lab))))
    final = run_playbook("failback.yml")
    fault.saw("failback killed at the start of %s; after each kill: %s" % (
        ", ".join(p for p, _m in FAILBACK_PHASE_STARTS), "; ".join(states)))
    assert final.rc == 0, final
    assert dns_answer(lab) == [PRIMARY_ADDRESS] and app_at(lab, PRIMARY_ADDRESS)["site"] == "primary"
    held = set((row_id, at.isoformat()) for row_id, at in query(lab, "primary", "SELECT id, at FROM %s" % PROBE))
    missing = len((acknowledged | between) - held)
    fault.saw("the run after the last kill completed; %d missing at the primary of %d acknowledged rows"
              % (missing, len(acknowledged | between)))
    fault.lost(missing)
    assert query(lab, "dr", "SELECT pg_is_in_recovery()")[0][0] is True
