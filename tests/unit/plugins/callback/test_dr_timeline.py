"""The dr_timeline callback, end to end: real ansible-playbook runs on tiny playbooks.

Each run takes a couple of seconds; the playbooks live in playbooks/ next to this file.
"""

import json
import subprocess
from pathlib import Path

from tests.conftest import REPO, VENV_BIN, ansible_env

PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
REPORT_FILES = ("report.json", "report.md", "report.html")


def run(playbook, tmp_path, extra_env=None, report_dir=True):
    env_extra = {"ANSIBLE_CALLBACKS_ENABLED": "auditron.dr.dr_timeline",
                 "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections")}
    if report_dir:
        env_extra["AUDITRON_DR_REPORT_DIR"] = str(tmp_path / "reports")
    env_extra.update(extra_env or {})
    env = ansible_env(env_extra)
    # Whatever the calling shell exported, or the repository's ansible.cfg sets (its report_dir),
    # must not steer these runs.
    env.pop("ANSIBLE_CONFIG", None)
    for name in ("AUDITRON_DR_REPORT_DIR", "AUDITRON_DR_REDACT"):
        if name not in env_extra:
            env.pop(name, None)
    command = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,",
               "-e", "ansible_connection=local", "-e", "ansible_python_interpreter=%s" % (VENV_BIN / "python"),
               str(PLAYBOOKS / playbook)]
    completed = subprocess.run(command, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120,
                               check=False)
    return completed


def only_report_dir(base):
    entries = sorted(base.iterdir())
    assert len(entries) == 1, entries
    return entries[0]


def load(directory):
    return json.loads((directory / "report.json").read_text(encoding="utf-8"))


def test_three_phases_in_order_with_real_durations_and_merged_data(tmp_path):
    completed = run("three_phases.yml", tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    directory = only_report_dir(tmp_path / "reports")
    assert directory.name.endswith("-three_phases")
    assert sorted(p.name for p in directory.iterdir()) == sorted(REPORT_FILES)
    assert oct(directory.stat().st_mode & 0o777) == "0o755"
    for name in REPORT_FILES:
        assert oct((directory / name).stat().st_mode & 0o777) == "0o644"

    report = load(directory)
    assert [p["name"] for p in report["phases"]] == ["assess", "restore_database", "verify_app"]
    for phase in report["phases"]:
        assert phase["duration_seconds"] >= 1.0, phase
        assert phase["status"] == "ok", phase      # ignored and rescued failures do not fail a phase
    assess, restore, verify = report["phases"]
    assert assess["title"] == "Assess damage"
    assert assess["plan_step"] == "Scenario 1, step 1: Assess Damage"
    assert assess["budget_seconds"] == 300 and not assess["over_budget"]
    assert "rescued" in verify["detail"] and "first probe refused" in verify["detail"]
    assert "healthy after one retry" in verify["detail"]
    assert restore["results"]["ignored"] == 1

    assert report["run"]["status"] == "succeeded" and report["failure"] is None
    assert report["scenario"] == "database corruption" and report["mode"] == "drill"
    assert set(report["markers"]) >= {"incident_start", "service_restored", "recovery_point"}
    assert report["backup_used"] == {"id": "20261124-020000F", "repository": "repo2"}
    assert report["checks"][0]["name"] == "row counts match the manifest"
    assert report["checks"][0]["result"] == "ok" and report["checks"][0]["phase"] == "restore_database"
    # Three pauses of a second between the two markers; RPO: recovery point two minutes back.
    assert 3.0 <= report["rto"]["achieved_seconds"] < 120
    assert report["rto"]["verdict"] == "met"
    assert 115 <= report["rpo"]["achieved_seconds"] <= 125 and report["rpo"]["verdict"] == "met"
    assert report["set_stats"]["data"]["report_path"] == str(directory / "report.html")

    line = [ln for ln in completed.stdout.splitlines() if ln.startswith("DR report: ")]
    assert len(line) == 1, completed.stdout
    assert str(directory / "report.html") in line[0]
    assert "RTO " in line[0] and "(target 30 min, met)" in line[0] and "RPO 2 min" in line[0]


def test_failing_phase_is_reported_with_task_and_message(tmp_path):
    completed = run("failing.yml", tmp_path)
    assert completed.returncode != 0
    directory = only_report_dir(tmp_path / "reports")
    report = load(directory)
    assert report["run"]["status"] == "failed"
    assert [(p["name"], p["status"]) for p in report["phases"]] == [("stop_app", "ok"),
                                                                    ("restore_database", "failed")]
    failure = report["failure"]
    assert failure["phase"] == "restore_database"
    assert failure["task"] == "Check the backup checksum"
    assert "checksum mismatch for 20261124-020000F" in failure["message"]
    markdown = (directory / "report.md").read_text(encoding="utf-8")
    assert "failed in phase restore_database" in markdown and "Check the backup checksum" in markdown
    assert "checksum mismatch" in (directory / "report.html").read_text(encoding="utf-8")
    assert report["rto"]["verdict"] == "unknown" and "failed before the service was restored" in report["rto"]["note"]
    assert "run FAILED in phase restore_database" in completed.stdout


def test_no_phase_no_report(tmp_path):
    completed = run("no_phase.yml", tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert not (tmp_path / "reports").exists()
    assert "DR report:" not in completed.stdout


def test_no_log_data_and_redacted_strings_never_reach_a_report(tmp_path):
    # No AUDITRON_DR_REPORT_DIR: the default `reports` under the current directory is used.
    completed = run("secrets.yml", tmp_path, report_dir=False,
                    extra_env={"AUDITRON_DR_REDACT": "tok-REDACT-ME-42, unused-secret"})
    assert completed.returncode == 0, completed.stdout + completed.stderr
    directory = only_report_dir(tmp_path / "reports")
    for name in REPORT_FILES:
        text = (directory / name).read_text(encoding="utf-8")
        assert "Sup3r-S3cret" not in text, name
        assert "tok-REDACT-ME-42" not in text, name
    report = load(directory)
    assert report["notes"] == ["S3 token ******** used for repo2"]
    assert report["backup_used"] is None
    assert report["phases"][0]["status"] == "ok"
    assert "tok-REDACT-ME-42" not in completed.stdout


def test_ansible_doc_reads_the_documentation():
    completed = subprocess.run([str(VENV_BIN / "ansible-doc"), "-t", "callback", "auditron.dr.dr_timeline"],
                               cwd=str(REPO), env=ansible_env(), capture_output=True, text=True, timeout=60,
                               check=False)
    assert completed.returncode == 0, completed.stderr
    assert "AUDITRON_DR_REPORT_DIR" in completed.stdout and "AUDITRON_DR_REDACT" in completed.stdout


def test_a_phase_of_the_plan_takes_its_title_step_and_budget_from_the_plan(tmp_path):
    completed = run("plan_phases.yml", tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = load(only_report_dir(tmp_path / "reports"))
    activate, restore = report["phases"]
    assert activate["name"] == "activate_dr" and activate["title"] == "Activate DR site"
    assert activate["plan_step"] == "Scenario 2, step 1: Activate DR Site"
    assert activate["budget_seconds"] == 600
    # A title of its own wins; the plan's step and budget stay.
    assert restore["name"] == "restore_db" and restore["title"] == "Restore database (scratch cluster)"
    assert restore["plan_step"] == "Scenario 2, step 2: Restore Database" and restore["budget_seconds"] == 1200
    assert "not a phase of the plan" in completed.stdout + completed.stderr
