# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for module_utils/backupset.py: the protocol both logical backups and
configuration bundles follow (ids and keys, the stored artifact, read-back, commit), over
local directories."""

import datetime
import hashlib
import os

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import backupset
from ansible_collections.auditron.dr.plugins.module_utils.common import UTC, DRError
from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import FileKeyProvider, generate_key_file
from ansible_collections.auditron.dr.plugins.module_utils.storage import LocalLocation, PrefixedLocation


@pytest.fixture
def places(tmp_path):
    return [LocalLocation(name, str(tmp_path / name)) for name in ("local", "second")]


def write_artifact(places, key, payload, provider=None):
    artifact = backupset.StoredArtifact(places, key, provider, {"backup_id": "x_20261124_020000"})
    artifact.write(payload)
    done, failed = artifact.close()
    return artifact, done, failed


def test_ids_and_keys():
    moment = datetime.datetime(2026, 11, 24, 2, 0, 0, tzinfo=UTC)
    assert backupset.id_stamp(moment) == "20261124_020000"
    assert backupset.stamp_time("20261124_020000") == moment
    assert backupset.stamp_time("20261324_020000") is None  # no 13th month
    assert backupset.stamp_time("20261124-020000") is None
    assert backupset.artifact_key("a_1", True, ".enc", ".plain") == "a_1.enc"
    assert backupset.artifact_key("a_1", False, ".enc", ".plain") == "a_1.plain"
    assert backupset.manifest_key("a_1") == "a_1.manifest.json"
    assert backupset.manifest_bytes({"b": 1, "a": "x"}) == b'{\n "a": "x",\n "b": 1\n}\n'


def test_encryption_is_described_without_secrets():
    assert backupset.describe_encryption({"key_source": "none"}).startswith("UNENCRYPTED")
    assert backupset.describe_encryption({"key_file": "/k"}) == "AES-256-GCM, data key wrapped by key file /k"
    assert "KMS key arn:k" in backupset.describe_encryption({"key_source": "kms", "kms_key_id": "arn:k"})
    assert "transit key dr" in backupset.describe_encryption({"key_source": "vault", "vault_transit_key": "dr",
                                                              "vault_token": "s3cret"})
    assert "s3cret" not in backupset.describe_encryption({"key_source": "vault", "vault_token": "s3cret"})
    assert backupset.encryption_record(None, None)["algorithm"] == "none"


def test_locations_are_parsed_once_and_names_are_unique(tmp_path):
    parsed = backupset.target_locations([{"name": "disk", "type": "local", "path": str(tmp_path)}], "config/")
    assert isinstance(parsed[0], PrefixedLocation) and parsed[0].prefix == "config/"
    with pytest.raises(DRError, match="no backup location"):
        backupset.target_locations([])
    twice = [LocalLocation("same", str(tmp_path / "a")), LocalLocation("same", str(tmp_path / "b"))]
    with pytest.raises(DRError, match="used twice"):
        backupset.target_locations(twice)


def test_the_stored_artifact_is_hashed_as_stored(places, tmp_path):
    key_file = str(tmp_path / "k")
    generate_key_file(key_file)
    payload = os.urandom(300000)
    artifact, done, failed = write_artifact(places, "x.enc", payload, FileKeyProvider(key_file))
    assert sorted(done) == ["local", "second"] and failed == {}
    stored = open(os.path.join(places[0].path, "x.enc"), "rb").read()
    assert artifact.sha256 == hashlib.sha256(stored).hexdigest() and artifact.stored_bytes == len(stored)
    assert stored != payload and artifact.key_reference is not None


def test_read_back_drops_a_copy_that_differs_from_what_was_written(places, monkeypatch):
    monkeypatch.setattr(backupset, "READ_BACK_SLICE", 1000)  # many slices
    payload = os.urandom(12345)
    artifact, done, failed = write_artifact(places, "x.plain", payload)
    with open(os.path.join(places[1].path, "x.plain"), "r+b") as handle:
        handle.seek(5000)
        handle.write(b"\0\0\0")
    copies = backupset.stored_copies(places, "x.plain", artifact.stored_bytes, artifact.sha256, done, failed,
                                     read_back=True)
    assert copies["local"] == {"present": True, "size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    assert copies["second"]["present"] is False and "read back 12345 bytes" in copies["second"]["error"]
    assert not os.path.exists(os.path.join(places[1].path, "x.plain"))  # the damaged copy is removed
    unread = backupset.stored_copies(places, "x.plain", artifact.stored_bytes, artifact.sha256, done, failed,
                                     read_back=False)
    assert unread["second"] == {"present": True}


def test_read_back_names_a_copy_that_cannot_be_read(places):
    artifact, done, failed = write_artifact(places, "x.plain", b"abc")
    os.remove(os.path.join(places[0].path, "x.plain"))
    copies = backupset.stored_copies(places, "x.plain", 3, artifact.sha256, done, failed, read_back=True)
    assert copies["local"]["present"] is False and copies["local"]["error"].startswith("read back failed")
    assert copies["second"]["present"] is True


def test_commit_writes_manifests_only_beside_whole_copies(places):
    written_to = []
    copies = {"local": {"present": True}, "second": {"present": False, "error": "read back failed: gone"}}
    written, failed = backupset.commit(places, "x_1", "x.plain", copies, lambda loc: written_to.append(loc.name),
                                       require_all_locations=False)
    assert written == ["local"] == written_to and failed == {"second": "read back failed: gone"}
    with pytest.raises(DRError, match="no location holds an intact copy"):
        backupset.commit(places, "x_1", "x.plain", {"second": copies["second"]}, written_to.append, False)


def test_commit_with_every_location_required_removes_the_other_copies(places):
    write_artifact(places, "x.plain", b"abc")
    copies = {"local": {"present": True}, "second": {"present": False, "error": "disk full"}}
    with pytest.raises(DRError, match=r"not written to second \(require_all_locations\)"):
        backupset.commit(places, "x_1", "x.plain", copies, lambda loc: None, require_all_locations=True)
    assert not os.path.exists(os.path.join(places[0].path, "x.plain"))


def test_a_manifest_that_cannot_be_written_anywhere_fails_and_removes_the_copies(places):
    write_artifact(places, "x.plain", b"abc")

    def refuse(location):
        raise DRError("location %s: read-only" % location.name)

    copies = {"local": {"present": True}, "second": {"present": True}}
    with pytest.raises(DRError, match="could not be written to any location"):
        backupset.commit(places, "x_1", "x.plain", copies, refuse, require_all_locations=False)
    assert not any(os.path.exists(os.path.join(place.path, "x.plain")) for place in places)


def test_a_missing_manifest_fails_only_when_manifests_are_required(places):
    def only_local(location):
        if location.name != "local":
            raise DRError("no")

    copies = {"local": {"present": True}, "second": {"present": True}}
    written, failed = backupset.commit(places, "x_1", "k", copies, only_local, True, manifests_required=False)
    assert written == ["local"] and failed == {"second": "manifest not written: no"}
    with pytest.raises(DRError, match="manifest could not be written to second"):
        backupset.commit(places, "x_1", "k", copies, only_local, True)


def test_a_fresh_id_skips_a_second_that_is_taken(places):
    ids = iter(["x_20261124_020000", "x_20261124_020001"])
    os.makedirs(places[1].path)
    with open(os.path.join(places[1].path, "x_20261124_020000.plain"), "wb") as handle:
        handle.write(b"taken")
    chosen = backupset.fresh_backup_id(places, lambda: next(ids), lambda i: (i + ".plain",), "x")
    assert chosen == "x_20261124_020001"
