#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: run_journal
short_description: Read, record and remove the journal of a recovery run, checked against the DR database
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - The journal of a recovery run (a failover) says which steps an earlier run did and what it saw (the DR database's
    role, system identifier, timeline and WAL position before and after each step). It is kept in O(path) on the
    DR host and, best effort, under C(runs/journal/<kind>.json) in each of O(locations), so that a controller on
    another host finds it.
  - V(read) finds the newest copy, decides whether this run continues it or starts a new one (an unreadable journal,
    one of another incident, or one whose end no longer describes the DR database is never continued; the reason
    is returned in one sentence) and, with the DR database's connection, says what the database step must do
    (RV(database_action)), from the database as it is now, never from the journal alone.
  - V(write) records one step's outcome and evidence and saves the journal (the local copy must be written; a
    location that fails is a warning). V(remove) removes every copy (the recovery is over).
extends_documentation_fragment:
  - auditron.dr.postgres
  - auditron.dr.location
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: V(read) reads; V(write) returns the journal it would save and saves nothing; V(remove) removes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  action:
    description: What to do.
    type: str
    choices: [read, write, remove]
    required: true
  kind:
    description: Which recovery the journal is of.
    type: str
    choices: [failover]
    default: failover
  path:
    description: The local copy (on the DR host), the one that decides when it can be read.
    type: path
    required: true
  check_database:
    description:
      - Read the DR database (the connection options) to decide (V(read)) or as evidence (O(world_as)). Without it,
        V(read) decides as if the database were down.
    type: bool
    default: true
  run_id:
    description: The id a new journal gets (V(read)); by default the time in UTC, as C(20261207T235900Z).
    type: str
  incident_start:
    description: When the site was lost; a journal of another incident is not continued. Empty means unknown.
    type: str
    default: ''
  fresh:
    description: Start a new journal whatever the earlier one says.
    type: bool
    default: false
  requested_mode:
    description: The failover mode asked for (V(cold) restores even a standby).
    type: str
    choices: [auto, cold, warm]
    default: auto
  stanza_system_ids:
    description: The database system identifiers the backups are of; a DR primary of another system is restored.
    type: list
    elements: str
    default: []
  replace_primary:
    description: Restore even a DR primary of this system that no journal accounts for (its writes are set aside).
    type: bool
    default: false
  journal:
    description: The journal as V(read) returned it (V(write)).
    type: dict
  step:
    description: The step to record (V(write)).
    type: str
  outcome:
    description: The step's outcome (V(write)), for example V(started) or V(done).
    type: str
  evidence:
    description: What the step saw, merged into its entry (V(write)).
    type: dict
  update:
    description: Top-level keys merged into the journal (V(write)).
    type: dict
  world_as:
    description: Record the DR database as it is now as the step's evidence under this name (V(write)).
    type: str
"""

EXAMPLES = r"""
- name: Read the journal and what DR's database is now
  auditron.dr.run_journal:
    action: read
    path: /var/lib/auditron-dr/failover.json
    run_id: "{{ now(utc=true).strftime('%Y%m%dT%H%M%SZ') }}"
    incident_start: "{{ incident_start | default('') }}"
    login_host: "{{ auditron_dr_postgres.host }}"
    login_port: "{{ auditron_dr_postgres.port }}"
    login_user: "{{ auditron_dr_postgres.user }}"
    login_password: "{{ auditron_dr_postgres.password }}"
  register: journal

- name: Record that the database step started, with what DR was before
  auditron.dr.run_journal:
    action: write
    path: /var/lib/auditron-dr/failover.json
    journal: "{{ journal.journal }}"
    step: database
    outcome: started
    evidence: {action: "{{ journal.database_action }}"}
    world_as: before
    login_host: "{{ auditron_dr_postgres.host }}"
    login_port: "{{ auditron_dr_postgres.port }}"
"""

RETURN = r"""
journal:
  description: The journal this run goes on with (V(read)) or saved (V(write)).
  returned: when O(action) is read or write
  type: dict
decision:
  description: V(continue) (the earlier journal) or V(new).
  returned: when O(action) is read
  type: str
reason:
  description: Why, in one sentence.
  returned: when O(action) is read
  type: str
world:
  description: The DR database as it is now (role, system_id, timeline, lsn, streaming, error).
  returned: when O(action) is read and O(check_database) is true
  type: dict
database_action:
  description: What the database step must do, V(promote), V(wait), V(restore), V(keep) or V(refuse).
  returned: when O(action) is read and O(check_database) is true
  type: str
database_reason:
  description: Why (for V(refuse), the message to stop with).
  returned: when O(action) is read and O(check_database) is true
  type: str
copies:
  description: Where a copy was found, with its sequence number.
  returned: when O(action) is read
  type: dict
unreadable:
  description: Copies that could not be read, each with the reason.
  returned: when O(action) is read
  type: list
  elements: str
removed:
  description: The copies removed.
  returned: when O(action) is remove
  type: list
  elements: str
"""

from ansible_collections.auditron.dr.plugins.module_utils import journal, storage
from ansible_collections.auditron.dr.plugins.module_utils.base import AuditronModule, location_suboptions, \
    postgres_argument_spec
from ansible_collections.auditron.dr.plugins.module_utils.pg import HAS_PSYCOPG2, PSYCOPG2_IMPORT_ERROR


def argument_spec():
    spec = postgres_argument_spec()
    spec.update(
        action=dict(type="str", choices=["read", "write", "remove"], required=True),
        kind=dict(type="str", choices=list(journal.KINDS), default="failover"),
        path=dict(type="path", required=True),
        locations=dict(type="list", elements="dict", default=[], options=location_suboptions()),
        check_database=dict(type="bool", default=True),
        run_id=dict(type="str"),
        incident_start=dict(type="str", default=""),
        fresh=dict(type="bool", default=False),
        requested_mode=dict(type="str", choices=["auto", "cold", "warm"], default="auto"),
        stanza_system_ids=dict(type="list", elements="str", default=[]),
        replace_primary=dict(type="bool", default=False),
        journal=dict(type="dict"),
        step=dict(type="str"),
        outcome=dict(type="str"),
        evidence=dict(type="dict"),
        update=dict(type="dict"),
        world_as=dict(type="str"),
    )
    return spec


def run(params, check_mode):
    return journal.run(
        params["action"], params["kind"], params["path"], locations=storage.locations_from_params(params["locations"]),
        postgres=params if params["check_database"] else None, run_id=params["run_id"],
        incident_start=params["incident_start"], fresh=params["fresh"], requested_mode=params["requested_mode"],
        stanza_system_ids=params["stanza_system_ids"], replace_primary=params["replace_primary"],
        journal=params["journal"], step=params["step"], outcome=params["outcome"], evidence=params["evidence"],
        update=params["update"], world_as=params["world_as"], check_mode=check_mode)


def main():
    module = AuditronModule(argument_spec(), supports_check_mode=True,
                            required_libs=[("psycopg2", HAS_PSYCOPG2, PSYCOPG2_IMPORT_ERROR)],
                            required_if=[("action", "write", ["journal"])])
    module.run(run, module.params, module.check_mode)


if __name__ == "__main__":
    main()
