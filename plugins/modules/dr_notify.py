#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: dr_notify
short_description: Tell people a DR scenario started, succeeded or failed
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - Posts one notification about a disaster-recovery run to a webhook - a generic JSON object (O(format=json))
    or a Slack-compatible message with C(text) and C(blocks) (O(format=slack); Slack, Mattermost and Rocket.Chat
    incoming webhooks take it).
  - The notification carries the scenario, site, status, the achieved RTO and RPO against target when known, the
    report's path, and for a failure the phase and what went wrong.
  - B(A notification never stops a recovery.) Delivery is retried with exponential backoff on connection errors,
    timeouts, HTTP 408, 425, 429 and 5xx (a C(Retry-After) header is honoured up to a minute). When it still
    fails the module warns and returns RV(delivered=false) without failing, unless O(required=true).
  - The result carries a C(dr_report) fragment, so the C(auditron.dr.dr_timeline) report lists who was notified
    of what, and whether it arrived.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Builds the payload and returns it in RV(payload); nothing is sent.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  url:
    description: The webhook URL. Never logged, and never shown beyond its scheme and host.
    type: str
    required: true
  format:
    description: V(json) for any webhook receiver, V(slack) for Slack-compatible incoming webhooks.
    type: str
    choices: [json, slack]
    default: json
  status:
    description: What happened.
    type: str
    choices: [started, succeeded, failed]
    required: true
  scenario:
    description: The scenario, for example V(database corruption), V(complete region failure) or V(monthly drill).
    type: str
  site:
    description: The site the run recovers or runs at.
    type: str
  playbook:
    description: The playbook, for example V(failover.yml).
    type: str
  phase:
    description: For a failure, the phase that failed.
    type: str
  detail:
    description: For a failure, what went wrong (the notification's C(failure_message)); otherwise a note shown with it.
    type: str
  report_path:
    description: Where people find the report (a path or a URL).
    type: str
  report_file:
    description:
      - A report of the C(auditron.dr.dr_timeline) callback (C(report.json) or its directory). Its achieved RTO
        and RPO, targets and verdicts, recovery point, backup used, failure, scenario and site fill the fields not
        given as options.
    type: path
  figures:
    description:
      - The same figures as a mapping, for a playbook that knows them during the run - C(rto_seconds),
        C(rto_target_seconds), C(rto_met), C(rpo_seconds), C(rpo_target_seconds), C(rpo_met), C(recovery_point),
        C(backup_used), C(report_path). Wins over O(report_file).
    type: dict
  extra:
    description: Further fields for the V(json) payload. They may not replace the module's own fields.
    type: dict
  headers:
    description: Further HTTP headers, for example an C(Authorization) header. Never logged.
    type: dict
  attempts:
    description: How many times to try before giving up.
    type: int
    default: 3
  backoff_seconds:
    description: Wait before the second attempt; it doubles for each further one.
    type: float
    default: 2
  timeout:
    description: Seconds to wait for each attempt.
    type: float
    default: 10
  required:
    description: Fail the task when the notification cannot be delivered. By default it is a warning.
    type: bool
    default: false
  ca_bundle:
    description: CA bundle for the receiver's certificate.
    type: path
  validate_certs:
    description: Verify the receiver's TLS certificate.
    type: bool
    default: true
seealso:
  - module: community.general.slack
  - name: Slack incoming webhooks
    description: The message format O(format=slack) sends.
    link: https://api.slack.com/messaging/webhooks
"""

EXAMPLES = r"""
- name: Tell the on-call channel the failover starts
  auditron.dr.dr_notify:
    url: "{{ vault_slack_webhook_url }}"
    format: slack
    status: started
    scenario: complete region failure
    site: dr
    playbook: failover.yml
  run_once: true

- name: Fail over, and say so when it fails
  block:
    - name: Promote the DR database
      ansible.builtin.command: /usr/local/bin/promote-dr
      changed_when: true
  rescue:
    - name: Tell the channel it failed, and where
      auditron.dr.dr_notify:
        url: "{{ vault_slack_webhook_url }}"
        format: slack
        status: failed
        scenario: complete region failure
        site: dr
        phase: "{{ ansible_failed_task.name }}"
        detail: "{{ ansible_failed_result.msg | default('failed') }}"
      run_once: true

    - name: Keep the run failed
      ansible.builtin.fail:
        msg: Failover failed; see the notification and the report.

- name: After the monthly drill, post its report to the incident tool (a generic JSON webhook)
  auditron.dr.dr_notify:
    url: https://incidents.auditron.internal/hooks/dr
    headers:
      Authorization: "Bearer {{ vault_incident_token }}"
    status: "{{ drill_failed | ternary('failed', 'succeeded') }}"
    report_file: "{{ drill_report_dir }}"
"""

RETURN = r"""
delivered:
  description: Whether the receiver accepted the notification.
  returned: always
  type: bool
  sample: true
attempts:
  description: How many attempts were made.
  returned: always
  type: int
  sample: 1
http_status:
  description: The receiver's last HTTP status, when it answered.
  returned: when the receiver answered
  type: int
  sample: 200
target:
  description: Scheme and host of the webhook (the rest of the URL is secret).
  returned: always
  type: str
  sample: https://hooks.slack.com
payload:
  description: The JSON body sent (or, in check mode, that would be sent).
  returned: always
  type: dict
  sample:
    text: "DR complete region failure at dr succeeded — RTO 24 min 10 s (target 30 min, met)"
error:
  description: Why the notification was not delivered.
  returned: when not delivered
  type: str
  sample: "webhook https://hooks.slack.com answered HTTP 404: no_service"
dr_report:
  description: A fragment for the dr_timeline report - C(notifications), a list of one record.
  returned: always
  type: dict
"""

from ansible_collections.auditron.dr.plugins.module_utils import notify
from ansible_collections.auditron.dr.plugins.module_utils.base import AuditronModule


def argument_spec():
    return dict(
        url=dict(type="str", required=True, no_log=True),
        format=dict(type="str", choices=list(notify.FORMATS), default="json"),
        status=dict(type="str", choices=list(notify.STATUSES), required=True),
        scenario=dict(type="str"),
        site=dict(type="str"),
        playbook=dict(type="str"),
        phase=dict(type="str"),
        detail=dict(type="str"),
        report_path=dict(type="str"),
        report_file=dict(type="path"),
        figures=dict(type="dict"),
        extra=dict(type="dict"),
        headers=dict(type="dict", no_log=True),
        attempts=dict(type="int", default=3),
        backoff_seconds=dict(type="float", default=2),
        timeout=dict(type="float", default=10),
        required=dict(type="bool", default=False),
        ca_bundle=dict(type="path"),
        validate_certs=dict(type="bool", default=True),
    )


def send(params, check_mode):
    figures = notify.figures_from_report(params["report_file"]) if params["report_file"] else {}
    figures.update(params["figures"] or {})
    event = notify.build_event(
        params["status"], scenario=params["scenario"], site=params["site"], playbook=params["playbook"],
        phase=params["phase"], message=params["detail"], report_path=params["report_path"], figures=figures,
        extra=params["extra"])
    result = notify.notify(
        params["url"], event, fmt=params["format"], headers=params["headers"], attempts=params["attempts"],
        backoff_seconds=params["backoff_seconds"], timeout=params["timeout"], ca_bundle=params["ca_bundle"],
        validate_certs=params["validate_certs"], required=params["required"], check_mode=check_mode)
    return result


def main():
    module = AuditronModule(argument_spec(), supports_check_mode=True)
    module.run(send, module.params, module.check_mode)


if __name__ == "__main__":
    main()
