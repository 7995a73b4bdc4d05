# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # How the pgbackrest_backup, pgbackrest_info and pgbackrest_restore modules reach pgBackRest
    # and its repositories (module_utils/pgbackrest.py: DEFAULT_STANZA, DEFAULT_BINARY, probe_repo).
    DOCUMENTATION = r"""
options:
  config:
    description: pgBackRest configuration file; the repositories it defines are the ones used.
    type: path
    default: /etc/pgbackrest/pgbackrest.conf
  stanza:
    description: Stanza (pgBackRest's name for the backups of one cluster).
    type: str
    default: auditron
  binary:
    description: pgBackRest executable.
    type: path
    default: pgbackrest
  probe_timeout:
    description:
      - Seconds a repository's endpoint has to accept a connection before the repository is taken as unreachable,
        at once instead of after pgBackRest's own retries.
    type: float
    default: 5
"""
