# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.auditron.dr.plugins.doc_fragments.aws import aws_suboptions

_BEFORE_AWS = r"""
options:
  encryption:
    description:
      - How backups are encrypted at rest (AES-256-GCM, a fresh data key per backup, wrapped by the
        key-encryption key named here). Restores find the right key source from the backup's own key reference.
    type: dict
    suboptions:
      key_source:
        description: Where the key-encryption key lives. V(none) stores backups unencrypted.
        type: str
        default: file
        choices: [file, kms, vault, none]
      key_file:
        description: File holding a 32-byte key (raw, hex or base64); must not be readable by group or others.
        type: path
      kms_key_id:
        description: KMS key id, ARN or alias for O(encryption.key_source=kms).
        type: str
      aws:
        description: AWS API endpoint and credentials for KMS.
        type: dict
        suboptions:
"""
_AFTER_AWS = r"""      vault_url:
        description: HashiCorp Vault address for O(encryption.key_source=vault).
        type: str
      vault_token:
        description: Vault token. Never logged.
        type: str
      vault_transit_mount:
        description: Mount path of the transit secrets engine.
        type: str
        default: transit
      vault_transit_key:
        description: Name of the transit key.
        type: str
      vault_namespace:
        description: Vault Enterprise namespace.
        type: str
      vault_ca_bundle:
        description: CA bundle for Vault's certificate.
        type: path
      vault_derived:
        description: The transit key is a derived key; the backup's encryption context is passed as its context.
        type: bool
        default: false
"""


class ModuleDocFragment(object):
    """Envelope encryption: a data key per backup, wrapped by a key from a file, KMS or Vault.
    DOCUMENTATION is set below, after the class: its `aws` suboptions come from the aws fragment."""


ModuleDocFragment.DOCUMENTATION = _BEFORE_AWS + aws_suboptions(10) + _AFTER_AWS
