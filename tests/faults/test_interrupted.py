"""Backups interrupted half-way: the backup process killed -9, and the database killed under it.

A backup that did not finish must never be taken for one that did: no manifest, never listed as
valid, nothing half-written visible, the previous backups untouched, and the next run completes.
"""

import os
import re
import signal
import time

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import catalog, logicalrestore, pgdump
from tests.faults.conftest import scratch_counts
from tests.helpers import faults

pytestmark = [pytest.mark.lab, pytest.mark.slow]

KILL_AFTER_STORED = 4 << 20      # bytes of the artifact on the local disk when the kill comes
THROTTLE = 3 << 20               # bytes per second the first S3 region accepts: a backup lasting seconds


def killed_backup_id(log_text):
    match = re.search(r"logical backup (\S+) of ", log_text)
    assert match, "the engine did not log the backup id: %s" % log_text[-2000:]
    return match.group(1)


def largest_temp_file(directory):
    sizes = [os.path.getsize(path) for path in faults.local_temp_files(directory) if os.path.exists(path)]
    return max(sizes) if sizes else 0


def leftovers(lab, places):
    """What a killed writer can leave, by location: local temp files, unfinished multipart
    uploads, and the S3 server's own temp files for them."""
    found = {"local temp files": faults.local_temp_files(places.local_dir)}
    for region in ("us-east-1", "eu-west-1"):
        found["unfinished uploads in %s" % region] = faults.unfinished_uploads(lab, region, places.prefix)
        found["server temp files in %s" % region] = faults.server_temp_files(lab, region, places.prefix)
    return dict((what, items) for what, items in found.items() if items)


def describe_leftovers(found):
    return ", ".join("%d %s" % (len(items), what) for what, items in found.items()) or "none"


def ids_anywhere(lab, places, backup_id):
    """Every object whose name holds `backup_id`, as the S3 servers and the local location list
    them (a local temp file is no object: the location's listing never shows one)."""
    found = [key for region in ("us-east-1", "eu-west-1") for key in faults.s3_keys(lab, region, places.prefix)
             if backup_id in key]
    if os.path.isdir(places.local_dir):
        found += [info.key for info in places.location("local").list("") if backup_id in info.key]
    return found


def previous_backup_lost(postgres, places, key_file, backup_id, counts_before, database):
    """How many things the fault cost: the earlier backup (one per location whose copy no
    longer verifies) and the source's rows (any table whose count changed)."""
    lost = 0
    cat = catalog.Catalog.load(places.locations(), series=database)
    entry = cat.entry(backup_id)
    if entry is None or not entry.valid:
        return 1 + len(places.params)
    cat.verify_deep(entry, lambda where, item: logicalrestore.verify_copy(where, item, faults.file_encryption(key_file)))
    lost += sum(1 for result in entry.deep.values() if not result["verified"])
    lost += len(places.params) - len(entry.deep)
    lost += sum(1 for table_name, count in scratch_counts(postgres, database).items()
                if counts_before[table_name] != count)
    return lost


def earlier_backup(postgres, places, key_file, database):
    """(encryption, row counts, a backup of `database` in every location) before the fault."""
    encryption = faults.file_encryption(key_file)
    counts = scratch_counts(postgres)
    return encryption, counts, pgdump.backup(postgres, places.locations(), encryption, database=database)


@pytest.mark.fault("kill -9 of a logical backup mid-stream",
                   "no manifest; never listed as valid; nothing half-written visible and partial uploads "
                   "aborted or cleaned by the next run; earlier backup intact; the next run succeeds")
def test_kill9_of_a_logical_backup_mid_stream(fault, lab, postgres, scratch_db, key_file, places):
    encryption, counts, earlier = earlier_backup(postgres, places, key_file, scratch_db)
    proxy = faults.s3_proxy(lab, rate=THROTTLE)
    try:
        child = faults.EngineChild("backup", postgres, places.params_via(proxy), places.TUNING,
                                   encryption=encryption, database=scratch_db)
        # Half-way: the local copy growing and the first part on its way to S3 (a multipart
        # upload under way; the engine keeps at most about three parts ahead of S3).
        faults.wait_for("the backup half-way (%d MiB stored locally, a part going to S3)" % (KILL_AFTER_STORED >> 20),
                        lambda: child.still_running() and largest_temp_file(places.local_dir) >= KILL_AFTER_STORED
                        and proxy.uploaded > 1 << 20,
                        timeout=120, interval=0.01)
        stored = largest_temp_file(places.local_dir)
        orphans = child.kill9()
        backup_id = killed_backup_id(child.log_text())
        # pg_dump, the engine's child, is left to end on its broken pipe as it would after a real kill.
        lingering = faults.wait_gone(orphans, timeout=30)
        for pid in lingering:
            faults.kill9(pid)
    finally:
        proxy.close()
    fault.saw("killed after %.1f MiB stored; pg_dump %s" % (
        stored / 1048576.0, "ended by itself" if not lingering else "still running 30 s later (killed)"))
    assert not lingering, "pg_dump outlived the killed backup by 30 s: %s" % lingering

    # Never listed, never valid: no manifest anywhere, no object of it in any listing.
    result, _raw = faults.ansible_module("backup_catalog", {"series": scratch_db, "locations": places.params})
    assert not result.get("failed"), result
    assert result["latest_valid_id"] == earlier["backup_id"]
    assert backup_id not in [item["id"] for item in result["backups"] if item["valid"]]
    visible = ids_anywhere(lab, places, backup_id)
    assert visible == [], "the killed backup left visible objects: %s" % visible
    left = leftovers(lab, places)
    fault.saw("backup_catalog: latest valid is still the earlier one, %s not listed; invisible leftovers: %s" % (
        backup_id, describe_leftovers(left)))

    # The next run completes everywhere, and leaves nothing of the killed one behind.
    again = pgdump.backup(postgres, places.locations(), encryption, database=scratch_db)
    assert again["locations"] == ["local", "s3-us-east-1", "s3-eu-west-1"], again["failed_locations"]
    fault.saw("next run: %s in all 3 locations" % again["backup_id"])
    fault.lost(previous_backup_lost(postgres, places, key_file, earlier["backup_id"], counts, scratch_db))
    remaining = leftovers(lab, places)
    fault.saw("after the next run: %s" % describe_leftovers(remaining))
    assert remaining == {}, ("partial uploads of the killed backup %s were neither aborted nor cleaned by the "
                             "next run: %s" % (backup_id, describe_leftovers(remaining)))


@pytest.mark.fault("primary killed mid-dump (kill -9 of the backend running pg_dump's COPY)",
                   "the backup fails naming pg_dump and the database; no manifest, nothing listed, uploads "
                   "aborted; earlier backup intact; the server recovers by itself; the next run succeeds")
def test_primary_backend_killed_in_the_middle_of_a_dump(fault, lab, postgres, scratch_db, key_file, places):
    encryption, counts, earlier = earlier_backup(postgres, places, key_file, scratch_db)
    proxy = faults.s3_proxy(lab, rate=THROTTLE)

    def copy_backend():
        rows = faults.sql(postgres, "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = "
                                    "'auditron.dr' AND query ILIKE 'COPY %%'", args=(scratch_db,))
        child.still_running()
        return rows[0][0] if rows and largest_temp_file(places.local_dir) >= 2 << 20 else None

    try:
        child = faults.EngineChild("backup", postgres, places.params_via(proxy), places.TUNING,
                                   encryption=encryption, database=scratch_db)
        backend = faults.wait_for("pg_dump's COPY backend in pg_stat_activity", copy_backend, timeout=120)
        # kill -9 of one backend: the postmaster resets every session and recovers (crash
        # recovery of a second or two); it restarts by itself (restart_after_crash).
        os.kill(backend, signal.SIGKILL)
        result = child.wait(timeout=300)
    finally:
        proxy.close()
    assert result.get("failed"), "the backup claimed success after its database was killed: %s" % result
    message = result["msg"]
    assert "\n" not in message and "pg_dump failed" in message and scratch_db in message, message
    backup_id = killed_backup_id(result["stderr"])
    fault.saw("COPY backend pid %d killed; backup failed: %s" % (backend, message[:220]))
    faults.wait_for_primary(postgres)
    recovered_at = time.monotonic()

    cat = catalog.Catalog.load(places.locations(), series=scratch_db)
    assert backup_id not in cat.entries and cat.latest_valid().id == earlier["backup_id"]
    assert ids_anywhere(lab, places, backup_id) == []
    left = leftovers(lab, places)
    assert left == {}, "the failed backup left: %s" % describe_leftovers(left)
    fault.saw("nothing of %s in any listing, no unfinished upload, no temp file; server answering again" % backup_id)

    again = pgdump.backup(postgres, places.locations(), encryption, database=scratch_db)
    assert again["locations"] == ["local", "s3-us-east-1", "s3-eu-west-1"], again["failed_locations"]
    fault.saw("next run %s complete %.0f s after the server came back" % (
        again["backup_id"], time.monotonic() - recovered_at))
    fault.lost(previous_backup_lost(postgres, places, key_file, earlier["backup_id"], counts, scratch_db))


@pytest.mark.fault("kill -9 of a pgBackRest backup (S3 repository)",
                   "the killed backup is never listed; pgBackRest keeps it only as resumable; a run while its "
                   "workers live is refused by pgBackRest's lock, named; the next run completes (resuming it); "
                   "earlier backup intact")
def test_kill9_of_a_pgbackrest_backup(fault, lab, own_stanza):
    stanza = own_stanza
    made = stanza.run("backup", "--type=full", "--repo=2", "--no-archive-check")
    assert made.returncode == 0, made.stderr
    earlier = stanza.backup_labels(repo=2)[-1]
    server_dir = os.path.join(lab["lab"]["dir"], "s3", "s3-us-east-1", lab["backup_stores"]["us-east-1"]["bucket"],
                              stanza.s3_prefix, "backup", stanza.name)
    existing = set(os.listdir(server_dir))

    def half_way():
        new = [name for name in os.listdir(server_dir) if name not in existing and name[0].isdigit()]
        if not new:
            return None
        size = sum(os.path.getsize(os.path.join(root, name)) for root, _dirs, files in
                   os.walk(os.path.join(server_dir, new[0])) for name in files)
        return new[0] if size > 6 << 20 else None

    proc = stanza.spawn("backup", "--type=full", "--repo=2", "--no-archive-check")
    label = faults.wait_for("the pgBackRest backup half-way (6 MiB in the repository)", half_way, timeout=120,
                            interval=0.02)
    workers = faults.descendants(proc.pid)
    faults.kill9(proc.pid)
    proc.wait(timeout=30)
    killed_at = time.monotonic()
    listed = stanza.backup_labels(repo=2)
    assert label not in listed and earlier in listed, listed
    manifest_copy = os.path.exists(os.path.join(server_dir, label, "backup.manifest.copy"))
    finished_manifest = os.path.exists(os.path.join(server_dir, label, "backup.manifest"))
    assert not finished_manifest
    fault.saw("killed %s half-way: not in pgbackrest info (only backup.manifest.copy%s in the repository)" % (
        label, "" if manifest_copy else " - absent"))

    args = {"config": stanza.config, "stanza": stanza.name, "type": "full", "repos": [2],
            "extra_options": ["--no-archive-check"]}
    first, _raw = faults.ansible_module("pgbackrest_backup", args, become_user=lab["lab"]["os_user"])
    if first.get("failed"):
        assert "[050] unable to acquire" in first["msg"] and "lock" in first["msg"], first["msg"]
        assert "\n" not in first["msg"], first["msg"]
        fault.saw("a run %.0f s after the kill, with %d orphaned workers still alive, was refused: %s" % (
            time.monotonic() - killed_at, len([pid for pid in workers if faults.alive(pid)]), first["msg"][:160]))
    lingering = faults.wait_gone(workers, timeout=120)
    for pid in lingering:
        faults.kill9(pid)
    fault.saw("the orphaned workers ended %.0f s after the kill" % (time.monotonic() - killed_at))
    assert not lingering, "pgBackRest's workers outlived the killed backup by 2 minutes: %s" % lingering
    if first.get("failed"):
        second, _raw = faults.ansible_module("pgbackrest_backup", args, become_user=lab["lab"]["os_user"])
    else:
        second = first
    assert not second.get("failed"), second
    listed = stanza.backup_labels(repo=2)
    assert earlier in listed and second["labels"]["repo2"] in listed
    log = stanza.run("info", "--repo=2")
    assert log.returncode == 0
    uploads = faults.unfinished_uploads(lab, "us-east-1", stanza.s3_prefix)
    temp = faults.server_temp_files(lab, "us-east-1", stanza.s3_prefix)
    fault.saw("next run made %s (%s); pgBackRest's own leftovers on S3: %d unfinished uploads, %d server temp "
              "files" % (second["labels"]["repo2"], "the killed backup resumed" if second["labels"]["repo2"] == label
                         else "a new backup", len(uploads), len(temp)))
    fault.lost(0 if earlier in listed else 1)
