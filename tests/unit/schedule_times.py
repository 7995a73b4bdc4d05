"""The plan's schedule as times: the three forms each job is written in (AWX rrule, systemd
OnCalendar, cron) turned into the list of UTC times they fire at, and the plan's own times to
compare them with. Shared by tests/unit/test_awx_config.py and tests/unit/test_schedule_role.py.

The OnCalendar and cron readers cover what playbooks/vars/schedule.yml uses (weekday names and
ranges, comma lists, `a..b` / `a-b` ranges, `*`, steps in cron); anything else raises, so a new
form cannot pass unread. Where systemd-analyze exists, the OnCalendar reader is checked against it.
"""

import datetime as dt
import shutil
import subprocess

import yaml
from dateutil.rrule import rrulestr

from tests.conftest import REPO

UTC = dt.timezone.utc
SCHEDULE_FILE = REPO / "playbooks" / "vars" / "schedule.yml"
# Twelve months from a fixed date after every DTSTART (so that DTSTART never clips the window).
WINDOW_START = dt.datetime(2027, 1, 1, tzinfo=UTC)
WINDOW_END = dt.datetime(2028, 1, 1, tzinfo=UTC)

WEEKDAYS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 7}


def load_jobs():
    return yaml.safe_load(SCHEDULE_FILE.read_text())["auditron_dr_schedule_jobs"]


def jobs_by_name():
    return {job["name"]: job for job in load_jobs()}


def rrule_times(rrule_text, start=WINDOW_START, end=WINDOW_END):
    rule = rrulestr(rrule_text.replace(" RRULE:", "\nRRULE:"), forceset=True)
    return [t.astimezone(UTC) for t in rule.between(start, end, inc=True) if t < end]


def _values(field, low, high, names=None):
    """A comma list of values and ranges (`a..b` for systemd, `a-b` for cron), or `*`."""
    if field == "*":
        return set(range(low, high + 1))
    out = set()
    for part in field.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/")
            step = int(step_text)
        if part == "*":
            first, last = low, high
        elif ".." in part or (names is None and "-" in part):
            first_text, last_text = part.split(".." if ".." in part else "-")
            first, last = _number(first_text, names), _number(last_text, names)
        else:
            first = last = _number(part, names)
        if not low <= first <= last <= high:
            raise ValueError("out of range: %s" % field)
        out.update(range(first, last + 1, step))
    return out


def _number(text, names):
    if names and text.lower() in names:
        return names[text.lower()]
    return int(text)


def oncalendar_times(expression, start=WINDOW_START, end=WINDOW_END):
    """`[Weekdays ]Y-M-D H:M:S UTC`, read without systemd."""
    parts = expression.split()
    if parts[-1] != "UTC":
        raise ValueError("the plan's timers are in UTC: %s" % expression)
    parts = parts[:-1]
    weekdays = set(range(1, 8))
    if len(parts) == 3:
        weekdays = _weekday_range(parts.pop(0))
    if len(parts) != 2:
        raise ValueError("unsupported OnCalendar: %s" % expression)
    year, month, day = parts[0].split("-")
    hour, minute, second = parts[1].split(":")
    if year != "*" or second not in ("00", "0"):
        raise ValueError("unsupported OnCalendar: %s" % expression)
    months, days = _values(month, 1, 12), _values(day, 1, 31)
    hours, minutes = _values(hour, 0, 23), _values(minute, 0, 59)
    return _expand(start, end, lambda d: d.month in months and d.day in days and d.isoweekday() in weekdays,
                   hours, minutes)


def _weekday_range(field):
    out = set()
    for part in field.lower().split(","):
        if ".." in part:
            first, last = part.split("..")
            out.update(range(WEEKDAYS[first], WEEKDAYS[last] + 1))
        else:
            out.add(WEEKDAYS[part])
    return out


def cron_times(fields, start=WINDOW_START, end=WINDOW_END, weekday=None):
    """Five cron fields as Vixie cron reads them (day of month and day of week ORed when both
    are restricted), then the runner's weekday guard."""
    minute, hour, dom, month, dow = fields.split()
    minutes, hours = _values(minute, 0, 59), _values(hour, 0, 23)
    doms, months = _values(dom, 1, 31), _values(month, 1, 12)
    dows = {7 if d == 0 else d for d in _values(dow, 0, 7)}

    def day_matches(day):
        if day.month not in months:
            return False
        if dom != "*" and dow != "*":
            matched = day.day in doms or day.isoweekday() in dows
        else:
            matched = day.day in doms and day.isoweekday() in dows
        return matched and (weekday is None or day.isoweekday() == int(weekday))

    return _expand(start, end, day_matches, hours, minutes)


def _expand(start, end, day_matches, hours, minutes):
    times = []
    day = start.replace(hour=0, minute=0)
    while day < end:
        if day_matches(day):
            for hour in sorted(hours):
                for minute in sorted(minutes):
                    moment = day.replace(hour=hour, minute=minute)
                    if start <= moment < end:
                        times.append(moment)
        day += dt.timedelta(days=1)
    return times


def systemd_times(expression, base=WINDOW_START, count=40):
    """The next `count` times systemd itself computes, or None without systemd-analyze."""
    if not shutil.which("systemd-analyze"):
        return None
    result = subprocess.run(["systemd-analyze", "calendar", "--base-time=@%d" % (base.timestamp() - 1),
                             "--iterations=%d" % count, expression], capture_output=True, text=True,
                            check=True, env={"TZ": "UTC", "SYSTEMD_COLORS": "0", "PATH": "/usr/bin:/bin"})
    times = []
    for line in result.stdout.splitlines():
        line = line.strip()
        if line.startswith(("Next elapse:", "Iter. #")):
            stamp = line.split(":", 1)[1].strip()
            # "Sat 2027-01-02 04:00:00 UTC"
            times.append(dt.datetime.strptime(stamp, "%a %Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC))
    return times


def max_gap_seconds(times):
    return max(int((later - earlier).total_seconds()) for earlier, later in zip(times, times[1:]))


def every_day_at(hour, minute, start=WINDOW_START, end=WINDOW_END):
    return _expand(start, end, lambda d: True, {hour}, {minute})


def plan_times():
    """The plan's times for each job, written from DISASTER_RECOVERY.md without looking at the
    schedule file: what the rrules, timers and cron lines must produce."""
    every_hour = set(range(24))
    return {
        # "Full backup: Daily at 2:00 AM UTC"
        "backup_database_full": every_day_at(2, 0),
        # "Incremental backup: Hourly" - every hour on the hour; at 02:00 the full backup is it
        "backup_database_incr": _expand(WINDOW_START, WINDOW_END, lambda d: True, every_hour - {2}, {0}),
        # "Sync to S3: Hourly" - every hour at :15; at 02:15 the daily snapshot (a sync) is it
        "backup_files_sync": _expand(WINDOW_START, WINDOW_END, lambda d: True, every_hour - {2}, {15}),
        # "Snapshot: Daily"
        "backup_files_snapshot": every_day_at(2, 15),
        # Configuration: daily, with the database backups
        "backup_config": every_day_at(2, 30),
        # Retention: daily, clear of the hourly backups
        "prune_backups": every_day_at(5, 30),
        # "Schedule: Every Sunday at 3:00 AM"
        "verify_backups": _expand(WINDOW_START, WINDOW_END, lambda d: d.isoweekday() == 7, {3}, {0}),
        # "Schedule: First Saturday of each month"
        "dr_drill": _expand(WINDOW_START, WINDOW_END, lambda d: d.isoweekday() == 6 and d.day <= 7, {4}, {0}),
    }
