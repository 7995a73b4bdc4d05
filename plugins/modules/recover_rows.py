#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: recover_rows
short_description: Put deleted rows back from a restored copy, only where they are missing
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - Scenario 3 of the AUDITRON plan (Data Loss, Accidental Deletion), steps 4 to 6, made safe to run twice.
  - Copies the rows O(ids) of O(table) from a copy of the database restored to just before the deletion (the
    source) into production, byte for byte (binary COPY), and inserts only ids that do not exist in production
    now. Rows changed or re-created since the deletion are left alone; a second run inserts nothing and reports no
    change.
  - Ids in O(skip_ids) (erasures for GDPR) are never copied, whatever the backup holds.
extends_documentation_fragment:
  - auditron.dr.postgres
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Returns the ids it would insert; inserts nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  db:
    description: Production database.
    type: str
    default: auditron
  table:
    description: Table to recover rows of. It needs a single-column primary key.
    type: str
    required: true
  ids:
    description: Primary key values of the rows to recover.
    type: list
    elements: str
    required: true
  skip_ids:
    description: Ids never to recover (erased on purpose).
    type: list
    elements: str
    default: []
  source:
    description: The restored copy (a scratch cluster), reached like O(login_host) and friends.
    type: dict
    required: true
    suboptions:
      login_host:
        description: Host or socket directory.
        type: str
        default: ''
      login_port:
        description: Port.
        type: int
        default: 5432
      login_user:
        description: Role.
        type: str
        default: postgres
      login_password:
        description: Password. Never logged.
        type: str
        default: ''
      login_unix_socket:
        description: Unix socket directory.
        type: str
        default: ''
      db:
        description: Database in the restored copy.
        type: str
        default: auditron
"""

EXAMPLES = r"""
- name: Put back the deleted invoices
  auditron.dr.recover_rows:
    login_host: 127.0.0.1
    login_password: "{{ vault_pg_password }}"
    table: Invoice
    ids: "{{ deletions.deleted_ids }}"
    skip_ids: "{{ deletions.erased_ids }}"
    source:
      login_host: 127.0.0.1
      login_port: 55441
      login_password: "{{ vault_pg_password }}"
"""

RETURN = r"""
inserted_ids:
  description: Ids inserted into production (in check mode, the ids that would be).
  returned: always
  type: list
  elements: str
already_present_ids:
  description: Ids that exist in production now and were left alone.
  returned: always
  type: list
  elements: str
missing_in_backup_ids:
  description: Ids the restored copy does not hold either.
  returned: always
  type: list
  elements: str
skipped_erased_ids:
  description: Ids not recovered because they were erased on purpose.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.auditron.dr.plugins.module_utils import pg, recovery
from ansible_collections.auditron.dr.plugins.module_utils.base import AuditronModule, postgres_argument_spec


def argument_spec():
    spec = postgres_argument_spec()
    spec.update(
        db=dict(type="str", default="auditron"), table=dict(type="str", required=True),
        ids=dict(type="list", elements="str", required=True), skip_ids=dict(type="list", elements="str", default=[]),
        source=dict(type="dict", required=True, options=dict(
            login_host=dict(type="str", default=""), login_port=dict(type="int", default=5432),
            login_user=dict(type="str", default="postgres"), login_password=dict(type="str", default="", no_log=True),
            login_unix_socket=dict(type="str", default=""), db=dict(type="str", default="auditron"))))
    return spec


def run(params, check_mode):
    target = pg.connect(params, params["db"])
    try:
        source = pg.connect(params["source"], params["source"]["db"])
        try:
            result = recovery.reimport_rows(source, target, params["table"], params["ids"],
                                            skip_ids=params["skip_ids"], check_mode=check_mode)
        finally:
            source.close()
    finally:
        target.close()
    result["changed"] = bool(result["inserted_ids"])
    result.pop("would_insert", None)
    return result


def main():
    module = AuditronModule(argument_spec(), supports_check_mode=True,
                            required_libs=[("psycopg2", pg.HAS_PSYCOPG2, pg.PSYCOPG2_IMPORT_ERROR)])
    module.run(run, module.params, module.check_mode)


if __name__ == "__main__":
    main()
