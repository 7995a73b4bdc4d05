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

from ansible_collections.auditron.dr.plugins.module_utils import storage
from ansible_collections.auditron.dr.plugins.module_utils.base import AuditronModule, location_suboptions


def main():
    module = AuditronModule(
        dict(locations=dict(type="list", elements="dict", default=[], options=location_suboptions()),
             prefix=dict(type="str", required=True), state=dict(type="str", choices=["absent"], default="absent")),
        supports_check_mode=True)
    module.run(storage.empty_prefix, module.params["locations"], module.params["prefix"], check_mode=module.check_mode)


if __name__ == "__main__":
    main()
