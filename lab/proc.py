"""Start and stop the lab's processes, by pid, and only those.

A pid file records the pid and the process start time from /proc: a pid the kernel has since
given to another process is never signalled. PostgreSQL clusters are the exception: the
cluster's own postmaster.pid is the record, because playbooks stop and start clusters too.
"""

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from . import config


class LabError(Exception):
    """One line that says what is wrong; the CLI prints it and exits 1."""


def _start_time(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] == b"Z":
        return None
    return int(fields[19])


def started_at(pid):
    """When the live process `pid` started, in seconds since the epoch; None when there is none.
    (/proc gives clock ticks since boot; /proc/stat the boot time.)"""
    ticks = _start_time(pid)
    if ticks is None:
        return None
    try:
        with open("/proc/stat") as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith("btime "))
    except (OSError, StopIteration, ValueError):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def alive(pid, start_time=None):
    now = _start_time(pid)
    return now is not None and (start_time is None or now == start_time)


def _drop_privileges_kwargs():
    if not config.running_as_root():
        return {}
    _name, uid, gid, _home = config.server_user()
    return {"user": uid, "group": gid, "extra_groups": []}


def server_env(extra=None):
    name, _uid, _gid, home = config.server_user()
    env = {
        "PATH": f"{config.pg_bin_dir()}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": home,
        "USER": name,
        "LOGNAME": name,
        "LANG": "C.UTF-8",
        "TZ": "UTC",
    }
    env.update(extra or {})
    return env


def run_as_server_user(argv, check=True, env=None, input_text=None, timeout=300):
    """Run a command as the lab's server user and return its CompletedProcess."""
    result = subprocess.run(
        argv, env=server_env(env), cwd=str(config.LAB_DIR), capture_output=True, text=True, check=False,
        input=input_text, timeout=timeout, **_drop_privileges_kwargs())
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise LabError(f"{Path(argv[0]).name} failed: {detail[-1] if detail else 'exit ' + str(result.returncode)}")
    return result


def pid_file(name):
    return config.PIDS_DIR / f"{name}.json"


def read_pid(name):
    path = pid_file(name)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record


def running(name):
    record = read_pid(name)
    return bool(record) and alive(record["pid"], record["start_time"])


def spawn(name, argv, env=None, cwd=None):
    """Start a long-running server detached from the caller, as the server user."""
    config.PIDS_DIR.mkdir(parents=True, exist_ok=True)
    config.LOGS_DIR.mkdir(parents=True, exist_ok=True)
    log_path = config.LOGS_DIR / f"{name}.log"
    with open(log_path, "ab") as log:
        os.fchmod(log.fileno(), 0o600)
        if config.running_as_root():
            _n, uid, gid, _h = config.server_user()
            os.fchown(log.fileno(), uid, gid)
        proc = subprocess.Popen(
            argv, env=server_env(env), cwd=str(cwd or config.LAB_DIR), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            **_drop_privileges_kwargs())
    start_time = _start_time(proc.pid)
    deadline = time.monotonic() + 0.5
    while start_time is None and time.monotonic() < deadline:
        time.sleep(0.01)
        start_time = _start_time(proc.pid)
    pid_file(name).write_text(json.dumps({"pid": proc.pid, "start_time": start_time, "argv": argv}))
    return proc


def log_tail(name, lines=3):
    try:
        text = (config.LOGS_DIR / f"{name}.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def stop(name, sig=signal.SIGTERM, timeout=15.0):
    """Stop one recorded process; True when something was stopped."""
    record = read_pid(name)
    if not record:
        return False
    pid, start = record["pid"], record["start_time"]
    stopped = False
    if alive(pid, start):
        stopped = True
        signal_and_wait(pid, start, sig, timeout)
    pid_file(name).unlink(missing_ok=True)
    return stopped


def signal_and_wait(pid, start_time, sig, timeout):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid, start_time):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while alive(pid, start_time):
        time.sleep(0.05)


def kill9(name):
    record = read_pid(name)
    if record and alive(record["pid"], record["start_time"]):
        os.kill(record["pid"], signal.SIGKILL)
        while alive(record["pid"], record["start_time"]):
            time.sleep(0.02)
        return True
    return False


def port_taken(host, port, kind=socket.SOCK_STREAM):
    sock = socket.socket(socket.AF_INET, kind)
    # SO_REUSEADDR: connections in TIME_WAIT from a server that just stopped do not count,
    # a listening socket still does (servers set the same option).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        return True
    finally:
        sock.close()
    return False


def port_answers(host, port, timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(what, probe, timeout, pid_name=None):
    """Poll probe() until it is true; fail early, with the log's last lines, if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        if pid_name and not running(pid_name):
            raise LabError(f"{what} exited during start-up: {log_tail(pid_name) or 'no log'}")
        time.sleep(0.1)
    raise LabError(f"{what} did not answer within {int(timeout)} s: {log_tail(pid_name) if pid_name else ''}".rstrip(": "))
