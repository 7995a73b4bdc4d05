# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the logical-backup unit tests share (test_pgdump, test_logicalrestore): a payload
as COPY would write it, an artifact stored through pgdump.ArtifactWriter with its manifest,
local locations and a key file. Not a test module itself: the tests load it by path.
"""

import os

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import catalog, pgdump
from ansible_collections.auditron.dr.plugins.module_utils.common import format_time, utc_now
from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import generate_key_file
from ansible_collections.auditron.dr.plugins.module_utils.storage import LocalLocation


def payload_of(size, seed=b"auditron"):
    """Compressible but not trivial: numbered rows as COPY would write them, some noise."""
    rows = []
    total = 0
    number = 0
    while total < size:
        row = b"%d\tINV-%010d\t%d\tEUR\tpaid\t%s\n" % (
            number, number, number * 104729 % 1000000, os.urandom(8).hex().encode())
        rows.append(row)
        total += len(row)
        number += 1
    return (seed + b"".join(rows))[:size]


def store(locations, payload, provider=None, backup_id="auditron_20261124_020000", piece=700001):
    context = {"backup_id": backup_id, "database": "auditron", "purpose": pgdump.CONTEXT_PURPOSE}
    writer = pgdump.ArtifactWriter(locations, catalog.artifact_key(backup_id, provider is not None), provider,
                                   context, level=3, threads=2)
    for start in range(0, len(payload), piece):  # odd write sizes cross every internal boundary
        writer.write(memoryview(payload)[start:start + piece])
    done, failed = writer.close()
    manifest = {
        "format": catalog.MANIFEST_FORMAT, "format_version": 1, "id": backup_id, "series": "auditron",
        "database": "auditron", "started_at": format_time(utc_now()), "snapshot_at": format_time(utc_now()),
        "finished_at": format_time(utc_now()),
        "encryption": {"key": writer.key_reference, "context": writer.context},
        "artifacts": [{"name": "dump", "key": writer.key, "size": writer.stored_bytes, "sha256": writer.sha256,
                       "plaintext_bytes": len(payload)}],
        "tables": [],
    }
    for name in done:
        catalog.write_manifest([loc for loc in locations if loc.name == name][0], manifest)
    return manifest, done, failed


def entry_for(locations, manifest):
    return catalog.Catalog.load(locations).entry(manifest["id"])


@pytest.fixture
def key_file(tmp_path):
    path = str(tmp_path / "backup.key")
    generate_key_file(path)
    return path


@pytest.fixture
def places(tmp_path):
    return [LocalLocation(name, str(tmp_path / name)) for name in ("local", "s3-a")]


def flip_byte(location, key, offset):
    path = os.path.join(location.path, key)
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x40]))
