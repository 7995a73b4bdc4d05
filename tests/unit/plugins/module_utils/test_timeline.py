"""The DR timeline engine with fixed datetimes: arithmetic, verdicts, budgets and rendering."""

import datetime
import json
import os
import re
import stat
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.timeline import (
    DEFAULT_TARGETS, Timeline, deep_merge, display_time, key_figures, redact, render_gantt_svg, render_html, render_json,
    render_markdown, short_duration, summary_line, write_report)

UTC = datetime.timezone.utc
SVG = "{http://www.w3.org/2000/svg}"


def at(minute, second=0):
    """2026-11-24 02:mm:ss UTC; minutes past 59 roll over."""
    return datetime.datetime(2026, 11, 24, 2, 0, 0, tzinfo=UTC) + datetime.timedelta(minutes=minute, seconds=second)


def iso(minute, second=0):
    return at(minute, second).strftime("%Y-%m-%dT%H:%M:%SZ")


def drill(restore_minutes=20, restored_at=30, recovery_point=(-3, 0), fail_in=None, rescued=False):
    """A scenario-2 style run: injection at T=0, then four budgeted phases."""
    timeline = Timeline(playbook="playbooks/dr_drill.yml", started_at=at(-1))
    timeline.start_task("inject", at(-1), "kill the primary site", title="Simulate failure")
    timeline.record_result("inject", at(0), "changed", "kill the primary site", "localhost")
    timeline.merge({"markers": {"incident_start": iso(0), "recovery_point": iso(*recovery_point)},
                    "scenario": "complete infrastructure failure", "mode": "drill", "site": "dr"})
    steps = [("activate_dr", "Activate DR site", 10, 2), ("restore_database", "Restore database", 20, restore_minutes),
             ("deploy_app", "Deploy application", 10, 3), ("switch_traffic", "Verify and switch traffic", 5, 1)]
    clock = 1
    for number, (name, title, budget, took) in enumerate(steps, start=1):
        timeline.start_task(name, at(clock), "do " + name, title=title,
                            plan_step="Scenario 2, step %d" % number, budget_seconds=budget * 60)
        if name == fail_in:
            timeline.record_result(name, at(clock + took), "failed", "do " + name, "localhost", message="boom <b>")
            if not rescued:
                timeline.finish(at(clock + took), {"localhost": 1})
                return timeline
            timeline.record_result(name, at(clock + took), "ok", "rescue " + name, "localhost")
        else:
            timeline.record_result(name, at(clock + took), "ok", "do " + name, "localhost")
        clock += took
    timeline.merge({"markers": {"service_restored": iso(restored_at)}})
    timeline.finish(at(clock), {"localhost": 0})
    return timeline


def objective(report, key):
    return [o for o in report["objectives"] if o["key"] == key][0]


# ------------------------------------------------------------------------------------------
# RTO / RPO arithmetic and verdicts
# ------------------------------------------------------------------------------------------

def test_rto_and_rpo_from_markers_met():
    report = drill().to_report(now=at(40))
    assert report["rto"]["achieved_seconds"] == 30 * 60
    assert report["rto"]["target_seconds"] == 1800 and report["rto"]["verdict"] == "met"
    assert report["rto"]["basis"] == "service_restored - incident_start"
    assert objective(report, "rto_full")["verdict"] == "met"
    assert report["rpo"]["achieved_seconds"] == 180 and report["rpo"]["verdict"] == "met"
    assert report["run"]["status"] == "succeeded"
    assert report["timeline_origin"]["note"] is None


def test_missed_targets_are_flagged():
    report = drill(restored_at=45, recovery_point=(-20, 0)).to_report(now=at(50))
    assert report["rto"]["verdict"] == "missed"
    assert objective(report, "rto_full")["verdict"] == "met"     # 45 min is within the full-system hour
    assert report["rpo"]["achieved_seconds"] == 1200 and report["rpo"]["verdict"] == "missed"
    assert "MISSED" in summary_line(report)


def test_unknown_incident_start_falls_back_to_run_start_and_says_so():
    timeline = Timeline(playbook="restore_database.yml", started_at=at(0))
    timeline.start_task("restore", at(1), "restore")
    timeline.record_result("restore", at(11), "ok", "restore", "h")
    timeline.merge({"markers": {"service_restored": iso(12), "recovery_point": iso(-5)}})
    timeline.finish(at(12), {"h": 0})
    report = timeline.to_report(now=at(12))
    assert report["rto"]["achieved_seconds"] == 12 * 60
    assert report["rto"]["basis"] == "service_restored - start of the run"
    assert "incident_start was not given" in report["rto"]["note"]
    assert report["rpo"]["achieved_seconds"] is None and report["rpo"]["verdict"] == "unknown"
    assert "incident_start" in report["rpo"]["note"]
    markdown = render_markdown(report)
    assert "incident_start was not given" in markdown


def test_missing_recovery_point_makes_rpo_unknown():
    timeline = drill()
    del timeline.markers["recovery_point"]
    report = timeline.to_report(now=at(40))
    assert report["rpo"]["verdict"] == "unknown" and report["rpo"]["achieved_seconds"] is None
    assert key_figures(report)["rpo_met"] is None
    assert "RPO unknown" in summary_line(report)


def test_service_not_restored_rto_unknown_until_the_target_has_passed():
    quick = drill(fail_in="activate_dr").to_report(now=at(5))
    assert quick["rto"]["achieved_seconds"] is None and quick["rto"]["verdict"] == "unknown"
    assert "failed before the service was restored" in quick["rto"]["note"]
    slow = drill(fail_in="restore_database", restore_minutes=40).to_report(now=at(45))
    assert slow["rto"]["verdict"] == "missed"
    assert "elapsed without it" in slow["rto"]["note"]


def test_recovery_point_after_incident_is_no_data_loss():
    report = drill(recovery_point=(0, 5)).to_report(now=at(40))
    assert report["rpo"]["achieved_seconds"] == 0 and report["rpo"]["verdict"] == "met"
    assert "no committed data was lost" in report["rpo"]["note"]


def test_targets_can_be_overridden_and_bad_ones_become_warnings():
    timeline = drill()
    timeline.merge({"targets": {"rto_critical_minutes": 20, "rpo_minutes": 2, "rto_coffee_minutes": 5,
                                "rpo_files_minutes": "soon"}})
    report = timeline.to_report(now=at(40))
    assert report["rto"]["target_seconds"] == 1200 and report["rto"]["verdict"] == "missed"
    assert report["rpo"]["target_seconds"] == 120 and report["rpo"]["verdict"] == "missed"
    assert any("rto_coffee_minutes" in w for w in report["warnings"])
    assert any("rpo_files_minutes" in w for w in report["warnings"])
    assert Timeline(targets={"rpo_seconds": 60}).targets["rpo_seconds"] == 60
    assert DEFAULT_TARGETS["rto_critical_seconds"] == 1800


def test_bad_marker_is_a_warning_not_a_crash():
    timeline = drill()
    timeline.merge({"markers": {"service_restored": "after lunch"}})
    report = timeline.to_report(now=at(40))
    assert report["markers"]["service_restored"] == iso(30)   # the good value stays
    assert any("service_restored" in w for w in report["warnings"])


def test_file_storage_rpo_only_when_its_marker_is_given():
    keys = [o["key"] for o in drill().to_report(now=at(40))["objectives"]]
    assert keys == ["rto_critical", "rto_full", "rpo_database"]
    timeline = drill()
    timeline.merge({"markers": {"files_recovery_point": iso(-50)}})
    files = objective(timeline.to_report(now=at(40)), "rpo_files")
    assert files["achieved_seconds"] == 3000 and files["verdict"] == "met"


# ------------------------------------------------------------------------------------------
# Phases and budgets
# ------------------------------------------------------------------------------------------

def test_over_budget_flags_and_totals():
    report = drill(restore_minutes=25).to_report(now=at(40))
    by_name = dict((p["name"], p) for p in report["phases"])
    assert [p["name"] for p in report["phases"]] == ["inject", "activate_dr", "restore_database", "deploy_app",
                                                     "switch_traffic"]
    assert by_name["restore_database"]["over_budget"] is True
    assert by_name["restore_database"]["duration_seconds"] == 25 * 60
    assert by_name["restore_database"]["budget_used_percent"] == 125.0
    assert by_name["activate_dr"]["over_budget"] is False
    assert by_name["inject"]["budget_seconds"] is None and by_name["inject"]["over_budget"] is False
    budget = report["budget"]
    assert budget["total_budget_seconds"] == 45 * 60        # 10 + 20 + 10 + 5
    assert budget["actual_seconds"] == 31 * 60             # first budgeted start to last budgeted end
    assert budget["over_budget"] is False
    assert budget["phases_over_budget"] == ["restore_database"]


def test_plan_total_budget_override():
    timeline = drill(restore_minutes=25)
    timeline.merge({"plan_total_budget_minutes": 30})
    assert timeline.to_report(now=at(40))["budget"]["over_budget"] is True


def test_final_and_rescued_failures():
    failed = drill(fail_in="restore_database").to_report(now=at(30))
    statuses = dict((p["name"], p["status"]) for p in failed["phases"])
    assert statuses["restore_database"] == "failed" and statuses["activate_dr"] == "ok"
    assert failed["run"]["status"] == "failed"
    assert failed["failure"] == {"phase": "restore_database", "phase_title": "Restore database",
                                 "task": "do restore_database", "host": "localhost", "message": "boom <b>",
                                 "at": iso(23)}
    rescued = drill(fail_in="restore_database", rescued=True).to_report(now=at(40))
    phase = [p for p in rescued["phases"] if p["name"] == "restore_database"][0]
    assert phase["status"] == "ok" and "rescued: task 'do restore_database'" in phase["detail"]
    assert rescued["failure"] is None and rescued["run"]["status"] == "succeeded"
    assert len(rescued["rescued_failures"]) == 1


def test_only_the_last_failures_of_a_host_are_final():
    timeline = Timeline(started_at=at(0))
    timeline.start_task("a", at(0), "t1")
    timeline.record_result("a", at(1), "failed", "t1", "h1", "rescued one")
    timeline.start_task("b", at(2), "t2")
    timeline.record_result("b", at(3), "failed", "t2", "h1", "the final one")
    timeline.record_result("b", at(3), "failed", "t2", "h2", "rescued on h2")
    timeline.finish(at(4), {"h1": 1, "h2": 0})
    report = timeline.to_report(now=at(4))
    assert [(p["name"], p["status"]) for p in report["phases"]] == [("a", "ok"), ("b", "failed")]
    assert [f["message"] for f in report["failures"]] == ["the final one"]


def test_a_rollback_that_fails_the_run_marks_the_phase_it_rescued():
    """restore_database.yml's rescue puts production back, then fails outside any phase: the
    report must still show the phase where it went wrong as failed."""
    timeline = Timeline(started_at=at(0))
    timeline.start_task("restore", at(0), "t1")
    timeline.record_result("restore", at(1), "ok", "t1", "h")
    timeline.start_task("verify_restore", at(2), "t2")
    timeline.record_result("verify_restore", at(3), "failed", "t2", "h", "row counts differ")
    timeline.record_result(None, at(4), "failed", "rollback", "h", "failed at verify; production put back")
    timeline.finish(at(5), {"h": 1})
    report = timeline.to_report(now=at(5))
    assert [(p["name"], p["status"]) for p in report["phases"]] == [("restore", "ok"), ("verify_restore", "failed")]
    assert report["failure"]["phase"] == "verify_restore" and report["failure"]["message"] == "row counts differ"
    assert report["failure"]["run_ended_by"]["task"] == "rollback"


def test_failure_outside_any_phase_is_still_reported():
    timeline = Timeline(started_at=at(0))
    timeline.start_task("a", at(0), "t1")
    timeline.record_result("a", at(1), "ok", "t1", "h")
    timeline.record_result(None, at(2), "unreachable", "gather", "h", None)
    timeline.finish(at(2), {"h": 1})
    report = timeline.to_report(now=at(2))
    assert report["failure"]["phase"] is None and report["failure"]["message"] == "host unreachable"
    assert "a task outside any phase" in render_markdown(report)


def test_skipped_ignored_and_running_phases():
    timeline = Timeline(started_at=at(0))
    timeline.start_task("skipped_only", at(0), "t")
    timeline.record_result("skipped_only", at(0, 1), "skipped", "t", "h")
    timeline.start_task("ignored", at(1), "t2")
    timeline.record_result("ignored", at(1, 5), "ignored", "t2", "h")
    timeline.start_task("still_going", at(2), "t3")
    running = dict((p["name"], p["status"]) for p in timeline.to_report(now=at(3))["phases"])
    assert running == {"skipped_only": "skipped", "ignored": "ok", "still_going": "running"}
    assert timeline.to_report(now=at(3))["run"]["status"] == "running"
    timeline.finish(at(3), {"h": 0})
    assert timeline.to_report(now=at(3))["phases"][2]["status"] == "skipped"


def test_unknown_status_is_refused():
    with pytest.raises(DRError):
        Timeline().record_result("a", at(0), "great", "t", "h")


def test_first_declaration_wins_and_later_tasks_fill_gaps():
    timeline = Timeline()
    timeline.start_task("p", at(0), "t1", title="Restore")
    timeline.start_task("p", at(1), "t2", title="Other", plan_step="step 4", budget_seconds=60)
    phase = timeline.phase("p")
    assert (phase.title, phase.plan_step, phase.budget_seconds, phase.tasks) == ("Restore", "step 4", 60, ["t1", "t2"])


# ------------------------------------------------------------------------------------------
# Merging data
# ------------------------------------------------------------------------------------------

def test_deep_merge_dicts_lists_and_scalars():
    into = {"a": {"b": 1, "c": [1]}, "d": "x", "e": [1]}
    deep_merge(into, {"a": {"c": [2], "f": 3}, "d": "y", "e": 2})
    assert into == {"a": {"b": 1, "c": [1, 2], "f": 3}, "d": "y", "e": [1, 2]}


def test_merge_sections_checks_notes_and_phase_detail():
    timeline = Timeline()
    timeline.start_task("verify", at(0), "t")
    timeline.merge({"checks": {"name": "amcheck", "result": "ok"}, "notes": "one", "custom": {"x": 1}},
                   phase_name="verify")
    timeline.merge({"checks": [{"name": "freshness", "result": "failed", "detail": "2 h old"},
                               {"name": "restore", "result": "skipped", "detail": "no backup"}],
                    "notes": ["two"], "custom": {"y": 2}, "phase_detail": "done"}, phase_name="verify")
    timeline.merge({"phase_detail": "no phase here"})
    timeline.merge(["not", "a", "dict"])
    report = timeline.to_report(now=at(1))
    assert [(c["name"], c["result"], c.get("phase")) for c in report["checks"]] == [
        ("amcheck", "ok", "verify"), ("freshness", "failed", "verify"), ("restore", "skipped", "verify")]
    assert report["checks"][0]["detail"] == ""
    assert report["notes"] == ["one", "two", "no phase here"]
    assert report["extra"] == {"custom": {"x": 1, "y": 2}}
    assert report["phases"][0]["detail"] == "done"
    assert any("not a mapping" in w for w in report["warnings"])
    assert not any("check" in w for w in report["warnings"])


def test_a_check_row_not_in_the_one_shape_is_shown_and_warned_about():
    timeline = Timeline()
    timeline.start_task("verify", at(0), "t")
    timeline.merge({"checks": [{"name": "amcheck", "result": True}, "bare",
                               {"name": "age", "result": "PASS", "detail": "1 h"}]}, phase_name="verify")
    report = timeline.to_report(now=at(1))
    assert [(c["name"], c["result"]) for c in report["checks"]] == [
        ("amcheck", True), ("bare", "unknown"), ("age", "PASS")]
    assert len([w for w in report["warnings"] if "check" in w]) == 3
    assert any("'PASS' is not one of ok, failed, skipped" in w for w in report["warnings"])


# ------------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------------

def test_json_round_trips_and_has_set_stats():
    report = drill().to_report(now=at(40))
    loaded = json.loads(render_json(report))
    assert loaded["schema"] == "auditron.dr.report/1"
    assert loaded["set_stats"]["data"]["rto_seconds"] == 1800
    assert render_json(drill()) .startswith("{")   # a Timeline is accepted as well


def test_key_figures_are_flat():
    timeline = drill()
    timeline.merge({"backup_used": {"id": "20261124-010000F", "repository": "repo2"}})
    figures = key_figures(timeline.to_report(now=at(40)))
    assert figures["rto_seconds"] == 1800 and figures["rto_met"] is True
    assert figures["rpo_seconds"] == 180 and figures["rpo_met"] is True
    assert figures["recovery_point"] == iso(-3, 0)
    assert figures["backup_used"] == "20261124-010000F"
    assert figures["report_path"] is None
    assert all(not isinstance(v, (dict, list)) for v in figures.values())


def test_backup_used_as_the_restore_engine_returns_it_reads_as_a_sentence():
    """pgbackrest_restore returns {backup, repository, fallbacks}: the report says which backup,
    from which repository, and which repositories were passed over and why (not a JSON dump)."""
    timeline = drill()
    timeline.merge({"backup_used": {"backup": "20261203-132452F", "repository": 2, "fallbacks": [
        {"repo": 1, "name": "s3-us-east-1", "reason": "unreachable: connection refused"}]}})
    report = timeline.to_report(now=at(40))
    expected = "20261203-132452F from repo2 (passed over: s3-us-east-1 unreachable: connection refused)"
    assert key_figures(report)["backup_used"] == expected
    assert expected in render_markdown(report)
    assert expected in render_html(report)
    first_choice = drill()
    first_choice.merge({"backup_used": {"backup": "20261203-132452F", "repository": 1, "fallbacks": []}})
    assert key_figures(first_choice.to_report(now=at(40)))["backup_used"] == "20261203-132452F from repo1"


def test_markdown_has_summary_phases_checks_and_the_post_incident_review():
    timeline = drill(restore_minutes=25, restored_at=35)
    timeline.merge({"checks": [{"name": "row counts", "result": "failed", "detail": "User 2 != 3"}],
                    "backup_used": "20261124-010000F", "lessons": ["restore is slow"]})
    markdown = render_markdown(timeline.to_report(now=at(40)))
    assert markdown.startswith("# DR report: dr_drill.yml")
    assert "| RTO, critical services | 30 min | 35 min 00 s | ❌ **MISSED** |" in markdown
    assert "| RPO, database | 15 min | 3 min 00 s | ✅ met |" in markdown
    assert "| 3 | Restore database (`restore_database`) | Scenario 2, step 2 | 20 min | 25 min 00 s ⚠️ **over budget** | ok |" in markdown
    assert "| row counts | ❌ **failed** | User 2 != 3 |" in markdown
    assert "**Backup used**: 20261124-010000F" in markdown
    for heading in ("## Post-Incident Review", "### 1. Document Timeline", "### 2. Root Cause Analysis",
                    "### 3. Action Items", "### 4. Communication"):
        assert heading in markdown
    assert "- **When was the issue detected?** %s" % iso(0) in markdown
    assert "- **When was recovery initiated?** %s" % iso(1) in markdown    # first phase after the injection
    assert "- **When was service restored?** %s" % iso(35) in markdown
    assert "- **Actual RTO/RPO achieved:** RTO 35 min 00 s" in markdown
    for prompt in ("What caused the incident?", "Why wasn't it prevented?", "What monitoring gaps exist?",
                   "Update DR procedures", "Improve monitoring", "Add preventive measures",
                   "Schedule follow-up drills", "Notify stakeholders", "Update status page", "Send post-mortem report"):
        assert prompt in markdown
    assert "Phase Restore database took 25 min 00 s against a budget of 20 min" in markdown
    assert "Lesson: restore is slow" in markdown


def test_markdown_table_cells_survive_pipes_and_newlines():
    timeline = Timeline()
    timeline.start_task("p", at(0), "t", title="a | b\nc")
    markdown = render_markdown(timeline.to_report(now=at(1)))
    row = [line for line in markdown.splitlines() if line.startswith("| 1 |")][0]
    assert "a \\| b<br>c" in row
    assert len(re.split(r"(?<!\\)\|", row)) == 8           # six cells, the escaped pipe is no border


class TagBalance(HTMLParser):
    """Fails on mis-nested or unclosed tags: 'well-formed enough' for a report."""
    VOID = {"meta", "br", "link", "img", "hr", "input", "line", "rect"}

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.scripts = [], [], 0

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.scripts += 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        if tag in self.VOID and (not self.stack or self.stack[-1] != tag):
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append("unexpected </%s>, open: %s" % (tag, self.stack[-3:]))
        else:
            self.stack.pop()


def svg_of(page):
    match = re.search(r"<svg.*?</svg>", page, re.S)
    assert match, "no SVG in the page"
    return ET.fromstring(match.group(0))


def test_html_is_well_formed_with_one_bar_per_phase_and_budget_bars():
    timeline = drill(fail_in="restore_database", rescued=True, restore_minutes=25)
    report = timeline.to_report(now=at(40))
    page = render_html(report)
    checker = TagBalance()
    checker.feed(page)
    checker.close()
    assert checker.errors == [] and checker.stack == [] and checker.scripts == 0
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")   # self-contained
    assert "https://" not in page

    svg = svg_of(page)
    bars = [r for r in svg.iter(SVG + "rect") if "bar" in r.get("class").split()]
    budgets = [r for r in svg.iter(SVG + "rect") if r.get("class") == "budget"]
    assert len(bars) == len(report["phases"]) == 5
    assert len(budgets) == 4                                   # the injection phase has no budget
    assert len(list(svg.iter(SVG + "rect"))) == 9
    over = [r for r in bars if "over-budget" in r.get("class")]
    assert len(over) == 1 and over[0].get("fill") == "#d4a72c"
    # Bars sit at their real start: later phases further right, and a budget bar starts with its phase.
    xs = [float(r.get("x")) for r in bars]
    assert xs == sorted(xs)
    assert float(budgets[1].get("x")) == float(bars[2].get("x"))
    assert float(budgets[1].get("width")) < float(bars[2].get("width"))   # 25 min used of 20 min
    rto_lines = [ln for ln in svg.iter(SVG + "line") if ln.get("class") == "rto-target"]
    assert len(rto_lines) == 1
    ticks = [t.text for t in svg.iter(SVG + "text") if t.get("class") == "tick"]
    assert ticks[0] == "T-5m" and "T+30m" in ticks


def quick_drill():
    """A drill of seconds against budgets of minutes, as the lab's drills run: 4 phases of 6 s."""
    timeline = Timeline(playbook="playbooks/dr_drill.yml", started_at=at(0))
    timeline.merge({"markers": {"incident_start": iso(0)}, "mode": "drill", "site": "dr"})
    for number, name in enumerate(("activate_dr", "restore_db", "deploy_app", "verify_switch")):
        timeline.start_task(name, at(0, 6 * number), "do " + name, title=name, budget_seconds=600)
        timeline.record_result(name, at(0, 6 * number + 6), "ok", "do " + name, "localhost")
    timeline.merge({"markers": {"service_restored": iso(0, 24)}})
    timeline.finish(at(0, 25), {"localhost": 0})
    return timeline


def test_a_run_of_seconds_gets_a_second_chart_at_its_own_scale():
    page = render_html(quick_drill().to_report(now=at(1)))
    charts = [ET.fromstring(m) for m in re.findall(r"<svg.*?</svg>", page, re.S)]
    assert len(charts) == 2
    plan_scale, own_scale = charts

    def bars(svg):
        return [r for r in svg.iter(SVG + "rect") if "bar" in r.get("class").split()]

    assert len(bars(plan_scale)) == len(bars(own_scale)) == 4
    assert [r for r in plan_scale.iter(SVG + "rect") if r.get("class") == "budget"]
    assert not [r for r in own_scale.iter(SVG + "rect") if r.get("class") == "budget"]
    assert not [ln for ln in own_scale.iter(SVG + "line") if ln.get("class") == "rto-target"]
    widths = [float(r.get("width")) for r in bars(own_scale)]
    assert min(widths) > 100, widths                  # 6 s of a ~30 s axis on 660 px, not a sliver
    assert max(float(r.get("width")) for r in bars(plan_scale)) < 10
    ticks = [t.text for t in own_scale.iter(SVG + "text") if t.get("class") == "tick"]
    assert ticks[0] == "T" and "T+30m" not in ticks
    # A run that used much of its axis gets the one chart only.
    assert len(re.findall(r"<svg", render_html(drill().to_report(now=at(40))))) == 1


def test_failed_phase_is_red_and_the_page_says_where():
    page = render_html(drill(fail_in="restore_database").to_report(now=at(30)))
    bars = [r for r in svg_of(page).iter(SVG + "rect") if "bar" in r.get("class").split()]
    fills = dict((r.get("class").split()[1], r.get("fill")) for r in bars)
    assert fills["status-failed"] == "#cf222e" and fills["status-ok"] != "#cf222e"
    assert 'class="banner failed"' in page
    assert "failed in phase restore_database (Restore database)" in page


def test_missed_target_is_visible_at_a_glance():
    page = render_html(drill(restored_at=45).to_report(now=at(50)))
    assert 'class="card missed"' in page and "Run succeeded, but target MISSED" in page
    assert '<span class="badge missed">MISSED</span>' in page


def test_everything_from_playbooks_is_escaped():
    timeline = Timeline(playbook="<script>alert(1)</script>.yml", started_at=at(0))
    evil = "<script>alert('x')</script>"
    timeline.start_task("p", at(0), evil, title=evil, plan_step=evil)
    timeline.merge({"phase_detail": evil, "checks": [{"name": evil, "result": evil, "detail": evil}],
                    "backup_used": {evil: evil}, "notes": [evil], evil: evil}, phase_name="p")
    timeline.record_result("p", at(1), "failed", evil, evil, evil)
    timeline.finish(at(1), {evil: 1})
    report = timeline.to_report(now=at(1))
    page = render_html(report)
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    svg_of(page)                                           # still parses as XML
    assert "<script" not in render_markdown(report)


def test_people_read_times_to_the_second_json_keeps_the_fraction():
    timeline = Timeline(started_at=at(0))
    timeline.start_task("p", at(0) + datetime.timedelta(microseconds=123456), "t")
    timeline.record_result("p", at(1), "ok", "t", "h")
    timeline.finish(at(1), {"h": 0})
    report = timeline.to_report(now=at(1))
    assert report["phases"][0]["start"] == "2026-11-24T02:00:00.123456Z"
    assert ".123456" not in render_html(report) and ".123456" not in render_markdown(report)
    assert display_time("2026-11-24T02:00:00.123456Z") == "2026-11-24T02:00:00Z"
    assert display_time(None) is None


def test_gantt_without_phases():
    assert "No phase was recorded" in render_gantt_svg(Timeline().to_report(now=at(0)))


def test_short_duration():
    assert [short_duration(s) for s in (1800, 3600, 5400, 90, 45, None)] == [
        "30 min", "1 h", "90 min", "1 min 30 s", "45.0 s", "-"]


# ------------------------------------------------------------------------------------------
# Redaction and writing
# ------------------------------------------------------------------------------------------

def test_redact_nested_data_keys_and_longest_first():
    data = {"dsn": "postgresql://u:hunter2@db/x", "list": ["a hunter2 b", ("hunter2",), 5, None],
            "nested": {"hunter2": {"deep": "token-abc and token-abcdef"}}}
    clean = redact(data, ["hunter2", "token-abc", "token-abcdef", ""])
    assert clean == {"dsn": "postgresql://u:********@db/x", "list": ["a ******** b", ["********"], 5, None],
                     "nested": {"********": {"deep": "******** and ********"}}}
    assert data["dsn"].endswith("hunter2@db/x")            # the input is not changed
    assert redact(data, None) == data and redact(data, None) is not data


def test_write_report_layout_permissions_and_never_overwrites(tmp_path):
    report = drill().to_report(now=at(40))
    old_umask = os.umask(0o077)
    try:
        first = write_report(str(tmp_path / "reports"), "playbooks/dr_drill.yml", report, now=at(40))
        second = write_report(str(tmp_path / "reports"), "dr_drill.yml", report, now=at(40))
        third = write_report(str(tmp_path / "reports"), "dr_drill.yml", report, now=at(40))
    finally:
        os.umask(old_umask)
    assert os.path.basename(first["dir"]) == "20261124T024000Z-dr_drill"
    assert os.path.basename(second["dir"]) == "20261124T024000Z-dr_drill-2"
    assert os.path.basename(third["dir"]) == "20261124T024000Z-dr_drill-3"
    assert stat.S_IMODE(os.stat(first["dir"]).st_mode) == 0o755
    for key, name in (("json", "report.json"), ("markdown", "report.md"), ("html", "report.html")):
        assert os.path.basename(first[key]) == name
        assert stat.S_IMODE(os.stat(first[key]).st_mode) == 0o644
    written = json.loads(open(first["json"], encoding="utf-8").read())
    assert written["report_path"] == first["html"]
    assert written["set_stats"]["data"]["report_path"] == first["html"]
    assert report["report_path"] is None                   # the caller's report is left alone


def test_write_report_redacts_and_sanitises_the_name(tmp_path):
    timeline = drill()
    timeline.merge({"notes": ["password hunter2"]})
    paths = write_report(tmp_path, "../../evil name.yaml", timeline.to_report(now=at(40)), now=at(40),
                         secrets=["hunter2"])
    assert os.path.dirname(paths["dir"]) == str(tmp_path)
    assert os.path.basename(paths["dir"]) == "20261124T024000Z-evil_name"
    for key in ("json", "markdown", "html"):
        text = open(paths[key], encoding="utf-8").read()
        assert "hunter2" not in text and "********" in text


def test_write_report_refuses_a_file_as_base_dir(tmp_path):
    blocker = tmp_path / "reports"
    blocker.write_text("not a directory")
    with pytest.raises(DRError):
        write_report(str(blocker), "x.yml", drill().to_report(now=at(40)), now=at(40))
