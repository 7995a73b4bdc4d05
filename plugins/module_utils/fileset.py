# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A set of directories and small generated text files, made and written in one call, and the
files of a directory that the set no longer lists, removed: the engine of the `file_set` module.

Why not `ansible.builtin.template` in a loop, as roles usually do: each file costs that action
two or three module runs on the host (stat, then copy, then file), about a second of CPU
apiece here. The schedule role writes 29 files (a service, a timer and a settings file per
job), which made one install take over a minute on 2 cores, and over SSH it would be some ninety
round trips. The role renders the files on the controller (a template lookup, no module run) and
this writes them all in one module run: compare, then write only what differs. The directories
they go in come in the same run (the pgBackRest role's five, the schedule role's eight): a
`file` task per directory was the largest single item of module runs in `make test`.

plan() validates everything and changes nothing; apply() carries a plan out. Bad input is
refused by plan() with one message naming the file at fault, so nothing is half written.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
import grp
import os
import pwd
import stat

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, write_atomically

DEFAULT_MODE = 0o644
DEFAULT_DIRECTORY_MODE = 0o755


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


def owner_ids(item, what):
    """(uid, gid) for an item's owner and group (names or numbers); -1 where not given."""
    uid = gid = -1
    owner, group = item.get("owner"), item.get("group")
    if owner not in (None, ""):
        try:
            uid = int(owner) if str(owner).isdigit() else pwd.getpwnam(str(owner)).pw_uid
        except KeyError:
            raise DRError("%s: owner %r is not a user on this host" % (what, owner))
    if group not in (None, ""):
        try:
            gid = int(group) if str(group).isdigit() else grp.getgrnam(str(group)).gr_gid
        except KeyError:
            raise DRError("%s: group %r is not a group on this host" % (what, group))
    return uid, gid


def _owner_differs(info, uid, gid):
    return (uid != -1 and info.st_uid != uid) or (gid != -1 and info.st_gid != gid)


def _item_path_and_mode(item, index, kind, seen, default_mode):
    """The normalized absolute path and the mode of one item of `kind` (files or directories);
    DRError naming it when the path is relative or listed twice, or the mode bad."""
    path = item.get("path")
    if not path or not os.path.isabs(path):
        raise DRError("%s: path must be absolute, not %r" % (path or "%s[%d]" % (kind, index), path))
    path = os.path.normpath(path)
    if path in seen:
        raise DRError("%s: listed twice" % path)
    mode = parse_mode(item["mode"], path) if item.get("mode") is not None else default_mode
    return path, mode


def _plan_directories(directories):
    """[{path, mode, uid, gid, before_mode, why}] for the directories to make or change, the
    paths that will be directories afterwards, and how many were as given."""
    changes, will_exist, unchanged = [], set(), 0
    for index, item in enumerate(directories or []):
        path, mode = _item_path_and_mode(item, index, "directories", will_exist, DEFAULT_DIRECTORY_MODE)
        uid, gid = owner_ids(item, path)
        will_exist.add(path)
        if not os.path.lexists(path):
            changes.append({"path": path, "mode": mode, "uid": uid, "gid": gid, "before_mode": None, "why": "new"})
            continue
        info = os.stat(path)
        if not stat.S_ISDIR(info.st_mode):
            raise DRError("%s: exists and is not a directory" % path)
        if item.get("create_only"):
            unchanged += 1  # made when missing, never changed: it may be shared with others
            continue
        if stat.S_IMODE(info.st_mode) != mode or _owner_differs(info, uid, gid):
            changes.append({"path": path, "mode": mode, "uid": uid, "gid": gid,
                            "before_mode": stat.S_IMODE(info.st_mode), "why": "attributes"})
        else:
            unchanged += 1
    return changes, will_exist, unchanged


def plan(files, prune=None, default_mode=DEFAULT_MODE, missing_parents_ok=False, directories=None):
    """What making `directories` (dicts: path, optional mode, owner, group, create_only),
    writing `files` (dicts: path, content, optional mode, owner, group) and pruning `prune`
    (dicts: directory, patterns) would change. Raises DRError for bad input; touches nothing.

    missing_parents_ok: in check mode, the task that creates a file's directory did not run, so
    a missing directory means "would be written", not an error."""
    default_mode = DEFAULT_MODE if default_mode is None else parse_mode(default_mode, "mode")
    directory_changes, will_exist, directories_unchanged = _plan_directories(directories)
    wanted = {}
    for index, item in enumerate(files or []):
        path, mode = _item_path_and_mode(item, index, "files", wanted, default_mode)
        content = item.get("content")
        if content is None:
            raise DRError("%s: content is missing" % path)
        uid, gid = owner_ids(item, path)
        parent = os.path.dirname(path)
        if not os.path.isdir(parent) and parent not in will_exist and not missing_parents_ok:
            raise DRError("%s: its directory %s does not exist (create it first)" % (path, parent))
        if os.path.isdir(path) or path in will_exist:
            raise DRError("%s: is a directory, not a file" % path)
        wanted[path] = (content, mode, uid, gid)

    writes, unchanged = [], []
    for path in sorted(wanted):
        content, mode, uid, gid = wanted[path]
        if not os.path.lexists(path):
            before, before_mode, why = None, None, "new"
        else:
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                raise DRError("%s: is a symbolic link; file_set writes regular files only" % path)
            before, before_mode = _read_text(path), stat.S_IMODE(info.st_mode)
            why = "content" if before != content else ("mode" if before_mode != mode or
                                                       _owner_differs(info, uid, gid) else None)
        if why is None:
            unchanged.append(path)
        else:
            writes.append({"path": path, "content": content, "mode": mode, "uid": uid, "gid": gid,
                           "before": before, "before_mode": before_mode, "why": why})

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
    return {"directories": directory_changes, "directories_unchanged": directories_unchanged,
            "write": writes, "unchanged": unchanged, "remove": removes}


def _set_attributes(item):
    """Owner (where given), then mode: a mode set by chmod, whatever the umask was."""
    if item["uid"] != -1 or item["gid"] != -1:
        os.chown(item["path"], item["uid"], item["gid"])
    os.chmod(item["path"], item["mode"])


def apply(changes):
    """Carry out a plan(): directories first (parents made as `mkdir -p` would), then writes (or
    a chmod and chown when only those differ), then removals."""
    for item in changes["directories"]:
        if item["why"] == "new":
            os.makedirs(item["path"], exist_ok=True)
        _set_attributes(item)
    for item in changes["write"]:
        if item["why"] == "mode":
            _set_attributes(item)
        else:
            write_atomically(item["path"], item["content"], item["mode"], item["uid"], item["gid"])
    for item in changes["remove"]:
        os.unlink(item["path"])


def diff(changes):
    """Ansible's diff entries (a list is allowed): one per directory made or changed, and per
    file written or removed."""
    entries = []
    for item in changes["directories"]:
        after = "%s/ (directory, mode %04o)" % (item["path"], item["mode"])
        before = "%s/ (absent)" % item["path"] if item["why"] == "new" else \
            "%s/ (directory, mode %04o)" % (item["path"], item["before_mode"])
        entries.append({"before_header": before, "after_header": after, "before": "", "after": ""})
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


def sync(files, prune=None, default_mode=DEFAULT_MODE, check_mode=False, want_diff=False, directories=None):
    """plan(), then apply() unless in check mode: the module's result."""
    changes = plan(files, prune, default_mode, missing_parents_ok=check_mode, directories=directories)
    if not check_mode:
        apply(changes)
    result = {"changed": bool(changes["directories"] or changes["write"] or changes["remove"]),
              "directories": [item["path"] for item in changes["directories"]],
              "written": [item["path"] for item in changes["write"]],
              "removed": [item["path"] for item in changes["remove"]],
              "unchanged": len(changes["unchanged"]) + changes["directories_unchanged"]}
    if want_diff:
        result["diff"] = diff(changes)
    return result
