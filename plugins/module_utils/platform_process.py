# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The `process` platform: one detached process and its pid file (the lab's app).

The pid file is in the lab's format (JSON {pid, start_time, argv}, start_time = field 22 of
/proc/<pid>/stat), so the lab's own `make lab-down` still recognises and stops it. A pid is only
ever signalled when its start time matches the record: a pid the kernel has given to another
process is left alone. The replica count (0 or 1) remembered at a stop is a state file next to
the pid file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import time

from ansible.module_utils.six.moves.urllib.parse import urlparse

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, first_line
from ansible_collections.auditron.dr.plugins.module_utils.platform import (
    Driver, atomic_write_json, read_state_file, remove_file, write_state_file)


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
        remove_file(self.pid_file)
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
            remove_file(self.state_file)
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
        atomic_write_json(self.pid_file, record)
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
        remove_file(self.pid_file)
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
