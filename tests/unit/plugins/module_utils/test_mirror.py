"""mirror: ordering, change detection, the delete guard, and the
plain mirror's decisions (on the in-memory double of test_filehistory; the same scenarios
run against the lab's real servers in tests/integration/test_object_mirror.py)."""

import time
import os
import random

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import mirror, s3client
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError

from test_filehistory import MemoryEndpoint, MemoryServer  # pylint: disable=import-error,wrong-import-order


def entry(key, size, etag):
    return s3client.Entry(key, size, etag)


MD5_A = "0cc175b9c0f1b6a831c399e269772661"
MD5_B = "92eb5ffee6ae2fec3ad71c777531578f"


def test_listing_comparison_never_trusts_size_alone():
    assert mirror.compare_listed(entry("k", 5, MD5_A), entry("k", 5, MD5_A)) == mirror.SKIP
    assert mirror.compare_listed(entry("k", 5, MD5_A), entry("k", 5, MD5_B)) == mirror.REPLACE  # same size
    assert mirror.compare_listed(entry("k", 5, MD5_A), entry("k", 6, MD5_A)) == mirror.REPLACE
    assert mirror.compare_listed(entry("k", 5, MD5_A + "-2"), entry("k", 5, MD5_A)) == mirror.CHECK
    assert mirror.compare_listed(entry("k", 5, MD5_A + "-2"), entry("k", 5, MD5_A + "-2")) == mirror.SKIP
    assert mirror.compare_listed(entry("k", 5, MD5_A), entry("k", 5, MD5_A), crypt="encrypt") == mirror.CHECK


def identity(size, md5=None, sha256=None, source_etag=None, etag=None):
    return {"size": size, "md5": md5, "sha256": sha256, "source_etag": source_etag, "etag": etag, "encrypted": False}


def test_content_comparison_uses_hashes_and_the_recorded_source_etag():
    assert mirror.same_content(identity(5, sha256="s1"), identity(5, sha256="s1"))
    assert not mirror.same_content(identity(5, sha256="s1"), identity(5, sha256="s2"))
    assert not mirror.same_content(identity(5, sha256="s1"), identity(6, sha256="s1"))
    assert mirror.same_content(identity(5, md5=MD5_A, etag=MD5_A), identity(5, md5=MD5_A, etag="x-2"))
    assert mirror.same_content(identity(5, etag="e-3"), identity(5, source_etag="e-3"))
    assert not mirror.same_content(identity(5, etag="e-3"), identity(5, source_etag="e-4"))
    assert mirror.same_content(identity(5, etag="e-3"), identity(5)) is None   # cannot tell: copy


def test_the_delete_guard():
    assert mirror.delete_guard(0, 100, 10, False) is None
    assert mirror.delete_guard(10, 100, 10, False) is None
    assert "refusing to delete 11 of 100" in mirror.delete_guard(11, 100, 10, False)
    assert mirror.delete_guard(100, 100, 10, True) is None


def test_listing_order_is_checked_as_it_streams():
    ordered = [entry("a", 1, ""), entry("a/b", 1, ""), entry("a0", 1, ""), entry("é", 1, "")]
    assert list(mirror.checked_order(ordered, "x")) == ordered
    with pytest.raises(mirror.ListingOrderError, match="'a-b' after 'a/b'"):
        list(mirror.checked_order([entry("a/b", 1, ""), entry("a-b", 1, "")], "x"))
    # Python's str order is UTF-8 binary order, which is S3's: '-' < '/' < '0' < 'é'.
    assert sorted(["é", "a0", "a/b", "a-b"]) == ["a-b", "a/b", "a0", "é"]


def test_merge_sorted_joins_by_key():
    left = [entry("a", 1, ""), entry("c", 3, "")]
    right = [("b", {"s": 2}), ("c", {"s": 3})]
    rows = list(mirror.merge_sorted(left, right))
    assert [key for key, _row in rows] == ["a", "b", "c"]
    assert rows[0][1][1] is None and rows[1][1][0] is None
    assert rows[2][1][0].size == 3 and rows[2][1][1][1] == {"s": 3}


def test_sorted_spool_sorts_beyond_one_run_and_keeps_the_last_value():
    rng = random.Random(7)
    keys = ["k%05d" % i for i in range(2500)]
    rng.shuffle(keys)
    spool = mirror.SortedSpool(run_size=300)
    try:
        for key in keys:
            spool.add(key, 1)
        spool.add("k00042", 2)
        assert len(spool.runs) >= 8
        result = list(spool.latest())
        assert [key for key, _value in result] == sorted(set(keys))
        assert dict(result)["k00042"] == 2
    finally:
        spool.close()


class _Unsorted(MemoryEndpoint):
    """A server that lists in reverse order: the mirror must notice and sort on disk."""

    def list(self, prefix="", start_after=None):
        return iter(list(super().list(prefix, start_after))[::-1])


@pytest.fixture
def stores():
    source = MemoryEndpoint(MemoryServer(), "source", name="src")
    destination = MemoryEndpoint(MemoryServer(), "dest", "mirror", name="dst")
    return source, destination


def test_plain_mirror_copies_replaces_and_skips(stores):
    source, destination = stores
    for key in ("a", "b", "c"):
        source.put(key, b"x" * 10)
    first = mirror.sync(source, destination)
    assert first["summary"]["copied"] == 3 and first["changed"]
    source.put("b", b"y" * 10)   # same size, new content
    second = mirror.sync(source, destination)
    assert second["summary"]["replaced"] == 1 and second["summary"]["skipped"] == 2
    third = mirror.sync(source, destination)
    assert not third["changed"] and third["summary"]["skipped"] == 3
    assert destination.contents() == source.contents()
    assert destination.head("a").metadata[mirror.META_SHA256]


def test_extra_objects_go_only_when_asked_and_within_the_guard(stores):
    source, destination = stores
    for index in range(10):
        source.put("f%d" % index, b"1")
    mirror.sync(source, destination)
    destination.put("stray", b"?")
    kept = mirror.sync(source, destination)
    assert kept["plan"][mirror.EXTRA]["objects"] == 1 and destination.head("stray") is not None
    removed = mirror.sync(source, destination, delete=True)
    assert removed["summary"]["deleted"] == 1 and destination.head("stray") is None
    source.delete(["f%d" % index for index in range(5)])
    refused = mirror.sync(source, destination, delete=True)
    assert "refusing to delete 5 of 10" in refused["msg"] and len(destination.contents()) == 10
    forced = mirror.sync(source, destination, delete=True, force=True)
    assert "msg" not in forced and len(destination.contents()) == 5


def test_check_mode_returns_the_plan_and_writes_nothing(stores):
    source, destination = stores
    source.put("new", b"12345")
    source.put("same", b"s")
    destination.put("same", b"s")
    destination.put("extra", b"e")
    plan = mirror.sync(source, destination, delete=True, max_delete_percent=100, check_mode=True)
    assert plan["changed"]
    assert plan["plan"]["copy"] == {"objects": 1, "bytes": 5}
    assert plan["plan"]["skip"]["objects"] == 1 and plan["plan"]["delete"]["objects"] == 1
    assert destination.contents() == {"same": b"s", "extra": b"e"}


def test_failures_delete_nothing_and_name_the_key(stores):
    source, destination = stores
    for index in range(6):
        source.put("f%d" % index, b"1")
    destination.put("stray", b"?")

    def refuse(operation, key):
        if operation == "put" and key == "f3":
            return DRError("location dst: access denied to f3")
        return None

    destination.server.fail = refuse
    result = mirror.sync(source, destination, delete=True, max_delete_percent=100)
    assert "1 object(s) failed; first: f3: location dst: access denied to f3" in result["msg"]
    assert "nothing was deleted" in result["msg"]
    assert destination.head("stray") is not None
    assert result["summary"]["copied"] == 5


def test_an_endpoint_that_goes_silent_stops_the_run(stores):
    source, destination = stores
    for index in range(200):
        source.put("f%03d" % index, b"1")
    calls = []

    def silent(operation, key):
        if operation == "put":
            calls.append(key)
            return s3client.EndpointDown("location dst: endpoint https://x stopped answering during %s" % key)
        return None

    destination.server.fail = silent
    result = mirror.sync(source, destination, threads=4)
    assert "stopped answering" in result["msg"]
    assert len(calls) < 50, "the run stops instead of failing every object"


def test_a_server_that_does_not_sort_is_handled(stores):
    _source, destination = stores
    source = _Unsorted(MemoryServer(), "unsorted", name="src")
    keys = ["k%03d" % i for i in range(50)]
    for key in keys:
        source.put(key, os.urandom(4))
    result = mirror.sync(source, destination)
    assert result["listing_order"] == "sorted on disk"
    assert destination.contents() == source.contents()


def test_encrypting_and_decrypting_mirrors(stores, tmp_path):
    from ansible_collections.auditron.dr.plugins.module_utils import keyproviders  # pylint: disable=import-outside-toplevel
    source, destination = stores
    key_file = str(tmp_path / "k")
    keyproviders.generate_key_file(key_file)
    params = {"key_source": "file", "key_file": key_file}
    source.put("doc", b"plain text " * 100, content_type="text/plain")
    encrypt = mirror.CopyOptions(crypt="encrypt", provider=keyproviders.provider_from_params(params))
    mirror.sync(source, destination, options=encrypt)
    assert b"plain text" not in destination.get_bytes("doc")
    again = mirror.sync(source, destination, options=encrypt)
    assert not again["changed"], "plaintext identity from metadata: no change, no copy"
    back = MemoryEndpoint(MemoryServer(), "back", name="back")
    mirror.sync(destination, back, options=mirror.CopyOptions(crypt="decrypt", encryption_params=params))
    assert back.contents() == {"doc": b"plain text " * 100}
    assert back.head("doc").content_type == "text/plain"


def test_commit_markers_are_copied_last_and_held_back_on_failure(stores):
    source, destination = stores
    for key in ("points/p1/full.jsonl.gz", "points/p1/point.json", "current/a", "current/b"):
        source.put(key, key.encode())
    order = []

    def record(operation, key):
        if operation == "put":
            order.append(key)
        if operation == "put" and key == "current/b" and not order.count("fail-once"):
            order.append("fail-once")
            return DRError("location dst: access denied to current/b")
        return None

    destination.server.fail = record
    failed = mirror.sync(source, destination, threads=1, commit_last=["points/*/point.json"])
    assert "msg" in failed and destination.head("points/p1/point.json") is None
    done = mirror.sync(source, destination, threads=1, commit_last=["points/*/point.json"])
    assert "msg" not in done and order[-1] == "points/p1/point.json"
    assert destination.contents() == source.contents()


def test_an_object_deleted_between_listing_and_copy_is_not_a_failure(stores):
    source, destination = stores
    for key in ("a", "b", "c"):
        source.put(key, b"1")
    destination.put("stray", b"?")

    def deleted_meanwhile(operation, key):
        if operation == "get" and key == "b":
            return s3client.SourceVanished("location src: b was deleted while the run went on")
        return None

    source.server.fail = deleted_meanwhile
    result = mirror.sync(source, destination, delete=True, max_delete_percent=100)
    assert "msg" not in result
    assert result["summary"]["vanished"] == 1 and result["summary"]["copied"] == 2
    assert destination.head("stray") is None, "a vanished object does not hold back deletions"


def test_bytes_that_do_not_match_the_source_md5_are_refused(stores):
    source, destination = stores
    source.put("good", b"fine")
    source.put("bad", b"original")
    # Damage the stored bytes behind the ETag: what a read would deliver no longer has that MD5.
    source.server.buckets["source"]["bad"]["data"] = b"tampered"
    result = mirror.sync(source, destination, options=mirror.CopyOptions(attempts=2))
    assert "bad" in result["msg"] and "BadDigest" in result["msg"]
    assert destination.head("bad") is None and destination.get_bytes("good") == b"fine"


def test_long_runs_log_progress(stores):
    source, destination = stores
    for index in range(40):
        source.put("f%02d" % index, b"x" * 100)
    lines = []

    def slow(operation, _key):
        if operation == "put":
            time.sleep(0.01)

    destination.server.fail = slow
    mirror.sync(source, destination, threads=2, progress=lines.append, progress_interval=0.05)
    assert lines and all(line.startswith("object_mirror src -> dst: ") for line in lines)
    assert "copied" in lines[-1] and "listed" in lines[-1]
