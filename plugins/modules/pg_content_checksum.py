#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_content_checksum
short_description: Checksum the whole content of every table of a PostgreSQL database, and compare it
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - Computes, on the server, an order-independent checksum of every row of every table in scope (the sums of the
    md5 of each row's text form) and the row count, per table, in one read-only snapshot. Two databases with the
    same rows in any physical order have the same checksums; one changed, added or removed row changes its table's.
  - In scope by default are every permanent table outside the system schemas (partitions, not their partitioned
    parents). Unlogged and temporary tables are left out (their content is not in the WAL) and listed in
    RV(left_out).
  - With O(expected) (the RV(tables) of an earlier run, on another server), returns the tables that differ.
    Failback uses it to prove that the rebuilt primary holds what DR held, row for row.
  - Reads every row of every table in scope (a full scan of the database).
extends_documentation_fragment:
  - auditron.dr.postgres
  - auditron.dr.read_only
  - ansible.builtin.action_common_attributes
options:
  db:
    description: Database to checksum.
    type: str
    default: auditron
    aliases: [login_db]
  tables:
    description:
      - Only these tables (V(table) for the C(public) schema, or V(schema.table)). Each must exist, or the module
        fails naming it. Every table in scope when empty.
    type: list
    elements: str
    default: []
  schemas:
    description: Only tables of these schemas. Every schema but the system ones when empty.
    type: list
    elements: str
    default: []
  exclude_tables:
    description: Tables (V(table) or V(schema.table)) left out, listed in RV(left_out) as excluded.
    type: list
    elements: str
    default: []
  expected:
    description:
      - The RV(tables) of an earlier run to compare with. RV(differences) and RV(matches) are returned when given.
    type: dict
"""

EXAMPLES = r"""
- name: What DR holds, table by table
  auditron.dr.pg_content_checksum:
    login_host: dr-db.internal
    login_password: "{{ vault_pg_password }}"
    db: auditron
  register: dr_content

- name: The rebuilt primary holds the same rows
  auditron.dr.pg_content_checksum:
    login_host: primary-db.internal
    login_password: "{{ vault_pg_password }}"
    db: auditron
    expected: "{{ dr_content.tables }}"
  register: primary_content
  failed_when: not primary_content.matches
"""

RETURN = r"""
tables:
  description:
    - Per table (V(schema.table), for example V(public.Invoice)), C(rows) (the row count) and C(digest) (32 hex
      digits, the same whatever the order of the rows).
  returned: always
  type: dict
left_out:
  description: Tables not checksummed, with why (V(excluded), V(unlogged) or V(temporary)).
  returned: always
  type: dict
role:
  description: V(primary) or V(standby), when the checksum was taken.
  returned: always
  type: str
lsn:
  description: The server's WAL position in the snapshot (the insert position of a primary, the replay position of a
    standby).
  returned: always
  type: str
timeline:
  description: The timeline the primary writes on (its WAL file names' first 8 hex digits); null on a standby.
  returned: always
  type: int
differences:
  description: With O(expected), the tables whose rows or digest differ (C(table), C(expected), C(actual); a side is
    null where the table is missing).
  returned: when O(expected) is given
  type: list
  elements: dict
matches:
  description: With O(expected), whether every table matches.
  returned: when O(expected) is given
  type: bool
msg:
  description: One line saying what was found.
  returned: always
  type: str
"""

from ansible_collections.auditron.dr.plugins.module_utils import contentsum
from ansible_collections.auditron.dr.plugins.module_utils.base import AuditronModule, postgres_argument_spec
from ansible_collections.auditron.dr.plugins.module_utils.pg import HAS_PSYCOPG2, PSYCOPG2_IMPORT_ERROR


def argument_spec():
    spec = postgres_argument_spec()
    spec.update(
        db=dict(type="str", default="auditron", aliases=["login_db"]),
        tables=dict(type="list", elements="str", default=[]),
        schemas=dict(type="list", elements="str", default=[]),
        exclude_tables=dict(type="list", elements="str", default=[]),
        expected=dict(type="dict"),
    )
    return spec


def main():
    module = AuditronModule(argument_spec(), supports_check_mode=True,
                            required_libs=[("psycopg2", HAS_PSYCOPG2, PSYCOPG2_IMPORT_ERROR)])
    params = module.params
    module.run(contentsum.checksum_database, params, params["db"], tables=params["tables"],
               schemas=params["schemas"], exclude=params["exclude_tables"], expected=params["expected"])


if __name__ == "__main__":
    main()
