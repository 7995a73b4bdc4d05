# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.auditron.dr.plugins.doc_fragments.aws import aws_suboptions

_BEFORE_AWS = r"""
options:
  dns:
    description:
      - One DNS record and how it is changed. M(auditron.dr.preflight) checks it (omit the option there to skip
        the check), M(auditron.dr.dns_record) switches it; the shape is the same, so one inventory variable
        (C(auditron_dr_dns)) serves both.
    type: dict
    suboptions:
      provider:
        description: V(rfc2136) (dynamic update with TSIG, BIND and friends) or V(route53).
        type: str
        choices: [rfc2136, route53]
        default: rfc2136
      server:
        description: Authoritative (primary) server of the zone, for V(rfc2136). Queries and updates go to it over TCP.
        type: str
      port:
        description: Its port.
        type: int
        default: 53
      zone:
        description: Zone that holds O(dns.record), for V(rfc2136).
        type: str
      record:
        description: The record's name, for example V(api.auditron.ai).
        type: str
        required: true
      tsig_key_file:
        description: BIND/nsupdate key file with the TSIG key.
        type: path
      tsig_key_name:
        description: TSIG key name, when not read from O(dns.tsig_key_file).
        type: str
      tsig_secret:
        description: Base64 TSIG secret, when not read from O(dns.tsig_key_file). Never logged.
        type: str
      tsig_algorithm:
        description: TSIG algorithm, when not read from O(dns.tsig_key_file).
        type: str
        default: hmac-sha256
      ttl:
        description:
          - TTL the record gets when M(auditron.dr.dns_record) switches it and its own C(ttl) option is not given.
          - M(auditron.dr.preflight) does not use it.
        type: int
        default: 60
      route53:
        description: Route53 hosted zone and the AWS endpoint to reach it, for V(route53).
        type: dict
        suboptions:
          zone_id:
            description: Hosted zone id.
            type: str
            required: true
"""


class ModuleDocFragment(object):
    """The `dns` option (base.dns_suboptions), optional (preflight skips the check without it);
    dns_record makes it required with an `options: dns: required: true` of its own, which ansible
    merges over this one. DOCUMENTATION is set below, after the class: the AWS suboptions of
    `route53` come from the aws fragment."""


ModuleDocFragment.DOCUMENTATION = _BEFORE_AWS + aws_suboptions(10)
