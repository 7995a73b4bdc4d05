"""contentsum: the order-independent checksum of every table's content that failback compares.

The SQL builder and the choice of tables are tested as plain Python; the checksum itself against a
real PostgreSQL of the lab (two scratch databases in the primary's cluster, dropped at the end):
the same rows in another physical order give the same digests, one changed row does not."""

import os

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import contentsum
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from tests.helpers.lab_db import open_connection, rows


def test_the_statement_quotes_names_and_reads_only_the_table_itself():
    sql = contentsum.table_checksum_sql("public", 'Odd "name"')
    assert 'FROM ONLY "public"."Odd ""name""" AS t' in sql
    assert "md5(t::text)" in sql and sql.count("sum(") == 2 and "count(*)" in sql
    with pytest.raises(DRError):
        contentsum.table_checksum_sql("public", "")


def test_session_settings_fix_the_text_form_for_the_transaction_only():
    statements = contentsum.settings_sql()
    assert "SET LOCAL TimeZone TO 'UTC'" in statements
    assert all(statement.startswith("SET LOCAL ") for statement in statements)


LISTED = [("public", "Invoice", "p"), ("public", "User", "p"), ("public", "cache", "u"),
          ("audit", "events_2026", "p"), ("public", "AuditLog", "p")]


def test_every_permanent_table_is_in_scope_and_the_others_are_said_left_out():
    in_scope, left_out = contentsum.select_tables(LISTED, exclude=["AuditLog"])
    assert in_scope == [("audit", "events_2026"), ("public", "Invoice"), ("public", "User")]
    assert left_out == {"public.cache": "unlogged", "public.AuditLog": "excluded"}
    assert contentsum.select_tables(LISTED, schemas=["audit"])[0] == [("audit", "events_2026")]


def test_named_tables_must_exist():
    assert contentsum.select_tables(LISTED, tables=["Invoice", "audit.events_2026"])[0] == [
        ("audit", "events_2026"), ("public", "Invoice")]
    with pytest.raises(DRError, match="no such table: public.no_such_table"):
        contentsum.select_tables(LISTED, tables=["Invoice", "no_such_table"])


def test_compare_names_each_table_that_differs_and_how():
    dr = {"public.a": {"rows": 2, "digest": "x"}, "public.b": {"rows": 1, "digest": "y"},
          "public.c": {"rows": 5, "digest": "z"}}
    primary = {"public.a": {"rows": 2, "digest": "x"}, "public.b": {"rows": 1, "digest": "other"},
               "public.d": {"rows": 0, "digest": "w"}}
    differences = contentsum.compare(dr, primary)
    assert [item["table"] for item in differences] == ["public.b", "public.c", "public.d"]
    assert contentsum.describe(differences) == (
        "public.b (same 1 rows, different content), public.c (missing), public.d (not in the reference)")
    assert contentsum.compare(dr, dict(dr)) == []
    assert "3 rows, expected 5" in contentsum.describe(contentsum.compare(dr, dict(dr, **{"public.c": {
        "rows": 3, "digest": "z"}})))


# Against the lab --------------------------------------------------------------------------

SCHEMA = """
CREATE SCHEMA billing;
CREATE TABLE "Invoice" (id int PRIMARY KEY, amount numeric, note text, "createdAt" timestamptz, ratio float8);
CREATE TABLE billing.lines (invoice int, item text);
CREATE UNLOGGED TABLE scratch (x int);
CREATE TABLE events (id int, at date) PARTITION BY RANGE (at);
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
"""


def fill(conn, order):
    with conn.cursor() as cur:
        cur.execute(SCHEMA)
        for i in order:
            cur.execute("""INSERT INTO "Invoice" VALUES (%s, %s, %s, '2026-12-07 10:00:00+00'::timestamptz + %s * '1 s'::interval,
                           %s)""", (i, i * 1.5, None if i % 7 == 0 else "note %d" % i, i, 1.0 / (i + 1)))
            cur.execute("INSERT INTO billing.lines VALUES (%s, 'item'), (%s, 'item')", (i % 10, i % 10))
        cur.execute("INSERT INTO scratch SELECT generate_series(1, %s)", (len(order),))
        cur.execute("INSERT INTO events SELECT g, date '2026-03-01' + g FROM generate_series(1, 40) g")


@pytest.fixture(scope="module")
def databases(lab):
    """Two databases with the same rows written in opposite orders (and, in the second, moved by an
    update): (connect, name_a, name_b)."""
    pg = lab["sites"]["primary"]["postgres"]

    def connect(database, **options):
        conn = open_connection(pg["host"], pg["port"], pg["user"], pg["password"], database)
        for name, value in options.items():
            with conn.cursor() as cur:
                cur.execute("SET %s TO %%s" % name, (value,))
        return conn

    names = ["contentsum_a_%d" % os.getpid(), "contentsum_b_%d" % os.getpid()]
    for name in names:
        rows(connect("postgres"), "DROP DATABASE IF EXISTS %s" % name)
        rows(connect("postgres"), "CREATE DATABASE %s" % name)
    try:
        first = connect(names[0])
        fill(first, range(1, 201))
        first.close()
        second = connect(names[1])
        fill(second, range(200, 0, -1))
        with second.cursor() as cur:  # a third of the rows moved in the heap, content the same
            cur.execute('UPDATE "Invoice" SET amount = amount WHERE id % 3 = 0')
        second.close()
        yield connect, names[0], names[1]
    finally:
        for name in names:
            rows(connect("postgres"), "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)


def checksums(connect, database, **kwargs):
    conn = connect(database)
    try:
        return contentsum.content_checksums(conn, **kwargs)
    finally:
        conn.close()


@pytest.mark.lab
def test_the_same_rows_in_another_order_have_the_same_checksums(databases):
    connect, first, second = databases
    a = checksums(connect, first)
    assert sorted(a) == ["billing.lines", "public.Invoice", "public.events_2026"]   # unlogged and parent left out
    assert a["public.Invoice"]["rows"] == 200 and a["billing.lines"]["rows"] == 400
    assert a["public.events_2026"]["rows"] == 40
    assert len(set(item["digest"] for item in a.values())) == 3
    assert contentsum.compare(a, checksums(connect, second)) == []


@pytest.mark.lab
def test_session_settings_of_the_connection_do_not_change_the_digest(databases):
    connect, first = databases[:2]
    conn = connect(first, TimeZone="Asia/Kolkata", DateStyle="SQL, DMY", extra_float_digits="0")
    try:
        other = contentsum.content_checksums(conn)
        with conn.cursor() as cur:  # the settings were only changed inside the checksum's transaction
            cur.execute("SHOW TimeZone")
            assert cur.fetchone()[0] == "Asia/Kolkata"
        assert conn.autocommit is True
    finally:
        conn.close()
    assert other == checksums(connect, first)


@pytest.mark.lab
def test_one_changed_row_changes_its_table_and_only_it(databases):
    connect, first, second = databases
    before = checksums(connect, second)
    rows(connect(second), """UPDATE "Invoice" SET note = 'note 100 ' WHERE id = 100""")
    try:
        after = checksums(connect, second)
        differences = contentsum.compare(checksums(connect, first), after)
        assert [item["table"] for item in differences] == ["public.Invoice"]
        assert after["public.Invoice"]["rows"] == 200          # a count would not see it
        assert "same 200 rows, different content" in contentsum.describe(differences)
    finally:
        rows(connect(second), """UPDATE "Invoice" SET note = 'note 100' WHERE id = 100""")
    assert checksums(connect, second) == before


@pytest.mark.lab
def test_a_duplicated_row_does_not_cancel_out_and_a_null_is_not_an_empty_string(databases):
    connect, second = databases[0], databases[2]
    rows(connect(second), "CREATE TABLE pairs (k int, v text)")
    try:
        def digest():
            return checksums(connect, second, tables=["pairs"])["public.pairs"]["digest"]
        empty = digest()
        rows(connect(second), "INSERT INTO pairs VALUES (1, 'same')")
        one = digest()
        rows(connect(second), "INSERT INTO pairs VALUES (1, 'same')")   # an XOR of the two would be the empty one's
        two = digest()
        rows(connect(second), "TRUNCATE pairs; INSERT INTO pairs VALUES (1, NULL)")
        null = digest()
        rows(connect(second), "TRUNCATE pairs; INSERT INTO pairs VALUES (1, '')")
        assert len(set([empty, one, two, null, digest()])) == 5
    finally:
        rows(connect(second), "DROP TABLE pairs")


@pytest.mark.lab
def test_a_missing_table_fails_naming_it_and_the_database_module_entry_compares(databases, lab):
    connect, first, second = databases
    with pytest.raises(DRError, match="no such table: public.nowhere"):
        checksums(connect, first, tables=["nowhere"])
    pg = lab["sites"]["primary"]["postgres"]
    params = {"login_host": pg["host"], "login_port": pg["port"], "login_user": pg["user"],
              "login_password": pg["password"]}
    reference = contentsum.checksum_database(params, first)
    assert reference["changed"] is False and reference["role"] == "primary" and reference["timeline"] >= 1
    assert reference["left_out"] == {"public.scratch": "unlogged"}
    same = contentsum.checksum_database(params, second, expected=reference["tables"])
    assert same["matches"] is True and same["differences"] == [] and "every table matches" in same["msg"]
    rows(connect(second), "DELETE FROM events WHERE id = 40")
    try:
        differ = contentsum.checksum_database(params, second, expected=reference["tables"])
    finally:
        rows(connect(second), "INSERT INTO events VALUES (40, date '2026-03-01' + 40)")
    assert differ["matches"] is False
    assert "public.events_2026 (39 rows, expected 40)" in differ["msg"], differ["msg"]
