"""The one check row: built by checkrow, read as is by the report and the verdicts."""

from ansible_collections.auditron.dr.plugins.filter.table_check import table_check
from ansible_collections.auditron.dr.plugins.module_utils import checkrow, preflight


def test_a_row_has_name_result_and_detail_and_keeps_extra_keys():
    assert checkrow.make("amcheck", True, "no corruption", kind="logical") == {
        "name": "amcheck", "result": "ok", "detail": "no corruption", "kind": "logical"}
    assert checkrow.make("amcheck", False)["result"] == "failed"
    assert checkrow.make("amcheck", True, skipped=True)["result"] == "skipped"
    assert checkrow.make("amcheck", "skipped", None) == {"name": "amcheck", "result": "skipped", "detail": ""}
    assert checkrow.failed("restore", "disk full") == {"name": "restore", "result": "failed", "detail": "disk full"}


def test_problem_names_what_is_not_the_one_shape():
    assert checkrow.problem(checkrow.make("x", True, "d")) is None
    assert "not a mapping" in checkrow.problem("bare")
    assert "no name" in checkrow.problem({"result": "ok"})
    assert "True is not one of ok, failed, skipped" in checkrow.problem({"name": "x", "result": True})
    assert "'passed' is not one of" in checkrow.problem({"name": "x", "result": "passed"})
    assert "detail is not text" in checkrow.problem({"name": "x", "result": "ok", "detail": 3})
    assert checkrow.is_ok({"result": "ok"}) and not checkrow.is_ok({"result": "skipped"})
    assert checkrow.is_failed({"result": "failed"}) and not checkrow.is_failed({"result": "ok"})


def test_preflight_and_table_check_rows_are_the_one_shape():
    rows = [preflight.row("database", "primary", True, "PostgreSQL 15"),
            preflight.row("dns", "dr", False, "refused", required=False),
            preflight.row("app", "dr", True, "not asked", skipped=True),
            table_check({"key": "Invoice", "value": {"ok": True, "rows": 3}}),
            table_check({"key": "User", "value": {"ok": False}})]
    assert [checkrow.problem(row) for row in rows] == [None] * 5
    assert [(row["name"], row["result"]) for row in rows] == [
        ("database", "ok"), ("dns", "failed"), ("app", "skipped"), ("table Invoice", "ok"), ("table User", "failed")]
    assert rows[0]["site"] == "primary" and rows[1]["required"] is False
    assert rows[4]["detail"] == "not readable"
