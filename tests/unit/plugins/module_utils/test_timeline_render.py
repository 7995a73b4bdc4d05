"""The DR report as people read it, from runs at fixed datetimes: JSON, Markdown, HTML and SVG,
and the report files a run writes."""

import datetime
import json
import os
import re
import stat
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.timeline import Timeline, display_time, key_figures
from ansible_collections.auditron.dr.plugins.module_utils.timeline_render import (
    render_gantt_svg, render_html, render_json, render_markdown, write_report)

from tests.unit.plugins.module_utils.timeline_runs import at, drill, iso

UTC = datetime.timezone.utc
SVG = "{http://www.w3.org/2000/svg}"


# ------------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------------

def test_json_round_trips_and_has_set_stats():
    report = drill().to_report(now=at(40))
    loaded = json.loads(render_json(report))
    assert loaded["schema"] == "auditron.dr.report/1"
    assert loaded["set_stats"]["data"]["rto_seconds"] == 1800
    assert render_json(drill()) .startswith("{")   # a Timeline is accepted as well


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
