# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a database holds, row for row: an order-independent checksum of every table's content.

Used by failback to prove that the rebuilt primary holds exactly what DR held when its writes
stopped. Per table, computed by the server (no row leaves it):

- each row's text form (``t::text``, the record as PostgreSQL prints it: every column, NULLs
  distinct from empty strings) is hashed with md5;
- the 128-bit hashes are split in two 64-bit halves and each half is summed as numeric (exact, no
  overflow): a sum does not depend on the order of the rows, and unlike an XOR a duplicated row
  does not cancel itself out;
- the digest is the md5 of both sums; the row count is returned beside it.

The text form of some types depends on session settings (time zone, date and interval styles,
float digits, bytea output): they are fixed for the transaction, so that two servers configured
differently still agree. Every table is read in one REPEATABLE READ READ ONLY transaction: one
snapshot for the whole database.

In scope by default: every permanent ordinary table (partitions included, partitioned parents
not, so that each row counts once) outside the system schemas. Unlogged and temporary tables
are left out and listed as such: their content is not in the WAL, so no restore brings it back.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.auditron.dr.plugins.module_utils import pg
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, first_line

# Settings that fix the text form of every built-in type for the transaction.
SESSION_SETTINGS = (
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
)

# Tables of the database, with what decides whether they are in scope.
LIST_TABLES_SQL = (
    "SELECT n.nspname, c.relname, c.relpersistence "
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
    "AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%' "
    "ORDER BY n.nspname, c.relname"
)

# Where the server's WAL is in the snapshot, and (a primary) the timeline it writes on.
POSITION_SQL = (
    "SELECT pg_is_in_recovery(), (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
    "ELSE pg_current_wal_lsn() END)::text, CASE WHEN pg_is_in_recovery() THEN NULL "
    "ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END"
)


def table_key(schema, table):
    """The name a table has in results: schema.table, unquoted."""
    return "%s.%s" % (schema, table)


def split_name(name, default_schema="public"):
    """("schema", "table") from "schema.table" or "table" (the first dot separates; quotes not needed)."""
    if not name or not str(name).strip():
        raise DRError("an empty table name is not a table")
    name = str(name)
    if "." in name:
        schema, table = name.split(".", 1)
        return schema, table
    return default_schema, name


def table_checksum_sql(schema, table):
    """The statement that returns (rows, digest) of one table's whole content."""
    relation = "%s.%s" % (pg.quote_ident(schema), pg.quote_ident(table))
    return (
        "SELECT count(*), md5(coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint), 0)::text || ':' || "
        "coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint), 0)::text) "
        "FROM (SELECT md5(t::text) AS h FROM ONLY %s AS t) AS hashed" % relation
    )


def settings_sql():
    """SET LOCAL statements for SESSION_SETTINGS (inside the transaction only)."""
    return ["SET LOCAL %s TO '%s'" % (name, value.replace("'", "''")) for name, value in SESSION_SETTINGS]


def select_tables(listed, tables=None, schemas=None, exclude=None):
    """From the catalog's (schema, table, relpersistence) rows, the tables in scope and the ones left out.

    tables: names ("table" or "schema.table") that must all exist and be checksummed (then only they are);
    schemas: keep only these schemas; exclude: names left out. Returns (in_scope, left_out) where in_scope is a
    list of (schema, table) and left_out maps a name to why.
    """
    exclude_keys = set(table_key(*split_name(name)) for name in (exclude or []))
    found = dict((table_key(schema, table), (schema, table, persistence)) for schema, table, persistence in listed)
    left_out = {}
    if tables:
        wanted = [table_key(*split_name(name)) for name in tables]
        missing = [key for key in wanted if key not in found]
        if missing:
            raise DRError("no such table: %s (tables in the database: %s)"
                          % (", ".join(missing), ", ".join(sorted(found)) or "none"))
        candidates = [found[key] for key in sorted(set(wanted))]
    else:
        candidates = [found[key] for key in sorted(found)]
    in_scope = []
    for schema, table, persistence in candidates:
        key = table_key(schema, table)
        if schemas and schema not in schemas:
            continue
        if key in exclude_keys:
            left_out[key] = "excluded"
        elif persistence != "p":
            left_out[key] = "unlogged" if persistence == "u" else "temporary"
        else:
            in_scope.append((schema, table))
    return in_scope, left_out


def content_checksums(conn, tables=None, schemas=None, exclude=None):
    """{schema.table: {"rows": n, "digest": hex}} for every table in scope, read in one snapshot.

    `conn` is a psycopg2 connection not inside a transaction; it is left as it was given (its
    autocommit setting restored, the read-only transaction rolled back).
    """
    return checksum_report(conn, tables=tables, schemas=schemas, exclude=exclude)["tables"]


def checksum_report(conn, tables=None, schemas=None, exclude=None):
    """content_checksums, with the tables left out (name: why) and where the server's WAL was then."""
    previous = conn.autocommit
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                for statement in settings_sql():
                    cur.execute(statement)
                cur.execute(LIST_TABLES_SQL)
                in_scope, left_out = select_tables(cur.fetchall(), tables, schemas, exclude)
                sums = {}
                for schema, table in in_scope:
                    try:
                        cur.execute(table_checksum_sql(schema, table))
                    except Exception as exc:  # pylint: disable=broad-except
                        raise DRError("checksum of table %s failed: %s" % (table_key(schema, table), first_line(exc)))
                    rows, digest = cur.fetchone()
                    sums[table_key(schema, table)] = {"rows": int(rows), "digest": digest}
                cur.execute(POSITION_SQL)
                in_recovery, lsn, timeline = cur.fetchone()
            finally:
                cur.execute("ROLLBACK")
    finally:
        conn.autocommit = previous
    return {"tables": sums, "left_out": left_out, "lsn": lsn, "timeline": timeline,
            "role": "standby" if in_recovery else "primary"}


def compare(expected, actual):
    """The tables whose content differs between two content_checksums results, sorted, each with both sides
    ({"table", "expected", "actual"}; a side is None where the table is missing)."""
    differences = []
    for key in sorted(set(expected or {}) | set(actual or {})):
        want = (expected or {}).get(key)
        have = (actual or {}).get(key)
        if not _same(want, have):
            differences.append({"table": key, "expected": want, "actual": have})
    return differences


def _same(want, have):
    if want is None or have is None:
        return want is None and have is None
    return int(want.get("rows", -1)) == int(have.get("rows", -2)) and want.get("digest") == have.get("digest")


def describe(differences):
    """One line for a list from compare(): which tables differ, and how."""
    parts = []
    for item in differences:
        want, have = item["expected"], item["actual"]
        if want is None:
            parts.append("%s (not in the reference)" % item["table"])
        elif have is None:
            parts.append("%s (missing)" % item["table"])
        elif int(want["rows"]) != int(have["rows"]):
            parts.append("%s (%s rows, expected %s)" % (item["table"], have["rows"], want["rows"]))
        else:
            parts.append("%s (same %s rows, different content)" % (item["table"], have["rows"]))
    return ", ".join(parts)


def checksum_database(params, database, tables=None, schemas=None, exclude=None, expected=None):
    """The module's work: connect with community.postgresql-shaped `params`, checksum, compare with
    `expected` (an earlier result's tables) when given. Nothing is changed."""
    conn = pg.connect(params, database)
    try:
        result = checksum_report(conn, tables=tables, schemas=schemas, exclude=exclude)
    finally:
        conn.close()
    result["changed"] = False
    total = sum(item["rows"] for item in result["tables"].values())
    summary = "%d tables, %d rows in %s at %s" % (len(result["tables"]), total, database, result["lsn"])
    if expected is None:
        result["msg"] = summary
        return result
    differences = compare(expected, result["tables"])
    result["differences"] = differences
    result["matches"] = not differences
    if differences:
        result["msg"] = "%s; %d of %d tables differ: %s" % (
            summary, len(differences), len(set(expected) | set(result["tables"])), describe(differences))
    else:
        result["msg"] = "%s; every table matches" % summary
    return result
