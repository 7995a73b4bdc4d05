"""The metrics engine: exposition format, per-job textfiles, counters that survive runs, and
the Pushgateway push.

The Pushgateway here is a stand-in written in this file: a small HTTP server that records
every request and, like the real one, keeps the last PUT of each group and serves all groups
on GET /metrics with the grouping key added as labels. It checks what is sent, not how a real
Pushgateway would judge it.
"""

import base64
import datetime
import http.server
import os
import shutil
import stat
import subprocess
import threading

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import metrics
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.timeline import Timeline
from ansible_collections.auditron.dr.plugins.module_utils.timeline_render import write_report

UTC = datetime.timezone.utc
T0 = 1795000000.0     # 2026-11-18, a fixed clock for the runs below
SIZE_LABELS = {"location": "s3-us-east-1", "type": "full"}


def run(tmp_path, job="backup_database", site="primary", **kwargs):
    kwargs.setdefault("timestamp", T0)
    return metrics.write_job_metrics(job, site=site, textfile_dir=str(tmp_path), **kwargs)


def value_of(text, name, **labels):
    """The value of the one sample of `name` carrying exactly `labels`, or None."""
    for sample_name, sample_labels, value in metrics.samples_of(text):
        if sample_name == metrics.PREFIX + name and sample_labels == labels:
            return value
    return None


def names_in(text):
    return set(name for name, _labels, _value in metrics.samples_of(text))


# -- the exposition format ----------------------------------------------------------------------

def test_label_values_are_escaped_and_parse_back_unchanged():
    family = metrics.Family("auditron_dr_x", "gauge", "help with \\ and\nnewline")
    tricky = 'C:\\backups\\"daily"\nsecond line'
    family.set({"job": "j", "path": tricky}, 1)
    text = metrics.render([family])
    assert 'path="C:\\\\backups\\\\\\"daily\\"\\nsecond line"' in text
    assert "# HELP auditron_dr_x help with \\\\ and\\nnewline" in text
    parsed = metrics.parse(text)["auditron_dr_x"]
    assert parsed.get({"job": "j", "path": tricky}) == 1.0
    assert parsed.help == "help with \\ and\nnewline" and parsed.kind == "gauge"


@pytest.mark.parametrize("value, text", [(1, "1"), (12.5, "12.5"), (0.1, "0.1"), (float("inf"), "+Inf"),
                                         (float("-inf"), "-Inf"), (float("nan"), "NaN"), (1795000000.25, "1795000000.25"),
                                         (True, "1")])
def test_values_are_written_as_prometheus_reads_them(value, text):
    assert metrics.format_value(metrics.to_number(value, "v")) == text


@pytest.mark.parametrize("name", ["9lives", "has-dash", "has space", "", "ünïcode"])
def test_bad_metric_names_are_refused(name):
    with pytest.raises(DRError):
        metrics.check_metric_name(name)


@pytest.mark.parametrize("name, why", [("9x", "not valid"), ("a-b", "not valid"), ("__name__", "reserved")])
def test_bad_label_names_are_refused(name, why):
    with pytest.raises(DRError) as err:
        metrics.check_label_name(name, "auditron_dr_x")
    assert why in str(err.value) and "auditron_dr_x" in str(err.value)


def test_parse_reads_comments_timestamps_and_spacing():
    text = ("# a comment\n# HELP m Some help.\n# TYPE m counter\n"
            'm{a="1" , b="x,y}"} 3 1700000000000\n'
            "m 4\n\nother_metric{} +Inf\n")
    families = metrics.parse(text)
    assert families["m"].kind == "counter" and families["m"].help == "Some help."
    assert families["m"].get({"a": "1", "b": "x,y}"}) == 3.0 and families["m"].get({}) == 4.0
    assert families["other_metric"].get({}) == float("inf")


@pytest.mark.parametrize("line", ['m{a="1} 2', "m{a=1} 2", "m", "m{a=\"1\"} two", "{} 1"])
def test_parse_refuses_broken_lines_with_their_number(line):
    with pytest.raises(DRError) as err:
        metrics.parse("# ok\n" + line + "\n")
    assert "line 2" in str(err.value)


# -- one file per job and site, written atomically --------------------------------------------

def test_each_job_and_site_has_its_own_file_0644_even_under_a_tight_umask(tmp_path):
    old = os.umask(0o077)
    try:
        run(tmp_path, status="success")
        run(tmp_path, site="dr", status="failure")
        run(tmp_path, job="backup_files", status="success")
    finally:
        os.umask(old)
    files = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert files == ["auditron_dr_backup_database_dr.prom", "auditron_dr_backup_database_primary.prom",
                     "auditron_dr_backup_files_primary.prom"]
    for name in files:
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644
    # Only the hidden lock files remain beside them: no temporary file, nothing else ending in .prom.
    hidden = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert all(name.endswith(".prom.lock") for name in hidden), hidden
    primary = (tmp_path / "auditron_dr_backup_database_primary.prom").read_text()
    assert value_of(primary, "last_run_success", job="backup_database", site="primary") == 1
    dr = (tmp_path / "auditron_dr_backup_database_dr.prom").read_text()
    assert value_of(dr, "last_run_success", job="backup_database", site="dr") == 0


def test_the_file_is_replaced_by_rename_so_a_reader_never_sees_half_of_it(tmp_path):
    run(tmp_path, status="success")
    path = tmp_path / "auditron_dr_backup_database_primary.prom"
    before = path.stat().st_ino
    with open(path) as reader:          # a collector in the middle of reading the old file
        run(tmp_path, status="success", timestamp=T0 + 60)
        assert value_of(reader.read(), "job_runs_total", job="backup_database", site="primary", status="success") == 1
    assert path.stat().st_ino != before
    assert value_of(path.read_text(), "job_runs_total", job="backup_database", site="primary", status="success") == 2


def test_a_missing_directory_is_an_error_not_a_new_directory(tmp_path):
    with pytest.raises(DRError) as err:
        run(tmp_path / "typo", status="success")
    assert "does not exist" in str(err.value) and "monitoring role" in str(err.value)
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("job, site", [("../etc/passwd", None), ("backup database", None), ("ok", "a/b"), ("", None)])
def test_job_and_site_must_be_safe_in_a_file_name(tmp_path, job, site):
    with pytest.raises(DRError):
        run(tmp_path, job=job, site=site, status="success")


# -- counters and timestamps across runs --------------------------------------------------------

def test_counters_add_up_across_runs_and_the_last_success_survives_a_failure(tmp_path):
    first = run(tmp_path, status="success", timestamp=T0, duration_seconds=42.5, size_bytes=1000, labels=SIZE_LABELS)
    assert first["changed"] and first["job_runs"] == {"success": 1, "failure": 0}
    run(tmp_path, status="success", timestamp=T0 + 3600, size_bytes=1100, labels=SIZE_LABELS)
    third = run(tmp_path, status="failure", timestamp=T0 + 7200)
    assert third["job_runs"] == {"success": 2, "failure": 1}
    text = third["text"]
    key = dict(job="backup_database", site="primary")
    assert value_of(text, "job_runs_total", status="success", **key) == 2
    assert value_of(text, "job_runs_total", status="failure", **key) == 1
    assert value_of(text, "last_run_timestamp_seconds", **key) == T0 + 7200
    assert value_of(text, "last_success_timestamp_seconds", **key) == T0 + 3600
    assert value_of(text, "last_run_success", **key) == 0
    # The failed run measured nothing: neither the old size nor the old duration is shown as its own.
    assert "auditron_dr_backup_size_bytes" not in names_in(text)
    assert "auditron_dr_duration_seconds" not in names_in(text)
    assert "# TYPE auditron_dr_job_runs_total counter" in text


def test_a_job_that_never_succeeded_has_last_success_zero(tmp_path):
    text = run(tmp_path, status="failure")["text"]
    assert value_of(text, "last_success_timestamp_seconds", job="backup_database", site="primary") == 0
    assert value_of(text, "job_runs_total", job="backup_database", site="primary", status="success") == 0


def test_concurrent_runs_of_one_job_lose_no_count(tmp_path):
    errors = []

    def one_run(number):
        try:
            run(tmp_path, status="success" if number % 3 else "failure", timestamp=T0 + number)
        except Exception as exc:  # pylint: disable=broad-except
            errors.append(exc)

    threads = [threading.Thread(target=one_run, args=(n,)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    text = (tmp_path / "auditron_dr_backup_database_primary.prom").read_text()
    key = dict(job="backup_database", site="primary")
    assert value_of(text, "job_runs_total", status="success", **key) == 16
    assert value_of(text, "job_runs_total", status="failure", **key) == 8


def test_a_corrupt_previous_file_warns_and_starts_again(tmp_path):
    (tmp_path / "auditron_dr_backup_database_primary.prom").write_text('auditron_dr_job_runs_total{job="x 1\n')
    result = run(tmp_path, status="success")
    assert result["warnings"] and "not a valid metrics file" in result["warnings"][0]
    assert result["job_runs"] == {"success": 1, "failure": 0}


def test_an_observation_keeps_the_run_and_writing_it_again_changes_nothing(tmp_path):
    run(tmp_path, job="wal_archive", status="success", duration_seconds=1.5)
    gauge = [{"name": "wal_archive_age_seconds", "value": 42, "labels": {"repo": "repo1"}}]
    first = run(tmp_path, job="wal_archive", gauges=gauge, timestamp=T0 + 60)
    assert first["changed"] and first["status"] is None
    again = run(tmp_path, job="wal_archive", gauges=gauge, timestamp=T0 + 120)
    assert not again["changed"]
    key = dict(job="wal_archive", site="primary")
    assert value_of(again["text"], "wal_archive_age_seconds", repo="repo1", **key) == 42
    assert value_of(again["text"], "last_run_timestamp_seconds", **key) == T0
    assert value_of(again["text"], "duration_seconds", **key) == 1.5
    assert value_of(again["text"], "job_runs_total", status="success", **key) == 1


def test_check_mode_returns_the_text_and_writes_nothing_and_diff_shows_both(tmp_path):
    run(tmp_path, status="success")
    path = tmp_path / "auditron_dr_backup_database_primary.prom"
    before = path.read_text()
    result = run(tmp_path, status="failure", timestamp=T0 + 60, check_mode=True, diff=True)
    assert result["changed"] and path.read_text() == before
    assert value_of(result["text"], "job_runs_total", job="backup_database", site="primary", status="failure") == 1
    assert result["diff"]["before"] == before and result["diff"]["after"] == result["text"]
    assert result["diff"]["before_header"] == str(path)


# -- measured gauges -----------------------------------------------------------------------------

def test_gauges_checks_and_sizes_carry_their_labels(tmp_path):
    result = run(tmp_path, job="verify_backups", site="dr", status="failure", labels={"stanza": "auditron"},
                 checks=[{"name": "restore", "result": "ok", "detail": "11 s"},
                         {"name": "row_counts", "result": "failed", "phase": "verify"},
                         {"name": "amcheck", "result": True}],
                 gauges=[{"name": "auditron_dr_restore_seconds", "value": "11.5"},
                         {"name": "backup_size_bytes", "value": 10, "labels": {"location": "local", "type": "incr"}}])
    text = result["text"]
    key = dict(job="verify_backups", site="dr", stanza="auditron")
    assert value_of(text, "verification_success", check="restore", **key) == 1
    assert value_of(text, "verification_success", check="row_counts", **key) == 0
    assert value_of(text, "verification_success", check="amcheck", **key) == 1
    assert value_of(text, "restore_seconds", **key) == 11.5
    assert value_of(text, "backup_size_bytes", location="local", type="incr", **key) == 10
    # Run metrics carry job and site only.
    assert value_of(text, "last_run_success", job="verify_backups", site="dr") == 0
    assert "# HELP auditron_dr_restore_seconds Gauge written by auditron.dr.dr_metrics." in text


@pytest.mark.parametrize("kwargs, message", [
    ({"size_bytes": 5}, "needs the labels location and type"),
    ({"gauges": [{"name": "verification_success", "value": 1}]}, "needs the label check"),
    ({"gauges": [{"name": "wal_archive_age_seconds", "value": 1}]}, "needs the label repo"),
    ({"gauges": [{"name": "last_run_success", "value": 1}]}, "computed by the module"),
    ({"gauges": [{"name": "job_runs_total", "value": 1}]}, "computed by the module"),
    ({"gauges": [{"name": "errors_total", "value": 1}]}, "must not end in _total"),
    ({"gauges": [{"name": "bad-name", "value": 1}]}, "is not valid"),
    ({"gauges": [{"name": "x", "value": "many"}]}, "is not a number"),
    ({"gauges": [{"name": "x", "value": 1, "labels": {"job": "other"}}]}, "set by the module"),
    ({"gauges": [{"name": "x", "value": 1, "labels": {"instance": "h"}}]}, "set by the module"),
    ({"gauges": [{"name": "x", "value": 1, "labels": {"9": "h"}}]}, "is not valid"),
    ({"gauges": [{"name": "x", "value": 1}, {"name": "auditron_dr_x", "value": 2}]}, "given twice"),
    ({"checks": [{"name": "restore", "result": "maybe"}]}, "neither ok nor failed"),
    ({"checks": [{"result": "ok"}]}, "needs a name"),
])
def test_bad_gauges_are_refused_with_the_reason(tmp_path, kwargs, message):
    with pytest.raises(DRError) as err:
        run(tmp_path, status="success", **kwargs)
    assert message in str(err.value)
    assert not list(tmp_path.glob("*.prom"))


def test_nowhere_to_write_is_an_error():
    with pytest.raises(DRError) as err:
        metrics.write_job_metrics("backup_database", status="success")
    assert "nowhere to write" in str(err.value)


# -- drill figures from a real report ------------------------------------------------------------

def _drill_report(tmp_path, restored_after_minutes):
    start = datetime.datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    timeline = Timeline(playbook="dr_drill.yml", started_at=start)
    timeline.start_task("restore_database", start, "restore")
    timeline.merge({"markers": {"incident_start": "2026-11-24T02:00:00Z", "recovery_point": "2026-11-24T01:40:00Z"},
                    "scenario": "monthly drill", "site": "dr"})
    end = start + datetime.timedelta(minutes=restored_after_minutes or 50)
    timeline.record_result("restore_database", end, "ok", "restore", "dr")
    if restored_after_minutes:
        timeline.merge({"markers": {"service_restored": end.strftime("%Y-%m-%dT%H:%M:%SZ")}})
    timeline.finish(end, {"dr": 0})
    return write_report(str(tmp_path / "reports"), "dr_drill.yml", timeline.to_report(now=end), now=end)["json"]


def test_a_drill_report_becomes_rto_rpo_gauges_status_and_duration(tmp_path):
    report = _drill_report(tmp_path, restored_after_minutes=40)
    text = run(tmp_path, job="dr_drill", site=None, report_file=report)["text"]   # the site comes from the report
    key = dict(job="dr_drill", site="dr")
    assert value_of(text, "drill_rto_seconds", **key) == 2400
    assert value_of(text, "drill_rpo_seconds", **key) == 1200
    assert value_of(text, "rto_target_seconds", **key) == 1800
    assert value_of(text, "rpo_target_seconds", **key) == 900
    assert value_of(text, "last_run_success", **key) == 1     # the report's run succeeded
    assert value_of(text, "duration_seconds", **key) == 2400


def test_a_drill_that_never_restored_the_service_has_an_infinite_rto(tmp_path):
    report = _drill_report(tmp_path, restored_after_minutes=None)
    text = run(tmp_path, job="dr_drill", site="dr", report_file=os.path.dirname(report))["text"]
    assert 'auditron_dr_drill_rto_seconds{job="dr_drill",site="dr"} +Inf' in text


def test_a_report_that_is_not_a_report_is_refused(tmp_path):
    (tmp_path / "report.json").write_text('{"hello": 1}')
    with pytest.raises(DRError) as err:
        run(tmp_path, job="dr_drill", report_file=str(tmp_path / "report.json"))
    assert "not a report" in str(err.value)


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool is not installed")
def test_promtool_finds_nothing_to_lint_in_a_full_file(tmp_path):
    report = _drill_report(tmp_path, restored_after_minutes=20)
    run(tmp_path, job="dr_drill", site="dr", report_file=report, checks=[{"name": "restore", "result": "ok"}],
        gauges=[{"name": "backup_size_bytes", "value": 5, "labels": SIZE_LABELS},
                {"name": "wal_archive_age_seconds", "value": 3, "labels": {"repo": "repo1"}}])
    text = (tmp_path / "auditron_dr_dr_drill_dr.prom").read_text()
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), lint.stdout + lint.stderr


# -- the Pushgateway ---------------------------------------------------------------------------

class PushgatewayStandIn(http.server.ThreadingHTTPServer):
    """Records requests; keeps each group's last PUT; GET /metrics serves every group with its
    grouping key as labels. `fail_next` answers that many requests with 503."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _PushgatewayHandler)
        self.requests = []
        self.groups = {}
        self.fail_next = 0
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server_address[1]


class _PushgatewayHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass

    def _answer(self, code, body=b""):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _record(self, body=b""):
        self.server.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                     "body": body.decode("utf-8")})
        if self.server.fail_next:
            self.server.fail_next -= 1
            self._answer(503, b"busy")
            return False
        return True

    def do_PUT(self):  # pylint: disable=invalid-name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self._record(body):
            parts = self.path.split("/")   # /metrics/job/<job>/instance/<instance>
            self.server.groups[(parts[3], parts[5])] = metrics.parse(body.decode("utf-8"))
            self._answer(200)

    do_POST = do_PUT

    def do_GET(self):  # pylint: disable=invalid-name
        if not self._record():
            return
        families = {}
        for (job, instance), group in self.server.groups.items():
            for name, family in group.items():
                merged = families.setdefault(name, metrics.Family(name, family.kind, family.help))
                for key, value in family.samples.items():
                    merged.set(dict(key, job=job, instance=instance), value)
        extra = metrics.Family("push_time_seconds", "gauge", "Last push.")
        extra.set({"job": "x", "instance": "y"}, 1)
        self._answer(200, metrics.render([extra] + list(families.values())).encode("utf-8"))


@pytest.fixture
def pushgateway():
    server = PushgatewayStandIn()
    yield server
    server.shutdown()
    server.server_close()


def push_settings(server, **extra):
    settings = {"url": server.url, "username": "auditron", "password": "s3cret", "attempts": 2,
                "backoff_seconds": 0.01}
    settings.update(extra)
    return settings


def test_push_puts_the_group_without_its_job_label_with_basic_auth(tmp_path, pushgateway):
    result = run(tmp_path, status="success", size_bytes=7, labels=SIZE_LABELS, pushgateway=push_settings(pushgateway))
    assert result["pushed"] and result["push_url"].endswith("/metrics/job/backup_database/instance/primary")
    put = [r for r in pushgateway.requests if r["method"] == "PUT"]
    assert len(put) == 1 and put[0]["path"] == "/metrics/job/backup_database/instance/primary"
    assert 'job="' not in put[0]["body"] and 'site="primary"' in put[0]["body"]
    assert put[0]["headers"]["Authorization"] == "Basic " + base64.b64encode(b"auditron:s3cret").decode()
    assert put[0]["headers"]["Content-Type"].startswith("text/plain; version=0.0.4")
    # The textfile keeps the job label; it is the push that drops it.
    assert 'job="backup_database"' in (tmp_path / "auditron_dr_backup_database_primary.prom").read_text()


def test_push_only_reads_its_previous_counters_back_from_the_pushgateway(pushgateway):
    settings = push_settings(pushgateway)
    for status in ("success", "failure", "success"):
        result = metrics.write_job_metrics("backup_files", site="dr", status=status, timestamp=T0,
                                           pushgateway=settings)
        assert result["pushed"] and not result["warnings"]
    assert result["job_runs"] == {"success": 2, "failure": 1}
    stored = pushgateway.groups[("backup_files", "dr")]["auditron_dr_job_runs_total"]
    assert stored.get({"site": "dr", "status": "success"}) == 2


def test_an_unchanged_observation_is_not_pushed_again(tmp_path, pushgateway):
    settings = push_settings(pushgateway)
    gauge = [{"name": "wal_archive_age_seconds", "value": 5, "labels": {"repo": "repo1"}}]
    assert run(tmp_path, job="wal_archive", gauges=gauge, pushgateway=settings)["pushed"]
    again = run(tmp_path, job="wal_archive", gauges=gauge, pushgateway=settings)
    assert not again["changed"] and not again["pushed"]
    assert [r["method"] for r in pushgateway.requests] == ["GET", "PUT", "GET"]


def test_check_mode_pushes_nothing(tmp_path, pushgateway):
    result = run(tmp_path, status="success", pushgateway=push_settings(pushgateway), check_mode=True)
    assert result["changed"] and not result["pushed"]
    assert [r["method"] for r in pushgateway.requests] == ["GET"]


def test_a_busy_pushgateway_is_retried(tmp_path, pushgateway):
    run(tmp_path, status="success", pushgateway=push_settings(pushgateway))
    pushgateway.requests.clear()
    pushgateway.fail_next = 2      # the GET (one attempt) and the first PUT
    result = run(tmp_path, status="success", pushgateway=push_settings(pushgateway))
    assert result["pushed"]
    assert [r["method"] for r in pushgateway.requests] == ["GET", "PUT", "PUT"]
    assert "could not read" in result["warnings"][0]


def test_a_failed_push_warns_unless_it_is_required(tmp_path, pushgateway):
    pushgateway.fail_next = 100
    result = run(tmp_path, status="failure", pushgateway=push_settings(pushgateway))
    assert not result["pushed"] and any("not pushed" in w for w in result["warnings"])
    assert (tmp_path / "auditron_dr_backup_database_primary.prom").exists()    # the textfile still has it
    assert "s3cret" not in repr(result)
    with pytest.raises(DRError) as err:
        run(tmp_path, status="failure", pushgateway=push_settings(pushgateway, required=True))
    assert "not pushed" in str(err.value) and "HTTP 503" in str(err.value)


def test_a_closed_port_is_a_warning_naming_only_the_host(tmp_path):
    result = run(tmp_path, status="success",
                 pushgateway={"url": "http://user:pw@127.0.0.1:1/secret-path", "attempts": 1})
    assert not result["pushed"]
    assert all("secret-path" not in w and "pw@" not in w for w in result["warnings"])
    assert "http://127.0.0.1:1" in result["warnings"][-1]


@pytest.mark.parametrize("job, instance, path", [
    ("backup_database", "primary", "/metrics/job/backup_database/instance/primary"),
    ("backup_database", "a/b", "/metrics/job/backup_database/instance@base64/YS9i"),
    ("backup_database", "", "/metrics/job/backup_database/instance@base64/="),
    ("backup_database", "db 1", "/metrics/job/backup_database/instance/db%201"),
])
def test_grouping_path_encodes_what_a_path_cannot_carry(job, instance, path):
    assert metrics.grouping_path(job, instance) == path


def test_backup_size_gauges_come_from_what_each_repository_and_location_stored(tmp_path):
    physical = {"repos": [
        {"name": "repo1", "ok": True, "type": "incr", "repo_size": 900, "repo_delta": 120},
        {"name": "repo2", "ok": True, "type": "full", "repo_size": 800, "repo_delta": 800},
        {"name": "repo3", "ok": False, "error": "unreachable: timed out"}]}
    logical = {"size": 4096, "locations": ["local", "s3-us-east-1"]}
    gauges = metrics.backup_size_gauges(physical, logical)
    assert gauges == [
        {"name": "backup_size_bytes", "value": 120, "labels": {"location": "repo1", "type": "incr"}},
        {"name": "backup_size_bytes", "value": 800, "labels": {"location": "repo2", "type": "full"}},
        {"name": "backup_size_bytes", "value": 4096, "labels": {"location": "local", "type": "logical"}},
        {"name": "backup_size_bytes", "value": 4096, "labels": {"location": "s3-us-east-1", "type": "logical"}}]
    # They are what dr_metrics accepts and what the size-anomaly alert reads.
    run(tmp_path, status="success", duration_seconds=3, gauges=gauges)
    text = (tmp_path / "auditron_dr_backup_database_primary.prom").read_text()
    assert value_of(text, "backup_size_bytes", job="backup_database", site="primary", location="repo1",
                    type="incr") == 120


def test_the_file_backup_size_gauge_is_what_its_current_prefix_holds():
    synced = {"backup_bytes": 58000000, "backup_objects": 1003, "check_mode": False}
    assert metrics.backup_size_gauges(files=synced, files_location="s3-us-east-1") == [
        {"name": "backup_size_bytes", "value": 58000000, "labels": {"location": "s3-us-east-1", "type": "mirror"}}]
    # No gauge from a failed sync, a check-mode run, or without the location's name.
    assert metrics.backup_size_gauges(files=dict(synced, failed=True), files_location="s3-us-east-1") == []
    assert metrics.backup_size_gauges(files=dict(synced, check_mode=True), files_location="s3-us-east-1") == []
    assert metrics.backup_size_gauges(files=synced) == []


def test_backup_size_gauges_of_a_run_that_made_nothing_are_none():
    assert metrics.backup_size_gauges(None, None) == []
    assert metrics.backup_size_gauges({"repos": [{"name": "repo1", "ok": False}]}, {"skipped": True}) == []
