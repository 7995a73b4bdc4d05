# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Configuration restores: a bundle of configbackup.py chosen and verified, planned and written.

The newest complete manifest (or a given id); the first location, in the order given, whose
copy has the manifest's size and sha256 and whose every GCM tag verifies; all of it before
anything is written. Then every item is planned (rewrite rules applied, rewrite.py; compared
with what is there: content, mode, owner; for Kubernetes objects, the fields this engine
sends) and only then written: files atomically (temporary file, fsync, owner and mode set,
rename), Kubernetes objects by server-side apply (kubeapi.py). Restoring the same bundle
twice changes nothing the second time. Diffs show keys, never secret values.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import collections
import copy
import errno
import grp
import hashlib
import io
import json
import os
import pwd
import re
import stat
import uuid

from ansible_collections.auditron.dr.plugins.module_utils import backupset
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, first_line
from ansible_collections.auditron.dr.plugins.module_utils.configbackup import (
    BUNDLE_FORMAT, DEFAULT_KEY_PREFIX, FORMAT_VERSION, TEMP_PREFIX, bundle_label, build_locations,
    check_backup_id, count_text, item_counts, list_locations, mode_text, read_manifest, selected_kinds)
from ansible_collections.auditron.dr.plugins.module_utils.crypto import DecryptingReader
from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import describe_reference
from ansible_collections.auditron.dr.plugins.module_utils.kubeapi import DEFAULT_FIELD_MANAGER, kubernetes_api_from_params
from ansible_collections.auditron.dr.plugins.module_utils.rewrite import Document, build_rules
from ansible_collections.auditron.dr.plugins.module_utils.storage import missing_directories

# What a diff shows instead of a secret value.
MASK = "********"


# ---------------------------------------------------------------------------------------------
# Owners and modes asked for

def _resolve_uid(owner, what):
    if owner is None or owner == "":
        return None
    if isinstance(owner, int) or str(owner).isdigit():
        return int(owner)
    try:
        return pwd.getpwnam(str(owner)).pw_uid
    except KeyError:
        raise DRError("%s: owner %s does not exist on this host (set files[].owner)" % (what, owner))


def _resolve_gid(group, what):
    if group is None or group == "":
        return None
    if isinstance(group, int) or str(group).isdigit():
        return int(group)
    try:
        return grp.getgrnam(str(group)).gr_gid
    except KeyError:
        raise DRError("%s: group %s does not exist on this host (set files[].group)" % (what, group))


def parse_mode(mode, what="mode"):
    """0600, '0600', '600', 'u=rw' is not accepted: octal only, as the bundle records it."""
    if mode is None or mode == "":
        return None
    if isinstance(mode, int):
        value = mode
    else:
        text = str(mode).strip()
        if not re.match(r"^0?[0-7]{3,4}$", text):
            raise DRError("%s %r is not an octal file mode such as 0600" % (what, mode))
        value = int(text, 8)
    if value < 0 or value > 0o7777:
        raise DRError("%s %r is not a file mode" % (what, mode))
    return value


# ---------------------------------------------------------------------------------------------
# Masked views for diffs: keys, never secret values

_KEY_LINE_RE = re.compile(r"^(\s*(?:export\s+)?[A-Za-z0-9_.\-\"']+\s*[:=]\s*)(.*)$")


def _mask_tree(value, other, has_other, compare=True):
    """`value` with every leaf replaced by the mask; with `compare`, leaves that differ from
    `other` (the other side of the diff) are marked, so a diff shows which keys changed without
    their values. Without it (the other side does not exist) every leaf is simply masked."""
    if isinstance(value, dict):
        result = collections.OrderedDict()
        for key, item in value.items():
            present = has_other and isinstance(other, dict) and key in other
            result[key] = _mask_tree(item, other.get(key) if present else None, present, compare)
        return result
    if isinstance(value, list):
        return [_mask_tree(item, other[index] if has_other and isinstance(other, list) and index < len(other)
                           else None, has_other and isinstance(other, list) and index < len(other), compare)
                for index, item in enumerate(value)]
    if not compare:
        return MASK
    if not has_other:
        return MASK + " (only here)"
    if value != other or type(value) is not type(other):
        return MASK + " (differs)"
    return MASK


def _masked_text_lines(text, other):
    """Lines of `text` with the values of `key = value` lines masked (marked when they differ
    from `other`; no marks when other is None) and every other non-blank line masked whole."""
    other_values = {}
    for line in (other or "").splitlines():
        match = _KEY_LINE_RE.match(line)
        if match:
            other_values[match.group(1).strip()] = match.group(2)
    lines = []
    for line in text.splitlines():
        match = _KEY_LINE_RE.match(line)
        if not match:
            lines.append(MASK if line.strip() else line)
            continue
        key = match.group(1).strip()
        if other is None or other_values.get(key) == match.group(2):
            marker = ""
        else:
            marker = " (differs)" if key in other_values else " (only here)"
        lines.append(match.group(1) + MASK + marker)
    return "\n".join(lines) + "\n"


def masked_view(content, other, secret):
    """Text for one side of a diff. content/other: bytes (or None when absent)."""
    if content is None:
        return ""
    document = Document(content)
    if document.format == "binary":
        return "<binary, %d bytes, sha256 %s>\n" % (len(content), hashlib.sha256(content).hexdigest()[:16])
    if not secret:
        return document.text if document.text.endswith("\n") else document.text + "\n"
    other_document = Document(other) if other is not None else None
    if document.format == "json":
        has_other = other_document is not None and other_document.format == "json"
        tree = _mask_tree(document.tree, other_document.tree if has_other else None, has_other,
                          compare=other_document is not None)
        return json.dumps(tree, indent=2) + "\n"
    return _masked_text_lines(document.text, other_document.text if other_document is not None else None)


# ---------------------------------------------------------------------------------------------
# Restore: choose and verify a bundle

def _candidates(targets, backup_id, source_site, attempts):
    """Ids to try, newest first, with the manifest of each: [(id, manifest)]."""
    if backup_id not in (None, "", "latest"):
        check_backup_id(backup_id)
        errors = []
        for location in targets:
            try:
                return [(backup_id, read_manifest(location, backup_id))]
            except DRError as exc:
                errors.append(exc.message)
                if "not found" not in exc.message:
                    attempts.setdefault(location.name, exc.message)
        raise DRError("config bundle %s: no location holds a complete manifest: %s" % (backup_id, "; ".join(errors)))
    listings = list_locations(targets)
    for name, listing in listings.items():
        if "error" in listing:
            attempts[name] = listing["error"]
    ids = set()
    for listing in listings.values():
        ids.update(backup for backup, objects in listing.get("ids", {}).items() if "manifest" in objects)
    if not ids:
        raise DRError("no complete config bundle%s in %s%s" % (
            (" from site %s" % source_site) if source_site else "", ", ".join(t.name for t in targets),
            (" (unreachable: %s)" % "; ".join(attempts.values())) if attempts else ""))
    for candidate in sorted(ids, reverse=True):
        for location in targets:
            if "manifest" not in listings[location.name].get("ids", {}).get(candidate, {}):
                continue
            try:
                manifest = read_manifest(location, candidate)
            except DRError:
                continue
            if source_site and manifest.get("site") != source_site:
                break
            return [(candidate, manifest)]
    raise DRError("no complete config bundle%s in %s" % (
        (" from site %s" % source_site) if source_site else "", ", ".join(t.name for t in targets)))


def _verified_bundle(backup_id, manifest, targets, encryption, attempts):
    """(location, bundle) from the first location whose copy verifies (size, sha256, every GCM
    tag, bundle id). A copy that differs from the manifest, or a location that does not answer,
    sends us to the next location; a copy that matches its sha256 but does not decrypt is a key
    problem, the same everywhere, and stops the restore."""
    artifact = manifest["artifact"]
    encrypted = bool(manifest["encryption"].get("key"))
    if encrypted and encryption is None:
        raise DRError("config bundle %s is encrypted (%s): give the encryption option to restore it" % (
            backup_id, describe_reference(manifest["encryption"]["key"])))
    for location in targets:
        if location.name in attempts:
            continue
        what = bundle_label(backup_id, location)
        try:
            data = backupset.read_all(location, artifact["key"])
        except DRError as exc:
            attempts[location.name] = exc.message
            continue
        if len(data) != artifact["size"]:
            attempts[location.name] = "%s is %d bytes, the manifest says %d (truncated or replaced)" % (
                what, len(data), artifact["size"])
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest != artifact["sha256"]:
            attempts[location.name] = "%s: sha256 %s differs from the manifest's %s (corrupted)" % (
                what, digest[:16], artifact["sha256"][:16])
            continue
        if encrypted:
            reader = DecryptingReader(io.BytesIO(data), encryption, context=manifest["encryption"].get("context"),
                                      what=what)
            try:
                plaintext = reader.read()
            finally:
                reader.close()
        else:
            plaintext = data
        try:
            bundle = json.loads(plaintext.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            attempts[location.name] = "%s: the bundle is not valid JSON (%s)" % (what, first_line(exc))
            continue
        if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT or bundle.get("id") != backup_id:
            attempts[location.name] = "%s: not the bundle the manifest names (format %r, id %r)" % (
                what, bundle.get("format") if isinstance(bundle, dict) else None,
                bundle.get("id") if isinstance(bundle, dict) else None)
            continue
        if bundle.get("format_version", 0) > FORMAT_VERSION:
            raise DRError("%s uses bundle format version %s; this collection reads %d" % (
                what, bundle.get("format_version"), FORMAT_VERSION))
        return location, bundle
    raise DRError("config bundle %s: no location gave a verified copy: %s" % (backup_id, "; ".join(attempts.values())))


# ---------------------------------------------------------------------------------------------
# Restore: plan

def _file_specs_for(bundle_files, specs, backup_id):
    """[(item, spec, dest)] for the `files` option on restore (None: every file, in place)."""
    if specs is None:
        return [(item, {}, item["path"]) for item in bundle_files]
    chosen = []
    for index, spec in enumerate(specs):
        spec = spec or {}
        path = os.path.normpath(spec.get("path") or "")
        if not os.path.isabs(path):
            raise DRError("files[%d]: path must be the absolute path the file was backed up from, got %r" % (
                index, spec.get("path")))
        dest = spec.get("dest")
        if dest and not os.path.isabs(dest):
            raise DRError("files[%d]: dest must be an absolute path, got %r" % (index, dest))
        matched = [item for item in bundle_files
                   if item["path"] == path or item["path"].startswith(path.rstrip("/") + "/")]
        if not matched:
            raise DRError("files[%d]: %s is not in config bundle %s (it holds %s)" % (
                index, path, backup_id, ", ".join(item["path"] for item in bundle_files) or "no file"))
        for item in matched:
            target = os.path.normpath(dest + item["path"][len(path):]) if dest else item["path"]
            chosen.append((item, spec, target))
    targets = [dest for _item, _spec, dest in chosen]
    duplicates = sorted(set(dest for dest in targets if targets.count(dest) > 1))
    if duplicates:
        raise DRError("files: more than one bundle file would be written to %s" % ", ".join(duplicates))
    return chosen


def _current_file(dest):
    """(content, stat) of what is at dest now; (None, None) when nothing is."""
    try:
        info = os.stat(dest)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None, None
        raise DRError("restore: cannot examine %s: %s" % (dest, exc.strerror or first_line(exc)))
    if not stat.S_ISREG(info.st_mode):
        raise DRError("restore: %s exists and is not a regular file" % dest)
    try:
        with open(dest, "rb") as handle:
            return handle.read(), info
    except (IOError, OSError) as exc:
        raise DRError("restore: cannot read %s: %s" % (dest, exc.strerror or first_line(exc)))


def _plan_file(item, spec, dest, rules, warnings):
    name = item["path"]
    content = base64.b64decode(item["content"])
    if hashlib.sha256(content).hexdigest() != item.get("sha256"):
        raise DRError("config bundle: %s does not match its recorded sha256" % name)
    secret = item.get("secret", True) if spec.get("secret") is None else bool(spec["secret"])
    try:
        document = Document(content, spec.get("format") or "auto")
    except DRError as exc:
        raise DRError("files: %s: %s" % (name, exc.message))
    counts = document.apply(rules, name)
    desired = document.render()
    mode = parse_mode(spec.get("mode"), "files: %s: mode" % name)
    if mode is None:
        mode = parse_mode(item.get("mode") or "0600", "config bundle: %s: mode" % name)
    if secret and mode & 0o077:
        warnings.append("%s holds secrets: restored as %s instead of %s (no access for group and others)" % (
            dest, mode_text(mode & ~0o077), mode_text(mode)))
        mode &= ~0o077
    owner = spec.get("owner") if spec.get("owner") not in (None, "") else (
        item.get("owner") if item.get("owner") is not None else item.get("uid"))
    group = spec.get("group") if spec.get("group") not in (None, "") else (
        item.get("group") if item.get("group") is not None else item.get("gid"))
    uid = _resolve_uid(owner, dest)
    gid = _resolve_gid(group, dest)
    # What is there now; a symbolic link is followed, as a mounted ConfigMap's links are.
    real = os.path.realpath(dest)
    current, info = _current_file(real)
    changes = []
    if current is None:
        action = "create"
    else:
        if current != desired:
            changes.append("content")
        if stat.S_IMODE(info.st_mode) != mode:
            changes.append("mode")
        if (uid is not None and info.st_uid != uid) or (gid is not None and info.st_gid != gid):
            changes.append("owner")
        action = "update" if changes else "unchanged"
    return {
        "type": "file", "path": name, "dest": dest, "real_dest": real, "action": action, "changes": changes,
        "mode": mode_text(mode), "owner": owner, "group": group, "uid": uid, "gid": gid, "secret": secret,
        "size": len(desired), "rewritten": dict(counts), "desired": desired, "current": current,
    }


def _decoded_data(kind, obj):
    """{key: str} of the values rules may rewrite, and {key: raw} of those they may not (binary)."""
    text, raw = collections.OrderedDict(), collections.OrderedDict()
    for key, value in (obj.get("data") or {}).items():
        if kind == "Secret":
            try:
                text[key] = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, ValueError, UnicodeDecodeError):
                raw[key] = value
        else:
            text[key] = value
    return text, raw


def _secret_bytes(value):
    try:
        return base64.b64decode(value or "", validate=True)
    except (binascii.Error, ValueError):
        return None


def _desired_object(item, target_namespace, rules):
    kind, obj = item["kind"], item["object"]
    name = "%s/%s/%s" % (kind, item["namespace"], item["name"])
    text, raw = _decoded_data(kind, obj)
    view = {"apiVersion": "v1", "kind": kind, "metadata": copy.deepcopy(obj.get("metadata") or {}), "data": text}
    counts = collections.OrderedDict()
    for rule in rules:
        if not rule.selects(name):
            continue
        if rule.kind == "path":
            count = rule.set_path(view, name)
        else:
            count = 0
            for key in list(view["data"]):
                view["data"][key], replaced = rule.rewrite_text(view["data"][key])
                count += replaced
        if count:
            counts[rule.label] = counts.get(rule.label, 0) + count
    data = collections.OrderedDict()
    for key, value in view["data"].items():
        if not isinstance(value, str):
            value = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        data[key] = base64.b64encode(value.encode("utf-8")).decode("ascii") if kind == "Secret" else value
    data.update(raw)
    metadata = {"name": item["name"], "namespace": target_namespace}
    for field in ("labels", "annotations"):
        if view["metadata"].get(field):
            metadata[field] = dict(view["metadata"][field])
    body = {"apiVersion": "v1", "kind": kind, "metadata": metadata}
    if data:
        body["data"] = dict(data)
    if obj.get("binaryData"):
        body["binaryData"] = dict(obj["binaryData"])
    if kind == "Secret":
        body["type"] = obj.get("type") or "Opaque"
    if obj.get("immutable") is not None:
        body["immutable"] = bool(obj["immutable"])
    return body, dict(counts)


def _object_changes(desired, live):
    """The fields this engine sends that differ on the live object (names only, never values)."""
    changes = []
    kind = desired["kind"]
    for field in ("data", "binaryData"):
        want, have = desired.get(field) or {}, live.get(field) or {}
        for key in want:
            if kind == "Secret" and field == "data":
                same = key in have and _secret_bytes(want[key]) == _secret_bytes(have[key])
            else:
                same = key in have and want[key] == have[key]
            if not same:
                changes.append("%s.%s" % (field, key))
    if kind == "Secret" and (live.get("type") or "Opaque") != desired.get("type"):
        changes.append("type")
    if desired.get("immutable") is not None and bool(live.get("immutable")) != desired["immutable"]:
        changes.append("immutable")
    live_meta = live.get("metadata") or {}
    for field in ("labels", "annotations"):
        for key, value in (desired["metadata"].get(field) or {}).items():
            if (live_meta.get(field) or {}).get(key) != value:
                changes.append("metadata.%s.%s" % (field, key))
    return changes


def _plan_objects(bundle_objects, params, api, rules):
    params = params or {}
    kinds = selected_kinds(params)
    namespaces = set(params.get("namespaces") or [])
    namespace_map = dict(params.get("namespace_map") or {})
    plans = []
    checked_namespaces = {}
    for item in bundle_objects:
        if item["kind"] not in kinds or (namespaces and item["namespace"] not in namespaces):
            continue
        target_namespace = namespace_map.get(item["namespace"], item["namespace"])
        if target_namespace not in checked_namespaces:
            checked_namespaces[target_namespace] = api.namespace_exists(target_namespace)
            if checked_namespaces[target_namespace] is False:
                raise DRError("%s: namespace %s does not exist on the target cluster (create it, or map it with "
                              "kubernetes.namespace_map)" % (api.label, target_namespace))
        desired, counts = _desired_object(item, target_namespace, rules)
        live = api.read(item["kind"], target_namespace, item["name"])
        if live is None:
            action, changes = "create", []
        else:
            changes = _object_changes(desired, live)
            action = "update" if changes else "unchanged"
            if changes and live.get("immutable") and any(c.startswith(("data.", "binaryData.")) for c in changes):
                raise DRError("%s: %s %s/%s is immutable on the target and its data differs: delete it first" % (
                    api.label, item["kind"], target_namespace, item["name"]))
        plans.append({"type": "kubernetes", "kind": item["kind"], "name": item["name"],
                      "source_namespace": item["namespace"], "namespace": target_namespace, "action": action,
                      "changes": changes, "rewritten": counts, "desired": desired, "live": live})
    return plans


# ---------------------------------------------------------------------------------------------
# Restore: apply

def _make_parents(directory, uid, gid):
    """Create missing parent directories 0700, owned like the file; returns those created."""
    created = []
    for path in missing_directories(directory):
        try:
            os.mkdir(path, 0o700)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise DRError("restore: cannot create directory %s: %s" % (path, exc.strerror or first_line(exc)))
            continue
        os.chmod(path, 0o700)
        _chown(path, uid, gid)
        created.append(path)
    return created


def _chown(path, uid, gid, descriptor=None):
    want_uid = -1 if uid is None else uid
    want_gid = -1 if gid is None else gid
    if want_uid == -1 and want_gid == -1:
        return
    try:
        if descriptor is not None:
            os.fchown(descriptor, want_uid, want_gid)
        else:
            os.chown(path, want_uid, want_gid)
    except OSError as exc:
        raise DRError("restore: cannot give %s to %s:%s: %s (run with become)" % (
            path, uid, gid, exc.strerror or first_line(exc)))


def _write_file(plan):
    dest = plan["real_dest"]
    if plan["action"] == "unchanged":
        return
    if plan["action"] == "update" and "content" not in plan["changes"]:
        _chown(dest, plan["uid"], plan["gid"])
        os.chmod(dest, int(plan["mode"], 8))
        return
    directory = os.path.dirname(dest)
    _make_parents(directory, plan["uid"], plan["gid"])
    temp = os.path.join(directory, TEMP_PREFIX + uuid.uuid4().hex)
    try:
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise DRError("restore: cannot write in %s: %s" % (directory, exc.strerror or first_line(exc)))
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(plan["desired"])
            handle.flush()
            os.fsync(handle.fileno())
            _chown(temp, plan["uid"], plan["gid"], descriptor=handle.fileno())
            os.fchmod(handle.fileno(), int(plan["mode"], 8))
        os.rename(temp, dest)
    except BaseException as exc:
        try:
            os.unlink(temp)
        except OSError:
            pass
        if isinstance(exc, (IOError, OSError)):
            raise DRError("restore: writing %s failed: %s" % (dest, exc.strerror or first_line(exc)))
        raise
    try:
        directory_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)
    except OSError:
        pass  # the rename is done; a file system without directory fsync keeps it too


def _object_view(obj, secret, other):
    """A Kubernetes object for a diff: a Secret's data values masked, keys shown."""
    if obj is None:
        return ""
    view = {"apiVersion": obj.get("apiVersion", "v1"), "kind": obj.get("kind"),
            "metadata": dict((k, v) for k, v in (obj.get("metadata") or {}).items()
                             if k in ("name", "namespace", "labels", "annotations"))}
    for field in ("type", "immutable"):
        if field in obj:
            view[field] = obj[field]
    other_data = (other or {}).get("data") or {}
    for field in ("data", "binaryData"):
        values = obj.get(field) or {}
        if not values:
            continue
        if secret and field == "data":
            view[field] = dict((key, MASK + ("" if other is not None and key in other_data and _secret_bytes(
                other_data[key]) == _secret_bytes(value) else (" (differs)" if key in other_data else " (only here)")))
                for key, value in values.items())
        else:
            view[field] = dict(values)
    return json.dumps(view, indent=2, sort_keys=True) + "\n"


def _diff_entry(plan):
    if plan["type"] == "file":
        return {"before_header": "%s (%s)" % (plan["dest"], "absent" if plan["current"] is None else "now"),
                "after_header": "%s (from %s)" % (plan["dest"], plan["path"]),
                "before": masked_view(plan["current"], plan["desired"], plan["secret"]) if plan["current"] is not None
                else "",
                "after": masked_view(plan["desired"], plan["current"], plan["secret"])}
    label = "%s %s/%s" % (plan["kind"], plan["namespace"], plan["name"])
    secret = plan["kind"] == "Secret"
    live_subset = None
    if plan["live"] is not None:
        live_subset = dict(plan["live"])
        live_subset["data"] = dict((k, v) for k, v in (plan["live"].get("data") or {}).items()
                                   if k in (plan["desired"].get("data") or {}))
    return {"before_header": "%s (%s)" % (label, "absent" if plan["live"] is None else "live"),
            "after_header": "%s (from %s/%s)" % (label, plan["source_namespace"], plan["name"]),
            "before": _object_view(live_subset, secret, plan["desired"]),
            "after": _object_view(plan["desired"], secret, live_subset)}


def restore(locations, encryption=None, backup_id="latest", files=None, kubernetes_params=None, kube_api=None,
            rewrite=None, secret_rewrite=None, source_site=None, key_prefix=DEFAULT_KEY_PREFIX, check_mode=False,
            diff=False):
    """Restore a config bundle; see the module docstring.

    files: None restores every file of the bundle where it was; a list of {path, dest, owner,
    group, mode, secret, format} restores those (path may name a directory of the bundle).
    kubernetes_params: None leaves the bundle's Kubernetes objects alone (with a warning);
    otherwise {namespaces, kinds, namespace_map, field_manager, connection...}.
    Nothing is written unless a copy verified and every item could be planned.
    """
    targets = build_locations(locations, key_prefix)
    rules = build_rules(rewrite, secret_rewrite)
    attempts = collections.OrderedDict()
    candidates = _candidates(targets, backup_id, source_site, attempts)
    chosen_id, manifest = candidates[0]
    location, bundle = _verified_bundle(chosen_id, manifest, targets, encryption, attempts)
    warnings = []
    skipped_locations = dict((name, reason) for name, reason in attempts.items())
    if skipped_locations:
        warnings.append("config bundle %s was restored from %s; not from %s" % (
            chosen_id, location.name, "; ".join("%s: %s" % item for item in skipped_locations.items())))
    if not manifest["encryption"].get("key"):
        warnings.append("config bundle %s was stored UNENCRYPTED (encryption.key_source: none)" % chosen_id)
    items = bundle.get("items") or []
    bundle_files = [item for item in items if item.get("type") == "file"]
    bundle_objects = [item for item in items if item.get("type") == "kubernetes"]
    plans = [_plan_file(item, spec, dest, rules, warnings)
             for item, spec, dest in _file_specs_for(bundle_files, files, chosen_id)]
    api = None
    if kubernetes_params is not None:
        api = kube_api or kubernetes_api_from_params(kubernetes_params)
        plans.extend(_plan_objects(bundle_objects, kubernetes_params, api, rules))
    elif bundle_objects:
        warnings.append("config bundle %s holds %d Kubernetes object%s; none applied (no kubernetes option)" % (
            chosen_id, len(bundle_objects), "" if len(bundle_objects) == 1 else "s"))
    if not plans:
        raise DRError("config bundle %s: nothing selected to restore (it holds %s)" % (
            chosen_id, count_text(manifest.get("counts") or item_counts(items))))
    rule_counts = _rule_counts(rules, plans)
    for rule, count in zip(rules, rule_counts):
        if not count and rule.kind == "match":
            warnings.append("%s changed nothing in config bundle %s (is it from the site the rules expect?)" % (
                rule.describe(), chosen_id))
    if not check_mode:
        field_manager = (kubernetes_params or {}).get("field_manager") or DEFAULT_FIELD_MANAGER
        for plan in plans:
            if plan["type"] == "file":
                _write_file(plan)
            elif plan["action"] != "unchanged":
                api.apply(plan["desired"], field_manager=field_manager)
    return _restore_result(chosen_id, manifest, location, plans, skipped_locations, rules, rule_counts, warnings,
                           check_mode, diff)


def _rule_counts(rules, plans):
    counts = []
    for rule in rules:
        counts.append(sum(plan["rewritten"].get(rule.label, 0) for plan in plans))
    return counts


def _restore_result(backup_id, manifest, location, plans, skipped_locations, rules, rule_counts, warnings,
                    check_mode, diff):
    changed = any(plan["action"] != "unchanged" for plan in plans)
    files_out, objects_out = [], []
    for plan in plans:
        if plan["type"] == "file":
            files_out.append({"path": plan["path"], "dest": plan["dest"], "action": plan["action"],
                              "changes": plan["changes"], "mode": plan["mode"], "owner": plan["owner"],
                              "group": plan["group"], "size": plan["size"], "rewritten": plan["rewritten"]})
        else:
            objects_out.append({"kind": plan["kind"], "namespace": plan["namespace"], "name": plan["name"],
                                "source_namespace": plan["source_namespace"], "action": plan["action"],
                                "changes": plan["changes"], "rewritten": plan["rewritten"]})
    by_action = collections.Counter(plan["action"] for plan in plans)
    verb = "would restore" if check_mode else "restored"
    msg = "config bundle %s (%s, site %s) %s from %s: %s" % (
        backup_id, manifest.get("created_at"), manifest.get("site") or "?", verb, location.name,
        ", ".join("%d %s" % (by_action[action], action) for action in ("create", "update", "unchanged")
                  if by_action[action]))
    result = {
        "changed": changed, "msg": msg, "backup_id": backup_id, "created_at": manifest.get("created_at"),
        "source_site": manifest.get("site"), "location": location.name, "skipped_locations": skipped_locations,
        "files": files_out, "objects": objects_out,
        "rewrite": [{"rule": rule.describe(), "changes": count} for rule, count in zip(rules, rule_counts)],
        "warnings": warnings,
        "dr_report": {
            "checks": [{"name": "config bundle %s verified at %s" % (backup_id, location.name), "result": "ok",
                        "detail": "sha256 %s and every GCM tag" % manifest["artifact"]["sha256"][:16]
                        if manifest["encryption"].get("key") else "sha256 (unencrypted bundle)"}],
            "phase_detail": msg,
        },
    }
    if check_mode:
        result["check_mode"] = True
    if diff:
        result["diff"] = [_diff_entry(plan) for plan in plans if plan["action"] != "unchanged"]
    return result
