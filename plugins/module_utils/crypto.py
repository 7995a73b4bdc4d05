# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Streaming AES-256-GCM envelope encryption for backups, and the sources of its keys.

The backup pipeline is `pg_dump | zstd | encrypt | sha256 | fan-out` in one pass, and a
restore must prove an artifact intact before pg_restore sees a byte of it. This module is
the encrypt/decrypt stage: it seals a stream of any length in fixed-size chunks with
bounded memory, and detects every change to the stored bytes — edited, reordered, dropped,
duplicated or truncated chunks, an edited header, trailing garbage — naming the artifact.

Envelope: each stream gets its own random 256-bit data key. A *key provider* wraps that
data key under a key-encryption key it holds (a key file, an AWS KMS key, a Vault transit
key); only the wrapped form is stored, in the stream header. Rotating or revoking the
key-encryption key therefore never means re-encrypting backups, and no two streams share a
(key, nonce) pair.

Stream format, version 1 (integers big-endian)::

    header
      magic          6 bytes  b"ADRGCM"
      version        1 byte   1
      flags          1 byte   0 (reserved; anything else is refused)
      chunk_size     4 bytes  plaintext bytes per chunk (1 .. 64 MiB)
      nonce_prefix   7 bytes  random, per stream
      meta_length    4 bytes  length of meta (at most 64 KiB)
      wrapped_length 2 bytes  length of wrapped_key
      meta           JSON, UTF-8, sorted keys: {"context": {str: str}, "key": key_reference}
      wrapped_key    the data key as the provider wrapped it (opaque to this module)
    chunk, repeated (at least one; the last one, and only the last one, is final)
      frame          4 bytes  bit 31 = final flag, bits 0-30 = plaintext length n
      sealed         n + 16 bytes: AES-256-GCM ciphertext then tag, under the data key, with
                       nonce = nonce_prefix (7) | chunk index (4) | final flag (1)
                       AAD   = SHA-256(header bytes) (32) | chunk index (4) | final flag (1)

Every non-final chunk holds exactly chunk_size bytes; the final chunk holds 0..chunk_size
(an empty plaintext is one empty final chunk). Why each piece:

- the chunk index in nonce and AAD makes a swapped, dropped or duplicated chunk fail its tag;
- the final flag makes a stream cut at a chunk boundary detectable (it ends without a final
  chunk) and a final chunk reused mid-stream fail its tag; bytes after it are refused;
- the header hash in every AAD makes any edit of the header (chunk size, nonce prefix,
  key reference, context, wrapped key) fail — at the latest at chunk 0;
- the context (for example {"backup_id": ..., "purpose": "auditron-dr"}) is bound into the
  key wrapping too (KMS EncryptionContext, Vault derivation context, AAD of the file wrap),
  and a reader given the expected context refuses a stream made for another one, so one
  backup's artifact cannot be passed off as another's.

Every tag is verified before any plaintext of its chunk is released, so a consumer such as
pg_restore never receives unauthenticated bytes. Memory use is about two chunks.

Key providers share one small interface (see KeyProvider):
``new_data_key(context) -> (data_key, wrapped_key, key_reference)`` and
``unwrap(wrapped_key, key_reference, context, what) -> data_key``. The key reference is a
JSON-able dict without secrets (provider kind, key id or fingerprint, algorithm) that goes
into the stream header and the backup manifest, so a restore can find the right key source
even when the site's default has changed since (provider_for_reference).

Messages are one line, name the artifact (`what`) and the key source, and never contain key
material or tokens.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import errno
import hashlib
import io
import json
import os
import re
import ssl
import stat
import struct
import time
import traceback
from collections.abc import Mapping
from urllib.error import HTTPError, URLError
from urllib.parse import quote

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError:
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()

try:
    import botocore.exceptions
    HAS_BOTOCORE = True
    BOTOCORE_IMPORT_ERROR = None
except ImportError:
    HAS_BOTOCORE = False
    BOTOCORE_IMPORT_ERROR = traceback.format_exc()

from ansible_collections.auditron.dr.plugins.module_utils.aws import (
    BOTO3_IMPORT_ERROR, HAS_BOTO3, client as aws_client, describe_error as describe_aws_error, endpoint_label)
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, first_line, importable

# requests and ansible's open_url are imported by the Vault provider when it sends, not here:
# each costs 0.1-0.2 s of CPU in every module run that loads this file, and only Vault uses them.
HAS_REQUESTS = importable("requests")

__all__ = [
    "ALGORITHM", "DEFAULT_CHUNK_SIZE", "MAX_CHUNK_SIZE", "HAS_CRYPTOGRAPHY", "CRYPTOGRAPHY_IMPORT_ERROR",
    "HAS_BOTO3", "BOTO3_IMPORT_ERROR", "HAS_REQUESTS", "KeyProvider", "FileKeyProvider", "KmsKeyProvider",
    "VaultTransitProvider", "EncryptingWriter", "DecryptingReader", "verify_stream", "read_header",
    "generate_key_file", "load_key_file", "key_fingerprint", "provider_from_params", "provider_for_reference",
    "describe_reference",
]

ALGORITHM = "AES-256-GCM"
MAGIC = b"ADRGCM"
FORMAT_VERSION = 1
DEFAULT_CHUNK_SIZE = 1 << 20
# A header is read before it can be authenticated: these caps keep a damaged one from
# making the reader allocate gigabytes.
MAX_CHUNK_SIZE = 64 << 20
MAX_META_LENGTH = 64 << 10
DATA_KEY_BYTES = 32
TAG_BYTES = 16

_FIXED_HEADER = struct.Struct(">6sBBI7sIH")
_FRAME = struct.Struct(">I")
_CHUNK_ID = struct.Struct(">IB")
_FINAL_BIT = 0x80000000
_LENGTH_MASK = 0x7FFFFFFF
_MAX_CHUNKS = 0xFFFFFFFF

_FINGERPRINT_LABEL = b"auditron-dr key-file fingerprint v1\x00"
_FILE_WRAP_LABEL = b"auditron-dr key-file wrap v1\x00"
_FILE_WRAPPED_BYTES = 12 + DATA_KEY_BYTES + TAG_BYTES
_HEX_KEY_RE = re.compile(br"^[0-9a-fA-F]{64}$")
_VAULT_CIPHERTEXT_RE = re.compile(r"^vault:v(\d+):")


def _require_cryptography():
    if not HAS_CRYPTOGRAPHY:
        raise DRError("the cryptography Python library is required for backup encryption")


# ---------------------------------------------------------------------------------------------
# Encryption context: a small str -> str map bound into the key wrapping and the header.

def _canonical_context(context, what="encryption context"):
    if context is None:
        return {}
    if not isinstance(context, Mapping):
        raise DRError("%s: encryption context must be a mapping of strings, got %s" % (what, type(context).__name__))
    canonical = {}
    for name, value in context.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise DRError("%s: encryption context must map strings to strings; entry %r is not" % (what, name))
        canonical[name] = value
    return canonical


def _context_bytes(context):
    return json.dumps(context, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def describe_reference(key_reference):
    """A short human label for a key reference, for messages ('KMS key arn:...')."""
    key_reference = key_reference if isinstance(key_reference, Mapping) else {}
    kind = key_reference.get("provider")
    if kind == "file":
        return "key file fingerprint %s" % key_reference.get("fingerprint")
    if kind == "kms":
        return "KMS key %s" % key_reference.get("key_id")
    if kind == "vault":
        return "Vault transit key %s (mount %s, version %s)" % (
            key_reference.get("key_name"), key_reference.get("mount"), key_reference.get("key_version"))
    return "unknown key source %r" % (kind,)


# ---------------------------------------------------------------------------------------------
# Key providers

class KeyProvider(object):
    """Where data keys come from and how they are unwrapped again.

    kind: the `provider` value of the key references this provider writes and reads.
    new_data_key(context) -> (data_key: 32 bytes, wrapped_key: bytes, key_reference: dict)
    unwrap(wrapped_key, key_reference, context, what) -> data_key
    describe() -> a one-line label without secrets, for messages.

    `context` is a str -> str dict; providers bind it into the wrapping, so a data key
    wrapped for one context does not unwrap under another.
    """

    kind = None

    def describe(self):
        raise NotImplementedError

    def new_data_key(self, context):
        raise NotImplementedError

    def unwrap(self, wrapped_key, key_reference, context, what="stream"):
        raise NotImplementedError

    def _check_kind(self, key_reference, what):
        if key_reference.get("provider") != self.kind:
            raise DRError("%s was encrypted with %s, but the key source given is %s" % (
                what, describe_reference(key_reference), self.describe()))


def key_fingerprint(key):
    """First 16 hex characters of SHA-256 over a fixed label and the key: safe to store and show."""
    return hashlib.sha256(_FINGERPRINT_LABEL + bytes(key)).hexdigest()[:16]


def _parse_key_text(raw):
    """The 32-byte key in a key file's bytes, or None when it is in no accepted form."""
    # Exactly 32 bytes is taken as a raw key before anything is stripped: a raw key may end
    # in a byte that looks like whitespace.
    if len(raw) == DATA_KEY_BYTES:
        return raw
    text = raw.strip()
    if _HEX_KEY_RE.match(text):
        return binascii.unhexlify(text)
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return decoded if len(decoded) == DATA_KEY_BYTES else None


def load_key_file(path):
    """Read a key-encryption key from `path`, refusing one that others can read."""
    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise DRError("key file %s does not exist" % path)
        raise DRError("key file %s cannot be examined: %s" % (path, exc.strerror or first_line(exc)))
    if not stat.S_ISREG(info.st_mode):
        raise DRError("key file %s is not a regular file" % path)
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise DRError("key file %s is accessible by group or others (mode %04o): run chmod 600 %s" % (
            path, mode, path))
    try:
        with open(path, "rb") as handle:
            raw = handle.read(4097)
    except (IOError, OSError) as exc:
        raise DRError("key file %s cannot be read: %s" % (path, exc.strerror or first_line(exc)))
    key = _parse_key_text(raw)
    if key is None:
        raise DRError("key file %s does not hold a 32-byte key (%d bytes found; expected 32 raw bytes, "
                      "64 hex characters or base64 of 32 bytes)" % (path, len(raw)))
    return key


def generate_key_file(path):
    """Create a new random key file (64 hex characters, mode 0600); never overwrites.

    Returns the key's fingerprint, which the key references of streams it wraps will carry.
    """
    key = os.urandom(DATA_KEY_BYTES)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise DRError("key file %s already exists: refusing to overwrite it" % path)
        raise DRError("key file %s cannot be created: %s" % (path, exc.strerror or first_line(exc)))
    try:
        # The umask can only narrow 0600, but a file system with odd defaults might not.
        os.fchmod(descriptor, 0o600)
        payload = binascii.hexlify(key) + b"\n"
        written = 0
        while written < len(payload):
            written += os.write(descriptor, payload[written:])
        os.fsync(descriptor)
    except OSError as exc:
        os.close(descriptor)
        os.unlink(path)
        raise DRError("key file %s cannot be written: %s" % (path, exc.strerror or first_line(exc)))
    os.close(descriptor)
    return key_fingerprint(key)


class FileKeyProvider(KeyProvider):
    """A 32-byte key-encryption key in a local file; data keys are wrapped with AES-256-GCM.

    Wrapped key: 12-byte nonce | AES-GCM(kek) of the data key (32) | tag (16), with the
    context as AAD. The key reference carries the key's fingerprint, so a wrong key file is
    reported as such before any decryption is tried.
    """

    kind = "file"

    def __init__(self, path):
        _require_cryptography()
        self.path = path
        key = load_key_file(path)
        self.fingerprint = key_fingerprint(key)
        self._kek = AESGCM(key)

    def describe(self):
        return "key file %s (fingerprint %s)" % (self.path, self.fingerprint)

    def _wrap_aad(self, context):
        return _FILE_WRAP_LABEL + self.fingerprint.encode("ascii") + b"\x00" + _context_bytes(context)

    def new_data_key(self, context):
        context = _canonical_context(context)
        data_key = os.urandom(DATA_KEY_BYTES)
        nonce = os.urandom(12)
        wrapped = nonce + self._kek.encrypt(nonce, data_key, self._wrap_aad(context))
        reference = {"provider": self.kind, "fingerprint": self.fingerprint, "algorithm": ALGORITHM,
                     "wrap": ALGORITHM}
        return data_key, wrapped, reference

    def unwrap(self, wrapped_key, key_reference, context, what="stream"):
        self._check_kind(key_reference, what)
        recorded = key_reference.get("fingerprint")
        if recorded != self.fingerprint:
            raise DRError("%s was encrypted with key file fingerprint %s, but %s has fingerprint %s: wrong key" % (
                what, recorded, self.path, self.fingerprint))
        wrapped_key = bytes(wrapped_key)
        if len(wrapped_key) != _FILE_WRAPPED_BYTES:
            raise DRError("%s: the wrapped data key in the header is damaged (%d bytes, expected %d)" % (
                what, len(wrapped_key), _FILE_WRAPPED_BYTES))
        try:
            return self._kek.decrypt(wrapped_key[:12], wrapped_key[12:],
                                     self._wrap_aad(_canonical_context(context, what)))
        except InvalidTag:
            raise DRError("%s: the data key does not unwrap with %s (header damaged, or another encryption "
                          "context)" % (what, self.describe()))


class KmsKeyProvider(KeyProvider):
    """AWS KMS (or any KMS-compatible endpoint): GenerateDataKey and Decrypt.

    The encryption context goes to KMS as EncryptionContext, so KMS itself refuses to
    unwrap a data key for another backup, and its audit log names the backup. Timeouts are
    short and retries few so that a silent endpoint is reported in seconds.
    """

    kind = "kms"

    def __init__(self, key_id, endpoint_url=None, region="us-east-1", access_key=None, secret_key=None,
                 session_token=None, ca_bundle=None, validate_certs=True, max_attempts=3, connect_timeout=5,
                 read_timeout=20):
        self.key_id = key_id
        self._aws = dict(endpoint_url=endpoint_url, region=region or "us-east-1", access_key=access_key,
                         secret_key=secret_key, session_token=session_token, ca_bundle=ca_bundle,
                         validate_certs=validate_certs is not False)
        self._tuning = dict(max_attempts=max_attempts, connect_timeout=connect_timeout, read_timeout=read_timeout)
        self._client = None

    @property
    def endpoint(self):
        return endpoint_label("kms", self._aws)

    def describe(self):
        return "KMS key %s at %s" % (self.key_id, self.endpoint)

    def _kms(self):
        if self._client is None:
            if not HAS_BOTO3 or not HAS_BOTOCORE:
                raise DRError("the boto3 Python library is required for KMS key %s" % self.key_id)
            try:
                self._client = aws_client("kms", self._aws, **self._tuning)
            except DRError:
                raise
            except Exception as exc:  # pylint: disable=broad-except
                raise DRError("KMS at %s (key %s): cannot create a client: %s" % (
                    self.endpoint, self.key_id, first_line(exc)))
        return self._client

    def _error(self, exc, key_id):
        message = describe_aws_error("kms", self._aws, exc, what="key %s" % key_id).message
        if isinstance(exc, botocore.exceptions.ClientError) and \
                exc.response.get("Error", {}).get("Code") in ("InvalidCiphertextException", "IncorrectKeyException"):
            message += " (wrapped under another key or another encryption context)"
        return message

    def new_data_key(self, context):
        context = _canonical_context(context)
        kms = self._kms()
        request = dict(KeyId=self.key_id, KeySpec="AES_256")
        if context:
            request["EncryptionContext"] = context
        try:
            answer = kms.generate_data_key(**request)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise DRError("cannot create a data key: %s" % self._error(exc, self.key_id))
        data_key = answer["Plaintext"]
        if len(data_key) != DATA_KEY_BYTES:
            raise DRError("KMS at %s (key %s) returned a %d-byte data key, expected %d" % (
                self.endpoint, self.key_id, len(data_key), DATA_KEY_BYTES))
        # KMS answers with the key's ARN even when asked by alias: the ARN still names the
        # key after the alias is moved to a new one.
        reference = {"provider": self.kind, "key_id": answer.get("KeyId") or self.key_id, "algorithm": ALGORITHM}
        return data_key, answer["CiphertextBlob"], reference

    def unwrap(self, wrapped_key, key_reference, context, what="stream"):
        self._check_kind(key_reference, what)
        context = _canonical_context(context, what)
        key_id = key_reference.get("key_id") or self.key_id
        request = dict(CiphertextBlob=bytes(wrapped_key), KeyId=key_id)
        if context:
            request["EncryptionContext"] = context
        kms = self._kms()
        try:
            answer = kms.decrypt(**request)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise DRError("%s: cannot unwrap the data key: %s" % (what, self._error(exc, key_id)))
        data_key = answer["Plaintext"]
        if len(data_key) != DATA_KEY_BYTES:
            raise DRError("%s: KMS key %s unwrapped a %d-byte data key, expected %d" % (
                what, key_id, len(data_key), DATA_KEY_BYTES))
        return data_key


class VaultTransitProvider(KeyProvider):
    """HashiCorp Vault's transit secrets engine: datakey/plaintext and decrypt.

    POST {url}/v1/{mount}/datakey/plaintext/{key_name}  {"bits": 256[, "context": b64]}
    POST {url}/v1/{mount}/decrypt/{key_name}             {"ciphertext": "vault:v1:..."[, "context": b64]}
    with X-Vault-Token (and X-Vault-Namespace when set). The context is sent only for a
    derived key (derived=True): Vault rejects it otherwise. Uses requests when importable,
    else urllib. Connection errors and 502/503/504 are retried once.
    """

    kind = "vault"

    def __init__(self, url, token, key_name, mount="transit", namespace=None, ca_bundle=None, derived=False,
                 validate_certs=True, connect_timeout=5, read_timeout=20, attempts=2):
        self.url = (url or "").rstrip("/")
        self._token = token
        self.key_name = key_name
        self.mount = (mount or "transit").strip("/")
        self.namespace = namespace
        self.ca_bundle = ca_bundle
        self.derived = bool(derived)
        self.validate_certs = validate_certs is not False
        self.timeouts = (connect_timeout, read_timeout)
        self.attempts = max(1, int(attempts))

    def __repr__(self):
        # The token stays out of every repr, log line and traceback.
        return "VaultTransitProvider(url=%r, mount=%r, key_name=%r)" % (self.url, self.mount, self.key_name)

    def describe(self):
        return "Vault transit key %s (mount %s) at %s" % (self.key_name, self.mount, self.url)

    def _body_context(self, body, context):
        if self.derived:
            if not context:
                raise DRError("%s is a derived key: an encryption context is required" % self.describe())
            body["context"] = base64.b64encode(_context_bytes(context)).decode("ascii")
        return body

    def _headers(self):
        headers = {"X-Vault-Token": self._token or "", "Content-Type": "application/json",
                   "Accept": "application/json"}
        if self.namespace:
            headers["X-Vault-Namespace"] = self.namespace
        return headers

    def _send_once(self, url, payload):
        """(status, body bytes); raises _Unreachable for transport failures."""
        verify = (self.ca_bundle or True) if self.validate_certs else False
        if HAS_REQUESTS:
            import requests  # pylint: disable=import-outside-toplevel  # see HAS_REQUESTS
            try:
                answer = requests.post(url, data=payload, headers=self._headers(), timeout=self.timeouts,
                                       verify=verify, allow_redirects=False)
            except requests.exceptions.SSLError:
                raise _Unreachable("TLS certificate not trusted", retry=False)
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):
                raise _Unreachable("does not answer", retry=True)
            except requests.exceptions.RequestException as exc:
                raise _Unreachable(first_line(exc), retry=False)
            return answer.status_code, answer.content
        from ansible.module_utils.urls import open_url  # pylint: disable=import-outside-toplevel  # see HAS_REQUESTS
        try:
            response = open_url(url, data=payload, headers=self._headers(), method="POST",
                                timeout=self.timeouts[1], validate_certs=self.validate_certs,
                                ca_path=self.ca_bundle)
            try:
                return response.getcode(), response.read()
            finally:
                response.close()
        except HTTPError as exc:
            return exc.code, exc.read()
        except URLError as exc:
            if isinstance(getattr(exc, "reason", None), ssl.SSLError):
                raise _Unreachable("TLS certificate not trusted", retry=False)
            raise _Unreachable("does not answer", retry=True)
        except (OSError, IOError):
            raise _Unreachable("does not answer", retry=True)

    def _post(self, action, body, doing):
        url = "%s/v1/%s/%s/%s" % (self.url, quote(self.mount, safe="/"), action, quote(self.key_name, safe=""))
        payload = json.dumps(body).encode("utf-8")
        label = "%s: %s" % (doing, self.describe())
        status, content = None, b""
        for attempt in range(self.attempts):
            try:
                status, content = self._send_once(url, payload)
            except _Unreachable as exc:
                if exc.retry and attempt + 1 < self.attempts:
                    time.sleep(0.3)
                    continue
                raise DRError("%s: Vault %s" % (label, exc.reason))
            if status in (502, 503, 504) and attempt + 1 < self.attempts:
                time.sleep(0.3)
                continue
            break
        try:
            document = json.loads(content.decode("utf-8")) if content else {}
        except (ValueError, UnicodeDecodeError):
            document = None
        if status != 200:
            raise DRError("%s: %s" % (label, _vault_failure(status, document)))
        if not isinstance(document, dict) or not isinstance(document.get("data"), dict):
            raise DRError("%s: Vault answered HTTP 200 without a data object" % label)
        return document["data"]

    def new_data_key(self, context):
        context = _canonical_context(context)
        body = self._body_context({"bits": DATA_KEY_BYTES * 8}, context)
        data = self._post("datakey/plaintext", body, "cannot create a data key")
        ciphertext = data.get("ciphertext")
        version = _VAULT_CIPHERTEXT_RE.match(ciphertext) if isinstance(ciphertext, str) else None
        try:
            data_key = base64.b64decode(data.get("plaintext") or "", validate=True)
        except (binascii.Error, ValueError, TypeError):
            data_key = b""
        if version is None or len(data_key) != DATA_KEY_BYTES:
            raise DRError("cannot create a data key: %s answered without a 32-byte plaintext and a vault: "
                          "ciphertext" % self.describe())
        reference = {"provider": self.kind, "mount": self.mount, "key_name": self.key_name,
                     "key_version": int(version.group(1)), "derived": self.derived, "algorithm": ALGORITHM}
        return data_key, ciphertext.encode("ascii"), reference

    def unwrap(self, wrapped_key, key_reference, context, what="stream"):
        self._check_kind(key_reference, what)
        if (key_reference.get("key_name"), key_reference.get("mount")) != (self.key_name, self.mount):
            raise DRError("%s was encrypted with %s, but the key source given is %s" % (
                what, describe_reference(key_reference), self.describe()))
        try:
            ciphertext = bytes(wrapped_key).decode("ascii")
        except UnicodeDecodeError:
            ciphertext = ""
        if not _VAULT_CIPHERTEXT_RE.match(ciphertext):
            raise DRError("%s: the wrapped data key in the header is damaged (not a vault: ciphertext)" % what)
        body = self._body_context({"ciphertext": ciphertext}, _canonical_context(context, what))
        data = self._post("decrypt", body, "%s: cannot unwrap the data key" % what)
        try:
            data_key = base64.b64decode(data.get("plaintext") or "", validate=True)
        except (binascii.Error, ValueError, TypeError):
            data_key = b""
        if len(data_key) != DATA_KEY_BYTES:
            raise DRError("%s: %s unwrapped a %d-byte data key, expected %d" % (
                what, self.describe(), len(data_key), DATA_KEY_BYTES))
        return data_key


class _Unreachable(Exception):
    def __init__(self, reason, retry):
        super(_Unreachable, self).__init__(reason)
        self.reason = reason
        self.retry = retry


def _vault_failure(status, document):
    errors = document.get("errors") if isinstance(document, dict) else None
    detail = "; ".join(first_line(error) for error in errors if error) if isinstance(errors, list) else ""
    hint = {
        400: "request refused",
        403: "permission denied (token expired, revoked, or its policy lacks this path)",
        404: "transit mount or key not found",
        429: "rate limited",
        503: "Vault is sealed or in standby",
    }.get(status, "unexpected answer")
    return "HTTP %s, %s%s" % (status, hint, (": " + detail) if detail else "")


# ---------------------------------------------------------------------------------------------
# Providers from the Ansible `encryption` option (base.encryption_suboptions)

def _aws_kwargs(params):
    aws = params.get("aws") or {}
    return dict(endpoint_url=aws.get("endpoint_url") or aws.get("endpoint"), region=aws.get("region"),
                access_key=aws.get("access_key"), secret_key=aws.get("secret_key"),
                session_token=aws.get("session_token"), ca_bundle=aws.get("ca_bundle") or aws.get("ca_file"),
                validate_certs=aws.get("validate_certs", True) is not False)


def _require_options(params, names, reason):
    missing = ["encryption.%s" % name for name in names if not params.get(name)]
    if missing:
        raise DRError("%s %s required %s" % (" and ".join(missing), "is" if len(missing) == 1 else "are", reason))


def provider_from_params(params):
    """The key provider the `encryption` option describes, or None for key_source none."""
    params = params or {}
    source = params.get("key_source") or "file"
    if source == "none":
        return None
    if source == "file":
        _require_options(params, ["key_file"], "when encryption.key_source is file")
        return FileKeyProvider(params["key_file"])
    if source == "kms":
        _require_options(params, ["kms_key_id"], "when encryption.key_source is kms")
        return KmsKeyProvider(params["kms_key_id"], **_aws_kwargs(params))
    if source == "vault":
        _require_options(params, ["vault_url", "vault_token", "vault_transit_key"],
                         "when encryption.key_source is vault")
        return VaultTransitProvider(params["vault_url"], params["vault_token"], params["vault_transit_key"],
                                    mount=params.get("vault_transit_mount") or "transit",
                                    namespace=params.get("vault_namespace"),
                                    ca_bundle=params.get("vault_ca_bundle"),
                                    derived=bool(params.get("vault_derived")))
    raise DRError("encryption.key_source must be one of file, kms, vault, none; got %r" % (source,))


def provider_for_reference(key_reference, params, what="stream"):
    """The provider that can unwrap what `key_reference` names, whatever the current default.

    A backup made with KMS is decrypted through KMS even when encryption.key_source is now
    file: the reference fixes the kind and key (KMS key ARN, Vault mount/key/derivation);
    params supply only where and how to reach it (key file path, AWS endpoint and
    credentials, Vault address and token).
    """
    params = params or {}
    key_reference = key_reference if isinstance(key_reference, Mapping) else {}
    kind = key_reference.get("provider")
    needed = "to decrypt %s (encrypted with %s)" % (what, describe_reference(key_reference))
    if kind == "file":
        _require_options(params, ["key_file"], needed)
        return FileKeyProvider(params["key_file"])
    if kind == "kms":
        if not key_reference.get("key_id"):
            raise DRError("%s: the key reference names no KMS key" % what)
        return KmsKeyProvider(key_reference["key_id"], **_aws_kwargs(params))
    if kind == "vault":
        if not key_reference.get("key_name"):
            raise DRError("%s: the key reference names no Vault transit key" % what)
        _require_options(params, ["vault_url", "vault_token"], needed)
        return VaultTransitProvider(params["vault_url"], params["vault_token"], key_reference["key_name"],
                                    mount=key_reference.get("mount") or "transit",
                                    namespace=params.get("vault_namespace"),
                                    ca_bundle=params.get("vault_ca_bundle"),
                                    derived=bool(key_reference.get("derived")))
    raise DRError("%s was encrypted with %s, which this collection cannot use" % (
        what, describe_reference(key_reference)))


def _resolve_provider(provider, key_reference, what):
    if provider is None:
        raise DRError("%s is encrypted (%s) but no key source is configured" % (
            what, describe_reference(key_reference)))
    if isinstance(provider, Mapping):
        return provider_for_reference(key_reference, provider, what)
    return provider


# ---------------------------------------------------------------------------------------------
# The stream

def _chunk_nonce(nonce_prefix, index, final):
    return nonce_prefix + _CHUNK_ID.pack(index, final)


def _chunk_aad(header_digest, index, final):
    return header_digest + _CHUNK_ID.pack(index, final)


def _as_byte_view(data):
    view = data if isinstance(data, memoryview) else memoryview(data)
    if view.ndim != 1 or view.itemsize != 1 or view.format not in ("B", "b", "c"):
        view = view.cast("B")
    return view


class EncryptingWriter(object):
    """File-like: plaintext in through write(), sealed chunks out to sink.write(bytes).

    Holds at most one chunk of plaintext: a full chunk is sealed only once more data shows
    it is not the last. close() seals the final chunk; it does not close the sink (the
    pipeline commits or aborts that). Deliberately not an io.IOBase: a garbage-collected
    writer must never finalise a stream that failed half-way. Leaving a `with` block by an
    exception calls abort(), so the stream stays without a final chunk and every reader
    rejects it as truncated.

    key_reference: the JSON-able key reference for the backup manifest.
    plaintext_bytes, ciphertext_bytes, chunks: counters, final after close().
    """

    def __init__(self, sink, provider, context=None, chunk_size=DEFAULT_CHUNK_SIZE):
        _require_cryptography()
        if not isinstance(chunk_size, int) or not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise DRError("encryption chunk size must be between 1 and %d bytes, got %r" % (MAX_CHUNK_SIZE, chunk_size))
        if provider is None:
            raise DRError("encryption needs a key source (encryption.key_source is none)")
        self.context = _canonical_context(context)
        data_key, wrapped_key, reference = provider.new_data_key(self.context)
        if len(data_key) != DATA_KEY_BYTES:
            raise DRError("%s returned a %d-byte data key, expected %d" % (
                provider.describe(), len(data_key), DATA_KEY_BYTES))
        wrapped_key = bytes(wrapped_key)
        if len(wrapped_key) > 0xFFFF:
            raise DRError("%s returned a wrapped data key of %d bytes, more than a header holds" % (
                provider.describe(), len(wrapped_key)))
        self.key_reference = dict(reference)
        self.chunk_size = chunk_size
        self._sink = sink
        self._aead = AESGCM(data_key)
        self._nonce_prefix = os.urandom(7)
        meta = json.dumps({"context": self.context, "key": self.key_reference}, sort_keys=True,
                          separators=(",", ":")).encode("utf-8")
        if len(meta) > MAX_META_LENGTH:
            raise DRError("encryption context and key reference are too large for a header (%d bytes)" % len(meta))
        header = _FIXED_HEADER.pack(MAGIC, FORMAT_VERSION, 0, chunk_size, self._nonce_prefix, len(meta),
                                    len(wrapped_key)) + meta + wrapped_key
        self._header_digest = hashlib.sha256(header).digest()
        self._buffer = bytearray(chunk_size)
        self._filled = 0
        self._index = 0
        self.plaintext_bytes = 0
        self.chunks = 0
        self.closed = False
        self._failed = None
        self._sink.write(header)
        self.ciphertext_bytes = len(header)

    def writable(self):
        return True

    def _seal(self, plaintext, final):
        if self._index > _MAX_CHUNKS:
            raise DRError("stream too long for %d-byte chunks (more than 2^32 chunks)" % self.chunk_size)
        index = self._index
        sealed = self._aead.encrypt(_chunk_nonce(self._nonce_prefix, index, final), plaintext,
                                    _chunk_aad(self._header_digest, index, final))
        length = len(plaintext)
        self._sink.write(_FRAME.pack(length | (_FINAL_BIT if final else 0)))
        self._sink.write(sealed)
        self._index = index + 1
        self.chunks += 1
        self.plaintext_bytes += length
        self.ciphertext_bytes += _FRAME.size + len(sealed)

    def write(self, data):
        if self.closed:  # pylint: disable=using-constant-test  # RawIOBase.closed is a property
            raise ValueError("write to a closed EncryptingWriter")
        if self._failed is not None:
            raise self._failed
        view = _as_byte_view(data)
        total = len(view)
        if not total:
            return 0
        try:
            self._write_view(view, total)
        except Exception as exc:
            self._failed = exc
            raise
        return total

    def _write_view(self, view, total):
        chunk_size = self.chunk_size
        position = 0
        if self._filled == chunk_size:
            # More data has come, so the buffered full chunk was not the last one.
            self._seal(self._buffer, 0)
            self._filled = 0
        if self._filled:
            take = min(chunk_size - self._filled, total)
            self._buffer[self._filled:self._filled + take] = view[:take]
            self._filled += take
            position = take
            if position == total:
                return
            self._seal(self._buffer, 0)
            self._filled = 0
        # Seal whole chunks straight from the caller's buffer; keep the last (possibly
        # full) piece back, since only what comes next tells whether it is final.
        while total - position > chunk_size:
            self._seal(view[position:position + chunk_size], 0)
            position += chunk_size
        rest = total - position
        self._buffer[:rest] = view[position:]
        self._filled = rest

    def flush(self):
        """Nothing to do: a partial chunk cannot be sealed before its final flag is known."""
        if self._failed is not None:
            raise self._failed

    def close(self):
        """Seal the final chunk (possibly empty). Idempotent. Does not close the sink."""
        if self.closed:  # pylint: disable=using-constant-test  # RawIOBase.closed is a property
            return
        if self._failed is not None:
            raise self._failed
        self._seal(memoryview(self._buffer)[:self._filled], 1)
        self._finish()

    def abort(self):
        """Stop without a final chunk: what was written stays detectably incomplete."""
        self._finish()

    def _finish(self):
        self.closed = True
        self._aead = None
        self._buffer = bytearray()
        self._filled = 0

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


class StreamHeader(object):
    """What the header of an encrypted stream says (no secrets: the data key stays wrapped)."""

    def __init__(self, chunk_size, nonce_prefix, context, key_reference, wrapped_key, digest, length):
        self.chunk_size = chunk_size
        self.nonce_prefix = nonce_prefix
        self.context = context
        self.key_reference = key_reference
        self.wrapped_key = wrapped_key
        self.digest = digest
        self.length = length


def _read_exact(source, count, what):
    """Up to `count` bytes; fewer only at end of stream. Copes with sources that read short."""
    try:
        data = source.read(count)
        if data is None:
            data = b""
        if len(data) == count or not data:
            return data
        collected = bytearray(data)
        while len(collected) < count:
            more = source.read(count - len(collected))
            if not more:
                break
            collected += more
        return collected
    except DRError:
        raise
    except (IOError, OSError) as exc:
        raise DRError("%s: reading failed: %s" % (what, exc.strerror or first_line(exc)))


def read_header(source, what="stream"):
    """Read and check the header of an encrypted stream; the source is left at chunk 0."""
    fixed = _read_exact(source, _FIXED_HEADER.size, what)
    if bytes(fixed[:len(MAGIC)]) != MAGIC[:len(fixed)] or not fixed:
        raise DRError("%s is not an auditron-dr encrypted stream (bad magic; stored unencrypted, or another "
                      "format?)" % what)
    if len(fixed) < _FIXED_HEADER.size:
        raise DRError("%s is truncated inside its encryption header" % what)
    _magic, version, flags, chunk_size, nonce_prefix, meta_length, wrapped_length = _FIXED_HEADER.unpack(fixed)
    if version != FORMAT_VERSION:
        raise DRError("%s uses encrypted stream format version %d; this collection reads version %d" % (
            what, version, FORMAT_VERSION))
    if flags:
        raise DRError("%s: encryption header has unknown flags 0x%02x (damaged, or a newer format)" % (what, flags))
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise DRError("%s: encryption header declares a chunk size of %d bytes (damaged)" % (what, chunk_size))
    if meta_length > MAX_META_LENGTH:
        raise DRError("%s: encryption header declares %d bytes of metadata (damaged)" % (what, meta_length))
    rest = _read_exact(source, meta_length + wrapped_length, what)
    if len(rest) < meta_length + wrapped_length:
        raise DRError("%s is truncated inside its encryption header" % what)
    rest = bytes(rest)
    meta_bytes, wrapped_key = rest[:meta_length], rest[meta_length:]
    try:
        meta = json.loads(meta_bytes.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise DRError("%s: encryption header is damaged (its metadata is not valid JSON)" % what)
    if not isinstance(meta, dict) or not isinstance(meta.get("key"), dict) or \
            not isinstance(meta.get("context"), dict):
        raise DRError("%s: encryption header is damaged (no key reference or context)" % what)
    context = _canonical_context(meta["context"], "%s: encryption header" % what)
    key_reference = meta["key"]
    if key_reference.get("algorithm") != ALGORITHM:
        raise DRError("%s: encryption header names algorithm %r; this collection reads %s" % (
            what, key_reference.get("algorithm"), ALGORITHM))
    header_bytes = bytes(fixed) + rest
    return StreamHeader(chunk_size, nonce_prefix, context, key_reference, wrapped_key,
                        hashlib.sha256(header_bytes).digest(), len(header_bytes))


class DecryptingReader(io.RawIOBase):
    """File-like plaintext of an encrypted stream; every chunk is authenticated before use.

    source: anything with read(n) (short reads are fine).
    provider: a KeyProvider, or the `encryption` params dict: then the provider is chosen
      from the stream's own key reference (provider_for_reference).
    context: the context the stream must have been made for; None accepts the header's.
    what: names the artifact in every message ("backup X at s3-us-east-1").

    Reads the header and unwraps the data key on construction, so a wrong key fails before
    any data moves. Raises DRError (and keeps raising it) on a bad tag, a truncated stream,
    data after the final chunk, or a damaged header. close() does not close the source.
    """

    def __init__(self, source, provider, context=None, what="stream"):
        super(DecryptingReader, self).__init__()
        _require_cryptography()
        self.what = what
        self._source = source
        self.header = read_header(source, what)
        if context is not None:
            expected = _canonical_context(context, what)
            if expected != self.header.context:
                raise DRError("%s was encrypted for context %s, expected %s (an artifact of another backup?)" % (
                    what, _context_bytes(self.header.context).decode("ascii"),
                    _context_bytes(expected).decode("ascii")))
        provider = _resolve_provider(provider, self.header.key_reference, what)
        data_key = provider.unwrap(self.header.wrapped_key, self.header.key_reference, self.header.context,
                                   what=what)
        if len(data_key) != DATA_KEY_BYTES:
            raise DRError("%s: %s unwrapped a %d-byte data key" % (what, provider.describe(), len(data_key)))
        self._aead = AESGCM(data_key)
        self._index = 0
        self._finished = False
        self._error = None
        self._plain = b""
        self._offset = 0
        self.plaintext_bytes = 0
        self.ciphertext_bytes = self.header.length
        self.chunks = 0

    @property
    def key_reference(self):
        return self.header.key_reference

    @property
    def context(self):
        return self.header.context

    def readable(self):
        return True

    def _open_chunk(self, into=None):
        """Authenticate and decrypt the next chunk; None after the final one.

        With `into` (a bytearray of chunk_size), decrypts into it and returns a view of it
        (verify_stream's no-allocation path); otherwise returns new bytes.
        """
        if self._error is not None:
            raise self._error
        if self._finished:
            return None
        try:
            return self._open_chunk_checked(into)
        except DRError as exc:
            self._error = exc
            self._aead = None
            raise

    def _open_chunk_checked(self, into):
        what, index, header = self.what, self._index, self.header
        at = self.ciphertext_bytes
        frame = _read_exact(self._source, _FRAME.size, what)
        if not frame:
            raise DRError("%s is truncated: it ends after chunk %d without the final chunk" % (what, index - 1)
                          if index else "%s is truncated: it ends after the encryption header" % what)
        if len(frame) < _FRAME.size:
            raise DRError("%s is truncated inside chunk %d at byte %d" % (what, index, at))
        word = _FRAME.unpack(frame)[0]
        final = 1 if word & _FINAL_BIT else 0
        length = word & _LENGTH_MASK
        if length > header.chunk_size or (not final and length != header.chunk_size):
            raise DRError("%s: chunk %d at byte %d declares %d bytes, but the chunk size is %d (data corrupted)" % (
                what, index, at, length, header.chunk_size))
        if index > _MAX_CHUNKS:
            raise DRError("%s: more chunks than the format allows (data corrupted)" % what)
        sealed = _read_exact(self._source, length + TAG_BYTES, what)
        if len(sealed) < length + TAG_BYTES:
            raise DRError("%s is truncated inside chunk %d at byte %d" % (what, index, at))
        nonce = _chunk_nonce(header.nonce_prefix, index, final)
        aad = _chunk_aad(header.digest, index, final)
        try:
            if into is not None:
                plain = memoryview(into)[:length]
                self._aead.decrypt_into(nonce, sealed, aad, plain)
            else:
                plain = self._aead.decrypt(nonce, sealed, aad)
        except InvalidTag:
            raise DRError("%s: authentication tag mismatch in chunk %d at byte %d (data corrupted or tampered "
                          "with)" % (what, index, at))
        self.ciphertext_bytes += _FRAME.size + len(sealed)
        if final:
            # Refuse trailing bytes before the last plaintext is released: a consumer must
            # not see a complete-looking restore of an artifact that is not what was written.
            if _read_exact(self._source, 1, what):
                raise DRError("%s has data after its final chunk %d (appended or corrupted)" % (what, index))
            self._finished = True
            self._aead = None
        self._index = index + 1
        self.chunks += 1
        self.plaintext_bytes += length
        return plain

    def _next_plain(self, have=0):
        """Make self._plain hold unread plaintext; False at end of stream.

        With `have` bytes already gathered for the caller, a failing chunk ends this read
        short (False) and its error is raised by the next call: good bytes already taken out
        of earlier chunks are handed over, and nothing of the bad chunk is.
        """
        while self._offset >= len(self._plain):
            try:
                plain = self._open_chunk()
            except DRError:
                if have:
                    return False
                raise
            if plain is None:
                self._plain, self._offset = b"", 0
                return False
            self._plain, self._offset = plain, 0
        return True

    def read(self, size=-1):
        if self.closed:  # pylint: disable=using-constant-test  # RawIOBase.closed is a property
            raise ValueError("read from a closed DecryptingReader")
        if size is None or size < 0:
            return self.readall()
        parts = []
        wanted = size
        while wanted > 0 and self._next_plain(size - wanted):
            available = len(self._plain) - self._offset
            if self._offset == 0 and available <= wanted:
                piece = self._plain  # the whole chunk: hand it over without a copy
            else:
                piece = self._plain[self._offset:self._offset + wanted]
            self._offset += len(piece)
            wanted -= len(piece)
            parts.append(piece)
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    def readall(self):
        if self.closed:  # pylint: disable=using-constant-test  # RawIOBase.closed is a property
            raise ValueError("read from a closed DecryptingReader")
        parts = []
        while self._next_plain():
            parts.append(self._plain[self._offset:] if self._offset else self._plain)
            self._offset = len(self._plain)
        return b"".join(parts)

    def readinto(self, buffer):
        if self.closed:  # pylint: disable=using-constant-test  # RawIOBase.closed is a property
            raise ValueError("read from a closed DecryptingReader")
        target = _as_byte_view(buffer)
        filled = 0
        while filled < len(target) and self._next_plain(filled):
            take = min(len(target) - filled, len(self._plain) - self._offset)
            target[filled:filled + take] = memoryview(self._plain)[self._offset:self._offset + take]
            self._offset += take
            filled += take
        return filled

    def close(self):
        self._aead = None
        self._plain = b""
        super(DecryptingReader, self).close()


class _HashingSource(object):
    """Passes reads through, feeding every byte to a hasher on the way."""

    def __init__(self, source, hasher):
        self._source = source
        self._hasher = hasher

    def read(self, count=-1):
        data = self._source.read(count)
        if data:
            self._hasher.update(data)
        return data


def verify_stream(source, provider, context=None, what="stream", hasher=None):
    """Read a whole encrypted stream and check every tag and the final chunk; write nothing.

    With `hasher` (for example hashlib.sha256()), every ciphertext byte read is fed to it,
    so one pass checks the artifact's checksum and its authentication tags.
    Returns {"plaintext_bytes", "ciphertext_bytes", "chunks"}; raises DRError naming `what`.
    """
    if hasher is not None:
        source = _HashingSource(source, hasher)
    reader = DecryptingReader(source, provider, context=context, what=what)
    # One reused plaintext buffer: checking a 1 GB artifact allocates one chunk, not 1000.
    scratch = bytearray(reader.header.chunk_size) if hasattr(AESGCM, "decrypt_into") else None
    try:
        while reader._open_chunk(into=scratch) is not None:  # pylint: disable=protected-access
            pass
    finally:
        reader.close()
    return {"plaintext_bytes": reader.plaintext_bytes, "ciphertext_bytes": reader.ciphertext_bytes,
            "chunks": reader.chunks}
