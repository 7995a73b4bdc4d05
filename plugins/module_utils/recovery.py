# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scenario 3, accidental deletion: find what was deleted, and put exactly that back.

The plan restores the last dump and copies rows with COPY: that loses every change since the
dump, re-running it duplicates rows, and it would bring back rows erased on purpose. Here:

- `find_deletions` reads the audit log ("AuditLog": action, entity, "entityId", "createdAt")
  for one table, within a time window or for given ids, and returns the ids deleted, the
  time of the earliest deletion (the PITR target: just before it), and the ids that were
  erased for GDPR (action ERASE, or listed in an erasure ledger table) — never to come back.
- `reimport_rows` copies rows from a scratch cluster (restored to just before the deletion)
  into production with binary COPY into a temporary table, then inserts only ids that do not
  exist in production now: rows changed or re-created since are left alone, and a second run
  inserts nothing. Erased ids are never copied, whatever the backup holds.

Every table and column name comes from the user or the catalog and is only ever quoted with
pg.quote_ident; values travel as query parameters.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import io

from ansible_collections.auditron.dr.plugins.module_utils import pg
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, format_time, parse_time

DEFAULT_AUDIT = {
    "table": "AuditLog",
    "action_column": "action",
    "entity_column": "entity",
    "entity_id_column": "entityId",
    "created_at_column": "createdAt",
    "delete_actions": ["DELETE"],
    "erase_actions": ["ERASE"],
}


def _audit_settings(audit):
    settings = dict(DEFAULT_AUDIT)
    settings.update(dict((k, v) for k, v in (audit or {}).items() if v is not None))
    return settings


def table_columns(conn, table, schema="public"):
    """[(name, type)] of a table in column order, or DRError naming the table."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (pg.quote_ident(schema) + "." + pg.quote_ident(table),))
        if cur.fetchone()[0] is None:
            raise DRError("table %s.%s does not exist in database %s" % (schema, table, conn.info.dbname))
        cur.execute("SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                    "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                    (pg.quote_ident(schema) + "." + pg.quote_ident(table),))
        return cur.fetchall()


def primary_key(conn, table, schema="public"):
    with conn.cursor() as cur:
        cur.execute("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                    "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
                    (pg.quote_ident(schema) + "." + pg.quote_ident(table),))
        keys = [row[0] for row in cur.fetchall()]
    if len(keys) != 1:
        raise DRError("table %s.%s needs a single-column primary key to recover rows by id (it has %s)"
                      % (schema, table, ", ".join(keys) or "none"))
    return keys[0]


def find_deletions(conn, table, since=None, until=None, ids=None, audit=None, erasure_ledger=None):
    """What the audit log says was deleted from `table`; see the module docstring."""
    settings = _audit_settings(audit)
    table_columns(conn, table)  # an unknown table is refused before anything else
    table_columns(conn, settings["table"])
    since_t = parse_time(since, "recover_since") if since else None
    until_t = parse_time(until, "recover_until") if until else None
    if since_t and until_t and since_t >= until_t:
        raise DRError("recover_since %s is not before recover_until %s" % (format_time(since_t), format_time(until_t)))
    wanted_ids = None
    if ids:
        wanted_ids = [str(i) for i in ids]
    q = pg.quote_ident
    where = ["%s = %%s" % q(settings["entity_column"]), "%s = ANY(%%s)" % q(settings["action_column"])]
    args = [table, list(settings["delete_actions"]) + list(settings["erase_actions"])]
    if since_t:
        where.append("%s >= %%s" % q(settings["created_at_column"]))
        args.append(since_t)
    if until_t:
        where.append("%s < %%s" % q(settings["created_at_column"]))
        args.append(until_t)
    if wanted_ids is not None:
        where.append("%s = ANY(%%s)" % q(settings["entity_id_column"]))
        args.append(wanted_ids)
    sql = "SELECT %s, %s, %s FROM %s WHERE %s ORDER BY %s" % (
        q(settings["entity_id_column"]), q(settings["action_column"]), q(settings["created_at_column"]),
        q(settings["table"]), " AND ".join(where), q(settings["created_at_column"]))
    with conn.cursor() as cur:
        cur.execute(sql, args)
        entries = cur.fetchall()
    deleted = {}
    erased = set()
    for entity_id, action, created in entries:
        if action in settings["erase_actions"]:
            erased.add(str(entity_id))
        else:
            deleted.setdefault(str(entity_id), created)
    if erasure_ledger:
        erased |= ledger_ids(conn, table, erasure_ledger) & set(deleted)
    restorable = dict((k, v) for k, v in deleted.items() if k not in erased)
    present = present_ids(conn, table, sorted(restorable)) if restorable else set()
    missing = dict((k, v) for k, v in restorable.items() if k not in present)
    return {
        "table": table,
        "deleted_ids": sorted(restorable, key=_id_order),
        # What a recovery still has to bring back: deleted, not erased, and not there again now.
        "missing_now_ids": sorted(set(restorable) - present, key=_id_order),
        "erased_ids": sorted(erased, key=_id_order),
        "earliest_deletion": format_time(min(restorable.values())) if restorable else None,
        "latest_deletion": format_time(max(restorable.values())) if restorable else None,
        # Where a recovery stops: just before the first deletion of a row still missing.
        "earliest_missing_deletion": format_time(min(missing.values())) if missing else None,
        "audit_entries": len(entries),
    }


def present_ids(conn, table, ids):
    """Which of `ids` exist in `table` now (by its primary key)."""
    key = pg.quote_ident(primary_key(conn, table))
    with conn.cursor() as cur:
        cur.execute("SELECT %s::text FROM %s WHERE %s::text = ANY(%%s)" % (key, pg.quote_ident(table), key),
                    (list(ids),))
        return set(row[0] for row in cur.fetchall())


def ledger_ids(conn, table, ledger):
    """Ids listed in an erasure ledger table: {table, entity_column, id_column}."""
    q = pg.quote_ident
    ledger_table = ledger.get("table")
    if not ledger_table:
        return set()
    table_columns(conn, ledger_table)
    with conn.cursor() as cur:
        cur.execute("SELECT %s::text FROM %s WHERE %s = %%s" % (
            q(ledger.get("id_column") or "entityId"), q(ledger_table), q(ledger.get("entity_column") or "entity")),
            (table,))
        return set(row[0] for row in cur.fetchall())


def _id_order(value):
    text = str(value)
    return (0, int(text), "") if text.lstrip("-").isdigit() else (1, 0, text)


def reimport_rows(source_conn, target_conn, table, ids, skip_ids=(), check_mode=False):
    """Copy rows `ids` of `table` from the scratch cluster into production where absent.

    Returns what was inserted, what already exists (left alone), what the backup does not
    hold, and what was skipped as erased. Binary COPY through a temporary table keeps every
    value byte for byte (jsonb, timestamps, numerics) without a round trip through Python.
    """
    q = pg.quote_ident
    skip = set(str(i) for i in skip_ids)
    wanted = [str(i) for i in ids if str(i) not in skip]
    key = primary_key(target_conn, table)
    target_cols = [name for name, _type in table_columns(target_conn, table)]
    source_cols = set(name for name, _type in table_columns(source_conn, table))
    columns = [c for c in target_cols if c in source_cols]
    if key not in columns:
        raise DRError("table %s: the primary key %s is missing in the restored copy" % (table, key))
    result = {"table": table, "inserted_ids": [], "already_present_ids": [], "missing_in_backup_ids": [],
              "skipped_erased_ids": sorted(skip & set(str(i) for i in ids), key=_id_order)}
    if not wanted:
        return result
    column_list = ", ".join(q(c) for c in columns)
    with source_conn.cursor() as cur:
        cur.execute("SELECT %s::text FROM %s WHERE %s::text = ANY(%%s)" % (q(key), q(table), q(key)), (wanted,))
        in_backup = set(row[0] for row in cur.fetchall())
    result["missing_in_backup_ids"] = sorted(set(wanted) - in_backup, key=_id_order)
    with target_conn.cursor() as cur:
        cur.execute("SELECT %s::text FROM %s WHERE %s::text = ANY(%%s)" % (q(key), q(table), q(key)),
                    (sorted(in_backup),))
        present = set(row[0] for row in cur.fetchall())
    result["already_present_ids"] = sorted(present, key=_id_order)
    to_insert = sorted(in_backup - present, key=_id_order)
    if not to_insert or check_mode:
        result["inserted_ids"] = to_insert if check_mode else []
        result["would_insert"] = bool(to_insert)
        return result
    buffer = io.BytesIO()
    with source_conn.cursor() as cur:
        cur.copy_expert(cur.mogrify("COPY (SELECT %s FROM %s WHERE %s::text = ANY(%%s)) TO STDOUT (FORMAT binary)"
                                    % (column_list, q(table), q(key)), (to_insert,)).decode(), buffer)
    buffer.seek(0)
    autocommit = target_conn.autocommit
    target_conn.autocommit = False
    try:
        with target_conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE auditron_recovered ON COMMIT DROP AS SELECT %s FROM %s WITH NO DATA"
                        % (column_list, q(table)))
            cur.copy_expert("COPY auditron_recovered (%s) FROM STDIN (FORMAT binary)" % column_list, buffer)
            # ON CONFLICT DO NOTHING: a row re-created between our check and now is left alone.
            cur.execute("INSERT INTO %s (%s) SELECT %s FROM auditron_recovered ON CONFLICT (%s) DO NOTHING "
                        "RETURNING %s::text" % (q(table), column_list, column_list, q(key), q(key)))
            inserted = [row[0] for row in cur.fetchall()]
        target_conn.commit()
    except Exception as exc:  # pylint: disable=broad-except
        target_conn.rollback()
        raise DRError("re-inserting %d rows into %s failed, nothing was inserted: %s"
                      % (len(to_insert), table, str(exc).strip().splitlines()[0]))
    finally:
        target_conn.autocommit = autocommit
    result["inserted_ids"] = sorted(inserted, key=_id_order)
    result["already_present_ids"] = sorted(present | (set(to_insert) - set(inserted)), key=_id_order)
    return result
