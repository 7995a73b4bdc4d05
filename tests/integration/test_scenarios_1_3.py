"""Scenario 1 (restore_database.yml) and Scenario 3 (recover_deleted.yml) end to end on the lab's
primary site: real damage, real pgBackRest PITR, the real app behind its URL."""

import glob
import json
import os
import shutil
import time
import urllib.request

import psycopg2
import pytest

from lab import servers
from tests.helpers import lab_db

pytestmark = [pytest.mark.lab, pytest.mark.slow]

PHASES_1 = ["assess", "identify_backup", "stop_app", "restore", "verify_restore", "swap", "start_app", "verify_app"]


def query(lab, sql, args=None):
    return lab_db.query(lab, "primary", sql, args)


def app_invoices(lab, site="primary"):
    app = lab["sites"][site]["app"]
    request = urllib.request.Request(app["url"] + "/api/invoices?limit=1",
                                     headers={"Authorization": "Bearer " + app["token"]})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def report(run):
    found = glob.glob(str(run.report_dir / "*" / "report.json"))
    assert len(found) == 1, found
    with open(found[0]) as handle:
        return json.load(handle)


def remove_damaged_copies(lab):
    for path in glob.glob(lab["sites"]["primary"]["postgres"]["data_dir"] + ".damaged-*") + \
            glob.glob(lab["sites"]["primary"]["postgres"]["data_dir"] + ".restored-*"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def full_backup(physical_backup):
    """pgBackRest configured and a full backup in every repository (tests/integration/conftest.py)."""
    yield
    remove_damaged_copies(physical_backup)


def corrupt_relation_file(lab, table):
    """Overwrite one page of the table's file while the server is down, as a failing disk would."""
    path = query(lab, "SELECT pg_relation_filepath(%s::regclass)", ('"%s"' % table,))[0][0]
    data_dir = lab["sites"]["primary"]["postgres"]["data_dir"]
    servers.stop_cluster(data_dir)
    with open(os.path.join(data_dir, path), "r+b") as handle:
        handle.seek(8192 * 2 + 200)
        handle.write(os.urandom(512))
    servers.start_cluster("primary")


def test_check_mode_changes_nothing(lab, full_backup, run_playbook):
    data_dir = lab["sites"]["primary"]["postgres"]["data_dir"]
    before = os.stat(data_dir).st_ino
    run = run_playbook("restore_database.yml", check=True)
    assert run.rc == 0, run
    flat = " ".join(run.stdout.split())  # YAML output folds long lines
    assert "would restore backup" in flat and "beside production" in flat
    assert os.stat(data_dir).st_ino == before
    assert not glob.glob(data_dir + ".damaged-*")
    assert app_invoices(lab)["count"] > 0


def test_production_inventory_needs_confirmation(lab, full_backup, run_playbook):
    run = run_playbook("restore_database.yml", extra_vars={"auditron_dr_require_confirmation": True})
    assert run.rc != 0
    assert "needs confirm_restore=true" in run.output and "nothing was changed" in run.output
    assert app_invoices(lab)["count"] > 0


def test_bad_target_times_are_refused_before_anything_changes(lab, full_backup, run_playbook):
    for value, expected in (("last tuesday", "is not a timestamp"), ("2001-01-01T00:00:00Z", "2001-01-01")):
        run = run_playbook("restore_database.yml", extra_vars={"restore_target_time": value})
        assert run.rc != 0
        assert expected in run.output, run
        assert app_invoices(lab)["count"] > 0  # the app was never stopped


def test_a_failed_verification_puts_production_back(lab, full_backup, run_playbook):
    data_dir = lab["sites"]["primary"]["postgres"]["data_dir"]
    before = os.stat(data_dir).st_ino
    run = run_playbook("restore_database.yml",
                       extra_vars={"pg_recovery_check_tables": ["NoSuchTable"], "restore_backup_after": False})
    assert run.rc != 0
    assert "Production was put back as it was" in run.output, run
    assert os.stat(data_dir).st_ino == before
    assert not glob.glob(os.path.join(lab["lab"]["pg_dir"], "restore-*"))
    assert app_invoices(lab)["count"] > 0
    phases = {p["name"]: p["status"] for p in report(run)["phases"]}
    assert phases["verify_restore"] == "failed"


def test_damaged_relation_file_is_restored_to_the_latest_commit(lab, full_backup, run_playbook):
    marker = "INV-RESTORE-MARKER-%d" % int(time.time())
    query(lab, 'INSERT INTO "Invoice" ("userId", number, "amountCents", status) VALUES (1, %s, 42, %s)',
          (marker, "sent"))
    expected = query(lab, 'SELECT count(*), max(id) FROM "Invoice"')[0]
    corrupt_relation_file(lab, "Invoice")
    with pytest.raises(psycopg2.Error):
        query(lab, 'SELECT count(*), sum(length(description)) FROM "Invoice"')

    run = run_playbook("restore_database.yml")
    assert run.rc == 0, run
    rep = report(run)
    assert [p["name"] for p in rep["phases"]][:len(PHASES_1)] == PHASES_1
    assert all(p["status"] == "ok" for p in rep["phases"]), rep["phases"]
    assert rep["rto"]["achieved_seconds"] < 40 * 60
    assert rep["markers"]["recovery_point"]
    assert "damaged" in json.dumps(rep["checks"]) or "assessment" in json.dumps(rep)
    # every committed row is back, the damaged copy is kept, the app serves the restored data
    assert query(lab, 'SELECT count(*), max(id) FROM "Invoice"')[0] == expected
    assert query(lab, 'SELECT number FROM "Invoice" WHERE number = %s', (marker,)) == [(marker,)]
    assert query(lab, 'SELECT sum(length(description)) > 0 FROM "Invoice"')[0][0]
    assert glob.glob(lab["sites"]["primary"]["postgres"]["data_dir"] + ".damaged-*")
    assert not glob.glob(os.path.join(lab["lab"]["pg_dir"], "restore-*"))  # nothing left behind
    served = app_invoices(lab)
    assert (served["count"], served["max_id"]) == tuple(expected)


def test_dropped_table_is_restored_to_a_chosen_time(lab, full_backup, run_playbook):
    count_before = query(lab, 'SELECT count(*) FROM "Invoice"')[0][0]
    time.sleep(1.1)
    target = query(lab, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")[0][0]
    time.sleep(1.1)
    query(lab, 'INSERT INTO "Invoice" ("userId", number, "amountCents", status) VALUES (1, %s, 1, %s)',
          ("INV-AFTER-TARGET-%d" % int(time.time()), "draft"))
    query(lab, 'DROP TABLE "Invoice" CASCADE')

    run = run_playbook("restore_database.yml",
                       extra_vars={"restore_target_time": target, "restore_backup_after": False})
    assert run.rc == 0, run
    assert query(lab, 'SELECT count(*) FROM "Invoice"')[0][0] == count_before
    assert query(lab, "SELECT count(*) FROM \"Invoice\" WHERE number LIKE 'INV-AFTER-TARGET-%'")[0][0] == 0
    rep = report(run)
    assert rep["backup_used"]["target"]["time"]
    remove_damaged_copies(lab)


def invoice_rows(lab, ids):
    return query(lab, 'SELECT * FROM "Invoice" WHERE id = ANY(%s) ORDER BY id', (ids,))


def test_deleted_rows_come_back_exactly_once(lab, full_backup, run_playbook):
    ids = [int(r[0]) for r in query(lab, 'SELECT id FROM "Invoice" ORDER BY id DESC LIMIT 6 OFFSET 50')]
    deleted, erased = ids[:5], ids[5]
    originals = invoice_rows(lab, deleted)
    conn = lab_db.connect(lab)
    with conn.cursor() as cur:
        cur.execute('DELETE FROM "Invoice" WHERE id = ANY(%s)', (deleted,))
        cur.execute("BEGIN")
        cur.execute("SET LOCAL auditron.audit_action = 'ERASE'")
        cur.execute('DELETE FROM "Invoice" WHERE id = %s', (erased,))
        cur.execute("COMMIT")
        # other work goes on after the deletion
        cur.execute('UPDATE "Invoice" SET status = %s WHERE id = (SELECT id FROM "Invoice" ORDER BY id DESC '
                    'LIMIT 1 OFFSET 200) RETURNING id', ("paid-later",))
        changed_id = cur.fetchone()[0]
        cur.execute('INSERT INTO "Invoice" ("userId", number, "amountCents", status) VALUES (1, %s, 5, %s) '
                    "RETURNING id", ("INV-LATER-%d" % int(time.time()), "draft"))
        later_id = cur.fetchone()[0]
    conn.close()

    run = run_playbook("recover_deleted.yml", extra_vars={"recover_table": "Invoice"})
    assert run.rc == 0, run
    assert invoice_rows(lab, deleted) == originals                   # identical rows back
    assert invoice_rows(lab, [erased]) == []                         # the erasure stays
    assert query(lab, 'SELECT status FROM "Invoice" WHERE id = %s', (changed_id,))[0][0] == "paid-later"
    assert invoice_rows(lab, [later_id])                             # later insert intact
    rep = report(run)
    recovered = rep["extra"]["recovered"]
    assert set(str(i) for i in deleted) <= set(recovered["inserted_ids"])
    assert str(erased) in recovered["skipped_erased_ids"]
    assert [p["name"] for p in rep["phases"]] == ["identify_deletion", "find_backup", "restore_temp",
                                                  "extract_import", "verify"]
    scratch = glob.glob(os.path.join(lab["lab"]["pg_dir"], "recover-*"))
    assert scratch == [], scratch                                    # the scratch cluster is gone

    again = run_playbook("recover_deleted.yml", extra_vars={"recover_table": "Invoice"})
    assert again.rc == 0, again
    assert "Nothing to recover" in " ".join(again.stdout.split())
    recap = [line for line in again.stdout.splitlines() if line.startswith("primary ")]
    assert recap and "changed=0" in recap[-1], recap


@pytest.mark.parametrize("extra, expected", [
    ({"recover_table": "NoSuchTable"}, "table public.NoSuchTable does not exist"),
    ({"recover_table": 'Invoice"; DROP TABLE "User"; --'}, "does not exist"),
    ({"recover_since": "2099-01-01T00:00:00Z"}, "no deletions from Invoice in the audit log since 2099-01-01"),
])
def test_recover_bad_input_is_one_line_and_touches_nothing(lab, full_backup, run_playbook, extra, expected):
    users = query(lab, 'SELECT count(*) FROM "User"')[0][0]
    run = run_playbook("recover_deleted.yml", extra_vars=extra)
    assert run.rc != 0
    assert expected in run.output, run
    assert query(lab, 'SELECT count(*) FROM "User"')[0][0] == users


def test_recover_check_mode_changes_nothing(lab, full_backup, run_playbook):
    victim = query(lab, 'SELECT id FROM "Invoice" ORDER BY id DESC LIMIT 1 OFFSET 80')[0][0]
    query(lab, 'DELETE FROM "Invoice" WHERE id = %s', (victim,))
    run = run_playbook("recover_deleted.yml", check=True)
    assert run.rc == 0, run
    assert "would insert" in " ".join(run.stdout.split())
    assert invoice_rows(lab, [victim]) == []
    assert not glob.glob(os.path.join(lab["lab"]["pg_dir"], "recover-*"))
