# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# The `kms` option (base.kms_suboptions): an AWS KMS key and the endpoint to reach it. preflight
# checks one key (key_id required: auditron.dr.kms.key_required); pgbackrest_info decrypts with
# whichever key of the account the ciphertext names (key_id optional: auditron.dr.kms).
_OPTION = r"""
options:
  kms:
    description:
      - An AWS KMS key (or one of an AWS-compatible endpoint) and how to reach it, as the inventory's
        C(auditron_dr_kms) gives it. M(auditron.dr.preflight) checks that the key makes and unwraps a data key
        (omit the option there to skip the check); M(auditron.dr.pgbackrest_info) decrypts C(cipher_pass_kms_blob)
        with it.
    type: dict
    suboptions:
"""

_KEY_ID_OPTIONAL = r"""
      key_id:
        description: Key id, ARN or alias the ciphertext must belong to; any key of the account when omitted.
        type: str
"""

_KEY_ID_REQUIRED = r"""
      key_id:
        description: Key id, ARN or alias.
        type: str
        required: true
"""

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


def _join(*parts):
    return "".join(part.lstrip("\n") for part in parts)


class ModuleDocFragment(object):
    # auditron.dr.kms: key_id may be omitted.
    DOCUMENTATION = "\n" + _join(_OPTION, _KEY_ID_OPTIONAL, _ENDPOINT)

    # auditron.dr.kms.key_required: key_id must be given.
    KEY_REQUIRED = "\n" + _join(_OPTION, _KEY_ID_REQUIRED, _ENDPOINT)
