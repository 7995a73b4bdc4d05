"""Runs of the DR timeline at fixed datetimes, shared by the engine's and the renderer's tests."""

import datetime

from ansible_collections.auditron.dr.plugins.module_utils.timeline import Timeline

UTC = datetime.timezone.utc


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
