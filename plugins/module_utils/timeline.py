# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The DR timeline: phases of a recovery run, achieved RTO/RPO against the plan, and the report.

The plan (DISASTER_RECOVERY.md) gives every scenario step a time budget and sets the
objectives: RTO 30 min for critical services and 1 h for the full system, RPO 15 min for the
database. Its monthly drill asks to "measure RTO/RPO" and its post-incident review asks for a
documented timeline. This module turns the events of one run into that measurement and that
document, so a drill produces it without anyone holding a stopwatch.

No Ansible import: the `auditron.dr.dr_timeline` callback feeds a `Timeline`, and tests feed it
fixed datetimes. Everything here is deterministic given its inputs.

How playbooks feed it (through the callback)
--------------------------------------------
- A phase is declared by variables on a block, a role or a task::

      - name: Restore the database
        vars:
          dr_phase: restore_database                  # required: the phase key
          dr_phase_title: Restore database            # optional: what people read
          dr_phase_plan_step: "Scenario 1, step 4"    # optional: the plan step it implements
          dr_phase_budget_minutes: 15                 # optional: the plan's budget for it
        block:
          - ...

  A phase starts when its first task starts and ends with the last result of its tasks.
- Data: any task result with a top-level `dr_report` dict, or `ansible.builtin.set_fact:
  dr_report: {...}`, is merged into the report (dicts deep-merged, lists extended, scalars
  replaced). Each result is one fragment: do not accumulate into the fact yourself, or lists
  are counted twice. Recognised keys:

  - `markers`: `incident_start` (failure injected or detected), `service_restored` (app
    healthy behind the name), `recovery_point` (last transaction recovered); optional
    `incident_detected`, `recovery_started`, `full_system_restored`, `files_recovery_point`.
    ISO 8601 strings.
  - `targets`: `rto_critical_minutes` (30), `rto_full_minutes` (60), `rpo_minutes` (15),
    `rpo_files_minutes` (60) to override the plan's objectives.
  - `plan_total_budget_minutes`: the scenario's "Total Time" (default: sum of phase budgets).
  - `phase_detail`: text appended to the detail of the phase the task belongs to.
  - sections shown in the report: `scenario`, `site`, `mode`, `backup_used`, `checks` (list of
    {name, result: ok|failed, detail}), `dns_change`, `notes`, `lessons`; any other key is
    kept under "Other details".

Public API: `Timeline`, `Phase`, `build_report`, `key_figures`, `redact`, `deep_merge`,
`DEFAULT_TARGETS`. The report as people read it (JSON, Markdown, HTML with its SVG chart) and
the files written after a run are in `timeline_render`, which only formats what is built here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import re

from ansible_collections.auditron.dr.plugins.module_utils import checkrow
from ansible_collections.auditron.dr.plugins.module_utils.common import (
    DRError, format_time, human_duration, parse_time, utc_now)

SCHEMA = "auditron.dr.report/1"
REDACTED = "********"

# The plan's "Recovery Objectives", in seconds.
DEFAULT_TARGETS = {
    "rto_critical_seconds": 30 * 60,
    "rto_full_seconds": 60 * 60,
    "rpo_seconds": 15 * 60,
    "rpo_files_seconds": 60 * 60,
}

MARKERS = ("incident_start", "incident_detected", "recovery_started", "service_restored",
           "full_system_restored", "recovery_point", "files_recovery_point")

# Keys of `dr_report` shown as named sections; anything else goes under "extra".
SECTIONS = ("scenario", "site", "mode", "backup_used", "checks", "dns_change", "notes", "lessons")
# Keys of `dr_report` the engine consumes itself.
CONTROL_KEYS = ("markers", "targets", "plan_total_budget_minutes", "plan_total_budget_seconds", "phase_detail")

PHASE_STATUSES = ("ok", "failed", "skipped", "running")
MET, MISSED, UNKNOWN = "met", "missed", "unknown"

_MESSAGE_LIMIT = 800


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------

def _seconds_between(later, earlier):
    return (later - earlier).total_seconds()


def _iso(moment):
    return format_time(moment) if moment is not None else None


def _parse_optional(value):
    return parse_time(value) if value not in (None, "") else None


def short_duration(seconds):
    """Targets and budgets read best round: '30 min', '1 h', '90 s'; else human_duration."""
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds >= 3600 and seconds % 3600 == 0:
        return "%d h" % (seconds // 3600)
    if seconds >= 60 and seconds % 60 == 0:
        return "%d min" % (seconds // 60)
    return human_duration(seconds)


def display_time(text):
    """How people read a report time: to the second (report.json keeps the fraction)."""
    if not text:
        return text
    return re.sub(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\.\d+Z$", r"\1Z", str(text))


def _duration_text(seconds):
    return "unknown" if seconds is None else human_duration(seconds)


def _minutes_to_seconds(value, what):
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DRError("%s %r is not a number of minutes" % (what, value))
    if number < 0:
        raise DRError("%s must not be negative (got %r)" % (what, value))
    return number * 60.0


def _clip(text, limit=_MESSAGE_LIMIT):
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def deep_merge(into, data):
    """Merge `data` into `into` in place: dicts recursively, lists extended, the rest replaced."""
    for key, value in data.items():
        current = into.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            deep_merge(current, value)
        elif isinstance(current, list):
            if isinstance(value, list):
                current.extend(copy.deepcopy(value))
            else:
                current.append(copy.deepcopy(value))
        else:
            into[key] = copy.deepcopy(value)
    return into


def redact(obj, secrets):
    """Return a copy of nested data where every occurrence of a secret string is '********'.

    Keys are redacted as well as values. Empty secrets are ignored; longer secrets are
    replaced first so one that contains another disappears whole.
    """
    needles = sorted(set(str(s) for s in (secrets or ()) if s not in (None, "")), key=len, reverse=True)
    if not needles:
        return copy.deepcopy(obj)

    def scrub(value):
        if isinstance(value, str):
            for needle in needles:
                if needle in value:
                    value = value.replace(needle, REDACTED)
            return value
        if isinstance(value, dict):
            return dict((scrub(k), scrub(v)) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return [scrub(v) for v in value]
        return value

    return scrub(obj)


# ----------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------

class Phase:
    """One phase of the run: a block/role/task group declared with `dr_phase`."""

    def __init__(self, name, start, title=None, plan_step=None, budget_seconds=None):
        self.name = name
        self.title = title or name
        self.plan_step = plan_step
        self.budget_seconds = budget_seconds
        self.start = start
        self.end = None
        self.tasks = []          # task names in order of first start, without repeats
        self.results = {"ok": 0, "changed": 0, "failed": 0, "skipped": 0, "ignored": 0, "unreachable": 0}
        self.failures = []       # dicts: task, host, message, at, final (decided by Timeline.finish)
        self.details = []

    def add_task(self, task_name, at, title=None, plan_step=None, budget_seconds=None):
        if at < self.start:
            self.start = at
        # The first declaration wins; later tasks only fill what was not given.
        if title and self.title == self.name:
            self.title = title
        if plan_step and not self.plan_step:
            self.plan_step = plan_step
        if budget_seconds is not None and self.budget_seconds is None:
            self.budget_seconds = budget_seconds
        if task_name and task_name not in self.tasks:
            self.tasks.append(task_name)

    def add_result(self, at, status):
        self.results[status] = self.results.get(status, 0) + 1
        if self.end is None or at > self.end:
            self.end = at

    def status(self, finished):
        if any(f["final"] for f in self.failures):
            return "failed"
        ran = self.results["ok"] + self.results["changed"] + self.results["ignored"] + len(self.failures)
        if ran:
            return "ok"
        if self.results["skipped"]:
            return "skipped"
        return "skipped" if finished else "running"


class Timeline:
    """Collects the events of one run; `to_report()` turns them into the report dict.

    Every method takes the time of the event explicitly, so tests use fixed datetimes.
    """

    def __init__(self, playbook=None, started_at=None, targets=None):
        self.playbook = playbook
        self.started_at = started_at
        self.finished_at = None
        self.finished = False
        self.phases = []
        self._by_name = {}
        self.loose_failures = []   # failures of tasks outside any phase
        self._failure_order = []   # every failure in arrival order, to decide which were final
        self.markers = {}
        self.targets = dict(DEFAULT_TARGETS)
        self.plan_total_budget_seconds = None
        self.data = {}
        self.warnings = []
        if targets:
            self.set_targets(targets)

    # -- feeding -----------------------------------------------------------------------------

    def phase(self, name):
        return self._by_name.get(name)

    def start_task(self, phase_name, at, task_name=None, title=None, plan_step=None, budget_seconds=None):
        """A task of `phase_name` starts: open the phase at its first task."""
        if self.started_at is None:
            self.started_at = at
        phase = self._by_name.get(phase_name)
        if phase is None:
            phase = Phase(phase_name, at, title=title, plan_step=plan_step, budget_seconds=budget_seconds)
            self.phases.append(phase)
            self._by_name[phase_name] = phase
        phase.add_task(task_name, at, title=title, plan_step=plan_step, budget_seconds=budget_seconds)
        return phase

    def record_result(self, phase_name, at, status, task_name=None, host=None, message=None):
        """One task result. status: ok, changed, skipped, ignored (failed with ignore_errors),
        failed or unreachable. `phase_name` None means the task belongs to no phase: its
        failures still count, so the report can say where a run broke."""
        if status not in ("ok", "changed", "skipped", "ignored", "failed", "unreachable"):
            raise DRError("unknown task status %r" % status)
        phase = self._by_name.get(phase_name) if phase_name else None
        if phase_name and phase is None:
            phase = self.start_task(phase_name, at, task_name=task_name)
        if phase is not None:
            phase.add_result(at, "failed" if status == "unreachable" else status)
        if status in ("failed", "unreachable"):
            failure = {"phase": phase_name, "task": task_name, "host": host, "at": at,
                       "message": _clip(message or ("host unreachable" if status == "unreachable" else "failed")),
                       "final": True}
            if phase is not None:
                phase.failures.append(failure)
            else:
                self.loose_failures.append(failure)
            self._failure_order.append(failure)

    def merge(self, data, phase_name=None):
        """Merge one `dr_report` fragment. Bad markers or targets become warnings, not errors:
        a typo in a playbook must not cost the report of a real incident."""
        if not isinstance(data, dict):
            self.warnings.append("ignored a dr_report that is not a mapping: %r" % (_clip(data, 120),))
            return
        data = copy.deepcopy(data)
        for name, value in (data.pop("markers", None) or {}).items():
            self.set_marker(name, value)
        targets = data.pop("targets", None)
        if targets:
            self.set_targets(targets)
        for key, factor in (("plan_total_budget_minutes", 60.0), ("plan_total_budget_seconds", 1.0)):
            if key in data:
                value = data.pop(key)
                try:
                    self.plan_total_budget_seconds = float(value) * factor
                except (TypeError, ValueError):
                    self.warnings.append("%s %r is not a number" % (key, value))
        detail = data.pop("phase_detail", None)
        if detail:
            phase = self._by_name.get(phase_name) if phase_name else None
            if phase is not None:
                phase.details.append(_clip(detail))
            else:
                data.setdefault("notes", []).append(str(detail))
        for key in ("notes", "lessons", "checks"):
            if key in data and not isinstance(data[key], list):
                data[key] = [data[key]]
        if isinstance(data.get("checks"), list):
            rows = [_normalise_check(c, phase_name) for c in data["checks"]]
            data["checks"] = [row for row, _warning in rows]
            self.warnings.extend(warning for _row, warning in rows if warning)
        for key in ("notes", "lessons"):
            if key in self.data and not isinstance(self.data[key], list):
                self.data[key] = [self.data[key]]
        deep_merge(self.data, data)

    def set_marker(self, name, value):
        if value in (None, ""):
            return
        try:
            self.markers[name] = parse_time(value, what="marker %s" % name)
        except DRError as exc:
            self.warnings.append(str(exc))

    def set_targets(self, targets):
        for key, value in targets.items():
            try:
                if key.endswith("_minutes"):
                    name, seconds = key[:-len("_minutes")] + "_seconds", _minutes_to_seconds(value, key)
                elif key.endswith("_seconds"):
                    name, seconds = key, _minutes_to_seconds(value, key) / 60.0
                else:
                    raise DRError("unknown target %r (use e.g. rto_critical_minutes)" % key)
                if name not in DEFAULT_TARGETS:
                    raise DRError("unknown target %r (known: %s)" % (key, ", ".join(sorted(DEFAULT_TARGETS))))
                self.targets[name] = seconds
            except DRError as exc:
                self.warnings.append(str(exc))

    def finish(self, at, final_failures=None):
        """The run ended at `at`. `final_failures` maps host -> number of failures that were not
        rescued (Ansible's stats failures + unreachable). Rescued failures do not count against
        the host, and a host's unrescued failures are its last ones (after an unrescued failure
        only `always` sections run), so per host the last N recorded failures are final and the
        earlier ones were rescued. None: every failure is final."""
        self.finished_at = at
        self.finished = True
        if final_failures is None:
            return
        by_host = {}
        for failure in self._failure_order:
            by_host.setdefault(failure["host"], []).append(failure)
        for host, failures in by_host.items():
            keep = max(0, int(final_failures.get(host, 0)))
            for index, failure in enumerate(failures):
                failure["final"] = index >= len(failures) - keep

    # -- reading -----------------------------------------------------------------------------

    def to_report(self, now=None):
        return build_report(self, now=now)


def _normalise_check(check, phase_name):
    """A check row (module_utils/checkrow) as the report keeps it: tagged with its phase, and
    with a warning when a producer did not give the one shape (the row is still shown)."""
    warning = checkrow.problem(check)
    if not isinstance(check, dict):
        check = {"name": str(check), "result": "unknown"}
    check = dict(check)
    check.setdefault("name", "check")
    check.setdefault("result", "unknown")
    check.setdefault("detail", "")
    if phase_name and "phase" not in check:
        check["phase"] = phase_name
    return check, warning


# ----------------------------------------------------------------------------------------------
# Report building: all arithmetic happens here, renderers only format
# ----------------------------------------------------------------------------------------------

def _verdict(achieved, target):
    if achieved is None or target is None:
        return UNKNOWN
    return MET if achieved <= target else MISSED


def _objective(key, label, kind, target, achieved, basis, note=None):
    return {"key": key, "label": label, "kind": kind, "target_seconds": target,
            "achieved_seconds": achieved, "verdict": _verdict(achieved, target),
            "basis": basis, "note": note}


def _first_phase_after(phases, moment):
    for phase in phases:
        if moment is None or phase.start >= moment:
            return phase
    return phases[0] if phases else None


def build_report(timeline, now=None):
    """The report as plain JSON-ready data (times as ISO 8601 strings)."""
    now = now or utc_now()
    markers = dict(timeline.markers)
    phases = sorted(timeline.phases, key=lambda p: p.start)
    run_start = timeline.started_at or (phases[0].start if phases else None)
    run_end = timeline.finished_at or now
    targets = timeline.targets
    warnings = list(timeline.warnings)

    final_failures = [f for f in timeline._failure_order if f["final"]]
    if timeline.finished:
        run_status = "failed" if final_failures else "succeeded"
    else:
        run_status = "running"

    # --- RTO -----------------------------------------------------------------------------
    incident = markers.get("incident_start")
    restored = markers.get("service_restored")
    if incident is not None:
        rto_origin, origin_basis = incident, "incident_start"
    else:
        rto_origin, origin_basis = run_start, "start of the run"
    origin_note = None
    if incident is None:
        origin_note = ("incident_start was not given: RTO is counted from the start of the run, "
                       "so the time before anyone ran the playbook is missing from it")
    rto_note = origin_note
    rto_achieved = None
    if restored is None:
        rto_note = "service_restored was not marked: the service was not confirmed healthy by this run"
        if run_status == "failed":
            rto_note = "the run failed before the service was restored"
    elif rto_origin is not None:
        rto_achieved = max(0.0, _seconds_between(restored, rto_origin))
    rto_critical = _objective(
        "rto_critical", "RTO, critical services", "rto", targets["rto_critical_seconds"], rto_achieved,
        "service_restored - %s" % origin_basis, rto_note)
    # A run that has already used up the target without restoring the service has missed it.
    if rto_achieved is None and rto_origin is not None and run_status != "running":
        elapsed = _seconds_between(run_end, rto_origin)
        if elapsed > targets["rto_critical_seconds"]:
            rto_critical["verdict"] = MISSED
            rto_critical["note"] = (rto_critical["note"] or "") + " (%s elapsed without it)" % human_duration(elapsed)

    full_restored = markers.get("full_system_restored") or restored
    full_basis = "%s - %s" % ("full_system_restored" if markers.get("full_system_restored") else "service_restored",
                              origin_basis)
    rto_full_achieved = None
    if full_restored is not None and rto_origin is not None:
        rto_full_achieved = max(0.0, _seconds_between(full_restored, rto_origin))
    rto_full = _objective("rto_full", "RTO, full system", "rto", targets["rto_full_seconds"], rto_full_achieved,
                          full_basis, None if rto_full_achieved is not None else rto_critical["note"])

    # --- RPO -----------------------------------------------------------------------------
    def rpo(key, label, point_name, target):
        point = markers.get(point_name)
        if incident is None or point is None:
            missing = [n for n, v in (("incident_start", incident), (point_name, point)) if v is None]
            return _objective(key, label, "rpo", target, None, "incident_start - %s" % point_name,
                              "unknown: %s not given" % " and ".join(missing))
        loss = _seconds_between(incident, point)
        note = None
        if loss < 0:
            note = "%s is after incident_start: no committed data was lost" % point_name
            loss = 0.0
        return _objective(key, label, "rpo", target, loss, "incident_start - %s" % point_name, note)

    rpo_db = rpo("rpo_database", "RPO, database", "recovery_point", targets["rpo_seconds"])
    objectives = [rto_critical, rto_full, rpo_db]
    if markers.get("files_recovery_point") is not None:
        objectives.append(rpo("rpo_files", "RPO, file storage", "files_recovery_point", targets["rpo_files_seconds"]))

    # --- phases and budgets -------------------------------------------------------------
    # A rescue that rolls back and then fails the run (outside any phase) hides where it went
    # wrong: the phase of the last rescued failure is the one that failed.
    rolled_back_phase = None
    if run_status == "failed" and not any(f.get("phase") for f in final_failures):
        rescued_in_phases = [f for f in timeline._failure_order if not f["final"] and f.get("phase")]
        if rescued_in_phases:
            rolled_back_phase = rescued_in_phases[-1]["phase"]
    phase_rows = []
    for index, phase in enumerate(phases):
        end = phase.end or (phase.start if timeline.finished else now)
        duration = max(0.0, _seconds_between(end, phase.start))
        status = phase.status(timeline.finished)
        if phase.name == rolled_back_phase:
            status = "failed"
        over = phase.budget_seconds is not None and duration > phase.budget_seconds
        details = list(phase.details)
        for failure in phase.failures:
            if failure["final"]:
                details.append("FAILED: task %r on %s: %s" % (failure["task"], failure["host"], failure["message"]))
            else:
                details.append("rescued: task %r failed on %s: %s"
                               % (failure["task"], failure["host"], failure["message"]))
        phase_rows.append({
            "index": index + 1,
            "name": phase.name,
            "title": phase.title,
            "plan_step": phase.plan_step,
            "budget_seconds": phase.budget_seconds,
            "start": _iso(phase.start),
            "end": _iso(phase.end),
            "duration_seconds": duration,
            "status": status,
            "over_budget": bool(over),
            "budget_used_percent": (round(100.0 * duration / phase.budget_seconds, 1)
                                    if phase.budget_seconds else None),
            "tasks": list(phase.tasks),
            "results": dict(phase.results),
            "detail": "\n".join(details),
        })

    budgeted = [(p, row) for p, row in zip(phases, phase_rows) if row["budget_seconds"] is not None]
    total_budget = timeline.plan_total_budget_seconds
    if total_budget is None and budgeted:
        total_budget = sum(row["budget_seconds"] for _p, row in budgeted)
    span = budgeted or list(zip(phases, phase_rows))
    actual_total = None
    if span:
        first = min(p.start for p, _row in span)
        last = max((p.end or p.start) for p, _row in span)
        actual_total = max(0.0, _seconds_between(last, first))
    budget = {
        "total_budget_seconds": total_budget,
        "actual_seconds": actual_total,
        "basis": ("wall clock from the start of the first budgeted phase to the end of the last"
                  if budgeted else "wall clock of all phases (no phase has a budget)"),
        "over_budget": bool(total_budget is not None and actual_total is not None and actual_total > total_budget),
        "phases_over_budget": [row["name"] for row in phase_rows if row["over_budget"]],
    }

    # --- failure, timeline of events ---------------------------------------------------
    def failure_view(failure):
        phase = timeline.phase(failure["phase"]) if failure["phase"] else None
        return {"phase": failure["phase"], "phase_title": phase.title if phase else None,
                "task": failure["task"], "host": failure["host"], "message": failure["message"],
                "at": _iso(failure["at"])}

    failures = [failure_view(f) for f in final_failures]
    rescued = [failure_view(f) for f in timeline._failure_order if not f["final"]]

    recovery_phase = _first_phase_after(phases, incident)
    recovery_started = markers.get("recovery_started") or (recovery_phase.start if recovery_phase else None)
    detected = markers.get("incident_detected") or incident
    events = []
    if markers.get("recovery_point"):
        events.append((markers["recovery_point"], "Recovery point: last transaction recovered"))
    if incident:
        events.append((incident, "Incident start (failure happened, injected or detected)"))
    if markers.get("incident_detected"):
        events.append((markers["incident_detected"], "Incident detected"))
    for phase, row in zip(phases, phase_rows):
        events.append((phase.start, "Phase started: %s" % phase.title))
        if phase.end is not None:
            events.append((phase.end, "Phase ended (%s, %s): %s"
                           % (row["status"], human_duration(row["duration_seconds"]), phase.title)))
    for failure in final_failures:
        events.append((failure["at"], "FAILED: task %r on %s" % (failure["task"], failure["host"])))
    if restored:
        events.append((restored, "Service restored (healthy behind the name)"))
    if markers.get("full_system_restored"):
        events.append((markers["full_system_restored"], "Full system restored"))
    events.sort(key=lambda e: e[0])

    data = copy.deepcopy(timeline.data)
    sections = dict((key, data.pop(key, None)) for key in SECTIONS)
    for key in ("notes", "lessons", "checks"):
        if sections[key] is None:
            sections[key] = []
        elif not isinstance(sections[key], list):
            sections[key] = [sections[key]]

    report = {
        "schema": SCHEMA,
        "playbook": timeline.playbook,
        "generated_at": _iso(now),
        "scenario": sections["scenario"],
        "site": sections["site"],
        "mode": sections["mode"],
        "run": {
            "status": run_status,
            "start": _iso(run_start),
            "end": _iso(timeline.finished_at),
            "duration_seconds": (max(0.0, _seconds_between(run_end, run_start)) if run_start else None),
        },
        "markers": dict((name, _iso(value)) for name, value in sorted(markers.items())),
        "timeline_origin": {"at": _iso(rto_origin), "basis": origin_basis, "note": origin_note},
        "targets": dict(targets),
        "objectives": objectives,
        "rto": rto_critical,
        "rpo": rpo_db,
        "document_timeline": {
            "detected": _iso(detected),
            "recovery_initiated": _iso(recovery_started),
            "recovery_initiated_basis": ("recovery_started" if markers.get("recovery_started")
                                         else "start of the first phase after the incident"),
            "service_restored": _iso(restored),
            "events": [{"at": _iso(at), "event": text} for at, text in events],
        },
        "phases": phase_rows,
        "budget": budget,
        "failure": _headline_failure(failures, rescued, rolled_back_phase),
        "failures": failures,
        "rescued_failures": rescued,
        "checks": sections["checks"],
        "backup_used": sections["backup_used"],
        "dns_change": sections["dns_change"],
        "notes": sections["notes"],
        "lessons": sections["lessons"],
        "extra": data,
        "warnings": warnings,
        "report_path": None,
    }
    report["set_stats"] = _set_stats_section(report)
    return report


def _flat_backup(value):
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, dict):
        if value.get("backup") not in (None, "") and "repository" in value:
            # What the pgbackrest_restore engine returns: say it the way an operator reads it.
            said = "%s from repo%s" % (value["backup"], value["repository"])
            fallbacks = value.get("fallbacks") or []
            if fallbacks:
                said += " (passed over: %s)" % "; ".join(
                    "%s %s" % (f.get("name", "?"), f.get("reason", "")) if isinstance(f, dict) else str(f)
                    for f in fallbacks)
            return said
        for key in ("id", "label", "name", "backup_id", "path"):
            if value.get(key) not in (None, ""):
                return str(value[key])
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def key_figures(report):
    """The figures AWX and dashboards want, flat: for `ansible.builtin.set_stats` or metrics."""
    report = _as_report(report)
    rto, rpo = report["rto"], report["rpo"]
    return {
        "rto_seconds": rto["achieved_seconds"],
        "rpo_seconds": rpo["achieved_seconds"],
        "rto_met": None if rto["verdict"] == UNKNOWN else rto["verdict"] == MET,
        "rpo_met": None if rpo["verdict"] == UNKNOWN else rpo["verdict"] == MET,
        "rto_target_seconds": rto["target_seconds"],
        "rpo_target_seconds": rpo["target_seconds"],
        "recovery_point": report["markers"].get("recovery_point"),
        "backup_used": _flat_backup(report.get("backup_used")),
        "run_status": report["run"]["status"],
        "report_path": report.get("report_path"),
    }


def _headline_failure(failures, rescued, rolled_back_phase):
    """The failure a reader should see first. When a rescue rolled back and then failed the
    run outside any phase, that is the phase whose failure was rescued, not the final fail."""
    if not failures:
        return None
    if rolled_back_phase:
        origin = [f for f in rescued if f["phase"] == rolled_back_phase]
        if origin:
            headline = dict(origin[-1])
            headline["run_ended_by"] = {"task": failures[0]["task"], "message": failures[0]["message"]}
            return headline
    return failures[0]


def _set_stats_section(report):
    return {
        "data": key_figures(report),
        "how": ("A callback cannot call set_stats. To publish these figures as AWX artifacts, read "
                "report.json after the run, or compute them in the playbook with "
                "ansible.builtin.set_stats: {data: {dr_rto_seconds: ..., dr_rto_met: ...}}; the names above "
                "are the ones key_figures() returns."),
    }


def _as_report(report):
    return report.to_report() if isinstance(report, Timeline) else report
