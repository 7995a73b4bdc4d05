# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for module_utils/keyproviders.py: the key sources of the envelope encryption
(key files, AWS KMS, Vault transit) and the providers built from the `encryption` option.

KMS tests run against moto's in-process mock_aws, an AWS *emulator*, not AWS. Vault tests run
against vault_stub.VaultTransitStandIn, a small stand-in HTTP server, not Vault; one opt-in
test runs against a real Vault when AUDITRON_TEST_VAULT_ADDR / _TOKEN / _KEY are set.
"""

import ast
import base64
import importlib.util
import io
import json
import os
import stat
import time
from pathlib import Path

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import aws, keyproviders
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.crypto import DecryptingReader, EncryptingWriter, read_header
from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import (
    FileKeyProvider, KmsKeyProvider, VaultTransitProvider, generate_key_file, key_fingerprint, provider_for_reference,
    provider_from_params)
from tests.unit.plugins.module_utils.crypto_fixtures import (  # noqa: F401 pylint: disable=unused-import
    CONTEXT, PLAINTEXT, WHAT, RecordingSink, encrypt, key_path, provider, read_until_error, sealed)
from tests.helpers.ports import closed_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]
KEYPROVIDERS_SOURCE = REPO / "plugins" / "module_utils" / "keyproviders.py"


def _load_stand_in():
    # Loaded by path so the test does not depend on how tests/ is laid out as packages.
    spec = importlib.util.spec_from_file_location("auditron_vault_stub", str(HERE / "vault_stub.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.VaultTransitStandIn


VaultTransitStandIn = _load_stand_in()


# ---------------------------------------------------------------------------------------------
# key files

def test_wrong_key_file_is_named_before_decryption(provider, sealed, tmp_path):
    other_path = str(tmp_path / "other-kek")
    other_fingerprint = generate_key_file(other_path)
    with pytest.raises(DRError) as err:
        DecryptingReader(io.BytesIO(sealed), FileKeyProvider(other_path), what=WHAT)
    message = str(err.value)
    assert "wrong key" in message and WHAT in message and other_path in message
    assert provider.fingerprint in message and other_fingerprint in message
    key_hex = Path(other_path).read_text().strip()
    assert key_hex not in message


@pytest.mark.parametrize("encode", [
    lambda key: key,
    lambda key: key.hex().encode(),
    lambda key: key.hex().upper().encode() + b"\n",
    base64.b64encode,
    lambda key: base64.b64encode(key) + b"\r\n",
], ids=["raw", "hex", "HEX-newline", "base64", "base64-crlf"])
def test_key_file_forms_all_read_the_same_key(tmp_path, encode):
    key = os.urandom(32)
    path = tmp_path / "kek"
    path.write_bytes(encode(key))
    path.chmod(0o600)
    assert FileKeyProvider(str(path)).fingerprint == key_fingerprint(key)


@pytest.mark.parametrize("content", [
    b"", os.urandom(31), os.urandom(33), b"ab" * 31 + b"\n", base64.b64encode(os.urandom(31)), b"z" * 64,
    os.urandom(5000),
], ids=["empty", "raw31", "raw33", "hex62", "base64-31", "not-hex", "huge"])
def test_key_file_of_wrong_size_is_refused(tmp_path, content):
    path = tmp_path / "kek"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(DRError) as err:
        FileKeyProvider(str(path))
    assert str(path) in str(err.value) and "32-byte key" in str(err.value)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o602])
def test_key_file_open_to_group_or_others_is_refused(key_path, mode):
    os.chmod(key_path, mode)
    with pytest.raises(DRError) as err:
        FileKeyProvider(key_path)
    assert key_path in str(err.value) and "chmod 600" in str(err.value) and "%04o" % mode in str(err.value)


def test_missing_key_file_and_directory(tmp_path):
    with pytest.raises(DRError, match="does not exist"):
        FileKeyProvider(str(tmp_path / "absent"))
    with pytest.raises(DRError, match="not a regular file"):
        FileKeyProvider(str(tmp_path))


def test_generate_key_file_is_private_and_never_overwrites(tmp_path):
    path = tmp_path / "kek"
    old_umask = os.umask(0)
    try:
        fingerprint = generate_key_file(str(path))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_bytes()
    assert len(text) == 65 and text.endswith(b"\n") and bytes.fromhex(text[:64].decode())
    assert FileKeyProvider(str(path)).fingerprint == fingerprint == key_fingerprint(bytes.fromhex(text[:64].decode()))
    with pytest.raises(DRError, match="already exists"):
        generate_key_file(str(path))
    assert path.read_bytes() == text


# ---------------------------------------------------------------------------------------------
# providers from params, and from a stream's own key reference

@pytest.mark.parametrize("params, message", [
    ({}, "encryption.key_file is required when encryption.key_source is file"),
    ({"key_source": "file", "key_file": None}, "encryption.key_file is required when encryption.key_source is file"),
    ({"key_source": "kms"}, "encryption.kms_key_id is required when encryption.key_source is kms"),
    ({"key_source": "vault", "vault_url": "https://vault:8200"},
     "encryption.vault_token and encryption.vault_transit_key are required when encryption.key_source is vault"),
    ({"key_source": "gpg"}, "encryption.key_source must be one of file, kms, vault, none"),
])
def test_provider_from_params_names_the_missing_option(params, message):
    with pytest.raises(DRError) as err:
        provider_from_params(params)
    assert str(err.value).startswith(message)


def test_provider_from_params_builds_each_kind(key_path):
    assert provider_from_params({"key_source": "none"}) is None
    assert isinstance(provider_from_params({"key_source": "file", "key_file": key_path}), FileKeyProvider)
    kms = provider_from_params({"key_source": "kms", "kms_key_id": "alias/auditron-dr", "aws": None})
    assert isinstance(kms, KmsKeyProvider) and kms.key_id == "alias/auditron-dr"
    vault = provider_from_params({"key_source": "vault", "vault_url": "https://vault:8200/", "vault_token": "s.XYZ",
                                  "vault_transit_key": "dr", "vault_transit_mount": None,
                                  "vault_namespace": "ops"})
    assert (vault.url, vault.mount, vault.key_name, vault.namespace) == ("https://vault:8200", "transit", "dr", "ops")
    assert "s.XYZ" not in repr(vault) and "s.XYZ" not in vault.describe()


def test_decrypting_with_params_follows_the_streams_key_reference(sealed, key_path):
    # The site default is now KMS, but this backup was made with the key file.
    params = {"key_source": "kms", "kms_key_id": "alias/new-default", "key_file": key_path}
    assert DecryptingReader(io.BytesIO(sealed), params, context=CONTEXT, what=WHAT).read() == PLAINTEXT
    with pytest.raises(DRError) as err:
        DecryptingReader(io.BytesIO(sealed), {"key_source": "kms", "kms_key_id": "alias/x"}, what=WHAT)
    assert "encryption.key_file is required to decrypt %s" % WHAT in str(err.value)
    with pytest.raises(DRError, match="no key source is configured"):
        DecryptingReader(io.BytesIO(sealed), None, what=WHAT)


def test_provider_of_another_kind_is_refused_by_name(sealed):
    vault = VaultTransitProvider("http://127.0.0.1:9", "token", "dr")
    with pytest.raises(DRError) as err:
        DecryptingReader(io.BytesIO(sealed), vault, what=WHAT)
    assert "was encrypted with key file fingerprint" in str(err.value) and "Vault transit key dr" in str(err.value)
    with pytest.raises(DRError, match="cannot use"):
        provider_for_reference({"provider": "gpg"}, {}, what=WHAT)


# ---------------------------------------------------------------------------------------------
# AWS KMS, against moto's mock_aws: an in-process AWS emulator, not AWS

AWS = {"access_key": "testing", "secret_key": "testing", "region": "us-east-1"}


@pytest.fixture
def kms_key(monkeypatch):
    """A KMS key with alias/auditron-dr inside moto's emulator."""
    moto = pytest.importorskip("moto")
    import boto3  # pylint: disable=import-outside-toplevel
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    # Clients come from one shared boto3 session (aws.boto_client); moto hooks into
    # sessions made after it starts, so the emulated tests get a session of their own.
    monkeypatch.setattr(aws, "_SESSION", None)
    with moto.mock_aws():
        kms = boto3.client("kms", region_name="us-east-1", aws_access_key_id="testing",
                           aws_secret_access_key="testing")
        key = kms.create_key(Description="auditron-dr test key (moto emulator)")["KeyMetadata"]
        kms.create_alias(AliasName="alias/auditron-dr", TargetKeyId=key["KeyId"])
        yield key


def test_kms_round_trip_records_the_key_arn(kms_key):
    """KMS via moto's emulator: data key from GenerateDataKey, unwrapped by Decrypt."""
    provider = KmsKeyProvider("alias/auditron-dr", **AWS)
    plaintext = os.urandom(5000)
    ciphertext, writer = encrypt(plaintext, provider, chunk_size=1024)
    assert writer.key_reference == {"provider": "kms", "key_id": kms_key["Arn"], "algorithm": "AES-256-GCM"}
    params = {"key_source": "file", "key_file": "/nonexistent", "aws": AWS}
    assert DecryptingReader(io.BytesIO(ciphertext), params, context=CONTEXT, what=WHAT).read() == plaintext


def test_kms_refuses_another_encryption_context(kms_key):
    """KMS via moto's emulator: the context is bound by KMS itself, not only by our header."""
    provider = KmsKeyProvider("alias/auditron-dr", **AWS)
    ciphertext = encrypt(b"rows", provider)[0]
    header = read_header(io.BytesIO(ciphertext))
    with pytest.raises(DRError) as err:
        provider.unwrap(header.wrapped_key, header.key_reference, {"backup_id": "another", "purpose": "auditron-dr"},
                        what=WHAT)
    assert WHAT in str(err.value) and kms_key["Arn"] in str(err.value)
    # the same through an edited header: the reader has no expected context, KMS still refuses
    edited = ciphertext.replace(b"auditron_20261124_020000", b"auditron_20261124_030000", 1)
    released, error = read_until_error(edited, provider, "read", context=None)
    assert error is not None and WHAT in str(error) and released == b""


def test_kms_unknown_key_is_named(kms_key):
    """KMS via moto's emulator: a key id that does not exist."""
    provider = KmsKeyProvider("alias/no-such-key", **AWS)
    with pytest.raises(DRError) as err:
        EncryptingWriter(RecordingSink(), provider, context=CONTEXT)
    message = str(err.value)
    assert "alias/no-such-key" in message and "kms.us-east-1.amazonaws.com" in message and "\n" not in message


def test_kms_endpoint_that_does_not_answer_fails_fast_in_one_line():
    endpoint = "http://127.0.0.1:%d" % closed_port()
    provider = KmsKeyProvider("alias/auditron-dr", endpoint_url=endpoint, max_attempts=2, connect_timeout=1,
                              read_timeout=2, **AWS)
    started = time.monotonic()
    with pytest.raises(DRError) as err:
        EncryptingWriter(RecordingSink(), provider, context=CONTEXT)
    assert time.monotonic() - started < 5
    message = str(err.value)
    assert "alias/auditron-dr" in message and endpoint in message and "does not answer" in message
    assert "\n" not in message and "Traceback" not in message


# ---------------------------------------------------------------------------------------------
# Vault transit, against VaultTransitStandIn: a stand-in HTTP server, not Vault

TOKEN = "hvs.stand-in-token-0123456789"


def test_vault_round_trip_sends_what_the_transit_api_expects():
    """Against the stand-in (not Vault): paths, token and namespace headers, JSON bodies."""
    with VaultTransitStandIn(token=TOKEN) as vault:
        provider = VaultTransitProvider(vault.url, TOKEN, "auditron-backups", namespace="dr-site")
        plaintext = os.urandom(3000)
        ciphertext, writer = encrypt(plaintext, provider, chunk_size=1000)
        assert writer.key_reference == {"provider": "vault", "mount": "transit", "key_name": "auditron-backups",
                                        "key_version": 1, "derived": False, "algorithm": "AES-256-GCM"}
        assert read_header(io.BytesIO(ciphertext)).wrapped_key.startswith(b"vault:v1:")
        assert DecryptingReader(io.BytesIO(ciphertext), provider, context=CONTEXT, what=WHAT).read() == plaintext
        datakey, decrypt = vault.requests
    assert datakey["path"] == "/v1/transit/datakey/plaintext/auditron-backups"
    assert datakey["json"] == {"bits": 256}
    assert decrypt["path"] == "/v1/transit/decrypt/auditron-backups"
    assert decrypt["json"] == {"ciphertext": read_header(io.BytesIO(ciphertext)).wrapped_key.decode()}
    for request in (datakey, decrypt):
        assert request["headers"]["x-vault-token"] == TOKEN
        assert request["headers"]["x-vault-namespace"] == "dr-site"
        assert request["headers"]["content-type"] == "application/json"


def test_vault_derived_key_gets_the_context_and_enforces_it():
    """Against the stand-in (not Vault): context goes as base64 only for derived keys."""
    with VaultTransitStandIn(token=TOKEN, keys={"dr": {"derived": True}}, mount="dr/transit") as vault:
        provider = VaultTransitProvider(vault.url, TOKEN, "dr", mount="/dr/transit/", derived=True)
        ciphertext, writer = encrypt(b"rows", provider)
        assert writer.key_reference["derived"] is True
        sent = vault.requests[0]
        assert sent["path"] == "/v1/dr/transit/datakey/plaintext/dr"
        assert json.loads(base64.b64decode(sent["json"]["context"])) == CONTEXT
        header = read_header(io.BytesIO(ciphertext))
        with pytest.raises(DRError) as err:
            provider.unwrap(header.wrapped_key, header.key_reference, {"backup_id": "another"}, what=WHAT)
        assert WHAT in str(err.value) and "message authentication failed" in str(err.value)
        # decrypting through params uses mount, key and derivation from the stream's reference
        params = {"key_source": "file", "vault_url": vault.url, "vault_token": TOKEN}
        assert DecryptingReader(io.BytesIO(ciphertext), params, what=WHAT).read() == b"rows"


def test_vault_refusals_name_the_key_and_never_the_token():
    """Against the stand-in (not Vault): bad token, unknown key, unreachable server, retry on 503."""
    with VaultTransitStandIn(token=TOKEN) as vault:
        with pytest.raises(DRError) as err:
            VaultTransitProvider(vault.url, "hvs.wrong-token", "auditron-backups").new_data_key(CONTEXT)[0]
        message = str(err.value)
        assert "403" in message and "permission denied" in message and "auditron-backups" in message
        assert "hvs.wrong-token" not in message and TOKEN not in message
        with pytest.raises(DRError, match="encryption key not found"):
            VaultTransitProvider(vault.url, TOKEN, "absent").new_data_key(CONTEXT)[0]
        vault.fail_next = [503]
        data_key = VaultTransitProvider(vault.url, TOKEN, "auditron-backups").new_data_key(CONTEXT)[0]
        assert len(data_key) == 32 and len(vault.requests) == 4
    url = "http://127.0.0.1:%d" % closed_port()
    started = time.monotonic()
    with pytest.raises(DRError) as err:
        VaultTransitProvider(url, TOKEN, "auditron-backups").new_data_key(CONTEXT)[0]
    assert time.monotonic() - started < 3
    assert url in str(err.value) and "does not answer" in str(err.value) and TOKEN not in str(err.value)


def test_vault_without_requests_uses_open_url(monkeypatch):
    """Against the stand-in (not Vault): the open_url path (no requests library) sends the same requests."""
    monkeypatch.setattr(keyproviders, "HAS_REQUESTS", False)
    with VaultTransitStandIn(token=TOKEN) as vault:
        provider = VaultTransitProvider(vault.url, TOKEN, "auditron-backups", namespace="ns1")
        ciphertext = encrypt(b"via urllib" * 50, provider)[0]
        assert DecryptingReader(io.BytesIO(ciphertext), provider).read() == b"via urllib" * 50
        with pytest.raises(DRError, match="403"):
            VaultTransitProvider(vault.url, "bad", "auditron-backups").new_data_key({})
        datakey, decrypt = vault.requests[:2]
    assert datakey["path"] == "/v1/transit/datakey/plaintext/auditron-backups" and datakey["json"] == {"bits": 256}
    assert decrypt["path"] == "/v1/transit/decrypt/auditron-backups"
    assert datakey["headers"]["x-vault-token"] == TOKEN and datakey["headers"]["x-vault-namespace"] == "ns1"


REAL_VAULT = all(os.environ.get(name) for name in ("AUDITRON_TEST_VAULT_ADDR", "AUDITRON_TEST_VAULT_TOKEN",
                                                   "AUDITRON_TEST_VAULT_KEY"))


@pytest.mark.skipif(not REAL_VAULT, reason="opt-in: set AUDITRON_TEST_VAULT_ADDR, AUDITRON_TEST_VAULT_TOKEN and "
                                           "AUDITRON_TEST_VAULT_KEY to run against a real Vault transit key")
def test_real_vault_round_trip():
    """Against a real Vault (opt-in): the provider works with the real transit API, not just the stand-in."""
    provider = VaultTransitProvider(
        os.environ["AUDITRON_TEST_VAULT_ADDR"], os.environ["AUDITRON_TEST_VAULT_TOKEN"],
        os.environ["AUDITRON_TEST_VAULT_KEY"], mount=os.environ.get("AUDITRON_TEST_VAULT_MOUNT", "transit"),
        namespace=os.environ.get("AUDITRON_TEST_VAULT_NAMESPACE"),
        ca_bundle=os.environ.get("AUDITRON_TEST_VAULT_CACERT"),
        derived=os.environ.get("AUDITRON_TEST_VAULT_DERIVED") == "1")
    plaintext = os.urandom(100000)
    ciphertext, writer = encrypt(plaintext, provider, chunk_size=4096)
    assert writer.key_reference["provider"] == "vault"
    assert DecryptingReader(io.BytesIO(ciphertext), provider, context=CONTEXT, what=WHAT).read() == plaintext


# ---------------------------------------------------------------------------------------------
# what ansible-test sanity will ask of the file

def test_source_is_python38_syntax():
    ast.parse(KEYPROVIDERS_SOURCE.read_text(), feature_version=(3, 8))
