"""The process platform with real processes (python -c sleep loops) and pid files under
tmp_path, so the pid-file and signal rules are tested against the kernel, not a mock.
"""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import platform, platform_process
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError


# ---------------------------------------------------------------------------------------------
# process (real processes, private pid files)

SLEEPER = [sys.executable, "-c", "import time\nwhile True: time.sleep(1)"]
IGNORES_TERM = [sys.executable, "-c",
                "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n"
                "while True: time.sleep(1)"]


def process_driver(tmp_path, command="sleeper", **kwargs):
    command = SLEEPER if command == "sleeper" else command
    return platform_process.ProcessDriver("test", str(tmp_path / "pids" / "app.json"), command=command,
                                          log_file=str(tmp_path / "app.log"), timeout=10, **kwargs)


@pytest.fixture
def stray():
    """A process of this test that no pid file should make anyone signal."""
    child = subprocess.Popen(["sleep", "60"])
    yield child
    child.kill()
    child.wait()


def test_process_start_writes_the_labs_pid_format_then_stop_and_start_round_trip(tmp_path):
    driver = process_driver(tmp_path)
    started = platform.ensure(driver, "started")
    try:
        record = json.loads((tmp_path / "pids" / "app.json").read_text())
        assert list(record) == ["pid", "start_time", "argv"] and record["argv"] == SLEEPER
        with open("/proc/%d/stat" % record["pid"]) as handle:
            stat = handle.read()
        assert record["start_time"] == int(stat[stat.rindex(")") + 2:].split()[19])
        assert os.getpgid(record["pid"]) == record["pid"]          # own session, own group
        assert started["changed"] and started["replicas"] == 1
        assert not platform.ensure(process_driver(tmp_path), "started")["changed"]

        stopped = platform.ensure(process_driver(tmp_path), "stopped")
        assert stopped["changed"] and stopped["previous_replicas"] == 1
        assert not platform_process.pid_alive(record["pid"], record["start_time"])
        assert not (tmp_path / "pids" / "app.json").exists()
        assert json.loads((tmp_path / "pids" / "app.replicas.json").read_text())["replicas_before_stop"] == 1

        again = platform.ensure(process_driver(tmp_path), "stopped")
        assert not again["changed"] and again["previous_replicas"] == 1

        restarted = platform.ensure(process_driver(tmp_path), "started")
        assert restarted["changed"] and not (tmp_path / "pids" / "app.replicas.json").exists()
    finally:
        platform.ensure(process_driver(tmp_path), "stopped")


def test_process_restart_replaces_the_process(tmp_path):
    platform.ensure(process_driver(tmp_path), "started")
    first = json.loads((tmp_path / "pids" / "app.json").read_text())
    try:
        result = platform.ensure(process_driver(tmp_path), "restarted")
        second = json.loads((tmp_path / "pids" / "app.json").read_text())
        assert result["changed"] and second["pid"] != first["pid"]
        assert not platform_process.pid_alive(first["pid"], first["start_time"])
        assert platform_process.pid_alive(second["pid"], second["start_time"])
        assert not (tmp_path / "pids" / "app.replicas.json").exists()
    finally:
        platform.ensure(process_driver(tmp_path), "stopped")


def test_a_recycled_pid_is_never_signalled(tmp_path, stray):
    pid_file = tmp_path / "pids" / "app.json"
    pid_file.parent.mkdir()
    real_start = platform_process.proc_start_time(stray.pid)
    pid_file.write_text(json.dumps({"pid": stray.pid, "start_time": real_start - 1, "argv": SLEEPER}))
    result = platform.ensure(process_driver(tmp_path), "stopped")
    assert not result["changed"] and result["found"]["stale_pid_file"]
    time.sleep(0.1)
    assert stray.poll() is None


def test_a_pid_file_of_something_else_is_refused(tmp_path, stray):
    pid_file = tmp_path / "pids" / "app.json"
    pid_file.parent.mkdir()
    pid_file.write_text(json.dumps({"pid": stray.pid, "start_time": platform_process.proc_start_time(stray.pid),
                                    "argv": ["sleep", "60"]}))
    with pytest.raises(DRError) as err:
        platform.ensure(process_driver(tmp_path), "stopped")
    assert "belongs to something else: pid %d runs sleep 60" % stray.pid in str(err.value)
    assert stray.poll() is None


def test_a_pid_file_that_lies_about_its_argv_is_refused(tmp_path, stray):
    pid_file = tmp_path / "pids" / "app.json"
    pid_file.parent.mkdir()
    pid_file.write_text(json.dumps({"pid": stray.pid, "start_time": platform_process.proc_start_time(stray.pid),
                                    "argv": SLEEPER}))
    with pytest.raises(DRError) as err:
        platform.ensure(process_driver(tmp_path), "stopped")
    assert "but it runs sleep 60: refusing to signal it" in str(err.value)
    assert stray.poll() is None


def test_a_broken_pid_file_is_refused(tmp_path):
    pid_file = tmp_path / "pids" / "app.json"
    pid_file.parent.mkdir()
    pid_file.write_text("12345\n")
    with pytest.raises(DRError) as err:
        platform.ensure(process_driver(tmp_path), "status")
    assert "is not a pid record" in str(err.value)


def test_sigkill_after_the_grace_period(tmp_path):
    driver = process_driver(tmp_path, command=IGNORES_TERM, stop_grace_period=0.5)
    platform.ensure(driver, "started")
    deadline = time.monotonic() + 5
    while "ready" not in (tmp_path / "app.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    result = platform.ensure(process_driver(tmp_path, command=IGNORES_TERM, stop_grace_period=0.5), "stopped")
    assert any("SIGKILL after 0.5 s" in a for a in result["actions"]), result["actions"]


def test_no_command_and_too_many_replicas_are_clear_errors(tmp_path):
    with pytest.raises(DRError) as err:
        platform.ensure(process_driver(tmp_path, command=None), "started")
    assert str(err.value) == "app test (process): no command to start it with (auditron_dr_app.command, an argv list)"
    with pytest.raises(DRError) as err:
        platform.ensure(process_driver(tmp_path), "started", replicas=2)
    assert "the process driver runs at most 1" in str(err.value)


def test_a_port_taken_by_an_unrecorded_process_is_refused(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    url = "http://127.0.0.1:%d" % listener.getsockname()[1]
    try:
        with pytest.raises(DRError) as err:
            platform.ensure(process_driver(tmp_path, url=url), "started")
        assert "is already taken by a process that pid file" in str(err.value)
        with pytest.raises(DRError) as err:
            platform.ensure(process_driver(tmp_path, url=url), "stopped")
        assert "refusing to guess which process to stop" in str(err.value)
    finally:
        listener.close()


def test_an_app_that_dies_at_start_shows_its_log(tmp_path):
    crash = [sys.executable, "-c", "import sys; print('config file missing', flush=True); sys.exit(3)"]
    with pytest.raises(DRError) as err:
        platform.ensure(process_driver(tmp_path, command=crash, url="http://127.0.0.1:9"), "started")
    assert "exited during start-up: config file missing" in str(err.value)


def test_signals_go_to_the_process_group_the_app_leads(tmp_path):
    # the app's own child (a worker) goes with it
    parent = [sys.executable, "-c", "import subprocess, time\nsubprocess.Popen(['sleep', '60'])\n"
              "print('forked', flush=True)\nwhile True: time.sleep(1)"]
    driver = process_driver(tmp_path, command=parent)
    platform.ensure(driver, "started")
    record = json.loads((tmp_path / "pids" / "app.json").read_text())
    deadline = time.monotonic() + 5
    while "forked" not in (tmp_path / "app.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    children = subprocess.run(["pgrep", "-g", str(record["pid"])], capture_output=True, text=True,
                              check=False).stdout.split()
    assert len(children) == 2
    platform.ensure(process_driver(tmp_path, command=parent), "stopped")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = subprocess.run(["pgrep", "-g", str(record["pid"])], capture_output=True, text=True,
                              check=False).stdout.split()
        if not left:
            break
        time.sleep(0.05)
    assert not left
