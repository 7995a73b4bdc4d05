# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for module_utils/logicalrestore.py without PostgreSQL: an artifact's way back
(verification, decryption into a spool or a pipe), the spool's privacy and cleanup, the
read-ahead, table subsets, the candidates and argument checks.

pg_restore itself is tested against the lab in tests/integration/test_logical_backups.py.
"""

import importlib.util
import io
import os
import stat

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import catalog, logicalrestore
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import FileKeyProvider, generate_key_file

# Loaded by path, so that the tests do not depend on how tests/ is laid out as packages.
_SPEC = importlib.util.spec_from_file_location(
    "auditron_logical_samples", os.path.join(os.path.dirname(os.path.abspath(__file__)), "logical_samples.py"))
samples = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(samples)
key_file, places = samples.key_file, samples.places  # fixtures


def test_encrypted_round_trip_through_every_location(places, key_file):
    payload = samples.payload_of(3 * 1024 * 1024 + 17)
    manifest, done, failed = samples.store(places, payload, FileKeyProvider(key_file))
    assert list(done) == ["local", "s3-a"] and failed == {}
    artifact = manifest["artifacts"][0]
    assert artifact["key"].endswith(".dump.zst.enc") and artifact["size"] < len(payload)
    assert manifest["encryption"]["key"]["provider"] == "file"
    entry = samples.entry_for(places, manifest)
    for location in places:
        detail = logicalrestore.verify_copy(location, entry, {"key_file": key_file})
        assert "every GCM tag" in detail
        sink = io.BytesIO()
        written, sha256 = logicalrestore._decompressing_copy(entry, location, {"key_file": key_file}, sink)
        assert sink.getvalue() == payload and written == len(payload) and sha256 == artifact["sha256"]
    # The stored bytes never contain the plaintext.
    with open(os.path.join(places[0].path, artifact["key"]), "rb") as handle:
        assert b"INV-0000000001" not in handle.read()


def test_unencrypted_round_trip_and_its_checksum(places):
    payload = samples.payload_of(500000)
    manifest, _done, _failed = samples.store(places, payload)
    artifact = manifest["artifacts"][0]
    assert artifact["key"].endswith(".dump.zst") and manifest["encryption"]["key"] is None
    entry = samples.entry_for(places, manifest)
    assert "size (unencrypted)" in logicalrestore.verify_copy(places[0], entry, None)
    samples.flip_byte(places[1], artifact["key"], artifact["size"] // 2)
    with pytest.raises(DRError) as err:
        logicalrestore.verify_copy(places[1], entry, None)
    assert "differs from the manifest" in str(err.value) and "s3-a" in str(err.value)


def test_a_flipped_byte_is_found_and_named(places, key_file):
    manifest, _done, _failed = samples.store(places, os.urandom(2 * 1024 * 1024), FileKeyProvider(key_file))
    key = manifest["artifacts"][0]["key"]
    samples.flip_byte(places[1], key, 1024 * 1024 + 5)
    entry = samples.entry_for(places, manifest)
    with pytest.raises(DRError) as err:
        logicalrestore.verify_copy(places[1], entry, {"key_file": key_file})
    message = str(err.value)
    assert "\n" not in message
    assert manifest["id"] in message and "location s3-a" in message and "authentication tag mismatch" in message
    sink = io.BytesIO()
    with pytest.raises(DRError, match="authentication tag mismatch"):
        logicalrestore._decompressing_copy(entry, places[1], {"key_file": key_file}, sink)
    assert len(sink.getvalue()) < 2 * 1024 * 1024  # nothing after the bad chunk reached the sink
    logicalrestore.verify_copy(places[0], entry, {"key_file": key_file})  # the other copy is fine


def test_truncated_artifact_and_wrong_key_are_named(places, key_file, tmp_path):
    manifest, _done, _failed = samples.store(places, samples.payload_of(800000), FileKeyProvider(key_file))
    key = manifest["artifacts"][0]["key"]
    with open(os.path.join(places[1].path, key), "r+b") as handle:
        handle.truncate(manifest["artifacts"][0]["size"] - 100)
    entry = samples.entry_for(places, manifest)
    with pytest.raises(DRError) as err:
        logicalrestore.verify_copy(places[1], entry, {"key_file": key_file})
    assert "truncated" in str(err.value) and manifest["id"] in str(err.value)
    other_key = str(tmp_path / "other.key")
    generate_key_file(other_key)
    with pytest.raises(DRError) as err:
        logicalrestore.verify_copy(places[0], entry, {"key_file": other_key})
    assert "wrong key" in str(err.value) and "location local" in str(err.value) and manifest["id"] in str(err.value)
    with pytest.raises(DRError, match="is encrypted .* give the encryption option"):
        logicalrestore.verify_copy(places[0], entry, None)


def test_spool_is_private_and_always_removed(tmp_path):
    with logicalrestore._Spool(str(tmp_path)) as spool:
        handle = spool.open()
        handle.write(b"archive")
        spool.close()
        assert stat.S_IMODE(os.stat(spool.directory).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(spool.path).st_mode) == 0o600
        assert os.path.dirname(spool.directory) == str(tmp_path)
        directory = spool.directory
    assert not os.path.exists(directory)
    with pytest.raises(RuntimeError):
        with logicalrestore._Spool(str(tmp_path)) as spool:
            spool.open().write(b"half")
            directory = spool.directory
            raise RuntimeError("pg_restore died")
    assert not os.path.exists(directory) and os.listdir(str(tmp_path)) == []
    with pytest.raises(DRError, match="free; the archive needs"):
        logicalrestore._Spool(str(tmp_path), needed_bytes=1 << 60)
    assert os.listdir(str(tmp_path)) == []
    with pytest.raises(DRError, match="spool_dir .* does not exist"):
        logicalrestore._Spool(str(tmp_path / "nope"))


def test_read_ahead_passes_data_and_errors_through():
    data = os.urandom(3 * 1024 * 1024 + 5)
    reader = logicalrestore._ReadAhead(io.BytesIO(data), block=1 << 20, depth=2)
    pieces = []
    while True:
        piece = reader.read(300000)
        if not piece:
            break
        pieces.append(piece)
    reader.close()
    assert b"".join(pieces) == data

    class Failing(object):
        def __init__(self):
            self.calls = 0

        def read(self, count):
            self.calls += 1
            if self.calls > 2:
                raise DRError("location s3-a: download failed at byte 2")
            return b"x" * count

    reader = logicalrestore._ReadAhead(Failing(), block=10, depth=1)
    assert reader.read(10) == b"x" * 10 and reader.read(10) == b"x" * 10
    with pytest.raises(DRError, match="download failed"):
        reader.read(10)
    reader.close()


def test_small_restore_helpers():
    assert logicalrestore._conninfo_dbname("it's a \\ db") == "dbname='it\\'s a \\\\ db'"
    argv = logicalrestore._pg_restore_argv("pg_restore", "t", 2, [{"schema": "public", "name": 'In"voice'}], True, "/x")
    assert argv == ["pg_restore", "--exit-on-error", "--no-password", "--dbname=dbname='t'", "--jobs=2",
                    "--no-owner", "--no-privileges", "--schema=public", '--table=In"voice', "/x"]


def test_table_subsets_are_checked_against_the_manifest():
    entry = catalog.BackupEntry("auditron_20261124_020000")
    entry.manifest = {"tables": [{"schema": "public", "name": "Invoice"}, {"schema": "archive", "name": "Invoice"},
                                 {"schema": "public", "name": "User"}]}
    assert logicalrestore._check_tables(entry, None) is None
    assert logicalrestore._check_tables(entry, ["User", "archive.Invoice"]) == [
        {"schema": "public", "name": "User"}, {"schema": "archive", "name": "Invoice"}]
    with pytest.raises(DRError, match="ambiguous .* name the schema"):
        logicalrestore._check_tables(entry, ["Invoice"])
    with pytest.raises(DRError, match="'Invoice; DROP TABLE x' is not in backup auditron_20261124_020000"):
        logicalrestore._check_tables(entry, ["Invoice; DROP TABLE x"])


def test_restore_arguments_are_refused_before_anything_runs():
    with pytest.raises(DRError, match="exactly one of backup_id, latest or before .got none"):
        logicalrestore.restore({}, [], "target")
    with pytest.raises(DRError, match="got backup_id, latest"):
        logicalrestore.restore({}, [], "target", backup_id="auditron_20261124_020000", latest=True)
    with pytest.raises(DRError, match="not a logical backup id"):
        logicalrestore.restore({}, [{"name": "l", "type": "local", "path": "/tmp"}], "target", backup_id="auditron_latest")
    with pytest.raises(DRError, match="no backup location given"):
        logicalrestore.restore({}, [], "target", latest=True)


def test_candidates_are_read_only_as_far_as_needed():
    pulled = []

    def source():
        for number in range(5):
            pulled.append(number)
            yield number

    candidates = logicalrestore._Candidates(source())
    assert candidates and candidates[0] == 0 and pulled == [0]
    assert candidates[:1] == [0] and pulled == [0]
    assert next(iter(candidates)) == 0 and pulled == [0]
    assert list(candidates) == [0, 1, 2, 3, 4]
    assert not logicalrestore._Candidates(iter([]))
