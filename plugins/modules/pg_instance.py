#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_instance
short_description: Start, stop, configure or remove one PostgreSQL data directory with pg_ctl
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - Controls one PostgreSQL data directory with C(pg_ctl), for hosts where PostgreSQL is not under systemd and for
    scratch clusters made by a restore (M(auditron.dr.pgbackrest_restore)).
  - O(settings) (and O(port), O(socket_dir)) are written into a clearly marked block at the end of
    C(postgresql.auto.conf), which PostgreSQL reads last, so that a restored copy of the primary does not try the
    primary's port, socket or archiving. The block holds exactly what the task gives; omit all three to leave it
    alone. A changed block is applied with a reload, or a restart when a setting needs one.
  - O(wait_for=promoted) waits until recovery has ended (the server left recovery and accepts writes), returning
    progress samples (replayed WAL position and the last replayed commit) and RV(recovery_point), the time of
    the last transaction recovered.
  - O(state=absent) removes the data directory only when it holds the C(auditron-scratch) marker this module wrote
    for O(scratch=true) (with the directory's own path in it); any other directory is refused. The server is
    stopped first.
  - Runs C(pg_ctl) as the user running the module, which must own the data directory (PostgreSQL refuses root);
    use C(become_user) with the PostgreSQL OS user.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Returns the actions that would be taken; nothing is written, started or stopped.
  diff_mode:
    support: full
    details: Returns the managed block of C(postgresql.auto.conf) before and after.
  platform:
    platforms: posix
options:
  pg_path:
    description: The data directory.
    type: path
    required: true
    aliases: [data_dir]
  state:
    description: V(started), V(stopped), V(restarted), or V(absent) (scratch clusters only).
    type: str
    choices: [started, stopped, restarted, absent]
    default: started
  settings:
    description: Server settings for the managed block, for example C(archive_mode), C(listen_addresses),
      C(max_connections). Numbers are written bare, booleans as on/off, text quoted.
    type: dict
  port:
    description: Port for the server; V(auto) picks a free one in O(port_range) and keeps it on later runs (a
      running server keeps its port).
    type: str
  port_range:
    description: Range for O(port=auto), as LOW-HIGH.
    type: str
    default: 55440-55499
  socket_dir:
    description: Directory for the server's Unix socket (C(unix_socket_directories)); created when absent.
    type: path
  scratch:
    description: Mark the data directory as a scratch cluster (the C(auditron-scratch) file), which O(state=absent)
      may later remove.
    type: bool
    default: false
  wait_for:
    description: After starting, wait until the server accepts connections (V(ready)) or has ended recovery
      (V(promoted)). Default V(ready) for O(state=started) and O(state=restarted).
    type: str
    choices: [none, ready, promoted]
  timeout:
    description: Seconds to wait for a start, a stop, or O(wait_for).
    type: int
    default: 300
  stop_mode:
    description: C(pg_ctl stop) mode.
    type: str
    choices: [smart, fast, immediate]
    default: fast
  stop_escalate:
    description:
      - When a O(stop_mode=fast) or O(stop_mode=smart) stop has not finished within O(timeout), stop with C(immediate).
      - PostgreSQL waits at shutdown until its archiver has pushed every WAL segment, and retries a failing
        C(archive_command) for ever, so one dead backup repository can hold a shutdown indefinitely. Set this
        only once the WAL you need is known to be archived (the failover's fence checks that first).
    type: bool
    default: false
  bin_dir:
    description: Directory of PostgreSQL's programs; C(/usr/lib/postgresql/<version>/bin) of the cluster's version
      when it exists, else PATH.
    type: path
  log_file:
    description: Server log file for C(pg_ctl -l); C(postgres.log) beside the data directory when omitted.
    type: path
  login_user:
    description: Role to query the server as, over its Unix socket.
    type: str
    default: postgres
  login_password:
    description: Its password, when the socket needs one. Never logged.
    type: str
  db:
    description: Database to connect to for status queries.
    type: str
    default: postgres
seealso:
  - module: auditron.dr.pgbackrest_restore
"""

EXAMPLES = r"""
- name: Start a restored copy as a scratch cluster on a free port, and wait until it is promoted
  auditron.dr.pg_instance:
    pg_path: /var/lib/postgresql/scratch/check/data
    port: auto
    socket_dir: /var/lib/postgresql/scratch/check/run
    settings:
      archive_mode: "off"
      listen_addresses: 127.0.0.1
    scratch: true
    wait_for: promoted
    timeout: 900
  become: true
  become_user: postgres
  register: scratch

- name: Remove it afterwards (refused unless it carries the scratch marker)
  auditron.dr.pg_instance:
    pg_path: /var/lib/postgresql/scratch/check/data
    state: absent
  become: true
  become_user: postgres
"""

RETURN = r"""
pid:
  description: Process id of the postmaster, null when not running.
  returned: unless O(state=absent)
  type: int
port:
  description: The server's port.
  returned: unless O(state=absent)
  type: int
socket_dir:
  description: Directory of its Unix socket.
  returned: unless O(state=absent)
  type: str
in_recovery:
  description: Whether the server is still in recovery (null when not running).
  returned: unless O(state=absent)
  type: bool
recovery_point:
  description: Time of the last transaction recovered, from C(pg_last_xact_replay_timestamp()), or else from the
    server log's "last completed transaction was at log time" line (RV(recovery_point_source) says which).
  returned: unless O(state=absent)
  type: str
  sample: "2026-11-24T09:40:58.114Z"
recovery_point_source:
  description: Where RV(recovery_point) came from.
  returned: unless O(state=absent)
  type: str
timeline:
  description: The server's timeline.
  returned: unless O(state=absent)
  type: int
system_id:
  description: The cluster's system identifier.
  returned: unless O(state=absent)
  type: str
progress:
  description: Samples taken while waiting (seconds, in_recovery, replay_lsn, recovery_point).
  returned: when the server was started or waited for
  type: list
  elements: dict
actions:
  description: What was done (or, in check mode, would be).
  returned: always
  type: list
  elements: str
  sample: ["write settings", "mark as scratch", "start"]
stop_mode_used:
  description: The C(pg_ctl stop) mode that stopped the server (C(immediate) after an escalation).
  returned: when O(state=stopped) stopped a running server
  type: str
  sample: fast
log_file:
  description: The server log file.
  returned: always
  type: str
log_problems:
  description: The last FATAL, PANIC and ERROR lines of the server log.
  returned: when the server did not start, or stopped while it was waited for
  type: list
  elements: str
orphan_timeline:
  description:
    - Whether recovery refused the archive's newest timeline because it is not a child of the backup's history
      (an abandoned promotion left it), or missed the backup's checkpoint on it. A restore then follows the
      backup's own timeline (O(auditron.dr.pgbackrest_restore#module:target_timeline=current)).
  returned: when the server did not start, or stopped while it was waited for
  type: bool
"""

from ansible_collections.auditron.dr.plugins.module_utils import pginstance
from ansible_collections.auditron.dr.plugins.module_utils.base import AuditronModule


def argument_spec():
    return dict(
        pg_path=dict(type="path", required=True, aliases=["data_dir"]),
        state=dict(type="str", choices=list(pginstance.STATES), default="started"),
        settings=dict(type="dict"),
        port=dict(type="str"),
        port_range=dict(type="str", default="%d-%d" % pginstance.DEFAULT_PORT_RANGE),
        socket_dir=dict(type="path"),
        scratch=dict(type="bool", default=False),
        wait_for=dict(type="str", choices=list(pginstance.WAIT_FOR)),
        timeout=dict(type="int", default=300),
        stop_mode=dict(type="str", choices=list(pginstance.STOP_MODES), default="fast"),
        stop_escalate=dict(type="bool", default=False),
        bin_dir=dict(type="path"),
        log_file=dict(type="path"),
        login_user=dict(type="str", default="postgres"),
        login_password=dict(type="str", no_log=True),
        db=dict(type="str", default="postgres"),
    )


def main():
    module = AuditronModule(argument_spec(), supports_check_mode=True)
    params = module.params
    module.run(pginstance.manage, params["pg_path"], state=params["state"], settings=params["settings"],
               port=params["port"], port_range=params["port_range"], socket_dir=params["socket_dir"],
               scratch=params["scratch"], wait_for=params["wait_for"], timeout=params["timeout"],
               bin_dir=params["bin_dir"], log_file=params["log_file"], stop_mode=params["stop_mode"],
               stop_escalate=params["stop_escalate"], login_user=params["login_user"], login_password=params["login_password"], db=params["db"],
               check_mode=module.check_mode)


if __name__ == "__main__":
    main()
