# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.auditron.dr.plugins.doc_fragments.aws import endpoint_suboptions

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


def _join(*parts):
    return "".join(part.lstrip("\n") for part in parts)


class ModuleDocFragment(object):
    # auditron.dr.kms: key_id may be omitted.
    DOCUMENTATION = "\n" + _join(_OPTION, _KEY_ID_OPTIONAL) + endpoint_suboptions(6)

    # auditron.dr.kms.key_required: key_id must be given.
    KEY_REQUIRED = "\n" + _join(_OPTION, _KEY_ID_REQUIRED) + endpoint_suboptions(6)
