# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restores with pgBackRest: choose the repository, check the target directory, run the restore.

- `plan_restore` picks the first repository, in order of preference, that answers and holds a
  backup able to reach the target (the end of the archive, a time, or the end of a backup), and
  records why each one before it was passed over; read-only.
- `restore` refuses before writing anything when the target directory is not new or empty (or,
  with delta, a stopped cluster of the same system), then runs `pgbackrest restore` from the
  chosen repository and reads back the recovery settings pgBackRest wrote.

Running commands, reading the configuration and `pgbackrest info` stay in pgbackrest.py; this
file only decides and runs restores. No Ansible import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import re
import signal
import subprocess
import time

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, format_time, parse_time, utc_now
from ansible_collections.auditron.dr.plugins.module_utils.pgbackrest import (
    DEFAULT_BINARY, DEFAULT_STANZA, PgBackRest, add_wal_times, configured_repos, describe_repo, epoch_iso,
    epoch_seconds, parse_info, probe_repo, read_config, select_repos)

RESTORE_TARGETS = ("latest", "time", "immediate")
TARGET_ACTIONS = ("promote", "pause", "shutdown")
ARCHIVE_MODES = ("preserve", "off")
# Restores try the S3 primary region first, then the second region, then local disk: the
# local disk is the likeliest to have gone with the host being recovered.
DEFAULT_RESTORE_ORDER = (2, 3, 1)


def inspect_target(pg_path, controldata=None):
    """What is in the directory a restore would write: exists, empty, a running server, system id."""
    state = {"path": pg_path, "exists": os.path.isdir(pg_path), "entries": 0, "empty": True,
             "running_pid": None, "system_id": None, "is_cluster": False}
    if os.path.exists(pg_path) and not os.path.isdir(pg_path):
        raise DRError("pg_path %s exists and is not a directory" % pg_path)
    if not state["exists"]:
        return state
    try:
        entries = os.listdir(pg_path)
    except OSError as exc:
        raise DRError("pg_path %s cannot be read: %s" % (pg_path, exc.strerror or exc))
    state["entries"] = len(entries)
    state["empty"] = not entries
    state["is_cluster"] = "PG_VERSION" in entries and "global" in entries
    pid = _postmaster_pid(pg_path)
    if pid and _alive(pid):
        state["running_pid"] = pid
    if state["is_cluster"] and controldata:
        state["system_id"] = controldata(pg_path)
    return state


def _postmaster_pid(pg_path):
    try:
        with open(os.path.join(pg_path, "postmaster.pid")) as handle:
            return int(handle.readline().strip())
    except (IOError, OSError, ValueError):
        return None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == 1  # EPERM: alive, someone else's
    return True


def leftover_restores(pg_path, proc="/proc"):
    """pids of pgBackRest processes still restoring into `pg_path` (their command line names it
    as --pg1-path): what a run killed half-way leaves, since pgBackRest started through `su`
    outlives the controller's process group."""
    wanted = "--pg1-path=%s" % pg_path
    found = []
    for entry in os.listdir(proc):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(os.path.join(proc, entry, "cmdline"), "rb") as handle:
                argv = handle.read().decode("utf-8", "replace").split("\0")
        except (IOError, OSError):
            continue
        if argv and os.path.basename(argv[0]) == "pgbackrest" and wanted in argv and \
                any(arg.startswith("restore") for arg in argv):
            found.append(int(entry))
    return sorted(found)


def stop_leftover_restores(pg_path, timeout=10.0, proc="/proc"):
    """SIGTERM, then SIGKILL after `timeout`, to every leftover restore into `pg_path`. Returns
    the pids stopped; DRError when one cannot be stopped (someone else's process)."""
    pids = leftover_restores(pg_path, proc)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError as exc:
            if exc.errno != 3:  # ESRCH: gone already
                raise DRError("a pgBackRest restore into %s (pid %d) is still running and cannot be stopped: %s"
                              % (pg_path, pid, exc.strerror))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return pids


def set_aside_name(pg_path, suffix, exists=os.path.exists):
    """`pg_path` + suffix, or with -2, -3 ... when that name is taken (a second attempt of the
    same run must not find the first one's name and skip the move)."""
    name = pg_path + suffix
    count = 1
    while exists(name):
        count += 1
        name = "%s%s-%d" % (pg_path, suffix, count)
    return name


def controldata_system_id(bin_dir=None):
    """A function pg_path -> system identifier, read with pg_controldata."""
    binary = os.path.join(bin_dir, "pg_controldata") if bin_dir else "pg_controldata"

    def read(pg_path):
        try:
            completed = subprocess.run([binary, "-D", pg_path], capture_output=True, text=True, check=False,
                                       env=dict(os.environ, LC_ALL="C"), timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        match = re.search(r"Database system identifier:\s*(\d+)", completed.stdout)
        return match.group(1) if match else None
    return read


def _reach_for_time(repo, target_epoch):
    """(backup, None) when `repo` can reach target time, else (None, why not) - from its info."""
    good = [b for b in repo["backups"] if not b["error"] and b["stop_epoch"] is not None]
    if not good:
        return None, "holds no backup"
    before = [b for b in good if b["stop_epoch"] <= target_epoch]
    if not before:
        return None, "its oldest backup %s ended at %s, after the target" % (good[0]["label"], good[0]["stop"])
    chosen = before[-1]
    end = repo.get("wal_max_epoch")
    if end is None:
        return None, "its WAL archive is empty or its end cannot be read"
    if target_epoch > end:
        return None, "its WAL archive ends at %s (%s), before the target" % (
            repo.get("wal_max_time"), repo.get("wal_max"))
    if chosen["wal_stop"] and repo.get("wal_max") and repo["wal_max"] < chosen["wal_stop"]:
        return None, "its WAL archive stops before backup %s is consistent" % chosen["label"]
    return chosen, None


def _reach_any(repo):
    good = [b for b in repo["backups"] if not b["error"]]
    if not good:
        return None, "holds no backup" if repo["reachable"] else repo["status"]
    return good[-1], None


def _bounds(repos):
    """(earliest reachable time, end of the archive) over readable repositories, as (epoch, text)."""
    stops = []
    ends = []
    for repo in repos:
        good = [b for b in repo["backups"] if not b["error"] and b["stop_epoch"] is not None]
        if good:
            stops.append((good[0]["stop_epoch"], "end of backup %s in %s" % (good[0]["label"], repo["name"])))
        if repo.get("wal_max_epoch") is not None:
            ends.append((repo["wal_max_epoch"], "newest WAL %s in %s" % (repo["wal_max"], repo["name"])))
    # Ties go to the repository examined first (the preferred one).
    earliest = None
    for item in stops:
        if earliest is None or item[0] < earliest[0]:
            earliest = item
    latest = None
    for item in ends:
        if latest is None or item[0] > latest[0]:
            latest = item
    return earliest, latest


def _bounds_text(earliest, latest):
    first = ("%s (%s)" % (epoch_iso(earliest[0]), earliest[1])) if earliest else "no backup"
    last = ("%s (%s)" % (epoch_iso(latest[0]), latest[1])) if latest else "no archived WAL"
    return "restores can reach from %s to %s" % (first, last)


def plan_restore(config, stanza=DEFAULT_STANZA, target="latest", target_time=None, repos=None,
                 binary=DEFAULT_BINARY, probe_timeout=5.0, io_timeout=5, now=None, tool=None):
    """Choose the repository and backup set a restore would use; read-only.

    Repositories are tried in order of preference; one that does not answer, cannot be read,
    or holds no backup able to reach the target is passed over with the reason recorded.
    """
    now = now or utc_now()
    if target not in RESTORE_TARGETS:
        raise DRError("restore target %r is not one of %s" % (target, ", ".join(RESTORE_TARGETS)))
    target_epoch = None
    if target == "time":
        if not target_time:
            raise DRError("target time requires target_time (ISO 8601, for example 2026-11-24T01:58:00Z)")
        moment = parse_time(target_time, what="target_time")
        target_epoch = epoch_seconds(moment)
    elif target_time:
        raise DRError("target_time is only used with target: time (target is %s)" % target)
    tool = tool or PgBackRest(config, stanza, binary=binary)
    defined = configured_repos(read_config(config), stanza)
    order = list(repos or [k for k in DEFAULT_RESTORE_ORDER if k in [r["key"] for r in defined]])
    for repo in defined:
        if not repos and repo["key"] not in order:
            order.append(repo["key"])
    candidates = select_repos(defined, order, config)
    # Every configured repository is probed (it costs milliseconds): the WAL the recovery reads
    # comes through archive-get, which would otherwise stall on a dead one for each segment.
    probe = dict((r["key"], probe_repo(r, probe_timeout)) for r in defined)
    fallbacks = []
    examined = []
    chosen = None
    for repo in candidates:
        reason = probe[repo["key"]]
        if reason:
            fallbacks.append({"repo": repo["key"], "name": repo["name"], "reason": "unreachable: " + reason})
            continue
        try:
            summary = parse_info(tool.info_document(repo=repo["key"], io_timeout=io_timeout), stanza, now)
        except DRError as exc:
            fallbacks.append({"repo": repo["key"], "name": repo["name"], "reason": "unreadable: %s" % exc})
            probe[repo["key"]] = str(exc)
            continue
        info = next((r for r in summary["repos"] if r["key"] == repo["key"]), None)
        if info is None or not info["reachable"]:
            why = info["status"] if info else "not in pgbackrest info"
            fallbacks.append({"repo": repo["key"], "name": repo["name"], "reason": "unreachable: %s" % why})
            probe[repo["key"]] = why
            continue
        if target == "time":
            try:
                summary = add_wal_times(tool, {"repos": [info]}, now=now, io_timeout=io_timeout)
            except DRError as exc:
                info["wal_max_time_error"] = str(exc)
        examined.append(info)
        if target == "time":
            backup_set, why = _reach_for_time(info, target_epoch)
        else:
            backup_set, why = _reach_any(info)
        if backup_set is None:
            fallbacks.append({"repo": repo["key"], "name": repo["name"], "reason": why})
            continue
        chosen = (repo, backup_set)
        break
    if target == "time":
        earliest, latest = _bounds(examined)
        now_epoch = epoch_seconds(now)
        if target_epoch > now_epoch:
            raise DRError("target_time %s is in the future (now %s): %s" % (
                epoch_iso(target_epoch), format_time(now.replace(microsecond=0)), _bounds_text(earliest, latest)),
                fallbacks=fallbacks)
        if chosen is None and examined:
            if earliest and target_epoch < earliest[0]:
                raise DRError("target_time %s is before the oldest backup: %s" % (
                    epoch_iso(target_epoch), _bounds_text(earliest, latest)), fallbacks=fallbacks)
            if latest is None or target_epoch > latest[0]:
                raise DRError("target_time %s is after the end of the WAL archive: %s" % (
                    epoch_iso(target_epoch), _bounds_text(earliest, latest)), fallbacks=fallbacks)
    if chosen is None:
        raise DRError("no repository can restore %s: %s" % (
            _target_text(target, target_epoch), "; ".join("%s %s" % (f["name"], f["reason"]) for f in fallbacks)
            or "none configured"), fallbacks=fallbacks)
    repo, backup_set = chosen
    unreachable = sorted(r["name"] for r in defined if probe.get(r["key"]))
    return {"repo": repo["key"], "repo_name": repo["name"], "location": describe_repo(repo), "backup": backup_set,
            "fallbacks": fallbacks, "target": target, "target_time": epoch_iso(target_epoch) if target_epoch else None,
            "target_epoch": target_epoch, "unreachable": unreachable}


def _target_text(target, target_epoch):
    if target == "time":
        return "to %s" % epoch_iso(target_epoch)
    return "to the end of the archive" if target == "latest" else "to the end of a backup (immediate)"


def restore_options(plan, pg_path, archive_mode="preserve", target_action="promote", standby=False,
                    recovery_options=None, delta=False, force=False, target_timeline=None, process_max=None):
    """The restore command's options for a plan from plan_restore (a list of --option=value)."""
    if archive_mode not in ARCHIVE_MODES:
        raise DRError("archive_mode %r is not one of %s" % (archive_mode, ", ".join(ARCHIVE_MODES)))
    if target_action not in TARGET_ACTIONS:
        raise DRError("target_action %r is not one of %s" % (target_action, ", ".join(TARGET_ACTIONS)))
    options = ["--set=%s" % plan["backup"]["label"], "--pg1-path=%s" % pg_path, "--archive-mode=%s" % archive_mode,
               "--log-level-console=info"]
    if standby:
        options.append("--type=standby")
    elif plan["target"] == "time":
        options += ["--type=time", "--target=%s" % _pg_time(plan["target_epoch"]),
                    "--target-action=%s" % target_action]
    elif plan["target"] == "immediate":
        options += ["--type=immediate", "--target-action=%s" % target_action]
    else:
        options.append("--type=default")
    if target_timeline:
        options.append("--target-timeline=%s" % target_timeline)
    if delta or force:
        options.append("--delta")
    if force:
        options.append("--force")
    if process_max:
        options.append("--process-max=%d" % int(process_max))
    for key in sorted(recovery_options or {}):
        options.append("--recovery-option=%s=%s" % (key, recovery_options[key]))
    return options


def _pg_time(epoch):
    """A time PostgreSQL's recovery_target_time reads unambiguously (UTC, fractions kept)."""
    moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f+00")
    return moment.strftime("%Y-%m-%d %H:%M:%S+00")


def restore(config, pg_path, stanza=DEFAULT_STANZA, target="latest", target_time=None, repos=None,
            archive_mode="preserve", target_action="promote", standby=False, recovery_options=None, delta=False,
            force=False, target_timeline=None, process_max=None, binary=DEFAULT_BINARY, pg_bin_dir=None,
            probe_timeout=5.0, io_timeout=5, check_mode=False, now=None, tool=None, controldata=None,
            set_aside_suffix=None):
    """Restore into `pg_path` from the first repository able to reach the target.

    Nothing is written before every check passed: the target directory must be new or empty
    (or, with delta, hold a stopped cluster of the same system; or force), no server may run in
    it, and the chosen backup must reach the target. With `set_aside_suffix`, a restore a killed
    run left running into it is stopped first, and what the directory holds is moved aside (to
    pg_path + suffix, under a name of its own) once every check passed, then restored into.
    """
    if not pg_path or not os.path.isabs(pg_path):
        raise DRError("pg_path %r must be an absolute path" % (pg_path,))
    pg_path = os.path.normpath(pg_path)
    if standby and target != "latest":
        raise DRError("standby: true follows the archive to its end: use target latest (target is %s)" % target)
    tool = tool or PgBackRest(config, stanza, binary=binary)
    controldata = controldata or controldata_system_id(pg_bin_dir)
    stopped = [] if (check_mode or not set_aside_suffix) else stop_leftover_restores(pg_path)
    state = inspect_target(pg_path, controldata)
    if state["running_pid"]:
        raise DRError("pg_path %s has a running PostgreSQL server (pid %s): stop it before restoring into it"
                      % (pg_path, state["running_pid"]))
    aside = None
    if set_aside_suffix and not state["empty"]:
        aside = set_aside_name(pg_path, set_aside_suffix)
    elif not state["empty"] and not (delta or force):
        raise DRError("pg_path %s is not empty (%d entries): restore into a new directory, or use delta: true "
                      "for a stopped cluster of the same system, or force: true" % (pg_path, state["entries"]))
    if aside is None and not state["empty"] and delta and not force and not state["is_cluster"]:
        raise DRError("pg_path %s is not empty and holds no PostgreSQL cluster: delta needs a cluster of the same "
                      "system; use force: true to overwrite it" % pg_path)
    plan = plan_restore(config, stanza, target, target_time, repos, binary=binary, probe_timeout=probe_timeout,
                        io_timeout=io_timeout, now=now, tool=tool)
    backup_set = plan["backup"]
    if aside is None and not state["empty"] and delta and not force and state["system_id"] != backup_set["system_id"]:
        raise DRError("pg_path %s holds a cluster of system %s, not %s (backup %s): delta refused; use force: true"
                      % (pg_path, state["system_id"] or "unknown", backup_set["system_id"], backup_set["label"]))
    options = restore_options(plan, pg_path, archive_mode, target_action, standby, recovery_options, delta, force,
                              target_timeline, process_max)
    argv = tool.argv("restore", options, repo=plan["repo"])
    result = {"changed": True, "pg_path": pg_path, "repo": plan["repo"], "repo_name": plan["repo_name"],
              "location": plan["location"], "backup": _backup_brief(backup_set), "fallbacks": plan["fallbacks"],
              "target": {"type": "standby" if standby else target, "time": plan["target_time"],
                         "action": None if (standby or target == "latest") else target_action,
                         "timeline": target_timeline},
              "archive_mode": archive_mode, "unreachable_repos": plan["unreachable"],
              "command": " ".join(argv),
              "target_dir": {"existed": state["exists"], "entries": state["entries"]},
              "set_aside": aside, "stopped_leftover_restores": stopped}
    if check_mode:
        result["msg"] = "would restore backup %s from %s into %s%s" % (
            backup_set["label"], plan["repo_name"], pg_path, (" (its %d entries moved to %s first)"
                                                              % (state["entries"], aside)) if aside else "")
        return result
    if aside:
        try:
            os.rename(pg_path, aside)
        except OSError as exc:
            raise DRError("%s cannot be set aside as %s: %s" % (pg_path, aside, exc.strerror or exc))
        state["exists"] = False
    if not state["exists"]:
        try:
            os.makedirs(pg_path, 0o700)
        except OSError as exc:
            raise DRError("pg_path %s cannot be created: %s" % (pg_path, exc.strerror or exc))
    os.chmod(pg_path, 0o700)
    started = time.monotonic()
    run = tool.run("restore", options, repo=plan["repo"])
    result["duration_seconds"] = round(time.monotonic() - started, 3)
    if not run.ok:
        raise DRError("pgbackrest restore of %s from %s into %s failed: %s" % (
            backup_set["label"], plan["repo_name"], pg_path, run.error_line()),
            changed=True, stderr=run.stderr[-4000:], **dict((k, v) for k, v in result.items() if k != "changed"))
    result["warnings_pgbackrest"] = run.warnings()
    # pgBackRest writes --repo=<chosen> into restore_command: recovery reads WAL from the
    # repository that was checked, never from one found dead.
    result["recovery_settings"] = recovery_settings(pg_path)
    result["msg"] = "restored backup %s from %s into %s in %.1f s%s" % (
        backup_set["label"], plan["repo_name"], pg_path, result["duration_seconds"],
        ("; passed over " + "; ".join("%s (%s)" % (f["name"], f["reason"]) for f in plan["fallbacks"]))
        if plan["fallbacks"] else "")
    return result


_RECOVERY_KEYS = ("restore_command", "recovery_target_time", "recovery_target", "recovery_target_action",
                  "recovery_target_timeline", "archive_mode", "primary_conninfo")


def recovery_settings(pg_path):
    """The recovery settings pgBackRest wrote (postgresql.auto.conf; the last value of each wins)."""
    found = {}
    try:
        with open(os.path.join(pg_path, "postgresql.auto.conf")) as handle:
            lines = handle.read().splitlines()
    except (IOError, OSError):
        return found
    for line in lines:
        key, sep, value = line.partition("=")
        key = key.strip()
        if sep and key in _RECOVERY_KEYS and not key.startswith("#"):
            value = value.strip()
            if value.startswith("'") and value.endswith("'"):
                value = value[1:-1].replace("''", "'")
            found[key] = value
    found["standby_signal"] = os.path.exists(os.path.join(pg_path, "standby.signal"))
    found["recovery_signal"] = os.path.exists(os.path.join(pg_path, "recovery.signal"))
    return found


def _backup_brief(backup_set):
    keys = ("label", "type", "start", "stop", "size", "repo_size", "prior", "system_id", "wal_start", "wal_stop")
    return dict((k, backup_set.get(k)) for k in keys)
