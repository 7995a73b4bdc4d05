# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for module_utils/configrestore.py: a bundle chosen and verified, planned and
written (files and Kubernetes objects), check mode and masked diffs, damaged and missing
copies, wrong key. Locations are local directories under tmp_path and keys are key files."""

import base64
import copy
import importlib.util
import json
import os
import stat

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import configbackup as cb
from ansible_collections.auditron.dr.plugins.module_utils import configrestore, kubeapi
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import generate_key_file

# Loaded by path, so that the tests do not depend on how tests/ is laid out as packages.
_SPEC = importlib.util.spec_from_file_location(
    "auditron_config_samples", os.path.join(os.path.dirname(os.path.abspath(__file__)), "config_samples.py"))
samples = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(samples)
key, stores, app_file = samples.key, samples.stores, samples.app_file  # fixtures
IS_ROOT = os.geteuid() == 0


def test_masked_diff_shows_keys_and_which_changed_never_values():
    before = json.dumps(samples.APP_CONFIG, indent=2).encode()
    after = json.dumps(samples.dr_config(), indent=2).encode()
    shown = configrestore.masked_view(after, before, secret=True) + configrestore.masked_view(before, after, secret=True)
    for value in ("pw-primary", "pw-dr", "sk-dr", "AKDR", "55433", "tok-123"):
        assert value not in shown
    masked = json.loads(configrestore.masked_view(after, before, secret=True))
    assert masked["postgres"]["password"] == configrestore.MASK + " (differs)"
    assert masked["token"] == configrestore.MASK
    assert json.loads(configrestore.masked_view(after, None, secret=True))["postgres"]["password"] == configrestore.MASK
    env = configrestore.masked_view(b"A=1\nB=2\nfree text\n", b"A=1\nB=3\n", secret=True)
    assert env == "A=%s\nB=%s (differs)\n%s\n" % (configrestore.MASK, configrestore.MASK, configrestore.MASK)
    assert configrestore.masked_view(b"plain: yes\n", None, secret=False) == "plain: yes\n"


def test_restore_without_files_puts_every_file_back_where_it_was(tmp_path, key, stores, app_file):
    cb.backup(stores, key, files=[{"path": os.path.dirname(app_file)}])
    os.unlink(app_file)
    result = configrestore.restore(stores, key)
    assert result["files"][0]["dest"] == app_file and json.load(open(app_file)) == samples.APP_CONFIG
    with pytest.raises(DRError, match="nothing selected to restore"):
        configrestore.restore(stores, key, files=[])


def test_check_mode_and_diff_write_nothing_and_show_no_secret(tmp_path, key, stores, app_file):
    cb.backup(stores, key, files=[{"path": app_file}])
    dest = tmp_path / "dr.json"
    dest.write_text(json.dumps(samples.APP_CONFIG, indent=2))
    os.chmod(str(dest), 0o644)
    before = dest.read_bytes()
    result = configrestore.restore(stores, key, files=[{"path": app_file, "dest": str(dest)}], rewrite=samples.DR_RULES,
                                   secret_rewrite=samples.DR_SECRET_RULES, check_mode=True, diff=True)
    assert result["changed"] and result["check_mode"]
    assert result["files"][0]["action"] == "update" and result["files"][0]["changes"] == ["content", "mode"]
    assert dest.read_bytes() == before and stat.S_IMODE(os.stat(str(dest)).st_mode) == 0o644
    text = json.dumps(result)
    for value in ("pw-primary", "pw-dr", "sk-primary", "sk-dr", "AKDR", "tok-123"):
        assert value not in text
    [diff] = result["diff"]
    assert json.loads(diff["after"])["postgres"]["password"] == configrestore.MASK + " (differs)"
    assert json.loads(diff["after"])["postgres"]["user"] == configrestore.MASK


def test_secret_files_lose_group_and_other_permissions(tmp_path, key, stores, app_file):
    os.chmod(app_file, 0o644)
    cb.backup(stores, key, files=[{"path": app_file}])
    dest = tmp_path / "out.json"
    result = configrestore.restore(stores, key, files=[{"path": app_file, "dest": str(dest)}])
    assert stat.S_IMODE(os.stat(str(dest)).st_mode) == 0o600
    assert any("0600 instead of 0644" in warning for warning in result["warnings"])
    public = tmp_path / "public.json"
    configrestore.restore(stores, key, files=[{"path": app_file, "dest": str(public), "secret": False}])
    assert stat.S_IMODE(os.stat(str(public)).st_mode) == 0o644


def test_mode_only_change_is_fixed_without_rewriting(tmp_path, key, stores, app_file):
    cb.backup(stores, key, files=[{"path": app_file}])
    dest = tmp_path / "out.json"
    configrestore.restore(stores, key, files=[{"path": app_file, "dest": str(dest)}])
    os.chmod(str(dest), 0o640)
    inode = os.stat(str(dest)).st_ino
    result = configrestore.restore(stores, key, files=[{"path": app_file, "dest": str(dest)}])
    assert result["files"][0]["changes"] == ["mode"]
    assert stat.S_IMODE(os.stat(str(dest)).st_mode) == 0o600 and os.stat(str(dest)).st_ino == inode


@pytest.mark.skipif(not IS_ROOT, reason="giving a file to another owner needs root")
def test_owner_is_restored_and_compared(tmp_path, key, stores, app_file):
    os.chown(app_file, 1, 1)  # daemon on Debian; any uid other than root's will do
    cb.backup(stores, key, files=[{"path": app_file}])
    dest = tmp_path / "owned" / "out.json"
    configrestore.restore(stores, key, files=[{"path": app_file, "dest": str(dest)}])
    assert (os.stat(str(dest)).st_uid, os.stat(str(dest)).st_gid) == (1, 1)
    assert os.stat(str(tmp_path / "owned")).st_uid == 1  # the directory made for it is the owner's too
    os.chown(str(dest), 0, 0)
    result = configrestore.restore(stores, key, files=[{"path": app_file, "dest": str(dest)}])
    assert result["files"][0]["changes"] == ["owner"] and os.stat(str(dest)).st_uid == 1
    with pytest.raises(DRError, match="owner no-such-user-xyz does not exist"):
        configrestore.restore(stores, key, files=[{"path": app_file, "dest": str(dest), "owner": "no-such-user-xyz"}])


def test_latest_is_the_newest_complete_bundle_of_the_source_site(tmp_path, key, stores, app_file):
    first = cb.backup(stores, key, files=[{"path": app_file}], site="primary")["backup_id"]
    second = cb.backup(stores, key, files=[{"path": app_file}], site="dr")["backup_id"]
    assert second > first
    dest = str(tmp_path / "x.json")
    assert configrestore.restore(stores, key, files=[{"path": app_file, "dest": dest}])["backup_id"] == second
    assert configrestore.restore(stores, key, files=[{"path": app_file, "dest": dest}],
                                 source_site="primary")["backup_id"] == first
    # A bundle whose manifest never got written (a backup that died) is not "latest".
    os.unlink(os.path.join(str(tmp_path), "disk", "config", second + ".manifest.json"))
    os.unlink(os.path.join(str(tmp_path), "second", "config", second + ".manifest.json"))
    assert configrestore.restore(stores, key, files=[{"path": app_file, "dest": dest}])["backup_id"] == first
    listed = cb.list_bundles(stores)
    assert [(b["id"], b["complete"]) for b in listed["bundles"]] == [(second, False), (first, True)]
    assert listed["bundles"][0]["locations"]["local"]["status"] == "incomplete"


def test_a_given_id_is_restored_and_a_bad_one_named(tmp_path, key, stores, app_file):
    backup_id = cb.backup(stores, key, files=[{"path": app_file}])["backup_id"]
    dest = str(tmp_path / "x.json")
    assert configrestore.restore(stores, key, backup_id=backup_id, files=[{"path": app_file, "dest": dest}])["changed"]
    with pytest.raises(DRError, match="not a configuration bundle id"):
        configrestore.restore(stores, key, backup_id="auditron_20261124_020000")
    with pytest.raises(DRError, match="config bundle config_20200101_000000: no location holds a complete manifest"):
        configrestore.restore(stores, key, backup_id="config_20200101_000000")
    with pytest.raises(DRError, match=r"files\[0\]: /nope is not in config bundle %s \(it holds %s\)" % (
            backup_id, app_file)):
        configrestore.restore(stores, key, files=[{"path": "/nope"}])


def test_wrong_key_fails_in_one_line_and_writes_nothing(tmp_path, key, stores, app_file):
    backup_id = cb.backup(stores, key, files=[{"path": app_file}])["backup_id"]
    other = tmp_path / "keys" / "other.key"
    generate_key_file(str(other))
    dest = tmp_path / "never" / "dr.json"
    with pytest.raises(DRError) as err:
        configrestore.restore(stores, {"key_source": "file", "key_file": str(other)},
                              files=[{"path": app_file, "dest": str(dest)}])
    message = samples.one_line(err)
    assert message.startswith("config bundle %s at location local was encrypted with key file fingerprint" %
                              backup_id)
    assert message.endswith("wrong key")
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("damage, expected", [
    ("flip", "sha256 [0-9a-f]{16} differs from the manifest's [0-9a-f]{16} \\(corrupted\\)"),
    ("truncate", "is [0-9]+ bytes, the manifest says [0-9]+ \\(truncated or replaced\\)"),
    ("remove", "not found"),
])
def test_a_damaged_copy_is_skipped_for_the_next_location(tmp_path, key, stores, app_file, damage, expected):
    backup_id = cb.backup(stores, key, files=[{"path": app_file}])["backup_id"]
    path = samples.bundle_file(tmp_path, "disk", backup_id)
    data = bytearray(open(path, "rb").read())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
        open(path, "wb").write(bytes(data))
    elif damage == "truncate":
        open(path, "wb").write(bytes(data[:-20]))
    else:
        os.unlink(path)
    dest = tmp_path / "out" / "dr.json"
    result = configrestore.restore(stores, key, files=[{"path": app_file, "dest": str(dest)}])
    assert result["location"] == "second" and dest.exists()
    assert list(result["skipped_locations"]) == ["local"]
    assert any("not from local" in warning for warning in result["warnings"])
    os.unlink(str(dest))
    with pytest.raises(DRError, match="config bundle %s: no location gave a verified copy: .*%s" % (
            backup_id, expected)) as err:
        configrestore.restore(stores[:1], key, files=[{"path": app_file, "dest": str(dest)}])
    assert "location local" in samples.one_line(err)
    assert not dest.exists()


def test_a_location_that_cannot_be_read_is_skipped(tmp_path, key, stores, app_file):
    backup_id = cb.backup(stores, key, files=[{"path": app_file}])["backup_id"]
    broken = [{"name": "gone", "type": "local", "path": str(tmp_path / "no-such-dir")}] + stores
    result = configrestore.restore(broken, key, files=[{"path": app_file, "dest": str(tmp_path / "x.json")}])
    assert result["location"] == "local" and "gone" in result["skipped_locations"]
    listed = cb.list_bundles(broken)
    assert "gone" in listed["unreachable_locations"] and listed["bundles"][0]["locations"]["gone"]["present"] is None
    assert listed["latest"] == backup_id


def test_kubernetes_restore_applies_server_side_with_rewrites_then_changes_nothing(key, stores):
    source = samples.CoreV1ApiStandIn(samples.live_objects())
    cb.backup(stores, key, kubernetes_params=samples.KUBE_PARAMS, kube_api=kubeapi.KubernetesApi(source))
    target = samples.CoreV1ApiStandIn(namespaces=("auditron-dr",))
    api = kubeapi.KubernetesApi(target, request_timeout=9)
    params = {"namespace_map": {"auditron": "auditron-dr"}, "field_manager": "auditron-dr"}
    rewrite = [{"match": "db.primary.internal", "replace": "db.dr.internal"}]
    secret_rewrite = [{"match": "pw-primary", "replace": "pw-dr", "whole": True}]
    result = configrestore.restore(stores, key, kubernetes_params=params, kube_api=api, rewrite=rewrite,
                                   secret_rewrite=secret_rewrite)
    assert [(o["kind"], o["namespace"], o["name"], o["action"]) for o in result["objects"]] == [
        ("ConfigMap", "auditron-dr", "auditron-api", "create"), ("Secret", "auditron-dr", "auditron-db", "create")]
    patches = [(m, a, k) for m, a, k in target.calls if m.startswith("patch")]
    assert [m for m, _a, _k in target.calls] == [
        "read_namespace", "read_namespaced_config_map", "read_namespaced_secret",
        "patch_namespaced_config_map", "patch_namespaced_secret"]
    method, args, kwargs = patches[0]
    assert args == ("auditron-api", "auditron-dr", {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "auditron-api", "namespace": "auditron-dr", "labels": {"app": "auditron"},
                     "annotations": {"team": "sre"}},
        "data": {"DATABASE_URL": "postgresql://app@db.dr.internal:5432/auditron", "LOG_LEVEL": "info"}})
    assert kwargs == {"field_manager": "auditron-dr", "force": True, "_content_type": "application/apply-patch+yaml",
                      "_preload_content": False, "_request_timeout": 9}
    secret_body = patches[1][1][2]
    assert base64.b64decode(secret_body["data"]["password"]) == b"pw-dr"
    assert base64.b64decode(secret_body["data"]["blob"]) == b"\xff\xfe\x00"  # binary: kept, never rewritten
    assert secret_body["type"] == "Opaque"
    assert all("pw-primary" not in json.dumps(item) and "pw-dr" not in json.dumps(item)
               for item in (result["objects"], result["rewrite"]))

    target.calls[:] = []
    again = configrestore.restore(stores, key, kubernetes_params=params, kube_api=api, rewrite=rewrite,
                                  secret_rewrite=secret_rewrite)
    assert not again["changed"] and not [m for m, _a, _k in target.calls if m.startswith("patch")]


def test_kubernetes_check_mode_and_diff_send_nothing_and_mask_secrets(key, stores):
    cb.backup(stores, key, kubernetes_params=samples.KUBE_PARAMS, kube_api=kubeapi.KubernetesApi(samples.CoreV1ApiStandIn(samples.live_objects())))
    live = [(kind, copy.deepcopy(raw)) for kind, raw in samples.live_objects()]
    live[1][1]["data"]["password"] = samples.b64("pw-old")
    target = samples.CoreV1ApiStandIn(live)
    result = configrestore.restore(stores, key, kubernetes_params={"kinds": ["Secret"]}, kube_api=kubeapi.KubernetesApi(target),
                                   check_mode=True, diff=True)
    assert [(o["name"], o["action"], o["changes"]) for o in result["objects"]] == [
        ("auditron-db", "update", ["data.password"])]
    assert not [m for m, _a, _k in target.calls if m.startswith("patch")]
    [diff] = result["diff"]
    assert json.loads(diff["after"])["data"]["password"] == configrestore.MASK + " (differs)"
    assert "pw-primary" not in json.dumps(result) and "pw-old" not in json.dumps(result)
    assert samples.b64("pw-primary") not in json.dumps(result)


def test_kubernetes_restore_stops_before_writing_on_a_missing_namespace_or_immutable_object(key, stores):
    cb.backup(stores, key, kubernetes_params=samples.KUBE_PARAMS, kube_api=kubeapi.KubernetesApi(samples.CoreV1ApiStandIn(samples.live_objects())))
    empty = samples.CoreV1ApiStandIn(namespaces=())
    with pytest.raises(DRError, match="namespace auditron does not exist on the target cluster"):
        configrestore.restore(stores, key, kubernetes_params={}, kube_api=kubeapi.KubernetesApi(empty, label="stand-in"))
    live = [(kind, copy.deepcopy(raw)) for kind, raw in samples.live_objects()]
    live[0][1]["immutable"] = True
    live[0][1]["data"]["LOG_LEVEL"] = "debug"
    frozen = samples.CoreV1ApiStandIn(live)
    with pytest.raises(DRError, match="ConfigMap auditron/auditron-api is immutable on the target"):
        configrestore.restore(stores, key, kubernetes_params={}, kube_api=kubeapi.KubernetesApi(frozen, label="stand-in"))
    assert not [m for m, _a, _k in frozen.calls + empty.calls if m.startswith("patch")]


def test_bundle_objects_are_left_alone_without_the_kubernetes_option(key, stores, app_file, tmp_path):
    cb.backup(stores, key, files=[{"path": app_file}], kubernetes_params=samples.KUBE_PARAMS,
              kube_api=kubeapi.KubernetesApi(samples.CoreV1ApiStandIn(samples.live_objects())))
    result = configrestore.restore(stores, key, files=[{"path": app_file, "dest": str(tmp_path / "x.json")}])
    assert any("2 Kubernetes objects; none applied" in warning for warning in result["warnings"])
