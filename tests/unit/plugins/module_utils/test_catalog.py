# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for module_utils/catalog.py: manifests, per-location status, queries, verification
records and retention, on real local directories (no lab needed).

Backups here are real artifacts (pgdump.ArtifactWriter: zstd, AES-256-GCM with a key file,
sha256, fan-out) of made-up payloads, with manifests as pg_backup writes them.
"""

import datetime
import json
import os

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import catalog, logicalrestore, pgdump
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, format_time, parse_time
from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import FileKeyProvider, generate_key_file
from ansible_collections.auditron.dr.plugins.module_utils.storage import LocalLocation

NOW = parse_time("2026-11-24T12:00:00Z")
LATER = NOW + datetime.timedelta(minutes=1)  # retention's "now": after the newest snapshot


def stamp(moment):
    return moment.strftime("%Y%m%d_%H%M%S")


def make_backup(locations, moment, series="auditron", provider=None, payload=None, rows=None):
    """A backup as pg_backup leaves it: artifact in every location, then the manifest."""
    backup_id = "%s_%s" % (series, stamp(moment))
    payload = payload if payload is not None else (b"COPY rows %s\n" % backup_id.encode()) * 2000
    context = {"backup_id": backup_id, "database": series, "purpose": pgdump.CONTEXT_PURPOSE}
    writer = pgdump.ArtifactWriter(locations, catalog.artifact_key(backup_id, provider is not None), provider,
                                   context, level=3, threads=0)
    writer.write(payload)
    done, failed = writer.close()
    assert not failed
    manifest = {
        "format": catalog.MANIFEST_FORMAT, "format_version": 1, "kind": "logical", "id": backup_id,
        "series": series, "database": series, "started_at": format_time(moment),
        "snapshot_at": format_time(moment + datetime.timedelta(milliseconds=5)),
        "finished_at": format_time(moment + datetime.timedelta(seconds=3)),
        "encryption": {"algorithm": "AES-256-GCM" if provider else "none", "key": writer.key_reference,
                       "context": writer.context},
        "artifacts": [{"name": "dump", "key": writer.key, "size": writer.stored_bytes, "sha256": writer.sha256,
                       "plaintext_bytes": len(payload), "locations": dict((name, {"present": True}) for name in done)}],
        "tables": [{"schema": "public", "name": "Invoice", "rows": rows if rows is not None else 10}],
    }
    for location in locations:
        catalog.write_manifest(location, manifest)
    return manifest


@pytest.fixture
def places(tmp_path):
    return [LocalLocation(name, str(tmp_path / name)) for name in ("local", "s3-a", "s3-b")]


def test_ids_keys_and_series():
    moment = parse_time("2026-11-24T02:00:00Z")
    assert catalog.new_backup_id("auditron", moment) == "auditron_20261124_020000"
    assert catalog.parse_backup_id("auditron_20261124_020000") == ("auditron", moment)
    assert catalog.parse_backup_id("auditron_2026") is None
    assert catalog.parse_backup_id("auditron_20261399_020000") is None  # no 13th month
    assert catalog.parse_key("auditron_20261124_020000.manifest.json") == ("auditron_20261124_020000", "manifest")
    assert catalog.parse_key("auditron_20261124_020000.dump.zst.enc") == ("auditron_20261124_020000", "artifact")
    assert catalog.parse_key("auditron_20261124_020000.dump.zst") == ("auditron_20261124_020000", "artifact")
    assert catalog.parse_key("verifications/auditron_20261124_020000.json") == (
        "auditron_20261124_020000", "verification")
    assert catalog.parse_key(".auditron-probe/abc") == (None, None)
    assert catalog.series_for_database('my "db"') == "my--db-"
    assert catalog.series_for_database("_x") == "x"
    with pytest.raises(DRError, match="not a valid backup series"):
        catalog.check_series("../etc")
    with pytest.raises(DRError, match="not a logical backup id"):
        catalog.check_backup_id("latest")


def test_manifest_problems_name_what_is_missing(places):
    manifest = make_backup(places[:1], NOW)
    assert catalog.manifest_problems(manifest, manifest["id"]) == []
    broken = dict(manifest, artifacts=[dict(manifest["artifacts"][0], sha256="nope")], format_version=2)
    broken.pop("snapshot_at")
    problems = catalog.manifest_problems(broken, "auditron_20260101_000000")
    assert any("snapshot_at is missing" in p for p in problems)
    assert any("has no sha256" in p for p in problems)
    assert any("newer than this collection reads" in p for p in problems)
    assert any("object is named for" in p for p in problems)
    assert catalog.manifest_problems([], None) == ["not a JSON object"]


def test_status_per_location(places, tmp_path):
    local, region_a, region_b = places
    good = make_backup(places, NOW - datetime.timedelta(hours=2))
    key = good["artifacts"][0]["key"]
    region_a.delete([key])                                   # missing in one region
    with open(os.path.join(region_b.path, key), "r+b") as handle:  # cut short in the other
        handle.truncate(100)
    crashed_id = "auditron_%s" % stamp(NOW - datetime.timedelta(hours=1))
    local.put_bytes(catalog.artifact_key(crashed_id), b"half a dump")  # artifact, never a manifest
    unreachable = LocalLocation("offline", str(tmp_path / "not-mounted"))

    cat = catalog.Catalog.load(places + [unreachable])
    entry = cat.entry(good["id"])
    states = dict((name, state["status"]) for name, state in entry.locations.items())
    assert states == {"local": "present", "s3-a": "missing", "s3-b": "different", "offline": "unknown"}
    assert "100 bytes, the manifest says" in entry.locations["s3-b"]["detail"]
    assert entry.valid and entry.present_in == ["local"]
    crashed = cat.entry(crashed_id)
    assert crashed.locations["local"]["status"] == "incomplete"
    assert not crashed.valid and "incomplete" in crashed.why_invalid
    assert cat.unreachable == {"offline": "location offline: directory %s does not exist" % unreachable.path}
    assert cat.latest_valid().id == good["id"]  # the crashed one is newer, and never valid


def test_manifests_that_disagree_mark_the_location_different(places):
    manifest = make_backup(places, NOW)
    other = dict(manifest, artifacts=[dict(manifest["artifacts"][0], sha256="0" * 64)])
    catalog.write_manifest(places[2], other)
    entry = catalog.Catalog.load(places).entry(manifest["id"])
    assert entry.locations["local"]["status"] == "present"
    assert entry.locations["s3-b"]["status"] == "different"
    assert "its manifest says sha256 000" in entry.locations["s3-b"]["detail"]
    assert entry.valid


def test_latest_valid_latest_before_and_age(places):
    first = make_backup(places, NOW - datetime.timedelta(days=2))
    second = make_backup(places, NOW - datetime.timedelta(days=1))
    make_backup(places, NOW - datetime.timedelta(hours=1), series="other")
    newest = make_backup(places, NOW - datetime.timedelta(hours=3))
    for location in places:  # the newest loses its artifact everywhere: not valid
        location.delete([newest["artifacts"][0]["key"]])
    cat = catalog.Catalog.load(places, series="auditron")
    assert [e.id for e in cat.newest_first()] == [newest["id"], second["id"], first["id"]]
    assert cat.latest_valid().id == second["id"]
    assert cat.latest_before(parse_time(first["snapshot_at"])).id == first["id"]
    assert cat.latest_before(NOW - datetime.timedelta(days=1, seconds=1)).id == first["id"]
    assert cat.latest_before(NOW - datetime.timedelta(days=3)) is None
    result = catalog.catalog_result(cat, series="auditron", before=NOW - datetime.timedelta(hours=30), now=NOW)
    assert result["latest_valid_id"] == second["id"]
    assert result["latest_before_id"] == first["id"]
    assert result["age_of_latest_valid_seconds"] == pytest.approx(86400 - 0.005, abs=0.01)
    assert result["counts"] == {"valid": 2, "invalid": 1}
    assert catalog.Catalog.load(places).series_names() == ["auditron", "other"]


class CountingLocation(LocalLocation):
    reads = 0

    def open_read(self, key):
        CountingLocation.reads += 1
        return super(CountingLocation, self).open_read(key)


def test_lazy_catalog_reads_only_the_manifests_a_query_needs(tmp_path):
    location = CountingLocation("local", str(tmp_path / "local"))
    for days in range(10):
        make_backup([location], NOW - datetime.timedelta(days=days))
    CountingLocation.reads = 0
    cat = catalog.Catalog.load([location], lazy=True)
    assert CountingLocation.reads == 0
    assert cat.latest_valid().id == "auditron_%s" % stamp(NOW)
    assert CountingLocation.reads == 1
    CountingLocation.reads = 0
    catalog.Catalog.load([location])  # not lazy: every manifest
    assert CountingLocation.reads == 10


def test_verification_records_decide_validity(places):
    older = make_backup(places, NOW - datetime.timedelta(days=1))
    newer = make_backup(places, NOW)
    outcome = catalog.record_verification(places, newer["id"], passed=False, detail="row counts differ: Invoice",
                                          by="weekly backup test", now=NOW + datetime.timedelta(minutes=5))
    assert outcome["written"] == ["local", "s3-a", "s3-b"] and outcome["failed"] == {}
    cat = catalog.Catalog.load(places)
    assert not cat.entry(newer["id"]).valid
    assert "last verification failed" in cat.entry(newer["id"]).why_invalid
    assert cat.latest_valid().id == older["id"]
    # A later verification that passes makes it valid again; the newest record wins.
    catalog.record_verification(places[:1], newer["id"], passed=True, detail="ok",
                                now=NOW + datetime.timedelta(minutes=9))
    record = catalog.last_verification(places, newer["id"])
    assert record["result"] == "passed" and record["found_at"] == "local"
    assert catalog.Catalog.load(places).latest_valid().id == newer["id"]
    for minute in range(30):
        catalog.record_verification(places[:1], newer["id"], passed=True,
                                    now=NOW + datetime.timedelta(minutes=10 + minute))
    document = json.loads(places[0].get_bytes(catalog.verification_key(newer["id"])))
    assert len(document["history"]) == catalog.VERIFICATION_HISTORY
    assert catalog.last_verification(places, older["id"]) is None


def test_deep_verification_finds_a_flipped_byte(places, tmp_path):
    key_file = str(tmp_path / "kek")
    generate_key_file(key_file)
    manifest = make_backup(places, NOW, provider=FileKeyProvider(key_file), payload=os.urandom(300000))
    path = os.path.join(places[1].path, manifest["artifacts"][0]["key"])
    with open(path, "r+b") as handle:
        handle.seek(150000)
        byte = handle.read(1)
        handle.seek(150000)
        handle.write(bytes([byte[0] ^ 0x01]))
    cat = catalog.Catalog.load(places)
    entry = cat.entry(manifest["id"])
    assert entry.locations["s3-a"]["status"] == "present"  # same size: only reading finds it
    cat.verify_deep(entry, lambda location, item: logicalrestore.verify_copy(location, item, {"key_file": key_file}))
    assert entry.deep["local"]["verified"] and entry.deep["s3-b"]["verified"]
    assert not entry.deep["s3-a"]["verified"]
    assert entry.locations["s3-a"]["status"] == "different"
    assert "authentication tag mismatch" in entry.locations["s3-a"]["detail"]
    assert entry.valid
