"""The backup playbooks record every run, good or failed, for the alert rules
(roles/monitoring/files/auditron_dr_alerts.yml reads these files through node_exporter)."""

import os

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import metrics

pytestmark = [pytest.mark.lab]


def samples(lab, job):
    path = os.path.join(lab["lab"]["dir"], "monitoring", "textfile", metrics.job_file_name(job, "primary"))
    with open(path) as handle:
        return metrics.parse(handle.read())


def value(found, name, **labels):
    labels.setdefault("site", "primary")
    for key, sample in found[name].samples.items():
        if all((k, v) in key for k, v in labels.items()):
            return sample
    raise AssertionError("no %s%r in %r" % (name, labels, found[name].samples))


def test_a_good_run_and_a_failed_run_are_both_recorded(physical_backup, run_playbook):
    lab = physical_backup
    good = run_playbook("backup_database.yml", extra_vars={"auditron_dr_backup_logical_enabled": False,
                                                           "auditron_dr_backup_configure": False})
    assert good.rc == 0, good
    found = samples(lab, "backup_database")
    runs = value(found, "auditron_dr_job_runs_total", job="backup_database", status="success")
    assert value(found, "auditron_dr_last_run_success", job="backup_database") == 1
    assert value(found, "auditron_dr_duration_seconds", job="backup_database") > 0
    assert 0 <= value(found, "auditron_dr_wal_archive_age_seconds", job="backup_database", repo="newest") < 3600
    # What each repository stored for this backup: the size-anomaly alert's input.
    for repo in ("repo1", "repo2", "repo3"):
        assert value(found, "auditron_dr_backup_size_bytes", job="backup_database", location=repo) > 0, repo

    bad = run_playbook("backup_database.yml", extra_vars={"backup_type": "weekly", "auditron_dr_backup_configure": False,
                                                          "auditron_dr_backup_logical_enabled": False})
    assert bad.rc != 0 and "backup_type must be full, diff or incr, not weekly" in bad.output
    found = samples(lab, "backup_database")
    assert value(found, "auditron_dr_last_run_success", job="backup_database") == 0
    assert value(found, "auditron_dr_job_runs_total", job="backup_database", status="success") == runs
    assert value(found, "auditron_dr_job_runs_total", job="backup_database", status="failure") >= 1


def test_file_and_configuration_backups_are_recorded(site_backups, run_playbook):
    for job in ("backup_files", "backup_config"):
        found = samples(site_backups, job)
        assert value(found, "auditron_dr_last_run_success", job=job) == 1, job
    # What the file backup's current/ holds: the size-anomaly alert's input (the lab seeds ~58 MB).
    assert value(samples(site_backups, "backup_files"), "auditron_dr_backup_size_bytes", job="backup_files",
                 location="s3-us-east-1", type="mirror") > 10 * 1024 * 1024
