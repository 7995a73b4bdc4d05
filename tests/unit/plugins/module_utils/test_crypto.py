# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for module_utils/crypto.py: the streaming envelope encryption and its key sources.

KMS tests run against moto's in-process mock_aws, an AWS *emulator*, not AWS. Vault tests run
against vault_stub.VaultTransitStandIn, a small stand-in HTTP server, not Vault; one opt-in
test runs against a real Vault when AUDITRON_TEST_VAULT_ADDR / _TOKEN / _KEY are set.
"""

import ast
import base64
import hashlib
import importlib.util
import io
import json
import os
import socket
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import aws

from ansible_collections.auditron.dr.plugins.module_utils import crypto
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.crypto import (
    DecryptingReader, EncryptingWriter, FileKeyProvider, KmsKeyProvider, VaultTransitProvider, generate_key_file,
    key_fingerprint, provider_for_reference, provider_from_params, read_header, verify_stream)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]
CRYPTO_SOURCE = REPO / "plugins" / "module_utils" / "crypto.py"


def _load_stand_in():
    # Loaded by path so the test does not depend on how tests/ is laid out as packages.
    spec = importlib.util.spec_from_file_location("auditron_vault_stub", str(HERE / "vault_stub.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.VaultTransitStandIn


VaultTransitStandIn = _load_stand_in()

WHAT = "backup auditron_20261124_020000 at s3-us-east-1"
CONTEXT = {"backup_id": "auditron_20261124_020000", "purpose": "auditron-dr"}
SMALL = 64  # chunk size for the tampering tests: many chunks from little data


# ---------------------------------------------------------------------------------------------
# helpers

@pytest.fixture
def key_path(tmp_path):
    path = tmp_path / "kek"
    generate_key_file(str(path))
    return str(path)


@pytest.fixture
def provider(key_path):
    return FileKeyProvider(key_path)


class RecordingSink(object):
    """Collects what the writer emits and checks every write is immutable bytes."""

    def __init__(self):
        self.parts = []

    def write(self, data):
        assert isinstance(data, bytes), "sink got %s, not bytes" % type(data).__name__
        self.parts.append(data)
        return len(data)

    def getvalue(self):
        return b"".join(self.parts)


def encrypt(plaintext, provider, context=None, chunk_size=SMALL, write_sizes=None):
    sink = RecordingSink()
    writer = EncryptingWriter(sink, provider, context=CONTEXT if context is None else context,
                              chunk_size=chunk_size)
    if write_sizes is None:
        writer.write(plaintext)
    else:
        position, turn = 0, 0
        while position < len(plaintext):
            size = write_sizes[turn % len(write_sizes)]
            writer.write(plaintext[position:position + size])
            position += size
            turn += 1
    writer.close()
    return sink.getvalue(), writer


def layout(ciphertext):
    """(header bytes, [chunk records]) of a well-formed stream."""
    header = read_header(io.BytesIO(ciphertext))
    records, position = [], header.length
    while position < len(ciphertext):
        length = struct.unpack(">I", ciphertext[position:position + 4])[0] & 0x7FFFFFFF
        end = position + 4 + length + 16
        records.append(ciphertext[position:end])
        position = end
    return ciphertext[:header.length], records


def flip(data, index, mask=0x01):
    changed = bytearray(data)
    changed[index] ^= mask
    return bytes(changed)


def read_until_error(stream_bytes, provider, mode, context="expected"):
    """(plaintext released before the error, the DRError or None); context None accepts the header's."""
    context = CONTEXT if context == "expected" else context
    released = bytearray()
    try:
        if mode == "verify":
            verify_stream(io.BytesIO(stream_bytes), provider, context=context, what=WHAT)
            return bytes(released), None
        reader = DecryptingReader(io.BytesIO(stream_bytes), provider, context=context, what=WHAT)
        if mode == "read":
            while True:
                piece = reader.read(7)
                if not piece:
                    break
                released += piece
        else:
            scratch = bytearray(29)
            while True:
                count = reader.readinto(scratch)
                if not count:
                    break
                released += scratch[:count]
    except DRError as exc:
        return bytes(released), exc
    return bytes(released), None


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# round trips and format

@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 5 * 1024 + 7])
@pytest.mark.parametrize("write_sizes", [None, [1, 7, 1000, 3000, 13, 1024, 1025]])
def test_round_trip_sizes_and_odd_writes(provider, size, write_sizes):
    plaintext = os.urandom(size)
    ciphertext, writer = encrypt(plaintext, provider, chunk_size=1024, write_sizes=write_sizes)
    expected_chunks = max(1, -(-size // 1024))
    assert writer.chunks == expected_chunks
    assert writer.plaintext_bytes == size
    header_length = read_header(io.BytesIO(ciphertext)).length
    assert len(ciphertext) == writer.ciphertext_bytes == header_length + expected_chunks * (4 + 16) + size

    reader = DecryptingReader(io.BytesIO(ciphertext), provider, context=CONTEXT, what=WHAT)
    assert reader.read() == plaintext
    assert reader.read(10) == b""
    assert reader.chunks == expected_chunks

    # odd read sizes and readinto give the same bytes
    reader = DecryptingReader(io.BytesIO(ciphertext), provider, context=CONTEXT, what=WHAT)
    pieces, sizes, turn = [], [3, 1000, 1, 2049], 0
    while True:
        piece = reader.read(sizes[turn % 4])
        if not piece:
            break
        assert len(piece) <= sizes[turn % 4]
        pieces.append(piece)
        turn += 1
    assert b"".join(pieces) == plaintext
    reader = DecryptingReader(io.BytesIO(ciphertext), provider, context=CONTEXT, what=WHAT)
    scratch, collected = bytearray(777), bytearray()
    while True:
        count = reader.readinto(scratch)
        if not count:
            break
        collected += scratch[:count]
    assert bytes(collected) == plaintext


def test_empty_plaintext_is_one_final_chunk(provider):
    ciphertext, writer = encrypt(b"", provider)
    records = layout(ciphertext)[1]
    assert writer.chunks == 1 and len(records) == 1
    assert records[0][:4] == struct.pack(">I", 0x80000000)
    assert DecryptingReader(io.BytesIO(ciphertext), provider, what=WHAT).read() == b""


def test_default_chunk_size_round_trip_with_memoryview_and_bytearray_input(provider):
    plaintext = os.urandom(3 * (1 << 20) + 5)
    sink = RecordingSink()
    with EncryptingWriter(sink, provider, context=CONTEXT) as writer:
        view = memoryview(bytearray(plaintext))
        writer.write(view[:100])
        writer.write(bytearray(view[100:(1 << 20) + 3]))
        writer.write(view[(1 << 20) + 3:])
    assert writer.chunks == 4 and writer.chunk_size == 1 << 20
    assert DecryptingReader(io.BytesIO(sink.getvalue()), provider, context=CONTEXT).read() == plaintext


def test_no_plaintext_reaches_the_sink(provider):
    marker = b"INSERT INTO \"Invoice\" VALUES ('SECRET-ROW');\n"
    ciphertext = encrypt(marker * 200, provider, write_sizes=[5, 64, 1000])[0]
    assert b"SECRET-ROW" not in ciphertext
    assert b"INSERT" not in ciphertext


def test_key_reference_and_header_say_what_was_used(provider, key_path):
    ciphertext, writer = encrypt(b"x" * 100, provider)
    reference = writer.key_reference
    assert reference == {"provider": "file", "fingerprint": provider.fingerprint, "algorithm": "AES-256-GCM",
                         "wrap": "AES-256-GCM"}
    json.dumps(reference)
    header = read_header(io.BytesIO(ciphertext))
    assert header.key_reference == reference and header.context == CONTEXT and header.chunk_size == SMALL
    assert ciphertext[:8] == b"ADRGCM\x01\x00"
    # two streams never share a data key or nonce prefix
    other = encrypt(b"x" * 100, provider)[0]
    assert read_header(io.BytesIO(other)).wrapped_key != header.wrapped_key
    assert read_header(io.BytesIO(other)).nonce_prefix != header.nonce_prefix


def test_writer_rejects_bad_chunk_size_and_use_after_close(provider):
    for size in (0, -1, crypto.MAX_CHUNK_SIZE + 1, 1.5):
        with pytest.raises(DRError, match="chunk size"):
            EncryptingWriter(RecordingSink(), provider, chunk_size=size)
    writer = EncryptingWriter(RecordingSink(), provider)
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError):
        writer.write(b"late")


def test_failed_pipeline_leaves_a_stream_readers_call_truncated(provider):
    sink = RecordingSink()
    with pytest.raises(RuntimeError):
        with EncryptingWriter(sink, provider, context=CONTEXT, chunk_size=SMALL) as writer:
            writer.write(os.urandom(SMALL * 3))
            raise RuntimeError("pg_dump died")
    error = read_until_error(sink.getvalue(), provider, "read")[1]
    assert error is not None and "truncated" in str(error) and WHAT in str(error)


def test_context_must_match_and_be_strings(provider):
    ciphertext = encrypt(b"data", provider)[0]
    with pytest.raises(DRError) as err:
        DecryptingReader(io.BytesIO(ciphertext), provider, context={"backup_id": "other", "purpose": "auditron-dr"},
                         what=WHAT)
    assert WHAT in str(err.value) and "context" in str(err.value)
    with pytest.raises(DRError, match="strings"):
        EncryptingWriter(RecordingSink(), provider, context={"backup_id": 7})
    # None accepts the header's context
    assert DecryptingReader(io.BytesIO(ciphertext), provider, context=None).read() == b"data"


# ---------------------------------------------------------------------------------------------
# tampering: every change is a DRError naming the artifact, and the bad chunk stays unreleased

PLAINTEXT = bytes(range(256)) + b"tail-of-dump"  # 4 full chunks of 64 and a final one of 12


@pytest.fixture
def sealed(provider):
    ciphertext, writer = encrypt(PLAINTEXT, provider, write_sizes=[10, 100, 3])
    assert writer.chunks == 5
    return ciphertext


def _tamper_cases(ciphertext):
    header, records = layout(ciphertext)
    body = b"".join(records)

    def with_records(chosen):
        return header + b"".join(chosen)

    chunk2 = bytearray(records[2])
    chunk2[4 + 10] ^= 0x80
    tag2 = bytearray(records[2])
    tag2[-1] ^= 0x01
    frame1 = bytearray(records[1])
    frame1[0] ^= 0x80  # claim chunk 1 is final
    return [
        # (name, stream, plaintext chunks that may be released, words the message must hold)
        ("flip byte in chunk body", with_records(records[:2] + [bytes(chunk2)] + records[3:]), 2, "chunk 2"),
        ("flip byte in tag", with_records(records[:2] + [bytes(tag2)] + records[3:]), 2, "chunk 2"),
        ("set final flag on chunk 1", with_records(records[:1] + [bytes(frame1)] + records[2:]), 1, "chunk 1"),
        ("swap chunks 1 and 2", with_records([records[0], records[2], records[1]] + records[3:]), 1, "chunk 1"),
        ("duplicate chunk 1", with_records(records[:2] + [records[1]] + records[2:]), 2, "chunk 2"),
        ("drop chunk 2", with_records(records[:2] + records[3:]), 2, "chunk 2"),
        ("drop final chunk", with_records(records[:4]), 4, "truncated"),
        ("cut inside final chunk", ciphertext[:-5], 4, "truncated inside chunk 4"),
        ("cut inside chunk 1 frame", header + records[0] + records[1][:2], 1, "truncated inside chunk 1"),
        ("append garbage", ciphertext + b"\x00garbage", 4, "after its final chunk"),
        ("append a copy of the final chunk", ciphertext + records[4], 4, "after its final chunk"),
        ("only the header", header, 0, "truncated"),
        ("cut inside header", header[:20], 0, "truncated inside its encryption header"),
        ("empty object", b"", 0, "not an auditron-dr encrypted stream"),
        ("a plaintext dump", b"PGDMP" + body, 0, "not an auditron-dr encrypted stream"),
        ("chunk from another stream spliced in", None, 0, "chunk 0"),
    ]


@pytest.mark.parametrize("mode", ["read", "readinto", "verify"])
def test_every_kind_of_tampering_is_detected_before_release(provider, sealed, mode):
    other = encrypt(PLAINTEXT, provider)[0]
    other_records = layout(other)[1]
    header, records = layout(sealed)
    failures = []
    for name, stream, good_chunks, words in _tamper_cases(sealed):
        if stream is None:
            stream = header + other_records[0] + b"".join(records[1:])
        released, error = read_until_error(stream, provider, mode)
        if error is None:
            failures.append("%s: no error" % name)
            continue
        message = str(error)
        if WHAT not in message or words not in message or "\n" in message:
            failures.append("%s: message %r" % (name, message))
        if mode != "verify" and released != PLAINTEXT[:good_chunks * SMALL]:
            failures.append("%s: released %d bytes, expected %d" % (name, len(released), good_chunks * SMALL))
    assert not failures, failures


def test_every_header_byte_is_protected(provider, sealed):
    header = layout(sealed)[0]
    failures = []
    for index in range(len(header)):
        for mask in (0x01, 0x80):
            released, error = read_until_error(flip(sealed, index, mask), provider, "read")
            if error is None or WHAT not in str(error) or released:
                failures.append((index, mask, len(released), str(error)))
    assert not failures, failures[:5]


def test_errors_are_sticky(provider, sealed):
    header, records = layout(sealed)
    reader = DecryptingReader(io.BytesIO(header + records[0] + records[2]), provider, what=WHAT)
    assert reader.read(SMALL) == PLAINTEXT[:SMALL]
    with pytest.raises(DRError) as first:
        reader.read(1)
    with pytest.raises(DRError) as second:
        reader.read(1)
    assert first.value is second.value


def test_verify_stream_hashes_the_ciphertext_in_the_same_pass(provider, sealed):
    hasher = hashlib.sha256()
    result = verify_stream(io.BytesIO(sealed), provider, context=CONTEXT, what=WHAT, hasher=hasher)
    assert result == {"plaintext_bytes": len(PLAINTEXT), "ciphertext_bytes": len(sealed), "chunks": 5}
    assert hasher.hexdigest() == hashlib.sha256(sealed).hexdigest()


class TrickleSource(object):
    """Returns at most 5 bytes a read, as a slow network body does."""

    def __init__(self, data):
        self._data = io.BytesIO(data)

    def read(self, count=-1):
        return self._data.read(5 if count < 0 else min(count, 5))


def test_short_reads_from_the_source_are_fine(provider, sealed):
    assert DecryptingReader(TrickleSource(sealed), provider, context=CONTEXT).read() == PLAINTEXT
    assert verify_stream(TrickleSource(sealed), provider)["chunks"] == 5


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
    monkeypatch.setattr(crypto, "HAS_REQUESTS", False)
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
    ast.parse(CRYPTO_SOURCE.read_text(), feature_version=(3, 8))


def test_imports_cleanly_without_third_party_libraries():
    script = r"""
import sys
class Block(object):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("cryptography", "boto3", "botocore", "requests"):
            raise ImportError("blocked for the test: " + name)
        return None
sys.meta_path.insert(0, Block())
sys.path.insert(0, sys.argv[1])
from ansible_collections.auditron.dr.plugins.module_utils import crypto
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
assert not crypto.HAS_CRYPTOGRAPHY and crypto.CRYPTOGRAPHY_IMPORT_ERROR
assert not crypto.HAS_BOTO3 and not crypto.HAS_REQUESTS
try:
    crypto.EncryptingWriter(None, None)
except DRError as exc:
    assert "cryptography" in str(exc), exc
    print("ok")
"""
    completed = subprocess.run([sys.executable, "-c", script, str(REPO / ".collections")], capture_output=True,
                               text=True, timeout=60, check=False)
    assert completed.returncode == 0 and completed.stdout.strip() == "ok", completed.stderr
