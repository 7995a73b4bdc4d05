"""filehistory: history points, restore as of a point, retention.

The property tests run many random histories, so they use MemoryEndpoint: a test double of
s3client.S3Endpoint that keeps objects in a dict (multipart uploads get AWS-style "-N" ETags,
so the code paths for non-MD5 ETags run too). The same scenarios run against the lab's real
servers in tests/integration/test_backup_files.py and test_object_mirror.py.
"""

import datetime
import hashlib
import os
import random
import threading

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import filehistory, mirror, s3client
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError

UTC = datetime.timezone.utc
T0 = datetime.datetime(2026, 11, 1, 0, 0, tzinfo=UTC)


class MemoryServer:
    """Buckets of objects in memory; `fail` (op, key) -> exception or None injects faults."""

    def __init__(self):
        self.buckets = {}
        self.lock = threading.Lock()
        self.fail = None
        self.retries = 1
        self.uploads = {}
        self.requests = 0

    def bucket(self, name):
        self.buckets.setdefault(name, {})
        return name

    def close(self):
        return None

    def check(self, operation, key):
        self.requests += 1
        if self.fail is not None:
            error = self.fail(operation, key)
            if error is not None:
                raise error


class MemoryReader:
    def __init__(self, stored):
        self.data = stored["data"]
        self.size = len(self.data)
        self.etag = stored["etag"]
        self.metadata = dict(stored["meta"])
        self.headers = {"content-type": stored["type"]} if stored["type"] else {}
        self.offset = 0

    def read(self, amount=-1):
        if amount is None or amount < 0:
            amount = self.size
        chunk = self.data[self.offset:self.offset + amount]
        self.offset += len(chunk)
        return chunk

    def close(self):
        return None


class MemoryEndpoint:
    """The part of s3client.S3Endpoint that mirror and filehistory use, over a dict."""

    kind = "memory"

    def __init__(self, server, bucket, prefix="", name="memory"):
        self.server = server
        self.bucket = server.bucket(bucket)
        self.prefix = prefix.strip("/")
        self.name = name

    def _objects(self):
        return self.server.buckets[self.bucket]

    def describe(self):
        return "%s (memory://%s/%s)" % (self.name, self.bucket, self.prefix)

    def child(self, sub):
        return MemoryEndpoint(self.server, self.bucket, s3client._join(self.prefix, sub), self.name)  # pylint: disable=protected-access

    def same_server(self, other):
        return isinstance(other, MemoryEndpoint) and other.server is self.server

    def full_key(self, key):
        return s3client._join(self.prefix, key)  # pylint: disable=protected-access

    def check_bucket(self):
        if self.bucket not in self.server.buckets:
            raise DRError("location %s: bucket %s does not exist" % (self.name, self.bucket))

    def list(self, prefix="", start_after=None):
        base = (self.prefix + "/") if self.prefix else ""
        self.server.check("list", prefix)
        with self.server.lock:
            keys = sorted(k for k in self._objects() if k.startswith(base + prefix))
            found = [(k[len(base):], len(self._objects()[k]["data"]), self._objects()[k]["etag"]) for k in keys]
        for key, size, etag in found:
            if start_after is None or key > start_after:
                yield s3client.Entry(key, size, etag)

    def list_prefixes(self, prefix=""):
        base = (self.prefix + "/") if self.prefix else ""
        found = set()
        for entry in self.list(prefix):
            rest = entry.key[len(prefix):]
            if "/" in rest:
                found.add(prefix + rest.split("/", 1)[0] + "/")
        del base
        return sorted(found)

    def head(self, key):
        self.server.check("head", key)
        stored = self._objects().get(self.full_key(key))
        if stored is None:
            return None
        return s3client.Head(key, len(stored["data"]), stored["etag"], dict(stored["meta"]), stored["type"])

    def open_read(self, key, attempts=None):
        self.server.check("get", key)
        stored = self._objects().get(self.full_key(key))
        if stored is None:
            raise s3client.SourceVanished("location %s: %s was deleted while the run went on" % (self.name, key))
        return MemoryReader(stored)

    def get_bytes(self, key):
        return self.open_read(key).read()

    @staticmethod
    def _put_headers(metadata, content_type=None, extra=None):
        return {"meta": dict((k, str(v)) for k, v in (metadata or {}).items() if v is not None),
                "type": content_type}

    def _store(self, key, data, meta, content_type, etag):
        with self.server.lock:
            self._objects()[self.full_key(key)] = {"data": bytes(data), "etag": etag, "meta": meta,
                                                   "type": content_type}

    def put(self, key, data, metadata=None, content_type=None, extra_headers=None, content_md5=None):
        self.server.check("put", key)
        etag = hashlib.md5(bytes(data)).hexdigest()
        if content_md5 and content_md5 != etag:
            raise DRError("location %s: %s BadDigest (HTTP 400)" % (self.name, key))
        self._store(key, data, self._put_headers(metadata)["meta"], content_type, etag)
        return etag

    def open_upload(self, key, metadata=None, content_type=None, extra_headers=None, part_size=None):
        return s3client.Uploader(self, key, metadata, content_type, extra_headers,
                                 part_size or s3client.DEFAULT_PART_SIZE)

    def create_multipart(self, key, headers):
        self.server.check("create_multipart", key)
        upload_id = os.urandom(6).hex()
        self.server.uploads[upload_id] = (headers, {})
        return upload_id

    def upload_part(self, key, upload_id, number, data):
        self.server.check("upload_part", key)
        self.server.uploads[upload_id][1][number] = bytes(data)
        return '"%s"' % hashlib.md5(data).hexdigest()

    def complete_multipart(self, key, upload_id, parts):
        headers, stored = self.server.uploads.pop(upload_id)
        data = b"".join(stored[number] for number, _etag in parts)
        digests = b"".join(hashlib.md5(stored[number]).digest() for number, _etag in parts)
        etag = "%s-%d" % (hashlib.md5(digests).hexdigest(), len(parts))
        self._store(key, data, headers["meta"], headers["type"], etag)
        return etag

    def abort_multipart(self, key, upload_id):
        self.server.uploads.pop(upload_id, None)

    def copy_from(self, source, source_key, key, metadata=None, content_type=None, replace_metadata=False):
        self.server.check("copy", key)
        stored = source._objects().get(source.full_key(source_key))  # pylint: disable=protected-access
        if stored is None:
            raise DRError("location %s: %s not found" % (source.name, source_key))
        self._store(key, stored["data"], dict(stored["meta"]), stored["type"], stored["etag"])
        return stored["etag"]

    def delete(self, keys):
        failed = []
        for key in keys:
            try:
                self.server.check("delete", key)
            except DRError as exc:
                failed.append((key, exc.message))
                continue
            with self.server.lock:
                self._objects().pop(self.full_key(key), None)
        return failed

    def contents(self):
        return dict((entry.key, self.get_bytes(entry.key)) for entry in self.list())


@pytest.fixture
def world(monkeypatch):
    """(backup server, source, backup): the source on a server of its own, as MinIO is."""
    monkeypatch.setattr(filehistory, "LOCK_SETTLE_SECONDS", 0)
    server = MemoryServer()
    source = MemoryEndpoint(MemoryServer(), "minio", name="minio")
    backup = MemoryEndpoint(server, "backups", "files", name="s3")
    return server, source, backup


def target_for(server, name):
    return MemoryEndpoint(server, "restore", name, name="target-%s" % name)


def mutate(rng, source, keys, sizes=(0, 1, 7, 300, 4096)):
    """One random change at the source: new, overwrite (often same size), or delete."""
    present = [entry.key for entry in source.list()]
    choice = rng.random()
    if present and choice < 0.3:
        source.delete([rng.choice(present)])
        return
    if present and choice < 0.7:
        key = rng.choice(present)
        size = len(source.get_bytes(key)) if rng.random() < 0.6 else rng.choice(sizes)
        source.put(key, os.urandom(size))  # same size, new content: size alone misses it
        return
    source.put(rng.choice(keys), os.urandom(rng.choice(sizes)))


KEYS = ["a", "a-b", "a/b", "a/c/d", "b", "dir/x", "dir/y", "é.pdf", "z z", "zz", "100%"]


@pytest.mark.parametrize("seed", range(12))
def test_restore_as_of_every_point_gives_back_the_recorded_state(world, seed):
    server, source, backup = world
    rng = random.Random(seed)
    recorded = {}
    latest = None
    now = T0
    for step in range(25):
        for _change in range(rng.choice([0, 0, 1, 2, 4])):
            mutate(rng, source, KEYS)
        now += datetime.timedelta(minutes=rng.choice([30, 60, 60, 120]))
        snapshot = rng.random() < 0.2
        result = filehistory.sync(source, backup, snapshot=snapshot, now=now, prune=False, threads=4, force=True)
        assert "msg" not in result, result["msg"]
        state = source.contents()
        if result["point"] and result["point"]["written"]:
            latest = result["point"]["id"]
            recorded[latest] = state
            assert result["point"]["objects"] == len(state), step
            assert result["point"]["bytes"] == sum(len(v) for v in state.values()), step
        else:
            assert not result["changed"] and recorded[latest] == state, "nothing changed, nothing written"
        assert backup.child("current").contents() == state
    assert len(recorded) >= 5
    for point, state in recorded.items():
        target = target_for(server, point)
        restored = filehistory.restore(backup, target, as_of=point, threads=4)
        assert "msg" not in restored, restored["msg"]
        assert target.contents() == state, point


def test_a_same_size_change_is_a_new_version(world):
    server, source, backup = world
    source.put("invoice.pdf", b"A" * 100)
    first = filehistory.sync(source, backup, now=T0)
    source.put("invoice.pdf", b"B" * 100)
    second = filehistory.sync(source, backup, now=T0 + datetime.timedelta(hours=1))
    assert second["summary"]["replaced"] == 1
    target = target_for(server, "x")
    filehistory.restore(backup, target, as_of=first["point"]["id"])
    assert target.contents() == {"invoice.pdf": b"A" * 100}


def test_a_hourly_point_costs_what_changed(world):
    server, source, backup = world
    for index in range(200):
        source.put("f%03d" % index, os.urandom(50))
    filehistory.sync(source, backup, now=T0, snapshot=True)
    source.put("f007", os.urandom(50))
    source.delete(["f100"])
    server.requests = 0
    result = filehistory.sync(source, backup, now=T0 + datetime.timedelta(hours=1))
    point = result["point"]
    assert not point["full"] and point["base"] != point["id"]
    manifest = filehistory.Backup(backup).manifest(point["id"])
    assert manifest["index"]["delta"]["entries"] == 2
    assert manifest["ledger"]["entries"] == 2   # the overwritten and the deleted version
    history = [entry.key for entry in backup.child("history").list()]
    assert len(history) == 2
    assert server.requests < 40   # listings and a few writes, not one request per object


def test_nothing_changed_writes_nothing_but_a_snapshot_always_writes(world):
    _server, source, backup = world
    source.put("x", b"1")
    filehistory.sync(source, backup, now=T0)
    again = filehistory.sync(source, backup, now=T0 + datetime.timedelta(hours=1))
    assert not again["changed"] and again["point"] is None
    snap = filehistory.sync(source, backup, now=T0 + datetime.timedelta(hours=2), snapshot=True)
    assert snap["changed"] and snap["point"]["kind"] == "snapshot" and snap["point"]["full"]


def test_every_run_says_what_the_backup_holds_after_it(world):
    """backup_objects/backup_bytes: the size gauge's input, from the new point, or the latest one
    when nothing changed; unknown in check mode."""
    _server, source, backup = world
    source.put("x", b"12345")
    source.put("y", b"123")
    first = filehistory.sync(source, backup, now=T0)
    assert (first["backup_objects"], first["backup_bytes"]) == (2, 8)
    unchanged = filehistory.sync(source, backup, now=T0 + datetime.timedelta(hours=1))
    assert unchanged["point"] is None and (unchanged["backup_objects"], unchanged["backup_bytes"]) == (2, 8)
    source.put("z", b"1234567890")
    planned = filehistory.sync(source, backup, now=T0 + datetime.timedelta(hours=2), check_mode=True)
    assert planned["backup_bytes"] is None
    grown = filehistory.sync(source, backup, now=T0 + datetime.timedelta(hours=3))
    assert (grown["backup_objects"], grown["backup_bytes"]) == (3, 18)


def test_restore_by_time_picks_the_newest_point_at_or_before_it(world):
    server, source, backup = world
    source.put("x", b"1")
    filehistory.sync(source, backup, now=T0)
    source.put("x", b"2")
    filehistory.sync(source, backup, now=T0 + datetime.timedelta(hours=2))
    target = target_for(server, "t")
    result = filehistory.restore(backup, target, as_of="2026-11-01T01:30:00Z")
    assert result["point"]["id"] == "20261101T000000Z"
    assert target.contents() == {"x": b"1"}
    with pytest.raises(DRError, match="no point at or before"):
        filehistory.restore(backup, target, as_of="2026-10-01T00:00:00Z")
    with pytest.raises(DRError, match="no point 20261101T010000Z"):
        filehistory.restore(backup, target, as_of="20261101T010000Z")


def test_failed_transfers_delete_nothing_and_the_next_run_completes(world):
    server, source, backup = world
    for key in ("a", "b", "c", "d"):
        source.put(key, key.encode())
    filehistory.sync(source, backup, now=T0)
    source.put("a", b"new a")
    source.delete(["d"])

    def broken(operation, key):
        if operation in ("put", "upload_part") and key == "a":
            return s3client.EndpointDown("location s3: endpoint memory stopped answering during a")
        return None

    server.fail = broken
    failed = filehistory.sync(source, backup, now=T0 + datetime.timedelta(hours=1), threads=2, max_delete_percent=50)
    assert "stopped answering" in failed["msg"] and "nothing was deleted" in failed["msg"]
    assert backup.child("current").contents()["d"] == b"d"
    server.fail = None
    done = filehistory.sync(source, backup, now=T0 + datetime.timedelta(hours=2), max_delete_percent=50)
    assert "msg" not in done
    assert backup.child("current").contents() == {"a": b"new a", "b": b"b", "c": b"c"}
    target = target_for(server, "first")
    filehistory.restore(backup, target, as_of="20261101T000000Z")
    assert target.contents() == {"a": b"a", "b": b"b", "c": b"c", "d": b"d"}


def test_a_crash_between_displacement_and_commit_loses_nothing(world):
    server, source, backup = world
    source.put("k", b"version 1")
    filehistory.sync(source, backup, now=T0)
    source.put("k", b"version 2")
    # A sync that dies after copying the new version in, before its manifest: simulate by
    # failing the manifest write.

    def die_at_commit(operation, key):
        if operation == "put" and key.endswith(filehistory.MANIFEST):
            return DRError("location s3: simulated crash")
        return None

    server.fail = die_at_commit
    crashed = filehistory.sync(source, backup, now=T0 + datetime.timedelta(hours=1))
    assert "point 20261101T010000Z could not be written: location s3: simulated crash" in crashed["msg"]
    assert filehistory.list_points(backup)["latest"]["id"] == "20261101T000000Z"
    server.fail = None
    done = filehistory.sync(source, backup, now=T0 + datetime.timedelta(hours=2))
    assert "msg" not in done and done["lost_version_count"] == 0
    first = target_for(server, "first")
    filehistory.restore(backup, first, as_of="20261101T000000Z")
    assert first.contents() == {"k": b"version 1"}
    latest = target_for(server, "latest")
    filehistory.restore(backup, latest)
    assert latest.contents() == {"k": b"version 2"}
    assert filehistory.list_points(backup)["incomplete_points"] == []


def test_deleting_most_of_the_source_is_refused_unless_forced(world):
    _server, source, backup = world
    for index in range(20):
        source.put("f%02d" % index, b"x")
    filehistory.sync(source, backup, now=T0)
    source.delete(["f%02d" % index for index in range(15)])
    refused = filehistory.sync(source, backup, now=T0 + datetime.timedelta(hours=1))
    assert "refusing to delete 15 of 20" in refused["msg"]
    assert len(list(backup.child("current").list())) == 20
    forced = filehistory.sync(source, backup, now=T0 + datetime.timedelta(hours=2), force=True)
    assert "msg" not in forced and len(list(backup.child("current").list())) == 5


def test_check_mode_plans_without_writing(world):
    server, source, backup = world
    source.put("x", b"1")
    filehistory.sync(source, backup, now=T0)
    source.put("y", b"2")
    source.put("x", b"3")
    before = dict(server.buckets["backups"])
    planned = filehistory.sync(source, backup, now=T0 + datetime.timedelta(hours=1), check_mode=True)
    assert planned["changed"] and planned["plan"]["copy"]["objects"] == 1 and planned["plan"]["replace"]["objects"] == 1
    assert server.buckets["backups"] == before


def test_the_lock_keeps_two_syncs_apart(world):
    _server, source, backup = world
    source.put("x", b"1")
    holder = filehistory.Backup(backup)
    holder.acquire()
    with pytest.raises(DRError, match="locked by sync"):
        filehistory.sync(source, backup, now=T0)
    holder.release()
    assert "msg" not in filehistory.sync(source, backup, now=T0)


def test_encrypted_backups_restore_to_plaintext(world, tmp_path):
    from ansible_collections.auditron.dr.plugins.module_utils import keyproviders  # pylint: disable=import-outside-toplevel
    server, source, backup = world
    key_file = str(tmp_path / "files.key")
    keyproviders.generate_key_file(key_file)
    params = {"key_source": "file", "key_file": key_file}
    options = mirror.CopyOptions(crypt="encrypt", provider=keyproviders.provider_from_params(params), encryption_params=params)
    source.put("a.pdf", b"%PDF secret " * 50, content_type="application/pdf")
    first = filehistory.sync(source, backup, now=T0, options=options)
    stored = backup.child("current").get_bytes("a.pdf")
    assert b"secret" not in stored
    again = filehistory.sync(source, backup, now=T0 + datetime.timedelta(hours=1), options=options)
    assert not again["changed"], "plaintext size and source ETag in the index detect no change"
    source.put("a.pdf", b"%PDF public " * 50)
    filehistory.sync(source, backup, now=T0 + datetime.timedelta(hours=2), options=options)
    target = target_for(server, "enc")
    restored = filehistory.restore(backup, target, as_of=first["point"]["id"],
                                   options=mirror.CopyOptions(encryption_params=params))
    assert "msg" not in restored
    assert target.contents() == {"a.pdf": b"%PDF secret " * 50}
    assert target.head("a.pdf").content_type == "application/pdf"


@pytest.mark.parametrize("seed", range(6))
def test_retention_keeps_every_kept_point_restorable_and_collects_the_rest(world, seed):
    server, source, backup = world
    rng = random.Random(1000 + seed)
    recorded = {}
    now = T0
    for hour in range(24 * 5):
        if rng.random() < 0.5:
            mutate(rng, source, KEYS)
        now = T0 + datetime.timedelta(hours=hour)
        snapshot = now.hour == 2
        result = filehistory.sync(source, backup, snapshot=snapshot, now=now, prune=False, threads=2, force=True)
        if result["point"] and result["point"]["written"]:
            recorded[result["point"]["id"]] = source.contents()
    policy = {"hourly_hours": 24, "daily_days": 3}
    pruned = filehistory.prune(backup, retention=policy, now=now)
    assert pruned["deleted_points"], "five days of hourly points under a one-day window"
    assert pruned["deleted_versions"] > 0
    listed = filehistory.list_points(backup)
    kept = [point["id"] for point in listed["points"] if point["restorable"]]
    assert kept[-1] == max(recorded)
    window_start = now - datetime.timedelta(hours=24)
    hourly_recorded = [p for p in recorded if filehistory.point_time(p) > window_start]
    for point in hourly_recorded:
        assert point in kept, "every point inside the hourly window is kept"
    for point in kept:
        target = target_for(server, "r" + point)
        restored = filehistory.restore(backup, target, as_of=point, threads=2)
        assert "msg" not in restored, restored["msg"]
        assert target.contents() == recorded[point], point
    # Restoring as of any time inside the window gives the state in force then.
    moment = window_start + datetime.timedelta(minutes=1)
    in_force = max(p for p in recorded if filehistory.point_time(p) <= moment)
    target = target_for(server, "boundary")
    filehistory.restore(backup, target, as_of=moment)
    assert target.contents() == recorded[in_force]
    # Once nothing but the newest point is wanted, no displaced version is left.
    later = now + datetime.timedelta(days=400)
    filehistory.prune(backup, retention={"hourly_hours": 1, "daily_days": 1}, now=later)
    assert list(backup.child("history").list()) == []
    assert pruned["policy"]["hourly_hours"] == 24


def test_point_ids_sort_as_time_and_never_collide(world):
    _server, source, backup = world
    source.put("x", b"1")
    first = filehistory.sync(source, backup, now=T0)
    source.put("x", b"2")
    second = filehistory.sync(source, backup, now=T0)   # same second
    assert second["point"]["id"] > first["point"]["id"]
    assert filehistory.point_time(second["point"]["id"]) - filehistory.point_time(first["point"]["id"]) == \
        datetime.timedelta(seconds=1)
