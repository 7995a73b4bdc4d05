#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: site_gate
short_description: Refuse a run that would overwrite a site that serves, or whose state could not be read
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - Reads what a site looks like now - its database's role (primary, standby, stopped, no cluster, or unreadable),
    what the API's name answers at its authoritative server, whether its app answers C(/health), and whether a
    failover to it completed (its failover state file) - and decides whether the run may go on. It fails with one
    message that begins with O(caller) and the words "nothing was changed." when it may not. It changes nothing.
  - A site serves when it holds data (its database is not a standby and it has a cluster) and the API's name
    answers its address, or its database is a primary whose app answers after a completed failover to it.
  - O(action=standby) (setup_standby.yml, the standby role) never replaces a site that serves, nor one whose state
    could not be read (a database that runs but does not answer; a name that cannot be read while the site holds
    data), unless O(replace_serving) or O(replace_unreadable) says so; otherwise it asks the confirmation only.
  - O(action=restore_files) (restore_files.yml) asks the confirmation when the site is the production site
    (O(production)), serves, may serve, or is restored to an older point than the latest while its app answers.
  - In check mode no confirmation is needed (nothing changes), but a replacement the real run would refuse is
    refused.
extends_documentation_fragment:
  - auditron.dr.postgres
  - auditron.dr.dns
  - auditron.dr.read_only
  - ansible.builtin.action_common_attributes
options:
  action:
    description:
      - What the run would do to the site. V(read) only reads and never refuses (the caller decides on RV(database),
        RV(dns) and RV(app)).
    type: str
    required: true
    choices: [standby, restore_files, read]
  caller:
    description: The playbook or role that asks, the first words of the message.
    type: str
    required: true
  site:
    description: The site, as the message names it.
    type: str
    required: true
  data_dir:
    description:
      - The cluster's data directory. When the database does not answer, a postmaster still running there makes its
        state unreadable (not stopped), and no C(PG_VERSION) there means no cluster. Without it, a database is
        stopped when its address refuses connections.
    type: path
  dns_target:
    description: The address the API's name holds while this site serves (C(auditron_dr_dns_target)).
    type: str
  dns_type:
    description: Record type of O(dns.record).
    type: str
    default: A
    choices: [A, AAAA, CNAME]
  app_url:
    description: Base URL of the site's app; without it the app is not asked.
    type: str
  app_health_path:
    description: Its health endpoint.
    type: str
    default: /health
  app_ca_bundle:
    description: CA bundle for an HTTPS O(app_url).
    type: path
  failover_state_file:
    description: The site's failover state file (C(failover.json) in C(auditron_dr_state_dir)); C(completed) there
      means a failover to this site finished and no failback cleared it.
    type: path
  production:
    description: The site is the production site (restore_files asks the confirmation whatever else it sees).
    type: bool
    default: false
  as_of:
    description: The point restore_files restores to; anything but V(latest) counts as older.
    type: str
    default: latest
  require_confirmation:
    description: Whether the confirmation is required (C(auditron_dr_require_confirmation)).
    type: bool
    default: true
  confirmed:
    description: The confirmation was given.
    type: bool
    default: false
  confirm_variable:
    description: Name of the confirmation variable, for the message.
    type: str
    default: confirm
  replace_serving:
    description: O(action=standby) replaces a site that serves.
    type: bool
    default: false
  replace_serving_variable:
    description: Name of the variable behind O(replace_serving), for the message.
    type: str
    default: replace_serving
  replace_unreadable:
    description: O(action=standby) replaces a site whose state could not be read.
    type: bool
    default: false
  replace_unreadable_variable:
    description: Name of the variable behind O(replace_unreadable), for the message.
    type: str
    default: replace_unreadable
notes:
  - The database is reached with the connection options; its data directory is read where the module runs.
seealso:
  - module: auditron.dr.dns_record
  - module: auditron.dr.app_verify
"""

EXAMPLES = r"""
- name: Never wipe a DR that serves or whose state could not be read
  auditron.dr.site_gate:
    action: standby
    caller: setup_standby.yml
    site: dr
    login_host: db.dr.auditron.internal
    login_password: "{{ vault_pg_password }}"
    data_dir: /var/lib/postgresql/15/main
    dns: "{{ auditron_dr_dns }}"
    dns_target: 10.20.0.10
    app_url: https://dr.api.auditron.ai
    failover_state_file: /var/lib/auditron-dr/failover.json
    confirmed: "{{ confirm_standby | bool }}"
    confirm_variable: confirm_standby

- name: A restore of the files into production needs the confirmation
  auditron.dr.site_gate:
    action: restore_files
    caller: restore_files.yml
    site: primary
    production: true
    as_of: 20261124T020000Z
    login_host: db.primary.auditron.internal
    confirmed: "{{ confirm_restore_files | default(false) | bool }}"
    confirm_variable: confirm_restore_files
"""

RETURN = r"""
allowed:
  description: Always true on success (the module fails when the run may not go on).
  returned: success
  type: bool
refusal:
  description: Empty on success; on failure V(serving), V(unreadable) or V(confirmation).
  returned: always
  type: str
msg:
  description: Why the run may (or may not) go on.
  returned: always
  type: str
serving:
  description: Whether the site serves.
  returned: always
  type: bool
reasons:
  description: Why it serves, one line each.
  returned: always
  type: list
  elements: str
unknown:
  description: What could not be read, one line each.
  returned: always
  type: list
  elements: str
database:
  description: C(state) (V(primary), V(standby), V(stopped), V(absent) or V(unreadable)), C(receiver), C(detail).
  returned: always
  type: dict
dns:
  description: C(configured), C(values) the name answers, C(here) (they are O(dns_target)), C(error).
  returned: always
  type: dict
app:
  description: C(configured), C(healthy), C(detail).
  returned: always
  type: dict
failover:
  description: C(recorded), C(completed), C(detail).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.auditron.dr.plugins.module_utils import gates, pg
from ansible_collections.auditron.dr.plugins.module_utils.base import (AuditronModule, dns_suboptions,
                                                                       postgres_argument_spec)


def argument_spec():
    spec = postgres_argument_spec()
    dns = dns_suboptions()
    spec.update(
        action=dict(type="str", required=True, choices=list(gates.ACTIONS)),
        caller=dict(type="str", required=True),
        site=dict(type="str", required=True),
        data_dir=dict(type="path"),
        dns=dict(type="dict", options=dns),
        dns_target=dict(type="str"),
        dns_type=dict(type="str", default="A", choices=["A", "AAAA", "CNAME"]),
        app_url=dict(type="str"),
        app_health_path=dict(type="str", default="/health"),
        app_ca_bundle=dict(type="path"),
        failover_state_file=dict(type="path"),
        production=dict(type="bool", default=False),
        as_of=dict(type="str", default="latest"),
        require_confirmation=dict(type="bool", default=True),
        confirmed=dict(type="bool", default=False),
        confirm_variable=dict(type="str", default="confirm"),
        replace_serving=dict(type="bool", default=False),
        replace_serving_variable=dict(type="str", default="replace_serving"),
        replace_unreadable=dict(type="bool", default=False),
        replace_unreadable_variable=dict(type="str", default="replace_unreadable"),
    )
    return spec


def health_getter(ca_bundle):
    """GET for the app's health check; ansible's urls is loaded only when an app is asked."""
    def get(url):
        from ansible_collections.auditron.dr.plugins.module_utils import appverify  # pylint: disable=import-outside-toplevel
        return appverify.http_get(url, ca_bundle=ca_bundle, timeout=5.0)
    return get


def main():
    module = AuditronModule(argument_spec(), supports_check_mode=True)
    if not pg.HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=pg.PSYCOPG2_IMPORT_ERROR)
    params = dict(module.params, postgres=module.params)
    module.run(gates.gate, params, health_getter(module.params["app_ca_bundle"]), check_mode=module.check_mode)


if __name__ == "__main__":
    main()
