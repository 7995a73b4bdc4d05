"""Bad input everywhere a user types something: timestamps that are not, ids that are not,
table and database names with quotes and SQL in them, negative or empty retention, an
inventory missing a variable. Each is refused with one clear message and nothing changes.

Hostile names all try to drop the canary table (conftest `canary`) in the lab's production
database: it must still be there, with its rows, after every run - the proof that no typed-in
name is ever executed. Playbooks run as users run them; the modules ad hoc, as AWX would.
"""

import glob
import os
import shutil

import pytest
import yaml

from ansible_collections.auditron.dr.plugins.module_utils import catalog, pgdump
from tests.conftest import REPO
from tests.faults.conftest import (CANARY_ROWS, app_pid, app_running, canary_rows, production_databases,
                                   run_restore_database)
from tests.helpers import faults

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def hostile(canary):
    return 'Invoice"; DROP TABLE "%s"; --' % canary


class Refusals(object):
    """Runs one bad input after another; each must fail with one message holding `expected`,
    leave the canary and the given backups as they were, and run none of `forbidden` tasks."""

    def __init__(self, fault, lab, postgres, canary, tmp_path):
        self.fault, self.lab, self.postgres, self.canary = fault, lab, postgres, canary
        self.tmp_path = tmp_path
        self.count = 0

    def canary_lost(self):
        """Data lost: the canary's acknowledged rows that the production database no longer holds."""
        return CANARY_ROWS - canary_rows(self.lab, self.postgres, self.canary)

    def playbook(self, what, name, expected, extra_vars=None, check=False, forbidden=(), args=(), inventory=None,
                 env=None):
        self.count += 1
        run = faults.playbook(name, self.tmp_path / ("reports-%d" % self.count), extra_vars=extra_vars, check=check,
                              args=args, inventory=inventory, env=env)
        return self.judge(what, run.rc, run.flat, expected, forbidden)

    def module(self, what, name, args, expected, check=False):
        result, raw = faults.ansible_module(name, args, check=check)
        flat = " ".join(raw.split())
        return self.judge(what, 1 if result.get("failed") else 0, result.get("msg", flat), expected, (), flat)

    def judge(self, what, rc, text, expected, forbidden, whole=None):
        assert rc != 0, "%s: accepted (rc 0): %s" % (what, (whole or text)[-1500:])
        found = [word for word in ([expected] if isinstance(expected, str) else expected) if word in text]
        assert found, "%s: refused, but without the expected message %r: %s" % (what, expected, text[-1500:])
        ran = [task for task in forbidden if "TASK [%s" % task in (whole or text)]
        assert not ran, "%s: ran %s before refusing" % (what, ran)
        assert self.canary_lost() == 0, "%s: the canary table lost rows" % what
        self.fault.saw("%s -> %s" % (what, found[0]))
        return text


@pytest.mark.fault("bad input to restore_database.yml",
                   "malformed method, target time or backup id refused in one line before the app is stopped or "
                   "anything restored; the canary table survives")
def test_restore_database_refuses_bad_input(fault, lab, postgres, canary, tmp_path):
    check = Refusals(fault, lab, postgres, canary, tmp_path)
    never = ("auditron.dr.app_platform", "auditron.dr.pg_recovery")
    check.playbook("restore_method='logical; rm -rf /'", "restore_database.yml",
                   "restore_method must be pitr or logical", {"restore_method": "logical; rm -rf /"}, forbidden=never)
    check.playbook("restore_target_time with SQL", "restore_database.yml", "is not a timestamp",
                   {"restore_target_time": "2026-11-24T02:00:00Z'; DROP TABLE \"%s\"; --" % canary}, forbidden=never)
    check.playbook("restore_target_time 2026-02-30T25:61:00Z", "restore_database.yml",
                   ["is not a valid date or time", "is not a timestamp"],
                   {"restore_target_time": "2026-02-30T25:61:00Z"}, forbidden=never)
    check.playbook("restore_backup_id with SQL (logical, --check)", "restore_database.yml",
                   ["is not a logical backup id", "not found"],
                   {"restore_method": "logical", "restore_backup_id": "auditron_1; DROP TABLE \"%s\"; --" % canary},
                   check=True, forbidden=never)
    fault.lost(check.canary_lost())


@pytest.mark.fault("bad input to recover_deleted.yml",
                   "a table name with SQL in it, malformed or reversed times, hostile ids: refused in one line "
                   "before any restore; nothing inserted; the canary table survives")
def test_recover_deleted_refuses_bad_input(fault, lab, postgres, canary, tmp_path):
    check = Refusals(fault, lab, postgres, canary, tmp_path)
    never = ("auditron.dr.pg_recovery", "Insert the deleted rows")
    check.playbook("recover_table with SQL", "recover_deleted.yml", "does not exist",
                   {"recover_table": hostile(canary)}, forbidden=never)
    check.playbook("recover_since 'yesterday'", "recover_deleted.yml", "is not a timestamp",
                   {"recover_since": "yesterday"}, forbidden=never)
    check.playbook("recover_since after recover_until", "recover_deleted.yml", "is not before",
                   {"recover_since": "2026-11-24T10:00:00Z", "recover_until": "2026-11-24T09:00:00Z"}, forbidden=never)
    check.playbook("recover_ids with SQL", "recover_deleted.yml", ["no deletions", "Nothing to recover"],
                   {"recover_ids": ["1); DROP TABLE \"%s\"; --" % canary]}, forbidden=never)
    fault.lost(check.canary_lost())


@pytest.mark.fault("bad input to prune_backups.yml",
                   "negative, empty or misspelt retention, a series with SQL in it, a malformed 'now': refused in one "
                   "line; every backup still there")
def test_prune_backups_refuses_bad_input(fault, lab, postgres, canary, small_db, key_file, places, tmp_path):
    made = [pgdump.backup(postgres, places.locations(), faults.file_encryption(key_file), database=small_db)
            for _index in range(2)]
    before = places.listing()
    base = {"auditron_dr_prune_confirm": True, "auditron_dr_prune_physical": False,
            "auditron_dr_logical_series": small_db, "auditron_dr_logical_prefix": places.prefix,
            "auditron_dr_logical_local_dir": places.local_dir}
    check = Refusals(fault, lab, postgres, canary, tmp_path)
    never = ("Show what the logical retention did",)
    check.playbook("retention daily_days -1", "prune_backups.yml", "must be a whole number",
                   dict(base, auditron_dr_backup_retention={"daily_days": -1}), forbidden=never)
    check.playbook("retention that keeps nothing", "prune_backups.yml", "keeps nothing",
                   dict(base, auditron_dr_backup_retention=dict(daily_days=0, weekly_days=0, monthly_days=0,
                                                                yearly_days=0, keep_last=0)), forbidden=never)
    check.playbook("retention 'dayly_days' (misspelt)", "prune_backups.yml", ["Unsupported parameters", "dayly_days"],
                   dict(base, auditron_dr_backup_retention={"dayly_days": 3}), forbidden=never)
    check.playbook("series with SQL", "prune_backups.yml", "is not a valid backup series name",
                   dict(base, auditron_dr_logical_series=hostile(canary)), forbidden=never)
    check.playbook("now 'next friday'", "prune_backups.yml", "is not a timestamp",
                   dict(base, auditron_dr_prune_now="next friday"), forbidden=never)
    assert places.listing() == before
    assert sorted(catalog.Catalog.load(places.locations(), series=small_db).entries) == sorted(
        item["backup_id"] for item in made)
    fault.saw("both backups of %s still in all 3 locations" % small_db)
    kept = set(catalog.Catalog.load(places.locations(), series=small_db).entries)
    fault.lost(check.canary_lost() + sum(1 for item in made if item["backup_id"] not in kept))


@pytest.mark.fault("bad input to backup_database.yml",
                   "a backup type or database name with shell or SQL in it, an unknown key source: refused in one "
                   "line before any backup is taken; nothing stored; the canary table survives")
def test_backup_database_refuses_bad_input(fault, lab, postgres, canary, places, tmp_path):
    check = Refusals(fault, lab, postgres, canary, tmp_path)
    logical_only = {"auditron_dr_logical_prefix": places.prefix, "auditron_dr_logical_local_dir": places.local_dir}
    check.playbook("backup_type 'full; rm -rf /tmp'", "backup_database.yml", "backup_type must be full, diff or incr",
                   {"backup_type": "full; rm -rf /tmp", "auditron_dr_backup_configure": False,
                    "auditron_dr_backup_logical_enabled": False},
                   forbidden=("Take the backup in each repository",))
    check.playbook("database name with SQL", "backup_database.yml", "does not exist",
                   dict(logical_only, auditron_dr_logical_database=hostile(canary)), args=("--skip-tags", "physical"))
    check.playbook("key_source 'kmss'", "backup_database.yml", "set auditron_dr_backup_encryption",
                   dict(logical_only, auditron_dr_backup_encryption={"key_source": "kmss"}),
                   args=("--skip-tags", "physical"), forbidden=("Dump, compress, encrypt",))
    stored = places.listing() if os.path.isdir(places.local_dir) else {}
    assert not any(stored.values()) and all(
        not faults.s3_keys(lab, region, places.prefix) for region in ("us-east-1", "eu-west-1"))
    fault.saw("nothing stored in any location")
    fault.lost(check.canary_lost())


def inventory_without(tmp_path, variable):
    """A copy of inventories/local whose hosts lack `variable` (host_vars), reading the lab's lab.json."""
    target = tmp_path / ("inventory-without-%s" % variable)
    shutil.copytree(str(REPO / "inventories" / "local"), str(target))
    for path in glob.glob(str(target / "host_vars" / "*.yml")) + glob.glob(str(target / "group_vars" / "all" / "*.yml")):
        with open(path) as handle:
            data = yaml.safe_load(handle) or {}
        if variable in data:
            del data[variable]
            with open(path, "w") as handle:
                yaml.safe_dump(data, handle, default_flow_style=False)
    return str(target)


@pytest.mark.fault("bad input to preflight.yml: an inventory missing a required variable",
                   "refused in one line naming the missing variable, before any check runs; a wrong-typed value "
                   "is refused naming the option")
def test_preflight_with_an_incomplete_inventory(fault, lab, postgres, canary, tmp_path):
    check = Refusals(fault, lab, postgres, canary, tmp_path)
    env = {"AUDITRON_LAB_JSON": os.path.join(lab["lab"]["dir"], "lab.json")}
    for variable in ("auditron_dr_postgres", "auditron_dr_backup_locations"):
        check.playbook("inventory without %s" % variable, "preflight.yml", "'%s' is undefined" % variable,
                       inventory=inventory_without(tmp_path, variable), env=env,
                       forbidden=("Print the preflight table",))
    check.playbook("auditron_dr_dns.port 'fifty-three'", "preflight.yml", ["cannot be converted to an int", "port"],
                   {"auditron_dr_dns": {"provider": "rfc2136", "server": "127.0.0.1", "port": "fifty-three",
                                        "zone": "auditron.test", "record": "api.auditron.test"}},
                   args=("--limit", "primary"))
    fault.lost(check.canary_lost())


@pytest.mark.fault("bad input to the modules (ad hoc, as AWX runs them)",
                   "malformed ids, times, series, table names, addresses and retention refused in one line naming "
                   "the option; nothing created; the canary table survives")
def test_modules_refuse_bad_input(fault, lab, postgres, canary, small_db, key_file, places, tmp_path):
    made = pgdump.backup(postgres, places.locations(), faults.file_encryption(key_file), database=small_db)
    check = Refusals(fault, lab, postgres, canary, tmp_path)
    connection = faults.module_connection(postgres)
    target = "%s_badinput" % small_db
    restore = dict(connection, target_db=target, locations=places.params, encryption=faults.file_encryption(key_file))
    try:
        check.module("pg_backup series '../../etc'", "pg_backup",
                     dict(connection, db=small_db, series="../../etc", locations=places.params,
                          encryption=faults.file_encryption(key_file)), "is not a valid backup series name")
        check.module("pg_restore backup_id '1 OR 1=1'", "pg_restore", dict(restore, backup_id="1 OR 1=1"),
                     "is not a logical backup id")
        check.module("pg_restore tables with SQL", "pg_restore",
                     dict(restore, backup_id=made["backup_id"], tables=[hostile(canary)]), "is not in backup")
        check.module("pg_restore before 'last week'", "pg_restore", dict(restore, before="last week", series=small_db),
                     "is not a timestamp")
        check.module("pg_restore target_db = the live source", "pg_restore",
                     dict(restore, backup_id=made["backup_id"], target_db=small_db, replace=True),
                     "is the live database backup")
        check.module("backup_catalog latest_before 'yesterday'", "backup_catalog",
                     {"locations": places.params, "series": small_db, "latest_before": "yesterday"},
                     "is not a timestamp")
        check.module("backup_prune retention daily_days -30", "backup_prune",
                     {"locations": places.params, "series": small_db, "retention": {"daily_days": -30}},
                     "must be a whole number")
        check.module("dns_record value '127.0.0.1; rm -rf /'", "dns_record",
                     {"dns": {"provider": "rfc2136", "server": lab["dns"]["server"], "port": lab["dns"]["port"],
                              "zone": lab["dns"]["zone"], "record": lab["dns"]["record"],
                              "tsig_key_file": lab["dns"]["tsig_key_file"]}, "value": ["127.0.0.1; rm -rf /"]},
                     "is not an IPv4 address", check=True)
        check.module("pgbackrest_restore target_time '2026-13-01T00:00:00Z'", "pgbackrest_restore",
                     {"config": os.path.join(lab["pgbackrest"]["config_dir"], "primary", "pgbackrest.conf"),
                      "pg_path": os.path.join(str(tmp_path), "never", "data"), "target": "time",
                      "target_time": "2026-13-01T00:00:00Z"}, "is not a valid date or time", check=True)
        check.module("recover_rows table with SQL", "recover_rows",
                     dict(connection, db=lab["sites"]["primary"]["postgres"]["database"], table=hostile(canary),
                          ids=["1"], source=dict(connection, db=small_db)), "does not exist")
        assert not faults.database_exists(postgres, target)
        assert not os.path.exists(os.path.join(str(tmp_path), "never"))
    finally:
        faults.sql(postgres, 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % target)
    listed = places.listing()
    assert all(listed[name] == sorted([catalog.artifact_key(made["backup_id"]),
                                       catalog.manifest_key(made["backup_id"])]) for name in listed), listed
    fault.saw("the backup untouched in all 3 locations; no database or directory created")
    fault.lost(check.canary_lost())


@pytest.mark.fault("malformed backup id in a real restore_database.yml run (logical)",
                   "refused before the app is stopped: production keeps its database, its name and its rows; "
                   "the app keeps running")
def test_restore_database_with_a_malformed_backup_id_changes_nothing(fault, lab, postgres, canary,
                                                                     isolated_production, tmp_path):
    prod = isolated_production
    pid = app_pid(prod["app"])
    run = run_restore_database(prod, tmp_path, "auditron_1; DROP TABLE \"%s\"; --" % canary)
    databases = production_databases(postgres, prod)
    renamed = [name for name in databases if name != prod["database"]]
    still_running = app_running(prod)
    stopped = "auditron.dr.app_platform : Stop" in run.output or "TASK [Stop application" in run.output
    fault.saw("rc %d; app %s%s; production database %s" % (
        run.rc, "stopped then " if stopped else "", "running" if still_running else "NOT running",
        "renamed to %s" % ", ".join(renamed) if prod["database"] not in databases else "kept its name"))
    assert canary_rows(lab, postgres, canary) == CANARY_ROWS
    failed_at = [line.strip() for line in run.output.splitlines() if "failed at" in line or "FAILED!" in line
                 or line.startswith("fatal:") or "[ERROR]" in line]
    fault.saw("the run said: %s" % " / ".join(failed_at[-3:])[:400])
    # Counted as lost: production no longer has its database (the rows sit under another name).
    lost = 0 if prod["database"] in databases else 1
    fault.lost(lost)
    assert run.rc != 0, "a malformed backup id was accepted: %s" % run
    assert not stopped and still_running and app_pid(prod["app"]) == pid, "the app was stopped for a typo: %s" % (
        run.flat[-800:])
