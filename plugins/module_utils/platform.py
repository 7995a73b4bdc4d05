# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The application platform: one set of states for the AUDITRON API, whatever runs it.

`ensure` brings an app to stopped, started, restarted, deployed or status through a driver:

- `process` (platform_process.py): one process started from an argv list, recorded in a pid
  file in the lab's format;
- `compose` (platform_compose.py): one service of a docker compose project;
- `kubernetes` (platform_kubernetes.py): a Deployment, through kubernetes.core's API client.

`platform_drivers.make_driver` builds one from the app_platform module's options; verifying the
app once it runs is appverify.py.

Stopping remembers the replica count it found and starting restores it (the plan hard-codes
`--replicas=3`): in an annotation on the Deployment (`auditron.dr/replicas-before-stop`), or in
a small JSON state file (compose: next to the compose file; process: next to the pid file), so a
separate run can start the app again with the right count. The state file helpers are here.

Plain Python: no Ansible module object in here; errors are DRError with one line naming the app.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import time

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, format_time, utc_now, write_atomically

STATES = ("stopped", "started", "restarted", "deployed", "status")
PLATFORMS = ("process", "compose", "kubernetes")


# ---------------------------------------------------------------------------------------------
# Shared pieces

def atomic_write_json(path, data, mode=0o644):
    """Write JSON next to its final name, then rename: a reader never sees half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o700)
    write_atomically(path, json.dumps(data), mode)


def remove_file(path):
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
    atomic_write_json(path, {"replicas_before_stop": int(replicas), "platform": platform, "app": label,
                             "recorded_at": format_time(utc_now().replace(microsecond=0))})


def int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# The driver interface and the states

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
