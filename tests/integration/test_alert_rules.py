"""The alert rules shipped in roles/monitoring: promtool accepts them, their unit tests pass,
every alert has a test that fires it and one that keeps it silent, and the chain
dr_metrics module -> textfile -> alert works end to end ("sabotage a backup").

promtool is Prometheus' own checker (Debian package `prometheus`, /usr/bin/promtool).
"""

import re
import shutil
import subprocess

import pytest
import yaml

from ansible_collections.auditron.dr.plugins.module_utils import metrics
from tests.conftest import REPO, VENV_BIN, ansible_env

RULES = REPO / "roles" / "monitoring" / "files" / "auditron_dr_alerts.yml"
RULE_TESTS = REPO / "tests" / "prometheus" / "auditron_dr_alerts_test.yml"
DOCS = REPO / "docs" / "monitoring.md"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

pytestmark = pytest.mark.slow

# The plan's alerts and the severity it gives each (Monitoring & Alerts), plus ours.
EXPECTED_SEVERITY = {
    "AuditronDRBackupFailed": "critical",          # "Backup failure (immediate)"
    "AuditronDRBackupSizeAnomaly": "warning",      # "Backup size anomaly (warning)"
    "AuditronDRNoRecentBackup": "critical",        # "No backup in 25 hours (critical)"
    "AuditronDRRestoreTestFailed": "warning",      # "Recovery test failure (warning)"
    "AuditronDRRTOTargetMissed": "critical",       # "RTO/RPO target miss (critical)"
    "AuditronDRRPOTargetMissed": "critical",
    "AuditronDRWALArchivingStalled": "critical",   # the RPO's 15 minutes rest on WAL archiving
    "AuditronDRBackupMetricsAbsent": "warning",    # the backup alerts cannot fire without metrics
}


def promtool(*args, cwd=REPO, stdin=None):
    completed = subprocess.run([PROMTOOL] + list(args), cwd=str(cwd), input=stdin, capture_output=True, text=True,
                               timeout=120, check=False)
    return completed.returncode, completed.stdout + completed.stderr


def alert_rules():
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_check_rules():
    code, output = promtool("check", "rules", str(RULES))
    assert code == 0, output
    assert "SUCCESS: %d rules found" % len(alert_rules()) in output


def test_promtool_test_rules():
    code, output = promtool("test", "rules", str(RULE_TESTS))
    assert code == 0, output
    assert "SUCCESS" in output


def test_every_alert_has_a_test_that_fires_it_and_one_that_keeps_it_silent():
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    fires, silent = set(), set()
    for case in tests:
        for check in case.get("alert_rule_test") or ():
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    names = set(rule["alert"] for rule in alert_rules())
    assert names == set(EXPECTED_SEVERITY)
    assert not names - fires, "alerts no test fires: %s" % sorted(names - fires)
    assert not names - silent, "alerts no test keeps silent: %s" % sorted(names - silent)


def test_every_alert_has_its_severity_labels_and_a_runbook_entry():
    docs = DOCS.read_text(encoding="utf-8")
    anchors = set(re.sub(r"[^a-z0-9 -]", "", line[4:].strip().lower()).replace(" ", "-")
                  for line in docs.splitlines() if line.startswith("### "))
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] == EXPECTED_SEVERITY[name], name
        assert rule["labels"]["plan_section"], name
        assert set(rule["annotations"]) >= {"summary", "description", "runbook"}, name
        path, anchor = rule["annotations"]["runbook"].split("#")
        assert path == "docs/monitoring.md" and anchor in anchors, (name, anchor)
        assert "for" in rule, name


# -- end to end: what the module writes is what the alerts read -----------------------------------

WRITE_PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: The weekly verification of a sabotaged backup (rows removed after the dump)
      auditron.dr.dr_metrics:
        job: verify_backups
        site: dr
        status: failure
        checks:
          - {name: restore, result: ok, detail: restored in 11 s}
          - {name: row_counts, result: failed, detail: "Invoice: 980 rows, manifest says 1000"}
        textfile_dir: "{{ sabotaged_dir }}"

    - name: The weekly verification of a healthy backup
      auditron.dr.dr_metrics:
        job: verify_backups
        site: dr
        status: success
        checks:
          - {name: restore, result: ok}
          - {name: row_counts, result: ok}
        textfile_dir: "{{ healthy_dir }}"

    - name: A failed database backup, next to the healthy verification
      auditron.dr.dr_metrics:
        job: backup_database
        site: primary
        status: failure
        textfile_dir: "{{ healthy_dir }}"
"""


@pytest.fixture(scope="module")
def written_by_the_module(tmp_path_factory):
    """Runs dr_metrics as a playbook does; returns (sabotaged dir, healthy dir)."""
    tmp_path = tmp_path_factory.mktemp("textfiles")
    sabotaged, healthy = tmp_path / "sabotaged", tmp_path / "healthy"
    sabotaged.mkdir()
    healthy.mkdir()
    (tmp_path / "write.yml").write_text(WRITE_PLAYBOOK)
    env = ansible_env({"ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections")})
    env.pop("ANSIBLE_CONFIG", None)
    completed = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-e", "ansible_connection=local",
         "-e", "ansible_python_interpreter=%s" % (VENV_BIN / "python"),
         "-e", "sabotaged_dir=%s healthy_dir=%s" % (sabotaged, healthy), str(tmp_path / "write.yml")],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return sabotaged, healthy


def series_from_textfiles(directory, minutes):
    """promtool input series: every sample of every *.prom file in `directory`, held for `minutes`
    (a textfile gauge keeps its value until the next run)."""
    series = []
    for path in sorted(directory.glob("*.prom")):
        for name, labels, value in metrics.samples_of(path.read_text(encoding="utf-8")):
            key = metrics.label_key(labels)
            series.append({"series": name + metrics.labels_text(key),
                           "values": " ".join([metrics.format_value(value).lstrip("+")] * (minutes + 1))})
    return series


def firing(alertname, labels, severity, plan_section):
    """The ALERTS sample Prometheus keeps for a firing alert with these series labels."""
    labels = dict(labels, alertname=alertname, alertstate="firing", severity=severity, plan_section=plan_section)
    return {"labels": "ALERTS" + metrics.labels_text(metrics.label_key(labels)), "value": 1}


def test_a_sabotaged_backup_written_by_dr_metrics_fires_the_restore_test_alert(tmp_path, written_by_the_module):
    sabotaged, healthy = written_by_the_module
    rules = dict((rule["alert"], rule) for rule in alert_rules())

    def expected(name, labels):
        return firing(name, labels, rules[name]["labels"]["severity"], rules[name]["labels"]["plan_section"])

    sabotaged_samples = metrics.samples_of((sabotaged / "auditron_dr_verify_backups_dr.prom").read_text())
    failed_checks = [labels for name, labels, value in sabotaged_samples
                     if name == "auditron_dr_verification_success" and value == 0]
    assert failed_checks == [{"check": "row_counts", "job": "verify_backups", "site": "dr"}]

    # Everything that fires, except the alert about backup_database metrics that this test does not write.
    query = 'ALERTS{alertstate="firing",alertname!="AuditronDRBackupMetricsAbsent"}'
    suite = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {"name": "sabotaged backup: the failed check and the failed run fire the restore-test alert",
             "interval": "1m",
             "input_series": series_from_textfiles(sabotaged, 30),
             "promql_expr_test": [{"expr": query, "eval_time": "10m", "exp_samples": [
                 expected("AuditronDRRestoreTestFailed", failed_checks[0]),
                 expected("AuditronDRRestoreTestFailed", {"job": "verify_backups", "site": "dr"})]}]},
            {"name": "healthy verification: no restore-test alert; the failed backup beside it fires its own",
             "interval": "1m",
             "input_series": series_from_textfiles(healthy, 30),
             "promql_expr_test": [{"expr": query, "eval_time": "10m", "exp_samples": [
                 expected("AuditronDRBackupFailed", {"job": "backup_database", "site": "primary"})]}]},
        ],
    }
    test_file = tmp_path / "generated_test.yml"
    test_file.write_text(yaml.safe_dump(suite, sort_keys=False))
    code, output = promtool("test", "rules", str(test_file), cwd=tmp_path)
    assert code == 0, output + "\n" + test_file.read_text()


@pytest.mark.parametrize("mutation", [
    ("auditron_dr_verification_success == 0", "auditron_dr_verification_success == 2"),
])
def test_the_end_to_end_check_can_fail(tmp_path, written_by_the_module, mutation):
    """The same chain against rules where the restore-test alert is broken must fail."""
    broken = tmp_path / "broken_rules.yml"
    broken.write_text(RULES.read_text(encoding="utf-8").replace(*mutation))
    assert broken.read_text(encoding="utf-8") != RULES.read_text(encoding="utf-8")
    sabotaged, _healthy = written_by_the_module
    suite = {"rule_files": [str(broken)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": series_from_textfiles(sabotaged, 30),
        "promql_expr_test": [{"expr": 'count(ALERTS{alertname="AuditronDRRestoreTestFailed",check="row_counts"})',
                              "eval_time": "10m", "exp_samples": [{"labels": "{}", "value": 1}]}]}]}
    test_file = tmp_path / "generated_test.yml"
    test_file.write_text(yaml.safe_dump(suite, sort_keys=False))
    code, output = promtool("test", "rules", str(test_file), cwd=tmp_path)
    assert code != 0, output
