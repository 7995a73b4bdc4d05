# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.auditron.dr.plugins.doc_fragments.aws import aws_suboptions

_KMS = r"""
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
%s""" + aws_suboptions(6)


class ModuleDocFragment(object):
    """The `kms` option (base.kms_suboptions): DOCUMENTATION with key_id optional (pgbackrest_info
    decrypts with whichever key the ciphertext names), KEY_REQUIRED with key_id required
    (preflight checks one key). Both are set below, after the class, from one text."""


ModuleDocFragment.DOCUMENTATION = _KMS % """        description: Key id, ARN or alias the ciphertext must belong to; any key of the account when omitted.
        type: str
"""
ModuleDocFragment.KEY_REQUIRED = _KMS % """        description: Key id, ARN or alias.
        type: str
        required: true
"""
