"""No secret ever appears in output: every playbook, run at -vvv against the lab, and everything
it leaves behind (reports, the lab's server logs, pgBackRest's logs, state and metrics files) is
searched for every secret of the lab and for the encryption keys (conftest says which values
count as secrets, and which files hold them by design).

Playbooks that write run for real, into places of this run (a prefix of the backup buckets, a
temporary directory, a pgBackRest stanza of its own); the scenario playbooks run with --check,
which their headers promise changes nothing.
"""

import base64
import glob
import json
import os
import shutil
import time

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import catalog, crypto, keyproviders
from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import generate_key_file
from tests.conftest import REPO
from tests.helpers import faults
from tests.security.conftest import PREFIX, RUN, files_under, key_forms, lab_secrets, search, text_forms

pytestmark = [pytest.mark.lab, pytest.mark.slow]

# Scenario playbooks run with --check only (their headers: "With --check: ... changes nothing").
CHECK_ONLY = ("verify_backups.yml", "restore_database.yml", "recover_deleted.yml", "prune_backups.yml",
              "restore_files.yml", "failover.yml", "failback.yml", "dr_drill.yml", "setup_standby.yml", "notify.yml")
# Not run: it talks to an AWX controller, which the lab does not have.
NOT_RUN = {"awx_configure.yml": "needs an AWX controller (none in the lab)"}


class Runs(object):
    def __init__(self):
        self.outputs = {}
        self.report_dirs = []
        self.codes = {}
        self.seconds = {}


@pytest.fixture(scope="module")
def runs(lab, security_stanza, tmp_path_factory):
    """Every playbook at -vvv; {label: output}, with the report directories they wrote."""
    work = tmp_path_factory.mktemp("security-runs")
    done = Runs()
    done.log_offsets = dict((path, os.path.getsize(path)) for path in shared_logs(lab))
    local = str(work / "local-backups")
    logical = {"auditron_dr_logical_prefix": PREFIX + "/logical", "auditron_dr_logical_local_dir": local}

    def play(label, playbook, **kwargs):
        report_dir = work / ("reports-%d" % len(done.outputs))
        started = time.monotonic()
        run = faults.playbook(playbook, report_dir, args=("-vvv",) + tuple(kwargs.pop("args", ())), **kwargs)
        done.outputs[label] = run.output.encode()
        done.report_dirs.append(str(report_dir))
        done.codes[label] = run.rc
        done.seconds[label] = round(time.monotonic() - started, 1)
        return run

    play("preflight.yml", "preflight.yml")
    play("backup_database.yml --tags configure (the lab's pgBackRest, unchanged)", "backup_database.yml",
         args=("--tags", "configure"))
    made = play("backup_database.yml (own stanza, logical to a prefix of this run)", "backup_database.yml",
                extra_vars=dict(logical, backup_type="full", auditron_dr_backup_configure=False,
                                pgbackrest_config_file=security_stanza.config, pgbackrest_stanza=security_stanza.name))
    play("backup_files.yml (to a prefix of this run)", "backup_files.yml",
         extra_vars={"auditron_dr_files_backup_prefix": PREFIX + "/files"})
    play("backup_config.yml (to a prefix of this run)", "backup_config.yml", extra_vars={
        "auditron_dr_config_locations": [{"name": "local", "type": "local", "path": str(work / "config-backups")},
                                         faults.s3_params(lab, "us-east-1", PREFIX + "/config")]})
    # The scenario playbooks' --check runs go as far as the lab's backups let them: on a fresh lab
    # (no backup yet) they would stop at their first step and say little. What the integration
    # tests make first (tests/integration/conftest.py), made here when missing, at -vvv too.
    for label, playbook, extra_vars, args in lab_backups_missing(lab):
        play(label, playbook, extra_vars=extra_vars, args=args)
    for playbook in CHECK_ONLY:
        if os.path.exists(str(REPO / "playbooks" / playbook)):
            play(playbook + " --check", playbook, check=True)
    unknown = sorted(set(os.path.basename(path) for path in glob.glob(str(REPO / "playbooks" / "*.yml")))
                     - set(CHECK_ONLY) - set(NOT_RUN)
                     - {"preflight.yml", "backup_database.yml", "backup_files.yml", "backup_config.yml"})
    assert not unknown, "new playbooks to add to the secret-leak run: %s" % unknown
    done.logical_dir = local
    done.backup_run = made
    yield done
    for report_dir in done.report_dirs:
        shutil.rmtree(report_dir, ignore_errors=True)


def lab_backups_missing(lab):
    """[(label, playbook, extra_vars, args)] of the backup runs a fresh lab lacks: a full
    pgBackRest backup of the lab's stanza in every repository with a logical backup in the lab's
    locations, and a file backup point."""
    missing = []
    config = faults.lab_pgbackrest_config(lab)
    info = faults.as_lab_user(["pgbackrest", "--config=%s" % config, "--stanza=%s" % lab["pgbackrest"]["stanza"],
                               "info", "--output=json"], timeout=300)
    repos = json.loads(info.stdout)[0].get("backup") or [] if info.returncode == 0 else []
    logical = os.path.join(lab["lab"]["backup_dir"], "primary", "postgres", "logical")
    if len(set(backup.get("database", {}).get("repo-key") for backup in repos)) < 3 or not glob.glob(
            os.path.join(logical, "*" + catalog.MANIFEST_SUFFIX)):
        missing.append(("backup_database.yml -e backup_type=full (the lab's stanza and locations)",
                        "backup_database.yml", {"backup_type": "full", "auditron_dr_backup_configure": False}, ()))
    if not faults.s3_keys(lab, "us-east-1", "files/points/"):
        missing.append(("backup_files.yml (the lab's files/ prefix)", "backup_files.yml", None, ()))
    return missing


def shared_logs(lab):
    """The lab's server logs and pgBackRest's logs: shared with every other session."""
    lab_dir = lab["lab"]["dir"]
    found = files_under(os.path.join(lab_dir, "logs"))
    found.update(files_under(*glob.glob(os.path.join(lab_dir, "pgbackrest", "*", "log"))))
    return sorted(found)


def written_since(path, offset):
    """What was appended to a log after `offset` (all of it, if the log was rotated meanwhile)."""
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size >= offset:
            handle.seek(offset)
        return handle.read()


def logical_data_key(lab, local_dir):
    """The data key of the KMS-wrapped logical backup the run made, unwrapped with KMS (the
    lab's emulator): a real encryption key that must not appear anywhere either."""
    manifests = sorted(glob.glob(os.path.join(local_dir, "*" + catalog.MANIFEST_SUFFIX)))
    assert manifests, "backup_database.yml made no logical backup in %s" % local_dir
    with open(manifests[-1]) as handle:
        manifest = json.load(handle)
    artifact = os.path.join(local_dir, catalog.main_artifact(manifest)["key"])
    with open(artifact, "rb") as handle:
        header = crypto.read_header(handle, what=artifact)
    encryption = faults.kms_encryption(lab)
    provider = keyproviders.provider_for_reference(header.key_reference, encryption)
    return provider.unwrap(header.wrapped_key, header.key_reference, header.context)


def test_no_secret_in_any_output_log_or_report(lab, runs, security_stanza, tmp_path):
    needles = text_forms(lab_secrets(lab))
    needles.update(key_forms("data key of the run's logical backup", logical_data_key(lab, runs.logical_dir)))
    # A key file's key, used by pg_backup and read again by backup_catalog's deep check, at -vvv.
    key_file = tmp_path / "backup.key"
    generate_key_file(str(key_file))
    where = {"name": "local", "type": "local", "path": str(tmp_path / "key-file-backups")}
    postgres = faults.pg_params(lab)
    made, raw = faults.ansible_module("pg_backup", dict(
        faults.module_connection(postgres), db="postgres",
        series="security-%s" % RUN, locations=[where], encryption=faults.file_encryption(key_file)), verbosity=3)
    assert not made.get("failed"), made
    runs.outputs["pg_backup -vvv (key file)"] = raw.encode()
    listed, raw = faults.ansible_module("backup_catalog", {
        "locations": [where], "deep": True, "encryption": faults.file_encryption(key_file)}, verbosity=3)
    assert listed["latest_valid_id"] == made["backup_id"], listed
    runs.outputs["backup_catalog deep -vvv (key file)"] = raw.encode()
    with open(str(key_file), "rb") as handle:
        needles.update(key_forms("key file", keyproviders.load_key_file(str(key_file))))
        needles["key file (as stored)"] = handle.read()
    assert len(needles) >= 12, sorted(needles)

    places = dict(("output of %s" % label, output) for label, output in runs.outputs.items())
    places.update(files_under(*runs.report_dirs))
    lab_dir = lab["lab"]["dir"]
    # The lab's logs are shared and older than this run: what the runs added to them is searched
    # (a leak there before this run is another session's, reported in docs/reliability.md).
    for path in shared_logs(lab):
        places["%s (written during the run)" % path] = written_since(path, runs.log_offsets.get(path, 0))
    places.update(files_under(os.path.join(security_stanza.workdir, "log")))
    for extra in ("state", "monitoring"):
        if os.path.isdir(os.path.join(lab_dir, extra)):
            places.update(files_under(os.path.join(lab_dir, extra)))
    if os.path.isdir(str(REPO / "reports")):
        places.update(files_under(str(REPO / "reports")))
    hits = search(needles, places)
    summary = ["%-70s rc %s, %5.1f s, %d bytes" % (
        label, runs.codes.get(label, "-"), runs.seconds.get(label, 0), len(output))
        for label, output in runs.outputs.items()]
    print("\n".join(["searched %d places for %d secret forms:" % (len(places), len(needles))] + summary))
    assert not hits, "secrets found: %s" % "; ".join("%s in %s" % hit for hit in hits)


def test_every_playbook_ran_far_enough_to_matter(runs):
    """The search means something only if the playbooks did their work: the ones that write must
    have succeeded (the check-mode scenario runs may stop on the lab's state; their output is
    searched all the same)."""
    for label in ("backup_database.yml (own stanza, logical to a prefix of this run)",
                  "backup_files.yml (to a prefix of this run)", "backup_config.yml (to a prefix of this run)"):
        assert runs.codes[label] == 0, "%s failed: %s" % (label, runs.outputs[label][-3000:].decode("utf-8", "replace"))
    assert b"ESTABLISH LOCAL CONNECTION" in runs.outputs["preflight.yml"]  # -vvv was in force


def test_base64_helper_matches_what_a_leak_would_look_like():
    """The search for binary keys is only as good as its forms: a key printed the way Python and
    Ansible print bytes (b64encode) is found."""
    key = os.urandom(32)
    assert search(key_forms("k", key), {"log": b"x" + base64.b64encode(key) + b"y"}) == [("k (base64)", "log")]
