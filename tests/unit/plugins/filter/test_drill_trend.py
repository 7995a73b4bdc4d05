"""drill_trend: the earlier drills' figures come from the reports under the report directory,
oldest first, and only from drill reports (the glob ansible's fileglob cannot do)."""

import json

from ansible_collections.auditron.dr.plugins.filter.drill_figures import drill_trend


def write_report(root, name, start, rto):
    directory = root / name
    directory.mkdir(parents=True)
    report = {"run": {"start": start, "status": "success"}, "markers": {"recovery_point": start},
              "rto": {"achieved_seconds": rto, "target_seconds": 1800, "verdict": "met"},
              "rpo": {"achieved_seconds": 1.0, "target_seconds": 900, "verdict": "met"}}
    (directory / "report.json").write_text(json.dumps(report))


def test_drill_reports_oldest_first_and_nothing_else(tmp_path):
    write_report(tmp_path, "20261205T020000Z-dr_drill", "2026-12-05T02:00:00+00:00", 40.0)
    write_report(tmp_path, "20261107T020000Z-dr_drill", "2026-11-07T02:00:00+00:00", 50.0)
    write_report(tmp_path, "20261206T020000Z-failover", "2026-12-06T02:00:00+00:00", 30.0)
    trend = drill_trend(str(tmp_path))
    assert [row["started_at"] for row in trend] == ["2026-11-07T02:00:00+00:00", "2026-12-05T02:00:00+00:00"]
    assert [row["rto_seconds"] for row in trend] == [50.0, 40.0]


def test_no_report_directory_yet_is_no_earlier_drill(tmp_path):
    assert drill_trend(str(tmp_path / "reports")) == []
