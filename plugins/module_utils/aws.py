# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS and every AWS-compatible endpoint, in one place: whether boto3 is there, the one shared
session, client configuration, connection settings from the collection's option shapes, the
wording of errors, and botocore's retry settings.

storage (S3 through boto3), s3client (the mirror's own S3 client), crypto and pgbackrest (KMS),
dnsswitch and preflight (Route53) all come here, so an endpoint that fails is reported in the
same words whichever path reached it.

Timeouts are short and retries few: on the worst night a silent endpoint must be reported in
seconds, not after botocore's default minutes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading
import traceback

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, first_line, importable

# Neither boto3 nor botocore is imported here: boto3 costs about 0.2 s of CPU and botocore's
# exceptions 25 ms, which modules that never reach AWS (notifications, pgBackRest's) would pay.
# boto3 comes in with the first client, botocore's exceptions with the first error to word.
try:
    if not importable("botocore") or not importable("boto3"):
        raise ImportError("No module named 'boto3'")
    HAS_BOTO3 = True
    BOTO3_IMPORT_ERROR = None
except ImportError:
    HAS_BOTO3 = False
    BOTO3_IMPORT_ERROR = traceback.format_exc()

_SESSION = None
_SESSION_LOCK = threading.Lock()


# ---------------------------------------------------------------------------------------------
# botocore's retries (the collection's own retry loops wait as retry.backoff says)

def retries_config(max_attempts):
    """botocore's own retries, for clients made here: its "standard" mode, `max_attempts` in all."""
    return {"max_attempts": max_attempts, "mode": "standard"}


# ---------------------------------------------------------------------------------------------
# Session, client configuration, connection settings

def boto_client(service, **kwargs):
    """A client from one shared boto3 session: a session per client costs ~0.1 s and ~12 MB
    (it loads the service models each time). Client creation is serialized, since sessions
    are not thread-safe; the clients themselves are."""
    global _SESSION  # pylint: disable=global-statement
    with _SESSION_LOCK:
        if _SESSION is None:
            import boto3.session  # pylint: disable=import-outside-toplevel  # see HAS_BOTO3
            _SESSION = boto3.session.Session()
        return _SESSION.client(service, **kwargs)


def default_credentials():
    """What boto3's chain finds when no keys are given (environment, profile, instance role), or None."""
    import boto3.session  # pylint: disable=import-outside-toplevel  # see HAS_BOTO3
    return boto3.session.Session().get_credentials()


def client_config(max_attempts=3, connect_timeout=5, read_timeout=20, **extra):
    """A botocore Config with the collection's timeouts and retry policy; `extra` adds to it."""
    from botocore.config import Config  # pylint: disable=import-outside-toplevel  # see HAS_BOTO3
    return Config(connect_timeout=connect_timeout, read_timeout=read_timeout, retries=retries_config(max_attempts),
                  **extra)


def endpoint_url(params):
    """The endpoint a params dict names (`endpoint_url`, or its alias `endpoint`), else None."""
    params = params or {}
    return params.get("endpoint_url") or params.get("endpoint") or None


def region(params):
    return (params or {}).get("region") or "us-east-1"


def ca_bundle(params):
    """The CA bundle a params dict names (`ca_bundle`, or its alias `ca_file`), else None."""
    params = params or {}
    return params.get("ca_bundle") or params.get("ca_file") or None


def validate_certs(params):
    return (params or {}).get("validate_certs", True) is not False


def verify_setting(params):
    """botocore's `verify`: False, the CA bundle, or True for the system CAs."""
    if not validate_certs(params):
        return False
    return ca_bundle(params) or True


def credentials(params):
    """boto3's keyword arguments for the keys a params dict gives (None: boto3's own chain)."""
    params = params or {}
    return {"aws_access_key_id": params.get("access_key"), "aws_secret_access_key": params.get("secret_key"),
            "aws_session_token": params.get("session_token")}


def endpoint_label(service, params):
    return endpoint_url(params) or "%s.%s.amazonaws.com" % (service, region(params))


def bucket_label(endpoint, region_name, bucket):
    """How messages name a bucket: its endpoint (AWS's regional one when none is given) and name."""
    return "%s/%s" % ((endpoint or "https://s3.%s.amazonaws.com" % region_name).rstrip("/"), bucket)


def client(service, params, max_attempts=3, connect_timeout=5, read_timeout=20):
    if not HAS_BOTO3:
        raise DRError("the boto3 Python library is required for %s" % service.upper())
    config = client_config(max_attempts=max_attempts, connect_timeout=connect_timeout, read_timeout=read_timeout)
    return boto_client(service, endpoint_url=endpoint_url(params), region_name=region(params),
                       verify=verify_setting(params), config=config, **credentials(params))


# ---------------------------------------------------------------------------------------------
# Errors, worded once

def _exceptions():
    """botocore.exceptions, imported on the first error to word (see HAS_BOTO3), or None."""
    if not HAS_BOTO3:
        return None
    import botocore.exceptions  # pylint: disable=import-outside-toplevel
    return botocore.exceptions


def is_client_error(exc, *codes):
    """True for a botocore ClientError (with one of `codes`, when given)."""
    exceptions = _exceptions()
    if exceptions is None or not isinstance(exc, exceptions.ClientError):
        return False
    return not codes or str(exc.response.get("Error", {}).get("Code", "")) in codes


def describe_error(service, params, exc, what=None):
    """One line for a boto error: which service, which endpoint, what went wrong."""
    where = "%s at %s" % (service.upper() if service != "route53" else "Route53", endpoint_label(service, params))
    subject = (" (%s)" % what) if what else ""
    exceptions = _exceptions()
    if exceptions is not None:
        if isinstance(exc, exceptions.ClientError):
            error = exc.response.get("Error", {})
            return DRError("%s%s: %s: %s" % (where, subject, error.get("Code", "error"), error.get("Message", "")))
        if isinstance(exc, exceptions.SSLError):
            return DRError("%s%s: TLS certificate not trusted" % (where, subject))
        if isinstance(exc, (exceptions.EndpointConnectionError, exceptions.ConnectTimeoutError,
                            exceptions.ReadTimeoutError)):
            return DRError("%s%s: endpoint does not answer" % (where, subject))
        if isinstance(exc, exceptions.NoCredentialsError):
            return DRError("%s%s: no credentials configured" % (where, subject))
    return DRError("%s%s: %s" % (where, subject, first_line(exc)))


def s3_error(location, exc, key=None):
    """Turn a boto/botocore error into one line naming the location and what is wrong.

    `location` needs name, bucket, endpoint_label and ca_bundle (a storage.S3Location)."""
    where = "location %s" % location.name
    thing = (" %s" % key) if key else ""
    exceptions = _exceptions()
    if exceptions is None:
        return DRError("%s:%s %s" % (where, thing, first_line(exc)))
    if isinstance(exc, exceptions.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchBucket",) or (code in ("404", "NotFound") and key is None):
            return DRError("%s: bucket %s does not exist at %s" % (where, location.bucket, location.endpoint_label))
        if code in ("NoSuchKey", "404", "NotFound"):
            return DRError("%s:%s not found" % (where, thing))
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "Forbidden",
                    "InvalidToken", "ExpiredToken"):
            return DRError("%s: access denied%s at %s with the configured credentials (%s)"
                           % (where, (" to" + thing) if thing else "", location.endpoint_label, code))
        return DRError("%s:%s %s (HTTP %s) at %s" % (where, thing, code or "error", status, location.endpoint_label))
    if isinstance(exc, exceptions.SSLError):
        if _certificate_refused(exc):
            return DRError("%s: the TLS certificate of %s is not trusted (ca_bundle: %s): %s"
                           % (where, location.endpoint_label, location.ca_bundle or "system CAs", _ssl_reason(exc)))
        # The endpoint accepted the connection and closed it during the TLS handshake (a load
        # balancer with no server behind it, a server going away): that is the endpoint gone,
        # and saying "certificate" would send the operator after the wrong thing.
        during = (" during" + thing) if thing else ""
        return DRError("%s: endpoint %s stopped answering%s: the connection was closed during the TLS handshake (%s)"
                       % (where, location.endpoint_label, during, _tls_closed_reason(exc)))
    if isinstance(exc, (exceptions.EndpointConnectionError, exceptions.ConnectTimeoutError)):
        return DRError("%s: endpoint %s does not answer" % (where, location.endpoint_label))
    if isinstance(exc, (exceptions.ReadTimeoutError, exceptions.ConnectionClosedError)):
        during = (" during" + thing) if thing else ""
        return DRError("%s: endpoint %s stopped answering%s" % (where, location.endpoint_label, during))
    if isinstance(exc, exceptions.NoCredentialsError):
        return DRError("%s: no credentials configured (access_key/secret_key)" % where)
    return DRError("%s:%s %s" % (where, thing, first_line(exc)))


def endpoint_silent(exc):
    """True when a botocore error says the endpoint did not answer or stopped answering."""
    exceptions = _exceptions()
    return exceptions is not None and isinstance(exc, (
        exceptions.EndpointConnectionError, exceptions.ConnectionClosedError, exceptions.ReadTimeoutError,
        exceptions.ConnectTimeoutError))


_CERTIFICATE_MARKERS = ("certificate", "CERTIFICATE", "Hostname mismatch", "hostname", "self signed", "self-signed",
                        "issuer", "unknown ca", "UNKNOWN_CA", "verify failed")


def _certificate_refused(exc):
    """True when TLS failed because a certificate was refused (by us or by the server)."""
    text = str(exc)
    return any(marker in text for marker in _CERTIFICATE_MARKERS)


def _first_marker(exc, markers):
    """The first of `markers` that the error's text holds, else the error's first line."""
    text = str(exc)
    for marker in markers:
        if marker in text:
            return marker
    return first_line(exc)


def _tls_closed_reason(exc):
    return _first_marker(exc, ("EOF occurred in violation of protocol", "connection has been closed (EOF)",
                               "UNEXPECTED_EOF", "Connection reset by peer", "Broken pipe")).split(" for http")[0][:200]


def _ssl_reason(exc):
    return _first_marker(exc, ("certificate has expired", "self-signed certificate",
                               "unable to get local issuer certificate", "Hostname mismatch",
                               "certificate verify failed"))
