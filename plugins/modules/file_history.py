#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: file_history
short_description: Back up an object store with hourly history and daily snapshots, and restore it as of any point
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - The plan's file storage backups (hourly sync to S3, daily snapshot; hourly syncs kept 7 days, daily
    snapshots 30 days) on S3-compatible servers that have no bucket versioning.
  - O(operation=sync) mirrors O(source) into C(current/) under O(backup) and records a point. Before an object in
    C(current/) is overwritten or deleted, it is copied server-side to C(history/<point that wrote it>/), so
    every point stays restorable. A point costs what changed - the copied objects, the displaced ones, and an
    index of the changes since the last full index - never the whole store. O(snapshot=true) makes the daily
    snapshot, a point with a full index. A sync that finds nothing changed writes nothing and reports no change.
    Afterwards, retention (O(retention), the plan's policy by default) removes points and displaced versions no
    kept point needs.
  - O(operation=restore) makes O(target) hold exactly the objects as of O(as_of) - V(latest), a point id, or a time
    (the newest point at or before it) - checking each copied object against the MD5/sha256 the index recorded.
  - O(operation=list) returns the points; O(operation=prune) only applies retention.
  - Deletions (objects deleted at the source during O(operation=sync); objects the point does not have during
    O(operation=restore)) follow the rules of M(auditron.dr.object_mirror) - only after everything else succeeded,
    and within O(max_delete_percent) unless O(force=true).
  - One sync or prune at a time per backup - a lock object (C(lock.json)) is held meanwhile.
extends_documentation_fragment:
  - auditron.dr.transfer
  - auditron.dr.encryption
  - auditron.dr.location.history
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Sync and restore return their plan (listings are read, nothing is written); prune returns what it
      would delete.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  operation:
    description: What to do - V(sync) (back up, with history), V(restore) (as of a point), V(list) (the points),
      V(prune) (retention only).
    type: str
    choices: [sync, restore, list, prune]
    default: sync
  source:
    description: The object store backed up (the site's MinIO). Required for O(operation=sync).
    type: dict
  backup:
    description: The backup - an S3 location whose O(backup.prefix) (V(files) in the collection's layout) holds
      C(current/), C(history/), C(points/) and C(ledger/).
    type: dict
    required: true
  target:
    description: Where O(operation=restore) restores to (a site's MinIO, or a scratch bucket or prefix).
    type: dict
  as_of:
    description: For O(operation=restore) - V(latest), a point id (V(20261124T020000Z)) or an ISO 8601 time.
    type: str
    default: latest
  snapshot:
    description: Make this sync the daily snapshot (a point with a full index, kept by the daily tier).
    type: bool
    default: false
  delete:
    description:
      - O(operation=sync) - delete from C(current/) what was deleted at the source (the versions stay in history).
        Defaults to V(true).
      - O(operation=restore) - delete target objects the point does not have. Defaults to V(false).
    type: bool
  prune:
    description: Apply retention after a successful O(operation=sync).
    type: bool
    default: true
  retention:
    description: Retention of points; an option left out takes the plan's value (hourly syncs 7 days, daily
      snapshots 30 days, the newest point always). 0 turns a tier off.
    type: dict
    suboptions:
      hourly_hours:
        description: Keep the newest sync of each hour for this many hours (plan - 168).
        type: int
      daily_days:
        description: Keep the newest snapshot of each day for this many days (plan - 30).
        type: int
      weekly_days:
        description: Keep the newest snapshot of each ISO week for this many days (plan - 0).
        type: int
      monthly_days:
        description: Keep the newest snapshot of each month for this many days (plan - 0).
        type: int
      yearly_days:
        description: Keep the newest snapshot of each year for this many days (plan - 0).
        type: int
      keep_last:
        description: Always keep this many newest points (plan - 1).
        type: int
  full_index_max_age_hours:
    description: A sync writes a full index of its own when the newest one is older than this (when snapshots
      are not being made).
    type: int
    default: 36
  break_lock:
    description: Take the backup's lock even when another run holds it (only after making sure it died).
    type: bool
    default: false
requirements:
  - boto3 (builds the locations and finds credentials; the transfers themselves speak S3 directly)
  - cryptography (only with O(encryption))
notes:
  - With O(encryption), objects are stored encrypted (AES-256-GCM, a data key per object wrapped by the key
    source) for backup stores without server-side encryption; restores decrypt them with the key the
    objects' headers name. For AWS, O(backup.sse=aws:kms) asks S3 to encrypt instead.
  - Point ids are UTC times; C(list) shows which points are restorable (a point kept only as the base of later
    points is not).
seealso:
  - module: auditron.dr.object_mirror
"""

EXAMPLES = r"""
- name: Hourly sync of the primary site's MinIO into the backup bucket
  auditron.dr.file_history:
    source: "{{ auditron_dr_object_store }}"
    backup: "{{ auditron_dr_backup_locations[0] | combine({'prefix': 'files'}) }}"

- name: Daily snapshot
  auditron.dr.file_history:
    source: "{{ auditron_dr_object_store }}"
    backup: "{{ auditron_dr_backup_locations[0] | combine({'prefix': 'files'}) }}"
    snapshot: true

- name: Restore the DR site's MinIO as of yesterday 18:00 UTC
  auditron.dr.file_history:
    operation: restore
    backup: "{{ auditron_dr_backup_locations[0] | combine({'prefix': 'files'}) }}"
    target: "{{ auditron_dr_object_store }}"
    as_of: "2026-11-23T18:00:00Z"
    delete: true
"""

RETURN = r"""
point:
  description: The point written by a sync (null when nothing changed), or the point a restore used.
  returned: operation is sync or restore
  type: dict
  sample: {id: "20261124T020000Z", time: "2026-11-24T02:00:00Z", kind: snapshot, full: true,
           base: "20261124T020000Z", objects: 1003, bytes: 60293117, written: true}
backup_objects:
  description: How many objects the backup's C(current/) holds after a sync - the new point's count, or the latest
    point's when nothing changed; null in check mode.
  returned: operation is sync
  type: int
  sample: 1003
backup_bytes:
  description: The bytes of those objects (the size gauge of the file backup that C(backup_files.yml) records).
  returned: operation is sync
  type: int
  sample: 60293117
recovery_point:
  description: The time the backup was (sync) or the restored objects were (restore) known equal to the source.
  returned: success, operation is sync or restore
  type: str
summary:
  description: Counts and bytes by outcome, as M(auditron.dr.object_mirror) returns them.
  returned: operation is sync or restore
  type: dict
plan:
  description: Objects and bytes by action (copy, replace, repair, adopt, skip, delete; restore - copy, replace,
    skip, delete, check).
  returned: operation is sync or restore
  type: dict
retention:
  description: Points kept and deleted (with reasons) and displaced versions deleted.
  returned: operation is sync (with prune) or prune
  type: dict
lost_versions:
  description: Versions that should have been in C(history/) but were not (their current copy was changed
    outside the sync); the first 20.
  returned: operation is sync
  type: list
  elements: dict
points:
  description: Every committed point, oldest first.
  returned: operation is list
  type: list
  elements: dict
failures:
  description: The first failures, with key and one line naming the endpoint.
  returned: operation is sync or restore
  type: list
  elements: dict
duration_seconds:
  description: Wall time.
  returned: operation is sync or restore
  type: float
"""

from ansible_collections.auditron.dr.plugins.module_utils import filehistory, mirror, s3client
from ansible_collections.auditron.dr.plugins.module_utils.base import (
    AuditronModule, encryption_suboptions, location_suboptions, transfer_argument_spec)
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError

RETENTION_FIELDS = ("hourly_hours", "daily_days", "weekly_days", "monthly_days", "yearly_days", "keep_last")


def argument_spec():
    spec = transfer_argument_spec()
    spec.update(
        operation=dict(type="str", choices=["sync", "restore", "list", "prune"], default="sync"),
        source=dict(type="dict", options=location_suboptions()),
        backup=dict(type="dict", required=True, options=location_suboptions()),
        target=dict(type="dict", options=location_suboptions()),
        as_of=dict(type="str", default="latest"),
        snapshot=dict(type="bool", default=False),
        delete=dict(type="bool"),
        prune=dict(type="bool", default=True),
        retention=dict(type="dict", options=dict((name, dict(type="int")) for name in RETENTION_FIELDS)),
        full_index_max_age_hours=dict(type="int", default=36),
        break_lock=dict(type="bool", default=False),
        encryption=dict(type="dict", options=encryption_suboptions()),
    )
    return spec


def _options(params, operation):
    from ansible_collections.auditron.dr.plugins.module_utils import keyproviders  # pylint: disable=import-outside-toplevel
    encryption = params.get("encryption")
    active = bool(encryption) and (encryption.get("key_source") or "file") != "none"
    provider = keyproviders.provider_from_params(encryption) if active and operation == "sync" else None
    return mirror.CopyOptions(part_size=params["part_size_mb"] * s3client.MIB, attempts=params["retries"],
                              multipart_threshold=params["multipart_threshold_mb"] * s3client.MIB,
                              provider=provider, crypt="encrypt" if provider is not None else None,
                              encryption_params=encryption)


def _retention(params):
    retention = params.get("retention") or {}
    return dict((name, value) for name, value in retention.items() if value is not None)


def run(params, check_mode, log):
    operation = params["operation"]
    mirror.check_transfer_params(params)
    backup = s3client.S3Endpoint.from_params(params["backup"], "backup", timeout=params["timeout"],
                                             retries=params["retries"])
    progress = mirror.progress_writer(params.get("progress_file"), log)
    endpoints = [backup]
    try:
        if operation == "list":
            return filehistory.list_points(backup)
        if operation == "prune":
            return filehistory.prune(backup, retention=_retention(params), check_mode=check_mode,
                                     break_lock=params["break_lock"])
        if operation == "sync":
            if not params.get("source"):
                raise DRError("operation sync needs source (the object store to back up)")
            source = s3client.S3Endpoint.from_params(params["source"], "source", timeout=params["timeout"],
                                                     retries=params["retries"])
            endpoints.append(source)
            result = filehistory.sync(
                source, backup, snapshot=params["snapshot"],
                delete=True if params.get("delete") is None else params["delete"],
                max_delete_percent=params["max_delete_percent"], force=params["force"], threads=params["threads"],
                check_mode=check_mode, options=_options(params, operation), progress=progress,
                progress_interval=params["progress_interval"], retention=_retention(params), prune=params["prune"],
                full_index_max_age_hours=params["full_index_max_age_hours"], break_lock=params["break_lock"])
        else:
            if not params.get("target"):
                raise DRError("operation restore needs target (where to restore to)")
            target = s3client.S3Endpoint.from_params(params["target"], "target", timeout=params["timeout"],
                                                     retries=params["retries"])
            endpoints.append(target)
            result = filehistory.restore(
                backup, target, as_of=params["as_of"], delete=bool(params.get("delete")),
                max_delete_percent=params["max_delete_percent"], force=params["force"], threads=params["threads"],
                check_mode=check_mode, options=_options(params, operation), progress=progress,
                progress_interval=params["progress_interval"])
    finally:
        for endpoint in endpoints:
            endpoint.server.close()
    return mirror.result_or_error(result)


def main():
    module = AuditronModule(argument_spec(), supports_check_mode=True,
                            required_if=[("operation", "sync", ["source"]), ("operation", "restore", ["target"])])
    module.run(run, module.params, module.check_mode, module.log)


if __name__ == "__main__":
    main()
