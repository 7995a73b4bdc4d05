# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Object mirroring between S3-compatible stores: list both sides, plan, copy in parallel.

The plan's file backup ("sync MinIO to S3 hourly") and its restore ("mc mirror s3/... minio/...")
are one operation run in two directions; this module is that operation, and
filehistory.py builds hourly history and daily snapshots on it. Design points, and why:

- Listings are streamed and merge-joined, never held: S3 ListObjectsV2 returns keys in UTF-8
  binary order (AWS, MinIO, and `rclone serve s3`, checked in the lab), which is Python's str
  order, so two sorted streams give the plan in one pass with memory independent of the
  object count. Every listing is checked as it streams; a server that does not sort is
  detected before any decision rests on the out-of-order key, and the run starts over on
  listings sorted on disk (SortedSpool), so such a server costs time, never correctness.
- Change detection is size plus content hash, never size alone (the classic `mc mirror`
  pitfall: a same-size edit is missed). Where both ETags are plain MD5 (32 hex, no "-N")
  they are compared directly; otherwise the objects' metadata is read (HEAD) and compared:
  `sha256`, `md5` and `mirror-source-etag`, which this module writes on every upload.
- Deletion only when asked, only after everything else succeeded, and never more than
  max_delete_percent of the destination unless forced: an empty source listing (a MinIO
  outage, a wrong bucket) must not empty the backup.
- The data path speaks S3 itself (SigV4 over http.client, one keep-alive pool per server):
  boto3 spends about 1.4 ms of CPU per request in signing, hooks and parsing, which on a
  small machine made a copy of 10,000 small objects twice as slow as rclone; this client
  spends about 0.3 ms. Errors are mapped onto botocore's exception types so
  storage.s3_error words every failure as the rest of the collection does. boto3 is still
  used to build and validate the location (storage.location_from_params) and to find
  credentials when none are given (environment, profile, instance role).
- Streams, never whole objects: objects up to part_size are read into one buffer (so the
  upload carries Content-MD5 and a sha256 in its metadata); larger ones are copied part by
  part, in ascending order (rclone serve s3 and some MinIO setups want that), with one part
  in memory per transfer. Server-side copy (CopyObject, UploadPartCopy) when source and
  destination share an endpoint and credentials.
- Failures: every request is retried with backoff; a streamed copy is retried as a whole;
  an endpoint that stays silent aborts the run at once (with the endpoint and key named)
  instead of failing each remaining object slowly.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import collections
import fnmatch
import hashlib
import heapq
import hmac
import http.client
import json
import os
import random
import re
import shutil
import socket
import ssl
import tempfile
import threading
import time
from xml.etree import ElementTree
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, unquote_plus, urlsplit

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, first_line, human_bytes
# boto3 is imported only for its credential chain (see storage.HAS_BOTO3 on why not here).
from ansible_collections.auditron.dr.plugins.module_utils.storage import (  # pylint: disable=unused-import
    BOTO3_IMPORT_ERROR, HAS_BOTO3, S3Location, s3_error)  # BOTO3_IMPORT_ERROR: for the modules

if HAS_BOTO3:
    import botocore.exceptions

Entry = collections.namedtuple("Entry", ["key", "size", "etag"])
Head = collections.namedtuple("Head", ["key", "size", "etag", "metadata", "content_type"])

MIB = 1024 * 1024
DEFAULT_PART_SIZE = 8 * MIB
DEFAULT_MULTIPART_THRESHOLD = 256 * MIB
MIN_PART_SIZE = 5 * MIB
MAX_PARTS = 10000
SEND_BLOCK = 256 * 1024
COPY_OBJECT_LIMIT = 5 * 1024 * MIB          # CopyObject's limit on AWS; larger ones go by parts
DEFAULT_THREADS = 16
DEFAULT_RETRIES = 5
READ_CHUNK = 1 * MIB
LIST_PAGE = 1000
# Kept-alive connections idle longer than this are not reused: servers (AWS: about 20 s) close them.
IDLE_SECONDS = 15

# Metadata this module writes (x-amz-meta-<name>); compared, never copied from a source as is.
META_SHA256 = "sha256"
META_MD5 = "md5"
META_SOURCE_ETAG = "mirror-source-etag"
META_ENCRYPTION = "encryption"
META_PLAIN_SIZE = "plaintext-size"
META_PLAIN_TYPE = "plaintext-content-type"
OWN_METADATA = frozenset([META_SHA256, META_MD5, META_SOURCE_ETAG, META_ENCRYPTION, META_PLAIN_SIZE,
                          META_PLAIN_TYPE])
ENCRYPTION_LABEL = "auditron-dr-aes-256-gcm-v1"
ENCRYPTION_PURPOSE = "auditron-dr-files"
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


class IntegrityError(DRError):
    """Bytes read or written do not match their hash: retried, then reported."""


class SourceVanished(DRError):
    """The source object was deleted between listing and copy: not a failure, the next run sees it."""


class ListingOrderError(Exception):
    """A listing was not in UTF-8 binary order; the run starts over on listings sorted on disk."""

    def __init__(self, what, previous, key):
        super(ListingOrderError, self).__init__("%s listed %r after %r: not in UTF-8 binary order" % (
            what, key, previous))
        self.what = what


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
        elif HAS_BOTO3:
            import boto3.session  # pylint: disable=import-outside-toplevel
            self._chain = boto3.session.Session().get_credentials()
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
                _backoff(attempt)
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
                    _backoff(attempt)
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
                _backoff(attempt)
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


def _backoff(attempt):
    # Exponential with jitter, capped: 0.25, 0.5, 1, 2, 4 s, ... at most 8 s.
    time.sleep(min(8.0, 0.25 * (2 ** (attempt - 1))) * random.uniform(0.5, 1.0))


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

class Place(object):
    """A location as messages name it: the attributes storage.s3_error and
    S3Location.extra_put_args read, checked as storage.location_from_params checks them.

    Not an S3Location, because that builds a boto3 client (0.2 s each) which this engine,
    speaking S3 itself, would never use.
    """

    def __init__(self, name, bucket, endpoint_url=None, prefix="", region="us-east-1", ca_bundle=None, sse=None,
                 sse_kms_key_id=None):
        self.name = name
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.region = region or "us-east-1"
        self.prefix = (prefix or "").strip("/")
        self.ca_bundle = ca_bundle
        self.sse = sse if sse and sse != "none" else None
        self.sse_kms_key_id = sse_kms_key_id
        self.endpoint_label = "%s/%s" % ((endpoint_url or "https://s3.%s.amazonaws.com" % self.region).rstrip("/"),
                                         bucket)

    @classmethod
    def from_params(cls, params, what):
        params = dict(params or {})
        name = params.get("name") or what
        label = "%s (%s)" % (what, name) if params.get("name") else what
        kind = params.get("type") or "s3"
        if kind != "s3":
            raise DRError("%s: only S3 locations can be mirrored, got type %s" % (label, kind))
        if not params.get("bucket"):
            raise DRError("%s: bucket is required when type is s3" % label)
        if not HAS_BOTO3:
            raise DRError("location %s: the boto3 Python library is required for S3 locations" % name)
        return cls(name, params["bucket"], endpoint_url=params.get("endpoint_url") or params.get("endpoint"),
                   prefix=params.get("prefix") or "", region=params.get("region") or "us-east-1",
                   ca_bundle=params.get("ca_bundle") or params.get("ca_file"), sse=params.get("sse"),
                   sse_kms_key_id=params.get("sse_kms_key_id"))


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
        """Build from one location dict (base.location_suboptions shape). S3 only."""
        location = Place.from_params(params, what)
        endpoint_url = location.endpoint_url or "https://s3.%s.amazonaws.com" % location.region
        credentials = _Credentials(params.get("access_key"), params.get("secret_key"), params.get("session_token"),
                                   "location %s" % location.name)
        validate = params.get("validate_certs", True) is not False
        server = _Server(endpoint_url, location.region, credentials, location.ca_bundle, validate, timeout, retries)
        sse = {}
        # storage.S3Location's own rule for the server-side encryption arguments.
        for name, value in S3Location.extra_put_args(location).items():
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
        """The exception as one DRError naming the location (and key), worded as storage.s3_error words it."""
        if isinstance(exc, DRError):
            return exc
        converted = _as_botocore(exc, self.server.url)
        error = s3_error(self.location, converted, key)
        if HAS_BOTO3 and isinstance(converted, (botocore.exceptions.EndpointConnectionError,
                                                botocore.exceptions.ConnectionClosedError,
                                                botocore.exceptions.ReadTimeoutError,
                                                botocore.exceptions.ConnectTimeoutError)):
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
    """Our transport's exception as the botocore one storage.s3_error knows how to word."""
    if not HAS_BOTO3:
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
                _backoff(failures)
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


# ---------------------------------------------------------------------------------------------
# Sorted streams: checking, merging, and sorting on disk when a server does not sort

def checked_order(entries, what):
    """Pass entries through, raising ListingOrderError when a key is not after the previous one."""
    previous = None
    for entry in entries:
        if previous is not None and entry.key <= previous:
            raise ListingOrderError(what, previous, entry.key)
        previous = entry.key
        yield entry


def merge_sorted(*streams):
    """Merge-join sorted streams of items with a .key (or (key, ...) tuples): yields
    (key, [item of stream 0 or None, item of stream 1 or None, ...]). Memory: one item per stream."""
    heap = []
    iterators = [iter(stream) for stream in streams]
    for index, iterator in enumerate(iterators):
        item = next(iterator, None)
        if item is not None:
            heap.append((_key_of(item), index, item))
    heapq.heapify(heap)
    while heap:
        key = heap[0][0]
        row = [None] * len(iterators)
        while heap and heap[0][0] == key:
            _key, index, item = heapq.heappop(heap)
            row[index] = item
            following = next(iterators[index], None)
            if following is not None:
                heapq.heappush(heap, (_key_of(following), index, following))
        yield key, row


def _key_of(item):
    return item.key if hasattr(item, "key") else item[0]


class SortedSpool(object):
    """Collects (key, value) pairs in any order and gives them back sorted by key (then by the
    order they were added), spilling sorted runs of `run_size` items to temporary files: an
    external merge sort with memory bounded by one run. Values must be JSON-able."""

    def __init__(self, run_size=50000, directory=None):
        self.run_size = run_size
        self.directory = tempfile.mkdtemp(prefix="auditron-mirror-", dir=directory)
        self.buffer = []
        self.runs = []
        self.count = 0

    def add(self, key, value):
        self.buffer.append((key, self.count, value))
        self.count += 1
        if len(self.buffer) >= self.run_size:
            self._spill()

    def _spill(self):
        if not self.buffer:
            return
        self.buffer.sort(key=lambda item: (item[0], item[1]))
        path = os.path.join(self.directory, "run-%05d.jsonl" % len(self.runs))
        with open(path, "w", encoding="utf-8") as handle:
            for item in self.buffer:
                handle.write(json.dumps(item, separators=(",", ":")))
                handle.write("\n")
        self.runs.append(path)
        self.buffer = []

    def __iter__(self):
        """(key, value), sorted; every run is read as a stream."""
        self._spill()
        handles = [open(path, "r", encoding="utf-8") for path in self.runs]
        try:
            streams = [(tuple(json.loads(line)) for line in handle) for handle in handles]
            for key, _seq, value in heapq.merge(*streams, key=lambda item: (item[0], item[1])):
                yield key, value
        finally:
            for handle in handles:
                handle.close()

    def latest(self):
        """(key, value) sorted by key, keeping only the last value added for each key."""
        pending = None
        for key, value in self:
            if pending is not None and pending[0] != key:
                yield pending
            pending = (key, value)
        if pending is not None:
            yield pending

    def close(self):
        shutil.rmtree(self.directory, ignore_errors=True)


def sorted_listing(entries):
    """A listing sorted on disk (for servers that do not sort); yields Entry in key order."""
    spool = SortedSpool()
    try:
        for entry in entries:
            spool.add(entry.key, [entry.size, entry.etag])
        for key, (size, etag) in spool.latest():
            yield Entry(key, size, etag)
    finally:
        spool.close()


# ---------------------------------------------------------------------------------------------
# Planning: what to do with one key

COPY, REPLACE, SKIP, DELETE, CHECK, EXTRA = "copy", "replace", "skip", "delete", "check", "extra"


def compare_listed(source, destination, crypt=None):
    """Decide from listings alone: SKIP, REPLACE, or CHECK (the metadata must be read).

    crypt: None, "encrypt" (destination holds ciphertext) or "decrypt" (source does): then
    listed sizes and ETags are of ciphertext and only the metadata can tell.
    """
    if crypt:
        return CHECK
    if source.size != destination.size:
        return REPLACE
    if is_plain_md5(source.etag) and is_plain_md5(destination.etag):
        return SKIP if source.etag == destination.etag else REPLACE
    if source.etag and source.etag == destination.etag:
        # Equal multipart ETags: same parts, same content (and the same upload layout).
        return SKIP
    return CHECK


def content_identity(head, listed_etag=None):
    """What a HEAD tells about content: {"size", "md5", "sha256", "source_etag"} (plaintext for ciphertext)."""
    metadata = head.metadata if head is not None else {}
    encrypted = metadata.get(META_ENCRYPTION) == ENCRYPTION_LABEL
    etag = head.etag if head is not None else listed_etag
    identity = {
        "size": int(metadata[META_PLAIN_SIZE]) if encrypted and META_PLAIN_SIZE in metadata else head.size,
        "md5": metadata.get(META_MD5) or (etag if is_plain_md5(etag) and not encrypted else None),
        "sha256": metadata.get(META_SHA256),
        "source_etag": metadata.get(META_SOURCE_ETAG),
        "etag": etag,
        "encrypted": encrypted,
    }
    return identity


def same_content(source, destination):
    """Given content_identity() of both sides: True, False, or None (cannot tell: copy)."""
    if source["size"] != destination["size"]:
        return False
    if source["sha256"] and destination["sha256"]:
        return source["sha256"] == destination["sha256"]
    if source["md5"] and destination["md5"]:
        return source["md5"] == destination["md5"]
    if destination["source_etag"] and source["etag"]:
        return destination["source_etag"] == source["etag"]
    return None


def delete_guard(deletions, destination_count, max_delete_percent, force):
    """None when the deletions may go ahead, else the reason they may not."""
    if not deletions or force:
        return None
    if destination_count <= 0:
        return None
    percent = 100.0 * deletions / destination_count
    if percent > max_delete_percent:
        return ("refusing to delete %d of %d destination objects (%.1f%% > max_delete_percent %g): "
                "check the source is complete, or set force: true if this is intended"
                % (deletions, destination_count, percent, max_delete_percent))
    return None


# ---------------------------------------------------------------------------------------------
# Running many transfers: bounded queue, worker threads, progress, abort on a dead endpoint

class Stats(object):
    """Counters by outcome, thread-safe."""

    FIELDS = ("copied", "replaced", "skipped", "deleted", "failed", "vanished", "checked")

    def __init__(self):
        self.lock = threading.Lock()
        self.objects = dict((name, 0) for name in self.FIELDS)
        self.bytes = dict((name, 0) for name in self.FIELDS)
        self.server_side = 0
        self.transferred = 0     # bytes moved through this process

    def add(self, outcome, size=0, transferred=0, server_side=False):
        with self.lock:
            self.objects[outcome] += 1
            self.bytes[outcome] += size or 0
            self.transferred += transferred or 0
            if server_side:
                self.server_side += 1

    def as_dict(self):
        with self.lock:
            result = {}
            for name in self.FIELDS:
                result[name] = self.objects[name]
                result["bytes_" + name] = self.bytes[name]
            result["server_side_copies"] = self.server_side
            result["bytes_transferred"] = self.transferred
            return result


class Executor(object):
    """Runs jobs on `threads` worker threads with at most 4 x threads queued, so a planner
    that produces faster than the network consumes never holds the whole plan in memory.

    A job returns an outcome; failures are collected (the first 50 kept with their keys);
    an EndpointDown stops the run: queued jobs are dropped and submit() returns False.
    """

    def __init__(self, threads, progress=None, progress_interval=30, describe_progress=None):
        self.threads = max(1, int(threads))
        self.pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="mirror")
        self.slots = threading.BoundedSemaphore(self.threads * 4)
        self.lock = threading.Lock()
        self.failures = []
        self.failure_count = 0
        self.abort = None
        self.progress = progress
        self.progress_interval = progress_interval
        self.describe_progress = describe_progress
        self.started = time.monotonic()
        self.last_progress = self.started
        self.pending = 0

    def tick(self):
        if self.progress is None or self.describe_progress is None:
            return
        now = time.monotonic()
        if now - self.last_progress >= self.progress_interval:
            self.last_progress = now
            self.progress(self.describe_progress(now - self.started))

    def submit(self, func, key, *args):
        while not self.slots.acquire(timeout=1.0):
            self.tick()
        if self.abort is not None:
            self.slots.release()
            return False
        with self.lock:
            self.pending += 1
        self.pool.submit(self._run, func, key, args)
        self.tick()
        return True

    def _run(self, func, key, args):
        try:
            if self.abort is None:
                func(key, *args)
        except EndpointDown as exc:
            self._failed(key, exc.message)
            with self.lock:
                if self.abort is None:
                    self.abort = exc
        except DRError as exc:
            self._failed(key, exc.message)
        except Exception as exc:  # pylint: disable=broad-except
            self._failed(key, "unexpected error: %s" % first_line(exc))
        finally:
            with self.lock:
                self.pending -= 1
            self.slots.release()

    def _failed(self, key, message):
        with self.lock:
            self.failure_count += 1
            if len(self.failures) < 50:
                self.failures.append({"key": key, "error": message})

    def drain(self):
        """Wait for every submitted job, with progress lines meanwhile."""
        while True:
            with self.lock:
                if self.pending == 0:
                    return
            time.sleep(0.05)
            self.tick()

    def shutdown(self):
        self.pool.shutdown(wait=True)


# ---------------------------------------------------------------------------------------------
# Copying one object

class CopyOptions(object):
    """How objects are copied; shared by the plain mirror and filehistory."""

    def __init__(self, part_size=DEFAULT_PART_SIZE, attempts=DEFAULT_RETRIES, provider=None, crypt=None,
                 encryption_params=None, server_side="auto", want_sha256=False,
                 multipart_threshold=DEFAULT_MULTIPART_THRESHOLD):
        self.part_size = max(int(part_size), MIN_PART_SIZE)
        # Objects above part_size and up to this go as one streamed PutObject (no buffer, and a
        # plain MD5 ETag at the destination); larger ones as multipart uploads.
        self.multipart_threshold = max(int(multipart_threshold), self.part_size)
        self.attempts = max(1, int(attempts))
        self.provider = provider                    # crypto key provider for crypt == "encrypt"
        self.crypt = crypt                          # None, "encrypt" or "decrypt"
        self.encryption_params = encryption_params  # for "decrypt": resolves the key from each object's header
        self.server_side = server_side              # auto, always, never
        self.want_sha256 = want_sha256              # compute sha256 of large objects too (filehistory's index)


CopyResult = collections.namedtuple("CopyResult", [
    "size", "etag", "md5", "sha256", "source_etag", "source_size", "stored_size", "encrypted", "server_side",
    "transferred"])


def encryption_context(key):
    return {"purpose": ENCRYPTION_PURPOSE, "object": key}


def copy_object(source, source_key, destination, key, options, expected=None, context_key=None):
    """Copy one object, retrying the whole copy on transient failures. Returns CopyResult.

    expected: the source Entry as listed (its size picks the strategy); context_key: the key
    bound into the encryption context (defaults to key; filehistory passes the mirrored key).
    """
    context_key = context_key if context_key is not None else key
    attempt = 0
    while True:
        attempt += 1
        try:
            if options.crypt is None and options.server_side != "never" and source.same_server(destination):
                result = _copy_server_side(source, source_key, destination, key, options, expected)
                if result is not None:
                    return result
            return _copy_streamed(source, source_key, destination, key, options, context_key)
        except (SourceVanished, EndpointDown):
            raise
        except IntegrityError:
            if attempt >= options.attempts:
                raise
        except DRError as exc:
            if attempt >= options.attempts or not _worth_retrying(exc):
                raise
        _backoff(attempt)


def _worth_retrying(exc):
    text = exc.message
    return not any(marker in text for marker in ("access denied", "does not exist", "not trusted", "not found",
                                                 "was encrypted", "wrong key", "authentication tag"))


def _copy_server_side(source, source_key, destination, key, options, expected):
    size = expected.size if expected is not None else None
    if size is None:
        head = source.head(source_key)
        if head is None:
            raise SourceVanished("location %s: %s was deleted while the run went on" % (source.name, source_key))
        size = head.size
    if size <= COPY_OBJECT_LIMIT:
        try:
            etag = destination.copy_from(source, source_key, key)
        except DRError as exc:
            if " not found" in exc.message:
                raise SourceVanished(exc.message)
            raise
        md5 = etag if is_plain_md5(etag) else None
        return CopyResult(size, etag, md5, None, expected.etag if expected else None, size, size, False, True, 0)
    # Larger than one CopyObject: copy by parts, in order; fall back to streaming when the
    # server answers UploadPartCopy without a part ETag.
    headers = destination._put_headers({META_SOURCE_ETAG: expected.etag if expected else None})  # pylint: disable=protected-access
    upload_id = destination.create_multipart(key, headers)
    parts = []
    try:
        part_size = max(options.part_size, 64 * MIB)
        for number, first in enumerate(range(0, size, part_size), 1):
            etag = destination.copy_part_from(source, source_key, key, upload_id, number, first,
                                              min(first + part_size, size) - 1)
            if not etag:
                destination.abort_multipart(key, upload_id)
                return None
            parts.append((number, etag))
        etag = destination.complete_multipart(key, upload_id, parts)
    except Exception:
        destination.abort_multipart(key, upload_id)
        raise
    return CopyResult(size, etag, None, None, expected.etag if expected else None, size, size, False, True, 0)


class _Hashing(object):
    """A stream read by http.client while it sends: every byte goes through MD5 (and sha256)."""

    def __init__(self, stream, md5, sha256):
        self.stream, self.md5, self.sha256 = stream, md5, sha256
        self.count = 0

    def read(self, amount=-1):
        data = self.stream.read(amount if amount and amount > 0 else READ_CHUNK)
        if data:
            if self.md5 is not None:
                self.md5.update(data)
            if self.sha256 is not None:
                self.sha256.update(data)
            self.count += len(data)
        return data


def _copy_one_stream(reader, destination, key, options, metadata, content_type, headers, expect_md5, expect_sha256,
                     raw_ciphertext, source, source_key):
    """GET body piped into one PutObject: constant memory. With the source's MD5 known, it goes
    as Content-MD5, so the destination itself refuses bytes that changed on the way."""
    # With the source's MD5 known, the destination checks every byte against it (Content-MD5):
    # no second MD5 pass here.
    md5 = hashlib.md5() if not expect_md5 else None
    sha256 = hashlib.sha256() if options.want_sha256 and not raw_ciphertext else None
    body = _Hashing(reader, md5, sha256)
    etag = destination.put_stream(key, body, reader.size, metadata, content_type, headers, content_md5=expect_md5)
    md5_hex = md5.hexdigest() if md5 is not None else expect_md5
    sha256_hex = sha256.hexdigest() if sha256 is not None else None
    if body.count != reader.size:
        raise IntegrityError("location %s: read %d bytes of %s, expected %d" % (
            source.name, body.count, source_key, reader.size))
    if expect_md5 and expect_md5 != md5_hex:
        raise IntegrityError("location %s: %s changed or was damaged while being read (MD5 %s, expected %s)" % (
            source.name, source_key, md5_hex, expect_md5))
    if expect_sha256 and sha256_hex and expect_sha256 != sha256_hex:
        raise IntegrityError("location %s: %s does not match its recorded sha256" % (source.name, source_key))
    if is_plain_md5(etag) and etag != md5_hex:
        raise IntegrityError("location %s: %s arrived damaged (ETag %s, MD5 of what was sent %s)" % (
            destination.name, key, etag, md5_hex))
    return CopyResult(reader.size, etag, None if raw_ciphertext else md5_hex, None if raw_ciphertext else sha256_hex,
                      reader.etag, reader.size, reader.size, raw_ciphertext, False, reader.size)


def _copy_streamed(source, source_key, destination, key, options, context_key):
    """GET -> (decrypt) -> hash -> (encrypt) -> PUT or multipart, one part in memory.

    Three cases: plain bytes (optionally encrypted on the way), our ciphertext decrypted on
    the way, or our ciphertext copied as it is (a replica of an encrypted backup keeps the
    source's metadata, which describes the plaintext).
    """
    from ansible_collections.auditron.dr.plugins.module_utils import crypto  # pylint: disable=import-outside-toplevel
    reader = source.open_read(source_key, attempts=options.attempts)
    uploader = None
    try:
        source_meta = reader.metadata
        source_encrypted = source_meta.get(META_ENCRYPTION) == ENCRYPTION_LABEL
        decrypting = source_encrypted and options.crypt == "decrypt"
        encrypting = options.crypt == "encrypt" and not source_encrypted
        raw_ciphertext = source_encrypted and not decrypting
        headers = dict(reader.headers)
        content_type = headers.pop("content-type", None)
        metadata = dict((name, value) for name, value in source_meta.items() if name not in OWN_METADATA)
        if raw_ciphertext:
            metadata.update((name, value) for name, value in source_meta.items() if name in OWN_METADATA)
            expect_md5, expect_sha256 = (reader.etag if is_plain_md5(reader.etag) else None), None
            stream_size, stream = reader.size, reader
        elif decrypting:
            expect_md5, expect_sha256 = source_meta.get(META_MD5), source_meta.get(META_SHA256)
            stream_size = int(source_meta.get(META_PLAIN_SIZE, -1))
            content_type = source_meta.get(META_PLAIN_TYPE) or content_type
            stream = crypto.DecryptingReader(reader, options.encryption_params or {},
                                             context=encryption_context(context_key),
                                             what="%s at %s" % (source_key, source.describe()))
        else:
            expect_md5 = reader.etag if is_plain_md5(reader.etag) else source_meta.get(META_MD5)
            expect_sha256 = source_meta.get(META_SHA256)
            stream_size, stream = reader.size, reader
        metadata[META_SOURCE_ETAG] = reader.etag
        if not raw_ciphertext:
            # Known before the upload starts, so even a multipart upload carries them.
            if expect_md5:
                metadata[META_MD5] = expect_md5
            if expect_sha256:
                metadata[META_SHA256] = expect_sha256
        if encrypting:
            metadata[META_ENCRYPTION] = ENCRYPTION_LABEL
            metadata[META_PLAIN_SIZE] = str(stream_size)
            if content_type:
                metadata[META_PLAIN_TYPE] = content_type
            content_type = "application/octet-stream"
        small = 0 <= stream_size <= options.part_size
        if not small and not encrypting and not decrypting and stream_size <= options.multipart_threshold:
            return _copy_one_stream(reader, destination, key, options, metadata, content_type, headers, expect_md5,
                                    expect_sha256, raw_ciphertext, source, source_key)
        # Multipart: parts of part_size, or larger where 10,000 parts would not hold the object.
        part_size = options.part_size
        if stream_size > part_size * MAX_PARTS:
            part_size = -(-stream_size // MAX_PARTS)
        uploader = destination.open_upload(key, metadata, content_type, headers, part_size)
        sink = uploader
        if encrypting:
            sink = crypto.EncryptingWriter(uploader, options.provider, context=encryption_context(context_key))
        # One PutObject of the bytes as read: the source's MD5, when known, goes as Content-MD5
        # and the destination checks every byte against it - no MD5 pass here.
        trusted_md5 = expect_md5 if (small and not encrypting and expect_md5) else None
        md5 = hashlib.md5() if trusted_md5 is None else None
        sha256 = hashlib.sha256() if (small or options.want_sha256 or encrypting) and not raw_ciphertext else None
        copied = 0
        while True:
            chunk = stream.read(max(stream_size, 1) if small else READ_CHUNK)
            if not chunk:
                break
            if md5 is not None:
                md5.update(chunk)
            if sha256 is not None:
                sha256.update(chunk)
            sink.write(chunk)
            copied += len(chunk)
        if encrypting:
            sink.close()
        md5_hex = md5.hexdigest() if md5 is not None else trusted_md5
        sha256_hex = sha256.hexdigest() if sha256 is not None else None
        if stream_size >= 0 and copied != stream_size:
            raise IntegrityError("location %s: read %d bytes of %s, expected %d" % (
                source.name, copied, source_key, stream_size))
        if expect_md5 and expect_md5 != md5_hex:
            raise IntegrityError("location %s: %s changed or was damaged while being read (MD5 %s, expected %s)" % (
                source.name, source_key, md5_hex, expect_md5))
        if expect_sha256 and sha256_hex and expect_sha256 != sha256_hex:
            raise IntegrityError("location %s: %s does not match its recorded sha256" % (source.name, source_key))
        late = {}
        if not raw_ciphertext:
            late[META_MD5] = md5_hex
            if sha256_hex:
                late[META_SHA256] = sha256_hex
        etag, stored_size, _multipart = uploader.close(late_metadata=late, content_md5=trusted_md5 or (
            md5_hex if small and not encrypting else None))
        uploader = None
        if not encrypting and is_plain_md5(etag) and etag != md5_hex:
            raise IntegrityError("location %s: %s arrived damaged (ETag %s, MD5 of what was sent %s)" % (
                destination.name, key, etag, md5_hex))
        plain_md5 = None if raw_ciphertext else md5_hex
        plain_sha256 = None if raw_ciphertext else sha256_hex
        return CopyResult(copied, etag, plain_md5, plain_sha256, reader.etag, reader.size, stored_size,
                          encrypting or raw_ciphertext, False, reader.size)
    except Exception:
        if uploader is not None:
            uploader.abort()
        raise
    finally:
        reader.close()


# ---------------------------------------------------------------------------------------------
# The plain mirror: source -> destination, the destination made equal to the source

def progress_writer(path, log):
    """Progress lines to `log` (a module's syslog) and, when a path is given, appended to a file
    (tail -f it during a long run)."""

    def write(line):
        log(line)
        if path:
            with open(path, "a") as handle:
                handle.write("%s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), line))
    return write


def endpoints_from_params(source_params, destination_params, timeout=60, retries=DEFAULT_RETRIES):
    source = S3Endpoint.from_params(source_params, "source", timeout=timeout, retries=retries)
    destination = S3Endpoint.from_params(destination_params, "destination", timeout=timeout, retries=retries)
    return source, destination


def progress_line(prefix, stats, listed, started_bytes=0):
    def describe(elapsed):
        counts = stats.as_dict()
        rate = (counts["bytes_transferred"] - started_bytes) / elapsed if elapsed > 0 else 0
        return ("%s: %.0f s, %d listed, %d copied, %d replaced, %d skipped, %d failed, %s moved (%s/s)" % (
            prefix, elapsed, listed[0], counts["copied"], counts["replaced"], counts["skipped"], counts["failed"],
            human_bytes(counts["bytes_transferred"]), human_bytes(rate)))
    return describe


class Counted(object):
    """Counts entries of a stream as they pass (for progress and the delete guard)."""

    def __init__(self, entries, shared, index):
        self.entries, self.shared, self.index = entries, shared, index

    def __iter__(self):
        for entry in self.entries:
            self.shared[self.index] += 1
            yield entry


def sync(source, destination, delete=False, max_delete_percent=10.0, force=False, threads=DEFAULT_THREADS,
         check_mode=False, options=None, progress=None, progress_interval=30, sort_listings=False, commit_last=()):
    """Make destination (an S3Endpoint) hold exactly what source holds. Returns the result dict.

    delete: remove destination objects the source does not have (guarded, and only when the
    listings and every transfer succeeded). check_mode: plan only (HEADs allowed, no writes).
    sort_listings: sort both listings on disk instead of trusting the servers' order.
    commit_last: glob patterns (of relative keys) copied only after every other copy
    succeeded, such as commit markers (`points/*/point.json`): a replica never shows a
    manifest before what it describes.
    """
    options = options or CopyOptions()
    started = time.monotonic()
    for endpoint in (source, destination):
        endpoint.check_bucket()
    attempt_sorted = sort_listings
    while True:
        try:
            result = _sync_once(source, destination, delete, max_delete_percent, force, threads, check_mode,
                                options, progress, progress_interval, attempt_sorted, tuple(commit_last or ()))
            break
        except ListingOrderError as exc:
            if attempt_sorted:
                raise DRError("listing order error even after sorting: %s" % exc)
            if progress:
                progress("object_mirror: %s; starting over with listings sorted on disk" % exc)
            attempt_sorted = True
    duration = time.monotonic() - started
    result["duration_seconds"] = round(duration, 3)
    written = result["summary"]["bytes_copied"] + result["summary"]["bytes_replaced"]
    result["throughput_bytes_per_second"] = int(written / duration) if duration > 0 else 0
    done = result["summary"]["copied"] + result["summary"]["replaced"]
    result["objects_per_second"] = round(done / duration, 1) if duration > 0 else 0.0
    result["listing_order"] = "sorted on disk" if attempt_sorted else "server order (checked)"
    return result


def _sync_once(source, destination, delete, max_delete_percent, force, threads, check_mode, options, progress,
               progress_interval, sort_listings, commit_last):
    stats = Stats()
    counts = [0, 0]
    source_list = source.list()
    destination_list = destination.list()
    if sort_listings:
        source_list = sorted_listing(source_list)
        destination_list = sorted_listing(destination_list)
    source_stream = Counted(checked_order(source_list, "source %s" % source.describe()), counts, 0)
    destination_stream = Counted(
        checked_order(destination_list, "destination %s" % destination.describe()), counts, 1)
    plan = dict((name, {"objects": 0, "bytes": 0}) for name in (COPY, REPLACE, SKIP, DELETE, CHECK, EXTRA))
    samples = dict((name, []) for name in (COPY, REPLACE, DELETE))
    deletions = SortedSpool()
    later = SortedSpool()
    executor = Executor(threads, progress, progress_interval,
                        progress_line("object_mirror %s -> %s" % (source.name, destination.name), stats, counts))
    listing_error = None

    def planned(action, key, size):
        plan[action]["objects"] += 1
        plan[action]["bytes"] += size or 0
        if action in samples and len(samples[action]) < 20:
            samples[action].append(key)

    def transfer(key, entry, outcome):
        try:
            result = copy_object(source, key, destination, key, options, expected=entry)
        except SourceVanished:
            # Deleted at the source since the listing: the next run deletes it here too.
            stats.add("vanished", entry.size)
            return
        stats.add(outcome, result.size, result.transferred, result.server_side)

    def check_then_copy(key, entry, listed):
        source_id = _identity(source, key, entry, options.crypt == "decrypt")
        destination_id = _identity(destination, key, listed, options.crypt == "encrypt")
        verdict = same_content(source_id, destination_id)
        stats.add("checked")
        if verdict:
            stats.add("skipped", entry.size)
            return
        if check_mode:
            stats.add("replaced", entry.size)
            return
        transfer(key, entry, "replaced")

    def go(func, key, entry, *args):
        if commit_last and any(fnmatch.fnmatchcase(key, pattern) for pattern in commit_last):
            later.add(key, [func.__name__, entry.size, entry.etag] + list(args))
        else:
            executor.submit(func, key, entry, *args)

    try:
        try:
            for key, (entry, listed) in merge_sorted(source_stream, destination_stream):
                if executor.abort is not None:
                    break
                if entry is None:
                    if delete:
                        planned(DELETE, key, listed.size)
                        deletions.add(key, listed.size)
                    else:
                        planned(EXTRA, key, listed.size)
                    continue
                if listed is None:
                    planned(COPY, key, entry.size)
                    if not check_mode:
                        go(transfer, key, entry, "copied")
                    continue
                verdict = compare_listed(entry, listed, options.crypt)
                planned(verdict, key, entry.size)
                if verdict == SKIP:
                    stats.add("skipped", entry.size)
                elif verdict == REPLACE:
                    if not check_mode:
                        go(transfer, key, entry, "replaced")
                else:
                    go(check_then_copy, key, entry, listed)
        except ListingOrderError:
            executor.drain()
            raise
        except DRError as exc:
            listing_error = exc
        executor.drain()
        if later.count and listing_error is None and not executor.failure_count and executor.abort is None:
            functions = {"transfer": transfer, "check_then_copy": check_then_copy}
            for key, (name, size, etag, extra) in ((k, (v[0], v[1], v[2], v[3:])) for k, v in later):
                args = [Entry(*arg) if isinstance(arg, list) else arg for arg in extra]
                executor.submit(functions[name], key, Entry(key, size, etag), *args)
            executor.drain()
        elif later.count:
            executor._failed("(%d object(s) matching commit_last)" % later.count,  # pylint: disable=protected-access
                             "not copied: other transfers failed, so the commit markers were held back")
    finally:
        executor.shutdown()
        later.close()
    summary = stats.as_dict()
    summary["failed"] = executor.failure_count
    if check_mode:
        # In check mode the CHECK items were settled by reading metadata (stats counted them as
        # skipped or replaced, beside the skips the listings settled): fold them into the plan.
        plan[REPLACE]["objects"] += summary["replaced"]
        plan[REPLACE]["bytes"] += summary["bytes_replaced"]
        plan[SKIP] = {"objects": summary["skipped"], "bytes": summary["bytes_skipped"]}
        plan[CHECK] = {"objects": 0, "bytes": 0}
        summary = dict((name, 0) for name in summary)
    blocked = None
    delete_failures = []
    if deletions.count:
        if listing_error is not None or executor.failure_count or executor.abort is not None:
            blocked = "nothing deleted: %s" % ("a listing failed" if listing_error is not None
                                               else "%d transfer(s) failed" % executor.failure_count)
        else:
            blocked = delete_guard(deletions.count, counts[1], max_delete_percent, force)
        if blocked is None and not check_mode:
            batch = []
            sizes = {}
            for key, size in deletions:
                batch.append(key)
                sizes[key] = size
                if len(batch) >= 1000:
                    delete_failures += delete_batch(destination, batch, sizes, summary)
                    batch, sizes = [], {}
            if batch:
                delete_failures += delete_batch(destination, batch, sizes, summary)
    deletions.close()
    failures = list(executor.failures)
    failures += [{"key": key, "error": reason} for key, reason in delete_failures[:20]]
    summary["failed"] += len(delete_failures)
    result = {
        "changed": bool(summary["copied"] or summary["replaced"] or summary["deleted"]),
        "source": source.describe(),
        "destination": destination.describe(),
        "summary": summary,
        "plan": plan,
        "plan_samples": samples,
        "source_objects": counts[0],
        "destination_objects_before": counts[1],
        "failures": failures,
        "deletions_blocked": blocked,
        "check_mode": check_mode,
    }
    if check_mode:
        result["changed"] = bool(plan[COPY]["objects"] or plan[REPLACE]["objects"] or
                                 (plan[DELETE]["objects"] and blocked is None))
    errors = []
    if listing_error is not None:
        errors.append(listing_error.message)
    if executor.abort is not None:
        errors.append(executor.abort.message)
    elif executor.failure_count:
        errors.append("%d object(s) failed; first: %s: %s" % (
            executor.failure_count, failures[0]["key"], failures[0]["error"]))
    if delete_failures:
        errors.append("%d deletion(s) failed; first: %s: %s" % (
            len(delete_failures), delete_failures[0][0], delete_failures[0][1]))
    if blocked and deletions.count and not errors:
        errors.append(blocked)
    if errors:
        result["msg"] = "object_mirror %s -> %s failed: %s" % (source.name, destination.name, "; ".join(errors))
        if delete and not summary["deleted"]:
            result["msg"] += " (nothing was deleted)"
    return result


def _identity(endpoint, key, listed, read_metadata):
    """content_identity of one side; reads the metadata (HEAD) only when the listing cannot tell."""
    if not read_metadata and is_plain_md5(listed.etag):
        return {"size": listed.size, "md5": listed.etag, "sha256": None, "source_etag": None, "etag": listed.etag,
                "encrypted": False}
    head = endpoint.head(key)
    if head is None:
        return {"size": -1, "md5": None, "sha256": None, "source_etag": None, "etag": None, "encrypted": False}
    return content_identity(head)


def delete_batch(destination, batch, sizes, summary):
    failed = destination.delete(batch)
    failed_keys = set(key for key, _reason in failed)
    for key in batch:
        if key not in failed_keys:
            summary["deleted"] += 1
            summary["bytes_deleted"] += sizes.get(key) or 0
    return failed


def run_mirror(params, check_mode=False, progress=None):
    """The object_mirror module's engine call: params as the module's argument spec gives them."""
    from ansible_collections.auditron.dr.plugins.module_utils import keyproviders  # pylint: disable=import-outside-toplevel
    source, destination = endpoints_from_params(params["source"], params["destination"],
                                                timeout=params.get("timeout") or 60,
                                                retries=params.get("retries") or DEFAULT_RETRIES)
    crypt = None
    provider = None
    encryption = params.get("encryption")
    if encryption and (encryption.get("key_source") or "file") != "none":
        crypt = params.get("encryption_mode") or "encrypt"
        if crypt == "encrypt":
            provider = keyproviders.provider_from_params(encryption)
    options = CopyOptions(part_size=int(params.get("part_size_mb") or 8) * MIB,
                          multipart_threshold=int(params.get("multipart_threshold_mb") or 256) * MIB,
                          attempts=params.get("retries") or DEFAULT_RETRIES, provider=provider, crypt=crypt,
                          encryption_params=encryption, server_side=params.get("server_side_copy") or "auto")
    try:
        result = sync(source, destination, delete=params.get("delete", False),
                      max_delete_percent=float(params.get("max_delete_percent", 10)),
                      force=params.get("force", False), threads=params.get("threads") or DEFAULT_THREADS,
                      check_mode=check_mode, options=options, progress=progress,
                      progress_interval=params.get("progress_interval") or 30,
                      sort_listings=params.get("sort_listings", False),
                      commit_last=params.get("commit_last") or ())
    finally:
        source.server.close()
        destination.server.close()
    return result
