#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: backup_verify
short_description: The weekly backup test's checks - restored copies, copies in every location, pgbackrest verify
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - Gives the plan's "Weekly Backup Test" its criteria. Every check is a row C(name), C(result) (V(ok) or
    V(failed)), C(detail), C(backups) - ready for the C(checks) of the DR report (C(dr_report.checks)) and for
    M(auditron.dr.dr_metrics), which turns each into C(auditron_dr_verification_success{check=<name>}). Check names
    are stable from week to week; the backup a check concerns is in C(backups) and in the detail.
  - The module never fails because a check failed - it returns the failed rows, RV(failed_checks) and a one-line
    RV(msg). It fails only when it cannot run (bad options, a copy that does not answer).
  - O(action=copy) checks a restored copy (connection options) - row counts and the newest C("createdAt") (the
    manifest's timestamp column) of every table against a logical backup's manifest (O(compare=exact) for a logical restore; O(compare=at_least)
    for a PITR to the end of the archive, which is newer - at least the manifest's rows less the deletions the
    audit log records since its snapshot), the age of the backup, pg_amcheck, and the user's SQL checks
    (O(sql_checks)) with the result they expect. Checks are named C(<kind>_restore), C(<kind>_backup_age),
    C(<kind>_row_counts), C(<kind>_newest_time), C(<kind>_amcheck), C(sql_<name>_<kind>).
  - B(User SQL runs only in a READ ONLY transaction) (and a read-only session), wrapped as
    C(SELECT * FROM (<sql>\) AS q) - one query, nothing can follow it after a semicolon. Point it at a restored
    copy, never at production.
  - O(action=copies) turns the result of M(auditron.dr.backup_catalog) (O(catalog), ideally with C(deep=true))
    into one C(copies_<location>) row per location - every logical backup present there, its sha256 and every GCM
    tag verified - and names the latest backup to restore (a failed earlier verification does not exclude it).
  - O(action=pgbackrest) runs C(pgbackrest verify) on each repository at once (every WAL segment and backup file
    read back and checked) and returns one C(pgbackrest_verify_repo<N>) row per repository. Run it as the
    PostgreSQL OS user (become).
  - O(action=record) writes the verification record of the logical backup O(logical_backup) (next to its manifest
    in every location in O(locations), so that M(auditron.dr.backup_catalog)'s C(valid) reflects it) and of the
    pgBackRest set O(physical_backup) (C(verifications/pgbackrest/<stanza>/<label>.json)). A backup passes when it
    was restored and every row naming it passed.
  - O(action=summary) totals O(checks) - RV(verification_success), RV(failed_checks) and the one-line verdict
    naming every failed check and the backup it concerns.
extends_documentation_fragment:
  - auditron.dr.postgres
  - auditron.dr.location
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Every check only reads, and runs the same in check mode, except that O(amcheck_install_missing) installs
        nothing and O(action=pgbackrest) only says which repositories it would verify (it reads every file).
      - O(action=record) says what it would record and writes nothing.
  diff_mode:
    support: none
    details: Verification records are new entries in a history, not a change to show.
  platform:
    platforms: posix
options:
  action:
    description: What to check; see the description.
    type: str
    choices: [copy, copies, pgbackrest, record, summary]
    default: copy
  db:
    description: O(action=copy) - the database of the copy to check. Default the manifest's database.
    type: str
  kind:
    description: O(action=copy) - which copy this is; the prefix of the check names.
    type: str
    choices: [logical, physical]
    default: logical
  backup:
    description: O(action=copy) - the logical backup id or pgBackRest label the copy was restored from.
    type: str
  backup_time:
    description: O(action=copy) - when that backup was taken (ISO 8601), for the C(<kind>_backup_age) check.
    type: str
  max_backup_age_hours:
    description: O(action=copy) - the oldest the backup may be; V(0) leaves the age check out. The default is the
      plan's "no backup in 25 hours".
    type: float
    default: 25
  restore_seconds:
    description: O(action=copy) - how long the restore took; adds an ok C(<kind>_restore) row with it.
    type: float
  restore_detail:
    description: O(action=copy) - the detail of that row (what was restored from where).
    type: str
  manifest:
    description: O(action=copy) - the logical backup manifest to compare with (as M(auditron.dr.pg_backup) writes
      it). Or give O(manifest_id) and O(locations).
    type: dict
  manifest_id:
    description: O(action=copy) - read the manifest of this logical backup from O(locations).
    type: str
  compare:
    description:
      - O(action=copy) - V(exact) (a logical restore holds exactly the dump), V(at_least) (a PITR to the end of the
        archive, newer than the dump), V(none) (no manifest comparison).
    type: str
    choices: [exact, at_least, none]
    default: exact
  audit_log:
    description:
      - O(action=copy) with O(compare=at_least) - the application's audit log, whose deletion entries after the
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
    description: O(action=copy) - run pg_amcheck on the copy's database.
    type: bool
    default: true
  amcheck_install_missing:
    description: O(action=copy) - let pg_amcheck install the amcheck extension in the copy when it is missing.
      Harmless on a scratch copy; never on production.
    type: bool
    default: false
  amcheck_heapallindexed:
    description: O(action=copy) - also check that every heap tuple is in its indexes (slower).
    type: bool
    default: false
  amcheck_jobs:
    description: O(action=copy) - parallel connections for pg_amcheck.
    type: int
    default: 2
  bin_dir:
    description: O(action=copy) - directory of the PostgreSQL client programs (pg_amcheck). Default PATH.
    type: path
  sql_checks:
    description:
      - O(action=copy) - the user's own checks. Each runs in a READ ONLY transaction against the copy and is
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
    description: O(action=copy) - seconds each user SQL check may run.
    type: int
    default: 300
  catalog:
    description: O(action=copies) - the result of M(auditron.dr.backup_catalog) (its C(backups), C(locations) and
      C(unreachable_locations)).
    type: dict
  location_names:
    description: O(action=copies) - the locations every backup must be in. Default every location the catalog
      listed.
    type: list
    elements: str
  pgbackrest:
    description: O(action=pgbackrest) - the repositories to verify.
    type: dict
    suboptions:
      config:
        description: pgBackRest configuration file.
        type: path
        required: true
      stanza:
        description: Stanza.
        type: str
        default: auditron
      repos:
        description: Repository numbers; every configured one when omitted.
        type: list
        elements: int
      process_max:
        description: C(--process-max) for each verify; the configuration's when omitted.
        type: int
      timeout:
        description: Seconds each repository's verify may take.
        type: int
        default: 7200
  checks:
    description: O(action=record) and O(action=summary) - every check row of the run.
    type: list
    elements: dict
    default: []
  logical_backup:
    description: O(action=record) - the logical backup id restored by the test.
    type: str
  physical_backup:
    description: O(action=record) - the pgBackRest backup set restored by the test.
    type: dict
    suboptions:
      label:
        description: Backup label.
        type: str
        required: true
      stanza:
        description: Stanza.
        type: str
        default: auditron
      repo:
        description: Repository it was restored from.
        type: str
  by:
    description: O(action=record) - who verified, in the record.
    type: str
    default: weekly backup test (verify_backups.yml)
  run_name:
    description: O(action=summary) - the name the verdict starts with.
    type: str
    default: verify_backups.yml
notes:
  - O(locations) (O(action=copy) with O(manifest_id), and O(action=record)) are the logical backup locations, each
    with its C(prefix) (normally C(postgres/logical)).
requirements:
  - psycopg2 (O(action=copy))
  - pg_amcheck (O(action=copy) with O(amcheck))
  - pgbackrest (O(action=pgbackrest))
  - boto3 (for S3 locations)
seealso:
  - module: auditron.dr.backup_catalog
  - module: auditron.dr.pg_restore
  - module: auditron.dr.dr_metrics
  - name: pgBackRest verify
    description: The command O(action=pgbackrest) runs.
    link: https://pgbackrest.org/command.html#command-verify
"""

EXAMPLES = r"""
- name: Every location holds every logical backup, checksums verified
  auditron.dr.backup_catalog:
    locations: "{{ logical_locations }}"
    encryption: "{{ auditron_dr_backup_encryption }}"
    deep: true
  register: deep_catalog

- name: One row per location, and the latest backup to restore
  auditron.dr.backup_verify:
    action: copies
    catalog: "{{ deep_catalog }}"
  register: copies

- name: Check the logical restore in a scratch cluster
  auditron.dr.backup_verify:
    login_host: 127.0.0.1
    login_port: "{{ scratch_port }}"
    login_password: "{{ auditron_dr_postgres.password }}"
    kind: logical
    backup: "{{ copies.latest_backup_id }}"
    manifest_id: "{{ copies.latest_backup_id }}"
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

- name: pgbackrest verify of every repository
  auditron.dr.backup_verify:
    action: pgbackrest
    pgbackrest:
      config: /etc/pgbackrest/pgbackrest.conf
  become: true
  become_user: postgres

- name: The verdict, one line
  auditron.dr.backup_verify:
    action: summary
    checks: "{{ copies.checks + logical_checks.checks }}"
  register: verdict
"""

RETURN = r"""
checks:
  description: The check rows of this call - C(name), C(result) (V(ok) or V(failed)), C(detail), C(backups) (the
    backups a failure concerns), C(kind).
  returned: always
  type: list
  elements: dict
  sample:
    - {name: copies_local, result: failed, backups: [auditron_20261124_020000],
       detail: "1 of 3 logical backups bad at location local: logical backup auditron_20261124_020000 at location
         local: different: backup auditron_20261124_020000 at location local (...): sha256 ... differs (corrupted)"}
    - {name: logical_row_counts, result: ok, backups: [auditron_20261124_020000],
       detail: "logical backup auditron_20261124_020000: 3 tables hold exactly the rows of its manifest"}
verification_success:
  description: Per check name, 1 if it passed and 0 if it failed.
  returned: always
  type: dict
  sample: {copies_local: 0, logical_row_counts: 1}
failed_checks:
  description: The failed rows.
  returned: always
  type: list
  elements: dict
msg:
  description: One line - with O(action=summary), the verdict naming every failed check and its backup.
  returned: always
  type: str
dr_report:
  description: C(checks) for the dr_timeline report (not with O(action=summary) or O(action=record), whose rows
    were reported by the calls that made them).
  returned: always
  type: dict
tables:
  description: O(action=copy) - per table, the manifest's rows and newest time, the copy's, and deletions since.
  returned: when O(action=copy)
  type: list
  elements: dict
sql_results:
  description: O(action=copy) - per user check, the columns and up to 20 rows the query returned.
  returned: when O(action=copy)
  type: list
  elements: dict
latest_backup_id:
  description: O(action=copies) - the newest logical backup with a complete manifest and a copy somewhere.
  returned: when O(action=copies)
  type: str
latest_backup:
  description: O(action=copies) - its catalog entry.
  returned: when O(action=copies)
  type: dict
repos:
  description: O(action=pgbackrest) - per repository, the command, whether it passed, and pgBackRest's counts.
  returned: when O(action=pgbackrest)
  type: list
  elements: dict
records:
  description: O(action=record) - per backup, the result recorded and the locations written.
  returned: when O(action=record)
  type: list
  elements: dict
total:
  description: O(action=summary) - number of checks.
  returned: when O(action=summary)
  type: int
failed_names:
  description: O(action=summary) - names of the failed checks.
  returned: when O(action=summary)
  type: list
  elements: str
"""

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.auditron.dr.plugins.module_utils import verification
from ansible_collections.auditron.dr.plugins.module_utils.base import (
    AuditronModule, location_suboptions, postgres_argument_spec)
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.pg import HAS_PSYCOPG2, PSYCOPG2_IMPORT_ERROR
from ansible_collections.auditron.dr.plugins.module_utils.storage import (
    BOTO3_IMPORT_ERROR, HAS_BOTO3, locations_from_params)


def argument_spec():
    spec = postgres_argument_spec()
    spec.update(
        action=dict(type="str", choices=["copy", "copies", "pgbackrest", "record", "summary"], default="copy"),
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
        catalog=dict(type="dict"),
        location_names=dict(type="list", elements="str"),
        pgbackrest=dict(type="dict", options=dict(
            config=dict(type="path", required=True),
            stanza=dict(type="str", default="auditron"),
            repos=dict(type="list", elements="int"),
            process_max=dict(type="int"),
            timeout=dict(type="int", default=7200),
        )),
        checks=dict(type="list", elements="dict", default=[]),
        logical_backup=dict(type="str"),
        physical_backup=dict(type="dict", options=dict(
            label=dict(type="str", required=True),
            stanza=dict(type="str", default="auditron"),
            repo=dict(type="str"),
        )),
        by=dict(type="str", default="weekly backup test (verify_backups.yml)"),
        run_name=dict(type="str", default="verify_backups.yml"),
    )
    return spec


def _locations(params):
    if not params["locations"]:
        raise DRError("locations are required for this action: the logical backup locations")
    return locations_from_params(params["locations"])


def check_copy(params, check_mode):
    manifest = params["manifest"]
    if manifest is None and params["manifest_id"] and params["compare"] != "none":
        manifest = verification.load_manifest(_locations(params), params["manifest_id"])
    if manifest is None and params["compare"] != "none":
        raise DRError("compare %s needs the manifest: give manifest, or manifest_id and locations (or compare: none)"
                      % params["compare"])
    return verification.verify_restored_copy(
        params, params["db"], params["kind"], params["backup"], manifest=manifest, compare=params["compare"],
        audit_log=params["audit_log"], backup_time=params["backup_time"],
        max_backup_age_hours=params["max_backup_age_hours"], amcheck=params["amcheck"],
        amcheck_install_missing=params["amcheck_install_missing"] and not check_mode,
        amcheck_heapallindexed=params["amcheck_heapallindexed"], amcheck_jobs=params["amcheck_jobs"],
        bin_dir=params["bin_dir"], sql_checks=params["sql_checks"], statement_timeout=params["statement_timeout"],
        restore_seconds=params["restore_seconds"], restore_detail=params["restore_detail"])


def run(module):
    params = module.params
    action = params["action"]
    if any((item or {}).get("type", "s3") == "s3" for item in params["locations"]) and not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=BOTO3_IMPORT_ERROR)
    if action == "copy":
        if not HAS_PSYCOPG2:
            module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)
        return check_copy(params, module.check_mode)
    if action == "copies":
        if params["catalog"] is None:
            raise DRError("action copies needs catalog: the result of auditron.dr.backup_catalog")
        return verification.copies_result(params["catalog"], params["location_names"])
    if action == "pgbackrest":
        if not params["pgbackrest"]:
            raise DRError("action pgbackrest needs pgbackrest: {config, stanza, repos}")
        options = params["pgbackrest"]
        return verification.pgbackrest_verify(options["config"], options["stanza"], repos=options["repos"],
                                              timeout=options["timeout"], process_max=options["process_max"],
                                              check_mode=module.check_mode)
    if action == "record":
        result = verification.record_results(_locations(params), params["checks"],
                                             logical_backup=params["logical_backup"],
                                             physical_backup=params["physical_backup"], by=params["by"],
                                             check_mode=module.check_mode)
        for warning in result.pop("warnings"):
            module.warn(warning)
        summary = verification.summarize(params["checks"], run=params["run_name"])
        result.update(verification_success=summary["verification_success"], failed_checks=summary["failed_checks"],
                      checks=[], dr_report={})
        return result
    summary = verification.summarize(params["checks"], run=params["run_name"])
    summary.update(changed=False, checks=[], dr_report={})
    return summary


def main():
    module = AuditronModule(argument_spec(), supports_check_mode=True)
    module.run(run, module)


if __name__ == "__main__":
    main()
