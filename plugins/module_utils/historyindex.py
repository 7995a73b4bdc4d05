# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The file history's index files: gzip JSON lines, one record per version, sorted by key.

A point's full index, its delta and a sync's ledger are all this format (the record fields
are described in filehistory.py). Written and read as streams, so memory does not grow with
the object count; reading checks the order, the gzip CRC and the sha256 the manifest holds,
so a damaged or truncated index is refused instead of restoring a wrong state.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import gzip
import hashlib
import json
import zlib

from ansible_collections.auditron.dr.plugins.module_utils import mirror, s3client
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError


class IndexWriter(object):
    """Streams sorted records into <endpoint>/<key> as gzip JSON lines; close() returns
    {"key", "entries", "bytes", "sha256"} for the manifest. Refuses records out of order."""

    def __init__(self, endpoint, key, part_size=s3client.DEFAULT_PART_SIZE):
        self.key = key
        self.uploader = endpoint.open_upload(key, content_type="application/gzip", part_size=part_size)
        self.hasher = hashlib.sha256()
        self.size = 0
        self.entries = 0
        self.last = None
        self.gzip = gzip.GzipFile(fileobj=self, mode="wb", mtime=0)

    # GzipFile's sink
    def write(self, data):
        self.hasher.update(data)
        self.size += len(data)
        self.uploader.write(bytes(data))

    def flush(self):
        return None

    def add(self, record):
        if self.last is not None and record["k"] <= self.last:
            raise DRError("index %s: %r written after %r (records must be sorted)" % (self.key, record["k"], self.last))
        self.last = record["k"]
        self.gzip.write(json.dumps(record, separators=(",", ":"), sort_keys=True).encode("utf-8") + b"\n")
        self.entries += 1

    def close(self):
        self.gzip.close()
        self.uploader.close()
        return {"key": self.key, "entries": self.entries, "bytes": self.size, "sha256": self.hasher.hexdigest()}

    def abort(self):
        self.uploader.abort()


def read_index(endpoint, key, sha256=None):
    """Yield (key, record) from a gzip JSON-lines index, checking order, gzip CRC and sha256."""
    reader = endpoint.open_read(key)
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    hasher = hashlib.sha256()
    pending = b""
    previous = None
    what = "index %s at %s" % (key, endpoint.describe())
    try:
        while True:
            chunk = reader.read(s3client.READ_CHUNK)
            final = not chunk
            if chunk:
                hasher.update(chunk)
                try:
                    data = pending + inflate.decompress(chunk)
                except zlib.error as exc:
                    raise DRError("%s is damaged: %s" % (what, exc))
            else:
                data = pending + inflate.flush()
                if not inflate.eof:
                    raise DRError("%s is truncated" % what)
                if sha256 and hasher.hexdigest() != sha256:
                    raise DRError("%s does not match the sha256 in its manifest" % what)
            lines = data.split(b"\n")
            pending = lines.pop() if not final else b""
            for line in lines:
                if not line:
                    continue
                record = json.loads(line.decode("utf-8"))
                if previous is not None and record["k"] <= previous:
                    raise DRError("%s is not sorted (%r after %r)" % (what, record["k"], previous))
                previous = record["k"]
                yield record["k"], record
            if final:
                return
    finally:
        reader.close()


def apply_delta(full, delta):
    """The state: a full index stream with a delta stream applied (both (key, record), sorted)."""
    for key, (base, change) in mirror.merge_sorted(full, delta):
        if change is not None:
            if not change[1].get("d"):
                yield key, change[1]
        else:
            yield key, base[1]


def combine_deltas(older, newer):
    """Two deltas against the same base as one (newer wins), deletion markers kept."""
    for key, (old, new) in mirror.merge_sorted(older, newer):
        yield key, (new if new is not None else old)[1]
