# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mirror's own S3 client: SigV4-signed requests over pooled keep-alive connections.

The object mirror (mirror.py) and the file history (filehistory.py) move many small objects;
this client is their data path. storage.S3Location (boto3) stays the path of everything else.
Design points, and why:

- The data path speaks S3 itself (SigV4 over http.client, one keep-alive pool per server):
  boto3 spends about 1.4 ms of CPU per request in signing, hooks and parsing, which on a
  small machine made a copy of 10,000 small objects twice as slow as rclone; this client
  spends about 0.3 ms. boto3 is still used to find credentials when none are given
  (environment, profile, instance role).
- One location type: an S3Endpoint is built from the storage.S3Location that
  storage.location_from_params parsed (its boto3 client is never made), so a location is
  checked and named once, and its server-side encryption follows S3Location's rule.
- One wording and one retry policy: failures are mapped onto botocore's exception types so
  that aws.s3_error words them as every other path to S3; waits between attempts are
  retry.backoff's.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import collections
import hashlib
import hmac
import http.client
import re
import socket
import ssl
import threading
import time
from xml.etree import ElementTree
from urllib.parse import quote, unquote_plus, urlsplit

from ansible_collections.auditron.dr.plugins.module_utils import aws, storage
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.retry import backoff

if aws.HAS_BOTO3:
    import botocore.exceptions

Entry = collections.namedtuple("Entry", ["key", "size", "etag"])
Head = collections.namedtuple("Head", ["key", "size", "etag", "metadata", "content_type"])

MIB = 1024 * 1024
DEFAULT_PART_SIZE = 8 * MIB
MIN_PART_SIZE = 5 * MIB
SEND_BLOCK = 256 * 1024
DEFAULT_RETRIES = 5
READ_CHUNK = 1 * MIB
LIST_PAGE = 1000
# Kept-alive connections idle longer than this are not reused: servers (AWS: about 20 s) close them.
IDLE_SECONDS = 15

PRESERVED_HEADERS = ("content-type", "content-encoding", "content-disposition", "content-language",
                     "cache-control", "expires")

_PLAIN_MD5_RE = re.compile(r"^[0-9a-f]{32}$")
_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_RETRY_STATUS = frozenset([500, 502, 503, 504, 429])
_RETRY_CODES = frozenset(["RequestTimeout", "SlowDown", "InternalError", "ServiceUnavailable",
                          "RequestTimeTooSkewed", "OperationAborted"])


def is_plain_md5(etag):
    """True when an ETag is the MD5 of the content: 32 hex digits, not a multipart "-N" one."""
    return bool(etag) and bool(_PLAIN_MD5_RE.match(etag))


def _b64(digest):
    return base64.b64encode(digest).decode("ascii")


def _join(prefix, key):
    prefix = (prefix or "").strip("/")
    return "%s/%s" % (prefix, key) if prefix else key


# ---------------------------------------------------------------------------------------------
# Errors

class EndpointDown(DRError):
    """An endpoint stopped answering (after retries): the run stops instead of failing each object slowly."""


class SourceVanished(DRError):
    """The source object was deleted between listing and copy: not a failure, the next run sees it."""


class _HTTPFailure(Exception):
    """An S3 error response: status, code and message, as the server sent them."""

    def __init__(self, status, code, message, operation):
        super(_HTTPFailure, self).__init__("%s %s: %s" % (status, code, message))
        self.status = status
        self.code = code
        self.message = message
        self.operation = operation


# ---------------------------------------------------------------------------------------------
# The wire: S3 requests signed with SigV4 over keep-alive http.client connections

class _Credentials(object):
    """Static keys from the parameters, or boto3's chain (environment, profile, instance role)."""

    def __init__(self, access_key, secret_key, session_token, what):
        self.what = what
        self._static = None
        self._chain = None
        if access_key and secret_key:
            self._static = (access_key, secret_key, session_token or None)
        elif aws.HAS_BOTO3:
            self._chain = aws.default_credentials()
        if self._static is None and self._chain is None:
            raise DRError("%s: no credentials configured (access_key/secret_key)" % what)

    @property
    def access_key(self):
        return self.current()[0]

    def current(self):
        if self._static is not None:
            return self._static
        frozen = self._chain.get_frozen_credentials()
        return frozen.access_key, frozen.secret_key, frozen.token


class _Server(object):
    """One S3 endpoint with one set of credentials: a connection pool and a signer, shared by
    every bucket and prefix reached through it (and by every thread)."""

    def __init__(self, endpoint_url, region, credentials, ca_bundle, validate_certs, timeout, retries):
        parts = urlsplit(endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DRError("endpoint %r is not an http(s) URL" % endpoint_url)
        self.url = endpoint_url.rstrip("/")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        default_port = 443 if self.https else 80
        self.host_header = self.host if self.port == default_port else "%s:%d" % (self.host, self.port)
        self.base_path = parts.path.rstrip("/")
        self.region = region or "us-east-1"
        self.credentials = credentials
        self.timeout = timeout
        self.retries = max(1, int(retries))
        self.context = None
        if self.https:
            if validate_certs:
                self.context = ssl.create_default_context(cafile=ca_bundle or None)
            else:
                self.context = ssl.create_default_context()
                self.context.check_hostname = False
                self.context.verify_mode = ssl.CERT_NONE
        self._idle = []
        self._lock = threading.Lock()
        self._keys = {}

    @property
    def identity(self):
        """What must be equal for a server-side copy between two locations."""
        return (self.https, self.host, self.port, self.base_path, self.credentials.access_key)

    # -- connections ---------------------------------------------------------------------------

    def _acquire(self):
        """(connection, reused): an idle one when there is a fresh enough one, else a new one."""
        now = time.monotonic()
        stale = []
        conn = None
        with self._lock:
            while self._idle:
                candidate, since = self._idle.pop()
                if now - since <= IDLE_SECONDS:
                    conn = candidate
                    break
                stale.append(candidate)
        for old in stale:
            old.close()
        if conn is not None:
            return conn, True
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.context,
                                               blocksize=SEND_BLOCK), False
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout, blocksize=SEND_BLOCK), False

    def release(self, conn):
        with self._lock:
            if len(self._idle) < 256:
                self._idle.append((conn, time.monotonic()))
                return
        conn.close()

    def close(self):
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _since in idle:
            conn.close()

    # -- signing -------------------------------------------------------------------------------

    def _signing_key(self, secret_key, day):
        cached = self._keys.get((secret_key, day))
        if cached is None:
            cached = hmac.new(("AWS4" + secret_key).encode("utf-8"), day.encode("ascii"), hashlib.sha256).digest()
            for part in (self.region, "s3", "aws4_request"):
                cached = hmac.new(cached, part.encode("ascii"), hashlib.sha256).digest()
            self._keys[(secret_key, day)] = cached
        return cached

    def sign(self, method, path, query, headers, payload_hash="UNSIGNED-PAYLOAD", now=None):
        """Add SigV4 headers to `headers` (lower-case names). `path` is already URI-encoded and
        `query` is the canonical query string. Returns headers."""
        access_key, secret_key, token = self.credentials.current()
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        day = amz_date[:8]
        headers["host"] = self.host_header
        headers["x-amz-date"] = amz_date
        headers["x-amz-content-sha256"] = payload_hash
        if token:
            headers["x-amz-security-token"] = token
        names = sorted(headers)
        canonical = "%s\n%s\n%s\n%s\n%s\n%s" % (
            method, path, query, "".join("%s:%s\n" % (name, " ".join(str(headers[name]).split())) for name in names),
            ";".join(names), payload_hash)
        scope = "%s/%s/s3/aws4_request" % (day, self.region)
        to_sign = "AWS4-HMAC-SHA256\n%s\n%s\n%s" % (amz_date, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest())
        signature = hmac.new(self._signing_key(secret_key, day), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        headers["authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
            access_key, scope, ";".join(names), signature)
        return headers

    # -- requests ------------------------------------------------------------------------------

    def request(self, method, path, query=(), headers=None, body=None, operation="request", stream=False,
                ok=(200, 204, 206), retry=True):
        """Send one request, retrying transient failures with backoff.

        Returns (response, data) - or (Response, None) with stream=True: the caller reads it
        and closes it. Raises _HTTPFailure for an error response, or the connection error.
        """
        query_string = "&".join("%s=%s" % (quote(str(k), safe="-_.~"), quote(str(v), safe="-_.~"))
                                for k, v in sorted(query))
        url_path = quote(self.base_path + path, safe="/~")
        target = url_path + ("?" + query_string if query_string else "")
        attempts = self.retries if retry else 1
        attempt = 0
        while True:
            attempt += 1
            signed = self.sign(method, url_path, query_string, dict(headers or {}))
            conn, reused = self._acquire()
            try:
                conn.request(method, target, body=body, headers=signed)
                response = conn.getresponse()
            except Exception as exc:  # pylint: disable=broad-except
                conn.close()
                if reused and isinstance(exc, _STALE_ERRORS):
                    # A kept-alive connection the server had closed: the request never reached
                    # it. The other idle ones are likely stale too; try again on a new one, free.
                    self.close()
                    attempt -= 1
                    continue
                if not _retryable_exception(exc) or attempt >= attempts:
                    raise
                backoff(attempt)
                continue
            if response.status in ok:
                if stream:
                    return Response(self, conn, response), None
                try:
                    data = response.read()
                except Exception as exc:  # pylint: disable=broad-except
                    conn.close()
                    if not _retryable_exception(exc) or attempt >= attempts:
                        raise
                    backoff(attempt)
                    continue
                self._after(conn, response)
                return response, data
            try:
                data = response.read()
            except Exception:  # pylint: disable=broad-except
                data = b""
            self._after(conn, response)
            failure = _failure_from(response, data, operation)
            if (response.status in _RETRY_STATUS or failure.code in _RETRY_CODES) and attempt < attempts:
                backoff(attempt)
                continue
            raise failure

    def _after(self, conn, response):
        if response.will_close:
            conn.close()
        else:
            self.release(conn)


class Response(object):
    """A streamed response body; close() returns a fully read connection to the pool."""

    def __init__(self, server, conn, response):
        self.server = server
        self.conn = conn
        self.response = response
        self.status = response.status
        self.done = False

    def getheader(self, name, default=None):
        return self.response.getheader(name, default)

    def getheaders(self):
        return self.response.getheaders()

    def read(self, amount):
        data = self.response.read(amount)
        if not data:
            self.done = True
        return data

    def close(self):
        if self.conn is None:
            return
        if self.done or self.response.isclosed():
            self.server._after(self.conn, self.response)  # pylint: disable=protected-access
        else:
            self.conn.close()
        self.conn = None


def _certificate_problem(exc):
    """A TLS failure that retrying cannot fix (not a connection closed during the handshake)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return True
    return isinstance(exc, ssl.SSLError) and not isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)) and \
        "CERTIFICATE" in str(exc).upper()


_STALE_ERRORS = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


def _retryable_exception(exc):
    if _certificate_problem(exc):
        return False
    return isinstance(exc, (OSError, http.client.HTTPException, socket.timeout))


def _failure_from(response, data, operation):
    code, message = "", ""
    if data:
        try:
            root = ElementTree.fromstring(data)
            code = _text(root, "Code") or ""
            message = _text(root, "Message") or ""
        except ElementTree.ParseError:
            message = data[:200].decode("utf-8", "replace")
    if not code:
        code = {404: "NotFound", 403: "Forbidden", 412: "PreconditionFailed"}.get(response.status, str(response.status))
    return _HTTPFailure(response.status, code, message or response.reason, operation)


def _text(element, name):
    found = element.find(name)
    if found is None:
        found = element.find(_S3_NS + name)
    return found.text if found is not None else None


def _children(element, name):
    return element.findall(_S3_NS + name) + element.findall(name)


# ---------------------------------------------------------------------------------------------
# A bucket and key prefix at one server

def mirrored_location(params, what):
    """One location dict (base.location_suboptions shape) parsed by storage.location_from_params,
    or a storage.S3Location already built; S3 only, since the mirror speaks S3."""
    if isinstance(params, storage.Location):
        if params.kind != "s3":
            raise DRError("%s (%s): only S3 locations can be mirrored, got type %s" % (what, params.name, params.kind))
        return params
    params = dict(params or {})
    label = "%s (%s)" % (what, params["name"]) if params.get("name") else what
    kind = params.get("type") or "s3"
    if kind != "s3":
        raise DRError("%s: only S3 locations can be mirrored, got type %s" % (label, kind))
    return storage.location_from_params(params, what=label)


class S3Endpoint(object):
    """Keys relative to `prefix` in `bucket` at `server`. child() shares the server (and its pool)."""

    kind = "s3"

    def __init__(self, server, location, bucket, prefix, sse_headers=None):
        self.server = server
        self.location = location          # storage.S3Location: names the place in every message
        self.name = location.name
        self.bucket = bucket
        self.prefix = (prefix or "").strip("/")
        self.sse_headers = dict(sse_headers or {})

    @classmethod
    def from_params(cls, params, what, timeout=60, retries=DEFAULT_RETRIES):
        """Build from one location dict (base.location_suboptions shape) or S3Location. S3 only."""
        location = mirrored_location(params, what)
        endpoint_url = location.endpoint_url or "https://s3.%s.amazonaws.com" % location.region
        credentials = _Credentials(location.access_key, location.secret_key, location.session_token,
                                   "location %s" % location.name)
        server = _Server(endpoint_url, location.region, credentials, location.ca_bundle, location.validate_certs,
                         timeout, retries)
        sse = {}
        # The location's own rule for the server-side encryption arguments.
        for name, value in location.extra_put_args().items():
            if name == "ServerSideEncryption":
                sse["x-amz-server-side-encryption"] = value
            elif name == "SSEKMSKeyId":
                sse["x-amz-server-side-encryption-aws-kms-key-id"] = value
        return cls(server, location, location.bucket, location.prefix, sse)

    def child(self, sub):
        return S3Endpoint(self.server, self.location, self.bucket, _join(self.prefix, sub.strip("/")),
                          self.sse_headers)

    def describe(self):
        return "%s (%s%s)" % (self.name, self.location.endpoint_label, ("/" + self.prefix) if self.prefix else "")

    def same_server(self, other):
        return isinstance(other, S3Endpoint) and self.server.identity == other.server.identity

    def full_key(self, key):
        return _join(self.prefix, key)

    def _path(self, key=None):
        if key is None:
            return "/%s" % self.bucket
        return "/%s/%s" % (self.bucket, self.full_key(key))

    def error(self, exc, key=None):
        """The exception as one DRError naming the location (and key), worded by aws.s3_error."""
        if isinstance(exc, DRError):
            return exc
        converted = _as_botocore(exc, self.server.url)
        error = aws.s3_error(self.location, converted, key)
        if aws.endpoint_silent(converted):
            message = error.message
            if key and key not in message:
                message += " (at %s)" % key
            return EndpointDown(message)
        return error

    def _call(self, method, key=None, what=None, **kwargs):
        try:
            return self.server.request(method, self._path(key), **kwargs)
        except Exception as exc:  # pylint: disable=broad-except
            raise self.error(exc, what if what is not None else key)

    # -- reading -------------------------------------------------------------------------------

    def list_page(self, prefix="", token=None, start_after=None, delimiter=None):
        """One ListObjectsV2 page: ([Entry], [common prefix], next token or None); keys relative."""
        base = (self.prefix + "/") if self.prefix else ""
        query = [("list-type", "2"), ("encoding-type", "url"), ("max-keys", str(LIST_PAGE)),
                 ("prefix", base + prefix)]
        if token:
            query.append(("continuation-token", token))
        elif start_after:
            query.append(("start-after", base + start_after))
        if delimiter:
            query.append(("delimiter", delimiter))
        _response, data = self._call("GET", None, what="", query=query, operation="ListObjectsV2")
        return parse_list_page(data, len(base))

    def list(self, prefix="", start_after=None):
        """Every object under prefix (relative keys), in the server's order, a page at a time;
        the next page is fetched while this one is used."""
        return _prefetched(self._pages(prefix, start_after))

    def _pages(self, prefix, start_after):
        token = None
        while True:
            entries, _prefixes, token = self.list_page(prefix, token=token, start_after=start_after)
            yield entries
            if not token:
                return

    def list_prefixes(self, prefix=""):
        """Common prefixes one level below prefix (delimiter '/'), relative, sorted."""
        found = []
        token = None
        while True:
            _entries, prefixes, token = self.list_page(prefix, token=token, delimiter="/")
            found.extend(prefixes)
            if not token:
                return sorted(found)

    def head(self, key):
        try:
            response, _data = self.server.request("HEAD", self._path(key), operation="HeadObject")
        except _HTTPFailure as exc:
            if exc.status == 404:
                return None
            raise self.error(exc, key)
        except Exception as exc:  # pylint: disable=broad-except
            raise self.error(exc, key)
        return _head_from(key, response)

    def open_read(self, key, attempts=None):
        return ObjectReader(self, key, attempts or self.server.retries)

    def get_bytes(self, key):
        reader = self.open_read(key)
        try:
            chunks = []
            while True:
                chunk = reader.read(READ_CHUNK)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        finally:
            reader.close()

    # -- writing -------------------------------------------------------------------------------

    def _put_headers(self, metadata, content_type=None, extra=None):
        headers = dict(self.sse_headers)
        for name, value in (metadata or {}).items():
            if value is not None:
                headers["x-amz-meta-" + name.lower()] = str(value)
        for name, value in (extra or {}).items():
            if value is not None:
                headers[name.lower()] = value
        if content_type:
            headers["content-type"] = content_type
        return headers

    def put(self, key, data, metadata=None, content_type=None, extra_headers=None, content_md5=None):
        """One PutObject with Content-MD5 (computed here unless given as hex); returns the ETag."""
        headers = self._put_headers(metadata, content_type, extra_headers)
        headers["content-md5"] = _b64(bytes.fromhex(content_md5) if content_md5 else hashlib.md5(data).digest())
        response, _data = self._call("PUT", key, body=data, headers=headers, operation="PutObject")
        return (response.getheader("ETag") or "").strip('"')

    def put_stream(self, key, stream, size, metadata=None, content_type=None, extra_headers=None, content_md5=None):
        """One PutObject whose body is read from `stream` as it is sent (exactly `size` bytes);
        not retried here - a stream cannot be replayed - so callers retry the whole copy."""
        headers = self._put_headers(metadata, content_type, extra_headers)
        headers["content-length"] = str(size)
        if content_md5:
            headers["content-md5"] = _b64(bytes.fromhex(content_md5))
        response, _data = self._call("PUT", key, body=stream, headers=headers, operation="PutObject", retry=False)
        return (response.getheader("ETag") or "").strip('"')

    def open_upload(self, key, metadata=None, content_type=None, extra_headers=None, part_size=DEFAULT_PART_SIZE):
        return Uploader(self, key, metadata, content_type, extra_headers, part_size)

    def create_multipart(self, key, headers):
        _response, data = self._call("POST", key, query=[("uploads", "")], headers=headers,
                                     operation="CreateMultipartUpload")
        return _text(ElementTree.fromstring(data), "UploadId")

    def upload_part(self, key, upload_id, number, data):
        response, _data = self._call("PUT", key, query=[("partNumber", str(number)), ("uploadId", upload_id)],
                                     body=data, headers={"content-md5": _b64(hashlib.md5(data).digest())},
                                     operation="UploadPart")
        return response.getheader("ETag")

    def complete_multipart(self, key, upload_id, parts):
        body = ("<CompleteMultipartUpload>%s</CompleteMultipartUpload>" % "".join(
            "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>" % (number, _xml_escape(etag))
            for number, etag in parts)).encode("utf-8")
        _response, data = self._call("POST", key, query=[("uploadId", upload_id)], body=body,
                                     operation="CompleteMultipartUpload")
        root = ElementTree.fromstring(data)
        if root.tag.endswith("Error"):
            raise self.error(_HTTPFailure(200, _text(root, "Code"), _text(root, "Message"), "CompleteMultipartUpload"),
                             key)
        return (_text(root, "ETag") or "").strip('"')

    def abort_multipart(self, key, upload_id):
        try:
            self.server.request("DELETE", self._path(key), query=[("uploadId", upload_id)], retry=False,
                                operation="AbortMultipartUpload")
        except Exception:  # pylint: disable=broad-except
            # The upload stays invisible either way; servers expire abandoned uploads.
            pass

    def copy_from(self, source, source_key, key, metadata=None, content_type=None, replace_metadata=False):
        """Server-side CopyObject from source (same server) into key; returns the new ETag."""
        headers = dict(self.sse_headers)
        headers["x-amz-copy-source"] = quote("/%s/%s" % (source.bucket, source.full_key(source_key)), safe="/~")
        if replace_metadata:
            headers.update(self._put_headers(metadata, content_type))
            headers["x-amz-metadata-directive"] = "REPLACE"
        _response, data = self._call("PUT", key, headers=headers, operation="CopyObject")
        root = ElementTree.fromstring(data)
        if root.tag.endswith("Error"):
            raise self.error(_HTTPFailure(200, _text(root, "Code"), _text(root, "Message"), "CopyObject"), key)
        return (_text(root, "ETag") or "").strip('"')

    def copy_part_from(self, source, source_key, key, upload_id, number, first, last):
        """UploadPartCopy; returns the part's ETag, or None when the server does not really support it
        (rclone serve s3 answers 200 with an empty result)."""
        headers = {"x-amz-copy-source": quote("/%s/%s" % (source.bucket, source.full_key(source_key)), safe="/~"),
                   "x-amz-copy-source-range": "bytes=%d-%d" % (first, last)}
        _response, data = self._call("PUT", key, query=[("partNumber", str(number)), ("uploadId", upload_id)],
                                     headers=headers, operation="UploadPartCopy")
        if not data:
            return None
        return _text(ElementTree.fromstring(data), "ETag")

    def delete(self, keys):
        """DeleteObjects in batches of 1000; returns [(key, reason)] for those that failed."""
        failed = []
        keys = list(keys)
        for start in range(0, len(keys), 1000):
            batch = keys[start:start + 1000]
            body = ("<Delete><Quiet>true</Quiet>%s</Delete>" % "".join(
                "<Object><Key>%s</Key></Object>" % _xml_escape(self.full_key(k)) for k in batch)).encode("utf-8")
            try:
                _response, data = self.server.request(
                    "POST", self._path(), query=[("delete", "")], body=body,
                    headers={"content-md5": _b64(hashlib.md5(body).digest()), "content-type": "application/xml"},
                    operation="DeleteObjects")
            except Exception as exc:  # pylint: disable=broad-except
                message = self.error(exc).message
                failed.extend((k, message) for k in batch)
                continue
            if data:
                root = ElementTree.fromstring(data)
                base = len(self.prefix) + 1 if self.prefix else 0
                for error in _children(root, "Error"):
                    failed.append(((_text(error, "Key") or "")[base:], _text(error, "Message") or _text(error, "Code")))
        return failed

    def create_bucket(self):
        body = None
        if self.server.region and self.server.region != "us-east-1":
            body = ("<CreateBucketConfiguration><LocationConstraint>%s</LocationConstraint>"
                    "</CreateBucketConfiguration>" % self.server.region).encode("utf-8")
        try:
            self.server.request("PUT", self._path(), body=body, operation="CreateBucket")
        except _HTTPFailure as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise self.error(exc)
        except Exception as exc:  # pylint: disable=broad-except
            raise self.error(exc)

    def delete_bucket(self):
        self._call("DELETE", None, what="", operation="DeleteBucket")

    def check_bucket(self):
        """Fail with one clear message when the bucket is missing, the keys are refused, the
        certificate is not trusted or the endpoint is silent."""
        try:
            self.server.request("HEAD", self._path(), operation="HeadBucket", retry=True)
        except _HTTPFailure as exc:
            if exc.status == 404:
                raise DRError("location %s: bucket %s does not exist at %s" % (
                    self.name, self.bucket, self.location.endpoint_label))
            raise self.error(exc)
        except Exception as exc:  # pylint: disable=broad-except
            raise self.error(exc)


def _xml_escape(text):
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&apos;"))


def parse_list_page(data, strip):
    """Parse a ListObjectsV2 page (encoding-type url): ([Entry], [prefix], next token)."""
    root = ElementTree.fromstring(data)
    encoded = (_text(root, "EncodingType") or "").lower() == "url"
    entries = []
    for item in _children(root, "Contents"):
        key = _text(item, "Key") or ""
        if encoded:
            key = unquote_plus(key)
        entries.append(Entry(key[strip:], int(_text(item, "Size") or 0), (_text(item, "ETag") or "").strip('"')))
    prefixes = []
    for item in _children(root, "CommonPrefixes"):
        value = _text(item, "Prefix") or ""
        if encoded:
            value = unquote_plus(value)
        prefixes.append(value[strip:])
    truncated = (_text(root, "IsTruncated") or "false").lower() == "true"
    token = _text(root, "NextContinuationToken") if truncated else None
    if truncated and not token:
        # Servers without continuation tokens: go on after the last key of this page.
        raise DRError("the server truncated a listing without a continuation token")
    return entries, prefixes, token


def _head_from(key, response):
    metadata = {}
    for name, value in response.getheaders():
        lowered = name.lower()
        if lowered.startswith("x-amz-meta-"):
            metadata[lowered[len("x-amz-meta-"):]] = value
    return Head(key, int(response.getheader("Content-Length") or 0), (response.getheader("ETag") or "").strip('"'),
                metadata, response.getheader("Content-Type"))


def _as_botocore(exc, url):
    """Our transport's exception as the botocore one aws.s3_error knows how to word."""
    if not aws.HAS_BOTO3:
        return exc
    if isinstance(exc, _HTTPFailure):
        return botocore.exceptions.ClientError(
            {"Error": {"Code": exc.code, "Message": exc.message}, "ResponseMetadata": {"HTTPStatusCode": exc.status}},
            exc.operation)
    if _certificate_problem(exc):
        return botocore.exceptions.SSLError(endpoint_url=url, error=exc)
    if isinstance(exc, (ConnectionRefusedError, socket.gaierror)):
        return botocore.exceptions.EndpointConnectionError(endpoint_url=url, error=exc)
    if isinstance(exc, socket.timeout):
        return botocore.exceptions.ReadTimeoutError(endpoint_url=url, error=exc)
    if isinstance(exc, (ConnectionError, http.client.HTTPException, OSError)):
        return botocore.exceptions.ConnectionClosedError(endpoint_url=url)
    return exc


def _prefetched(pages, depth=2):
    """Yield the entries of `pages` while a thread fetches the next ones (at most `depth` ahead)."""
    import queue  # pylint: disable=import-outside-toplevel
    buffer = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def fetch():
        try:
            for page in pages:
                while not stop.is_set():
                    try:
                        buffer.put(page, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(done)
        except BaseException as exc:  # pylint: disable=broad-except
            buffer.put(exc)

    worker = threading.Thread(target=fetch, name="s3-list")
    worker.daemon = True
    worker.start()
    try:
        while True:
            page = buffer.get()
            if page is done:
                return
            if isinstance(page, BaseException):
                raise page
            yield from page
    finally:
        stop.set()


# ---------------------------------------------------------------------------------------------
# Reading and writing objects as streams

class ObjectReader(object):
    """A GET that resumes at the byte it reached when the connection drops (Range request)."""

    def __init__(self, endpoint, key, attempts):
        self.endpoint, self.key, self.attempts = endpoint, key, attempts
        self.offset = 0
        self.response = None
        self._open()
        head = _head_from(key, self.response)
        self.size = head.size
        self.etag = head.etag
        self.metadata = head.metadata
        self.headers = dict((name.lower(), value) for name, value in self.response.getheaders()
                            if name.lower() in PRESERVED_HEADERS)

    def _open(self):
        headers = {"range": "bytes=%d-" % self.offset} if self.offset else {}
        try:
            self.response, _data = self.endpoint.server.request(
                "GET", self.endpoint._path(self.key), headers=headers, stream=True,  # pylint: disable=protected-access
                operation="GetObject")
        except _HTTPFailure as exc:
            if exc.status == 404:
                raise SourceVanished("location %s: %s was deleted while the run went on" % (
                    self.endpoint.name, self.key))
            raise self.endpoint.error(exc, self.key)
        except Exception as exc:  # pylint: disable=broad-except
            raise self.endpoint.error(exc, self.key)

    def read(self, amount=READ_CHUNK):
        failures = 0
        while True:
            try:
                data = self.response.read(amount)
                if not data and self.offset < self.size:
                    raise http.client.IncompleteRead(b"", self.size - self.offset)
                self.offset += len(data)
                return data
            except DRError:
                raise
            except Exception as exc:  # pylint: disable=broad-except
                failures += 1
                self.response.close()
                if failures >= self.attempts or not _retryable_exception(exc):
                    raise self.endpoint.error(exc, self.key)
                backoff(failures)
                self._open()

    def close(self):
        if self.response is not None:
            self.response.close()
            self.response = None


class Uploader(object):
    """Writes one object: one PutObject when it fits in a part, else a multipart upload with
    parts sent in ascending order as they fill. One part in memory at a time."""

    def __init__(self, endpoint, key, metadata, content_type, extra_headers, part_size):
        self.endpoint, self.key = endpoint, key
        self.metadata = dict(metadata or {})
        self.content_type = content_type
        self.extra_headers = extra_headers
        self.part_size = max(int(part_size), MIN_PART_SIZE)
        self.buffer = bytearray()
        self.size = 0
        self.upload_id = None
        self.size_hint = None
        self.parts = []
        self.closed = False

    def write(self, data):
        self.size += len(data)
        if len(self.buffer) + len(data) <= self.part_size:
            self.buffer += data
            return
        view = memoryview(data)
        while len(view):
            room = self.part_size - len(self.buffer)
            if room == 0:
                # A full part goes only when more data shows it is not the last one.
                self._send_part(self.buffer)
                self.buffer = bytearray()
                room = self.part_size
            take = min(room, len(view))
            self.buffer += view[:take]
            view = view[take:]

    def _send_part(self, part):
        part = memoryview(part)
        if self.upload_id is None:
            headers = self.endpoint._put_headers(self.metadata, self.content_type,  # pylint: disable=protected-access
                                                 self.extra_headers)
            self.upload_id = self.endpoint.create_multipart(self.key, headers)
        number = len(self.parts) + 1
        self.parts.append((number, self.endpoint.upload_part(self.key, self.upload_id, number, part)))

    def close(self, late_metadata=None, content_md5=None):
        """Finish; late_metadata (known only now, such as a sha256) is written when the object
        goes up in one PutObject, with content_md5 (hex) when the caller knows it. Returns
        (etag, size, multipart)."""
        try:
            if self.upload_id is None:
                metadata = dict(self.metadata)
                metadata.update(late_metadata or {})
                etag = self.endpoint.put(self.key, self.buffer, metadata, self.content_type, self.extra_headers,
                                         content_md5=content_md5)
                self.closed = True
                return etag, self.size, False
            if self.buffer:
                self._send_part(self.buffer)
                self.buffer = bytearray()
            etag = self.endpoint.complete_multipart(self.key, self.upload_id, self.parts)
            self.closed = True
            return etag, self.size, True
        except Exception:
            self.abort()
            raise

    def abort(self):
        if self.closed:
            return
        self.closed = True
        self.buffer = bytearray()
        if self.upload_id is not None:
            self.endpoint.abort_multipart(self.key, self.upload_id)
