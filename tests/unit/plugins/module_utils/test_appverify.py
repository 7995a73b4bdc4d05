"""Verifying the app without a lab: a real HTTP server on loopback; the database side is
replaced by canned snapshots here (tests/integration/test_app_platform.py compares with the
lab's PostgreSQL).
"""

import json
from http.server import BaseHTTPRequestHandler

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import appverify
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from tests.helpers.http_stub import ServedOnLoopback
from tests.unit.plugins.module_utils.platform_fakes import FakeClock


# ---------------------------------------------------------------------------------------------
# verify

class FakeApi:
    """A real HTTP server on loopback whose answers the test sets."""

    def __init__(self):
        self.health = [(200, {"status": "ok"})]
        self.invoices = (200, {"count": 3, "max_id": 3, "max_createdAt": "2026-11-24T01:00:00.123456+00:00",
                               "invoices": [{"id": 3}]})
        self.token = "s3cret-token"
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # pylint: disable=arguments-differ
                return

            def do_GET(self):  # pylint: disable=invalid-name
                if self.path == "/health":
                    status, body = api.health.pop(0) if len(api.health) > 1 else api.health[0]
                elif self.headers.get("Authorization") != "Bearer " + api.token:
                    status, body = 401, {"error": "missing or wrong bearer token"}
                else:
                    status, body = api.invoices
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.served = ServedOnLoopback(Handler)
        self.url = self.served.url

    def close(self):
        self.served.close()


@pytest.fixture
def api(monkeypatch):
    server = FakeApi()
    import datetime  # pylint: disable=import-outside-toplevel
    snapshot = {"count": 3, "max_id": 3,
                "max_createdAt": datetime.datetime(2026, 11, 24, 1, 0, 0, 123456, tzinfo=datetime.timezone.utc)}
    server.database = snapshot
    monkeypatch.setattr(appverify, "database_snapshot", lambda *args, **kwargs: dict(server.database))
    yield server
    server.close()


def verify(api, **kwargs):
    clock = FakeClock()
    options = dict(token=api.token, postgres={}, timeout=10, interval=1, sleep=clock.sleep, clock=clock.clock)
    options.update(kwargs)
    return appverify.verify_app("dr", api.url, **options)


def test_verify_passes_and_reports_checks_and_the_restored_marker(api):
    result = verify(api)
    assert result["passed"] and result["attempts"] == 1
    assert [c["result"] for c in result["dr_report"]["checks"]] == ["ok", "ok"]
    assert [c["name"] for c in result["checks"]] == ["app health (dr)", "app data (dr)"]
    assert result["dr_report"]["markers"]["service_restored"] == result["verified_at"]
    assert "count 3, max id 3, newest createdAt 2026-11-24T01:00:00.123456Z" in result["checks"][1]["detail"]
    assert "markers" not in verify(api, mark_service_restored=False)["dr_report"]


def test_verify_retries_until_health_answers(api):
    api.health = [(503, {"checks": {"database": "error: starting"}}), (503, {}), (200, {"status": "ok"})]
    result = verify(api)
    assert result["attempts"] == 3
    assert "answered 503" in result["history"][0]


def test_verify_times_out_naming_the_difference(api):
    api.database = dict(api.database, count=4, max_id=4)
    with pytest.raises(DRError) as err:
        verify(api)
    message = str(err.value)
    assert message.startswith("app dr at %s: not verified within 10 s (" % api.url)
    assert "serves count 3, max id 3" in message and "holds count 4, max id 4" in message
    assert "differs: count, max_id" in message
    assert err.value.details["dr_report"]["checks"][1]["result"] == "failed"


def test_verify_refused_token_fails_at_once_and_never_shows_the_token(api):
    with pytest.raises(DRError) as err:
        verify(api, token="wrong-token")
    assert "refused the bearer token (HTTP 401)" in str(err.value)
    assert err.value.details["attempts"] == 1
    assert "wrong-token" not in json.dumps(err.value.details) + str(err.value)


def test_verify_health_only(api):
    result = verify(api, check_data=False, token=None)
    assert [c["name"] for c in result["checks"]] == ["app health (dr)"]


def test_verify_an_unanswering_app(api):
    with pytest.raises(DRError) as err:
        appverify.verify_app("dr", "http://127.0.0.1:9", token="t", postgres={}, timeout=0, interval=0)
    assert "GET http://127.0.0.1:9/health does not answer" in str(err.value)


@pytest.mark.parametrize("app, db, differ", [
    ({"count": 3, "max_id": "3", "max_createdAt": "2026-11-24T01:00:00.123Z"},
     {"count": 3, "max_id": 3, "max_createdAt": "2026-11-24T01:00:00.123456+00:00"}, []),   # ms precision
    ({"count": 3, "max_id": 3, "max_createdAt": "2026-11-24T01:00:01Z"},
     {"count": 3, "max_id": 3, "max_createdAt": "2026-11-24T01:00:00Z"}, ["max_createdAt"]),
    ({"count": 0, "max_id": None, "max_createdAt": None},
     {"count": 0, "max_id": None, "max_createdAt": None}, []),
    ({"count": 1, "max_id": "ckx9", "max_createdAt": None},
     {"count": 1, "max_id": "ckx8", "max_createdAt": None}, ["max_id"]),
])
def test_compare_data(app, db, differ):
    assert appverify.compare_data(app, db, ["count", "max_id", "max_createdAt"]) == differ
