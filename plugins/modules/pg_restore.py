#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_restore
short_description: Verify a logical backup and restore it into a new PostgreSQL database
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - Chooses a logical backup made by M(auditron.dr.pg_backup) through the catalog of manifests - by
    O(backup_id), the O(latest) valid one, or the latest valid one taken O(before) a time - and restores it into
    O(target_db), a new database.
  - Takes the first location, in the order of O(locations), that holds a copy which verifies, and falls back to
    the next when a location cannot be reached or its copy fails verification, saying which and why. With
    O(latest) or O(before), when no copy of the chosen backup verifies, the previous valid backup is used, and
    the result says so.
  - Nothing is written to the target before a copy has verified - sha256 over the stored bytes and every
    AES-256-GCM tag. An unknown backup, a time before the oldest backup, a wrong key, a corrupted or truncated
    artifact - each fails with one line naming the backup and the location, and the target database is not
    created.
  - With O(jobs) greater than 1, pg_restore runs in parallel, which needs a seekable file - the decrypted archive
    is written to a private spool directory (mode 0700, file 0600) in the same pass that verifies it, and is
    always removed, also on failure. With O(jobs=1) the archive is streamed into pg_restore with no file.
  - Afterwards the row count of every restored table is compared with the manifest; a difference fails the task
    (the restored database is kept for inspection).
extends_documentation_fragment:
  - auditron.dr.postgres
  - auditron.dr.location
  - auditron.dr.encryption
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: In check mode the module says which backup it would restore, from which location, and what it would
      do to O(target_db). Verification only reads, so with O(verify_in_check_mode=true) the chosen copy is also
      verified (downloaded once).
  diff_mode:
    support: none
    details: The change is a whole new database; its row counts are returned instead.
  platform:
    platforms: posix
options:
  target_db:
    description: Database to restore into. Created from C(template0) with the source's encoding and locale. It
      must not exist, or be empty, unless O(replace=true).
    type: str
    required: true
  backup_id:
    description: Restore this backup (C(<series>_YYYYMMDD_HHMMSS)). Mutually exclusive with O(latest) and O(before).
    type: str
  latest:
    description: Restore the latest valid backup of O(series).
    type: bool
    default: false
  before:
    description: Restore the latest valid backup of O(series) whose snapshot was taken at or before this time
      (ISO 8601; a time without zone is UTC).
    type: str
  series:
    description: Backup series to choose from with O(latest) or O(before) (the database name the backups were
      taken of, by default).
    type: str
    default: auditron
  jobs:
    description: Parallel pg_restore jobs. Above 1 the archive is spooled to a file first (see O(spool_dir)).
    type: int
    default: 2
  spool_dir:
    description: Directory in which a private spool directory is made when O(jobs) is above 1. It needs room for
      the uncompressed dump (the manifest's C(plaintext_bytes)); the module checks before it starts. Defaults to
      the system's temporary directory.
    type: path
  tables:
    description:
      - Restore only these tables (C(table) or C(schema.table)), definition and data, as C(pg_restore --table)
        does - without indexes, constraints or triggers. Every name must be in the backup's manifest; names are
        passed to pg_restore as arguments, never as SQL.
    type: list
    elements: str
  replace:
    description: Drop and recreate O(target_db) when it exists and is not empty. Never allowed for the live
      database the backup was taken from (same name on the same cluster) - restore beside it and swap.
    type: bool
    default: false
  verify_in_check_mode:
    description: In check mode, also verify the chosen copy (read-only).
    type: bool
    default: false
  check_row_counts:
    description: Compare the restored row counts with the manifest, and fail on a difference.
    type: bool
    default: true
  no_owner:
    description: Pass C(--no-owner --no-privileges) to pg_restore, for a server that lacks the source's roles.
    type: bool
    default: false
  bin_dir:
    description: Directory of the PostgreSQL client tools (C(pg_restore)); by default the newest at least as new
      as the server.
    type: path
notes:
  - The connection options name the server to restore into.
requirements:
  - zstandard
  - cryptography
  - boto3 (for S3 locations and KMS)
  - PostgreSQL client tools (pg_restore) as new as the server
seealso:
  - module: auditron.dr.pg_backup
  - module: auditron.dr.backup_catalog
"""

EXAMPLES = r"""
- name: Restore the latest valid backup beside production
  auditron.dr.pg_restore:
    login_host: db.primary.auditron.internal
    login_password: "{{ vault_pg_password }}"
    latest: true
    series: auditron
    target_db: auditron_restored
    locations: "{{ auditron_dr_backup_locations }}"
    encryption: "{{ auditron_dr_backup_encryption }}"
    jobs: 2
  register: restored

- name: Scenario 3 - the invoices as they were before the deletion, into a scratch database
  auditron.dr.pg_restore:
    before: "2026-11-24T09:14:00Z"
    target_db: auditron_before_delete
    tables: [Invoice]
    jobs: 1
    locations: "{{ auditron_dr_backup_locations }}"
    encryption: "{{ auditron_dr_backup_encryption }}"

- name: Which backup would be used, and does its copy verify?
  auditron.dr.pg_restore:
    latest: true
    target_db: auditron_restored
    verify_in_check_mode: true
    locations: "{{ auditron_dr_backup_locations }}"
    encryption: "{{ auditron_dr_backup_encryption }}"
  check_mode: true
"""

RETURN = r"""
msg:
  description: One line saying what was restored, from where, into what.
  returned: always
  type: str
backup_id:
  description: The backup restored (or that would be).
  returned: always
  type: str
  sample: auditron_20261124_020000
snapshot_at:
  description: The backup's point in time (the snapshot of the dump).
  returned: always
  type: str
location:
  description: The location whose copy was used.
  returned: always
  type: str
target_action:
  description: What was done to O(target_db) - V(created), V(replaced) or V(reused (empty)); null in check mode.
  returned: always
  type: str
verified:
  description: Whether a copy was verified (always true after a restore; in check mode only with
    O(verify_in_check_mode)).
  returned: always
  type: bool
attempts:
  description: Every copy tried, in order, with whether it verified and why not.
  returned: always
  type: list
  elements: dict
  sample:
    - {backup_id: auditron_20261124_020000, location: s3-us-east-1, ok: false,
       detail: "backup auditron_20261124_020000 at location s3-us-east-1 (...): authentication tag mismatch in chunk 3"}
    - {backup_id: auditron_20261124_020000, location: s3-eu-west-1, ok: true, detail: verified while spooling}
fallback:
  description: When a copy other than the first choice was used, which one and why; else null.
  returned: always
  type: str
row_counts:
  description: Per table, the rows in the manifest and in the restored database.
  returned: success
  type: list
  elements: dict
  sample: [{table: public.Invoice, expected: 150000, restored: 150000, match: true}]
counts_match:
  description: Whether every restored table has the manifest's row count.
  returned: success
  type: bool
timings:
  description: Seconds spent verifying (and spooling), in pg_restore (including creating the database) and
    counting rows.
  returned: success
  type: dict
duration_seconds:
  description: Wall time.
  returned: always
  type: float
peak_rss_bytes:
  description: Peak resident memory of the module process.
  returned: always
  type: int
dr_report:
  description: Data for the dr_timeline callback report (backup_used, markers.recovery_point, checks).
  returned: always
  type: dict
"""

from ansible_collections.auditron.dr.plugins.module_utils import logicalrestore, pgdump
from ansible_collections.auditron.dr.plugins.module_utils.base import (
    AuditronModule, encryption_suboptions, location_suboptions, postgres_argument_spec)


def argument_spec():
    spec = postgres_argument_spec()
    spec.update(
        target_db=dict(type="str", required=True),
        backup_id=dict(type="str"),
        latest=dict(type="bool", default=False),
        before=dict(type="str"),
        series=dict(type="str", default="auditron"),
        locations=dict(type="list", elements="dict", default=[], options=location_suboptions()),
        encryption=dict(type="dict", options=encryption_suboptions()),
        jobs=dict(type="int", default=2),
        spool_dir=dict(type="path"),
        tables=dict(type="list", elements="str"),
        replace=dict(type="bool", default=False),
        verify_in_check_mode=dict(type="bool", default=False),
        check_row_counts=dict(type="bool", default=True),
        no_owner=dict(type="bool", default=False),
        bin_dir=dict(type="path"),
    )
    return spec


def run_restore(module):
    params = module.params
    return logicalrestore.restore(
        params, params["locations"], params["target_db"], encryption=params["encryption"],
        backup_id=params["backup_id"], latest=params["latest"], before=params["before"],
        series=None if params["backup_id"] else params["series"], jobs=params["jobs"],
        spool_dir=params["spool_dir"], tables=params["tables"], replace=params["replace"],
        check_mode=module.check_mode, verify_in_check_mode=params["verify_in_check_mode"],
        check_row_counts=params["check_row_counts"], bin_dir=params["bin_dir"], no_owner=params["no_owner"],
        log=module.log)


def main():
    module = AuditronModule(
        argument_spec(), supports_check_mode=True,
        required_libs=pgdump.required_libraries())
    module.run(run_restore, module)


if __name__ == "__main__":
    main()
