# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""File backups with history: restore the object store as of any hourly sync (7 days) or
daily snapshot (30 days), on S3-compatible servers without bucket versioning.

Layout under the backup location's prefix (`files/` in the collection's bucket layout)::

    current/<key>                  the latest copy of every source object
    history/<born>/<key>           versions the syncs displaced, named by the point that wrote them
    points/<id>/point.json         a point's manifest, written last: the commit marker
    points/<id>/full.jsonl.gz      the whole state as of the point (snapshots, first point)
    points/<id>/delta.jsonl.gz     the state's difference from the point's base full index
    ledger/<id>.jsonl.gz           the versions sync <id> displaced: what retention may collect
    lock.json                      held while a sync or prune runs

Point ids are UTC times, `20261124T020000Z`, so they sort as they happened.

A version of a key is named by the point that copied it in (`born`). It lives in current/
until a later sync D overwrites or deletes the key; before that, D copies it server-side to
history/<born>/<key>. So where a version's bytes are never depends on later points: it is
current/<key> while the current copy is that version (same ETag, or same MD5 for plain
objects), and history/<born>/<key> afterwards.

An index line is one version: {"k": key, "s": size, "e": ETag of the stored copy,
"z": stored size when encrypted, "m": MD5, "h": sha256 (plaintext), "se": the source's ETag
when copied (change detection), "b": born, "x": 1 when encrypted}, or {"k": key, "d": 1}
in a delta for a key deleted since the base. Lines are sorted by key, so states are merged
as streams.

Cost of a point: a sync copies what changed (and displaces what it overwrote or deleted,
server-side); its delta holds the changes since the base full index, so an hourly point
costs O(changes since the last snapshot). A snapshot writes a full index (O(objects) index
lines, no object data). A sync writes a full index of its own when there is none yet, when
the base is older than full_index_max_age_hours, or when the delta would be larger than
half the state. A sync that finds nothing changed writes nothing (changed=false); a snapshot
always writes its point, so every day in the window can be restored.

Retention (retention.py, the plan's files policy: hourly syncs 7 d, daily snapshots 30 d):
a delta point depends on its base full point; besides the tiers, the newest point older than
the hourly window is kept, because it is the state in force when the window begins. A
displaced version (key, born) displaced by D is needed while a kept point P has
born <= P < D; the ledgers say which versions each sync displaced, so collecting them reads
O(versions in the window), not the whole store.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import bisect
import datetime
import json
import os
import socket
import threading
import time
import uuid

from ansible_collections.auditron.dr.plugins.module_utils import mirror, s3client
from ansible_collections.auditron.dr.plugins.module_utils.common import (
    UTC, DRError, format_time, parse_time, utc_now)
from ansible_collections.auditron.dr.plugins.module_utils.historyindex import (
    IndexWriter, apply_delta, combine_deltas, read_index)
from ansible_collections.auditron.dr.plugins.module_utils.retention import Policy, decide_retention

FORMAT = 1
POINT_FORMAT = "%Y%m%dT%H%M%SZ"
CURRENT, HISTORY, POINTS, LEDGER = "current", "history", "points", "ledger"
LOCK_KEY = "lock.json"
MANIFEST = "point.json"
FULL_INDEX = "full.jsonl.gz"
DELTA_INDEX = "delta.jsonl.gz"
DEFAULT_FULL_INDEX_MAX_AGE_HOURS = 36
DEFAULT_LOCK_TIMEOUT_HOURS = 6
# Between writing the lock and reading it back: long enough for a concurrent writer's PUT to land.
LOCK_SETTLE_SECONDS = 0.2


def point_id(moment):
    return moment.astimezone(UTC).strftime(POINT_FORMAT)


def point_time(identifier):
    return datetime.datetime.strptime(identifier, POINT_FORMAT).replace(tzinfo=UTC)


def _is_point_id(text):
    try:
        point_time(text)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# The backup: points, states, lock

class Backup(object):
    """One backup prefix (an S3Endpoint): its areas, points and states."""

    def __init__(self, endpoint, part_size=s3client.DEFAULT_PART_SIZE):
        self.endpoint = endpoint
        self.current = endpoint.child(CURRENT)
        self.history = endpoint.child(HISTORY)
        self.points = endpoint.child(POINTS)
        self.ledgers = endpoint.child(LEDGER)
        self.part_size = part_size
        self.lock_token = None

    def describe(self):
        return self.endpoint.describe()

    # -- points ------------------------------------------------------------------------------

    def point_ids(self):
        """Ids of every point directory, committed or not, oldest first."""
        return [name.rstrip("/") for name in self.points.list_prefixes("") if _is_point_id(name.rstrip("/"))]

    def manifest(self, identifier):
        head = self.points.head("%s/%s" % (identifier, MANIFEST))
        if head is None:
            return None
        try:
            document = json.loads(self.points.get_bytes("%s/%s" % (identifier, MANIFEST)).decode("utf-8"))
        except ValueError:
            raise DRError("point %s at %s: its manifest is not valid JSON" % (identifier, self.describe()))
        if document.get("format") != FORMAT or document.get("id") != identifier:
            raise DRError("point %s at %s: manifest format %r or id %r is not one this collection reads" % (
                identifier, self.describe(), document.get("format"), document.get("id")))
        return document

    def manifests(self):
        """(committed manifests oldest first, ids of uncommitted point directories)."""
        identifiers = self.point_ids()
        found = {}

        def load(identifier):
            found[identifier] = self.manifest(identifier)

        _parallel(load, identifiers, 8)
        committed = [found[i] for i in identifiers if found.get(i)]
        incomplete = [i for i in identifiers if not found.get(i)]
        return committed, incomplete

    def state(self, manifest):
        """The state as of a committed point: (key, record) sorted."""
        if manifest is None:
            return iter(())
        index = manifest["index"]
        if manifest["full"]:
            return read_index(self.points, index["full"]["key"], index["full"]["sha256"])
        base = self.manifest(manifest["base"])
        if base is None:
            raise DRError("point %s at %s: its base full point %s is missing" % (
                manifest["id"], self.describe(), manifest["base"]))
        return apply_delta(read_index(self.points, base["index"]["full"]["key"], base["index"]["full"]["sha256"]),
                           read_index(self.points, index["delta"]["key"], index["delta"]["sha256"]))

    def delta(self, manifest):
        if manifest is None or manifest["full"]:
            return iter(())
        return read_index(self.points, manifest["index"]["delta"]["key"], manifest["index"]["delta"]["sha256"])

    # -- lock --------------------------------------------------------------------------------

    def acquire(self, timeout_hours=DEFAULT_LOCK_TIMEOUT_HOURS, break_lock=False, what="sync"):
        head = self.endpoint.head(LOCK_KEY)
        if head is not None and not break_lock:
            try:
                holder = json.loads(self.endpoint.get_bytes(LOCK_KEY).decode("utf-8"))
            except (ValueError, DRError):
                holder = {}
            since = holder.get("since")
            age = None
            if since:
                age = (utc_now() - parse_time(since)).total_seconds()
            if age is None or age < timeout_hours * 3600:
                raise DRError("backup %s is locked by %s on %s since %s: another sync or prune is running "
                              "(if it died, the lock expires after %d h, or pass break_lock: true)" % (
                                  self.describe(), holder.get("what", "a run"), holder.get("host", "?"),
                                  since or "an unknown time", timeout_hours))
        token = uuid.uuid4().hex
        body = json.dumps({"token": token, "what": what, "host": socket.gethostname(), "pid": os.getpid(),
                           "since": format_time(utc_now())}).encode("utf-8")
        self.endpoint.put(LOCK_KEY, body, content_type="application/json")
        time.sleep(LOCK_SETTLE_SECONDS)
        # Two runs that started together: the last writer wins, the other one stops here.
        holder = json.loads(self.endpoint.get_bytes(LOCK_KEY).decode("utf-8"))
        if holder.get("token") != token:
            raise DRError("backup %s: another %s took the lock at the same moment" % (self.describe(), holder.get("what")))
        self.lock_token = token

    def release(self):
        if self.lock_token is None:
            return
        try:
            holder = json.loads(self.endpoint.get_bytes(LOCK_KEY).decode("utf-8"))
            if holder.get("token") == self.lock_token:
                self.endpoint.delete([LOCK_KEY])
        except (ValueError, DRError):
            pass
        self.lock_token = None

    def new_point_id(self, now, latest):
        moment = now.replace(microsecond=0)
        if latest is not None and point_id(moment) <= latest["id"]:
            moment = point_time(latest["id"]) + datetime.timedelta(seconds=1)
        return point_id(moment)


def _parallel(func, items, threads):
    items = list(items)
    if not items:
        return
    errors = []

    def run(item):
        try:
            func(item)
        except Exception as exc:  # pylint: disable=broad-except
            errors.append(exc)

    from concurrent.futures import ThreadPoolExecutor  # pylint: disable=import-outside-toplevel
    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as pool:
        list(pool.map(run, items))
    if errors:
        raise errors[0]


class _Locked(object):
    """A thread-safe facade for a SortedSpool."""

    def __init__(self):
        self.spool = mirror.SortedSpool()
        self.lock = threading.Lock()

    def add(self, key, value):
        with self.lock:
            self.spool.add(key, value)

    @property
    def count(self):
        return self.spool.count

    def close(self):
        self.spool.close()


def _where(record, listed):
    """(area, key in area) where a version's bytes are now: current/<key> or history/<born>/<key>."""
    if listed is not None:
        if listed.etag == record.get("e") and listed.size == record.get("z", record["s"]):
            return CURRENT, record["k"]
        if not record.get("x") and s3client.is_plain_md5(listed.etag) and listed.etag == record.get("m") \
                and listed.size == record["s"]:
            return CURRENT, record["k"]
    return HISTORY, "%s/%s" % (record["b"], record["k"])


def _record(key, result, born):
    record = {"k": key, "s": result.size, "e": result.etag, "se": result.source_etag, "b": born}
    if result.md5:
        record["m"] = result.md5
    if result.sha256:
        record["h"] = result.sha256
    if result.encrypted:
        record["x"] = 1
        record["z"] = result.stored_size
    return record


# ---------------------------------------------------------------------------------------------
# Sync with history

def sync(source, backup_endpoint, snapshot=False, delete=True, max_delete_percent=10.0, force=False,
         threads=mirror.DEFAULT_THREADS, check_mode=False, options=None, progress=None, progress_interval=30,
         retention=None, prune=True, now=None, full_index_max_age_hours=DEFAULT_FULL_INDEX_MAX_AGE_HOURS,
         break_lock=False):
    """One hourly sync (or, with snapshot, the daily snapshot) of source into the backup.

    Returns the result dict; result["msg"] is set when the run failed (then nothing was
    deleted and, when some transfers failed, the point records what did reach the backup).
    """
    options = options or mirror.CopyOptions()
    options.want_sha256 = True
    started = time.monotonic()
    now = now or utc_now()
    backup = Backup(backup_endpoint, options.part_size)
    source.check_bucket()
    backup_endpoint.check_bucket()
    if not check_mode:
        backup.acquire(break_lock=break_lock, what="sync")
    try:
        result = _sync_locked(source, backup, snapshot, delete, max_delete_percent, force, threads, check_mode,
                              options, progress, progress_interval, now, full_index_max_age_hours)
        if prune and "msg" not in result:
            try:
                result["retention"] = _prune_locked(backup, retention, now, check_mode=check_mode)
            except DRError as exc:
                result["msg"] = "file_history sync %s -> %s: the sync succeeded, retention failed: %s" % (
                    source.name, backup_endpoint.name, exc.message)
            else:
                if not check_mode:
                    result["changed"] = result["changed"] or bool(result["retention"]["deleted_points"] or
                                                                  result["retention"]["deleted_versions"])
    finally:
        backup.release()
    result["duration_seconds"] = round(time.monotonic() - started, 3)
    written = result["summary"]["bytes_copied"] + result["summary"]["bytes_replaced"]
    result["throughput_bytes_per_second"] = int(written / result["duration_seconds"]) if result[
        "duration_seconds"] > 0 else 0
    return result


def _sync_locked(source, backup, snapshot, delete, max_delete_percent, force, threads, check_mode, options,
                 progress, progress_interval, now, full_index_max_age_hours):
    manifests, incomplete = backup.manifests()
    latest = manifests[-1] if manifests else None
    new_id = backup.new_point_id(now, latest)
    attempt_sorted = False
    while True:
        try:
            return _sync_pass(source, backup, latest, new_id, incomplete, snapshot, delete, max_delete_percent,
                              force, threads, check_mode, options, progress, progress_interval, now,
                              full_index_max_age_hours, attempt_sorted)
        except mirror.ListingOrderError as exc:
            if attempt_sorted:
                raise DRError("listing order error even after sorting: %s" % exc)
            if progress:
                progress("file_history: %s; starting over with listings sorted on disk" % exc)
            attempt_sorted = True


def _sync_pass(source, backup, latest, new_id, incomplete, snapshot, delete, max_delete_percent, force, threads,
               check_mode, options, progress, progress_interval, now, full_index_max_age_hours, sort_listings):
    stats = mirror.Stats()
    counts = [0, 0, 0]
    journal = _Locked()      # key -> new record, or {"k", "d": 1}
    ledger = _Locked()       # displaced versions: key -> {"k", "b", "s", "e", ...}
    deferred = mirror.SortedSpool()   # deletions: key -> (record or None, listed etag, listed size)
    lost = []
    lost_lock = threading.Lock()
    # How the state's totals move: kept here so a delta point never reads the whole state.
    moved = {"objects": 0, "bytes": 0}

    def moved_by(objects, size):
        with lost_lock:
            moved["objects"] += objects
            moved["bytes"] += size
    plan = dict((name, {"objects": 0, "bytes": 0})
                for name in ("copy", "replace", "repair", "adopt", "skip", "delete"))
    source_list = source.list()
    current_list = backup.current.list()
    if sort_listings:
        source_list = mirror.sorted_listing(source_list)
        current_list = mirror.sorted_listing(current_list)
    streams = [
        mirror.Counted(mirror.checked_order(source_list, "source %s" % source.describe()), counts, 0),
        mirror.Counted(mirror.checked_order(current_list, "backup %s" % backup.current.describe()), counts, 1),
        mirror.Counted(backup.state(latest), counts, 2),
    ]
    executor = mirror.Executor(threads, progress, progress_interval, mirror.progress_line(
        "file_history %s -> %s" % (source.name, backup.endpoint.name), stats, counts))

    def planned(action, size):
        plan[action]["objects"] += 1
        plan[action]["bytes"] += size or 0

    raw_copy = mirror.CopyOptions(part_size=options.part_size, attempts=options.attempts,
                                  multipart_threshold=options.multipart_threshold)

    def displace(key, record, listed):
        """Make sure the version `record` of key is in history/ before current/<key> changes."""
        target = "%s/%s" % (record["b"], key)
        if listed is None or _where(record, listed)[0] != CURRENT:
            head = backup.current.head(key)
            listed = s3client.Entry(key, head.size, head.etag) if head is not None else None
        if listed is not None and _where(record, listed)[0] == CURRENT:
            # Server-side (CopyObject; by parts beyond 5 GiB), the stored bytes as they are.
            etag = mirror.copy_object(backup.current, key, backup.history, target, raw_copy, expected=listed).etag
        else:
            # Not in current/ any more: a run that died after displacing it, or a change made
            # outside the sync. Either history/ has it, or it is lost (and reported).
            head = backup.history.head(target)
            if head is None:
                with lost_lock:
                    lost.append({"key": key, "born": record["b"],
                                 "reason": "the current copy was changed or removed outside the sync"})
                return
            etag = head.etag
        displaced = dict(record)
        displaced["he"] = etag
        ledger.add(key, displaced)

    def copy_in(key, entry, record, listed, outcome):
        if record is not None:
            displace(key, record, listed)
        try:
            result = mirror.copy_object(source, key, backup.current, key, options, expected=entry)
        except s3client.SourceVanished:
            # Deleted at the source since the listing: current/ and the state keep the version
            # they had (its history copy is harmless), and the next sync records the deletion.
            stats.add("vanished", entry.size)
            return
        journal.add(key, _record(key, result, new_id))
        moved_by(0 if record is not None else 1, result.size - (record["s"] if record is not None else 0))
        stats.add(outcome, result.size, result.transferred, result.server_side)

    listing_error = None
    try:
        try:
            for key, (entry, listed, state) in mirror.merge_sorted(*streams):
                if executor.abort is not None:
                    break
                record = state[1] if state is not None else None
                if entry is not None and record is not None:
                    if entry.size == record["s"] and entry.etag == record.get("se"):
                        if listed is not None and _where(record, listed)[0] == CURRENT:
                            planned("skip", entry.size)
                            stats.add("skipped", entry.size)
                            continue
                        planned("repair", entry.size)
                        if not check_mode:
                            executor.submit(copy_in, key, entry, record, listed, "replaced")
                        continue
                    planned("replace", entry.size)
                    if not check_mode:
                        executor.submit(copy_in, key, entry, record, listed, "replaced")
                elif entry is not None:
                    if listed is not None and not options.crypt and listed.size == entry.size and \
                            s3client.is_plain_md5(entry.etag) and listed.etag == entry.etag:
                        # Already there (a sync that died before its commit, or a plain mirror
                        # taken over): adopt it as a version of this point without copying.
                        planned("adopt", entry.size)
                        if not check_mode:
                            journal.add(key, {"k": key, "s": entry.size, "e": listed.etag, "m": entry.etag,
                                              "se": entry.etag, "b": new_id})
                            moved_by(1, entry.size)
                        continue
                    planned("copy", entry.size)
                    if not check_mode:
                        executor.submit(copy_in, key, entry, None, listed, "copied")
                elif record is not None:
                    planned("delete", record["s"])
                    deferred.add(key, [record, listed.etag if listed else None, listed.size if listed else None])
                else:
                    planned("delete", listed.size)
                    deferred.add(key, [None, listed.etag, listed.size])
        except mirror.ListingOrderError:
            executor.drain()
            raise
        except DRError as exc:
            listing_error = exc
        executor.drain()

        # Deletions: only after everything else worked, and within the guard.
        blocked = None
        if deferred.count:
            if not delete:
                blocked = "delete is false: %d object(s) deleted at the source are kept in current/" % deferred.count
            elif listing_error is not None or executor.failure_count or executor.abort is not None:
                blocked = "nothing deleted: %s" % ("a listing failed" if listing_error is not None
                                                   else "%d transfer(s) failed" % executor.failure_count)
            else:
                blocked = mirror.delete_guard(deferred.count, max(counts[1], counts[2]), max_delete_percent, force)
            if blocked is None and not check_mode:
                strays = []

                def remove(key, record, etag, size):
                    displace(key, record, s3client.Entry(key, size, etag) if etag is not None else None)
                    failed = backup.current.delete([key])
                    if failed:
                        raise DRError("location %s: deleting %s failed: %s" % (backup.endpoint.name, key, failed[0][1]))
                    journal.add(key, {"k": key, "d": 1})
                    moved_by(-1, -record["s"])
                    stats.add("deleted", record["s"])

                for key, (record, etag, size) in deferred:
                    if record is None:
                        strays.append((key, size))
                        continue
                    executor.submit(remove, key, record, etag, size)
                executor.drain()
                for start in range(0, len(strays), 1000):
                    batch = strays[start:start + 1000]
                    failed = dict(backup.current.delete([key for key, _size in batch]))
                    for key, size in batch:
                        if key in failed:
                            executor._failed(key, failed[key])
                        else:
                            stats.add("deleted", size)
    finally:
        executor.shutdown()
        deferred.close()

    summary = stats.as_dict()
    summary["failed"] = executor.failure_count
    result = {
        "changed": False,
        "source": source.describe(),
        "backup": backup.describe(),
        "summary": summary,
        "plan": plan,
        "source_objects": counts[0],
        "lost_versions": lost[:20],
        "lost_version_count": len(lost),
        "failures": list(executor.failures),
        "deletions_blocked": blocked,
        "check_mode": check_mode,
        "previous_point": latest["id"] if latest else None,
        "point": None,
    }
    errors = executor.errors(listing_error)
    if blocked and deferred.count and delete and not errors:
        errors.append(blocked)

    try:
        if check_mode:
            changes = plan["copy"]["objects"] + plan["replace"]["objects"] + plan["repair"]["objects"] + \
                plan["adopt"]["objects"] + (plan["delete"]["objects"] if blocked is None else 0)
            result["changed"] = bool(changes or snapshot)
            result["point"] = {"id": new_id, "kind": "snapshot" if snapshot else "sync", "written": False,
                               "would_write": bool(changes or snapshot)}
        elif journal.count or ledger.count or snapshot or latest is None:
            # Commit what reached the backup, even when some transfers failed: the point then
            # says exactly what current/ holds, and the next run continues from there.
            result["changed"] = bool(journal.count or ledger.count or summary["deleted"])
            try:
                result["point"] = _commit(backup, latest, new_id, now, snapshot, journal, ledger,
                                          full_index_max_age_hours, summary, source, moved)
                result["changed"] = True
            except DRError as exc:
                # The next run finds what this one copied (adopted, or displaced and recopied).
                errors.append("point %s could not be written: %s" % (new_id, exc.message))
        if not check_mode and incomplete and not errors:
            _remove_incomplete(backup, incomplete)
        # What current/ holds after the run (the size-anomaly alert's input): the new point's
        # totals, or the latest point's when nothing changed; unknown in check mode.
        newest = result["point"] if result["point"] and result["point"].get("written") else (
            None if check_mode else latest)
        result["backup_objects"] = newest["objects"] if newest else None
        result["backup_bytes"] = newest["bytes"] if newest else None
    finally:
        journal.close()
        ledger.close()
    if errors:
        result["msg"] = "file_history sync %s -> %s failed: %s" % (source.name, backup.endpoint.name, "; ".join(errors))
        if delete and not summary["deleted"]:
            result["msg"] += " (nothing was deleted)"
    else:
        result["recovery_point"] = format_time(now)
    return result


def _commit(backup, latest, new_id, now, snapshot, journal, ledger, full_index_max_age_hours, summary, source,
            moved):
    """Write the point's index (and ledger), then its manifest: the point exists from then on."""
    kind = "snapshot" if snapshot else "sync"
    full = snapshot or latest is None
    if not full:
        base_time = point_time(latest["base"])
        if (now - base_time).total_seconds() > full_index_max_age_hours * 3600:
            full = True
        else:
            delta_entries = (0 if latest["full"] else latest["index"]["delta"]["entries"]) + journal.count
            if delta_entries * 2 > max(latest["objects"], 1):
                full = True
    index = {}
    if full:
        objects = 0
        total = 0
        writer = IndexWriter(backup.points, "%s/%s" % (new_id, FULL_INDEX), backup.part_size)
        try:
            for _key, record in apply_delta(backup.state(latest), journal.spool.latest()):
                writer.add(record)
                objects += 1
                total += record["s"]
            index["full"] = writer.close()
        except Exception:
            writer.abort()
            raise
        base = new_id
    else:
        base = latest["base"]
        objects = latest["objects"] + moved["objects"]
        total = latest["bytes"] + moved["bytes"]
        writer = IndexWriter(backup.points, "%s/%s" % (new_id, DELTA_INDEX), backup.part_size)
        try:
            for _key, record in combine_deltas(backup.delta(latest), journal.spool.latest()):
                writer.add(record)
            index["delta"] = writer.close()
        except Exception:
            writer.abort()
            raise
    ledger_info = None
    if ledger.count:
        writer = IndexWriter(backup.ledgers, "%s.jsonl.gz" % new_id, backup.part_size)
        try:
            for _key, record in ledger.spool.latest():
                writer.add(record)
            ledger_info = writer.close()
        except Exception:
            writer.abort()
            raise
    manifest = {
        "format": FORMAT, "id": new_id, "time": format_time(point_time(new_id)), "kind": kind, "full": full, "base": base,
        "previous": latest["id"] if latest else None, "index": index, "ledger": ledger_info,
        "objects": objects, "bytes": total, "source": source.describe(),
        "changes": {"copied": summary["copied"], "replaced": summary["replaced"], "deleted": summary["deleted"],
                    "failed": summary["failed"], "bytes_copied": summary["bytes_copied"],
                    "bytes_replaced": summary["bytes_replaced"]},
    }
    backup.points.put("%s/%s" % (new_id, MANIFEST), json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8"),
                      content_type="application/json")
    return {"id": new_id, "time": manifest["time"], "kind": kind, "full": full, "base": base, "objects": objects,
            "bytes": total, "written": True}


def _remove_incomplete(backup, identifiers):
    """Point directories without a manifest: left by a run that died before its commit."""
    for identifier in identifiers:
        keys = [entry.key for entry in backup.points.list(identifier + "/")]
        if keys:
            backup.points.delete(keys)


# ---------------------------------------------------------------------------------------------
# Retention

def _prune_locked(backup, retention, now, check_mode=False):
    policy = Policy.from_params(retention, plan="files") if not isinstance(retention, Policy) else retention
    manifests, _incomplete = backup.manifests()
    if not manifests:
        return {"kept_points": [], "deleted_points": [], "index_only_points": [], "deleted_versions": 0,
                "reasons": {}, "policy": policy.to_params()}
    items = [{"id": m["id"], "time": m["time"], "valid": True, "kind": m["kind"],
              "depends_on": m["base"] if m["base"] != m["id"] else None} for m in manifests]
    decisions = decide_retention(items, now, policy, noun="point")
    keep = dict((decision.id, decision.keep) for decision in decisions)
    reasons = dict((decision.id, "; ".join(decision.reasons)) for decision in decisions)
    by_id = dict((m["id"], m) for m in manifests)
    # The state in force when the shortest window begins is the newest point before it: keep it,
    # or the first hours of the window could not be restored.
    if policy.tiers:
        window_start = now - min(tier.keep_for for tier in policy.tiers)
        before = [m for m in manifests if point_time(m["id"]) <= window_start]
        if before:
            boundary = before[-1]
            why = "state in force when the window begins (%s)" % format_time(window_start)
            reasons[boundary["id"]] = ("%s; %s" % (reasons[boundary["id"]], why)) if keep[boundary["id"]] else why
            keep[boundary["id"]] = True
            if boundary["base"] != boundary["id"] and not keep.get(boundary["base"]):
                keep[boundary["base"]] = True
                reasons[boundary["base"]] = "needed by point %s" % boundary["id"]
    kept = sorted(i for i, k in keep.items() if k)
    dropped = sorted(i for i, k in keep.items() if not k)
    # A point kept only because a kept delta builds on its index is not itself a restore point:
    # its displaced versions may go, and its manifest says so (choose_point skips it).
    index_only = sorted(i for i in kept if reasons[i] and all(
        part.startswith("needed by") for part in reasons[i].split("; ")))
    # A point marked not restorable by an earlier prune stays so: its versions may be gone.
    restorable = [i for i in kept if i not in index_only and by_id[i].get("restorable", True)]
    deleted_versions = 0
    ledger_ids = [name[:-len(".jsonl.gz")] for name in
                  (entry.key for entry in backup.ledgers.list()) if name.endswith(".jsonl.gz")]
    for displaced_by in ledger_ids:
        key = "%s.jsonl.gz" % displaced_by
        keep_records, drop_keys = [], []
        for _k, record in read_index(backup.ledgers, key):
            # needed while a kept point P has born <= P < displaced_by
            position = bisect.bisect_left(restorable, record["b"])
            if position < len(restorable) and restorable[position] < displaced_by:
                keep_records.append(record)
            else:
                drop_keys.append("%s/%s" % (record["b"], record["k"]))
        if not drop_keys or check_mode:
            deleted_versions += len(drop_keys)
            continue
        failed = backup.history.delete(drop_keys)
        if failed:
            raise DRError("retention: deleting displaced versions at %s failed: %s: %s" % (
                backup.describe(), failed[0][0], failed[0][1]))
        deleted_versions += len(drop_keys)
        if keep_records:
            writer = IndexWriter(backup.ledgers, key, backup.part_size)
            try:
                for record in keep_records:
                    writer.add(record)
                writer.close()
            except Exception:
                writer.abort()
                raise
        else:
            backup.ledgers.delete([key])
    if not check_mode:
        for identifier in index_only:
            manifest = by_id[identifier]
            if manifest.get("restorable", True):
                manifest = dict(manifest, restorable=False)
                backup.points.put("%s/%s" % (identifier, MANIFEST), json.dumps(
                    manifest, indent=1, sort_keys=True).encode("utf-8"), content_type="application/json")
        for identifier in dropped:
            # The manifest first: a half-removed point is then an incomplete one, never a broken one.
            backup.points.delete(["%s/%s" % (identifier, MANIFEST)])
            rest = ["%s/%s" % (identifier, name) for name in (FULL_INDEX, DELTA_INDEX)
                    if by_id[identifier]["index"].get("full" if name == FULL_INDEX else "delta")]
            if rest:
                backup.points.delete(rest)
    return {"kept_points": kept, "deleted_points": dropped, "index_only_points": index_only,
            "deleted_versions": deleted_versions, "reasons": reasons, "policy": policy.to_params()}


def prune(backup_endpoint, retention=None, now=None, check_mode=False, break_lock=False):
    backup = Backup(backup_endpoint)
    backup_endpoint.check_bucket()
    if not check_mode:
        backup.acquire(break_lock=break_lock, what="prune")
    try:
        result = _prune_locked(backup, retention, now or utc_now(), check_mode=check_mode)
    finally:
        backup.release()
    result["changed"] = bool(result["deleted_points"] or result["deleted_versions"])
    return result


# ---------------------------------------------------------------------------------------------
# Listing points, choosing one, restoring as of it

def list_points(backup_endpoint):
    backup = Backup(backup_endpoint)
    backup_endpoint.check_bucket()
    manifests, incomplete = backup.manifests()
    points = [{"id": m["id"], "time": m["time"], "kind": m["kind"], "full": m["full"], "base": m["base"],
               "objects": m["objects"], "bytes": m["bytes"], "restorable": m.get("restorable", True)}
              for m in manifests]
    return {"changed": False, "points": points, "incomplete_points": incomplete,
            "latest": points[-1] if points else None}


def choose_point(manifests, as_of, what="backup"):
    """The point `as_of` names: 'latest', a point id, or a time (the newest point at or before it)."""
    if not manifests:
        raise DRError("%s has no committed point to restore from: run a sync first" % what)
    text = str(as_of or "latest").strip()
    for manifest in manifests:
        if manifest["id"] == text and not manifest.get("restorable", True):
            raise DRError("%s: point %s is kept only as the base of later points; its displaced versions were "
                          "collected by retention" % (what, text))
    manifests = [manifest for manifest in manifests if manifest.get("restorable", True)]
    if not manifests:
        raise DRError("%s has no restorable point" % what)
    if text == "latest":
        return manifests[-1]
    for manifest in manifests:
        if manifest["id"] == text:
            return manifest
    if _is_point_id(text):
        raise DRError("%s has no point %s (points: %s ... %s)" % (what, text, manifests[0]["id"], manifests[-1]["id"]))
    moment = parse_time(text, what="as_of")
    chosen = None
    for manifest in manifests:
        if point_time(manifest["id"]) <= moment:
            chosen = manifest
    if chosen is None:
        raise DRError("%s has no point at or before %s: the oldest is %s" % (
            what, format_time(moment), manifests[0]["id"]))
    return chosen


def restore(backup_endpoint, target, as_of="latest", delete=False, max_delete_percent=10.0, force=False,
            threads=mirror.DEFAULT_THREADS, check_mode=False, options=None, progress=None, progress_interval=30):
    """Make target hold exactly the state as of a point (objects the point does not have are
    deleted only with delete=true, within the guard). Every copied object is checked against
    the MD5/sha256 its index recorded."""
    options = options or mirror.CopyOptions()
    started = time.monotonic()
    backup = Backup(backup_endpoint, options.part_size)
    backup_endpoint.check_bucket()
    target.check_bucket()
    manifests, _incomplete = backup.manifests()
    manifest = choose_point(manifests, as_of, "backup %s" % backup.describe())
    decrypt_options = mirror.CopyOptions(part_size=options.part_size, attempts=options.attempts, crypt="decrypt",
                                         encryption_params=options.encryption_params, server_side="never")
    stats = mirror.Stats()
    counts = [0, 0, 0]
    deletions = mirror.SortedSpool()
    plan = dict((name, {"objects": 0, "bytes": 0}) for name in ("copy", "replace", "skip", "delete", "check"))
    executor = mirror.Executor(threads, progress, progress_interval, mirror.progress_line(
        "file_history restore %s -> %s" % (manifest["id"], target.name), stats, counts))

    def planned(action, size):
        plan[action]["objects"] += 1
        plan[action]["bytes"] += size or 0

    def bring(key, record, where, outcome):
        area, area_key = where
        endpoint = backup.current if area == CURRENT else backup.history
        copy_options = decrypt_options if record.get("x") else options
        try:
            result = mirror.copy_object(endpoint, area_key, target, key, copy_options, context_key=key)
        except s3client.SourceVanished:
            raise DRError("backup %s: version %s of %s is missing (%s/%s)" % (
                backup.describe(), record["b"], key, area, area_key))
        if record.get("h") and result.sha256 and result.sha256 != record["h"]:
            raise mirror.IntegrityError("restore of %s: sha256 %s, the index recorded %s" % (
                key, result.sha256, record["h"]))
        if record.get("m") and result.md5 and result.md5 != record["m"]:
            raise mirror.IntegrityError("restore of %s: MD5 %s, the index recorded %s" % (key, result.md5, record["m"]))
        stats.add(outcome, result.size, result.transferred, result.server_side)

    def check(key, record, where):
        head = target.head(key)
        stats.add("checked")
        if head is not None:
            identity = mirror.content_identity(head)
            if identity["size"] == record["s"] and ((record.get("h") and identity["sha256"] == record["h"]) or
                                                    (record.get("m") and identity["md5"] == record["m"])):
                stats.add("skipped", record["s"])
                return
        if check_mode:
            stats.add("replaced", record["s"])
            return
        bring(key, record, where, "replaced")

    listing_error = None
    try:
        try:
            streams = [mirror.Counted(backup.state(manifest), counts, 0),
                       mirror.Counted(mirror.checked_order(backup.current.list(), "backup %s" % backup.current.describe()), counts, 1),
                       mirror.Counted(mirror.checked_order(target.list(), "target %s" % target.describe()), counts, 2)]
            for key, (state, listed, present) in mirror.merge_sorted(*streams):
                if executor.abort is not None:
                    break
                record = state[1] if state is not None else None
                if record is None:
                    if present is not None:
                        planned("delete", present.size)
                        deletions.add(key, present.size)
                    continue
                where = _where(record, listed)
                if present is None:
                    planned("copy", record["s"])
                    if not check_mode:
                        executor.submit(bring, key, record, where, "copied")
                    continue
                if present.size == record["s"] and s3client.is_plain_md5(present.etag) and record.get("m"):
                    if present.etag == record["m"]:
                        planned("skip", record["s"])
                        stats.add("skipped", record["s"])
                    else:
                        planned("replace", record["s"])
                        if not check_mode:
                            executor.submit(bring, key, record, where, "replaced")
                    continue
                planned("check", record["s"])
                executor.submit(check, key, record, where)
        except mirror.ListingOrderError as exc:
            listing_error = DRError("%s: pass sort_listings (not supported for restores yet)" % exc)
        except DRError as exc:
            listing_error = exc
        executor.drain()
    finally:
        executor.shutdown()
    summary = stats.as_dict()
    summary["failed"] = executor.failure_count
    blocked = None
    delete_failures = []
    if deletions.count:
        if not delete:
            blocked = "delete is false: %d object(s) the point does not have were left in the target" % deletions.count
        elif listing_error is not None or executor.failure_count or executor.abort is not None:
            blocked = "nothing deleted: a listing or a transfer failed"
        else:
            blocked = mirror.delete_guard(deletions.count, counts[2], max_delete_percent, force)
        if blocked is None and not check_mode:
            batch, sizes = [], {}
            for key, size in deletions:
                batch.append(key)
                sizes[key] = size
                if len(batch) >= 1000:
                    delete_failures += mirror.delete_batch(target, batch, sizes, summary)
                    batch, sizes = [], {}
            if batch:
                delete_failures += mirror.delete_batch(target, batch, sizes, summary)
    deletions.close()
    if check_mode:
        plan["replace"]["objects"] += summary["replaced"]
        plan["replace"]["bytes"] += summary["bytes_replaced"]
        plan["skip"] = {"objects": summary["skipped"], "bytes": summary["bytes_skipped"]}
        plan["check"] = {"objects": 0, "bytes": 0}
        summary = dict((name, 0) for name in summary)
    duration = time.monotonic() - started
    result = {
        "changed": bool(summary["copied"] or summary["replaced"] or summary["deleted"]),
        "point": {"id": manifest["id"], "time": manifest["time"], "kind": manifest["kind"],
                  "objects": manifest["objects"], "bytes": manifest["bytes"]},
        "recovery_point": manifest["time"],
        "backup": backup.describe(),
        "target": target.describe(),
        "summary": summary,
        "plan": plan,
        "failures": list(executor.failures) + [{"key": k, "error": r} for k, r in delete_failures[:20]],
        "deletions_blocked": blocked,
        "check_mode": check_mode,
        "duration_seconds": round(duration, 3),
        "throughput_bytes_per_second": int((summary["bytes_copied"] + summary["bytes_replaced"]) / duration)
        if duration > 0 else 0,
    }
    if check_mode:
        result["changed"] = bool(plan["copy"]["objects"] or plan["replace"]["objects"] or
                                 (plan["delete"]["objects"] and blocked is None))
    errors = executor.errors(listing_error)
    if delete_failures:
        errors.append("%d deletion(s) failed" % len(delete_failures))
    if blocked and delete and deletions.count and not errors:
        errors.append(blocked)
    if errors:
        result["msg"] = "file_history restore of point %s into %s failed: %s" % (
            manifest["id"], target.name, "; ".join(errors))
    return result
