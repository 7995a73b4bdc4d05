#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: config_backup_info
short_description: List the configuration bundles in every backup location
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - Lists every configuration bundle that M(auditron.dr.config_backup) wrote (C(config_YYYYMMDD_HHMMSS) under
    C(config/) of each location), newest first - whether its manifest is complete, when and at which site it was
    made, what it holds, and per location whether the bundle is there, its size and the sha256 of the stored
    bytes compared with the manifest's.
  - A location that cannot be listed is reported in RV(unreachable_locations) and the others are still listed.
  - Changes nothing.
extends_documentation_fragment:
  - auditron.dr.location
  - auditron.dr.read_only
  - ansible.builtin.action_common_attributes
options:
  key_prefix:
    description: Prefix under each location (its own O(locations[].prefix) included) where bundles live.
    type: str
    default: config/
  source_site:
    description: List only the bundles made at this site.
    type: str
  checksums:
    description:
      - Read every stored copy to compare its sha256 with the manifest's (bundles are small). V(false) compares
        sizes only.
    type: bool
    default: true
requirements:
  - boto3 (for S3 locations)
seealso:
  - module: auditron.dr.config_backup
"""

EXAMPLES = r"""
- name: What the backup locations hold
  auditron.dr.config_backup_info:
    locations: "{{ auditron_dr_backup_locations }}"
  register: config_bundles

- name: Fail unless the newest bundle is in every location
  ansible.builtin.assert:
    that:
      - config_bundles.bundles | length > 0
      - config_bundles.bundles[0].present_in | length == auditron_dr_backup_locations | length
"""

RETURN = r"""
msg:
  description: One line - how many bundles, where.
  returned: always
  type: str
  sample: "2 config bundles in local, s3-us-east-1, s3-eu-west-1"
bundles:
  description: Every bundle, newest first.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: C(config_YYYYMMDD_HHMMSS).
      type: str
    complete:
      description: A valid manifest exists; a bundle without one is a backup that did not finish and is never
        restored.
      type: bool
    created_at:
      description: When the backup read its sources.
      type: str
    site:
      description: The site it was made at.
      type: str
    counts:
      description: Items per kind.
      type: dict
    encrypted:
      description: Whether the bundle is encrypted.
      type: bool
    size:
      description: Bytes stored, as the manifest says.
      type: int
    sha256:
      description: sha256 of the stored bytes, as the manifest says.
      type: str
    present_in:
      description: Locations whose copy matches the manifest.
      type: list
      elements: str
    locations:
      description: Per location - C(present), C(manifest), C(size), C(sha256) (of the stored bytes, with
        O(checksums)), C(status) (V(ok), V(different), V(incomplete)) and C(detail).
      type: dict
  sample:
    - id: config_20261124_020000
      complete: true
      site: primary
      present_in: [local, s3-us-east-1, s3-eu-west-1]
      locations:
        s3-us-east-1: {present: true, manifest: true, size: 1468, status: ok,
                       sha256: ebbb428005dcdf439e7c277039d7351b5274c262b190c8dd810e8630a2c54c82}
latest:
  description: The newest complete bundle, or null.
  returned: always
  type: str
  sample: config_20261124_020000
unreachable_locations:
  description: Locations that could not be listed, with the reason.
  returned: always
  type: dict
"""

from ansible_collections.auditron.dr.plugins.module_utils.base import AuditronModule, location_suboptions
from ansible_collections.auditron.dr.plugins.module_utils.configbackup import list_bundles


def main():
    module = AuditronModule(
        argument_spec=dict(
            locations=dict(type="list", elements="dict", default=[], options=location_suboptions()),
            key_prefix=dict(type="str", default="config/", no_log=False),
            source_site=dict(type="str"),
            checksums=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    module.run(list_bundles, params["locations"], key_prefix=params["key_prefix"], checksums=params["checksums"],
               source_site=params["source_site"])


if __name__ == "__main__":
    main()
