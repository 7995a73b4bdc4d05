# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for module_utils/pgdump.py without PostgreSQL: the artifact pipeline (zstd,
AES-256-GCM, sha256, fan-out), a failing location, bounded memory, ids, tools and argument
checks. The way back (verification, decryption into a spool or a pipe) is tested in
test_logicalrestore.py.

The database side (pg_dump, snapshots, pg_restore) is tested against the lab in
tests/integration/test_logical_backups.py.
"""

import datetime
import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import catalog, pgdump
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import FileKeyProvider
from ansible_collections.auditron.dr.plugins.module_utils.storage import LocalLocation

# Loaded by path, so that the tests do not depend on how tests/ is laid out as packages.
_SPEC = importlib.util.spec_from_file_location(
    "auditron_logical_samples", os.path.join(os.path.dirname(os.path.abspath(__file__)), "logical_samples.py"))
samples = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(samples)
key_file, places = samples.key_file, samples.places  # fixtures


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


def test_a_failing_location_is_dropped_and_named(tmp_path, key_file):
    good = LocalLocation("local", str(tmp_path / "good"))
    bad = LocalLocation("s3-broken", "/proc/auditron-cannot-write")
    manifest, done, failed = samples.store([good, bad], samples.payload_of(200000), FileKeyProvider(key_file))
    assert list(done) == ["local"] and list(failed) == ["s3-broken"]
    assert "s3-broken" in failed["s3-broken"]
    with pytest.raises(DRError, match="could not be written to any location"):
        samples.store([bad], samples.payload_of(1000), FileKeyProvider(key_file))
    assert manifest["artifacts"][0]["size"] > 0


def test_small_helpers():
    assert pgdump._part_size(100 << 20) == 5 << 20
    assert pgdump._part_size(500 << 30) == ((2 * (500 << 30) // 9000 + (1 << 20) - 1) >> 20) << 20
    groups = pgdump.split_by_size([{"name": n, "bytes": b} for n, b in (("a", 100), ("b", 60), ("c", 50), ("d", 1))], 2)
    assert sorted(sum(t["bytes"] for t in g) for g in groups) == [101, 110]


def test_arguments_are_refused_before_anything_runs():
    with pytest.raises(DRError, match="encryption is required"):
        pgdump.backup({}, [{"name": "local", "type": "local", "path": "/tmp/x"}], encryption=None)
    with pytest.raises(DRError, match="not found in bin_dir"):
        pgdump.find_tool("pg_dump", bin_dir="/nonexistent")


@pytest.mark.skipif(not os.path.exists("/usr/lib/postgresql/15/bin/pg_dump"), reason="PostgreSQL 15 client tools")
def test_tool_versions_are_read_and_checked():
    path, version = pgdump.find_tool("pg_dump", "/usr/lib/postgresql/15/bin", 15)
    assert version.startswith("pg_dump (PostgreSQL) 15")
    with pytest.raises(DRError, match="older than the server"):
        pgdump.find_tool("pg_dump", "/usr/lib/postgresql/15/bin", 99)
    assert pgdump.find_tool("pg_restore", None, 15)[1].startswith("pg_restore (PostgreSQL) 1")
    assert path.endswith("/pg_dump")


MEMORY_PROBE = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, sys.argv[1])
    from ansible_collections.auditron.dr.plugins.module_utils import pgdump
    from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import FileKeyProvider
    from ansible_collections.auditron.dr.plugins.module_utils.storage import LocalLocation

    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

    locations = [LocalLocation(name, os.path.join(sys.argv[2], name)) for name in ("a", "b")]
    block = bytearray(os.urandom(1 << 20))
    before = hwm()
    writer = pgdump.ArtifactWriter(locations, "auditron_20261124_020000.dump.zst.enc", FileKeyProvider(sys.argv[3]),
                                   {"backup_id": "auditron_20261124_020000"}, level=3, threads=2)
    for number in range(int(sys.argv[4])):
        block[0:8] = number.to_bytes(8, "big")  # no two blocks alike
        writer.write(block)
    writer.close()
    print(hwm() - before)
""")


@pytest.mark.slow
def test_pipeline_memory_does_not_grow_with_the_dump(tmp_path, key_file):
    """The same peak for 64 MiB and 512 MiB written through zstd, AES-GCM and two copies."""
    peaks = {}
    for mebibytes in (64, 512):
        out = tmp_path / ("out%d" % mebibytes)
        completed = subprocess.run(
            [sys.executable, "-c", MEMORY_PROBE, os.path.join(REPO, ".collections"), str(out), key_file,
             str(mebibytes)], capture_output=True, text=True, check=True, timeout=600)
        peaks[mebibytes] = int(completed.stdout.strip())
    print("pipeline peak growth", peaks)
    assert peaks[512] < 64 * 1024 * 1024, peaks
    assert peaks[512] < peaks[64] + 16 * 1024 * 1024, peaks


def test_backup_id_waits_for_a_free_second(places):
    moment = datetime.datetime.now(datetime.timezone.utc)
    taken = catalog.new_backup_id("auditron", moment)
    places[0].put_bytes(catalog.manifest_key(taken), b"{}")
    chosen = pgdump._fresh_backup_id("auditron", places, True)
    assert chosen != taken or catalog.parse_backup_id(chosen)[1] > moment.replace(microsecond=0)
