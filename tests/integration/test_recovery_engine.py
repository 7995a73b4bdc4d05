"""recovery.py and assess.py against real PostgreSQL: two small databases on the lab's primary
cluster stand for "production" and "the copy restored to just before the deletion".

The primary, not DR: under make test's two workers, scenario 2 may run first on this lab and
leave DR a read-only standby (its failback does)."""

import psycopg2
import pytest

from ansible_collections.auditron.dr.plugins.module_utils import assess, recovery
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from lab import seed

pytestmark = pytest.mark.lab

SOURCE_DB, TARGET_DB = "recovery_test_source", "recovery_test_target"
SITE = "primary"


def params(lab, database):
    pg = lab["sites"][SITE]["postgres"]
    return {"login_host": pg["host"], "login_port": pg["port"], "login_user": pg["user"],
            "login_password": pg["password"], "db": database}


def connect(lab, database):
    pg = lab["sites"][SITE]["postgres"]
    conn = psycopg2.connect(host=pg["host"], port=pg["port"], user=pg["user"], password=pg["password"],
                            dbname=database)
    conn.autocommit = True
    return conn


def make_database(lab, name, invoices=60):
    admin = connect(lab, "postgres")
    with admin.cursor() as cur:
        cur.execute('DROP DATABASE IF EXISTS "%s"' % name)
        cur.execute('CREATE DATABASE "%s"' % name)
    admin.close()
    conn = connect(lab, name)
    with conn.cursor() as cur:
        cur.execute(seed.SCHEMA)
        cur.execute(seed.USERS_SQL, {"lo": 1, "hi": 10, "n": 10})
        cur.execute(seed.INVOICES_SQL, {"lo": 1, "hi": invoices, "n": invoices, "users": 10})
        cur.execute(seed.INDEXES_AND_TRIGGERS)
    return conn


@pytest.fixture
def databases(lab):
    source = make_database(lab, SOURCE_DB)
    target = make_database(lab, TARGET_DB)
    yield source, target
    source.close()
    target.close()
    admin = connect(lab, "postgres")
    with admin.cursor() as cur:
        for name in (SOURCE_DB, TARGET_DB):
            cur.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
    admin.close()


def rows(conn, ids):
    with conn.cursor() as cur:
        cur.execute('SELECT * FROM "Invoice" WHERE id = ANY(%s) ORDER BY id', (ids,))
        return cur.fetchall()


def test_exactly_the_deleted_rows_come_back_and_a_second_run_changes_nothing(databases):
    source, target = databases
    with target.cursor() as cur:
        cur.execute('DELETE FROM "Invoice" WHERE id IN (3, 4, 5, 40)')
        cur.execute("BEGIN; SET LOCAL auditron.audit_action = 'ERASE'; DELETE FROM \"Invoice\" WHERE id = 7; COMMIT;")
        # later work goes on: a changed row, and id 40 re-created with new content
        cur.execute('UPDATE "Invoice" SET status = %s WHERE id = 10', ("paid-later",))
        cur.execute('INSERT INTO "Invoice" (id, "userId", number, "amountCents", status) '
                    "VALUES (40, 1, 'INV-RECREATED', 1, 'draft')")
    found = recovery.find_deletions(target, "Invoice")
    assert found["deleted_ids"] == ["3", "4", "5", "40"]
    assert found["missing_now_ids"] == ["3", "4", "5"]  # 40 was re-created
    assert found["erased_ids"] == ["7"]
    assert found["earliest_deletion"]

    result = recovery.reimport_rows(source, target, "Invoice", found["deleted_ids"], skip_ids=found["erased_ids"])
    assert result["inserted_ids"] == ["3", "4", "5"]
    assert result["already_present_ids"] == ["40"]
    assert rows(target, [3, 4, 5]) == rows(source, [3, 4, 5])  # identical, every column
    assert rows(target, [40])[0][2] == "INV-RECREATED"            # re-created row left alone
    assert rows(target, [7]) == []                                # the erasure stays erased
    with target.cursor() as cur:
        cur.execute('SELECT status FROM "Invoice" WHERE id = 10')
        assert cur.fetchone()[0] == "paid-later"                  # later change intact

    again = recovery.reimport_rows(source, target, "Invoice", found["deleted_ids"], skip_ids=found["erased_ids"])
    assert again["inserted_ids"] == []


def test_check_mode_inserts_nothing(databases):
    source, target = databases
    with target.cursor() as cur:
        cur.execute('DELETE FROM "Invoice" WHERE id IN (11, 12)')
    result = recovery.reimport_rows(source, target, "Invoice", ["11", "12"], check_mode=True)
    assert result["inserted_ids"] == ["11", "12"]
    assert rows(target, [11, 12]) == []


@pytest.mark.parametrize("table", ["NoSuchTable", 'Invoice"; DROP TABLE "User"; --', "Invoice' OR '1'='1"])
def test_bad_table_names_are_refused_and_never_executed(databases, table):
    target = databases[1]
    with pytest.raises(DRError) as err:
        recovery.find_deletions(target, table)
    assert "does not exist" in str(err.value)
    with target.cursor() as cur:
        cur.execute("""SELECT to_regclass('public."User"') IS NOT NULL""")
        assert cur.fetchone()[0]


def test_window_must_be_ordered(databases):
    with pytest.raises(DRError, match="recover_since .* is not before recover_until"):
        recovery.find_deletions(databases[1], "Invoice", since="2026-11-24T10:00:00Z", until="2026-11-24T09:00:00Z")
    with pytest.raises(DRError, match="recover_since 'noon' is not a timestamp"):
        recovery.find_deletions(databases[1], "Invoice", since="noon")


def test_assess_finds_a_missing_table_and_a_healthy_database(lab, databases):
    target = databases[1]
    without_extension = assess.assess(params(lab, TARGET_DB), TARGET_DB, bin_dir=lab["sites"][SITE]["postgres"]["bin_dir"])
    assert without_extension["verdict"] == "healthy"
    assert without_extension["amcheck"]["ok"] is None and "not installed" in without_extension["notes"][0]
    with target.cursor() as cur:
        cur.execute("CREATE EXTENSION amcheck")
    healthy = assess.assess(params(lab, TARGET_DB), TARGET_DB, tables=["User", "Invoice"],
                            bin_dir=lab["sites"][SITE]["postgres"]["bin_dir"])
    assert healthy["verdict"] == "healthy", healthy["findings"]
    assert healthy["amcheck"]["ok"]
    with target.cursor() as cur:
        cur.execute('DROP TABLE "Invoice"')
    damaged = assess.assess(params(lab, TARGET_DB), TARGET_DB, tables=["User", "Invoice"], amcheck=False)
    assert damaged["verdict"] == "damaged"
    assert damaged["findings"] == ["table Invoice: does not exist"]


def test_assess_says_unreachable(lab):
    bad = dict(params(lab, "auditron"), login_port=9)
    result = assess.assess(bad, "auditron")
    assert result["verdict"] == "unreachable"
    assert "does not answer" in result["findings"][0]
