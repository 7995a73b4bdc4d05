# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The endpoint and credentials of an AWS (or AWS-compatible) API (base.aws_suboptions), as the
    # `aws` option documents them. Written once, here: the kms, encryption and dns fragments take
    # these suboptions from aws_suboptions() below instead of repeating them.
    DOCUMENTATION = r"""
options:
  aws:
    description: AWS API endpoint and credentials.
    type: dict
    suboptions:
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


def aws_suboptions(indent):
    """The suboptions above as YAML text whose keys start at column `indent`, for a fragment
    that nests them deeper (a fragment built from this is set after its class: ansible-test's
    yamllint reads every assignment in a fragment's class body as a literal string)."""
    text = ModuleDocFragment.DOCUMENTATION.split("\n    suboptions:\n", 1)[1]
    pad = " " * (indent - 6)
    return "".join(pad + line if line.strip() else line for line in text.splitlines(True))
