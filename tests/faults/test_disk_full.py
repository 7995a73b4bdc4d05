"""The local backup disk fills up during a logical backup (a 2 MiB tmpfs the test mounts as the
plan's /var/backups/auditron), run the way backup_database.yml runs it (role auditron.dr.logical_backup).

That location fails cleanly (its temp file removed, no manifest), the S3 regions still get a
complete copy; with require_all_locations nothing valid is left anywhere; with room again, the
next run completes.
"""

import json
import os

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import catalog
from tests.conftest import REPO
from tests.faults.conftest import scratch_counts
from tests.helpers import faults

pytestmark = [pytest.mark.lab, pytest.mark.slow]


@pytest.mark.fault("local backup disk full",
                   "that location fails cleanly (no temp file, no manifest) naming the disk; both S3 regions hold "
                   "a complete valid copy; with require_all_locations nothing valid anywhere; with room again "
                   "the next run completes")
def test_local_backup_disk_full(fault, lab, postgres, scratch_db, key_file, places, tmp_path):
    counts = scratch_counts(postgres)
    playbook = tmp_path / "backup.yml"
    out = tmp_path / "result.json"
    playbook.write_text(faults.LOGICAL_BACKUP_PLAYBOOK.format(repo=REPO, out=out))
    disk = str(tmp_path / "disk")
    local_dir = os.path.join(disk, "postgres", "logical")
    extra = {"auditron_dr_local_backup_dir": disk, "auditron_dr_logical_prefix": places.prefix,
             "auditron_dr_logical_database": scratch_db,
             "auditron_dr_backup_encryption": faults.file_encryption(key_file)}
    s3_only = places.locations(("s3-us-east-1", "s3-eu-west-1"))
    with faults.Tmpfs(disk, size="2m") as full:
        run = faults.playbook(str(playbook), tmp_path / "reports", extra_vars=extra)
        assert run.rc == 0, run
        result = json.loads(out.read_text())
        assert result["locations"] == ["s3-us-east-1", "s3-eu-west-1"], result
        message = result["failed_locations"]["local"]
        assert "No space left on device" in message and "location local" in message, message
        assert "NOT written to: local" in run.flat
        assert full.entries() == [], "the full disk kept: %s" % full.entries()
        entry = catalog.Catalog.load(s3_only, series=scratch_db).entry(result["backup_id"])
        assert entry.valid and entry.present_in == ["s3-us-east-1", "s3-eu-west-1"]
        fault.saw("%s: %s; nothing left on the disk; valid in both S3 regions" % (result["backup_id"], message))

        refused = faults.playbook(str(playbook), tmp_path / "reports", extra_vars=dict(
            extra, auditron_dr_logical_require_all_locations=True))
        assert refused.rc != 0, refused
        assert "(require_all_locations)" in refused.flat and "No space left on device" in refused.flat, refused
        refused_id = next(word for word in refused.flat.split() if word.startswith(scratch_db + "_"))
        assert full.entries() == []
        listed = catalog.Catalog.load(s3_only, series=scratch_db)
        assert sorted(listed.entries) == [result["backup_id"]], sorted(listed.entries)
        fault.saw("require_all_locations: the run failed (%s), its S3 copies removed, nothing of it listed" % (
            refused_id.rstrip(":")))
        assert full.free_bytes() > 0
    with faults.Tmpfs(disk, size="256m") as roomy:
        again = faults.playbook(str(playbook), tmp_path / "reports", extra_vars=extra)
        assert again.rc == 0, again
        made = json.loads(out.read_text())
        assert made["locations"] == ["local", "s3-us-east-1", "s3-eu-west-1"], made
        assert sorted(os.listdir(local_dir)) == [catalog.artifact_key(made["backup_id"]),
                                                 catalog.manifest_key(made["backup_id"])]
        assert faults.file_mode(local_dir) == "0o700"
        fault.saw("with room again: %s in all 3 locations" % made["backup_id"])
        assert roomy.free_bytes() > 0
    # Nothing lost: the first backup still valid in both regions, the source untouched.
    entry = catalog.Catalog.load(s3_only, series=scratch_db).entry(result["backup_id"])
    fault.lost((0 if entry.valid else 1) + sum(1 for name, count in scratch_counts(postgres).items()
                                               if counts[name] != count))
