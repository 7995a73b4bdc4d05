# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scenario 1, step 1 "Assess Damage": what is wrong with the database, without changing it.

The plan checks connectivity (`SELECT 1`) and reads `pg_stat_database`. That finds a dead
server, not a damaged one: a table whose file is corrupt answers `SELECT 1` happily. So we
also run pg_amcheck (heap and B-tree checks; with data checksums a damaged page is found on
read), look at the checksum-failure counters, and read one row of every table the plan
names. The verdict is `unreachable`, `damaged` or `healthy`, with findings a person can read.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess
import time

from ansible_collections.auditron.dr.plugins.module_utils import pg
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, first_line, format_time

STAT_COLUMNS = ("numbackends", "xact_commit", "xact_rollback", "conflicts", "deadlocks", "checksum_failures",
                "checksum_last_failure")


def _pg_amcheck_binary(bin_dir):
    if bin_dir:
        return os.path.join(bin_dir, "pg_amcheck")
    return "pg_amcheck"


def run_pg_amcheck(params, database, bin_dir=None, jobs=2, heapallindexed=False, install_missing=False,
                   timeout=1800, max_lines=20):
    """Run pg_amcheck on one database: {ok, exit_code, findings, duration_seconds}.

    ok is None (not checked) when the amcheck extension is absent and install_missing is
    false: installing it writes to the catalog, which an assessment should not do unasked.
    """
    command = [_pg_amcheck_binary(bin_dir), "--no-password", "--jobs", str(max(1, int(jobs))), "--database", database]
    if heapallindexed:
        command.append("--heapallindexed")
    if install_missing:
        command.append("--install-missing")
    started = time.time()
    try:
        completed = subprocess.run(command, env=pg.libpq_env(params, database), capture_output=True, text=True,
                                   timeout=timeout, check=False)
    except OSError as exc:
        raise DRError("pg_amcheck could not be run (%s): %s" % (command[0], exc.strerror or first_line(exc)))
    except subprocess.TimeoutExpired:
        return {"ok": False, "exit_code": None, "duration_seconds": round(time.time() - started, 3),
                "findings": ["pg_amcheck did not finish within %d s" % timeout]}
    lines = [line.strip() for line in (completed.stdout + completed.stderr).splitlines() if line.strip()]
    if any("amcheck is not installed" in line for line in lines):
        return {"ok": None, "exit_code": completed.returncode, "duration_seconds": round(time.time() - started, 3),
                "findings": ["not checked: the amcheck extension is not installed in %s "
                             "(install it, or set amcheck_install_missing)" % database], "findings_total": 1}
    return {"ok": completed.returncode == 0 and not lines, "exit_code": completed.returncode,
            "duration_seconds": round(time.time() - started, 3), "findings": lines[:max_lines],
            "findings_total": len(lines)}


def assess(params, database, tables=None, bin_dir=None, amcheck=True, amcheck_jobs=2, heapallindexed=False,
           amcheck_install_missing=False, count_rows=False, created_column="createdAt"):
    findings = []
    result = {"database": database, "verdict": "healthy", "findings": findings, "connect_seconds": None,
              "stat": None, "tables": {}, "amcheck": None}
    started = time.time()
    try:
        conn = pg.connect(params, database)
    except DRError as exc:
        result["verdict"] = "unreachable"
        findings.append(exc.message)
        return result
    result["connect_seconds"] = round(time.time() - started, 3)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.execute("SELECT %s FROM pg_stat_database WHERE datname = %%s" % ", ".join(STAT_COLUMNS), (database,))
            row = cur.fetchone()
        stat = dict(zip(STAT_COLUMNS, row)) if row else {}
        if stat.get("checksum_last_failure") is not None:
            stat["checksum_last_failure"] = stat["checksum_last_failure"].isoformat()
        result["stat"] = stat
        if stat.get("checksum_failures"):
            findings.append("pg_stat_database: %d checksum failure(s), the last at %s"
                            % (stat["checksum_failures"], stat["checksum_last_failure"]))
        for table in tables or []:
            result["tables"][table] = _probe_table(conn, table)
            if count_rows and result["tables"][table]["ok"]:
                result["tables"][table].update(table_stats(conn, table, created_column))
            if not result["tables"][table]["ok"]:
                findings.append("table %s: %s" % (table, result["tables"][table]["detail"]))
    finally:
        conn.close()
    if amcheck:
        check = run_pg_amcheck(params, database, bin_dir=bin_dir, jobs=amcheck_jobs, heapallindexed=heapallindexed,
                               install_missing=amcheck_install_missing)
        result["amcheck"] = check
        if check["ok"] is None:
            result["notes"] = check["findings"]
        elif not check["ok"]:
            findings.extend("pg_amcheck: %s" % line for line in check["findings"][:5])
    if findings:
        result["verdict"] = "damaged"
    return result


def _probe_table(conn, table):
    """Read one row and the planner's row estimate: a missing or unreadable table shows here."""
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)", ("public." + pg.quote_ident(table),))
            if cur.fetchone()[0] is None:
                return {"ok": False, "detail": "does not exist"}
            cur.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                        ("public." + pg.quote_ident(table),))
            estimate = cur.fetchone()[0]
            cur.execute("SELECT count(*) FROM (SELECT 1 FROM public.%s LIMIT 1) sample" % pg.quote_ident(table))
            cur.fetchone()
        return {"ok": True, "detail": "readable", "estimated_rows": estimate}
    except Exception as exc:  # pylint: disable=broad-except
        # The connection is in autocommit mode: a failed statement leaves nothing to undo.
        return {"ok": False, "detail": first_line(exc)}


def table_stats(conn, table, created_column="createdAt"):
    """Exact row count, and max(created_column) when the table has that column: the plan's
    "Verify Restore" (table counts, latest records)."""
    quoted = "public." + pg.quote_ident(table)
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s AND NOT attisdropped",
                    (quoted, created_column))
        has_created = cur.fetchone() is not None
        if has_created:
            cur.execute("SELECT count(*), max(%s) FROM %s" % (pg.quote_ident(created_column), quoted))
            rows, newest = cur.fetchone()
        else:
            cur.execute("SELECT count(*) FROM %s" % quoted)
            rows, newest = cur.fetchone()[0], None
    return {"rows": rows, "max_created_at": format_time(newest) if newest else None}
