"""Fixtures shared by the integration tests: what several playbooks need to exist first."""

import subprocess

import pytest

from tests.conftest import REPO, VENV_BIN, ansible_env


def run_backup_playbook(tmp_path_factory, playbook, *args):
    result = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(REPO / "inventories" / "local"),
                             str(REPO / "playbooks" / playbook)] + list(args), cwd=str(REPO), capture_output=True,
                            text=True, check=False, timeout=900,
                            env=ansible_env({"AUDITRON_DR_REPORT_DIR": str(tmp_path_factory.mktemp("reports"))}))
    assert result.returncode == 0, playbook + ":\n" + result.stdout[-4000:] + result.stderr[-2000:]


@pytest.fixture(scope="session")
def physical_backup(lab, tmp_path_factory):
    """A full pgBackRest backup of the primary in every repository, so that a test module runs
    alone as well as after the others."""
    run_backup_playbook(tmp_path_factory, "backup_database.yml", "-e", "backup_type=full", "--tags", "physical")
    return lab


@pytest.fixture(scope="session")
def site_backups(physical_backup, tmp_path_factory):
    """Everything a failover restores: the database (above), the files and the configuration."""
    run_backup_playbook(tmp_path_factory, "backup_files.yml")
    run_backup_playbook(tmp_path_factory, "backup_config.yml")
    return physical_backup
