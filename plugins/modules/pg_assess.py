#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_assess
short_description: Assess a PostgreSQL database for damage without changing it
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - Scenario 1, step 1 of the AUDITRON plan (Assess Damage), done so that it finds damage and not only a dead server.
  - Connects and runs C(SELECT 1), reads the database's row of C(pg_stat_database) (checksum failures included),
    reads one row of each table in O(tables), and runs C(pg_amcheck) (heap and B-tree checks).
  - Returns a verdict, V(unreachable), V(damaged) or V(healthy), with the findings. Never fails because the database
    is damaged or down; that is the answer it exists to give.
extends_documentation_fragment:
  - auditron.dr.postgres
  - auditron.dr.read_only
  - ansible.builtin.action_common_attributes
options:
  db:
    description: Database to assess.
    type: str
    default: auditron
  tables:
    description: Tables that must be readable (the plan counts C("User") and C("Invoice")).
    type: list
    elements: str
    default: [User, Invoice]
  amcheck:
    description: Run pg_amcheck. It reads every page, so it takes time on a large database.
    type: bool
    default: true
  amcheck_jobs:
    description: Parallel connections for pg_amcheck.
    type: int
    default: 2
  heapallindexed:
    description: Also check that every heap tuple is in its indexes (slower).
    type: bool
    default: false
  amcheck_install_missing:
    description:
      - Let pg_amcheck install the amcheck extension when it is missing. Off by default, because it writes to the
        catalog of the database being assessed; without it a missing extension is reported as "not checked".
    type: bool
    default: false
  count_rows:
    description:
      - Also count the rows of each table in O(tables) exactly and read the newest O(created_column), as the plan's
        "Verify Restore" step does. A full scan of each table.
    type: bool
    default: false
  created_column:
    description: Column with the creation time, for O(count_rows).
    type: str
    default: createdAt
  bin_dir:
    description: Directory of the PostgreSQL client programs (pg_amcheck). Default is the PATH.
    type: path
requirements:
  - pg_amcheck (PostgreSQL 14 or later client)
"""

EXAMPLES = r"""
- name: Assess the damaged database
  auditron.dr.pg_assess:
    login_host: 127.0.0.1
    login_password: "{{ vault_pg_password }}"
    db: auditron
    bin_dir: /usr/lib/postgresql/15/bin
  register: assessment
"""

RETURN = r"""
verdict:
  description: V(unreachable), V(damaged) or V(healthy).
  returned: always
  type: str
findings:
  description: What is wrong, one line each.
  returned: always
  type: list
  elements: str
stat:
  description: The database's row of pg_stat_database (a few columns).
  returned: when the database answers
  type: dict
tables:
  description:
    - Per table, whether one row could be read, and the planner's row estimate; with O(count_rows) also C(rows) and
      C(max_created_at).
  returned: when the database answers
  type: dict
amcheck:
  description: pg_amcheck's exit code, findings and duration.
  returned: when O(amcheck) is true and the database answers
  type: dict
dr_report:
  description: Data for the dr_timeline report (a check row with the verdict).
  returned: always
  type: dict
"""

from ansible_collections.auditron.dr.plugins.module_utils import assess, checkrow
from ansible_collections.auditron.dr.plugins.module_utils.base import AuditronModule, postgres_argument_spec
from ansible_collections.auditron.dr.plugins.module_utils.pg import HAS_PSYCOPG2, PSYCOPG2_IMPORT_ERROR


def argument_spec():
    spec = postgres_argument_spec()
    spec.update(
        db=dict(type="str", default="auditron"),
        tables=dict(type="list", elements="str", default=["User", "Invoice"]),
        amcheck=dict(type="bool", default=True),
        amcheck_jobs=dict(type="int", default=2),
        heapallindexed=dict(type="bool", default=False),
        amcheck_install_missing=dict(type="bool", default=False),
        count_rows=dict(type="bool", default=False),
        created_column=dict(type="str", default="createdAt"),
        bin_dir=dict(type="path"),
    )
    return spec


def run(params):
    result = assess.assess(params, params["db"], tables=params["tables"], bin_dir=params["bin_dir"],
                           amcheck=params["amcheck"], amcheck_jobs=params["amcheck_jobs"],
                           heapallindexed=params["heapallindexed"],
                           amcheck_install_missing=params["amcheck_install_missing"],
                           count_rows=params["count_rows"], created_column=params["created_column"])
    detail = "; ".join(result["findings"][:3]) or "no damage found"
    result["dr_report"] = {"checks": [checkrow.make("assessment of database %s" % params["db"],
                                                    result["verdict"] == "healthy",
                                                    "%s: %s" % (result["verdict"], detail))],
                           "assessment": {"verdict": result["verdict"], "findings": result["findings"][:10]}}
    result["changed"] = False
    return result


def main():
    module = AuditronModule(argument_spec(), supports_check_mode=True,
                            required_libs=[("psycopg2", HAS_PSYCOPG2, PSYCOPG2_IMPORT_ERROR)])
    module.run(run, module.params)


if __name__ == "__main__":
    main()
