"""Unit tests for module_utils/repoverify.py: pgbackrest verify of each repository as check rows,
on pgBackRest's text output and a runner that stands in for the binary."""

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import pgbackrest, repoverify
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError


def by_name(rows):
    return dict((row["name"], row) for row in rows)


VERIFY_OK = """stanza: auditron
status: ok
  archiveId: 15-1, total WAL checked: 1591, total valid WAL: 1591
    missing: 0, checksum invalid: 0, size invalid: 0, other: 0
  backup: 20261124-011754F, status: valid, total files checked: 1286, total valid files: 1286
    missing: 0, checksum invalid: 0, size invalid: 0, other: 0
  backup: 20261124-011754F_20261124-012540I, status: valid, total files checked: 1286, total valid files: 1286
    missing: 0, checksum invalid: 0, size invalid: 0, other: 0
  backup: 20261124-031110F, status: in-progress, total files checked: 0, total valid files: 0
"""

VERIFY_BAD = """stanza: auditron
status: error
  archiveId: 15-1, total WAL checked: 10, total valid WAL: 9
    missing: 0, checksum invalid: 1, size invalid: 0, other: 0
  backup: 20261124-011754F, status: invalid, total files checked: 1286, total valid files: 1285
    missing: 0, checksum invalid: 1, size invalid: 0, other: 0
  backup: 20261124-023440F, status: valid, total files checked: 1286, total valid files: 1286
    missing: 0, checksum invalid: 0, size invalid: 0, other: 0
"""
VERIFY_BAD_STDERR = """P01  ERROR: [028]: invalid checksum 'backup/auditron/20261124-011754F/pg_data/base/5/1259.zst'
ERROR: [029]: 2 fatal errors encountered, see log for details
"""


def test_verify_output_is_read_into_counts():
    parsed = repoverify.parse_verify_output(VERIFY_OK)
    assert parsed["status"] == "ok"
    assert parsed["archives"] == [{"archive_id": "15-1", "checked": 1591, "valid": 1591, "missing": 0,
                                   "checksum_invalid": 0, "size_invalid": 0, "other": 0}]
    assert [b["status"] for b in parsed["backups"]] == ["valid", "valid", "in-progress"]
    row = repoverify.verify_row("repo1", 0, parsed, seconds=38.2)
    assert row["result"] == "ok" and row["name"] == "pgbackrest_verify_repo1"
    assert "1591 WAL segments and 2 backups valid; running (not judged): 20261124-031110F" in row["detail"]


def test_a_bad_repository_names_the_invalid_backup_and_archive():
    parsed = repoverify.parse_verify_output(VERIFY_BAD, VERIFY_BAD_STDERR)
    assert parsed["status"] == "error"
    assert parsed["errors"][0].startswith("[028] invalid checksum")
    row = repoverify.verify_row("repo2", 29, parsed, "[029] 2 fatal errors encountered, see log for details")
    assert row["result"] == "failed" and row["backups"] == ["20261124-011754F"]
    assert "backup 20261124-011754F invalid (checksum invalid 1)" in row["detail"]
    assert "archive 15-1: 9 of 10 WAL valid (checksum invalid 1)" in row["detail"]
    assert "[029] 2 fatal errors" in row["detail"]
    # a repository without any backup restores nothing
    row = repoverify.verify_row("repo3", 0, repoverify.parse_verify_output(
        "stanza: auditron\nstatus: ok\n  archiveId: none found\n  backup: none found\n",
        "WARN: no archives or backups exist in the repo"))
    assert row["result"] == "failed" and "holds no backup; no archives or backups exist" in row["detail"]
    # a failure without a result text still says why
    row = repoverify.verify_row("repo3", 55, repoverify.parse_verify_output("", "ERROR: [055]: unable to open"))
    assert row["result"] == "failed" and "[055] unable to open" in row["detail"]


def test_pgbackrest_verify_runs_each_repository_and_reports_an_unreachable_one(tmp_path):
    repo1 = tmp_path / "repo1"
    repo1.mkdir()
    config = tmp_path / "pgbackrest.conf"
    config.write_text("[global]\nrepo1-path=%s\nrepo2-type=s3\nrepo2-s3-endpoint=127.0.0.1\nrepo2-storage-port=1\n"
                      "repo2-s3-bucket=b\nrepo2-path=/p\n[auditron]\npg1-path=/x\n" % repo1)
    argvs = []

    def runner(argv, env, timeout):
        argvs.append(argv)
        return 0, VERIFY_OK, "", 1.5

    tool = pgbackrest.PgBackRest(str(config), "auditron", runner=runner)
    planned = repoverify.pgbackrest_verify(str(config), repos=[1, 2], check_mode=True, tool=tool)
    assert not argvs and planned["msg"] == "would run pgbackrest verify on repo1, repo2"
    result = repoverify.pgbackrest_verify(str(config), process_max=2, probe_timeout=1, tool=tool)
    rows = by_name(result["checks"])
    assert rows["pgbackrest_verify_repo1"]["result"] == "ok"
    assert rows["pgbackrest_verify_repo2"]["result"] == "failed"
    assert "unreachable: endpoint 127.0.0.1:1 does not answer" in rows["pgbackrest_verify_repo2"]["detail"]
    assert argvs == [["pgbackrest", "--config=%s" % config, "--stanza=auditron", "--repo=1", "--output=text",
                      "--verbose", "--process-max=2", "verify"]]
    with pytest.raises(DRError, match="repo7 is not configured"):
        repoverify.pgbackrest_verify(str(config), repos=[7], tool=tool)
