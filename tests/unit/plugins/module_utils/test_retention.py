"""The retention engine: GFS keep/delete decisions as a pure function.

Expected sets are written out by hand (short cases) or derived from the calendar with plain
date arithmetic (long cases), never from the engine's own bucketing.
"""

import collections
import datetime

import pytest

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.retention import (
    Decision, Policy, Tier, decide_retention, pgbackrest_full_sets_to_expire, summarize)

UTC = datetime.timezone.utc
HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)


def at(year, month, day, hour=0, minute=0):
    return datetime.datetime(year, month, day, hour, minute, tzinfo=UTC)


def kept_ids(decisions):
    return {decision.id for decision in decisions if decision.keep}


def deleted_ids(decisions):
    return {decision.id for decision in decisions if not decision.keep}


def reasons_of(decisions, backup_id):
    return [decision.reasons for decision in decisions if decision.id == backup_id][0]


def full_id(day):
    return "full-%s" % day.isoformat()


def database_history(first_day, last_day, bad_full_days=(), bad_incr_every=0, manual_full_days=()):
    """Daily fulls at 02:00 UTC, hourly incrementals at every other hour, each on the latest full.

    A full on one of `bad_full_days` failed verification; its incrementals passed their own
    (valid=True) but cannot be restored: `restorable` says so, for the test's own oracle.
    On `manual_full_days` a second full is taken at 15:00 (say, before a migration).
    """
    backups = []
    latest_full = None
    day = first_day
    count = 0
    while day <= last_day:
        for hour in range(24):
            moment = datetime.datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
            if hour == 2 or (hour == 15 and day in manual_full_days):
                valid = day not in bad_full_days
                backup_id = full_id(day) if hour == 2 else full_id(day) + "-manual"
                latest_full = {"id": backup_id, "time": moment, "valid": valid, "kind": "full", "restorable": valid}
                backups.append(latest_full)
            elif latest_full is not None:
                count += 1
                valid = not (bad_incr_every and count % bad_incr_every == 0)
                backups.append({"id": "incr-%sT%02d" % (day.isoformat(), hour), "time": moment, "valid": valid,
                                "kind": "incr", "depends_on": latest_full["id"],
                                "restorable": valid and latest_full["valid"]})
        day += DAY
    return backups


# ---------------------------------------------------------------------------------------------
# Exact sets


def test_short_case_counted_by_hand():
    # Fulls at 02:00 every day from 2026-09-01 to 2026-11-24; now is Tuesday 2026-11-24 03:00.
    backups = [{"id": full_id(day), "time": at(day.year, day.month, day.day, 2), "valid": True, "kind": "full"}
               for day in (datetime.date(2026, 9, 1) + n * DAY for n in range(85))]
    policy = Policy.from_params({"daily_days": 7, "weekly_days": 28, "monthly_days": 90, "keep_last": 1})
    decisions = decide_retention(backups, at(2026, 11, 24, 3), policy)
    # daily, window from 11-17 03:00: the fulls of 11-18 .. 11-24                  -> 7
    # weekly, window from 10-27 03:00: Sundays 11-01, 11-08, 11-15, 11-22 and, for
    #   the week in progress (W48), 11-24; Sunday 10-25 is outside                    -> 3 more
    # monthly, window from 08-26 03:00: 11-24 (November so far), 10-31, 09-30        -> 2 more
    expected = {full_id(datetime.date(2026, 11, day)) for day in (18, 19, 20, 21, 22, 23, 24, 1, 8, 15)}
    expected |= {full_id(datetime.date(2026, 10, 31)), full_id(datetime.date(2026, 9, 30))}
    assert len(expected) == 12
    assert kept_ids(decisions) == expected
    assert [decision.id for decision in decisions] == [backup["id"] for backup in backups]  # input order

    assert reasons_of(decisions, "full-2026-11-24") == [
        "newest valid backup (always kept)", "one of the 1 newest valid", "daily 2026-11-24 (kept 7 d)",
        "weekly 2026-W48 (kept 28 d)", "monthly 2026-11 (kept 90 d)"]
    assert reasons_of(decisions, "full-2026-10-31") == ["monthly 2026-10 (kept 90 d)"]
    assert reasons_of(decisions, "full-2026-11-22") == ["daily 2026-11-22 (kept 7 d)", "weekly 2026-W47 (kept 28 d)"]
    assert reasons_of(decisions, "full-2026-11-16") == [
        "daily 2026-11-16 outside 7 d", "not the newest of weekly 2026-W47 ('full-2026-11-22' is)",
        "not the newest of monthly 2026-11 ('full-2026-11-24' is)"]
    assert reasons_of(decisions, "full-2026-09-01") == [
        "daily 2026-09-01 outside 7 d", "not the newest of monthly 2026-09 ('full-2026-09-30' is)",
        "not a weekly representative"]


@pytest.fixture(scope="module")
def two_years():
    return database_history(datetime.date(2024, 11, 25), datetime.date(2026, 11, 24))


def test_two_years_under_the_plans_database_policy(two_years):
    now = at(2026, 11, 24, 2, 30)
    backups = [backup for backup in two_years if backup["time"] <= now]
    # Two years to today's full; the first day's 00:00 and 01:00 have no full to build on.
    assert len(backups) == 729 * 24 + 3 - 2
    decisions = decide_retention(backups, now, Policy.plan_database())

    today = datetime.date(2026, 11, 24)
    daily = {today - n * DAY for n in range(30)}  # 10-26 .. 11-24; 10-25 02:00 is just outside

    def inside(day, days):
        return datetime.datetime(day.year, day.month, day.day, 2, tzinfo=UTC) > now - days * DAY

    past = [today - n * DAY for n in range(400)]
    weekly = {day for day in past if (day.isoweekday() == 7 or day == today) and inside(day, 90)}
    monthly = {day for day in past if ((day + DAY).day == 1 or day == today) and inside(day, 365)}
    # Sundays 2026-08-30 .. 10-25 are the weekly ones in days 31-90; the month ends 2025-11-30 ..
    # 2026-09-30 are the monthly ones in days 91-365 (10-31 is a daily one, 11-24 is today).
    assert len(weekly - daily) == 9
    assert len(monthly - daily - weekly) == 11
    expected = {full_id(day) for day in daily | weekly | monthly}
    assert len(expected) == 30 + 9 + 11
    # The plan's daily backups are the fulls: no hourly incremental survives (the newest valid
    # backup at 02:30 is today's full).
    assert kept_ids(decisions) == expected
    assert reasons_of(decisions, "full-2025-11-20") == [
        "daily 2025-11-20 outside 30 d", "not a weekly/monthly representative"]
    assert reasons_of(decisions, "full-2025-08-31") == [
        "daily 2025-08-31 outside 30 d", "weekly 2025-W35 outside 90 d", "monthly 2025-08 outside 365 d"]


def test_newest_incremental_is_kept_with_its_full(two_years):
    now = at(2026, 11, 24, 14, 30)
    decisions = decide_retention([b for b in two_years if b["time"] <= now], now, Policy.plan_database())
    assert reasons_of(decisions, "incr-2026-11-24T14") == [
        "newest valid backup (always kept)", "one of the 1 newest valid"]
    assert "needed by incr 'incr-2026-11-24T14'" in reasons_of(decisions, "full-2026-11-24")
    assert reasons_of(decisions, "incr-2026-11-24T13") == [
        "daily/weekly/monthly keep full/diff/logical backups only", "not one of the 1 newest valid"]
    assert len(kept_ids(decisions)) == 51


def test_files_policy_hourly_syncs_7_days_daily_snapshots_30_days():
    backups = []
    moment = at(2026, 10, 1, 0, 15)
    while moment <= at(2026, 11, 24, 12, 30):
        backups.append({"id": "sync-" + moment.strftime("%m%dT%H"), "time": moment, "valid": True, "kind": "sync"})
        if moment.hour == 0:
            snapshot_time = moment + datetime.timedelta(minutes=30)
            backups.append({"id": "snap-" + moment.strftime("%m%d"), "time": snapshot_time, "valid": True,
                            "kind": "snapshot"})
        moment += HOUR
    decisions = decide_retention(backups, at(2026, 11, 24, 12, 30), Policy.plan_files())
    kept = kept_ids(decisions)
    # Syncs at HH:15 inside (11-17 12:30, 11-24 12:30]: 11-17 13:15 .. 11-24 12:15, one an hour.
    expected_syncs = {"sync-" + (at(2026, 11, 17, 13) + n * HOUR).strftime("%m%dT%H") for n in range(168)}
    # Snapshots at 00:45 inside (10-25 12:30, 11-24 12:30]: 10-26 .. 11-24.
    expected_snapshots = {"snap-" + (at(2026, 10, 26) + n * DAY).strftime("%m%d") for n in range(30)}
    assert kept == expected_syncs | expected_snapshots
    assert reasons_of(decisions, "sync-1117T12") == [
        "hourly 2026-11-17T12:00Z outside 7 d", "daily keeps snapshot backups only"]
    assert reasons_of(decisions, "snap-1026") == ["daily 2026-10-26 (kept 30 d)"]
    assert reasons_of(decisions, "snap-1025") == [
        "daily 2026-10-25 outside 30 d", "hourly keeps sync backups only"]


# ---------------------------------------------------------------------------------------------
# The newest valid backup, invalid backups, dependencies


def test_newest_valid_is_kept_even_when_the_policy_would_drop_it():
    backups = [{"id": "old-%d" % n, "time": at(2026, 6, 1 + n, 2), "valid": True} for n in range(5)]
    backups.append({"id": "failed", "time": at(2026, 8, 1, 2), "valid": False})
    policy = Policy([Tier("day", 7 * DAY)], keep_last=0)
    decisions = decide_retention(backups, at(2026, 11, 24), policy)
    assert kept_ids(decisions) == {"old-4"}
    assert reasons_of(decisions, "old-4") == ["newest valid backup (always kept)"]
    assert reasons_of(decisions, "failed") == ["not valid and outside every window"]
    assert reasons_of(decisions, "old-3") == ["daily 2026-06-04 outside 7 d"]


@pytest.mark.parametrize("build", [
    lambda: Policy.from_params({"hourly_hours": 0, "daily_days": 0, "weekly_days": 0, "monthly_days": 0,
                                "yearly_days": 0, "keep_last": 0}),
    lambda: Policy([], keep_last=0),
])
def test_a_policy_that_keeps_nothing_is_refused(build):
    with pytest.raises(DRError) as err:
        build()
    assert "keeps nothing" in str(err.value)
    assert "retention.keep_last" in str(err.value)


def test_keep_last_only_policy():
    backups = [{"id": n, "time": at(2026, 1, 1) + n * HOUR, "valid": n != 9} for n in range(10)]
    decisions = decide_retention(backups, at(2026, 11, 24), Policy([], keep_last=3))
    assert kept_ids(decisions) == {6, 7, 8}
    assert reasons_of(decisions, 6) == ["one of the 3 newest valid"]
    assert reasons_of(decisions, 5) == ["not one of the 3 newest valid"]
    assert reasons_of(decisions, 9) == ["not valid and outside every window"]


def test_invalid_backups_are_never_representatives():
    backups = [
        {"id": "good-0200", "time": at(2026, 11, 23, 2), "valid": True, "kind": "full"},
        {"id": "bad-2000", "time": at(2026, 11, 23, 20), "valid": False, "kind": "full"},
        {"id": "on-bad", "time": at(2026, 11, 23, 21), "valid": True, "kind": "diff", "depends_on": "bad-2000"},
        {"id": "good-today", "time": at(2026, 11, 24, 2), "valid": True, "kind": "full"},
    ]
    policy = Policy.from_params({"daily_days": 7, "weekly_days": 0, "monthly_days": 0})
    decisions = decide_retention(backups, at(2026, 11, 24, 3), policy)
    assert reasons_of(decisions, "good-0200") == ["daily 2026-11-23 (kept 7 d)"]
    assert reasons_of(decisions, "bad-2000") == [
        "not valid: never a representative, and older than the newest valid backup 'good-today'"]
    # Its own verification passed, but its base failed: it cannot be restored, so it is not valid.
    assert reasons_of(decisions, "on-bad") == [
        "not restorable: needs full 'bad-2000', which is not valid: never a representative, "
        "and older than the newest valid backup 'good-today'"]
    assert kept_ids(decisions) == {"good-0200", "good-today"}


def test_invalid_backups_newer_than_the_newest_valid_are_kept_for_inspection():
    backups = [
        {"id": "good", "time": at(2026, 11, 10, 2), "valid": True},
        {"id": "failed-old", "time": at(2026, 11, 15, 2), "valid": False},
        {"id": "failed-1", "time": at(2026, 11, 22, 2), "valid": False},
        {"id": "failed-2", "time": at(2026, 11, 23, 2), "valid": False},
    ]
    decisions = decide_retention(backups, at(2026, 11, 24, 3), Policy.plan_files())  # shortest window 7 d
    assert kept_ids(decisions) == {"good", "failed-1", "failed-2"}
    assert reasons_of(decisions, "failed-2") == [
        "not valid; kept for inspection until 2026-11-30T02:00:00Z: newer than the newest valid backup 'good'"]
    assert reasons_of(decisions, "failed-old") == [
        "not valid: never a representative, and past the 7 d inspection window"]
    only_failures = decide_retention(backups[1:], at(2026, 11, 24, 3), Policy.plan_files())
    assert reasons_of(only_failures, "failed-1") == [
        "not valid; kept for inspection until 2026-11-29T02:00:00Z: no valid backup exists"]


def test_dependents_keep_their_base_transitively():
    backups = [
        {"id": "full", "time": at(2026, 1, 1, 2), "valid": True, "kind": "full"},
        {"id": "diff", "time": at(2026, 1, 2, 2), "valid": True, "kind": "diff", "depends_on": "full"},
        {"id": "incr", "time": at(2026, 1, 2, 5), "valid": True, "kind": "incr", "depends_on": "diff"},
        {"id": "unrelated", "time": at(2026, 1, 1, 1), "valid": True, "kind": "full"},
    ]
    policy = Policy([Tier("hour", 24 * HOUR)], keep_last=1)
    decisions = decide_retention(backups, at(2026, 3, 1), policy)
    assert decisions == [
        Decision("full", True, ["needed by diff 'diff'"]),
        Decision("diff", True, ["needed by incr 'incr'"]),
        Decision("incr", True, ["newest valid backup (always kept)", "one of the 1 newest valid"]),
        Decision("unrelated", False, ["hourly 2026-01-01T01:00Z outside 1 d"]),
    ]


def test_a_backup_whose_base_is_missing_is_not_restorable():
    backups = [
        {"id": "full", "time": at(2026, 11, 23, 2), "valid": True, "kind": "full"},
        {"id": "orphan", "time": at(2026, 11, 23, 9), "valid": True, "kind": "incr", "depends_on": "gone"},
    ]
    decisions = decide_retention(backups, at(2026, 11, 23, 10), Policy.plan_database())
    assert reasons_of(decisions, "full")[0] == "newest valid backup (always kept)"
    assert not reasons_of(decisions, "orphan")[0].startswith("newest")
    assert "not restorable: needs 'gone', which is not in the list" in reasons_of(decisions, "orphan")[0]


def test_backups_after_now_are_kept_and_do_not_count_as_newest():
    backups = [
        {"id": "today", "time": at(2026, 11, 24, 2), "valid": True},
        {"id": "future", "time": at(2026, 11, 25, 2), "valid": True},
    ]
    decisions = decide_retention(backups, "2026-11-24T03:00:00Z", Policy([], keep_last=1))
    assert kept_ids(decisions) == {"today", "future"}
    assert reasons_of(decisions, "future") == [
        "taken after now (2026-11-25T02:00:00Z > 2026-11-24T03:00:00Z): kept, not judged yet"]


def test_accepts_objects_string_times_and_zones():
    Item = collections.namedtuple("Item", "id time valid kind depends_on")
    backups = [Item("a", "2026-11-24T03:00:00+01:00", True, "logical", None),  # 02:00 UTC
               Item("b", "2026-11-23T23:30:00-01:00", True, "logical", None)]  # 11-24 00:30 UTC
    decisions = decide_retention(backups, "2026-11-24T12:00:00Z", {"daily_days": 30, "weekly_days": 0,
                                                                   "monthly_days": 0})
    assert reasons_of(decisions, "a")[-1] == "daily 2026-11-24 (kept 30 d)"
    assert reasons_of(decisions, "b") == ["not the newest of daily 2026-11-24 ('a' is)"]


# ---------------------------------------------------------------------------------------------
# Safety: idempotence and stability while time moves on


def _period(period, moment):
    """The test's own period key (deliberately not the engine's)."""
    if period == "hour":
        return (moment.date(), moment.hour)
    if period == "day":
        return moment.date()
    if period == "week":
        return moment.isocalendar()[:2]
    if period == "month":
        return (moment.year, moment.month)
    return moment.year


def _simulate(history, policy, run_times):
    """Run retention at each of `run_times`, deleting what it says, checking as it goes."""
    history = sorted(history, key=lambda backup: backup["time"])
    store = collections.OrderedDict()
    newest_restorable = None
    # tier period -> {period key: newest restorable backup created so far that the tier takes}
    representatives = {tier.period: collections.OrderedDict() for tier in policy.tiers}
    added = 0
    for now in run_times:
        while added < len(history) and history[added]["time"] <= now:
            backup = history[added]
            added += 1
            store[backup["id"]] = backup
            if backup["restorable"]:
                newest_restorable = backup
                for tier in policy.tiers:
                    if tier.kinds is None or backup["kind"] in tier.kinds:
                        representatives[tier.period][_period(tier.period, backup["time"])] = backup

        decisions = decide_retention(list(store.values()), now, policy)
        for backup_id in deleted_ids(decisions):
            del store[backup_id]

        # Idempotent: the same `now` again deletes nothing more.
        again = decide_retention(list(store.values()), now, policy)
        assert deleted_ids(again) == set(), now
        # Never loses the newest restorable backup, nor a representative inside its window.
        assert newest_restorable is None or newest_restorable["id"] in store, now
        for tier in policy.tiers:
            cutoff = now - tier.keep_for
            for backup in reversed(representatives[tier.period].values()):
                if backup["time"] <= cutoff:
                    break  # older periods' representatives are older still
                assert backup["id"] in store, (now, tier, backup["id"])
        # Nothing kept depends on something deleted.
        for backup in store.values():
            assert backup.get("depends_on") is None or backup["depends_on"] in store, (now, backup["id"])
    return store, history[:added]


def test_daily_runs_over_400_days_are_idempotent_stable_and_path_independent():
    history = database_history(datetime.date(2025, 10, 1), datetime.date(2026, 11, 10),
                               bad_full_days={datetime.date(2025, 10, 1) + n * DAY for n in range(5, 420, 17)},
                               bad_incr_every=50,
                               manual_full_days={datetime.date(2025, 10, 1) + n * DAY for n in range(3, 420, 11)})
    policy = Policy.plan_database()
    # One run a day, at an hour that moves through the day (7 h later each day, modulo 24), so it
    # lands before and after the 02:00 full.
    run_times = [at(2025, 10, 1, 0, 30) + n * DAY + (n * 7 % 24) * HOUR for n in range(400)]
    last_run = run_times[-1]
    assert last_run.date() == datetime.date(2026, 11, 4)
    store, seen = _simulate(history, policy, run_times)
    # Deleting a little every day ends where one run over the whole history ends.
    assert set(store) == kept_ids(decide_retention(seen, last_run, policy))
    assert 40 < len(store) < 60


def test_files_runs_every_6_hours_over_60_days_are_stable():
    history = []
    moment = at(2026, 9, 1, 0, 15)
    while moment < at(2026, 11, 1):
        history.append({"id": "sync-%s" % moment.isoformat(), "time": moment, "valid": moment.hour != 13,
                        "kind": "sync", "restorable": moment.hour != 13})
        if moment.hour % 5 == 0:  # a second sync in the same hour, run by hand
            rerun_time = moment + datetime.timedelta(minutes=30)
            history.append({"id": "sync-%s" % rerun_time.isoformat(), "time": rerun_time, "valid": True,
                            "kind": "sync", "restorable": True})
        if moment.hour == 0:
            snapshot_time = moment + datetime.timedelta(minutes=30)
            history.append({"id": "snap-%s" % snapshot_time.isoformat(), "time": snapshot_time,
                            "valid": moment.day != 7, "kind": "snapshot", "restorable": moment.day != 7})
        moment += HOUR
    policy = Policy.plan_files()
    run_times = [at(2026, 9, 1, 1) + n * 6 * HOUR for n in range(240)]
    last_run = run_times[-1]
    store, seen = _simulate(history, policy, run_times)
    assert set(store) == kept_ids(decide_retention(seen, last_run, policy))


# ---------------------------------------------------------------------------------------------
# pgBackRest


def _pgbackrest_full(day, valid=True):
    stop = at(2026, 11, day, 2, 40)
    return {"label": "202611%02d-020000F" % day, "time": stop, "valid": valid}


def test_pgbackrest_full_sets_to_expire():
    fulls = [_pgbackrest_full(day, valid=day != 23) for day in range(10, 25)]
    fulls.insert(3, {"label": "20261112-020000F_20261112-140000D", "type": "diff", "time": at(2026, 11, 12, 14),
                     "valid": True})
    policy = {"daily_days": 3, "weekly_days": 14, "monthly_days": 0, "keep_last": 1}
    # daily window from 11-21 03:00: 11-22, 11-24 (11-23 failed, never a representative)
    # weekly window from 11-10 03:00: W46 -> 11-15, W47 -> 11-22, W48 -> 11-24
    expire = pgbackrest_full_sets_to_expire(fulls, at(2026, 11, 24, 3), policy)
    assert expire == ["202611%02d-020000F" % day for day in (10, 11, 12, 13, 14, 16, 17, 18, 19, 20, 21, 23)]


def test_pgbackrest_never_expires_the_newest_valid_full():
    fulls = [_pgbackrest_full(day) for day in (1, 2, 3)] + [_pgbackrest_full(4, valid=False)]
    fulls[0]["time"] = int(fulls[0]["time"].timestamp())  # epoch seconds, as pgbackrest info gives them
    expire = pgbackrest_full_sets_to_expire(fulls, at(2027, 6, 1), Policy.plan_database())
    assert expire == ["20261101-020000F", "20261102-020000F", "20261104-020000F"]
    with pytest.raises(DRError) as err:
        pgbackrest_full_sets_to_expire([{"label": "", "time": at(2026, 1, 1), "valid": True}], at(2026, 1, 2),
                                       Policy.plan_database())
    assert "pgBackRest full backup #1" in str(err.value) and "label" in str(err.value)


# ---------------------------------------------------------------------------------------------
# Policies and validation


def test_plan_policies_and_the_option_shape():
    assert Policy.plan_database().to_params() == {
        "hourly_hours": 0, "daily_days": 30, "weekly_days": 90, "monthly_days": 365, "yearly_days": 0,
        "keep_last": 1, "daily_kinds": ["full", "diff", "logical"], "weekly_kinds": ["full", "diff", "logical"],
        "monthly_kinds": ["full", "diff", "logical"]}
    files = Policy.plan_files()
    assert files.tiers == (Tier("hour", 7 * DAY, ["sync"]), Tier("day", 30 * DAY, ["snapshot"]))
    assert Policy.from_params({"hourly_hours": 0, "daily_days": 30, "weekly_days": 90, "monthly_days": 365,
                               "yearly_days": 0, "keep_last": 1}) == Policy.plan_database()
    # Missing or None options take the plan's value: a partial policy keeps more, never less.
    assert Policy.from_params({"daily_days": None, "keep_last": "2"}, plan="files") == Policy(files.tiers, 2)
    assert Policy.from_params({"yearly_days": 3650}).tiers[-1] == Tier("year", 3650 * DAY,
                                                                       ["full", "diff", "logical"])


@pytest.mark.parametrize("params, message", [
    ({"daily_days": -3}, "retention.daily_days must be a whole number of days, 0 or more (0 turns the tier off), "
                         "got -3"),
    ({"weekly_days": "ninety"}, "retention.weekly_days must be a whole number of days"),
    ({"monthly_days": 1.5}, "retention.monthly_days must be a whole number of days"),
    ({"yearly_days": True}, "retention.yearly_days must be a whole number of days"),
    ({"hourly_hours": [1]}, "retention.hourly_hours must be a whole number of hours"),
    ({"daily_days": 100000}, "retention.daily_days must be at most 36600 days"),
    ({"keep_last": -1}, "retention.keep_last must be a whole number of backups, 0 or more, got -1"),
    ({"keep_last": "one"}, "retention.keep_last must be a whole number of backups"),
    ({"daily_kinds": ["full", "tape"]}, "retention.daily_kinds must be a non-empty list of backup kinds"),
    ({"daily_kinds": []}, "retention.daily_kinds must be a non-empty list"),
    ({"daily_dayz": 30}, "retention.daily_dayz is not a retention option"),
    (["daily_days"], "retention must be a dictionary"),
])
def test_every_policy_field_is_validated_by_name(params, message):
    with pytest.raises(DRError) as err:
        Policy.from_params(params)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


GOOD = {"time": "2026-11-24T02:00:00Z", "valid": True}


@pytest.mark.parametrize("backups, message", [
    ([dict(GOOD, id="a"), dict(GOOD)], "backup #2 in the list has no id"),
    ([dict(GOOD, id="")], "backup #1 in the list has no id"),
    ([dict(GOOD, id="a"), dict(GOOD, id="b"), dict(GOOD, id="a")], "backup 'a' appears twice in the list (#1 and #3)"),
    ([dict(GOOD, id="a", time="last tuesday")], "backup 'a' time 'last tuesday' is not a timestamp"),
    ([dict(GOOD, id="a", time="2026-02-30T00:00:00Z")], "backup 'a' time '2026-02-30T00:00:00Z' is not a valid date"),
    ([{"id": "a", "valid": True}], "backup 'a' has no time"),
    ([{"id": "a", "time": "2026-11-24T02:00:00Z"}], "backup 'a' valid must be true or false, got None"),
    ([dict(GOOD, id="a", valid="yes")], "backup 'a' valid must be true or false, got 'yes'"),
    ([dict(GOOD, id="a", kind="tape")], "backup 'a' kind must be one of full, diff, incr, logical, sync, snapshot"),
    ([dict(GOOD, id="a", depends_on="a")], "backup 'a' depends on itself"),
    ([dict(GOOD, id="a", depends_on="b"), dict(GOOD, id="b", depends_on="a")],
     "backup 'a' depends_on forms a cycle: 'a' -> 'b' -> 'a'"),
    ([dict(GOOD, id="a", depends_on=["b"])], "backup 'a' depends_on must be the id of another backup"),
    (["a"], "backup #1 in the list must be a mapping with id, time and valid"),
    ("abc", "backups must be a list, got str"),
])
def test_every_backup_error_names_the_backup(backups, message):
    with pytest.raises(DRError) as err:
        decide_retention(backups, "2026-11-24T03:00:00Z", Policy.plan_database())
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_now_and_policy_are_validated():
    with pytest.raises(DRError) as err:
        decide_retention([], "tomorrow", Policy.plan_database())
    assert "retention now 'tomorrow' is not a timestamp" in str(err.value)
    with pytest.raises(DRError) as err:
        decide_retention([], "2026-11-24T03:00:00Z", "30 days")
    assert "retention policy must be a Policy or a dictionary" in str(err.value)
    with pytest.raises(DRError) as err:
        Policy([Tier("day", DAY), Tier("day", 2 * DAY)])
    assert "two daily tiers" in str(err.value)
    with pytest.raises(DRError) as err:
        Tier("fortnight", DAY)
    assert "retention tier period" in str(err.value)


def test_summarize_for_a_module_result():
    decisions = [Decision("a", True, ["daily 2026-11-24 (kept 30 d)", "weekly 2026-W48 (kept 90 d)"]),
                 Decision("b", False, ["not valid and outside every window"])]
    assert summarize(decisions) == {
        "keep": ["a"], "delete": ["b"],
        "reasons": {"a": "daily 2026-11-24 (kept 30 d); weekly 2026-W48 (kept 90 d)",
                    "b": "not valid and outside every window"}}
    assert decisions[0].as_dict() == {"id": "a", "keep": True,
                                      "reasons": ["daily 2026-11-24 (kept 30 d)", "weekly 2026-W48 (kept 90 d)"]}
    assert summarize([]) == {"keep": [], "delete": [], "reasons": {}}
