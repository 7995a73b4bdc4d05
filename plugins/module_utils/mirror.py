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

import collections
import fnmatch
import hashlib
import heapq
import json
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.auditron.dr.plugins.module_utils import retry
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, first_line, human_bytes
from ansible_collections.auditron.dr.plugins.module_utils.s3client import (
    DEFAULT_PART_SIZE, DEFAULT_RETRIES, MIB, MIN_PART_SIZE, READ_CHUNK, EndpointDown, Entry, S3Endpoint,
    SourceVanished, is_plain_md5)


DEFAULT_MULTIPART_THRESHOLD = 256 * MIB
MAX_PARTS = 10000
COPY_OBJECT_LIMIT = 5 * 1024 * MIB          # CopyObject's limit on AWS; larger ones go by parts
DEFAULT_THREADS = 16

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


# ---------------------------------------------------------------------------------------------
# Errors

class IntegrityError(DRError):
    """Bytes read or written do not match their hash: retried, then reported."""


class ListingOrderError(Exception):
    """A listing was not in UTF-8 binary order; the run starts over on listings sorted on disk."""

    def __init__(self, what, previous, key):
        super(ListingOrderError, self).__init__("%s listed %r after %r: not in UTF-8 binary order" % (
            what, key, previous))
        self.what = what


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

    def errors(self, listing_error=None):
        """The run's error lines: a listing that failed, then the abort or the count of failed
        objects with the first of them (sync and restore, of the mirror and of the history)."""
        errors = [listing_error.message] if listing_error is not None else []
        if self.abort is not None:
            errors.append(self.abort.message)
        elif self.failure_count:
            errors.append("%d object(s) failed; first: %s: %s" % (
                self.failure_count, self.failures[0]["key"], self.failures[0]["error"]))
        return errors

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
        retry.backoff(attempt)


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
    errors = executor.errors(listing_error)
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


def check_transfer_params(params):
    """The copy options of object_mirror and file_history (base.transfer_argument_spec) and
    their delete guard, checked before anything is listed or copied."""
    if params["part_size_mb"] < 5:
        raise DRError("part_size_mb must be at least 5 (S3's smallest multipart part), got %d" % params["part_size_mb"])
    if params["threads"] < 1:
        raise DRError("threads must be at least 1")
    if not 0 <= params["max_delete_percent"] <= 100:
        raise DRError("max_delete_percent must be between 0 and 100")


def result_or_error(result):
    """A sync's or restore's result as a module returns it: a run that failed carries its error
    in `msg` (the engine returns rather than raises, to keep its counts), raised here as DRError
    with the rest of the result as details."""
    message = result.pop("msg", None)
    if message:
        raise DRError(message, **result)
    return result


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
