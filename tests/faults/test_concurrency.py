"""Two runs of the same backup at once: the second waits or refuses; never two writers of one
backup set. Logical backups through the pg_backup module (its advisory lock per series);
pgBackRest through the pgbackrest_backup module (pgBackRest's own lock), on this run's stanza.
"""

import threading
import time

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import catalog
from ansible_collections.auditron.dr.plugins.module_utils.common import parse_time
from tests.helpers import faults

pytestmark = [pytest.mark.lab, pytest.mark.slow]


class Background(object):
    """An Ansible module run in a thread; .result once joined."""

    def __init__(self, *args, **kwargs):
        self.result = None
        self.thread = threading.Thread(target=self.run, args=args, kwargs=kwargs, daemon=True)
        self.thread.start()

    def run(self, *args, **kwargs):
        self.result = faults.ansible_module(*args, **kwargs)[0]

    def join(self, timeout=600):
        self.thread.join(timeout)
        assert self.result is not None, "the module run did not finish"
        return self.result


@pytest.mark.fault("two runs of the same logical backup at once",
                   "the second waits for the first (or, past lock_timeout, refuses naming the holder); never two "
                   "writers of one backup set; both backups complete and valid")
def test_two_logical_backups_of_one_set_at_once(fault, lab, postgres, scratch_db, key_file, places):
    proxy = faults.s3_proxy(lab, rate=3 << 20)  # keeps the first run going for seconds
    connection = faults.module_connection(postgres)
    slow = places.params_via(proxy)
    args = dict(connection, db=scratch_db, locations=slow, encryption=faults.file_encryption(key_file))

    def first_holds_the_lock():
        return faults.sql(postgres, "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                                    "WHERE l.locktype = 'advisory' AND a.datname = %s", args=(scratch_db,))[0][0]

    try:
        first = Background("pg_backup", dict(args, lock_timeout=5))
        faults.wait_for("the first backup holding its lock", first_holds_the_lock, timeout=60, interval=0.1)
        refused, _raw = faults.ansible_module("pg_backup", dict(args, lock_timeout=1))
        waiting = Background("pg_backup", dict(args, lock_timeout=300))
        first_result = first.join()
        waited = waiting.join()
    finally:
        proxy.close()
    assert refused.get("failed"), "a second writer of the set was let in: %s" % refused
    message = refused["msg"]
    assert "another logical backup of this set is running (held by pid" in message and "\n" not in message, message
    fault.saw("second run with lock_timeout 1 s refused: %s" % message[:200])
    assert not first_result.get("failed") and not waited.get("failed"), (first_result, waited)
    first_end = parse_time(first_result["finished_at"])
    second_start = parse_time(waited["started_at"])
    assert second_start >= first_end, "two writers at once: %s started at %s, before %s finished at %s" % (
        waited["backup_id"], waited["started_at"], first_result["backup_id"], first_result["finished_at"])
    fault.saw("third run waited %.1f s for the lock and started after the first ended (%s >= %s)" % (
        (second_start - parse_time(first_result["started_at"])).total_seconds(), waited["started_at"],
        first_result["finished_at"]))
    listed = catalog.Catalog.load(places.locations(), series=scratch_db)
    valid = sorted(entry.id for entry in listed.valid_newest_first(scratch_db))
    made = [first_result["backup_id"], waited["backup_id"]]
    # Lost: the copies of the two backups (one per location) that are not there, valid, after the race.
    missing = sum(len(places.params) - (len(listed.entry(backup_id).present_in) if backup_id in valid else 0)
                  for backup_id in made)
    fault.saw("valid after the race: %s; copies missing: %d of %d" % (
        ", ".join(valid) or "none", missing, len(made) * len(places.params)))
    fault.lost(missing)
    assert valid == sorted(made), valid


@pytest.mark.fault("two runs of the same pgBackRest backup at once",
                   "pgBackRest's lock refuses the second, named in one line; the first completes; nothing of the "
                   "refused run in the repository")
def test_two_pgbackrest_backups_at_once(fault, lab, own_stanza):
    stanza = own_stanza
    before = stanza.backup_labels(repo=2)
    args = {"config": stanza.config, "stanza": stanza.name, "type": "full", "repos": [2],
            "extra_options": ["--no-archive-check"]}
    user = lab["lab"]["os_user"]

    def backup_running():
        return stanza.info(repo=2).get("status", {}).get("lock", {}).get("backup", {}).get("held")

    first = Background("pgbackrest_backup", args, become_user=user)
    faults.wait_for("the first pgBackRest backup holding its lock", backup_running, timeout=60, interval=0.2)
    started = time.monotonic()
    second, _raw = faults.ansible_module("pgbackrest_backup", args, become_user=user)
    first_result = first.join()
    assert second.get("failed"), "pgBackRest let a second backup of the stanza run: %s" % second
    # [050] is pgBackRest's lock error: its lock file, or the advisory lock it takes in the cluster.
    assert "[050] unable to acquire" in second["msg"] and "lock" in second["msg"], second["msg"]
    assert "\n" not in second["msg"], second["msg"]
    fault.saw("second refused in %.1f s: %s" % (time.monotonic() - started, second["msg"][:200]))
    assert not first_result.get("failed"), first_result
    after = stanza.backup_labels(repo=2)
    assert after == before + [first_result["labels"]["repo2"]], (before, after)
    fault.saw("first completed: %s; the repository holds exactly the earlier backups and it" %
              first_result["labels"]["repo2"])
    fault.lost(len([label for label in before if label not in after]))
