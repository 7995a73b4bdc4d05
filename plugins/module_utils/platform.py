# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The application platform: stop, start, restart, deploy and verify the AUDITRON API.

Three drivers behind one set of states (`ensure`):

- `process`: one process started from an argv list, recorded in a pid file in the lab's format
  (JSON {pid, start_time, argv}, start_time = field 22 of /proc/<pid>/stat), so the lab's own
  `make lab-down` still recognises and stops it. A pid is only ever signalled when its start
  time matches the record: a pid the kernel has given to another process is left alone.
- `compose`: `docker compose -f <file> -p <project> stop|up -d --scale|ps --format json`; the
  command runner is injectable so the exact argv can be tested without a container engine.
- `kubernetes`: the Deployment's `spec.replicas`, through kubernetes.core's API client (its
  auth handling: kubeconfig, context, in-cluster, K8S_AUTH_* variables); manifests applied
  server-side; the client is injectable so tests can record what would be sent.

Stopping remembers the replica count it found and starting restores it (the plan hard-codes
`--replicas=3`): in an annotation on the Deployment (`auditron.dr/replicas-before-stop`), or in
a small JSON state file (compose: next to the compose file; process: next to the pid file), so a
separate run can start the app again with the right count.

`verify_app` is the plan's "Verify Application" step done properly: /health must answer 200 and
/api/invoices (bearer token) must serve what the database holds (count, max id, newest
createdAt), retried until a timeout.

Plain Python: no Ansible module object in here; errors are DRError with one line naming the app.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import time
import traceback

from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.urllib.parse import urlparse
from ansible.module_utils.urls import open_url

try:
    import yaml
    HAS_YAML = True
    YAML_IMPORT_ERROR = None
except ImportError:
    HAS_YAML = False
    YAML_IMPORT_ERROR = traceback.format_exc()

from ansible_collections.auditron.dr.plugins.module_utils import pg
from ansible_collections.auditron.dr.plugins.module_utils.common import (
    DRError, first_line, format_time, parse_time, utc_now, write_atomically)

STATES = ("stopped", "started", "restarted", "deployed", "status")
PLATFORMS = ("process", "compose", "kubernetes")
REPLICAS_ANNOTATION = "auditron.dr/replicas-before-stop"
# What `kubectl rollout restart` sets: a changed pod template makes the Deployment replace its pods.
RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"


# ---------------------------------------------------------------------------------------------
# Shared pieces

def _atomic_write_json(path, data, mode=0o644):
    """Write JSON next to its final name, then rename: a reader never sees half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o700)
    write_atomically(path, json.dumps(data), mode)


def _remove(path):
    try:
        os.unlink(path)
        return True
    except OSError:
        return False


def read_state_file(path):
    """The remembered replica count in a state file, or None (missing or unreadable)."""
    try:
        with open(path) as handle:
            value = json.load(handle).get("replicas_before_stop")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def write_state_file(path, replicas, platform, label):
    _atomic_write_json(path, {"replicas_before_stop": int(replicas), "platform": platform, "app": label,
                              "recorded_at": format_time(utc_now().replace(microsecond=0))})


def port_answers(host, port, timeout=1.0):
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except (OSError, socket.error):
        return False
    sock.close()
    return True


def host_port(url):
    """(host, port) of an http(s) URL, or None when there is no URL."""
    if not url:
        return None
    parsed = urlparse(url)
    if not parsed.hostname:
        raise DRError("app url %r has no host: use for example http://127.0.0.1:8080" % url)
    return parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class Driver(object):
    """One platform. Subclasses fill observe/stop/start/restart/deploy; `ensure` holds the
    logic every platform shares (desired count, idempotence, check mode, memory)."""

    platform = None
    max_replicas = None

    def __init__(self, site, timeout=300.0, interval=2.0, progress=None, sleep=time.sleep, clock=time.monotonic):
        self.site = site or "app"
        self.timeout = float(timeout)
        self.interval = float(interval)
        self.progress = progress
        self.sleep = sleep
        self.clock = clock
        self.wait_log = []

    def where(self):
        return self.platform

    @property
    def label(self):
        return "app %s (%s)" % (self.site, self.where())

    def error(self, text, **details):
        return DRError("%s: %s" % (self.label, text), **details)

    def say(self, text):
        line = "%s: %s" % (self.label, text)
        self.wait_log.append(line)
        del self.wait_log[:-20]
        if self.progress:
            self.progress(line)

    def wait_until(self, what, probe, timeout=None, interval=None):
        """Poll probe() -> (done, summary) every `interval` until done or `timeout`.

        Progress goes to the progress callback (the module log) with the last seen state; a
        timeout raises one line with that state."""
        timeout = self.timeout if timeout is None else float(timeout)
        started = self.clock()
        deadline = started + timeout
        last = None
        while True:
            done, summary = probe()
            if summary != last:
                self.say("waiting for %s: %s" % (what, summary))
                last = summary
            if done:
                return self.clock() - started
            if self.clock() >= deadline:
                raise self.error("%s not reached within %d s: last seen %s" % (what, int(timeout), summary),
                                 wait_log=list(self.wait_log))
            self.sleep(self.interval if interval is None else interval)

    def default_replicas(self, found):
        """Replicas to start when none was given, none is running and none is remembered."""
        return 1

    def check_stoppable(self, found):
        """Raise when a stop could not be trusted (for example an unrecorded process listens)."""

    def check_startable(self, found):
        """Raise when a start would clash with something not ours."""

    def snapshot(self, found):
        return {"running": found["running"], "replicas": found["replicas"],
                "remembered_replicas": found["remembered_replicas"]}


def resolve_replicas(driver, found, replicas):
    """The count `started`/`restarted` aim at: explicit, else the running count, else the
    remembered count, else the driver's default (1 for a process; compose's own scale; a
    Deployment with nothing remembered is an error)."""
    if replicas is not None:
        if replicas < 1:
            raise driver.error("replicas=%d cannot be started: use state=stopped to stop the app" % replicas)
        desired = replicas
    elif found["replicas"] > 0:
        desired = found["replicas"]
    elif found["remembered_replicas"]:
        desired = found["remembered_replicas"]
    else:
        desired = driver.default_replicas(found)
    if desired is not None and driver.max_replicas is not None and desired > driver.max_replicas:
        raise driver.error("replicas=%d: the %s driver runs at most %d"
                           % (desired, driver.platform, driver.max_replicas))
    return desired


def ensure(driver, state, replicas=None, check_mode=False, wait=True):
    """Bring the app to `state`; returns what was found, done (or would be done) and the result."""
    if state not in STATES:
        raise DRError("state %r is not one of %s" % (state, ", ".join(STATES)))
    if replicas is not None and replicas < 0:
        raise driver.error("replicas must not be negative (%d)" % replicas)
    found = driver.observe()
    before = driver.snapshot(found)
    changed = False
    actions = []
    previous = None
    expected = dict(before)   # what check mode predicts; replaced by a new observation otherwise

    if state == "status":
        pass
    elif state == "stopped":
        if replicas:
            raise driver.error("state=stopped takes no replicas (it remembers the running count)")
        if found["replicas"] == 0:
            driver.check_stoppable(found)
            previous = found["remembered_replicas"] or 0
            actions.append("already stopped%s" % (
                "; %d replica(s) remembered from the last stop" % previous if previous else ""))
        else:
            previous = found["replicas"]
            actions.extend(driver.stop(found, check_mode=check_mode, wait=wait))
            changed = True
            expected.update(running=False, replicas=0, remembered_replicas=previous)
    elif state == "started":
        desired = resolve_replicas(driver, found, replicas)
        if found["replicas"] > 0 and desired in (None, found["replicas"]):
            actions.append("already running with %d replica(s)" % found["replicas"])
            if wait and not check_mode:
                driver.wait_ready(found["replicas"])
        else:
            driver.check_startable(found)
            actions.extend(driver.start(found, desired, check_mode=check_mode, wait=wait))
            changed = True
            expected.update(running=True, replicas=desired if desired is not None else max(found["replicas"], 1),
                            remembered_replicas=None)
    elif state == "restarted":
        desired = resolve_replicas(driver, found, replicas)
        if found["replicas"] == 0:
            driver.check_startable(found)
            actions.extend(driver.start(found, desired, check_mode=check_mode, wait=wait))
        else:
            actions.extend(driver.restart(found, desired, check_mode=check_mode, wait=wait))
        changed = True
        expected.update(running=True, replicas=desired if desired is not None else max(found["replicas"], 1),
                        remembered_replicas=None)
    elif state == "deployed":
        changed, deploy_actions = driver.deploy(found, replicas, check_mode=check_mode, wait=wait)
        actions.extend(deploy_actions)
        if changed or replicas is not None:
            expected.update(running=True, replicas=replicas if replicas is not None else max(found["replicas"], 1))

    now = driver.observe() if (changed and not check_mode) else None
    after = driver.snapshot(now) if now is not None else expected
    result = {
        "changed": changed,
        "platform": driver.platform,
        "state": state,
        "site": driver.site,
        "app": driver.label,
        "found": found,
        "actions": actions,
        "replicas": after["replicas"],
        "running": after["running"],
        "remembered_replicas": after["remembered_replicas"],
        "status": now if now is not None else found,
        "diff": {"before": before, "after": after},
        "wait_log": list(driver.wait_log),
    }
    if previous is not None:
        result["previous_replicas"] = previous
    verb = "would be" if check_mode and changed else "is"
    result["msg"] = "%s %s %s: %s" % (driver.label, verb, "running" if after["running"] else "stopped",
                                      "; ".join(actions) if actions else describe_found(found))
    result["dr_report"] = {"phase_detail": result["msg"]}
    return result


def describe_found(found):
    text = "%d replica(s), %d ready" % (found["replicas"], found.get("ready_replicas") or 0)
    if found.get("remembered_replicas"):
        text += ", %d remembered from the last stop" % found["remembered_replicas"]
    return text


# ---------------------------------------------------------------------------------------------
# process: one detached process and its pid file (the lab)

def proc_start_time(pid):
    """Field 22 of /proc/<pid>/stat (start time in clock ticks since boot); None when the pid
    does not exist or is a zombie. The command name (field 2) may hold spaces and parentheses:
    the fields are split after the last ')'."""
    try:
        with open("/proc/%d/stat" % int(pid), "rb") as handle:
            data = handle.read()
    except (OSError, ValueError, TypeError):
        return None
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] == b"Z":
        return None
    return int(fields[19])


def proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % int(pid), "rb") as handle:
            data = handle.read()
    except (OSError, ValueError, TypeError):
        return None
    return [part.decode("utf-8", "replace") for part in data.split(b"\0")[:-1]]


def pid_alive(pid, start_time):
    now = proc_start_time(pid)
    return now is not None and now == start_time


class ProcessDriver(Driver):
    """The lab's app: one process (replicas 0 or 1) recorded in a pid file."""

    platform = "process"
    max_replicas = 1

    def __init__(self, site, pid_file, command=None, log_file=None, state_file=None, url=None, run_as=None,
                 chdir=None, environment=None, stop_grace_period=30.0, **kwargs):
        super(ProcessDriver, self).__init__(site, **kwargs)
        if not pid_file:
            raise self.error("no pid file configured (auditron_dr_app.pid_file)")
        self.pid_file = pid_file
        self.command = list(command) if command else None
        self.log_file = log_file or None
        self.state_file = state_file or self._default_state_file(pid_file)
        self.url = url or None
        self.address = host_port(url)
        self.run_as = run_as or None
        self.chdir = chdir or "/"
        self.environment = dict(environment or {})
        self.stop_grace_period = float(stop_grace_period)

    @staticmethod
    def _default_state_file(pid_file):
        base = pid_file[:-len(".json")] if pid_file.endswith(".json") else pid_file
        return base + ".replicas.json"

    def where(self):
        return "process"

    # -- reading ---------------------------------------------------------------------------

    def read_pid_file(self):
        try:
            with open(self.pid_file) as handle:
                text = handle.read()
        except (IOError, OSError):
            return None
        try:
            record = json.loads(text)
            pid, start_time = int(record["pid"]), record["start_time"]
        except (ValueError, KeyError, TypeError):
            raise self.error("pid file %s is not a pid record ({pid, start_time, argv}): refusing to use it"
                             % self.pid_file)
        return {"pid": pid, "start_time": start_time, "argv": record.get("argv")}

    def listening(self):
        return bool(self.address) and port_answers(self.address[0], self.address[1])

    def observe(self):
        record = self.read_pid_file()
        running = False
        stale = False
        if record:
            running = pid_alive(record["pid"], record["start_time"])
            stale = not running
            if running:
                self._check_owner(record)
        listening = self.listening() if self.address else None
        return {
            "running": running,
            "replicas": 1 if running else 0,
            "ready_replicas": 1 if running and listening is not False else 0,
            "remembered_replicas": read_state_file(self.state_file),
            "pid": record["pid"] if running else None,
            "start_time": record["start_time"] if running else None,
            "argv": record["argv"] if record else None,
            "pid_file": self.pid_file,
            "state_file": self.state_file,
            "stale_pid_file": stale,
            "listening": listening,
        }

    def _check_owner(self, record):
        """The pid file must describe a live process of this app, or nothing is signalled."""
        actual = proc_cmdline(record["pid"])
        deadline = time.monotonic() + 0.5
        while actual == [] and time.monotonic() < deadline:
            # empty while the process is inside execve: look again (a zombie has no cmdline either,
            # but its start time already told us it is gone)
            time.sleep(0.02)
            actual = proc_cmdline(record["pid"])
        if record["argv"] and actual and actual != record["argv"]:
            raise self.error("pid file %s says pid %d runs %s but it runs %s: refusing to signal it"
                             % (self.pid_file, record["pid"], " ".join(record["argv"]), " ".join(actual)))
        if self.command and record["argv"] and list(record["argv"]) != self.command:
            raise self.error("pid file %s belongs to something else: pid %d runs %s, not this app's command %s"
                             % (self.pid_file, record["pid"], " ".join(record["argv"]), " ".join(self.command)))

    def _listen_label(self):
        return "%s:%s" % self.address if self.address else "?"

    def check_stoppable(self, found):
        if found["listening"]:
            raise self.error("%s answers but pid file %s records no running process: refusing to guess which "
                             "process to stop" % (self._listen_label(), self.pid_file))

    def check_startable(self, found):
        if not self.command:
            raise self.error("no command to start it with (auditron_dr_app.command, an argv list)")
        if found["listening"]:
            raise self.error("%s is already taken by a process that pid file %s does not record"
                             % (self._listen_label(), self.pid_file))

    # -- acting ----------------------------------------------------------------------------

    def stop(self, found, check_mode=False, wait=True):
        pid, start_time = found["pid"], found["start_time"]
        actions = ["remember 1 replica in %s" % self.state_file,
                   "SIGTERM pid %d (SIGKILL after %g s)" % (pid, self.stop_grace_period)]
        if check_mode:
            return ["would " + a for a in actions]
        # Memory first: if the stop is interrupted, the next start still knows the count.
        write_state_file(self.state_file, 1, self.platform, self.label)
        how = self._terminate(pid, start_time)
        _remove(self.pid_file)
        actions[1] = "stopped pid %d (%s)" % (pid, how)
        actions.append("removed pid file %s" % self.pid_file)
        if wait and self.address:
            self.wait_until("port %s to close" % self._listen_label(), self._closed_probe,
                            timeout=min(self.timeout, 30), interval=0.1)
        return actions

    def _closed_probe(self):
        answers = self.listening()
        return not answers, "%s %s" % (self._listen_label(), "still answers" if answers else "closed")

    def _signal(self, pid, start_time, sig):
        """Signal the process group when the app leads one (it was started in its own session),
        else the pid; only after checking the start time again."""
        if not pid_alive(pid, start_time):
            return False
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except OSError:
            return False
        return True

    def _terminate(self, pid, start_time):
        self.say("SIGTERM pid %d" % pid)
        self._signal(pid, start_time, signal.SIGTERM)
        deadline = self.clock() + self.stop_grace_period
        while self.clock() < deadline:
            if not pid_alive(pid, start_time):
                return "SIGTERM"
            self.sleep(0.05)
        self.say("pid %d still alive after %g s: SIGKILL" % (pid, self.stop_grace_period))
        self._signal(pid, start_time, signal.SIGKILL)
        deadline = self.clock() + 10
        while self.clock() < deadline:
            if not pid_alive(pid, start_time):
                return "SIGKILL after %g s" % self.stop_grace_period
            self.sleep(0.05)
        raise self.error("pid %d survived SIGKILL for 10 s" % pid)

    def _user_kwargs(self):
        """Popen arguments that drop privileges to `run_as` (root only), and its environment."""
        if not self.run_as:
            return {}, {}
        try:
            entry = pwd.getpwnam(self.run_as)
        except KeyError:
            raise self.error("user %s (run_as) does not exist" % self.run_as)
        env = {"HOME": entry.pw_dir, "USER": entry.pw_name, "LOGNAME": entry.pw_name}
        if os.geteuid() == entry.pw_uid:
            return {}, env
        if os.geteuid() != 0:
            raise self.error("cannot start the app as user %s: this task runs as uid %d, not root"
                             % (self.run_as, os.geteuid()))
        if sys.version_info >= (3, 9):
            return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}, env

        def drop():  # Python 3.8 has no user/group arguments
            os.setgroups([])
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
        return {"preexec_fn": drop}, env

    def _environment(self, user_env):
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "TZ": "UTC"}
        env.update(user_env)
        env.update(dict((str(k), str(v)) for k, v in self.environment.items()))
        return env

    def _open_log(self):
        if not self.log_file:
            return open(os.devnull, "ab")
        created = not os.path.exists(self.log_file)
        fd = os.open(self.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if created and self.run_as and os.geteuid() == 0:
            entry = pwd.getpwnam(self.run_as)
            os.fchown(fd, entry.pw_uid, entry.pw_gid)
        return os.fdopen(fd, "ab")

    def log_tail(self, lines=3):
        try:
            with open(self.log_file, "rb") as handle:
                handle.seek(0, 2)
                handle.seek(max(0, handle.tell() - 4096))
                text = handle.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])

    def start(self, found, desired, check_mode=False, wait=True):
        actions = ["start %s as %s (log %s)"
                   % (" ".join(self.command), self.run_as or "this user", self.log_file or "discarded"),
                   "record it in %s" % self.pid_file]
        if found["remembered_replicas"] is not None:
            actions.append("forget the remembered count (%s)" % self.state_file)
        if check_mode:
            return ["would " + a for a in actions]
        record = self.spawn()
        actions[0] = "started pid %d: %s" % (record["pid"], " ".join(self.command))
        actions[1] = "recorded it in %s" % self.pid_file
        if found["remembered_replicas"] is not None:
            _remove(self.state_file)
            actions[2] = "forgot the remembered count"
        if wait:
            took = self.wait_ready(1)
            if self.address:
                actions.append("%s answers after %.1f s" % (self._listen_label(), took))
        return actions

    def spawn(self):
        user_kwargs, user_env = self._user_kwargs()
        with self._open_log() as log:
            try:
                child = subprocess.Popen(self.command, cwd=self.chdir, env=self._environment(user_env),
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, close_fds=True, **user_kwargs)
            except (OSError, subprocess.SubprocessError) as exc:
                raise self.error("cannot start %s: %s" % (self.command[0], first_line(exc)))
        # Popen returns while the child may still be inside execve (its /proc cmdline is empty
        # until the new program is mapped): wait for that, so the pid file is checked against
        # the app's real command line from the first look on.
        start_time = proc_start_time(child.pid)
        deadline = time.monotonic() + 2.0
        while child.poll() is None and time.monotonic() < deadline and (
                start_time is None or not proc_cmdline(child.pid)):
            time.sleep(0.01)
            start_time = proc_start_time(child.pid)
        record = {"pid": child.pid, "start_time": start_time, "argv": self.command}
        # Recorded at once, before waiting for the port: lab-down and the next stop find it.
        _atomic_write_json(self.pid_file, record)
        return record

    def wait_ready(self, replicas):
        record = self.read_pid_file()
        if not record:
            raise self.error("pid file %s disappeared" % self.pid_file)

        def probe():
            if not pid_alive(record["pid"], record["start_time"]):
                raise self.error("pid %d exited during start-up: %s" % (record["pid"], self.log_tail() or "no log"))
            if not self.address:
                return True, "running"
            answers = self.listening()
            return answers, "%s %s" % (self._listen_label(), "answers" if answers else "does not answer yet")

        try:
            # A local port: poll it often, a start is a matter of a second or two.
            return self.wait_until("%s to answer" % self._listen_label(), probe, interval=0.1)
        except DRError as exc:
            if "not reached" in exc.message:
                raise self.error("%s did not answer within %d s; pid %d is still running; log: %s"
                                 % (self._listen_label(), int(self.timeout), record["pid"],
                                    self.log_tail() or "empty"))
            raise

    def restart(self, found, desired, check_mode=False, wait=True):
        if check_mode:
            return ["would SIGTERM pid %d and start it again" % found["pid"]]
        self.check_startable(dict(found, listening=False))
        how = self._terminate(found["pid"], found["start_time"])
        _remove(self.pid_file)
        if self.address:
            self.wait_until("port %s to close" % self._listen_label(), self._closed_probe,
                            timeout=min(self.timeout, 30), interval=0.1)
        actions = ["stopped pid %d (%s)" % (found["pid"], how)]
        actions.extend(self.start(dict(found, remembered_replicas=None), 1, wait=wait))
        return actions

    def deploy(self, found, replicas, check_mode=False, wait=True):
        """A process has nothing to roll out: deployed means running, as `started`."""
        if replicas == 0:
            raise self.error("state=deployed with replicas=0: use state=stopped")
        if found["running"]:
            if wait and not check_mode:
                self.wait_ready(1)
            return False, ["already running (pid %d)" % found["pid"]]
        self.check_startable(found)
        return True, self.start(found, 1, check_mode=check_mode, wait=wait)


# ---------------------------------------------------------------------------------------------
# compose: docker compose (v2 plugin, or any command that speaks its CLI)

def run_command(argv, cwd=None):
    """The default runner: (rc, stdout, stderr) of argv, never raising for a non-zero exit."""
    try:
        completed = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, check=False)
    except OSError as exc:
        return 127, "", "%s: %s" % (argv[0], first_line(exc))
    return (completed.returncode, completed.stdout.decode("utf-8", "replace"),
            completed.stderr.decode("utf-8", "replace"))


def parse_compose_ps(text):
    """Containers from `docker compose ps --format json`: a JSON array (Compose < 2.21) or one
    JSON object per line (Compose >= 2.21). Returns [{name, service, state, health, id, status}]."""
    text = (text or "").strip()
    if not text:
        return []
    try:
        if text.startswith("["):
            items = json.loads(text)
        else:
            items = [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as exc:
        raise DRError("docker compose ps printed something that is not JSON: %s" % first_line(exc))
    containers = []
    for item in items:
        if not isinstance(item, dict):
            continue
        containers.append({
            "name": item.get("Name") or "",
            "service": item.get("Service") or "",
            "state": (item.get("State") or "").lower(),
            "health": (item.get("Health") or "").lower(),
            "id": item.get("ID") or "",
            "status": item.get("Status") or "",
        })
    return containers


class ComposeDriver(Driver):
    """One service of a compose project; its scale is the replica count."""

    platform = "compose"

    def __init__(self, site, project_file, project_name="auditron", service="api", state_file=None,
                 command=None, chdir=None, runner=None, **kwargs):
        super(ComposeDriver, self).__init__(site, **kwargs)
        if not project_file:
            raise self.error("no compose file configured (compose.project_file)")
        self.project_file = project_file
        self.project_name = project_name or "auditron"
        self.service = service or "api"
        self.command = list(command or ["docker", "compose"])
        self.chdir = chdir or os.path.dirname(os.path.abspath(project_file))
        self.state_file = state_file or os.path.join(
            os.path.dirname(os.path.abspath(project_file)),
            ".auditron-dr-%s-%s.state.json" % (self.project_name, self.service))
        self.runner = runner or run_command

    def where(self):
        return "compose %s/%s" % (self.project_name, self.service)

    def base_argv(self):
        return self.command + ["-f", self.project_file, "-p", self.project_name]

    def run(self, args):
        argv = self.base_argv() + list(args)
        rc, out, err = self.runner(argv, self.chdir)
        if rc != 0:
            lines = (err or out or "").strip().splitlines()
            raise self.error("`%s` failed (exit %d): %s" % (" ".join(argv), rc, lines[-1] if lines else "no output"))
        return out

    def ps(self, service=True):
        args = ["ps", "--all", "--format", "json"] + ([self.service] if service else [])
        containers = parse_compose_ps(self.run(args))
        if service:
            containers = [c for c in containers if not c["service"] or c["service"] == self.service]
        return containers

    def observe(self):
        containers = self.ps()
        running = [c for c in containers if c["state"] == "running"]
        ready = [c for c in running if c["health"] in ("", "healthy")]
        return {
            "running": bool(running),
            "replicas": len(running),
            "ready_replicas": len(ready),
            "remembered_replicas": read_state_file(self.state_file),
            "containers": containers,
            "state_file": self.state_file,
        }

    def default_replicas(self, found):
        return None   # `up -d <service>` without --scale: the compose file's own scale

    def stop(self, found, check_mode=False, wait=True):
        argv = self.base_argv() + ["stop", self.service]
        actions = ["remember %d replica(s) in %s" % (found["replicas"], self.state_file), "run %s" % " ".join(argv)]
        if check_mode:
            return ["would " + a for a in actions]
        write_state_file(self.state_file, found["replicas"], self.platform, self.label)
        self.run(["stop", self.service])
        if wait:
            self.wait_until("service %s to stop" % self.service, self._stopped_probe)
        return ["remembered %d replica(s) in %s" % (found["replicas"], self.state_file), "ran %s" % " ".join(argv)]

    def _stopped_probe(self):
        running = [c for c in self.ps() if c["state"] == "running"]
        return not running, "%d container(s) running" % len(running)

    def up_args(self, desired, service=True):
        args = ["up", "-d"]
        if desired is not None:
            args += ["--scale", "%s=%d" % (self.service, desired)]
        return args + ([self.service] if service else [])

    def start(self, found, desired, check_mode=False, wait=True):
        argv = self.base_argv() + self.up_args(desired)
        actions = ["run %s" % " ".join(argv)]
        if found["remembered_replicas"] is not None:
            actions.append("forget the remembered count (%s)" % self.state_file)
        if check_mode:
            return ["would " + a for a in actions]
        self.run(self.up_args(desired))
        if found["remembered_replicas"] is not None:
            _remove(self.state_file)
        if wait:
            self.wait_ready(desired)
        return ["ran %s" % " ".join(argv)] + actions[1:]

    def wait_ready(self, replicas):
        def probe():
            now = self.observe()
            target = replicas if replicas is not None else max(now["replicas"], 1)
            done = now["replicas"] == target and now["ready_replicas"] == target
            states = ", ".join("%s %s%s" % (c["name"], c["state"], "/" + c["health"] if c["health"] else "")
                               for c in now["containers"]) or "no containers"
            return done, "%d of %d running and ready (%s)" % (now["ready_replicas"], target, states)
        return self.wait_until("service %s ready" % self.service, probe)

    def restart(self, found, desired, check_mode=False, wait=True):
        if desired is not None and desired != found["replicas"]:
            args = self.up_args(desired)
            args.insert(2, "--force-recreate")
        else:
            args = ["restart", self.service]
        argv = self.base_argv() + args
        if check_mode:
            return ["would run %s" % " ".join(argv)]
        self.run(args)
        if wait:
            self.wait_ready(desired if desired is not None else found["replicas"])
        return ["ran %s" % " ".join(argv)]

    def deploy(self, found, replicas, check_mode=False, wait=True):
        """`up -d` for the whole project; changed when any container of it was created,
        replaced, started or stopped (compared by id and state)."""
        args = self.up_args(replicas, service=False)
        argv = self.base_argv() + args
        if check_mode:
            return True, ["would run %s (compose decides what changes; not predicted)" % " ".join(argv)]
        before = sorted((c["id"], c["state"]) for c in self.ps(service=False))
        self.run(args)
        after = sorted((c["id"], c["state"]) for c in self.ps(service=False))
        if wait:
            self.wait_ready(replicas)
        return before != after, ["ran %s" % " ".join(argv)]


# ---------------------------------------------------------------------------------------------
# kubernetes: a Deployment, through kubernetes.core's API client

def _as_dict(obj):
    """A kubernetes ResourceInstance (or a plain dict from a stand-in) as a plain dict."""
    if obj is None:
        return None
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return obj


def _is_not_found(exc):
    return getattr(exc, "status", None) == 404


def _api_error(exc):
    summary = getattr(exc, "summary", None)
    if callable(summary):
        try:
            return first_line(summary())
        except Exception:  # pylint: disable=broad-except
            pass
    return first_line(exc)


def deployment_summary(dep):
    status = dep.get("status") or {}
    meta = dep.get("metadata") or {}
    return ("replicas %s, ready %d, updated %d, available %d, generation %s observed %s" % (
        (dep.get("spec") or {}).get("replicas"), status.get("readyReplicas") or 0, status.get("updatedReplicas") or 0,
        status.get("availableReplicas") or 0, meta.get("generation"), status.get("observedGeneration")))


def deployment_ready(dep, replicas):
    """Rolled out at `replicas`: the controller has seen the latest spec, and exactly that many
    pods exist, run the current template and are ready (no old pod left behind)."""
    status = dep.get("status") or {}
    meta = dep.get("metadata") or {}
    return ((status.get("observedGeneration") or 0) >= (meta.get("generation") or 0)
            and (status.get("readyReplicas") or 0) == replicas
            and (status.get("updatedReplicas") or 0) == replicas
            and (status.get("replicas") or 0) == replicas)


def _comparable(obj):
    """An object without what the server changes on every write, to compare before/after."""
    obj = copy.deepcopy(obj or {})
    obj.pop("status", None)
    meta = obj.get("metadata") or {}
    for key in ("managedFields", "resourceVersion", "generation", "creationTimestamp", "uid", "selfLink"):
        meta.pop(key, None)
    return obj


def load_manifests(directory):
    """Every YAML document of every *.yaml / *.yml / *.json file in `directory` (not recursive,
    as `kubectl apply -f dir`), files in name order; List kinds are expanded."""
    if not HAS_YAML:
        raise DRError("reading manifests needs the PyYAML Python library")
    if not directory or not os.path.isdir(directory):
        raise DRError("manifests directory %s does not exist" % directory)
    documents = []
    for name in sorted(os.listdir(directory)):
        if not name.endswith((".yaml", ".yml", ".json")):
            continue
        path = os.path.join(directory, name)
        try:
            with open(path) as handle:
                loaded = list(yaml.safe_load_all(handle))
        except (OSError, yaml.YAMLError) as exc:
            raise DRError("manifest %s cannot be read: %s" % (path, first_line(exc)))
        for index, doc in enumerate(loaded):
            if doc is None:
                continue
            items = doc.get("items", []) if isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List") \
                else [doc]
            for item in items:
                if not isinstance(item, dict) or not item.get("apiVersion") or not item.get("kind") \
                        or not (item.get("metadata") or {}).get("name"):
                    raise DRError("manifest %s, document %d: needs apiVersion, kind and metadata.name" % (path, index + 1))
                documents.append((path, item))
    if not documents:
        raise DRError("manifests directory %s holds no YAML document" % directory)
    return documents


_KUBERNETES = {}


def kubernetes_missing():
    """None when the kubernetes platform can run, else (what is missing, import traceback).

    Imported on first use, not at the top: the kubernetes library takes a quarter of a second
    to import, which every process and compose task would pay. Ansible still ships
    kubernetes.core's module_utils with the module (nested imports are optional dependencies)."""
    if "get_api_client" not in _KUBERNETES:
        _KUBERNETES.update(get_api_client=None, missing=None)
        try:
            import kubernetes  # noqa: F401 pylint: disable=unused-import,import-outside-toplevel
        except ImportError:
            _KUBERNETES["missing"] = ("kubernetes", traceback.format_exc())
            return _KUBERNETES["missing"]
        try:
            # kubernetes.core's client factory: the same authentication as its k8s modules
            # (kubeconfig file or dict, context, host + api_key, in-cluster config, K8S_AUTH_*
            # variables), and its K8SClient whose apply() does server-side apply.
            from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import (  # pylint: disable=import-outside-toplevel
                get_api_client)
        except ImportError:
            _KUBERNETES["missing"] = ("the kubernetes.core collection", traceback.format_exc())
            return _KUBERNETES["missing"]
        _KUBERNETES["get_api_client"] = get_api_client
    return _KUBERNETES["missing"]


def kubernetes_client(auth):
    """kubernetes.core's K8SClient for `auth` (its option names: kubeconfig, context, host,
    api_key, validate_certs, ca_cert, client_cert, client_key, ...)."""
    missing = kubernetes_missing()
    if missing:
        raise DRError("the kubernetes platform needs %s" % missing[0])
    get_api_client = _KUBERNETES["get_api_client"]
    try:
        return get_api_client(**dict((k, v) for k, v in (auth or {}).items() if v is not None))
    except Exception as exc:  # pylint: disable=broad-except
        text = first_line(exc)
        refused = re.search(r"host='([^']+)', port=(\d+)", text)
        if refused and ("Connection refused" in text or "NewConnectionError" in text):
            raise DRError("the API server %s:%s does not answer (connection refused)" % refused.groups())
        raise DRError("cannot build a Kubernetes API client: %s" % text)


class KubernetesDriver(Driver):
    """A Deployment: spec.replicas is the count; the remembered count is an annotation on it."""

    platform = "kubernetes"

    def __init__(self, site, namespace="auditron", deployment="auditron-api", manifests_dir=None,
                 field_manager="auditron.dr", client=None, auth=None, allow_missing=False, **kwargs):
        super(KubernetesDriver, self).__init__(site, **kwargs)
        # Only `deployed` may find no Deployment yet (a first deploy into an empty namespace).
        self.allow_missing = allow_missing
        self.namespace = namespace or "auditron"
        self.deployment = deployment or "auditron-api"
        self.manifests_dir = manifests_dir or None
        self.field_manager = field_manager or "auditron.dr"
        self._client = client
        self.auth = auth or {}
        self._resources = {}

    def where(self):
        return "kubernetes deployment %s/%s" % (self.namespace, self.deployment)

    @property
    def client(self):
        if self._client is None:
            try:
                self._client = kubernetes_client(self.auth)
            except DRError as exc:
                raise self.error(exc.message)
        return self._client

    def resource(self, api_version, kind):
        key = (api_version, kind)
        if key not in self._resources:
            try:
                self._resources[key] = self.client.resources.get(api_version=api_version, kind=kind)
            except DRError:
                raise
            except Exception as exc:  # pylint: disable=broad-except
                raise self.error("the cluster does not serve %s %s: %s" % (api_version, kind, _api_error(exc)))
        return self._resources[key]

    def read_deployment(self, required=True):
        try:
            dep = self.client.get(self.resource("apps/v1", "Deployment"), name=self.deployment,
                                  namespace=self.namespace)
        except DRError:
            raise
        except Exception as exc:  # pylint: disable=broad-except
            if _is_not_found(exc):
                if required:
                    raise self.error("deployment %s not found in namespace %s" % (self.deployment, self.namespace))
                return None
            raise self.error("cannot read the deployment: %s" % _api_error(exc))
        return _as_dict(dep)

    def observe(self):
        dep = self.read_deployment(required=not self.allow_missing)
        if dep is None:
            return {"running": False, "replicas": 0, "ready_replicas": 0, "updated_replicas": 0,
                    "available_replicas": 0, "remembered_replicas": None, "namespace": self.namespace,
                    "deployment": self.deployment, "exists": False, "generation": None,
                    "observed_generation": None, "selector": {}}
        spec = dep.get("spec") or {}
        status = dep.get("status") or {}
        annotations = (dep.get("metadata") or {}).get("annotations") or {}
        replicas = int(spec.get("replicas") if spec.get("replicas") is not None else 1)
        return {
            "running": replicas > 0,
            "replicas": replicas,
            "ready_replicas": status.get("readyReplicas") or 0,
            "updated_replicas": status.get("updatedReplicas") or 0,
            "available_replicas": status.get("availableReplicas") or 0,
            "remembered_replicas": _int_or_none(annotations.get(REPLICAS_ANNOTATION)),
            "namespace": self.namespace,
            "deployment": self.deployment,
            "exists": True,
            "generation": (dep.get("metadata") or {}).get("generation"),
            "observed_generation": status.get("observedGeneration"),
            "selector": (spec.get("selector") or {}).get("matchLabels") or {},
        }

    def default_replicas(self, found):
        raise self.error("the deployment has 0 replicas and no %s annotation: give replicas explicitly"
                         % REPLICAS_ANNOTATION)

    def patch(self, body):
        try:
            return _as_dict(self.client.patch(self.resource("apps/v1", "Deployment"), body, name=self.deployment,
                                              namespace=self.namespace, content_type="application/merge-patch+json",
                                              field_manager=self.field_manager))
        except DRError:
            raise
        except Exception as exc:  # pylint: disable=broad-except
            if _is_not_found(exc):
                raise self.error("deployment %s not found in namespace %s" % (self.deployment, self.namespace))
            raise self.error("patch refused: %s" % _api_error(exc))

    def stop(self, found, check_mode=False, wait=True):
        body = {"metadata": {"annotations": {REPLICAS_ANNOTATION: str(found["replicas"])}}, "spec": {"replicas": 0}}
        action = "annotate %s=%d and scale from %d to 0" % (REPLICAS_ANNOTATION, found["replicas"], found["replicas"])
        if check_mode:
            return ["would " + action]
        self.patch(body)
        actions = [action.replace("annotate", "annotated").replace("scale", "scaled")]
        if wait:
            took = self.wait_stopped(found["selector"])
            actions.append("no pod left after %.0f s" % took)
        return actions

    def wait_stopped(self, selector):
        """Scaled to 0 is not stopped until the pods are gone: a terminating pod still holds its
        database connections, which a restore must not race."""
        pods = self.resource("v1", "Pod")
        label_selector = ",".join("%s=%s" % item for item in sorted(selector.items()))

        def probe():
            dep = self.read_deployment()
            remaining = None
            if label_selector:
                try:
                    listed = _as_dict(self.client.get(pods, namespace=self.namespace, label_selector=label_selector))
                except Exception as exc:  # pylint: disable=broad-except
                    raise self.error("cannot list pods %s: %s" % (label_selector, _api_error(exc)))
                remaining = [(p.get("metadata") or {}).get("name") for p in (listed or {}).get("items") or []]
            count = (dep.get("status") or {}).get("replicas") or 0
            done = count == 0 and not remaining
            return done, "%s; pods left: %s" % (deployment_summary(dep), ", ".join(remaining) if remaining else "none")
        return self.wait_until("deployment %s scaled to 0" % self.deployment, probe)

    def start(self, found, desired, check_mode=False, wait=True):
        body = {"spec": {"replicas": desired}}
        action = "scale from %d to %d" % (found["replicas"], desired)
        if found["remembered_replicas"] is not None:
            body["metadata"] = {"annotations": {REPLICAS_ANNOTATION: None}}
            action += " and remove the %s annotation" % REPLICAS_ANNOTATION
        if check_mode:
            return ["would " + action]
        self.patch(body)
        actions = [action.replace("scale", "scaled").replace("remove", "removed")]
        if wait:
            actions.append("%d ready after %.0f s" % (desired, self.wait_ready(desired)))
        return actions

    def wait_ready(self, replicas):
        def probe():
            dep = self.read_deployment()
            return deployment_ready(dep, replicas), deployment_summary(dep)
        return self.wait_until("deployment %s ready with %d replica(s)" % (self.deployment, replicas), probe)

    def restart(self, found, desired, check_mode=False, wait=True):
        stamp = format_time(utc_now().replace(microsecond=0))
        body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: stamp}}}}}
        action = "rollout restart (%s=%s)" % (RESTARTED_AT_ANNOTATION, stamp)
        if desired is not None and desired != found["replicas"]:
            body["spec"]["replicas"] = desired
            action += " at %d replicas" % desired
        if check_mode:
            return ["would " + action]
        self.patch(body)
        actions = [action]
        if wait:
            target = desired if desired is not None else found["replicas"]
            actions.append("%d ready after %.0f s" % (target, self.wait_ready(target)))
        return actions

    def apply_one(self, path, doc, check_mode):
        """Server-side apply of one document; returns (changed, line)."""
        api_version, kind = doc["apiVersion"], doc["kind"]
        name = doc["metadata"]["name"]
        resource = self.resource(api_version, kind)
        doc = copy.deepcopy(doc)
        namespace = None
        if getattr(resource, "namespaced", True):
            namespace = doc["metadata"].get("namespace") or self.namespace
            if namespace != self.namespace:
                raise self.error("manifest %s: %s %s is for namespace %s, not %s"
                                 % (path, kind, name, namespace, self.namespace))
            doc["metadata"]["namespace"] = namespace
        try:
            existing = _as_dict(self.client.get(resource, name=name, namespace=namespace))
        except Exception as exc:  # pylint: disable=broad-except
            if not _is_not_found(exc):
                raise self.error("cannot read %s %s: %s" % (kind, name, _api_error(exc)))
            existing = None
        params = {"server_side": True, "field_manager": self.field_manager, "force_conflicts": True}
        if check_mode:
            params["dry_run"] = "All"
        try:
            applied = _as_dict(self.client.apply(resource, doc, namespace, **params))
        except Exception as exc:  # pylint: disable=broad-except
            raise self.error("apply of %s %s (%s) refused: %s" % (kind, name, os.path.basename(path), _api_error(exc)))
        if existing is None:
            changed = True
        elif check_mode:
            changed = _comparable(existing) != _comparable(applied)
        else:
            changed = ((existing.get("metadata") or {}).get("resourceVersion")
                       != ((applied or {}).get("metadata") or {}).get("resourceVersion"))
        verb = ("created" if existing is None else "configured") if changed else "unchanged"
        if check_mode and changed:
            verb = "would be " + verb
        return changed, "%s/%s %s (%s)" % (kind, name, verb, os.path.basename(path))

    def deploy(self, found, replicas, check_mode=False, wait=True):
        if not self.manifests_dir:
            raise self.error("state=deployed needs kubernetes.manifests_dir (the plan's k8s/ directory)")
        try:
            documents = load_manifests(self.manifests_dir)
        except DRError as exc:
            raise self.error(exc.message)
        changed = False
        actions = []
        for path, doc in documents:
            one_changed, line = self.apply_one(path, doc, check_mode)
            changed = changed or one_changed
            actions.append(line)
        if check_mode:
            return changed, actions
        now = self.observe()
        if not now["exists"]:
            raise self.error("the manifests in %s do not create deployment %s" % (self.manifests_dir, self.deployment))
        if replicas is not None and replicas != now["replicas"]:
            self.patch({"spec": {"replicas": replicas}})
            actions.append("scaled from %d to %d" % (now["replicas"], replicas))
            changed = True
        target = replicas if replicas is not None else now["replicas"]
        if wait and target > 0:
            actions.append("%d ready after %.0f s" % (target, self.wait_ready(target)))
        return changed, actions


def make_driver(platform, site, state=None, url=None, process=None, compose=None, kubernetes=None,
                timeout=300.0, interval=2.0, progress=None, runner=None, client=None):
    """A driver from module-shaped options (the dicts of the app_platform module)."""
    common = {"timeout": timeout, "interval": interval, "progress": progress}
    if platform == "process":
        opts = process or {}
        return ProcessDriver(site, opts.get("pid_file"), command=opts.get("command"), log_file=opts.get("log_file"),
                             state_file=opts.get("state_file"), url=url, run_as=opts.get("run_as"),
                             chdir=opts.get("chdir"), environment=opts.get("environment"),
                             stop_grace_period=opts.get("stop_grace_period") or 30, **common)
    if platform == "compose":
        opts = compose or {}
        return ComposeDriver(site, opts.get("project_file"), project_name=opts.get("project_name"),
                             service=opts.get("service"), state_file=opts.get("state_file"),
                             command=opts.get("command"), chdir=opts.get("chdir"), runner=runner, **common)
    if platform == "kubernetes":
        opts = dict(kubernetes or {})
        auth = dict((k, opts.get(k)) for k in ("kubeconfig", "context", "host", "api_key", "validate_certs",
                                               "ca_cert", "client_cert", "client_key", "proxy"))
        return KubernetesDriver(site, namespace=opts.get("namespace"), deployment=opts.get("deployment"),
                                manifests_dir=opts.get("manifests_dir"), field_manager=opts.get("field_manager"),
                                client=client, auth=auth, allow_missing=(state == "deployed"), **common)
    raise DRError("platform %r is not one of %s" % (platform, ", ".join(PLATFORMS)))


# ---------------------------------------------------------------------------------------------
# verify: health, and data consistent with the database

def http_get(url, token=None, ca_bundle=None, validate_certs=True, timeout=5.0):
    """(status, body bytes) of a GET with ansible's open_url; HTTP errors are answers too."""
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = "Bearer %s" % token
    try:
        response = open_url(url, headers=headers, timeout=timeout, ca_path=ca_bundle or None,
                            validate_certs=validate_certs)
        return response.getcode(), response.read()
    except HTTPError as exc:
        return exc.code, exc.read()


def _json_or_none(body):
    try:
        return json.loads(body.decode("utf-8", "replace"))
    except (ValueError, AttributeError):
        return None


def database_snapshot(postgres, db, table, schema="public", id_column="id", created_column="createdAt"):
    """count(*), max(id), max(createdAt) of the table, as the app should serve them."""
    sql = "SELECT count(*), max(%s), max(%s) FROM %s.%s" % (
        pg.quote_ident(id_column), pg.quote_ident(created_column), pg.quote_ident(schema), pg.quote_ident(table))
    conn = pg.connect(postgres, database=db)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            count, max_id, max_created = cur.fetchone()
    finally:
        conn.close()
    return {"count": count, "max_id": max_id, "max_createdAt": max_created}


def _same_id(app_value, db_value):
    if app_value is None or db_value is None:
        return app_value is None and db_value is None
    a_int, d_int = _int_or_none(app_value), _int_or_none(db_value)
    if a_int is not None and d_int is not None:
        return a_int == d_int
    return str(app_value) == str(db_value)


def _same_time(app_value, db_value, tolerance):
    if app_value is None or db_value is None:
        return app_value is None and db_value is None
    try:
        delta = parse_time(app_value, "max_createdAt") - parse_time(db_value, "max_createdAt")
    except DRError:
        return False
    return abs(delta.total_seconds()) <= tolerance


def compare_data(app, database, fields, tolerance=0.001):
    """Names of the fields where what the app serves differs from the database."""
    differ = []
    for field in fields:
        if field == "count":
            same = _int_or_none(app.get("count")) == _int_or_none(database["count"])
        elif field == "max_id":
            same = _same_id(app.get("max_id"), database["max_id"])
        else:
            same = _same_time(app.get("max_createdAt"), database["max_createdAt"], tolerance)
        if not same:
            differ.append(field)
    return differ


def _plain(value):
    """A timestamp (datetime or text) as the reports write time; anything else unchanged."""
    if value is None or isinstance(value, (int, float)):
        return value
    try:
        return format_time(parse_time(value))
    except DRError:
        return value


def _data_line(values):
    return "count %s, max id %s, newest createdAt %s" % (
        values.get("count"), values.get("max_id"), _plain(values.get("max_createdAt")))


class _Unrecoverable(Exception):
    """An answer no retry will change (a refused token): stop at once."""


def verify_app(site, url, token=None, postgres=None, db="auditron", table="Invoice", schema="public",
               id_column="id", created_column="createdAt", compare=("count", "max_id", "max_createdAt"),
               check_data=True, health_path="/health", invoices_path="/api/invoices", ca_bundle=None,
               validate_certs=True, timeout=120.0, interval=2.0, request_timeout=5.0, tolerance=0.001,
               mark_service_restored=True, progress=None, sleep=time.sleep, clock=time.monotonic):
    """Retry until /health answers 200 and /api/invoices serves what the database holds.

    The database is read just before and just after the request; the app's answer is
    consistent when it matches either (writes may land in between). Returns the module result
    with `dr_report.checks` (and `dr_report.markers.service_restored` when asked)."""
    base = (url or "").rstrip("/")
    if not base:
        raise DRError("app %s: no url to verify" % site)
    if check_data and not token:
        raise DRError("app %s: checking /api/invoices needs the bearer token (auditron_dr_app.token)" % site)
    what = "app %s at %s" % (site, base)
    started = clock()
    deadline = started + float(timeout)
    attempts = 0
    history = []
    health_row = {"name": "app health (%s)" % site, "result": "failed", "detail": "not reached"}
    data_row = {"name": "app data (%s)" % site, "result": "failed", "detail": "not reached"}
    found = {}

    def note(line):
        history.append("attempt %d: %s" % (attempts, line))
        del history[:-10]
        if progress:
            progress("%s: %s" % (what, line))

    while True:
        attempts += 1
        try:
            passed = _verify_once(base, token, postgres, db, table, schema, id_column, created_column, compare,
                                  check_data, health_path, invoices_path, ca_bundle, validate_certs,
                                  request_timeout, tolerance, health_row, data_row, found)
        except _Unrecoverable as exc:
            note(str(exc))
            raise DRError("%s: %s" % (what, exc), checks=[health_row, data_row] if check_data else [health_row],
                          attempts=attempts, history=history,
                          dr_report={"checks": [health_row, data_row] if check_data else [health_row]})
        if passed:
            break
        note(data_row["detail"] if health_row["result"] == "ok" else health_row["detail"])
        if clock() >= deadline:
            rows = [health_row, data_row] if check_data else [health_row]
            last = health_row["detail"] if health_row["result"] != "ok" else data_row["detail"]
            raise DRError("%s: not verified within %d s (%d attempts); last: %s" % (what, int(timeout), attempts, last),
                          checks=rows, attempts=attempts, history=history, dr_report={"checks": rows})
        sleep(interval)

    rows = [health_row, data_row] if check_data else [health_row]
    result = {"changed": False, "passed": True, "checks": rows, "attempts": attempts,
              "elapsed": round(clock() - started, 3), "history": history, "health": found.get("health")}
    if check_data:
        result["data"] = {"app": found.get("app"), "database": found.get("database")}
    result["dr_report"] = {"checks": rows}
    restored_at = format_time(utc_now())
    result["verified_at"] = restored_at
    if mark_service_restored:
        result["dr_report"]["markers"] = {"service_restored": restored_at}
    result["msg"] = "%s verified: %s" % (what, "; ".join(r["detail"] for r in rows))
    return result


def _verify_once(base, token, postgres, db, table, schema, id_column, created_column, compare, check_data,
                 health_path, invoices_path, ca_bundle, validate_certs, request_timeout, tolerance,
                 health_row, data_row, found):
    """One attempt; fills the two check rows and returns True when both pass."""
    health_url = base + health_path
    t0 = time.time()
    try:
        status, body = http_get(health_url, ca_bundle=ca_bundle, validate_certs=validate_certs,
                                timeout=request_timeout)
    except (URLError, OSError, ValueError) as exc:
        health_row.update(result="failed", detail="GET %s does not answer: %s"
                          % (health_url, first_line(getattr(exc, "reason", exc))))
        return False
    parsed = _json_or_none(body)
    found["health"] = {"status": status, "body": parsed}
    if status != 200:
        reason = parsed.get("checks") if isinstance(parsed, dict) and parsed.get("checks") else body[:200]
        health_row.update(result="failed", detail="GET %s answered %d: %s" % (health_url, status, reason))
        return False
    health_row.update(result="ok", detail="GET %s 200 in %d ms" % (health_url, (time.time() - t0) * 1000))
    if not check_data:
        return True

    data_url = base + invoices_path
    try:
        before = database_snapshot(postgres, db, table, schema, id_column, created_column)
    except DRError as exc:
        data_row.update(result="failed", detail="database: %s" % exc.message)
        return False
    try:
        status, body = http_get(data_url, token=token, ca_bundle=ca_bundle, validate_certs=validate_certs,
                                timeout=request_timeout)
    except (URLError, OSError, ValueError) as exc:
        data_row.update(result="failed", detail="GET %s does not answer: %s"
                        % (data_url, first_line(getattr(exc, "reason", exc))))
        return False
    if status in (401, 403):
        data_row.update(result="failed", detail="GET %s refused the bearer token (HTTP %d)" % (data_url, status))
        raise _Unrecoverable(data_row["detail"])
    served = _json_or_none(body)
    if status != 200:
        reason = served.get("error") if isinstance(served, dict) and served.get("error") else body[:200]
        data_row.update(result="failed", detail="GET %s answered %d: %s" % (data_url, status, reason))
        return False
    if not isinstance(served, dict) or any(field not in served for field in compare):
        data_row.update(result="failed", detail="GET %s did not return %s" % (data_url, ", ".join(compare)))
        return False
    try:
        after = database_snapshot(postgres, db, table, schema, id_column, created_column)
    except DRError as exc:
        data_row.update(result="failed", detail="database: %s" % exc.message)
        return False
    app_values = dict((k, served.get(k)) for k in ("count", "max_id", "max_createdAt"))
    found["app"] = app_values
    found["database"] = dict((k, _plain(v)) for k, v in after.items())
    invoices = served.get("invoices")
    if invoices is not None and (not isinstance(invoices, list) or (bool(invoices) != bool(_int_or_none(
            served.get("count"))))):
        data_row.update(result="failed", detail="GET %s: the invoices list does not match count %s"
                        % (data_url, served.get("count")))
        return False
    differ_before = compare_data(app_values, before, compare, tolerance)
    differ_after = compare_data(app_values, after, compare, tolerance)
    if differ_before and differ_after:
        data_row.update(result="failed", detail="GET %s serves %s but database %s.%s holds %s (differs: %s)" % (
            data_url, _data_line(app_values), db, pg.quote_ident(table), _data_line(after), ", ".join(differ_after)))
        return False
    data_row.update(result="ok", detail="GET %s serves %s, as database %s.%s holds" % (
        data_url, _data_line(app_values), db, pg.quote_ident(table)))
    return True
