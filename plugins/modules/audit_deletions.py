#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: audit_deletions
short_description: Find rows deleted from a table, from the audit log
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - Scenario 3 of the AUDITRON plan (Data Loss, Accidental Deletion), steps 1 and 2. Reads the audit log for one
    table and returns the ids deleted and the time of the earliest deletion, which is where a point-in-time
    recovery must stop (just before it).
  - Ids erased on purpose (a GDPR erasure, written as action V(ERASE) in the audit log, or listed in an erasure
    ledger table) are returned apart and are never to be recovered.
  - Table and column names are only ever used quoted; values are passed as parameters.
extends_documentation_fragment:
  - auditron.dr.postgres
  - auditron.dr.read_only
  - ansible.builtin.action_common_attributes
options:
  db:
    description: Database holding the table and the audit log.
    type: str
    default: auditron
  table:
    description: Table whose deleted rows are wanted (the audit log's entity), for example V(Invoice).
    type: str
    required: true
  since:
    description: Only deletions at or after this time (ISO 8601).
    type: str
  until:
    description: Only deletions before this time (ISO 8601).
    type: str
  ids:
    description: Only these ids.
    type: list
    elements: str
  audit:
    description: Where the audit log is and how it is named; the defaults follow the AUDITRON schema.
    type: dict
    suboptions:
      table:
        description: Audit log table.
        type: str
        default: AuditLog
      action_column:
        description: Column holding the action.
        type: str
        default: action
      entity_column:
        description: Column holding the table name.
        type: str
        default: entity
      entity_id_column:
        description: Column holding the row id.
        type: str
        default: entityId
      created_at_column:
        description: Column holding the time of the entry.
        type: str
        default: createdAt
      delete_actions:
        description: Actions that mean an ordinary deletion.
        type: list
        elements: str
        default: [DELETE]
      erase_actions:
        description: Actions that mean an erasure that must never be undone.
        type: list
        elements: str
        default: [ERASE]
  erasure_ledger:
    description: A table listing erased rows, when the application keeps one.
    type: dict
    suboptions:
      table:
        description: Ledger table.
        type: str
        required: true
      entity_column:
        description: Column holding the table name.
        type: str
        default: entity
      id_column:
        description: Column holding the row id.
        type: str
        default: entityId
"""

EXAMPLES = r"""
- name: What was deleted from Invoice today
  auditron.dr.audit_deletions:
    login_host: 127.0.0.1
    login_password: "{{ vault_pg_password }}"
    table: Invoice
    since: "2026-11-24T00:00:00Z"
  register: deletions
"""

RETURN = r"""
deleted_ids:
  description: Ids deleted (not erased) in the window, in id order.
  returned: always
  type: list
  elements: str
missing_now_ids:
  description: Deleted ids (not erased) that do not exist in the table now; what a recovery has to bring back.
  returned: always
  type: list
  elements: str
erased_ids:
  description: Ids erased on purpose; never recovered.
  returned: always
  type: list
  elements: str
earliest_deletion:
  description: Time of the earliest deletion of a recoverable row (the recovery target is just before it).
  returned: always
  type: str
earliest_missing_deletion:
  description: Time of the earliest deletion of a row in RV(missing_now_ids); a recovery stops just before it.
  returned: always
  type: str
latest_deletion:
  description: Time of the latest deletion of a recoverable row.
  returned: always
  type: str
audit_entries:
  description: Audit log entries read.
  returned: always
  type: int
"""

from ansible_collections.auditron.dr.plugins.module_utils import pg, recovery
from ansible_collections.auditron.dr.plugins.module_utils.base import AuditronModule, postgres_argument_spec
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError


def audit_spec():
    return dict(
        table=dict(type="str", default="AuditLog"), action_column=dict(type="str", default="action"),
        entity_column=dict(type="str", default="entity"), entity_id_column=dict(type="str", default="entityId"),
        created_at_column=dict(type="str", default="createdAt"),
        delete_actions=dict(type="list", elements="str", default=["DELETE"]),
        erase_actions=dict(type="list", elements="str", default=["ERASE"]))


def ledger_spec():
    return dict(table=dict(type="str", required=True), entity_column=dict(type="str", default="entity"),
                id_column=dict(type="str", default="entityId"))


def argument_spec():
    spec = postgres_argument_spec()
    spec.update(
        db=dict(type="str", default="auditron"), table=dict(type="str", required=True),
        since=dict(type="str"), until=dict(type="str"), ids=dict(type="list", elements="str"),
        audit=dict(type="dict", options=audit_spec()), erasure_ledger=dict(type="dict", options=ledger_spec()))
    return spec


def run(params):
    conn = pg.connect(params, params["db"])
    try:
        found = recovery.find_deletions(conn, params["table"], since=params["since"], until=params["until"],
                                        ids=params["ids"], audit=params["audit"],
                                        erasure_ledger=params["erasure_ledger"])
    finally:
        conn.close()
    if not found["deleted_ids"] and not found["erased_ids"]:
        raise DRError("no deletions from %s in the audit log%s" % (params["table"], _window(params)), **found)
    found["changed"] = False
    return found


def _window(params):
    parts = []
    if params["since"]:
        parts.append("since %s" % params["since"])
    if params["until"]:
        parts.append("until %s" % params["until"])
    if params["ids"]:
        parts.append("for ids %s" % ", ".join(params["ids"][:10]))
    return (" " + " ".join(parts)) if parts else ""


def main():
    module = AuditronModule(argument_spec(), supports_check_mode=True,
                            required_libs=[("psycopg2", pg.HAS_PSYCOPG2, pg.PSYCOPG2_IMPORT_ERROR)])
    module.run(run, module.params)


if __name__ == "__main__":
    main()
