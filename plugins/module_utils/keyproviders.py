# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the data keys of encrypted streams (crypto.py) come from, and how they are unwrapped.

Each stream gets its own random 256-bit data key; a key provider wraps it under a
key-encryption key it holds, and only the wrapped form is stored in the stream header:

- `FileKeyProvider`: a 32-byte key in a local file (mode 0600), AES-256-GCM key wrap;
- `KmsKeyProvider`: an AWS KMS key (or an AWS-compatible endpoint), EncryptionContext bound;
- `VaultTransitProvider`: a Vault transit key, optionally derived from the context.

Providers share one small interface (see KeyProvider):
``new_data_key(context) -> (data_key, wrapped_key, key_reference)`` and
``unwrap(wrapped_key, key_reference, context, what) -> data_key``. The key reference is a
JSON-able dict without secrets (provider kind, key id or fingerprint, algorithm) that goes
into the stream header and the backup manifest, so a restore can find the right key source
even when the site's default has changed since (provider_for_reference).

`provider_from_params` builds the provider the Ansible `encryption` option describes
(base.encryption_suboptions). The encryption context (a str -> str map bound into the key
wrapping and the header) is checked here too.

Messages are one line, name the artifact (`what`) and the key source, and never contain key
material or tokens.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import errno
import hashlib
import json
import os
import re
import ssl
import stat
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
    "ALGORITHM", "HAS_CRYPTOGRAPHY", "CRYPTOGRAPHY_IMPORT_ERROR", "HAS_BOTO3", "BOTO3_IMPORT_ERROR", "HAS_REQUESTS",
    "KeyProvider", "FileKeyProvider", "KmsKeyProvider", "VaultTransitProvider", "generate_key_file",
    "load_key_file", "key_fingerprint", "provider_from_params", "provider_for_reference", "resolve_provider",
    "describe_reference", "canonical_context", "context_bytes", "require_cryptography",
]

# The algorithm of the data (crypto.py) and of the key-file wrap: key references record it.
ALGORITHM = "AES-256-GCM"
DATA_KEY_BYTES = 32
TAG_BYTES = 16

_FINGERPRINT_LABEL = b"auditron-dr key-file fingerprint v1\x00"
_FILE_WRAP_LABEL = b"auditron-dr key-file wrap v1\x00"
_FILE_WRAPPED_BYTES = 12 + DATA_KEY_BYTES + TAG_BYTES
_HEX_KEY_RE = re.compile(br"^[0-9a-fA-F]{64}$")
_VAULT_CIPHERTEXT_RE = re.compile(r"^vault:v(\d+):")


def require_cryptography():
    if not HAS_CRYPTOGRAPHY:
        raise DRError("the cryptography Python library is required for backup encryption")


# ---------------------------------------------------------------------------------------------
# Encryption context: a small str -> str map bound into the key wrapping and the header.

def canonical_context(context, what="encryption context"):
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


def context_bytes(context):
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
        require_cryptography()
        self.path = path
        key = load_key_file(path)
        self.fingerprint = key_fingerprint(key)
        self._kek = AESGCM(key)

    def describe(self):
        return "key file %s (fingerprint %s)" % (self.path, self.fingerprint)

    def _wrap_aad(self, context):
        return _FILE_WRAP_LABEL + self.fingerprint.encode("ascii") + b"\x00" + context_bytes(context)

    def new_data_key(self, context):
        context = canonical_context(context)
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
                                     self._wrap_aad(canonical_context(context, what)))
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
        context = canonical_context(context)
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
        context = canonical_context(context, what)
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
            body["context"] = base64.b64encode(context_bytes(context)).decode("ascii")
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
        context = canonical_context(context)
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
        body = self._body_context({"ciphertext": ciphertext}, canonical_context(context, what))
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


def resolve_provider(provider, key_reference, what):
    if provider is None:
        raise DRError("%s is encrypted (%s) but no key source is configured" % (
            what, describe_reference(key_reference)))
    if isinstance(provider, Mapping):
        return provider_for_reference(key_reference, provider, what)
    return provider
