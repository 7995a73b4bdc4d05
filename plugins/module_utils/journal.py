# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run journal of a recovery run (failover today), checked against the world.

A journal says what an earlier run of the same recovery did: its id and incident, and for each
step its outcome and the evidence it saw (the DR database's role, system identifier, timeline
and WAL position before and after). It is kept on the DR host (the copy that decides) and,
best effort, under `runs/journal/<kind>.json` in each backup location that answered the
preflight, so that a controller on another host finds it when the DR host was rebuilt.

The journal never decides alone. `choose` says whether a re-run continues it (same incident, and
its end still holds when it says it finished) or starts a new one (no journal, an unreadable
one, another incident, or one whose end no longer describes DR), and why, in one sentence.
`database_action` then reads DR's database as it is now and says what the database step must
do: promote a standby, restore a cold or dead DR, wait for a recovery a killed run started,
keep a DR this failover already made primary (its writes since then stay), or refuse to throw
away a primary of the same system that no journal accounts for.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible_collections.auditron.dr.plugins.module_utils import pg
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, first_line, format_time, utc_now, \
    write_atomically

VERSION = 1
KINDS = ("failover",)
LOCATION_PREFIX = "runs/journal"

# One round trip: the role, the system identifier, the timeline and the WAL position. A primary's
# timeline is the one it writes (the first 8 hex digits of its current WAL file); a server in
# recovery has no current WAL file, so its last checkpoint's timeline stands in.
WORLD_SQL = (
    "SELECT pg_is_in_recovery(), (SELECT system_identifier::text FROM pg_control_system()), "
    "CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint()) "
    "ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END, "
    "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text ELSE pg_current_wal_lsn()::text END, "
    "EXISTS (SELECT 1 FROM pg_stat_wal_receiver)")


def database_world(params):
    """DR's database as it is now: {role: primary | standby | down, system_id, timeline, lsn,
    streaming, error}. A server that does not answer is `down` (its reason kept)."""
    try:
        conn = pg.connect(params, database="postgres")
    except DRError as exc:
        return {"role": "down", "system_id": None, "timeline": None, "lsn": None, "streaming": False,
                "error": exc.message}
    try:
        with conn.cursor() as cur:
            cur.execute(WORLD_SQL)
            in_recovery, system_id, timeline, lsn, streaming = cur.fetchone()
    finally:
        conn.close()
    return {"role": "standby" if in_recovery else "primary", "system_id": system_id,
            "timeline": int(timeline) if timeline is not None else None, "lsn": lsn,
            "streaming": bool(streaming), "error": None}


def describe_world(world):
    if world["role"] == "down":
        return "down (%s)" % (world.get("error") or "does not answer")
    return "%s of system %s on timeline %s%s" % (
        "a standby" + (" (streaming)" if world.get("streaming") else "") if world["role"] == "standby"
        else "a primary", world["system_id"], world["timeline"], (" at %s" % world["lsn"]) if world.get("lsn") else "")


# ---------------------------------------------------------------------------------------------
# Reading and writing copies

def parse(text, where):
    """A journal document from its text; DRError naming `where` when it is not one."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise DRError("the journal in %s is not JSON (%s)" % (where, first_line(exc)))
    if not isinstance(document, dict) or not document.get("id"):
        raise DRError("the journal in %s is not a run journal (no run id)" % where)
    if int(document.get("version", VERSION) or VERSION) > VERSION:
        raise DRError("the journal in %s was written by a newer auditron.dr (version %s)"
                      % (where, document.get("version")))
    document.setdefault("sequence", 0)
    document.setdefault("steps", {})
    return document


def location_key(kind):
    return "%s/%s.json" % (LOCATION_PREFIX, kind)


def read_copies(path, locations, kind):
    """(journal or None, [unreadable: "where: why"], {where: sequence}) over the local file and
    each location's copy: the local one when it can be read, else the location copy with the
    highest sequence (a write bumps it). A location that does not answer is noted, not fatal."""
    found, unreadable, seen = [], [], {}
    if path and os.path.exists(path):
        try:
            with open(path) as handle:
                document = parse(handle.read(), path)
            found.append(document)
            seen[path] = document["sequence"]
        except (IOError, OSError) as exc:
            unreadable.append("%s: %s" % (path, exc.strerror or exc))
        except DRError as exc:
            unreadable.append(exc.message)
    for location in locations or []:
        where = "%s (%s)" % (location.name, location_key(kind))
        try:
            if not location.exists(location_key(kind)):
                continue
            document = parse(location.get_bytes(location_key(kind)).decode("utf-8", "replace"), where)
        except DRError as exc:
            unreadable.append(exc.message if exc.message.startswith("the journal") else "%s: %s" % (where, exc.message))
            continue
        except Exception as exc:  # pylint: disable=broad-except
            # botocore's errors and the rest: a location that cannot be read is a note, not a stop.
            unreadable.append("%s: %s" % (where, first_line(exc)))
            continue
        found.append(document)
        seen[where] = document["sequence"]
    local = found[0] if path in seen else None
    # The DR host's copy decides (every controller's modules run there); a location's copy stands
    # in only when the DR host has none (a rebuilt DR host): then the newest of them.
    newest = local or (max(found, key=lambda doc: doc["sequence"]) if found else None)
    return newest, unreadable, seen


def save(document, path, locations, kind, mode=0o600):
    """The local copy first, atomically (it must be written: a failure stops the run); then each
    location, best effort (a warning each). Returns the warnings."""
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    directory = os.path.dirname(path)
    if directory and not os.path.isdir(directory):
        try:
            os.makedirs(directory, 0o700)
        except OSError as exc:
            raise DRError("the journal's directory %s cannot be made: %s" % (directory, exc.strerror or exc))
    try:
        write_atomically(path, text.encode("utf-8"), mode=mode)
    except (IOError, OSError) as exc:
        raise DRError("the journal %s cannot be written: %s" % (path, exc.strerror or exc))
    warnings = []
    for location in locations or []:
        try:
            location.put_bytes(location_key(kind), text.encode("utf-8"))
        except Exception as exc:  # pylint: disable=broad-except
            warnings.append("the journal's copy in %s was not written: %s" % (location.name, first_line(exc)))
    return warnings


def remove(path, locations, kind):
    """Remove every copy (the recovery is over). Returns (removed, warnings)."""
    removed, warnings = [], []
    if path and os.path.exists(path):
        os.remove(path)
        removed.append(path)
    for location in locations or []:
        try:
            if location.exists(location_key(kind)):
                location.delete([location_key(kind)])
                removed.append(location.name)
        except Exception as exc:  # pylint: disable=broad-except
            warnings.append("the journal's copy in %s was not removed: %s" % (location.name, first_line(exc)))
    return removed, warnings


# ---------------------------------------------------------------------------------------------
# Deciding

def new_journal(kind, run_id, incident_start):
    return {"version": VERSION, "kind": kind, "id": run_id, "incident_start": incident_start or "", "sequence": 0,
            "steps": {}}


def _database_end(journal):
    """The evidence the database step left: its `after` when done."""
    step = (journal.get("steps") or {}).get("database") or {}
    return step.get("after") if step.get("outcome") == "done" else None


def end_holds(journal, world):
    """Does the DR database still look as the journal's finished database step left it?"""
    after = _database_end(journal)
    if not after:
        return False
    return (world["role"] == "primary" and world["system_id"] == after.get("system_id")
            and (world["timeline"] or 0) >= int(after.get("timeline") or 0))


def choose(journal, unreadable, world, run_id, incident_start="", fresh=False, kind="failover"):
    """(journal to go on with, decision, reason). decision: continue | new. A copy that cannot be
    read is named in the reason whatever is decided."""
    chosen, decision, reason = _choose(journal, unreadable, world, run_id, incident_start, fresh, kind)
    if unreadable and journal is not None:
        reason = "%s (not read: %s)" % (reason, "; ".join(unreadable))
    return chosen, decision, reason


def _choose(journal, unreadable, world, run_id, incident_start, fresh, kind):
    incident_start = incident_start or ""
    if fresh:
        return new_journal(kind, run_id, incident_start), "new", "a new %s (fresh=true)" % kind
    if journal is None:
        if unreadable:
            return (new_journal(kind, run_id, incident_start), "new",
                    "the earlier journal cannot be read (%s): a new %s, which trusts nothing of it and checks "
                    "every step against the sites" % ("; ".join(unreadable), kind))
        return new_journal(kind, run_id, incident_start), "new", "no earlier %s: a new one" % kind
    recorded = journal.get("incident_start") or ""
    if incident_start and recorded and incident_start != recorded:
        return (new_journal(kind, run_id, incident_start), "new",
                "the journal %s is of another incident (started %s, this one %s): a new %s"
                % (journal["id"], recorded, incident_start, kind))
    after = _database_end(journal)
    if after and not end_holds(journal, world):
        return (new_journal(kind, run_id, incident_start), "new",
                "the journal %s says DR became a primary of system %s on timeline %s, but DR is now %s: "
                "a new %s" % (journal["id"], after.get("system_id"), after.get("timeline"), describe_world(world), kind))
    if journal.get("completed") and not after:
        return (new_journal(kind, run_id, incident_start), "new",
                "the journal %s says it finished but holds no evidence of its database step: a new %s"
                % (journal["id"], kind))
    continued = dict(journal)
    if incident_start:
        continued["incident_start"] = incident_start
    return (continued, "continue", "continuing %s %s%s (every step is checked against the sites again)" % (
        kind, journal["id"], " (finished: its end still holds)" if journal.get("completed") else ""))


def database_action(world, journal, requested_mode="auto", stanza_system_ids=None, replace_primary=False,
                    check_mode=False):
    """What the failover's database step must do, from DR's database as it is now: (action, reason).

    promote: a standby (warm) is promoted; wait: a recovery a killed run started is let finish;
    restore: a cold or dead DR (or a primary of another cluster) is set aside and restored;
    keep: DR is already the primary this failover made (its writes since are kept);
    refuse: DR is a primary of this system, or of a system the backups' could not be compared
    with, that no journal accounts for (restoring would discard what it holds): nothing is
    changed unless replace_primary; undecided: the same, in check mode before pgBackRest is
    configured at DR (a real run reads the backups' system first)."""
    step = (journal.get("steps") or {}).get("database") or {}
    before = step.get("before") or {}
    role = world["role"]
    if role == "down":
        return "restore", "DR's database is %s: it is restored" % describe_world(world)
    if role == "standby":
        if step.get("outcome") == "started" and step.get("action") == "restore":
            return "wait", ("DR's database is in the recovery the restore of run %s started: it is let finish"
                            % journal.get("id"))
        if requested_mode == "cold":
            return "restore", "DR is a standby but dr_mode is cold: it is set aside and restored"
        return "promote", "DR's database is %s: it is promoted" % describe_world(world)
    # A primary.
    if end_holds(journal, world):
        return "keep", ("DR's database is already the primary this failover made (%s): kept as it is, with "
                        "every write it took since" % describe_world(world))
    if step.get("outcome") == "started" and before:
        replaced = before.get("system_id") != world["system_id"]
        promoted = before.get("system_id") == world["system_id"] and \
            (world["timeline"] or 0) > int(before.get("timeline") or 0) and before.get("role") == "standby"
        if replaced or promoted:
            return "keep", ("the %s run %s started finished before it was stopped: DR's database is now %s, "
                            "kept" % ("restore" if replaced else "promotion", journal.get("id"), describe_world(world)))
    known = [str(system_id) for system_id in stanza_system_ids or []]
    if known and world["system_id"] not in known:
        return "restore", ("DR's database is a primary of system %s, not of the backups' system (%s): it is set "
                           "aside and restored" % (world["system_id"], ", ".join(known)))
    if replace_primary:
        return "restore", ("DR's database is %s; failover_replace_dr_primary=true: it is set aside and restored"
                           % describe_world(world))
    if not known and check_mode:
        # pgBackRest is configured at DR by the real run, before it reads which system the backups
        # are of: the plan can only say both outcomes.
        return "undecided", (
            "DR's database is %s and which system the backups are of is read only by a real run (after it configures "
            "pgBackRest at DR): it restores DR if they are of another system, and refuses (nothing changed) if they are "
            "of this one" % describe_world(world))
    return "refuse", (
        "failover.yml: nothing was changed. DR's database is already %s%s, and no journal of this failover says it "
        "made it so: restoring it would set aside every write it holds. If it serves, the failover is done; to "
        "throw it away and restore from the backups, run again with -e failover_replace_dr_primary=true."
        % (describe_world(world), (" (the backups' system)" if known else "")))


def record(journal, step=None, outcome=None, evidence=None, update=None, now=None):
    """The journal with one step's outcome and evidence (and top-level keys) merged in; its
    sequence bumped so that the newest copy wins wherever it is read."""
    document = dict(journal)
    document["steps"] = dict(document.get("steps") or {})
    if step:
        entry = dict(document["steps"].get(step) or {})
        entry.update(evidence or {})
        if outcome:
            entry["outcome"] = outcome
            entry[outcome + "_at"] = format_time(now or utc_now())
        document["steps"][step] = entry
    document.update(update or {})
    document["sequence"] = int(document.get("sequence") or 0) + 1
    document["updated"] = format_time(now or utc_now())
    return document


def run(action, kind, path, locations=None, postgres=None, run_id=None, incident_start="", fresh=False,
        requested_mode="auto", stanza_system_ids=None, replace_primary=False, journal=None, step=None,
        outcome=None, evidence=None, update=None, world_as=None, check_mode=False):
    """The run_journal module's engine: read (choose and plan the database step), write (record
    a step and save; with `world_as`, DR's database as it is now is the step's evidence under that
    name, e.g. before or after) or remove."""
    if kind not in KINDS:
        raise DRError("kind %r is not one of %s" % (kind, ", ".join(KINDS)))
    if action == "read":
        run_id = run_id or utc_now().strftime("%Y%m%dT%H%M%SZ")
        found, unreadable, seen = read_copies(path, locations, kind)
        world = database_world(postgres) if postgres else None
        chosen, decision, reason = choose(found, unreadable, world or {"role": "down"}, run_id, incident_start,
                                          fresh, kind)
        result = {"changed": False, "journal": chosen, "decision": decision, "reason": reason,
                  "copies": seen, "unreadable": unreadable, "world": world,
                  "warnings": ["journal: " + reason] if unreadable else []}
        if world is not None:
            result["database_action"], result["database_reason"] = database_action(
                world, chosen, requested_mode, stanza_system_ids, replace_primary, check_mode)
        return result
    if action == "write":
        if journal is None:
            raise DRError("action write needs the journal read earlier in this run (journal)")
        evidence = dict(evidence or {})
        if world_as:
            if not (postgres and step):
                raise DRError("world_as needs a step and the DR database's connection")
            evidence[world_as] = database_world(postgres)
        document = record(journal, step, outcome, evidence, update)
        if check_mode:
            return {"changed": False, "journal": document}
        warnings = save(document, path, locations, kind)
        return {"changed": True, "journal": document, "warnings": warnings}
    if action == "remove":
        if check_mode:
            return {"changed": False, "removed": []}
        removed, warnings = remove(path, locations, kind)
        return {"changed": bool(removed), "removed": removed, "warnings": warnings}
    raise DRError("action %r is not one of read, write, remove" % (action,))
