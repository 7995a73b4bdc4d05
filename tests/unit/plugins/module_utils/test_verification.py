"""Unit tests for module_utils/verification.py: the weekly backup test's checks, on plain data
and real local directories (no lab needed). The lab-backed end to end is
tests/integration/test_verify_backups.py."""

import datetime
import decimal
import json
import uuid

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import assess, catalog, pgdump, verification
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, format_time, parse_time
from ansible_collections.auditron.dr.plugins.module_utils.storage import LocalLocation

NOW = parse_time("2026-11-29T03:00:00Z")
SNAPSHOT = "2026-11-29T02:00:01.250000Z"


def manifest(tables=None, backup_id="auditron_20261129_020000"):
    return {"id": backup_id, "database": "auditron", "snapshot_at": SNAPSHOT, "started_at": SNAPSHOT,
            "tables": tables if tables is not None else [
                {"schema": "public", "name": "Invoice", "rows": 100, "timestamp_column": "createdAt",
                 "max_timestamp": "2026-11-29T01:59:00.500000Z"},
                {"schema": "public", "name": "User", "rows": 10, "timestamp_column": "createdAt",
                 "max_timestamp": "2026-11-28T10:00:00Z"},
                {"schema": "public", "name": "Settings", "rows": 1}]}


def stats(invoice=100, invoice_newest="2026-11-29T01:59:00.500000+00:00", users=10, settings=1, missing=()):
    found = {("public", "Invoice"): {"exists": True, "rows": invoice, "newest": parse_time(invoice_newest)},
             ("public", "User"): {"exists": True, "rows": users, "newest": parse_time("2026-11-28T10:00:00Z")},
             ("public", "Settings"): {"exists": True, "rows": settings, "newest": None}}
    for name in missing:
        found[("public", name)] = {"exists": False, "rows": None, "newest": None}
    return found


def by_name(rows):
    return dict((row["name"], row) for row in rows)


# -- user SQL checks -------------------------------------------------------------------------------

def test_user_sql_is_wrapped_into_exactly_one_query():
    assert verification.wrap_query("SELECT 1;  ;") == "SELECT * FROM (\nSELECT 1\n) AS auditron_verify_query"
    # a trailing comment cannot swallow the closing parenthesis
    assert verification.wrap_query("SELECT 1 -- one").endswith("-- one\n) AS auditron_verify_query")
    with pytest.raises(DRError, match="empty SQL"):
        verification.wrap_query(" ; ")


@pytest.mark.parametrize("items, message", [
    ([{"name": "bad name", "sql": "SELECT 1", "expect": 1}], "not valid"),
    ([{"name": "a", "sql": "SELECT 1", "expect": 1}, {"name": "a", "sql": "SELECT 2", "expect": 2}], "used twice"),
    ([{"name": "a", "sql": "SELECT 1"}], "has no expect"),
    ([{"name": "a", "sql": " ", "expect": 1}], "has no sql"),
    ([{"name": "a", "sql": "SELECT 1", "expect": [[1]], "compare": "ge"}], "only be compared with eq"),
    ([{"name": "a", "sql": "SELECT 1", "expect": 1, "compare": "about"}], "compare 'about'"),
    ([{"name": "a", "sql": "SELECT 1", "expect": 1, "run_on": ["production"]}], "run_on 'production'"),
    (["SELECT 1"], "not a mapping"),
])
def test_user_checks_are_refused_with_one_line_naming_the_mistake(items, message):
    with pytest.raises(DRError, match=message):
        verification.normalize_sql_checks(items)


def test_user_checks_run_on_both_copies_unless_told():
    checks = verification.normalize_sql_checks([
        {"name": "both", "sql": "SELECT 1", "expect": 1},
        {"name": "one", "sql": "SELECT 1", "expect": 1, "run_on": "physical", "compare": "GE"}])
    assert checks[0]["run_on"] == ["logical", "physical"] and checks[0]["compare"] == "eq"
    assert checks[1]["run_on"] == ["physical"] and checks[1]["compare"] == "ge"


def test_plain_values():
    assert verification.plain_value(decimal.Decimal("42")) == 42
    assert verification.plain_value(decimal.Decimal("4.5")) == 4.5
    aware = datetime.datetime(2026, 11, 29, 1, 2, 3, 4000, tzinfo=datetime.timezone.utc)
    assert verification.plain_value(aware) == "2026-11-29T01:02:03.004000Z"
    assert verification.plain_value(datetime.datetime(2026, 11, 29, 1, 2, 3)) == "2026-11-29T01:02:03"
    assert verification.plain_value(datetime.date(2026, 11, 29)) == "2026-11-29"
    assert verification.plain_value(b"\x01\xff") == "\\x01ff"
    assert verification.plain_value(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
    assert verification.plain_value([decimal.Decimal("1"), {"a": decimal.Decimal("2")}]) == [1, {"a": 2}]


@pytest.mark.parametrize("expected, actual, same", [
    (0, 0, True), (0, "0", True), ("150000", 150000, True), (1.5, "1.50", True), (0, 1, False),
    (True, "t", True), (True, True, True), ("false", False, True), (True, 1, True), (True, 0, False),
    (None, None, True), (None, 0, False), ("x", None, False),
    ("2026-11-29T01:00:00Z", "2026-11-29 02:00:00+01:00", True), ("draft", "Draft", False),
    ({"a": 1}, '{"a": 1}', True), ([1, 2], [1, 2], True),
])
def test_values_compare_as_a_person_means_them(expected, actual, same):
    assert verification.values_equal(expected, actual) is same


def test_a_scalar_expectation_wants_one_value():
    assert verification.compare_result(0, "eq", ["count"], [[0]]) == (True, "expected 0, got 0")
    assert verification.compare_result(0, "eq", ["count"], [[150000]]) == (False, "expected 0, got 150000")
    assert verification.compare_result(0, "eq", ["count"], []) == (False, "expected 0, got no row")
    passed, detail = verification.compare_result(0, "eq", ["a", "b"], [[0, 1]])
    assert not passed and "one value" in detail and "2 column" in detail
    passed, detail = verification.compare_result(0, "eq", ["a"], [[0], [0]])
    assert not passed and "2 row(s)" in detail
    assert verification.compare_result(100, "ge", ["n"], [[150]])[0]
    assert not verification.compare_result(100, "lt", ["n"], [[150]])[0]
    assert verification.compare_result("2026-11-28T00:00:00Z", "gt", ["t"], [["2026-11-29T00:00:00Z"]])[0]
    assert verification.compare_result("draft", "ne", ["s"], [["paid"]]) == (True, "expected not draft, got paid")
    with pytest.raises(DRError, match="cannot compare"):
        verification.compare_result("draft", "gt", ["s"], [["paid"]])


def test_rows_expectations_by_position_by_name_or_one_column():
    columns = ["action", "n"]
    rows = [["CREATE", 5], ["DELETE", 2]]
    assert verification.compare_result([["CREATE", 5], ["DELETE", 2]], "eq", columns, rows)[0]
    assert verification.compare_result([{"action": "CREATE"}, {"n": "2"}], "eq", columns, rows)[0]
    assert verification.compare_result(["CREATE"], "eq", ["action"], [["CREATE"]])[0]
    assert verification.compare_result([], "eq", columns, []) == (True, "0 row(s) as expected")
    passed, detail = verification.compare_result([["CREATE", 5], ["DELETE", 3]], "eq", columns, rows)
    assert not passed and detail == 'row 2: expected ["DELETE", 3], got ["DELETE", 2]'
    passed, detail = verification.compare_result([{"nope": 1}, {"n": 2}], "eq", columns, rows)
    assert not passed and "no column nope" in detail
    passed, detail = verification.compare_result([["CREATE", 5]], "eq", columns, rows)
    assert not passed and detail == "expected 1 row(s), got 2"
    too_many = [[i] for i in range(verification.MAX_RESULT_ROWS + 1)]
    passed, detail = verification.compare_result([1], "eq", ["n"], too_many)
    assert not passed and "more than" in detail


def test_user_checks_run_per_copy_and_a_failing_query_fails_only_its_check():
    checks = verification.normalize_sql_checks([
        {"name": "zero", "sql": "SELECT 0", "expect": 0},
        {"name": "wrong", "sql": 'SELECT count(*) FROM "Invoice"', "expect": 0, "database": "other"},
        {"name": "broken", "sql": "SELEC 1", "expect": 1},
        {"name": "physical_only", "sql": "SELECT 1", "expect": 1, "run_on": ["physical"]}])
    calls = []

    def query(params, database, sql, timeout):
        calls.append((database, sql, timeout))
        if sql.startswith("SELEC "):
            raise RuntimeError('syntax error at or near "SELEC"\nLINE 2: SELEC 1')
        return ["n"], [[150000 if "Invoice" in sql else 0]]

    rows, results = verification.run_sql_checks({}, "logical", "auditron_20261129_020000", checks, "auditron",
                                                statement_timeout=7, query=query)
    assert [row["name"] for row in rows] == ["sql_zero_logical", "sql_wrong_logical", "sql_broken_logical"]
    assert [row["result"] for row in rows] == ["ok", "failed", "failed"]
    assert rows[1]["detail"] == ("logical backup auditron_20261129_020000, database other: expected 0, "
                                 "got 150000")
    assert rows[1]["backups"] == ["auditron_20261129_020000"]
    assert 'query failed: syntax error at or near "SELEC"' in rows[2]["detail"]
    assert calls[0] == ("auditron", "SELECT 0", 7) and calls[1][0] == "other"
    assert results[1]["rows"] == [[150000]]


# -- against the manifest ----------------------------------------------------------------------

def test_exact_comparison_passes_on_the_manifests_rows_and_newest_times():
    tables, rows = verification.compare_with_manifest(manifest(), stats(), "exact", "logical",
                                                      "auditron_20261129_020000")
    checks = by_name(rows)
    assert checks["logical_row_counts"]["result"] == "ok"
    assert "3 tables hold exactly the rows" in checks["logical_row_counts"]["detail"]
    assert checks["logical_newest_time"]["result"] == "ok"
    assert all(table["match"] for table in tables)


@pytest.mark.parametrize("found, check, words", [
    (stats(invoice=99), "logical_row_counts", "public.Invoice has 99 rows, the manifest of auditron_20261129_020000 "
                                              "says 100"),
    (stats(invoice=101), "logical_row_counts", "has 101 rows"),
    (stats(missing=("User",)), "logical_row_counts", "public.User is missing"),
    (stats(invoice_newest="2026-11-29T01:59:00.400000Z"), "logical_newest_time",
     "public.Invoice newest createdAt is 2026-11-29T01:59:00.400000Z, the manifest"),
])
def test_exact_comparison_names_the_table_that_differs(found, check, words):
    _tables, rows = verification.compare_with_manifest(manifest(), found, "exact", "logical",
                                                       "auditron_20261129_020000")
    row = by_name(rows)[check]
    assert row["result"] == "failed" and words in row["detail"], row["detail"]
    assert row["backups"] == ["auditron_20261129_020000"]


def test_at_least_allows_newer_data_and_deletions_the_audit_log_explains():
    newer = stats(invoice=120, invoice_newest="2026-11-29T02:50:00Z")
    _tables, rows = verification.compare_with_manifest(manifest(), newer, "at_least", "physical", "20261129-020500F")
    assert all(row["result"] == "ok" for row in rows), rows

    fewer = stats(invoice=97, users=10)
    _tables, rows = verification.compare_with_manifest(manifest(), fewer, "at_least", "physical", "20261129-020500F",
                                                       deletions={"Invoice": 3})
    checks = by_name(rows)
    assert checks["physical_row_counts"]["result"] == "ok"
    assert "3 rows deleted since its snapshot" in checks["physical_row_counts"]["detail"]

    _tables, rows = verification.compare_with_manifest(manifest(), fewer, "at_least", "physical", "20261129-020500F",
                                                       deletions={"Invoice": 2})
    detail = by_name(rows)["physical_row_counts"]["detail"]
    assert "public.Invoice has 97 rows, fewer than the manifest of auditron_20261129_020000's 100 less 2 deleted" \
        in detail

    older = stats(invoice_newest="2026-11-29T01:00:00Z")
    _tables, rows = verification.compare_with_manifest(manifest(), older, "at_least", "physical", "20261129-020500F")
    assert by_name(rows)["physical_newest_time"]["result"] == "failed"
    _tables, rows = verification.compare_with_manifest(manifest(), older, "at_least", "physical", "20261129-020500F",
                                                       deletions={"Invoice": 1})
    assert by_name(rows)["physical_newest_time"]["result"] == "ok"  # the newest row was deleted since


def test_nothing_to_compare():
    _tables, rows = verification.compare_with_manifest(manifest(), stats(), "none", "physical", "x")
    assert rows == []
    _tables, rows = verification.compare_with_manifest(manifest(tables=[]), {}, "exact", "logical", "x")
    assert [row["result"] for row in rows] == ["failed"] and "lists no tables" in rows[0]["detail"]
    with pytest.raises(DRError, match="compare 'roughly'"):
        verification.compare_with_manifest(manifest(), stats(), "roughly", "logical", "x")


def test_times_compare_naive_as_utc_and_dates_at_midnight():
    assert verification.time_value(datetime.datetime(2026, 11, 29, 1, 0)) == parse_time("2026-11-29T01:00:00Z")
    assert verification.time_value("2026-11-29") == parse_time("2026-11-29T00:00:00Z")
    assert verification.time_value(datetime.date(2026, 11, 29)) == parse_time("2026-11-29T00:00:00Z")
    assert verification.time_value("not a time") is None and verification.time_value(None) is None


def test_backup_age():
    row = verification.backup_age_row("logical", "auditron_20261129_020000", SNAPSHOT, 25, now=NOW)
    assert row["result"] == "ok" and "59 min" in row["detail"]
    row = verification.backup_age_row("physical", "20261127-020000F", "2026-11-27T02:00:00Z", 25, now=NOW)
    assert row["result"] == "failed" and "the limit is 25 h" in row["detail"]
    row = verification.backup_age_row("physical", "x", "yesterday", 25, now=NOW)
    assert row["result"] == "failed" and "cannot be read" in row["detail"]


@pytest.mark.parametrize("outcome, passed, words", [
    ({"ok": False, "exit_code": 0, "duration_seconds": 0.2,
      "findings": ['NOTICE:  extension "amcheck" already exists, skipping']}, True, "found nothing"),
    ({"ok": False, "exit_code": 2, "duration_seconds": 0.2, "findings_total": 1,
      "findings": ['heap table "auditron.public.Invoice", block 2, offset 7: xmin 12 precedes relation freeze']},
     False, "exit 2, 1 finding(s): heap table"),
    ({"ok": None, "exit_code": 1, "duration_seconds": 0.1,
      "findings": ["not checked: the amcheck extension is not installed in auditron"]}, False, "not checked"),
])
def test_amcheck_rows(monkeypatch, outcome, passed, words):
    monkeypatch.setattr(assess, "run_pg_amcheck", lambda *args, **kwargs: dict(outcome))
    row, _result = verification.amcheck_row({}, "auditron", "physical", "20261129-020500F", install_missing=True)
    assert (row["result"] == "ok") is passed and words in row["detail"], row
    assert row["name"] == "physical_amcheck"


# -- copies in every location ------------------------------------------------------------------

def catalog_entry(backup_id, statuses, deep=None, why_invalid=None, valid=True):
    entry = {"id": backup_id, "valid": valid, "why_invalid": why_invalid, "database": "auditron",
             "time": "2026-11-29T02:00:01Z",
             "locations": dict((name, {"status": status, "detail": "%s detail" % status})
                               for name, status in statuses.items())}
    if deep is not None:
        entry["deep"] = deep
    return entry


def test_every_location_must_hold_every_backup_with_a_verified_copy():
    good = {"verified": True, "detail": "sha256 and every GCM tag verified"}
    result = {
        "backups": [
            catalog_entry("auditron_20261129_020000", {"local": "different", "s3-a": "present", "s3-b": "present"},
                          deep={"local": {"verified": False, "detail": "backup auditron_20261129_020000 at location "
                                          "local (...): sha256 aa differs from the manifest's bb (corrupted)"},
                                "s3-a": good, "s3-b": good}),
            catalog_entry("auditron_20261128_020000", {"local": "present", "s3-a": "missing", "s3-b": "present"},
                          deep={"local": good, "s3-b": good}),
            catalog_entry("auditron_20261127_020000", {"local": "incomplete", "s3-a": "missing", "s3-b": "missing"},
                          valid=False, why_invalid="incomplete: artifact without a manifest"),
        ],
        "locations": [{"name": "local"}, {"name": "s3-a"}, {"name": "s3-b"}],
        "unreachable_locations": {},
    }
    rows = by_name(verification.coverage_checks(result))
    local = rows["copies_local"]
    assert local["result"] == "failed" and local["backups"] == ["auditron_20261129_020000"]
    assert "logical backup auditron_20261129_020000 at location local: different: backup" in local["detail"]
    assert "(corrupted)" in local["detail"]
    assert rows["copies_s3-a"]["result"] == "failed" and rows["copies_s3-a"]["backups"] == ["auditron_20261128_020000"]
    assert rows["copies_s3-b"]["result"] == "ok"
    assert "2 logical backups at location s3-b, sha256 and every GCM tag verified" in rows["copies_s3-b"]["detail"]
    assert "1 without a manifest anywhere" in rows["copies_s3-b"]["detail"]


def test_a_backup_whose_manifest_cannot_be_read_fails_every_location():
    result = {"backups": [catalog_entry("auditron_20261129_020000", {"local": "incomplete", "s3-a": "incomplete"},
                                        valid=False, why_invalid="manifest unreadable (local: not valid JSON)")],
              "locations": [{"name": "local"}, {"name": "s3-a"}]}
    rows = verification.coverage_checks(result)
    assert [row["result"] for row in rows] == ["failed", "failed"]
    assert "manifest unreadable" in rows[0]["detail"] and rows[0]["backups"] == ["auditron_20261129_020000"]


def test_copies_without_deep_check_sizes_only_and_an_unreachable_location_fails():
    result = {"backups": [catalog_entry("auditron_20261129_020000", {"local": "present", "s3-a": "unknown"})],
              "locations": [{"name": "local"}, {"name": "s3-a"}],
              "unreachable_locations": {"s3-a": "endpoint does not answer"}}
    rows = by_name(verification.coverage_checks(result))
    assert rows["copies_local"]["result"] == "ok" and "not downloaded" in rows["copies_local"]["detail"]
    assert rows["copies_s3-a"]["result"] == "failed" and "could not be listed" in rows["copies_s3-a"]["detail"]


def test_the_latest_backup_to_restore_ignores_a_failed_earlier_verification():
    backups = [catalog_entry("auditron_20261129_030000", {}, valid=False,
                             why_invalid="incomplete: artifact without a manifest (a backup that did not finish)"),
               catalog_entry("auditron_20261129_020000", {}, valid=False,
                             why_invalid="last verification failed at 2026-11-22T03:00:00Z: copies_local"),
               catalog_entry("auditron_20261128_020000", {})]
    assert verification.choose_latest(backups)["id"] == "auditron_20261129_020000"
    assert verification.choose_latest(backups[:1]) is None
    result = verification.copies_result({"backups": backups[:1], "locations": [{"name": "local"}]})
    assert result["latest_backup_id"] is None
    assert by_name(result["checks"])["logical_restore"]["result"] == "failed"


# -- verdict and records -------------------------------------------------------------------------

def test_the_verdict_names_every_failed_check_and_its_backup_in_one_line():
    rows = [verification.check_row("copies_local", False, "logical backup b1 at location local: different",
                                   backups=["b1"]),
            verification.check_row("logical_restore", True, "restored", backups=["b1"]),
            verification.check_row("sql_x_logical", False, "expected 0,\ngot 3", backups=["b1"])]
    summary = verification.summarize(rows)
    assert "failed" not in summary  # a module result with "failed" would fail the task
    assert summary["failed_count"] == 2 and summary["passed_count"] == 1
    assert summary["verification_success"] == {"copies_local": 0, "logical_restore": 1, "sql_x_logical": 0}
    assert summary["msg"] == ("verify_backups.yml: 2 of 3 checks failed - copies_local (b1): logical backup b1 at "
                              "location local: different; sql_x_logical (b1): expected 0, got 3")
    assert "\n" not in summary["msg"]
    assert verification.summarize(rows[1:2])["msg"] == "verify_backups.yml: all 1 checks passed"


def write_backup(locations, backup_id):
    """A small unencrypted logical backup, as pg_backup leaves it: artifact, then manifest."""
    writer = pgdump.ArtifactWriter(locations, catalog.artifact_key(backup_id, False), None, None, level=3, threads=0)
    writer.write(b"COPY rows\n" * 100)
    done, failed = writer.close()
    assert not failed and done
    moment = format_time(catalog.parse_backup_id(backup_id)[1])
    document = {"format": catalog.MANIFEST_FORMAT, "format_version": 1, "kind": "logical", "id": backup_id,
                "series": "auditron", "database": "auditron", "started_at": moment, "snapshot_at": moment,
                "finished_at": moment, "encryption": {"algorithm": "none", "key": None, "context": None},
                "artifacts": [{"name": "dump", "key": writer.key, "size": writer.stored_bytes,
                               "sha256": writer.sha256, "plaintext_bytes": 1000, "locations": {}}],
                "tables": [{"schema": "public", "name": "Invoice", "rows": 100}]}
    for location in locations:
        catalog.write_manifest(location, document)
    return document


@pytest.fixture
def places(tmp_path):
    return [LocalLocation(name, str(tmp_path / name)) for name in ("local", "s3-a")]


def test_records_decide_the_catalogs_valid_and_need_a_restore(places):
    backup_id = "auditron_20261129_020000"
    write_backup(places, backup_id)
    assert verification.load_manifest(places, backup_id)["id"] == backup_id
    copies = verification.check_row("copies_local", False, "logical backup %s at location local: different" %
                                    backup_id, backups=[backup_id], kind="copies", location="local",
                                    failures={backup_id: "local copy corrupted"})
    other = verification.check_row("copies_s3-a", True, "1 logical backups", kind="copies", location="s3-a")
    restored = verification.check_row("logical_restore", True, "restored", backups=[backup_id], kind="logical")
    physical = [verification.check_row("physical_restore", True, "restored", backups=["20261129-020500F"]),
                verification.check_row("physical_amcheck", True, "nothing", backups=["20261129-020500F"])]

    result = verification.record_results(places, [copies, other, restored] + physical, logical_backup=backup_id,
                                         physical_backup={"label": "20261129-020500F", "stanza": "auditron",
                                                          "repo": "repo2"}, now=NOW)
    assert [item["result"] for item in result["records"]] == ["failed", "passed"]
    assert result["records"][0]["written"] == ["local", "s3-a"]
    record = catalog.last_verification(places, backup_id)
    assert record["result"] == "failed" and "copies_local" in record["detail"]
    assert record["locations"]["local"] == {"result": "failed", "detail": "local copy corrupted"}
    assert record["locations"]["s3-a"]["result"] == "passed"
    entry = catalog.Catalog.load(places).entry(backup_id)
    assert not entry.valid and entry.why_invalid.startswith("last verification failed")
    physical_record = verification.last_physical_verification(places, "auditron", "20261129-020500F")
    assert physical_record["result"] == "passed" and physical_record["repo"] == "repo2"
    # the physical record is invisible to the logical catalog
    assert set(catalog.Catalog.load(places).entries) == {backup_id}

    # a week later it passes again: valid again
    later = NOW + datetime.timedelta(days=7)
    verification.record_results(places, [other, restored], logical_backup=backup_id, now=later)
    assert catalog.Catalog.load(places).entry(backup_id).valid

    # without a restore row, a backup cannot pass
    outcome = verification.record_results(places, [other], logical_backup=backup_id, check_mode=True)
    assert outcome["records"][0]["result"] == "failed" and "was not restored" in outcome["records"][0]["detail"]
    assert outcome["records"][0]["written"] == [] and "would be recorded" in outcome["msg"]


def test_physical_records_keep_a_bounded_history(places):
    for day in range(catalog.VERIFICATION_HISTORY + 3):
        verification.record_physical_verification(places[:1], "auditron", "20261129-020500F", day % 2 == 0,
                                                  now=NOW + datetime.timedelta(days=day))
    key = verification.physical_record_key("auditron", "20261129-020500F")
    with open("%s/%s" % (places[0].path, key)) as handle:
        document = json.load(handle)
    assert len(document["history"]) == catalog.VERIFICATION_HISTORY
    assert document["last"]["verified_at"] == format_time(NOW + datetime.timedelta(days=catalog.VERIFICATION_HISTORY
                                                                                   + 2))
    with pytest.raises(DRError, match="not valid"):
        verification.physical_record_key("auditron", "../../etc/passwd")


# -- the modules' entry points -----------------------------------------------------------------

def test_a_copy_check_without_a_manifest_says_how_to_give_one():
    params = {"manifest": None, "manifest_id": None, "compare": "exact"}
    with pytest.raises(DRError, match="compare exact needs the manifest: give manifest, or manifest_id and locations"):
        verification.check_restored_copy(params)


def test_record_run_parses_the_raw_locations_once(tmp_path):
    with pytest.raises(DRError, match="locations are required"):
        verification.record_run([], [])
    rows = [verification.check_row("logical_restore", True, "restored", backups=["auditron_20261129_020000"]),
            verification.check_row("logical_amcheck", False, "page 3", backups=["auditron_20261129_020000"])]
    raw = [{"name": "local", "type": "local", "path": str(tmp_path / "disk")}]
    result = verification.record_run(raw, rows, logical_backup="auditron_20261129_020000", check_mode=True)
    assert [(item["backup"], item["result"]) for item in result["records"]] == [("auditron_20261129_020000", "failed")]
    assert "would be recorded" in result["msg"] and result["changed"] is True
    assert verification.parse_locations([LocalLocation("local", str(tmp_path))])[0].name == "local"
