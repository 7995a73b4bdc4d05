#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: dr_metrics
short_description: Record a DR job's run as Prometheus metrics
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - Writes the metrics the plan's "Monitoring & Alerts" section asks for - success and failure counts, last run
    and last success times, duration, backup size, verification results, achieved RTO/RPO against target, WAL
    archive age - for one job (V(backup_database), V(backup_files), V(verify_backups), V(dr_drill),
    V(wal_archive), ...) in the Prometheus text format, and optionally pushes them to a Pushgateway.
    The alert rules installed by the C(auditron.dr.monitoring) role read them.
  - Each job and site has its own file C(auditron_dr_<job>_<site>.prom) in the node_exporter textfile-collector
    directory, so jobs never overwrite each other. The file is written under a hidden temporary name and renamed,
    mode C(0644), so the collector never reads half a file.
  - B(A call with a status is one run.) It adds one to C(auditron_dr_job_runs_total) (read from the previous
    file, so counts survive across runs), sets the last-run gauges, keeps the previous last-success time when the
    run failed, and replaces every measured gauge (size, checks, drill figures) with what this run measured.
  - B(A call without a status is an observation) (for example the WAL archive age) - it replaces only the metric
    families it writes. Writing the same values again reports no change.
  - Metric names given in O(gauges) get the C(auditron_dr_) prefix when they lack it. Names and label names are
    checked against the exposition format; label values are escaped.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Computes the text the file would get and returns it in RV(text); nothing is written or pushed.
  diff_mode:
    support: full
    details: Shows the metrics file before and after.
  platform:
    platforms: posix
options:
  job:
    description:
      - Name of the job, the C(job) label of every sample and part of the file name, for example
        V(backup_database), V(backup_files), V(verify_backups), V(dr_drill) or V(wal_archive).
      - Letters, digits, C(_), C(.) and C(-).
    type: str
    required: true
  site:
    description: The site the job ran for (the C(site) label, and part of the file name), for example V(primary).
    type: str
  status:
    description:
      - Outcome of the run. Omit to record an observation rather than a run.
      - When omitted and O(report_file) or O(figures) give the run's status, that status is used.
    type: str
    choices: [success, failure]
  timestamp:
    description: When the run finished, ISO 8601 or Unix seconds. Defaults to now.
    type: str
  duration_seconds:
    description: Wall-clock duration of the run. When O(report_file) is given, the report's run duration.
    type: float
  size_bytes:
    description:
      - Size of the backup the run wrote, as C(auditron_dr_backup_size_bytes). Needs C(location) and C(type) in
        O(labels). For several locations give one entry per location in O(gauges).
    type: float
  labels:
    description:
      - Labels added to every measured gauge of this call (O(size_bytes), O(checks), O(gauges), drill figures),
        for example C(location=s3-us-east-1) and C(type=full). Run metrics carry only C(job) and C(site).
      - C(job), C(site), C(instance) and C(status) are the module's own.
    type: dict
    default: {}
  checks:
    description:
      - Verification or restore-test checks, the shape the DR report uses - a list of C(name) and C(result)
        (V(ok) or V(failed), or a boolean). Each becomes C(auditron_dr_verification_success{check=<name>}), 1 or 0.
      - Other keys (C(detail), C(phase)) are ignored, so a report's C(checks) list can be passed as it is.
    type: list
    elements: dict
    default: []
  gauges:
    description:
      - Further gauges, each C(name), C(value), optional C(labels) and C(help). Known metrics (see the collection's
        C(docs/monitoring.md)) keep their own help text and must carry their labels - C(verification_success)
        needs C(check), C(wal_archive_age_seconds) needs C(repo), C(backup_size_bytes) needs C(location) and
        C(type).
      - A name may not end in C(_total) (counters are the module's own), nor be one of the run metrics.
    type: list
    elements: dict
    default: []
  report_file:
    description:
      - A report of the C(auditron.dr.dr_timeline) callback (C(report.json) or its directory). Its key figures
        become C(drill_rto_seconds), C(drill_rpo_seconds), C(rto_target_seconds) and C(rpo_target_seconds); its run
        status, duration and site are used when O(status), O(duration_seconds) and O(site) are not given.
      - An RTO the report marks missed because the service was never restored is written as C(+Inf).
    type: path
  figures:
    description:
      - The same key figures as a mapping (C(rto_seconds), C(rpo_seconds), C(rto_met), C(rto_target_seconds),
        C(rpo_target_seconds), C(run_status)), for a playbook that computed them itself. Wins over O(report_file).
    type: dict
  textfile_dir:
    description:
      - The node_exporter textfile-collector directory. It must exist (the C(auditron.dr.monitoring) role creates
        it); the module does not create it, so that a typing error cannot hide metrics in a directory nobody reads.
      - At least one of O(textfile_dir) and O(pushgateway_url) is required.
    type: path
  pushgateway_url:
    description:
      - Base URL of a Prometheus Pushgateway, for example V(https://pushgateway.example:9091). The metrics are sent
        to C(<url>/metrics/job/<job>/instance/<instance>), without their C(job) label (the grouping key carries it).
      - Without O(textfile_dir), the previous counters are read back from the Pushgateway.
    type: str
  pushgateway_instance:
    description: The C(instance) of the grouping key. Defaults to O(site), else the host name.
    type: str
  pushgateway_method:
    description: V(put) replaces the whole group (the default; the group is the job's complete state), V(post) only
      the metric families sent.
    type: str
    choices: [put, post]
    default: put
  pushgateway_username:
    description: User for HTTP basic authentication.
    type: str
  pushgateway_password:
    description: Password for HTTP basic authentication. Never logged.
    type: str
  pushgateway_ca_bundle:
    description: CA bundle for the Pushgateway's certificate.
    type: path
  pushgateway_validate_certs:
    description: Verify the Pushgateway's TLS certificate.
    type: bool
    default: true
  pushgateway_timeout:
    description: Seconds to wait for each attempt.
    type: float
    default: 10
  pushgateway_required:
    description:
      - Fail when the push fails. By default a failed push is a warning - a monitoring outage must not fail a
        backup - and the "no backup in 25 hours" alert still catches metrics that never arrive.
    type: bool
    default: false
notes:
  - Scrape the textfile collector (and the Pushgateway) with C(honor_labels=true), or Prometheus renames the C(job)
    label to C(exported_job) and the alert rules, which select on C(job), see nothing. The rules' own
    C(AuditronDRBackupMetricsAbsent) alert fires in that case.
seealso:
  - name: Text exposition format
    description: The format the files and pushes use.
    link: https://prometheus.io/docs/instrumenting/exposition_formats/
  - name: node_exporter textfile collector
    description: How the directory is read.
    link: https://github.com/prometheus/node_exporter#textfile-collector
"""

EXAMPLES = r"""
- name: Record a successful database backup and its size in each location
  auditron.dr.dr_metrics:
    job: backup_database
    site: primary
    status: success
    duration_seconds: "{{ backup.duration_seconds }}"
    gauges:
      - name: backup_size_bytes
        value: "{{ backup.size_bytes }}"
        labels: {location: s3-us-east-1, type: full}
      - name: backup_size_bytes
        value: "{{ backup.size_bytes }}"
        labels: {location: s3-eu-west-1, type: full}
    textfile_dir: /var/lib/prometheus/node-exporter

- name: Record a failed backup (in the rescue section of the backup block)
  auditron.dr.dr_metrics:
    job: backup_database
    site: primary
    status: failure
    textfile_dir: /var/lib/prometheus/node-exporter

- name: Record the weekly verification, one gauge per check
  auditron.dr.dr_metrics:
    job: verify_backups
    site: dr
    status: "{{ 'success' if verify.failed_checks | length == 0 else 'failure' }}"
    checks: "{{ verify.checks }}"
    textfile_dir: /var/lib/prometheus/node-exporter

- name: Record the WAL archive age pgBackRest reports, and push it too
  auditron.dr.dr_metrics:
    job: wal_archive
    site: primary
    status: success
    gauges:
      - name: wal_archive_age_seconds
        value: "{{ item.archive_age_seconds }}"
        labels: {repo: "{{ item.repo }}"}
    textfile_dir: /var/lib/prometheus/node-exporter
    pushgateway_url: https://pushgateway.auditron.internal:9091
    pushgateway_username: auditron
    pushgateway_password: "{{ vault_pushgateway_password }}"
  loop: "{{ pgbackrest_info.repositories }}"

- name: After the monthly drill, publish its achieved RTO/RPO from the report
  auditron.dr.dr_metrics:
    job: dr_drill
    site: dr
    report_file: "{{ drill_report_dir }}/report.json"
    textfile_dir: /var/lib/prometheus/node-exporter
"""

RETURN = r"""
path:
  description: The metrics file, when O(textfile_dir) is given.
  returned: always
  type: str
  sample: /var/lib/prometheus/node-exporter/auditron_dr_backup_database_primary.prom
text:
  description: The metrics the file holds after the call (in check mode, would hold).
  returned: always
  type: str
  sample: |
    # HELP auditron_dr_last_run_success 1 if the job's last run succeeded, 0 if it failed.
    # TYPE auditron_dr_last_run_success gauge
    auditron_dr_last_run_success{job="backup_database",site="primary"} 1
status:
  description: The run's status (V(success), V(failure)), or null for an observation.
  returned: always
  type: str
  sample: success
job_runs:
  description: The job's run counts after this call.
  returned: always
  type: dict
  sample: {success: 41, failure: 2}
samples:
  description: Number of samples written.
  returned: always
  type: int
  sample: 9
pushed:
  description: Whether the metrics were pushed to the Pushgateway.
  returned: always
  type: bool
  sample: true
push_url:
  description: Where the metrics were pushed, scheme and host only, then the grouping path.
  returned: when O(pushgateway_url) is given
  type: str
  sample: https://pushgateway.auditron.internal:9091/metrics/job/backup_database/instance/primary
"""

from ansible_collections.auditron.dr.plugins.module_utils import metrics
from ansible_collections.auditron.dr.plugins.module_utils.base import AuditronModule


def argument_spec():
    return dict(
        job=dict(type="str", required=True),
        site=dict(type="str"),
        status=dict(type="str", choices=["success", "failure"]),
        timestamp=dict(type="str"),
        duration_seconds=dict(type="float"),
        size_bytes=dict(type="float"),
        labels=dict(type="dict", default={}),
        checks=dict(type="list", elements="dict", default=[]),
        gauges=dict(type="list", elements="dict", default=[]),
        report_file=dict(type="path"),
        figures=dict(type="dict"),
        textfile_dir=dict(type="path"),
        pushgateway_url=dict(type="str"),
        pushgateway_instance=dict(type="str"),
        pushgateway_method=dict(type="str", choices=["put", "post"], default="put"),
        pushgateway_username=dict(type="str"),
        pushgateway_password=dict(type="str", no_log=True),
        pushgateway_ca_bundle=dict(type="path"),
        pushgateway_validate_certs=dict(type="bool", default=True),
        pushgateway_timeout=dict(type="float", default=10),
        pushgateway_required=dict(type="bool", default=False),
    )


def record(params, check_mode, diff):
    pushgateway = None
    if params["pushgateway_url"]:
        pushgateway = dict(url=params["pushgateway_url"], instance=params["pushgateway_instance"],
                           method=params["pushgateway_method"], username=params["pushgateway_username"],
                           password=params["pushgateway_password"], ca_bundle=params["pushgateway_ca_bundle"],
                           validate_certs=params["pushgateway_validate_certs"], timeout=params["pushgateway_timeout"],
                           required=params["pushgateway_required"])
    result = metrics.write_job_metrics(
        params["job"], site=params["site"], status=params["status"], timestamp=params["timestamp"],
        duration_seconds=params["duration_seconds"], size_bytes=params["size_bytes"], labels=params["labels"],
        checks=params["checks"], gauges=params["gauges"], report_file=params["report_file"],
        figures=params["figures"], textfile_dir=params["textfile_dir"], pushgateway=pushgateway,
        check_mode=check_mode, diff=diff)
    return result


def main():
    module = AuditronModule(argument_spec(), supports_check_mode=True,
                            required_one_of=[["textfile_dir", "pushgateway_url"]])
    module.run(record, module.params, module.check_mode, module.diff_mode)


if __name__ == "__main__":
    main()
