"""Storage pieces that need no server: what an interrupted writer leaves and how a later run finds
it, the fan-out's two-phase close, private directories, and which TLS failures are blamed on a
certificate. (Transfers against real S3 servers: tests/integration/test_storage.py.)"""

import os
import stat

import botocore.exceptions
import pytest

from ansible_collections.auditron.dr.plugins.module_utils import pgdump
from ansible_collections.auditron.dr.plugins.module_utils.storage import (
    FanOutWriter, LocalLocation, Location, ObjectInfo, S3Location, missing_directories, s3_error)


def test_a_killed_local_writer_leaves_a_temp_file_that_names_its_key(tmp_path):
    location = LocalLocation("local", str(tmp_path / "logical"))
    writer = location.open_write("auditron_20261124_020000.dump.zst.enc")
    writer.write(b"half of a backup")
    # No close, no abort: the process was killed here.
    assert list(location.list("")) == []
    found = location.leftovers("auditron_")
    assert [key for key, _path in found] == ["auditron_20261124_020000.dump.zst.enc"]
    assert location.leftovers("other_") == []
    assert location.remove_leftovers(found) == []
    assert location.leftovers("") == [] and os.listdir(str(tmp_path / "logical")) == []


def test_clean_interrupted_removes_only_its_own_series(tmp_path):
    location = LocalLocation("local", str(tmp_path))
    for key in ("dr_x_20261124_020000.dump.zst.enc", "dr_x_small_20261124_020000.dump.zst.enc",
                "dr_y_20261124_020000.dump.zst.enc"):
        location.open_write(key).write(b"left by a killed run")
    logged = []
    removed = pgdump.clean_interrupted([location], "dr_x", log=logged.append)
    assert removed == {"local": ["dr_x_20261124_020000.dump.zst.enc"]}
    assert sorted(key for key, _path in location.leftovers("")) == [
        "dr_x_small_20261124_020000.dump.zst.enc", "dr_y_20261124_020000.dump.zst.enc"]
    assert "removed 1 unfinished write(s) of interrupted runs from local" in logged[0]


class WatchingLocation(Location):
    """A location whose writer notes, when asked to finish, whether `watched` is visible yet."""

    kind = "watching"

    def __init__(self, name, watched):
        super(WatchingLocation, self).__init__(name)
        self.watched = watched
        self.seen_at_finish = None

    def open_write(self, key, metadata=None):
        return WatchingWriter(self, key)


class WatchingWriter(object):
    def __init__(self, location, key):
        self.location, self.key, self.size = location, key, 0

    def write(self, data):
        self.size += len(data)

    def finish(self):
        self.location.seen_at_finish = os.path.exists(self.location.watched)

    def close(self):
        return ObjectInfo(self.key, self.size, None, None, None)

    def abort(self):
        pass


def test_fan_out_makes_a_copy_visible_only_once_every_location_has_all_its_bytes(tmp_path):
    local = LocalLocation("local", str(tmp_path))
    watching = WatchingLocation("remote", str(tmp_path / "backup.dump"))
    fan = FanOutWriter([local, watching], "backup.dump")
    fan.write(b"x" * 1000)
    done, failed = fan.close()
    assert watching.seen_at_finish is False, "the local copy was visible before the other location had its bytes"
    assert sorted(done) == ["local", "remote"] and failed == {}
    assert (tmp_path / "backup.dump").read_bytes() == b"x" * 1000


def test_every_directory_a_local_location_makes_is_private(tmp_path):
    root = tmp_path / "disk"
    root.mkdir(mode=0o750)
    target = root / "postgres" / "logical"
    assert missing_directories(str(target)) == [str(root / "postgres"), str(target)]
    LocalLocation("local", str(target)).put_bytes("a.json", b"{}")
    for path in (root / "postgres", target):
        assert stat.S_IMODE(os.stat(str(path)).st_mode) == 0o700, path
    assert stat.S_IMODE(os.stat(str(target / "a.json")).st_mode) == 0o600


@pytest.fixture
def s3_location():
    return S3Location("s3-us-east-1", "backups", endpoint_url="https://localhost:9", access_key="ak",
                      secret_key="not-a-secret")


def test_a_connection_closed_during_the_tls_handshake_is_the_endpoint_not_a_certificate(s3_location):
    closed = botocore.exceptions.SSLError(endpoint_url="https://localhost:9/backups/k", error=OSError(
        "TLS/SSL connection has been closed (EOF) (_ssl.c:992)"))
    message = s3_error(s3_location, closed, "k").message
    assert "endpoint https://localhost:9/backups stopped answering during k" in message
    assert "certificate" not in message.lower() and "\n" not in message


def test_a_refused_certificate_is_named(s3_location):
    expired = botocore.exceptions.SSLError(endpoint_url="https://localhost:9/backups", error=OSError(
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has expired (_ssl.c:992)"))
    message = s3_error(s3_location, expired).message
    assert "TLS certificate of https://localhost:9/backups is not trusted" in message
    assert message.endswith("certificate has expired")
