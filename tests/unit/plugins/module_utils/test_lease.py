"""The recovery lock (plugins/module_utils/lease.py) on local locations: one holder at a time,
the holder named to the run it keeps out, expired leases taken over and said, ties on the
server's timestamp resolved by trying again, and the heartbeat that releases a dead
controller's lease. (The S3 side runs in tests/faults/test_rerun.py, against the lab's servers.)"""

import os
import subprocess
import sys
import threading

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import lease
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.storage import LocalLocation, ObjectInfo


class Clock(object):
    def __init__(self, now=1_800_000_000.0):
        self.now = now

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class CoarseLocation(LocalLocation):
    """A local location whose listing reports LastModified to the whole second, as some S3
    servers do: two candidates written in the same second tie."""

    def list(self, prefix=""):
        for info in super().list(prefix):
            yield ObjectInfo(info.key, info.size, info.etag, int(info.last_modified), info.metadata)


def holder(run_id):
    return {"run_id": run_id, "host": "controller-%s" % run_id, "pid": 4242, "playbook": "failover.yml",
            "since": "2026-12-08T00:00:00Z"}


@pytest.fixture
def places(tmp_path):
    return [LocalLocation("s3-us-east-1", str(tmp_path / "east")), LocalLocation("s3-eu-west-1", str(tmp_path / "west"))]


def test_the_second_run_is_refused_naming_the_holder_and_gets_it_once_released(places):
    clock = Clock()
    first = lease.acquire(places, "recovery", holder("A"), settle=0, clock=clock, sleep=clock.sleep, contention_window=0)
    assert first["locations"] == ["s3-us-east-1", "s3-eu-west-1"] and first["taken_over"] == []
    with pytest.raises(DRError) as err:
        lease.acquire(places, "recovery", holder("B"), settle=0, clock=clock, sleep=clock.sleep, contention_window=0)
    assert "lock recovery is held by run A on controller-A (pid 4242, failover.yml) since 2026-12-08T00:00:00Z" in \
        str(err.value) and "nothing was changed" in str(err.value)
    assert [h["run_id"] for h in lease.status(places, "recovery")["s3-us-east-1"]] == ["A"]   # B withdrew
    assert lease.release(places, "recovery", first["token"]) == ["s3-us-east-1", "s3-eu-west-1"]
    second = lease.acquire(places, "recovery", holder("B"), settle=0, clock=clock, sleep=clock.sleep, contention_window=0)
    assert second["token"] != first["token"]


def test_a_waiting_run_starts_when_the_holder_releases(places):
    clock = Clock()
    first = lease.acquire(places, "recovery", holder("A"), settle=0, clock=clock, sleep=clock.sleep, contention_window=0)
    polls = []

    def sleep(seconds):
        clock.sleep(seconds)
        polls.append(seconds)
        if len(polls) == 3:
            lease.release(places, "recovery", first["token"])

    said = []
    second = lease.acquire(places, "recovery", holder("B"), settle=0, wait=30, poll=2, clock=clock, sleep=sleep,
                           log=said.append, contention_window=0)
    assert second["waited_seconds"] >= 2 and said and "held by run A" in said[0]


def test_a_lease_without_heartbeat_is_taken_over_after_it_expired_and_said(places):
    clock = Clock()
    lease.acquire(places, "recovery", holder("A"), ttl=60, settle=0, clock=clock, sleep=clock.sleep, contention_window=0)
    clock.now += 30
    with pytest.raises(DRError):                 # alive for 60 s after its last heartbeat
        lease.acquire(places, "recovery", holder("B"), settle=0, clock=clock, sleep=clock.sleep, contention_window=0)
    clock.now += 31
    taken = lease.acquire(places, "recovery", holder("B"), settle=0, clock=clock, sleep=clock.sleep, contention_window=0)
    assert sorted((h["run_id"], h["location"]) for h in taken["taken_over"]) == [("A", "s3-eu-west-1"),
                                                                                 ("A", "s3-us-east-1")]
    assert [h["run_id"] for h in lease.status(places, "recovery")["s3-eu-west-1"]] == ["B"]


def test_losing_in_any_location_is_losing(places):
    clock = Clock()
    lease.acquire(places[1:], "recovery", holder("A"), settle=0, clock=clock, sleep=clock.sleep, contention_window=0)   # west only
    with pytest.raises(DRError) as err:
        lease.acquire(places, "recovery", holder("B"), settle=0, clock=clock, sleep=clock.sleep, contention_window=0)
    assert "(in s3-eu-west-1)" in str(err.value)
    assert lease.status(places, "recovery")["s3-us-east-1"] == []            # B withdrew from east too


def test_no_location_that_answers_is_an_error_naming_them(tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a directory should be")
    with pytest.raises(DRError) as err:
        lease.acquire([LocalLocation("s3-us-east-1", str(blocked))], "recovery", holder("A"), settle=0,
                      contention_window=0)
    assert "no backup location answers to hold it (s3-us-east-1:" in str(err.value)


def test_candidates_written_in_the_same_second_tie_and_neither_holds(tmp_path):
    place = CoarseLocation("coarse", str(tmp_path / "coarse"))
    one = lease.Lease(place, "recovery", holder("A"))
    two = lease.Lease(place, "recovery", holder("B"))
    one.write_candidate()
    two.write_candidate()
    for key in (one.key, two.key):                  # the same second, as a coarse server would list them
        os.utime(os.path.join(place.path, key), (1_800_000_000.2, 1_800_000_000.7 if key == two.key else 1_800_000_000.1))
    assert lease.standing(place, "recovery", one.token)[0] == "tie"
    assert lease.standing(place, "recovery", two.token)[0] == "tie"


@pytest.mark.parametrize("coarse", [False, True])
def test_runs_started_together_never_both_hold(tmp_path, coarse):
    """Eight runs at once, ten rounds: exactly one holds each time; the others are refused."""
    kind = CoarseLocation if coarse else LocalLocation
    places = [kind("east", str(tmp_path / "east")), kind("west", str(tmp_path / "west"))]
    for round_number in range(10):
        outcomes = {}
        start = threading.Barrier(8)

        def run(name):
            start.wait()
            try:
                outcomes[name] = lease.acquire(places, "recovery", holder(name), settle=0.3 if not coarse else 1.1)
            except DRError as exc:
                outcomes[name] = exc

        threads = [threading.Thread(target=run, args=("R%d" % index,)) for index in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        winners = [name for name, outcome in outcomes.items() if isinstance(outcome, dict)]
        assert len(winners) == 1, "round %d: %s" % (round_number, outcomes)
        lease.release(places, "recovery", outcomes[winners[0]]["token"])
        if round_number >= (1 if coarse else 4):
            break  # seconds each with the coarse clock


def test_the_heartbeat_renews_while_the_controller_lives_and_releases_when_it_is_gone(places):
    controller = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    clock = Clock()
    taken = lease.acquire(places, "recovery", holder("A"), ttl=60, settle=0, clock=clock, sleep=clock.sleep, contention_window=0)
    beats = []

    real_beat = lease.Lease.beat

    def beat(self):
        beats.append(clock.now)
        if len(beats) == 3:
            controller.kill()
            controller.wait()
        return real_beat(self)

    lease.Lease.beat = beat
    try:
        why = lease.heartbeat_loop(places, "recovery", taken["token"], 60, controller.pid, clock=clock,
                                   sleep=clock.sleep)
    finally:
        lease.Lease.beat = real_beat
    assert why == "controller %d gone: released" % controller.pid
    assert beats[2] - beats[0] == 15 and beats[2] == beats[3]   # every ttl/4 (both locations in one beat)
    assert clock.now - beats[-1] <= 0.5                          # released within half a second of the kill
    assert lease.status(places, "recovery") == {"s3-us-east-1": [], "s3-eu-west-1": []}


def test_the_heartbeat_stops_when_the_lease_was_released(places):
    clock = Clock()
    taken = lease.acquire(places, "recovery", holder("A"), settle=0, clock=clock, sleep=clock.sleep, contention_window=0)
    lease.release(places, "recovery", taken["token"])
    assert lease.heartbeat_loop(places, "recovery", taken["token"], 60, os.getpid(), clock=clock,
                                sleep=clock.sleep) == "released"


def test_a_holder_on_this_host_whose_controller_is_gone_is_dead_at_once(places):
    import socket  # pylint: disable=import-outside-toplevel
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    clock = Clock()
    lease.acquire(places, "recovery", dict(holder("A"), host=socket.getfqdn(), pid=gone.pid), settle=0,
                  clock=clock, sleep=clock.sleep, contention_window=0)
    taken = lease.acquire(places, "recovery", holder("B"), settle=0, clock=clock, sleep=clock.sleep,
                          contention_window=0)
    assert [h["run_id"] for h in taken["taken_over"]] == ["A", "A"]


def test_no_ansible_playbook_above_pytest():
    assert lease.controller_pid() is None


def test_the_same_controller_process_goes_on_under_its_own_lease_and_releases_nothing(places):
    clock = Clock()
    outer = lease.acquire(places, "recovery", holder("A"), settle=0, clock=clock, sleep=clock.sleep,
                          contention_window=0)
    # Same host, same pid: a playbook imported by the one that holds the lock.
    inner = lease.acquire(places, "recovery", dict(holder("A"), run_id="A-imported"), settle=0, clock=clock,
                          sleep=clock.sleep, contention_window=0)
    assert inner["token"] is None and inner["held_by_this_run"]["run_id"] == "A"
    assert [h["token"] for h in lease.status(places, "recovery")["s3-us-east-1"]] == [outer["token"]]
    with pytest.raises(DRError):                                   # another process is still kept out
        lease.acquire(places, "recovery", dict(holder("B"), pid=4343), settle=0, clock=clock, sleep=clock.sleep,
                      contention_window=0)
