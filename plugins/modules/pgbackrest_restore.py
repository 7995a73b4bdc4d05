#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pgbackrest_restore
short_description: Restore a PostgreSQL cluster from pgBackRest, to a point in time, with repository fallback
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - Restores a backup into O(pg_path) and configures recovery to O(target) - the end of the WAL archive
    (V(latest)), a point in time (V(time)) or the end of the backup (V(immediate)) - or as a warm standby.
  - Repositories are tried in O(repos) order. Before one is used it must answer (a quick probe, then
    C(pgbackrest info) with a short timeout) and hold a backup that can reach the target; otherwise the next one is
    tried, and RV(fallbacks) says why each was passed over. Recovery then reads WAL from the chosen repository
    only (pgBackRest writes its number into C(restore_command)), never from one found dead.
  - A V(time) target before the end of the oldest backup, after the newest archived WAL, or in the future is
    refused, naming the times that can be reached.
  - Nothing is written until every check passed. O(pg_path) must be absent or empty; a non-empty one is refused
    unless O(delta=true) and it holds a stopped cluster of the same system id as the backup, or O(force=true).
    A directory with a running server is always refused.
  - The restored cluster is not started; use M(auditron.dr.pg_instance) (or the service manager) for that.
  - Runs pgBackRest as the user running the module; use C(become_user) with the PostgreSQL OS user.
extends_documentation_fragment:
  - auditron.dr.pgbackrest
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Probes the repositories and returns which repository and backup would be used and the command; nothing
      is written.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  pg_path:
    description: Data directory to restore into. Created (mode 0700) when absent.
    type: path
    required: true
    aliases: [data_dir]
  target:
    description: Where recovery stops.
    type: str
    choices: [latest, time, immediate]
    default: latest
  target_time:
    description: With O(target=time), the time to recover to (ISO 8601; naive times are UTC). Transactions that
      committed up to this time are kept.
    type: str
  target_timeline:
    description: Recovery target timeline (V(current), V(latest) or a number); PostgreSQL's default (latest) when
      omitted.
    type: str
  target_action:
    description: What the server does on reaching a V(time) or V(immediate) target.
    type: str
    choices: [promote, pause, shutdown]
    default: promote
  standby:
    description: Restore as a warm standby that keeps replaying the archive (pgBackRest C(--type=standby)).
      Needs O(target=latest).
    type: bool
    default: false
  repos:
    description: Repository numbers in order of preference; by default the S3 primary region (2), the second region
      (3), then local disk (1), then any other configured.
    type: list
    elements: int
    default: []
  archive_mode:
    description:
      - V(off) keeps the restored cluster from archiving WAL; use it for scratch and verification restores, so that
        a restored copy never pushes WAL into the production stanza.
      - V(preserve) keeps the backed-up setting; a failover uses it, so that the new primary archives.
    type: str
    choices: [preserve, "off"]
    default: "off"
  recovery_options:
    description: More recovery settings written by pgBackRest (C(--recovery-option)), as name and value.
    type: dict
    default: {}
  delta:
    description: Restore over a stopped cluster of the same system, rewriting only the files that differ.
    type: bool
    default: false
  force:
    description: Restore over a non-empty directory whatever it holds. Its contents are replaced.
    type: bool
    default: false
  set_aside_suffix:
    description:
      - Move what O(pg_path) holds aside (to O(pg_path) followed by this suffix, with C(-2), C(-3) ... when that name
        is taken) once every check passed, and restore into an empty directory. A pgBackRest restore still running
        into O(pg_path) (left by a run killed half-way) is stopped first.
    type: str
  process_max:
    description: Parallel processes for the restore; the configuration's value when omitted.
    type: int
  io_timeout:
    description: pgBackRest C(io-timeout) for reading each repository's info before choosing it, in seconds.
    type: int
    default: 5
  bin_dir:
    description: Directory of PostgreSQL's programs (for C(pg_controldata)); found on PATH when omitted.
    type: path
requirements:
  - pgBackRest 2.45 or later on the host
seealso:
  - module: auditron.dr.pg_instance
  - module: auditron.dr.pgbackrest_info
"""

EXAMPLES = r"""
- name: Restore to just before the bad deletion, into a scratch directory, never archiving
  auditron.dr.pgbackrest_restore:
    config: /etc/pgbackrest/pgbackrest.conf
    pg_path: /var/lib/postgresql/scratch/recover-20261124
    target: time
    target_time: "2026-11-24T09:41:00Z"
    archive_mode: "off"
  become: true
  become_user: postgres
  register: restored

- name: Failover - restore the newest state at the DR site, from the second region first
  auditron.dr.pgbackrest_restore:
    pg_path: /var/lib/postgresql/15/main
    target: latest
    repos: [3, 2, 1]
    archive_mode: preserve
  become: true
  become_user: postgres
"""

RETURN = r"""
repo:
  description: Number of the repository used.
  returned: always
  type: int
  sample: 2
repo_name:
  description: Its name.
  returned: always
  type: str
  sample: repo2
location:
  description: Its type and address.
  returned: always
  type: str
fallbacks:
  description: Repositories passed over, in order, each with why.
  returned: always
  type: list
  elements: dict
  sample: [{repo: 2, name: repo2, reason: "unreachable: endpoint localhost:1 does not answer (connection refused)"}]
backup:
  description: The backup set restored (label, type, start, stop, size, repo_size, prior, system_id, wal_start,
    wal_stop).
  returned: always
  type: dict
target:
  description: The recovery target (type, time, action, timeline).
  returned: always
  type: dict
unreachable_repos:
  description: Configured repositories that did not answer.
  returned: always
  type: list
  elements: str
recovery_settings:
  description: The recovery settings pgBackRest wrote into C(postgresql.auto.conf) (restore_command,
    recovery_target_time, recovery_target_action, archive_mode...) and whether recovery.signal or standby.signal
    exists.
  returned: when not in check mode
  type: dict
command:
  description: The pgBackRest command (no secret in it).
  returned: always
  type: str
set_aside:
  description: Where what O(pg_path) held was moved (O(set_aside_suffix)); null when it was empty.
  returned: always
  type: str
stopped_leftover_restores:
  description: pids of pgBackRest restores into O(pg_path) that a killed run left running, stopped first.
  returned: always
  type: list
  elements: int
duration_seconds:
  description: Seconds the restore took.
  returned: when not in check mode
  type: float
"""

from ansible_collections.auditron.dr.plugins.module_utils import pgbackrest, pgbackrest_restore
from ansible_collections.auditron.dr.plugins.module_utils.base import AuditronModule


def argument_spec():
    return dict(
        config=dict(type="path", default="/etc/pgbackrest/pgbackrest.conf"),
        stanza=dict(type="str", default=pgbackrest.DEFAULT_STANZA),
        pg_path=dict(type="path", required=True, aliases=["data_dir"]),
        target=dict(type="str", choices=list(pgbackrest_restore.RESTORE_TARGETS), default="latest"),
        target_time=dict(type="str"),
        target_timeline=dict(type="str"),
        target_action=dict(type="str", choices=list(pgbackrest_restore.TARGET_ACTIONS), default="promote"),
        standby=dict(type="bool", default=False),
        repos=dict(type="list", elements="int", default=[]),
        archive_mode=dict(type="str", choices=list(pgbackrest_restore.ARCHIVE_MODES), default="off"),
        recovery_options=dict(type="dict", default={}),
        delta=dict(type="bool", default=False),
        force=dict(type="bool", default=False),
        set_aside_suffix=dict(type="str"),
        process_max=dict(type="int"),
        probe_timeout=dict(type="float", default=5),
        io_timeout=dict(type="int", default=5),
        bin_dir=dict(type="path"),
        binary=dict(type="path", default=pgbackrest.DEFAULT_BINARY),
    )


def main():
    module = AuditronModule(argument_spec(), supports_check_mode=True,
                            required_if=[("target", "time", ["target_time"])])
    params = module.params
    module.run(pgbackrest_restore.restore, params["config"], params["pg_path"], stanza=params["stanza"],
               target=params["target"], target_time=params["target_time"], repos=params["repos"],
               archive_mode=params["archive_mode"], target_action=params["target_action"], standby=params["standby"],
               recovery_options=params["recovery_options"], delta=params["delta"], force=params["force"],
               target_timeline=params["target_timeline"], process_max=params["process_max"],
               binary=params["binary"], pg_bin_dir=params["bin_dir"], probe_timeout=params["probe_timeout"],
               io_timeout=params["io_timeout"], set_aside_suffix=params["set_aside_suffix"],
               check_mode=module.check_mode)


if __name__ == "__main__":
    main()
