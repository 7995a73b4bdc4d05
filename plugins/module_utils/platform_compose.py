# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The `compose` platform: one service of a docker compose project; its scale is the replica count.

`docker compose -f <file> -p <project> stop|up -d --scale|ps --format json` (the v2 plugin, or any
command that speaks its CLI); the command runner is injectable so the exact argv can be tested
without a container engine. The count remembered at a stop is a state file next to the compose
file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, first_line
from ansible_collections.auditron.dr.plugins.module_utils.platform import Driver, read_state_file, remove_file, write_state_file


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
            remove_file(self.state_file)
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
