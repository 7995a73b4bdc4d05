# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Configuration backups: Kubernetes ConfigMaps/Secrets and configuration files, encrypted.

The plan keeps configuration "in Git + Kubernetes ConfigMaps/Secrets (encrypted)". Git keeps
itself; this engine keeps the rest: what a site's application reads at start (ConfigMaps,
Secrets, configuration files with their owner and mode), as one encrypted bundle per backup
in every backup location, and puts it back on the other site before its application starts,
rewritten where values are site-specific (database port, object-store endpoint, listen
address, passwords).

Layout, the same in every location, under the key prefix ``config/``::

    config_YYYYMMDD_HHMMSS.json.enc        the bundle: JSON, AES-256-GCM envelope (crypto.py)
    config_YYYYMMDD_HHMMSS.json            the same, unencrypted (encryption.key_source: none)
    config_YYYYMMDD_HHMMSS.manifest.json   the manifest, written LAST, only next to a copy that
                                           was read back and matched its sha256

Bundle (the plaintext; format ``auditron.dr/config-bundle`` version 1)::

    {"format", "format_version", "id", "created_at", "site", "host",
     "items": [
       {"type": "file", "path", "mode": "0600", "uid", "gid", "owner", "group", "size",
        "sha256", "secret": true, "content": <base64>},
       {"type": "kubernetes", "kind": "ConfigMap" | "Secret", "namespace", "name",
        "object": {apiVersion, kind, metadata: {name, namespace, labels, annotations},
                   data, binaryData, type, immutable}}]}

Manifest (``auditron.dr/config-backup`` version 1): id, times, site, the sources that were
read, counts, an index of the items (names, sizes, checksums: no content), the key reference
(never a secret) and the encryption context, and the artifact's key, size and sha256, with
per location what was read back (present, size, sha256).

Backup, in one pass: bundle JSON -> AES-256-GCM -> sha256 -> fan-out to every location; then
each copy is read back and hashed, and the manifest goes only where the copy matched (the
backup-set protocol, backupset.py). This file also lists bundles; the restore is
configrestore.py, its rewrite rules rewrite.py, the Kubernetes API client kubeapi.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import collections
import concurrent.futures
import errno
import fnmatch
import grp
import hashlib
import json
import os
import pwd
import re
import socket
import stat

from ansible_collections.auditron.dr.plugins.module_utils import backupset
from ansible_collections.auditron.dr.plugins.module_utils.common import (
    DRError, first_line, format_time, human_bytes, utc_now)
from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import provider_from_params
from ansible_collections.auditron.dr.plugins.module_utils.kubeapi import KUBERNETES_KINDS, kubernetes_api_from_params

BUNDLE_FORMAT = "auditron.dr/config-bundle"
MANIFEST_FORMAT = "auditron.dr/config-backup"
FORMAT_VERSION = 1
KIND = "config"
DEFAULT_KEY_PREFIX = "config/"
CONTEXT_PURPOSE = "auditron.dr config backup"
ID_PREFIX = "config_"
BUNDLE_SUFFIX_ENCRYPTED = ".json.enc"
BUNDLE_SUFFIX_PLAIN = ".json"
MANIFEST_SUFFIX = backupset.MANIFEST_SUFFIX
ID_RE = re.compile(r"^config_(\d{8}_\d{6})$")
_KEY_RE = re.compile(r"^(?P<id>config_\d{8}_\d{6})(?P<suffix>\.manifest\.json|\.json\.enc|\.json)$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

# Configuration, not data: a bigger file belongs in the file-storage mirror.
MAX_FILE_BYTES = 16 << 20
WRITE_SLICE = 1 << 16
LIST_WORKERS = 8
TEMP_PREFIX = ".auditron-tmp-"
# Location tuning: bundles are small, so a silent endpoint should cost seconds, not minutes.
LOCATION_TUNING = dict(max_attempts=3, connect_timeout=3, read_timeout=20)

KUBERNETES_KINDS = ("ConfigMap", "Secret")
# Published by the cluster itself in every namespace: the DR cluster has its own.
CLUSTER_GENERATED_CONFIGMAPS = ("kube-root-ca.crt",)
SKIPPED_SECRET_TYPES = ("kubernetes.io/service-account-token",)
# kubectl's copy of the whole object (a Secret's data included): it would make the next
# `kubectl apply` on the DR cluster diff against the primary's history.
DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


# ---------------------------------------------------------------------------------------------
# Names and keys

def new_backup_id(moment=None):
    """`config_YYYYMMDD_HHMMSS` in UTC."""
    return ID_PREFIX + backupset.id_stamp(moment)


def backup_time(backup_id):
    match = ID_RE.match(str(backup_id or ""))
    return backupset.stamp_time(match.group(1)) if match else None


def check_backup_id(backup_id):
    return backupset.check_id(backup_id, backup_time(backup_id), "backup_id %r is not a configuration bundle id "
                              "(expected config_YYYYMMDD_HHMMSS, for example config_20261124_020000, or latest)")


def bundle_key(backup_id, encrypted=True):
    return backupset.artifact_key(backup_id, encrypted, BUNDLE_SUFFIX_ENCRYPTED, BUNDLE_SUFFIX_PLAIN)


manifest_key = backupset.manifest_key


def parse_key(key):
    """(backup id, 'manifest' | 'bundle') for a key under the prefix, else (None, None)."""
    match = _KEY_RE.match(key or "")
    if not match:
        return None, None
    return match.group("id"), "manifest" if match.group("suffix") == MANIFEST_SUFFIX else "bundle"


def bundle_label(backup_id, location):
    return "config bundle %s at location %s" % (backup_id, location.name)


# ---------------------------------------------------------------------------------------------
# Locations under the config/ prefix

def build_locations(items, key_prefix=DEFAULT_KEY_PREFIX):
    """The locations under `key_prefix`, from `locations` params (dicts) or Location objects."""
    return backupset.target_locations(items, key_prefix, **LOCATION_TUNING)


# ---------------------------------------------------------------------------------------------
# Encryption

def _encryption_context(backup_id):
    return {"backup_id": backup_id, "purpose": CONTEXT_PURPOSE}


# ---------------------------------------------------------------------------------------------
# Owners and modes

def _user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def mode_text(mode):
    return "%04o" % mode


# ---------------------------------------------------------------------------------------------
# Sources: files

def _file_item(path, info, secret):
    if info.st_size > MAX_FILE_BYTES:
        raise DRError("files: %s is %s; configuration files above %s belong in the file-storage mirror" % (
            path, human_bytes(info.st_size), human_bytes(MAX_FILE_BYTES)))
    try:
        with open(path, "rb") as handle:
            content = handle.read(MAX_FILE_BYTES + 1)
    except (IOError, OSError) as exc:
        raise DRError("files: cannot read %s: %s" % (path, exc.strerror or first_line(exc)))
    return {
        "type": "file",
        "path": path,
        "mode": mode_text(stat.S_IMODE(info.st_mode)),
        "uid": info.st_uid,
        "gid": info.st_gid,
        "owner": _user_name(info.st_uid),
        "group": _group_name(info.st_gid),
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
        "secret": bool(secret),
        "content": base64.b64encode(content).decode("ascii"),
    }


def collect_files(specs, warnings):
    """Bundle items for the `files` option: each path a file, or a directory (every regular
    file under it). A missing path fails the backup unless the item says optional."""
    items = []
    seen = set()
    for index, spec in enumerate(specs or []):
        spec = spec or {}
        path = spec.get("path")
        label = "files[%d]" % index
        if not path or not os.path.isabs(path):
            raise DRError("%s: path must be an absolute path, got %r" % (label, path))
        path = os.path.normpath(path)
        secret = spec.get("secret") is not False
        try:
            info = os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ENOENT and spec.get("optional"):
                warnings.append("%s: %s does not exist; skipped (optional)" % (label, path))
                continue
            if exc.errno == errno.ENOENT:
                raise DRError("%s: %s does not exist (set optional: true if it may be absent)" % (label, path))
            raise DRError("%s: cannot examine %s: %s" % (label, path, exc.strerror or first_line(exc)))
        if stat.S_ISDIR(info.st_mode):
            found = []
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    if name.startswith(TEMP_PREFIX):
                        continue
                    full = os.path.join(root, name)
                    try:
                        file_info = os.stat(full)
                    except OSError:
                        continue
                    if stat.S_ISREG(file_info.st_mode):
                        found.append((full, file_info))
            if not found:
                warnings.append("%s: directory %s holds no regular file" % (label, path))
        elif stat.S_ISREG(info.st_mode):
            found = [(path, info)]
        else:
            raise DRError("%s: %s is neither a regular file nor a directory" % (label, path))
        for full, file_info in found:
            if full in seen:
                continue
            seen.add(full)
            items.append(_file_item(full, file_info, secret))
    return items


# ---------------------------------------------------------------------------------------------
# Sources: Kubernetes objects

def clean_object(kind, raw):
    """What is kept of a live object: the fields a DR cluster needs, nothing the server set.

    Kept: apiVersion v1, kind, metadata name/namespace/labels/annotations (without kubectl's
    last-applied copy), data, binaryData, type, immutable. Dropped with everything else: uid,
    resourceVersion, managedFields, creationTimestamp, generation, selfLink, ownerReferences.
    """
    metadata = raw.get("metadata") or {}
    cleaned_meta = {"name": metadata.get("name"), "namespace": metadata.get("namespace")}
    if metadata.get("labels"):
        cleaned_meta["labels"] = dict(metadata["labels"])
    annotations = dict((k, v) for k, v in (metadata.get("annotations") or {}).items() if k not in DROPPED_ANNOTATIONS)
    if annotations:
        cleaned_meta["annotations"] = annotations
    cleaned = {"apiVersion": "v1", "kind": kind, "metadata": cleaned_meta}
    for field in ("data", "binaryData"):
        if raw.get(field):
            cleaned[field] = dict(raw[field])
    if kind == "Secret":
        cleaned["type"] = raw.get("type") or "Opaque"
    if raw.get("immutable") is not None:
        cleaned["immutable"] = bool(raw["immutable"])
    return cleaned


def _skip_reason(kind, raw, include_owned, exclude):
    metadata = raw.get("metadata") or {}
    name = metadata.get("name") or ""
    if kind == "ConfigMap" and name in CLUSTER_GENERATED_CONFIGMAPS:
        return "published by the cluster in every namespace"
    if kind == "Secret" and raw.get("type") in SKIPPED_SECRET_TYPES:
        return "service-account token: the DR cluster issues its own"
    owners = metadata.get("ownerReferences") or []
    if owners and not include_owned:
        return "owned by %s: its controller makes it again" % ", ".join(
            "%s/%s" % (owner.get("kind"), owner.get("name")) for owner in owners)
    for pattern in exclude or ():
        if fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase("%s/%s" % (kind, name), pattern):
            return "excluded by %s" % pattern
    return None


def collect_kubernetes(api, params, warnings):
    """Bundle items for the `kubernetes` option; returns (items, skipped)."""
    params = params or {}
    namespaces = list(params.get("namespaces") or [])
    if not namespaces:
        raise DRError("kubernetes.namespaces: name at least one namespace to back up")
    kinds = selected_kinds(params)
    items, skipped = [], []
    for namespace in namespaces:
        for kind in kinds:
            for raw in api.list(kind, namespace, params.get("label_selector")):
                name = (raw.get("metadata") or {}).get("name")
                reason = _skip_reason(kind, raw, params.get("include_owned"), params.get("exclude"))
                if reason:
                    skipped.append({"kind": kind, "namespace": namespace, "name": name, "reason": reason})
                    continue
                items.append({"type": "kubernetes", "kind": kind, "namespace": namespace, "name": name,
                              "object": clean_object(kind, raw)})
    if not items:
        warnings.append("kubernetes: no %s found in %s%s" % (
            " or ".join(kinds), ", ".join(namespaces),
            (" with labels %s" % params["label_selector"]) if params.get("label_selector") else ""))
    return items, skipped


def selected_kinds(params):
    kinds = list(params.get("kinds") or KUBERNETES_KINDS)
    for kind in kinds:
        if kind not in KUBERNETES_KINDS:
            raise DRError("kubernetes.kinds: %r is not one of %s" % (kind, ", ".join(KUBERNETES_KINDS)))
    return kinds


# ---------------------------------------------------------------------------------------------
# Manifests

manifest_bytes = backupset.manifest_bytes


def manifest_problems(manifest, backup_id=None):
    """What makes a manifest incomplete or unusable, as short phrases (empty when complete)."""
    problems = backupset.header_problems(manifest, backup_id, MANIFEST_FORMAT, FORMAT_VERSION)
    if not isinstance(manifest, dict):
        return problems
    artifact = manifest.get("artifact")
    if not isinstance(artifact, dict):
        problems.append("no artifact")
    else:
        if parse_key(artifact.get("key"))[1] != "bundle":
            problems.append("artifact has no valid key")
        if not isinstance(artifact.get("size"), int) or artifact["size"] < 0:
            problems.append("artifact has no size")
        if not _SHA256_RE.match(str(artifact.get("sha256") or "")):
            problems.append("artifact has no sha256")
    if not isinstance(manifest.get("encryption"), dict):
        problems.append("no encryption section")
    return problems


def read_manifest(location, backup_id):
    """The manifest of `backup_id` at `location`; DRError when absent, unreadable or incomplete."""
    data = backupset.read_all(location, manifest_key(backup_id))
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DRError("%s: the manifest is not valid JSON (%s)" % (bundle_label(backup_id, location), first_line(exc)))
    problems = manifest_problems(manifest, backup_id)
    if problems:
        raise DRError("%s: the manifest is incomplete: %s" % (bundle_label(backup_id, location), "; ".join(problems)))
    return manifest


def _manifest_index(items):
    index = []
    for item in items:
        if item["type"] == "file":
            index.append({"type": "file", "path": item["path"], "size": item["size"], "sha256": item["sha256"],
                          "mode": item["mode"], "owner": item["owner"], "group": item["group"],
                          "secret": item["secret"]})
        else:
            index.append({"type": "kubernetes", "kind": item["kind"], "namespace": item["namespace"],
                          "name": item["name"], "keys": sorted(set(item["object"].get("data") or {}) |
                                                               set(item["object"].get("binaryData") or {}))})
    return index


def item_counts(items):
    counts = collections.OrderedDict([("files", 0), ("ConfigMap", 0), ("Secret", 0)])
    for item in items:
        counts["files" if item["type"] == "file" else item["kind"]] += 1
    counts["total"] = len(items)
    return counts


# ---------------------------------------------------------------------------------------------
# Backup

def _fresh_backup_id(targets):
    return backupset.fresh_backup_id(
        targets, new_backup_id,
        lambda backup_id: (manifest_key(backup_id), bundle_key(backup_id, True), bundle_key(backup_id, False)),
        "config backup")


def _source_description(files, kubernetes_params, api):
    source = {}
    if files:
        source["files"] = [spec.get("path") for spec in files]
    if kubernetes_params is not None:
        source["kubernetes"] = {
            "api": api.label if api is not None else None,
            "namespaces": list(kubernetes_params.get("namespaces") or []),
            "kinds": selected_kinds(kubernetes_params),
            "label_selector": kubernetes_params.get("label_selector"),
        }
    return source


def backup(locations, encryption=None, files=None, kubernetes_params=None, kube_api=None, site=None,
           key_prefix=DEFAULT_KEY_PREFIX, require_all_locations=False, verify_after_write=True, check_mode=False):
    """Back up the configuration files and Kubernetes objects to every location; see the module
    docstring. encryption: the `encryption` option (required: key_source none must be said).
    kube_api: a KubernetesApi (else one is built from kubernetes_params). Returns the result."""
    started = utc_now().replace(microsecond=0)
    if encryption is None:
        raise DRError("encryption is required: give encryption.key_source (file, kms or vault), or key_source: none "
                      "to store configuration unencrypted")
    if not files and kubernetes_params is None:
        raise DRError("config backup: nothing to back up: give files, kubernetes, or both")
    targets = build_locations(locations, key_prefix)
    encrypted = (encryption.get("key_source") or "file") != "none"
    warnings = []
    if not encrypted:
        warnings.append("UNENCRYPTED: configuration bundles (Secrets and secret files included) are stored in plain "
                        "text in %s (encryption.key_source: none); the plan requires encryption at rest" %
                        ", ".join(t.name for t in targets))
    provider = provider_from_params(encryption) if encrypted and not check_mode else None
    items = collect_files(files, warnings)
    skipped = []
    api = None
    if kubernetes_params is not None:
        api = kube_api or kubernetes_api_from_params(kubernetes_params)
        kube_items, skipped = collect_kubernetes(api, kubernetes_params, warnings)
        items.extend(kube_items)
    if not items:
        raise DRError("config backup: no file and no Kubernetes object selected: nothing to back up")
    counts = item_counts(items)
    source = _source_description(files, kubernetes_params, api)
    if check_mode:
        example_id = new_backup_id()
        msg = "would back up %s to %s as %s (%s)" % (
            count_text(counts), ", ".join(t.name for t in targets), bundle_key(example_id, encrypted),
            backupset.describe_encryption(encryption))
        return {
            "changed": True, "check_mode": True, "backup_id": example_id, "msg": msg,
            "items": _manifest_index(items), "left_out": skipped, "counts": dict(counts),
            "locations": [{"location": t.name, "would_write": [bundle_key(example_id, encrypted),
                                                               manifest_key(example_id)]} for t in targets],
            "encrypted": encrypted, "warnings": warnings,
        }
    backup_id = _fresh_backup_id(targets)
    bundle = {
        "format": BUNDLE_FORMAT, "format_version": FORMAT_VERSION, "id": backup_id,
        "created_at": format_time(started), "site": site or "", "host": socket.gethostname(), "items": items,
    }
    plaintext = json.dumps(bundle, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    key = bundle_key(backup_id, encrypted)
    streamed = _stream(targets, key, plaintext, provider, backup_id)
    # Read back by default: a bundle is small, reading it again costs little, and a restore on
    # the other site has nothing else to fall back on (no weekly test reads config bundles).
    copies = backupset.stored_copies(targets, key, streamed["size"], streamed["sha256"], streamed["done"],
                                     streamed["failed"], read_back=verify_after_write)
    manifest = {
        "format": MANIFEST_FORMAT, "format_version": FORMAT_VERSION, "kind": KIND, "id": backup_id,
        "created_at": format_time(started), "finished_at": format_time(utc_now().replace(microsecond=0)),
        "site": site or "", "host": bundle["host"], "source": source, "counts": counts, "items": _manifest_index(items),
        "skipped": skipped,
        "encryption": backupset.encryption_record(streamed["key_reference"], streamed["context"]),
        "artifact": {"key": key, "size": streamed["size"], "sha256": streamed["sha256"],
                     "plaintext_bytes": len(plaintext), "locations": copies},
    }
    written, failed = _commit(targets, manifest, copies, require_all_locations)
    return _backup_result(manifest, written, failed, skipped, warnings)


def count_text(counts):
    parts = []
    if counts["files"]:
        parts.append("%d file%s" % (counts["files"], "" if counts["files"] == 1 else "s"))
    for kind in KUBERNETES_KINDS:
        if counts[kind]:
            parts.append("%d %s%s" % (counts[kind], kind, "" if counts[kind] == 1 else "s"))
    return ", ".join(parts) or "nothing"


def _stream(targets, key, plaintext, provider, backup_id):
    """bundle -> encrypt -> sha256 -> fan-out, in slices (never a second copy of the ciphertext)."""
    artifact = backupset.StoredArtifact(targets, key, provider, _encryption_context(backup_id),
                                        metadata={"auditron-dr": "config-bundle"})
    try:
        view = memoryview(plaintext)
        for start in range(0, len(plaintext), WRITE_SLICE):
            artifact.write(view[start:start + WRITE_SLICE])
        done, failed = artifact.close()
    except BaseException:
        artifact.abort()
        raise
    return {"key": key, "size": artifact.stored_bytes, "sha256": artifact.sha256, "done": done, "failed": failed,
            "key_reference": artifact.key_reference, "context": artifact.context}


def _commit(targets, manifest, copies, require_all_locations):
    """The manifest, last, in every location whose copy was read back intact. A manifest that
    could not be written does not fail the backup even with require_all_locations (it never
    did): the bundle stays restorable from the locations that have one."""
    data = manifest_bytes(manifest)
    return backupset.commit(
        targets, manifest["id"], manifest["artifact"]["key"], copies,
        lambda location: location.put_bytes(manifest_key(manifest["id"]), data,
                                            metadata={"auditron-dr": "config-manifest"}),
        require_all_locations, what="config backup", manifests_required=False)


def _backup_result(manifest, written, failed, skipped, warnings):
    artifact = manifest["artifact"]
    encrypted = manifest["encryption"]["key"] is not None
    if failed:
        warnings = warnings + ["config bundle %s was not stored in %s: %s" % (
            manifest["id"], ", ".join(failed), "; ".join("%s: %s" % item for item in failed.items()))]
    msg = "config bundle %s: %s stored %s (%s) in %s" % (
        manifest["id"], count_text(manifest["counts"]), "encrypted" if encrypted else "UNENCRYPTED",
        human_bytes(artifact["size"]), ", ".join(written))
    checks = [{"name": "config bundle %s in %s" % (manifest["id"], name), "result": "ok",
               "detail": "%s, sha256 %s read back" % (human_bytes(artifact["size"]), artifact["sha256"][:16])}
              for name in written]
    checks += [{"name": "config bundle %s in %s" % (manifest["id"], name), "result": "failed", "detail": error}
               for name, error in failed.items()]
    return {
        "changed": True, "msg": msg, "backup_id": manifest["id"], "locations": written,
        "failed_locations": dict(failed), "artifact_key": artifact["key"], "manifest_key": manifest_key(manifest["id"]),
        "size": artifact["size"], "sha256": artifact["sha256"], "counts": dict(manifest["counts"]),
        "items": manifest["items"], "left_out": skipped, "encrypted": encrypted,
        "key_reference": manifest["encryption"]["key"], "created_at": manifest["created_at"], "warnings": warnings,
        "dr_report": {"checks": checks, "phase_detail": msg},
    }


# ---------------------------------------------------------------------------------------------
# Listing

def _list_one(location):
    found = collections.OrderedDict()
    for info in location.list(""):
        backup_id, what = parse_key(info.key)
        if backup_id is None:
            continue
        entry = found.setdefault(backup_id, {})
        entry[what] = info
    return found


def list_locations(targets):
    """{location name: {"ids": {id: {"manifest"?: ObjectInfo, "bundle"?: ObjectInfo}}} or {"error"}},
    listed in parallel."""
    listings = collections.OrderedDict((t.name, None) for t in targets)
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(LIST_WORKERS, len(targets))) as pool:
        futures = dict((pool.submit(_list_one, t), t) for t in targets)
        for future in concurrent.futures.as_completed(futures):
            location = futures[future]
            try:
                listings[location.name] = {"ids": future.result()}
            except DRError as exc:
                listings[location.name] = {"error": exc.message}
            except Exception as exc:  # pylint: disable=broad-except
                listings[location.name] = {"error": "location %s: %s" % (location.name, first_line(exc))}
    return listings


def list_bundles(locations, key_prefix=DEFAULT_KEY_PREFIX, checksums=True, source_site=None):
    """Every config bundle in every location, newest first, with per location presence, size and
    (with checksums) the sha256 of the stored bytes compared with the manifest's."""
    targets = build_locations(locations, key_prefix)
    listings = list_locations(targets)
    unreachable = dict((name, listing["error"]) for name, listing in listings.items() if "error" in listing)
    ids = set()
    for listing in listings.values():
        ids.update(listing.get("ids", {}).keys())
    jobs = []
    bundles = []
    for backup_id in sorted(ids, reverse=True):
        manifest, manifest_errors = None, []
        for location in targets:
            if "manifest" not in listings[location.name].get("ids", {}).get(backup_id, {}):
                continue
            try:
                manifest = read_manifest(location, backup_id)
                break
            except DRError as exc:
                manifest_errors.append(exc.message)
        if source_site and (manifest is None or manifest.get("site") != source_site):
            continue
        entry = {"id": backup_id, "complete": manifest is not None,
                 "created_at": manifest.get("created_at") if manifest else format_time(backup_time(backup_id)),
                 "site": manifest.get("site") if manifest else None,
                 "counts": manifest.get("counts") if manifest else None,
                 "encrypted": bool(manifest and manifest["encryption"].get("key")),
                 "size": manifest["artifact"]["size"] if manifest else None,
                 "sha256": manifest["artifact"]["sha256"] if manifest else None,
                 "locations": collections.OrderedDict()}
        if manifest is None:
            entry["problem"] = "; ".join(manifest_errors) or \
                "no manifest in any location (a backup that did not finish)"
        for location in targets:
            listing = listings[location.name]
            if "error" in listing:
                entry["locations"][location.name] = {"present": None, "detail": listing["error"]}
                continue
            objects = listing["ids"].get(backup_id, {})
            info = objects.get("bundle")
            row = {"present": info is not None, "manifest": "manifest" in objects,
                   "size": info.size if info is not None else None}
            entry["locations"][location.name] = row
            if info is not None and checksums:
                jobs.append((entry, location, info.key, row))
        bundles.append(entry)
    _hash_copies(jobs)
    for entry in bundles:
        _judge_bundle(entry)
    complete = [entry["id"] for entry in bundles if entry["complete"]]
    msg = "%d config bundle%s in %s%s" % (
        len(bundles), "" if len(bundles) == 1 else "s", ", ".join(t.name for t in targets),
        ("; unreachable: %s" % "; ".join(unreachable.values())) if unreachable else "")
    return {"changed": False, "msg": msg, "bundles": bundles, "latest": complete[0] if complete else None,
            "unreachable_locations": unreachable}


def _hash_copies(jobs):
    def digest(job):
        _entry, location, key, row = job
        try:
            row["sha256"] = hashlib.sha256(backupset.read_all(location, key)).hexdigest()
        except DRError as exc:
            row["detail"] = exc.message
    if jobs:
        with concurrent.futures.ThreadPoolExecutor(max_workers=LIST_WORKERS) as pool:
            list(pool.map(digest, jobs))


def _judge_bundle(entry):
    for row in entry["locations"].values():
        if not row.get("present"):
            continue
        if not entry["complete"]:
            row["status"] = "incomplete"
        elif row.get("size") != entry["size"]:
            row["status"] = "different"
            row["detail"] = "%s bytes, the manifest says %s" % (row.get("size"), entry["size"])
        elif "sha256" in row and row["sha256"] != entry["sha256"]:
            row["status"] = "different"
            row["detail"] = "sha256 %s, the manifest says %s" % (row["sha256"][:16], entry["sha256"][:16])
        else:
            row["status"] = "ok"
    entry["present_in"] = [name for name, row in entry["locations"].items() if row.get("status") == "ok"]
