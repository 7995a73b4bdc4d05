#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: dns_record
short_description: Switch the API's DNS record to new values and read it back from the authoritative side
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - Makes one DNS record (A, AAAA or CNAME) hold O(value) with O(ttl), through an RFC 2136 dynamic update signed
    with a TSIG key (BIND and friends) or through Route53, then reads it back from the authoritative side and
    returns what it answered. This is the "Switch DNS to DR region" step of the plan's scenario 2, and its undo.
  - Idempotent. A record already at O(value) and O(ttl) is left alone and no update is sent.
  - With O(expect), the record is changed only if it holds exactly those values now, so that a stale operator
    cannot undo a newer switch. For V(rfc2136) this is an RFC 2136 prerequisite, checked by the server in the same
    transaction as the change. Route53 has no prerequisite on an UPSERT - the module compares just before the
    UPSERT and reads the record back after it, so a writer landing in that window (one API round trip) is reported
    as a failure, not prevented.
  - Returns RV(before) and RV(after) so that a failback can put the old value back, and a C(dr_report.dns_change)
    fragment for the C(auditron.dr.dr_timeline) callback.
extends_documentation_fragment:
  - auditron.dr.dns
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the record and reports what would change; nothing is changed. For V(rfc2136) a
      prerequisite-only update proves the server accepts the TSIG key, so a wrong key fails in check mode too.
  diff_mode:
    support: full
    details: The record before and after, in zone-file syntax.
  platform:
    platforms: posix
options:
  dns:
    # The fragment's option, required here (merged over it: the record to switch).
    required: true
  type:
    description: Record type.
    type: str
    choices: [A, AAAA, CNAME]
    default: A
  value:
    description:
      - Values the record must hold - addresses for V(A) and V(AAAA), one target name for V(CNAME) (taken as an
        absolute name).
    type: list
    elements: str
    required: true
  expect:
    description:
      - Change the record only if it holds exactly these values now; otherwise fail and change nothing.
      - A record already at O(value) and O(ttl) is not changed and does not fail, whatever it holds.
      - Omit to change the record whatever it holds.
    type: list
    elements: str
  ttl:
    description: TTL the record gets. Defaults to O(dns.ttl).
    type: int
  wait_for_sync:
    description:
      - For V(route53), wait until GetChange says V(INSYNC) (every Route53 name server has the change) before
        reading it back. Ignored for V(rfc2136) (the primary applies an update before it answers).
      - Without waiting, a change still V(PENDING) is read back from the API's record list (ListResourceRecordSets),
        since Route53's name servers may still answer the old value.
    type: bool
    default: true
  sync_timeout:
    description: Seconds to wait for V(INSYNC). The change is made either way; a timeout fails with C(changed=true).
    type: int
    default: 120
  timeout:
    description: Seconds to wait for each DNS query or update (V(rfc2136)).
    type: float
    default: 5
  report_change:
    description:
      - Return C(dr_report.dns_change) when the values change, for the C(auditron.dr.dr_timeline) callback. The
        C(auditron.dr.dns_switch) role turns it off and reports all providers at once.
    type: bool
    default: true
notes:
  - Only plain record sets are switched. A Route53 alias or routing-policy (weighted, latency, failover) record set
    is refused with a message, as is an V(A) or V(AAAA) record on a name that is a CNAME.
  - The read-back after the change is from the authoritative side - for V(rfc2136) a query over TCP to O(dns.server);
    for V(route53) TestDNSAnswer (what Route53's name servers answer), or ListResourceRecordSets where the endpoint does
    not implement TestDNSAnswer (moto, the AWS emulator the lab uses, does not). Resolvers and caches may still
    answer the old value until its TTL runs out.
requirements:
  - dnspython (for V(rfc2136))
  - boto3 (for V(route53))
seealso:
  - module: auditron.dr.preflight
  - module: community.general.nsupdate
  - module: amazon.aws.route53
"""

EXAMPLES = r"""
- name: Point the API at the DR load balancer, only if it still points at the primary
  auditron.dr.dns_record:
    dns: "{{ auditron_dr_dns }}"
    value: [203.0.113.20]
    expect: [198.51.100.10]
    ttl: 60
  register: api_dns

- name: The same name in Route53
  auditron.dr.dns_record:
    dns:
      provider: route53
      record: api.auditron.ai
      route53:
        zone_id: Z0123456789ABCDEFGHIJ
    value: [203.0.113.20]
    wait_for_sync: true

- name: Fail back to what it held before
  auditron.dr.dns_record:
    dns: "{{ auditron_dr_dns }}"
    value: "{{ api_dns.before['values'] }}"
    ttl: "{{ api_dns.before.ttl }}"
    expect: "{{ api_dns.after['values'] }}"
"""

RETURN = r"""
switched:
  description:
    - Whether the values change (or would, in check mode). V(false) when nothing changes or only the TTL does.
  returned: always
  type: bool
  sample: true
provider:
  description: The provider that was used.
  returned: always
  type: str
  sample: rfc2136
record:
  description: The record, without trailing dot.
  returned: always
  type: str
  sample: api.auditron.test
type:
  description: Record type.
  returned: always
  type: str
  sample: A
before:
  description: The record before the change, as the provider held it. No values and a null TTL when it did not exist.
  returned: always
  type: dict
  contains:
    values:
      description: Values, canonical text, sorted.
      type: list
      elements: str
    ttl:
      description: TTL.
      type: int
  sample: {"values": ["127.0.0.11"], "ttl": 30}
after:
  description: The record after the change (in check mode, what it would be).
  returned: always
  type: dict
  contains:
    values:
      description: Values, canonical text, sorted.
      type: list
      elements: str
    ttl:
      description: TTL.
      type: int
  sample: {"values": ["127.0.0.12"], "ttl": 30}
verified_from:
  description: Where the record was read back from after the change, and what it answered.
  returned: when not in check mode, or when nothing had to change
  type: dict
  contains:
    server:
      description: The authoritative server, or the Route53 hosted zone and endpoint (and name server with TestDNSAnswer).
      type: str
    method:
      description: How it was asked.
      type: str
    values:
      description: Values answered.
      type: list
      elements: str
    ttl:
      description: TTL answered; null where the method does not give one (TestDNSAnswer).
      type: int
  sample: {"server": "127.0.0.1:55953", "method": "DNS query over TCP to the zone's authoritative server",
           "values": ["127.0.0.12"], "ttl": 30}
change:
  description: The change - for V(route53) its id and last status (V(PENDING), V(INSYNC)); for V(rfc2136) status V(applied).
  returned: when a change was made
  type: dict
  sample: {"id": "/change/C2682N5HXP0BZ4", "status": "INSYNC"}
dr_report:
  description: Fragment for the C(auditron.dr.dr_timeline) callback.
  returned: when the values changed and O(report_change) is true
  type: dict
  sample: {"dns_change": {"record": "api.auditron.test", "provider": "rfc2136", "from": "127.0.0.11",
                          "to": "127.0.0.12", "at": "2026-11-24T02:14:03Z"}}
msg:
  description: What was done, in one line.
  returned: always
  type: str
"""

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.auditron.dr.plugins.module_utils import aws, dnsswitch
from ansible_collections.auditron.dr.plugins.module_utils.base import AuditronModule, dns_suboptions


def argument_spec():
    return dict(
        dns=dict(type="dict", required=True, options=dns_suboptions()),
        type=dict(type="str", choices=list(dnsswitch.RECORD_TYPES), default="A"),
        value=dict(type="list", elements="str", required=True),
        expect=dict(type="list", elements="str"),
        ttl=dict(type="int"),
        wait_for_sync=dict(type="bool", default=True),
        sync_timeout=dict(type="int", default=dnsswitch.DEFAULT_SYNC_TIMEOUT),
        timeout=dict(type="float", default=5),
        report_change=dict(type="bool", default=True),
    )


def switch_record(params, check_mode, diff):
    return dnsswitch.switch(
        params["dns"], params["value"], rdtype=params["type"], ttl=params["ttl"], expect=params["expect"],
        check_mode=check_mode, diff=diff, wait_for_sync=params["wait_for_sync"],
        sync_timeout=params["sync_timeout"], report_change=params["report_change"], timeout=params["timeout"])


def main():
    module = AuditronModule(argument_spec(), supports_check_mode=True)
    # Only the chosen provider's library is required.
    provider = module.params["dns"]["provider"]
    if provider == "rfc2136" and not dnsswitch.HAS_DNSPYTHON:
        module.fail_json(msg=missing_required_lib("dnspython"), exception=dnsswitch.DNSPYTHON_IMPORT_ERROR)
    if provider == "route53" and not aws.HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=aws.BOTO3_IMPORT_ERROR)
    module.run(switch_record, module.params, module.check_mode, module.diff_mode)


if __name__ == "__main__":
    main()
