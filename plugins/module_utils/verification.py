# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The weekly backup test's checks: what "this backup restores and holds our data" means.

The plan's "Weekly Backup Test" says "run verification queries" and "generate test report"
without criteria. These are the criteria, each one a check row ``{name, result, detail,
backups}`` that the DR report lists and ``dr_metrics`` turns into
``auditron_dr_verification_success{check=<name>}``:

- Copies (``copies_<location>``): every logical backup in the catalog is present in every
  location, and (after ``backup_catalog deep``) its sha256 and every GCM tag verify there.
- pgBackRest (``pgbackrest_verify_repo<N>``): in module_utils/repoverify.
- A restored copy (``<kind>_...``, kind ``logical`` or ``physical``): row counts and the
  newest ``"createdAt"`` of every table against a logical backup's manifest (``exact`` for
  the logical restore, which must hold exactly the dump; ``at_least`` for a PITR to the end of
  the archive, which is newer: it holds at least the manifest's rows, less the deletions the
  audit log records since the manifest's snapshot), pg_amcheck, the age of the backup, and
  the user's own SQL checks with the result they expect.
- Records: the result per backup, next to its manifest (``catalog.record_verification``),
  so that ``backup_catalog``'s ``valid`` reflects the last verification; and the same record
  for the pgBackRest backup that was restored.

User SQL is the user's own and runs only against the restored copies, in a READ ONLY
transaction, wrapped as ``SELECT * FROM (<sql>) AS q``: one query, no second statement can
ride along after a semicolon, and a data-modifying WITH is refused by PostgreSQL itself.

Check names are stable from week to week (they become metric labels); the backup a check
concerns is in its ``backups`` field and in its detail, never in its name.

No Ansible import: tests and the lab call this directly.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import datetime
import decimal
import json
import re
import uuid

from ansible_collections.auditron.dr.plugins.module_utils import assess, catalog, checkrow, pgbackrest
from ansible_collections.auditron.dr.plugins.module_utils.common import (
    DRError, first_line, format_time, human_duration, parse_time, utc_now)
from ansible_collections.auditron.dr.plugins.module_utils.pg import connect, quote_ident
from ansible_collections.auditron.dr.plugins.module_utils.storage import locations_from_params

LOGICAL, PHYSICAL = "logical", "physical"
KINDS = (LOGICAL, PHYSICAL)
COMPARE_MODES = ("exact", "at_least", "none")
SQL_COMPARES = ("eq", "ne", "ge", "gt", "le", "lt")
OK, FAILED = checkrow.OK, checkrow.FAILED

CHECK_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# Rows read back from a user query: enough to compare with any sensible expectation and to
# show the difference, never a whole table into memory.
MAX_RESULT_ROWS = 1000
DETAIL_LIMIT = 400
DEFAULT_STATEMENT_TIMEOUT = 300
DEFAULT_MAX_BACKUP_AGE_HOURS = 25.0    # the plan's "No backup in 25 hours" alert
PHYSICAL_RECORD_FORMAT = "auditron.dr/physical-backup-verification"
PHYSICAL_RECORD_PREFIX = "verifications/pgbackrest/"

# The reference schema's audit log (DESIGN.md): a DELETE or ERASE entry per deleted row.
DEFAULT_AUDIT_LOG = {"schema": "public", "table": "AuditLog", "entity_column": "entity", "action_column": "action",
                     "time_column": "createdAt", "delete_actions": ["DELETE", "ERASE"]}


# ---------------------------------------------------------------------------------------------
# Check rows

def check_row(name, passed, detail, backups=None, kind=None, **extra):
    """A check row (module_utils/checkrow) with the backups it concerns and its kind."""
    row = checkrow.make(name, passed, _clip(detail), backups=[str(b) for b in (backups or []) if b])
    if kind:
        row["kind"] = kind
    row.update(extra)
    return row


def _clip(text, limit=DETAIL_LIMIT):
    text = " ".join(str(text if text is not None else "").split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def row_passed(row):
    return checkrow.is_ok(row)


def summarize(checks, run="verify_backups.yml"):
    """Totals, the verification_success map and the one-line verdict over check rows."""
    rows = [row for row in checks or [] if isinstance(row, dict) and row.get("name")]
    success = collections.OrderedDict()
    for row in rows:
        # The same name twice (should not happen) counts as failed if either failed.
        success[row["name"]] = 1 if row_passed(row) and success.get(row["name"], 1) else 0
    failed = [row for row in rows if not row_passed(row)]
    if failed:
        msg = "%s: %d of %d checks failed - %s" % (run, len(failed), len(rows), "; ".join(
            "%s%s: %s" % (row["name"], (" (%s)" % ", ".join(row["backups"])) if row.get("backups") else "",
                          row.get("detail") or "failed")
            for row in failed))
    elif rows:
        msg = "%s: all %d checks passed" % (run, len(rows))
    else:
        msg = "%s: no check ran" % run
    # Never a key named "failed" in a module result: Ansible would take the run as failed.
    return {"total": len(rows), "passed_count": len(rows) - len(failed), "failed_count": len(failed),
            "failed_checks": failed, "failed_names": [row["name"] for row in failed],
            "verification_success": dict(success), "msg": msg}


# ---------------------------------------------------------------------------------------------
# User SQL checks

def normalize_sql_checks(items, kinds=KINDS):
    """Validated user checks: {name, sql, expect, compare, database, run_on}; one line per mistake."""
    checks, names = [], set()
    for index, item in enumerate(items or []):
        where = "sql_checks[%d]" % index
        if not isinstance(item, dict):
            raise DRError("%s is not a mapping with name, sql and expect" % where)
        name = str(item.get("name") or "")
        if not CHECK_NAME_RE.match(name):
            raise DRError("%s: name %r is not valid (letters, digits, '_', '.', '-'; at most 63 characters): it "
                          "becomes the check's metric label" % (where, name))
        if name in names:
            raise DRError("%s: the name %s is used twice" % (where, name))
        names.add(name)
        sql = str(item.get("sql") or "").strip()
        if not sql:
            raise DRError("sql check %s has no sql" % name)
        if "expect" not in item:
            raise DRError("sql check %s has no expect (a value, or a list of rows)" % name)
        compare = str(item.get("compare") or "eq").lower()
        if compare not in SQL_COMPARES:
            raise DRError("sql check %s: compare %r is not one of %s" % (name, compare, ", ".join(SQL_COMPARES)))
        expect = item["expect"]
        if isinstance(expect, (list, tuple)) and compare != "eq":
            raise DRError("sql check %s: rows can only be compared with eq, not %s" % (name, compare))
        run_on = item.get("run_on")
        if run_on in (None, "", []):
            run_on = list(kinds)
        elif isinstance(run_on, str):
            run_on = [part.strip() for part in run_on.split(",") if part.strip()]
        for kind in run_on:
            if kind not in KINDS:
                raise DRError("sql check %s: run_on %r is not one of %s" % (name, kind, ", ".join(KINDS)))
        checks.append({"name": name, "sql": sql, "expect": expect, "compare": compare,
                       "database": item.get("database") or None, "run_on": list(run_on)})
    return checks


def wrap_query(sql):
    """`SELECT * FROM (<sql>) AS q`: exactly one query, whatever the text holds."""
    text = str(sql or "").strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    if not text:
        raise DRError("empty SQL")
    # The newline keeps a trailing -- comment in the user's text from swallowing the ')'.
    return "SELECT * FROM (\n%s\n) AS auditron_verify_query" % text


def plain_value(value):
    """A database value as plain data: what the comparison and the report use."""
    if isinstance(value, decimal.Decimal):
        if value.is_nan():
            return "NaN"
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime.datetime):
        return format_time(value) if value.tzinfo else value.isoformat()
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [plain_value(item) for item in value]
    if isinstance(value, dict):
        return dict((str(k), plain_value(v)) for k, v in value.items())
    return value


def _number(value):
    """The value as a number, or None (booleans are not numbers here)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return value
    try:
        text = str(value).strip()
        return int(text) if re.match(r"^[+-]?\d+$", text) else float(text)
    except (TypeError, ValueError):
        return None


_TRUE, _FALSE = ("true", "t", "yes", "on", "1"), ("false", "f", "no", "off", "0")


def _bool(value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def values_equal(expected, actual):
    """Loose equality as a person means it: 0 == Decimal('0') == '0', true == 't', times by value."""
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return _bool(expected) is not None and _bool(expected) == _bool(actual)
    left, right = _number(expected), _number(actual)
    if left is not None and right is not None:
        return left == right
    if isinstance(expected, (list, dict)) or isinstance(actual, (list, dict)):
        return _canonical(expected) == _canonical(actual)
    if str(expected) == str(actual):
        return True
    moments = _times(expected, actual)
    return moments is not None and moments[0] == moments[1]


def _canonical(value):
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, sort_keys=True, default=str)


def _times(left, right):
    try:
        return parse_time(left), parse_time(right)
    except DRError:
        return None


def compare_ordered(expected, actual, compare):
    """expected <compare> actual for numbers or times; the check passes when `actual <op> expected`."""
    left, right = _number(actual), _number(expected)
    if left is None or right is None:
        moments = _times(actual, expected)
        if moments is None:
            raise DRError("cannot compare %r with %r using %s (numbers or times only)" % (actual, expected, compare))
        left, right = moments
    return {"ge": left >= right, "gt": left > right, "le": left <= right, "lt": left < right}[compare]


def _show(value):
    return json.dumps(value, default=str) if not isinstance(value, str) else value


def compare_result(expect, compare, columns, rows):
    """(passed, detail) of a query's result against the expectation.

    expect: a scalar (the query must return one row of one column), or a list of rows, each a
    list (by position), a mapping (by column name) or a scalar (one-column rows), in order.
    rows: plain values (plain_value), at most MAX_RESULT_ROWS + 1 of them.
    """
    truncated = len(rows) > MAX_RESULT_ROWS
    if not isinstance(expect, (list, tuple)):
        if not rows:
            return False, "expected %s, got no row" % _show(expect)
        if len(rows) > 1 or len(rows[0]) != 1:
            return False, "expected one value, got %s%d row(s) of %d column(s)" % (
                "more than " if truncated else "", min(len(rows), MAX_RESULT_ROWS), len(rows[0]))
        actual = rows[0][0]
        if compare == "eq":
            passed = values_equal(expect, actual)
        elif compare == "ne":
            passed = not values_equal(expect, actual)
        else:
            passed = compare_ordered(expect, actual, compare)
        words = {"eq": "", "ne": "not ", "ge": ">= ", "gt": "> ", "le": "<= ", "lt": "< "}[compare]
        return passed, "expected %s%s, got %s" % (words, _show(expect), _show(actual))
    expected_rows = list(expect)
    if truncated or len(rows) != len(expected_rows):
        return False, "expected %d row(s), got %s%d" % (
            len(expected_rows), "more than " if truncated else "", min(len(rows), MAX_RESULT_ROWS))
    for number, (wanted, got) in enumerate(zip(expected_rows, rows), 1):
        if isinstance(wanted, dict):
            by_name = dict(zip(columns, got))
            missing = [name for name in wanted if name not in by_name]
            if missing:
                return False, "row %d: no column %s in the result (columns: %s)" % (
                    number, ", ".join(missing), ", ".join(columns))
            same = all(values_equal(value, by_name[name]) for name, value in wanted.items())
            shown = dict((name, by_name[name]) for name in wanted)
        else:
            wanted_list = list(wanted) if isinstance(wanted, (list, tuple)) else [wanted]
            same = len(wanted_list) == len(got) and all(values_equal(w, g) for w, g in zip(wanted_list, got))
            shown, wanted = list(got), wanted_list
        if not same:
            return False, "row %d: expected %s, got %s" % (number, _show(wanted), _show(shown))
    return True, "%d row(s) as expected" % len(expected_rows)


def run_query_read_only(params, database, sql, statement_timeout=DEFAULT_STATEMENT_TIMEOUT):
    """(columns, rows) of one user query, in a READ ONLY transaction that is rolled back."""
    conn = connect(params, database, autocommit=True)
    try:
        with conn.cursor() as cur:
            # Belt and braces: the session defaults to read-only too, so nothing the query text
            # could do outside its transaction may write either.
            cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            cur.execute("BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            cur.execute("SET LOCAL statement_timeout = %s", ("%ds" % max(1, int(statement_timeout)),))
            try:
                cur.execute(wrap_query(sql))
                columns = [column[0] for column in cur.description or []]
                rows = [[plain_value(value) for value in row] for row in cur.fetchmany(MAX_RESULT_ROWS + 1)]
            finally:
                if not conn.closed:
                    try:
                        cur.execute("ROLLBACK")
                    except Exception:  # pylint: disable=broad-except
                        pass  # a failed transaction: closing the connection ends it
    finally:
        conn.close()
    return columns, rows


def run_sql_checks(params, kind, backup, checks, default_database, statement_timeout=DEFAULT_STATEMENT_TIMEOUT,
                   query=None):
    """One row per user check whose `run_on` holds `kind`: `sql_<name>_<kind>`.

    query(params, database, sql, timeout) -> (columns, rows) can be replaced in tests.
    """
    query = query or run_query_read_only
    rows, results = [], []
    for check in checks:
        if kind not in check["run_on"]:
            continue
        name = "sql_%s_%s" % (check["name"], kind)
        database = check["database"] or default_database
        try:
            columns, found = query(params, database, check["sql"], statement_timeout)
            passed, detail = compare_result(check["expect"], check["compare"], columns, found)
        except DRError as exc:
            passed, detail, columns, found = False, "query failed: %s" % exc.message, [], []
        except Exception as exc:  # pylint: disable=broad-except
            # psycopg2 errors: the user's SQL is wrong or timed out; the check fails, the run goes on.
            passed, detail, columns, found = False, "query failed: %s" % first_line(exc), [], []
        rows.append(check_row(name, passed, "%s backup %s, database %s: %s" % (kind, backup, database, detail),
                              backups=[backup], kind=kind))
        results.append({"name": name, "check": check["name"], "database": database, "passed": passed,
                        "columns": columns, "rows": found[:20], "detail": detail})
    return rows, results


# ---------------------------------------------------------------------------------------------
# Row counts and the newest time against a manifest

def manifest_tables(manifest):
    """The manifest's tables with rows: [{schema, name, rows, timestamp_column, max_timestamp}]."""
    tables = []
    for item in (manifest or {}).get("tables") or []:
        if not isinstance(item, dict) or "rows" not in item:
            continue
        tables.append({"schema": item.get("schema") or "public", "name": item["name"], "rows": item["rows"],
                       "timestamp_column": item.get("timestamp_column"),
                       "max_timestamp": item.get("max_timestamp")})
    return tables


def time_value(value):
    """A comparable time: aware datetimes (naive ones are UTC, as the manifest writes them)."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
    if isinstance(value, datetime.date):
        return datetime.datetime(value.year, value.month, value.day, tzinfo=datetime.timezone.utc)
    text = str(value).strip()
    if re.match(r"^\d{4}-\d{2}-\d{2}$", text):
        text += "T00:00:00Z"
    try:
        return parse_time(text)
    except DRError:
        return None


def read_table_stats(conn, tables):
    """{(schema, name): {exists, rows, newest}} of a copy, all in one snapshot."""
    stats = {}
    with conn.cursor() as cur:
        cur.execute("BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            for table in tables:
                qualified = "%s.%s" % (quote_ident(table["schema"]), quote_ident(table["name"]))
                cur.execute("SELECT to_regclass(%s)", (qualified,))
                if cur.fetchone()[0] is None:
                    stats[(table["schema"], table["name"])] = {"exists": False, "rows": None, "newest": None}
                    continue
                column = table.get("timestamp_column")
                if column:
                    cur.execute("SELECT 1 FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s "
                                "AND attnum > 0 AND NOT attisdropped", (qualified, column))
                    if cur.fetchone() is None:
                        column = None
                if column:
                    cur.execute("SELECT count(*), max(%s) FROM %s" % (quote_ident(column), qualified))
                    rows, newest = cur.fetchone()
                else:
                    cur.execute("SELECT count(*) FROM %s" % qualified)
                    rows, newest = cur.fetchone()[0], None
                stats[(table["schema"], table["name"])] = {"exists": True, "rows": int(rows), "newest": newest,
                                                           "has_time": bool(column)}
        finally:
            cur.execute("ROLLBACK")
    return stats


def read_deletions(conn, audit_log, since, tables):
    """{table name: deleted rows} the audit log records after `since`, or None without an audit log.

    Explains a PITR copy holding fewer rows than an older logical backup: rows deleted since
    its snapshot are logged with their table's name.
    """
    audit = dict(DEFAULT_AUDIT_LOG)
    audit.update(dict((k, v) for k, v in (audit_log or {}).items() if v not in (None, "")))
    qualified = "%s.%s" % (quote_ident(audit["schema"]), quote_ident(audit["table"]))
    with conn.cursor() as cur:
        cur.execute("BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            cur.execute("SELECT to_regclass(%s)", (qualified,))
            if cur.fetchone()[0] is None:
                return None
            cur.execute(
                "SELECT %s, count(*) FROM %s WHERE %s = ANY(%%s) AND %s > %%s AND %s = ANY(%%s) GROUP BY 1" % (
                    quote_ident(audit["entity_column"]), qualified, quote_ident(audit["action_column"]),
                    quote_ident(audit["time_column"]), quote_ident(audit["entity_column"])),
                (list(audit["delete_actions"]), since, [table["name"] for table in tables]))
            return dict((str(name), int(count)) for name, count in cur.fetchall())
        finally:
            cur.execute("ROLLBACK")


def compare_with_manifest(manifest, stats, mode, kind, backup, deletions=None):
    """(table rows, check rows) for the copy's stats against the manifest.

    exact: every table holds exactly the manifest's rows and newest time (a logical restore).
    at_least: every table holds at least the manifest's rows less the deletions logged since its
    snapshot, and its newest time is not older (a PITR to the end of the archive, newer).
    """
    if mode not in COMPARE_MODES:
        raise DRError("compare %r is not one of %s" % (mode, ", ".join(COMPARE_MODES)))
    tables = manifest_tables(manifest)
    manifest_id = (manifest or {}).get("id")
    reference = "manifest of %s" % manifest_id
    table_rows, count_problems, time_problems = [], [], []
    total = 0
    timed = 0
    for table in tables:
        label = "%s.%s" % (table["schema"], table["name"])
        found = stats.get((table["schema"], table["name"])) or {"exists": False}
        deleted = (deletions or {}).get(table["name"], 0)
        row = {"table": label, "expected": table["rows"], "found": found.get("rows"), "deleted_since": deleted,
               "expected_newest": table["max_timestamp"], "found_newest": plain_value(found.get("newest"))}
        if not found.get("exists"):
            row["match"] = False
            count_problems.append("%s is missing" % label)
            table_rows.append(row)
            continue
        total += found["rows"]
        if mode == "exact":
            counts_ok = found["rows"] == table["rows"]
            if not counts_ok:
                count_problems.append("%s has %d rows, the %s says %d" % (
                    label, found["rows"], reference, table["rows"]))
        elif mode == "at_least":
            counts_ok = found["rows"] >= table["rows"] - deleted
            if not counts_ok:
                count_problems.append("%s has %d rows, fewer than the %s's %d%s" % (
                    label, found["rows"], reference, table["rows"],
                    " less %d deleted since" % deleted if deleted else ""))
        else:
            counts_ok = True
        times_ok = True
        if table["max_timestamp"] and mode != "none":
            timed += 1
            expected_time, found_time = time_value(table["max_timestamp"]), time_value(found.get("newest"))
            if found_time is None:
                times_ok = False
                time_problems.append("%s has no newest %s (the %s says %s)" % (
                    label, table["timestamp_column"], reference, table["max_timestamp"]))
            elif expected_time is None:
                times_ok = False
                time_problems.append("%s: the %s's newest time %r cannot be read" % (
                    label, reference, table["max_timestamp"]))
            elif mode == "exact" and found_time != expected_time:
                times_ok = False
                time_problems.append("%s newest %s is %s, the %s says %s" % (
                    label, table["timestamp_column"], plain_value(found["newest"]), reference,
                    table["max_timestamp"]))
            elif mode == "at_least" and found_time < expected_time and not deleted:
                times_ok = False
                time_problems.append("%s newest %s is %s, older than the %s's %s" % (
                    label, table["timestamp_column"], plain_value(found["newest"]), reference,
                    table["max_timestamp"]))
        row["match"] = counts_ok and times_ok
        table_rows.append(row)
    checks = []
    if mode == "none":
        return table_rows, checks
    word = "exactly" if mode == "exact" else "at least"
    if not tables:
        checks.append(check_row("%s_row_counts" % kind, False, "the %s lists no tables with row counts" % reference,
                                backups=[backup], kind=kind))
        return table_rows, checks
    explained = sum(row["deleted_since"] for row in table_rows)
    checks.append(check_row(
        "%s_row_counts" % kind, not count_problems,
        ("%s backup %s: %s" % (kind, backup, "; ".join(count_problems))) if count_problems else
        "%s backup %s: %d tables hold %s the rows of the %s (%d rows)%s" % (
            kind, backup, len(tables), word, reference, total,
            ("; %d rows deleted since its snapshot, per the audit log" % explained) if explained else ""),
        backups=[backup], kind=kind))
    checks.append(check_row(
        "%s_newest_time" % kind, not time_problems,
        ("%s backup %s: %s" % (kind, backup, "; ".join(time_problems))) if time_problems else
        "%s backup %s: the newest row of %d tables is %s as new as in the %s" % (
            kind, backup, timed, "exactly" if mode == "exact" else "at least", reference),
        backups=[backup], kind=kind))
    return table_rows, checks


# ---------------------------------------------------------------------------------------------
# A restored copy

def backup_age_row(kind, backup, backup_time, max_age_hours, now=None):
    """`<kind>_backup_age`: the backup restored is no older than max_age_hours."""
    now = now or utc_now()
    moment = time_value(backup_time)
    if moment is None:
        return check_row("%s_backup_age" % kind, False, "%s backup %s: its time %r cannot be read" % (
            kind, backup, backup_time), backups=[backup], kind=kind)
    age = (now - moment).total_seconds()
    passed = age <= float(max_age_hours) * 3600.0
    return check_row("%s_backup_age" % kind, passed, "%s backup %s was taken %s ago (%s); the limit is %g h" % (
        kind, backup, human_duration(max(0.0, age)), format_time(moment), float(max_age_hours)),
        backups=[backup], kind=kind, age_seconds=round(age, 1))


def amcheck_row(params, database, kind, backup, bin_dir=None, install_missing=False, heapallindexed=False, jobs=2):
    """`<kind>_amcheck`: pg_amcheck over the copy's database finds nothing."""
    try:
        result = assess.run_pg_amcheck(params, database, bin_dir=bin_dir, jobs=jobs, heapallindexed=heapallindexed,
                                       install_missing=install_missing)
    except DRError as exc:
        return check_row("%s_amcheck" % kind, False, "%s backup %s: %s" % (kind, backup, exc.message),
                         backups=[backup], kind=kind), None
    if result["ok"] is None:
        detail = "%s backup %s, database %s: %s" % (kind, backup, database, "; ".join(result["findings"]))
        return check_row("%s_amcheck" % kind, False, detail, backups=[backup], kind=kind), result
    # The server's notices (install_missing: 'extension "amcheck" already exists, skipping') are
    # not findings; corruption comes with a non-zero exit and its own lines.
    findings = [line for line in result["findings"] if not line.startswith(("NOTICE:", "INFO:"))]
    if result["exit_code"] == 0 and not findings:
        result["ok"] = True
    result["findings"] = findings
    if result["ok"]:
        detail = "%s backup %s, database %s: pg_amcheck%s found nothing in %.1f s" % (
            kind, backup, database, " --heapallindexed" if heapallindexed else "", result["duration_seconds"])
    else:
        detail = "%s backup %s, database %s: pg_amcheck exit %s, %d finding(s): %s" % (
            kind, backup, database, result["exit_code"], result.get("findings_total", len(result["findings"])),
            "; ".join(result["findings"][:3]))
    return check_row("%s_amcheck" % kind, bool(result["ok"]), detail, backups=[backup], kind=kind), result


def load_manifest(locations, backup_id):
    """The manifest of a logical backup, read through the catalog (the first complete one)."""
    catalog.check_backup_id(backup_id)
    series = catalog.parse_backup_id(backup_id)[0]
    entry = catalog.Catalog.load(locations, series=series, lazy=True).entry(backup_id)
    if entry is None or entry.manifest is None:
        raise DRError("logical backup %s: no manifest in %s" % (backup_id, ", ".join(l.name for l in locations)))
    if entry.manifest_problems:
        raise DRError("logical backup %s: manifest incomplete: %s" % (backup_id, "; ".join(entry.manifest_problems)))
    return entry.manifest


def parse_locations(items, what="locations"):
    """The raw `locations` option as Location objects, parsed once here (Location objects that a
    test or benchmark built already pass as they are)."""
    if not items:
        raise DRError("%s are required: the logical backup locations" % what)
    if all(isinstance(item, dict) for item in items):
        return locations_from_params(items)
    return list(items)


def check_restored_copy(params, check_mode=False):
    """The backup_verify module: every check of one restored copy, from the module's params (its
    argument spec gives every key)."""
    manifest = params["manifest"]
    if manifest is None and params["manifest_id"] and params["compare"] != "none":
        manifest = load_manifest(parse_locations(params["locations"]), params["manifest_id"])
    if manifest is None and params["compare"] != "none":
        raise DRError("compare %s needs the manifest: give manifest, or manifest_id and locations (or compare: none)"
                      % params["compare"])
    return verify_restored_copy(
        params, params["db"], params["kind"], params["backup"], manifest=manifest, compare=params["compare"],
        audit_log=params["audit_log"], backup_time=params["backup_time"],
        max_backup_age_hours=params["max_backup_age_hours"], amcheck=params["amcheck"],
        amcheck_install_missing=params["amcheck_install_missing"] and not check_mode,
        amcheck_heapallindexed=params["amcheck_heapallindexed"], amcheck_jobs=params["amcheck_jobs"],
        bin_dir=params["bin_dir"], sql_checks=params["sql_checks"], statement_timeout=params["statement_timeout"],
        restore_seconds=params["restore_seconds"], restore_detail=params["restore_detail"])


def verify_restored_copy(params, database, kind, backup, manifest=None, compare="exact", audit_log=None,
                         backup_time=None, max_backup_age_hours=DEFAULT_MAX_BACKUP_AGE_HOURS, amcheck=True,
                         amcheck_install_missing=False, amcheck_heapallindexed=False, amcheck_jobs=2, bin_dir=None,
                         sql_checks=None, statement_timeout=DEFAULT_STATEMENT_TIMEOUT, restore_seconds=None,
                         restore_detail=None, now=None):
    """Every check of one restored copy; see the module docstring. Returns the result dict."""
    if kind not in KINDS:
        raise DRError("kind %r is not one of %s" % (kind, ", ".join(KINDS)))
    if not backup:
        raise DRError("backup is required: the id or label the copy was restored from")
    user_checks = normalize_sql_checks(sql_checks)
    database = database or (manifest or {}).get("database") or "postgres"
    checks = []
    if restore_seconds is not None or restore_detail:
        checks.append(check_row("%s_restore" % kind, True, restore_detail or "%s backup %s restored in %s" % (
            kind, backup, human_duration(restore_seconds)), backups=[backup], kind=kind,
            seconds=round(float(restore_seconds), 3) if restore_seconds is not None else None))
    if backup_time and max_backup_age_hours:
        checks.append(backup_age_row(kind, backup, backup_time, max_backup_age_hours, now=now))
    tables, deletions = [], None
    if manifest is not None and compare != "none":
        conn = connect(params, database, autocommit=True)
        try:
            listed = manifest_tables(manifest)
            stats = read_table_stats(conn, listed)
            if compare == "at_least" and audit_log is not False:
                deletions = read_deletions(conn, audit_log, catalog.manifest_time(manifest), listed)
        finally:
            conn.close()
        tables, compared = compare_with_manifest(manifest, stats, compare, kind, backup, deletions)
        checks.extend(compared)
    amcheck_result = None
    if amcheck:
        row, amcheck_result = amcheck_row(params, database, kind, backup, bin_dir=bin_dir,
                                          install_missing=amcheck_install_missing,
                                          heapallindexed=amcheck_heapallindexed, jobs=amcheck_jobs)
        checks.append(row)
    sql_rows, sql_results = run_sql_checks(params, kind, backup, user_checks, database, statement_timeout)
    checks.extend(sql_rows)
    summary = summarize(checks, run="%s copy of %s" % (kind, backup))
    return {"changed": False, "kind": kind, "backup": backup, "database": database, "compare": compare,
            "manifest_id": (manifest or {}).get("id"), "tables": tables, "deletions_since_manifest": deletions,
            "amcheck": amcheck_result, "sql_results": sql_results, "checks": checks,
            "verification_success": summary["verification_success"], "failed_checks": summary["failed_checks"],
            "msg": summary["msg"], "dr_report": {"checks": checks}}


# ---------------------------------------------------------------------------------------------
# Copies in every location (backup_catalog's result, deep or not)

def choose_latest(backups):
    """The newest logical backup worth restoring: complete manifest, a copy present somewhere.

    A failed earlier verification does not exclude it - re-verifying it is the point. Returns
    the backup_catalog entry, or None.
    """
    for item in backups or []:
        why = item.get("why_invalid")
        if item.get("valid") or (why and str(why).startswith("last verification failed")):
            return item
    return None


def coverage_checks(catalog_result, location_names=None):
    """One `copies_<location>` row per location: every complete backup present there, and with
    a deep catalog, its copy verified. Backups without a manifest anywhere (a crashed or
    running backup) are noted, not counted."""
    backups = [item for item in (catalog_result or {}).get("backups") or [] if isinstance(item, dict)]
    names = list(location_names or [])
    if not names:
        names = [row.get("name") for row in (catalog_result or {}).get("locations") or [] if row.get("name")]
    unreachable = dict((catalog_result or {}).get("unreachable_locations") or {})
    complete = [item for item in backups if not str(item.get("why_invalid") or "").startswith("incomplete:")]
    incomplete = [item["id"] for item in backups if item not in complete]
    rows = []
    for name in names:
        if name in unreachable:
            rows.append(check_row("copies_%s" % name, False, "location %s could not be listed: %s" % (
                name, unreachable[name]), kind="copies", location=name))
            continue
        failures = collections.OrderedDict()
        deep_checked = 0
        for item in complete:
            state = (item.get("locations") or {}).get(name) or {"status": catalog.MISSING, "detail": "not listed"}
            deep = (item.get("deep") or {}).get(name)
            if str(item.get("why_invalid") or "").startswith(("manifest incomplete", "manifest unreadable")):
                failures[item["id"]] = "logical backup %s: %s" % (item["id"], item["why_invalid"])
            elif state.get("status") != catalog.PRESENT:
                detail = state.get("detail") or ""
                if deep and not deep.get("verified"):
                    detail = deep.get("detail") or detail
                failures[item["id"]] = "logical backup %s at location %s: %s%s" % (
                    item["id"], name, state.get("status"), (": " + detail) if detail else "")
            elif deep is not None:
                deep_checked += 1
        extra = ("; %d without a manifest anywhere (crashed or running, not counted): %s" % (
            len(incomplete), ", ".join(incomplete[:3]))) if incomplete else ""
        if failures:
            rows.append(check_row(
                "copies_%s" % name, False, "%d of %d logical backups bad at location %s: %s%s" % (
                    len(failures), len(complete), name, "; ".join(failures.values()), extra),
                backups=list(failures), kind="copies", location=name, failures=dict(failures)))
        else:
            how = ("sha256 and every GCM tag verified" if deep_checked == len(complete) and complete
                   else "present with the manifest's size (not downloaded)")
            rows.append(check_row("copies_%s" % name, True, "%d logical backups at location %s, %s%s" % (
                len(complete), name, how, extra), kind="copies", location=name))
    return rows


def copies_result(catalog_result, location_names=None, max_backup_age_hours=None, now=None):
    """The module result of action=copies: the rows, and the latest backup to restore."""
    rows = coverage_checks(catalog_result, location_names)
    latest = choose_latest((catalog_result or {}).get("backups"))
    if latest is None:
        rows.append(check_row("logical_restore", False, "no logical backup with a complete manifest and a copy in "
                              "any location", kind=LOGICAL))
    summary = summarize(rows, run="copies")
    return {"changed": False, "checks": rows, "latest_backup": latest, "latest_backup_id": latest["id"] if latest
            else None, "backups_checked": len((catalog_result or {}).get("backups") or []),
            "verification_success": summary["verification_success"], "failed_checks": summary["failed_checks"],
            "msg": summary["msg"], "dr_report": {"checks": rows}}


# ---------------------------------------------------------------------------------------------
# Verification records

def rows_concerning(checks, backup):
    return [row for row in checks or [] if backup in (row.get("backups") or [])]


def verdict_for(checks, backup, kind):
    """(passed, detail, rows) for one backup: every row naming it passed, and it was restored."""
    rows = rows_concerning(checks, backup)
    failed = [row for row in rows if not row_passed(row)]
    restored = [row for row in rows if row.get("name") == "%s_restore" % kind and row_passed(row)]
    if failed:
        return False, "; ".join("%s: %s" % (row["name"], row.get("detail") or "failed") for row in failed), rows
    if not restored:
        return False, "%s backup %s was not restored by this test" % (kind, backup), rows
    return True, "%d checks passed: %s" % (len(rows), ", ".join(row["name"] for row in rows)), rows


def physical_record_key(stanza, label):
    if not re.match(r"^[A-Za-z0-9_.-]+$", str(stanza or "")) or not re.match(r"^[0-9A-Za-z_-]+$", str(label or "")):
        raise DRError("pgBackRest stanza %r or backup label %r is not valid" % (stanza, label))
    return "%s%s/%s.json" % (PHYSICAL_RECORD_PREFIX, stanza, label)


def record_physical_verification(locations, stanza, label, passed, detail="", by="", checks=None, repo=None,
                                 now=None):
    """The same record as catalog.record_verification, for a pgBackRest backup set: at
    verifications/pgbackrest/<stanza>/<label>.json beside the logical backups (which the
    logical catalog does not list, and prune does not remove)."""
    key = physical_record_key(stanza, label)
    entry = {"backup": label, "stanza": stanza, "repo": repo, "verified_at": format_time(now or utc_now()),
             "result": "passed" if passed else "failed", "detail": str(detail or ""), "by": str(by or "")}
    if checks:
        entry["checks"] = list(checks)
    return catalog.append_verification(locations, key, entry, label, {
        "format": PHYSICAL_RECORD_FORMAT, "format_version": 1, "stanza": stanza, "backup": label})


def last_physical_verification(locations, stanza, label):
    """The newest record of a pgBackRest backup set over `locations`, or None."""
    key = physical_record_key(stanza, label)
    newest = None
    for location in locations:
        try:
            if location.head(key) is None:
                continue
            document, _raw = catalog.read_json(location, key, "verification record of %s" % label)
        except DRError:
            continue
        record = document.get("last") if isinstance(document, dict) else None
        if isinstance(record, dict) and (newest is None or str(record.get("verified_at")) > str(
                newest.get("verified_at"))):
            newest = dict(record, found_at=location.name)
    return newest


def _check_brief(rows):
    return [{"name": row["name"], "result": row["result"], "detail": row.get("detail", "")} for row in rows]


def record_results(locations, checks, logical_backup=None, physical_backup=None, by="weekly backup test",
                   check_mode=False, now=None):
    """Write the verification record of the logical backup and of the pgBackRest set restored.

    physical_backup: {label, stanza, repo}. A location that cannot be written is named in the
    result and does not stop the others. Returns {records, changed, warnings}.
    """
    records, warnings = [], []
    if logical_backup:
        passed, detail, rows = verdict_for(checks, logical_backup, LOGICAL)
        location_results = collections.OrderedDict()
        for row in checks or []:
            if row.get("kind") == "copies" and row.get("location"):
                failure = (row.get("failures") or {}).get(logical_backup)
                location_results[row["location"]] = {"result": "failed" if failure else (
                    "passed" if row_passed(row) else "unknown"), "detail": failure or row.get("detail", "")}
        item = {"kind": LOGICAL, "backup": logical_backup, "result": "passed" if passed else "failed",
                "detail": detail, "written": [], "failed": {}}
        if not check_mode:
            outcome = catalog.record_verification(locations, logical_backup, passed, detail=_clip(detail, 2000),
                                                  by=by, checks=_check_brief(rows), location_results=location_results,
                                                  now=now)
            item.update(written=outcome["written"], failed=outcome["failed"])
        records.append(item)
    if physical_backup and physical_backup.get("label"):
        label = physical_backup["label"]
        stanza = physical_backup.get("stanza") or pgbackrest.DEFAULT_STANZA
        passed, detail, rows = verdict_for(checks, label, PHYSICAL)
        item = {"kind": PHYSICAL, "backup": label, "stanza": stanza, "repo": physical_backup.get("repo"),
                "result": "passed" if passed else "failed", "detail": detail, "written": [], "failed": {}}
        if not check_mode:
            outcome = record_physical_verification(locations, stanza, label, passed, detail=_clip(detail, 2000), by=by,
                                                   checks=_check_brief(rows), repo=physical_backup.get("repo"),
                                                   now=now)
            item.update(written=outcome["written"], failed=outcome["failed"])
        records.append(item)
    for item in records:
        for name, error in item["failed"].items():
            warnings.append("verification record of %s could not be written to %s: %s" % (item["backup"], name, error))

    def outcome(item):
        if item["written"]:
            return " (recorded in %s)" % ", ".join(item["written"])
        return " (would be recorded)" if check_mode else " (NOT recorded)"

    msg = "; ".join("%s backup %s: %s%s" % (item["kind"], item["backup"], item["result"], outcome(item))
                    for item in records) or "no backup to record"
    return {"changed": any(item["written"] for item in records) or (check_mode and bool(records)),
            "records": records, "warnings": warnings, "msg": msg}


def record_run(locations, checks, logical_backup=None, physical_backup=None, by="weekly backup test",
               check_mode=False, now=None):
    """The verification_record module: record_results over the raw `locations`, parsed once here."""
    return record_results(parse_locations(locations), checks, logical_backup=logical_backup,
                          physical_backup=physical_backup, by=by, check_mode=check_mode, now=now)
