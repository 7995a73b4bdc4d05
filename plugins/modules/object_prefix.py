#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: object_prefix
short_description: Remove every object under a prefix in some locations
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - Removes every object whose key starts with O(prefix) in each of O(locations) (S3 buckets at any endpoint, or
    local directories). The DR drill uses it to tear down the files it restored into a scratch prefix.
  - An empty prefix is refused, so that a mistake cannot empty a whole bucket.
extends_documentation_fragment:
  - auditron.dr.location
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Lists what would be removed; removes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  prefix:
    description: Key prefix to empty, relative to the location's own prefix. Must not be empty.
    type: str
    required: true
  state:
    description: Only V(absent).
    type: str
    choices: [absent]
    default: absent
"""

EXAMPLES = r"""
- name: Remove the drill's restored files
  auditron.dr.object_prefix:
    locations: ["{{ auditron_dr_object_store }}"]
    prefix: .drill-20261124T030000Z/
    state: absent
"""

RETURN = r"""
removed:
  description: Number of objects removed (in check mode, that would be).
  returned: always
  type: int
bytes:
  description: Their total size.
  returned: always
  type: int
failed:
  description: Objects that could not be removed, with the reason.
  returned: when some could not be removed
  type: list
  elements: list
"""

from ansible_collections.auditron.dr.plugins.module_utils.base import AuditronModule, location_suboptions
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.storage import (
    BOTO3_IMPORT_ERROR, HAS_BOTO3, locations_from_params)


def empty_prefix(params, check_mode):
    prefix = params["prefix"] or ""
    if not prefix.strip("/"):
        raise DRError("object_prefix: prefix must not be empty (it would empty the whole location)")
    if not params["locations"]:
        raise DRError("object_prefix: give at least one location in locations")
    result = {"removed": 0, "bytes": 0, "changed": False}
    for location in locations_from_params(params["locations"]):
        objects = list(location.list(prefix))
        result["removed"] += len(objects)
        result["bytes"] += sum(o.size for o in objects)
        if check_mode or not objects:
            continue
        failed = location.delete([o.key for o in objects])
        if failed:
            raise DRError("%s: %d of %d objects under %s could not be removed: %s" % (
                location.describe(), len(failed), len(objects), prefix, failed[0][1]), failed=failed)
    result["changed"] = result["removed"] > 0
    return result


def main():
    module = AuditronModule(
        dict(locations=dict(type="list", elements="dict", default=[], options=location_suboptions()),
             prefix=dict(type="str", required=True), state=dict(type="str", choices=["absent"], default="absent")),
        supports_check_mode=True, required_libs=[("boto3", HAS_BOTO3, BOTO3_IMPORT_ERROR)])
    module.run(empty_prefix, module.params, module.check_mode)


if __name__ == "__main__":
    main()
