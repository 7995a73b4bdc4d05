# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""boto3 clients for AWS APIs (KMS, Route53) from the collection's `aws` option shape.

Any AWS-compatible endpoint works; in the lab that endpoint is moto, an AWS emulator.
Timeouts are short and retries few: on the worst night a silent endpoint must be reported
in seconds, not after botocore's default minutes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.auditron.dr.plugins.module_utils import storage
# Clients and their Config come from storage, which imports boto3 only when a client is made.
from ansible_collections.auditron.dr.plugins.module_utils.storage import (  # pylint: disable=unused-import
    BOTO3_IMPORT_ERROR, HAS_BOTO3)  # BOTO3_IMPORT_ERROR: for modules and crypto, which import it from here

if HAS_BOTO3:
    import botocore.exceptions
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, first_line


def endpoint_label(service, params):
    params = params or {}
    return params.get("endpoint_url") or params.get("endpoint") or "%s.%s.amazonaws.com" % (
        service, params.get("region") or "us-east-1")


def client(service, params, max_attempts=3, connect_timeout=5, read_timeout=20):
    if not HAS_BOTO3:
        raise DRError("the boto3 Python library is required for %s" % service.upper())
    params = params or {}
    verify = (params.get("ca_bundle") or params.get("ca_file") or True) if params.get("validate_certs", True) \
        is not False else False
    config = storage.boto_config(connect_timeout=connect_timeout, read_timeout=read_timeout,
                                 retries={"max_attempts": max_attempts, "mode": "standard"})
    return storage.boto_client(
        service, endpoint_url=params.get("endpoint_url") or params.get("endpoint"),
        region_name=params.get("region") or "us-east-1", aws_access_key_id=params.get("access_key"),
        aws_secret_access_key=params.get("secret_key"), aws_session_token=params.get("session_token"),
        verify=verify, config=config)


def describe_error(service, params, exc, what=None):
    """One line for a boto error: which service, which endpoint, what went wrong."""
    where = "%s at %s" % (service.upper() if service != "route53" else "Route53", endpoint_label(service, params))
    subject = (" (%s)" % what) if what else ""
    if HAS_BOTO3 and isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        return DRError("%s%s: %s: %s" % (where, subject, error.get("Code", "error"), error.get("Message", "")))
    if HAS_BOTO3 and isinstance(exc, botocore.exceptions.SSLError):
        return DRError("%s%s: TLS certificate not trusted" % (where, subject))
    if HAS_BOTO3 and isinstance(exc, (botocore.exceptions.EndpointConnectionError,
                                      botocore.exceptions.ConnectTimeoutError,
                                      botocore.exceptions.ReadTimeoutError)):
        return DRError("%s%s: endpoint does not answer" % (where, subject))
    if HAS_BOTO3 and isinstance(exc, botocore.exceptions.NoCredentialsError):
        return DRError("%s%s: no credentials configured" % (where, subject))
    return DRError("%s%s: %s" % (where, subject, first_line(exc)))
