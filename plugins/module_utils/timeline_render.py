# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The DR report as people read it: JSON, Markdown, HTML with an SVG Gantt chart, and the
directory of report files a run leaves behind.

Every figure is computed by `timeline.build_report`; this file only formats a finished report
(or a `Timeline`, which it turns into one). No Ansible import, deterministic given its input.

Public API: `render_json`, `render_markdown`, `render_html`, `render_gantt_svg`, `summary_line`,
`write_report`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import datetime
import errno
import html
import json
import os
import re

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, human_duration, parse_time, utc_now
from ansible_collections.auditron.dr.plugins.module_utils.timeline import (
    MET, MISSED, SCHEMA, UNKNOWN, _as_report, _duration_text, _flat_backup, _seconds_between, _set_stats_section,
    display_time, redact, short_duration)


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------

def render_json(report):
    return json.dumps(_as_report(report), indent=2, sort_keys=True, default=str) + "\n"


def _verdict_word(verdict):
    return {MET: "met", MISSED: "MISSED", UNKNOWN: "unknown"}.get(verdict, str(verdict))


def _headline(report):
    """One line a person reads first."""
    rto, rpo = report["rto"], report["rpo"]
    return "RTO %s (target %s, %s), RPO %s (target %s, %s)" % (
        _duration_text(rto["achieved_seconds"]), short_duration(rto["target_seconds"]), _verdict_word(rto["verdict"]),
        _duration_text(rpo["achieved_seconds"]), short_duration(rpo["target_seconds"]), _verdict_word(rpo["verdict"]))


def summary_line(report):
    report = _as_report(report)
    return _headline(report)


def _title(report):
    name = report.get("playbook") or "run"
    return "DR report: %s" % os.path.basename(str(name))


def _failure_sentence(failure):
    where = ("phase %s (%s)" % (failure["phase"], failure["phase_title"])) if failure["phase"] else "a task outside any phase"
    return "failed in %s, task \"%s\" on %s: %s" % (where, failure["task"], failure["host"], failure["message"])


# -- Markdown ----------------------------------------------------------------------------------

def _md(text):
    """Table-cell safe: no pipes or line breaks from playbook data break the table."""
    text = "" if text is None else str(text)
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;")
    return text.replace("\r", "").replace("\n", "<br>")


def _md_verdict(verdict):
    return {MET: "✅ met", MISSED: "❌ **MISSED**", UNKNOWN: "❔ unknown"}.get(verdict, _md(verdict))


def _md_value(value, indent=""):
    """Any JSON value as Markdown list lines."""
    lines = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append("%s- **%s**:" % (indent, _md(key)))
                lines.extend(_md_value(item, indent + "  "))
            else:
                lines.append("%s- **%s**: %s" % (indent, _md(key), _md(item)))
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)):
                lines.append("%s-" % indent)
                lines.extend(_md_value(item, indent + "  "))
            else:
                lines.append("%s- %s" % (indent, _md(item)))
    else:
        lines.append("%s%s" % (indent, _md(value)))
    return lines


def render_markdown(report):
    report = _as_report(report)
    rto, rpo = report["rto"], report["rpo"]
    out = ["# %s" % _md(_title(report)), ""]
    facts = [("Scenario", report.get("scenario")), ("Site", report.get("site")), ("Mode", report.get("mode")),
             ("Run", report["run"]["status"]), ("Generated", display_time(report.get("generated_at")))]
    out.append(" · ".join("%s: **%s**" % (k, _md(v)) for k, v in facts if v not in (None, "")))
    out.append("")
    out.append("> %s" % _md(_headline(report)))
    out.append("")
    for failure in report["failures"]:
        out.append("> ❌ **Run %s**" % _md(_failure_sentence(failure)))
        out.append("")

    out += ["## Summary", "", "| Objective | Target | Achieved | Verdict | Measured as |", "|---|---|---|---|---|"]
    for objective in report["objectives"]:
        out.append("| %s | %s | %s | %s | %s |" % (
            _md(objective["label"]), short_duration(objective["target_seconds"]),
            _duration_text(objective["achieved_seconds"]), _md_verdict(objective["verdict"]),
            _md(objective["basis"] + (" — " + objective["note"] if objective["note"] else ""))))
    budget = report["budget"]
    out.append("| Plan budget (all steps) | %s | %s | %s | %s |" % (
        short_duration(budget["total_budget_seconds"]), _duration_text(budget["actual_seconds"]),
        "⚠️ **over budget**" if budget["over_budget"] else ("within budget" if budget["total_budget_seconds"] else "-"),
        _md(budget["basis"])))
    out.append("")
    out.append("- **Recovery point** (last transaction recovered): %s" % _md(display_time(report["markers"].get("recovery_point")) or "unknown"))
    out.append("- **Incident start**: %s" % _md(display_time(report["markers"].get("incident_start")) or "not given"))
    out.append("- **Service restored**: %s" % _md(display_time(report["markers"].get("service_restored")) or "not marked"))
    out.append("- **Backup used**: %s" % _md(_flat_backup(report.get("backup_used")) or "not reported"))
    if report["timeline_origin"]["note"]:
        out.append("- **Note**: %s" % _md(report["timeline_origin"]["note"]))
    out.append("")

    out += ["## Phases", "", "| # | Phase | Plan step | Budget | Actual | Status |", "|---|---|---|---|---|---|"]
    for row in report["phases"]:
        status = {"failed": "❌ **failed**", "ok": "ok", "skipped": "skipped", "running": "running"}.get(
            row["status"], _md(row["status"]))
        actual = human_duration(row["duration_seconds"])
        if row["over_budget"]:
            actual += " ⚠️ **over budget**"
        out.append("| %d | %s (`%s`) | %s | %s | %s | %s |" % (
            row["index"], _md(row["title"]), _md(row["name"]), _md(row["plan_step"] or "-"),
            short_duration(row["budget_seconds"]), actual, status))
    out.append("| | **Total** | | %s | %s | %s |" % (
        short_duration(budget["total_budget_seconds"]), _duration_text(budget["actual_seconds"]),
        "⚠️ **over budget**" if budget["over_budget"] else ""))
    out.append("")
    details = [row for row in report["phases"] if row["detail"]]
    if details:
        out += ["### Phase details", ""]
        for row in details:
            out.append("- **%s**: %s" % (_md(row["title"]), _md(row["detail"])))
        out.append("")

    out += ["## Checks", ""]
    if report["checks"]:
        out += ["| Check | Result | Detail |", "|---|---|---|"]
        for check in report["checks"]:
            result = "❌ **failed**" if check.get("result") == "failed" else _md(check.get("result"))
            out.append("| %s | %s | %s |" % (_md(check.get("name")), result, _md(check.get("detail"))))
    else:
        out.append("_No checks were reported._")
    out.append("")

    for key, heading in (("backup_used", "Backup used"), ("dns_change", "DNS change"), ("notes", "Notes"),
                         ("lessons", "Lessons learned"), ("extra", "Other details"), ("warnings", "Report warnings")):
        value = report.get(key)
        if value in (None, "", [], {}):
            continue
        out += ["## %s" % heading, ""] + _md_value(value) + [""]

    # The plan's "Post-Incident Review", with what the run knows filled in.
    timeline = report["document_timeline"]
    out += ["## Post-Incident Review", "", "### 1. Document Timeline", ""]
    out.append("- **When was the issue detected?** %s" % _md(display_time(timeline["detected"]) or "unknown (no incident_start marker)"))
    out.append("- **When was recovery initiated?** %s (%s)"
               % (_md(display_time(timeline["recovery_initiated"]) or "unknown"),
                  _md(timeline["recovery_initiated_basis"])))
    out.append("- **When was service restored?** %s" % _md(display_time(timeline["service_restored"]) or "not restored by this run"))
    out.append("- **Actual RTO/RPO achieved:** RTO %s (target %s, %s); RPO %s (target %s, %s)" % (
        _duration_text(rto["achieved_seconds"]), short_duration(rto["target_seconds"]), _md_verdict(rto["verdict"]),
        _duration_text(rpo["achieved_seconds"]), short_duration(rpo["target_seconds"]), _md_verdict(rpo["verdict"])))
    out += ["", "| Time (UTC) | Event |", "|---|---|"]
    for event in timeline["events"]:
        out.append("| %s | %s |" % (_md(display_time(event["at"])), _md(event["event"])))
    out.append("")
    out += ["### 2. Root Cause Analysis", "",
            "- What caused the incident? _to be filled in_",
            "- Why wasn't it prevented? _to be filled in_",
            "- What monitoring gaps exist? _to be filled in_", ""]
    if (report.get("mode") or "") == "drill":
        out += ["_This was a drill: the failure was injected on purpose at incident_start. Record what the "
                "drill revealed instead._", ""]
    out += ["### 3. Action Items", "",
            "- [ ] Update DR procedures: _to be filled in_",
            "- [ ] Improve monitoring: _to be filled in_",
            "- [ ] Add preventive measures: _to be filled in_",
            "- [ ] Schedule follow-up drills: _to be filled in_"]
    for row in report["phases"]:
        if row["over_budget"]:
            out.append("- [ ] Phase %s took %s against a budget of %s: speed it up or update the plan's budget" % (
                _md(row["title"]), human_duration(row["duration_seconds"]), short_duration(row["budget_seconds"])))
    for objective in report["objectives"]:
        if objective["verdict"] == MISSED:
            out.append("- [ ] %s target %s missed (%s): find why" % (
                _md(objective["label"]), short_duration(objective["target_seconds"]),
                _duration_text(objective["achieved_seconds"])))
    for failure in report["failures"]:
        out.append("- [ ] Fix the failure: %s" % _md(_failure_sentence(failure)))
    for lesson in report["lessons"]:
        out.append("- [ ] Lesson: %s" % _md(lesson))
    out += ["", "### 4. Communication", "",
            "- [ ] Notify stakeholders: _who, when_",
            "- [ ] Update status page: _link_",
            "- [ ] Send post-mortem report: _link_", ""]
    return "\n".join(out)


# -- HTML --------------------------------------------------------------------------------------

def _h(value):
    return html.escape("" if value is None else str(value), quote=True)


_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1f2328;margin:0;background:#f6f8fa}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:28px 0 10px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.sub{color:#57606a;margin:0 0 16px}.sub b{color:#1f2328}
.banner{padding:12px 16px;border-radius:6px;margin:12px 0;font-weight:600}
.banner.failed{background:#ffebe9;border:1px solid #cf222e;color:#82071e}
.banner.ok{background:#dafbe1;border:1px solid #2da44e;color:#116329}
.banner.running{background:#ddf4ff;border:1px solid #54aeff;color:#0550ae}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{flex:1 1 200px;background:#fff;border:1px solid #d0d7de;border-left:8px solid #8c959f;border-radius:6px;padding:10px 14px}
.card.met{border-left-color:#2da44e}.card.missed{border-left-color:#cf222e;background:#fff5f5}.card.unknown{border-left-color:#8c959f}
.card.over{border-left-color:#d4a72c;background:#fffbea}
.card .label{color:#57606a;font-size:13px}.card .value{font-size:26px;font-weight:700;margin:2px 0}
.card .target{font-size:13px;color:#57606a}.card .note{font-size:12px;color:#57606a;margin-top:4px}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:700;text-transform:uppercase}
.badge.met,.badge.ok{background:#dafbe1;color:#116329}.badge.missed,.badge.failed{background:#cf222e;color:#fff}
.badge.unknown,.badge.skipped{background:#eaeef2;color:#57606a}.badge.running{background:#ddf4ff;color:#0550ae}
.badge.over{background:#d4a72c;color:#fff}
table{border-collapse:collapse;width:100%;background:#fff;font-size:14px}
th,td{border:1px solid #d0d7de;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}tr.failed td{background:#fff5f5}tr.over td{background:#fffbea}
td.num{text-align:right;white-space:nowrap}td.time{white-space:nowrap}
td pre,.pre{white-space:pre-wrap;margin:0;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.chart{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:8px;overflow-x:auto}
.legend{font-size:13px;color:#57606a;margin:6px 0}.legend span{display:inline-block;margin-right:14px}
.sw{display:inline-block;width:14px;height:10px;margin-right:4px;vertical-align:middle;border:1px solid #8c959f}
dl.kv{display:grid;grid-template-columns:max-content auto;gap:4px 14px;background:#fff;border:1px solid #d0d7de;padding:10px;border-radius:6px;margin:0}
dl.kv dt{font-weight:600}dl.kv dd{margin:0}
ul.plain{margin:4px 0;padding-left:20px}footer{color:#8c959f;font-size:12px;margin-top:30px}
"""

_BAR_COLOURS = {"ok": "#3b6fb6", "failed": "#cf222e", "skipped": "#8c959f", "running": "#8250df"}
_OVER_COLOUR = "#d4a72c"
_BUDGET_FILL, _BUDGET_STROKE = "#e6eef9", "#8fa9cf"


def _html_value(value):
    if isinstance(value, dict):
        if not value:
            return "-"
        return '<dl class="kv">%s</dl>' % "".join(
            "<dt>%s</dt><dd>%s</dd>" % (_h(k), _html_value(v)) for k, v in value.items())
    if isinstance(value, list):
        if not value:
            return "-"
        return '<ul class="plain">%s</ul>' % "".join("<li>%s</li>" % _html_value(v) for v in value)
    if value is None:
        return "-"
    return '<span class="pre">%s</span>' % _h(value)


def _nice_step(span_seconds, max_ticks=10):
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400):
        if span_seconds / step <= max_ticks:
            return step
    return 86400 * max(1, int(span_seconds / (86400 * max_ticks)) + 1)


def _tick_label(seconds):
    seconds = int(round(seconds))
    if seconds == 0:
        return "T"
    if seconds < 0:
        return "T-" + _tick_label(-seconds)[2:]
    if seconds < 60:
        return "T+%ds" % seconds
    if seconds < 3600:
        minutes, rest = divmod(seconds, 60)
        return "T+%dm" % minutes if rest == 0 else "T+%dm%02ds" % (minutes, rest)
    hours, rest = divmod(seconds, 3600)
    return "T+%dh" % hours if rest == 0 else "T+%dh%02dm" % (hours, rest // 60)


def render_gantt_svg(report, fit_to_run=False):
    """The phase timeline as an SVG Gantt chart.

    One <rect class="bar"> per phase at its real start and duration, one <rect class="budget">
    per phase with a budget (same start, budget width, drawn behind), vertical lines for the
    RTO target, the incident and the restoration. Time is relative to T = incident_start (or
    the run start when that is unknown).

    fit_to_run: the axis ends where the run ended, not at the plan's budgets and RTO target, so
    that a recovery of seconds against a budget of an hour still shows its phases; budgets and
    targets beyond the axis are left out (render_html draws this one under the plan-scale one).
    """
    report = _as_report(report)
    phases = report["phases"]
    markers = report["markers"]
    origin_text = report["timeline_origin"]["at"] or (phases[0]["start"] if phases else None)
    if origin_text is None:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="400" height="30" role="img">' \
               '<text x="10" y="20" font-size="13">No phase was recorded.</text></svg>'
    try:
        origin = parse_time(origin_text)
    except DRError:
        # Only possible when redaction hit a timestamp: the tables still carry the data.
        return '<svg xmlns="http://www.w3.org/2000/svg" width="400" height="30" role="img">' \
               '<text x="10" y="20" font-size="13">Chart unavailable: the time origin was redacted.</text></svg>'

    def offset(text):
        return _seconds_between(parse_time(text), origin)

    first = min([0.0] + [offset(p["start"]) for p in phases])
    last = 1.0
    for row in phases:
        start = offset(row["start"])
        last = max(last, start + row["duration_seconds"], start + (0 if fit_to_run else row["budget_seconds"] or 0))
    for name in ("service_restored", "full_system_restored"):
        if markers.get(name):
            last = max(last, offset(markers[name]))
    rto_target = report["rto"]["target_seconds"]
    if rto_target is not None and not fit_to_run:
        last = max(last, rto_target)
    span = last - first
    step = _nice_step(span)
    first = step * int(first // step) if first < 0 else 0.0
    last = step * (int(last // step) + (0 if last % step == 0 else 1))
    span = max(last - first, 1.0)

    label_w, chart_w, right_pad = 250, 660, 70
    row_h, top, bar_h, budget_h = 34, 46, 14, 24
    height = top + row_h * max(1, len(phases)) + 40
    width = label_w + chart_w + right_pad

    def x(seconds):
        return label_w + (seconds - first) / span * chart_w

    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" '
             'aria-label="Phase timeline" font-family="Helvetica,Arial,sans-serif" font-size="12">'
             % (width, height, width, height)]
    parts.append('<title>%s</title>' % _h("Phase timeline, T = %s (%s)" % (origin_text, report["timeline_origin"]["basis"])))
    # Grid and tick labels.
    tick = first
    while tick <= last + 1e-9:
        tx = x(tick)
        parts.append('<line class="grid" x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eaeef2"/>'
                     % (tx, top - 8, tx, height - 30))
        parts.append('<text class="tick" x="%.1f" y="%d" text-anchor="middle" fill="#57606a">%s</text>'
                     % (tx, height - 14, _h(_tick_label(tick))))
        tick += step
    parts.append('<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d" stroke="#8c959f"/>'
                 % (label_w, height - 30, label_w + chart_w, height - 30))

    for index, row in enumerate(phases):
        y_mid = top + row_h * index + row_h / 2.0
        start = offset(row["start"])
        label = row["title"] if len(row["title"]) <= 34 else row["title"][:33] + "…"
        parts.append('<text class="label" x="%d" y="%.1f" fill="#1f2328">%s</text>'
                     % (8, y_mid + 4, _h("%d. %s" % (row["index"], label))))
        if row["budget_seconds"] is not None and not fit_to_run:
            parts.append('<rect class="budget" x="%.1f" y="%.1f" width="%.1f" height="%d" fill="%s" stroke="%s" '
                         'stroke-dasharray="4 2" rx="2"><title>%s</title></rect>'
                         % (x(start), y_mid - budget_h / 2.0, max(1.0, row["budget_seconds"] / span * chart_w),
                            budget_h, _BUDGET_FILL, _BUDGET_STROKE,
                            _h("%s: budget %s" % (row["title"], short_duration(row["budget_seconds"])))))
        colour = _BAR_COLOURS.get(row["status"], "#3b6fb6")
        if row["status"] != "failed" and row["over_budget"]:
            colour = _OVER_COLOUR
        parts.append('<rect class="bar status-%s%s" x="%.1f" y="%.1f" width="%.1f" height="%d" fill="%s" rx="2">'
                     '<title>%s</title></rect>'
                     % (_h(row["status"]), " over-budget" if row["over_budget"] else "", x(start), y_mid - bar_h / 2.0,
                        max(3.0, row["duration_seconds"] / span * chart_w), bar_h, colour,
                        _h("%s: %s, %s%s" % (row["title"], row["status"], human_duration(row["duration_seconds"]),
                                             " (over budget)" if row["over_budget"] else ""))))
        end_x = max(x(start) + max(3.0, row["duration_seconds"] / span * chart_w),
                    x(start) + (0 if fit_to_run else row["budget_seconds"] or 0) / span * chart_w)
        parts.append('<text class="duration" x="%.1f" y="%.1f" fill="#57606a">%s</text>'
                     % (min(end_x + 4, label_w + chart_w + 4), y_mid + 4, _h(human_duration(row["duration_seconds"]))))

    def vline(seconds, colour, text, css, dash, anchor_y, anchor="middle"):
        if seconds < first or seconds > last:
            return
        vx = x(seconds)
        parts.append('<line class="%s" x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="2"%s/>'
                     % (css, vx, top - 10, vx, height - 30, colour, ' stroke-dasharray="%s"' % dash if dash else ""))
        nudge = {"end": -4, "start": 4}.get(anchor, 0)
        parts.append('<text class="%s-label" x="%.1f" y="%d" text-anchor="%s" fill="%s" font-weight="bold">%s</text>'
                     % (css, vx + nudge, anchor_y, anchor, colour, _h(text)))

    if rto_target is not None:
        vline(rto_target, "#cf222e", "RTO target %s" % short_duration(rto_target), "rto-target", "6 4", 14)
    full = report["targets"].get("rto_full_seconds")
    if full is not None and full != rto_target:
        vline(full, "#bc4c00", "full system %s" % short_duration(full), "rto-full-target", "2 3", 14)
    if markers.get("incident_start"):
        vline(offset(markers["incident_start"]), "#1f2328", "incident", "incident", None, 28, "end")
    if markers.get("service_restored"):
        vline(offset(markers["service_restored"]), "#116329", "restored", "restored", None, 28, "start")
    parts.append("</svg>")
    return "".join(parts)


def _run_is_small_on_plan_axis(report):
    """True when the phases end within a tenth of the plan-scale axis (budgets, RTO target): there
    every bar is a sliver, so the report adds a chart fitted to the run."""
    ends, reach = [], [report["rto"]["target_seconds"] or 0]
    for row in report["phases"]:
        try:
            start = parse_time(row["start"])
        except (DRError, TypeError):
            return False
        ends.append((start, row["duration_seconds"] or 0))
        reach.append(row["budget_seconds"] or 0)
    if not ends:
        return False
    first = min(start for start, _seconds in ends)
    run = max(_seconds_between(start, first) + seconds for start, seconds in ends)
    return run * 10 < max(reach)


def _badge(word, css=None):
    return '<span class="badge %s">%s</span>' % (_h(css or word), _h(_verdict_word(word) if word in (MET, MISSED, UNKNOWN) else word))


def render_html(report):
    report = _as_report(report)
    budget = report["budget"]
    out = ['<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           "<title>%s</title><style>%s</style></head><body><main>" % (_h(_title(report)), _CSS)]
    out.append("<h1>%s</h1>" % _h(_title(report)))
    facts = [("Scenario", report.get("scenario")), ("Site", report.get("site")), ("Mode", report.get("mode")),
             ("Run", report["run"]["status"]), ("Started", display_time(report["run"]["start"])),
             ("Generated", display_time(report["generated_at"]))]
    out.append('<p class="sub">%s</p>' % " &middot; ".join(
        "%s: <b>%s</b>" % (_h(k), _h(v)) for k, v in facts if v not in (None, "")))

    if report["failures"]:
        for failure in report["failures"]:
            out.append('<div class="banner failed">Run %s</div>' % _h(_failure_sentence(failure)))
    elif report["run"]["status"] == "succeeded":
        missed = [o["label"] for o in report["objectives"] if o["verdict"] == MISSED]
        if missed:
            out.append('<div class="banner failed">Run succeeded, but target MISSED: %s. %s</div>'
                       % (_h(", ".join(missed)), _h(_headline(report))))
        else:
            out.append('<div class="banner ok">Run succeeded: %s</div>' % _h(_headline(report)))
    else:
        out.append('<div class="banner running">Run not finished: %s</div>' % _h(_headline(report)))

    out.append('<div class="cards">')
    for objective in report["objectives"]:
        out.append('<div class="card %s"><div class="label">%s</div><div class="value">%s</div>'
                   '<div class="target">target %s &nbsp;%s</div>%s</div>'
                   % (_h(objective["verdict"]), _h(objective["label"]), _h(_duration_text(objective["achieved_seconds"])),
                      _h(short_duration(objective["target_seconds"])), _badge(objective["verdict"]),
                      '<div class="note">%s</div>' % _h(objective["note"]) if objective["note"] else ""))
    if budget["total_budget_seconds"] is not None:
        out.append('<div class="card %s"><div class="label">Plan budget, all steps</div><div class="value">%s</div>'
                   '<div class="target">budget %s &nbsp;%s</div></div>'
                   % ("over" if budget["over_budget"] else "met", _h(_duration_text(budget["actual_seconds"])),
                      _h(short_duration(budget["total_budget_seconds"])),
                      _badge("over budget", "over") if budget["over_budget"] else _badge("within", "ok")))
    out.append("</div>")

    out.append("<h2>Key times</h2><dl class=\"kv\">")
    markers = report["markers"]
    for label, value in (("Incident start", display_time(markers.get("incident_start")) or "not given"),
                         ("Recovery initiated", display_time(report["document_timeline"]["recovery_initiated"])),
                         ("Service restored", display_time(markers.get("service_restored")) or "not marked"),
                         ("Recovery point (last transaction recovered)",
                          display_time(markers.get("recovery_point")) or "unknown"),
                         ("Backup used", _flat_backup(report.get("backup_used")) or "not reported")):
        out.append("<dt>%s</dt><dd>%s</dd>" % (_h(label), _h(value)))
    out.append("</dl>")
    if report["timeline_origin"]["note"]:
        out.append('<p class="sub">%s</p>' % _h(report["timeline_origin"]["note"]))

    out.append("<h2>Timeline</h2>")
    out.append('<div class="legend"><span><i class="sw" style="background:%s"></i>phase (ok)</span>'
               '<span><i class="sw" style="background:%s"></i>over budget</span>'
               '<span><i class="sw" style="background:%s"></i>failed</span>'
               '<span><i class="sw" style="background:%s;border-style:dashed"></i>plan budget</span>'
               '<span>T = %s (%s)</span></div>'
               % (_BAR_COLOURS["ok"], _OVER_COLOUR, _BAR_COLOURS["failed"], _BUDGET_FILL,
                  _h(display_time(report["timeline_origin"]["at"]) or "-"), _h(report["timeline_origin"]["basis"])))
    out.append('<div class="chart">%s</div>' % render_gantt_svg(report))
    if _run_is_small_on_plan_axis(report):
        out.append('<p class="sub">The same phases at the run&#39;s own scale (the chart above is at the '
                   'plan&#39;s; its budgets and target are off this axis):</p>')
        out.append('<div class="chart zoomed">%s</div>' % render_gantt_svg(report, fit_to_run=True))

    out.append("<h2>Phases</h2><table><thead><tr><th>#</th><th>Phase</th><th>Plan step</th><th>Budget</th>"
               "<th>Actual</th><th>Status</th><th>Start (UTC)</th><th>Detail</th></tr></thead><tbody>")
    for row in report["phases"]:
        css = "failed" if row["status"] == "failed" else ("over" if row["over_budget"] else "")
        status = _badge(row["status"]) + (" " + _badge("over budget", "over") if row["over_budget"] else "")
        out.append('<tr class="%s"><td class="num">%d</td><td><b>%s</b><br><code>%s</code></td><td>%s</td>'
                   '<td class="num">%s</td><td class="num">%s%s</td><td>%s</td><td class="time">%s</td><td><div class="pre">%s</div></td></tr>'
                   % (css, row["index"], _h(row["title"]), _h(row["name"]), _h(row["plan_step"] or "-"),
                      _h(short_duration(row["budget_seconds"])), _h(human_duration(row["duration_seconds"])),
                      "<br>%s%%" % _h(row["budget_used_percent"]) if row["budget_used_percent"] is not None else "",
                      status, _h(display_time(row["start"])), _h(row["detail"])))
    out.append('<tr><td></td><td><b>Total</b></td><td>%s</td><td class="num">%s</td><td class="num">%s</td><td>%s</td>'
               '<td></td><td></td></tr></tbody></table>'
               % (_h(budget["basis"]), _h(short_duration(budget["total_budget_seconds"])),
                  _h(_duration_text(budget["actual_seconds"])),
                  _badge("over budget", "over") if budget["over_budget"] else ""))

    out.append("<h2>Checks</h2>")
    if report["checks"]:
        out.append("<table><thead><tr><th>Check</th><th>Result</th><th>Detail</th></tr></thead><tbody>")
        for check in report["checks"]:
            result = check.get("result")
            out.append('<tr class="%s"><td>%s</td><td>%s</td><td><div class="pre">%s</div></td></tr>'
                       % ("failed" if result == "failed" else "", _h(check.get("name")),
                          _badge(result if result in ("ok", "failed") else str(result), result),
                          _h(check.get("detail"))))
        out.append("</tbody></table>")
    else:
        out.append('<p class="sub">No checks were reported.</p>')

    for key, heading in (("backup_used", "Backup used"), ("dns_change", "DNS change"), ("notes", "Notes"),
                         ("lessons", "Lessons learned"), ("rescued_failures", "Failures handled by rescue"),
                         ("extra", "Other details"), ("warnings", "Report warnings")):
        value = report.get(key)
        if value in (None, "", [], {}):
            continue
        out.append("<h2>%s</h2>%s" % (_h(heading), _html_value(value)))

    out.append("<h2>Event log</h2><table><thead><tr><th>Time (UTC)</th><th>Event</th></tr></thead><tbody>")
    for event in report["document_timeline"]["events"]:
        out.append('<tr><td class="time">%s</td><td>%s</td></tr>' % (_h(display_time(event["at"])), _h(event["event"])))
    out.append("</tbody></table>")
    out.append("<footer>%s &middot; %s &middot; report.json holds the same data; report.md the post-incident "
               "review skeleton</footer></main></body></html>\n" % (_h(SCHEMA), _h(display_time(report["generated_at"]))))
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------

_NAME_RE = re.compile(r"[^A-Za-z0-9._-]+")


def _run_name(playbook_name):
    name = os.path.basename(str(playbook_name or "run"))
    for suffix in (".yml", ".yaml"):
        if name.endswith(suffix):
            name = name[:-len(suffix)]
    return _NAME_RE.sub("_", name).strip("._") or "run"


def _write_file(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.fchmod(fd, 0o644)   # whatever the umask: a report is meant to be read
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            fd = None
            handle.write(text)
    finally:
        if fd is not None:
            os.close(fd)


def write_report(base_dir, playbook_name, report, now=None, secrets=None):
    """Write report.json, report.md and report.html into a new directory
    `<base_dir>/<UTC %Y%m%dT%H%M%SZ>-<playbook>` (0755; files 0644) and return their paths:
    {"dir", "json", "markdown", "html"}. An existing directory is never reused: a suffix -2, -3...
    is added. `secrets`: strings redacted from everything written."""
    report = _as_report(report)
    now = now or utc_now()
    base_dir = os.path.abspath(os.path.expanduser(str(base_dir)))
    try:
        os.makedirs(base_dir, 0o755)
    except OSError as exc:
        if exc.errno != errno.EEXIST or not os.path.isdir(base_dir):
            raise DRError("cannot create the report directory %s: %s" % (base_dir, exc))
    stem = "%s-%s" % (now.astimezone(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ"), _run_name(playbook_name))
    attempt = 1
    while True:
        directory = os.path.join(base_dir, stem if attempt == 1 else "%s-%d" % (stem, attempt))
        try:
            os.mkdir(directory, 0o755)   # atomic: fails if another run took the name
            break
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise DRError("cannot create the report directory %s: %s" % (directory, exc))
            attempt += 1
    os.chmod(directory, 0o755)
    paths = {"dir": directory, "json": os.path.join(directory, "report.json"),
             "markdown": os.path.join(directory, "report.md"), "html": os.path.join(directory, "report.html")}
    report = copy.deepcopy(report)
    report["report_path"] = paths["html"]
    report["set_stats"] = _set_stats_section(report)
    if secrets:
        report = redact(report, secrets)
    _write_file(paths["json"], render_json(report))
    _write_file(paths["markdown"], render_markdown(report))
    _write_file(paths["html"], render_html(report))
    return paths
