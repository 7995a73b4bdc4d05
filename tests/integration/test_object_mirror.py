"""object_mirror against the lab's real S3 servers (`rclone serve s3`): what is copied, what is
not, faults in the middle of a run, and the one-line messages for broken configurations.

Every test works under its own prefix (tests/object-mirror/<id>/) in the backup buckets and
removes it afterwards; the sites' seeded buckets are not touched."""

import hashlib
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import mirror, s3client
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from tests.helpers.tcpproxy import TcpProxy

pytestmark = pytest.mark.lab


def location(lab, region, prefix, **overrides):
    store = lab["backup_stores"][region]
    params = {"name": "s3-" + region, "type": "s3", "endpoint_url": store["endpoint"], "bucket": store["bucket"],
              "region": store["region"], "access_key": store["access_key"], "secret_key": store["secret_key"],
              "ca_bundle": store["ca_file"], "prefix": prefix}
    params.update(overrides)
    return params


@pytest.fixture
def area(lab):
    """(source params, destination params) under fresh prefixes: us-east-1 -> eu-west-1 (two servers)."""
    run = uuid.uuid4().hex[:10]
    source = location(lab, "us-east-1", "tests/object-mirror/%s/src" % run)
    destination = location(lab, "eu-west-1", "tests/object-mirror/%s/dst" % run)
    yield source, destination
    for params in (source, destination, location(lab, "us-east-1", "tests/object-mirror/%s/dst" % run)):
        remove_all(endpoint_of(params))


def endpoint_of(params, **kwargs):
    return s3client.S3Endpoint.from_params(params, params["name"], **kwargs)


def parallel(func, items):
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(func, items))


def remove_all(endpoint):
    keys = [entry.key for entry in endpoint.list()]
    parallel(endpoint.delete, [keys[start:start + 100] for start in range(0, len(keys), 100)])


def put_many(endpoint, objects):
    parallel(lambda item: endpoint.put(item[0], item[1]), list(objects.items()))


def digests(endpoint):
    """{key: (size, sha256)} of every object, read back from the server."""
    def digest(entry):
        data = endpoint.get_bytes(entry.key)
        assert len(data) == entry.size
        return entry.key, (entry.size, hashlib.sha256(data).hexdigest())
    return dict(parallel(digest, list(endpoint.list())))


def run(source, destination, **options):
    params = {"source": source, "destination": destination, "threads": 16, "part_size_mb": 5,
              "multipart_threshold_mb": 256}
    params.update(options)
    return mirror.run_mirror(params)


ODD_KEYS = ["a b.pdf", "plus+sign", "100%.txt", "é/ü.bin", "dir/sub/deep.txt", "a-b", "a0", "tilde~"]


def test_mirror_copies_everything_then_nothing(area):
    source_params, destination_params = area
    source = endpoint_of(source_params)
    put_many(source, dict(("small/%04d" % index, os.urandom(index % 97)) for index in range(1050)))  # > 1 page
    put_many(source, dict((key, os.urandom(2000)) for key in ODD_KEYS))
    source.put("empty", b"")
    # Up to part_size: read whole; up to multipart_threshold: one streamed PUT; beyond: three
    # parts of 5 MiB, in ascending order.
    for key, size in (("streamed.bin", 7 * 1024 * 1024), ("big.bin", 12 * 1024 * 1024 + 5)):
        uploader = source.open_upload(key, part_size=5 * 1024 * 1024)
        uploader.write(os.urandom(size))
        uploader.close()

    first = run(source_params, destination_params, multipart_threshold_mb=8)
    assert "msg" not in first, first.get("msg")
    assert first["summary"]["copied"] == 1050 + len(ODD_KEYS) + 3 and first["changed"]
    destination = endpoint_of(destination_params)
    assert digests(destination) == digests(source)
    head = destination.head("small/0005")
    assert head.metadata["sha256"] == hashlib.sha256(source.get_bytes("small/0005")).hexdigest()
    assert head.metadata["mirror-source-etag"] == source.head("small/0005").etag

    second = run(source_params, destination_params)
    assert not second["changed"]
    assert second["summary"]["copied"] == second["summary"]["replaced"] == 0
    assert second["summary"]["skipped"] == 1050 + len(ODD_KEYS) + 3
    assert second["listing_order"] == "server order (checked)"


def test_a_same_size_change_is_copied_and_extras_go_only_when_asked(area):
    source_params, destination_params = area
    source = endpoint_of(source_params)
    for index in range(30):
        source.put("f%02d" % index, b"A" * 100)
    run(source_params, destination_params)
    source.put("f07", b"B" * 100)        # same size, new content
    source.put("f08", b"A" * 99)         # different size
    destination = endpoint_of(destination_params)
    destination.put("stray", b"not at the source")
    kept = run(source_params, destination_params)
    assert kept["summary"]["replaced"] == 2 and kept["plan"]["extra"]["objects"] == 1
    assert destination.get_bytes("f07") == b"B" * 100
    assert destination.head("stray") is not None
    deleted = run(source_params, destination_params, delete=True)
    assert deleted["summary"]["deleted"] == 1 and destination.head("stray") is None
    assert digests(destination) == digests(source)
    source.delete(["f%02d" % index for index in range(10)])
    refused = run(source_params, destination_params, delete=True)
    assert "refusing to delete 10 of 30" in refused["msg"]
    assert len(list(destination.list())) == 30


def test_check_mode_plans_counts_and_bytes_and_writes_nothing(area):
    source_params, destination_params = area
    source = endpoint_of(source_params)
    destination = endpoint_of(destination_params)
    source.put("new", b"x" * 1000)
    source.put("changed", b"1" * 10)
    destination.put("changed", b"2" * 10)
    source.put("same", b"s")
    destination.put("same", b"s")
    destination.put("extra", b"e" * 7)
    plan = mirror.run_mirror({"source": source_params, "destination": destination_params, "delete": True,
                              "max_delete_percent": 100}, check_mode=True)
    assert plan["plan"]["copy"] == {"objects": 1, "bytes": 1000}
    assert plan["plan"]["replace"] == {"objects": 1, "bytes": 10}
    assert plan["plan"]["delete"] == {"objects": 1, "bytes": 7}
    assert plan["plan"]["skip"]["objects"] == 1 and plan["changed"]
    assert sorted(entry.key for entry in destination.list()) == ["changed", "extra", "same"]
    assert destination.get_bytes("changed") == b"2" * 10


def test_same_server_copies_are_server_side(lab, area):
    source_params, _destination = area
    source = endpoint_of(source_params)
    for index in range(20):
        source.put("o%02d" % index, os.urandom(5000))
    same_server = location(lab, "us-east-1", source_params["prefix"].replace("/src", "/dst"))
    result = run(source_params, same_server)
    assert result["summary"]["server_side_copies"] == 20 and result["summary"]["bytes_transferred"] == 0
    assert digests(endpoint_of(same_server)) == digests(source)


def test_destination_going_silent_mid_sync_fails_clearly_deletes_nothing_and_a_rerun_completes(lab, area):
    source_params, destination_params = area
    source = endpoint_of(source_params)
    put_many(source, dict(("o%03d" % index, os.urandom(20000)) for index in range(400)))
    destination = endpoint_of(destination_params)
    destination.put("stray", b"must survive a failed run")
    port = int(lab["backup_stores"]["eu-west-1"]["endpoint"].rsplit(":", 1)[1])
    proxy = TcpProxy("127.0.0.1", port)
    through_proxy = dict(destination_params, endpoint_url="https://localhost:%d" % proxy.port)
    outcome = {}

    def mirror_through_proxy():
        try:
            outcome["result"] = run(source_params, through_proxy, delete=True, max_delete_percent=100, retries=3,
                                    timeout=5, threads=4)
        except DRError as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=mirror_through_proxy)
    started = time.monotonic()
    try:
        worker.start()
        while len(list(destination.list())) < 50 and time.monotonic() - started < 60:
            time.sleep(0.05)
        proxy.refuse = True
        proxy.drop_all()
        worker.join(120)
    finally:
        proxy.close()
    assert not worker.is_alive()
    result = outcome.get("result")
    assert result is not None, outcome
    message = result["msg"]
    assert "https://localhost:%d/%s" % (proxy.port, destination_params["bucket"]) in message
    assert "stopped answering" in message or "does not answer" in message
    assert "nothing was deleted" in message and "\n" not in message
    assert not [f for f in result["failures"] if "certificate" in f["error"].lower()], result["failures"][:3]
    assert destination.head("stray") is not None
    assert time.monotonic() - started < 90, "a silent endpoint stops the run, not each object after the other"

    rerun = run(source_params, destination_params, delete=True, max_delete_percent=100)
    assert "msg" not in rerun
    assert rerun["summary"]["deleted"] == 1
    assert digests(destination) == digests(source)


def test_a_connection_cut_mid_download_is_resumed(lab, area):
    source_params, destination_params = area
    source = endpoint_of(source_params)
    payload = os.urandom(9 * 1024 * 1024)
    source.put("big", payload)
    port = int(lab["backup_stores"]["us-east-1"]["endpoint"].rsplit(":", 1)[1])
    proxy = TcpProxy("127.0.0.1", port, cut_after_bytes=3 * 1024 * 1024)
    try:
        result = run(dict(source_params, endpoint_url="https://localhost:%d" % proxy.port), destination_params)
    finally:
        proxy.close()
    assert proxy.cuts == 1 and "msg" not in result
    assert endpoint_of(destination_params).get_bytes("big") == payload


@pytest.mark.parametrize("broken,expected", [
    ({"bucket": "no-such-bucket-auditron"}, "bucket no-such-bucket-auditron does not exist"),
    ({"secret_key": "wrong-secret-for-the-test"}, "access denied"),
    ({"ca_bundle": None}, "TLS certificate of https://localhost"),
    ({"endpoint_url": "https://localhost:9"}, "does not answer"),
])
def test_broken_configurations_give_one_clear_line(area, broken, expected):
    source_params, destination_params = area
    with pytest.raises(DRError) as error:
        run(source_params, dict(destination_params, **broken), retries=1, timeout=5)
    message = str(error.value)
    assert expected in message
    assert "\n" not in message and "wrong-secret-for-the-test" not in message
    assert message.startswith("location s3-eu-west-1")


def test_client_side_encryption_with_kms(lab, area):
    source_params, destination_params = area
    source = endpoint_of(source_params)
    aws = lab["aws"]
    encryption = {"key_source": "kms", "kms_key_id": aws["kms_key_alias"],
                  "aws": {"endpoint_url": aws["endpoint"], "region": aws["region"], "access_key": aws["access_key"],
                          "secret_key": aws["secret_key"], "ca_bundle": aws["ca_file"]}}
    for index in range(5):
        source.put("doc%d.pdf" % index, b"confidential invoice %d " % index * 200, content_type="application/pdf")
    first = run(source_params, destination_params, encryption=encryption)
    assert "msg" not in first and first["summary"]["copied"] == 5
    destination = endpoint_of(destination_params)
    stored = destination.get_bytes("doc1.pdf")
    assert b"confidential" not in stored
    head = destination.head("doc1.pdf")
    assert head.metadata["plaintext-size"] == str(len(source.get_bytes("doc1.pdf")))
    assert head.metadata["sha256"] == hashlib.sha256(source.get_bytes("doc1.pdf")).hexdigest()
    again = run(source_params, destination_params, encryption=encryption)
    assert not again["changed"], "change detection reads the plaintext sha256 from the metadata"
    back = location(lab, "us-east-1", source_params["prefix"].replace("/src", "/dst"))
    restored = run(destination_params, back, encryption=encryption, encryption_mode="decrypt")
    assert "msg" not in restored
    assert digests(endpoint_of(back)) == digests(source)
    assert endpoint_of(back).head("doc1.pdf").content_type == "application/pdf"
