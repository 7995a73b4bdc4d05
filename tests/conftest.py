"""Shared test plumbing.

- Puts .collections (where ansible_collections/auditron/dr links to this repository) and the
  repository itself (for the `lab` package) on sys.path, so tests import the engine as
  `ansible_collections.auditron.dr.plugins.module_utils.<name>`, as modules do.
- `lab`: the lab of real servers for the session. Whatever it had to start, it stops at the
  end; a lab that was already running is left running (AUDITRON_KEEP_LAB=1 keeps it anyway).
- `run_playbook`: ansible-playbook against inventories/local, as a user runs it.
"""

import faulthandler
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def lab_of_this_worker(environ):
    """`make test` runs pytest-xdist workers, and each needs a lab of its own: scenario 2
    kills whole sites, and a fault test cuts off an object store. Worker gw0 keeps the lab it
    was given (.lab, or AUDITRON_LAB_DIR); worker gwN gets a sibling directory `<lab>-gwN` with
    every port 200*N higher. Set here, before any test module imports `lab` (it reads these
    once), and passed on to every child: ansible-playbook reads AUDITRON_LAB_JSON, molecule
    AUDITRON_LAB_DIR_NAME."""
    worker = environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not worker[2:].isdigit() or worker == "gw0":
        if not environ.get("AUDITRON_LAB_DIR") or environ.get("AUDITRON_LAB_JSON"):
            return {}
        lab_dir = Path(environ["AUDITRON_LAB_DIR"])  # a lab elsewhere (the benchmarks' own)
        return {"AUDITRON_LAB_DIR_NAME": lab_dir.name, "AUDITRON_LAB_JSON": str(lab_dir / "lab.json")}
    index = int(worker[2:])
    base = Path(environ.get("AUDITRON_LAB_DIR") or REPO / ".lab")
    lab_dir = base.with_name("%s-%s" % (base.name, worker))
    offset = int(environ.get("AUDITRON_LAB_PORT_OFFSET") or 0) + 200 * index
    return {"AUDITRON_LAB_DIR": str(lab_dir), "AUDITRON_LAB_DIR_NAME": lab_dir.name,
            "AUDITRON_LAB_JSON": str(lab_dir / "lab.json"), "AUDITRON_LAB_PORT_OFFSET": str(offset)}


os.environ.update(lab_of_this_worker(os.environ))

for entry in (str(REPO / ".collections"), str(REPO)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

VENV_BIN = REPO / ".venv" / "bin"


def ensure_seeded(lab_json):
    """A fresh lab has empty databases: seed the primary once (AUDITRON_TEST_SCALE, default 1)."""
    import psycopg2  # pylint: disable=import-outside-toplevel
    from lab import seed  # pylint: disable=import-outside-toplevel
    pg = lab_json["sites"]["primary"]["postgres"]
    conn = psycopg2.connect(host=pg["host"], port=pg["port"], user=pg["user"], password=pg["password"],
                            dbname=pg["database"], connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("""SELECT to_regclass('public."Invoice"') IS NOT NULL""")
            seeded = cur.fetchone()[0]
    finally:
        conn.close()
    if not seeded:
        seed.seed(lab_json, "primary", os.environ.get("AUDITRON_TEST_SCALE", "1"))


@pytest.fixture(scope="session")
def lab():
    from lab import servers  # pylint: disable=import-outside-toplevel
    started = servers.up(quiet=True)
    try:
        lab_json = servers.load_lab_json()
        ensure_seeded(lab_json)
        yield lab_json
    finally:
        if started and not os.environ.get("AUDITRON_KEEP_LAB"):
            servers.stop_started(started)


@pytest.fixture(scope="session")
def key_file(tmp_path_factory):
    """A backup key file (key_source file) for the session's tests."""
    from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import generate_key_file  # pylint: disable=import-outside-toplevel
    path = str(tmp_path_factory.mktemp("keys") / "backup.key")
    generate_key_file(path)
    return path


# `make test` hands whole files to its workers (--dist loadfile --no-loadscope-reorder), in
# collection order (a worker is sent its next file when at most two tests of its current files
# are left, xdist's LoadScopeScheduling._reschedule). The longest files go
# first, so that the workers end at about the same time instead of one starting scenario 2 when
# the others are done. The order follows the files' totals in a two-worker run of 2026-12-03
# (reports/pytest-junit.xml: scenario 2 732 s, molecule 320, quality 201, scenarios 1 and 3 186,
# verify_backups 175, the secrets scan 147, the drill 122, pgbackrest 115, schedule 106, bad
# input 93); files not listed follow in their usual order.
LONGEST_FILES_FIRST = (
    "tests/integration/test_scenario_2.py",
    # Added 2026-12-08, each about as long as scenario 2 under load (failovers and failbacks), so
    # split in two files that two workers run side by side.
    "tests/faults/test_rerun.py",
    "tests/faults/test_journal_and_lock.py",
    "tests/integration/test_molecule.py",
    "tests/test_collection_quality.py",
    "tests/integration/test_scenarios_1_3.py",
    "tests/integration/test_verify_backups.py",
    "tests/security/test_no_secret_in_output.py",
    "tests/integration/test_dr_drill.py",
    "tests/integration/test_pgbackrest.py",
    "tests/unit/test_schedule_role.py",
    "tests/faults/test_bad_input.py",
)


def pytest_collection_modifyitems(session, config, items):  # pylint: disable=unused-argument
    rank = {path: index for index, path in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))  # stable: order in a file kept


# The fault table (tests/faults/table.py). Rows come in the reports of fault tests, from this
# process or from pytest-xdist workers alike; the controller prints the table.
FAULT_ROWS = []
SESSION_STARTED = time.monotonic()


def pytest_runtest_logreport(report):
    from tests.faults import table  # pylint: disable=import-outside-toplevel
    for name, value in report.user_properties:
        if name == table.ROW_PROPERTY:
            FAULT_ROWS.append(value)


def pytest_terminal_summary(terminalreporter, config):
    if hasattr(config, "workerinput"):
        return  # an xdist worker: its rows went to the controller
    from tests.faults import table  # pylint: disable=import-outside-toplevel
    table.summarize(terminalreporter, config, FAULT_ROWS, SESSION_STARTED)
    report_worker_crashes(terminalreporter)


# A worker that dies ("worker 'gw3' crashed while running ...") takes its last words with it:
# xdist reports only that it is gone. Each worker has faulthandler write the Python stacks of a
# fatal signal (SIGSEGV, SIGABRT, ...) or of SIGTERM/SIGHUP (then handled as before) to a file
# of its own, and the controller prints those files, and what the kernel said about killed
# processes (the OOM killer), after the run. Seen once, in CI on 2026-12-07, with no trace.
CRASH_DIR = REPO / "reports"
CRASH_FILES = []  # kept open for the worker's life: faulthandler writes to the descriptor


@pytest.hookimpl(trylast=True)  # after pytest's own faulthandler plugin, which points at stderr
def pytest_configure(config):
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    CRASH_DIR.mkdir(exist_ok=True)
    if not worker:
        for old in CRASH_DIR.glob("worker-*.crash"):
            old.unlink()
        return
    handle = open(CRASH_DIR / ("worker-%s.crash" % worker), "a")  # pylint: disable=consider-using-with
    CRASH_FILES.append(handle)
    faulthandler.enable(file=handle, all_threads=True)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        faulthandler.register(signum, file=handle, all_threads=True, chain=True)


def report_worker_crashes(terminalreporter):
    crashed = [report.nodeid for report in terminalreporter.stats.get("failed", [])
               if "crashed while running" in str(report.longrepr)]
    crashes = [(path.name, path.read_text(errors="replace")) for path in sorted(CRASH_DIR.glob("worker-*.crash"))]
    crashes = [(name, text) for name, text in crashes if text.strip()]
    if not crashed and not crashes:
        return
    terminalreporter.section("worker crashes")
    terminalreporter.write_line("crashed while running: %s" % (", ".join(crashed) or "-"))
    for name, text in crashes:
        terminalreporter.write_line("%s:" % name)
        terminalreporter.write_line(text[-6000:])
    if not crashes:
        terminalreporter.write_line("no worker wrote a stack: the process was sent SIGKILL (which cannot be "
                                    "caught) or called exit")
    try:
        kernel = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        kernel = ""
    said = [line for line in kernel.splitlines()
            if any(word in line.lower() for word in ("out of memory", "killed process", "segfault", "oom"))]
    terminalreporter.write_line("kernel: %s" % ("\n".join(said[-20:]) if said else "nothing about killed processes"))


class PlaybookRun:
    def __init__(self, completed, report_dir, log_path=None):
        self.rc = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr
        self.report_dir = report_dir
        self.log_path = log_path

    @property
    def output(self):
        return self.stdout + self.stderr

    def __repr__(self):
        # The failing task is usually far from the end (rescue and teardown run after it): point
        # at the whole output, kept beside the test's reports.
        return "PlaybookRun(rc=%d, full output in %s)\n%s" % (self.rc, self.log_path, self.output[-6000:])


def ansible_env(extra=None):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "PATH": "%s:%s" % (VENV_BIN, env.get("PATH", "")),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        "PYTHONWARNINGS": "ignore",
    })
    env.update(extra or {})
    return env


def ansible_playbook(playbook, report_dir, extra_vars=None, check=False, inventory=None, args=(), env=None,
                     timeout=900):
    """ansible-playbook against inventories/local (or `inventory`), as a user runs it; `playbook`
    relative to playbooks/ or absolute. The timeline callback writes its reports to report_dir."""
    playbook = str(playbook)
    if not os.path.isabs(playbook):
        playbook = str(REPO / "playbooks" / playbook)
    command = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory or REPO / "inventories" / "local"), playbook]
    if extra_vars:
        command += ["-e", json.dumps(extra_vars)]
    if check:
        command.append("--check")
    command += list(args)
    extra_env = {"AUDITRON_DR_REPORT_DIR": str(report_dir)}
    extra_env.update(env or {})
    return subprocess.run(command, cwd=str(REPO), env=ansible_env(extra_env), capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture
def run_playbook(tmp_path):
    """run_playbook("preflight.yml", extra_vars={...}, check=False, inventory=None, args=[])."""

    def run(playbook, extra_vars=None, check=False, inventory=None, args=(), env=None, timeout=900):
        report_dir = tmp_path / "reports"
        completed = ansible_playbook(playbook, report_dir, extra_vars=extra_vars, check=check, inventory=inventory,
                                     args=args, env=env, timeout=timeout)
        log_path = tmp_path / ("%s-%d.log" % (Path(playbook).stem, len(list(tmp_path.glob("*.log")))))
        log_path.write_text(completed.stdout + completed.stderr)
        return PlaybookRun(completed, report_dir, log_path)

    return run
