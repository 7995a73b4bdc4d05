# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for module_utils/configbackup.py: bundles, rewrite rules, restore planning and
writing, integrity errors, and the Kubernetes source/target.

Locations are local directories under tmp_path and keys are key files: the S3 and KMS paths
are the lab's (tests/integration/test_config_backup.py). There is no Kubernetes cluster here:
the Kubernetes tests talk to two stand-ins, named as such - CoreV1ApiStandIn, which records
every call after binding its arguments to the real CoreV1Api method's signature, and
KubeApiServerStandIn, a small HTTP server the real `kubernetes` client talks to, recording
each request (method, path, query, headers, body). Neither is a cluster: they check what this
code reads and sends, not how an API server answers it.
"""

import base64
import copy
import hashlib
import http.server
import inspect
import io
import json
import os
import stat
import threading
import urllib.parse

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import configbackup as cb
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.crypto import DecryptingReader
from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import generate_key_file
from ansible_collections.auditron.dr.plugins.module_utils.storage import LocalLocation

kubernetes = pytest.importorskip("kubernetes")
from kubernetes.client.exceptions import ApiException  # noqa: E402  pylint: disable=wrong-import-position

IS_ROOT = os.geteuid() == 0

APP_CONFIG = {
    "site": "primary",
    "listen": ["127.0.0.11", 58080],
    "token": "tok-123",
    "postgres": {"host": "127.0.0.1", "port": 55432, "user": "postgres", "password": "pw-primary",
                 "database": "auditron", "socket_dir": "/srv/lab/pg/primary/run"},
    "object_store": {"endpoint": "https://localhost:55901", "access_key": "AKPRIMARY", "secret_key": "sk-primary",
                     "bucket": "auditron-files", "ca_file": "/srv/lab/tls/ca.crt"},
}
DR_RULES = [
    {"path": "site", "value": "dr"},
    {"match": "127.0.0.11", "replace": "127.0.0.12", "whole": True},
    {"match": 55432, "replace": 55433},
    {"match": "/srv/lab/pg/primary/run", "replace": "/srv/lab/pg/dr/run", "whole": True},
    {"match": "https://localhost:55901", "replace": "https://localhost:55902", "whole": True},
]
DR_SECRET_RULES = [
    {"match": "pw-primary", "replace": "pw-dr", "whole": True},
    {"match": "AKPRIMARY", "replace": "AKDR", "whole": True},
    {"match": "sk-primary", "replace": "sk-dr", "whole": True},
]


def dr_config():
    config = copy.deepcopy(APP_CONFIG)
    config["site"] = "dr"
    config["listen"][0] = "127.0.0.12"
    config["postgres"].update(port=55433, password="pw-dr", socket_dir="/srv/lab/pg/dr/run")
    config["object_store"].update(endpoint="https://localhost:55902", access_key="AKDR", secret_key="sk-dr")
    return config


# ---------------------------------------------------------------------------------------------
# Fixtures

@pytest.fixture
def key(tmp_path):
    path = tmp_path / "keys" / "config.key"
    path.parent.mkdir()
    generate_key_file(str(path))
    return {"key_source": "file", "key_file": str(path)}


@pytest.fixture
def stores(tmp_path):
    return [{"name": "local", "type": "local", "path": str(tmp_path / "disk")},
            {"name": "second", "type": "local", "path": str(tmp_path / "second")}]


@pytest.fixture
def app_file(tmp_path):
    path = tmp_path / "site" / "app" / "primary.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(APP_CONFIG, indent=2))
    os.chmod(path, 0o600)
    return str(path)


def bundle_file(root, name, backup_id, suffix=".json.enc"):
    return os.path.join(str(root), name, "config", backup_id + suffix)


# ---------------------------------------------------------------------------------------------
# Rewrite rules and documents

def test_rules_turn_the_primary_config_into_the_dr_config_keeping_its_layout():
    text = json.dumps(APP_CONFIG, indent=2)
    document = cb.Document(text.encode())
    counts = document.apply(cb.build_rules(DR_RULES, DR_SECRET_RULES), "/app/primary.json")
    assert document.render().decode() == json.dumps(dr_config(), indent=2)
    assert counts == {"rewrite[0]": 1, "rewrite[1]": 1, "rewrite[2]": 1, "rewrite[3]": 1, "rewrite[4]": 1,
                      "secret_rewrite[0]": 1, "secret_rewrite[1]": 1, "secret_rewrite[2]": 1}


@pytest.mark.parametrize("dump", [
    lambda d: json.dumps(d, indent=4, sort_keys=True) + "\n",
    lambda d: json.dumps(d, separators=(",", ":")),
    lambda d: json.dumps(d, indent="\t") + "\n",
])
def test_rewritten_json_keeps_the_files_layout(dump):
    text = dump({"b": 1, "a": {"port": 55432, "name": "é"}})
    document = cb.Document(text.encode())
    document.apply(cb.build_rules([{"match": 55432, "replace": 55433}]), "x")
    assert document.render().decode() == dump({"b": 1, "a": {"port": 55433, "name": "é"}})


def test_unchanged_json_is_written_back_byte_for_byte():
    text = '{ "odd" :  "layout" ,"n":1}\n'
    document = cb.Document(text.encode())
    assert document.apply(cb.build_rules([{"match": "nothing-here", "replace": "x"}]), "x") == {}
    assert document.render() == text.encode()


def test_match_rules_never_touch_keys_and_respect_types():
    document = cb.Document(json.dumps({"55432": "55432", "n": 55432, "flag": True, "one": 1}).encode())
    document.apply(cb.build_rules([{"match": 55432, "replace": 1}, {"match": True, "replace": False},
                                   {"match": 1, "replace": 2}]), "x")
    # 55432 (int) becomes 1, then every int 1 becomes 2; the string "55432" and the key stay;
    # True is a boolean, not the number 1.
    assert json.loads(document.render()) == {"55432": "55432", "n": 2, "flag": False, "one": 2}


def test_substring_and_whole_matches_on_text():
    document = cb.Document(b"DB=postgres://db.primary:5432/a\nHOST=db.primary\n")
    rules = cb.build_rules([{"match": "db.primary", "replace": "db.dr"}])
    assert document.apply(rules, "env") == {"rewrite[0]": 2}
    assert document.render() == b"DB=postgres://db.dr:5432/a\nHOST=db.dr\n"
    document = cb.Document(b"db.primary")
    document.apply(cb.build_rules([{"match": "db.primary", "replace": "db.dr", "whole": True}]), "x")
    assert document.format == "text" and document.render() == b"db.dr"


def test_path_rules_set_values_and_name_what_is_missing():
    document = cb.Document(json.dumps(APP_CONFIG).encode())
    document.apply(cb.build_rules([{"path": "listen[0]", "value": "10.0.0.1"},
                                   {"path": "postgres.port", "value": 6432},
                                   {"path": "listen.1", "value": 9090}]), "x")
    tree = json.loads(document.render())
    assert tree["listen"] == ["10.0.0.1", 9090] and tree["postgres"]["port"] == 6432
    with pytest.raises(DRError, match=r"rewrite\[0\]: /app.json has no value at path postgres.nope"):
        cb.Document(json.dumps(APP_CONFIG).encode()).apply(
            cb.build_rules([{"path": "postgres.nope", "value": 1}]), "/app.json")
    assert cb.Document(json.dumps(APP_CONFIG).encode()).apply(
        cb.build_rules([{"path": "postgres.nope", "value": 1, "optional": True}]), "/app.json") == {}


def test_applies_to_limits_a_rule_to_some_items():
    rules = cb.build_rules([{"match": "a", "replace": "b", "applies_to": ["/etc/one/*"]}])
    first, second = cb.Document(b"a"), cb.Document(b"a")
    first.apply(rules, "/etc/one/x.env")
    second.apply(rules, "/etc/two/x.env")
    assert (first.render(), second.render()) == (b"b", b"a")


@pytest.mark.parametrize("spec, message", [
    ({}, "either match"),
    ({"match": "a", "path": "b", "value": 1}, "either match"),
    ({"match": "a"}, "replace is required"),
    ({"match": "", "replace": "x"}, "empty string"),
    ({"match": "a", "replace": 5}, "replace must be a string"),
    ({"path": "a.b"}, "value is required"),
    ({"path": "a[", "value": 1}, "not a key path"),
])
def test_bad_rules_are_refused_with_their_name(spec, message):
    with pytest.raises(DRError, match=r"rewrite\[0\]: .*" + message):
        cb.build_rules([spec])


def test_secret_rules_never_describe_their_values():
    rule = cb.build_rules(None, [{"match": "hunter2", "replace": "x"}])[0]
    assert "hunter2" not in rule.describe() and rule.describe() == "secret_rewrite[0] (a secret value)"


def test_masked_diff_shows_keys_and_which_changed_never_values():
    before = json.dumps(APP_CONFIG, indent=2).encode()
    after = json.dumps(dr_config(), indent=2).encode()
    shown = cb.masked_view(after, before, secret=True) + cb.masked_view(before, after, secret=True)
    for value in ("pw-primary", "pw-dr", "sk-dr", "AKDR", "55433", "tok-123"):
        assert value not in shown
    masked = json.loads(cb.masked_view(after, before, secret=True))
    assert masked["postgres"]["password"] == cb.MASK + " (differs)"
    assert masked["token"] == cb.MASK
    assert json.loads(cb.masked_view(after, None, secret=True))["postgres"]["password"] == cb.MASK
    env = cb.masked_view(b"A=1\nB=2\nfree text\n", b"A=1\nB=3\n", secret=True)
    assert env == "A=%s\nB=%s (differs)\n%s\n" % (cb.MASK, cb.MASK, cb.MASK)
    assert cb.masked_view(b"plain: yes\n", None, secret=False) == "plain: yes\n"


# ---------------------------------------------------------------------------------------------
# Backup, list and restore of files (local locations, key file)

def test_backup_list_restore_round_trip(tmp_path, key, stores, app_file):
    result = cb.backup(stores, key, files=[{"path": app_file}], site="primary")
    backup_id = result["backup_id"]
    assert cb.ID_RE.match(backup_id)
    assert result["locations"] == ["local", "second"] and result["failed_locations"] == {}
    assert result["counts"] == {"files": 1, "ConfigMap": 0, "Secret": 0, "total": 1}
    stored = open(bundle_file(tmp_path, "disk", backup_id), "rb").read()
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
    restored = cb.restore(stores, key, files=files, rewrite=DR_RULES, secret_rewrite=DR_SECRET_RULES)
    assert restored["changed"] and restored["location"] == "local" and restored["warnings"] == []
    assert restored["files"][0]["action"] == "create"
    assert open(dest).read() == json.dumps(dr_config(), indent=2)
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    for directory in (tmp_path / "dr", tmp_path / "dr" / "conf"):
        assert stat.S_IMODE(os.stat(str(directory)).st_mode) == 0o700
    inode = os.stat(dest).st_ino
    again = cb.restore(stores, key, files=files, rewrite=DR_RULES, secret_rewrite=DR_SECRET_RULES)
    assert not again["changed"] and again["files"][0]["action"] == "unchanged"
    assert os.stat(dest).st_ino == inode
    assert os.listdir(str(tmp_path / "dr" / "conf")) == ["dr.json"]


def test_restore_without_files_puts_every_file_back_where_it_was(tmp_path, key, stores, app_file):
    cb.backup(stores, key, files=[{"path": os.path.dirname(app_file)}])
    os.unlink(app_file)
    result = cb.restore(stores, key)
    assert result["files"][0]["dest"] == app_file and json.load(open(app_file)) == APP_CONFIG
    with pytest.raises(DRError, match="nothing selected to restore"):
        cb.restore(stores, key, files=[])


def test_check_mode_and_diff_write_nothing_and_show_no_secret(tmp_path, key, stores, app_file):
    cb.backup(stores, key, files=[{"path": app_file}])
    dest = tmp_path / "dr.json"
    dest.write_text(json.dumps(APP_CONFIG, indent=2))
    os.chmod(str(dest), 0o644)
    before = dest.read_bytes()
    result = cb.restore(stores, key, files=[{"path": app_file, "dest": str(dest)}], rewrite=DR_RULES,
                        secret_rewrite=DR_SECRET_RULES, check_mode=True, diff=True)
    assert result["changed"] and result["check_mode"]
    assert result["files"][0]["action"] == "update" and result["files"][0]["changes"] == ["content", "mode"]
    assert dest.read_bytes() == before and stat.S_IMODE(os.stat(str(dest)).st_mode) == 0o644
    text = json.dumps(result)
    for value in ("pw-primary", "pw-dr", "sk-primary", "sk-dr", "AKDR", "tok-123"):
        assert value not in text
    [diff] = result["diff"]
    assert json.loads(diff["after"])["postgres"]["password"] == cb.MASK + " (differs)"
    assert json.loads(diff["after"])["postgres"]["user"] == cb.MASK


def test_secret_files_lose_group_and_other_permissions(tmp_path, key, stores, app_file):
    os.chmod(app_file, 0o644)
    cb.backup(stores, key, files=[{"path": app_file}])
    dest = tmp_path / "out.json"
    result = cb.restore(stores, key, files=[{"path": app_file, "dest": str(dest)}])
    assert stat.S_IMODE(os.stat(str(dest)).st_mode) == 0o600
    assert any("0600 instead of 0644" in warning for warning in result["warnings"])
    public = tmp_path / "public.json"
    cb.restore(stores, key, files=[{"path": app_file, "dest": str(public), "secret": False}])
    assert stat.S_IMODE(os.stat(str(public)).st_mode) == 0o644


def test_mode_only_change_is_fixed_without_rewriting(tmp_path, key, stores, app_file):
    cb.backup(stores, key, files=[{"path": app_file}])
    dest = tmp_path / "out.json"
    cb.restore(stores, key, files=[{"path": app_file, "dest": str(dest)}])
    os.chmod(str(dest), 0o640)
    inode = os.stat(str(dest)).st_ino
    result = cb.restore(stores, key, files=[{"path": app_file, "dest": str(dest)}])
    assert result["files"][0]["changes"] == ["mode"]
    assert stat.S_IMODE(os.stat(str(dest)).st_mode) == 0o600 and os.stat(str(dest)).st_ino == inode


@pytest.mark.skipif(not IS_ROOT, reason="giving a file to another owner needs root")
def test_owner_is_restored_and_compared(tmp_path, key, stores, app_file):
    os.chown(app_file, 1, 1)  # daemon on Debian; any uid other than root's will do
    cb.backup(stores, key, files=[{"path": app_file}])
    dest = tmp_path / "owned" / "out.json"
    cb.restore(stores, key, files=[{"path": app_file, "dest": str(dest)}])
    assert (os.stat(str(dest)).st_uid, os.stat(str(dest)).st_gid) == (1, 1)
    assert os.stat(str(tmp_path / "owned")).st_uid == 1  # the directory made for it is the owner's too
    os.chown(str(dest), 0, 0)
    result = cb.restore(stores, key, files=[{"path": app_file, "dest": str(dest)}])
    assert result["files"][0]["changes"] == ["owner"] and os.stat(str(dest)).st_uid == 1
    with pytest.raises(DRError, match="owner no-such-user-xyz does not exist"):
        cb.restore(stores, key, files=[{"path": app_file, "dest": str(dest), "owner": "no-such-user-xyz"}])


def test_latest_is_the_newest_complete_bundle_of_the_source_site(tmp_path, key, stores, app_file):
    first = cb.backup(stores, key, files=[{"path": app_file}], site="primary")["backup_id"]
    second = cb.backup(stores, key, files=[{"path": app_file}], site="dr")["backup_id"]
    assert second > first
    dest = str(tmp_path / "x.json")
    assert cb.restore(stores, key, files=[{"path": app_file, "dest": dest}])["backup_id"] == second
    assert cb.restore(stores, key, files=[{"path": app_file, "dest": dest}],
                      source_site="primary")["backup_id"] == first
    # A bundle whose manifest never got written (a backup that died) is not "latest".
    os.unlink(os.path.join(str(tmp_path), "disk", "config", second + ".manifest.json"))
    os.unlink(os.path.join(str(tmp_path), "second", "config", second + ".manifest.json"))
    assert cb.restore(stores, key, files=[{"path": app_file, "dest": dest}])["backup_id"] == first
    listed = cb.list_bundles(stores)
    assert [(b["id"], b["complete"]) for b in listed["bundles"]] == [(second, False), (first, True)]
    assert listed["bundles"][0]["locations"]["local"]["status"] == "incomplete"


def test_a_given_id_is_restored_and_a_bad_one_named(tmp_path, key, stores, app_file):
    backup_id = cb.backup(stores, key, files=[{"path": app_file}])["backup_id"]
    dest = str(tmp_path / "x.json")
    assert cb.restore(stores, key, backup_id=backup_id, files=[{"path": app_file, "dest": dest}])["changed"]
    with pytest.raises(DRError, match="not a configuration bundle id"):
        cb.restore(stores, key, backup_id="auditron_20261124_020000")
    with pytest.raises(DRError, match="config bundle config_20200101_000000: no location holds a complete manifest"):
        cb.restore(stores, key, backup_id="config_20200101_000000")
    with pytest.raises(DRError, match=r"files\[0\]: /nope is not in config bundle %s \(it holds %s\)" % (
            backup_id, app_file)):
        cb.restore(stores, key, files=[{"path": "/nope"}])


def _one_line(exc_info):
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def test_wrong_key_fails_in_one_line_and_writes_nothing(tmp_path, key, stores, app_file):
    backup_id = cb.backup(stores, key, files=[{"path": app_file}])["backup_id"]
    other = tmp_path / "keys" / "other.key"
    generate_key_file(str(other))
    dest = tmp_path / "never" / "dr.json"
    with pytest.raises(DRError) as err:
        cb.restore(stores, {"key_source": "file", "key_file": str(other)},
                   files=[{"path": app_file, "dest": str(dest)}])
    message = _one_line(err)
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
    path = bundle_file(tmp_path, "disk", backup_id)
    data = bytearray(open(path, "rb").read())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
        open(path, "wb").write(bytes(data))
    elif damage == "truncate":
        open(path, "wb").write(bytes(data[:-20]))
    else:
        os.unlink(path)
    dest = tmp_path / "out" / "dr.json"
    result = cb.restore(stores, key, files=[{"path": app_file, "dest": str(dest)}])
    assert result["location"] == "second" and dest.exists()
    assert list(result["skipped_locations"]) == ["local"]
    assert any("not from local" in warning for warning in result["warnings"])
    os.unlink(str(dest))
    with pytest.raises(DRError, match="config bundle %s: no location gave a verified copy: .*%s" % (
            backup_id, expected)) as err:
        cb.restore(stores[:1], key, files=[{"path": app_file, "dest": str(dest)}])
    assert "location local" in _one_line(err)
    assert not dest.exists()


def test_a_location_that_cannot_be_read_is_skipped(tmp_path, key, stores, app_file):
    backup_id = cb.backup(stores, key, files=[{"path": app_file}])["backup_id"]
    broken = [{"name": "gone", "type": "local", "path": str(tmp_path / "no-such-dir")}] + stores
    result = cb.restore(broken, key, files=[{"path": app_file, "dest": str(tmp_path / "x.json")}])
    assert result["location"] == "local" and "gone" in result["skipped_locations"]
    listed = cb.list_bundles(broken)
    assert "gone" in listed["unreachable_locations"] and listed["bundles"][0]["locations"]["gone"]["present"] is None
    assert listed["latest"] == backup_id


def test_unencrypted_only_when_asked_and_then_loudly(tmp_path, stores, app_file):
    with pytest.raises(DRError, match="encryption is required"):
        cb.backup(stores, None, files=[{"path": app_file}])
    result = cb.backup(stores, {"key_source": "none"}, files=[{"path": app_file}])
    assert result["warnings"][0].startswith("UNENCRYPTED: configuration bundles")
    assert result["artifact_key"].endswith(".json") and not result["encrypted"]
    restored = cb.restore(stores, None, files=[{"path": app_file, "dest": str(tmp_path / "x.json")}])
    assert any("UNENCRYPTED" in warning for warning in restored["warnings"])


def test_an_encrypted_bundle_needs_the_encryption_option(tmp_path, key, stores, app_file):
    cb.backup(stores, key, files=[{"path": app_file}])
    with pytest.raises(DRError, match="is encrypted \\(key file fingerprint [0-9a-f]+\\): give the encryption"):
        cb.restore(stores, None, files=[{"path": app_file, "dest": str(tmp_path / "x.json")}])


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


# ---------------------------------------------------------------------------------------------
# Kubernetes: a stand-in CoreV1Api that records calls (not a cluster)

class RawResponseStandIn(object):
    """What CoreV1Api returns with _preload_content=False: a urllib3 response's .data."""

    def __init__(self, document):
        self.data = json.dumps(document).encode()
        self.released = False

    def release_conn(self):
        self.released = True


def _labels_match(labels, selector):
    if not selector:
        return True
    for term in selector.split(","):
        name, _sep, value = term.partition("=")
        if (labels or {}).get(name.strip()) != value.strip():
            return False
    return True


class CoreV1ApiStandIn(object):
    """A stand-in for kubernetes.client.CoreV1Api - NOT a cluster. Objects live in a dict; every
    call is checked against the real CoreV1Api method's signature, then recorded in `calls`.
    Server-side apply is imitated only as far as these tests need: the applied fields replace
    the stored ones."""

    def __init__(self, objects=(), namespaces=("auditron",)):
        self.objects = {}
        for kind, raw in objects:
            self.objects[(kind, raw["metadata"]["namespace"], raw["metadata"]["name"])] = copy.deepcopy(raw)
        self.namespaces = set(namespaces)
        self.calls = []

    def _record(self, method, *args, **kwargs):
        real = getattr(kubernetes.client.CoreV1Api, method)
        inspect.signature(real).bind(None, *args, **kwargs)  # TypeError if the real client has no such argument
        self.calls.append((method, args, kwargs))

    def _list(self, method, kind, namespace, **kwargs):
        self._record(method, namespace, **kwargs)
        if namespace not in self.namespaces:
            raise ApiException(status=404, reason="Not Found")
        items = [copy.deepcopy(raw) for (k, ns, _n), raw in sorted(self.objects.items())
                 if k == kind and ns == namespace and _labels_match(raw["metadata"].get("labels"),
                                                                    kwargs.get("label_selector"))]
        start = int(kwargs.get("_continue") or 0)
        limit = kwargs.get("limit") or len(items)
        page = items[start:start + limit]
        more = start + limit < len(items)
        for item in page:  # list items carry neither kind nor apiVersion, as on a real server
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return RawResponseStandIn({"kind": kind + "List", "apiVersion": "v1", "items": page,
                                   "metadata": {"continue": str(start + limit)} if more else {}})

    def _read(self, method, kind, name, namespace, **kwargs):
        self._record(method, name, namespace, **kwargs)
        raw = self.objects.get((kind, namespace, name))
        if raw is None:
            raise ApiException(status=404, reason="Not Found")
        return RawResponseStandIn(raw)

    def _patch(self, method, kind, name, namespace, body, **kwargs):
        self._record(method, name, namespace, body, **kwargs)
        if namespace not in self.namespaces:
            raise ApiException(status=404, reason="Not Found")
        stored = copy.deepcopy(self.objects.get((kind, namespace, name)) or {"metadata": {"uid": "new-uid"}})
        for field, value in body.items():
            if field == "metadata":
                stored["metadata"].update(copy.deepcopy(value))
            else:
                stored[field] = copy.deepcopy(value)
        self.objects[(kind, namespace, name)] = stored
        return RawResponseStandIn(stored)

    def list_namespaced_config_map(self, namespace, **kwargs):
        return self._list("list_namespaced_config_map", "ConfigMap", namespace, **kwargs)

    def list_namespaced_secret(self, namespace, **kwargs):
        return self._list("list_namespaced_secret", "Secret", namespace, **kwargs)

    def read_namespaced_config_map(self, name, namespace, **kwargs):
        return self._read("read_namespaced_config_map", "ConfigMap", name, namespace, **kwargs)

    def read_namespaced_secret(self, name, namespace, **kwargs):
        return self._read("read_namespaced_secret", "Secret", name, namespace, **kwargs)

    def patch_namespaced_config_map(self, name, namespace, body, **kwargs):
        return self._patch("patch_namespaced_config_map", "ConfigMap", name, namespace, body, **kwargs)

    def patch_namespaced_secret(self, name, namespace, body, **kwargs):
        return self._patch("patch_namespaced_secret", "Secret", name, namespace, body, **kwargs)

    def read_namespace(self, name, **kwargs):
        self._record("read_namespace", name, **kwargs)
        if name not in self.namespaces:
            raise ApiException(status=404, reason="Not Found")
        return RawResponseStandIn({"kind": "Namespace", "metadata": {"name": name}})


def b64(text):
    return base64.b64encode(text.encode()).decode()


def live_objects():
    server_set = {"uid": "3f1c", "resourceVersion": "81234", "creationTimestamp": "2026-11-20T10:00:00Z",
                  "managedFields": [{"manager": "kubectl", "operation": "Apply"}], "generation": 1}
    app = {"kind": "ConfigMap", "apiVersion": "v1",
           "metadata": dict(server_set, name="auditron-api", namespace="auditron", labels={"app": "auditron"},
                            annotations={"kubectl.kubernetes.io/last-applied-configuration": "{...}",
                                         "team": "sre"}),
           "data": {"DATABASE_URL": "postgresql://app@db.primary.internal:5432/auditron", "LOG_LEVEL": "info"}}
    secret = {"kind": "Secret", "apiVersion": "v1", "type": "Opaque",
              "metadata": dict(server_set, name="auditron-db", namespace="auditron", labels={"app": "auditron"}),
              "data": {"password": b64("pw-primary"), "blob": base64.b64encode(b"\xff\xfe\x00").decode()}}
    token = {"kind": "Secret", "type": "kubernetes.io/service-account-token",
             "metadata": dict(server_set, name="default-token-abcde", namespace="auditron",
                              labels={"app": "auditron"}), "data": {"token": b64("jwt")}}
    root_ca = {"kind": "ConfigMap", "metadata": dict(server_set, name="kube-root-ca.crt", namespace="auditron",
                                                     labels={"app": "auditron"}), "data": {"ca.crt": "PEM"}}
    owned = {"kind": "Secret", "type": "kubernetes.io/tls",
             "metadata": dict(server_set, name="api-tls", namespace="auditron", labels={"app": "auditron"},
                              ownerReferences=[{"kind": "Certificate", "name": "api", "uid": "77"}]),
             "data": {"tls.crt": b64("C"), "tls.key": b64("K")}}
    other = {"kind": "ConfigMap", "metadata": dict(server_set, name="unrelated", namespace="auditron",
                                                   labels={"app": "other"}), "data": {"x": "1"}}
    return [("ConfigMap", app), ("Secret", secret), ("Secret", token), ("ConfigMap", root_ca),
            ("Secret", owned), ("ConfigMap", other)]


KUBE_PARAMS = {"namespaces": ["auditron"], "label_selector": "app=auditron"}


def test_kubernetes_backup_reads_exactly_what_it_should(tmp_path, key, stores):
    core = CoreV1ApiStandIn(live_objects())
    api = cb.KubernetesApi(core, label="stand-in API", request_timeout=7)
    result = cb.backup(stores, key, kubernetes_params=KUBE_PARAMS, kube_api=api)
    assert core.calls == [
        ("list_namespaced_config_map", ("auditron",), {"_preload_content": False, "_request_timeout": 7,
                                                       "limit": cb.LIST_PAGE, "label_selector": "app=auditron"}),
        ("list_namespaced_secret", ("auditron",), {"_preload_content": False, "_request_timeout": 7,
                                                   "limit": cb.LIST_PAGE, "label_selector": "app=auditron"}),
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


def test_kubernetes_lists_follow_continue_tokens(key, stores):
    objects = [("ConfigMap", {"metadata": {"name": "cm-%03d" % n, "namespace": "auditron"}, "data": {"n": str(n)}})
               for n in range(cb.LIST_PAGE + 3)]
    core = CoreV1ApiStandIn(objects)
    result = cb.backup(stores, key, kubernetes_params={"namespaces": ["auditron"], "kinds": ["ConfigMap"]},
                       kube_api=cb.KubernetesApi(core))
    assert result["counts"]["ConfigMap"] == cb.LIST_PAGE + 3
    assert [kwargs.get("_continue") for _m, _a, kwargs in core.calls] == [None, str(cb.LIST_PAGE)]


def test_kubernetes_restore_applies_server_side_with_rewrites_then_changes_nothing(key, stores):
    source = CoreV1ApiStandIn(live_objects())
    cb.backup(stores, key, kubernetes_params=KUBE_PARAMS, kube_api=cb.KubernetesApi(source))
    target = CoreV1ApiStandIn(namespaces=("auditron-dr",))
    api = cb.KubernetesApi(target, request_timeout=9)
    params = {"namespace_map": {"auditron": "auditron-dr"}, "field_manager": "auditron-dr"}
    rewrite = [{"match": "db.primary.internal", "replace": "db.dr.internal"}]
    secret_rewrite = [{"match": "pw-primary", "replace": "pw-dr", "whole": True}]
    result = cb.restore(stores, key, kubernetes_params=params, kube_api=api, rewrite=rewrite,
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
    again = cb.restore(stores, key, kubernetes_params=params, kube_api=api, rewrite=rewrite,
                       secret_rewrite=secret_rewrite)
    assert not again["changed"] and not [m for m, _a, _k in target.calls if m.startswith("patch")]


def test_kubernetes_check_mode_and_diff_send_nothing_and_mask_secrets(key, stores):
    cb.backup(stores, key, kubernetes_params=KUBE_PARAMS, kube_api=cb.KubernetesApi(CoreV1ApiStandIn(live_objects())))
    live = [(kind, copy.deepcopy(raw)) for kind, raw in live_objects()]
    live[1][1]["data"]["password"] = b64("pw-old")
    target = CoreV1ApiStandIn(live)
    result = cb.restore(stores, key, kubernetes_params={"kinds": ["Secret"]}, kube_api=cb.KubernetesApi(target),
                        check_mode=True, diff=True)
    assert [(o["name"], o["action"], o["changes"]) for o in result["objects"]] == [
        ("auditron-db", "update", ["data.password"])]
    assert not [m for m, _a, _k in target.calls if m.startswith("patch")]
    [diff] = result["diff"]
    assert json.loads(diff["after"])["data"]["password"] == cb.MASK + " (differs)"
    assert "pw-primary" not in json.dumps(result) and "pw-old" not in json.dumps(result)
    assert b64("pw-primary") not in json.dumps(result)


def test_kubernetes_restore_stops_before_writing_on_a_missing_namespace_or_immutable_object(key, stores):
    cb.backup(stores, key, kubernetes_params=KUBE_PARAMS, kube_api=cb.KubernetesApi(CoreV1ApiStandIn(live_objects())))
    empty = CoreV1ApiStandIn(namespaces=())
    with pytest.raises(DRError, match="namespace auditron does not exist on the target cluster"):
        cb.restore(stores, key, kubernetes_params={}, kube_api=cb.KubernetesApi(empty, label="stand-in"))
    live = [(kind, copy.deepcopy(raw)) for kind, raw in live_objects()]
    live[0][1]["immutable"] = True
    live[0][1]["data"]["LOG_LEVEL"] = "debug"
    frozen = CoreV1ApiStandIn(live)
    with pytest.raises(DRError, match="ConfigMap auditron/auditron-api is immutable on the target"):
        cb.restore(stores, key, kubernetes_params={}, kube_api=cb.KubernetesApi(frozen, label="stand-in"))
    assert not [m for m, _a, _k in frozen.calls + empty.calls if m.startswith("patch")]


def test_kubernetes_errors_are_one_line_naming_the_call():
    class Refusing(CoreV1ApiStandIn):
        def list_namespaced_config_map(self, namespace, **kwargs):
            raise ApiException(status=403, reason="Forbidden")

    with pytest.raises(DRError) as err:
        cb.KubernetesApi(Refusing(), label="stand-in API").list("ConfigMap", "auditron")
    assert str(err.value) == "stand-in API: listing ConfigMaps in namespace auditron: HTTP 403, Forbidden"


def test_bundle_objects_are_left_alone_without_the_kubernetes_option(key, stores, app_file, tmp_path):
    cb.backup(stores, key, files=[{"path": app_file}], kubernetes_params=KUBE_PARAMS,
              kube_api=cb.KubernetesApi(CoreV1ApiStandIn(live_objects())))
    result = cb.restore(stores, key, files=[{"path": app_file, "dest": str(tmp_path / "x.json")}])
    assert any("2 Kubernetes objects; none applied" in warning for warning in result["warnings"])


# ---------------------------------------------------------------------------------------------
# Kubernetes over HTTP: the real `kubernetes` client against a stand-in API server (not a cluster)

class KubeApiServerStandIn(object):
    """A small HTTP server on 127.0.0.1 answering the few paths this engine uses, from a
    CoreV1ApiStandIn's store, and recording every request the real client sends."""

    def __init__(self, objects):
        self.store = CoreV1ApiStandIn(objects)
        self.requests = []
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # pylint: disable=arguments-differ
                pass

            def _answer(self, status, document):
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self):
                url = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                query = dict(urllib.parse.parse_qsl(url.query))
                stand_in.requests.append({"method": self.command, "path": url.path, "query": query,
                                          "content_type": self.headers.get("Content-Type"),
                                          "authorization": self.headers.get("Authorization"),
                                          "body": json.loads(body) if body else None})
                parts = url.path.strip("/").split("/")  # api v1 namespaces <ns> [<plural> [<name>]]
                kinds = {"configmaps": "ConfigMap", "secrets": "Secret"}
                try:
                    if len(parts) == 4:
                        answer = stand_in.store.read_namespace(parts[3])
                    elif len(parts) == 5 and self.command == "GET":
                        kind = kinds[parts[4]]
                        answer = stand_in.store._list(  # pylint: disable=protected-access
                            "list_namespaced_" + ("config_map" if kind == "ConfigMap" else "secret"), kind, parts[3],
                            limit=int(query.get("limit", 0)) or None, label_selector=query.get("labelSelector"),
                            _continue=query.get("continue"))
                    elif self.command == "GET":
                        kind = kinds[parts[4]]
                        answer = stand_in.store._read(  # pylint: disable=protected-access
                            "read_namespaced_" + ("config_map" if kind == "ConfigMap" else "secret"), kind, parts[5],
                            parts[3])
                    else:
                        kind = kinds[parts[4]]
                        answer = stand_in.store._patch(  # pylint: disable=protected-access
                            "patch_namespaced_" + ("config_map" if kind == "ConfigMap" else "secret"), kind, parts[5],
                            parts[3], json.loads(body))
                except ApiException as exc:
                    self._answer(exc.status, {"kind": "Status", "status": "Failure", "code": exc.status,
                                              "message": "%s not found" % url.path, "reason": "NotFound"})
                    return
                self._answer(200, json.loads(answer.data))

            do_GET = _handle
            do_PATCH = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api_server():
    server = KubeApiServerStandIn(live_objects())
    yield server
    server.close()


def test_the_real_client_sends_what_the_engine_means(api_server, key, stores):
    params = dict(KUBE_PARAMS, host=api_server.url, api_key="t0ken", request_timeout=5)
    result = cb.backup(stores, key, kubernetes_params=params)
    assert result["counts"]["total"] == 2
    assert [(r["method"], r["path"], r["query"]) for r in api_server.requests] == [
        ("GET", "/api/v1/namespaces/auditron/configmaps", {"labelSelector": "app=auditron", "limit": "250"}),
        ("GET", "/api/v1/namespaces/auditron/secrets", {"labelSelector": "app=auditron", "limit": "250"}),
    ]
    assert {r["authorization"] for r in api_server.requests} == {"Bearer t0ken"}

    api_server.requests[:] = []
    api_server.store.namespaces.add("auditron-dr")
    restore_params = {"host": api_server.url, "api_key": "t0ken", "namespace_map": {"auditron": "auditron-dr"}}
    cb.restore(stores, key, kubernetes_params=restore_params,
               rewrite=[{"match": "db.primary.internal", "replace": "db.dr.internal"}])
    patches = [r for r in api_server.requests if r["method"] == "PATCH"]
    assert [(r["path"], r["query"], r["content_type"]) for r in patches] == [
        ("/api/v1/namespaces/auditron-dr/configmaps/auditron-api", {"fieldManager": "auditron-dr", "force": "true"},
         "application/apply-patch+yaml"),
        ("/api/v1/namespaces/auditron-dr/secrets/auditron-db", {"fieldManager": "auditron-dr", "force": "true"},
         "application/apply-patch+yaml"),
    ]
    assert patches[0]["body"]["data"]["DATABASE_URL"] == "postgresql://app@db.dr.internal:5432/auditron"
    assert patches[0]["body"]["metadata"] == {"name": "auditron-api", "namespace": "auditron-dr",
                                              "labels": {"app": "auditron"}, "annotations": {"team": "sre"}}


def test_an_api_server_that_does_not_answer_is_one_line(key, stores):
    with pytest.raises(DRError) as err:
        cb.backup(stores, key, kubernetes_params=dict(KUBE_PARAMS, host="http://127.0.0.1:9", request_timeout=2))
    message = _one_line(err)
    assert message.startswith("kubernetes API http://127.0.0.1:9: listing ConfigMaps in namespace auditron: "
                              "the API server does not answer")
