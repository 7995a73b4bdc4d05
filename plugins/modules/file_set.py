#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: file_set
short_description: Make a set of directories and write small text files in one go, and remove the ones no longer listed
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - Makes the directories of O(directories) that are missing (or sets their mode and owner), writes each file
    of O(files) whose content, mode or owner differs from what is given, and removes the files of the O(prune)
    directories that match their patterns but are not listed. All of it in one module run, where
    M(ansible.builtin.file) and M(ansible.builtin.template) in a loop cost one to three module runs per item.
  - Made for roles that install many generated files - the C(schedule) role's systemd units and job settings,
    rendered on the controller with the C(ansible.builtin.template) lookup - and the directories they live in
    (the C(pgbackrest) role's configuration, log, spool, lock and repository directories).
  - Each file is written to a temporary file in its directory and renamed over the old one, so that a reader
    sees the old file or the new one, never half of it.
  - Everything is checked before anything is written (absolute paths, existing parent directories, modes,
    owners that exist, no path listed twice); bad input fails with one message naming the path, and nothing is
    changed.
  - Files and directories without O(files[].owner) or O(directories[].owner) keep the owner of the module's
    process (a new one) or the owner they have.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Compares, and returns what would be written and removed; changes nothing.
  diff_mode:
    support: full
    details: One diff entry per directory made or changed, and per file written or removed.
  platform:
    platforms: posix
options:
  directories:
    description:
      - Directories made before the files are written, in the order given (missing parents are made as
        C(mkdir -p) does). An existing one gets the mode, owner and group given, unless
        O(directories[].create_only) is set.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the directory.
        type: path
        required: true
      mode:
        description: Permission bits, as an octal string such as V('0750').
        type: raw
        default: '0755'
      owner:
        description: User name or uid that should own it. Not managed when omitted.
        type: str
      group:
        description: Group name or gid that should own it. Not managed when omitted.
        type: str
      create_only:
        description: Made when missing, never changed when it exists (a directory shared with others).
        type: bool
        default: false
  files:
    description: The files of the set.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the file. Its directory must exist or be listed in O(directories).
        type: path
        required: true
      content:
        description: The whole content, as text (UTF-8).
        type: str
        required: true
      mode:
        description: Permission bits, as an octal string such as V('0644'). Defaults to O(mode).
        type: raw
      owner:
        description: User name or uid that should own the file. Not managed when omitted.
        type: str
      group:
        description: Group name or gid that should own the file. Not managed when omitted.
        type: str
  mode:
    description: Permission bits of files that give none, as an octal string such as V('0644').
    type: raw
    default: '0644'
  prune:
    description:
      - Directories to keep to the set - a file in O(prune[].directory) whose name matches one of
        O(prune[].patterns) and that O(files) does not list is removed. Subdirectories are never removed.
      - A directory that does not exist is passed over.
    type: list
    elements: dict
    default: []
    suboptions:
      directory:
        description: Absolute path of the directory.
        type: path
        required: true
      patterns:
        description: Shell-style patterns matched against file names, for example V(auditron-dr-*.timer).
        type: list
        elements: str
        required: true
seealso:
  - module: ansible.builtin.template
  - module: ansible.builtin.copy
"""

EXAMPLES = r"""
- name: Render each job's unit on the controller
  ansible.builtin.set_fact:
    unit_file:
      path: /etc/systemd/system/auditron-dr-{{ item.name }}.timer
      content: "{{ lookup('ansible.builtin.template', 'timer.j2') }}"
  loop: "{{ jobs }}"
  register: rendered_units

- name: Write the units, and remove those of jobs no longer scheduled
  auditron.dr.file_set:
    files: "{{ rendered_units.results | map(attribute='ansible_facts.unit_file') | list }}"
    mode: "0644"
    prune:
      - directory: /etc/systemd/system
        patterns: ["auditron-dr-*.timer"]
  register: units

- name: Reload systemd when a unit changed
  ansible.builtin.systemd_service:
    daemon_reload: true
  when: units is changed
"""

RETURN = r"""
directories:
  description: Directories made, or whose mode or owner was set (in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: [/etc/pgbackrest]
written:
  description: Paths written, or whose mode or owner was set (in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: [/etc/systemd/system/auditron-dr-backup_config.timer]
removed:
  description: Paths removed by O(prune) (in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: [/etc/systemd/system/auditron-dr-old_job.timer]
unchanged:
  description: How many listed files and directories were already as given.
  returned: always
  type: int
  sample: 28
"""

from ansible_collections.auditron.dr.plugins.module_utils import fileset
from ansible_collections.auditron.dr.plugins.module_utils.base import AuditronModule


def argument_spec():
    return dict(
        directories=dict(type="list", elements="dict", default=[], options=dict(
            path=dict(type="path", required=True),
            mode=dict(type="raw", default="0755"),
            owner=dict(type="str"),
            group=dict(type="str"),
            create_only=dict(type="bool", default=False),
        )),
        files=dict(type="list", elements="dict", default=[], options=dict(
            path=dict(type="path", required=True),
            content=dict(type="str", required=True),
            mode=dict(type="raw"),
            owner=dict(type="str"),
            group=dict(type="str"),
        )),
        mode=dict(type="raw", default="0644"),
        prune=dict(type="list", elements="dict", default=[], options=dict(
            directory=dict(type="path", required=True),
            patterns=dict(type="list", elements="str", required=True),
        )),
    )


def main():
    module = AuditronModule(argument_spec(), supports_check_mode=True)
    params = module.params
    module.run(fileset.sync, params["files"], prune=params["prune"], default_mode=params["mode"],
               check_mode=module.check_mode, want_diff=module.diff_mode, directories=params["directories"])


if __name__ == "__main__":
    main()
