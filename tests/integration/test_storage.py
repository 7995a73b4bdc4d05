"""storage.py against real servers: the lab's `rclone serve s3` endpoints and local disk."""

import hashlib
import os
import uuid

import pytest

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.storage import (
    FanOutWriter, LocalLocation, S3Location, location_from_params, locations_from_params)
from tests.helpers.tcpproxy import TcpProxy

pytestmark = pytest.mark.lab


def s3(lab, region="us-east-1", **overrides):
    store = dict(lab["backup_stores"][region], name="s3-" + region, type="s3",
                 prefix="tests/storage/%s" % uuid.uuid4().hex[:8])
    store.update(overrides)
    return location_from_params(store, part_size=5 * 1024 * 1024)


def test_small_and_multipart_round_trip(lab):
    location = s3(lab)
    small = os.urandom(1000)
    location.put_bytes("a/small.bin", small)
    big = os.urandom(17 * 1024 * 1024 + 3)  # four parts of 5 MiB, the last one short
    writer = location.open_write("a/big.bin")
    for start in range(0, len(big), 700_001):  # odd write sizes cross part boundaries
        writer.write(big[start:start + 700_001])
    info = writer.close()
    assert info.size == len(big)
    assert location.get_bytes("a/small.bin") == small
    reader = location.open_read("a/big.bin")
    digest = hashlib.sha256()
    while True:
        chunk = reader.read(1 << 20)
        if not chunk:
            break
        digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(big).hexdigest()
    listed = {o.key: o.size for o in location.list("a/")}
    assert listed == {"a/small.bin": 1000, "a/big.bin": len(big)}
    assert location.delete(["a/small.bin", "a/big.bin"]) == []
    assert list(location.list("")) == []


def test_aborted_upload_leaves_nothing_visible(lab):
    location = s3(lab)
    writer = location.open_write("partial.bin")
    writer.write(os.urandom(11 * 1024 * 1024))  # two parts already sent
    writer.abort()
    assert location.head("partial.bin") is None
    assert list(location.list("")) == []


def test_local_location_is_atomic_and_private(tmp_path):
    location = LocalLocation("local", str(tmp_path / "backups"))
    writer = location.open_write("x/y.bin")
    writer.write(b"data")
    assert list(location.list("")) == []  # the temp file is not listed
    writer.close()
    assert [o.key for o in location.list("")] == ["x/y.bin"]
    assert os.stat(tmp_path / "backups" / "x" / "y.bin").st_mode & 0o777 == 0o600
    assert os.stat(tmp_path / "backups" / "x").st_mode & 0o777 == 0o700
    with pytest.raises(DRError, match="escapes"):
        location.open_write("../../etc/passwd")


def test_missing_bucket_is_named(lab):
    location = s3(lab, bucket="no-such-bucket")
    with pytest.raises(DRError) as err:
        location.check_bucket()
    assert "bucket no-such-bucket does not exist" in str(err.value)
    assert "s3-us-east-1" in str(err.value)


def test_bad_credentials_are_refused_with_one_line(lab):
    location = s3(lab, secret_key="wrong-secret-key-for-test")
    with pytest.raises(DRError) as err:
        location.put_bytes("x", b"1")
    message = str(err.value)
    assert "access denied" in message and "\n" not in message
    assert "wrong-secret-key-for-test" not in message


def test_untrusted_certificate_is_named(lab):
    location = s3(lab, ca_bundle=None, ca_file=None)  # system CAs do not know the lab CA
    with pytest.raises(DRError) as err:
        list(location.list(""))
    assert "TLS certificate" in str(err.value) and "not trusted" in str(err.value)


def test_silent_endpoint_is_named(lab):
    location = s3(lab, endpoint_url="https://localhost:9")  # nothing listens on port 9
    location.client.meta.config.retries = {"max_attempts": 1}
    with pytest.raises(DRError) as err:
        location.head("x")
    assert "does not answer" in str(err.value)


def test_download_resumes_after_the_connection_drops(lab):
    direct = s3(lab)
    payload = os.urandom(6 * 1024 * 1024)
    direct.put_bytes("resume.bin", payload)
    port = int(lab["backup_stores"]["us-east-1"]["endpoint"].rsplit(":", 1)[1])
    proxy = TcpProxy("127.0.0.1", port, cut_after_bytes=2 * 1024 * 1024)
    try:
        through = s3(lab, endpoint_url="https://localhost:%d" % proxy.port, prefix=direct.prefix)
        data = through.get_bytes("resume.bin")
    finally:
        proxy.close()
    assert proxy.cuts == 1
    assert data == payload
    direct.delete(["resume.bin"])


def test_fan_out_keeps_the_copies_that_work(lab, tmp_path):
    good = s3(lab)
    local_dir = tmp_path / "ro"
    local_dir.mkdir()
    broken = LocalLocation("local", str(local_dir))
    os.chmod(local_dir, 0o500)
    if os.geteuid() == 0:
        # root ignores directory permissions: break the location another way.
        broken = LocalLocation("local", "/proc/auditron-cannot-write")
    fan = FanOutWriter([good, broken], "fan.bin")
    fan.write(b"x" * 1000)
    done, failed = fan.close()
    assert list(done) == ["s3-us-east-1"] and list(failed) == ["local"]
    assert good.get_bytes("fan.bin") == b"x" * 1000
    good.delete(["fan.bin"])


def test_location_params_are_checked():
    with pytest.raises(DRError, match=r"locations\[0\] \(disk\): path is required"):
        locations_from_params([{"name": "disk", "type": "local"}])
    with pytest.raises(DRError, match="bucket is required"):
        locations_from_params([{"name": "s3", "type": "s3"}])
    with pytest.raises(DRError, match="used twice"):
        locations_from_params([{"name": "a", "type": "local", "path": "/tmp/a"},
                               {"name": "a", "type": "local", "path": "/tmp/b"}])
    assert isinstance(location_from_params({"name": "x", "bucket": "b", "endpoint_url": "https://localhost:1"}),
                      S3Location)
