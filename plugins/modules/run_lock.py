#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: run_lock
short_description: One lock for recovery runs across controllers, held as a lease in the backup locations
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - Takes, releases or shows lock O(name) in every one of O(locations) that answers (at least one), under
    C(runs/locks/<name>/). A second run anywhere (another controller, AWX and cron) waits up to O(wait) seconds
    or is refused with the holder named (run id, host, pid, playbook, since).
  - The lease is a candidate object that is never rewritten and a heartbeat object renewed every O(ttl)/4 by a
    detached process on the controller, which releases the lease as soon as the C(ansible-playbook) it watches is
    gone (a killed run leaves no lease behind). A holder whose heartbeat stopped (its host lost) is taken over
    once its lease expired, and RV(taken_over) says so.
  - The order of candidates is the backup server's (their LastModified, with ties tried again), never a
    controller's clock; no conditional write is relied on, since some S3 servers (C(rclone serve s3)) accept
    If-None-Match and ignore it.
  - "Must run on the controller (C(delegate_to: localhost)), where the run it locks for runs."
extends_documentation_fragment:
  - auditron.dr.location
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: V(acquire) and V(release) only say who holds the lock; nothing is written.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  action:
    description: What to do.
    type: str
    choices: [acquire, release, status]
    required: true
  name:
    description: The lock. Every recovery and destructive run takes V(recovery).
    type: str
    default: recovery
  run_id:
    description: The run that holds it (shown to the runs it keeps out).
    type: str
  playbook:
    description: The playbook that holds it (shown to the runs it keeps out).
    type: str
  ttl:
    description: Seconds a lease lives without a heartbeat.
    type: int
    default: 60
  wait:
    description: Seconds to wait for a lock another run holds before refusing.
    type: int
    default: 0
  token:
    description: The lease to release (RV(token) of V(acquire)).
    type: str
  heartbeat:
    description: Start the heartbeat process (tests of the protocol turn it off).
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: One recovery at a time, across controllers
  auditron.dr.run_lock:
    action: acquire
    run_id: "{{ failover_id }}"
    playbook: failover.yml
    locations: "{{ auditron_dr_backup_locations }}"
  delegate_to: localhost
  register: recovery_lock

- name: Release it
  auditron.dr.run_lock:
    action: release
    token: "{{ recovery_lock.token }}"
    locations: "{{ auditron_dr_backup_locations }}"
  delegate_to: localhost
"""

RETURN = r"""
token:
  description: This run's lease (V(acquire)).
  returned: when O(action=acquire) and not in check mode
  type: str
locations:
  description: Where the lease is held (V(acquire)) or was removed (V(release)).
  returned: when O(action) is acquire or release
  type: list
  elements: str
unreachable_locations:
  description: Locations that did not answer, with the reason.
  returned: when O(action=acquire)
  type: dict
waited_seconds:
  description: How long the run waited for another's lease.
  returned: when O(action=acquire) and not in check mode
  type: float
taken_over:
  description: Holders whose lease had expired (no heartbeat) and was removed, with when it expired.
  returned: when O(action=acquire) and not in check mode
  type: list
  elements: dict
holders:
  description: Per location, the candidates for the lock, oldest (the holder) first, each with whether it is alive.
  returned: when O(action=status) or in check mode
  type: dict
held_by_this_run:
  description: The lease of the same ansible-playbook (a playbook imported by one that holds the lock), under which
    this run goes on; RV(token) is then null and nothing is to be released.
  returned: when the same ansible-playbook holds the lock already
  type: dict
heartbeat_watches:
  description: The pid of the ansible-playbook process the heartbeat watches.
  returned: when O(action=acquire) and not in check mode
  type: int
"""

from ansible_collections.auditron.dr.plugins.module_utils import lease, storage
from ansible_collections.auditron.dr.plugins.module_utils.base import AuditronModule, location_suboptions
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError


def run(params, check_mode):
    # Short timeouts and two attempts: a backup region that is down must not hold a recovery up.
    locations = storage.locations_from_params(params["locations"], max_attempts=2, connect_timeout=3,
                                              read_timeout=10)
    if params["action"] == "status" or check_mode:
        return {"changed": False, "holders": lease.status(locations, params["name"])}
    if params["action"] == "release":
        if not params["token"]:
            return {"changed": False, "locations": []}  # nothing of this run's own to release
        removed = lease.release(locations, params["name"], params["token"])
        return {"changed": bool(removed), "locations": removed}
    watch = lease.controller_pid()
    if params["heartbeat"] and watch is None:
        raise DRError("run_lock found no ansible-playbook process above it: run it on the controller "
                      "(delegate_to: localhost), where the run it locks for runs")
    holder = lease.default_holder(params["run_id"], params["playbook"])
    taken = lease.acquire(locations, params["name"], holder, ttl=params["ttl"], wait=params["wait"])
    if taken["token"] is None:  # this ansible-playbook holds it already (an imported playbook)
        taken.update(changed=False, heartbeat_watches=watch, holder=holder)
        return taken
    if params["heartbeat"]:
        lease.start_heartbeat(locations, params["name"], taken["token"], params["ttl"], watch)
    taken.update(changed=True, heartbeat_watches=watch, holder=holder)
    if taken["taken_over"]:
        taken["warnings"] = ["lock %s: took over the expired lease of %s" % (params["name"], lease.holder_text(h))
                             for h in taken["taken_over"]]
    return taken


def main():
    module = AuditronModule(
        dict(action=dict(type="str", choices=["acquire", "release", "status"], required=True),
             name=dict(type="str", default="recovery"),
             locations=dict(type="list", elements="dict", default=[], options=location_suboptions()),
             run_id=dict(type="str"), playbook=dict(type="str"), ttl=dict(type="int", default=60),
             wait=dict(type="int", default=0), token=dict(type="str", no_log=False),
             heartbeat=dict(type="bool", default=True)),
        supports_check_mode=True)
    module.run(run, module.params, module.check_mode)


if __name__ == "__main__":
    main()
