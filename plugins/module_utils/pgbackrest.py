# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pgBackRest as plain Python: build its command lines, run them, read what it answers.

- `PgBackRest` runs one command against one configuration file and stanza; a pgBackRest error
  becomes a DRError carrying pgBackRest's own one-line message.
- `read_config` / `configured_repos` read the repositories a configuration file defines, and
  `probe_repo` tells in a few seconds whether one answers (pgBackRest itself retries for
  minutes against a dead endpoint: its io-timeout is spent on every file it reads).
- `parse_info` turns `pgbackrest info --output=json` into a summary per repository;
  `info_summary` runs it (the catalog calls this too).
- `backup` runs one backup per repository (pgBackRest backs up to one repository at a time)
  and carries on past a failed one.
- Restores (choosing the repository that can reach the target, falling back to the next one)
  live in pgbackrest_restore.py.

No Ansible import: tests, benchmarks and the lab call this directly. Commands run as the
current user, which must be the PostgreSQL OS user (modules run under become).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import datetime
import json
import os
import re
import socket
import subprocess
import time

from ansible_collections.auditron.dr.plugins.module_utils import aws
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, format_time, utc_now

DEFAULT_STANZA = "auditron"
DEFAULT_BINARY = "pgbackrest"
BACKUP_TYPES = ("full", "diff", "incr")

# pgBackRest's repository status codes (info --output=json: repo[].status.code).
STATUS_OK = 0
STATUS_MISSING_STANZA_PATH = 1
STATUS_NO_BACKUP = 2
STATUS_MISSING_STANZA_DATA = 3
STATUS_ERROR = 99
STATUS_TEXT = {0: "ok", 1: "missing stanza path", 2: "no valid backups", 3: "missing stanza data",
               4: "different across repos", 5: "database mismatch across repos", 6: "backup/expire running",
               99: "error"}

_ERROR_RE = re.compile(r"ERROR: \[(\d+)\]: (.*)")
_WARN_RE = re.compile(r"WARN: (.*)")
_LABEL_RE = re.compile(r"new backup label = (\S+)")
_S3_TYPES = ("s3", "gcs", "azure")
_DEFAULT_HOSTS = {"gcs": "storage.googleapis.com"}


# ---------------------------------------------------------------------------------------------
# Running pgBackRest

class CommandResult(object):
    def __init__(self, argv, rc, stdout, stderr, seconds):
        self.argv = argv
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.seconds = seconds

    @property
    def ok(self):
        return self.rc == 0

    def error_line(self):
        """pgBackRest's error as one line ('[055] unable to ...'), or the last line it printed."""
        return error_line(self.stderr + "\n" + self.stdout) or ("exit code %d" % self.rc)

    def warnings(self):
        found = []
        for line in (self.stderr + "\n" + self.stdout).splitlines():
            match = _WARN_RE.search(line)
            if match:
                found.append(match.group(1).strip())
        return found


def error_line(text):
    """The first pgBackRest error of `text` as '[code] message', else its last non-empty line."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    for line in lines:
        match = _ERROR_RE.search(line)
        if match:
            return "[%s] %s" % (match.group(1), match.group(2).strip())
    return lines[-1] if lines else ""


def _subprocess_runner(argv, env, timeout):
    started = time.monotonic()
    try:
        completed = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise DRError("%s is not installed (not found on PATH)" % argv[0])
    except subprocess.TimeoutExpired:
        raise DRError("%s %s did not finish within %s s" % (os.path.basename(argv[0]), argv[-1], timeout))
    return completed.returncode, completed.stdout, completed.stderr, time.monotonic() - started


class PgBackRest(object):
    """One configuration file and stanza; `runner(argv, env, timeout) -> (rc, out, err, seconds)`
    can be replaced (unit tests record the command lines instead of running them)."""

    def __init__(self, config, stanza=DEFAULT_STANZA, binary=DEFAULT_BINARY, io_timeout=None, runner=None,
                 env=None):
        self.config = config
        self.stanza = stanza
        self.binary = binary or DEFAULT_BINARY
        self.io_timeout = io_timeout
        self.runner = runner or _subprocess_runner
        self.env = dict(os.environ)
        self.env.update(env or {})

    def argv(self, command, options=None, repo=None, io_timeout=None):
        argv = [self.binary, "--config=%s" % self.config, "--stanza=%s" % self.stanza]
        if repo is not None:
            argv.append("--repo=%d" % int(repo))
        timeout = io_timeout if io_timeout is not None else self.io_timeout
        if timeout is not None:
            argv.append("--io-timeout=%s" % _number(timeout))
        argv.extend(options or [])
        argv.append(command)
        return argv

    def run(self, command, options=None, repo=None, io_timeout=None, timeout=None):
        argv = self.argv(command, options, repo, io_timeout)
        rc, out, err, seconds = self.runner(argv, self.env, timeout)
        return CommandResult(argv, rc, out or "", err or "", seconds)

    def run_checked(self, command, options=None, repo=None, io_timeout=None, timeout=None, what=None):
        result = self.run(command, options, repo, io_timeout, timeout)
        if not result.ok:
            raise DRError("pgbackrest %s%s failed: %s" % (
                what or command, (" (repo%d)" % repo) if repo is not None else "", result.error_line()),
                rc=result.rc, stderr=result.stderr[-4000:], cmd=" ".join(result.argv))
        return result

    def info_document(self, repo=None, io_timeout=None, timeout=None):
        result = self.run_checked("info", ["--output=json"], repo=repo, io_timeout=io_timeout, timeout=timeout)
        try:
            document = json.loads(result.stdout)
        except ValueError:
            raise DRError("pgbackrest info did not answer JSON: %s" % (result.stdout.strip()[:200] or "(empty)"))
        return document

    def repo_ls(self, repo, path, io_timeout=None, timeout=None):
        """{name: {type, size, time}} of one repository path (file names are never encrypted)."""
        argv = [self.binary, "--config=%s" % self.config, "--repo=%d" % int(repo), "--output=json"]
        timeout_option = io_timeout if io_timeout is not None else self.io_timeout
        if timeout_option is not None:
            argv.append("--io-timeout=%s" % _number(timeout_option))
        argv += ["repo-ls", path]
        rc, out, err, seconds = self.runner(argv, self.env, timeout)
        result = CommandResult(argv, rc, out or "", err or "", seconds)
        if not result.ok:
            raise DRError("pgbackrest repo-ls %s (repo%d) failed: %s" % (path, repo, result.error_line()))
        try:
            return json.loads(result.stdout or "{}")
        except ValueError:
            raise DRError("pgbackrest repo-ls did not answer JSON")


def _number(value):
    value = float(value)
    return ("%d" % value) if value == int(value) else ("%g" % value)


# ---------------------------------------------------------------------------------------------
# The configuration file

def read_config(path):
    """{section: {option: value}} of a pgBackRest configuration file (later lines win, as in
    pgBackRest for options that take one value)."""
    try:
        with open(path) as handle:
            text = handle.read()
    except (IOError, OSError) as exc:
        raise DRError("pgBackRest configuration %s cannot be read: %s" % (path, exc.strerror or exc))
    return parse_config(text)


def parse_config(text):
    sections = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip(), {})
            continue
        if current is None or "=" not in line:
            continue
        key, value = line.split("=", 1)
        current[key.strip()] = value.strip()
    return sections


def _split_endpoint(endpoint, port):
    """Host and port of 'host', 'host:port' or 'https://host:port/'."""
    text = (endpoint or "").strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.split("/", 1)[0]
    host = text
    if text.count(":") == 1:
        host, _sep, embedded = text.partition(":")
        if embedded.isdigit() and not port:
            port = int(embedded)
    return host, int(port or 443)


def configured_repos(sections, stanza=DEFAULT_STANZA):
    """The repositories a configuration defines: key, type, path, and where to reach them.

    Options are read from [global] then [<stanza>] (the stanza section wins), as pgBackRest does.
    """
    merged = dict(sections.get("global", {}))
    merged.update(sections.get(stanza, {}))
    keys = set()
    for name in merged:
        match = re.match(r"^repo(\d+)-", name)
        if match:
            keys.add(int(match.group(1)))
    if not keys:
        keys.add(1)  # pgBackRest's default repository: posix at /var/lib/pgbackrest
    repos = []
    for key in sorted(keys):
        prefix = "repo%d-" % key

        def option(name, default=None, _prefix=prefix):
            return merged.get(_prefix + name, default)

        repo_type = option("type", "posix")
        repo = {"key": key, "name": "repo%d" % key, "type": repo_type,
                "path": option("path", "/var/lib/pgbackrest"),
                "cipher": option("cipher-type", "none")}
        if repo_type in _S3_TYPES:
            if repo_type == "s3":
                endpoint = option("s3-endpoint", "")
            elif repo_type == "azure":
                endpoint = option("azure-endpoint", "blob.core.windows.net")
            else:
                endpoint = option("gcs-endpoint", _DEFAULT_HOSTS["gcs"])
            host, port = _split_endpoint(option("storage-host") or endpoint, option("storage-port"))
            repo.update(host=host, port=port, bucket=option("s3-bucket") or option("gcs-bucket")
                        or option("azure-container"))
        repos.append(repo)
    return repos


def describe_repo(repo):
    if repo.get("host"):
        return "%s (%s %s:%s/%s)" % (repo["name"], repo["type"], repo["host"], repo["port"], repo.get("bucket") or "")
    return "%s (%s %s)" % (repo["name"], repo["type"], repo["path"])


def probe_repo(repo, timeout=5.0):
    """None when `repo` can be reached, else why not, in a few words.

    Object stores: a TCP connection to the endpoint (pgBackRest would retry for its whole
    io-timeout on each of several files). Local repositories: the path exists and can be read.
    """
    if repo.get("host"):
        try:
            conn = socket.create_connection((repo["host"], repo["port"]), timeout=timeout)
        except socket.timeout:
            return "endpoint %s:%s does not answer (no reply within %s s)" % (repo["host"], repo["port"], timeout)
        except (OSError, socket.error) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            return "endpoint %s:%s does not answer (%s)" % (repo["host"], repo["port"], reason.lower())
        conn.close()
        return None
    path = repo.get("path") or ""
    if repo.get("type", "posix") in ("posix", "cifs"):
        if not os.path.isdir(path):
            return "path %s does not exist" % path
        if not os.access(path, os.R_OK | os.X_OK):
            return "path %s cannot be read by this user" % path
    return None


# ---------------------------------------------------------------------------------------------
# pgbackrest info

def epoch_iso(epoch):
    if epoch is None:
        return None
    return format_time(datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc))


def _parse_backup(entry, systems):
    info = entry.get("info") or {}
    repository = info.get("repository") or {}
    stamp = entry.get("timestamp") or {}
    database = entry.get("database") or {}
    archive = entry.get("archive") or {}
    lsn = entry.get("lsn") or {}
    start, stop = stamp.get("start"), stamp.get("stop")
    system = systems.get((database.get("repo-key"), database.get("id"))) or {}
    return {
        "label": entry.get("label"),
        "type": entry.get("type"),
        "repo": database.get("repo-key"),
        "start": epoch_iso(start),
        "stop": epoch_iso(stop),
        "start_epoch": start,
        "stop_epoch": stop,
        "duration_seconds": (stop - start) if (start is not None and stop is not None) else None,
        "size": info.get("size"),
        "delta": info.get("delta"),
        "repo_size": repository.get("size"),
        "repo_delta": repository.get("delta"),
        "prior": entry.get("prior"),
        "reference": entry.get("reference") or [],
        "database_id": database.get("id"),
        "system_id": str(system.get("system-id")) if system.get("system-id") is not None else None,
        "pg_version": system.get("version"),
        "wal_start": archive.get("start"),
        "wal_stop": archive.get("stop"),
        "lsn_start": lsn.get("start"),
        "lsn_stop": lsn.get("stop"),
        "error": bool(entry.get("error")),
    }


def parse_info(document, stanza=DEFAULT_STANZA, now=None):
    """Summary of one stanza from `pgbackrest info --output=json` (a list of stanzas).

    Per repository: status (an error status means the repository could not be read: it is
    listed in `unreachable` with pgBackRest's reason), backups oldest first, the WAL archive's
    min and max, and the newest backup's age.
    """
    now = now or utc_now()
    if isinstance(document, str):
        document = json.loads(document)
    entry = next((s for s in document or [] if s.get("name") == stanza), None)
    if entry is None:
        raise DRError("pgbackrest info has no stanza %s" % stanza)
    systems = {}
    for db in entry.get("db") or []:
        systems[(db.get("repo-key"), db.get("id"))] = db
    repos = []
    for repo in entry.get("repo") or []:
        status = repo.get("status") or {}
        code = status.get("code")
        repos.append({"key": repo.get("key"), "name": "repo%s" % repo.get("key"), "status_code": code,
                      "status": status.get("message") or STATUS_TEXT.get(code, "unknown"),
                      "reachable": code != STATUS_ERROR, "cipher": repo.get("cipher"),
                      "stanza_exists": code not in (STATUS_MISSING_STANZA_PATH, STATUS_MISSING_STANZA_DATA,
                                                    STATUS_ERROR),
                      "backups": [], "archive": [], "wal_min": None, "wal_max": None,
                      "system_ids": sorted(set(str(d.get("system-id")) for d in entry.get("db") or []
                                               if d.get("repo-key") == repo.get("key")))})
    by_key = dict((r["key"], r) for r in repos)
    for backup in entry.get("backup") or []:
        parsed = _parse_backup(backup, systems)
        if parsed["repo"] in by_key:
            by_key[parsed["repo"]]["backups"].append(parsed)
    for archive in entry.get("archive") or []:
        database = archive.get("database") or {}
        repo = by_key.get(database.get("repo-key"))
        if repo is None:
            continue
        repo["archive"].append({"id": archive.get("id"), "min": archive.get("min"), "max": archive.get("max")})
        if archive.get("min") and (repo["wal_min"] is None or archive["min"] < repo["wal_min"]):
            repo["wal_min"] = archive["min"]
        if archive.get("max") and (repo["wal_max"] is None or archive["max"] > repo["wal_max"]):
            repo["wal_max"] = archive["max"]
    for repo in repos:
        repo["backups"].sort(key=lambda b: (b["stop_epoch"] or 0, b["label"] or ""))
        good = [b for b in repo["backups"] if not b["error"]]
        repo["backup_count"] = len(repo["backups"])
        repo["oldest_backup"] = good[0]["label"] if good else None
        repo["newest_backup"] = good[-1]["label"] if good else None
        repo["newest_backup_stop"] = good[-1]["stop"] if good else None
        repo["newest_backup_age_seconds"] = (
            max(0, int(epoch_seconds(now) - good[-1]["stop_epoch"])) if good and good[-1]["stop_epoch"] else None)
        repo["error"] = repo["status"] if not repo["reachable"] else None
    status = entry.get("status") or {}
    return {
        "stanza": stanza,
        "status_code": status.get("code"),
        "status": status.get("message"),
        "backup_running": bool(((status.get("lock") or {}).get("backup") or {}).get("held")),
        "cipher": entry.get("cipher"),
        "repos": repos,
        "unreachable_repos": ["%s: %s" % (r["name"], r["status"]) for r in repos if not r["reachable"]],
        "missing_stanza": [r["name"] for r in repos if r["reachable"] and not r["stanza_exists"]],
        "checked_at": format_time(now),
    }


def epoch_seconds(moment):
    return (moment - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)).total_seconds()


def wal_segment_time(tool, repo_key, archive_id, wal, io_timeout=None):
    """When segment `wal` was stored in the repository (epoch), from its file's time, or None."""
    if not wal or not archive_id:
        return None
    listing = tool.repo_ls(repo_key, "archive/%s/%s/%s" % (tool.stanza, archive_id, wal[:16]),
                           io_timeout=io_timeout)
    times = [meta.get("time") for name, meta in listing.items()
             if name.startswith(wal) and meta.get("type") == "file" and meta.get("time") is not None]
    return max(times) if times else None


def add_wal_times(tool, summary, now=None, io_timeout=None):
    """Add to each readable repository when its newest WAL segment arrived, and its age."""
    now = now or utc_now()
    for repo in summary["repos"]:
        repo["wal_max_time"] = None
        repo["wal_max_age_seconds"] = None
        if not repo["reachable"] or not repo["wal_max"]:
            continue
        archive_id = next((a["id"] for a in repo["archive"] if a["max"] == repo["wal_max"]), None)
        try:
            epoch = wal_segment_time(tool, repo["key"], archive_id, repo["wal_max"], io_timeout=io_timeout)
        except DRError as exc:
            repo["wal_max_time_error"] = str(exc)
            continue
        if epoch is not None:
            repo["wal_max_time"] = epoch_iso(epoch)
            repo["wal_max_epoch"] = epoch
            repo["wal_max_age_seconds"] = max(0, int(epoch_seconds(now) - epoch))
    newest = [r for r in summary["repos"] if r.get("wal_max")]
    if newest:
        best = max(newest, key=lambda r: r["wal_max"])
        summary["newest_archived_wal"] = best["wal_max"]
        ages = [r["wal_max_age_seconds"] for r in newest if r["wal_max"] == best["wal_max"]
                and r.get("wal_max_age_seconds") is not None]
        summary["newest_archived_wal_age_seconds"] = min(ages) if ages else None
    else:
        summary["newest_archived_wal"] = None
        summary["newest_archived_wal_age_seconds"] = None
    return summary


def info_summary(config, stanza=DEFAULT_STANZA, repos=None, binary=DEFAULT_BINARY, io_timeout=None,
                 wal_times=True, probe_timeout=5.0, now=None, tool=None):
    """What the repositories hold, per repository; the function the modules and the catalog call.

    A repository that cannot be reached (quick probe, or an error status from pgBackRest) is
    kept in the summary with `reachable: false` and its reason, and named in `unreachable`:
    one dead repository never hides what the others hold.
    """
    now = now or utc_now()
    tool = tool or PgBackRest(config, stanza, binary=binary, io_timeout=io_timeout)
    defined = configured_repos(read_config(config), stanza)
    wanted = select_repos(defined, repos, config)
    summary = None
    probe_failures = {}
    readable = []
    for repo in wanted:
        reason = probe_repo(repo, probe_timeout)
        if reason:
            probe_failures[repo["key"]] = reason
        else:
            readable.append(repo["key"])
    if readable:
        # One info call for every readable repository: --repo only when the set is partial.
        if len(readable) == len(defined):
            summary = parse_info(tool.info_document(), stanza, now)
        else:
            parts = [parse_info(tool.info_document(repo=key), stanza, now) for key in readable]
            summary = parts[0]
            for part in parts[1:]:
                summary["repos"].extend(part["repos"])
                summary["unreachable_repos"].extend(part["unreachable_repos"])
                summary["missing_stanza"].extend(part["missing_stanza"])
                summary["backup_running"] = summary["backup_running"] or part["backup_running"]
            summary["status"] = summary["status"] if len(parts) == 1 else None
            summary["status_code"] = summary["status_code"] if len(parts) == 1 else None
    else:
        summary = {"stanza": stanza, "status_code": None, "status": None, "backup_running": False, "cipher": None,
                   "repos": [], "unreachable_repos": [], "missing_stanza": [], "checked_at": format_time(now)}
    for key, reason in probe_failures.items():
        repo = next(r for r in wanted if r["key"] == key)
        summary["repos"].append({"key": key, "name": repo["name"], "status_code": STATUS_ERROR, "status": reason,
                                 "reachable": False, "stanza_exists": False, "cipher": repo["cipher"],
                                 "backups": [], "archive": [], "wal_min": None, "wal_max": None, "system_ids": [],
                                 "backup_count": 0, "oldest_backup": None, "newest_backup": None,
                                 "newest_backup_stop": None, "newest_backup_age_seconds": None, "error": reason})
        summary["unreachable_repos"].append("%s: %s" % (repo["name"], reason))
    wanted_keys = [r["key"] for r in wanted]
    summary["repos"] = sorted([r for r in summary["repos"] if r["key"] in wanted_keys], key=lambda r: r["key"])
    summary["unreachable_repos"] = sorted(set(summary["unreachable_repos"]))
    for repo in summary["repos"]:
        definition = next((r for r in defined if r["key"] == repo["key"]), {})
        repo["type"] = definition.get("type")
        repo["location"] = describe_repo(definition) if definition else repo["name"]
    if wal_times:
        add_wal_times(tool, summary, now=now, io_timeout=io_timeout)
    summary["stanza_exists"] = any(r["stanza_exists"] for r in summary["repos"])
    summary["config"] = config
    summary["table"] = format_table(summary)
    return summary


def select_repos(defined, requested, config):
    if not requested:
        return list(defined)
    by_key = dict((r["key"], r) for r in defined)
    chosen = []
    for key in requested:
        try:
            key = int(str(key).replace("repo", ""))
        except ValueError:
            raise DRError("repository %r is not a repository number (1, 2, 3...)" % (key,))
        if key not in by_key:
            raise DRError("repo%d is not configured in %s (configured: %s)" % (
                key, config, ", ".join(r["name"] for r in defined)))
        if by_key[key] not in chosen:
            chosen.append(by_key[key])
    return chosen


def _age(seconds):
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 120:
        return "%d s" % seconds
    if seconds < 7200:
        return "%d min" % (seconds // 60)
    if seconds < 172800:
        return "%.1f h" % (seconds / 3600.0)
    return "%.1f d" % (seconds / 86400.0)


def format_table(summary):
    """One line per repository: status, backups, newest backup and its age, newest WAL and its age."""
    rows = [("REPO", "STATUS", "BACKUPS", "NEWEST BACKUP", "AGE", "NEWEST WAL", "WAL AGE")]
    for repo in summary["repos"]:
        status = repo["status"] if repo["reachable"] else "UNREACHABLE: %s" % repo["status"]
        rows.append((repo["name"], status, str(repo.get("backup_count", 0)), repo.get("newest_backup") or "-",
                     _age(repo.get("newest_backup_age_seconds")), repo.get("wal_max") or "-",
                     _age(repo.get("wal_max_age_seconds"))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(len(widths))] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return lines


# ---------------------------------------------------------------------------------------------
# Backups

def backup(config, stanza=DEFAULT_STANZA, backup_type="incr", repos=None, process_max=None, start_fast=True,
           extra_options=None, binary=DEFAULT_BINARY, probe_timeout=5.0, check_mode=False, tool=None):
    """One backup per repository, in turn; a failed repository does not stop the others.

    Returns per repository the label, the type pgBackRest actually made (an incr without a
    prior full becomes a full), duration and sizes. Raises DRError at the end naming every
    repository that failed, with the per-repository results as details.
    """
    if backup_type not in BACKUP_TYPES:
        raise DRError("backup type %r is not one of %s" % (backup_type, ", ".join(BACKUP_TYPES)))
    tool = tool or PgBackRest(config, stanza, binary=binary)
    wanted = select_repos(configured_repos(read_config(config), stanza), repos, config)
    options = ["--type=%s" % backup_type, "--log-level-console=info"]
    if process_max:
        options.append("--process-max=%d" % int(process_max))
    if start_fast is not None:
        options.append("--start-fast" if start_fast else "--no-start-fast")
    options.extend(extra_options or [])
    plan = [{"repo": r["key"], "name": r["name"], "location": describe_repo(r), "definition": r,
             "command": " ".join(tool.argv("backup", options, repo=r["key"]))} for r in wanted]
    for step in plan:
        step.pop("definition")
    if check_mode:
        return {"changed": True, "type": backup_type, "repos": plan,
                "msg": "would back up (%s) to %s" % (backup_type, ", ".join(p["name"] for p in plan))}
    results = []
    for step, repo in zip(plan, wanted):
        # A dead endpoint is reported at once; pgBackRest would spend its io-timeout on each file.
        unreachable = probe_repo(repo, probe_timeout)
        if unreachable:
            results.append({"repo": step["repo"], "name": step["name"], "location": step["location"],
                            "command": step["command"], "requested_type": backup_type, "ok": False, "seconds": 0.0,
                            "warnings": [], "error": "unreachable: %s" % unreachable})
            continue
        result = tool.run("backup", options, repo=step["repo"])
        row = {"repo": step["repo"], "name": step["name"], "location": step["location"], "command": step["command"],
               "requested_type": backup_type, "ok": result.ok, "seconds": round(result.seconds, 3),
               "warnings": result.warnings()}
        if not result.ok:
            row["error"] = result.error_line()
            results.append(row)
            continue
        match = _LABEL_RE.search(result.stdout + "\n" + result.stderr)
        label = match.group(1) if match else None
        try:
            summary = parse_info(tool.info_document(repo=step["repo"]), stanza)
            repo_info = next((r for r in summary["repos"] if r["key"] == step["repo"]), {"backups": []})
            made = next((b for b in repo_info["backups"] if b["label"] == label), None)
            if made is None and repo_info["backups"]:
                made = repo_info["backups"][-1]
        except DRError as exc:
            made = None
            row["warnings"].append("backup made but info failed: %s" % exc)
        if made:
            row.update(label=made["label"], type=made["type"], start=made["start"], stop=made["stop"],
                       duration_seconds=made["duration_seconds"], size=made["size"], delta=made["delta"],
                       repo_size=made["repo_size"], repo_delta=made["repo_delta"], prior=made["prior"],
                       wal_start=made["wal_start"], wal_stop=made["wal_stop"], system_id=made["system_id"])
        else:
            row.update(label=label, type=None)
        results.append(row)
    failed = [r for r in results if not r["ok"]]
    made = [r for r in results if r["ok"]]
    outcome = {"changed": bool(made), "type": backup_type, "repos": results,
               "labels": dict((r["name"], r.get("label")) for r in made),
               "failed_repos": [r["name"] for r in failed]}
    if failed:
        raise DRError("backup failed in %s%s" % (
            "; ".join("%s: %s" % (r["name"], r["error"]) for r in failed),
            (" (made in %s)" % ", ".join(r["name"] for r in made)) if made else ""), **outcome)
    outcome["msg"] = "%s backup made in %s" % (backup_type, ", ".join(
        "%s (%s %s, %.1f s)" % (r["name"], r.get("type"), r.get("label"), r["seconds"]) for r in made))
    return outcome


# ---------------------------------------------------------------------------------------------
# A cipher passphrase kept wrapped by KMS

def unwrap_cipher_pass(blob, kms_params):
    """The repository cipher passphrase from its base64 KMS ciphertext (AWS KMS or any
    AWS-compatible endpoint; in the lab that is moto, an AWS emulator)."""
    try:
        ciphertext = base64.b64decode(str(blob).strip(), validate=True)
    except (ValueError, TypeError):
        raise DRError("cipher_pass_kms_blob is not base64 KMS ciphertext")
    kms_params = kms_params or {}
    kms = aws.client("kms", kms_params)
    request = {"CiphertextBlob": ciphertext}
    if kms_params.get("key_id"):
        request["KeyId"] = kms_params["key_id"]
    try:
        plaintext = kms.decrypt(**request)["Plaintext"]
    except Exception as exc:  # pylint: disable=broad-except
        raise aws.describe_error("kms", kms_params, exc, "pgBackRest cipher passphrase")
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise DRError("the KMS-wrapped cipher passphrase is not UTF-8 text")
