"""The run journal (plugins/module_utils/journal.py): which earlier run a failover continues, and
what its database step does, decided from DR's database as it is now; its copies, local and in
backup locations (local directories here; S3 locations are the same interface)."""

import json
import os

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import journal
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.storage import LocalLocation

STANZA_SYSTEM = "7440000000000000001"
COLD_DR_SYSTEM = "7440000000000000999"


def world(role, system_id=STANZA_SYSTEM, timeline=2):
    if role == "down":
        return {"role": "down", "system_id": None, "timeline": None, "lsn": None, "streaming": False,
                "error": "does not answer (connection refused)"}
    return {"role": role, "system_id": system_id, "timeline": timeline, "lsn": "0/3000060",
            "streaming": role == "standby", "error": None}


def finished(incident="2026-12-01T02:00:00Z", system_id=STANZA_SYSTEM, timeline=2, action="promote"):
    doc = journal.new_journal("failover", "20261201T020500Z", incident)
    doc = journal.record(doc, "database", "started", {"action": action, "before": world("standby", timeline=1)})
    doc = journal.record(doc, "database", "done", {"after": world("primary", system_id, timeline)},
                         update={"database": {"mode": "warm", "recovery_point": incident, "timeline": timeline}})
    return journal.record(doc, "switch", "done", update={"completed": True})


# ---------------------------------------------------------------------------------------------
# choose: continue or new, and why

def test_no_journal_is_a_new_run():
    doc, decision, reason = journal.choose(None, [], world("standby"), "R1", "2026-12-07T01:00:00Z")
    assert decision == "new" and doc["id"] == "R1" and doc["incident_start"] == "2026-12-07T01:00:00Z"
    assert reason == "no earlier failover: a new one"


def test_a_finished_journal_with_an_empty_incident_is_not_continued_when_dr_is_a_standby_again():
    """The AWX survey sends an empty incident_start; the earlier failover finished and a failback
    made DR a standby without clearing it: a new failover, never a skip of fence and restore."""
    doc, decision, reason = journal.choose(finished(), [], world("standby", timeline=3), "R2", "")
    assert decision == "new" and doc["id"] == "R2" and "completed" not in doc and doc["steps"] == {}
    assert "says DR became a primary of system %s on timeline 2, but DR is now a standby" % STANZA_SYSTEM in reason
    action, _why = journal.database_action(world("standby", timeline=3), doc)
    assert action == "promote"


def test_a_finished_journal_whose_end_still_holds_is_continued_and_its_database_kept():
    doc, decision, reason = journal.choose(finished(), [], world("primary", timeline=2), "R3", "")
    assert decision == "continue" and doc["id"] == "20261201T020500Z" and "its end still holds" in reason
    action, why = journal.database_action(world("primary", timeline=2), doc)
    assert action == "keep" and "with every write it took since" in why


def test_a_journal_of_another_incident_is_not_continued():
    doc, decision, reason = journal.choose(finished(), [], world("primary"), "R4", "2026-12-07T01:00:00Z")
    assert decision == "new" and doc["incident_start"] == "2026-12-07T01:00:00Z"
    assert "is of another incident (started 2026-12-01T02:00:00Z, this one 2026-12-07T01:00:00Z)" in reason


def test_a_journal_of_another_cluster_is_not_continued():
    other = finished(system_id="7440000000000000555")
    doc, decision, reason = journal.choose(other, [], world("primary"), "R5", "2026-12-01T02:00:00Z")
    assert decision == "new" and "system 7440000000000000555" in reason and doc["steps"] == {}


def test_an_unreadable_journal_is_said_and_a_new_run_trusts_nothing_of_it(tmp_path):
    path = tmp_path / "failover.json"
    path.write_text('{"id": "R0", "fenced": tru')
    found, unreadable, _seen = journal.read_copies(str(path), [], "failover")
    assert found is None and len(unreadable) == 1 and "is not JSON" in unreadable[0] and str(path) in unreadable[0]
    doc, decision, reason = journal.choose(found, unreadable, world("standby"), "R6")
    assert decision == "new" and "cannot be read" in reason and "trusts nothing of it" in reason
    assert doc == journal.new_journal("failover", "R6", "")


def test_an_unreadable_local_copy_is_named_even_when_a_location_copy_decides(tmp_path):
    path = tmp_path / "failover.json"
    path.write_text("garbage")
    there = LocalLocation("there", str(tmp_path / "there"))
    journal.save(finished(), str(tmp_path / "elsewhere.json"), [there], "failover")
    found, unreadable, _seen = journal.read_copies(str(path), [there], "failover")
    assert found["id"] == "20261201T020500Z"
    _doc, decision, reason = journal.choose(found, unreadable, world("standby", timeline=3), "R", "")
    assert decision == "new" and "(not read: the journal in %s is not JSON" % path in reason


def test_a_json_document_that_is_no_journal_is_unreadable(tmp_path):
    path = tmp_path / "failover.json"
    path.write_text('["not", "a", "journal"]')
    found, unreadable, _seen = journal.read_copies(str(path), [], "failover")
    assert found is None and "is not a run journal (no run id)" in unreadable[0]


def test_fresh_starts_over_whatever_the_journal_says():
    doc, decision, _reason = journal.choose(finished(), [], world("primary"), "R7", "", fresh=True)
    assert decision == "new" and doc["id"] == "R7"


# ---------------------------------------------------------------------------------------------
# database_action: from DR's database as it is now

def test_a_standby_is_promoted_and_a_dead_dr_restored():
    fresh = journal.new_journal("failover", "R", "")
    assert journal.database_action(world("standby", timeline=1), fresh)[0] == "promote"
    assert journal.database_action(world("standby", timeline=1), fresh, requested_mode="cold")[0] == "restore"
    action, why = journal.database_action(world("down"), fresh)
    assert action == "restore" and "connection refused" in why


def test_a_cold_dr_of_its_own_system_is_restored():
    fresh = journal.new_journal("failover", "R", "")
    action, why = journal.database_action(world("primary", COLD_DR_SYSTEM, 1), fresh,
                                          stanza_system_ids=[STANZA_SYSTEM])
    assert action == "restore" and "not of the backups' system (%s)" % STANZA_SYSTEM in why


def test_a_dr_primary_of_this_system_no_journal_accounts_for_is_refused_unless_replacing_is_asked():
    fresh = journal.new_journal("failover", "R", "")
    action, why = journal.database_action(world("primary", STANZA_SYSTEM, 4), fresh, stanza_system_ids=[STANZA_SYSTEM])
    assert action == "refuse"
    assert why.startswith("failover.yml: nothing was changed. DR's database is already a primary of system %s"
                          % STANZA_SYSTEM)
    assert "-e failover_replace_dr_primary=true" in why
    assert journal.database_action(world("primary", STANZA_SYSTEM, 4), fresh, stanza_system_ids=[STANZA_SYSTEM],
                                   replace_primary=True)[0] == "restore"


def test_in_check_mode_before_the_backups_system_is_known_the_plan_says_both_outcomes():
    fresh = journal.new_journal("failover", "R", "")
    action, why = journal.database_action(world("primary", COLD_DR_SYSTEM, 1), fresh, check_mode=True)
    assert action == "undecided" and "restores DR if they are of another system, and refuses" in why
    assert journal.database_action(world("primary", COLD_DR_SYSTEM, 1), fresh)[0] == "refuse"   # a real run
    assert journal.database_action(world("primary", COLD_DR_SYSTEM, 1), fresh, stanza_system_ids=[STANZA_SYSTEM],
                                   check_mode=True)[0] == "restore"


def test_a_killed_restore_is_restored_again_while_dr_is_down_and_kept_once_it_finished():
    started = journal.record(journal.new_journal("failover", "R", ""), "database", "started",
                             {"action": "restore", "before": world("primary", COLD_DR_SYSTEM, 1)})
    assert journal.database_action(world("down"), started)[0] == "restore"
    assert journal.database_action(world("standby", STANZA_SYSTEM, 1), started)[0] == "wait"   # recovery running
    action, why = journal.database_action(world("primary", STANZA_SYSTEM, 3), started,
                                          stanza_system_ids=[STANZA_SYSTEM])
    assert action == "keep" and "the restore run R started finished before it was stopped" in why


def test_a_promotion_killed_half_way_is_kept_once_dr_is_primary_and_promoted_while_it_is_not():
    started = journal.record(journal.new_journal("failover", "R", ""), "database", "started",
                             {"action": "promote", "before": world("standby", STANZA_SYSTEM, 1)})
    assert journal.database_action(world("standby", STANZA_SYSTEM, 1), started)[0] == "promote"
    assert journal.database_action(world("primary", STANZA_SYSTEM, 2), started,
                                   stanza_system_ids=[STANZA_SYSTEM])[0] == "keep"
    # Same system, same timeline: not this promotion's doing (someone else's primary): refused.
    assert journal.database_action(world("primary", STANZA_SYSTEM, 1), started,
                                   stanza_system_ids=[STANZA_SYSTEM])[0] == "refuse"


def test_after_a_failure_past_promotion_the_rerun_keeps_dr_and_its_writes():
    """The run failed after DR was promoted and recorded (say at the DNS switch): the re-run
    continues and keeps DR as it is; a DR that moved on (a later timeline) is still this one."""
    doc = finished()
    del doc["completed"]
    chosen, decision, _reason = journal.choose(doc, [], world("primary", timeline=2), "R9", "2026-12-01T02:00:00Z")
    assert decision == "continue"
    assert journal.database_action(world("primary", timeline=2), chosen)[0] == "keep"
    assert journal.database_action(world("primary", timeline=5), chosen)[0] == "keep"


# ---------------------------------------------------------------------------------------------
# Copies: the local file decides; locations carry it to another controller

def test_save_writes_the_local_copy_0600_and_every_location_and_the_newest_wins(tmp_path):
    path = str(tmp_path / "state" / "failover.json")
    here, there = LocalLocation("here", str(tmp_path / "here")), LocalLocation("there", str(tmp_path / "there"))
    doc = journal.record(journal.new_journal("failover", "R", ""), "fence", "fenced", {"database": "stopped"})
    assert journal.save(doc, path, [here, there], "failover") == []
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert json.loads(there.get_bytes("runs/journal/failover.json"))["steps"]["fence"]["outcome"] == "fenced"
    newer = journal.record(doc, "database", "started", {"action": "promote"})
    journal.save(newer, str(tmp_path / "elsewhere.json"), [there], "failover")   # a run on a DR host rebuilt since
    found, unreadable, seen = journal.read_copies(path, [here, there], "failover")
    assert unreadable == [] and found == doc                                   # the DR host's copy decides
    assert seen == {path: doc["sequence"], "here (runs/journal/failover.json)": doc["sequence"],
                    "there (runs/journal/failover.json)": newer["sequence"]}
    os.remove(path)                                                            # the DR host lost its copy
    found, _unreadable, _seen = journal.read_copies(path, [here, there], "failover")
    assert found["sequence"] == newer["sequence"] and "database" in found["steps"]
    journal.save(doc, path, [], "failover")
    removed, warnings = journal.remove(path, [here, there], "failover")
    assert removed == [path, "here", "there"] and warnings == []
    assert journal.read_copies(path, [here, there], "failover")[0] is None


def test_a_location_that_cannot_be_written_is_a_warning_and_the_local_copy_still_made(tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the location's directory should be")
    path = str(tmp_path / "failover.json")
    warnings = journal.save(journal.new_journal("failover", "R", ""), path,
                            [LocalLocation("broken", str(blocked))], "failover")
    assert os.path.exists(path) and len(warnings) == 1 and "the journal's copy in broken was not written" in warnings[0]


def test_the_local_copy_that_cannot_be_written_stops_the_run(tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("not a directory")
    with pytest.raises(DRError) as err:
        journal.save(journal.new_journal("failover", "R", ""), str(blocked / "failover.json"), [], "failover")
    assert str(blocked) in str(err.value)


def test_run_refuses_unknown_actions_and_kinds(tmp_path):
    with pytest.raises(DRError) as err:
        journal.run("read", "failback", str(tmp_path / "j.json"))
    assert "kind 'failback' is not one of failover" in str(err.value)
    with pytest.raises(DRError) as err:
        journal.run("erase", "failover", str(tmp_path / "j.json"))
    assert "action 'erase'" in str(err.value)
    with pytest.raises(DRError) as err:
        journal.run("write", "failover", str(tmp_path / "j.json"))
    assert "needs the journal read earlier" in str(err.value)


def test_a_database_that_does_not_answer_is_down_with_its_reason():
    seen = journal.database_world({"login_host": "127.0.0.1", "login_port": 1, "connect_timeout": 2})
    assert seen["role"] == "down" and "127.0.0.1:1" in seen["error"]
