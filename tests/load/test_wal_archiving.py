"""WAL archiving keeps up with pgbench writing flat out, and a PITR to the end loses nothing.

pgbench (TPC-B-like, no rate limit, 4 clients) writes to a database of this run on the lab's
primary for AUDITRON_LOAD_SECONDS (default 75; the issue's full run is 300) while pgBackRest's
archive_command pushes every WAL segment to the three repositories (local disk, two S3 regions).
Every half second the test notes when each segment was completed (the server moved past it)
and when pg_stat_archiver reported it archived; the lag of every segment must stay under the
server's archive_timeout: the plan's 15-minute RPO rests on archiving being that prompt.

Then a PITR to the end of the run: the pg_recovery role (as restore_database.yml runs it)
restores the lab's stanza from repo1 into a scratch cluster under .lab/pg/ to a time just after
pgbench stopped, and the scratch cluster's pgbench_history must hold exactly the rows the
primary holds (one per committed transaction), and as many as pgbench counted.
"""

import json
import os
import re
import subprocess
import threading
import time

import psycopg2
import pytest

from tests.helpers import faults

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.load]

RUN = faults.run_id()
DATABASE = "dr_load_%s" % RUN
SCALE = 2            # pgbench -i -s 2: 200,000 accounts, about 30 MB
CLIENTS = 4
SEGMENT_RE = re.compile(r"^[0-9A-F]{24}$")

PITR_PLAYBOOK = """
- name: PITR of the lab's stanza into a scratch cluster, as restore_database.yml restores
  hosts: primary
  gather_facts: false
  tasks:
    - name: Restore and start the copy
      ansible.builtin.include_role:
        name: auditron.dr.pg_recovery
      vars:
        pg_recovery_action: "{{{{ load_action }}}}"
        pg_recovery_name: "{name}"
        pg_recovery_base_dir: "{base}"
        pg_recovery_target_time: "{{{{ load_target_time | default('') }}}}"
        pg_recovery_repos: [1]
    - name: Keep the result for the test
      ansible.builtin.copy:
        content: "{{{{ pg_recovery_result | default({{}}) | to_json }}}}"
        dest: "{out}"
        mode: "0600"
"""


def segment_number(name):
    """A WAL file name's position in the stream (timeline ignored: one timeline during the run)."""
    return int(name[8:16], 16) * 0x100 + int(name[16:24], 16)


class ArchiveWatch(object):
    """Samples the primary every `interval` seconds: the WAL file being written, the last one
    archived, failures, and .ready files waiting. A segment is complete when the server moves
    past it, archived when pg_stat_archiver's last_archived_wal reaches it; lag = the difference."""

    def __init__(self, postgres, interval=0.5):
        self.postgres = postgres
        self.interval = interval
        self.completed = {}     # segment number -> monotonic time it was completed
        self.archived = {}      # segment number -> monotonic time it was seen archived
        self.max_ready = 0
        self.failures = []
        self.samples = 0
        self.errors = []
        self.stop_event = threading.Event()
        self.current = None
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def start(self):
        self.sample()
        self.thread.start()
        return self

    def stop(self):
        self.stop_event.set()
        self.thread.join(30)

    def loop(self):
        while not self.stop_event.wait(self.interval):
            try:
                self.sample()
            except psycopg2.Error as exc:
                self.errors.append(str(exc).strip())

    def sample(self):
        row = faults.sql(self.postgres, "SELECT pg_walfile_name(pg_current_wal_lsn()), last_archived_wal, "
                                        "failed_count, last_failed_wal, "
                                        "(SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready') "
                                        "FROM pg_stat_archiver")[0]
        now = time.monotonic()
        current, last_archived, failed_count, last_failed, ready = row
        self.samples += 1
        self.max_ready = max(self.max_ready, ready)
        position = segment_number(current)
        if self.current is not None:
            for number in range(self.current, position):
                self.completed.setdefault(number, now)
        self.current = position if self.current is None else max(self.current, position)
        if last_archived and SEGMENT_RE.match(last_archived):
            done = segment_number(last_archived)
            for number in [n for n in self.completed if n <= done and n not in self.archived]:
                self.archived[number] = now
        if failed_count and last_failed and (not self.failures or self.failures[-1] != last_failed):
            self.failures.append(last_failed)

    def lags(self):
        """{segment: seconds from complete to archived}, and the segments never seen archived."""
        lags = dict((number, self.archived[number] - moment) for number, moment in self.completed.items()
                    if number in self.archived)
        waiting = sorted(number for number in self.completed if number not in self.archived)
        return lags, waiting


def run_pgbench(lab, postgres, seconds):
    pg = lab["sites"]["primary"]["postgres"]
    env = dict(os.environ, PGPASSWORD=pg["password"])
    argv = [os.path.join(lab["lab"]["pg_bin_dir"], "pgbench"), "-h", pg["host"], "-p", str(pg["port"]),
            "-U", pg["user"], "-n", "-c", str(CLIENTS), "-j", "2", "-T", str(seconds), "-P", "15", DATABASE]
    completed = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 300, check=False)
    assert completed.returncode == 0, "pgbench failed: %s" % completed.stderr[-2000:]
    processed = re.search(r"number of transactions actually processed: (\d+)", completed.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", completed.stdout)
    tps = re.search(r"tps = ([0-9.]+)", completed.stdout)
    assert processed, completed.stdout
    return {"processed": int(processed.group(1)), "failed": int(failed.group(1)) if failed else 0,
            "tps": float(tps.group(1)) if tps else None, "progress": completed.stderr.strip().splitlines()}


def pitr(tmp_path, name, base, action, target_time=None):
    playbook = tmp_path / ("pitr-%s.yml" % action)
    out = tmp_path / ("pitr-%s.json" % action)
    playbook.write_text(PITR_PLAYBOOK.format(name=name, base=base, out=out))
    extra = {"load_action": action}
    if target_time:
        extra["load_target_time"] = target_time
    run = faults.playbook(str(playbook), tmp_path / "reports", extra_vars=extra, timeout=1800)
    return run, (json.loads(out.read_text()) if out.exists() else {})


def history_rows(postgres):
    return faults.sql(postgres, "SELECT count(*) FROM pgbench_history", database=DATABASE)[0][0]


@pytest.fixture
def pgbench_database(lab, lab_archiving):  # pylint: disable=unused-argument
    postgres = faults.pg_params(lab)
    pg = lab["sites"]["primary"]["postgres"]
    faults.sql(postgres, 'CREATE DATABASE "%s"' % DATABASE)
    init = subprocess.run([os.path.join(lab["lab"]["pg_bin_dir"], "pgbench"), "-h", pg["host"], "-p", str(pg["port"]),
                           "-U", pg["user"], "-i", "-q", "-s", str(SCALE), DATABASE],
                          env=dict(os.environ, PGPASSWORD=pg["password"]), capture_output=True, text=True,
                          timeout=600, check=False)
    assert init.returncode == 0, init.stderr[-2000:]
    yield postgres
    faults.sql(postgres, 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % DATABASE)


def test_wal_archiving_keeps_up_with_pgbench_and_pitr_loses_nothing(lab, pgbench_database, load_seconds, tmp_path):
    postgres = pgbench_database
    archive_timeout = int(faults.sql(postgres, "SELECT setting FROM pg_settings WHERE name = 'archive_timeout'")[0][0])
    assert archive_timeout > 0, "archive_timeout is off on the lab's primary"
    # The base backup the PITR starts from: taken now, so that it holds the pgbench database.
    config = faults.lab_pgbackrest_config(lab)
    made = faults.as_lab_user(["pgbackrest", "--config=%s" % config, "--stanza=%s" % lab["pgbackrest"]["stanza"],
                               "--repo=1", "--type=incr", "backup"], timeout=1800)
    assert made.returncode == 0, made.stderr[-2000:]

    start_lsn = faults.sql(postgres, "SELECT pg_current_wal_lsn()")[0][0]
    watch = ArchiveWatch(postgres).start()
    try:
        bench = run_pgbench(lab, postgres, load_seconds)
        # A commit after the target time, then the segment closed: the archive reaches past it.
        target_time = faults.sql(postgres, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', "
                                           "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")[0][0]
        rows = history_rows(postgres)
        time.sleep(1.1)
        faults.sql(postgres, "CREATE TABLE load_marker_after_target (id int)", database=DATABASE)
        wal_bytes = faults.sql(postgres, "SELECT pg_current_wal_lsn() - %s::pg_lsn", args=(start_lsn,))[0][0]
        last = faults.sql(postgres, "SELECT pg_walfile_name(pg_switch_wal())")[0][0]
        faults.wait_for("WAL %s archived" % last, lambda: (faults.sql(
            postgres, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")[0][0] or "") >= last,
            timeout=max(180, archive_timeout * 4), interval=0.5)
        watch.sample()
    finally:
        watch.stop()
    lags, waiting = watch.lags()
    worst = max(lags.values()) if lags else 0.0
    mean = sum(lags.values()) / len(lags) if lags else 0.0
    figures = {
        "seconds": load_seconds, "clients": CLIENTS, "scale": SCALE, "transactions": bench["processed"],
        "failed_transactions": bench["failed"], "tps": bench["tps"], "wal_bytes": int(wal_bytes),
        "wal_mib_per_second": round(int(wal_bytes) / 1048576.0 / load_seconds, 2), "segments": len(watch.completed),
        "max_lag_seconds": round(worst, 1), "mean_lag_seconds": round(mean, 1), "max_ready_files": watch.max_ready,
        "archive_timeout": archive_timeout, "archive_failures": watch.failures, "samples": watch.samples,
    }
    print("\nload: %s" % json.dumps(figures))
    assert not watch.errors, "the archive watch could not sample: %s" % watch.errors[:3]
    assert bench["failed"] == 0 and rows == bench["processed"], (rows, bench)
    assert watch.completed, "pgbench completed no WAL segment in %d s" % load_seconds
    assert not waiting, "segments never seen archived: %s" % waiting[:10]
    assert not watch.failures, "archive_command failed for %s" % watch.failures
    assert worst < archive_timeout, (
        "archiving fell behind: a segment waited %.1f s (archive_timeout %d s; %d .ready files at most)" % (
            worst, archive_timeout, watch.max_ready))

    name = "load-%s" % RUN
    try:
        run, restored = pitr(tmp_path, name, lab["lab"]["pg_dir"], "restore", target_time)
        assert run.rc == 0, run
        copy = dict(postgres, login_port=int(restored["port"]))
        recovered = history_rows(copy)
        print("load: PITR to %s from repo1 (%s): recovered to %s, %d pgbench_history rows of %d" % (
            target_time, restored["backup"]["label"], restored["recovery_point"], recovered, rows))
        assert recovered == rows, "the PITR to %s recovered %d of %d committed pgbench transactions" % (
            target_time, recovered, rows)
        assert not faults.sql(copy, "SELECT to_regclass('load_marker_after_target') IS NOT NULL",
                              database=DATABASE)[0][0], "recovery went past its target time"
    finally:
        gone, _result = pitr(tmp_path, name, lab["lab"]["pg_dir"], "discard")
        assert gone.rc == 0, gone
