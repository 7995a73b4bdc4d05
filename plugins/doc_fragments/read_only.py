# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The attributes of a module that only reads (with ansible.builtin.action_common_attributes,
    # which describes each attribute): app_verify, audit_deletions, backup_catalog,
    # config_backup_info, pg_assess, pgbackrest_info.
    DOCUMENTATION = r"""
attributes:
  check_mode:
    support: full
    details: Only reads; runs the same in check mode.
  diff_mode:
    support: none
    details: Nothing is changed.
  platform:
    platforms: posix
"""
