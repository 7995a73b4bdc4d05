"""Backups are unreadable without the key: marker strings seeded into a scratch table of the
lab's production database must not appear in any stored byte - the logical backup (every
location), a pgBackRest backup (local disk and S3), and the WAL archive that carried the rows -
while the same markers are found once the bytes are decrypted with the key (the control that
proves the search can find them).

Scanned: every object in both backup buckets under postgres/ (the lab's pgBackRest
repositories and logical backups) and under this run's prefix, and every file in the local
backup directories, written since the markers were seeded; nothing written before could hold
them. AUDITRON_SECURITY_FULL_SCAN=1 scans every object and file, whatever its age.

A byte search alone proves little: zstd already hides the markers. So every stored pgBackRest
file must start with OpenSSL's "Salted__" header (pgBackRest's aes-256-cbc), every logical
artifact with the collection's AES-256-GCM magic, and the controls show the markers coming back
with the key and nothing coming back without it.
"""

import glob
import json
import os
import shutil
import time

import pytest
import zstandard

from ansible_collections.auditron.dr.plugins.module_utils import catalog, crypto, keyproviders, pgdump
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from tests.helpers import faults
from tests.security.conftest import PREFIX, RUN

pytestmark = [pytest.mark.lab, pytest.mark.slow]

MARKER = ("AUDITRON-AT-REST-MARKER-%s" % RUN).encode()
PGBACKREST_MAGIC = b"Salted__"   # OpenSSL's header: pgBackRest's aes-256-cbc on every repository file
LOGICAL_MAGIC = b"ADRGCM"        # the collection's AES-256-GCM stream


@pytest.fixture(scope="module")
def seeded(lab, lab_archiving):  # pylint: disable=unused-argument
    """The marker table in the lab's production database, its WAL archived; dropped afterwards."""
    postgres = faults.pg_params(lab)
    database = lab["sites"]["primary"]["postgres"]["database"]
    table = "auditron_dr_security_markers_%s" % RUN
    since = time.time() - 2
    faults.sql(postgres, 'CREATE TABLE "%s" (id int PRIMARY KEY, secret text NOT NULL)' % table, database=database)
    # Filler past pgBackRest's repo-bundle-limit (2 MiB): the role bundles smaller files, and
    # backed_up_heap() reads the heap file at its own path in the backup, where only a file
    # above the limit is stored. Written before the markers, so that the markers' WAL is in the
    # segment switched out below (the filler's spans earlier segments).
    faults.sql(postgres, 'INSERT INTO "%s" SELECT g, repeat(\'f\', 200) FROM generate_series(501, 30000) g' % table,
               database=database)
    faults.sql(postgres, 'INSERT INTO "%s" SELECT g, %%s || \'-\' || g || \'-\' || md5(g::text) '
                         'FROM generate_series(1, 500) g' % table, database=database, args=(MARKER.decode(),))
    faults.sql(postgres, "CHECKPOINT")
    segment = faults.sql(postgres, "SELECT pg_walfile_name(pg_switch_wal())")[0][0]
    faults.wait_for("WAL %s archived to every repository" % segment, lambda: (faults.sql(
        postgres, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")[0][0] or "") >= segment,
        timeout=180, interval=0.5)
    yield {"table": table, "since": since, "segment": segment, "postgres": postgres, "database": database}
    faults.sql(postgres, 'DROP TABLE IF EXISTS "%s"' % table, database=database)


def places_of(lab, root):
    return [{"name": "local", "type": "local", "path": str(root)},
            faults.s3_params(lab, "us-east-1", PREFIX + "/at-rest"), faults.s3_params(lab, "eu-west-1", PREFIX + "/at-rest")]


def stored_objects(lab, since):
    """{(region, key): bytes} of what the buckets hold under postgres/ and this run's prefix."""
    full = os.environ.get("AUDITRON_SECURITY_FULL_SCAN") == "1"
    found = {}
    for region in ("us-east-1", "eu-west-1"):
        client = faults.s3_client(lab, region)
        bucket = lab["backup_stores"][region]["bucket"]
        for prefix in ("postgres/", PREFIX + "/"):
            for key, (_size, modified) in faults.s3_keys(lab, region, prefix).items():
                if full or prefix != "postgres/" or modified.timestamp() >= since:
                    found[(region, key)] = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return found


def stored_files(roots, since):
    full = os.environ.get("AUDITRON_SECURITY_FULL_SCAN") == "1"
    found = {}
    for root in roots:
        for directory, _dirs, files in os.walk(str(root)):
            for name in files:
                path = os.path.join(directory, name)
                if full or os.stat(path).st_mtime >= since:
                    with open(path, "rb") as handle:
                        found[path] = handle.read()
    return found


def test_markers_are_in_no_stored_byte(lab, seeded, security_stanza, tmp_path):
    postgres, database = seeded["postgres"], seeded["database"]
    local = tmp_path / "logical"
    made = pgdump.backup(postgres, places_of(lab, local), faults.kms_encryption(lab), database=database,
                         series="security-at-rest-%s" % RUN)
    assert made["locations"] == ["local", "s3-us-east-1", "s3-eu-west-1"], made["failed_locations"]
    stanza = security_stanza
    result = stanza.run("backup", "--type=full", "--repo=1")
    assert result.returncode == 0, result.stderr
    result = stanza.run("backup", "--type=full", "--repo=2")
    assert result.returncode == 0, result.stderr

    objects = stored_objects(lab, seeded["since"])
    files = stored_files([lab["lab"]["backup_dir"], local, stanza.repo1], seeded["since"])
    stored = dict(("s3://%s/%s" % key, data) for key, data in objects.items())
    stored.update(files)
    holding = sorted(place for place, data in stored.items() if MARKER in data)
    wal = [place for place in stored if "/archive/" in place and os.path.basename(place).startswith(
        seeded["segment"])]
    print("scanned %d objects and files, %.1f MiB; %d WAL copies of segment %s" % (
        len(stored), sum(len(data) for data in stored.values()) / 1048576.0, len(wal), seeded["segment"]))
    assert len(wal) >= 3, "the segment that carried the markers is not in every repository: %s" % wal
    assert any(made["backup_id"] in place for place in stored) and any(stanza.name in place for place in stored)
    assert holding == [], "marker strings stored in plaintext: %s" % holding[:10]
    not_encrypted = sorted(place for place, data in stored.items() if "pgbackrest" in place
                           and not data.startswith(PGBACKREST_MAGIC))
    assert not_encrypted == [], "pgBackRest files without encryption: %s" % not_encrypted[:10]
    artifacts = [place for place in stored if place.endswith(catalog.ARTIFACT_SUFFIX_ENCRYPTED)]
    assert artifacts and all(stored[place].startswith(LOGICAL_MAGIC) for place in artifacts)
    assert not [place for place in stored if place.endswith(catalog.ARTIFACT_SUFFIX_PLAIN)]

    # The controls: with the key, the same bytes give the markers back.
    assert MARKER in decrypted_logical(lab, local, made["backup_id"])
    assert MARKER in archived_wal(stanza, lab, seeded["segment"], tmp_path)
    assert MARKER in backed_up_heap(stanza, postgres, database, seeded["table"])


def decrypted_logical(lab, local, backup_id):
    """The dump inside the local copy, decrypted (KMS) and decompressed."""
    with open(os.path.join(str(local), catalog.manifest_key(backup_id))) as handle:
        manifest = json.load(handle)
    artifact = os.path.join(str(local), catalog.main_artifact(manifest)["key"])
    with open(artifact, "rb") as handle:
        reader = crypto.DecryptingReader(handle, faults.kms_encryption(lab),
                                         context=manifest["encryption"]["context"], what=artifact)
        return zstandard.ZstdDecompressor().stream_reader(reader).read()


def archived_wal(stanza, lab, segment, tmp_path):
    """The segment as pgBackRest's archive-get gives it back from the lab's stanza (decrypted)."""
    workdir = faults.new_workdir("auditron-security-wal-", lab_user=True)
    try:
        target = os.path.join(workdir, segment)
        config = os.path.join(lab["pgbackrest"]["config_dir"], "primary", "pgbackrest.conf")
        faults.lab_user_output(["pgbackrest", "--config=%s" % config, "--stanza=%s" % lab["pgbackrest"]["stanza"],
                                "archive-get", segment, target])
        with open(target, "rb") as handle:
            return handle.read()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def backed_up_heap(stanza, postgres, database, table):
    """The table's heap file out of the stanza's newest backup in repo1 (repo-get decrypts). The
    file is above repo-bundle-limit (seeded), so it is stored on its own, not in a bundle."""
    path = faults.sql(postgres, "SELECT pg_relation_filepath(%s)", database=database, args=(table,))[0][0]
    label = stanza.backup_labels(repo=1)[-1]
    stored = faults.lab_user_output(stanza.argv("repo-get", "--repo=1") + [
        "backup/%s/%s/pg_data/%s.zst" % (stanza.name, label, path)])
    return zstandard.ZstdDecompressor().stream_reader(stored).read()


def test_without_the_key_nothing_reads_the_backup(lab, seeded, tmp_path):
    """Why the absence of markers above is the encryption's doing. zstd alone hides them from a
    byte search (so that search proves little by itself): an unencrypted backup gives them up to
    anyone who decompresses it. The encrypted one cannot be decompressed, and a wrong key is refused
    before a byte of plaintext comes out."""
    postgres, database = seeded["postgres"], seeded["database"]
    plain_dir, sealed_dir = tmp_path / "plain", tmp_path / "sealed"
    pgdump.backup(postgres, [{"name": "local", "type": "local", "path": str(plain_dir)}], {"key_source": "none"},
                  database=database, series="security-plain-%s" % RUN)
    plain = glob.glob(os.path.join(str(plain_dir), "*" + catalog.ARTIFACT_SUFFIX_PLAIN))[0]
    with open(plain, "rb") as handle:
        raw = handle.read()
    assert MARKER not in raw  # compressed: a byte search alone misses it...
    assert MARKER in zstandard.ZstdDecompressor().stream_reader(raw).read()  # ...anyone can decompress it

    key_file = tmp_path / "backup.key"
    keyproviders.generate_key_file(str(key_file))
    made = pgdump.backup(postgres, [{"name": "local", "type": "local", "path": str(sealed_dir)}],
                         faults.file_encryption(key_file), database=database, series="security-sealed-%s" % RUN)
    sealed = os.path.join(str(sealed_dir), made["artifact_key"])
    with open(sealed, "rb") as handle:
        stored = handle.read()
    assert stored.startswith(LOGICAL_MAGIC) and MARKER not in stored
    with pytest.raises(zstandard.ZstdError):
        zstandard.ZstdDecompressor().stream_reader(stored).read()
    other = tmp_path / "other.key"
    keyproviders.generate_key_file(str(other))
    with open(sealed, "rb") as handle:
        with pytest.raises(DRError, match="wrong key"):
            crypto.DecryptingReader(handle, faults.file_encryption(other), what=sealed).read(1)
    with open(sealed, "rb") as handle:
        reader = crypto.DecryptingReader(handle, faults.file_encryption(key_file), what=sealed)
        assert MARKER in zstandard.ZstdDecompressor().stream_reader(reader).read()
