"""backup_files.yml and restore_files.yml as users run them, and file_history's engine, against
the lab's real servers.

The end-to-end test backs up the primary site's seeded bucket (auditron-files) into the real
backup layout (files/ in both backup regions), changes a few of its objects, backs up again,
and restores as of the first point into a scratch prefix. Every object it changes at the
primary site is put back afterwards, and the backup is synced again, so other tests find the
seeded data and an up-to-date backup. The engine tests work under their own prefixes."""

import datetime
import hashlib
import os
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import filehistory, mirror, s3client
from tests.helpers.tcpproxy import TcpProxy

pytestmark = pytest.mark.lab


def store_params(store, name, prefix=""):
    return {"name": name, "type": "s3", "endpoint_url": store["endpoint"], "bucket": store["bucket"],
            "region": store.get("region", "us-east-1"), "access_key": store["access_key"],
            "secret_key": store["secret_key"], "ca_bundle": store["ca_file"], "prefix": prefix}


def endpoint(params):
    return s3client.S3Endpoint.from_params(params, params["name"])


def parallel(func, items):
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(func, items))


def digests(location):
    """{key: (size, sha256)} of every object, read back from the server."""
    def digest(entry):
        data = location.get_bytes(entry.key)
        assert len(data) == entry.size, entry.key
        return entry.key, (entry.size, hashlib.sha256(data).hexdigest())
    return dict(parallel(digest, list(location.list())))


def remove_all(location):
    keys = [entry.key for entry in location.list()]
    parallel(location.delete, [keys[start:start + 100] for start in range(0, len(keys), 100)])


class PrimaryFiles:
    """The primary site's seeded bucket: every change made through it is undone afterwards."""

    def __init__(self, location):
        self.location = location
        self.saved = {}

    def _save(self, key):
        if key not in self.saved:
            self.saved[key] = self.location.get_bytes(key) if self.location.head(key) is not None else None

    def put(self, key, data):
        self._save(key)
        self.location.put(key, data)

    def delete(self, key):
        self._save(key)
        assert self.location.delete([key]) == []

    def restore(self):
        for key, data in self.saved.items():
            if data is None:
                self.location.delete([key])
            else:
                self.location.put(key, data)


@pytest.fixture
def primary_files(lab):
    location = endpoint(store_params(lab["sites"]["primary"]["object_store"], "minio-primary"))
    guard = PrimaryFiles(location)
    yield guard
    guard.restore()
    # The backup follows the seeded data again, as the hourly job would make it.
    backup = endpoint(store_params(lab["backup_stores"]["us-east-1"], "s3-us-east-1", "files"))
    replica = endpoint(store_params(lab["backup_stores"]["eu-west-1"], "s3-eu-west-1", "files"))
    synced = filehistory.sync(location, backup)
    assert "msg" not in synced, synced["msg"]
    copied = mirror.sync(backup, replica, delete=True, commit_last=["points/*/point.json"])
    assert "msg" not in copied, copied["msg"]


@pytest.fixture
def scratch(lab):
    """A scratch prefix in the second region's backup bucket, removed afterwards."""
    params = store_params(lab["backup_stores"]["eu-west-1"], "scratch",
                          "tests/backup-files/%s" % uuid.uuid4().hex[:10])
    yield params
    remove_all(endpoint(params))


def test_backup_files_mirrors_the_primary_site_and_restores_as_of_the_first_point(lab, run_playbook, primary_files,
                                                                                  scratch):
    primary = primary_files.location
    backup = endpoint(store_params(lab["backup_stores"]["us-east-1"], "s3-us-east-1", "files"))
    replica = endpoint(store_params(lab["backup_stores"]["eu-west-1"], "s3-eu-west-1", "files"))

    # Both syncs fall in the same hour, and the plan's hourly tier keeps the newest sync of each
    # hour only: keep_last holds the first point for the restore.
    pinned = {"auditron_dr_files_retention": {"keep_last": 50}}
    first = run_playbook("backup_files.yml", extra_vars=pinned)
    assert first.rc == 0, first
    seeded = digests(primary)
    assert len(seeded) >= 20
    assert digests(backup.child("current")) == seeded, "current/ holds exactly the primary site's objects"
    assert digests(replica.child("current")) == seeded, "and so does the second region's copy"
    first_point = filehistory.list_points(backup)["latest"]["id"]
    assert sorted(entry.key for entry in replica.child("points").list(first_point + "/")) == \
        sorted(entry.key for entry in backup.child("points").list(first_point + "/"))

    keys = sorted(seeded)
    same_size, resized, removed = keys[0], keys[1], keys[2]
    primary_files.put(same_size, os.urandom(seeded[same_size][0]))     # same size, new bytes
    primary_files.put(resized, os.urandom(1234))
    added = ["tests-backup-files/%s/new-%d.pdf" % (uuid.uuid4().hex[:8], index) for index in range(2)]
    for key in added:
        primary_files.put(key, os.urandom(4321))
    primary_files.delete(removed)

    second = run_playbook("backup_files.yml", extra_vars=pinned)
    assert second.rc == 0, second
    latest = filehistory.list_points(backup)["latest"]
    assert latest["id"] > first_point and not latest["full"], "an hourly point is a delta"
    changed = digests(primary)
    assert digests(backup.child("current")) == changed
    history = sorted(entry.key for entry in backup.child("history").list())
    assert [key for key in history if key.endswith("/" + same_size) or key.endswith("/" + removed)], history[:5]

    restored = run_playbook("restore_files.yml", extra_vars={
        "target_site": "dr", "as_of": first_point, "auditron_dr_object_store": scratch})
    assert restored.rc == 0, restored
    assert digests(endpoint(scratch)) == seeded, "restored as of the first point: exactly the first state"
    report = list(restored.report_dir.glob("*-restore_files/report.md"))
    assert report and first_point in report[0].read_text()


def test_restore_files_check_mode_changes_nothing(lab, run_playbook, scratch):
    result = run_playbook("restore_files.yml", extra_vars={"target_site": "dr", "auditron_dr_object_store": scratch},
                          check=True)
    assert result.rc == 0, result
    assert list(endpoint(scratch).list()) == []


@pytest.fixture
def history_area(lab):
    run = uuid.uuid4().hex[:10]
    source = endpoint(store_params(lab["backup_stores"]["us-east-1"], "s3-us-east-1", "tests/file-history/%s/src" % run))
    backup_params = store_params(lab["backup_stores"]["eu-west-1"], "s3-eu-west-1", "tests/file-history/%s/files" % run)
    target = endpoint(store_params(lab["backup_stores"]["eu-west-1"], "s3-eu-west-1", "tests/file-history/%s/out" % run))
    yield source, backup_params, target
    for location in (source, endpoint(backup_params), target):
        remove_all(location)


def test_history_on_real_servers_restores_every_point(history_area):
    source, backup_params, _target = history_area
    backup = endpoint(backup_params)
    rng = random.Random(42)
    keys = ["k%02d" % index for index in range(12)] + ["dir/a b", "dir/é", "z+z"]
    recorded = {}
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    for step in range(6):
        for _change in range(3 if step else 10):
            present = [entry.key for entry in source.list()]
            roll = rng.random()
            if present and roll < 0.25:
                source.delete([rng.choice(present)])
            elif present and roll < 0.6:
                key = rng.choice(present)
                source.put(key, os.urandom(source.head(key).size))
            else:
                source.put(rng.choice(keys), os.urandom(rng.choice([0, 10, 3000])))
        result = filehistory.sync(source, backup, now=now + datetime.timedelta(hours=step), force=True,
                                  snapshot=step == 3)
        assert "msg" not in result, result["msg"]
        if result["point"]:
            recorded[result["point"]["id"]] = digests(source)
    assert len(recorded) >= 4
    for point, state in recorded.items():
        target = endpoint(dict(backup_params, prefix=backup_params["prefix"].replace("/files", "/out-" + point)))
        restored = filehistory.restore(backup, target, as_of=point)
        assert "msg" not in restored, restored["msg"]
        assert digests(target) == state, point
        remove_all(target)


def test_history_sync_when_the_backup_goes_silent_deletes_nothing_and_the_rerun_completes(lab, history_area):
    source, backup_params, target = history_area
    parallel(lambda index: source.put("o%03d" % index, os.urandom(20000)), range(300))
    backup = endpoint(backup_params)
    first = filehistory.sync(source, backup)
    assert "msg" not in first
    state = digests(source)
    parallel(lambda index: source.put("o%03d" % index, os.urandom(20000)), range(0, 300, 2))   # same size
    source.delete(["o001", "o003"])

    port = int(lab["backup_stores"]["eu-west-1"]["endpoint"].rsplit(":", 1)[1])
    proxy = TcpProxy("127.0.0.1", port)
    outcome = {}

    def sync_through_proxy():
        silent = s3client.S3Endpoint.from_params(dict(backup_params, endpoint_url="https://localhost:%d" % proxy.port),
                                                 "backup", timeout=5, retries=3)
        outcome["result"] = filehistory.sync(source, silent, threads=1, max_delete_percent=50,
                                             retention={"keep_last": 10})

    worker = threading.Thread(target=sync_through_proxy)
    worker.start()
    started = time.monotonic()
    while not list(backup.child("history").list()) and time.monotonic() - started < 30:
        time.sleep(0.02)
    proxy.refuse = True
    proxy.drop_all()
    worker.join(120)
    proxy.close()
    result = outcome["result"]
    assert result["summary"]["replaced"] < 150, "the cut came in the middle of the transfers"
    assert "stopped answering" in result["msg"] or "does not answer" in result["msg"], result["msg"]
    assert "nothing was deleted" in result["msg"]
    current = backup.child("current")
    assert current.head("o001") is not None and current.head("o003") is not None

    backup.delete([filehistory.LOCK_KEY])   # the run could not release its lock through the cut
    rerun = filehistory.sync(source, backup, max_delete_percent=50, retention={"keep_last": 10})  # same hour
    assert "msg" not in rerun, rerun["msg"]
    assert rerun["lost_version_count"] == 0
    assert digests(current) == digests(source)
    restored = filehistory.restore(backup, target, as_of=first["point"]["id"])
    assert "msg" not in restored
    assert digests(target) == state
