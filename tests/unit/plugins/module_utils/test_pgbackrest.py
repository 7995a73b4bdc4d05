"""The pgBackRest engine without pgBackRest: configuration reading, command lines, `info`
parsing, backups (restores: test_pgbackrest_restore.py).

A recording runner stands in for the pgbackrest binary; its answers are shaped as pgBackRest
2.45 prints them (info --output=json, repo-ls --output=json, log lines). Object-store
repositories point at a socket this test listens on (reachable) or at a port nothing listens
on (unreachable), so that the reachability probe is real.
"""

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import pgbackrest
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from tests.unit.plugins.module_utils.pgbackrest_fakes import (  # noqa: F401 pylint: disable=unused-import
    NOW, SYSTEM_ID, FakePgBackRest, closed_port, info_document, listener, sample_backups, write_config)


# ---------------------------------------------------------------------------------------------
# Reading what pgBackRest prints

def test_error_line_takes_pgbackrests_error_code_and_message():
    text = ("2026-11-24 01:00:00.000 P00   INFO: backup command begin 2.45: --stanza=auditron\n"
            "2026-11-24 01:00:01.000 P00  ERROR: [056]: unable to find primary cluster - cannot proceed\n"
            "                                    HINT: are all available clusters in recovery?\n")
    assert pgbackrest.error_line(text) == "[056] unable to find primary cluster - cannot proceed"
    assert pgbackrest.error_line("just a line\nlast line\n") == "last line"
    assert pgbackrest.error_line("") == ""


def test_config_sections_and_repositories(tmp_path, listener):
    path = write_config(tmp_path, {2: listener, 3: 9})
    sections = pgbackrest.read_config(path)
    assert sections["auditron"]["pg1-port"] == "5432"
    repos = pgbackrest.configured_repos(sections, "auditron")
    assert [r["key"] for r in repos] == [1, 2, 3]
    assert repos[0]["type"] == "posix" and repos[0]["cipher"] == "aes-256-cbc"
    assert (repos[1]["host"], repos[1]["port"], repos[1]["bucket"]) == ("localhost", listener, "bucket2")
    assert repos[2]["port"] == 9


def test_stanza_section_overrides_global_and_endpoint_forms():
    sections = pgbackrest.parse_config(
        "[global]\nrepo1-type=s3\nrepo1-s3-endpoint=https://minio.example:9000/\nrepo1-path=/a\n"
        "# comment\n[auditron]\nrepo1-path=/b\n[other]\nrepo1-path=/c\n")
    repo = pgbackrest.configured_repos(sections, "auditron")[0]
    assert (repo["host"], repo["port"], repo["path"]) == ("minio.example", 9000, "/b")
    aws = pgbackrest.configured_repos(pgbackrest.parse_config(
        "[global]\nrepo2-type=s3\nrepo2-s3-endpoint=s3.eu-west-1.amazonaws.com\n"), "auditron")[0]
    assert (aws["key"], aws["port"]) == (2, 443)
    default = pgbackrest.configured_repos({}, "auditron")
    assert default == [{"key": 1, "name": "repo1", "type": "posix", "path": "/var/lib/pgbackrest", "cipher": "none"}]


def test_unreadable_config_is_one_line_naming_the_file(tmp_path):
    with pytest.raises(DRError) as err:
        pgbackrest.read_config(str(tmp_path / "missing.conf"))
    assert "missing.conf" in str(err.value) and "\n" not in str(err.value)


def test_command_line_carries_config_stanza_repo_and_timeout():
    tool = pgbackrest.PgBackRest("/etc/pgbackrest/pgbackrest.conf", "auditron", io_timeout=5)
    assert tool.argv("info", ["--output=json"], repo=2) == [
        "pgbackrest", "--config=/etc/pgbackrest/pgbackrest.conf", "--stanza=auditron", "--repo=2",
        "--io-timeout=5", "--output=json", "info"]
    assert tool.argv("check", io_timeout=0.5)[-2:] == ["--io-timeout=0.5", "check"]


def test_run_checked_raises_pgbackrests_own_message():
    def runner(argv, env, timeout):
        return 28, "", "P00  ERROR: [028]: backup and archive info files exist but do not match the database\n", 0.1
    tool = pgbackrest.PgBackRest("/x.conf", runner=runner)
    with pytest.raises(DRError) as err:
        tool.run_checked("check")
    assert str(err.value) == ("pgbackrest check failed: [028] backup and archive info files exist but do not "
                              "match the database")
    assert err.value.details["rc"] == 28


def test_probe_tells_reachable_from_dead(tmp_path, listener):
    assert pgbackrest.probe_repo({"host": "127.0.0.1", "port": listener}) is None
    dead = pgbackrest.probe_repo({"host": "127.0.0.1", "port": closed_port()}, timeout=2)
    assert "does not answer" in dead and "refused" in dead
    assert pgbackrest.probe_repo({"type": "posix", "path": str(tmp_path)}) is None
    assert "does not exist" in pgbackrest.probe_repo({"type": "posix", "path": str(tmp_path / "nope")})


# ---------------------------------------------------------------------------------------------
# info

def test_parse_info_per_repository():
    document = info_document([1, 2, 3], list(reversed(sample_backups())),
                             statuses={3: (99, "[HostConnectError] unable to connect to 'localhost:1'")})
    summary = pgbackrest.parse_info(document, "auditron", now=NOW)
    repo2 = summary["repos"][1]
    assert [b["label"] for b in repo2["backups"]] == ["20261124-020000F", "20261124-020000F_20261124-030000I"]
    incr = repo2["backups"][1]
    assert (incr["type"], incr["prior"], incr["reference"], incr["duration_seconds"]) == (
        "incr", "20261124-020000F", ["20261124-020000F"], 60)
    assert incr["stop"] == "2026-11-24T03:01:00Z" and incr["system_id"] == str(SYSTEM_ID)
    assert (incr["size"], incr["repo_size"]) == (5000, 300)
    assert repo2["newest_backup"] == "20261124-020000F_20261124-030000I"
    assert repo2["newest_backup_age_seconds"] == 9 * 3600 - 60
    assert (repo2["wal_min"], repo2["wal_max"]) == ("000000010000000000000001", "00000001000000000000000A")
    repo3 = summary["repos"][2]
    assert repo3["reachable"] is False and "HostConnectError" in repo3["error"]
    assert summary["unreachable_repos"] == ["repo3: [HostConnectError] unable to connect to 'localhost:1'"]


def test_parse_info_missing_stanza_and_unknown_stanza():
    document = info_document([1, 2], [], statuses={1: (1, "missing stanza path"), 2: (2, "no valid backups")})
    summary = pgbackrest.parse_info(document, "auditron", now=NOW)
    assert summary["missing_stanza"] == ["repo1"]
    assert summary["repos"][1]["stanza_exists"] is True and summary["repos"][1]["newest_backup"] is None
    with pytest.raises(DRError):
        pgbackrest.parse_info(document, "other")


def test_info_summary_probes_first_and_adds_wal_age(tmp_path, listener):
    config = write_config(tmp_path, {2: listener, 3: closed_port()})
    fake = FakePgBackRest(sample_backups(), wal_time="2026-11-24T11:58:00")
    tool = pgbackrest.PgBackRest(config, runner=fake)
    summary = pgbackrest.info_summary(config, tool=tool, now=NOW, probe_timeout=2)
    by_name = dict((r["name"], r) for r in summary["repos"])
    assert by_name["repo3"]["reachable"] is False and "does not answer" in by_name["repo3"]["status"]
    assert [u.split(":")[0] for u in summary["unreachable_repos"]] == ["repo3"]
    # the dead repository is never handed to pgBackRest: info ran per live repository
    info_calls = [c for c in fake.calls if c[-1] == "info"]
    assert sorted(fake.repo_of(c) for c in info_calls) == [1, 2]
    assert by_name["repo2"]["wal_max_time"] == "2026-11-24T11:58:00Z"
    assert by_name["repo2"]["wal_max_age_seconds"] == 120
    assert summary["newest_archived_wal_age_seconds"] == 120
    assert summary["table"][0].startswith("REPO")
    assert any(line.startswith("repo3") and "UNREACHABLE" in line for line in summary["table"])


def test_info_summary_refuses_an_unknown_repository(tmp_path, listener):
    config = write_config(tmp_path, {2: listener})
    with pytest.raises(DRError) as err:
        pgbackrest.info_summary(config, repos=[5], tool=pgbackrest.PgBackRest(config, runner=FakePgBackRest([])))
    assert "repo5 is not configured" in str(err.value) and "repo1, repo2" in str(err.value)


# ---------------------------------------------------------------------------------------------
# Backups

def test_backup_runs_one_command_per_repository_and_reports_each(tmp_path, listener):
    config = write_config(tmp_path, {2: listener, 3: listener})
    fake = FakePgBackRest([])
    result = pgbackrest.backup(config, backup_type="incr", process_max=4, tool=pgbackrest.PgBackRest(config, runner=fake))
    backups = [c for c in fake.calls if c[-1] == "backup"]
    assert [fake.repo_of(c) for c in backups] == [1, 2, 3]
    assert all("--type=incr" in c and "--process-max=4" in c and "--start-fast" in c for c in backups)
    assert result["labels"] == {"repo1": "20261124-120000F_1", "repo2": "20261124-120000F_2",
                                "repo3": "20261124-120000F_3"}
    first = result["repos"][0]
    assert (first["type"], first["requested_type"], first["duration_seconds"], first["repo_size"]) == (
        "full", "incr", 30, 300)
    assert "incr backup has been changed to full" in first["warnings"][0]
    assert result["changed"] is True and result["failed_repos"] == []


def test_backup_failure_in_one_repository_does_not_stop_the_others(tmp_path, listener):
    dead = closed_port()
    config = write_config(tmp_path, {2: listener, 3: dead})
    fake = FakePgBackRest([], failing_backup_repos=(1,))
    with pytest.raises(DRError) as err:
        pgbackrest.backup(config, backup_type="full", tool=pgbackrest.PgBackRest(config, runner=fake),
                          probe_timeout=2)
    message = str(err.value)
    assert message.startswith("backup failed in repo1: [082] WAL segment")
    assert "repo3: unreachable: endpoint localhost:%d does not answer" % dead in message
    assert message.endswith("(made in repo2)")
    assert err.value.details["failed_repos"] == ["repo1", "repo3"]
    assert err.value.details["labels"] == {"repo2": "20261124-120000F_2"}
    # repo3 was never handed to pgBackRest
    assert [fake.repo_of(c) for c in fake.calls if c[-1] == "backup"] == [1, 2]


def test_backup_check_mode_runs_nothing(tmp_path, listener):
    config = write_config(tmp_path, {2: listener})
    fake = FakePgBackRest([])
    result = pgbackrest.backup(config, backup_type="full", repos=[2], check_mode=True,
                               tool=pgbackrest.PgBackRest(config, runner=fake))
    assert fake.calls == []
    assert [r["name"] for r in result["repos"]] == ["repo2"]
    assert result["repos"][0]["command"].endswith("--repo=2 --type=full --log-level-console=info --start-fast backup")
    assert result["msg"] == "would back up (full) to repo2"


def test_backup_rejects_unknown_type(tmp_path):
    with pytest.raises(DRError) as err:
        pgbackrest.backup(write_config(tmp_path, {}), backup_type="weekly")
    assert "weekly" in str(err.value)


def test_kms_blob_must_be_base64():
    with pytest.raises(DRError) as err:
        pgbackrest.unwrap_cipher_pass("not base64 !!", {})
    assert str(err.value) == "cipher_pass_kms_blob is not base64 KMS ciphertext"
