# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# The suboptions of one backup location (base.location_suboptions is the argument spec they
# document), written once, in DOCUMENTATION (a `locations` list). MIRROR and HISTORY give the
# same suboptions to the single-location options of object_mirror and file_history, whose own
# DOCUMENTATION says what each option is for (ansible merges the two, the module's keys added
# to these).


class ModuleDocFragment(object):
    # One or several backup locations (local directory or S3 bucket at any endpoint).
    DOCUMENTATION = r"""
options:
  locations:
    description:
      - Where backups are written and read. Every location gets a full copy.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Name of the location, used in results, manifests and messages.
        type: str
        required: true
      type:
        description: V(s3) for any S3-compatible endpoint (AWS, MinIO, rclone), V(local) for a directory (not
          where an option takes S3 only).
        type: str
        default: s3
        choices: [s3, local]
      path:
        description: Directory of a V(local) location. Created with mode 0700; files are written 0600.
        type: path
      endpoint_url:
        description: S3 endpoint URL. Omit for AWS S3.
        type: str
        aliases: [endpoint]
      bucket:
        description: Bucket of an V(s3) location.
        type: str
      prefix:
        description: Key prefix inside the bucket; keys are read and written relative to it.
        type: str
        default: ''
      region:
        description: S3 region (the signing region for other servers).
        type: str
        default: us-east-1
      access_key:
        description: Access key id. Never logged. Omit to use the environment, a profile or an instance role.
        type: str
        aliases: [aws_access_key]
      secret_key:
        description: Secret access key. Never logged.
        type: str
        aliases: [aws_secret_key]
      session_token:
        description: Session token for temporary credentials. Never logged.
        type: str
      ca_bundle:
        description: CA bundle used to verify the endpoint's TLS certificate.
        type: path
        aliases: [ca_file]
      validate_certs:
        description: Verify the endpoint's TLS certificate. Leave on outside of experiments.
        type: bool
        default: true
      sse:
        description: Server-side encryption to ask for on upload (AWS); V(none) where the server has none.
        type: str
        choices: [none, AES256, 'aws:kms']
        default: none
      sse_kms_key_id:
        description: KMS key for V(aws:kms).
        type: str
"""


def _locations(*names):
    suboptions = ModuleDocFragment.DOCUMENTATION.split("\n    suboptions:\n", 1)[1]
    return "\noptions:\n" + "".join("  %s:\n    suboptions:\n%s" % (name, suboptions) for name in names)


# Set after the class, not in its body: ansible-test's yamllint reads every assignment in a
# fragment's class body as a literal string (and lints DOCUMENTATION, which holds the text);
# ansible reads the variants as attributes, and validate-modules checks the modules' merged docs.
ModuleDocFragment.MIRROR = _locations("source", "destination")  # object_mirror's two locations
ModuleDocFragment.HISTORY = _locations("source", "backup", "target")  # file_history's three
