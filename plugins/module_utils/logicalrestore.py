# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logical restores: the pipeline behind pg_restore, and the deep check of a stored copy.

Restore: pick a backup through the catalog (an id, the latest valid one, or the latest valid
one taken before a time); take the first location, in the order given, whose copy verifies
(sha256 over the stored bytes and every GCM tag); then stream it into pg_restore in a NEW
database. With jobs > 1 pg_restore needs a seekable file: the decrypted, decompressed archive
is spooled to a private directory, in the same pass as the verification (every chunk is
authenticated before a byte of it is spooled, the checksum is compared before pg_restore
starts), and the spool is always removed. With jobs: 1 the copy is verified first, then
streamed into pg_restore's stdin: no file at all. Nothing touches the target database before
a copy has verified. Afterwards the row counts are compared with the manifest.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import concurrent.futures
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

try:
    import queue
except ImportError:  # pragma: no cover - Python 2 is not supported, kept for sanity's import test
    import Queue as queue  # type: ignore

from ansible_collections.auditron.dr.plugins.module_utils import backupset
from ansible_collections.auditron.dr.plugins.module_utils import catalog as catalog_mod
from ansible_collections.auditron.dr.plugins.module_utils import pgdump
from ansible_collections.auditron.dr.plugins.module_utils.common import (
    DRError, first_line, format_time, human_bytes, human_duration, parse_time)
from ansible_collections.auditron.dr.plugins.module_utils.crypto import DecryptingReader, verify_stream
from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import describe_reference, provider_for_reference
from ansible_collections.auditron.dr.plugins.module_utils.pg import connect, libpq_env, quote_ident, server_label
from ansible_collections.auditron.dr.plugins.module_utils.pgdump import (
    READ_SIZE, StderrTail, find_tool, kill, peak_rss_bytes, reap, require_zstandard, split_by_size, table_name)

READ_AHEAD_BLOCK = 4 << 20
READ_AHEAD_DEPTH = 3
# What makes a database "not empty" for a restore: relations and functions of its own (not an
# extension's), in any schema but the system ones.
_USER_RELATIONS_SQL = r"""
SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\_toast%%' AND n.nspname NOT LIKE 'pg\_temp\_%%')
     + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                          AND d.deptype = 'e'))
"""


# ---------------------------------------------------------------------------------------------
# Reading and writing streams

class _HashingSource(object):
    def __init__(self, source, hasher):
        self.source = source
        self.hasher = hasher
        self.bytes = 0

    def read(self, count=-1):
        data = self.source.read(count)
        if data:
            self.hasher.update(data)
            self.bytes += len(data)
        return data


class _ReadAhead(object):
    """Reads a source in a background thread, a few blocks ahead, so that waiting on the network
    overlaps with decryption and decompression. Errors are raised by the next read()."""

    def __init__(self, source, block=READ_AHEAD_BLOCK, depth=READ_AHEAD_DEPTH):
        self._source = source
        self._block = block
        self._queue = queue.Queue(maxsize=depth)
        self._current = b""
        self._offset = 0
        self._done = False
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="read-ahead")
        self._thread.daemon = True
        self._thread.start()

    def _run(self):
        try:
            while not self._stop:
                data = self._source.read(self._block)
                self._put(data)
                if not data:
                    return
        except Exception as exc:  # pylint: disable=broad-except
            self._put(exc)

    def _put(self, item):
        while not self._stop:
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def read(self, count=-1):
        while self._offset >= len(self._current):
            if self._done:
                return b""
            item = self._queue.get()
            if isinstance(item, Exception):
                self._done = True
                raise item
            if not item:
                self._done = True
                return b""
            self._current, self._offset = item, 0
        if count is None or count < 0:
            count = len(self._current) - self._offset
        piece = self._current[self._offset:self._offset + count]
        self._offset += len(piece)
        return piece

    def close(self):
        self._stop = True
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._thread.join(5)


def _open_copy(location, key):
    """A reader of a stored artifact; S3 reads go through a read-ahead thread."""
    reader = location.open_read(key)
    if getattr(location, "kind", None) == "s3":
        return reader, _ReadAhead(reader)
    return reader, reader


def _close_quietly(*handles):
    for handle in handles:
        if handle is None:
            continue
        try:
            handle.close()
        except Exception:  # pylint: disable=broad-except
            pass


# ---------------------------------------------------------------------------------------------
# Small pieces

def _conninfo_dbname(database):
    """`dbname='...'` for pg_restore -d: a database name is never taken as a connection string."""
    return "dbname='%s'" % str(database).replace("\\", "\\\\").replace("'", "\\'")


# ---------------------------------------------------------------------------------------------
# Verification (restore, catalog deep)

def _what(entry, location):
    return "backup %s at location %s (%s)" % (entry.id, location.name, catalog_mod.main_artifact(entry.manifest)["key"])


def _check_digest(entry, location, sha256, size):
    artifact = catalog_mod.main_artifact(entry.manifest)
    if size != artifact["size"]:
        raise DRError("%s is %d bytes, the manifest says %d (truncated or replaced)" % (
            _what(entry, location), size, artifact["size"]))
    if sha256 != artifact["sha256"]:
        raise DRError("%s: sha256 %s differs from the manifest's %s (corrupted)" % (
            _what(entry, location), sha256, artifact["sha256"]))


def verify_copy(location, entry, encryption):
    """Read one stored copy once: sha256 over the stored bytes and, when encrypted, every GCM tag.

    Writes nothing. Returns a one-line detail; raises DRError naming the backup and location.
    """
    artifact = catalog_mod.main_artifact(entry.manifest)
    encrypted = bool((entry.manifest.get("encryption") or {}).get("key"))
    what = _what(entry, location)
    hasher = hashlib.sha256()
    raw, source = _open_copy(location, artifact["key"])
    try:
        if encrypted:
            if encryption is None:
                raise DRError("%s is encrypted (%s): give the encryption option to verify or restore it" % (
                    what, describe_reference(entry.manifest["encryption"]["key"])))
            stats = verify_stream(source, encryption, context=entry.manifest["encryption"].get("context"), what=what,
                                  hasher=hasher)
            size = stats["ciphertext_bytes"]
        else:
            counting = _HashingSource(source, hasher)
            while counting.read(READ_AHEAD_BLOCK):
                pass
            size = counting.bytes
    finally:
        _close_quietly(source if source is not raw else None, raw)
    _check_digest(entry, location, hasher.hexdigest(), size)
    return "sha256 %s and %s verified (%s)" % (
        artifact["sha256"][:16], "every GCM tag" if encrypted else "size (unencrypted)", human_bytes(size))


# ---------------------------------------------------------------------------------------------
# Restore

class _Spool(object):
    """A private place for the decrypted archive when pg_restore -j needs a seekable file:
    a new 0700 directory (under spool_dir when given), a 0600 file; both always removed."""

    def __init__(self, spool_dir=None, needed_bytes=None):
        if spool_dir and not os.path.isdir(spool_dir):
            raise DRError("spool_dir %s does not exist" % spool_dir)
        try:
            self.directory = tempfile.mkdtemp(prefix="auditron-restore-", dir=spool_dir or None)
        except OSError as exc:
            raise DRError("cannot create a spool directory in %s: %s" % (
                spool_dir or tempfile.gettempdir(), exc.strerror or first_line(exc)))
        os.chmod(self.directory, 0o700)
        self.path = os.path.join(self.directory, "archive.dump")
        self.handle = None
        if needed_bytes:
            stats = os.statvfs(self.directory)
            free = stats.f_bavail * stats.f_frsize
            if free < needed_bytes * 1.05:
                self.remove()
                raise DRError("spool_dir %s has %s free; the archive needs %s: set spool_dir to a bigger file "
                              "system or use jobs: 1 (streams with no file)" % (
                                  spool_dir or tempfile.gettempdir(), human_bytes(free), human_bytes(needed_bytes)))

    def open(self):
        """A fresh, empty spool file (a second location starts over)."""
        self.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.handle = os.fdopen(descriptor, "wb", buffering=READ_SIZE)
        return self.handle

    def close(self):
        if self.handle is not None:
            try:
                self.handle.close()
            finally:
                self.handle = None

    def remove(self):
        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.remove()
        return False


class _Handoff(object):
    """Chunks from one thread to another as a file-like read(): the decrypting thread puts, the
    decompressing thread reads. `None` ends the stream; abort(exc) makes the reader raise exc."""

    def __init__(self, depth=4):
        self._queue = queue.Queue(maxsize=depth)
        self._current = b""
        self._offset = 0
        self._done = False
        self._aborted = None

    def put(self, item, worker):
        """Hand over `item`; False when the reader has stopped (it needs nothing more)."""
        while True:
            if not worker.is_alive():
                return False
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue

    def abort(self, exc):
        self._aborted = exc

    def read(self, count=-1):
        while self._offset >= len(self._current):
            if self._done:
                return b""
            if self._aborted is not None:
                self._done = True
                raise self._aborted
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is None:
                self._done = True
                return b""
            self._current, self._offset = item, 0
        if count is None or count < 0:
            count = len(self._current) - self._offset
        if self._offset == 0 and count >= len(self._current):
            piece = self._current  # the whole chunk: no copy
        else:
            piece = self._current[self._offset:self._offset + count]
        self._offset += len(piece)
        return piece


def _decompressing_copy(entry, location, encryption, sink):
    """Download, authenticate, decrypt and decompress one copy into `sink` (a file-like object),
    checking the sha256 and size of the stored bytes at the end. Returns (plaintext bytes, sha256).

    Three threads: one downloads (S3 read-ahead), this one hashes and decrypts (every chunk
    authenticated before it is handed on), one decompresses and writes. Decryption and
    decompression so overlap on two cores; memory stays a few chunks.
    """
    artifact = catalog_mod.main_artifact(entry.manifest)
    encrypted = bool((entry.manifest.get("encryption") or {}).get("key"))
    what = _what(entry, location)
    hasher = hashlib.sha256()
    handoff = _Handoff()
    outcome = {}

    def decompress():
        try:
            outcome["written"] = pgdump.zstandard.ZstdDecompressor().copy_stream(
                handoff, sink, read_size=READ_SIZE, write_size=READ_SIZE)[1]
        except BaseException as exc:  # pylint: disable=broad-except
            outcome["error"] = exc

    raw, source = _open_copy(location, artifact["key"])
    hashed = _HashingSource(source, hasher)
    decrypting = None
    worker = threading.Thread(target=decompress, name="zstd-decompress")
    worker.daemon = True
    try:
        if encrypted:
            if encryption is None:
                raise DRError("%s is encrypted (%s): give the encryption option to restore it" % (
                    what, describe_reference(entry.manifest["encryption"]["key"])))
            decrypting = DecryptingReader(hashed, encryption, context=entry.manifest["encryption"].get("context"),
                                          what=what)
        plain = decrypting if decrypting is not None else hashed
        worker.start()
        while True:
            data = plain.read(READ_SIZE)
            # Whatever zstd does not need (it stopped, or failed) is still read, authenticated
            # and hashed: the checks below cover every stored byte.
            handoff.put(data or None, worker)
            if not data:
                break
    except BaseException as exc:
        handoff.abort(exc)
        if worker.is_alive() or worker.ident is not None:
            worker.join()
        raise
    finally:
        _close_quietly(decrypting, source if source is not raw else None, raw)
    worker.join()
    error = outcome.get("error")
    if isinstance(error, pgdump.zstandard.ZstdError):
        raise DRError("%s: the compressed stream is damaged: %s" % (what, first_line(error)))
    if error is not None:
        raise error
    _check_digest(entry, location, hasher.hexdigest(), hashed.bytes)
    return outcome.get("written", 0), hasher.hexdigest()


class _Keys(object):
    """The key providers of one restore, made once and shared by every copy tried and every
    pass. A KMS client costs a fifth of a second to make, so the KMS provider is made (and its
    client connected) at the start, while the catalog is listed; it unwraps for any KMS key,
    since each unwrap names the key of the backup's own key reference."""

    def __init__(self, encryption):
        self.encryption = encryption
        self._providers = {}
        self._lock = threading.Lock()

    @staticmethod
    def _connect(provider):
        # KmsKeyProvider makes its client on first use; made here, an unwrap is one round trip.
        connect = getattr(provider, "_kms", None)
        if callable(connect):
            connect()
        return provider

    def prepare(self):
        """Make the KMS provider the `encryption` option names, ahead of need (in a thread)."""
        params = self.encryption or {}
        if params.get("key_source") != "kms" or not params.get("kms_key_id"):
            return
        try:
            with self._lock:
                if "kms" not in self._providers:
                    self._providers["kms"] = self._connect(provider_for_reference(
                        {"provider": "kms", "key_id": params["kms_key_id"]}, params))
        except DRError:
            pass  # reported, with the copy it concerns, when a copy is read

    def for_manifest(self, manifest):
        """What to decrypt a backup with: a provider for its key reference, or the `encryption`
        option as it is (None, or a manifest without a key: crypto then says what is wrong)."""
        reference = (manifest.get("encryption") or {}).get("key")
        if not reference or self.encryption is None:
            return self.encryption
        name = "kms" if reference.get("provider") == "kms" else json.dumps(reference, sort_keys=True)
        with self._lock:
            if name not in self._providers:
                self._providers[name] = self._connect(provider_for_reference(
                    reference, self.encryption, what="backup %s" % manifest.get("id")))
            return self._providers[name]


class _Candidates(object):
    """The valid backups to try, newest first, read from the catalog only as far as needed: a
    restore of the latest backup reads one backup's manifests, not a year of them."""

    def __init__(self, iterable):
        self._source = iter(iterable)
        self._seen = []

    def _fill(self, count):
        while count is None or len(self._seen) < count:
            try:
                self._seen.append(next(self._source))
            except StopIteration:
                return

    def __getitem__(self, index):
        if isinstance(index, slice):
            self._fill(index.stop)
            return self._seen[index]
        self._fill(index + 1)
        return self._seen[index]

    def __iter__(self):
        index = 0
        while True:
            self._fill(index + 1)
            if index >= len(self._seen):
                return
            yield self._seen[index]
            index += 1

    def __bool__(self):
        self._fill(1)
        return bool(self._seen)

    __nonzero__ = __bool__


def _select_candidates(catalog, backup_id, latest, before, series):
    """(entries to try in order, allow falling back to an older backup)."""
    searched = ", ".join(listing.name for listing in catalog.listings if listing.complete) or "none"
    unreachable = catalog.unreachable
    not_listed = ("; not listed: %s" % "; ".join("%s (%s)" % item for item in unreachable.items())) \
        if unreachable else ""
    if len(unreachable) == len(catalog.listings):
        raise DRError("no backup location could be listed: %s" % "; ".join(
            "%s: %s" % item for item in unreachable.items()))
    if backup_id:
        entry = catalog.entry(backup_id)
        if entry is None:
            raise DRError("backup %s not found in any location (searched %s%s)" % (backup_id, searched, not_listed))
        if entry.manifest is None or entry.manifest_problems:
            raise DRError("backup %s cannot be restored: %s" % (backup_id, entry.why_invalid))
        return [entry], False
    if latest:
        entries = _Candidates(catalog.valid_newest_first(series))
        if not entries:
            raise DRError("no valid backup of series %s in any location (searched %s%s)" % (
                series, searched, not_listed))
        return entries, True
    moment = parse_time(before, what="before")
    entries = _Candidates(catalog.valid_newest_first(series, before=moment))
    if not entries:
        oldest = catalog.oldest(series)
        if oldest is None:
            raise DRError("no backup of series %s in any location (searched %s%s)" % (series, searched, not_listed))
        raise DRError("no valid backup of series %s taken at or before %s: the oldest is %s (%s) (searched %s%s)" % (
            series, format_time(moment), oldest.id, format_time(catalog.resolve(oldest).time), searched, not_listed))
    return entries, True


def _copies_in_order(entry, locations):
    """(location, state) of an entry, in the order of `locations`."""
    for location in locations:
        yield location, entry.locations.get(location.name) or {"status": catalog_mod.UNKNOWN, "detail": "not listed"}


def _check_tables(entry, tables):
    """Turn `tables` into manifest tables (schema, name); refuse names the backup does not hold."""
    if not tables:
        return None
    known = entry.manifest.get("tables") or []
    chosen = []
    for wanted in tables:
        wanted = str(wanted)
        matches = [t for t in known if table_name(t["schema"], t["name"]) == wanted]
        if not matches:
            matches = [t for t in known if t["name"] == wanted]
        if not matches:
            raise DRError("table %r is not in backup %s (it holds %s)" % (
                wanted, entry.id, ", ".join(table_name(t["schema"], t["name"]) for t in known) or "no tables"))
        if len(matches) > 1:
            raise DRError("table %r is ambiguous in backup %s: name the schema (%s)" % (
                wanted, entry.id, ", ".join(table_name(t["schema"], t["name"]) for t in matches)))
        if matches[0] not in chosen:
            chosen.append(matches[0])
    return chosen


def _inspect_target(postgres, target_db):
    """{'exists', 'relations', 'system_identifier'} of the target database (read-only)."""
    conn = connect(postgres, postgres.get("maintenance_db") or "postgres", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target_db,))
            exists = cur.fetchone() is not None
            cur.execute("SELECT system_identifier::text, current_setting('server_version_num')::int "
                        "FROM pg_control_system()")
            system_identifier, version_num = cur.fetchone()
    finally:
        conn.close()
    relations = 0
    if exists:
        target = connect(postgres, target_db, autocommit=True)
        try:
            with target.cursor() as cur:
                cur.execute(_USER_RELATIONS_SQL)
                relations = int(cur.fetchone()[0])
        finally:
            target.close()
    return {"exists": exists, "relations": relations, "system_identifier": system_identifier,
            "server_major": version_num // 10000}


def _target_and_tool(postgres, target_db, bin_dir, need_tool):
    state = _inspect_target(postgres, target_db)
    tool = find_tool("pg_restore", bin_dir, state["server_major"]) if need_tool else (None, None)
    return state, tool


def _refuse_target(target_db, state, replace, entries, postgres):
    if state["exists"] and state["relations"] and not replace:
        raise DRError("target database %s on %s exists and is not empty (%d relations and functions): choose a new "
                      "target_db, or set replace: true to drop and recreate it" % (
                          target_db, server_label(postgres), state["relations"]))
    if state["exists"] and replace:
        for entry in entries:
            if entry.manifest and entry.manifest.get("database") == target_db and \
                    entry.manifest.get("server", {}).get("system_identifier") == state["system_identifier"]:
                raise DRError("target database %s is the live database backup %s was taken from: refusing to "
                              "replace it; restore beside it (a new target_db) and swap" % (target_db, entry.id))


def _prepare_target(postgres, target_db, state, replace, manifest):
    """Create the target (or drop and recreate it with replace). Returns what was done."""
    conn = connect(postgres, postgres.get("maintenance_db") or "postgres", autocommit=True)
    try:
        with conn.cursor() as cur:
            if state["exists"] and (replace and state["relations"]):
                cur.execute("DROP DATABASE %s WITH (FORCE)" % quote_ident(target_db))
                action = "replaced"
            elif state["exists"]:
                return "reused (empty)"
            else:
                action = "created"
            server = manifest.get("server") or {}
            try:
                cur.execute("CREATE DATABASE %s TEMPLATE template0 ENCODING %%s LC_COLLATE %%s LC_CTYPE %%s"
                            % quote_ident(target_db),
                            (server.get("encoding") or "UTF8", server.get("lc_collate") or "C",
                             server.get("lc_ctype") or "C"))
            except Exception:  # pylint: disable=broad-except
                # The source's locale may not exist here (another OS, another site): the
                # server's defaults are the next best thing.
                cur.execute("CREATE DATABASE %s TEMPLATE template0" % quote_ident(target_db))
            return action
    finally:
        conn.close()


def _drop_target(postgres, target_db):
    try:
        conn = connect(postgres, postgres.get("maintenance_db") or "postgres", autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % quote_ident(target_db))
        finally:
            conn.close()
        return True
    except Exception:  # pylint: disable=broad-except
        return False


def _pg_restore_argv(pg_restore, target_db, jobs, tables, no_owner, path=None):
    argv = [pg_restore, "--exit-on-error", "--no-password", "--dbname=%s" % _conninfo_dbname(target_db)]
    if jobs > 1:
        argv.append("--jobs=%d" % jobs)
    if no_owner:
        argv += ["--no-owner", "--no-privileges"]
    for schema in sorted(set(t["schema"] for t in tables or [])):
        argv.append("--schema=%s" % schema)
    for table in tables or []:
        argv.append("--table=%s" % table["name"])
    if path:
        argv.append(path)
    return argv


def _count_target(postgres, target_db, tables, jobs):
    """Row counts of `tables` (manifest tables) in the restored database, in parallel."""
    groups = split_by_size(tables, jobs)
    found = {}

    def count(group):
        conn = connect(postgres, target_db, autocommit=True)
        try:
            with conn.cursor() as cur:
                for table in group:
                    cur.execute("SELECT to_regclass(%s)", (quote_ident(table["schema"]) + "." +
                                                           quote_ident(table["name"]),))
                    if cur.fetchone()[0] is None:
                        found[(table["schema"], table["name"])] = None
                        continue
                    cur.execute("SELECT count(*) FROM %s.%s" % (
                        quote_ident(table["schema"]), quote_ident(table["name"])))
                    found[(table["schema"], table["name"])] = int(cur.fetchone()[0])
        finally:
            conn.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(groups))) as pool:
        list(pool.map(count, groups))
    rows = []
    for table in tables:
        restored = found.get((table["schema"], table["name"]))
        expected = table.get("rows")
        rows.append({"table": table_name(table["schema"], table["name"]), "expected": expected,
                     "restored": restored, "match": expected is not None and restored == expected})
    return rows


def restore(postgres, locations, target_db, encryption=None, backup_id=None, latest=False, before=None, series=None,
            jobs=2, spool_dir=None, tables=None, replace=False, check_mode=False, verify_in_check_mode=False,
            check_row_counts=True, bin_dir=None, no_owner=False, log=None):
    """Restore a logical backup into `target_db`; see the module docstring. Returns the result."""
    started_clock = time.monotonic()
    log = log or (lambda message: None)
    require_zstandard()
    chosen = [name for name, value in (("backup_id", backup_id), ("latest", latest), ("before", before)) if value]
    if len(chosen) != 1:
        raise DRError("choose the backup with exactly one of backup_id, latest or before (got %s)" % (
            ", ".join(chosen) or "none"))
    if not target_db:
        raise DRError("target_db is required: the new database to restore into")
    jobs = int(jobs or 1)
    if jobs < 1:
        raise DRError("jobs must be 1 or more, got %d" % jobs)
    if backup_id:
        catalog_mod.check_backup_id(backup_id)
        series = catalog_mod.parse_backup_id(backup_id)[0]
    else:
        series = catalog_mod.check_series(series or "auditron")
    targets = backupset.target_locations(locations)
    keys = _Keys(encryption)
    # The target's state, the pg_restore binary and the key provider are looked up while the
    # catalog is listed and read.
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        target_lookup = pool.submit(_target_and_tool, postgres, target_db, bin_dir, not check_mode)
        if not check_mode or verify_in_check_mode:
            pool.submit(keys.prepare)
        catalog = catalog_mod.Catalog.load(targets, series=series, lazy=True)
        entries, may_fall_back = _select_candidates(catalog, backup_id, latest, before, series)
        state, (pg_restore, pg_restore_version) = target_lookup.result()
    _refuse_target(target_db, state, replace, entries[:1], postgres)
    subset = _check_tables(entries[0], tables)
    warnings = []
    if backup_id and entries[0].verification is not None and entries[0].verification.get("result") != "passed":
        warnings.append("backup %s failed its last verification (%s: %s); restoring it as asked" % (
            backup_id, entries[0].verification.get("verified_at"), entries[0].verification.get("detail")))

    attempts = []
    prepared_seconds = round(time.monotonic() - started_clock, 3)
    if check_mode:
        return _restore_check_mode(catalog, entries, may_fall_back, targets, keys, verify_in_check_mode,
                                   target_db, state, replace, jobs, subset, attempts, warnings, started_clock)

    timings = collections.OrderedDict([("prepare_seconds", prepared_seconds)])
    spool = None
    try:
        if jobs > 1:
            needed = max(catalog_mod.main_artifact(e.manifest).get("plaintext_bytes") or 0 for e in entries[:1])
            spool = _Spool(spool_dir, needed)
        clock = time.monotonic()
        entry, location = _first_good_copy(catalog, entries, may_fall_back, targets, keys, attempts, spool,
                                           log)
        timings["verify_seconds"] = round(time.monotonic() - clock, 3)
        if entry is not entries[0]:
            subset = _check_tables(entry, tables)
        clock = time.monotonic()
        action = _prepare_target(postgres, target_db, state, replace, entry.manifest)
        created = action in ("created", "replaced")
        try:
            restore_info = _run_pg_restore(postgres, target_db, pg_restore, entry, location, keys, jobs,
                                           subset, no_owner, spool)
        except BaseException:
            if created:
                _drop_target(postgres, target_db)
            raise
        timings["pg_restore_seconds"] = round(time.monotonic() - clock, 3)
    finally:
        if spool is not None:
            spool.remove()
    clock = time.monotonic()
    counted = subset if subset is not None else list(entry.manifest.get("tables") or [])
    row_counts = _count_target(postgres, target_db, counted, jobs) if check_row_counts else []
    timings["count_seconds"] = round(time.monotonic() - clock, 3)
    mismatched = [row for row in row_counts if not row["match"]]
    result = _restore_result(entry, location, target_db, action, jobs, subset, row_counts, attempts, entries,
                             started_clock, timings, pg_restore_version, restore_info, warnings)
    if mismatched:
        raise DRError("restore of backup %s into %s: row counts differ from the manifest: %s (the restored database "
                      "is kept for inspection)" % (entry.id, target_db, "; ".join(
                          "%s expected %s, restored %s" % (row["table"], row["expected"], row["restored"])
                          for row in mismatched[:5])), **dict((k, v) for k, v in result.items() if k != "msg"))
    return result


def _fallback_note(entries, entry, location, attempts):
    failed = [a for a in attempts if not a["ok"]]
    if not failed:
        return None
    reasons = "; ".join("%s at %s: %s" % (a["backup_id"], a["location"], a["detail"]) for a in failed)
    if entry is entries[0]:
        return "used the copy of %s at %s because %s" % (entry.id, location.name, reasons)
    return "used the older backup %s (copy at %s) because no copy of %s verified: %s" % (
        entry.id, location.name, entries[0].id, reasons)


def _first_good_copy(catalog, entries, may_fall_back, targets, keys, attempts, spool, log):
    """The first (backup, location) whose copy verifies. With a spool, the verifying pass also
    fills it; without, the copy is only verified (verify_stream) and streamed later."""
    for entry in entries if may_fall_back else entries[:1]:
        catalog.resolve(entry)
        for location, state in _copies_in_order(entry, targets):
            if state["status"] != catalog_mod.PRESENT:
                attempts.append({"backup_id": entry.id, "location": location.name, "ok": False,
                                 "detail": "%s: %s" % (state["status"], state["detail"])})
                continue
            try:
                if spool is not None:
                    handle = spool.open()
                    _decompressing_copy(entry, location, keys.for_manifest(entry.manifest), handle)
                    spool.close()
                    detail = "verified while spooling (sha256 and every GCM tag)"
                else:
                    detail = verify_copy(location, entry, keys.for_manifest(entry.manifest))
            except DRError as exc:
                attempts.append({"backup_id": entry.id, "location": location.name, "ok": False,
                                 "detail": exc.message})
                log("restore: %s" % exc.message)
                continue
            attempts.append({"backup_id": entry.id, "location": location.name, "ok": True, "detail": detail})
            return entry, location
    raise DRError("restore of %s refused, target untouched: no copy verified: %s" % (
        entries[0].id if not may_fall_back else "the latest valid backup (%s)" % entries[0].id,
        "; ".join("%s at %s: %s" % (a["backup_id"], a["location"], a["detail"]) for a in attempts)),
        attempts=attempts)


def _run_pg_restore(postgres, target_db, pg_restore, entry, location, keys, jobs, subset, no_owner, spool):
    env = libpq_env(postgres, target_db)
    if spool is not None:
        argv = _pg_restore_argv(pg_restore, target_db, jobs, subset, no_owner, spool.path)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=env)
        tail = StderrTail(proc.stderr)
        code, _rss = reap(proc)
        tail.join()
        if code != 0:
            raise DRError("restore of backup %s into %s: pg_restore failed (exit %d): %s" % (
                entry.id, target_db, code, tail.summary()))
        return {"mode": "spool", "pg_restore_jobs": jobs}
    argv = _pg_restore_argv(pg_restore, target_db, 1, subset, no_owner)
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    tail = StderrTail(proc.stderr)
    stream_error = None
    try:
        _decompressing_copy(entry, location, keys.for_manifest(entry.manifest), proc.stdin)
    except (BrokenPipeError, IOError, OSError) as exc:
        stream_error = "pg_restore stopped reading: %s" % first_line(exc)
    except DRError as exc:
        stream_error = exc.message
        kill(proc)
    finally:
        try:
            proc.stdin.close()
        except (BrokenPipeError, IOError, OSError):
            pass
    code, _rss = reap(proc)
    tail.join()
    if stream_error:
        raise DRError("restore of backup %s into %s from %s: %s (pg_restore exit %d)" % (
            entry.id, target_db, location.name, stream_error, code))
    if code != 0:
        raise DRError("restore of backup %s into %s: pg_restore failed (exit %d): %s" % (
            entry.id, target_db, code, tail.summary()))
    return {"mode": "stream", "pg_restore_jobs": 1}


def _restore_check_mode(catalog, entries, may_fall_back, targets, keys, verify, target_db, state, replace,
                        jobs, subset, attempts, warnings, started_clock):
    entry = location = None
    verified = None
    if verify:
        entry, location = _first_good_copy(catalog, entries, may_fall_back, targets, keys, attempts, None,
                                           lambda message: None)
        verified = True
    else:
        for candidate in entries if may_fall_back else entries[:1]:
            catalog.resolve(candidate)
            for where, copy_state in _copies_in_order(candidate, targets):
                if copy_state["status"] == catalog_mod.PRESENT:
                    entry, location = candidate, where
                    break
                attempts.append({"backup_id": candidate.id, "location": where.name, "ok": False,
                                 "detail": "%s: %s" % (copy_state["status"], copy_state["detail"])})
            if entry is not None:
                break
        if entry is None:
            raise DRError("restore of %s refused: no location holds a present copy: %s" % (
                entries[0].id, "; ".join("%s: %s" % (a["location"], a["detail"]) for a in attempts)))
    if state["exists"] and state["relations"]:
        action = "drop and recreate"
    elif state["exists"]:
        action = "restore into the existing empty database"
    else:
        action = "create"
    msg = "would %s %s and restore backup %s (%s) from %s with pg_restore %s; copy %s" % (
        action, target_db, entry.id, entry.manifest.get("snapshot_at"), location.name,
        "--jobs=%d via a spool file" % jobs if jobs > 1 else "streamed to stdin",
        "verified" if verified else "not verified (verify_in_check_mode: false)")
    result = _restore_result(entry, location, target_db, None, jobs, subset, [], attempts, entries, started_clock,
                             {}, None, {}, warnings)
    result.update(changed=True, check_mode=True, msg=msg, verified=verified, would=action)
    return result


def _restore_result(entry, location, target_db, action, jobs, subset, row_counts, attempts, entries, started_clock,
                    timings, pg_restore_version, restore_info, warnings):
    artifact = catalog_mod.main_artifact(entry.manifest)
    fallback = _fallback_note(entries, entry, location, attempts)
    if fallback:
        warnings = warnings + [fallback]
    duration = time.monotonic() - started_clock
    matched = all(row["match"] for row in row_counts) if row_counts else None
    msg = "restored backup %s (snapshot %s) from %s into %s in %s%s" % (
        entry.id, entry.manifest.get("snapshot_at"), location.name, target_db, human_duration(duration),
        "; row counts match the manifest (%d tables)" % len(row_counts) if matched else "")
    check = {"name": "row counts of %s vs manifest of %s" % (target_db, entry.id),
             "result": "ok" if matched or not row_counts else "failed",
             "detail": "%d tables, %d rows" % (len(row_counts), sum(r["restored"] or 0 for r in row_counts))}
    return {
        "changed": action is not None,
        "msg": msg,
        "backup_id": entry.id,
        "series": entry.series,
        "snapshot_at": entry.manifest.get("snapshot_at"),
        "location": location.name,
        "target_db": target_db,
        "target_action": action,
        "jobs": jobs,
        "tables": [table_name(t["schema"], t["name"]) for t in subset] if subset is not None else None,
        "size": artifact["size"],
        "sha256": artifact["sha256"],
        "dump_bytes": artifact.get("plaintext_bytes"),
        "verified": any(a["ok"] for a in attempts),
        "attempts": attempts,
        "fallback": fallback,
        "row_counts": row_counts,
        "counts_match": matched,
        "duration_seconds": round(duration, 3),
        "timings": dict(timings),
        "pg_restore_version": pg_restore_version,
        "mode": restore_info.get("mode"),
        "peak_rss_bytes": peak_rss_bytes(),
        "warnings": warnings,
        "dr_report": {
            "backup_used": {"id": entry.id, "kind": "logical", "location": location.name,
                            "database": entry.manifest.get("database"), "snapshot_at": entry.manifest.get("snapshot_at"),
                            "target_db": target_db},
            "markers": {"recovery_point": entry.manifest.get("snapshot_at")},
            "checks": [check] if row_counts else [],
            "phase_detail": msg,
        },
    }
