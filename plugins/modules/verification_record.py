#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: verification_record
short_description: Record the weekly backup test's verdict on each backup it restored
version_added: 0.2.0
author:
  - AUDITRON SRE (@auditron)
description:
  - Writes the verification record of the logical backup O(logical_backup) next to its manifest in every location
    in O(locations), so that M(auditron.dr.backup_catalog)'s C(valid) reflects it, and of the pgBackRest set
    O(physical_backup) (C(verifications/pgbackrest/<stanza>/<label>.json)).
  - A backup passes when it was restored and every check row naming it (in C(backups)) passed.
  - A location that cannot be written is named in a warning and does not stop the others.
extends_documentation_fragment:
  - auditron.dr.location
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Says what it would record and writes nothing.
  diff_mode:
    support: none
    details: Verification records are new entries in a history, not a change to show.
  platform:
    platforms: posix
options:
  checks:
    description: Every check row of the run (C(name), C(result), C(detail), C(backups)).
    type: list
    elements: dict
    default: []
  logical_backup:
    description: The logical backup id restored by the test.
    type: str
  physical_backup:
    description: The pgBackRest backup set restored by the test.
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
    description: Who verified, in the record.
    type: str
    default: weekly backup test (verify_backups.yml)
notes:
  - O(locations) are the logical backup locations, each with its C(prefix) (normally C(postgres/logical)); the
    records of pgBackRest sets are written there too.
requirements:
  - boto3 (for S3 locations)
seealso:
  - module: auditron.dr.backup_verify
  - module: auditron.dr.backup_catalog
"""

EXAMPLES = r"""
- name: Record the verification of the backups restored
  auditron.dr.verification_record:
    checks: "{{ verify_checks }}"
    logical_backup: auditron_20261124_020000
    physical_backup:
      label: 20261124-011754F
      stanza: auditron
      repo: repo2
    locations: "{{ logical_locations }}"
"""

RETURN = r"""
records:
  description: Per backup, the result recorded and the locations written.
  returned: always
  type: list
  elements: dict
msg:
  description: One line per backup - its result and where it was recorded.
  returned: always
  type: str
"""

from ansible_collections.auditron.dr.plugins.module_utils import verification
from ansible_collections.auditron.dr.plugins.module_utils.base import AuditronModule, location_suboptions


def argument_spec():
    return dict(
        locations=dict(type="list", elements="dict", default=[], options=location_suboptions()),
        checks=dict(type="list", elements="dict", default=[]),
        logical_backup=dict(type="str"),
        physical_backup=dict(type="dict", options=dict(
            label=dict(type="str", required=True),
            stanza=dict(type="str", default="auditron"),
            repo=dict(type="str"),
        )),
        by=dict(type="str", default="weekly backup test (verify_backups.yml)"),
    )


def main():
    module = AuditronModule(argument_spec(), supports_check_mode=True)
    params = module.params
    module.run(verification.record_run, params["locations"], params["checks"], logical_backup=params["logical_backup"],
               physical_backup=params["physical_backup"], by=params["by"], check_mode=module.check_mode)


if __name__ == "__main__":
    main()
