"""The filters that build check rows in the play: a rescue's failed row, the copies per location,
the verdict over the rows."""

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.auditron.dr.plugins.filter.check_rows import backup_copies, check_summary, failed_check
from ansible_collections.auditron.dr.plugins.module_utils import checkrow


def test_a_rescue_row_names_the_failed_task_and_its_message():
    row = failed_check({"failed": True, "msg": "no space left"}, "logical_restore", "logical backup b1",
                       task="Restore the logical backup into it", default="no message", kind="logical",
                       backups=["b1"])
    assert row == {"name": "logical_restore", "result": "failed", "kind": "logical", "backups": ["b1"],
                   "detail": "logical backup b1: Restore the logical backup into it failed: no space left"}
    assert checkrow.problem(row) is None


def test_a_rescue_row_without_a_message_says_the_default():
    assert failed_check({}, "pgbackrest_verify", "pgbackrest verify could not run")["detail"] == \
        "pgbackrest verify could not run: ?"
    assert failed_check(None, "x", "what", default="no message")["detail"] == "what: no message"


def test_backup_copies_reads_backup_catalogs_result_as_it_is_registered():
    catalog = {"changed": False, "msg": "1 backup", "backups": [
        {"id": "b1", "valid": True, "locations": {"local": {"status": "present"}, "s3": {"status": "missing"}}}],
        "locations": [{"name": "local"}, {"name": "s3"}], "unreachable_locations": {}}
    found = backup_copies(catalog, ["local", "s3"])
    assert [(row["name"], row["result"]) for row in found["checks"]] == [("copies_local", "ok"), ("copies_s3", "failed")]
    assert found["latest_backup_id"] == "b1" and found["backups_checked"] == 1
    assert "changed" not in found and "dr_report" not in found
    with pytest.raises(AnsibleFilterError, match="backup_catalog"):
        backup_copies([], ["local"])


def test_check_summary_totals_the_rows_and_names_the_failed_ones():
    rows = [checkrow.make("copies_local", True, "fine"), checkrow.failed("amcheck", "page 3 corrupt", backups=["b1"])]
    summary = check_summary(rows)
    assert summary["failed_count"] == 1 and summary["passed_count"] == 1 and summary["failed_names"] == ["amcheck"]
    assert summary["msg"] == "verify_backups.yml: 1 of 2 checks failed - amcheck (b1): page 3 corrupt"
    with pytest.raises(AnsibleFilterError, match="list of check rows"):
        check_summary({"name": "x"})
