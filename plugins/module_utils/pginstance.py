# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One PostgreSQL data directory under pg_ctl: start, stop, settings, recovery progress.

For the lab and for hosts where PostgreSQL is not under systemd: scratch clusters that a
restore made, a restored copy of production checked beside it, a DR cluster started by hand.

- Settings go into a clearly marked block at the end of postgresql.auto.conf (read last, so
  they win over postgresql.conf and its includes): a restored copy of the primary must not
  try the primary's port or socket, and a scratch copy must not archive.
- `port: auto` picks a free port in a range (default 55440-55499, the lab's scratch range)
  and keeps it on later runs.
- A data directory is removed only when it holds the marker file this module wrote when told
  the cluster is a scratch one (`scratch: true`): nothing is destroyed without that proof.

Commands run as the current user, which must own the data directory (pg_ctl refuses root).
No Ansible import here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import errno
import json
import os
import re
import shutil
import socket
import subprocess
import time

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, format_time, utc_now

MARKER_NAME = "auditron-scratch"
AUTO_CONF = "postgresql.auto.conf"
BLOCK_BEGIN = "# BEGIN auditron.dr pg_instance settings (managed by auditron.dr.pg_instance; edits are replaced)"
BLOCK_END = "# END auditron.dr pg_instance settings"
DEFAULT_PORT_RANGE = (55440, 55499)
STATES = ("started", "stopped", "restarted", "absent")
WAIT_FOR = ("none", "ready", "promoted")
STOP_MODES = ("smart", "fast", "immediate")

_SETTING_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=?\s*(.*?)\s*$")
_LAST_XACT_RE = re.compile(r"last completed transaction was at log time (\d{4}-\d{2}-\d{2} [0-9:.]+(?:[+-]\d{2}(?::?\d{2})?)?)")
_BIND_FAILURE = ("could not bind", "Address already in use", "could not create any TCP/IP sockets",
                 "could not create lock file", "is another postmaster")


# ---------------------------------------------------------------------------------------------
# postgresql.auto.conf: the managed block

def render_value(value):
    """A postgresql.conf value: numbers bare, booleans on/off, text quoted (quotes and
    backslashes escaped)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value)
    return "'%s'" % text.replace("\\", "\\\\").replace("'", "''")


def parse_value(text):
    text = text.split("#", 1)[0].strip() if not text.strip().startswith("'") else text.strip()
    if text.startswith("'"):
        out = []
        index = 1
        while index < len(text):
            char = text[index]
            if char == "\\" and index + 1 < len(text):
                out.append(text[index + 1])
                index += 2
                continue
            if char == "'":
                if text[index + 1:index + 2] == "'":
                    out.append("'")
                    index += 2
                    continue
                break
            out.append(char)
            index += 1
        return "".join(out)
    return text


def split_block(text):
    """(lines before, block settings {name: raw value text}, lines after) of postgresql.auto.conf."""
    lines = text.splitlines()
    if BLOCK_BEGIN not in lines:
        return lines, None, []
    start = lines.index(BLOCK_BEGIN)
    end = lines.index(BLOCK_END, start) if BLOCK_END in lines[start:] else len(lines) - 1
    block = {}
    for line in lines[start + 1:end]:
        match = _SETTING_RE.match(line)
        if match and not line.lstrip().startswith("#"):
            block[match.group(1).lower()] = match.group(2)
    return lines[:start], block, lines[end + 1:]


def managed_settings(text):
    """The settings of the managed block, values unquoted."""
    _before, block, _after = split_block(text)
    return dict((k, parse_value(v)) for k, v in (block or {}).items())


def apply_settings(text, settings):
    """postgresql.auto.conf text with the managed block holding exactly `settings`.

    The block goes last, so it wins. A managed name also set elsewhere in the file (ALTER SYSTEM
    drops comments, and with them our markers, when it rewrites the file) is moved into the block.
    """
    before, _block, after = split_block(text)
    names = set(k.lower() for k in settings)
    kept = []
    for line in before + after:
        match = _SETTING_RE.match(line)
        if match and not line.lstrip().startswith("#") and match.group(1).lower() in names:
            continue
        kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    if not settings:
        return "\n".join(kept) + ("\n" if kept else "")
    block = [BLOCK_BEGIN] + ["%s = %s" % (name, render_value(settings[name])) for name in sorted(settings)]
    block.append(BLOCK_END)
    return "\n".join(kept + block) + "\n"


def _read(path, default=""):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError) as exc:
        if exc.errno == errno.ENOENT:
            return default
        raise DRError("%s cannot be read: %s" % (path, exc.strerror or exc))


def _write_atomically(path, text, mode=0o600):
    tmp = "%s.auditron-tmp" % path
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except (IOError, OSError) as exc:
        raise DRError("%s cannot be written: %s" % (path, exc.strerror or exc))


# ---------------------------------------------------------------------------------------------
# postmaster.pid, ports, the server log

def read_postmaster_pid(pg_path):
    """postmaster.pid as a dict (pid, port, socket_dir, listen, status), or None."""
    lines = _read(os.path.join(pg_path, "postmaster.pid")).splitlines()
    if not lines:
        return None
    try:
        pid = int(lines[0].strip())
    except ValueError:
        return None

    def line(number):
        return lines[number].strip() if len(lines) > number else ""

    port, started = line(3), line(2)
    return {"pid": pid, "data_dir": line(1), "port": int(port) if port.isdigit() else None,
            "socket_dir": line(4) or None, "listen": line(5) or None, "status": line(7) or None,
            "started": int(started) if started.isdigit() else None}


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def process_started_at(pid):
    """When process `pid` started, in seconds since the epoch (/proc), or None (no such process,
    or no /proc to ask)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            stat = handle.read()
        with open("/proc/stat") as handle:
            boot = [int(row.split()[1]) for row in handle if row.startswith("btime ")][0]
    except (IOError, OSError, IndexError, ValueError):
        return None
    # The command name (field 2) may hold spaces and parentheses: count after the last ')'.
    ticks = int(stat[stat.rindex(b")") + 2:].split()[19])
    return boot + ticks / float(os.sysconf("SC_CLK_TCK"))


def running_postmaster(pg_path):
    """postmaster.pid's contents when its postmaster runs, else None.

    A postmaster that died with SIGKILL or a power loss leaves the file behind, and its pid is
    soon another process's: the pid counts only when that process started when the file says the
    postmaster did (within a few seconds); a stranger is never taken for the server (or signalled
    as one by pg_ctl)."""
    info = read_postmaster_pid(pg_path)
    if not info or not pid_alive(info["pid"]):
        return None
    started = process_started_at(info["pid"])
    if info["started"] is not None and started is not None and abs(started - info["started"]) > 5:
        return None
    return info


def parse_port_range(text):
    """'55440-55499' -> (55440, 55499)."""
    if isinstance(text, (list, tuple)) and len(text) == 2:
        low, high = text
    else:
        match = re.match(r"^\s*(\d+)\s*-\s*(\d+)\s*$", str(text or ""))
        if not match:
            raise DRError("port_range %r is not LOW-HIGH, for example 55440-55499" % (text,))
        low, high = match.groups()
    low, high = int(low), int(high)
    if not 1024 <= low <= high <= 65535:
        raise DRError("port_range %d-%d must lie within 1024-65535, low first" % (low, high))
    return low, high


def port_free(port, host="127.0.0.1"):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except (OSError, socket.error):
        return False
    finally:
        sock.close()
    return True


def ports_claimed_nearby(pg_path):
    """Ports that sibling clusters (<parent of parent>/*/data) keep in their managed block: a
    stopped scratch cluster still owns its port."""
    claimed = set()
    root = os.path.dirname(os.path.dirname(os.path.abspath(pg_path)))
    try:
        names = os.listdir(root)
    except OSError:
        return claimed
    own = os.path.abspath(pg_path)
    for name in names:
        data = os.path.join(root, name, "data")
        if os.path.abspath(data) == own:
            continue
        try:
            port = managed_settings(_read(os.path.join(data, AUTO_CONF))).get("port")
        except DRError:
            continue
        if port and str(port).isdigit():
            claimed.add(int(port))
    return claimed


def pick_port(port_range, host="127.0.0.1", taken=(), socket_dir=None):
    low, high = port_range
    for port in range(low, high + 1):
        if port in taken:
            continue
        if socket_dir and os.path.exists(os.path.join(socket_dir, ".s.PGSQL.%d.lock" % port)):
            continue
        if port_free(port, host):
            return port
    raise DRError("no free port in %d-%d on %s" % (low, high, host))


def parse_pg_timestamp(text):
    """'2026-11-24 01:58:12.123456+00' (PostgreSQL's output) -> ISO 8601 UTC with Z."""
    text = (text or "").strip()
    if not text:
        return None
    match = re.match(r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(\.\d+)?\s*([+-]\d{2})(?::?(\d{2}))?$", text)
    if not match:
        return None
    day, clock, fraction, hours, minutes = match.groups()
    moment = datetime.datetime.strptime("%s %s" % (day, clock), "%Y-%m-%d %H:%M:%S")
    if fraction:
        moment = moment.replace(microsecond=int(fraction[1:7].ljust(6, "0")))
    sign = 1 if hours[0] == "+" else -1
    offset = datetime.timedelta(hours=int(hours[1:]), minutes=int(minutes or 0))
    moment = moment.replace(tzinfo=datetime.timezone(sign * offset))
    return format_time(moment)


def last_completed_transaction(log_text):
    """The last 'last completed transaction was at log time ...' of a server log, as ISO UTC."""
    found = _LAST_XACT_RE.findall(log_text or "")
    return parse_pg_timestamp(found[-1]) if found else None


def log_problems(log_text, limit=3):
    """The last FATAL/PANIC/ERROR lines of a server log."""
    lines = [line.strip() for line in (log_text or "").splitlines()
             if " FATAL: " in line or " PANIC: " in line or " ERROR: " in line]
    return lines[-limit:]


def _tail(path, offset=0, max_bytes=262144):
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            handle.seek(max(offset, size - max_bytes) if size > offset else 0)
            return handle.read().decode("utf-8", "replace")
    except (IOError, OSError):
        return ""


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


# ---------------------------------------------------------------------------------------------
# Running pg_ctl and psql

def _subprocess_runner(argv, env, timeout):
    try:
        completed = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise DRError("%s is not installed" % argv[0])
    except subprocess.TimeoutExpired:
        return 124, "", "timed out after %s s" % timeout
    return completed.returncode, completed.stdout, completed.stderr


def find_bin_dir(pg_path, bin_dir=None):
    """bin_dir if given, else the Debian/Ubuntu directory of the cluster's major version, else PATH."""
    if bin_dir:
        return bin_dir
    version = _read(os.path.join(pg_path, "PG_VERSION")).strip()
    for candidate in ("/usr/lib/postgresql/%s/bin" % version, "/usr/pgsql-%s/bin" % version):
        if version and os.path.exists(os.path.join(candidate, "pg_ctl")):
            return candidate
    return ""


class Instance(object):
    """pg_ctl and psql for one data directory. `runner(argv, env, timeout) -> (rc, out, err)`."""

    def __init__(self, pg_path, bin_dir=None, log_file=None, login_user="postgres", login_password=None,
                 db="postgres", runner=None):
        self.pg_path = os.path.normpath(pg_path)
        self.bin_dir = find_bin_dir(self.pg_path, bin_dir)
        self.log_file = log_file or os.path.join(os.path.dirname(self.pg_path), "postgres.log")
        self.login_user = login_user or "postgres"
        self.login_password = login_password
        self.db = db or "postgres"
        self.runner = runner or _subprocess_runner

    def binary(self, name):
        return os.path.join(self.bin_dir, name) if self.bin_dir else name

    def env(self):
        env = dict(os.environ)
        env.update({"LC_ALL": "C", "PGTZ": "UTC", "PGDATESTYLE": "ISO", "PGCONNECT_TIMEOUT": "5",
                    "PGAPPNAME": "auditron.dr pg_instance"})
        if self.login_password:
            env["PGPASSWORD"] = self.login_password
        return env

    def start_argv(self, timeout):
        return [self.binary("pg_ctl"), "-D", self.pg_path, "-l", self.log_file, "-w", "-t", str(int(timeout)),
                "start"]

    def stop_argv(self, mode, timeout):
        return [self.binary("pg_ctl"), "-D", self.pg_path, "-m", mode, "-w", "-t", str(int(timeout)), "stop"]

    def reload_argv(self):
        return [self.binary("pg_ctl"), "-D", self.pg_path, "reload"]

    def psql_argv(self, sql, postmaster):
        host = postmaster.get("socket_dir") or postmaster.get("listen") or "127.0.0.1"
        if host in ("*", "0.0.0.0"):
            host = "127.0.0.1"
        return [self.binary("psql"), "-X", "-q", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1", "-h", host,
                "-p", str(postmaster["port"]), "-U", self.login_user, "-d", self.db, "-c", sql]

    def pg_ctl(self, argv, timeout):
        rc, out, err = self.runner(argv, self.env(), timeout + 15)
        return rc, (out or "") + (err or "")

    def query(self, sql, postmaster):
        rc, out, err = self.runner(self.psql_argv(sql, postmaster), self.env(), 30)
        if rc != 0:
            return None, (err or out or "").strip().splitlines()[-1:] or ["psql exit %d" % rc]
        return [row.split("|") for row in (out or "").strip().splitlines() if row], None


STATUS_SQL = (
    "SELECT pg_is_in_recovery(), "
    "coalesce(to_char(pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), ''), "
    "CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint()) "
    "ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END, "
    "coalesce(pg_last_wal_replay_lsn()::text, ''), "
    "CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END, "
    "(SELECT system_identifier::text FROM pg_control_system())")


def server_status(instance, postmaster):
    """What the running server says about itself, or (None, why not)."""
    rows, error = instance.query(STATUS_SQL, postmaster)
    if rows is None:
        return None, error[0] if error else "no answer"
    row = rows[0]
    replay_time = parse_pg_timestamp(row[1] + "+00") if row[1] else None
    return {"in_recovery": row[0] == "t", "recovery_point": replay_time, "timeline": int(row[2]) if row[2] else None,
            "replay_lsn": row[3] or None, "recovery_paused": row[4] == "t", "system_id": row[5]}, None


# ---------------------------------------------------------------------------------------------
# The marker of a scratch cluster

def marker_path(pg_path):
    return os.path.join(pg_path, MARKER_NAME)


def read_marker(pg_path):
    text = _read(marker_path(pg_path), default=None)
    if text is None:
        return None
    try:
        marker = json.loads(text)
    except ValueError:
        return None
    return marker if isinstance(marker, dict) else None


def marker_matches(pg_path, marker):
    return bool(marker) and marker.get("created_by") == "auditron.dr.pg_instance" and \
        os.path.realpath(marker.get("path") or "") == os.path.realpath(pg_path)


def write_marker(pg_path, socket_dir=None, log_file=None):
    marker = {"created_by": "auditron.dr.pg_instance", "path": os.path.realpath(pg_path),
              "created": format_time(utc_now()), "socket_dir": socket_dir, "log_file": log_file,
              "note": "A scratch cluster: auditron.dr.pg_instance state=absent may remove this directory."}
    _write_atomically(marker_path(pg_path), json.dumps(marker, indent=2) + "\n", 0o600)
    return marker


# ---------------------------------------------------------------------------------------------
# The one entry point

def manage(pg_path, state="started", settings=None, port=None, port_range=DEFAULT_PORT_RANGE, socket_dir=None,
           scratch=False, wait_for=None, timeout=300, bin_dir=None, log_file=None, stop_mode="fast", stop_escalate=False,
           login_user="postgres", login_password=None, db="postgres", check_mode=False, runner=None,
           poll_interval=0.5, is_root=None):
    """Bring one data directory to `state`; see the module documentation for the options."""
    if state not in STATES:
        raise DRError("state %r is not one of %s" % (state, ", ".join(STATES)))
    if stop_mode not in STOP_MODES:
        raise DRError("stop_mode %r is not one of %s" % (stop_mode, ", ".join(STOP_MODES)))
    if not pg_path or not os.path.isabs(pg_path):
        raise DRError("pg_path %r must be an absolute path" % (pg_path,))
    pg_path = os.path.normpath(pg_path)
    instance = Instance(pg_path, bin_dir, log_file, login_user, login_password, db, runner)
    result = {"changed": False, "pg_path": pg_path, "state": state, "actions": [], "log_file": instance.log_file}
    if state == "absent":
        return _remove(instance, result, stop_mode, timeout, check_mode)
    if not os.path.exists(os.path.join(pg_path, "PG_VERSION")):
        raise DRError("pg_path %s holds no PostgreSQL cluster (no PG_VERSION)" % pg_path)
    if wait_for is None:
        wait_for = "ready" if state in ("started", "restarted") else "none"
    if wait_for not in WAIT_FOR:
        raise DRError("wait_for %r is not one of %s" % (wait_for, ", ".join(WAIT_FOR)))
    if is_root is None:
        is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if is_root:
        raise DRError("pg_instance runs pg_ctl, which PostgreSQL refuses to run as root: run the task with "
                      "become_user set to the owner of %s" % pg_path)

    # -- settings ------------------------------------------------------------------------------
    auto_conf = os.path.join(pg_path, AUTO_CONF)
    before_text = _read(auto_conf)
    current = managed_settings(before_text)
    wanted = dict((str(k).lower(), v) for k, v in (settings or {}).items())
    postmaster = running_postmaster(pg_path)
    auto_port = str(port).strip().lower() == "auto" if port is not None else False
    port_range = parse_port_range(port_range) if not isinstance(port_range, tuple) else port_range
    if socket_dir:
        wanted["unix_socket_directories"] = socket_dir
    if auto_port:
        wanted["port"] = _auto_port(pg_path, current, postmaster, port_range, socket_dir)
    elif port is not None and str(port).strip():
        if not str(port).strip().isdigit():
            raise DRError("port %r is neither a number nor auto" % (port,))
        wanted["port"] = int(port)
    desired_text = apply_settings(before_text, wanted) if (wanted or current) else before_text
    if (settings is None and port is None and not socket_dir) and current:
        desired_text = before_text  # no settings asked for: leave the block as it is
    settings_changed = desired_text != before_text
    if settings_changed:
        result["actions"].append("write settings")
        result["diff"] = {"before": _block_text(before_text), "after": _block_text(desired_text),
                          "before_header": "%s (managed block)" % auto_conf,
                          "after_header": "%s (managed block)" % auto_conf}
    if socket_dir and not os.path.isdir(socket_dir):
        result["actions"].append("create socket directory %s" % socket_dir)
    marker = read_marker(pg_path)
    if scratch and not marker_matches(pg_path, marker):
        result["actions"].append("mark as scratch")

    # -- what pg_ctl must do -----------------------------------------------------------------
    running = postmaster is not None
    if state == "stopped":
        if running:
            result["actions"].append("stop (%s)" % stop_mode)
    elif state == "restarted":
        result["actions"].append("restart" if running else "start")
    elif not running:
        result["actions"].append("start")
    elif settings_changed:
        result["actions"].append("reload")
    result["changed"] = bool(result["actions"])
    if check_mode:
        result["msg"] = ("would " + ", ".join(result["actions"])) if result["actions"] else "nothing to do"
        result.update(_describe(instance, postmaster, wanted.get("port")))
        return result

    if socket_dir and not os.path.isdir(socket_dir):
        try:
            os.makedirs(socket_dir, 0o700)
        except OSError as exc:
            raise DRError("socket directory %s cannot be created: %s" % (socket_dir, exc.strerror or exc))
    if settings_changed:
        _write_atomically(auto_conf, desired_text, 0o600)
    if scratch and not marker_matches(pg_path, marker):
        write_marker(pg_path, socket_dir, instance.log_file)

    if state == "stopped":
        if running:
            result["stop_mode_used"] = _stop(instance, stop_mode, timeout, escalate=stop_escalate)
        result.update(_describe(instance, None, wanted.get("port")))
        result["msg"] = "stopped" if running else "already stopped"
        return result
    if state == "restarted" and running:
        _stop(instance, stop_mode, timeout)
        running = False
    if running and settings_changed:
        rc, output = instance.pg_ctl(instance.reload_argv(), 30)
        if rc != 0:
            raise DRError("pg_ctl reload of %s failed: %s" % (pg_path, output.strip().splitlines()[-1:]))
        time.sleep(0.3)
        rows, _error = instance.query("SELECT name FROM pg_settings WHERE pending_restart", postmaster)
        if rows:
            result["actions"].append("restart (pending: %s)" % ", ".join(r[0] for r in rows))
            _stop(instance, stop_mode, timeout)
            running = False
    deadline = time.monotonic() + timeout
    if not running:
        postmaster = _start(instance, deadline, auto_port, pg_path, wanted, port_range, socket_dir, result)
    else:
        postmaster = running_postmaster(pg_path)
    result["progress"] = []
    if wait_for != "none":
        _wait(instance, wait_for, deadline, timeout, result, poll_interval)
    postmaster = running_postmaster(pg_path) or postmaster
    result.update(_describe(instance, postmaster, wanted.get("port")))
    result["msg"] = "%s on port %s%s" % ("running" if result.get("pid") else "not running", result.get("port"),
                                         ", in recovery" if result.get("in_recovery") else "")
    return result


def _block_text(text):
    _before, block, _after = split_block(text)
    return "".join("%s = %s\n" % (k, block[k]) for k in sorted(block or {}))


def _auto_port(pg_path, current, postmaster, port_range, socket_dir):
    if postmaster and postmaster.get("port"):
        return postmaster["port"]  # keep what the running server uses: no restart for nothing
    kept = current.get("port")
    if kept and str(kept).isdigit() and port_range[0] <= int(kept) <= port_range[1] and port_free(int(kept)):
        return int(kept)
    return pick_port(port_range, taken=ports_claimed_nearby(pg_path), socket_dir=socket_dir)


def _stop(instance, mode, timeout, escalate=False):
    """pg_ctl stop; returns the mode that stopped it. With `escalate`, a server that a fast or
    smart stop did not bring down in time (an archiver stuck retrying a dead repository keeps a
    shutdown waiting for ever) is stopped with `immediate`: the caller has made sure first that
    nothing it needs is left unarchived."""
    rc, output = instance.pg_ctl(instance.stop_argv(mode, min(timeout, 120)), min(timeout, 120))
    if rc != 0 and running_postmaster(instance.pg_path) and escalate and mode != "immediate":
        rc, output = instance.pg_ctl(instance.stop_argv("immediate", 60), 60)
        mode = "immediate"
    if rc != 0 and running_postmaster(instance.pg_path):
        raise DRError("pg_ctl stop (%s) of %s failed: %s" % (
            mode, instance.pg_path, (output.strip().splitlines() or ["no output"])[-1]))
    return mode


def _start(instance, deadline, auto_port, pg_path, wanted, port_range, socket_dir, result):
    """pg_ctl start; with port auto, a port taken meanwhile (another cluster starting) is
    replaced by the next free one, up to three times."""
    attempts = 3 if auto_port else 1
    for attempt in range(attempts):
        offset = _size(instance.log_file)
        started = time.monotonic()
        remaining = max(5, int(deadline - time.monotonic()))
        rc, output = instance.pg_ctl(instance.start_argv(remaining), remaining)
        postmaster = running_postmaster(pg_path)
        result["start_seconds"] = round(time.monotonic() - started, 3)
        if rc == 0 or postmaster:
            return postmaster
        log_text = _tail(instance.log_file, offset)
        problems = log_problems(log_text) or [line for line in output.strip().splitlines() if line][-1:]
        bind_failure = any(word in " ".join(problems) for word in _BIND_FAILURE)
        if bind_failure and attempt + 1 < attempts:
            taken = ports_claimed_nearby(pg_path) | set([int(wanted["port"])])
            wanted["port"] = pick_port(port_range, taken=taken, socket_dir=socket_dir)
            result["actions"].append("port taken, retry on %d" % wanted["port"])
            auto_conf = os.path.join(pg_path, AUTO_CONF)
            _write_atomically(auto_conf, apply_settings(_read(auto_conf), wanted), 0o600)
            continue
        raise DRError("PostgreSQL in %s did not start: %s" % (pg_path, problems[-1] if problems else "no output"),
                      log_file=instance.log_file, log_problems=problems)
    return None


def _wait(instance, wait_for, deadline, timeout, result, poll_interval):
    """Wait until the server accepts connections (ready) or has left recovery (promoted)."""
    offset = 0
    began = time.monotonic()
    last_sample = None
    why = None
    progress = result["progress"]
    while True:
        postmaster = running_postmaster(instance.pg_path)
        now = time.monotonic()
        if postmaster is None:
            log_text = _tail(instance.log_file, offset)
            problems = log_problems(log_text)
            raise DRError("PostgreSQL in %s stopped while waiting for %s: %s" % (
                instance.pg_path, wait_for, problems[-1] if problems else "see %s" % instance.log_file),
                log_file=instance.log_file, log_problems=problems, progress=progress)
        status = None
        if postmaster.get("status") in ("ready", "standby"):
            status, why = server_status(instance, postmaster)
        if status is not None:
            sample = {"seconds": round(now - began, 1), "in_recovery": status["in_recovery"],
                      "replay_lsn": status["replay_lsn"], "recovery_point": status["recovery_point"]}
            if last_sample is None or (sample["replay_lsn"], sample["in_recovery"]) != \
                    (last_sample["replay_lsn"], last_sample["in_recovery"]) or now - last_sample["_at"] > 10:
                progress.append(dict(sample))
                sample["_at"] = now
                last_sample = sample
                del progress[:-30]
            if wait_for == "ready" or not status["in_recovery"]:
                result["waited_seconds"] = round(now - began, 1)
                return
            if status["recovery_paused"]:
                raise DRError("PostgreSQL in %s paused at the recovery target (target_action pause): it will not "
                              "be promoted without pg_wal_replay_resume()" % instance.pg_path, progress=progress)
        if now >= deadline:
            detail = (", %s" % why) if why else ""
            last = progress[-1] if progress else "server %s%s" % (postmaster.get("status") or "starting", detail)
            raise DRError("PostgreSQL in %s was not %s within %d s (last: %s)" % (
                instance.pg_path, "ready" if wait_for == "ready" else "promoted", timeout, last), progress=progress)
        time.sleep(poll_interval)


def _describe(instance, postmaster, wanted_port):
    described = {"pid": None, "port": wanted_port, "socket_dir": None, "in_recovery": None, "recovery_point": None,
                 "recovery_point_source": None, "timeline": None, "system_id": None, "running": False}
    if postmaster:
        described.update(pid=postmaster["pid"], port=postmaster["port"], socket_dir=postmaster["socket_dir"],
                         running=True)
        status, why = server_status(instance, postmaster)
        if status:
            described.update(in_recovery=status["in_recovery"], timeline=status["timeline"],
                             system_id=status["system_id"], recovery_paused=status["recovery_paused"],
                             replay_lsn=status["replay_lsn"])
            if status["recovery_point"]:
                described.update(recovery_point=status["recovery_point"],
                                 recovery_point_source="pg_last_xact_replay_timestamp()")
        else:
            described["status_error"] = why
    if not described["recovery_point"]:
        from_log = last_completed_transaction(_tail(instance.log_file))
        if from_log:
            described.update(recovery_point=from_log, recovery_point_source="server log")
    return described


def _remove(instance, result, stop_mode, timeout, check_mode):
    pg_path = instance.pg_path
    if not os.path.exists(pg_path):
        result["msg"] = "%s does not exist" % pg_path
        return result
    marker = read_marker(pg_path)
    if not marker_matches(pg_path, marker):
        raise DRError("%s holds no %s marker written by pg_instance (scratch: true): refusing to remove it"
                      % (pg_path, MARKER_NAME))
    postmaster = running_postmaster(pg_path)
    result["changed"] = True
    if postmaster:
        result["actions"].append("stop (immediate)")
    result["actions"].append("remove %s" % pg_path)
    if check_mode:
        result["msg"] = "would " + ", ".join(result["actions"])
        return result
    if postmaster:
        _stop(instance, "immediate" if stop_mode != "smart" else stop_mode, timeout)
    try:
        shutil.rmtree(pg_path)
    except OSError as exc:
        raise DRError("%s cannot be removed: %s" % (pg_path, exc.strerror or exc))
    parent = os.path.dirname(pg_path)
    leftovers = []
    socket_dir = marker.get("socket_dir")
    if socket_dir and os.path.dirname(os.path.normpath(socket_dir)) == parent:
        leftovers.append(socket_dir)
    log_file = marker.get("log_file")
    if log_file and os.path.dirname(os.path.normpath(log_file)) == parent:
        leftovers.append(log_file)
    for path in leftovers:
        try:
            if os.path.isdir(path):
                os.rmdir(path)
            elif os.path.exists(path):
                os.remove(path)
        except OSError:
            pass
    try:
        os.rmdir(parent)
        result["actions"].append("remove empty %s" % parent)
    except OSError:
        pass
    result["msg"] = "removed scratch cluster %s" % pg_path
    return result
