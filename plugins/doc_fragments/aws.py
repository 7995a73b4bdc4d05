# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# The AWS endpoint options (base.aws_suboptions), written once: the kms, dns and encryption doc
# fragments nest them where their options take them (kms, dns.route53, encryption.aws).
_ENDPOINT = r"""
endpoint_url:
  description: API endpoint URL; omit for AWS.
  type: str
  aliases: [endpoint]
region:
  description: AWS region.
  type: str
  default: us-east-1
access_key:
  description: Access key id. Never logged.
  type: str
secret_key:
  description: Secret access key. Never logged.
  type: str
session_token:
  description: Session token. Never logged.
  type: str
ca_bundle:
  description: CA bundle for the endpoint's certificate.
  type: path
  aliases: [ca_file]
validate_certs:
  description: Verify the endpoint's TLS certificate.
  type: bool
  default: true
"""


def endpoint_suboptions(indent):
    """The AWS endpoint options as YAML lines indented by `indent` spaces."""
    return "".join(" " * indent + line + "\n" for line in _ENDPOINT.strip("\n").split("\n"))


class ModuleDocFragment(object):
    # auditron.dr.aws: an `aws` option holding just the endpoint (what encryption.aws is).
    DOCUMENTATION = r"""
options:
  aws:
    description: AWS API endpoint and credentials.
    type: dict
    suboptions:
""" + endpoint_suboptions(6)
