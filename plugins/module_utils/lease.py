# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One lock for recovery runs across controllers: a lease held in the backup locations.

Why a protocol of our own and not a conditional write: of the lab's S3 servers, `rclone serve
s3` accepts If-None-Match and If-Match and ignores them (a second "create only if absent"
succeeds), and a proxy or gateway in front of a real store can do the same silently. A lock that
trusts a precondition the server may ignore is no lock. So every lease is taken the same way, on
any server that lists what it stored (S3 since 2020, SeaweedFS, rclone, a local directory):

1. the run writes a candidate object `runs/locks/<name>/<token>.json` (its holder: run id, host,
   pid, playbook, since) and never rewrites it; a heartbeat object `<token>.beat` says until when
   it is alive (renewed every ttl/4 by a process that watches the controller);
2. after a settle delay (longer than the servers' LastModified resolution), it lists the
   candidates: those whose heartbeat expired are dead (their objects are removed);
3. it holds the lease when its candidate is the oldest live one by the server's LastModified and
   no other live candidate has the same LastModified (a tie: every tied run withdraws and tries
   again after a random pause); otherwise it withdraws its candidate and waits, or refuses,
   naming the holder.

Two runs that write candidates at once both see both after the settle delay and agree on the
order (the server's clock orders them, not the controllers'). A candidate written after a run
took the lease is newer, so it loses. The lease is taken in every backup location that answers
(at least one); losing in any of them is losing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import random
import socket
import time
import uuid

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, first_line, format_time

PREFIX = "runs/locks"
DEFAULT_TTL = 60
DEFAULT_SETTLE = 1.5


def _epoch(value):
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.timestamp()
    return float(value)


def holder_text(holder):
    return "run %s on %s (pid %s, %s) since %s" % (
        holder.get("run_id"), holder.get("host"), holder.get("pid"), holder.get("playbook") or "?", holder.get("since"))


class Lease(object):
    """One run's candidate for lock `name` in one location."""

    def __init__(self, location, name, holder, token=None, ttl=DEFAULT_TTL, clock=time.time):
        self.location = location
        self.name = name
        self.holder = dict(holder)
        self.token = token or uuid.uuid4().hex
        self.ttl = int(ttl)
        self.clock = clock

    @property
    def key(self):
        return "%s/%s/%s.json" % (PREFIX, self.name, self.token)

    @property
    def beat_key(self):
        return "%s/%s/%s.beat" % (PREFIX, self.name, self.token)

    def write_candidate(self):
        body = dict(self.holder, token=self.token, ttl=self.ttl)
        self.location.put_bytes(self.key, json.dumps(body, sort_keys=True).encode("utf-8"))
        self.beat()

    def beat(self):
        """Say this run is alive for another ttl seconds."""
        until = self.clock() + self.ttl
        self.location.put_bytes(self.beat_key, json.dumps({"alive_until": until,
                                                           "alive_until_text": format_time(
                                                               datetime.datetime.fromtimestamp(
                                                                   until, datetime.timezone.utc))}).encode("utf-8"))
        return until

    def withdraw(self):
        self.location.delete([self.key, self.beat_key])

    def still_held(self):
        return self.location.exists(self.key)


def candidates(location, name, clock=time.time):
    """[(last_modified epoch, token, holder, alive_until)] of every candidate for lock `name`."""
    prefix = "%s/%s/" % (PREFIX, name)
    listed = dict((info.key, info) for info in location.list(prefix))
    found = []
    for key, info in listed.items():
        if not key.endswith(".json"):
            continue
        token = key[len(prefix):-len(".json")]
        try:
            holder = json.loads(location.get_bytes(key).decode("utf-8"))
        except Exception:  # pylint: disable=broad-except
            continue  # removed between the listing and the read (a release), or not ours
        alive_until = None
        beat_key = prefix + token + ".beat"
        if beat_key in listed:
            try:
                alive_until = float(json.loads(location.get_bytes(beat_key).decode("utf-8"))["alive_until"])
            except Exception:  # pylint: disable=broad-except
                alive_until = None
        if alive_until is None:
            # No heartbeat (yet, or any more): alive for a ttl after it was written.
            alive_until = (_epoch(info.last_modified) or clock()) + float(holder.get("ttl") or DEFAULT_TTL)
        found.append((_epoch(info.last_modified), token, holder, alive_until))
    return sorted(found, key=lambda item: (item[0], item[1]))


def standing(location, name, token, clock=time.time, expired=None):
    """(verdict, holder): won, lost (holder: the oldest live candidate), tie or gone (ours was
    removed: it expired in someone's eyes). Expired candidates are removed on the way (and added
    to `expired`, a list, with when they expired)."""
    now = clock()
    live = []
    here = socket.getfqdn()
    for modified, other, holder, alive_until in candidates(location, name, clock):
        # A holder on this host whose controller process is gone is dead now, whatever its
        # heartbeat last said (a run killed a moment ago and started again at once).
        if other != token and holder.get("host") == here and holder.get("pid") and not _alive(int(holder["pid"])):
            alive_until = min(alive_until, now - 0.001)
        if alive_until < now and other != token:
            if expired is not None:
                expired.append(dict(holder, token=other, location=location.name, expired_at=format_time(
                    datetime.datetime.fromtimestamp(alive_until, datetime.timezone.utc))))
            try:
                location.delete(["%s/%s/%s.json" % (PREFIX, name, other), "%s/%s/%s.beat" % (PREFIX, name, other)])
            except Exception:  # pylint: disable=broad-except
                pass
            continue
        live.append((modified, other, holder))
    mine = [item for item in live if item[1] == token]
    if not mine:
        return "gone", None
    first = live[0]
    # The oldest by the server's clock holds; several at that same instant: none of them does
    # (each withdraws and tries again), whatever their tokens say.
    if mine[0][0] == first[0] and sum(1 for item in live if item[0] == first[0]) > 1:
        return "tie", None
    if first[1] != token:
        # How much older the holder's candidate is than ours, by the server's clock: one about as
        # young as ours is a contender of the same instant (it may be losing elsewhere), not a holder.
        return "lost", dict(first[2], token=first[1], older_by=mine[0][0] - first[0])
    return "won", None


def acquire(locations, name, holder, ttl=DEFAULT_TTL, wait=0, settle=DEFAULT_SETTLE, poll=2.0, clock=time.time,
            sleep=time.sleep, log=None, contention_window=None):
    """Take lock `name` in every location of `locations` that answers. Returns {token, locations,
    unreachable, waited_seconds, taken_over: [holders whose lease had expired]}; DRError naming the holder
    when another run holds it past `wait` seconds, or when no location answers."""
    token = uuid.uuid4().hex
    started = clock()
    unreachable, expired = {}, []
    contention = 0
    while True:
        leases, lost_to = [], None
        for location in locations:
            if location.name in unreachable:
                continue
            lease = Lease(location, name, holder, token=token, ttl=ttl, clock=clock)
            try:
                lease.write_candidate()
            except Exception as exc:  # pylint: disable=broad-except
                unreachable[location.name] = first_line(exc)
                continue
            leases.append(lease)
        if not leases:
            raise DRError("lock %s: no backup location answers to hold it (%s)" % (
                name, "; ".join("%s: %s" % item for item in sorted(unreachable.items())) or "none configured"))
        sleep(settle)
        verdicts = []
        for lease in leases:
            verdict, other = standing(lease.location, name, token, clock, expired)
            verdicts.append(verdict)
            if verdict == "lost" and lost_to is None:
                lost_to = (lease.location.name, other)
        if all(verdict == "won" for verdict in verdicts):
            return {"token": token, "locations": [lease.location.name for lease in leases],
                    "unreachable_locations": unreachable, "waited_seconds": round(clock() - started, 1),
                    "taken_over": expired}
        for lease in leases:
            try:
                lease.withdraw()
            except Exception:  # pylint: disable=broad-except
                pass
        if lost_to is not None and lost_to[1].get("host") == holder.get("host") and lost_to[1].get("pid") and \
                lost_to[1].get("pid") == holder.get("pid"):
            # The same ansible-playbook already holds it (failover.yml imports restore_files.yml):
            # the inner run goes on under the outer one's lease, and releases nothing.
            return {"token": None, "locations": [], "unreachable_locations": unreachable, "waited_seconds": 0.0,
                    "taken_over": expired, "held_by_this_run": dict(lost_to[1])}
        window = (2 * settle + 1) if contention_window is None else contention_window
        contended = lost_to is not None and lost_to[1].get("older_by", 0) < window and contention < 20
        if lost_to is None or contended:
            # A tie, a contender of the same instant (runs started together may each lead in a
            # different location), or ours taken for dead: withdraw and try again after a random
            # pause, so that one of them comes back first alone and holds everywhere.
            contention += 1
            sleep(random.uniform(0.5, 3.0) * max(settle, 0.1))
            token = uuid.uuid4().hex
            continue
        where, other = lost_to
        if clock() - started >= wait:
            raise DRError("lock %s is held by %s (in %s)%s: nothing was changed; run again when it is done, or "
                          "wait for it with a longer lock wait" % (
                              name, holder_text(other), where,
                              (" - waited %d s" % (clock() - started)) if wait else ""),
                          holder=other)
        if log:
            log("lock %s is held by %s: waiting" % (name, holder_text(other)))
        sleep(poll)
        token = uuid.uuid4().hex


def release(locations, name, token):
    """Remove this run's candidate and heartbeat wherever they are; returns the location names."""
    removed = []
    for location in locations:
        lease = Lease(location, name, {}, token=token)
        try:
            if lease.still_held():
                lease.withdraw()
                removed.append(location.name)
        except Exception:  # pylint: disable=broad-except
            pass
    return removed


def status(locations, name, clock=time.time):
    """Who holds lock `name`, per location: {location: [holders, oldest first]}."""
    now = clock()
    return dict((location.name, [dict(holder, token=token, alive=alive_until >= now)
                                 for _modified, token, holder, alive_until in candidates(location, name, clock)])
                for location in locations)


def controller_pid(start=None, proc="/proc"):
    """The pid of the outermost ansible-playbook process this one runs under (its task workers
    are forks with the same command line, and end after each task), else None."""
    pid, found = start or os.getpid(), None
    for _depth in range(64):
        try:
            with open(os.path.join(proc, str(pid), "cmdline"), "rb") as handle:
                argv = handle.read().decode("utf-8", "replace").split("\0")
            with open(os.path.join(proc, str(pid), "stat")) as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (IOError, OSError, ValueError, IndexError):
            break
        if any(os.path.basename(arg).startswith("ansible-playbook") for arg in argv[:2]):
            found = pid
        if ppid <= 1:
            break
        pid = ppid
    return found


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == 1
    return True


def heartbeat_loop(locations, name, token, ttl, watch_pid, max_seconds=6 * 3600, clock=time.time, sleep=time.sleep):
    """Renew the lease every ttl/4 while `watch_pid` (the controller) lives and the lease is
    ours; release it as soon as the controller is gone (a killed run leaves no lease behind).
    Returns why it stopped."""
    leases = [Lease(location, name, {}, token=token, ttl=ttl, clock=clock) for location in locations]
    started = clock()
    while True:
        if watch_pid and not _alive(watch_pid):
            release(locations, name, token)
            return "controller %d gone: released" % watch_pid
        if clock() - started > max_seconds:
            return "ran %d s: stopped renewing (the lease expires)" % max_seconds
        held = 0
        for lease in leases:
            try:
                if lease.still_held():
                    lease.beat()
                    held += 1
            except Exception:  # pylint: disable=broad-except
                held += 1  # a location that does not answer now: try again next time
        if not held:
            return "released"
        # Beat every ttl/4; look at the controller twice a second meanwhile, so that a killed
        # run's lease goes at once.
        next_beat = clock() + max(1.0, ttl / 4.0)
        while clock() < next_beat:
            if watch_pid and not _alive(watch_pid):
                break
            sleep(min(0.5, next_beat - clock()))


def start_heartbeat(locations, name, token, ttl, watch_pid):
    """A detached process (its own session, so that a kill of the controller's process group
    spares it) running heartbeat_loop. Returns its pid."""
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
        return None
    # The child: fork again so that the heartbeat is reparented to init, in a session of its own.
    try:
        os.setsid()
        if os.fork():
            os._exit(0)  # pylint: disable=protected-access
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        for location in locations:
            if getattr(location, "_client", None) is not None:
                location._client = None  # pylint: disable=protected-access  # a client of its own, not the parent's sockets
        heartbeat_loop(locations, name, token, ttl, watch_pid)
    finally:
        os._exit(0)  # pylint: disable=protected-access


def default_holder(run_id, playbook):
    return {"run_id": run_id, "host": socket.getfqdn(), "pid": controller_pid() or os.getpid(),
            "playbook": playbook, "since": format_time(datetime.datetime.now(datetime.timezone.utc))}
