"""Notifications: payloads, delivery with retries, and that a failed notification never fails
the run unless required.

The receiver is a stand-in written here: a small local HTTP server that records every request
and answers with the statuses a test scripts. It is not Slack; it shows what we send and how
we react to answers, which is what these tests are about.
"""

import datetime
import http.server
import json
import subprocess
import threading
import time

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import notify
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.timeline import Timeline
from ansible_collections.auditron.dr.plugins.module_utils.timeline_render import write_report

from tests.conftest import REPO, VENV_BIN, ansible_env

UTC = datetime.timezone.utc
SECRET_PATH = "/services/T000/B000/XXXXsecretXXXX"
FIGURES = {"rto_seconds": 1450.0, "rto_target_seconds": 1800.0, "rto_met": True, "rpo_seconds": 1200.0,
           "rpo_target_seconds": 900.0, "rpo_met": False, "recovery_point": "2026-11-24T01:40:00Z",
           "backup_used": "20261124-020000F", "report_path": "/srv/reports/x/report.html"}


class Receiver(http.server.ThreadingHTTPServer):
    """Answers with `script` (a list of (status, headers, delay seconds)), then 200; records
    each request as {method, path, headers, json}."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.requests = []
        self.script = []
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def url(self, path=SECRET_PATH):
        return "http://127.0.0.1:%d%s" % (self.server_address[1], path)


class _ReceiverHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass

    def do_POST(self):  # pylint: disable=invalid-name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                     "json": json.loads(body.decode("utf-8"))})
        status, headers, delay = self.server.script.pop(0) if self.server.script else (200, {}, 0)
        time.sleep(delay)
        answer = b"ok" if status == 200 else b"no_service"
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        except (BrokenPipeError, ConnectionResetError):
            pass   # the client gave up waiting: what a timeout test wants


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.shutdown()
    server.server_close()


class Sleeps(list):
    """Stands in for time.sleep: records the waits instead of waiting."""

    def __call__(self, seconds):
        self.append(seconds)


def event(status="failed", **kwargs):
    kwargs.setdefault("scenario", "database corruption")
    kwargs.setdefault("site", "primary")
    kwargs.setdefault("figures", FIGURES)
    return notify.build_event(status, at=datetime.datetime(2026, 11, 24, 2, 30, tzinfo=UTC), **kwargs)


# -- payloads ------------------------------------------------------------------------------------

def test_the_json_payload_has_every_field_people_act_on():
    body = notify.payload(event(phase="Restore database", message="pg_restore: relation exists",
                                playbook="restore_database.yml"), "json")
    assert body["schema"] == "auditron.dr.notification/1" and body["status"] == "failed"
    assert body["scenario"] == "database corruption" and body["site"] == "primary"
    assert body["playbook"] == "restore_database.yml" and body["at"] == "2026-11-24T02:30:00Z"
    assert body["rto_seconds"] == 1450 and body["rto_met"] is True and body["rpo_met"] is False
    assert body["report_path"] == "/srv/reports/x/report.html"
    assert body["failed_phase"] == "Restore database" and body["failure_message"] == "pg_restore: relation exists"
    assert body["text"] == ("DR database corruption at primary FAILED in Restore database: pg_restore: relation "
                            "exists — RTO 24 min 10 s (target 30 min 00 s, met), RPO 20 min 00 s (target 15 min 00 s, "
                            "MISSED)")
    json.dumps(body)   # plain JSON, nothing else


def test_a_start_carries_no_failure_and_unknown_objectives_are_left_out():
    body = notify.payload(event("started", figures={}), "json")
    assert body["failed_phase"] is None and body["failure_message"] is None
    assert body["text"] == "DR database corruption at primary started"


def test_the_slack_payload_is_text_plus_blocks_within_slack_limits():
    body = notify.payload(event(phase="Switch traffic", message="x" * 5000, scenario="s" * 300), "slack")
    assert set(body) == {"text", "blocks"}
    header, section = body["blocks"][0], body["blocks"][1]
    assert header["type"] == "header" and len(header["text"]["text"]) <= 150
    assert header["text"]["text"].startswith(":rotating_light: DR ")
    assert len(section["fields"]) <= 10
    assert any("*RTO*" in f["text"] for f in section["fields"])
    failure = [b for b in body["blocks"] if b["type"] == "section" and "*Failure*" in b["text"]["text"]]
    assert failure and len(failure[0]["text"]["text"]) <= 3000
    assert body["blocks"][-1]["type"] == "context"


def test_extra_fields_may_not_replace_the_modules_own():
    assert notify.payload(event(extra={"ticket": "INC-42"}), "json")["ticket"] == "INC-42"
    with pytest.raises(DRError):
        event(extra={"status": "succeeded"})


def test_a_failed_runs_report_fills_the_failure_and_the_figures(tmp_path):
    start = datetime.datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    timeline = Timeline(playbook="failover.yml", started_at=start)
    timeline.start_task("switch_traffic", start, "nsupdate", title="Switch traffic")
    timeline.merge({"scenario": "complete infrastructure failure", "site": "dr",
                    "markers": {"incident_start": "2026-11-24T02:00:00Z"}})
    timeline.record_result("switch_traffic", start + datetime.timedelta(minutes=3), "failed", "nsupdate", "dr",
                           message="REFUSED")
    timeline.finish(start + datetime.timedelta(minutes=3), {"dr": 1})
    paths = write_report(str(tmp_path), "failover.yml", timeline.to_report(), now=start)
    figures = notify.figures_from_report(paths["dir"])
    body = notify.payload(notify.build_event("failed", figures=figures), "json")
    assert body["scenario"] == "complete infrastructure failure" and body["site"] == "dr"
    assert body["playbook"] == "failover.yml"
    assert body["failed_phase"] == "Switch traffic" and body["failure_message"] == "REFUSED"
    assert body["report_path"] == paths["html"]


# -- delivery ------------------------------------------------------------------------------------

def test_delivery_posts_json_with_the_given_headers(receiver):
    result = notify.notify(receiver.url(), event(), headers={"Authorization": "Bearer t0k"})
    assert result["delivered"] and result["changed"] and result["attempts"] == 1 and result["http_status"] == 200
    request = receiver.requests[0]
    assert request["path"] == SECRET_PATH and request["json"]["status"] == "failed"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["Authorization"] == "Bearer t0k"
    assert result["dr_report"]["notifications"][0]["delivered"] is True


def test_overloaded_receivers_are_retried_with_doubling_backoff(receiver):
    receiver.script = [(500, {}, 0), (503, {}, 0)]
    sleeps = Sleeps()
    result = notify.notify(receiver.url(), event(), attempts=4, backoff_seconds=1.5, sleep=sleeps)
    assert result["delivered"] and result["attempts"] == 3
    assert sleeps == [1.5, 3.0]
    assert len(receiver.requests) == 3


def test_retry_after_is_honoured_up_to_a_minute(receiver):
    receiver.script = [(429, {"Retry-After": "7"}, 0), (429, {"Retry-After": "3600"}, 0)]
    sleeps = Sleeps()
    result = notify.notify(receiver.url(), event(), attempts=3, backoff_seconds=1, sleep=sleeps)
    assert result["delivered"] and sleeps == [7.0, 60.0]


def test_a_timeout_is_retried(receiver):
    receiver.script = [(200, {}, 1.5)]
    sleeps = Sleeps()
    result = notify.notify(receiver.url(), event(), attempts=2, timeout=0.5, backoff_seconds=0.1, sleep=sleeps)
    assert result["delivered"] and result["attempts"] == 2 and sleeps == [0.1]


def test_a_refusal_is_not_retried_and_only_warns(receiver):
    receiver.script = [(404, {}, 0)]
    sleeps = Sleeps()
    result = notify.notify(receiver.url(), event(), attempts=5, sleep=sleeps)
    assert not result["delivered"] and not result["changed"] and result["attempts"] == 1 and sleeps == []
    assert result["http_status"] == 404
    assert "answered HTTP 404: no_service" in result["error"]
    assert result["warnings"] and "the DR run goes on" in result["warnings"][0]
    assert result["dr_report"]["notifications"][0]["delivered"] is False


def test_a_required_notification_that_cannot_be_delivered_fails(receiver):
    receiver.script = [(500, {}, 0)] * 3
    with pytest.raises(DRError) as err:
        notify.notify(receiver.url(), event(), attempts=3, backoff_seconds=0, required=True, sleep=Sleeps())
    assert "not delivered" in str(err.value) and "HTTP 500" in str(err.value) and "3 attempts" in str(err.value)
    assert err.value.details["http_status"] == 500 and err.value.details["delivered"] is False
    assert SECRET_PATH not in str(err.value) and SECRET_PATH not in repr(err.value.details)


def test_an_unreachable_receiver_is_retried_then_warns_without_the_secret_url():
    sleeps = Sleeps()
    url = "http://hook-user:hook-pass@127.0.0.1:1" + SECRET_PATH
    result = notify.notify(url, event(), attempts=3, backoff_seconds=0.2, sleep=sleeps)
    assert not result["delivered"] and result["attempts"] == 3 and sleeps == [0.2, 0.4]
    assert result["target"] == "http://127.0.0.1:1"
    text = json.dumps(result, default=str)
    assert "secret" not in text and "hook-pass" not in text
    assert "does not answer" in result["error"]


def test_check_mode_sends_nothing(receiver):
    result = notify.notify(receiver.url(), event(), check_mode=True)
    assert result["changed"] and not result["delivered"] and receiver.requests == []
    assert result["payload"]["status"] == "failed"


@pytest.mark.parametrize("url, shown", [
    ("https://hooks.slack.com/services/T/B/secret", "https://hooks.slack.com"),
    ("http://u:p@example.org:8080/x?token=1", "http://example.org:8080"),
    ("not a url", "://?"),
])
def test_describe_url_keeps_only_scheme_and_host(url, shown):
    assert notify.describe_url(url).endswith(shown)


# -- the module, as a playbook runs it -----------------------------------------------------------

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  module_defaults:
    auditron.dr.dr_notify:
      url: "{{ hook_url }}"
      format: slack
      scenario: database corruption
      site: primary
      attempts: 2
      backoff_seconds: 0
  tasks:
    - name: Tell the receiver the run started
      auditron.dr.dr_notify:
        status: started
      register: started

    - name: Tell a receiver that is down that the run failed
      auditron.dr.dr_notify:
        status: failed
        phase: Restore database
        detail: pg_restore failed
      register: failed

    - name: The run goes on
      ansible.builtin.debug:
        msg: "started delivered={{ started.delivered }}, failed delivered={{ failed.delivered }}"

    - name: A required notification that cannot be delivered fails
      auditron.dr.dr_notify:
        status: succeeded
        required: true
"""


@pytest.mark.slow
def test_module_delivers_warns_or_fails_as_told_and_never_logs_the_url(tmp_path, receiver):
    # 200 for the start; 502 twice for the failure (warned); 502 twice for the required one (fails).
    receiver.script = [(200, {}, 0)] + [(502, {}, 0)] * 4
    (tmp_path / "notify.yml").write_text(PLAYBOOK)
    env = ansible_env({"ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections")})
    env.pop("ANSIBLE_CONFIG", None)
    command = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-e", "ansible_connection=local",
               "-e", "ansible_python_interpreter=%s" % (VENV_BIN / "python"), "-e", "hook_url=%s" % receiver.url(),
               "-vvv", str(tmp_path / "notify.yml")]
    completed = subprocess.run(command, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120,
                               check=False)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 2, output
    assert "started delivered=True, failed delivered=False" in output
    assert "[WARNING]" in output and "notification failed not delivered (the DR run goes on)" in output
    assert "notification succeeded not delivered" in output
    assert "XXXXsecretXXXX" not in output
    assert [r["json"]["text"] for r in receiver.requests][:2] == [
        "DR database corruption at primary started",
        "DR database corruption at primary FAILED in Restore database: pg_restore failed"]
