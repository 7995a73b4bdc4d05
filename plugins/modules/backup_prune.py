#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: backup_prune
short_description: Apply the plan's GFS retention to logical backups in every location, and to pgBackRest fulls
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - Keeps, per period, the newest valid backup - daily for O(retention.daily_days), weekly for
    O(retention.weekly_days), monthly for O(retention.monthly_days) (the plan - 30, 90 and 365 days) - and removes
    the rest, giving the reason for every decision.
  - B(Logical backups) (O(locations)) - decides on the union of what every location holds, and removes a backup
    everywhere - manifests first, then artifacts and verification records, so that a backup pruned half-way is
    never listed as valid. The newest valid backup is never removed. Nothing at all is removed when any location
    cannot be listed completely (a backup there might be the newest valid one); the task fails naming it.
  - B(Physical backups) (O(pgbackrest)) - pgBackRest keeps a count or an age of full backups, not GFS tiers;
    the same policy is applied per repository to its full backups, and each full to go is removed with
    C(pgbackrest expire --set=<label> --repo=<n>), which also removes its differentials and incrementals.
    Nothing is expired when a repository cannot be read.
extends_documentation_fragment:
  - auditron.dr.location
  - auditron.dr.pgbackrest.physical
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: In check mode nothing is removed; RV(logical.plan) and RV(physical.plan) list what would go, and
      RV(logical.reasons) why every backup is kept or removed.
  diff_mode:
    support: none
    details: RV(logical.plan) and RV(physical.plan) list the removals.
  platform:
    platforms: posix
options:
  series:
    description: Series of logical backups to prune (the database name, by default). Each series is judged on its
      own.
    type: str
    default: auditron
  retention:
    description: The policy; any option left out takes the plan's value. V(0) turns a tier off.
    type: dict
    default: {}
    suboptions:
      hourly_hours:
        description: Keep the newest valid backup of each hour for this many hours (plan - 0, off).
        type: int
      daily_days:
        description: Keep the newest valid backup of each day (UTC) for this many days (plan - 30).
        type: int
      weekly_days:
        description: Keep the newest valid backup of each ISO week for this many days (plan - 90).
        type: int
      monthly_days:
        description: Keep the newest valid backup of each month for this many days (plan - 365).
        type: int
      yearly_days:
        description: Keep the newest valid backup of each year for this many days (plan - 0, off).
        type: int
      keep_last:
        description: Always keep this many newest valid backups (plan - 1).
        type: int
  now:
    description: Judge as of this time (ISO 8601) instead of the current time; for reports and tests.
    type: str
  pgbackrest:
    description: Also apply the policy to the full backups of this pgBackRest stanza. Run the task as the
      PostgreSQL OS user (become), as pgBackRest requires.
    type: dict
notes:
  - Give O(locations), O(pgbackrest) or both.
seealso:
  - module: auditron.dr.backup_catalog
  - module: auditron.dr.pg_backup
"""

EXAMPLES = r"""
- name: What would the plan's retention remove?
  auditron.dr.backup_prune:
    series: auditron
    locations: "{{ auditron_dr_logical_locations }}"
  check_mode: true
  register: would

- name: Apply it, keeping two weeks of dailies only
  auditron.dr.backup_prune:
    series: auditron
    locations: "{{ auditron_dr_logical_locations }}"
    retention:
      daily_days: 14

- name: GFS over pgBackRest's full backups
  auditron.dr.backup_prune:
    pgbackrest:
      config: /etc/pgbackrest/pgbackrest.conf
      stanza: auditron
  become: true
  become_user: postgres
"""

RETURN = r"""
msg:
  description: One line per kind of backup pruned.
  returned: always
  type: str
logical:
  description: The logical prune.
  returned: when O(locations) is given
  type: dict
  contains:
    keep:
      description: Ids of the backups kept.
      type: list
      elements: str
    delete:
      description: Ids of the backups retention removes (or would remove, in check mode).
      type: list
      elements: str
    reasons:
      description: For every backup, why it is kept or removed.
      type: dict
    plan:
      description: Per backup to remove - id, time, valid, reason, the locations holding it, bytes.
      type: list
      elements: dict
    deleted:
      description: Ids removed (empty in check mode).
      type: list
      elements: str
    failed:
      description: Backups that could not be removed completely, with the reason.
      type: dict
    newest_valid:
      description: Id of the newest valid backup, which is always kept.
      type: str
    policy:
      description: The policy applied, in the O(retention) option's shape.
      type: dict
  sample:
    keep: [auditron_20261124_020000]
    delete: [auditron_20261001_020000]
    reasons: {auditron_20261001_020000: "daily 2026-10-01 outside 30 d; not the newest of weekly 2026-W40 ..."}
physical:
  description: The pgBackRest prune.
  returned: when O(pgbackrest) is given
  type: dict
  contains:
    plan:
      description: Every full backup set to expire - repo (number) and label.
      type: list
      elements: dict
    expired:
      description: The sets expired (empty in check mode).
      type: list
      elements: dict
    failed:
      description: Sets whose expire failed, with pgBackRest's message.
      type: dict
    policy:
      description: The policy applied.
      type: dict
"""

from ansible_collections.auditron.dr.plugins.module_utils import prune as prune_mod
from ansible_collections.auditron.dr.plugins.module_utils.base import (
    AuditronModule, location_suboptions, pgbackrest_physical_suboptions)


def argument_spec():
    return dict(
        locations=dict(type="list", elements="dict", default=[], options=location_suboptions()),
        series=dict(type="str", default="auditron"),
        retention=dict(type="dict", default={}, options=dict(
            hourly_hours=dict(type="int"), daily_days=dict(type="int"), weekly_days=dict(type="int"),
            monthly_days=dict(type="int"), yearly_days=dict(type="int"), keep_last=dict(type="int"))),
        now=dict(type="str"),
        pgbackrest=dict(type="dict", options=pgbackrest_physical_suboptions()),
    )


def main():
    module = AuditronModule(argument_spec(), supports_check_mode=True)
    # The options are prune_backups' arguments, name for name.
    module.run(prune_mod.prune_backups, check_mode=module.check_mode, **module.params)


if __name__ == "__main__":
    main()
