# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pgbackrest verify of each repository as check rows (``pgbackrest_verify_repo<N>``): every WAL
segment and every backup file read back and checked against its checksum, the repositories at
once. The weekly backup test's other checks are in module_utils/verification.

No Ansible import: tests and the lab call this directly.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import concurrent.futures
import re

from ansible_collections.auditron.dr.plugins.module_utils import pgbackrest
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, human_duration
from ansible_collections.auditron.dr.plugins.module_utils.verification import check_row, row_passed, summarize

_STATUS_RE = re.compile(r"^\s*status:\s*(\S+)\s*$", re.IGNORECASE)
_ARCHIVE_RE = re.compile(r"archiveId:\s*([^,\s]+),\s*total WAL checked:\s*(\d+),\s*total valid WAL:\s*(\d+)")
_BACKUP_RE = re.compile(r"backup:\s*([^,\s]+),\s*status:\s*([^,]+?),\s*total files checked:\s*(\d+),"
                        r"\s*total valid files:\s*(\d+)")
_ERRORS_RE = re.compile(r"missing:\s*(\d+),\s*checksum invalid:\s*(\d+),\s*size invalid:\s*(\d+),\s*other:\s*(\d+)")
_LOG_RE = re.compile(r"\b(ERROR|WARN):\s*(?:\[(\d+)\]:\s*)?(.*)$")
_ERROR_KEYS = ("missing", "checksum_invalid", "size_invalid", "other")


def parse_verify_output(stdout, stderr=""):
    """`pgbackrest verify --output=text --verbose` as data (pgBackRest 2.45 and later)."""
    result = {"status": None, "archives": [], "backups": [], "errors": [], "warnings": []}
    current = None
    for line in (stdout or "").splitlines():
        match = _ARCHIVE_RE.search(line)
        if match:
            current = {"archive_id": match.group(1), "checked": int(match.group(2)), "valid": int(match.group(3))}
            current.update((key, 0) for key in _ERROR_KEYS)
            result["archives"].append(current)
            continue
        match = _BACKUP_RE.search(line)
        if match:
            current = {"label": match.group(1), "status": match.group(2).strip(), "checked": int(match.group(3)),
                       "valid": int(match.group(4))}
            current.update((key, 0) for key in _ERROR_KEYS)
            result["backups"].append(current)
            continue
        match = _ERRORS_RE.search(line)
        if match and current is not None:
            current.update(zip(_ERROR_KEYS, (int(value) for value in match.groups())))
            continue
        match = _STATUS_RE.match(line)
        if match and result["status"] is None:
            result["status"] = match.group(1).lower()
    for line in ((stderr or "") + "\n" + (stdout or "")).splitlines():
        match = _LOG_RE.search(line)
        if match:
            text = ("[%s] %s" % (match.group(2), match.group(3).strip())) if match.group(2) else match.group(3).strip()
            bucket = result["errors"] if match.group(1) == "ERROR" else result["warnings"]
            if text not in bucket:
                bucket.append(text)
    return result


def _error_counts(item):
    return ", ".join("%s %d" % (key.replace("_", " "), item[key]) for key in _ERROR_KEYS if item.get(key))


def verify_row(repo_name, rc, parsed, error_line=None, seconds=None):
    """`pgbackrest_verify_<repo>` from one repository's verify run."""
    name = "pgbackrest_verify_%s" % repo_name
    bad_backups = [b for b in parsed["backups"] if b["status"] not in ("valid", "in-progress")]
    bad_archives = [a for a in parsed["archives"] if a["valid"] < a["checked"] or _error_counts(a)]
    running = [b["label"] for b in parsed["backups"] if b["status"] == "in-progress"]
    # A repository that holds no backup at all restores nothing: that fails too.
    empty = rc == 0 and not parsed["backups"]
    passed = rc == 0 and parsed["status"] in (None, "ok") and not bad_backups and not bad_archives and not empty
    wal = sum(a["checked"] for a in parsed["archives"])
    if passed:
        detail = "pgbackrest verify %s: %d WAL segments and %d backups valid%s%s" % (
            repo_name, wal, len(parsed["backups"]) - len(running),
            ("; running (not judged): %s" % ", ".join(running)) if running else "",
            (" in %s" % human_duration(seconds)) if seconds is not None else "")
    else:
        problems = ["backup %s %s (%s)" % (b["label"], b["status"], _error_counts(b) or "no file counts")
                    for b in bad_backups]
        problems += ["archive %s: %d of %d WAL valid (%s)" % (
            a["archive_id"], a["valid"], a["checked"], _error_counts(a) or "no counts") for a in bad_archives]
        if empty and not problems:
            problems = ["the repository holds no backup%s" % (
                ("; %s" % "; ".join(parsed["warnings"][:2])) if parsed["warnings"] else "")]
        if not problems:
            problems = parsed["errors"][:3] or [error_line or "exit code %s" % rc]
        elif rc != 0 and error_line:
            problems.append(error_line)
        detail = "pgbackrest verify %s failed: %s" % (repo_name, "; ".join(problems))
    return check_row(name, passed, detail, backups=[b["label"] for b in bad_backups], kind="pgbackrest",
                     repo=repo_name)


def pgbackrest_verify(config, stanza=pgbackrest.DEFAULT_STANZA, repos=None, binary=pgbackrest.DEFAULT_BINARY,
                      timeout=7200, process_max=None, probe_timeout=5.0, check_mode=False, tool=None):
    """`pgbackrest verify` of each repository (at once, one process each); one row per repository.

    Runs as the current user, which must be the PostgreSQL OS user. A repository that does not
    answer fails its row at once, and does not hold up the others.
    """
    tool = tool or pgbackrest.PgBackRest(config, stanza, binary=binary)
    defined = pgbackrest.configured_repos(pgbackrest.read_config(config), stanza)
    wanted = _select(defined, repos, config)
    options = ["--output=text", "--verbose"]
    if process_max:
        options.append("--process-max=%d" % int(process_max))
    plan = [{"repo": repo["key"], "name": repo["name"], "location": pgbackrest.describe_repo(repo),
             "command": " ".join(tool.argv("verify", options, repo=repo["key"]))} for repo in wanted]
    if check_mode:
        return {"changed": False, "repos": plan, "checks": [],
                "msg": "would run pgbackrest verify on %s" % ", ".join(p["name"] for p in plan),
                "dr_report": {}}

    def verify(repo):
        unreachable = pgbackrest.probe_repo(repo, probe_timeout)
        if unreachable:
            return repo, None, check_row("pgbackrest_verify_%s" % repo["name"], False, "pgbackrest verify %s: "
                                         "unreachable: %s" % (repo["name"], unreachable), kind="pgbackrest",
                                         repo=repo["name"])
        try:
            run = tool.run("verify", options, repo=repo["key"], timeout=timeout)
        except DRError as exc:
            return repo, None, check_row("pgbackrest_verify_%s" % repo["name"], False, "pgbackrest verify %s: %s" % (
                repo["name"], exc.message), kind="pgbackrest", repo=repo["name"])
        parsed = parse_verify_output(run.stdout, run.stderr)
        parsed.update(rc=run.rc, seconds=round(run.seconds, 3))
        return repo, parsed, verify_row(repo["name"], run.rc, parsed, run.error_line() if not run.ok else None,
                                        run.seconds)

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(wanted))) as pool:
        outcomes = list(pool.map(verify, wanted))
    rows = [row for _repo, _parsed, row in outcomes]
    results = []
    for (repo, parsed, row), step in zip(outcomes, plan):
        results.append(dict(step, passed=row_passed(row), detail=row["detail"],
                            status=(parsed or {}).get("status"), seconds=(parsed or {}).get("seconds"),
                            archives=(parsed or {}).get("archives", []), backups=(parsed or {}).get("backups", []),
                            errors=(parsed or {}).get("errors", [])[:20]))
    summary = summarize(rows, run="pgbackrest verify")
    return {"changed": False, "repos": results, "checks": rows, "msg": summary["msg"], "dr_report": {"checks": rows}}


def _select(defined, repos, config):
    if not repos:
        return list(defined)
    by_key = dict((repo["key"], repo) for repo in defined)
    chosen = []
    for key in repos:
        try:
            number = int(str(key).replace("repo", ""))
        except ValueError:
            raise DRError("repository %r is not a repository number (1, 2, 3...)" % (key,))
        if number not in by_key:
            raise DRError("repo%d is not configured in %s (configured: %s)" % (
                number, config, ", ".join(repo["name"] for repo in defined)))
        if by_key[number] not in chosen:
            chosen.append(by_key[number])
    return chosen
