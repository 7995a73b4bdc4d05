"""Journals that do not describe the sites, and runs that race: a failover started on a stale,
corrupt or foreign journal, two failovers at once, and a prune racing a failover. The measure is
that of tests/faults/test_rerun.py (whose helpers these tests share): acknowledged rows, compared
by content, that the serving database does not hold. Each test fails back at its end.
"""

import json
import os
import time

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import journal, lease
# lab_as_found: autouse, every lab process up again at the end of the file.
from tests.faults.test_rerun import (  # noqa: F401 pylint: disable=unused-import
    PRIMARY_ADDRESS, failover_process, journal_path, kill_primary_once_dr_replayed_everything, lab_as_found,
    read_journal, rows_missing_at_dr, serves_from_dr, write_journal)
from tests.helpers.lab_db import query
from tests.integration.test_recovery_lock import backup_stores
# `prepared`: a full physical backup, the files and a configuration bundle, as scenario 2 makes them.
from tests.integration.test_scenario_2 import (  # noqa: F401 pylint: disable=unused-import
    PROBE, dns_answer, ensure_standby, failback_and_check, prepared)

pytestmark = [pytest.mark.lab, pytest.mark.slow]


@pytest.mark.fault("State left by an earlier, finished failover (no failback cleared it; empty incident_start, as "
                   "the AWX survey sends) when the primary is lost again",
                   "the journal is not continued (DR is a standby, not the primary it recorded): the fence and the "
                   "promotion run; the name answers DR; no acknowledged row lost")
def test_a_finished_journal_of_an_earlier_failover_does_not_skip_a_new_one(fault, lab, prepared, run_playbook):
    ensure_standby(lab, run_playbook)
    # The shape the state file had before the journal: a finished failover of last month.
    write_journal(lab, json.dumps({"id": "20261107T031500Z", "incident_start": "", "fenced": True,
                                   "fence": {"database": "stopped"}, "completed": True,
                                   "database": {"mode": "warm", "recovery_point": "2026-11-07T03:14:00Z",
                                                "timeline": 2}}))
    _incident, acknowledged = kill_primary_once_dr_replayed_everything(lab)
    run = run_playbook("failover.yml", extra_vars={"incident_start": "", "failover_backup_after": False})
    assert run.rc == 0, run
    flat = " ".join(run.stdout.split())
    assert "says it finished but holds no evidence of its database step: a new failover" in flat, run
    assert "database step: promote" in flat
    now = read_journal(lab)
    assert now["id"] != "20261107T031500Z" and now["steps"]["database"]["outcome"] == "done"
    assert serves_from_dr(lab)
    missing = rows_missing_at_dr(lab, acknowledged)
    fault.saw("the old journal was not continued; DR promoted (journal %s, database step %s); %d missing of %d"
              % (now["id"], now["steps"]["database"]["action"], missing, len(acknowledged)))
    fault.lost(missing)
    failback_and_check(lab, run_playbook)


@pytest.mark.parametrize("kind", ["corrupt", "another cluster"])
@pytest.mark.fault("A journal that cannot be read, or of another cluster, at the start of a failover",
                   "one clear message naming the journal and why it is not continued; a new failover planned from "
                   "DR as it is (check mode: nothing changed); no acknowledged row lost")
def test_a_corrupt_or_foreign_journal_is_said_and_not_continued(fault, lab, prepared, run_playbook, kind):
    ensure_standby(lab, run_playbook)
    if kind == "corrupt":
        write_journal(lab, '{"id": "20261201T000000Z", "fenced": tru')
        said = "the journal in %s is not JSON" % journal_path(lab)
    else:
        foreign = journal.record(journal.new_journal("failover", "20261201T000000Z", ""), "database", "done",
                                 {"after": {"role": "primary", "system_id": "7000000000000000001", "timeline": 9}},
                                 update={"completed": True, "database": {"mode": "cold", "timeline": 9}})
        write_journal(lab, json.dumps(foreign))
        said = "says DR became a primary of system 7000000000000000001 on timeline 9, but DR is now a standby"
    rows_before = set(query(lab, "primary", "SELECT id, at FROM %s" % PROBE))
    run = run_playbook("failover.yml", check=True)
    assert run.rc == 0, run
    flat = " ".join(run.stdout.split())
    assert said in flat and "a new failover" in flat, run
    assert "database step: promote" in flat
    assert query(lab, "dr", "SELECT pg_is_in_recovery()")[0][0] is True and dns_answer(lab) == [PRIMARY_ADDRESS]
    lost = len(rows_before - set(query(lab, "primary", "SELECT id, at FROM %s" % PROBE)))
    fault.saw("%s journal: '%s...'; DR still a standby, the name still at the primary" % (kind, said[:90]))
    fault.lost(lost)
    os.remove(journal_path(lab))


@pytest.mark.fault("Two failovers started together from different working directories (two controllers at once)",
                   "one takes the recovery lock (a lease in the backup stores); the other is refused before it "
                   "changes anything, naming the holder; the first completes; no acknowledged row lost")
def test_two_failovers_at_once(fault, lab, prepared, run_playbook, tmp_path):
    ensure_standby(lab, run_playbook)
    incident, acknowledged = kill_primary_once_dr_replayed_everything(lab)
    logs, runs = [], []
    for index in range(2):
        workdir = tmp_path / ("controller-%d" % index)
        workdir.mkdir()
        logs.append(workdir / "failover.log")
        runs.append(failover_process({"incident_start": incident, "failover_backup_after": False}, logs[-1],
                                     cwd=workdir))
    for process in runs:
        process.wait(900)
    outputs = [" ".join(log.read_text().split()) for log in logs]
    codes = [process.returncode for process in runs]
    assert sorted(codes)[0] == 0 and sorted(codes)[1] != 0, (codes, [text[-2000:] for text in outputs])
    refused = outputs[codes.index(sorted(codes)[1])]
    assert "lock recovery is held by run failover-" in refused and "nothing was changed" in refused, refused[-3000:]
    assert "Record that the database step starts" not in refused        # it stopped before any change
    holder = refused.split("lock recovery is held by ", 1)[1].split(": nothing was changed", 1)[0]
    fault.saw("exit codes %s; the second was refused: held by %s" % (codes, holder[:160]))
    assert serves_from_dr(lab)
    missing = rows_missing_at_dr(lab, acknowledged)
    fault.saw("the first completed: DR serves; %d missing of %d acknowledged rows" % (missing, len(acknowledged)))
    fault.lost(missing)
    failback_and_check(lab, run_playbook)


@pytest.mark.fault("A prune started while a failover runs (a cron job racing the recovery)",
                   "the prune is refused before it removes anything, naming the failover that holds the recovery "
                   "lock; the failover completes; no backup and no acknowledged row lost")
def test_a_prune_racing_a_failover_is_refused(fault, lab, prepared, run_playbook, tmp_path):
    stores = backup_stores(lab)
    ensure_standby(lab, run_playbook)
    incident, acknowledged = kill_primary_once_dr_replayed_everything(lab)
    backups_before = sorted(info.key for store in stores for info in store.list("") if not info.key.startswith("runs/"))
    failover = failover_process({"incident_start": incident, "failover_backup_after": False}, tmp_path / "failover.log")
    try:
        deadline = time.monotonic() + 300
        while not any(lease.status(stores, "recovery").values()):
            assert failover.poll() is None, (tmp_path / "failover.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the failover never took the recovery lock"
            time.sleep(0.1)
        prune = run_playbook("prune_backups.yml", extra_vars={"auditron_dr_prune_confirm": True})
    finally:
        failover.wait(900)
    assert failover.returncode == 0, (tmp_path / "failover.log").read_text()[-3000:]
    flat = " ".join(prune.output.split())
    assert prune.rc != 0 and "lock recovery is held by run failover-" in flat and "nothing was changed" in flat, prune
    backups_after = sorted(info.key for store in stores for info in store.list("") if not info.key.startswith("runs/"))
    removed = len(set(backups_before) - set(backups_after))
    fault.saw("prune refused: %s" % flat.split("lock recovery is held by ", 1)[1][:150])
    assert serves_from_dr(lab)
    missing = rows_missing_at_dr(lab, acknowledged)
    fault.saw("the failover completed; backup objects removed: %d of %d; rows missing at DR: %d of %d"
              % (removed, len(backups_before), missing, len(acknowledged)))
    fault.lost(removed + missing)
    failback_and_check(lab, run_playbook)
