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

The data key of each stream comes from a key provider (a key file, AWS KMS, Vault transit):
keyproviders.py, with the encryption context rules and the key references written into the
header.

Messages are one line, name the artifact (`what`) and the key source, and never contain key
material or tokens.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import io
import json
import os
import struct

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError:
    pass  # keyproviders.HAS_CRYPTOGRAPHY tells; require_cryptography() refuses before either name is used

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, first_line
from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import (
    ALGORITHM, DATA_KEY_BYTES, TAG_BYTES, canonical_context, context_bytes, require_cryptography, resolve_provider)

__all__ = [
    "DEFAULT_CHUNK_SIZE", "MAX_CHUNK_SIZE", "EncryptingWriter", "DecryptingReader", "verify_stream",
    "read_header",
]

MAGIC = b"ADRGCM"
FORMAT_VERSION = 1
DEFAULT_CHUNK_SIZE = 1 << 20
# A header is read before it can be authenticated: these caps keep a damaged one from
# making the reader allocate gigabytes.
MAX_CHUNK_SIZE = 64 << 20
MAX_META_LENGTH = 64 << 10

_FIXED_HEADER = struct.Struct(">6sBBI7sIH")
_FRAME = struct.Struct(">I")
_CHUNK_ID = struct.Struct(">IB")
_FINAL_BIT = 0x80000000
_LENGTH_MASK = 0x7FFFFFFF
_MAX_CHUNKS = 0xFFFFFFFF


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
        require_cryptography()
        if not isinstance(chunk_size, int) or not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise DRError("encryption chunk size must be between 1 and %d bytes, got %r" % (MAX_CHUNK_SIZE, chunk_size))
        if provider is None:
            raise DRError("encryption needs a key source (encryption.key_source is none)")
        self.context = canonical_context(context)
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
    context = canonical_context(meta["context"], "%s: encryption header" % what)
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
        require_cryptography()
        self.what = what
        self._source = source
        self.header = read_header(source, what)
        if context is not None:
            expected = canonical_context(context, what)
            if expected != self.header.context:
                raise DRError("%s was encrypted for context %s, expected %s (an artifact of another backup?)" % (
                    what, context_bytes(self.header.context).decode("ascii"),
                    context_bytes(expected).decode("ascii")))
        provider = resolve_provider(provider, self.header.key_reference, what)
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
