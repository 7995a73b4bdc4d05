#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pgbackrest_backup
short_description: Take a pgBackRest backup in each repository
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - Runs C(pgbackrest backup) once per repository, one after the other (pgBackRest backs up to one repository
    at a time), and returns per repository the backup's label, the type actually made, its duration and sizes.
  - A repository that fails does not stop the others; the module then fails at the end, naming each failed
    repository with pgBackRest's reason, and still returns the backups that were made.
  - An C(incr) or C(diff) backup without a prior full backup in a repository is made as a full one by pgBackRest;
    RV(repos[].type) says what was made.
  - Runs pgBackRest as the user running the module; use C(become_user) with the PostgreSQL OS user.
extends_documentation_fragment:
  - auditron.dr.pgbackrest
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Returns the commands that would run, per repository; nothing runs.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  type:
    description: Backup type.
    type: str
    choices: [full, diff, incr]
    default: incr
  repos:
    description: Repository numbers to back up to, in this order; every configured repository when empty.
    type: list
    elements: int
    default: []
  process_max:
    description: Parallel processes for compression and transfer; the configuration's value when omitted.
    type: int
  start_fast:
    description: Ask PostgreSQL for an immediate checkpoint rather than waiting for the next one.
    type: bool
    default: true
  extra_options:
    description: More pgBackRest options, each as C(--name=value), for example C(--annotation=reason=before-upgrade).
    type: list
    elements: str
    default: []
requirements:
  - pgBackRest 2.45 or later on the host
seealso:
  - module: auditron.dr.pgbackrest_info
  - module: auditron.dr.pgbackrest_restore
"""

EXAMPLES = r"""
- name: Hourly incremental backup to every repository
  auditron.dr.pgbackrest_backup:
    config: /etc/pgbackrest/pgbackrest.conf
    type: incr
  become: true
  become_user: postgres
  register: backup

- name: Full backup to the S3 repositories only
  auditron.dr.pgbackrest_backup:
    type: full
    repos: [2, 3]
  become: true
  become_user: postgres
"""

RETURN = r"""
type:
  description: The type asked for.
  returned: always
  type: str
  sample: incr
repos:
  description: One entry per repository, in the order they were backed up.
  returned: always
  type: list
  elements: dict
  contains:
    repo:
      description: Repository number.
      type: int
    name:
      description: V(repo1), V(repo2)...
      type: str
    ok:
      description: Whether the backup was made.
      type: bool
    label:
      description: Label of the backup made.
      type: str
      sample: 20261124-020001F
    type:
      description: Type of the backup made (an incr without a prior full becomes a full).
      type: str
    seconds:
      description: Duration of the backup command.
      type: float
    size:
      description: Size of the database at backup time, in bytes.
      type: int
    delta:
      description: Bytes of the database copied by this backup.
      type: int
    repo_size:
      description: Bytes stored in the repository for this backup (compressed, encrypted).
      type: int
    error:
      description: pgBackRest's reason, when the backup failed.
      type: str
    command:
      description: The command run (it holds no secret; those are in the configuration file).
      type: str
labels:
  description: Label of the backup made per repository name.
  returned: success
  type: dict
  sample: {repo1: 20261124-020001F, repo2: 20261124-020014F}
failed_repos:
  description: Repositories where the backup failed.
  returned: when not in check mode
  type: list
  elements: str
"""

from ansible_collections.auditron.dr.plugins.module_utils import pgbackrest
from ansible_collections.auditron.dr.plugins.module_utils.base import AuditronModule


def argument_spec():
    return dict(
        config=dict(type="path", default="/etc/pgbackrest/pgbackrest.conf"),
        stanza=dict(type="str", default=pgbackrest.DEFAULT_STANZA),
        type=dict(type="str", choices=list(pgbackrest.BACKUP_TYPES), default="incr"),
        repos=dict(type="list", elements="int", default=[]),
        process_max=dict(type="int"),
        start_fast=dict(type="bool", default=True),
        extra_options=dict(type="list", elements="str", default=[]),
        probe_timeout=dict(type="float", default=5),
        binary=dict(type="path", default=pgbackrest.DEFAULT_BINARY),
    )


def main():
    module = AuditronModule(argument_spec(), supports_check_mode=True)
    params = module.params
    module.run(pgbackrest.backup, params["config"], stanza=params["stanza"], backup_type=params["type"],
               repos=params["repos"], process_max=params["process_max"], start_fast=params["start_fast"],
               extra_options=params["extra_options"], binary=params["binary"], probe_timeout=params["probe_timeout"],
               check_mode=module.check_mode)


if __name__ == "__main__":
    main()
