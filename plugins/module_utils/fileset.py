# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A set of small generated text files, written in one call, and the files of a directory that
the set no longer lists, removed: the engine of the `file_set` module.

Why not `ansible.builtin.template` in a loop, as roles usually do: each file costs that action
two or three module runs on the host (stat, then copy, then file), about a second of CPU
apiece here. The schedule role writes 29 files (a service, a timer and a settings file per
job), which made one install take over a minute on 2 cores, and over SSH it would be some ninety
round trips. The role renders the files on the controller (a template lookup, no module run) and
this writes them all in one module run: compare, then write only what differs.

plan() validates everything and changes nothing; apply() carries a plan out. Bad input is
refused by plan() with one message naming the file at fault, so nothing is half written.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
import os
import stat

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, write_atomically

DEFAULT_MODE = 0o644


def parse_mode(value, what):
    """0644 as YAML reads it (the int 420), "0644" or "644" as a string: the permission bits."""
    if isinstance(value, bool):
        raise DRError("%s: mode %r is not an octal mode such as '0644'" % (what, value))
    if isinstance(value, int):
        mode = value
    else:
        text = str(value).strip()
        try:
            mode = int(text, 8)
        except ValueError:
            raise DRError("%s: mode %r is not an octal mode such as '0644'" % (what, value))
    if not 0 <= mode <= 0o7777:
        raise DRError("%s: mode %r is out of range (0000-7777)" % (what, value))
    return mode


def _read_text(path):
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None  # not text: it differs from any content given, and is not shown in a diff


def plan(files, prune=None, default_mode=DEFAULT_MODE, missing_parents_ok=False):
    """What writing `files` (dicts: path, content, optional mode) and pruning `prune` (dicts:
    directory, patterns) would change. Raises DRError for bad input; touches nothing.

    missing_parents_ok: in check mode, the task that creates a file's directory did not run, so
    a missing directory means "would be written", not an error."""
    default_mode = DEFAULT_MODE if default_mode is None else parse_mode(default_mode, "mode")
    wanted = {}
    for index, item in enumerate(files or []):
        path = item.get("path")
        what = "files[%d]" % index if not path else path
        if not path or not os.path.isabs(path):
            raise DRError("%s: path must be absolute, not %r" % (what, path))
        path = os.path.normpath(path)
        if path in wanted:
            raise DRError("%s: listed twice" % path)
        content = item.get("content")
        if content is None:
            raise DRError("%s: content is missing" % path)
        mode = parse_mode(item["mode"], path) if item.get("mode") is not None else default_mode
        parent = os.path.dirname(path)
        if not os.path.isdir(parent) and not missing_parents_ok:
            raise DRError("%s: its directory %s does not exist (create it first)" % (path, parent))
        if os.path.isdir(path):
            raise DRError("%s: is a directory, not a file" % path)
        wanted[path] = (content, mode)

    writes, unchanged = [], []
    for path in sorted(wanted):
        content, mode = wanted[path]
        if not os.path.lexists(path):
            before, before_mode, why = None, None, "new"
        else:
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                raise DRError("%s: is a symbolic link; file_set writes regular files only" % path)
            before, before_mode = _read_text(path), stat.S_IMODE(info.st_mode)
            why = "content" if before != content else ("mode" if before_mode != mode else None)
        if why is None:
            unchanged.append(path)
        else:
            writes.append({"path": path, "content": content, "mode": mode, "before": before,
                           "before_mode": before_mode, "why": why})

    removes, removing = [], set()
    for index, rule in enumerate(prune or []):
        directory = rule.get("directory")
        patterns = rule.get("patterns") or []
        if not directory or not os.path.isabs(directory):
            raise DRError("prune[%d]: directory must be absolute, not %r" % (index, directory))
        if not patterns:
            raise DRError("prune[%d] (%s): patterns are missing; an empty list would remove nothing by design, "
                          "so it is refused as a likely mistake" % (index, directory))
        if not os.path.isdir(directory):
            continue  # nothing there to remove (a first install, or the other backend's directory)
        for name in sorted(os.listdir(directory)):
            path = os.path.normpath(os.path.join(directory, name))
            if path in wanted or not any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
                continue
            info = os.lstat(path)
            if stat.S_ISDIR(info.st_mode):
                continue  # only files are the set's to remove
            if path not in removing:  # two rules may cover one directory
                removing.add(path)
                removes.append({"path": path, "before": None if stat.S_ISLNK(info.st_mode) else _read_text(path)})
    return {"write": writes, "unchanged": unchanged, "remove": removes}


def apply(changes):
    """Carry out a plan(): writes (or a chmod when only the mode differs), then removals."""
    for item in changes["write"]:
        if item["why"] == "mode":
            os.chmod(item["path"], item["mode"])
        else:
            write_atomically(item["path"], item["content"], item["mode"])
    for item in changes["remove"]:
        os.unlink(item["path"])


def diff(changes):
    """Ansible's diff entries (a list is allowed): one per file written or removed."""
    entries = []
    for item in changes["write"]:
        header = item["path"]
        if item["why"] == "mode":
            entries.append({"before_header": "%s (mode %04o)" % (header, item["before_mode"]),
                            "after_header": "%s (mode %04o)" % (header, item["mode"]), "before": "", "after": ""})
        else:
            entries.append({"before_header": header if item["why"] != "new" else "%s (absent)" % header,
                            "after_header": header,
                            "before": item["before"] if item["before"] is not None else "",
                            "after": item["content"]})
    for item in changes["remove"]:
        entries.append({"before_header": item["path"], "after_header": "%s (absent)" % item["path"],
                        "before": item["before"] or "", "after": ""})
    return entries


def sync(files, prune=None, default_mode=DEFAULT_MODE, check_mode=False, want_diff=False):
    """plan(), then apply() unless in check mode: the module's result."""
    changes = plan(files, prune, default_mode, missing_parents_ok=check_mode)
    if not check_mode:
        apply(changes)
    result = {"changed": bool(changes["write"] or changes["remove"]),
              "written": [item["path"] for item in changes["write"]],
              "removed": [item["path"] for item in changes["remove"]],
              "unchanged": len(changes["unchanged"])}
    if want_diff:
        result["diff"] = diff(changes)
    return result
