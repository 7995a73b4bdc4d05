"""Pruning (module_utils/prune.py): the logical backups of a series in every location at once,
and pgBackRest's full backup sets through a recording runner. Backups are made as
test_catalog.py makes them (its make_backup, loaded by path)."""

import datetime
import importlib.util
import json
import os

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import catalog, pgbackrest, prune
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.storage import LocalLocation

# Loaded by path, so that the tests do not depend on how tests/ is laid out as packages.
_SPEC = importlib.util.spec_from_file_location(
    "auditron_catalog_tests", os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_catalog.py"))
catalog_tests = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(catalog_tests)
make_backup, places = catalog_tests.make_backup, catalog_tests.places  # places: a fixture
NOW, LATER = catalog_tests.NOW, catalog_tests.LATER


# ---------------------------------------------------------------------------------------------
# Logical backups

class RecordingLocation(LocalLocation):
    log = []

    def delete(self, keys):
        RecordingLocation.log.extend((self.name, key) for key in keys)
        return super(RecordingLocation, self).delete(keys)


def test_prune_check_mode_then_real_run(tmp_path):
    places = [RecordingLocation(name, str(tmp_path / name)) for name in ("local", "s3-a")]
    made = [make_backup(places, NOW - datetime.timedelta(days=days, hours=hours))
            for days, hours in ((0, 0), (0, 6), (1, 0), (2, 0), (9, 0), (40, 0))]
    policy = {"daily_days": 7, "weekly_days": 0, "monthly_days": 0}
    RecordingLocation.log = []
    planned = prune.prune_logical(places, "auditron", retention=policy, now=LATER, check_mode=True)
    expected = sorted([made[1]["id"], made[4]["id"], made[5]["id"]])
    assert sorted(planned["delete"]) == expected and planned["changed"]
    assert "not the newest of daily 2026-11-24" in planned["reasons"][made[1]["id"]]
    assert "outside 7 d" in planned["reasons"][made[4]["id"]]
    assert RecordingLocation.log == []  # check mode removes nothing
    assert len(list(places[0].list(""))) == 12

    done = prune.prune_logical(places, "auditron", retention=policy, now=LATER)
    assert sorted(done["deleted"]) == expected and done["failed"] == {}
    remaining = catalog.Catalog.load(places)
    assert sorted(remaining.entries) == sorted(m["id"] for m in made if m["id"] not in expected)
    assert remaining.latest_valid().id == made[0]["id"]
    # Every backup's manifests go before any of its artifacts, in every location.
    for backup_id in expected:
        order = [kind for _name, key in RecordingLocation.log for bid, kind in [catalog.parse_key(key)]
                 if bid == backup_id]
        assert order[:2] == ["manifest", "manifest"] and set(order[2:]) == {"artifact"}
    # A second run removes nothing more.
    assert prune.prune_logical(places, "auditron", retention=policy, now=LATER)["deleted"] == []


def test_prune_never_removes_the_newest_valid_backup(places):
    old = [make_backup(places, NOW - datetime.timedelta(days=400 + days)) for days in range(3)]
    newest_invalid = make_backup(places, NOW - datetime.timedelta(days=1))
    for location in places:
        location.delete([newest_invalid["artifacts"][0]["key"]])
    result = prune.prune_logical(places, "auditron", now=LATER)
    assert result["newest_valid"] == old[0]["id"]
    assert old[0]["id"] in result["keep"] and sorted(result["deleted"]) == sorted([old[1]["id"], old[2]["id"]])
    assert newest_invalid["id"] in result["keep"]  # kept for inspection: newer than the newest valid
    assert "newest valid backup (always kept)" in result["reasons"][old[0]["id"]]


def test_prune_removes_nothing_when_a_location_cannot_be_listed(places, tmp_path):
    for days in range(3):
        make_backup(places, NOW - datetime.timedelta(days=100 * days))
    before = [sorted(o.key for o in location.list("")) for location in places]
    offline = LocalLocation("s3-offline", str(tmp_path / "gone"))
    with pytest.raises(DRError) as err:
        prune.prune_logical(places + [offline], "auditron", now=LATER)
    assert "nothing removed" in str(err.value) and "s3-offline" in str(err.value)
    assert [sorted(o.key for o in location.list("")) for location in places] == before


def test_prune_of_one_series_leaves_the_others(places):
    mine = [make_backup(places, NOW - datetime.timedelta(hours=h)) for h in (1, 2)]
    theirs = [make_backup(places, NOW - datetime.timedelta(hours=h), series="billing") for h in (1, 2)]
    result = prune.prune_logical(places, "auditron", now=LATER)
    assert result["deleted"] == [mine[1]["id"]]
    assert sorted(catalog.Catalog.load(places, series="billing").entries) == sorted(m["id"] for m in theirs)


# ---------------------------------------------------------------------------------------------
# Physical (pgBackRest) retention, through the pgBackRest engine with a recording runner

def _info_document(fulls):
    backups = [{"label": label, "type": "full", "timestamp": {"start": stop - 60, "stop": stop},
                "database": {"id": 1, "repo-key": 1}, "info": {"size": 1, "delta": 1, "repository": {}},
                "archive": {}, "lsn": {}, "error": False, "reference": None, "prior": None}
               for label, stop in fulls]
    return [{"name": "auditron", "status": {"code": 0, "message": "ok", "lock": {"backup": {"held": False}}},
             "cipher": "none", "db": [{"id": 1, "repo-key": 1, "system-id": 1, "version": "15"}],
             "repo": [{"key": 1, "status": {"code": 0, "message": "ok"}, "cipher": "none"}],
             "backup": backups, "archive": []}]


def test_prune_physical_expires_full_sets_per_repository(tmp_path):
    repo_dir = tmp_path / "repo1"
    repo_dir.mkdir()
    config = tmp_path / "pgbackrest.conf"
    config.write_text("[global]\nrepo1-path=%s\n\n[auditron]\npg1-path=/nonexistent\n" % repo_dir)
    epoch = int((NOW - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)).total_seconds())
    fulls = [("20261124-010000F", epoch - 3600), ("20261123-010000F", epoch - 86400 - 3600),
             ("20261120-010000F", epoch - 4 * 86400), ("20260101-010000F", epoch - 327 * 86400)]
    calls = []

    def runner(argv, env, timeout):
        calls.append(argv)
        if argv[-1] == "info":
            return 0, json.dumps(_info_document(fulls)), "", 0.01
        return 0, "", "", 0.01

    tool = pgbackrest.PgBackRest(str(config), "auditron", runner=runner)
    policy = {"daily_days": 2, "weekly_days": 0, "monthly_days": 0}
    planned = prune.prune_physical(str(config), "auditron", retention=policy, now=NOW, check_mode=True, tool=tool)
    assert [item["label"] for item in planned["plan"]] == ["20260101-010000F", "20261120-010000F"]
    assert not [argv for argv in calls if argv[-1] == "expire"]
    done = prune.prune_physical(str(config), "auditron", retention=policy, now=NOW, tool=tool)
    expires = [argv for argv in calls if argv[-1] == "expire"]
    assert [(a[3], a[4]) for a in expires] == [
        ("--repo=1", "--set=20260101-010000F"), ("--repo=1", "--set=20261120-010000F")]
    assert done["changed"] and len(done["expired"]) == 2


def test_physical_prune_without_the_pgbackrest_engine_says_so(monkeypatch):
    monkeypatch.delattr(pgbackrest, "info_summary")
    with pytest.raises(DRError, match="physical backups: pgbackrest.info_summary not available"):
        prune.prune_physical("/etc/pgbackrest.conf", "auditron")
