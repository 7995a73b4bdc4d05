#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: backup_verify
short_description: The checks of a restored copy - rows and newest time against the manifest, age, pg_amcheck, user SQL
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - Gives the plan's "Weekly Backup Test" its criteria for one restored copy. Every check is a row C(name), C(result)
    (V(ok) or V(failed)), C(detail), C(backups) - ready for the C(checks) of the DR report (C(dr_report.checks)) and
    for M(auditron.dr.dr_metrics), which turns each into C(auditron_dr_verification_success{check=<name>}). Check
    names are stable from week to week; the backup a check concerns is in C(backups) and in the detail.
  - The module never fails because a check failed - it returns the failed rows, RV(failed_checks) and a one-line
    RV(msg). It fails only when it cannot run (bad options, a copy that does not answer).
  - Checks a restored copy (connection options) - row counts and the newest C("createdAt") (the manifest's
    timestamp column) of every table against a logical backup's manifest (O(compare=exact) for a logical restore;
    O(compare=at_least) for a PITR to the end of the archive, which is newer - at least the manifest's rows less the
    deletions the audit log records since its snapshot), the age of the backup, pg_amcheck, and the user's SQL
    checks (O(sql_checks)) with the result they expect. Checks are named C(<kind>_restore), C(<kind>_backup_age),
    C(<kind>_row_counts), C(<kind>_newest_time), C(<kind>_amcheck), C(sql_<name>_<kind>).
  - B(User SQL runs only in a READ ONLY transaction) (and a read-only session), wrapped as
    C(SELECT * FROM (<sql>\) AS q) - one query, nothing can follow it after a semicolon. Point it at a restored
    copy, never at production.
  - The copies of every backup in every location are checked by the filter P(auditron.dr.backup_copies#filter),
    pgbackrest verify by M(auditron.dr.pgbackrest_verify), the records by M(auditron.dr.verification_record) and
    the verdict over all rows by the filter P(auditron.dr.check_summary#filter).
extends_documentation_fragment:
  - auditron.dr.postgres
  - auditron.dr.location
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Every check only reads, and runs the same in check mode, except that O(amcheck_install_missing) installs
        nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  db:
    description: The database of the copy to check. Default the manifest's database.
    type: str
  kind:
    description: Which copy this is; the prefix of the check names.
    type: str
    choices: [logical, physical]
    default: logical
  backup:
    description: The logical backup id or pgBackRest label the copy was restored from.
    type: str
  backup_time:
    description: When that backup was taken (ISO 8601), for the C(<kind>_backup_age) check.
    type: str
  max_backup_age_hours:
    description: The oldest the backup may be; V(0) leaves the age check out. The default is the
      plan's "no backup in 25 hours".
    type: float
    default: 25
  restore_seconds:
    description: How long the restore took; adds an ok C(<kind>_restore) row with it.
    type: float
  restore_detail:
    description: The detail of that row (what was restored from where).
    type: str
  manifest:
    description: The logical backup manifest to compare with (as M(auditron.dr.pg_backup) writes
      it). Or give O(manifest_id) and O(locations).
    type: dict
  manifest_id:
    description: Read the manifest of this logical backup from O(locations).
    type: str
  compare:
    description:
      - V(exact) (a logical restore holds exactly the dump), V(at_least) (a PITR to the end of the
        archive, newer than the dump), V(none) (no manifest comparison).
    type: str
    choices: [exact, at_least, none]
    default: exact
  audit_log:
    description:
      - With O(compare=at_least) - the application's audit log, whose deletion entries after the
        manifest's snapshot explain a table with fewer rows than the manifest. A table without such a log must
        hold at least the manifest's rows. Ignored when the table does not exist in the copy.
    type: dict
    suboptions:
      schema:
        description: Schema of the audit table.
        type: str
        default: public
      table:
        description: The audit table.
        type: str
        default: AuditLog
      entity_column:
        description: Column naming the table a row was deleted from.
        type: str
        default: entity
      action_column:
        description: Column with the action.
        type: str
        default: action
      time_column:
        description: Column with the time of the action.
        type: str
        default: createdAt
      delete_actions:
        description: Actions that delete a row.
        type: list
        elements: str
        default: [DELETE, ERASE]
  amcheck:
    description: Run pg_amcheck on the copy's database.
    type: bool
    default: true
  amcheck_install_missing:
    description: Let pg_amcheck install the amcheck extension in the copy when it is missing.
      Harmless on a scratch copy; never on production.
    type: bool
    default: false
  amcheck_heapallindexed:
    description: Also check that every heap tuple is in its indexes (slower).
    type: bool
    default: false
  amcheck_jobs:
    description: Parallel connections for pg_amcheck.
    type: int
    default: 2
  bin_dir:
    description: Directory of the PostgreSQL client programs (pg_amcheck). Default PATH.
    type: path
  sql_checks:
    description:
      - The user's own checks. Each runs in a READ ONLY transaction against the copy and is
        named C(sql_<name>_<kind>).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Name of the check (letters, digits, C(_), C(.), C(-)); it becomes part of a metric label.
        type: str
        required: true
      sql:
        description: One query returning rows (C(SELECT), C(WITH ... SELECT), C(VALUES), C(TABLE)).
        type: str
        required: true
      expect:
        description:
          - The expected result. A scalar - the query returns exactly one row of one column equal to it (V(0) equals
            C(0::bigint) and C('0')). A list - exactly these rows, in order; each a list (by position), a mapping
            (by column name) or a scalar (a one-column row). Use C(ORDER BY).
        type: raw
        required: true
      compare:
        description: For a scalar O(sql_checks[].expect) - how the value must relate to it.
        type: str
        choices: [eq, ne, ge, gt, le, lt]
        default: eq
      database:
        description: Database of the copy to run it in. Default O(db).
        type: str
      run_on:
        description: Which copies to run it on; both when omitted.
        type: list
        elements: str
        choices: [logical, physical]
  statement_timeout:
    description: Seconds each user SQL check may run.
    type: int
    default: 300
notes:
  - O(locations) (with O(manifest_id)) are the logical backup locations, each with its C(prefix) (normally
    C(postgres/logical)).
requirements:
  - psycopg2
  - pg_amcheck (with O(amcheck))
  - boto3 (for S3 locations)
seealso:
  - module: auditron.dr.backup_catalog
  - module: auditron.dr.pg_restore
  - module: auditron.dr.dr_metrics
  - module: auditron.dr.pgbackrest_verify
  - module: auditron.dr.verification_record
"""

EXAMPLES = r"""
- name: Every location holds every logical backup, checksums verified
  auditron.dr.backup_catalog:
    locations: "{{ logical_locations }}"
    encryption: "{{ auditron_dr_backup_encryption }}"
    deep: true
  register: deep_catalog

- name: Check the logical restore in a scratch cluster
  vars:
    latest: "{{ (deep_catalog | auditron.dr.backup_copies).latest_backup_id }}"
  auditron.dr.backup_verify:
    login_host: 127.0.0.1
    login_port: "{{ scratch_port }}"
    login_password: "{{ auditron_dr_postgres.password }}"
    kind: logical
    backup: "{{ latest }}"
    manifest_id: "{{ latest }}"
    locations: "{{ logical_locations }}"
    compare: exact
    amcheck_install_missing: true
    sql_checks:
      - name: invoices_without_user
        sql: SELECT count(*) FROM "Invoice" i LEFT JOIN "User" u ON u.id = i."userId" WHERE u.id IS NULL
        expect: 0
      - name: audit_actions
        sql: SELECT DISTINCT action FROM "AuditLog" ORDER BY 1
        expect: [CREATE, DELETE, ERASE]
  register: logical_checks
"""

RETURN = r"""
checks:
  description: The check rows of this call - C(name), C(result) (V(ok) or V(failed)), C(detail), C(backups) (the
    backups a failure concerns), C(kind).
  returned: always
  type: list
  elements: dict
  sample:
    - {name: logical_row_counts, result: ok, backups: [auditron_20261124_020000],
       detail: "logical backup auditron_20261124_020000: 3 tables hold exactly the rows of its manifest"}
verification_success:
  description: Per check name, 1 if it passed and 0 if it failed.
  returned: always
  type: dict
  sample: {logical_amcheck: 0, logical_row_counts: 1}
failed_checks:
  description: The failed rows.
  returned: always
  type: list
  elements: dict
msg:
  description: One line - the verdict over this copy's checks, naming every failed one.
  returned: always
  type: str
dr_report:
  description: C(checks) for the dr_timeline report.
  returned: always
  type: dict
tables:
  description: Per table, the manifest's rows and newest time, the copy's, and deletions since.
  returned: always
  type: list
  elements: dict
sql_results:
  description: Per user check, the columns and up to 20 rows the query returned.
  returned: always
  type: list
  elements: dict
"""

from ansible_collections.auditron.dr.plugins.module_utils import verification
from ansible_collections.auditron.dr.plugins.module_utils.base import (
    AuditronModule, location_suboptions, postgres_argument_spec)
from ansible_collections.auditron.dr.plugins.module_utils.pg import HAS_PSYCOPG2, PSYCOPG2_IMPORT_ERROR


def argument_spec():
    spec = postgres_argument_spec()
    spec.update(
        db=dict(type="str"),
        kind=dict(type="str", choices=list(verification.KINDS), default="logical"),
        backup=dict(type="str"),
        backup_time=dict(type="str"),
        max_backup_age_hours=dict(type="float", default=verification.DEFAULT_MAX_BACKUP_AGE_HOURS),
        restore_seconds=dict(type="float"),
        restore_detail=dict(type="str"),
        manifest=dict(type="dict"),
        manifest_id=dict(type="str"),
        locations=dict(type="list", elements="dict", default=[], options=location_suboptions()),
        compare=dict(type="str", choices=list(verification.COMPARE_MODES), default="exact"),
        audit_log=dict(type="dict", options=dict(
            schema=dict(type="str", default="public"),
            table=dict(type="str", default="AuditLog"),
            entity_column=dict(type="str", default="entity"),
            action_column=dict(type="str", default="action"),
            time_column=dict(type="str", default="createdAt"),
            delete_actions=dict(type="list", elements="str", default=["DELETE", "ERASE"]),
        )),
        amcheck=dict(type="bool", default=True),
        amcheck_install_missing=dict(type="bool", default=False),
        amcheck_heapallindexed=dict(type="bool", default=False),
        amcheck_jobs=dict(type="int", default=2),
        bin_dir=dict(type="path"),
        sql_checks=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", required=True),
            sql=dict(type="str", required=True),
            expect=dict(type="raw", required=True),
            compare=dict(type="str", choices=list(verification.SQL_COMPARES), default="eq"),
            database=dict(type="str"),
            run_on=dict(type="list", elements="str", choices=list(verification.KINDS)),
        )),
        statement_timeout=dict(type="int", default=verification.DEFAULT_STATEMENT_TIMEOUT),
    )
    return spec


def main():
    module = AuditronModule(argument_spec(), supports_check_mode=True,
                            required_libs=[("psycopg2", HAS_PSYCOPG2, PSYCOPG2_IMPORT_ERROR)])
    module.run(verification.check_restored_copy, module.params, module.check_mode)


if __name__ == "__main__":
    main()
