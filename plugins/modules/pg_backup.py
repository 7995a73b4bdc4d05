#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_backup
short_description: Encrypted logical backup of a PostgreSQL database to every backup location in one pass
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - Dumps one database with C(pg_dump --format=custom --compress=0) and streams the dump through zstd (on every
    core), AES-256-GCM envelope encryption and sha256 to every location at once. One pass, bounded memory, no
    temporary copy of the dump anywhere.
  - Backups are named as the plan names them, C(auditron_YYYYMMDD_HHMMSS) in UTC (C(<series>_YYYYMMDD_HHMMSS)).
    In every location that received the whole artifact a manifest is written last, so a backup that crashed
    half-way is never listed as valid (see M(auditron.dr.backup_catalog)).
  - The manifest records the server (version, system identifier), the pg_dump version, size and sha256 of the
    artifact and where it is, the key reference (never a secret), and per table the row count and the newest
    value of O(timestamp_column). These are taken in the same snapshot as the dump - a REPEATABLE READ
    transaction exports its snapshot, pg_dump and parallel counting sessions import it - so they describe
    exactly what the dump holds.
  - A location that fails during the backup is dropped and reported; the backup succeeds with the others
    unless O(require_all_locations=true).
  - An advisory lock in the database, named for the backup series, keeps two runs from writing the same backup
    set at once; a second run waits up to O(lock_timeout) seconds, then fails saying who holds the lock.
  - Holding that lock, a run first removes what an interrupted run of the same series (killed, crashed) left
    unfinished in each location - a local temp file, an S3 multipart upload - and reports it in
    RV(interrupted_leftovers_removed). Nothing an interrupted run wrote is ever listed as a backup.
  - The password reaches pg_dump through its environment, never its command line.
extends_documentation_fragment:
  - auditron.dr.postgres
  - auditron.dr.location
  - auditron.dr.encryption
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: In check mode nothing is written. The module connects, says what would be dumped (database size
      from C(pg_database_size), table data size, table count), under which id and to which locations (each listed
      read-only), and how it would be encrypted.
  diff_mode:
    support: none
    details: A backup adds objects and changes none; there is nothing to diff.
  platform:
    platforms: posix
options:
  db:
    description: Database to back up.
    type: str
    default: auditron
    aliases: [database]
  series:
    description:
      - Name of the backup series, the first part of every backup id (C(<series>_YYYYMMDD_HHMMSS)) and the name of
        the lock. Retention judges each series on its own.
      - Defaults to O(db) (characters other than letters, digits, C(_), C(.) and C(-) become C(-)).
    type: str
  require_all_locations:
    description: Fail (and remove the copies that were written) unless every location received the whole backup.
    type: bool
    default: false
  lock_timeout:
    description: Seconds to wait for another backup of the same series to finish before failing.
    type: int
    default: 60
  compression_level:
    description: zstd compression level (1 fastest .. 19 smallest).
    type: int
    default: 3
  compression_threads:
    description: zstd worker threads; V(0) means one per CPU.
    type: int
    default: 0
  count_rows:
    description: Count the rows of every table (and the newest O(timestamp_column)) in the dump's snapshot and
      record them in the manifest. Restores and the weekly test compare against these.
    type: bool
    default: true
  count_jobs:
    description: Parallel sessions that count rows while pg_dump runs.
    type: int
    default: 2
  timestamp_column:
    description: Column whose maximum is recorded per table (in tables that have it), as the plan's
      C(MAX("createdAt")) check does.
    type: str
    default: createdAt
  progress_interval:
    description: Seconds between progress records (bytes dumped and stored), logged and returned in RV(progress).
    type: float
    default: 10
  bin_dir:
    description:
      - Directory of the PostgreSQL client tools (C(pg_dump)). By default the newest at least as new as the
        server is used, from C(/usr/lib/postgresql/<major>/bin) or the PATH.
    type: path
notes:
  - Restore with M(auditron.dr.pg_restore), list with M(auditron.dr.backup_catalog), apply retention with
    M(auditron.dr.backup_prune).
  - Give O(encryption) always; O(encryption.key_source=none) stores the backup unencrypted and says so in a
    warning, because the plan requires AES-256 at rest.
requirements:
  - zstandard
  - cryptography
  - boto3 (for S3 locations and KMS)
  - PostgreSQL client tools (pg_dump) as new as the server
seealso:
  - module: auditron.dr.pg_restore
  - module: auditron.dr.backup_catalog
  - module: auditron.dr.backup_prune
  - module: community.postgresql.postgresql_db
"""

EXAMPLES = r"""
- name: Back up auditron to the local disk and both S3 regions, data key wrapped by KMS
  auditron.dr.pg_backup:
    login_host: db.primary.auditron.internal
    login_password: "{{ vault_pg_password }}"
    db: auditron
    locations:
      - name: local
        type: local
        path: /var/backups/auditron/postgres/logical
      - name: s3-us-east-1
        bucket: auditron-backups
        prefix: postgres/logical
        region: us-east-1
      - name: s3-eu-west-1
        bucket: auditron-backups-eu-west-1
        prefix: postgres/logical
        region: eu-west-1
    encryption:
      key_source: kms
      kms_key_id: alias/auditron-backups
  register: logical_backup

- name: What would be backed up (nothing is written)
  auditron.dr.pg_backup:
    db: auditron
    locations: "{{ auditron_dr_backup_locations }}"
    encryption: "{{ auditron_dr_backup_encryption }}"
  check_mode: true
"""

RETURN = r"""
msg:
  description: One line saying what was done.
  returned: always
  type: str
  sample: "logical backup auditron_20261124_020000 of auditron: 88.2 MiB dump stored as 20.0 MiB (encrypted) in
    local, s3-us-east-1, s3-eu-west-1 in 2.0 s"
backup_id:
  description: Id of the backup (in check mode, an example of the id it would get).
  returned: always
  type: str
  sample: auditron_20261124_020000
locations:
  description: Locations that hold the whole artifact and its manifest. In check mode, one entry per location
    with what would be written there and whether it can be listed.
  returned: always
  type: list
  elements: raw
  sample: ["local", "s3-us-east-1", "s3-eu-west-1"]
failed_locations:
  description: Locations that did not get the backup, with the reason.
  returned: success
  type: dict
  sample: {"s3-eu-west-1": "location s3-eu-west-1: endpoint https://s3.eu-west-1.amazonaws.com/b does not answer"}
size:
  description: Bytes stored per location (compressed and encrypted).
  returned: success
  type: int
dump_bytes:
  description: Bytes pg_dump produced.
  returned: success
  type: int
sha256:
  description: sha256 of the stored artifact (the same in every location).
  returned: success
  type: str
duration_seconds:
  description: Wall time of the backup.
  returned: success
  type: float
throughput:
  description: Dump bytes per second, human readable.
  returned: success
  type: str
  sample: 50.0 MiB/s
throughput_bytes_per_second:
  description: Dump bytes per second.
  returned: success
  type: int
row_counts:
  description: Rows per table (C(schema.table)) in the dump's snapshot.
  returned: success
  type: dict
  sample: {"public.Invoice": 150000, "public.User": 20000}
tables:
  description: Per table, the rows, the table size and the newest O(timestamp_column), as in the manifest.
  returned: success
  type: list
  elements: dict
snapshot_at:
  description: Time of the snapshot the dump and the counts were taken in (the backup's point in time).
  returned: success
  type: str
encrypted:
  description: Whether the artifact is encrypted. False only with O(encryption.key_source=none).
  returned: always
  type: bool
key_reference:
  description: Which key wraps the data key (provider, key id or fingerprint); never a secret.
  returned: success
  type: dict
progress:
  description: Progress records, one every O(progress_interval) seconds and one at the end.
  returned: success
  type: list
  elements: dict
peak_rss_bytes:
  description: Peak resident memory of the module process.
  returned: success
  type: int
pg_dump_peak_rss_bytes:
  description: Peak resident memory of pg_dump, sampled while it ran.
  returned: success
  type: int
estimated_dump_bytes:
  description: In check mode, the size of the table data (indexes are not dumped).
  returned: check mode
  type: int
database_bytes:
  description: In check mode, C(pg_database_size) of the database.
  returned: check mode
  type: int
interrupted_leftovers_removed:
  description: Per location, the keys of unfinished writes left by an interrupted run of this series that this run
    removed (temp files, unfinished multipart uploads); empty when there were none.
  returned: success
  type: dict
  sample: {"s3-us-east-1": ["auditron_20261124_020000.dump.zst.enc"]}
dr_report:
  description: Data for the dr_timeline callback report (backup_used, checks per location, phase_detail).
  returned: success
  type: dict
"""

from ansible_collections.auditron.dr.plugins.module_utils import pgdump
from ansible_collections.auditron.dr.plugins.module_utils.base import (
    AuditronModule, encryption_suboptions, location_suboptions, postgres_argument_spec)


def argument_spec():
    spec = postgres_argument_spec()
    spec.update(
        db=dict(type="str", default="auditron", aliases=["database"]),
        series=dict(type="str"),
        locations=dict(type="list", elements="dict", default=[], options=location_suboptions()),
        encryption=dict(type="dict", options=encryption_suboptions()),
        require_all_locations=dict(type="bool", default=False),
        lock_timeout=dict(type="int", default=60),
        compression_level=dict(type="int", default=3),
        compression_threads=dict(type="int", default=0),
        count_rows=dict(type="bool", default=True),
        count_jobs=dict(type="int", default=2),
        timestamp_column=dict(type="str", default="createdAt"),
        progress_interval=dict(type="float", default=10),
        bin_dir=dict(type="path"),
    )
    return spec


def run_backup(module):
    params = module.params
    return pgdump.backup(
        params, params["locations"], encryption=params["encryption"], database=params["db"],
        series=params["series"], require_all_locations=params["require_all_locations"],
        lock_timeout=params["lock_timeout"], compression_level=params["compression_level"],
        compression_threads=params["compression_threads"], count_rows=params["count_rows"],
        count_jobs=params["count_jobs"], timestamp_column=params["timestamp_column"],
        progress_interval=params["progress_interval"], bin_dir=params["bin_dir"], check_mode=module.check_mode,
        log=module.log)


def main():
    module = AuditronModule(
        argument_spec(), supports_check_mode=True,
        required_libs=pgdump.required_libraries())
    module.run(run_backup, module)


if __name__ == "__main__":
    main()
