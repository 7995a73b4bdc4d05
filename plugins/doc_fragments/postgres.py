# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # PostgreSQL connection options; names follow community.postgresql so that one set of
    # variables serves both collections.
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host of the PostgreSQL server. Empty means the local Unix socket.
    type: str
    default: ''
    aliases: [host]
  login_port:
    description:
      - Port of the PostgreSQL server.
    type: int
    default: 5432
    aliases: [port]
  login_user:
    description:
      - Role to connect as.
    type: str
    default: postgres
  login_password:
    description:
      - Password of O(login_user). Never logged.
    type: str
    default: ''
  login_unix_socket:
    description:
      - Directory of the Unix socket, for local connections.
    type: str
    default: ''
  ssl_mode:
    description:
      - libpq SSL mode.
    type: str
    default: prefer
    choices: [allow, disable, prefer, require, verify-ca, verify-full]
  ca_cert:
    description:
      - CA certificate file used to verify the server with O(ssl_mode=verify-ca) or O(ssl_mode=verify-full).
    type: str
    aliases: [ssl_rootcert]
  connect_timeout:
    description:
      - Seconds to wait for a connection before reporting the server as not answering.
    type: int
    default: 10
requirements:
  - psycopg2
"""
