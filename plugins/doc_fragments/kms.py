# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The `kms` option (base.kms_suboptions). auditron.dr.kms: key_id optional (pgbackrest_info
    # decrypts with whichever key the ciphertext names). ansible-test reads each variant as a
    # literal string, so both are written out.
    DOCUMENTATION = r"""
options:
  kms:
    description:
      - An AWS KMS key (or one of an AWS-compatible endpoint) and how to reach it, as the inventory's
        C(auditron_dr_kms) gives it. M(auditron.dr.preflight) checks that the key makes and unwraps a data key
        (omit the option there to skip the check); M(auditron.dr.pgbackrest_info) decrypts C(cipher_pass_kms_blob)
        with it.
    type: dict
    suboptions:
      key_id:
        description: Key id, ARN or alias the ciphertext must belong to; any key of the account when omitted.
        type: str
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

    # auditron.dr.kms.key_required: key_id required (preflight checks one key).
    KEY_REQUIRED = r"""
options:
  kms:
    description:
      - An AWS KMS key (or one of an AWS-compatible endpoint) and how to reach it, as the inventory's
        C(auditron_dr_kms) gives it. M(auditron.dr.preflight) checks that the key makes and unwraps a data key
        (omit the option there to skip the check); M(auditron.dr.pgbackrest_info) decrypts C(cipher_pass_kms_blob)
        with it.
    type: dict
    suboptions:
      key_id:
        description: Key id, ARN or alias.
        type: str
        required: true
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
