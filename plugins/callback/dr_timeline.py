# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Callback that records the phases of a DR run and writes the RTO/RPO report.

Thin on purpose: it turns Ansible events into calls on the engine
(plugins/module_utils/timeline.py), which does the arithmetic and the rendering and is
unit-tested without Ansible.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: dr_timeline
type: aggregate
short_description: Record DR phases and write the RTO/RPO report
version_added: 0.1.0
author: AUDITRON SRE (@auditron)
description:
  - Records the start, end and outcome of every phase of a disaster-recovery run and, at the
    end of the run, writes C(report.json), C(report.md) and C(report.html) into a new directory
    C(<report_dir>/<UTC timestamp>-<playbook>/); then prints one line with the path and the
    achieved RTO and RPO against the plan's targets (RTO 30 min critical services, 1 h full
    system, RPO 15 min database, overridable).
  - B(Declaring phases.) Set variables on a block, a role or a task -
    C(dr_phase) (required, the phase key), C(dr_phase_title) (what people read),
    C(dr_phase_plan_step) (the plan step it implements, text), C(dr_phase_budget_minutes)
    (the plan's budget for it). Values must be plain; one still containing C({{) is ignored
    because a callback sees variables untemplated. Task variables win over block variables,
    which win over role variables and role parameters.
  - B(The plan's phases.) C(dr_plan_phase) names a phase of the plan as written once in
    C(plugins/module_utils/drplan.py), for example V(scenario_2.restore_db) - the phase key
    (V(restore_db)), title, plan step and budget come from there unless the C(dr_phase*)
    variables beside it say otherwise.
  - A phase starts when its first task starts and ends with the last result of its tasks.
    A phase whose tasks were all skipped is C(skipped).
  - B(Failures.) A failed task makes its phase C(failed) only if the failure was final. A
    failure under C(ignore_errors) never counts. A failure handled by a C(rescue) section is
    kept in the phase detail as "rescued" and the phase stays C(ok). The rule used to tell
    them apart is Ansible's own count - per host, the last N failures are final where N is the
    host's failed plus unreachable count in the play recap; earlier ones were rescued.
    When the run fails, the report names the failed phase, the task and its message.
  - B(Contributing data.) Any task result with a top-level C(dr_report) mapping, and any
    C(ansible.builtin.set_fact) of C(dr_report) (or, inside a role, of C(<role>_dr_report)), is merged into the report (mappings merged
    deeply, lists extended, other values replaced). Each result is one fragment - do not
    accumulate into the fact yourself. Known keys - C(markers) (C(incident_start),
    C(service_restored), C(recovery_point), optional C(incident_detected), C(recovery_started),
    C(full_system_restored), C(files_recovery_point); ISO 8601 times), C(targets)
    (C(rto_critical_minutes), C(rto_full_minutes), C(rpo_minutes), C(rpo_files_minutes)),
    C(plan_total_budget_minutes), C(phase_detail) (text added to the current phase),
    C(scenario), C(site), C(mode), C(backup_used), C(checks) (list of C(name), C(result)
    ok or failed, C(detail)), C(dns_change), C(notes), C(lessons). Other keys are kept under
    "Other details". Results of loops contribute per item; a task that runs on several hosts
    contributes once per host, so give report data C(run_once).
  - B(Secrets.) Results marked C(no_log) (or censored) are never read. Strings listed in
    O(redact) are replaced by C(********) in everything written.
  - Achieved RTO is C(service_restored - incident_start) (the run start when C(incident_start)
    is unknown, which the report says); achieved RPO is C(incident_start - recovery_point),
    "unknown" when either is missing.
  - No report is written when the run declared no phase. A run with C(--check) says so in the
    report's notes, since its times are not those of a recovery.
  - AWX - a callback cannot call C(set_stats); the report carries a C(set_stats) section with
    the key figures (C(rto_seconds), C(rpo_seconds), C(rto_met), C(rpo_met),
    C(recovery_point), C(backup_used), C(report_path)).
requirements:
  - Enabled in the C([defaults] callbacks_enabled) list of C(ansible.cfg), or with the
    E(ANSIBLE_CALLBACKS_ENABLED=auditron.dr.dr_timeline) environment variable.
options:
  report_dir:
    description:
      - Directory under which each run gets its own report directory.
      - A relative path is taken from the current directory (from the directory of the
        C(ansible.cfg) when set there).
    type: path
    default: reports
    env:
      - name: AUDITRON_DR_REPORT_DIR
    ini:
      - section: auditron_dr
        key: report_dir
  redact:
    description:
      - Strings (for example passwords or tokens a playbook might echo into C(dr_report)) to
        replace by C(********) in every report file, comma-separated in the environment.
      - Only from the environment, so secrets stay out of C(ansible.cfg).
    type: list
    elements: str
    default: []
    env:
      - name: AUDITRON_DR_REDACT
"""

EXAMPLES = r"""
# ansible.cfg
# [defaults]
# callbacks_enabled = auditron.dr.dr_timeline
# [auditron_dr]
# report_dir = reports

# In a playbook:
- name: Restore database (plan scenario 1, step 4)
  vars:
    dr_phase: restore_database
    dr_phase_title: Restore database
    dr_phase_plan_step: "Scenario 1, step 4: Restore Database"
    dr_phase_budget_minutes: 15
  block:
    - name: Restore beside production
      ansible.builtin.command: /bin/true

    - name: Tell the report what was restored
      ansible.builtin.set_fact:
        dr_report:
          backup_used: {id: "20261124-020000F", repository: repo2}
          markers:
            recovery_point: "2026-11-24T01:58:12Z"
"""

import os

from ansible import constants as C
from ansible import context
from ansible.plugins.callback import CallbackBase

from ansible_collections.auditron.dr.plugins.module_utils import drplan
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, utc_now
from ansible_collections.auditron.dr.plugins.module_utils.timeline import Timeline
from ansible_collections.auditron.dr.plugins.module_utils.timeline_render import summary_line, write_report

_PHASE_VARS = ("dr_phase", "dr_phase_title", "dr_phase_plan_step", "dr_phase_budget_minutes", "dr_plan_phase")
_UNSEEN = object()


def _plain(value):
    """A variable value the callback can use as it is, or None (absent or still a template)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = str(value)  # drop 2.19's data tags: an exact str from here on
        if "{{" in value or "{%" in value:
            return None
        return value.strip() or None
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    return None


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "auditron.dr.dr_timeline"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super(CallbackModule, self).__init__(display=display)
        self._timeline = Timeline()
        self._playbook_name = None
        self._task_phase = {}     # task uuid -> phase name (or None: no phase)
        self._warned = set()

    # -- phases ----------------------------------------------------------------------------

    def _warn_once(self, text):
        if text not in self._warned:
            self._warned.add(text)
            self._display.warning("dr_timeline: %s" % text)

    def _declaration(self, task):
        """The dr_phase* variables in force for `task`: role < block < task."""
        found = {}
        role = getattr(task, "_role", None)
        if role is not None:
            try:
                role_vars = role.get_vars(include_params=True)
            except Exception:  # pylint: disable=broad-except
                role_vars = {}   # a role we cannot read must not break the run
            found.update((k, role_vars[k]) for k in _PHASE_VARS if k in role_vars)
        task_vars = task.get_vars()
        found.update((k, task_vars[k]) for k in _PHASE_VARS if k in task_vars)
        self._fill_from_plan(found, task)
        name = _plain(found.get("dr_phase"))
        if name is None:
            if found.get("dr_phase") is not None:
                self._warn_once("dr_phase of task %r is a template or not text: ignored" % task.get_name())
            return None
        budget = _plain(found.get("dr_phase_budget_minutes"))
        budget_seconds = None
        if budget is not None:
            try:
                budget_seconds = float(budget) * 60.0
            except ValueError:
                self._warn_once("dr_phase_budget_minutes %r of phase %s is not a number: ignored" % (budget, name))
        title = _plain(found.get("dr_phase_title"))
        plan_step = _plain(found.get("dr_phase_plan_step"))
        return {"name": str(name), "title": str(title) if title is not None else None,
                "plan_step": str(plan_step) if plan_step is not None else None, "budget_seconds": budget_seconds}

    def _fill_from_plan(self, found, task):
        """dr_plan_phase names a row of the plan (module_utils/drplan): what the task does not declare
        itself comes from there."""
        plan_phase = _plain(found.pop("dr_plan_phase", None))
        if plan_phase is None:
            return
        row = drplan.lookup(str(plan_phase))
        if row is None:
            self._warn_once("dr_plan_phase %r of task %r is not a phase of the plan: ignored"
                            % (plan_phase, task.get_name()))
            return
        for var, key in (("dr_phase", "name"), ("dr_phase_title", "title"), ("dr_phase_plan_step", "plan_step"),
                         ("dr_phase_budget_minutes", "budget_minutes")):
            if found.get(var) is None and row[key] is not None:
                found[var] = row[key]

    def _phase_of(self, task):
        phase = self._task_phase.get(task._uuid, _UNSEEN)
        if phase is _UNSEEN:
            declaration = self._declaration(task)
            phase = declaration["name"] if declaration else None
            self._task_phase[task._uuid] = phase
        return phase

    def _task_started(self, task):
        declaration = self._declaration(task)
        self._task_phase[task._uuid] = declaration["name"] if declaration else None
        if declaration:
            self._timeline.start_task(declaration["name"], utc_now(), task_name=task.get_name(),
                                      title=declaration["title"], plan_step=declaration["plan_step"],
                                      budget_seconds=declaration["budget_seconds"])

    # -- results -----------------------------------------------------------------------------

    def _merge_data(self, result, phase):
        data = result.result
        if data.get("_ansible_no_log") or "censored" in data:
            return   # no_log: the data is not ours to keep
        fragments = [data.get("dr_report")]
        facts = data.get("ansible_facts")
        if isinstance(facts, dict):
            # Roles name their facts after themselves (ansible-lint var-naming): they set
            # <role>_dr_report, which counts as a dr_report too.
            fragments.extend(value for name, value in sorted(facts.items())
                             if name == "dr_report" or name.endswith("_dr_report"))
        for fragment in fragments:
            if fragment is None:
                continue
            if isinstance(fragment, dict):
                self._timeline.merge(fragment, phase_name=phase)
            else:
                self._warn_once("dr_report of task %r is not a mapping: ignored" % result.task.get_name())

    @staticmethod
    def _message(data):
        if data.get("censored"):
            return "(output hidden by no_log)"
        message = data.get("msg") or data.get("reason") or ""
        for item in data.get("results") or []:
            if isinstance(item, dict) and item.get("failed") and item.get("msg"):
                message = "%s: %s" % (message or "an item failed", item.get("msg"))
                break
        if not message and data.get("stderr"):
            message = str(data["stderr"]).strip().splitlines()[-1]
        if not message and data.get("rc") is not None:
            message = "rc=%s" % data["rc"]
        return str(message or "failed")

    def _record(self, result, status):
        phase = self._phase_of(result.task)
        self._merge_data(result, phase)
        message = self._message(result.result) if status in ("failed", "unreachable") else None
        self._timeline.record_result(phase, utc_now(), status, task_name=result.task.get_name(),
                                     host=result.host.get_name(), message=message)

    # -- Ansible events ------------------------------------------------------------------------

    def v2_playbook_on_start(self, playbook):
        # Several playbooks on one command line make one run and one report, named after the first.
        if self._playbook_name is None:
            self._playbook_name = os.path.basename(getattr(playbook, "_file_name", None) or "run")
            self._timeline.playbook = self._playbook_name
            self._timeline.started_at = utc_now()
            if context.CLIARGS.get("check"):
                self._timeline.merge({"notes": ["Run with --check: nothing was changed, so these times are not "
                                                "those of a real recovery."]})

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task_started(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._task_started(task)

    def v2_playbook_on_cleanup_task_start(self, task):
        self._task_started(task)

    def v2_runner_on_ok(self, result):
        self._record(result, "changed" if result.result.get("changed") else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "ignored" if ignore_errors else "failed")

    def v2_runner_on_skipped(self, result):
        self._record(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "ignored" if getattr(result.task, "ignore_unreachable", False) else "unreachable")

    def v2_runner_item_on_ok(self, result):
        # The loop's final result carries no top-level dr_report: items contribute here.
        self._merge_data(result, self._phase_of(result.task))

    def v2_runner_item_on_failed(self, result):
        self._merge_data(result, self._phase_of(result.task))

    def v2_playbook_on_stats(self, stats):
        timeline = self._timeline
        if not timeline.phases:
            return   # not a DR run: nothing to report
        now = utc_now()
        hosts = set(stats.processed) | set(stats.failures) | set(stats.dark)
        final = dict((host, stats.failures.get(host, 0) + stats.dark.get(host, 0)) for host in hosts)
        timeline.finish(now, final_failures=final)
        report = timeline.to_report(now=now)
        secrets = [s for s in (self.get_option("redact") or []) if s]
        report_dir = self.get_option("report_dir") or "reports"
        try:
            paths = write_report(report_dir, self._playbook_name, report, now=now, secrets=secrets)
        except (DRError, OSError) as exc:
            self._display.warning("dr_timeline: the DR report could not be written to %s: %s" % (report_dir, exc))
            return
        line = "DR report: %s — %s" % (paths["html"], summary_line(report))
        if report["failure"]:
            failure = report["failure"]
            line += " — run FAILED in %s, task %r" % (
                ("phase %s" % failure["phase"]) if failure["phase"] else "a task outside any phase", failure["task"])
        bad = report["failure"] or "missed" in (report["rto"]["verdict"], report["rpo"]["verdict"])
        for secret in secrets:
            line = line.replace(secret, "********")
        self._display.display(line, color=C.COLOR_ERROR if bad else C.COLOR_OK)
