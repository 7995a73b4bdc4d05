# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logical backups and restores: the pipelines behind pg_backup and pg_restore.

Backup, in one pass with bounded memory (no temporary copy of the dump anywhere)::

    pg_dump -Fc -Z0 --snapshot=S | zstd (threads) | AES-256-GCM envelope | sha256 | fan-out
                                                                                   -> local dir
                                                                                   -> S3 region 1
                                                                                   -> S3 region 2
    then, in every location that got the whole artifact: <id>.manifest.json (last)

- pg_dump runs with its own compression off: zstd on every core is faster than pg_dump's
  single-threaded zlib, and smaller.
- One snapshot for everything: a REPEATABLE READ transaction exports its snapshot, pg_dump
  imports it, and row counts and max("createdAt") per table are taken in parallel threads
  that import the same snapshot while pg_dump runs. The exporting transaction stays open
  until pg_dump ends, so the counts in the manifest are exactly what the dump holds.
- The password reaches pg_dump and pg_restore through the environment (pg.libpq_env), never
  the command line; table and column names come from the catalog and are quoted.
- A location that fails mid-stream is dropped and recorded; the backup succeeds with the
  others unless require_all_locations is set.
- An advisory lock named for the backup set keeps two runs from writing one set at once.
  Holding it, a run first ends what an earlier run of the set left unfinished when it was
  killed (kill -9, a crash, the machine lost): temp files on a local disk and unfinished S3
  multipart uploads of this set's keys. Only this set's, and only under its lock, so never a
  write that is still going on.

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
import errno
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import traceback

try:
    import queue
except ImportError:  # pragma: no cover - Python 2 is not supported, kept for sanity's import test
    import Queue as queue  # type: ignore

try:
    import zstandard
    HAS_ZSTANDARD = True
    ZSTANDARD_IMPORT_ERROR = None
except ImportError:
    HAS_ZSTANDARD = False
    ZSTANDARD_IMPORT_ERROR = traceback.format_exc()

from ansible_collections.auditron.dr.plugins.module_utils import catalog as catalog_mod
from ansible_collections.auditron.dr.plugins.module_utils.common import (
    DRError, first_line, format_time, human_bytes, human_duration, parse_time, utc_now)
from ansible_collections.auditron.dr.plugins.module_utils.crypto import DecryptingReader, EncryptingWriter, verify_stream
from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import (
    describe_reference, provider_for_reference, provider_from_params)
from ansible_collections.auditron.dr.plugins.module_utils.pg import (
    connect, libpq_env, quote_ident, server_facts, server_label)
from ansible_collections.auditron.dr.plugins.module_utils.storage import FanOutWriter, Location, locations_from_params

COLLECTION = "auditron.dr"
READ_SIZE = 1 << 20
PIPE_SIZE = 1 << 20
ZSTD_WRITE_SIZE = 1 << 20
READ_AHEAD_BLOCK = 4 << 20
READ_AHEAD_DEPTH = 3
# Memory, not speed, sets these. Every S3 copy holds about four parts in flight (the one
# filling, one queued, one uploading, a copy in the making): 5 MiB parts keep that near 30 MB
# per location, larger dumps get larger parts so they stay under S3's 10,000 parts.
MIN_PART_SIZE = 5 << 20
MAX_PARTS = 9000
# zstd's default job for multi-threaded level 3 is 8 MiB per worker plus buffers (~50 MB);
# 1 MiB jobs compress as well here (the lab data: 0.2% smaller) at a fifth of the memory.
ZSTD_JOB_SIZE = 1 << 20
LOCK_NAMESPACE = "auditron.dr logical backup set "
CONTEXT_PURPOSE = "auditron.dr logical backup"
STDERR_LINES = 40
# pg_dump waits this long for a table lock (an ALTER TABLE holding one) before giving up.
TABLE_LOCK_WAIT = "300s"
_F_SETPIPE_SZ = 1031
_USER_TABLES_SQL = r"""
SELECT n.nspname, c.relname,
       EXISTS (SELECT 1 FROM pg_attribute a
               WHERE a.attrelid = c.oid AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped) AS has_ts,
       pg_table_size(c.oid) AS bytes
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%%' AND n.nspname NOT LIKE 'pg\_temp\_%%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""
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
# Small pieces

def _require_zstandard():
    if not HAS_ZSTANDARD:
        raise DRError("the zstandard Python library is required for logical backups")


def _locations(items, **tuning):
    """Location objects from `locations` params (dicts) or Location objects as they are."""
    items = list(items or [])
    if not items:
        raise DRError("no backup location given: set locations")
    if all(isinstance(item, Location) for item in items):
        names = [item.name for item in items]
        if len(set(names)) != len(names):
            raise DRError("locations: a name is used twice (%s)" % ", ".join(names))
        return items
    return locations_from_params(items, **tuning)


def _part_size(database_bytes):
    """S3 part size for a dump of a database this big (the dump is smaller than the database;
    twice its size leaves room for the unusual case)."""
    wanted = (2 * int(database_bytes or 0)) // MAX_PARTS
    return max(MIN_PART_SIZE, ((wanted + (1 << 20) - 1) >> 20) << 20)


def _peak_rss_bytes():
    """This process's peak resident memory (VmHWM), or None where /proc is not there."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (IOError, OSError, ValueError):
        return None
    return None


def _child_peak_rss(pid):
    """A running child's peak resident memory so far (VmHWM, reset by exec), or None. rusage is
    no use here: it counts the pages the child shared with us between fork and exec."""
    try:
        with open("/proc/%d/status" % pid) as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (IOError, OSError, ValueError):
        return None
    return None


def _exit_code(status):
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return status


def _reap(proc):
    """Wait for a child; (exit code, ru_maxrss in bytes: an upper bound, see _child_peak_rss)."""
    if proc.returncode is not None:
        return proc.returncode, None
    while True:
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
            break
        except OSError as exc:
            if exc.errno == errno.EINTR:
                continue
            if exc.errno == errno.ECHILD:
                return proc.wait(), None
            raise
    proc.returncode = _exit_code(status)
    return proc.returncode, usage.ru_maxrss * 1024


def _kill(proc):
    if proc is not None and proc.poll() is None:
        try:
            proc.kill()
        except OSError:
            pass
        try:
            proc.wait()
        except OSError:
            pass


class _StderrTail(object):
    """Reads a child's stderr in a thread (so a chatty child never blocks on a full pipe) and
    keeps the last lines for the error message."""

    def __init__(self, stream):
        self.lines = collections.deque(maxlen=STDERR_LINES)
        self._stream = stream
        self._thread = threading.Thread(target=self._run, name="stderr-tail")
        self._thread.daemon = True
        self._thread.start()

    def _run(self):
        for raw in iter(self._stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.lines.append(line)
        self._stream.close()

    def join(self, timeout=10):
        self._thread.join(timeout)

    def summary(self, default="no message"):
        """The most telling line: the first 'error:' line, else the last one."""
        errors = [line for line in self.lines if "error:" in line.lower() or "fatal:" in line.lower()]
        return (errors[0] if errors else (self.lines[-1] if self.lines else default)).strip()


def _widen_pipe(handle):
    """Ask for a 1 MiB pipe buffer (Linux): fewer, larger reads from pg_dump. Best effort."""
    try:
        fcntl.fcntl(handle.fileno(), _F_SETPIPE_SZ, PIPE_SIZE)
    except (IOError, OSError, ValueError, AttributeError):
        pass


_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


def tool_version(path):
    """('pg_dump (PostgreSQL) 15.18 ...', 15) for a PostgreSQL client binary."""
    try:
        completed = subprocess.run([path, "--version"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   check=False, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise DRError("%s cannot be run: %s" % (path, first_line(exc)))
    text = completed.stdout.decode("utf-8", "replace").strip()
    match = _VERSION_RE.search(text)
    if completed.returncode != 0 or not match:
        raise DRError("%s --version did not name a PostgreSQL version: %r" % (path, text[:200]))
    return text, int(match.group(1))


def find_tool(name, bin_dir=None, server_major=None):
    """Path and version of pg_dump/pg_restore: bin_dir when given, else the newest that is at
    least the server's major version (Debian's /usr/lib/postgresql/<major>/bin, then PATH)."""
    if bin_dir:
        path = os.path.join(bin_dir, name)
        if not os.access(path, os.X_OK):
            raise DRError("%s not found in bin_dir %s" % (name, bin_dir))
        version, major = tool_version(path)
        if server_major and major < server_major:
            raise DRError("%s is version %d, older than the server (%d): set bin_dir to PostgreSQL %d's client "
                          "tools" % (path, major, server_major, server_major))
        return path, version
    candidates = []
    if server_major:
        candidates.append("/usr/lib/postgresql/%d/bin/%s" % (server_major, name))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin/%s" % name), reverse=True,
                         key=lambda p: int(re.sub(r"\D", "", p.split("/")[4]) or 0))
    on_path = shutil.which(name)
    if on_path:
        candidates.append(on_path)
    seen, found = set(), []
    for path in candidates:
        if path in seen or not os.access(path, os.X_OK):
            continue
        seen.add(path)
        version, major = tool_version(path)
        if not server_major or major >= server_major:
            return path, version
        found.append("%s (%d)" % (path, major))
    raise DRError("no %s of PostgreSQL %s or newer found%s: install the client tools or set bin_dir" % (
        name, server_major or "any", (" (found %s)" % ", ".join(found)) if found else ""))


def _conninfo_dbname(database):
    """`dbname='...'` for pg_restore -d: a database name is never taken as a connection string."""
    return "dbname='%s'" % str(database).replace("\\", "\\\\").replace("'", "\\'")


def _table_name(schema, name):
    return "%s.%s" % (schema, name)


def _encryption_context(backup_id, database):
    return {"backup_id": backup_id, "database": database, "purpose": CONTEXT_PURPOSE}


def _format_timestamp(value):
    if value is None:
        return None
    if hasattr(value, "tzinfo") and hasattr(value, "isoformat"):
        return format_time(value) if value.tzinfo else value.isoformat()
    return str(value)


def describe_encryption(params):
    """One line without secrets: what the `encryption` option says."""
    params = params or {}
    source = params.get("key_source") or "file"
    if source == "none":
        return "UNENCRYPTED (encryption.key_source: none)"
    if source == "file":
        return "AES-256-GCM, data key wrapped by key file %s" % params.get("key_file")
    if source == "kms":
        return "AES-256-GCM, data key wrapped by KMS key %s" % params.get("kms_key_id")
    return "AES-256-GCM, data key wrapped by Vault transit key %s" % params.get("vault_transit_key")


# ---------------------------------------------------------------------------------------------
# Reading and writing streams

class _HashingSink(object):
    """Feeds what it is given to sha256 and on to the fan-out: the stored bytes' checksum."""

    def __init__(self, target):
        self.target = target
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def write(self, data):
        self.sha256.update(data)
        self.bytes += len(data)
        self.target.write(data)
        return len(data)


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
# Database side of a backup

def _user_tables(conn, timestamp_column):
    with conn.cursor() as cur:
        cur.execute(_USER_TABLES_SQL, (timestamp_column or "",))
        return [{"schema": schema, "name": name, "has_ts": bool(has_ts), "bytes": int(size or 0)}
                for schema, name, has_ts, size in cur.fetchall()]


def _database_facts(conn):
    facts = server_facts(conn)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database "
                    "WHERE datname = current_database()")
        encoding, collate, ctype = cur.fetchone()
    facts.update(encoding=encoding, lc_collate=collate, lc_ctype=ctype)
    return facts


def _lock_key(series):
    return LOCK_NAMESPACE + series


def _lock_holder(conn, key):
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT a.pid, a.application_name, coalesce(host(a.client_addr), 'local'), a.backend_start "
                "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                "AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended(%s, 0)", (key,))
            row = cur.fetchone()
    except Exception:  # pylint: disable=broad-except
        return "holder unknown"
    if not row:
        return "holder unknown"
    return "held by pid %s (%s from %s, connected since %s)" % (row[0], row[1] or "no application name", row[2],
                                                                _format_timestamp(row[3]))


def _take_lock(conn, series, timeout, log):
    """Session advisory lock for the backup set; waits up to `timeout` seconds, then refuses."""
    key = _lock_key(series)
    deadline = time.monotonic() + max(0, timeout or 0)
    announced = False
    while True:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,))
            if cur.fetchone()[0]:
                return key
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DRError("backup set %s: another logical backup of this set is running (%s); waited %d s "
                          "(lock_timeout): refusing to write the same backup set twice at once"
                          % (series, _lock_holder(conn, key), timeout or 0))
        if not announced:
            log("backup set %s is locked by another run (%s): waiting up to %d s" % (
                series, _lock_holder(conn, key), timeout))
            announced = True
        time.sleep(min(0.5, remaining))


def _release_lock(conn, key):
    if conn is None or key is None:
        return
    try:
        if not conn.autocommit:
            conn.rollback()
            conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
    except Exception:  # pylint: disable=broad-except
        pass  # closing the session releases it anyway


def _count_group(postgres, database, snapshot, tables, timestamp_column):
    """Row counts (and max of the timestamp column) of `tables`, in the exported snapshot."""
    conn = connect(postgres, database, autocommit=True)
    results = []
    try:
        with conn.cursor() as cur:
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            if snapshot:
                cur.execute("SET TRANSACTION SNAPSHOT %s", (snapshot,))
            for table in tables:
                columns = "count(*)"
                if table.get("has_ts"):
                    columns += ", max(%s)" % quote_ident(timestamp_column)
                cur.execute("SELECT %s FROM %s.%s" % (columns, quote_ident(table["schema"]),
                                                      quote_ident(table["name"])))
                row = cur.fetchone()
                item = {"schema": table["schema"], "name": table["name"], "rows": int(row[0])}
                if table.get("has_ts"):
                    item["timestamp_column"] = timestamp_column
                    item["max_timestamp"] = _format_timestamp(row[1])
                results.append(item)
            cur.execute("ROLLBACK")
    finally:
        conn.close()
    return results


def _split(tables, jobs):
    """Spread tables over `jobs` groups, biggest first, so the groups take about as long."""
    groups = [[] for _index in range(max(1, jobs))]
    sizes = [0] * len(groups)
    for table in sorted(tables, key=lambda t: -t.get("bytes", 0)):
        smallest = sizes.index(min(sizes))
        groups[smallest].append(table)
        sizes[smallest] += table.get("bytes", 0) or 1
    return [group for group in groups if group]


def _start_counts(pool, postgres, database, snapshot, tables, jobs, timestamp_column):
    return [pool.submit(_count_group, postgres, database, snapshot, group, timestamp_column)
            for group in _split(tables, jobs)]


def _collect_counts(futures, tables):
    found = {}
    for future in futures:
        for item in future.result():
            found[(item["schema"], item["name"])] = item
    return [found[(t["schema"], t["name"])] for t in tables if (t["schema"], t["name"]) in found]


def _fresh_backup_id(series, targets, encrypted):
    """A new id; when one of the same second exists already (two runs within a second), the
    next second's."""
    for _attempt in range(5):
        backup_id = catalog_mod.new_backup_id(series)
        taken = False
        for location in targets:
            try:
                if location.head(catalog_mod.manifest_key(backup_id)) is not None or \
                        location.head(catalog_mod.artifact_key(backup_id, encrypted)) is not None:
                    taken = True
                    break
            except DRError:
                continue  # that location will fail (and be reported) when written
        if not taken:
            return backup_id
        time.sleep(1.05 - (time.time() % 1.0))
    raise DRError("backup set %s: could not find a free backup id (every second taken?)" % series)


# ---------------------------------------------------------------------------------------------
# Backup

def backup(postgres, locations, encryption=None, database="auditron", series=None, require_all_locations=False,
           lock_timeout=60, compression_level=3, compression_threads=0, count_rows=True, count_jobs=2,
           timestamp_column="createdAt", progress_interval=10.0, bin_dir=None, check_mode=False, log=None):
    """Dump `database` to every location in one pass; see the module docstring.

    postgres: community.postgresql-shaped connection params (login_host, login_port, ...).
    locations: `locations` params (dicts) or Location objects. encryption: the `encryption`
    option (required: key_source none must be said explicitly). Returns the result dict.
    """
    started_clock = time.monotonic()
    log = log or (lambda message: None)
    _require_zstandard()
    if encryption is None:
        raise DRError("encryption is required: give encryption.key_source (file, kms or vault), or key_source: none "
                      "to store this backup unencrypted")
    series = catalog_mod.check_series(series or catalog_mod.series_for_database(database))
    if not locations:
        raise DRError("no backup location given: set locations")
    encrypted = (encryption.get("key_source") or "file") != "none"
    provider = provider_from_params(encryption) if encrypted else None
    warnings = []
    if not encrypted:
        warnings.append("UNENCRYPTED: logical backups of %s are stored without encryption (encryption.key_source: "
                        "none); the plan requires AES-256 at rest" % database)
    if check_mode:
        return _backup_check_mode(postgres, database, series, _locations(locations), encryption, encrypted,
                                  timestamp_column, bin_dir, warnings)

    conn = connect(postgres, database, autocommit=True)
    lock = None
    try:
        lock = _take_lock(conn, series, lock_timeout, log)
        facts = _database_facts(conn)
        pg_dump, pg_dump_version = find_tool("pg_dump", bin_dir, facts["server_version_num"] // 10000)
        targets = _locations(locations, part_size=_part_size(facts["database_bytes"]))
        cleaned = clean_interrupted(targets, series, log)
        backup_id = _fresh_backup_id(series, targets, encrypted)
        started_at = utc_now()
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True, autocommit=False)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_export_snapshot(), now()")
            snapshot, snapshot_at = cur.fetchone()
        tables = _user_tables(conn, timestamp_column)
        log("logical backup %s of %s: snapshot %s, %d tables, to %s" % (
            backup_id, database, snapshot, len(tables), ", ".join(t.name for t in targets)))
        streamed = _dump_and_store(
            postgres, database, backup_id, targets, provider, pg_dump, snapshot, tables,
            dict(level=compression_level, threads=compression_threads or (os.cpu_count() or 1)),
            count_rows, count_jobs, timestamp_column, progress_interval, log)
        # The dump is done: only now may the exporting transaction end.
        conn.rollback()
        conn.autocommit = True
        finished_at = utc_now()
        manifest = _manifest(backup_id, series, database, facts, postgres, snapshot, snapshot_at, started_at,
                             finished_at, pg_dump_version, encryption, streamed, tables, timestamp_column,
                             compression_level, compression_threads)
        written, manifest_failed = _commit(targets, manifest, streamed, require_all_locations)
    finally:
        _release_lock(conn, lock)
        conn.close()
    result = _backup_result(manifest, streamed, written, manifest_failed, started_clock, warnings)
    result["interrupted_leftovers_removed"] = cleaned
    return result


def clean_interrupted(locations, series, log=None):
    """End the unfinished writes an interrupted run of backup set `series` left behind (a
    local temp file, an S3 multipart upload), in every location; call it holding the set's
    lock. Returns {location: [keys]} of what was removed. A location that cannot be listed or
    cleaned is logged and skipped: the leftovers are invisible, so they never stop a backup."""
    log = log or (lambda message: None)
    removed = collections.OrderedDict()
    for location in locations:
        try:
            items = [(key, handle) for key, handle in location.leftovers(series + "_")
                     if (catalog_mod.parse_backup_id(catalog_mod.parse_key(key)[0]) or (None,))[0] == series]
            if not items:
                continue
            failed = dict(location.remove_leftovers(items))
        except DRError as exc:
            log("backup set %s: leftovers of interrupted runs in %s not cleaned: %s" % (
                series, location.name, exc.message))
            continue
        gone = [key for key, _handle in items if key not in failed]
        if gone:
            removed[location.name] = gone
            log("backup set %s: removed %d unfinished write(s) of interrupted runs from %s: %s" % (
                series, len(gone), location.name, ", ".join(sorted(set(gone)))))
        if failed:
            log("backup set %s: could not remove from %s: %s" % (series, location.name, "; ".join(
                "%s: %s" % item for item in failed.items())))
    return dict(removed)


def _backup_check_mode(postgres, database, series, targets, encryption, encrypted, timestamp_column, bin_dir,
                       warnings):
    conn = connect(postgres, database, autocommit=True)
    try:
        facts = _database_facts(conn)
        tables = _user_tables(conn, timestamp_column)
    finally:
        conn.close()
    _pg_dump, pg_dump_version = find_tool("pg_dump", bin_dir, facts["server_version_num"] // 10000)
    example_id = catalog_mod.new_backup_id(series)
    probes = []
    for location in targets:
        if getattr(location, "kind", None) == "local" and not os.path.isdir(location.path):
            probe = {"ok": True, "detail": "directory %s does not exist yet: the backup creates it" % location.path}
        else:
            probe = location.probe(write=False)
        probes.append({"location": location.name, "reachable": probe["ok"], "detail": probe["detail"],
                       "would_write": [catalog_mod.artifact_key(example_id, encrypted),
                                       catalog_mod.manifest_key(example_id)]})
    estimated = sum(table["bytes"] for table in tables)
    msg = "would dump %s (%s database, about %s of table data, %d tables) from %s to %s; %s" % (
        database, human_bytes(facts["database_bytes"]), human_bytes(estimated), len(tables), server_label(postgres),
        ", ".join(location.name for location in targets), describe_encryption(encryption))
    return {
        "changed": True, "check_mode": True, "msg": msg, "backup_id": example_id, "series": series,
        "database": database, "database_bytes": facts["database_bytes"], "estimated_dump_bytes": estimated,
        "server_version": facts["server_version"], "pg_dump_version": pg_dump_version, "tables": len(tables),
        "locations": probes, "encrypted": encrypted, "encryption": describe_encryption(encryption),
        "warnings": warnings,
    }


class ArtifactWriter(object):
    """One artifact, written once to every location: plaintext in through write(), then
    zstd (threads) | AES-256-GCM envelope (when a provider is given) | sha256 | fan-out.

    close() finishes the zstd frame and the final encrypted chunk and commits every location
    still standing; it returns ({location: ObjectInfo}, {location: error}). abort() leaves
    nothing visible anywhere. Memory: the zstd jobs plus the locations' upload buffers, never
    the artifact.
    """

    def __init__(self, targets, key, provider=None, context=None, level=3, threads=0):
        self.key = key
        self._fan = FanOutWriter(targets, key)
        self._sink = _HashingSink(self._fan)
        self._encryptor = None
        self.plaintext_bytes = 0
        self.threads = threads
        try:
            if provider is not None:
                self._encryptor = EncryptingWriter(self._sink, provider, context)
            parameters = zstandard.ZstdCompressionParameters.from_level(
                level, threads=threads, job_size=ZSTD_JOB_SIZE if threads > 0 else 0, write_checksum=True)
            self._writer = zstandard.ZstdCompressor(compression_params=parameters).stream_writer(
                self._encryptor or self._sink, closefd=False, write_size=ZSTD_WRITE_SIZE)
        except BaseException:
            self._fan.abort()
            raise

    @property
    def locations(self):
        """Names of the locations still being written."""
        return list(self._fan.writers)

    @property
    def stored_bytes(self):
        return self._sink.bytes

    @property
    def sha256(self):
        return self._sink.sha256.hexdigest()

    @property
    def key_reference(self):
        return self._encryptor.key_reference if self._encryptor is not None else None

    @property
    def context(self):
        return self._encryptor.context if self._encryptor is not None else None

    def write(self, data):
        self._writer.write(data)
        self.plaintext_bytes += len(data)

    def close(self):
        self._writer.flush(zstandard.FLUSH_FRAME)
        self._writer.close()
        if self._encryptor is not None:
            self._encryptor.close()
        return self._fan.close()

    def abort(self):
        self._fan.abort()


def _dump_and_store(postgres, database, backup_id, targets, provider, pg_dump, snapshot, tables, compression,
                    count_rows, count_jobs, timestamp_column, progress_interval, log):
    """The one pass: pg_dump | ArtifactWriter, with row counts in the same snapshot beside it."""
    key = catalog_mod.artifact_key(backup_id, provider is not None)
    argv = [pg_dump, "--format=custom", "--compress=0", "--snapshot=%s" % snapshot, "--no-password",
            "--lock-wait-timeout=%s" % TABLE_LOCK_WAIT]
    env = libpq_env(postgres, database)
    artifact = proc = None
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, count_jobs)) if count_rows and tables else None
    count_futures = []
    progress = []
    clock = time.monotonic()
    try:
        artifact = ArtifactWriter(targets, key, provider, _encryption_context(backup_id, database),
                                  compression["level"], compression["threads"])
        if pool is not None:
            count_futures = _start_counts(pool, postgres, database, snapshot, tables, count_jobs, timestamp_column)
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=env, bufsize=0)
        except OSError as exc:
            raise DRError("backup %s: cannot start %s: %s" % (backup_id, pg_dump, exc.strerror or first_line(exc)))
        stderr = _StderrTail(proc.stderr)
        _widen_pipe(proc.stdout)
        buffer = bytearray(READ_SIZE)
        view = memoryview(buffer)
        next_report = clock + progress_interval
        next_sample, pg_dump_rss = clock, None
        while True:
            count = proc.stdout.readinto(buffer)
            if not count:
                break
            artifact.write(view[:count])
            now = time.monotonic()
            if now >= next_sample:
                next_sample = now + 0.25
                pg_dump_rss = _child_peak_rss(proc.pid) or pg_dump_rss
            if now >= next_report:
                next_report = now + progress_interval
                progress.append({"elapsed_seconds": round(now - clock, 1), "dump_bytes": artifact.plaintext_bytes,
                                 "stored_bytes": artifact.stored_bytes, "locations": artifact.locations})
                log("backup %s: %s dumped, %s stored, %.0f s, to %s" % (
                    backup_id, human_bytes(artifact.plaintext_bytes), human_bytes(artifact.stored_bytes),
                    now - clock, ", ".join(artifact.locations)))
        returncode, _rusage_rss = _reap(proc)
        stderr.join()
        if returncode != 0:
            raise DRError("backup %s of %s: pg_dump failed (exit %d): %s" % (
                backup_id, database, returncode, stderr.summary()))
        done, failed = artifact.close()
        artifact_committed = artifact
        artifact = None
        counts = _collect_counts(count_futures, tables) if count_futures else []
    except BaseException:
        _kill(proc)
        if artifact is not None:
            artifact.abort()
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    elapsed = time.monotonic() - clock
    artifact = artifact_committed
    progress.append({"elapsed_seconds": round(elapsed, 1), "dump_bytes": artifact.plaintext_bytes,
                     "stored_bytes": artifact.stored_bytes, "locations": list(done)})
    return {
        "key": key, "size": artifact.stored_bytes, "sha256": artifact.sha256, "dump_bytes": artifact.plaintext_bytes,
        "done": done, "failed": failed, "counts": counts, "progress": progress, "stream_seconds": elapsed,
        "pg_dump_peak_rss_bytes": pg_dump_rss, "key_reference": artifact.key_reference, "context": artifact.context,
        "compression_threads": compression["threads"],
    }


def _manifest(backup_id, series, database, facts, postgres, snapshot, snapshot_at, started_at, finished_at,
              pg_dump_version, encryption, streamed, tables, timestamp_column, level, threads):
    counts = dict(((item["schema"], item["name"]), item) for item in streamed["counts"])
    table_rows = []
    for table in tables:
        item = {"schema": table["schema"], "name": table["name"], "bytes": table["bytes"]}
        counted = counts.get((table["schema"], table["name"]))
        if counted is not None:
            item["rows"] = counted["rows"]
            if "max_timestamp" in counted:
                item["timestamp_column"] = timestamp_column
                item["max_timestamp"] = counted["max_timestamp"]
        table_rows.append(item)
    presence = collections.OrderedDict()
    for name in streamed["done"]:
        presence[name] = {"present": True}
    for name, error in streamed["failed"].items():
        presence[name] = {"present": False, "error": error}
    encrypted = streamed["key_reference"] is not None
    return {
        "format": catalog_mod.MANIFEST_FORMAT,
        "format_version": catalog_mod.MANIFEST_VERSION,
        "kind": catalog_mod.KIND,
        "id": backup_id,
        "series": series,
        "database": database,
        "started_at": format_time(started_at),
        "snapshot_at": format_time(snapshot_at),
        "finished_at": format_time(finished_at),
        "duration_seconds": round((finished_at - started_at).total_seconds(), 3),
        "snapshot": snapshot,
        "server": {
            "address": server_label(postgres),
            "version": facts["server_version"],
            "version_num": facts["server_version_num"],
            "system_identifier": facts["system_identifier"],
            "role": facts["role"],
            "database_bytes": facts["database_bytes"],
            "encoding": facts["encoding"],
            "lc_collate": facts["lc_collate"],
            "lc_ctype": facts["lc_ctype"],
        },
        "tools": {"pg_dump": pg_dump_version, "collection": COLLECTION},
        "dump": {"format": "custom", "command": "pg_dump --format=custom --compress=0 --snapshot=<snapshot>"},
        "compression": {"algorithm": "zstd", "level": level, "threads": streamed["compression_threads"],
                        "checksum": True},
        "encryption": {
            "algorithm": "AES-256-GCM" if encrypted else "none",
            "key": streamed["key_reference"],
            "key_description": describe_reference(streamed["key_reference"]) if encrypted else "unencrypted",
            "context": streamed["context"],
        },
        "artifacts": [{
            "name": "dump",
            "key": streamed["key"],
            "size": streamed["size"],
            "sha256": streamed["sha256"],
            "plaintext_bytes": streamed["dump_bytes"],
            "locations": presence,
        }],
        "tables": table_rows,
        "totals": {"tables": len(table_rows), "rows": sum(item.get("rows", 0) for item in table_rows)},
    }


def _commit(targets, manifest, streamed, require_all_locations):
    """Write the manifest last, in every location that holds the whole artifact."""
    by_name = dict((location.name, location) for location in targets)
    done, failed = streamed["done"], streamed["failed"]
    backup_id = manifest["id"]
    if failed and require_all_locations:
        _remove_quietly([by_name[name] for name in done], [streamed["key"]])
        raise DRError("backup %s: not written to %s (require_all_locations): %s; the copies elsewhere were removed" % (
            backup_id, ", ".join(failed), "; ".join("%s: %s" % item for item in failed.items())))
    written, manifest_failed = [], collections.OrderedDict()
    for name in done:
        try:
            catalog_mod.write_manifest(by_name[name], manifest)
            written.append(name)
        except DRError as exc:
            manifest_failed[name] = exc.message
    if not written:
        _remove_quietly([by_name[name] for name in done], [streamed["key"]])
        raise DRError("backup %s: the manifest could not be written to any location: %s" % (
            backup_id, "; ".join("%s: %s" % item for item in manifest_failed.items())))
    if manifest_failed and require_all_locations:
        raise DRError("backup %s: the manifest could not be written to %s (require_all_locations): %s" % (
            backup_id, ", ".join(manifest_failed), "; ".join("%s: %s" % item for item in manifest_failed.items())))
    return written, manifest_failed


def _remove_quietly(locations, keys):
    for location in locations:
        try:
            location.delete(keys)
        except Exception:  # pylint: disable=broad-except
            pass


def _backup_result(manifest, streamed, written, manifest_failed, started_clock, warnings):
    duration = time.monotonic() - started_clock
    failed = collections.OrderedDict(streamed["failed"])
    for name, error in manifest_failed.items():
        failed[name] = "manifest not written: %s" % error
    artifact = manifest["artifacts"][0]
    row_counts = collections.OrderedDict(
        (_table_name(item["schema"], item["name"]), item["rows"]) for item in manifest["tables"] if "rows" in item)
    throughput = artifact["plaintext_bytes"] / streamed["stream_seconds"] if streamed["stream_seconds"] else None
    if failed:
        warnings = warnings + ["backup %s was not written to %s: %s" % (
            manifest["id"], ", ".join(failed), "; ".join("%s: %s" % item for item in failed.items()))]
    msg = "logical backup %s of %s: %s dump stored as %s (%s) in %s in %s" % (
        manifest["id"], manifest["database"], human_bytes(artifact["plaintext_bytes"]), human_bytes(artifact["size"]),
        "encrypted" if manifest["encryption"]["key"] else "UNENCRYPTED", ", ".join(written),
        human_duration(duration))
    checks = [{"name": "logical backup %s in %s" % (manifest["id"], name), "result": "ok",
               "detail": "%s, sha256 %s" % (human_bytes(artifact["size"]), artifact["sha256"][:16])}
              for name in written]
    checks += [{"name": "logical backup %s in %s" % (manifest["id"], name), "result": "failed", "detail": error}
               for name, error in failed.items()]
    return {
        "changed": True,
        "msg": msg,
        "backup_id": manifest["id"],
        "series": manifest["series"],
        "database": manifest["database"],
        "locations": written,
        "failed_locations": dict(failed),
        "artifact_key": artifact["key"],
        "manifest_key": catalog_mod.manifest_key(manifest["id"]),
        "size": artifact["size"],
        "dump_bytes": artifact["plaintext_bytes"],
        "sha256": artifact["sha256"],
        "compression_ratio": round(artifact["plaintext_bytes"] / float(artifact["size"]), 2) if artifact["size"] else None,
        "started_at": manifest["started_at"],
        "snapshot_at": manifest["snapshot_at"],
        "finished_at": manifest["finished_at"],
        "duration_seconds": round(duration, 3),
        "throughput_bytes_per_second": int(throughput) if throughput else None,
        "throughput": "%s/s" % human_bytes(throughput) if throughput else None,
        "row_counts": dict(row_counts),
        "tables": manifest["tables"],
        "encrypted": manifest["encryption"]["key"] is not None,
        "key_reference": manifest["encryption"]["key"],
        "server_version": manifest["server"]["version"],
        "system_identifier": manifest["server"]["system_identifier"],
        "pg_dump_version": manifest["tools"]["pg_dump"],
        "progress": streamed["progress"],
        "peak_rss_bytes": _peak_rss_bytes(),
        "pg_dump_peak_rss_bytes": streamed["pg_dump_peak_rss_bytes"],
        "warnings": warnings,
        "dr_report": {
            "backup_used": {"id": manifest["id"], "kind": "logical", "database": manifest["database"],
                            "snapshot_at": manifest["snapshot_at"], "locations": written,
                            "size": artifact["size"], "sha256": artifact["sha256"]},
            "checks": checks,
            "phase_detail": msg,
        },
    }


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
            outcome["written"] = zstandard.ZstdDecompressor().copy_stream(
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
    if isinstance(error, zstandard.ZstdError):
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
        matches = [t for t in known if _table_name(t["schema"], t["name"]) == wanted]
        if not matches:
            matches = [t for t in known if t["name"] == wanted]
        if not matches:
            raise DRError("table %r is not in backup %s (it holds %s)" % (
                wanted, entry.id, ", ".join(_table_name(t["schema"], t["name"]) for t in known) or "no tables"))
        if len(matches) > 1:
            raise DRError("table %r is ambiguous in backup %s: name the schema (%s)" % (
                wanted, entry.id, ", ".join(_table_name(t["schema"], t["name"]) for t in matches)))
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
    groups = _split(tables, jobs)
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
        rows.append({"table": _table_name(table["schema"], table["name"]), "expected": expected,
                     "restored": restored, "match": expected is not None and restored == expected})
    return rows


def restore(postgres, locations, target_db, encryption=None, backup_id=None, latest=False, before=None, series=None,
            jobs=2, spool_dir=None, tables=None, replace=False, check_mode=False, verify_in_check_mode=False,
            check_row_counts=True, bin_dir=None, no_owner=False, log=None):
    """Restore a logical backup into `target_db`; see the module docstring. Returns the result."""
    started_clock = time.monotonic()
    log = log or (lambda message: None)
    _require_zstandard()
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
    targets = _locations(locations)
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
        tail = _StderrTail(proc.stderr)
        code, _rss = _reap(proc)
        tail.join()
        if code != 0:
            raise DRError("restore of backup %s into %s: pg_restore failed (exit %d): %s" % (
                entry.id, target_db, code, tail.summary()))
        return {"mode": "spool", "pg_restore_jobs": jobs}
    argv = _pg_restore_argv(pg_restore, target_db, 1, subset, no_owner)
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    tail = _StderrTail(proc.stderr)
    stream_error = None
    try:
        _decompressing_copy(entry, location, keys.for_manifest(entry.manifest), proc.stdin)
    except (BrokenPipeError, IOError, OSError) as exc:
        stream_error = "pg_restore stopped reading: %s" % first_line(exc)
    except DRError as exc:
        stream_error = exc.message
        _kill(proc)
    finally:
        try:
            proc.stdin.close()
        except (BrokenPipeError, IOError, OSError):
            pass
    code, _rss = _reap(proc)
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
        "tables": [_table_name(t["schema"], t["name"]) for t in subset] if subset is not None else None,
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
        "peak_rss_bytes": _peak_rss_bytes(),
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
