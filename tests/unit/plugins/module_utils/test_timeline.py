"""The DR timeline engine with fixed datetimes: arithmetic, verdicts and budgets."""

import datetime

import pytest

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.timeline import (
    DEFAULT_TARGETS, Timeline, deep_merge, key_figures, redact, short_duration)
from ansible_collections.auditron.dr.plugins.module_utils.timeline_render import render_markdown, summary_line

from tests.unit.plugins.module_utils.timeline_runs import at, drill, iso, objective

UTC = datetime.timezone.utc


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
