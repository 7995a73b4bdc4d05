"""Files are created with the least permissions they need.

What is sensitive, and the mode it must have:

| What | Why | Mode |
|---|---|---|
| logical backup artifacts and manifests, verification records | encrypted dumps; manifests name tables, row counts, hosts | files 0600 |
| every directory the collection creates for them (the local backup disk's tree, config/ too) | lists what is backed up, and when | 0700 |
| key files | the key that wraps every data key | 0600, and a key file readable by others is refused |
| the restore spool (pg_restore -j) | the only place a backup exists decrypted | directory 0700, file 0600, removed after |
| configuration bundles on the local disk | encrypted Secrets and config files | files 0600, directories 0700 |
| the DNS switch's record of the old values | says where the service ran | directory 0700, file 0600 |
| pgBackRest's configuration and repository | passphrase and S3 keys; encrypted backups | 0640/0750 (group: the PostgreSQL OS user's) |

Not sensitive: the run reports (reports/<time>-<playbook>/, 0644): they hold no secret (the
secret-leak test searches them) and are meant to be read by whoever reviews an incident.
"""

import glob
import os
import stat
import threading
import time

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import catalog, logicalrestore, pgdump
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import generate_key_file, load_key_file
from tests.conftest import REPO
from tests.helpers import faults
from tests.security.conftest import RUN

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def modes_under(root):
    """{path relative to root: mode} of root's tree (root itself excluded; symbolic links, whose
    mode means nothing, too)."""
    found = {}
    for directory, dirs, files in os.walk(str(root)):
        for name in dirs + files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                found[os.path.relpath(path, str(root))] = stat.S_IMODE(os.lstat(path).st_mode)
    return found


def too_open(modes, dir_mode=0o700, file_mode=0o600, root=None):
    wrong = {}
    for path, mode in modes.items():
        full = os.path.join(str(root), path) if root else path
        wanted = dir_mode if os.path.isdir(full) else file_mode
        if mode & ~wanted:
            wrong[path] = oct(mode)
    return wrong


@pytest.fixture(scope="module")
def small_database(lab):
    postgres = faults.pg_params(lab)
    name = "dr_security_%s_perm" % RUN
    faults.sql(postgres, 'CREATE DATABASE "%s"' % name)
    faults.sql(postgres, 'CREATE TABLE "Invoice" (id bigint PRIMARY KEY, note text, "createdAt" timestamptz NOT NULL); '
                         'INSERT INTO "Invoice" SELECT g, md5(g::text), now() FROM generate_series(1, 200000) g',
               database=name)
    yield postgres, name
    for (found,) in faults.sql(postgres, "SELECT datname FROM pg_database WHERE datname LIKE %s", args=(name + "%",)):
        faults.sql(postgres, 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % found)


def test_local_backup_tree_is_private(small_database, tmp_path):
    """The plan's /var/backups/auditron exists (made by whoever mounted the disk; pgBackRest's
    repo1 lives in it too): every directory the backup makes below it, on the way to
    postgres/logical, is 0700, every file 0600 (artifact, manifest, verification record)."""
    postgres, database = small_database
    disk = tmp_path / "var-backups-auditron"
    disk.mkdir(mode=0o750)
    key_file = tmp_path / "backup.key"
    generate_key_file(str(key_file))
    location = {"name": "local", "type": "local", "path": str(disk / "postgres" / "logical")}
    made = pgdump.backup(postgres, [location], faults.file_encryption(key_file), database=database)
    from ansible_collections.auditron.dr.plugins.module_utils.storage import location_from_params  # pylint: disable=import-outside-toplevel
    catalog.record_verification([location_from_params(location)], made["backup_id"], passed=True, by="test")
    wrong = too_open(modes_under(disk), root=disk)
    assert wrong == {}, "created below %s with more than owner-only permissions: %s" % (disk, wrong)


def test_key_files_are_0600_and_a_readable_one_is_refused(tmp_path):
    path = tmp_path / "backup.key"
    generate_key_file(str(path))
    assert stat.S_IMODE(os.stat(str(path)).st_mode) == 0o600
    os.chmod(str(path), 0o644)
    with pytest.raises(DRError) as caught:
        load_key_file(str(path))
    assert "accessible by group or others (mode 0644): run chmod 600" in caught.value.message


def test_restore_spool_is_private_and_removed(small_database, tmp_path):
    """pg_restore -j needs the archive decrypted in a file: the only plaintext copy of a backup."""
    postgres, database = small_database
    key_file = tmp_path / "backup.key"
    generate_key_file(str(key_file))
    location = [{"name": "local", "type": "local", "path": str(tmp_path / "backups")}]
    made = pgdump.backup(postgres, location, faults.file_encryption(key_file), database=database)
    spool = tmp_path / "spool"
    spool.mkdir()
    seen = {}
    done = threading.Event()

    def watch():
        while not done.is_set():
            for directory in glob.glob(str(spool / "auditron-restore-*")):
                try:
                    seen.setdefault("directory", stat.S_IMODE(os.stat(directory).st_mode))
                    for name in os.listdir(directory):
                        seen.setdefault(name, stat.S_IMODE(os.stat(os.path.join(directory, name)).st_mode))
                except OSError:
                    pass
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    target = database + "_spool"
    try:
        restored = logicalrestore.restore(postgres, location, target, faults.file_encryption(key_file),
                                          backup_id=made["backup_id"], jobs=2, spool_dir=str(spool))
    finally:
        done.set()
        watcher.join(5)
        faults.sql(postgres, 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % target)
    assert restored["mode"] == "spool"
    assert seen.get("directory") == 0o700 and seen.get("archive.dump") == 0o600, seen
    assert list(spool.iterdir()) == []


def test_config_backup_on_the_local_disk_is_private(lab, tmp_path):
    source = tmp_path / "app.json"
    source.write_text('{"password": "not-a-lab-secret"}')
    os.chmod(str(source), 0o600)
    key_file = tmp_path / "backup.key"
    generate_key_file(str(key_file))
    disk = tmp_path / "disk"
    result, _raw = faults.ansible_module("config_backup", {
        "state": "backup", "site": "primary", "files": [{"path": str(source), "secret": True}],
        "locations": [{"name": "local", "type": "local", "path": str(disk)}],
        "encryption": faults.file_encryption(key_file)})
    assert not result.get("failed"), result
    wrong = too_open(modes_under(disk), root=disk)
    assert modes_under(disk) and wrong == {}, "config backup created with more than owner-only permissions: %s" % wrong


def test_the_labs_sensitive_state_is_closed_to_others(lab):
    """What the collection has written into the running lab: the DNS switch's record, pgBackRest's
    configuration and repository, the local logical backups. Nothing may be open to others."""
    lab_dir = lab["lab"]["dir"]
    checked = {}
    for root in [os.path.join(lab_dir, "state"), os.path.join(lab["lab"]["backup_dir"], "primary", "pgbackrest")] + \
            glob.glob(os.path.join(lab["pgbackrest"]["config_dir"], "*", "pgbackrest.conf")):
        if os.path.isdir(root):
            checked.update(dict((os.path.join(root, path), mode) for path, mode in modes_under(root).items()))
        elif os.path.exists(root):
            checked[root] = stat.S_IMODE(os.stat(root).st_mode)
    assert len(checked) > 3, checked
    open_to_others = dict((path, oct(mode)) for path, mode in checked.items() if mode & 0o007)
    assert open_to_others == {}, "open to others: %s" % dict(list(open_to_others.items())[:10])
    logical = os.path.join(lab["lab"]["backup_dir"], "primary", "postgres")
    if os.path.isdir(logical):
        wrong = too_open(dict((path, mode) for path, mode in modes_under(logical).items()), root=logical)
        wrong.update(too_open({logical: stat.S_IMODE(os.stat(logical).st_mode)}))
        assert wrong == {}, "the lab's local logical backups: %s" % wrong


def test_reports_hold_no_secret_and_are_not_writable_by_others():
    reports = glob.glob(str(REPO / "reports" / "*" / "report.*"))
    for path in reports:
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o022 == 0, path
