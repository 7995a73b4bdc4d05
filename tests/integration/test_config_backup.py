"""Configuration backup and restore against the lab.

The lab's app reads one JSON file per site (.lab/app/<site>.json, 0600, the lab user's): there
that file is the app's configuration and its secret, the stand-in for a Kubernetes ConfigMap
and Secret. These tests back up the primary's file, encrypted, to a local directory and both S3
regions (the lab's `rclone serve s3` servers), list it, and restore it as DR's configuration
with the lab's own rewrite rules (inventories/local/group_vars/all/config_backup.yml) into a
temporary path - never into the live .lab/app/dr.json, which the running DR app reads. The
result must be exactly what the lab itself writes for DR: lab/servers.py app_config("dr", ...).

Test bundles live under their own prefix in each bucket (tests/config-backup/<random>/) and are
removed afterwards. Faults come from a closed port and from damaging a test copy; the lab's
servers are never stopped.

One opt-in test runs the Kubernetes source and target against a real cluster: set
AUDITRON_TEST_KUBECONFIG to the kubeconfig of a disposable cluster.
"""

import base64
import hashlib
import json
import os
import stat
import subprocess
import uuid

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import configbackup as cb
from ansible_collections.auditron.dr.plugins.module_utils import configrestore
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import generate_key_file
from ansible_collections.auditron.dr.plugins.module_utils.storage import location_from_params
from tests.conftest import REPO, VENV_BIN, ansible_env
from tests.helpers.ports import closed_port


def s3_location(lab, region, prefix, name=None, **overrides):
    store = lab["backup_stores"][region]
    location = {"name": name or "s3-" + region, "type": "s3", "endpoint_url": store["endpoint"],
                "bucket": store["bucket"], "region": region, "access_key": store["access_key"],
                "secret_key": store["secret_key"], "ca_bundle": store["ca_file"], "prefix": prefix}
    location.update(overrides)
    return location


@pytest.fixture
def prefix(lab):
    """A bucket prefix of this test's own, emptied afterwards in both regions."""
    value = "tests/config-backup/%s" % uuid.uuid4().hex[:10]
    yield value
    for region in lab["backup_stores"]:
        location = location_from_params(s3_location(lab, region, value))
        keys = [info.key for info in location.list("")]
        if keys:
            location.delete(keys)


@pytest.fixture
def locations(lab, prefix, tmp_path):
    """Local disk first, then both S3 regions: the order backup_config.yml uses."""
    return [{"name": "local", "type": "local", "path": str(tmp_path / "backups")},
            s3_location(lab, "us-east-1", prefix), s3_location(lab, "eu-west-1", prefix)]


@pytest.fixture
def lab_secrets(lab):
    from lab import servers  # pylint: disable=import-outside-toplevel
    return servers.load_secrets()


@pytest.fixture
def dr_expected(lab_secrets):
    from lab import servers  # pylint: disable=import-outside-toplevel
    return servers.app_config("dr", lab_secrets)


@pytest.fixture
def live_dr_config(lab):
    """The DR app's live config must come out of every test as it went in. (Content only: the
    lab itself rewrites the file, with the same content, whenever it starts the DR app.)"""
    path = lab["sites"]["dr"]["app"]["config_file"]
    with open(path, "rb") as handle:
        content = handle.read()
    yield path
    with open(path, "rb") as handle:
        assert handle.read() == content


def secret_values(lab):
    """Every secret the two sites' app configs hold."""
    values = [lab["sites"]["primary"]["app"]["token"]]
    for site in ("primary", "dr"):
        values.append(lab["sites"][site]["postgres"]["password"])
        values.append(lab["sites"][site]["object_store"]["access_key"])
        values.append(lab["sites"][site]["object_store"]["secret_key"])
    return values


def run_info_module(lab, locations):
    """auditron.dr.config_backup_info through ansible, its result as JSON."""
    completed = subprocess.run(
        [str(VENV_BIN / "ansible"), "-i", str(REPO / "inventories" / "local"), "primary", "-m",
         "auditron.dr.config_backup_info", "-a", json.dumps({"locations": locations})],
        cwd=str(REPO), capture_output=True, text=True, timeout=120, check=False,
        env=ansible_env({"ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"}))
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return json.loads(completed.stdout)["plays"][0]["tasks"][0]["hosts"]["primary"]


def flat(run):
    """A playbook's output with line wrapping undone (the yaml result format folds long lines)."""
    return " ".join(run.output.split())


def restore_playbook(tmp_path):
    path = tmp_path / "restore_config_on_dr.yml"
    # The failover playbook loads the settings the inventory implies (the encryption default
    # among them) from playbooks/vars/backup_settings.yml; so does this one.
    path.write_text("""---
- name: Restore the configuration on DR, as the failover playbook does
  hosts: dr
  gather_facts: false
  vars_files:
    - %s
  tasks:
    - name: Restore the configuration for this site
      ansible.builtin.include_role:
        name: auditron.dr.config_restore
""" % (REPO / "playbooks" / "vars" / "backup_settings.yml"))
    return str(path)


# ---------------------------------------------------------------------------------------------
# Through the playbooks, as the schedule and the failover run them

@pytest.mark.lab
def test_backup_list_and_restore_the_primary_config_as_dr(lab, run_playbook, locations, tmp_path, dr_expected,
                                                          live_dr_config):
    primary_file = lab["sites"]["primary"]["app"]["config_file"]
    backup = run_playbook("backup_config.yml", extra_vars={"auditron_dr_config_locations": locations})
    assert backup.rc == 0, backup
    assert "1 file stored encrypted" in flat(backup) and "in local, s3-us-east-1, s3-eu-west-1" in flat(backup)

    # Listed in every location, with one checksum, the manifest's (the info module, as a user runs it).
    listed = run_info_module(lab, locations)
    assert listed["unreachable_locations"] == {}
    [bundle] = listed["bundles"]
    assert bundle["complete"] and bundle["encrypted"] and bundle["site"] == "primary"
    assert bundle["present_in"] == ["local", "s3-us-east-1", "s3-eu-west-1"]
    assert {row["sha256"] for row in bundle["locations"].values()} == {bundle["sha256"]}
    assert {row["status"] for row in bundle["locations"].values()} == {"ok"}
    local_copy = tmp_path / "backups" / "config" / (bundle["id"] + ".json.enc")
    stored = local_copy.read_bytes()
    assert hashlib.sha256(stored).hexdigest() == bundle["sha256"]
    assert stat.S_IMODE(os.stat(str(local_copy)).st_mode) == 0o600
    for value in secret_values(lab):
        assert value.encode() not in stored
    manifest = json.loads((tmp_path / "backups" / "config" / (bundle["id"] + ".manifest.json")).read_text())
    assert manifest["encryption"]["key"]["provider"] == "kms"  # the lab's KMS key (moto, an AWS emulator)
    assert manifest["items"][0]["path"] == primary_file and manifest["counts"]["total"] == 1

    # Restore on DR with the inventory's rewrite rules, into a temporary path.
    dest = tmp_path / "dr-app" / "dr.json"
    restore_vars = {
        "auditron_dr_config_restore_locations": locations[1:],  # the primary's local disk went down with it
        "auditron_dr_config_restore_files": [{"path": primary_file, "dest": str(dest),
                                              "owner": lab["lab"]["os_user"], "mode": "0600"}],
    }
    playbook = restore_playbook(tmp_path)
    check = run_playbook(playbook, extra_vars=restore_vars, check=True, args=["--diff"])
    assert check.rc == 0, check
    assert not dest.exists()
    assert '"password": "********"' in check.output
    for value in secret_values(lab):
        assert value not in check.output

    first = run_playbook(playbook, extra_vars=restore_vars)
    assert first.rc == 0, first
    assert "restored from s3-us-east-1: 1 create" in flat(first)
    assert json.loads(dest.read_text()) == dr_expected
    assert dest.read_text() == json.dumps(dr_expected, indent=2)  # byte for byte what the lab writes
    info = os.stat(str(dest))
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.stat(live_dr_config).st_uid

    second = run_playbook(playbook, extra_vars=restore_vars)
    assert second.rc == 0, second
    assert "1 unchanged" in flat(second) and "changed=0" in flat(second)
    assert os.stat(str(dest)).st_ino == info.st_ino and os.stat(str(dest)).st_mtime_ns == info.st_mtime_ns


# ---------------------------------------------------------------------------------------------
# Faults, through the engine (a key file, so that a wrong key can be given)

@pytest.fixture
def file_key(tmp_path):
    path = tmp_path / "keys" / "config.key"
    path.parent.mkdir()
    generate_key_file(str(path))
    return {"key_source": "file", "key_file": str(path)}


def lab_rules(lab):
    """The lab's rules, derived here from lab.json as the inventory derives them."""
    peer, here = lab["sites"]["primary"], lab["sites"]["dr"]
    rewrite = [
        {"path": "site", "value": "dr"},
        {"match": peer["app"]["url"].split("//")[1].split(":")[0],
         "replace": here["app"]["url"].split("//")[1].split(":")[0], "whole": True},
        {"match": peer["postgres"]["port"], "replace": here["postgres"]["port"]},
        {"match": peer["postgres"]["socket_dir"], "replace": here["postgres"]["socket_dir"], "whole": True},
        {"match": peer["object_store"]["endpoint"], "replace": here["object_store"]["endpoint"], "whole": True},
    ]
    secret_rewrite = [{"match": peer["postgres"]["password"], "replace": here["postgres"]["password"], "whole": True}]
    secret_rewrite += [{"match": peer["object_store"][field], "replace": here["object_store"][field], "whole": True}
                       for field in ("access_key", "secret_key")]
    return {"rewrite": rewrite, "secret_rewrite": secret_rewrite}


@pytest.fixture
def stored(lab, locations, file_key):
    primary_file = lab["sites"]["primary"]["app"]["config_file"]
    result = cb.backup(locations, file_key, files=[{"path": primary_file}], site="primary")
    assert result["locations"] == ["local", "s3-us-east-1", "s3-eu-west-1"]
    return result


def one_line(exc_info):
    message = str(exc_info.value)
    assert "\n" not in message
    return message


@pytest.mark.lab
def test_restore_with_the_lab_rules_gives_the_dr_config(lab, locations, file_key, stored, tmp_path, dr_expected,
                                                        live_dr_config):
    dest = tmp_path / "out" / "dr.json"
    files = [{"path": lab["sites"]["primary"]["app"]["config_file"], "dest": str(dest)}]
    result = configrestore.restore(locations[1:], file_key, files=files, **lab_rules(lab))
    assert result["location"] == "s3-us-east-1" and result["warnings"] == []
    assert json.loads(dest.read_text()) == dr_expected
    assert not configrestore.restore(locations[1:], file_key, files=files, **lab_rules(lab))["changed"]


@pytest.mark.lab
def test_wrong_key_is_one_line_and_writes_nothing(lab, locations, stored, tmp_path, live_dr_config):
    other = tmp_path / "keys" / "other.key"
    generate_key_file(str(other))
    dest = tmp_path / "never" / "dr.json"
    with pytest.raises(DRError) as err:
        configrestore.restore(locations[1:], {"key_source": "file", "key_file": str(other)},
                              files=[{"path": lab["sites"]["primary"]["app"]["config_file"], "dest": str(dest)}],
                              **lab_rules(lab))
    message = one_line(err)
    assert message.startswith("config bundle %s at location s3-us-east-1 was encrypted with key file fingerprint"
                              % stored["backup_id"]), message
    assert message.endswith(": wrong key")
    assert not (tmp_path / "never").exists()


@pytest.mark.lab
def test_a_flipped_byte_is_caught_before_anything_is_written(lab, locations, file_key, stored, tmp_path,
                                                             live_dr_config):
    damaged = cb.build_locations([locations[1]])[0]
    data = bytearray(damaged.get_bytes(stored["artifact_key"]))
    data[len(data) // 2] ^= 0x40
    damaged.put_bytes(stored["artifact_key"], bytes(data))
    dest = tmp_path / "never" / "dr.json"
    files = [{"path": lab["sites"]["primary"]["app"]["config_file"], "dest": str(dest)}]
    with pytest.raises(DRError) as err:
        configrestore.restore(locations[1:2], file_key, files=files, **lab_rules(lab))
    assert one_line(err) == (
        "config bundle {id}: no location gave a verified copy: config bundle {id} at location s3-us-east-1: sha256 "
        "{got} differs from the manifest's {want} (corrupted)".format(
            id=stored["backup_id"], got=hashlib.sha256(bytes(data)).hexdigest()[:16], want=stored["sha256"][:16]))
    assert not (tmp_path / "never").exists()
    # With the second region behind it, the restore goes on from there and says why.
    result = configrestore.restore(locations[1:], file_key, files=files, **lab_rules(lab))
    assert result["location"] == "s3-eu-west-1" and list(result["skipped_locations"]) == ["s3-us-east-1"]
    listed = cb.list_bundles(locations)
    assert listed["bundles"][0]["locations"]["s3-us-east-1"]["status"] == "different"
    assert listed["bundles"][0]["present_in"] == ["local", "s3-eu-west-1"]


@pytest.mark.lab
def test_an_unreachable_location_is_skipped_or_named(lab, locations, file_key, stored, prefix, tmp_path,
                                                     live_dr_config):
    silent = s3_location(lab, "us-east-1", prefix, name="s3-silent",
                         endpoint_url="https://localhost:%d" % closed_port())
    dest = tmp_path / "out" / "dr.json"
    files = [{"path": lab["sites"]["primary"]["app"]["config_file"], "dest": str(dest)}]
    result = configrestore.restore([silent] + locations[2:], file_key, files=files, **lab_rules(lab))
    assert result["location"] == "s3-eu-west-1"
    assert "does not answer" in result["skipped_locations"]["s3-silent"]
    os.unlink(str(dest))
    with pytest.raises(DRError) as err:
        configrestore.restore([silent], file_key, files=files, **lab_rules(lab))
    message = one_line(err)
    assert message.startswith("no complete config bundle in s3-silent (unreachable: location s3-silent: endpoint "
                              "https://localhost:"), message
    assert not dest.exists()
    with pytest.raises(DRError) as err:
        configrestore.restore([silent], file_key, backup_id=stored["backup_id"], files=files, **lab_rules(lab))
    assert one_line(err).startswith("config bundle %s: no location holds a complete manifest: location s3-silent: "
                                    "endpoint https://localhost:" % stored["backup_id"])
    assert not dest.exists()


@pytest.mark.lab
def test_a_backup_goes_on_without_an_unreachable_location(lab, locations, file_key, prefix):
    silent = s3_location(lab, "us-east-1", prefix, name="s3-silent",
                         endpoint_url="https://localhost:%d" % closed_port())
    result = cb.backup(locations + [silent], file_key, files=[{"path": lab["sites"]["primary"]["app"]["config_file"]}])
    assert result["locations"] == ["local", "s3-us-east-1", "s3-eu-west-1"]
    assert "does not answer" in result["failed_locations"]["s3-silent"]
    assert any("was not stored in s3-silent" in warning for warning in result["warnings"])


# ---------------------------------------------------------------------------------------------
# Opt-in: a real Kubernetes cluster

@pytest.mark.skipif(not os.environ.get("AUDITRON_TEST_KUBECONFIG"),
                    reason="opt-in: set AUDITRON_TEST_KUBECONFIG to the kubeconfig of a disposable cluster to run the "
                           "Kubernetes source and target against a real API server (creates and deletes two "
                           "namespaces)")
def test_kubernetes_round_trip_on_a_real_cluster(tmp_path, file_key):
    import kubernetes  # pylint: disable=import-outside-toplevel
    kubeconfig = os.environ["AUDITRON_TEST_KUBECONFIG"]
    client = kubernetes.config.new_client_from_config(config_file=kubeconfig)
    core = kubernetes.client.CoreV1Api(client)
    suffix = uuid.uuid4().hex[:8]
    source, target = "auditron-dr-test-%s" % suffix, "auditron-dr-test-%s-restore" % suffix
    store = [{"name": "local", "type": "local", "path": str(tmp_path / "backups")}]
    for namespace in (source, target):
        core.create_namespace({"metadata": {"name": namespace}})
    try:
        core.create_namespaced_config_map(source, {"metadata": {"name": "app", "labels": {"app": "auditron"}},
                                                   "data": {"DATABASE_URL": "postgresql://db.primary:5432/a"}})
        core.create_namespaced_secret(source, {"metadata": {"name": "db", "labels": {"app": "auditron"}},
                                               "type": "Opaque", "stringData": {"password": "pw-primary"}})
        params = {"kubeconfig": kubeconfig, "namespaces": [source], "label_selector": "app=auditron"}
        result = cb.backup(store, file_key, kubernetes_params=params)
        assert result["counts"]["ConfigMap"] == 1 and result["counts"]["Secret"] == 1
        restore_params = {"kubeconfig": kubeconfig, "namespace_map": {source: target}}
        rules = {"rewrite": [{"match": "db.primary", "replace": "db.dr"}],
                 "secret_rewrite": [{"match": "pw-primary", "replace": "pw-dr", "whole": True}]}
        first = configrestore.restore(store, file_key, kubernetes_params=restore_params, **rules)
        assert [o["action"] for o in first["objects"]] == ["create", "create"]
        config_map = core.read_namespaced_config_map("app", target)
        assert config_map.data["DATABASE_URL"] == "postgresql://db.dr:5432/a"
        assert base64.b64decode(core.read_namespaced_secret("db", target).data["password"]) == b"pw-dr"
        second = configrestore.restore(store, file_key, kubernetes_params=restore_params, **rules)
        assert not second["changed"]
    finally:
        for namespace in (source, target):
            core.delete_namespace(namespace)
