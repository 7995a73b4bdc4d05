"""The DNS switch against the lab's BIND (RFC 2136 with TSIG) and Route53 (moto, an AWS
emulator): the engine, the dns_record module and the dns_switch role.

Every test leaves api.auditron.test at the primary's address (127.0.0.11, TTL 30) on both
providers, whatever happens: other tests expect it.
"""

import json
import os
import stat
import subprocess

import boto3
import dns.message
import dns.query
import dns.rdatatype
import pytest

from ansible_collections.auditron.dr.plugins.module_utils import dnsswitch
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from tests.conftest import REPO, VENV_BIN, ansible_env
from tests.helpers.ports import closed_port

pytestmark = pytest.mark.lab

PRIMARY = "127.0.0.11"
DR = "127.0.0.12"
LAB_TTL = 30


def bind_params(lab, **overrides):
    params = dict(provider="rfc2136", server=lab["dns"]["server"], port=lab["dns"]["port"], zone=lab["dns"]["zone"],
                  record=lab["dns"]["record"], tsig_key_file=lab["dns"]["tsig_key_file"], ttl=LAB_TTL)
    params.update(overrides)
    return params


def route53_params(lab, **overrides):
    aws = dict(zone_id=lab["aws"]["route53_zone_id"], endpoint_url=lab["aws"]["endpoint"], region=lab["aws"]["region"],
               access_key=lab["aws"]["access_key"], secret_key=lab["aws"]["secret_key"], ca_bundle=lab["aws"]["ca_file"])
    aws.update(overrides)
    return dict(provider="route53", record=lab["dns"]["record"], ttl=LAB_TTL, route53=aws)


def leave_at_primary(lab):
    for params in (bind_params(lab), route53_params(lab)):
        dnsswitch.switch(params, [PRIMARY], ttl=LAB_TTL)


@pytest.fixture
def at_primary(lab):
    """Start and end every test with the record at the primary's address on both providers."""
    leave_at_primary(lab)
    try:
        yield lab
    finally:
        leave_at_primary(lab)


def dig(lab):
    """`dig @server -p port record` as an operator types it: (ttl, sorted addresses)."""
    out = subprocess.run(["dig", "@" + lab["dns"]["server"], "-p", str(lab["dns"]["port"]), lab["dns"]["record"], "A",
                          "+noall", "+answer"], capture_output=True, text=True, check=True, timeout=20).stdout
    rows = [line.split() for line in out.splitlines() if line.strip() and not line.startswith(";")]
    return (int(rows[0][1]) if rows else None), sorted(row[4] for row in rows)


def soa_serial(lab):
    """The zone's serial: BIND raises it on every update it applies, so an unchanged serial
    proves no update was applied."""
    query = dns.message.make_query(lab["dns"]["zone"], "SOA")
    response = dns.query.tcp(query, lab["dns"]["server"], port=lab["dns"]["port"], timeout=5)
    return [rrset for rrset in response.answer if rrset.rdtype == dns.rdatatype.SOA][0][0].serial


def route53_record(lab):
    """The record as the emulator's API lists it, read with plain boto3: (ttl, sorted values)."""
    client = boto3.client("route53", endpoint_url=lab["aws"]["endpoint"], region_name=lab["aws"]["region"],
                          aws_access_key_id=lab["aws"]["access_key"], aws_secret_access_key=lab["aws"]["secret_key"],
                          verify=lab["aws"]["ca_file"])
    sets = client.list_resource_record_sets(HostedZoneId=lab["aws"]["route53_zone_id"],
                                            StartRecordName=lab["dns"]["record"] + ".", StartRecordType="A",
                                            MaxItems="1")["ResourceRecordSets"]
    found = [s for s in sets if s["Name"].rstrip(".") == lab["dns"]["record"] and s["Type"] == "A"]
    return found[0]["TTL"], sorted(r["Value"] for r in found[0]["ResourceRecords"])


def one_line(message):
    assert "\n" not in message, message
    return message


# ----------------------------------------------------------------------------------------------
# The engine (what the module runs), provider by provider
# ----------------------------------------------------------------------------------------------

def test_rfc2136_switch_to_dr_and_back(at_primary):
    lab = at_primary
    params = bind_params(lab)
    result = dnsswitch.switch(params, [DR], expect=[PRIMARY])
    assert result["changed"] and result["switched"]
    assert result["before"] == {"values": [PRIMARY], "ttl": LAB_TTL}
    assert result["after"] == {"values": [DR], "ttl": LAB_TTL}
    assert result["verified_from"]["values"] == [DR] and result["verified_from"]["server"] == "%s:%s" % (
        lab["dns"]["server"], lab["dns"]["port"])
    assert result["dr_report"]["dns_change"]["from"] == PRIMARY and result["dr_report"]["dns_change"]["to"] == DR
    assert dig(lab) == (LAB_TTL, [DR])

    serial = soa_serial(lab)
    again = dnsswitch.switch(params, [DR], expect=[PRIMARY])
    assert not again["changed"] and again["change"] is None and "dr_report" not in again
    assert soa_serial(lab) == serial, "an identical switch sent an update"

    back = dnsswitch.switch(params, [PRIMARY], expect=[DR])
    assert back["changed"] and back["before"]["values"] == [DR]
    assert dig(lab) == (LAB_TTL, [PRIMARY])


def test_route53_switch_to_dr_and_back(at_primary):
    lab = at_primary
    params = route53_params(lab)
    result = dnsswitch.switch(params, [DR], expect=[PRIMARY])
    assert result["changed"] and result["provider"] == "route53"
    assert result["before"] == {"values": [PRIMARY], "ttl": LAB_TTL}
    assert result["change"]["status"] == "INSYNC"
    # The emulator has no TestDNSAnswer: the module says it read the API's record list instead.
    assert result["verified_from"]["values"] == [DR]
    assert result["verified_from"]["method"].startswith("ListResourceRecordSets")
    assert route53_record(lab) == (LAB_TTL, [DR])

    again = dnsswitch.switch(params, [DR])
    assert not again["changed"] and again["change"] is None

    back = dnsswitch.switch(params, [PRIMARY], expect=[DR])
    assert back["changed"] and route53_record(lab) == (LAB_TTL, [PRIMARY])


@pytest.mark.parametrize("provider", ["rfc2136", "route53"])
def test_expect_with_a_wrong_current_value_changes_nothing(at_primary, provider):
    lab = at_primary
    params = bind_params(lab) if provider == "rfc2136" else route53_params(lab)
    serial = soa_serial(lab)
    with pytest.raises(DRError) as caught:
        dnsswitch.switch(params, [DR], expect=["127.0.0.13"])
    message = one_line(caught.value.message)
    assert "holds %s, not the expected 127.0.0.13" % PRIMARY in message and "nothing changed" in message
    assert dig(lab) == (LAB_TTL, [PRIMARY]) and route53_record(lab) == (LAB_TTL, [PRIMARY])
    assert soa_serial(lab) == serial


def test_rfc2136_prerequisite_is_checked_by_the_server(at_primary):
    """Someone changes the record between our read and our update: the server refuses the
    update on its prerequisite (NXRRSET) and changes nothing."""
    lab = at_primary
    zone = dnsswitch.zone_from_params(bind_params(lab))
    with pytest.raises(DRError) as caught:
        zone.apply(lab["dns"]["record"], "A", [DR], LAB_TTL, expect=["127.0.0.13"])
    assert "no longer holds 127.0.0.13" in one_line(caught.value.message)
    assert "nothing changed" in caught.value.message
    assert dig(lab) == (LAB_TTL, [PRIMARY])


@pytest.mark.parametrize("provider", ["rfc2136", "route53"])
def test_check_mode_changes_nothing(at_primary, provider):
    lab = at_primary
    params = bind_params(lab) if provider == "rfc2136" else route53_params(lab)
    serial = soa_serial(lab)
    result = dnsswitch.switch(params, [DR], ttl=120, check_mode=True, diff=True)
    assert result["changed"] and result["msg"].startswith("would change")
    assert result["after"] == {"values": [DR], "ttl": 120} and result["verified_from"] is None
    assert result["diff"]["before"] == "api.auditron.test. 30 IN A %s\n" % PRIMARY
    assert result["diff"]["after"] == "api.auditron.test. 120 IN A %s\n" % DR
    assert dig(lab) == (LAB_TTL, [PRIMARY]) and route53_record(lab) == (LAB_TTL, [PRIMARY])
    assert soa_serial(lab) == serial


def test_wrong_tsig_secret_is_refused(at_primary, tmp_path):
    lab = at_primary
    key_file = tmp_path / "wrong.key"
    key_file.write_text('key "%s" {\n\talgorithm hmac-sha256;\n\tsecret "%s";\n};\n'
                        % (lab["dns"]["tsig_key_name"], "d3JvbmcgYnV0IHdlbGwgZm9ybWVkIHNlY3JldCAzMg=="))
    params = bind_params(lab, tsig_key_file=str(key_file))
    for check_mode in (True, False):
        with pytest.raises(DRError) as caught:
            dnsswitch.switch(params, [DR], check_mode=check_mode)
        assert "BADSIG" in one_line(caught.value.message)
    assert dig(lab) == (LAB_TTL, [PRIMARY])


def test_errors_are_one_line_naming_what_is_at_fault(at_primary):
    lab = at_primary
    port = closed_port()
    with pytest.raises(DRError) as caught:
        dnsswitch.switch(bind_params(lab, port=port), [DR])
    assert one_line(caught.value.message).startswith(
        "DNS server 127.0.0.1:%d (zone auditron.test) does not answer" % port)

    with pytest.raises(DRError) as caught:
        dnsswitch.switch(bind_params(lab, record="www.auditron.test"), [DR])
    message = one_line(caught.value.message)
    assert "refused the update of www.auditron.test: REFUSED" in message and "update-policy" in message

    with pytest.raises(DRError) as caught:
        dnsswitch.switch(route53_params(lab, zone_id="ZNOSUCHZONE0000"), [DR])
    assert one_line(caught.value.message).startswith("Route53 hosted zone ZNOSUCHZONE0000 not found at %s"
                                                     % lab["aws"]["endpoint"])

    down = "https://localhost:%d" % closed_port()
    with pytest.raises(DRError) as caught:
        dnsswitch.switch(route53_params(lab, endpoint_url=down), [DR])
    assert one_line(caught.value.message) == (
        "Route53 at %s (zone %s, reading api.auditron.test A): endpoint does not answer"
        % (down, lab["aws"]["route53_zone_id"]))
    assert dig(lab) == (LAB_TTL, [PRIMARY]) and route53_record(lab) == (LAB_TTL, [PRIMARY])


def test_route53_alias_record_set_is_refused(lab):
    """An alias has no plain value to switch and restore: refused, in a zone of our own."""
    client = boto3.client("route53", endpoint_url=lab["aws"]["endpoint"], region_name=lab["aws"]["region"],
                          aws_access_key_id=lab["aws"]["access_key"], aws_secret_access_key=lab["aws"]["secret_key"],
                          verify=lab["aws"]["ca_file"])
    zone_id = client.create_hosted_zone(Name="dnsswitch-test.auditron.test.", CallerReference="dnsswitch-%d" % os.getpid())[
        "HostedZone"]["Id"].split("/")[-1]
    alias = {"Name": "api.dnsswitch-test.auditron.test.", "Type": "A",
             "AliasTarget": {"HostedZoneId": zone_id, "DNSName": "lb.dnsswitch-test.auditron.test.",
                             "EvaluateTargetHealth": False}}
    try:
        client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [
            {"Action": "UPSERT", "ResourceRecordSet": alias}]})
        params = route53_params(lab, zone_id=zone_id)
        params["record"] = "api.dnsswitch-test.auditron.test"
        with pytest.raises(DRError) as caught:
            dnsswitch.switch(params, [DR])
        assert "is an alias or routing-policy record set" in one_line(caught.value.message)
    finally:
        client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [
            {"Action": "DELETE", "ResourceRecordSet": alias}]})
        client.delete_hosted_zone(Id=zone_id)


# ----------------------------------------------------------------------------------------------
# The module and the role, through Ansible
# ----------------------------------------------------------------------------------------------

def ansible(args, timeout=300, env=None):
    completed = subprocess.run([str(VENV_BIN / args[0])] + list(args[1:]), cwd=str(REPO), env=ansible_env(env),
                               capture_output=True, text=True, timeout=timeout, check=False)
    return completed.returncode, completed.stdout + completed.stderr


def recap_changed(output):
    line = [row for row in output.splitlines() if row.startswith("dr ") and "changed=" in row][-1]
    return int(line.split("changed=")[1].split()[0])


def test_module_check_and_diff_show_the_change_and_make_none(at_primary):
    lab = at_primary
    rc, output = ansible(["ansible", "dr", "-i", str(REPO / "inventories" / "local"), "-m", "auditron.dr.dns_record",
                          "-a", json.dumps({"dns": "{{ auditron_dr_dns | combine({'provider': 'route53'}) }}",
                                            "value": [DR]}), "--check", "--diff"])
    assert rc == 0, output
    assert "-api.auditron.test. 30 IN A %s" % PRIMARY in output and "+api.auditron.test. 30 IN A %s" % DR in output
    assert "would change" in output
    assert lab["aws"]["secret_key"] not in output
    assert route53_record(lab) == (LAB_TTL, [PRIMARY])


PLAYBOOK = """
- name: DNS switch ({action})
  hosts: dr
  gather_facts: false
  tasks:
    - name: Run the role
      ansible.builtin.include_role:
        name: auditron.dr.dns_switch
        tasks_from: {tasks_from}
      vars:
        dr_phase: dns_{action}
"""


def run_role(tmp_path, action, extra_vars, check=False):
    """The role from a playbook of its own, in a dr_timeline phase; (rc, output, report.json or None)."""
    playbook = tmp_path / ("%s.yml" % action)
    playbook.write_text(PLAYBOOK.format(action=action, tasks_from="main" if action == "switch" else action))
    reports = tmp_path / ("reports-%s" % len(list(tmp_path.glob("reports-*"))))
    args = ["ansible-playbook", "-i", str(REPO / "inventories" / "local"), str(playbook), "-e", json.dumps(extra_vars)]
    rc, output = ansible(args + (["--check"] if check else []), env={"AUDITRON_DR_REPORT_DIR": str(reports)})
    written = list(reports.glob("*/report.json"))
    return rc, output, (json.loads(written[0].read_text()) if written else None)


def test_role_switches_both_providers_keeps_the_old_value_and_restores_it(at_primary, tmp_path):
    lab = at_primary
    # A long TTL before the incident: the role lowers it first and failback puts it back.
    for params in (bind_params(lab), route53_params(lab)):
        dnsswitch.switch(params, [PRIMARY], ttl=300)
    state_dir = tmp_path / "state"
    common = {"dns_switch_providers": ["rfc2136", "route53"],
              "dns_switch_state_dir": str(state_dir)}

    rc, output, report = run_role(tmp_path, "switch", dict(common, dns_switch_value=[DR],
                                                           dns_switch_expect=[PRIMARY]))
    assert rc == 0, output
    assert "rfc2136: TTL 300 -> 30" in output and "route53: TTL 300 -> 30" in output
    change = report["dns_change"]
    assert (change["record"], change["provider"], change["from"], change["to"]) == (
        "api.auditron.test", "rfc2136, route53", PRIMARY, DR)
    assert dig(lab) == (LAB_TTL, [DR]) and route53_record(lab) == (LAB_TTL, [DR])
    state_file = state_dir / "dns-switch-api.auditron.test.json"
    assert stat.S_IMODE(os.stat(state_dir).st_mode) == 0o700
    recorded = json.loads(state_file.read_text())
    assert recorded["switched_to"] == [DR]
    assert recorded["providers"] == {"rfc2136": {"values": [PRIMARY], "ttl": 300},
                                     "route53": {"values": [PRIMARY], "ttl": 300}}

    # The same switch again: nothing to do, and the recorded old value is kept.
    rc, output, _report = run_role(tmp_path, "switch", dict(common, dns_switch_value=[DR]))
    assert rc == 0 and recap_changed(output) == 0, output
    assert json.loads(state_file.read_text()) == recorded

    # --check of a switch elsewhere says what would change and changes nothing.
    rc, output, _report = run_role(tmp_path, "switch", dict(common, dns_switch_value=["127.0.0.13"]),
                                   check=True)
    assert rc == 0, output
    assert dig(lab) == (LAB_TTL, [DR]) and route53_record(lab) == (LAB_TTL, [DR])
    assert json.loads(state_file.read_text()) == recorded

    # Failback: the recorded values and TTL come back at both providers.
    rc, output, report = run_role(tmp_path, "restore_previous", common)
    assert rc == 0, output
    assert dig(lab) == (300, [PRIMARY]) and route53_record(lab) == (300, [PRIMARY])
    assert (report["dns_change"]["from"], report["dns_change"]["to"]) == (DR, PRIMARY)


def test_role_refuses_a_switch_when_the_record_is_not_what_was_expected(at_primary, tmp_path):
    lab = at_primary
    extra_vars = {"dns_switch_providers": ["rfc2136", "route53"],
                  "dns_switch_state_dir": str(tmp_path / "state"),
                  "dns_switch_value": [DR], "dns_switch_expect": ["127.0.0.13"]}
    rc, output, _report = run_role(tmp_path, "switch", extra_vars)
    assert rc != 0
    assert "holds %s, not the expected 127.0.0.13" % PRIMARY in output and "nothing changed" in output
    assert dig(lab) == (LAB_TTL, [PRIMARY]) and route53_record(lab) == (LAB_TTL, [PRIMARY])
    assert not (tmp_path / "state").exists()
