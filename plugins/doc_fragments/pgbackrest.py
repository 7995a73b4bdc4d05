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


# One stanza to act on, as pgbackrest_verify takes it (STANZA) and as the `pgbackrest` option of
# backup_catalog and backup_prune does (PHYSICAL, with the executable); argument specs
# base.pgbackrest_stanza_spec and base.pgbackrest_physical_suboptions. Set after the class:
# ansible-test's yamllint reads every assignment in a fragment's class body as a literal string.
_STANZA = r"""config:
  description: pgBackRest configuration file.
  type: path
  required: true
stanza:
  description: Stanza.
  type: str
  default: auditron
repos:
  description: Repository numbers; every configured one when omitted.
  type: list
  elements: int
"""
_BINARY = r"""binary:
  description: pgBackRest executable.
  type: str
  default: pgbackrest
"""


def _indented(text, indent):
    return "".join(" " * indent + line if line.strip() else line for line in text.splitlines(True))


ModuleDocFragment.STANZA = "\noptions:\n" + _indented(_STANZA, 2)
ModuleDocFragment.PHYSICAL = "\noptions:\n  pgbackrest:\n    suboptions:\n" + _indented(_STANZA + _BINARY, 6)
