# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logical backups: the pipeline behind pg_backup.

Backup, in one pass with bounded memory (no temporary copy of the dump anywhere)::

    pg_dump -Fc -Z0 --snapshot=S | zstd (threads) | AES-256-GCM envelope | sha256 | fan-out
                                                                                   -> local dir
                                                                                   -> S3 region 1
                                                                                   -> S3 region 2
    then each copy is read back and hashed (backupset.stored_copies), and in every location
    whose copy matches what was written: <id>.manifest.json (last)

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

The restore is logicalrestore.py; the backup-set protocol both follow is backupset.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import concurrent.futures
import errno
import fcntl
import glob
import os
import re
import shutil
import subprocess
import threading
import time
import traceback

try:
    import zstandard
    HAS_ZSTANDARD = True
    ZSTANDARD_IMPORT_ERROR = None
except ImportError:
    HAS_ZSTANDARD = False
    ZSTANDARD_IMPORT_ERROR = traceback.format_exc()

from ansible_collections.auditron.dr.plugins.module_utils import backupset
from ansible_collections.auditron.dr.plugins.module_utils import catalog as catalog_mod
from ansible_collections.auditron.dr.plugins.module_utils.common import (
    DRError, first_line, format_time, human_bytes, human_duration, utc_now)
from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import (
    CRYPTOGRAPHY_IMPORT_ERROR, HAS_CRYPTOGRAPHY, provider_from_params)
from ansible_collections.auditron.dr.plugins.module_utils.pg import (
    HAS_PSYCOPG2, PSYCOPG2_IMPORT_ERROR, connect, libpq_env, quote_ident, server_facts, server_label)

COLLECTION = "auditron.dr"
READ_SIZE = 1 << 20
PIPE_SIZE = 1 << 20
ZSTD_WRITE_SIZE = 1 << 20
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


# ---------------------------------------------------------------------------------------------
# Small pieces

def required_libraries():
    """The libraries logical backups and restores import (pg_backup, pg_restore), as
    AuditronModule's required_libs takes them: (name, present, import error)."""
    return [("zstandard", HAS_ZSTANDARD, ZSTANDARD_IMPORT_ERROR), ("psycopg2", HAS_PSYCOPG2, PSYCOPG2_IMPORT_ERROR),
            ("cryptography", HAS_CRYPTOGRAPHY, CRYPTOGRAPHY_IMPORT_ERROR)]


def require_zstandard():
    if not HAS_ZSTANDARD:
        raise DRError("the zstandard Python library is required for logical backups")


def _part_size(database_bytes):
    """S3 part size for a dump of a database this big (the dump is smaller than the database;
    twice its size leaves room for the unusual case)."""
    wanted = (2 * int(database_bytes or 0)) // MAX_PARTS
    return max(MIN_PART_SIZE, ((wanted + (1 << 20) - 1) >> 20) << 20)


def _vm_hwm(status_path):
    """Peak resident memory (VmHWM) from a /proc status file, or None where it is not there."""
    try:
        with open(status_path) as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (IOError, OSError, ValueError):
        return None
    return None


def peak_rss_bytes():
    """This process's peak resident memory (VmHWM), or None where /proc is not there."""
    return _vm_hwm("/proc/self/status")


def _child_peak_rss(pid):
    """A running child's peak resident memory so far (VmHWM, reset by exec), or None. rusage is
    no use here: it counts the pages the child shared with us between fork and exec."""
    return _vm_hwm("/proc/%d/status" % pid)


def _exit_code(status):
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return status


def reap(proc):
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


def kill(proc):
    if proc is not None and proc.poll() is None:
        try:
            proc.kill()
        except OSError:
            pass
        try:
            proc.wait()
        except OSError:
            pass


class StderrTail(object):
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


def table_name(schema, name):
    return "%s.%s" % (schema, name)


def _encryption_context(backup_id, database):
    return {"backup_id": backup_id, "database": database, "purpose": CONTEXT_PURPOSE}


def _format_timestamp(value):
    if value is None:
        return None
    if hasattr(value, "tzinfo") and hasattr(value, "isoformat"):
        return format_time(value) if value.tzinfo else value.isoformat()
    return str(value)


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


def split_by_size(tables, jobs):
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
            for group in split_by_size(tables, jobs)]


def _collect_counts(futures, tables):
    found = {}
    for future in futures:
        for item in future.result():
            found[(item["schema"], item["name"])] = item
    return [found[(t["schema"], t["name"])] for t in tables if (t["schema"], t["name"]) in found]


def _fresh_backup_id(series, targets, encrypted):
    return backupset.fresh_backup_id(
        targets, lambda: catalog_mod.new_backup_id(series),
        lambda backup_id: (catalog_mod.manifest_key(backup_id), catalog_mod.artifact_key(backup_id, encrypted)),
        "backup set %s" % series)


# ---------------------------------------------------------------------------------------------
# Backup

def backup(postgres, locations, encryption=None, database="auditron", series=None, require_all_locations=False,
           lock_timeout=60, compression_level=3, compression_threads=0, count_rows=True, count_jobs=2,
           timestamp_column="createdAt", progress_interval=10.0, bin_dir=None, verify_after_write=True,
           check_mode=False, log=None):
    """Dump `database` to every location in one pass; see the module docstring.

    postgres: community.postgresql-shaped connection params (login_host, login_port, ...).
    locations: `locations` params (dicts) or Location objects. encryption: the `encryption`
    option (required: key_source none must be said explicitly). verify_after_write: each copy
    is read back and hashed before its manifest is written (as configuration bundles are).
    Returns the result dict.
    """
    started_clock = time.monotonic()
    log = log or (lambda message: None)
    require_zstandard()
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
        return _backup_check_mode(postgres, database, series, backupset.target_locations(locations), encryption, encrypted,
                                  timestamp_column, bin_dir, warnings)

    conn = connect(postgres, database, autocommit=True)
    lock = None
    try:
        lock = _take_lock(conn, series, lock_timeout, log)
        facts = _database_facts(conn)
        pg_dump, pg_dump_version = find_tool("pg_dump", bin_dir, facts["server_version_num"] // 10000)
        targets = backupset.target_locations(locations, part_size=_part_size(facts["database_bytes"]))
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
        # Read back before the manifest: a copy the store acknowledged but holds damaged (a
        # faulty disk, a proxy that rewrote bytes) gets no manifest, so no restore trusts it.
        copies = backupset.stored_copies(targets, streamed["key"], streamed["size"], streamed["sha256"],
                                         streamed["done"], streamed["failed"], read_back=verify_after_write)
        finished_at = utc_now()
        manifest = _manifest(backup_id, series, database, facts, postgres, snapshot, snapshot_at, started_at,
                             finished_at, pg_dump_version, encryption, streamed, copies, tables, timestamp_column,
                             compression_level, compression_threads)
        written, failed = _commit(targets, manifest, copies, require_all_locations)
    finally:
        _release_lock(conn, lock)
        conn.close()
    result = _backup_result(manifest, streamed, written, failed, started_clock, warnings)
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
        ", ".join(location.name for location in targets), backupset.describe_encryption(encryption))
    return {
        "changed": True, "check_mode": True, "msg": msg, "backup_id": example_id, "series": series,
        "database": database, "database_bytes": facts["database_bytes"], "estimated_dump_bytes": estimated,
        "server_version": facts["server_version"], "pg_dump_version": pg_dump_version, "tables": len(tables),
        "locations": probes, "encrypted": encrypted, "encryption": backupset.describe_encryption(encryption),
        "warnings": warnings,
    }


class ArtifactWriter(backupset.StoredArtifact):
    """One logical-backup artifact, written once to every location: plaintext in through
    write(), then zstd (threads) | the backup-set stream (AES-256-GCM envelope when a provider
    is given | sha256 | fan-out).

    close() finishes the zstd frame and the final encrypted chunk and commits every location
    still standing; it returns ({location: ObjectInfo}, {location: error}). abort() leaves
    nothing visible anywhere. Memory: the zstd jobs plus the locations' upload buffers, never
    the artifact.
    """

    def __init__(self, targets, key, provider=None, context=None, level=3, threads=0):
        super(ArtifactWriter, self).__init__(targets, key, provider, context)
        self.plaintext_bytes = 0
        self.threads = threads
        try:
            parameters = zstandard.ZstdCompressionParameters.from_level(
                level, threads=threads, job_size=ZSTD_JOB_SIZE if threads > 0 else 0, write_checksum=True)
            self._writer = zstandard.ZstdCompressor(compression_params=parameters).stream_writer(
                self._encryptor or self._sink, closefd=False, write_size=ZSTD_WRITE_SIZE)
        except BaseException:
            self.abort()
            raise

    def write(self, data):
        self._writer.write(data)
        self.plaintext_bytes += len(data)

    def close(self):
        self._writer.flush(zstandard.FLUSH_FRAME)
        self._writer.close()
        return super(ArtifactWriter, self).close()


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
        stderr = StderrTail(proc.stderr)
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
        returncode, _rusage_rss = reap(proc)
        stderr.join()
        if returncode != 0:
            raise DRError("backup %s of %s: pg_dump failed (exit %d): %s" % (
                backup_id, database, returncode, stderr.summary()))
        done, failed = artifact.close()
        artifact_committed = artifact
        artifact = None
        counts = _collect_counts(count_futures, tables) if count_futures else []
    except BaseException:
        kill(proc)
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
              pg_dump_version, encryption, streamed, copies, tables, timestamp_column, level, threads):
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
        "encryption": backupset.encryption_record(streamed["key_reference"], streamed["context"]),
        "artifacts": [{
            "name": "dump",
            "key": streamed["key"],
            "size": streamed["size"],
            "sha256": streamed["sha256"],
            "plaintext_bytes": streamed["dump_bytes"],
            "locations": copies,
        }],
        "tables": table_rows,
        "totals": {"tables": len(table_rows), "rows": sum(item.get("rows", 0) for item in table_rows)},
    }


def _commit(targets, manifest, copies, require_all_locations):
    """Write the manifest last, in every location whose copy is whole (`copies`: what the
    read-back found, see backupset.stored_copies)."""
    return backupset.commit(targets, manifest["id"], manifest["artifacts"][0]["key"], copies,
                            lambda location: catalog_mod.write_manifest(location, manifest), require_all_locations)


def _backup_result(manifest, streamed, written, failed, started_clock, warnings):
    duration = time.monotonic() - started_clock
    artifact = manifest["artifacts"][0]
    row_counts = collections.OrderedDict(
        (table_name(item["schema"], item["name"]), item["rows"]) for item in manifest["tables"] if "rows" in item)
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
        "peak_rss_bytes": peak_rss_bytes(),
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
