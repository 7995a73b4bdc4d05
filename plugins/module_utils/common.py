# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plain helpers every engine module shares: the one error type, time parsing, sizes.

No Ansible import here: tests, benchmarks and the lab call this code directly.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import importlib.util
import os
import re
import tempfile


def importable(name):
    """Whether the top-level package `name` is installed, without importing it: optional
    libraries (boto3, kubernetes, requests) cost 0.1-0.4 s of CPU to import, which every module
    run would pay, so they are imported where first used. A finder that refuses it counts as absent."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


class DRError(Exception):
    """The one error the engine raises for anything a user can act on.

    The message is one line that names the thing at fault (a backup id, a location, a
    parameter); details are returned beside it in the module result.
    """

    def __init__(self, message, **details):
        super(DRError, self).__init__(message)
        self.message = message
        self.details = details

    def __str__(self):
        return self.message


UTC = datetime.timezone.utc

_ISO_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?\s*(Z|[+-]\d{2}:?\d{2})?$")


def utc_now():
    return datetime.datetime.now(UTC)


def parse_time(value, what="time"):
    """Parse a user-given timestamp strictly; naive times are taken as UTC.

    Accepts ISO 8601 ('2026-11-24T02:00:00Z', '2026-11-24 02:00:00+01:00', with optional
    fractions) and datetime objects. Anything else raises DRError naming `what`.
    """
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value or "").strip()
    match = _ISO_RE.match(text)
    if not match:
        raise DRError("%s %r is not a timestamp: use ISO 8601, for example 2026-11-24T02:00:00Z" % (what, value))
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0),
                                   int((fraction or "0").ljust(6, "0")))
    except ValueError as exc:
        raise DRError("%s %r is not a valid date or time: %s" % (what, value, exc))
    if zone in (None, "Z"):
        return moment.replace(tzinfo=UTC)
    sign = 1 if zone[0] == "+" else -1
    digits = zone[1:].replace(":", "")
    offset = datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return moment.replace(tzinfo=datetime.timezone(sign * offset))


def format_time(moment):
    """UTC, second precision unless there is a fraction, with a Z: how every report writes time."""
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def human_bytes(count):
    count = float(count or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return ("%d %s" % (count, unit)) if unit == "B" else ("%.1f %s" % (count, unit))
        count /= 1024.0
    return "%.1f TiB" % count


def human_duration(seconds):
    seconds = float(seconds or 0)
    if seconds < 60:
        return "%.1f s" % seconds
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return "%d min %02d s" % (minutes, sec)
    hours, minutes = divmod(minutes, 60)
    return "%d h %02d min" % (hours, minutes)


def first_line(exc):
    """A one-line account of an exception (drivers put hints on later lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def write_atomically(path, data, mode=0o644, uid=-1, gid=-1):
    """Write `data` (text is written as UTF-8) to a hidden temporary file beside `path` (a name
    neither the textfile collector nor systemd reads), flush it to disk, give it `mode` whatever
    the umask (and `uid`/`gid` when not -1), and rename it over `path`: a reader sees the old file
    or the new one, never half of it. The temporary file is removed when anything fails."""
    if not isinstance(data, bytes):
        data = data.encode("utf-8")
    directory, name = os.path.split(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".%s." % name, suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if uid != -1 or gid != -1:
            os.chown(temporary, uid, gid)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
