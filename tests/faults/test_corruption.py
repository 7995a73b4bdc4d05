"""Damaged backups: one flipped byte in a stored artifact, and a truncated one.

Found before anything is restored (the catalog's deep check reads every copy; a restore verifies
a copy before it creates its target), and a restore of "the latest valid" backup uses the
previous one when every copy of the newest is damaged. Driven through the backup_catalog and
pg_restore modules, as a playbook runs them.
"""

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import catalog, logicalrestore, pgdump
from ansible_collections.auditron.dr.plugins.module_utils.storage import location_from_params
from tests.faults.conftest import app_running, production_databases, run_restore_database
from tests.helpers import faults

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def flip_byte(location, key, offset):
    data = bytearray(location.get_bytes(key))
    data[offset] ^= 0x01
    location.put_bytes(key, bytes(data))


def short(reason):
    if "authentication tag mismatch" in reason:
        return "GCM tag mismatch" + reason[reason.index(" in chunk"):].split(" (")[0]
    if "the manifest says" in reason:
        return "size differs from the manifest (truncated)"
    return reason[:80]


def truncate(location, key, keep):
    location.put_bytes(key, location.get_bytes(key)[:keep])


@pytest.mark.fault("one flipped byte and a truncated object in a backup",
                   "found before anything is restored (catalog deep check, restore verification); "
                   "\"latest valid\" restores the previous backup; asked for by id, the damaged one is refused "
                   "and nothing is created")
def test_flipped_byte_and_truncated_object(fault, lab, postgres, small_db, key_file, places):
    encryption = faults.file_encryption(key_file)
    older = pgdump.backup(postgres, places.locations(), encryption, database=small_db)
    faults.sql(postgres, 'INSERT INTO "User" SELECT g, %s || g, now() FROM generate_series(100001, 100010) g',
               database=small_db, args=("after-the-older-backup-",))
    newer = pgdump.backup(postgres, places.locations(), encryption, database=small_db)
    key = catalog.artifact_key(newer["backup_id"])
    # One bit in the middle of two copies (same size: only a checksum can tell), the third cut short.
    flip_byte(places.location("s3-us-east-1"), key, newer["size"] // 2)
    flip_byte(places.location("s3-eu-west-1"), key, newer["size"] // 3)
    truncate(places.location("local"), key, newer["size"] - 4096)
    connection = faults.module_connection(postgres)
    target = "%s_corrupt" % small_db
    try:
        listed, _raw = faults.ansible_module("backup_catalog", {"series": small_db, "locations": places.params,
                                                                "deep": True, "encryption": encryption})
        assert not listed.get("failed"), listed
        damaged = next(item for item in listed["backups"] if item["id"] == newer["backup_id"])
        assert listed["latest_valid_id"] == older["backup_id"] and not damaged["valid"], damaged
        reasons = dict((name, state["detail"]) for name, state in damaged["locations"].items())
        assert "authentication tag mismatch" in reasons["s3-us-east-1"], reasons
        assert "authentication tag mismatch" in reasons["s3-eu-west-1"], reasons
        assert "the manifest says" in reasons["local"], reasons
        fault.saw("backup_catalog deep: %s invalid (%s), latest valid %s" % (
            newer["backup_id"], "; ".join("%s: %s" % (name, short(reason)) for name, reason in sorted(reasons.items())),
            older["backup_id"]))

        by_id, _raw = faults.ansible_module("pg_restore", dict(connection, backup_id=newer["backup_id"],
                                                               target_db=target, locations=places.params,
                                                               encryption=encryption))
        assert by_id.get("failed") and "no copy verified" in by_id["msg"] and "\n" not in by_id["msg"], by_id
        assert not faults.database_exists(postgres, target)
        fault.saw("pg_restore backup_id=%s refused, target not created" % newer["backup_id"])

        latest, _raw = faults.ansible_module("pg_restore", dict(connection, latest=True, series=small_db,
                                                                target_db=target, locations=places.params,
                                                                encryption=encryption))
        assert not latest.get("failed"), latest
        assert latest["backup_id"] == older["backup_id"] and latest["counts_match"], latest
        tried = [(attempt["backup_id"], attempt["location"], attempt["ok"]) for attempt in latest["attempts"]]
        assert tried[:3] == [(newer["backup_id"], name, False) for name in ("local", "s3-us-east-1", "s3-eu-west-1")]
        assert tried[3] == (older["backup_id"], "local", True), tried
        rows = faults.sql(postgres, "SELECT count(*) FROM \"User\" WHERE email LIKE 'after-the-older-backup-%%'",
                          database=target)[0][0]
        assert rows == 0, "the restored database holds rows of the damaged backup"
        fault.saw("pg_restore latest: every copy of %s refused before the target was made, restored %s "
                  "(row counts match its manifest)" % (newer["backup_id"], older["backup_id"]))
    finally:
        faults.sql(postgres, 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % target)
    # Nothing was lost: the older backup still verifies everywhere; only the damaged one is invalid.
    cat = catalog.Catalog.load(places.locations(), series=small_db)
    entry = cat.verify_deep(cat.entry(older["backup_id"]),
                            lambda where, item: logicalrestore.verify_copy(where, item, encryption))
    fault.lost(sum(1 for result in entry.deep.values() if not result["verified"]) + 3 - len(entry.deep))


@pytest.mark.fault("logical restore fails after the app was stopped (its only copy has a flipped byte)",
                   "restore_database.yml finds the damage before it creates anything, puts production back as it "
                   "was (its database keeps its name and rows), starts the app again and fails in one line")
def test_restore_failing_after_the_app_stopped_puts_production_back(fault, lab, postgres, key_file,
                                                                    isolated_production, tmp_path):
    prod = isolated_production
    rows = faults.sql(postgres, 'SELECT count(*) FROM "Invoice"', database=prod["database"])[0][0]
    encryption = faults.file_encryption(key_file)
    backup_dir = tmp_path / "backups"
    local = {"name": "local", "type": "local", "path": str(backup_dir / "postgres" / "logical")}
    made = pgdump.backup(postgres, [local], encryption, database=prod["database"])
    # Same size: the catalog lists it as valid; only the restore's verification can tell.
    flip_byte(location_from_params(local), catalog.artifact_key(made["backup_id"]), made["size"] // 2)
    run = run_restore_database(prod, tmp_path, made["backup_id"], auditron_dr_backup_encryption=encryption)
    databases = production_databases(postgres, prod)
    kept = prod["database"] in databases
    rows_after = faults.sql(postgres, 'SELECT count(*) FROM "Invoice"', database=prod["database"])[0][0] if kept else 0
    running = app_running(prod)
    said = [line.strip() for line in run.output.splitlines() if "restore_database.yml failed at" in line]
    fault.saw("rc %d; production database %s (%d of %d rows); other databases: %s; app %s" % (
        run.rc, "kept its name" if kept else "GONE", rows_after, rows,
        ", ".join(name for name in databases if name != prod["database"]) or "none",
        "running again" if running else "NOT running"))
    fault.saw("the run said: %s" % (" ".join(" ".join(said).split())[:300] or "-"))
    fault.lost((0 if kept else 1) + (rows - rows_after if kept else 0))
    assert run.rc != 0, "a restore of a damaged backup succeeded: %s" % run
    assert "no copy verified" in run.flat and "Production was put back as it was" in run.flat, run
    assert running, "the app was left stopped: %s" % run
    assert databases == [prod["database"]], "databases left behind: %s" % databases
