#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: object_mirror
short_description: Make one S3 bucket prefix hold exactly what another holds
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - Mirrors objects from O(source) to O(destination), both at any S3-compatible endpoint (AWS S3, MinIO,
    C(rclone serve s3)), as the plan's C(mc mirror) does, without its pitfalls.
  - Both listings are streamed and merge-joined (S3 lists keys in UTF-8 binary order; a server that does not is
    detected and its listing sorted on disk), so memory does not grow with the number of objects.
  - An object is copied when it is missing, or when its size or content hash differs. Content is compared by
    ETag where both ETags are plain MD5 sums, otherwise by the C(sha256), C(md5) and C(mirror-source-etag)
    metadata this module writes on every upload. Size alone is never trusted, so a same-size change is copied.
  - Objects are copied by O(threads) workers. Objects up to O(part_size_mb) are read whole and sent with
    Content-MD5; objects up to O(multipart_threshold_mb) are streamed from the source into one upload (constant
    memory); larger ones go as multipart uploads with parts in ascending order, one part in memory per
    transfer. Where source and destination share an endpoint and credentials the copy is server-side
    (CopyObject, or UploadPartCopy beyond 5 GiB).
  - Objects at the destination that the source does not have are deleted only with O(delete=true), only when
    every listing and transfer succeeded, and never more than O(max_delete_percent) of the destination unless
    O(force=true).
  - Transient failures are retried with backoff (each request, and each streamed copy as a whole); an
    endpoint that stays silent stops the run with one message naming the endpoint and the key.
  - For history (restore as of an earlier sync) use M(auditron.dr.file_history), which is built on this module's
    engine.
extends_documentation_fragment:
  - auditron.dr.transfer
  - auditron.dr.encryption
  - auditron.dr.location.mirror
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: In check mode the plan is computed (both sides are listed; metadata is read where ETags cannot tell)
      and returned in RV(plan); nothing is written or deleted.
  diff_mode:
    support: partial
    details: The diff names up to 20 objects per action (copy, replace, delete); contents are not shown.
  platform:
    platforms: posix
options:
  source:
    description: Where objects are copied from. Only O(source.type=s3).
    type: dict
    required: true
  destination:
    description: Where objects are copied to. Only O(destination.type=s3).
    type: dict
    required: true
  delete:
    description: Delete destination objects the source does not have (guarded, see O(max_delete_percent)).
    type: bool
    default: false
  server_side_copy:
    description: V(auto) copies server-side where source and destination share endpoint and credentials;
      V(never) always streams through this host.
    type: str
    choices: [auto, never]
    default: auto
  encryption_mode:
    description:
      - With O(encryption), V(encrypt) stores objects at the destination encrypted (AES-256-GCM, for destinations
        without server-side encryption; the plaintext size, MD5 and sha256 go into the metadata for change
        detection); V(decrypt) turns objects this module encrypted back into plaintext.
      - Objects already encrypted are never encrypted twice; without O(encryption) they are copied as they are.
    type: str
    choices: [encrypt, decrypt]
    default: encrypt
  commit_last:
    description: Glob patterns of keys (relative to the prefixes) copied only after every other copy succeeded,
      such as a backup's commit markers, so that the destination never shows a marker before what it marks.
    type: list
    elements: str
    default: []
  sort_listings:
    description: Sort both listings on disk instead of relying on the servers' order (done automatically when a
      server is found not to sort).
    type: bool
    default: false
requirements:
  - boto3 (builds the locations and finds credentials; the transfers themselves speak S3 directly)
  - cryptography (only with O(encryption))
notes:
  - C(rclone serve s3) answers UploadPartCopy without copying; the module notices and streams instead.
  - Source metadata (Content-Type, Cache-Control, C(x-amz-meta-*)) is kept.
seealso:
  - module: auditron.dr.file_history
  - module: amazon.aws.s3_object
"""

EXAMPLES = r"""
- name: Copy the backup prefix to the second region
  auditron.dr.object_mirror:
    source: "{{ auditron_dr_backup_locations[0] | combine({'prefix': 'files'}) }}"
    destination: "{{ auditron_dr_backup_locations[1] | combine({'prefix': 'files'}) }}"
    delete: true
    commit_last: ["points/*/point.json"]

- name: What would a mirror change?
  auditron.dr.object_mirror:
    source: "{{ auditron_dr_object_store }}"
    destination:
      name: s3-us-east-1
      bucket: auditron-backups
      prefix: files/plain
    delete: true
  check_mode: true
  register: mirror_plan
"""

RETURN = r"""
summary:
  description: Counts and bytes by outcome.
  returned: always
  type: dict
  sample:
    copied: 12
    bytes_copied: 402211
    replaced: 1
    bytes_replaced: 30000
    skipped: 10007
    bytes_skipped: 330221875
    deleted: 0
    bytes_deleted: 0
    failed: 0
    bytes_failed: 0
    vanished: 0
    bytes_vanished: 0
    checked: 0
    bytes_checked: 0
    server_side_copies: 0
    bytes_transferred: 432211
plan:
  description: What was (or, in check mode, would be) done, by action - V(copy), V(replace), V(skip),
    V(delete), V(check) (metadata had to be read) and V(extra) (at the destination only, kept).
  returned: always
  type: dict
  sample:
    copy: {objects: 12, bytes: 402211}
    replace: {objects: 1, bytes: 30000}
    skip: {objects: 10007, bytes: 330221875}
    delete: {objects: 0, bytes: 0}
    check: {objects: 0, bytes: 0}
    extra: {objects: 0, bytes: 0}
plan_samples:
  description: Up to 20 keys per action.
  returned: always
  type: dict
source_objects:
  description: Objects listed at the source.
  returned: always
  type: int
destination_objects_before:
  description: Objects listed at the destination before the run.
  returned: always
  type: int
failures:
  description: The first failures, each with the key and one line naming the endpoint and the error.
  returned: always
  type: list
  elements: dict
deletions_blocked:
  description: Why deletions did not happen (guard, or an earlier failure), or null.
  returned: always
  type: str
duration_seconds:
  description: Wall time of the run.
  returned: always
  type: float
throughput_bytes_per_second:
  description: Bytes copied and replaced per second of wall time.
  returned: always
  type: int
objects_per_second:
  description: Objects copied and replaced per second of wall time.
  returned: always
  type: float
listing_order:
  description: Whether the servers' listing order was used (checked as it streamed) or listings were sorted on disk.
  returned: always
  type: str
source:
  description: The source, as messages name it.
  returned: always
  type: str
destination:
  description: The destination, as messages name it.
  returned: always
  type: str
"""

from ansible_collections.auditron.dr.plugins.module_utils import mirror
from ansible_collections.auditron.dr.plugins.module_utils.base import (
    AuditronModule, encryption_suboptions, location_suboptions, transfer_argument_spec)


def argument_spec():
    spec = transfer_argument_spec()
    spec.update(
        source=dict(type="dict", required=True, options=location_suboptions()),
        destination=dict(type="dict", required=True, options=location_suboptions()),
        delete=dict(type="bool", default=False),
        server_side_copy=dict(type="str", choices=["auto", "never"], default="auto"),
        encryption=dict(type="dict", options=encryption_suboptions()),
        encryption_mode=dict(type="str", choices=["encrypt", "decrypt"], default="encrypt"),
        commit_last=dict(type="list", elements="str", default=[]),
        sort_listings=dict(type="bool", default=False),
    )
    return spec


def run(params, check_mode, diff, log):
    mirror.check_transfer_params(params)
    result = mirror.run_mirror(params, check_mode=check_mode,
                               progress=mirror.progress_writer(params.get("progress_file"), log))
    if diff:
        samples = result["plan_samples"]
        result["diff"] = {
            "before": "%d object(s) at %s\n" % (result["destination_objects_before"], result["destination"]),
            "after": "".join("%s %s\n" % (action, key) for action in ("copy", "replace", "delete")
                             for key in samples.get(action, [])),
        }
    return mirror.result_or_error(result)


def main():
    # cryptography is needed only with encryption; crypto.py says so when it is missing.
    module = AuditronModule(argument_spec(), supports_check_mode=True)
    module.run(run, module.params, module.check_mode, module.diff_mode, module.log)


if __name__ == "__main__":
    main()
