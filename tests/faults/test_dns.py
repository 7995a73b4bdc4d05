"""The DNS server down during a failover's DNS switch, through the auditron.dr.dns_switch role
(rfc2136 = the lab's BIND, route53 = a hosted zone of this test in moto, the lab's AWS
emulator), as failover.yml will run it.

BIND unreachable from the start is a closed port; BIND going away between the role's plan and
its switch is the real BIND behind tests/helpers/faults.py's FaultProxy, stopped the moment the
role has recorded the old values. Either way the switch must fail before it changes anything
else, and say what remains.
"""

import json
import os
import threading
import time
import uuid

import boto3
import pytest

from ansible_collections.auditron.dr.plugins.module_utils import dnsswitch
from tests.helpers import faults

pytestmark = [pytest.mark.lab, pytest.mark.slow]

PRIMARY, DR = "127.0.0.11", "127.0.0.12"
PLAYBOOK = """
- name: DNS switch as failover.yml runs it
  hosts: dr
  gather_facts: false
  tasks:
    - name: Switch the API's name to the DR site
      ansible.builtin.include_role:
        name: auditron.dr.dns_switch
      vars:
        dr_phase: dns_switch
"""


def route53_client(lab):
    aws = lab["aws"]
    return boto3.client("route53", endpoint_url=aws["endpoint"], region_name=aws["region"], verify=aws["ca_file"],
                        aws_access_key_id=aws["access_key"], aws_secret_access_key=aws["secret_key"])


@pytest.fixture
def own_zone(lab):
    """A Route53 hosted zone of this test for auditron.test (moto, the AWS emulator) holding
    api.auditron.test A 127.0.0.11: the lab's own zone is left to the other sessions."""
    client = route53_client(lab)
    zone_id = client.create_hosted_zone(Name=lab["dns"]["zone"] + ".", CallerReference="faults-%s" % uuid.uuid4().hex)[
        "HostedZone"]["Id"].split("/")[-1]
    record = {"Name": lab["dns"]["record"] + ".", "Type": "A", "TTL": 30, "ResourceRecords": [{"Value": PRIMARY}]}
    client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [
        {"Action": "UPSERT", "ResourceRecordSet": record}]})
    yield zone_id
    for item in client.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]:
        if item["Type"] not in ("NS", "SOA"):
            client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [
                {"Action": "DELETE", "ResourceRecordSet": item}]})
    client.delete_hosted_zone(Id=zone_id)


def route53_values(lab, zone_id):
    params = {"provider": "route53", "record": lab["dns"]["record"], "route53": dict(
        zone_id=zone_id, endpoint_url=lab["aws"]["endpoint"], region=lab["aws"]["region"],
        access_key=lab["aws"]["access_key"], secret_key=lab["aws"]["secret_key"], ca_bundle=lab["aws"]["ca_file"])}
    return dnsswitch.zone_from_params(params).read(lab["dns"]["record"], "A")["values"]


def bind_values(lab):
    params = {"provider": "rfc2136", "server": lab["dns"]["server"], "port": lab["dns"]["port"],
              "zone": lab["dns"]["zone"], "record": lab["dns"]["record"], "tsig_key_file": lab["dns"]["tsig_key_file"]}
    return dnsswitch.zone_from_params(params).read(lab["dns"]["record"], "A")["values"]


def dns_option(lab, zone_id, port):
    return {"provider": "rfc2136", "server": lab["dns"]["server"], "port": port, "zone": lab["dns"]["zone"],
            "record": lab["dns"]["record"], "tsig_key_file": lab["dns"]["tsig_key_file"], "ttl": 30,
            "route53": {"zone_id": zone_id, "endpoint_url": lab["aws"]["endpoint"], "region": lab["aws"]["region"],
                        "access_key": lab["aws"]["access_key"], "secret_key": lab["aws"]["secret_key"],
                        "ca_bundle": lab["aws"]["ca_file"]}}


def run_switch(tmp_path, dns, value, state_dir):
    playbook = tmp_path / "switch.yml"
    playbook.write_text(PLAYBOOK)
    return faults.playbook(str(playbook), tmp_path / "reports", extra_vars={
        "dns_switch_dns": dns, "dns_switch_providers": ["rfc2136", "route53"], "dns_switch_value": value,
        "dns_switch_state_dir": str(state_dir)})


def failure_lines(run):
    return [line for line in run.output.splitlines() if "failed:" in line or '"msg"' in line or "msg:" in line]


@pytest.mark.fault("DNS server down (unreachable) at the failover's DNS switch",
                   "the switch fails before changing anything, naming the DNS server; Route53 untouched; no "
                   "record of a switch written; the output says what remains to be done")
def test_dns_server_unreachable_at_the_switch(fault, lab, own_zone, tmp_path):
    port = faults.closed_port()
    before = route53_values(lab, own_zone)
    state_dir = tmp_path / "state"
    run = run_switch(tmp_path, dns_option(lab, own_zone, port), [DR], state_dir)
    assert run.rc != 0, run
    named = "DNS server 127.0.0.1:%d (zone %s) does not answer" % (port, lab["dns"]["zone"])
    assert named in run.flat, run
    # Lost: the providers that no longer answer what they answered before the failed switch.
    changed = [name for name, values in (("Route53", route53_values(lab, own_zone)), ("BIND", bind_values(lab)))
               if values != [PRIMARY]]
    fault.saw("failed in the plan step: %s; providers changed: %s" % (named, ", ".join(changed) or "none"))
    fault.lost(len(changed))
    assert before == [PRIMARY]
    assert not state_dir.exists(), "a switch was recorded although nothing switched"
    tells = "nothing changed" in run.flat or "not switched" in run.flat
    fault.saw("says what remains: %s" % ("yes" if tells else "no - only the DNS server's error"))
    assert tells, "the failure does not say what remains (which providers were not switched): %s" % (
        failure_lines(run)[-3:])


@pytest.mark.fault("DNS server goes down between the switch's plan and its update",
                   "the switch fails at the DNS server and changes nothing else (Route53 not switched alone: no "
                   "split answer); the output says which providers switched and which did not")
def test_dns_server_stops_after_the_plan(fault, lab, own_zone, tmp_path):
    proxy = faults.FaultProxy(lab["dns"]["server"], lab["dns"]["port"])
    state_dir = tmp_path / "state"
    state_file = state_dir / ("dns-switch-%s.json" % lab["dns"]["record"])
    bind_before = bind_values(lab)
    done = threading.Event()

    def stop_bind_once_recorded():
        # The role writes the old values just before it switches: that is when BIND goes away.
        while not done.is_set():
            if state_file.exists():
                proxy.stop()
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=stop_bind_once_recorded, daemon=True)
    watcher.start()
    try:
        target = [DR] if bind_before != [DR] else [PRIMARY]
        run = run_switch(tmp_path, dns_option(lab, own_zone, proxy.port), target, state_dir)
    finally:
        done.set()
        watcher.join(5)
        proxy.close()
        bind_after = bind_values(lab)  # before any repair below: what the run left
        if bind_after != bind_before:  # never expected: the proxy refused the update
            dnsswitch.switch({"provider": "rfc2136", "server": lab["dns"]["server"], "port": lab["dns"]["port"],
                              "zone": lab["dns"]["zone"], "record": lab["dns"]["record"],
                              "tsig_key_file": lab["dns"]["tsig_key_file"]}, bind_before, ttl=30)
    assert proxy.stopped_at is not None, "BIND was never stopped: the role wrote no state file (%s)" % run
    assert run.rc != 0, run
    recorded = json.loads(state_file.read_text()) if state_file.exists() else {}
    after = route53_values(lab, own_zone)
    fault.saw("BIND stopped once the role recorded %s; the run failed at %s" % (
        sorted(recorded.get("providers", {})), "DNS server 127.0.0.1:%d" % proxy.port))
    fault.saw("Route53 after the failed switch: %s (was %s); BIND: %s" % (
        ", ".join(after), PRIMARY, ", ".join(bind_values(lab))))
    said = [sentence.strip() for sentence in run.flat.split(". ") if "not switched" in sentence.lower()]
    fault.saw("the run said: %s" % (said[-1][:300] if said else "nothing about what remains"))
    # Lost: a provider left answering otherwise than before (a split answer, or a half-done switch).
    fault.lost(int(after != [PRIMARY]) + int(bind_after != bind_before))
    assert after == [PRIMARY], ("Route53 was switched to %s after the DNS server failed: the two providers now "
                                "answer differently (split answer)" % ", ".join(after))
    assert "not switched" in run.flat or "nothing changed" in run.flat, failure_lines(run)[-3:]
    assert os.path.exists(str(state_file))
