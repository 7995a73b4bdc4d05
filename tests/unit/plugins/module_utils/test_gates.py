"""The gates' decision as a pure function of what the readers saw, and the readers with fake
clients (tests/integration/test_gates.py runs the playbooks against the lab)."""

import json

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import gates
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError

PRIMARY = {"state": "primary", "receiver": "not streaming", "detail": "a primary (not in recovery)"}
STANDBY = {"state": "standby", "receiver": "streaming", "detail": "a standby (in recovery), WAL receiver streaming"}
STOPPED = {"state": "stopped", "receiver": None, "detail": "not running"}
UNREADABLE = {"state": "unreadable", "receiver": None, "detail": "password authentication failed"}
NAME_HERE = {"configured": True, "values": ["127.0.0.12"], "here": True, "record": "api.lab", "error": None}
NAME_AWAY = {"configured": True, "values": ["127.0.0.11"], "here": False, "record": "api.lab", "error": None}
NAME_LOST = {"configured": True, "values": [], "here": False, "record": "api.lab", "error": "timed out"}
APP_UP = {"configured": True, "healthy": True, "detail": "GET http://dr/health answered 200"}
APP_DOWN = {"configured": True, "healthy": False, "detail": "refused"}
DONE = {"recorded": True, "completed": True, "detail": "a failover completed"}
NONE = {"recorded": False, "completed": False, "detail": "no failover recorded"}


def standby(database, dns=None, app=None, failover=None, **kwargs):
    seen = gates.assess(database, dns or NAME_AWAY, app or APP_DOWN, failover or NONE)
    return gates.decide("standby", "setup_standby.yml", "DR (dr)", seen,
                        confirm_variable="confirm_standby", replace_variables=("replace_s", "replace_u"), **kwargs)


def files(database=None, dns=None, app=None, failover=None, **kwargs):
    seen = gates.assess(database or PRIMARY, dns or NAME_AWAY, app or APP_DOWN, failover or NONE)
    return gates.decide("restore_files", "restore_files.yml", "DR (dr)", seen,
                        confirm_variable="confirm_restore_files", **kwargs)


def test_a_primary_the_name_answers_is_never_replaced_by_a_standby():
    refused = standby(PRIMARY, dns=NAME_HERE, confirmed=True)
    assert refused["refusal"] == "serving"
    assert refused["msg"].startswith("setup_standby.yml: nothing was changed. DR (dr) serves")
    assert "replace_s=true" in refused["msg"] and "127.0.0.12" in refused["msg"]
    assert standby(PRIMARY, dns=NAME_HERE, confirmed=True, replace_serving=True)["allowed"]


def test_a_stopped_primary_the_name_still_answers_is_not_replaced_either():
    assert standby(STOPPED, dns=NAME_HERE, confirmed=True)["refusal"] == "serving"


def test_a_primary_whose_app_answers_after_a_completed_failover_serves():
    assert standby(PRIMARY, app=APP_UP, failover=DONE, confirmed=True)["refusal"] == "serving"
    # The same app with no failover behind it (a cold DR the lab keeps an app for) does not.
    assert standby(PRIMARY, app=APP_UP, confirmed=True)["allowed"]


def test_failback_replaces_dr_once_its_database_is_stopped_and_the_name_is_back():
    assert standby(STOPPED, app=APP_UP, failover=DONE, require_confirmation=False)["allowed"]


def test_a_state_that_could_not_be_read_is_never_replaced():
    refused = standby(UNREADABLE, confirmed=True)
    assert refused["refusal"] == "unreadable" and "password authentication failed" in refused["msg"]
    assert refused["msg"].startswith("setup_standby.yml: nothing was changed. The state of DR (dr) could not be read")
    assert standby(PRIMARY, dns=NAME_LOST, confirmed=True)["refusal"] == "unreadable"
    assert standby(UNREADABLE, confirmed=True, replace_unreadable=True)["allowed"]
    # A name that cannot be read does not matter for a standby: it holds nothing of its own.
    assert standby(STANDBY, dns=NAME_LOST, confirmed=True)["allowed"]


def test_standby_asks_the_confirmation_only_when_required_and_not_in_check_mode():
    asked = standby(PRIMARY)
    assert asked["refusal"] == "confirmation" and "confirm_standby=true" in asked["msg"]
    assert standby(PRIMARY, require_confirmation=False)["allowed"]
    assert standby(PRIMARY, check_mode=True)["allowed"]
    assert standby(PRIMARY, dns=NAME_HERE, check_mode=True)["refusal"] == "serving"


def test_restore_files_into_dr_before_it_serves_needs_no_confirmation():
    # failover.yml's import: DR promoted, app not switched to, the name still on the primary.
    assert files()["allowed"]
    assert files(app=APP_UP)["allowed"]


@pytest.mark.parametrize("case", [
    dict(production=True),
    dict(dns=NAME_HERE),
    dict(app=APP_UP, failover=DONE),
    dict(app=APP_UP, as_of="20261124T020000Z"),
    dict(database=UNREADABLE),
    dict(dns=NAME_LOST),
], ids=["production", "name-answers", "app-after-failover", "older-point-app-up", "database-unreadable",
        "name-unreadable"])
def test_restore_files_into_a_site_that_serves_or_may_serve_needs_the_confirmation(case):
    refused = files(**case)
    assert refused["refusal"] == "confirmation"
    assert refused["msg"].startswith("restore_files.yml: nothing was changed. Restoring the file storage of DR (dr)")
    assert "confirm_restore_files=true" in refused["msg"]
    assert files(confirmed=True, **case)["allowed"]
    assert files(require_confirmation=False, **case)["allowed"]
    assert files(check_mode=True, **case)["allowed"]


def test_an_older_point_into_a_standby_site_is_not_a_site_that_serves():
    assert files(database=STANDBY, app=APP_UP, as_of="20261124T020000Z")["allowed"]


def test_an_unknown_action_is_an_error():
    with pytest.raises(DRError):
        gates.decide("wipe", "x", "dr", gates.assess(PRIMARY, NAME_AWAY, APP_DOWN, NONE))


# ---------------------------------------------------------------------------------------------
# readers

class FakeCursor:
    def __init__(self, row, error=None):
        self.row, self.error = row, error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, _sql):
        if self.error:
            raise self.error

    def fetchone(self):
        return self.row


class FakeConn:
    def __init__(self, row, error=None):
        self.row, self.error, self.closed = row, error, False

    def cursor(self):
        return FakeCursor(self.row, self.error)

    def close(self):
        self.closed = True


def refusing(message):
    def connect(_params):
        raise DRError(message)
    return connect


def test_read_database_roles():
    params = {"login_host": "127.0.0.1", "login_port": 5432}
    assert gates.read_database(params, connect=lambda _p: FakeConn((False, "not streaming")))["state"] == "primary"
    seen = gates.read_database(params, connect=lambda _p: FakeConn((True, "streaming")))
    assert seen["state"] == "standby" and seen["receiver"] == "streaming"
    assert gates.read_database(params, connect=lambda _p: FakeConn(None, RuntimeError("boom")))["state"] == "unreadable"


def test_a_database_that_does_not_answer_is_stopped_only_when_nothing_runs(tmp_path):
    params = {"login_host": "127.0.0.1"}
    refused = refusing("database postgres: does not answer (connection refused)")
    assert gates.read_database(params, connect=refused)["state"] == "stopped"
    assert gates.read_database(params, connect=refusing("password authentication failed"))["state"] == "unreadable"
    (tmp_path / "PG_VERSION").write_text("15\n")
    assert gates.read_database(params, str(tmp_path), connect=refused, running=lambda _d: None)["state"] == "stopped"
    running = gates.read_database(params, str(tmp_path), connect=refused, running=lambda _d: {"pid": 42})
    assert running["state"] == "unreadable" and "pid 42" in running["detail"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert gates.read_database(params, str(empty), connect=refused)["state"] == "absent"


class FakeZone:
    def __init__(self, values=None, error=None):
        self.values, self.error = values, error

    def read(self, _record, _rdtype):
        if self.error:
            raise self.error
        return {"values": self.values, "ttl": 30}


def test_read_dns():
    dns = {"record": "api.lab"}
    assert gates.read_dns(dns, "127.0.0.12", zone_factory=lambda _p: FakeZone(["127.0.0.12"]))["here"]
    assert not gates.read_dns(dns, "127.0.0.12", zone_factory=lambda _p: FakeZone(["127.0.0.11"]))["here"]
    lost = gates.read_dns(dns, "127.0.0.12", zone_factory=lambda _p: FakeZone(error=OSError("timed out")))
    assert lost["error"] and "api.lab" in lost["error"] and not lost["here"]
    assert gates.read_dns(None, "127.0.0.12") == {"configured": False, "values": [], "here": False, "error": None}


def test_read_app_and_failover_state(tmp_path):
    assert gates.read_app("http://x", lambda _u: (200, b"{}"))["healthy"]
    assert not gates.read_app("http://x", lambda _u: (503, b"{}"))["healthy"]

    def down(_url):
        raise OSError("refused")
    assert not gates.read_app("http://x", down)["healthy"]
    assert not gates.read_app(None, down)["configured"]
    state = tmp_path / "failover.json"
    assert gates.read_failover_state(str(state)) == {"recorded": False, "completed": False,
                                                     "detail": "no failover recorded"}
    state.write_text(json.dumps({"id": "20261208T000000Z", "fenced": True}))
    assert not gates.read_failover_state(str(state))["completed"]
    state.write_text(json.dumps({"id": "20261208T000000Z", "completed": True}))
    assert gates.read_failover_state(str(state))["completed"]
    state.write_text("{not json")
    assert gates.read_failover_state(str(state))["completed"]  # unreadable: not proof of none


def test_gate_raises_the_one_message_with_what_it_saw():
    params = {"action": "standby", "caller": "setup_standby.yml", "site": "DR (dr)", "postgres": {},
              "dns": {"record": "api.lab"}, "dns_target": "127.0.0.12", "require_confirmation": True,
              "confirmed": True, "confirm_variable": "confirm_standby"}
    with pytest.raises(DRError) as raised:
        gates.gate(params, lambda _u: (200, b""), connect=lambda _p: FakeConn((False, "not streaming")),
                   zone_factory=lambda _p: FakeZone(["127.0.0.12"]))
    assert raised.value.message.startswith("setup_standby.yml: nothing was changed.")
    assert raised.value.details["refusal"] == "serving" and raised.value.details["dns"]["here"]
    allowed = gates.gate(dict(params, dns_target="127.0.0.13"), lambda _u: (200, b""),
                         connect=lambda _p: FakeConn((False, "not streaming")),
                         zone_factory=lambda _p: FakeZone(["127.0.0.12"]))
    assert allowed["allowed"] and not allowed["serving"]


def test_read_never_refuses_and_says_what_the_site_is():
    assessment = {"database": {"state": "stopped", "receiver": None, "detail": "not running (refused)"},
                  "serving": True, "reasons": ["the name answers it"], "unknown": ["app"]}
    decision = gates.decide("read", "failback.yml", "DR (dr)", assessment, require_confirmation=True)
    assert decision == {"allowed": True, "refusal": "", "msg": "DR (dr): not running (refused)"}
