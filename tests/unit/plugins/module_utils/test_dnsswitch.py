"""The DNS switch engine's pure parts: value canonicalisation, diff text, and the Route53
behaviours the lab's AWS emulator (moto) cannot show - a change that stays PENDING before it is
INSYNC, and TestDNSAnswer. Those use a small scripted client standing in for real Route53's
answers; everything else is tested against the lab's servers (tests/integration/test_dns_switch.py)."""

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import dnsswitch
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError


@pytest.mark.parametrize("rdtype, values, expected", [
    ("A", ["127.0.0.12", "127.0.0.11", "127.0.0.12"], ["127.0.0.11", "127.0.0.12"]),
    ("A", [" 10.0.0.1 "], ["10.0.0.1"]),
    ("AAAA", ["2001:DB8:0:0:0:0:0:1"], ["2001:db8::1"]),
    ("CNAME", ["DR-LB.auditron.ai"], ["dr-lb.auditron.ai."]),
    ("CNAME", ["dr-lb.auditron.ai."], ["dr-lb.auditron.ai."]),
    ("a", ["192.0.2.1"], ["192.0.2.1"]),
    ("A", [], []),
])
def test_values_are_compared_in_canonical_form(rdtype, values, expected):
    assert dnsswitch.normalize_values(rdtype, values) == expected


@pytest.mark.parametrize("rdtype, values, fragment", [
    ("A", ["10.0.0.256"], "10.0.0.256 is not an IPv4 address"),
    ("A", ["2001:db8::1"], "2001:db8::1 is not an IPv4 address"),
    ("AAAA", ["10.0.0.1"], "10.0.0.1 is not an IPv6 address"),
    ("A", [""], "an empty value is not a valid A record"),
    ("MX", ["10 mail.auditron.ai."], "record type MX is not supported"),
])
def test_bad_values_are_refused_with_the_value_named(rdtype, values, fragment):
    with pytest.raises(DRError) as caught:
        dnsswitch.normalize_values(rdtype, values)
    assert fragment in caught.value.message


def test_state_of_an_absent_record_has_no_ttl():
    assert dnsswitch.state([], 300) == {"values": [], "ttl": None}
    assert dnsswitch.state(["127.0.0.11"], "30") == {"values": ["127.0.0.11"], "ttl": 30}


def test_diff_text_is_zone_file_syntax():
    record_state = dnsswitch.state(["127.0.0.11", "127.0.0.12"], 30)
    assert dnsswitch.zone_file_lines("API.auditron.test.", "A", record_state) == (
        "api.auditron.test. 30 IN A 127.0.0.11\napi.auditron.test. 30 IN A 127.0.0.12\n")
    assert dnsswitch.zone_file_lines("api.auditron.test", "A", dnsswitch.state()) == ""


def test_switch_refuses_an_empty_value_before_touching_any_server():
    with pytest.raises(DRError) as caught:
        dnsswitch.switch({"provider": "rfc2136", "record": "api.auditron.test"}, [])
    assert "value is empty" in caught.value.message


def test_providers_say_what_they_miss():
    with pytest.raises(DRError) as caught:
        dnsswitch.zone_from_params({"provider": "rfc2136", "record": "api.auditron.test"})
    assert "needs dns.server and dns.zone" in caught.value.message
    with pytest.raises(DRError) as caught:
        dnsswitch.zone_from_params({"provider": "route53", "record": "api.auditron.test", "route53": {}})
    assert "needs dns.route53.zone_id" in caught.value.message


class ScriptedRoute53(object):
    """Answers GetChange and TestDNSAnswer the way real Route53 does (the emulator answers
    INSYNC at once and has no TestDNSAnswer)."""

    def __init__(self, statuses, record_data=None):
        self.statuses = list(statuses)
        self.record_data = record_data or []
        self.get_change_calls = 0

    def get_change(self, Id):  # pylint: disable=invalid-name
        self.get_change_calls += 1
        return {"ChangeInfo": {"Id": Id, "Status": self.statuses.pop(0) if self.statuses else "PENDING"}}

    def test_dns_answer(self, HostedZoneId, RecordName, RecordType):  # pylint: disable=invalid-name,unused-argument
        return {"Nameserver": "ns-1.awsdns-01.org", "RecordName": RecordName, "RecordType": RecordType,
                "RecordData": self.record_data, "ResponseCode": "NOERROR", "Protocol": "UDP"}


class FakeClock(object):
    def __init__(self):
        self.now = 1000.0
        self.slept = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def test_route53_wait_polls_until_insync():
    client, clock = ScriptedRoute53(["PENDING", "PENDING", "INSYNC"]), FakeClock()
    zone = dnsswitch.Route53Zone("Z123", {}, client=client, sleep=clock.sleep, clock=clock.clock)
    change = {"id": "/change/C1", "status": "PENDING"}
    assert zone.wait(change, timeout=60) == "INSYNC"
    assert change["status"] == "INSYNC" and client.get_change_calls == 3
    assert clock.slept == [1.0, 2.0, 4.0]


def test_route53_wait_needs_no_poll_when_the_change_is_already_insync():
    client = ScriptedRoute53([])
    zone = dnsswitch.Route53Zone("Z123", {}, client=client)
    assert zone.wait({"id": "/change/C1", "status": "INSYNC"}, timeout=60) == "INSYNC"
    assert client.get_change_calls == 0


def test_route53_wait_times_out_saying_the_change_is_made():
    clock = FakeClock()
    zone = dnsswitch.Route53Zone("Z123", {"endpoint_url": "https://route53.example"}, client=ScriptedRoute53([]),
                                 sleep=clock.sleep, clock=clock.clock)
    with pytest.raises(DRError) as caught:
        zone.wait({"id": "/change/C1", "status": "PENDING"}, timeout=20)
    assert "still PENDING after 20 s" in caught.value.message and "it is made" in caught.value.message
    assert caught.value.details["changed"] is True
    assert sum(clock.slept) <= 20


def test_route53_answer_uses_test_dns_answer_where_the_endpoint_has_it():
    zone = dnsswitch.Route53Zone("/hostedzone/Z123", {}, client=ScriptedRoute53([], record_data=["127.0.0.12"]))
    answer = zone.answer("api.auditron.test", "A")
    assert answer["values"] == ["127.0.0.12"] and answer["ttl"] is None
    assert answer["method"] == "TestDNSAnswer" and "ns-1.awsdns-01.org" in answer["server"]
    assert zone.zone_id == "Z123"


class PendingZone(object):
    """A provider whose change stays PENDING: the read-back must come from `read`, not `answer`."""

    provider = "route53"
    label = where = "Route53 hosted zone Z123 at https://route53.example"

    def __init__(self):
        self.values = ["127.0.0.11"]
        self.answered = False

    def read(self, record, rdtype):  # pylint: disable=unused-argument
        return dnsswitch.state(self.values, 30)

    def apply(self, record, rdtype, values, ttl, expect=None, current=None):  # pylint: disable=unused-argument
        self.values = list(values)
        return {"id": "/change/C1", "status": "PENDING"}

    def answer(self, record, rdtype):  # pylint: disable=unused-argument
        self.answered = True
        return dict(dnsswitch.state(["127.0.0.11"], None), server=self.where, method="TestDNSAnswer")


def test_without_waiting_a_pending_change_is_read_back_from_the_api():
    zone = PendingZone()
    result = dnsswitch.switch({"provider": "route53", "record": "api.auditron.test"}, ["127.0.0.12"], ttl=30,
                              wait_for_sync=False, zone=zone)
    assert result["changed"] and not zone.answered
    assert result["verified_from"]["values"] == ["127.0.0.12"]
    assert result["verified_from"]["method"] == "ListResourceRecordSets (the change is PENDING)"


def test_the_dns_option_offers_what_the_switch_supports():
    # base.dns_suboptions cannot import dnsswitch (every module loads base): this keeps them in step.
    from ansible_collections.auditron.dr.plugins.module_utils.base import dns_suboptions  # pylint: disable=import-outside-toplevel
    options = dns_suboptions()
    assert options["provider"]["choices"] == list(dnsswitch.PROVIDERS)
    assert options["ttl"]["default"] == dnsswitch.DEFAULT_TTL
    assert options["route53"]["options"]["zone_id"]["required"]
