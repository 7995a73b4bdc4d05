# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for module_utils/pgdump.py without PostgreSQL: the artifact pipeline (zstd,
AES-256-GCM, sha256, fan-out) and its way back (verification, decryption into a spool or a
pipe), the spool's privacy and cleanup, bounded memory, and argument checks.

The database side (pg_dump, snapshots, pg_restore) is tested against the lab in
tests/integration/test_logical_backups.py.
"""

import datetime
import io
import os
import stat
import subprocess
import sys
import textwrap

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import catalog, pgdump
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, format_time, utc_now
from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import FileKeyProvider, generate_key_file
from ansible_collections.auditron.dr.plugins.module_utils.storage import LocalLocation

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


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


def test_encrypted_round_trip_through_every_location(places, key_file):
    payload = payload_of(3 * 1024 * 1024 + 17)
    manifest, done, failed = store(places, payload, FileKeyProvider(key_file))
    assert list(done) == ["local", "s3-a"] and failed == {}
    artifact = manifest["artifacts"][0]
    assert artifact["key"].endswith(".dump.zst.enc") and artifact["size"] < len(payload)
    assert manifest["encryption"]["key"]["provider"] == "file"
    entry = entry_for(places, manifest)
    for location in places:
        detail = pgdump.verify_copy(location, entry, {"key_file": key_file})
        assert "every GCM tag" in detail
        sink = io.BytesIO()
        written, sha256 = pgdump._decompressing_copy(entry, location, {"key_file": key_file}, sink)
        assert sink.getvalue() == payload and written == len(payload) and sha256 == artifact["sha256"]
    # The stored bytes never contain the plaintext.
    with open(os.path.join(places[0].path, artifact["key"]), "rb") as handle:
        assert b"INV-0000000001" not in handle.read()


def test_unencrypted_round_trip_and_its_checksum(places):
    payload = payload_of(500000)
    manifest, _done, _failed = store(places, payload)
    artifact = manifest["artifacts"][0]
    assert artifact["key"].endswith(".dump.zst") and manifest["encryption"]["key"] is None
    entry = entry_for(places, manifest)
    assert "size (unencrypted)" in pgdump.verify_copy(places[0], entry, None)
    flip_byte(places[1], artifact["key"], artifact["size"] // 2)
    with pytest.raises(DRError) as err:
        pgdump.verify_copy(places[1], entry, None)
    assert "differs from the manifest" in str(err.value) and "s3-a" in str(err.value)


def test_a_flipped_byte_is_found_and_named(places, key_file):
    manifest, _done, _failed = store(places, os.urandom(2 * 1024 * 1024), FileKeyProvider(key_file))
    key = manifest["artifacts"][0]["key"]
    flip_byte(places[1], key, 1024 * 1024 + 5)
    entry = entry_for(places, manifest)
    with pytest.raises(DRError) as err:
        pgdump.verify_copy(places[1], entry, {"key_file": key_file})
    message = str(err.value)
    assert "\n" not in message
    assert manifest["id"] in message and "location s3-a" in message and "authentication tag mismatch" in message
    sink = io.BytesIO()
    with pytest.raises(DRError, match="authentication tag mismatch"):
        pgdump._decompressing_copy(entry, places[1], {"key_file": key_file}, sink)
    assert len(sink.getvalue()) < 2 * 1024 * 1024  # nothing after the bad chunk reached the sink
    pgdump.verify_copy(places[0], entry, {"key_file": key_file})  # the other copy is fine


def test_truncated_artifact_and_wrong_key_are_named(places, key_file, tmp_path):
    manifest, _done, _failed = store(places, payload_of(800000), FileKeyProvider(key_file))
    key = manifest["artifacts"][0]["key"]
    with open(os.path.join(places[1].path, key), "r+b") as handle:
        handle.truncate(manifest["artifacts"][0]["size"] - 100)
    entry = entry_for(places, manifest)
    with pytest.raises(DRError) as err:
        pgdump.verify_copy(places[1], entry, {"key_file": key_file})
    assert "truncated" in str(err.value) and manifest["id"] in str(err.value)
    other_key = str(tmp_path / "other.key")
    generate_key_file(other_key)
    with pytest.raises(DRError) as err:
        pgdump.verify_copy(places[0], entry, {"key_file": other_key})
    assert "wrong key" in str(err.value) and "location local" in str(err.value) and manifest["id"] in str(err.value)
    with pytest.raises(DRError, match="is encrypted .* give the encryption option"):
        pgdump.verify_copy(places[0], entry, None)


def test_a_failing_location_is_dropped_and_named(tmp_path, key_file):
    good = LocalLocation("local", str(tmp_path / "good"))
    bad = LocalLocation("s3-broken", "/proc/auditron-cannot-write")
    manifest, done, failed = store([good, bad], payload_of(200000), FileKeyProvider(key_file))
    assert list(done) == ["local"] and list(failed) == ["s3-broken"]
    assert "s3-broken" in failed["s3-broken"]
    with pytest.raises(DRError, match="could not be written to any location"):
        store([bad], payload_of(1000), FileKeyProvider(key_file))
    assert manifest["artifacts"][0]["size"] > 0


def test_spool_is_private_and_always_removed(tmp_path):
    with pgdump._Spool(str(tmp_path)) as spool:
        handle = spool.open()
        handle.write(b"archive")
        spool.close()
        assert stat.S_IMODE(os.stat(spool.directory).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(spool.path).st_mode) == 0o600
        assert os.path.dirname(spool.directory) == str(tmp_path)
        directory = spool.directory
    assert not os.path.exists(directory)
    with pytest.raises(RuntimeError):
        with pgdump._Spool(str(tmp_path)) as spool:
            spool.open().write(b"half")
            directory = spool.directory
            raise RuntimeError("pg_restore died")
    assert not os.path.exists(directory) and os.listdir(str(tmp_path)) == []
    with pytest.raises(DRError, match="free; the archive needs"):
        pgdump._Spool(str(tmp_path), needed_bytes=1 << 60)
    assert os.listdir(str(tmp_path)) == []
    with pytest.raises(DRError, match="spool_dir .* does not exist"):
        pgdump._Spool(str(tmp_path / "nope"))


def test_read_ahead_passes_data_and_errors_through():
    data = os.urandom(3 * 1024 * 1024 + 5)
    reader = pgdump._ReadAhead(io.BytesIO(data), block=1 << 20, depth=2)
    pieces = []
    while True:
        piece = reader.read(300000)
        if not piece:
            break
        pieces.append(piece)
    reader.close()
    assert b"".join(pieces) == data

    class Failing(object):
        def __init__(self):
            self.calls = 0

        def read(self, count):
            self.calls += 1
            if self.calls > 2:
                raise DRError("location s3-a: download failed at byte 2")
            return b"x" * count

    reader = pgdump._ReadAhead(Failing(), block=10, depth=1)
    assert reader.read(10) == b"x" * 10 and reader.read(10) == b"x" * 10
    with pytest.raises(DRError, match="download failed"):
        reader.read(10)
    reader.close()


def test_small_helpers():
    assert pgdump._conninfo_dbname("it's a \\ db") == "dbname='it\\'s a \\\\ db'"
    assert pgdump._part_size(100 << 20) == 5 << 20
    assert pgdump._part_size(500 << 30) == ((2 * (500 << 30) // 9000 + (1 << 20) - 1) >> 20) << 20
    groups = pgdump._split([{"name": n, "bytes": b} for n, b in (("a", 100), ("b", 60), ("c", 50), ("d", 1))], 2)
    assert sorted(sum(t["bytes"] for t in g) for g in groups) == [101, 110]
    argv = pgdump._pg_restore_argv("pg_restore", "t", 2, [{"schema": "public", "name": 'In"voice'}], True, "/x")
    assert argv == ["pg_restore", "--exit-on-error", "--no-password", "--dbname=dbname='t'", "--jobs=2",
                    "--no-owner", "--no-privileges", "--schema=public", '--table=In"voice', "/x"]


def test_table_subsets_are_checked_against_the_manifest():
    entry = catalog.BackupEntry("auditron_20261124_020000")
    entry.manifest = {"tables": [{"schema": "public", "name": "Invoice"}, {"schema": "archive", "name": "Invoice"},
                                 {"schema": "public", "name": "User"}]}
    assert pgdump._check_tables(entry, None) is None
    assert pgdump._check_tables(entry, ["User", "archive.Invoice"]) == [
        {"schema": "public", "name": "User"}, {"schema": "archive", "name": "Invoice"}]
    with pytest.raises(DRError, match="ambiguous .* name the schema"):
        pgdump._check_tables(entry, ["Invoice"])
    with pytest.raises(DRError, match="'Invoice; DROP TABLE x' is not in backup auditron_20261124_020000"):
        pgdump._check_tables(entry, ["Invoice; DROP TABLE x"])


def test_arguments_are_refused_before_anything_runs():
    with pytest.raises(DRError, match="encryption is required"):
        pgdump.backup({}, [{"name": "local", "type": "local", "path": "/tmp/x"}], encryption=None)
    with pytest.raises(DRError, match="exactly one of backup_id, latest or before .got none"):
        pgdump.restore({}, [], "target")
    with pytest.raises(DRError, match="got backup_id, latest"):
        pgdump.restore({}, [], "target", backup_id="auditron_20261124_020000", latest=True)
    with pytest.raises(DRError, match="not a logical backup id"):
        pgdump.restore({}, [{"name": "l", "type": "local", "path": "/tmp"}], "target", backup_id="auditron_latest")
    with pytest.raises(DRError, match="no backup location given"):
        pgdump.restore({}, [], "target", latest=True)
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


def test_candidates_are_read_only_as_far_as_needed():
    pulled = []

    def source():
        for number in range(5):
            pulled.append(number)
            yield number

    candidates = pgdump._Candidates(source())
    assert candidates and candidates[0] == 0 and pulled == [0]
    assert candidates[:1] == [0] and pulled == [0]
    assert next(iter(candidates)) == 0 and pulled == [0]
    assert list(candidates) == [0, 1, 2, 3, 4]
    assert not pgdump._Candidates(iter([]))
