#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: app_verify
short_description: Verify the AUDITRON API answers and serves what its database holds
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - The plan's "Verify Application" step (scenario 1 step 7) done properly. C(GET /health) must answer 200, and
    C(GET /api/invoices) with the bearer token must serve data consistent with the database - the count, the
    highest id and the newest C(createdAt) the app reports are compared with what the database holds.
  - The database is read just before and just after the request; the answer is consistent when it matches
    either, so writes landing in between do not fail a healthy app.
  - Retries every O(interval) seconds until O(timeout), since an app just started or a database just restored
    may need a moment; progress goes to the module log and the last attempts are returned. A refused token fails
    at once (no retry fixes it).
  - Returns C(dr_report.checks) rows for the dr_timeline callback and, when it passes and
    O(mark_service_restored) is set, C(dr_report.markers.service_restored) - the time service was restored,
    from which the report computes the achieved RTO.
  - The API must return a JSON object with C(count), C(max_id) and C(max_createdAt) (names in O(compare)), and
    may return C(invoices), a list, which must be empty exactly when C(count) is 0. The lab's stand-in does.
extends_documentation_fragment:
  - auditron.dr.postgres
  - auditron.dr.read_only
  - ansible.builtin.action_common_attributes
options:
  site:
    description: Site name, shown in the checks and messages.
    type: str
    default: app
  url:
    description: Base URL of the API, for example V(https://api.auditron.ai).
    type: str
    required: true
  token:
    description: Bearer token for O(invoices_path). Never logged. Required when O(check_data) is set.
    type: str
  ca_bundle:
    description: CA bundle for an HTTPS URL.
    type: path
  validate_certs:
    description: Verify the API's TLS certificate.
    type: bool
    default: true
  health_path:
    description: Health endpoint.
    type: str
    default: /health
  invoices_path:
    description: The critical endpoint.
    type: str
    default: /api/invoices
  check_data:
    description: Compare O(invoices_path) with the database. V(false) checks health only (for example a site whose
      database has not been restored yet).
    type: bool
    default: true
  db:
    description: Database the app reads.
    type: str
    default: auditron
  schema:
    description: Schema of O(table).
    type: str
    default: public
  table:
    description: Table the endpoint serves.
    type: str
    default: Invoice
  id_column:
    description: Its id column.
    type: str
    default: id
  created_column:
    description: Its creation time column.
    type: str
    default: createdAt
  compare:
    description: What must match.
    type: list
    elements: str
    choices: [count, max_id, max_createdAt]
    default: [count, max_id, max_createdAt]
  created_tolerance:
    description: Seconds two creation times may differ and still match (an API that serialises times with
      millisecond precision).
    type: float
    default: 0.001
  timeout:
    description: Seconds to keep trying.
    type: int
    default: 120
  interval:
    description: Seconds between attempts.
    type: float
    default: 2
  request_timeout:
    description: Seconds one request may take.
    type: float
    default: 5
  mark_service_restored:
    description: On success, return C(dr_report.markers.service_restored) with the time of the passing attempt.
    type: bool
    default: true
notes:
  - Run it where the API is reached the way users reach it, and where the database is reachable.
seealso:
  - module: auditron.dr.app_platform
  - module: ansible.builtin.uri
"""

EXAMPLES = r"""
- name: Verify the application (scenario 1, step 7)
  auditron.dr.app_verify:
    site: primary
    url: https://api.auditron.ai
    token: "{{ vault_auditron_api_token }}"
    login_host: db.primary.auditron.internal
    login_password: "{{ vault_pg_password }}"
    db: auditron
  register: app_verified

- name: Health only, at a site whose database is not restored yet
  auditron.dr.app_verify:
    site: dr
    url: https://dr.api.auditron.ai
    check_data: false
    mark_service_restored: false
"""

RETURN = r"""
passed:
  description: Always true on success (the module fails otherwise).
  returned: success
  type: bool
msg:
  description: One line per check, joined.
  returned: always
  type: str
checks:
  description: One row per check - C(name), C(result) (V(ok) or V(failed)), C(detail).
  returned: always
  type: list
  elements: dict
  sample:
    - name: app health (dr)
      result: ok
      detail: GET http://127.0.0.12:58080/health 200 in 12 ms
    - name: app data (dr)
      result: ok
      detail: GET http://127.0.0.12:58080/api/invoices serves count 150000, max id 150000, ... as database holds
data:
  description: What the app served and what the database held (count, max_id, max_createdAt).
  returned: success and O(check_data)
  type: dict
health:
  description: Status and JSON body of the last health answer.
  returned: success
  type: dict
attempts:
  description: Attempts made.
  returned: always
  type: int
history:
  description: The last attempts, one line each.
  returned: always
  type: list
  elements: str
elapsed:
  description: Seconds until it passed.
  returned: success
  type: float
verified_at:
  description: UTC time of the passing attempt.
  returned: success
  type: str
dr_report:
  description: For the dr_timeline callback - C(checks), and C(markers.service_restored) when it passed and
    O(mark_service_restored) is set.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.auditron.dr.plugins.module_utils import appverify, pg
from ansible_collections.auditron.dr.plugins.module_utils.base import AuditronModule, postgres_argument_spec


def argument_spec():
    spec = postgres_argument_spec()
    spec.update(
        site=dict(type="str", default="app"),
        url=dict(type="str", required=True),
        token=dict(type="str", no_log=True),
        ca_bundle=dict(type="path"),
        validate_certs=dict(type="bool", default=True),
        health_path=dict(type="str", default="/health"),
        invoices_path=dict(type="str", default="/api/invoices"),
        check_data=dict(type="bool", default=True),
        db=dict(type="str", default="auditron"),
        schema=dict(type="str", default="public"),
        table=dict(type="str", default="Invoice"),
        id_column=dict(type="str", default="id"),
        created_column=dict(type="str", default="createdAt"),
        compare=dict(type="list", elements="str", choices=["count", "max_id", "max_createdAt"],
                     default=["count", "max_id", "max_createdAt"]),
        created_tolerance=dict(type="float", default=0.001),
        timeout=dict(type="int", default=120),
        interval=dict(type="float", default=2),
        request_timeout=dict(type="float", default=5),
        mark_service_restored=dict(type="bool", default=True),
    )
    return spec


def verify(params, progress):
    return appverify.verify_app(
        params["site"], params["url"], token=params["token"], postgres=params, db=params["db"],
        table=params["table"], schema=params["schema"], id_column=params["id_column"],
        created_column=params["created_column"], compare=params["compare"], check_data=params["check_data"],
        health_path=params["health_path"], invoices_path=params["invoices_path"], ca_bundle=params["ca_bundle"],
        validate_certs=params["validate_certs"], timeout=params["timeout"], interval=params["interval"],
        request_timeout=params["request_timeout"], tolerance=params["created_tolerance"],
        mark_service_restored=params["mark_service_restored"], progress=progress)


def main():
    module = AuditronModule(argument_spec(), supports_check_mode=True,
                            required_if=[("check_data", True, ("token",))])
    if module.params["check_data"] and not pg.HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=pg.PSYCOPG2_IMPORT_ERROR)
    module.run(verify, module.params, module.log)


if __name__ == "__main__":
    main()
