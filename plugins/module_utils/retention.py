# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""GFS (grandfather-father-son) retention as a pure function: (backups, now, policy) -> decisions.

The plan keeps database backups daily for 30 days, weekly for 90 days and monthly for a year
(with hourly incrementals besides), and file backups as hourly syncs for 7 days and daily
snapshots for 30 days. This module turns such a plan into keep/delete decisions, each with
the reasons an SRE needs to trust a deletion in check mode. It reads no clock, no storage and
no catalog: the caller passes the backups and `now`, so the same answer comes back in tests,
in check mode and in the real run.

The rule, per tier (period, keep_for):

- Backups are bucketed by period in UTC: hour, day, ISO week (Monday start), month, year.
- The representative of a period is the NEWEST VALID backup of that period (among the kinds
  the tier keeps). It is kept while its own time is inside the tier's window
  (now - keep_for, now].
- "Valid" means restorable: the backup's own `valid` flag is true and every backup it
  depends on (transitively) is present and valid. An incremental over a failed full cannot
  be restored, so it is never a representative either.

Whatever the tiers say:

- The `keep_last` newest valid backups are kept, and the newest valid one always is, even by
  a policy that would drop it: retention never leaves nothing to restore.
- A backup that a kept backup depends on is kept ("needed by incr X").
- Invalid backups newer than the newest valid one are kept for inspection while they are
  inside the shortest tier's window: they are the evidence of why backups started failing.
- Backups timed after `now` are kept and not judged (clock skew, or a `now` in the past).

Safety properties (tests/unit/plugins/module_utils/test_retention.py checks both):

- Idempotent: everything kept is kept for a reason that deleting the others cannot remove
  (a representative stays the newest of its period, the newest valid stays newest, bases of
  kept backups are kept), so a second run with the same `now` deletes nothing more.
- Stable: the newest valid backup of a complete period never changes, and leaves the window
  last of its period; so moving `now` forward never deletes a representative inside its
  window, and running every day ends with the same set as one run over the whole history.

Every backup series is judged on its own: pass one database's backups (or one site's file
backups) per call, so one series' backups never stand in for another's.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import collections.abc
import datetime
import re

from ansible_collections.auditron.dr.plugins.module_utils.common import UTC, DRError, format_time, parse_time

PERIODS = ("hour", "day", "week", "month", "year")
TIER_NAMES = {"hour": "hourly", "day": "daily", "week": "weekly", "month": "monthly", "year": "yearly"}
KINDS = ("full", "diff", "incr", "logical", "sync", "snapshot")

# The Ansible option shape: (option, period, unit of the number, seconds per unit).
DURATION_FIELDS = (
    ("hourly_hours", "hour", "hours", 3600),
    ("daily_days", "day", "days", 86400),
    ("weekly_days", "week", "days", 86400),
    ("monthly_days", "month", "days", 86400),
    ("yearly_days", "year", "days", 86400),
)
KINDS_FIELDS = tuple((TIER_NAMES[period] + "_kinds", period) for period in PERIODS)
PARAM_FIELDS = tuple(item[0] for item in DURATION_FIELDS) + ("keep_last",) + tuple(
    item[0] for item in KINDS_FIELDS)

# 100 years: a larger number is a typo, and would overflow datetime arithmetic long before that.
MAX_KEEP_DAYS = 36600

# The tiers of a day or longer keep the plan's "daily backups": fulls, differentials and logical
# dumps. Hourly incrementals are restore points only for an hourly tier (the plan sets none).
_DATABASE_DAILY_KINDS = ["full", "diff", "logical"]
DATABASE_PLAN = {
    "hourly_hours": 0, "daily_days": 30, "weekly_days": 90, "monthly_days": 365, "yearly_days": 0, "keep_last": 1,
    "hourly_kinds": None, "daily_kinds": _DATABASE_DAILY_KINDS, "weekly_kinds": _DATABASE_DAILY_KINDS,
    "monthly_kinds": _DATABASE_DAILY_KINDS, "yearly_kinds": _DATABASE_DAILY_KINDS,
}
# Files: the hourly tier keeps syncs, the daily (and any longer) tier keeps snapshots; without
# the kinds a 23:00 sync would stand in for the day's snapshot.
FILES_PLAN = {
    "hourly_hours": 7 * 24, "daily_days": 30, "weekly_days": 0, "monthly_days": 0, "yearly_days": 0, "keep_last": 1,
    "hourly_kinds": ["sync"], "daily_kinds": ["snapshot"], "weekly_kinds": ["snapshot"],
    "monthly_kinds": ["snapshot"], "yearly_kinds": ["snapshot"],
}
PLANS = {"database": DATABASE_PLAN, "files": FILES_PLAN}

_DIGITS_RE = re.compile(r"^\s*\d+\s*$")


def format_keep_for(keep_for):
    """'30 d', '36 h': whole days when it is, hours otherwise."""
    seconds = int(keep_for.total_seconds())
    if seconds % 86400 == 0:
        return "%d d" % (seconds // 86400)
    return "%d h" % (seconds // 3600)


def period_label(period, moment):
    """The UTC period a moment falls in, as reasons print it; also the bucket key."""
    moment = moment.astimezone(UTC)
    if period == "hour":
        return moment.strftime("%Y-%m-%dT%H:00Z")
    if period == "day":
        return moment.strftime("%Y-%m-%d")
    if period == "week":
        iso_year, iso_week = moment.isocalendar()[:2]
        return "%04d-W%02d" % (iso_year, iso_week)
    if period == "month":
        return moment.strftime("%Y-%m")
    return moment.strftime("%Y")


class Tier(object):
    """Keep the newest valid backup of each `period` for `keep_for` (a timedelta).

    `kinds`: the backup kinds this tier picks representatives from; None for every kind.
    Backups without a kind are candidates for every tier (unknown is treated as keepable).
    """

    __slots__ = ("period", "keep_for", "kinds")

    def __init__(self, period, keep_for, kinds=None):
        if period not in PERIODS:
            raise DRError("retention tier period must be one of %s, got %r" % (", ".join(PERIODS), period))
        name = TIER_NAMES[period]
        if not isinstance(keep_for, datetime.timedelta) or keep_for <= datetime.timedelta(0) \
                or keep_for.total_seconds() % 3600 or keep_for > datetime.timedelta(days=MAX_KEEP_DAYS):
            raise DRError("retention %s tier keep_for must be a positive whole number of hours, at most %d days, got %r"
                          % (name, MAX_KEEP_DAYS, keep_for))
        if kinds is not None:
            kinds = _check_kinds("retention %s tier kinds" % name, kinds)
        self.period = period
        self.keep_for = keep_for
        self.kinds = kinds

    @property
    def name(self):
        return TIER_NAMES[self.period]

    def takes(self, kind):
        return self.kinds is None or kind is None or kind in self.kinds

    def __eq__(self, other):
        return isinstance(other, Tier) and (self.period, self.keep_for, self.kinds) == (
            other.period, other.keep_for, other.kinds)

    def __ne__(self, other):
        return not self == other

    def __repr__(self):
        return "Tier(%r, %s%s)" % (self.period, format_keep_for(self.keep_for),
                                   "" if self.kinds is None else ", kinds=%s" % "/".join(self.kinds))


def _check_kinds(what, kinds):
    if isinstance(kinds, str):
        kinds = [kinds]
    if not isinstance(kinds, (list, tuple)) or not kinds or \
            not all(isinstance(kind, str) and kind in KINDS for kind in kinds):
        raise DRError("%s must be a non-empty list of backup kinds from %s, got %r" % (what, ", ".join(KINDS), kinds))
    return tuple(sorted(set(kinds), key=KINDS.index))


def _whole_number(field, value, unit, maximum, note):
    number = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _DIGITS_RE.match(value):
        number = int(value)
    if number is None or number < 0:
        raise DRError("retention.%s must be a whole number of %s, 0 or more%s, got %r" % (field, unit, note, value))
    if number > maximum:
        raise DRError("retention.%s must be at most %d %s, got %r" % (field, maximum, unit, value))
    return number


class Policy(object):
    """A set of tiers (at most one per period) plus `keep_last`.

    Build it from module options with `Policy.from_params`, or take the plan's own with
    `Policy.plan_database()` / `Policy.plan_files()`.
    """

    def __init__(self, tiers=(), keep_last=1):
        tiers = list(tiers)
        for tier in tiers:
            if not isinstance(tier, Tier):
                raise DRError("retention tiers must be Tier objects, got %r" % (tier,))
        periods = [tier.period for tier in tiers]
        for period in PERIODS:
            if periods.count(period) > 1:
                raise DRError("retention has two %s tiers: give each period once" % TIER_NAMES[period])
        if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0:
            raise DRError("retention.keep_last must be a whole number of backups, 0 or more, got %r" % (keep_last,))
        if not tiers and keep_last < 1:
            raise DRError("retention policy keeps nothing: set retention.keep_last to 1 or more, or turn on a tier "
                          "(retention.hourly_hours, daily_days, weekly_days, monthly_days or yearly_days)")
        self.tiers = tuple(sorted(tiers, key=lambda tier: PERIODS.index(tier.period)))
        self.keep_last = keep_last

    @classmethod
    def from_params(cls, params, plan="database"):
        """The policy from the module's `retention` option.

        `params`: {hourly_hours, daily_days, weekly_days, monthly_days, yearly_days, keep_last}
        (0 turns a tier off), optionally `<tier>_kinds` lists. An option that is missing or None
        takes its value from `plan` ("database", "files" or a dict of the same shape): a policy
        given in part keeps more, never less, than the user wrote.
        """
        defaults = PLANS.get(plan) if isinstance(plan, str) else plan
        if not isinstance(defaults, dict):
            raise DRError("retention plan must be one of %s or a dictionary, got %r" % (", ".join(sorted(PLANS)), plan))
        if params is None:
            params = {}
        if not isinstance(params, collections.abc.Mapping):
            fields = ", ".join(PARAM_FIELDS[:6])
            raise DRError("retention must be a dictionary of %s, got %s" % (fields, type(params).__name__))
        for field in params:
            if field not in PARAM_FIELDS:
                raise DRError("retention.%s is not a retention option; use %s" % (field, ", ".join(PARAM_FIELDS)))

        def value_of(field, fallback):
            value = params.get(field)
            return defaults.get(field, fallback) if value is None else value

        tiers = []
        for field, period, unit, seconds in DURATION_FIELDS:
            maximum = MAX_KEEP_DAYS * 86400 // seconds
            amount = _whole_number(field, value_of(field, 0), unit, maximum, " (0 turns the tier off)")
            if not amount:
                continue
            kinds_field = TIER_NAMES[period] + "_kinds"
            kinds = value_of(kinds_field, None)
            if kinds is not None:
                kinds = _check_kinds("retention.%s" % kinds_field, kinds)
            tiers.append(Tier(period, datetime.timedelta(seconds=amount * seconds), kinds))
        keep_last = _whole_number("keep_last", value_of("keep_last", 1), "backups", 1000000, "")
        return cls(tiers, keep_last)

    @classmethod
    def plan_database(cls):
        """The plan's database retention: daily 30 d, weekly 90 d, monthly 365 d, keep_last 1."""
        return cls.from_params({}, plan="database")

    @classmethod
    def plan_files(cls):
        """The plan's file retention: hourly syncs 7 d, daily snapshots 30 d, keep_last 1."""
        return cls.from_params({}, plan="files")

    def to_params(self):
        """The module option shape back (for a result, or a report of the policy used)."""
        params = dict((item[0], 0) for item in DURATION_FIELDS)
        params["keep_last"] = self.keep_last
        for field, period, _unit, seconds in DURATION_FIELDS:
            for tier in self.tiers:
                if tier.period == period:
                    params[field] = int(tier.keep_for.total_seconds()) // seconds
                    params[TIER_NAMES[period] + "_kinds"] = None if tier.kinds is None else list(tier.kinds)
        return params

    def any_kind(self):
        """The same policy with every tier taking every kind (for series of one kind)."""
        return Policy([Tier(tier.period, tier.keep_for) for tier in self.tiers], self.keep_last)

    def __eq__(self, other):
        return isinstance(other, Policy) and (self.tiers, self.keep_last) == (other.tiers, other.keep_last)

    def __ne__(self, other):
        return not self == other

    def __repr__(self):
        return "Policy(%r, keep_last=%d)" % (list(self.tiers), self.keep_last)


class Decision(collections.namedtuple("Decision", ["id", "keep", "reasons"])):
    """One backup's verdict: `keep` (bool) and the reasons, most important first."""

    __slots__ = ()

    def as_dict(self):
        return {"id": self.id, "keep": self.keep, "reasons": list(self.reasons)}


class _Backup(collections.namedtuple("_Backup", ["id", "time", "valid", "kind", "depends_on", "position"])):
    """One backup as read from the caller's list; `position` is its index there."""

    __slots__ = ()

    @property
    def order(self):
        # Ties in time go to the later item of the list, so the answer never depends on a set's order.
        return (self.time, self.position)

    @property
    def title(self):
        return "%s %r" % (self.kind or "backup", self.id)


def _field(item, name):
    if isinstance(item, collections.abc.Mapping):
        return item.get(name)
    return getattr(item, name, None)


def _read_backups(backups, noun="backup", id_field="id"):
    if backups is None:
        return []
    if isinstance(backups, (str, bytes, collections.abc.Mapping)) or not isinstance(backups, collections.abc.Iterable):
        raise DRError("%ss must be a list, got %s" % (noun, type(backups).__name__))
    result = []
    seen = {}
    for position, item in enumerate(backups):
        where = "%s #%d in the list" % (noun, position + 1)
        if not isinstance(item, collections.abc.Mapping) and not hasattr(item, id_field):
            raise DRError("%s must be a mapping with %s, time and valid, got %r" % (where, id_field, item))
        backup_id = _field(item, id_field)
        if backup_id is None or backup_id == "" or isinstance(backup_id, bool) or not isinstance(backup_id, (str, int)):
            raise DRError("%s has no %s (a non-empty string), got %r" % (where, id_field, backup_id))
        name = "%s %r" % (noun, backup_id)
        if backup_id in seen:
            raise DRError("%s appears twice in the list (#%d and #%d)" % (name, seen[backup_id] + 1, position + 1))
        seen[backup_id] = position
        raw_time = _field(item, "time")
        if raw_time is None or raw_time == "":
            raise DRError("%s has no time" % name)
        if isinstance(raw_time, (int, float)) and not isinstance(raw_time, bool):
            # Epoch seconds, as `pgbackrest info --output=json` gives them.
            try:
                moment = datetime.datetime.fromtimestamp(raw_time, UTC)
            except (OverflowError, OSError, ValueError):
                raise DRError("%s time %r is not a timestamp" % (name, raw_time))
        else:
            moment = parse_time(raw_time, what="%s time" % name).astimezone(UTC)
        valid = _field(item, "valid")
        if not isinstance(valid, bool):
            raise DRError("%s valid must be true or false, got %r" % (name, valid))
        kind = _field(item, "kind")
        if kind is not None and kind not in KINDS:
            raise DRError("%s kind must be one of %s, got %r" % (name, ", ".join(KINDS), kind))
        depends_on = _field(item, "depends_on")
        if depends_on == "":
            depends_on = None
        if depends_on is not None and (isinstance(depends_on, bool) or not isinstance(depends_on, (str, int))):
            raise DRError("%s depends_on must be the id of another backup, got %r" % (name, depends_on))
        if depends_on == backup_id:
            raise DRError("%s depends on itself" % name)
        result.append(_Backup(backup_id, moment, valid, kind, depends_on, position))
    return result


def _why_not_restorable(items, by_id, noun):
    """{id: None if restorable, else one phrase why not}; refuses dependency cycles."""
    verdicts = {}
    for start in items:
        chain = []
        on_chain = set()
        current = start
        while current is not None and current.id not in verdicts:
            if current.id in on_chain:
                path = " -> ".join(repr(backup.id) for backup in chain) + " -> %r" % current.id
                raise DRError("%s %r depends_on forms a cycle: %s" % (noun, current.id, path))
            chain.append(current)
            on_chain.add(current.id)
            current = by_id.get(current.depends_on) if current.depends_on is not None else None
        # Resolve from the base down, so each backup's base already has its verdict.
        for backup in reversed(chain):
            if not backup.valid:
                verdicts[backup.id] = "not valid"
            elif backup.depends_on is None:
                verdicts[backup.id] = None
            elif backup.depends_on not in by_id:
                verdicts[backup.id] = "not restorable: needs %r, which is not in the list" % (backup.depends_on,)
            else:
                base = by_id[backup.depends_on]
                if verdicts[base.id] is None:
                    verdicts[backup.id] = None
                else:
                    verdicts[backup.id] = "not restorable: needs %s, which is %s" % (
                        base.title, "not valid" if not base.valid else "not restorable")
    return verdicts


def _as_policy(policy):
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, collections.abc.Mapping):
        return Policy.from_params(policy)
    raise DRError("retention policy must be a Policy or a dictionary of retention options, got %s"
                  % type(policy).__name__)


def _slash(words):
    return "/".join(words)


def decide_retention(backups, now, policy, noun="backup", id_field="id"):
    """Keep/delete decisions for `backups` at `now` under `policy`, in input order.

    backups: dicts or objects with `id`, `time` (tz-aware datetime or ISO 8601 string),
        `valid` (bool), optional `kind` (one of KINDS) and `depends_on` (another backup's id).
    now: datetime or ISO 8601 string. policy: a Policy, or a dict for Policy.from_params.
    Returns [Decision(id, keep, reasons)]. Raises DRError naming the field or backup at fault.
    """
    now = parse_time(now, what="retention now").astimezone(UTC)
    policy = _as_policy(policy)
    items = _read_backups(backups, noun, id_field)
    by_id = {backup.id: backup for backup in items}
    broken = _why_not_restorable(items, by_id, noun)

    judged = [backup for backup in items if backup.time <= now]
    restorable = sorted((backup for backup in judged if broken[backup.id] is None),
                        key=lambda backup: backup.order, reverse=True)
    newest_valid = restorable[0] if restorable else None
    cutoffs = {tier.period: now - tier.keep_for for tier in policy.tiers}

    keep_reasons = collections.OrderedDict()

    def keep(backup, reason):
        reasons = keep_reasons.setdefault(backup.id, [])
        if reason not in reasons:
            reasons.append(reason)

    for backup in items:
        if backup.time > now:
            keep(backup, "taken after now (%s > %s): kept, not judged yet"
                 % (format_time(backup.time), format_time(now)))
    if newest_valid is not None:
        keep(newest_valid, "newest valid %s (always kept)" % noun)
    for backup in restorable[:policy.keep_last]:
        keep(backup, "one of the %d newest valid" % policy.keep_last)

    # representatives[period][label] = newest restorable backup of that period the tier takes
    representatives = {}
    for tier in policy.tiers:
        newest_in_period = {}
        for backup in restorable:  # newest first: the first seen in a period is its representative
            if tier.takes(backup.kind):
                newest_in_period.setdefault(period_label(tier.period, backup.time), backup)
        representatives[tier.period] = newest_in_period
        for label, backup in newest_in_period.items():
            if backup.time > cutoffs[tier.period]:
                keep(backup, "%s %s (kept %s)" % (tier.name, label, format_keep_for(tier.keep_for)))

    shortest = min((tier.keep_for for tier in policy.tiers), default=None)
    for backup in judged:
        why = broken[backup.id]
        if why is None or shortest is None or backup.time <= now - shortest:
            continue
        if newest_valid is None:
            keep(backup, "%s; kept for inspection until %s: no valid %s exists"
                 % (why, format_time(backup.time + shortest), noun))
        elif backup.order > newest_valid.order:
            keep(backup, "%s; kept for inspection until %s: newer than the newest valid %s %r"
                 % (why, format_time(backup.time + shortest), noun, newest_valid.id))

    # Bases of kept backups, transitively; each base names the backup that needs it directly.
    pending = [by_id[backup_id] for backup_id in keep_reasons]
    while pending:
        backup = pending.pop()
        base = by_id.get(backup.depends_on) if backup.depends_on is not None else None
        if base is None:
            continue
        newly_kept = base.id not in keep_reasons
        keep(base, "needed by %s" % backup.title)
        if newly_kept:
            pending.append(base)

    decisions = []
    for backup in items:
        if backup.id in keep_reasons:
            decisions.append(Decision(backup.id, True, keep_reasons[backup.id]))
        elif broken[backup.id] is not None:
            decisions.append(Decision(backup.id, False, [_why_invalid_goes(backup, broken[backup.id], policy, now,
                                                                           newest_valid, shortest, noun)]))
        else:
            decisions.append(Decision(backup.id, False, _why_valid_goes(backup, policy, cutoffs, representatives)))
    return decisions


def _why_invalid_goes(backup, why, policy, now, newest_valid, shortest, noun):
    longest = max((tier.keep_for for tier in policy.tiers), default=None)
    if longest is None or backup.time <= now - longest:
        return "%s and outside every window" % why
    if newest_valid is not None and backup.order < newest_valid.order:
        return "%s: never a representative, and older than the newest valid %s %r" % (why, noun, newest_valid.id)
    return "%s: never a representative, and past the %s inspection window" % (why, format_keep_for(shortest))


def _why_valid_goes(backup, policy, cutoffs, representatives):
    reasons = []
    not_representative = []
    other_kinds = collections.OrderedDict()  # tier kinds -> tier names that do not take this kind
    for tier in policy.tiers:
        if not tier.takes(backup.kind):
            other_kinds.setdefault(tier.kinds, []).append(tier.name)
            continue
        label = period_label(tier.period, backup.time)
        representative = representatives[tier.period][label]
        inside = backup.time > cutoffs[tier.period]
        if representative is backup:
            # Kept representatives never get here: this one is past its window.
            reasons.append("%s %s outside %s" % (tier.name, label, format_keep_for(tier.keep_for)))
        elif inside:
            reasons.append("not the newest of %s %s (%r is)" % (tier.name, label, representative.id))
        else:
            not_representative.append(tier.name)
    if not_representative:
        reasons.append("not a %s representative" % _slash(not_representative))
    for kinds, names in other_kinds.items():
        reasons.append("%s keep%s %s backups only" % (_slash(names), "s" if len(names) == 1 else "",
                                                      _slash(kinds)))
    if not any(tier.takes(backup.kind) for tier in policy.tiers):
        reasons.append("not one of the %d newest valid" % policy.keep_last if policy.keep_last
                       else "not the newest valid")
    return reasons


def summarize(decisions):
    """{keep: [ids], delete: [ids], reasons: {id: 'reason; reason'}}: for a module result or check mode."""
    summary = {"keep": [], "delete": [], "reasons": {}}
    for decision in decisions:
        summary["keep" if decision.keep else "delete"].append(decision.id)
        summary["reasons"][decision.id] = "; ".join(decision.reasons)
    return summary


def pgbackrest_full_sets_to_expire(full_backups, now, policy):
    """Labels of pgBackRest full backups to pass to `pgbackrest expire --set=<label>`, oldest first.

    pgBackRest has no GFS of its own (only a count or an age of fulls), so the same rule runs
    here on the full backups alone; expiring a full also expires its diff/incr dependents.
    full_backups: dicts or objects with `label`, `time` (stop time) and `valid`; items whose
    `type` or `kind` says they are not full are skipped, so `pgbackrest info` output can be
    passed through. The newest valid full is never returned.
    """
    fulls = []
    if full_backups is not None and isinstance(full_backups, collections.abc.Iterable) \
            and not isinstance(full_backups, (str, bytes, collections.abc.Mapping)):
        for item in full_backups:
            if not isinstance(item, collections.abc.Mapping) and not hasattr(item, "label"):
                fulls.append(item)  # let _read_backups name what is wrong with it
                continue
            if (_field(item, "type") or _field(item, "kind")) not in (None, "full"):
                continue
            fulls.append({"label": _field(item, "label"), "time": _field(item, "time"), "valid": _field(item, "valid")})
    else:
        fulls = full_backups  # let _read_backups name what is wrong with it
    policy = _as_policy(policy).any_kind()
    decisions = decide_retention(fulls, now, policy, noun="pgBackRest full backup", id_field="label")
    times = {backup.id: backup.time for backup in _read_backups(fulls, "pgBackRest full backup", "label")}
    expire = [decision.id for decision in decisions if not decision.keep]
    return sorted(expire, key=lambda label: (times[label], label))
