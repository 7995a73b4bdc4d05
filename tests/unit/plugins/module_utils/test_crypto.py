# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for module_utils/crypto.py: the streaming envelope encryption (round trips, the
format, and every kind of tampering). Its key sources: test_keyproviders.py.
"""

import ast
import hashlib
import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import crypto
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.crypto import (
    DecryptingReader, EncryptingWriter, read_header, verify_stream)
from tests.unit.plugins.module_utils.crypto_fixtures import (  # noqa: F401 pylint: disable=unused-import
    CONTEXT, PLAINTEXT, SMALL, WHAT, RecordingSink, encrypt, flip, key_path, layout, provider, read_until_error,
    sealed)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]
CRYPTO_SOURCE = REPO / "plugins" / "module_utils" / "crypto.py"


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
from ansible_collections.auditron.dr.plugins.module_utils import crypto, keyproviders
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
assert not keyproviders.HAS_CRYPTOGRAPHY and keyproviders.CRYPTOGRAPHY_IMPORT_ERROR
assert not keyproviders.HAS_BOTO3 and not keyproviders.HAS_REQUESTS
try:
    crypto.EncryptingWriter(None, None)
except DRError as exc:
    assert "cryptography" in str(exc), exc
    print("ok")
"""
    completed = subprocess.run([sys.executable, "-c", script, str(REPO / ".collections")], capture_output=True,
                               text=True, timeout=60, check=False)
    assert completed.returncode == 0 and completed.stdout.strip() == "ok", completed.stderr
