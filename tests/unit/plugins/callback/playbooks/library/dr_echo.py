# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test fixture: a module that returns its `data` argument as a top-level `dr_report`.

It stands for any module of the collection that reports into the DR timeline, so the callback
tests exercise that path as well as `set_fact: dr_report`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: dr_echo
short_description: Return the given data as dr_report (test fixture)
description: Return O(data) unchanged under the C(dr_report) key.
options:
  data:
    description: What to report.
    type: dict
    required: true
author: AUDITRON SRE
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec={"data": {"type": "dict", "required": True}}, supports_check_mode=True)
    module.exit_json(changed=False, dr_report=module.params["data"])


if __name__ == "__main__":
    main()
