"""The sealing helpers test_crypto.py and test_keyproviders.py share: a key file and its
provider, a sink that records what the writer emits, a small sealed stream, and readers that
stop at the first error."""

import io
import struct

import pytest

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.crypto import (
    DecryptingReader, EncryptingWriter, read_header, verify_stream)
from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import FileKeyProvider, generate_key_file

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


PLAINTEXT = bytes(range(256)) + b"tail-of-dump"  # 4 full chunks of 64 and a final one of 12


@pytest.fixture
def sealed(provider):
    ciphertext, writer = encrypt(PLAINTEXT, provider, write_sizes=[10, 100, 3])
    assert writer.chunks == 5
    return ciphertext
