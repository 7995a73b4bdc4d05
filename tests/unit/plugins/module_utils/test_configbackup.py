# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for module_utils/configbackup.py: bundles written to every location and listed,
integrity of what is written, sources (files and Kubernetes objects through the stand-in API
of config_samples.py). Restore: test_configrestore.py; rewrite rules: test_rewrite.py; the
Kubernetes API client: test_kubeapi.py."""

import hashlib
import importlib.util
import io
import json
import os
import stat

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import configbackup as cb
from ansible_collections.auditron.dr.plugins.module_utils import configrestore, kubeapi
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.crypto import DecryptingReader
from ansible_collections.auditron.dr.plugins.module_utils.storage import LocalLocation

# Loaded by path, so that the tests do not depend on how tests/ is laid out as packages.
_SPEC = importlib.util.spec_from_file_location(
    "auditron_config_samples", os.path.join(os.path.dirname(os.path.abspath(__file__)), "config_samples.py"))
samples = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(samples)
key, stores, app_file = samples.key, samples.stores, samples.app_file  # fixtures


def test_backup_list_restore_round_trip(tmp_path, key, stores, app_file):
    result = cb.backup(stores, key, files=[{"path": app_file}], site="primary")
    backup_id = result["backup_id"]
    assert cb.ID_RE.match(backup_id)
    assert result["locations"] == ["local", "second"] and result["failed_locations"] == {}
    assert result["counts"] == {"files": 1, "ConfigMap": 0, "Secret": 0, "total": 1}
    stored = open(samples.bundle_file(tmp_path, "disk", backup_id), "rb").read()
    assert result["sha256"] == hashlib.sha256(stored).hexdigest()
    assert b"pw-primary" not in stored and stored.startswith(b"ADRGCM")
    manifest = json.load(open(os.path.join(str(tmp_path), "disk", "config", backup_id + ".manifest.json")))
    assert manifest["artifact"]["locations"]["second"] == {"present": True, "size": len(stored),
                                                           "sha256": result["sha256"]}
    assert manifest["encryption"]["key"]["provider"] == "file" and "pw-primary" not in json.dumps(manifest)
    assert manifest["items"][0]["path"] == app_file and manifest["items"][0]["mode"] == "0600"

    listed = cb.list_bundles(stores)
    assert listed["latest"] == backup_id
    [entry] = listed["bundles"]
    assert entry["present_in"] == ["local", "second"]
    assert all(row["sha256"] == result["sha256"] and row["status"] == "ok" for row in entry["locations"].values())

    dest = str(tmp_path / "dr" / "conf" / "dr.json")
    files = [{"path": app_file, "dest": dest}]
    restored = configrestore.restore(stores, key, files=files, rewrite=samples.DR_RULES, secret_rewrite=samples.DR_SECRET_RULES)
    assert restored["changed"] and restored["location"] == "local" and restored["warnings"] == []
    assert restored["files"][0]["action"] == "create"
    assert open(dest).read() == json.dumps(samples.dr_config(), indent=2)
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    for directory in (tmp_path / "dr", tmp_path / "dr" / "conf"):
        assert stat.S_IMODE(os.stat(str(directory)).st_mode) == 0o700
    inode = os.stat(dest).st_ino
    again = configrestore.restore(stores, key, files=files, rewrite=samples.DR_RULES, secret_rewrite=samples.DR_SECRET_RULES)
    assert not again["changed"] and again["files"][0]["action"] == "unchanged"
    assert os.stat(dest).st_ino == inode
    assert os.listdir(str(tmp_path / "dr" / "conf")) == ["dr.json"]


def test_unencrypted_only_when_asked_and_then_loudly(tmp_path, stores, app_file):
    with pytest.raises(DRError, match="encryption is required"):
        cb.backup(stores, None, files=[{"path": app_file}])
    result = cb.backup(stores, {"key_source": "none"}, files=[{"path": app_file}])
    assert result["warnings"][0].startswith("UNENCRYPTED: configuration bundles")
    assert result["artifact_key"].endswith(".json") and not result["encrypted"]
    restored = configrestore.restore(stores, None, files=[{"path": app_file, "dest": str(tmp_path / "x.json")}])
    assert any("UNENCRYPTED" in warning for warning in restored["warnings"])


def test_an_encrypted_bundle_needs_the_encryption_option(tmp_path, key, stores, app_file):
    cb.backup(stores, key, files=[{"path": app_file}])
    with pytest.raises(DRError, match="is encrypted \\(key file fingerprint [0-9a-f]+\\): give the encryption"):
        configrestore.restore(stores, None, files=[{"path": app_file, "dest": str(tmp_path / "x.json")}])


def test_backup_check_mode_writes_nothing(tmp_path, key, stores, app_file):
    result = cb.backup(stores, key, files=[{"path": app_file}], check_mode=True)
    assert result["check_mode"] and result["counts"]["files"] == 1
    assert result["locations"][0]["would_write"][0].endswith(".json.enc")
    assert not (tmp_path / "disk").exists()


def test_backup_source_errors_name_the_file(tmp_path, key, stores):
    with pytest.raises(DRError, match=r"files\[0\]: /no/such/file does not exist"):
        cb.backup(stores, key, files=[{"path": "/no/such/file"}])
    with pytest.raises(DRError, match=r"files\[0\]: path must be an absolute path"):
        cb.backup(stores, key, files=[{"path": "relative.json"}])
    present = tmp_path / "present.env"
    present.write_text("A=1\n")
    result = cb.backup(stores, key, files=[{"path": "/no/such/file", "optional": True}, {"path": str(present)}])
    assert result["counts"]["files"] == 1 and "skipped (optional)" in result["warnings"][0]


def test_a_location_failing_during_backup_is_reported_and_gets_no_manifest(tmp_path, key, stores, app_file):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the directory should be")
    targets = stores + [{"name": "blocked", "type": "local", "path": str(blocked)}]
    result = cb.backup(targets, key, files=[{"path": app_file}])
    assert result["locations"] == ["local", "second"] and list(result["failed_locations"]) == ["blocked"]
    manifest = json.load(open(os.path.join(str(tmp_path), "disk", "config", result["backup_id"] + ".manifest.json")))
    assert manifest["artifact"]["locations"]["blocked"]["present"] is False
    with pytest.raises(DRError, match="require_all_locations"):
        cb.backup(targets, key, files=[{"path": app_file}], require_all_locations=True)


def test_locations_share_one_list_under_their_own_prefix(tmp_path, key, app_file):
    disk = LocalLocation("disk", str(tmp_path / "disk"))
    result = cb.backup([disk], key, files=[{"path": app_file}])
    assert sorted(os.listdir(str(tmp_path / "disk" / "config"))) == [
        result["backup_id"] + ".json.enc", result["backup_id"] + ".manifest.json"]
    assert cb.parse_key(result["backup_id"] + ".manifest.json") == (result["backup_id"], "manifest")
    assert cb.parse_key(result["backup_id"] + ".json") == (result["backup_id"], "bundle")
    assert cb.parse_key("auditron_20261124_020000.dump.zst.enc") == (None, None)


def test_kubernetes_backup_reads_exactly_what_it_should(tmp_path, key, stores):
    core = samples.CoreV1ApiStandIn(samples.live_objects())
    api = kubeapi.KubernetesApi(core, label="stand-in API", request_timeout=7)
    result = cb.backup(stores, key, kubernetes_params=samples.KUBE_PARAMS, kube_api=api)
    assert core.calls == [
        ("list_namespaced_config_map", ("auditron",), {"_preload_content": False, "_request_timeout": 7,
                                                       "limit": kubeapi.LIST_PAGE, "label_selector": "app=auditron"}),
        ("list_namespaced_secret", ("auditron",), {"_preload_content": False, "_request_timeout": 7,
                                                   "limit": kubeapi.LIST_PAGE, "label_selector": "app=auditron"}),
    ]
    assert result["counts"] == {"files": 0, "ConfigMap": 1, "Secret": 1, "total": 2}
    assert sorted((s["name"], s["reason"].split(":")[0]) for s in result["left_out"]) == [
        ("api-tls", "owned by Certificate/api"), ("default-token-abcde", "service-account token"),
        ("kube-root-ca.crt", "published by the cluster in every namespace")]
    location = LocalLocation("check", str(tmp_path / "disk"))
    bundle = _decrypted_bundle(location, result, key)
    objects = dict((item["name"], item["object"]) for item in bundle["items"])
    assert objects["auditron-api"] == {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "auditron-api", "namespace": "auditron", "labels": {"app": "auditron"},
                     "annotations": {"team": "sre"}},
        "data": {"DATABASE_URL": "postgresql://app@db.primary.internal:5432/auditron", "LOG_LEVEL": "info"}}
    assert objects["auditron-db"]["type"] == "Opaque" and "uid" not in objects["auditron-db"]["metadata"]


def _decrypted_bundle(location, result, key):
    data = location.get_bytes("config/" + result["artifact_key"])
    return json.loads(DecryptingReader(io.BytesIO(data), key).read())
