#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pgbackrest_verify
short_description: pgbackrest verify of each repository, one check row per repository
version_added: 0.2.0
author:
  - AUDITRON SRE (@auditron)
description:
  - Runs C(pgbackrest verify) on each repository at once (every WAL segment and backup file read back and checked)
    and returns one C(pgbackrest_verify_repo<N>) check row per repository - C(name), C(result) (V(ok) or
    V(failed)), C(detail), C(backups) (the sets found bad) - for the DR report and M(auditron.dr.dr_metrics).
  - The module never fails because a repository failed its verify - it returns the failed rows. It fails only when
    it cannot run (bad options, no pgBackRest configuration).
  - Run it as the PostgreSQL OS user (become).
extends_documentation_fragment:
  - auditron.dr.pgbackrest.stanza
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Says which repositories it would verify and runs nothing (a verify reads every file).
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  process_max:
    description: C(--process-max) for each verify; the configuration's when omitted.
    type: int
  timeout:
    description: Seconds each repository's verify may take.
    type: int
    default: 7200
requirements:
  - pgbackrest
seealso:
  - module: auditron.dr.backup_verify
  - name: pgBackRest verify
    description: The command this module runs.
    link: https://pgbackrest.org/command.html#command-verify
"""

EXAMPLES = r"""
- name: pgbackrest verify of every repository
  auditron.dr.pgbackrest_verify:
    config: /etc/pgbackrest/pgbackrest.conf
  become: true
  become_user: postgres
  register: repositories
"""

RETURN = r"""
checks:
  description: One check row per repository - C(name), C(result) (V(ok) or V(failed)), C(detail), C(backups) (the
    sets found bad), C(kind) (V(pgbackrest)).
  returned: always
  type: list
  elements: dict
  sample:
    - {name: pgbackrest_verify_repo1, result: ok, backups: [], kind: pgbackrest,
       detail: "repo1: 1591 WAL segments and 2 backup sets (1286 files) read back and valid in 41.2 s"}
repos:
  description: Per repository, the command, whether it passed, and pgBackRest's counts.
  returned: always
  type: list
  elements: dict
msg:
  description: One line - how many repositories passed, naming each failed one.
  returned: always
  type: str
dr_report:
  description: C(checks) for the dr_timeline report.
  returned: always
  type: dict
"""

from ansible_collections.auditron.dr.plugins.module_utils import repoverify
from ansible_collections.auditron.dr.plugins.module_utils.base import AuditronModule, pgbackrest_stanza_spec


def argument_spec():
    return dict(
        pgbackrest_stanza_spec(),
        process_max=dict(type="int"),
        timeout=dict(type="int", default=7200),
    )


def run(module):
    params = module.params
    return repoverify.pgbackrest_verify(params["config"], params["stanza"], repos=params["repos"],
                                        timeout=params["timeout"], process_max=params["process_max"],
                                        check_mode=module.check_mode)


def main():
    module = AuditronModule(argument_spec(), supports_check_mode=True)
    module.run(run, module)


if __name__ == "__main__":
    main()
