#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: backup_catalog
short_description: List the logical (and pgBackRest) backups in every location, and which are valid
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - The plan's "Identify Latest Valid Backup", with a definition of valid. Reads the manifests that
    M(auditron.dr.pg_backup) writes in every location and returns every logical backup with its status in each
    location - V(present) (the artifact with the manifest's size), V(missing), V(different) (size or checksum
    differs from the manifest, or this location's manifest disagrees with the others), V(incomplete) (an
    artifact without a manifest anywhere - a backup that crashed; never valid) or V(unknown) (the location could
    not be listed).
  - A backup is valid when its manifest is complete, at least one location holds the artifact with the
    manifest's size (with O(deep), a copy whose sha256 and every GCM tag verify), and its last verification
    passed when a verification record exists (the weekly backup test writes them).
  - Answers the latest valid backup, the latest valid one taken before a time, and the age of the latest valid
    one (the plan's "no backup in 25 hours" alert).
  - With O(pgbackrest), the physical backups of the pgBackRest repositories are included, as the pgBackRest
    engine summarises them.
extends_documentation_fragment:
  - auditron.dr.location
  - auditron.dr.encryption
  - auditron.dr.pgbackrest.physical
  - auditron.dr.read_only
  - ansible.builtin.action_common_attributes
options:
  series:
    description: Only the backups of this series (the database name, by default). All series when omitted.
    type: str
  latest_before:
    description: Also answer the latest valid backup whose snapshot was taken at or before this time (ISO 8601;
      a time without zone is UTC).
    type: str
  backup_id:
    description:
      - Also check this backup, as a restore names it, before anything is done with it. The module fails, in one
        line naming the id, when the id is not a logical backup id (C(<series>_YYYYMMDD_HHMMSS)), when no location
        holds it, or when it is not valid (with the reason). Returned as RV(backup).
      - A playbook passes the id a user typed here in its plan step, so that a typo is refused before anything
        is stopped or changed.
    type: str
  deep:
    description:
      - Download every present copy and verify it - sha256 over the stored bytes and, when O(encryption) is given,
        every AES-256-GCM tag. A copy that fails becomes V(different). Reads every backup once per location.
    type: bool
    default: false
  pgbackrest:
    description: Also list the physical backups of this pgBackRest stanza. Run the task as the PostgreSQL OS user
      (become), as pgBackRest requires.
    type: dict
seealso:
  - module: auditron.dr.pg_backup
  - module: auditron.dr.pg_restore
  - module: auditron.dr.backup_prune
requirements:
  - boto3 (for S3 locations)
"""

EXAMPLES = r"""
- name: What backups are there, and which is the latest valid?
  auditron.dr.backup_catalog:
    series: auditron
    locations: "{{ auditron_dr_backup_locations }}"
    latest_before: "2026-11-24T09:14:00Z"
  register: catalog

- name: Alert when the latest valid backup is older than 25 hours
  ansible.builtin.assert:
    that: catalog.age_of_latest_valid_seconds is not none and catalog.age_of_latest_valid_seconds < 90000
    fail_msg: "no valid logical backup in 25 hours (latest: {{ catalog.latest_valid_id }})"

- name: Refuse a backup id that is malformed, absent or not valid, before anything is stopped
  auditron.dr.backup_catalog:
    locations: "{{ auditron_dr_backup_locations }}"
    backup_id: "{{ restore_backup_id }}"
  register: chosen

- name: Download and verify every copy
  auditron.dr.backup_catalog:
    locations: "{{ auditron_dr_backup_locations }}"
    encryption: "{{ auditron_dr_backup_encryption }}"
    deep: true
"""

RETURN = r"""
backups:
  description: Every logical backup, newest first.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Backup id.
      type: str
    time:
      description: The backup's point in time (snapshot of the dump).
      type: str
    valid:
      description: Whether the backup is valid (see the description).
      type: bool
    why_invalid:
      description: Why not, in one line; null when valid.
      type: str
    size:
      description: Artifact size per the manifest.
      type: int
    sha256:
      description: Artifact sha256 per the manifest.
      type: str
    locations:
      description: Per location - status (present, missing, different, incomplete, unknown), detail, size found,
        and whether that location holds a manifest.
      type: dict
    last_verification:
      description: The last verification record, or null.
      type: dict
latest_valid:
  description: The latest valid backup (an element of RV(backups)), or null.
  returned: always
  type: dict
latest_valid_id:
  description: Its id, or null.
  returned: always
  type: str
age_of_latest_valid_seconds:
  description: Seconds since the latest valid backup's point in time; null when there is none.
  returned: always
  type: float
backup:
  description: The backup named by O(backup_id) (an element of RV(backups)); the module fails when it is not valid.
  returned: when O(backup_id) is given
  type: dict
latest_before:
  description: The latest valid backup taken at or before O(latest_before), or null.
  returned: when O(latest_before) is given
  type: dict
latest_before_id:
  description: Its id, or null.
  returned: when O(latest_before) is given
  type: str
locations:
  description: Per location - whether it could be listed and how many catalog objects it holds.
  returned: always
  type: list
  elements: dict
unreachable_locations:
  description: Locations that could not be listed, with the reason.
  returned: always
  type: dict
physical:
  description: pgBackRest's summary of the repositories (per repository, its backups); with O(pgbackrest) only.
  returned: when O(pgbackrest) is given
  type: dict
table:
  description: The backups as a plain-text table, one line per element.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.auditron.dr.plugins.module_utils import catalog as catalog_mod
from ansible_collections.auditron.dr.plugins.module_utils.base import (
    AuditronModule, encryption_suboptions, location_suboptions, pgbackrest_physical_suboptions)


def argument_spec():
    return dict(
        locations=dict(type="list", elements="dict", default=[], options=location_suboptions()),
        encryption=dict(type="dict", options=encryption_suboptions()),
        series=dict(type="str"),
        latest_before=dict(type="str"),
        backup_id=dict(type="str"),
        deep=dict(type="bool", default=False),
        pgbackrest=dict(type="dict", options=pgbackrest_physical_suboptions()),
    )


def main():
    module = AuditronModule(argument_spec(), supports_check_mode=True)
    params = module.params
    module.run(catalog_mod.list_backups, params["locations"], series=params["series"],
               latest_before=params["latest_before"], backup_id=params["backup_id"], deep=params["deep"],
               encryption=params["encryption"], pgbackrest=params["pgbackrest"])


if __name__ == "__main__":
    main()
