"""The weekly backup test (verify_backups.yml) end to end on the lab's primary site: real backups
in the local disk and both S3 regions, real restores into scratch clusters, real pg_amcheck and
pgbackrest verify, metrics the shipped alert rules read.

About two and a half minutes: the clean run verifies one pgBackRest repository (the local one:
the same work as the S3 ones, a third of the time); the other runs leave pgbackrest verify out,
the download of every copy, or the restore they do not need.
"""

import glob
import json
import os
import shutil
import subprocess

import pytest
import yaml

from ansible_collections.auditron.dr.plugins.module_utils import catalog, metrics, verification
from ansible_collections.auditron.dr.plugins.module_utils.common import parse_time, utc_now
from ansible_collections.auditron.dr.plugins.module_utils.storage import LocalLocation
from tests.conftest import REPO, VENV_BIN, ansible_env
from tests.integration.test_alert_rules import RULES, alert_rules, firing, promtool, series_from_textfiles

pytestmark = [pytest.mark.lab, pytest.mark.slow]

QUICK = {"verify_pgbackrest": False}
# Runs whose point is not the copies: sizes only (the clean and the sabotaged runs download them all).
LIGHT = dict(QUICK, verify_deep=False)
LAB_SQL_CHECKS = ["invoices_without_user", "invoice_amounts_not_negative", "audit_actions_known"]


def flat(text):
    return " ".join(text.split())  # the YAML callback folds long lines


def report(run):
    """The report of the run (runs in one test share a report directory: the newest)."""
    found = sorted(glob.glob(str(run.report_dir / "*" / "report.json")))
    assert found, run
    with open(found[-1]) as handle:
        return json.load(handle)


def scratch_left(lab):
    return glob.glob(os.path.join(lab["lab"]["pg_dir"], "verify-*"))


def local_location(lab):
    return LocalLocation("local", os.path.join(lab["lab"]["backup_dir"], "primary", "postgres", "logical"))


def newest_logical(lab):
    return catalog.Catalog.load([local_location(lab)], series="auditron").newest_first()[0]


def metrics_path(lab):
    return os.path.join(lab["lab"]["dir"], "monitoring", "textfile", "auditron_dr_verify_backups_primary.prom")


def samples(lab):
    with open(metrics_path(lab)) as handle:
        return metrics.samples_of(handle.read())


def sample(found, name, **labels):
    values = [value for metric, have, value in found
              if metric == "auditron_dr_" + name and all(have.get(k) == v for k, v in labels.items())]
    assert len(values) == 1, (name, labels, values)
    return values[0]


def backup_database(*args):
    """backup_database.yml on the lab (without re-checking the pgBackRest configuration)."""
    completed = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(REPO / "inventories" / "local"),
         str(REPO / "playbooks" / "backup_database.yml"), "-e", "auditron_dr_backup_configure=false"] + list(args),
        cwd=str(REPO), capture_output=True, text=True, check=False, timeout=900,
        env=ansible_env({"AUDITRON_DR_REPORT_DIR": "/tmp/auditron-verify-test-reports"}))
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-2000:]


@pytest.fixture(scope="module")
def fresh_backups(lab, physical_backup):  # pylint: disable=unused-argument
    """An incremental pgBackRest backup in every repository and a logical backup, both recent:
    the test restores what the weekly job would find on a Sunday at 03:00. (physical_backup:
    pgBackRest configured and a full backup made, should this file run first on its lab.)"""
    backup_database("-e", "backup_type=incr")
    yield newest_logical(lab).id
    shutil.rmtree("/tmp/auditron-verify-test-reports", ignore_errors=True)


def test_check_mode_changes_nothing(lab, fresh_backups, run_playbook):
    record_key = os.path.join(local_location(lab).path, catalog.verification_key(fresh_backups))
    before = [open(path).read() if os.path.exists(path) else None for path in (metrics_path(lab), record_key)]
    run = run_playbook("verify_backups.yml", check=True)
    assert run.rc == 0, run
    text = flat(run.stdout)
    assert "would restore logical backup %s" % fresh_backups in text
    assert "would PITR pgBackRest backup" in text and "would run pgbackrest verify on repo1, repo2, repo3" in text
    assert "invoices_without_user" in text
    recap = [line for line in run.stdout.splitlines() if line.startswith("primary ")]
    assert recap and "changed=0" in recap[-1], recap
    after = [open(path).read() if os.path.exists(path) else None for path in (metrics_path(lab), record_key)]
    assert after == before
    assert scratch_left(lab) == []


def test_a_clean_run_passes_every_check_and_a_second_run_too(lab, fresh_backups, run_playbook):
    started = utc_now()
    run = run_playbook("verify_backups.yml", extra_vars={"verify_pgbackrest_repos": [1]})
    assert run.rc == 0, run
    rep = report(run)
    assert [p["name"] for p in rep["phases"]] == ["download", "restore_logical", "verify_logical", "restore_physical",
                                                  "verify_physical", "verify_repositories", "cleanup", "report",
                                                  "verdict"]
    assert all(p["status"] == "ok" for p in rep["phases"]), rep["phases"]
    budgets = dict((p["name"], p["budget_seconds"]) for p in rep["phases"])
    assert budgets["restore_physical"] == 15 * 60 and budgets["verify_physical"] == 5 * 60
    checks = dict((c["name"], c) for c in rep["checks"])
    assert all(c["result"] == "ok" for c in checks.values()), [c for c in checks.values() if c["result"] != "ok"]
    expected = {"copies_local", "copies_s3-us-east-1", "copies_s3-eu-west-1", "pgbackrest_verify_repo1"}
    for kind in ("logical", "physical"):
        expected |= set("%s_%s" % (kind, name) for name in ("restore", "backup_age", "row_counts", "newest_time",
                                                            "amcheck"))
        expected |= set("sql_%s_%s" % (name, kind) for name in LAB_SQL_CHECKS)
    assert set(checks) == expected
    assert "exactly the rows of the manifest of %s" % fresh_backups in checks["logical_row_counts"]["detail"]
    assert "at least the rows" in checks["physical_row_counts"]["detail"]
    assert "sha256 and every GCM tag verified" in checks["copies_s3-eu-west-1"]["detail"]
    seconds = rep["extra"]["restore_seconds"]
    assert seconds["logical"] > 0 and seconds["physical"] > 0
    print("\nrestore seconds at this size: logical %(logical)s, physical %(physical)s" % seconds)
    print("phases: %s" % ", ".join("%s %.1f s" % (p["name"], p["duration_seconds"] or 0) for p in rep["phases"]))
    assert scratch_left(lab) == []

    found = samples(lab)
    assert sample(found, "last_run_success", job="verify_backups", site="primary") == 1
    success = dict((labels["check"], value) for name, labels, value in found
                   if name == "auditron_dr_verification_success")
    assert success == dict((name, 1) for name in expected)
    assert sample(found, "verify_restore_seconds", kind="physical") == seconds["physical"]
    assert sample(found, "verify_restore_seconds", kind="logical") == seconds["logical"]

    record = catalog.last_verification([local_location(lab)], fresh_backups)
    assert record["result"] == "passed" and parse_time(record["verified_at"]) >= started.replace(microsecond=0)
    assert catalog.Catalog.load([local_location(lab)]).entry(fresh_backups).valid
    physical = verification.last_physical_verification([local_location(lab)], "auditron",
                                                       rep["backup_used"]["physical"]["backup"])
    assert physical["result"] == "passed"

    again = run_playbook("verify_backups.yml", extra_vars=LIGHT)
    assert again.rc == 0, again
    assert all(c["result"] == "ok" for c in report(again)["checks"])
    assert scratch_left(lab) == []


def test_a_restore_that_fails_still_removes_its_scratch_cluster(lab, fresh_backups, run_playbook):
    # A timeline that is not in the archive: pgBackRest restores, PostgreSQL refuses to start.
    run = run_playbook("verify_backups.yml", extra_vars=dict(LIGHT, verify_logical=False, verify_timeline=99))
    assert run.rc != 0
    text = flat(run.stdout)
    assert "1 of 4 checks failed - physical_restore (" in text, run
    assert scratch_left(lab) == []
    assert [p["status"] for p in report(run)["phases"] if p["name"] == "cleanup"] == ["ok"]
    assert sample(samples(lab), "last_run_success", job="verify_backups", site="primary") == 0


def test_a_sabotaged_copy_and_a_wrong_expectation_fail_the_run_and_fire_the_alert(
        lab, fresh_backups, run_playbook, tmp_path):
    backup_id = newest_logical(lab).id
    artifact = os.path.join(local_location(lab).path, catalog.artifact_key(backup_id, True))
    with open(artifact, "r+b") as handle:
        handle.seek(os.path.getsize(artifact) // 2)
        original = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([original[0] ^ 0xFF]))
    try:
        # Two checks that try to write come first: they must fail and leave the copy as it was,
        # which the wrong expectation after them shows (it reports the count it found).
        hostile = [{"name": "writes_through_cte", "expect": 0, "run_on": ["logical"],
                    "sql": 'WITH gone AS (DELETE FROM "Invoice" RETURNING id) SELECT count(*) FROM gone'},
                   {"name": "second_statement", "expect": 1, "run_on": ["logical"],
                    "sql": 'SELECT 1; DELETE FROM "Invoice"'}]
        wrong = {"name": "invoice_count_is_zero", "sql": 'SELECT count(*) FROM "Invoice"', "expect": 0,
                 "run_on": ["logical"]}
        run = run_playbook("verify_backups.yml", extra_vars=dict(QUICK, verify_physical=False,
                                                                 verify_sql_checks=hostile + [wrong]))
        assert run.rc != 0
        text = flat(run.stdout)
        assert "checks failed - copies_local (%s): " % backup_id in text, run
        assert "logical backup %s at location local: different" % backup_id in text
        assert "sql_invoice_count_is_zero_logical (%s): logical backup %s, database auditron: expected 0, got " % (
            backup_id, backup_id) in text
        rep = report(run)
        assert "\n" not in rep["failure"]["message"] and rep["failure"]["phase"] == "verdict"
        checks = dict((c["name"], c) for c in rep["checks"])
        for name in ("sql_writes_through_cte_logical", "sql_second_statement_logical"):
            assert checks[name]["result"] == "failed" and "query failed" in checks[name]["detail"], checks[name]
        manifest_rows = dict((t["name"], t["rows"]) for t in
                             verification.load_manifest([local_location(lab)], backup_id)["tables"])
        assert checks["sql_invoice_count_is_zero_logical"]["detail"].endswith(
            "expected 0, got %d" % manifest_rows["Invoice"])
        # the restore itself took the good copy from S3, and the scratch cluster is gone
        assert [c["result"] for c in rep["checks"] if c["name"] == "logical_restore"] == ["ok"]
        assert scratch_left(lab) == []

        record = catalog.last_verification([local_location(lab)], backup_id)
        assert record["result"] == "failed" and "copies_local" in record["detail"]
        assert record["locations"]["local"]["result"] == "failed"
        assert record["locations"]["s3-us-east-1"]["result"] == "passed"
        assert not catalog.Catalog.load([local_location(lab)]).entry(backup_id).valid

        found = samples(lab)
        failed = sorted(labels["check"] for name, labels, value in found
                        if name == "auditron_dr_verification_success" and value == 0)
        assert failed == ["copies_local", "sql_invoice_count_is_zero_logical", "sql_second_statement_logical",
                          "sql_writes_through_cte_logical"]
        assert sample(found, "verification_success", check="copies_s3-us-east-1") == 1
        assert sample(found, "last_run_success", job="verify_backups") == 0

        # The file, as Prometheus would scrape it, fires the restore-test alert of the shipped rules.
        textfiles = tmp_path / "textfile"
        textfiles.mkdir()
        shutil.copy(metrics_path(lab), str(textfiles))
        rules = dict((rule["alert"], rule) for rule in alert_rules())
        name = "AuditronDRRestoreTestFailed"

        def expected(labels):
            return firing(name, labels, rules[name]["labels"]["severity"], rules[name]["labels"]["plan_section"])

        labels = {"job": "verify_backups", "site": "primary"}
        suite = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": [{
            "interval": "1m", "input_series": series_from_textfiles(textfiles, 30),
            "promql_expr_test": [{
                "expr": 'ALERTS{alertstate="firing",alertname!="AuditronDRBackupMetricsAbsent"}', "eval_time": "10m",
                "exp_samples": [expected(dict(labels, check=check)) for check in failed] + [expected(labels)]}]}]}
        test_file = tmp_path / "verify_alert_test.yml"
        test_file.write_text(yaml.safe_dump(suite, sort_keys=False))
        code, output = promtool("test", "rules", str(test_file), cwd=tmp_path)
        assert code == 0, output + "\n" + test_file.read_text()
    finally:
        with open(artifact, "r+b") as handle:
            handle.seek(os.path.getsize(artifact) // 2)
            handle.write(original)
        # The sabotaged backup keeps its failed record; a fresh one is the latest valid again.
        backup_database("--tags", "logical")
    latest = catalog.Catalog.load([local_location(lab)]).latest_valid("auditron")
    assert latest is not None and latest.id != backup_id
