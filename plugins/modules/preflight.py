#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: preflight
short_description: Check a site has everything a recovery will need
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - Checks, for one site, what a recovery depends on, before it is needed. The database answers and has the
    expected role (primary or standby), each object store and backup location can be listed, written and cleaned
    (a probe object is written, read back and removed), the KMS key can make and unwrap a data key, the DNS zone
    accepts an update signed with the TSIG key (a prerequisite-only update that changes nothing) or the Route53
    hosted zone holds the record, and the application answers its health check.
  - A failed check is a result, not a module failure; the module returns every check with its detail so that a
    playbook can print one table and decide, as the collection's C(preflight.yml) playbook does.
extends_documentation_fragment:
  - auditron.dr.postgres
  - auditron.dr.location
  - auditron.dr.kms.key_required
  - auditron.dr.dns
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: In check mode no probe object is written; locations are only listed. The DNS and KMS checks change
      nothing in either mode and run in both.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  site:
    description: Name of the site, shown in every row.
    type: str
    required: true
  db:
    description: Database to connect to.
    type: str
    default: auditron
  check_database:
    description: Run the database check. Set to V(false) for a site without a database of its own.
    type: bool
    default: true
  expected_role:
    description: Fail the database check unless the server has this role.
    type: str
    choices: [primary, standby, any]
    default: any
  app:
    description: Application to check. Omit to skip the check.
    type: dict
    suboptions:
      url:
        description: Base URL; V(/health) is appended.
        type: str
        required: true
      ca_bundle:
        description: CA bundle for an HTTPS URL.
        type: path
      timeout:
        description: Seconds to wait.
        type: float
        default: 5
  write_probes:
    description: Write, read back and remove a probe object in each location. Forced off in check mode.
    type: bool
    default: true
  optional_checks:
    description:
      - Checks (by name, by first word such as V(app), or by a location's name) whose failure does not count as a failure.
    type: list
    elements: str
    default: []
notes:
  - Runs where the recovery would run (the site's database host), so that it tests that host's network paths.
seealso:
  - module: community.postgresql.postgresql_ping
"""

EXAMPLES = r"""
- name: Check the DR site
  auditron.dr.preflight:
    site: dr
    login_host: db.dr.auditron.internal
    login_password: "{{ vault_pg_password }}"
    expected_role: standby
    locations:
      - name: s3-us-east-1
        bucket: auditron-backups
        region: us-east-1
    kms:
      key_id: alias/auditron-backups
      region: us-east-1
    dns:
      provider: route53
      record: api.auditron.ai
      route53:
        zone_id: Z0123456789
    app:
      url: https://dr.api.auditron.ai
  register: dr_preflight
"""

RETURN = r"""
checks:
  description: One row per check.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: What was checked, for example V(database) or V(object store s3-us-east-1).
      type: str
    site:
      description: O(site).
      type: str
    result:
      description: V(ok), V(failed) or V(skipped).
      type: str
    required:
      description: Whether a failure of this check fails the preflight.
      type: bool
    detail:
      description: What was found, or what is wrong, in one line.
      type: str
  sample:
    - name: database
      site: primary
      result: ok
      required: true
      detail: PostgreSQL 15.14, primary, 105 MB, system id 7431082519845216289
failed_required:
  description: Names of the required checks that failed.
  returned: always
  type: list
  elements: str
  sample: ["database"]
table:
  description: The rows as a plain-text table, one line per element.
  returned: always
  type: list
  elements: str
database_role:
  description: The database's role - V(primary) or V(standby); null when it was not checked or did not answer.
  returned: always
  type: str
  sample: standby
mode:
  description:
    - The recovery mode this site is in - V(warm) when its database is a standby (a failover promotes it),
      V(cold) otherwise (a failover restores it).
  returned: always
  type: str
  sample: warm
stores:
  description: One entry per location in O(locations), in order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The location's name.
      type: str
    role:
      description: The location's role, or V(object store).
      type: str
    result:
      description: V(ok) or V(failed) (the location's row in RV(checks)).
      type: str
  sample:
    - name: s3-us-east-1
      role: object store
      result: ok
"""

from ansible_collections.auditron.dr.plugins.module_utils import preflight
from ansible_collections.auditron.dr.plugins.module_utils.base import (
    AuditronModule, dns_suboptions, kms_suboptions, location_suboptions, postgres_argument_spec)


def argument_spec():
    spec = postgres_argument_spec()
    spec.update(
        site=dict(type="str", required=True),
        db=dict(type="str", default="auditron"),
        check_database=dict(type="bool", default=True),
        expected_role=dict(type="str", choices=["primary", "standby", "any"], default="any"),
        locations=dict(type="list", elements="dict", default=[], options=location_suboptions()),
        kms=dict(type="dict", options=kms_suboptions(key_id_required=True)),
        dns=dict(type="dict", options=dns_suboptions()),
        app=dict(type="dict", options=dict(url=dict(type="str", required=True), ca_bundle=dict(type="path"),
                                           timeout=dict(type="float", default=5))),
        write_probes=dict(type="bool", default=True),
        optional_checks=dict(type="list", elements="str", default=[]),
    )
    return spec


def run_checks(params, check_mode):
    rows, found = preflight.run(
        params["site"], postgres=params if params["check_database"] else None,
        expected_role=params["expected_role"], locations=params["locations"], kms=params["kms"],
        dns=params["dns"], app=params["app"], write_probes=params["write_probes"] and not check_mode,
        optional_checks=params["optional_checks"])
    return dict(changed=False, checks=rows, failed_required=[r["name"] for r in preflight.failed_required(rows)],
                table=preflight.format_table(rows), database_role=found["database_role"], mode=found["mode"],
                stores=found["stores"])


def main():
    module = AuditronModule(argument_spec(), supports_check_mode=True)
    module.run(run_checks, module.params, module.check_mode)


if __name__ == "__main__":
    main()
