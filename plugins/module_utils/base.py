# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The base every auditron.dr module is built on, after amazon.aws's AnsibleAWSModule.

- the shared argument specs (PostgreSQL connection, object-store location, encryption key,
  AWS endpoint, KMS key, DNS record, object transfers), documented by the doc fragments of the
  same names;
- required-library checks with missing_required_lib: those a module names, and boto3 whenever
  its params need it (boto3_needed);
- one error path: DRError becomes fail_json(msg=...) with its details; anything else becomes
  fail_json with the traceback.

Modules build an AuditronModule, turn params into plain values, and call one engine function.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.auditron.dr.plugins.module_utils import aws
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, first_line


def postgres_argument_spec():
    """Connection options, named as community.postgresql names them."""
    return dict(
        login_host=dict(type="str", default="", aliases=["host"]),
        login_port=dict(type="int", default=5432, aliases=["port"]),
        login_user=dict(type="str", default="postgres"),
        login_password=dict(type="str", default="", no_log=True),
        login_unix_socket=dict(type="str", default=""),
        ssl_mode=dict(type="str", default="prefer",
                      choices=["allow", "disable", "prefer", "require", "verify-ca", "verify-full"]),
        ca_cert=dict(type="str", aliases=["ssl_rootcert"]),
        connect_timeout=dict(type="int", default=10),
    )


def location_suboptions():
    """One backup or object-store location: a local directory or an S3 bucket (any endpoint)."""
    return dict(
        name=dict(type="str", required=True),
        type=dict(type="str", default="s3", choices=["s3", "local"]),
        path=dict(type="path"),
        endpoint_url=dict(type="str", aliases=["endpoint"]),
        bucket=dict(type="str"),
        prefix=dict(type="str", default=""),
        region=dict(type="str", default="us-east-1"),
        access_key=dict(type="str", no_log=True, aliases=["aws_access_key"]),
        secret_key=dict(type="str", no_log=True, aliases=["aws_secret_key"]),
        session_token=dict(type="str", no_log=True),
        ca_bundle=dict(type="path", aliases=["ca_file"]),
        validate_certs=dict(type="bool", default=True),
        sse=dict(type="str", choices=["none", "AES256", "aws:kms"], default="none"),
        sse_kms_key_id=dict(type="str"),
    )


def pgbackrest_stanza_spec():
    """One pgBackRest stanza to act on (pgbackrest_verify); documented by auditron.dr.pgbackrest.stanza."""
    return dict(
        config=dict(type="path", required=True),
        stanza=dict(type="str", default="auditron"),
        repos=dict(type="list", elements="int"),
    )


def pgbackrest_physical_suboptions():
    """The `pgbackrest` option of backup_catalog and backup_prune: a stanza and the executable;
    documented by auditron.dr.pgbackrest.physical."""
    return dict(pgbackrest_stanza_spec(), binary=dict(type="str", default="pgbackrest"))


def transfer_argument_spec():
    """How object copies run (the mirror's engine), and the guard on what they delete:
    object_mirror and file_history; documented by the auditron.dr.transfer doc fragment."""
    return dict(
        max_delete_percent=dict(type="float", default=10.0),
        force=dict(type="bool", default=False),
        threads=dict(type="int", default=16),
        part_size_mb=dict(type="int", default=8),
        multipart_threshold_mb=dict(type="int", default=256),
        retries=dict(type="int", default=5),
        timeout=dict(type="int", default=60),
        progress_interval=dict(type="int", default=30),
        progress_file=dict(type="path"),
    )


def aws_suboptions():
    """An AWS (or AWS-compatible) API endpoint: KMS and Route53 use it."""
    return dict(
        endpoint_url=dict(type="str", aliases=["endpoint"]),
        region=dict(type="str", default="us-east-1"),
        access_key=dict(type="str", no_log=True),
        secret_key=dict(type="str", no_log=True),
        session_token=dict(type="str", no_log=True),
        ca_bundle=dict(type="path", aliases=["ca_file"]),
        validate_certs=dict(type="bool", default=True),
    )


def kms_suboptions(key_id_required=False):
    """An AWS KMS key and the endpoint to reach it (the inventory's `auditron_dr_kms`): preflight
    checks one key (key_id required), pgbackrest_info decrypts with the key the ciphertext names."""
    return dict(key_id=dict(type="str", required=key_id_required), **aws_suboptions())


def dns_suboptions():
    """One DNS record and how it is changed: the `dns` option of preflight (which checks it) and
    dns_record (which switches it), so that one inventory variable (`auditron_dr_dns`) serves both.
    The provider names and the default TTL are dnsswitch.PROVIDERS and dnsswitch.DEFAULT_TTL
    (dnsswitch is not imported here: every module loads this file)."""
    return dict(
        provider=dict(type="str", choices=["rfc2136", "route53"], default="rfc2136"),
        server=dict(type="str"),
        port=dict(type="int", default=53),
        zone=dict(type="str"),
        record=dict(type="str", required=True),
        tsig_key_file=dict(type="path"),
        tsig_key_name=dict(type="str", no_log=False),
        tsig_secret=dict(type="str", no_log=True),
        tsig_algorithm=dict(type="str", default="hmac-sha256"),
        ttl=dict(type="int", default=60),
        route53=dict(type="dict", options=dict(zone_id=dict(type="str", required=True), **aws_suboptions())),
    )


def encryption_suboptions():
    """Where the key-encryption key comes from (envelope encryption, a data key per backup)."""
    return dict(
        key_source=dict(type="str", default="file", choices=["file", "kms", "vault", "none"]),
        key_file=dict(type="path"),
        kms_key_id=dict(type="str"),
        aws=dict(type="dict", options=aws_suboptions()),
        vault_url=dict(type="str"),
        vault_token=dict(type="str", no_log=True),
        vault_transit_mount=dict(type="str", default="transit"),
        # The name of a transit key is not a secret: no_log=False tells validate-modules so (it
        # guesses from the word "key"); no module needs to override it.
        vault_transit_key=dict(type="str", no_log=False),
        vault_namespace=dict(type="str"),
        vault_ca_bundle=dict(type="path"),
        vault_derived=dict(type="bool", default=False),
    )


# The options that hold one location (object_mirror, file_history), beside `locations`.
SINGLE_LOCATION_OPTIONS = ("source", "destination", "backup", "target")


def boto3_needed(params):
    """Whether a module's params reach AWS or S3: a location of type s3 (the default type) in
    `locations` or in a single-location option, or an `encryption` key in KMS. Modules whose
    other options reach AWS say so with required_libs."""
    encryption = params.get("encryption") or {}
    locations = list(params.get("locations") or []) + [
        params[name] for name in SINGLE_LOCATION_OPTIONS if isinstance(params.get(name), dict)]
    return encryption.get("key_source") == "kms" or any(
        (item or {}).get("type", "s3") == "s3" for item in locations)


class AuditronModule(object):
    """AnsibleModule with the collection's conventions; see the module docstring."""

    def __init__(self, argument_spec, required_libs=None, **kwargs):
        self._module = AnsibleModule(argument_spec=argument_spec, **kwargs)
        required = list(required_libs or ())
        if boto3_needed(self._module.params):
            required.append(("boto3", aws.HAS_BOTO3, aws.BOTO3_IMPORT_ERROR))
        for name, present, import_error in required:
            if not present:
                self._module.fail_json(msg=missing_required_lib(name), exception=import_error)

    @property
    def params(self):
        return self._module.params

    @property
    def check_mode(self):
        return self._module.check_mode

    @property
    def diff_mode(self):
        return self._module._diff  # pylint: disable=protected-access

    def warn(self, message):
        self._module.warn(message)

    def log(self, message):
        self._module.log(message)

    def exit_json(self, **result):
        self._module.exit_json(**result)

    def fail_json(self, msg, **result):
        self._module.fail_json(msg=msg, **result)

    def run(self, func, *args, **kwargs):
        """Call one engine function; exit with its result dict, or fail with one message. The
        result's `warnings` (a list of lines the engine could not act on) become Ansible warnings."""
        try:
            result = func(*args, **kwargs)
        except DRError as exc:
            self._module.fail_json(msg=exc.message, **exc.details)
        except Exception as exc:  # pylint: disable=broad-except
            self._module.fail_json(msg="unexpected error: %s" % first_line(exc), exception=traceback.format_exc())
        for warning in result.pop("warnings", None) or []:
            self._module.warn(warning)
        self._module.exit_json(**result)
