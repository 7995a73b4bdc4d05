#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pgbackrest_info
short_description: What each pgBackRest repository holds, and which one cannot be reached
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - Reads C(pgbackrest info --output=json) for one stanza and returns, per repository, its status, its backups
    (label, type full, diff or incr, start and stop, sizes, prior and references, database system id), the WAL
    archive's first and last segment, when the last segment arrived and how old it is, and the age of the newest
    backup.
  - A repository that does not answer is probed first (a TCP connection to an object store, the path of a local
    repository) so that one dead endpoint costs seconds, not pgBackRest's minutes of retries. A repository that
    does not answer, or whose status pgBackRest reports as an error, is returned in RV(repos) with
    C(reachable=false) and named in RV(unreachable_repos); the others are still read.
  - Can also unwrap a cipher passphrase kept as AWS KMS ciphertext (O(cipher_pass_kms_blob)); then nothing else is
    read and the passphrase is returned as RV(cipher_pass). Run that task with C(no_log).
  - Runs pgBackRest as the user running the module; use C(become_user) with the PostgreSQL OS user.
extends_documentation_fragment:
  - auditron.dr.pgbackrest
  - auditron.dr.kms
  - auditron.dr.read_only
  - ansible.builtin.action_common_attributes
options:
  repos:
    description: Repository numbers to read; all configured ones when empty.
    type: list
    elements: int
    default: []
  wal_times:
    description: Read when each repository's newest WAL segment arrived (one listing per repository).
    type: bool
    default: true
  io_timeout:
    description: pgBackRest C(io-timeout) for these reads, in seconds. Short, so that a stalled endpoint is reported
      quickly.
    type: int
    default: 10
  cipher_pass_kms_blob:
    description:
      - Base64 AWS KMS ciphertext of a repository cipher passphrase. When set, the module only decrypts it with
        O(kms) and returns it as RV(cipher_pass). Never logged.
    type: str
requirements:
  - pgBackRest 2.45 or later on the host
  - boto3, only for O(cipher_pass_kms_blob)
notes:
  - The collection's catalog calls the same engine function, C(info_summary) in C(module_utils/pgbackrest.py).
seealso:
  - module: auditron.dr.pgbackrest_backup
  - module: auditron.dr.pgbackrest_restore
"""

EXAMPLES = r"""
- name: Read every repository of the stanza
  auditron.dr.pgbackrest_info:
    config: /etc/pgbackrest/pgbackrest.conf
  become: true
  become_user: postgres
  register: pgbackrest

- name: Fail when a repository cannot be reached
  ansible.builtin.assert:
    that: pgbackrest.unreachable_repos | length == 0
    fail_msg: "{{ pgbackrest.unreachable_repos | join('; ') }}"

- name: Unwrap the cipher passphrase kept as KMS ciphertext
  auditron.dr.pgbackrest_info:
    cipher_pass_kms_blob: "{{ vault_pgbackrest_cipher_pass_blob }}"
    kms:
      key_id: alias/auditron-backups
      region: us-east-1
  no_log: true
  register: pgbackrest_secret
"""

RETURN = r"""
stanza:
  description: The stanza read.
  returned: unless O(cipher_pass_kms_blob) is set
  type: str
  sample: auditron
stanza_exists:
  description: Whether any repository holds the stanza.
  returned: unless O(cipher_pass_kms_blob) is set
  type: bool
repos:
  description: One entry per repository.
  returned: unless O(cipher_pass_kms_blob) is set
  type: list
  elements: dict
  contains:
    key:
      description: Repository number.
      type: int
    name:
      description: V(repo1), V(repo2)...
      type: str
    location:
      description: Type and address of the repository.
      type: str
    reachable:
      description: False when the repository could not be read; RV(repos[].status) says why.
      type: bool
    status:
      description: pgBackRest's status message, or why the repository could not be reached.
      type: str
    status_code:
      description: pgBackRest's status code (0 ok, 1 missing stanza path, 2 no valid backups, 99 error).
      type: int
    backups:
      description: Backups, oldest first, each with label, type, start, stop, duration_seconds, size, delta,
        repo_size, repo_delta, prior, reference, system_id, wal_start, wal_stop, error.
      type: list
      elements: dict
    wal_min:
      description: First WAL segment in the archive.
      type: str
    wal_max:
      description: Last WAL segment in the archive.
      type: str
    wal_max_time:
      description: When the last WAL segment arrived (UTC).
      type: str
    wal_max_age_seconds:
      description: Its age in seconds.
      type: int
    newest_backup:
      description: Label of the newest good backup.
      type: str
    newest_backup_age_seconds:
      description: Seconds since it ended.
      type: int
unreachable_repos:
  description: Repositories that could not be read, each with the reason.
  returned: unless O(cipher_pass_kms_blob) is set
  type: list
  elements: str
  sample: ["repo3: endpoint localhost:55912 does not answer (connection refused)"]
missing_stanza:
  description: Reachable repositories that do not hold the stanza yet (C(stanza-create) has not run there).
  returned: unless O(cipher_pass_kms_blob) is set
  type: list
  elements: str
newest_archived_wal:
  description: The newest WAL segment in any repository.
  returned: when O(wal_times=true)
  type: str
newest_archived_wal_age_seconds:
  description: Seconds since it arrived.
  returned: when O(wal_times=true)
  type: int
table:
  description: One line per repository, for people.
  returned: unless O(cipher_pass_kms_blob) is set
  type: list
  elements: str
cipher_pass:
  description: The unwrapped cipher passphrase. Use C(no_log) on the task.
  returned: when O(cipher_pass_kms_blob) is set
  type: str
"""

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.auditron.dr.plugins.module_utils import pgbackrest
from ansible_collections.auditron.dr.plugins.module_utils.aws import BOTO3_IMPORT_ERROR, HAS_BOTO3
from ansible_collections.auditron.dr.plugins.module_utils.base import AuditronModule, kms_suboptions


def argument_spec():
    return dict(
        config=dict(type="path", default="/etc/pgbackrest/pgbackrest.conf"),
        stanza=dict(type="str", default=pgbackrest.DEFAULT_STANZA),
        repos=dict(type="list", elements="int", default=[]),
        wal_times=dict(type="bool", default=True),
        probe_timeout=dict(type="float", default=5),
        io_timeout=dict(type="int", default=10),
        binary=dict(type="path", default=pgbackrest.DEFAULT_BINARY),
        cipher_pass_kms_blob=dict(type="str", no_log=True),
        kms=dict(type="dict", options=kms_suboptions()),
    )


def read_info(params):
    if params["cipher_pass_kms_blob"]:
        passphrase = pgbackrest.unwrap_cipher_pass(params["cipher_pass_kms_blob"], params["kms"])
        return dict(changed=False, cipher_pass=passphrase)
    summary = pgbackrest.info_summary(
        params["config"], params["stanza"], repos=params["repos"], binary=params["binary"],
        io_timeout=params["io_timeout"], wal_times=params["wal_times"], probe_timeout=params["probe_timeout"])
    summary["changed"] = False
    return summary


def main():
    module = AuditronModule(argument_spec(), supports_check_mode=True)
    if module.params["cipher_pass_kms_blob"] and not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3", reason="to unwrap cipher_pass_kms_blob"),
                         exception=BOTO3_IMPORT_ERROR)
    module.run(read_info, module.params)


if __name__ == "__main__":
    main()
