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
each copy is read back and hashed (bundles are small), and the manifest goes only where the
copy matched. Restore: the newest complete manifest (or a given id); the first location, in
the order given, whose copy has the manifest's size and sha256 and whose every GCM tag
verifies; all of it before anything is written. Then every item is planned (rewrite rules
applied, compared with what is there: content, mode, owner; for Kubernetes objects, the
fields this engine sends) and only then written: files atomically (temporary file, fsync,
owner and mode set, rename), Kubernetes objects by server-side apply. Restoring the same
bundle twice changes nothing the second time.

Kubernetes is read and written through the `kubernetes` Python client's CoreV1Api (not
kubernetes.core's module_utils: those need an AnsibleModule, and this engine runs from
tests without one). KubernetesApi is the whole surface this engine uses, so tests can
hand it a stand-in CoreV1Api that records calls.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import collections
import concurrent.futures
import copy
import errno
import fnmatch
import grp
import hashlib
import io
import json
import os
import pwd
import re
import socket
import stat
import time
import uuid

from ansible_collections.auditron.dr.plugins.module_utils.common import (
    UTC, DRError, first_line, format_time, human_bytes, importable, parse_time, utc_now)
from ansible_collections.auditron.dr.plugins.module_utils.crypto import DecryptingReader, EncryptingWriter
from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import describe_reference, provider_from_params
from ansible_collections.auditron.dr.plugins.module_utils.storage import (
    FanOutWriter, Location, locations_from_params, missing_directories)

# The kubernetes client is imported when a Kubernetes API is used, not here: loading it costs
# about 0.4 s of CPU, and most runs back up and restore files or compose projects.
HAS_KUBERNETES = importable("kubernetes")
KUBERNETES_IMPORT_ERROR = None if HAS_KUBERNETES else "No module named 'kubernetes'"


def _api_exception_class():
    """kubernetes' ApiException, or a class nothing raises when the client is not installed
    (the unit tests' stand-in API raises DRError or plain exceptions)."""
    if HAS_KUBERNETES:
        from kubernetes.client.exceptions import ApiException  # pylint: disable=import-outside-toplevel
        return ApiException
    return _NoApiException


class _NoApiException(Exception):
    status = None
    body = None


BUNDLE_FORMAT = "auditron.dr/config-bundle"
MANIFEST_FORMAT = "auditron.dr/config-backup"
FORMAT_VERSION = 1
KIND = "config"
DEFAULT_KEY_PREFIX = "config/"
CONTEXT_PURPOSE = "auditron.dr config backup"
ID_PREFIX = "config_"
BUNDLE_SUFFIX_ENCRYPTED = ".json.enc"
BUNDLE_SUFFIX_PLAIN = ".json"
MANIFEST_SUFFIX = ".manifest.json"
ID_RE = re.compile(r"^config_(\d{8})_(\d{6})$")
_KEY_RE = re.compile(r"^(?P<id>config_\d{8}_\d{6})(?P<suffix>\.manifest\.json|\.json\.enc|\.json)$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

# Configuration, not data: a bigger file belongs in the file-storage mirror.
MAX_FILE_BYTES = 16 << 20
WRITE_SLICE = 1 << 16
LIST_WORKERS = 8
MASK = "********"
TEMP_PREFIX = ".auditron-tmp-"
# Location tuning: bundles are small, so a silent endpoint should cost seconds, not minutes.
LOCATION_TUNING = dict(max_attempts=3, connect_timeout=3, read_timeout=20)

KUBERNETES_KINDS = ("ConfigMap", "Secret")
_KIND_CALLS = {
    "ConfigMap": {"list": "list_namespaced_config_map", "read": "read_namespaced_config_map",
                  "patch": "patch_namespaced_config_map", "plural": "ConfigMaps"},
    "Secret": {"list": "list_namespaced_secret", "read": "read_namespaced_secret",
               "patch": "patch_namespaced_secret", "plural": "Secrets"},
}
# Published by the cluster itself in every namespace: the DR cluster has its own.
CLUSTER_GENERATED_CONFIGMAPS = ("kube-root-ca.crt",)
SKIPPED_SECRET_TYPES = ("kubernetes.io/service-account-token",)
# kubectl's copy of the whole object (a Secret's data included): it would make the next
# `kubectl apply` on the DR cluster diff against the primary's history.
DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
DEFAULT_FIELD_MANAGER = "auditron-dr"
LIST_PAGE = 250


# ---------------------------------------------------------------------------------------------
# Names and keys

def new_backup_id(moment=None):
    """`config_YYYYMMDD_HHMMSS` in UTC."""
    moment = (moment or utc_now()).astimezone(UTC)
    return ID_PREFIX + moment.strftime("%Y%m%d_%H%M%S")


def backup_time(backup_id):
    match = ID_RE.match(str(backup_id or ""))
    if not match:
        return None
    day, clock = match.groups()
    try:
        return parse_time("%s-%s-%sT%s:%s:%sZ" % (day[0:4], day[4:6], day[6:8], clock[0:2], clock[2:4], clock[4:6]))
    except DRError:
        return None


def check_backup_id(backup_id):
    if backup_time(backup_id) is None:
        raise DRError("backup_id %r is not a configuration bundle id (expected config_YYYYMMDD_HHMMSS, for example "
                      "config_20261124_020000, or latest)" % (backup_id,))
    return backup_id


def bundle_key(backup_id, encrypted=True):
    return backup_id + (BUNDLE_SUFFIX_ENCRYPTED if encrypted else BUNDLE_SUFFIX_PLAIN)


def manifest_key(backup_id):
    return backup_id + MANIFEST_SUFFIX


def parse_key(key):
    """(backup id, 'manifest' | 'bundle') for a key under the prefix, else (None, None)."""
    match = _KEY_RE.match(key or "")
    if not match:
        return None, None
    return match.group("id"), "manifest" if match.group("suffix") == MANIFEST_SUFFIX else "bundle"


def _what(backup_id, location):
    return "config bundle %s at location %s" % (backup_id, location.name)


# ---------------------------------------------------------------------------------------------
# Locations under the config/ prefix

class PrefixedLocation(Location):
    """A location seen through a key prefix (``config/``): keys are relative to the prefix.

    The same `locations` list then serves every kind of backup, each under its own prefix of
    the bucket or directory, as docs/development.md lays the buckets out.
    """

    def __init__(self, inner, prefix):
        super(PrefixedLocation, self).__init__(inner.name)
        self.inner = inner
        self.kind = inner.kind
        cleaned = (prefix or "").strip("/")
        self.prefix = cleaned + "/" if cleaned else ""

    def describe(self):
        return "%s under %s" % (self.inner.describe(), self.prefix or "/")

    def list(self, prefix=""):
        for info in self.inner.list(self.prefix + (prefix or "")):
            if info.key.startswith(self.prefix):
                yield info._replace(key=info.key[len(self.prefix):])

    def head(self, key):
        info = self.inner.head(self.prefix + key)
        return info._replace(key=key) if info is not None else None

    def open_read(self, key):
        return self.inner.open_read(self.prefix + key)

    def open_write(self, key, metadata=None):
        return self.inner.open_write(self.prefix + key, metadata=metadata)

    def delete(self, keys):
        return [(key[len(self.prefix):], error) for key, error in self.inner.delete([self.prefix + k for k in keys])]


def build_locations(items, key_prefix=DEFAULT_KEY_PREFIX):
    """Location objects under `key_prefix`, from `locations` params (dicts) or Location objects."""
    items = list(items or [])
    if not items:
        raise DRError("no backup location given: set locations")
    if all(isinstance(item, Location) for item in items):
        names = [item.name for item in items]
        if len(set(names)) != len(names):
            raise DRError("locations: a name is used twice (%s)" % ", ".join(names))
        plain = items
    else:
        plain = locations_from_params(items, **LOCATION_TUNING)
    return [PrefixedLocation(location, key_prefix) for location in plain]


def _read_all(location, key):
    reader = location.open_read(key)
    try:
        data = reader.read()
    except DRError:
        raise
    except Exception as exc:  # pylint: disable=broad-except
        raise DRError("location %s: reading %s failed: %s" % (location.name, key, first_line(exc)))
    finally:
        try:
            reader.close()
        except Exception:  # pylint: disable=broad-except
            pass
    return bytes(data)


# ---------------------------------------------------------------------------------------------
# Encryption

def _encryption_context(backup_id):
    return {"backup_id": backup_id, "purpose": CONTEXT_PURPOSE}


def describe_encryption(params):
    """One line without secrets: what the `encryption` option says."""
    params = params or {}
    source = params.get("key_source") or "file"
    if source == "none":
        return "UNENCRYPTED (encryption.key_source: none)"
    if source == "file":
        return "AES-256-GCM, data key wrapped by key file %s" % params.get("key_file")
    if source == "kms":
        return "AES-256-GCM, data key wrapped by KMS key %s" % params.get("kms_key_id")
    return "AES-256-GCM, data key wrapped by Vault transit key %s" % params.get("vault_transit_key")


class _HashingSink(object):
    """Feeds what passes to sha256 and on to the fan-out: the checksum of the stored bytes."""

    def __init__(self, target):
        self.target = target
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def write(self, data):
        data = bytes(data)
        self.sha256.update(data)
        self.bytes += len(data)
        self.target.write(data)
        return len(data)


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


def _mode_text(mode):
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
        "mode": _mode_text(stat.S_IMODE(info.st_mode)),
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
# Sources and targets: Kubernetes

def _status_message(exc):
    """The message of a Kubernetes Status body, else the HTTP reason."""
    body = getattr(exc, "body", None)
    if body:
        try:
            document = json.loads(body)
            if isinstance(document, dict) and document.get("message"):
                return first_line(document["message"])
        except (ValueError, TypeError):
            pass
    return str(getattr(exc, "reason", None) or first_line(exc))


class KubernetesApi(object):
    """The calls this engine makes, on a `kubernetes.client.CoreV1Api` (or anything with the same
    methods, such as the recording stand-in of the unit tests).

    Responses are read raw (`_preload_content=False`) and parsed as JSON, so what is backed up
    is exactly what the API server sent, fields the client's models do not know included.
    """

    def __init__(self, core, label="the Kubernetes API", request_timeout=30):
        self.core = core
        self.label = label
        self.request_timeout = request_timeout
        self.api_exception = _api_exception_class()

    def _call(self, doing, method, *args, **kwargs):
        """The parsed JSON answer; None for 404."""
        try:
            response = getattr(self.core, method)(*args, _preload_content=False,
                                                  _request_timeout=self.request_timeout, **kwargs)
        except self.api_exception as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise DRError("%s: %s: HTTP %s, %s" % (self.label, doing, getattr(exc, "status", "?"),
                                                   _status_message(exc)))
        except DRError:
            raise
        except Exception as exc:  # pylint: disable=broad-except
            raise DRError("%s: %s: the API server does not answer (%s)" % (self.label, doing, first_line(exc)))
        try:
            data = response.data
        finally:
            release = getattr(response, "release_conn", None)
            if release is not None:
                release()
        try:
            return json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
        except (ValueError, UnicodeDecodeError, AttributeError) as exc:
            raise DRError("%s: %s: the answer is not JSON (%s)" % (self.label, doing, first_line(exc)))

    def list(self, kind, namespace, label_selector=None):
        calls = _KIND_CALLS[kind]
        doing = "listing %s in namespace %s" % (calls["plural"], namespace)
        items = []
        token = None
        while True:
            kwargs = {"limit": LIST_PAGE}
            if label_selector:
                kwargs["label_selector"] = label_selector
            if token:
                kwargs["_continue"] = token
            answer = self._call(doing, calls["list"], namespace, **kwargs)
            if answer is None:
                raise DRError("%s: %s: namespace %s not found" % (self.label, doing, namespace))
            items.extend(answer.get("items") or [])
            token = (answer.get("metadata") or {}).get("continue")
            if not token:
                return items

    def read(self, kind, namespace, name):
        return self._call("reading %s %s/%s" % (kind, namespace, name), _KIND_CALLS[kind]["read"], name, namespace)

    def namespace_exists(self, namespace):
        """True, False, or None when the credentials may not read namespaces."""
        try:
            return self._call("reading namespace %s" % namespace, "read_namespace", namespace) is not None
        except DRError as exc:
            if "HTTP 403" in exc.message:
                return None
            raise

    def apply(self, body, field_manager=DEFAULT_FIELD_MANAGER):
        """Server-side apply (PATCH application/apply-patch+yaml, force: take over the fields)."""
        kind, metadata = body["kind"], body["metadata"]
        return self._call("applying %s %s/%s" % (kind, metadata["namespace"], metadata["name"]),
                          _KIND_CALLS[kind]["patch"], metadata["name"], metadata["namespace"], body,
                          field_manager=field_manager, force=True, _content_type=APPLY_CONTENT_TYPE)


def kubernetes_api_from_params(params):
    """A KubernetesApi for the `kubernetes` option: a kubeconfig (and context), or host and
    api_key, or the in-cluster service account when running in a pod."""
    if not HAS_KUBERNETES:
        raise DRError("the kubernetes Python library is required for the kubernetes source and target")
    import kubernetes.client  # pylint: disable=import-outside-toplevel  # see HAS_KUBERNETES
    import kubernetes.config  # pylint: disable=import-outside-toplevel
    params = params or {}
    configuration = kubernetes.client.Configuration()
    host = params.get("host")
    try:
        if host:
            configuration.host = host
            label = "kubernetes API %s" % host
            if params.get("api_key"):
                configuration.api_key = {"authorization": "Bearer %s" % params["api_key"]}
        elif params.get("kubeconfig") or not os.environ.get("KUBERNETES_SERVICE_HOST"):
            kubeconfig = params.get("kubeconfig") or os.path.expanduser(
                os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0])
            kubernetes.config.load_kube_config(config_file=kubeconfig, context=params.get("context"),
                                               client_configuration=configuration, persist_config=False)
            label = "kubernetes context %s" % (params.get("context") or "(current) of %s" % kubeconfig)
        else:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
            label = "kubernetes in-cluster API %s" % configuration.host
    except DRError:
        raise
    except Exception as exc:  # pylint: disable=broad-except
        raise DRError("kubernetes: cannot load the connection settings (%s): %s" % (
            params.get("kubeconfig") or host or "kubeconfig", first_line(exc)))
    if params.get("ca_cert"):
        configuration.ssl_ca_cert = params["ca_cert"]
    if params.get("validate_certs") is False:
        configuration.verify_ssl = False
    core = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))
    return KubernetesApi(core, label=label, request_timeout=params.get("request_timeout") or 30)


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
    kinds = _kinds(params)
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


def _kinds(params):
    kinds = list(params.get("kinds") or KUBERNETES_KINDS)
    for kind in kinds:
        if kind not in KUBERNETES_KINDS:
            raise DRError("kubernetes.kinds: %r is not one of %s" % (kind, ", ".join(KUBERNETES_KINDS)))
    return kinds


# ---------------------------------------------------------------------------------------------
# Rewrite rules

_PATH_TOKEN_RE = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _parse_path(path, label):
    text = str(path or "").strip()
    tokens = []
    position = 0
    while position < len(text):
        if text[position] == ".":
            position += 1
            continue
        match = _PATH_TOKEN_RE.match(text, position)
        if not match:
            raise DRError("%s: path %r is not a key path such as postgres.port or listen[0]" % (label, path))
        tokens.append(int(match.group(2)) if match.group(2) is not None else match.group(1))
        position = match.end()
    if not tokens:
        raise DRError("%s: path is empty" % label)
    return tokens


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same_scalar(left, right):
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if _is_number(left) and _is_number(right):
        return left == right
    return type(left) is type(right) and left == right


class RewriteRule(object):
    """One rule of `rewrite` or `secret_rewrite`.

    match/replace: every value equal to `match` (a number or a boolean, or a string with
      whole: true) becomes `replace`; without whole, every occurrence of the string `match`
      inside a string value is replaced. Keys are never rewritten.
    path/value: the value at `path` (`postgres.port`, `listen[0]`, `data.DB_HOST`) becomes
      `value`; a path that is not there is an error unless optional.
    applies_to: glob patterns on the item's name (a file's path in the bundle, or
      Kind/namespace/name); none means every item.
    Rules of secret_rewrite are never shown with their values.
    """

    def __init__(self, spec, index, option="rewrite"):
        spec = spec or {}
        self.label = "%s[%d]" % (option, index)
        self.secret = option == "secret_rewrite"
        self.applies_to = [str(pattern) for pattern in spec.get("applies_to") or []]
        self.optional = bool(spec.get("optional"))
        self.changes = 0
        has_match = spec.get("match") is not None
        has_path = spec.get("path") not in (None, "")
        if has_match == has_path:
            raise DRError("%s: give either match (with replace) or path (with value)" % self.label)
        if has_match:
            self.kind = "match"
            self.match = spec["match"]
            if spec.get("replace") is None:
                raise DRError("%s: replace is required with match" % self.label)
            self.replace = spec["replace"]
            self.whole = bool(spec.get("whole")) or not isinstance(self.match, str)
            if isinstance(self.match, (dict, list)):
                raise DRError("%s: match must be a string, a number or a boolean" % self.label)
            if isinstance(self.match, str) and not self.match:
                raise DRError("%s: match is an empty string" % self.label)
            if not self.whole and not isinstance(self.replace, str):
                raise DRError("%s: replace must be a string when match replaces part of a string (or set whole: "
                              "true)" % self.label)
        else:
            self.kind = "path"
            self.path = str(spec["path"])
            self.tokens = _parse_path(self.path, self.label)
            if "value" not in spec or spec.get("value") is None:
                raise DRError("%s: value is required with path" % self.label)
            self.value = spec["value"]

    def describe(self):
        if self.kind == "path":
            return "%s (path %s)" % (self.label, self.path)
        if self.secret:
            return "%s (a secret value)" % self.label
        return "%s (match %s)" % (self.label, json.dumps(self.match))

    def selects(self, name):
        if not self.applies_to:
            return True
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.applies_to)

    # Match rules -----------------------------------------------------------------------------

    def rewrite_text(self, text):
        """(new text, replacements) for one string value."""
        if not isinstance(text, str) or not isinstance(self.match, str):
            return text, 0
        if self.whole:
            return (self.replace, 1) if text == self.match else (text, 0)
        count = text.count(self.match)
        return (text.replace(self.match, self.replace), count) if count else (text, 0)

    def rewrite_tree(self, value):
        """(new value, replacements) over a JSON document: every leaf, never a key."""
        if isinstance(value, dict):
            total = 0
            result = collections.OrderedDict()
            for key, item in value.items():
                result[key], count = self.rewrite_tree(item)
                total += count
            return result, total
        if isinstance(value, list):
            total = 0
            result = []
            for item in value:
                new, count = self.rewrite_tree(item)
                result.append(new)
                total += count
            return result, total
        if isinstance(value, str):
            return self.rewrite_text(value)
        if value is not None and not isinstance(self.match, str) and _same_scalar(value, self.match):
            return self.replace, 1
        return value, 0

    # Path rules ------------------------------------------------------------------------------

    def set_path(self, document, item_name):
        """Set the value at the path in place; (changed count). Raises unless optional."""
        node = document
        for depth, token in enumerate(self.tokens):
            last = depth == len(self.tokens) - 1
            if isinstance(node, list):
                index = token if isinstance(token, int) else (int(token) if str(token).isdigit() else None)
                if index is None or index >= len(node):
                    return self._missing(item_name)
                if last:
                    changed = not (_same_scalar(node[index], self.value) if not isinstance(self.value, (dict, list))
                                   else node[index] == self.value)
                    node[index] = copy.deepcopy(self.value)
                    return 1 if changed else 0
                node = node[index]
            elif isinstance(node, dict):
                key = str(token)
                if key not in node:
                    return self._missing(item_name)
                if last:
                    changed = not (_same_scalar(node[key], self.value) if not isinstance(self.value, (dict, list))
                                   else node[key] == self.value)
                    node[key] = copy.deepcopy(self.value)
                    return 1 if changed else 0
                node = node[key]
            else:
                return self._missing(item_name)
        return 0

    def _missing(self, item_name):
        if self.optional:
            return 0
        raise DRError("%s: %s has no value at path %s (limit the rule with applies_to, or set optional: true if "
                      "that is expected)" % (self.label, item_name, self.path))


def build_rules(rewrite=None, secret_rewrite=None):
    rules = [RewriteRule(spec, index, "rewrite") for index, spec in enumerate(rewrite or [])]
    rules += [RewriteRule(spec, index, "secret_rewrite") for index, spec in enumerate(secret_rewrite or [])]
    return rules


# ---------------------------------------------------------------------------------------------
# Documents: how an item's content is read for the rules and written back

_JSON_INDENTS = (None, 2, 4, 1, 3, "\t")


def _json_style(text, document):
    """The json.dumps arguments that give back `text` exactly, so a rewritten file keeps its
    layout; (style, trailing newline, exact)."""
    body = text.rstrip("\r\n")
    trailing = text[len(body):]
    non_ascii = any(ord(char) > 127 for char in text)
    for indent in _JSON_INDENTS:
        separator_choices = ((", ", ": "), (",", ":"), (",", ": ")) if indent is None else ((",", ": "), (",", ":"))
        for separators in separator_choices:
            for sort_keys in (False, True):
                for ensure_ascii in ((False, True) if non_ascii else (True,)):
                    style = {"indent": indent, "separators": separators, "sort_keys": sort_keys,
                             "ensure_ascii": ensure_ascii}
                    if json.dumps(document, **style) == body:
                        return style, trailing, True
    return {"indent": 2, "separators": (",", ": "), "sort_keys": False, "ensure_ascii": not non_ascii}, \
        trailing or "\n", False


class Document(object):
    """An item's content as the rules see it: 'json' (a parsed tree), 'text' or 'binary'."""

    def __init__(self, content, fmt="auto"):
        self.original = content
        self.format = "binary"
        self.tree = None
        self.text = None
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if fmt == "binary" or (text is None and fmt == "auto"):
            return
        if text is None:
            raise DRError("content is not UTF-8 text, so it cannot be read as %s" % fmt)
        if fmt in ("auto", "json"):
            try:
                self.tree = json.loads(text, object_pairs_hook=collections.OrderedDict)
                self.format = "json"
                self.text = text
                return
            except ValueError as exc:
                if fmt == "json":
                    raise DRError("content is not valid JSON: %s" % first_line(exc))
        self.format = "text"
        self.text = text

    def apply(self, rules, item_name):
        """Apply the rules that select this item; returns {rule label: replacements}."""
        counts = collections.OrderedDict()
        for rule in rules:
            if not rule.selects(item_name):
                continue
            if self.format == "binary":
                if rule.applies_to:
                    raise DRError("%s: %s is binary: rewrite rules cannot apply to it" % (rule.label, item_name))
                continue
            if rule.kind == "path":
                if self.format != "json":
                    if rule.applies_to and not rule.optional:
                        raise DRError("%s: %s is not JSON, so path rules cannot apply to it" % (rule.label, item_name))
                    continue
                count = rule.set_path(self.tree, item_name)
            elif self.format == "json":
                self.tree, count = rule.rewrite_tree(self.tree)
            else:
                self.text, count = rule.rewrite_text(self.text)
            if count:
                counts[rule.label] = counts.get(rule.label, 0) + count
        return counts

    def render(self):
        if self.format == "binary":
            return self.original
        if self.format == "text":
            return self.text.encode("utf-8")
        original_tree = json.loads(self.original.decode("utf-8"), object_pairs_hook=collections.OrderedDict)
        if original_tree == self.tree:
            return self.original
        style, trailing, _exact = _json_style(self.text, original_tree)
        return (json.dumps(self.tree, **style) + trailing).encode("utf-8")


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
# Manifests

def manifest_bytes(manifest):
    """The stored form: JSON with sorted keys, so every location holds the same bytes."""
    return (json.dumps(manifest, sort_keys=True, indent=1, ensure_ascii=True) + "\n").encode("ascii")


def manifest_problems(manifest, backup_id=None):
    """What makes a manifest incomplete or unusable, as short phrases (empty when complete)."""
    if not isinstance(manifest, dict):
        return ["not a JSON object"]
    problems = []
    if manifest.get("format") != MANIFEST_FORMAT:
        problems.append("format is %r, expected %r" % (manifest.get("format"), MANIFEST_FORMAT))
    version = manifest.get("format_version")
    if not isinstance(version, int) or version < 1:
        problems.append("format_version is %r" % (version,))
    elif version > FORMAT_VERSION:
        problems.append("format_version %d is newer than this collection reads (%d)" % (version, FORMAT_VERSION))
    if backup_id is not None and manifest.get("id") != backup_id:
        problems.append("id is %r, but the object is named for %s" % (manifest.get("id"), backup_id))
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
    data = _read_all(location, manifest_key(backup_id))
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DRError("%s: the manifest is not valid JSON (%s)" % (_what(backup_id, location), first_line(exc)))
    problems = manifest_problems(manifest, backup_id)
    if problems:
        raise DRError("%s: the manifest is incomplete: %s" % (_what(backup_id, location), "; ".join(problems)))
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


def _counts(items):
    counts = collections.OrderedDict([("files", 0), ("ConfigMap", 0), ("Secret", 0)])
    for item in items:
        counts["files" if item["type"] == "file" else item["kind"]] += 1
    counts["total"] = len(items)
    return counts


# ---------------------------------------------------------------------------------------------
# Backup

def _fresh_backup_id(targets):
    """A new id; when one of the same second exists already, the next second's."""
    for _attempt in range(5):
        backup_id = new_backup_id()
        taken = False
        for location in targets:
            try:
                if any(location.head(key) is not None for key in (
                        manifest_key(backup_id), bundle_key(backup_id, True), bundle_key(backup_id, False))):
                    taken = True
                    break
            except DRError:
                continue  # that location will fail (and be reported) when written
        if not taken:
            return backup_id
        time.sleep(1.05 - (time.time() % 1.0))
    raise DRError("config backup: could not find a free bundle id (every second taken?)")


def _source_description(files, kubernetes_params, api):
    source = {}
    if files:
        source["files"] = [spec.get("path") for spec in files]
    if kubernetes_params is not None:
        source["kubernetes"] = {
            "api": api.label if api is not None else None,
            "namespaces": list(kubernetes_params.get("namespaces") or []),
            "kinds": _kinds(kubernetes_params),
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
    counts = _counts(items)
    source = _source_description(files, kubernetes_params, api)
    if check_mode:
        example_id = new_backup_id()
        msg = "would back up %s to %s as %s (%s)" % (
            _count_text(counts), ", ".join(t.name for t in targets), bundle_key(example_id, encrypted),
            describe_encryption(encryption))
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
    copies = _read_back(targets, streamed) if verify_after_write else dict(
        (name, {"present": True, "size": streamed["size"], "sha256": streamed["sha256"]}) for name in streamed["done"])
    manifest = {
        "format": MANIFEST_FORMAT, "format_version": FORMAT_VERSION, "kind": KIND, "id": backup_id,
        "created_at": format_time(started), "finished_at": format_time(utc_now().replace(microsecond=0)),
        "site": site or "", "host": bundle["host"], "source": source, "counts": counts, "items": _manifest_index(items),
        "skipped": skipped,
        "encryption": {
            "algorithm": "AES-256-GCM" if encrypted else "none",
            "key": streamed["key_reference"],
            "key_description": describe_reference(streamed["key_reference"]) if encrypted else "unencrypted",
            "context": streamed["context"],
        },
        "artifact": {"key": key, "size": streamed["size"], "sha256": streamed["sha256"],
                     "plaintext_bytes": len(plaintext), "locations": copies},
    }
    written, failed = _commit(targets, manifest, copies, require_all_locations)
    return _backup_result(manifest, written, failed, skipped, warnings)


def _count_text(counts):
    parts = []
    if counts["files"]:
        parts.append("%d file%s" % (counts["files"], "" if counts["files"] == 1 else "s"))
    for kind in KUBERNETES_KINDS:
        if counts[kind]:
            parts.append("%d %s%s" % (counts[kind], kind, "" if counts[kind] == 1 else "s"))
    return ", ".join(parts) or "nothing"


def _stream(targets, key, plaintext, provider, backup_id):
    """bundle -> encrypt -> sha256 -> fan-out, in slices (never a second copy of the ciphertext)."""
    fan = FanOutWriter(targets, key, metadata={"auditron-dr": "config-bundle"})
    try:
        sink = _HashingSink(fan)
        encryptor = EncryptingWriter(sink, provider, _encryption_context(backup_id)) if provider else None
        out = encryptor or sink
        view = memoryview(plaintext)
        for start in range(0, len(plaintext), WRITE_SLICE):
            out.write(view[start:start + WRITE_SLICE])
        if encryptor is not None:
            encryptor.close()
        done, failed = fan.close()
    except BaseException:
        fan.abort()
        raise
    return {"key": key, "size": sink.bytes, "sha256": sink.sha256.hexdigest(), "done": done, "failed": failed,
            "key_reference": encryptor.key_reference if encryptor is not None else None,
            "context": encryptor.context if encryptor is not None else None}


def _read_back(targets, streamed):
    """Read every written copy back and hash it: the manifest records what each location holds."""
    by_name = dict((t.name, t) for t in targets)
    copies = collections.OrderedDict()
    for name in streamed["done"]:
        location = by_name[name]
        try:
            data = _read_all(location, streamed["key"])
        except DRError as exc:
            copies[name] = {"present": False, "error": "read back failed: %s" % exc.message}
            continue
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != streamed["size"] or digest != streamed["sha256"]:
            copies[name] = {"present": False, "error": "read back %d bytes with sha256 %s, %d bytes with %s were "
                                                       "written" % (len(data), digest[:16], streamed["size"],
                                                                    streamed["sha256"][:16])}
            _delete_quietly(location, [streamed["key"]])
            continue
        copies[name] = {"present": True, "size": len(data), "sha256": digest}
    for name, error in streamed["failed"].items():
        copies[name] = {"present": False, "error": error}
    return copies


def _delete_quietly(location, keys):
    try:
        location.delete(keys)
    except Exception:  # pylint: disable=broad-except
        pass


def _commit(targets, manifest, copies, require_all_locations):
    """The manifest, last, in every location whose copy was read back intact."""
    by_name = dict((t.name, t) for t in targets)
    backup_id = manifest["id"]
    key = manifest["artifact"]["key"]
    good = [name for name, copy_info in copies.items() if copy_info.get("present")]
    failed = collections.OrderedDict((name, info["error"]) for name, info in copies.items() if not info.get("present"))
    if not good:
        raise DRError("config backup %s: no location holds an intact copy: %s" % (
            backup_id, "; ".join("%s: %s" % item for item in failed.items())))
    if failed and require_all_locations:
        for name in good:
            _delete_quietly(by_name[name], [key])
        raise DRError("config backup %s: not written to %s (require_all_locations): %s; the other copies were "
                      "removed" % (backup_id, ", ".join(failed), "; ".join("%s: %s" % item for item in failed.items())))
    written = []
    data = manifest_bytes(manifest)
    for name in good:
        try:
            by_name[name].put_bytes(manifest_key(backup_id), data, metadata={"auditron-dr": "config-manifest"})
            written.append(name)
        except DRError as exc:
            failed[name] = "manifest not written: %s" % exc.message
    if not written:
        for name in good:
            _delete_quietly(by_name[name], [key])
        raise DRError("config backup %s: the manifest could not be written to any location: %s" % (
            backup_id, "; ".join("%s: %s" % item for item in failed.items())))
    return written, failed


def _backup_result(manifest, written, failed, skipped, warnings):
    artifact = manifest["artifact"]
    encrypted = manifest["encryption"]["key"] is not None
    if failed:
        warnings = warnings + ["config bundle %s was not stored in %s: %s" % (
            manifest["id"], ", ".join(failed), "; ".join("%s: %s" % item for item in failed.items()))]
    msg = "config bundle %s: %s stored %s (%s) in %s" % (
        manifest["id"], _count_text(manifest["counts"]), "encrypted" if encrypted else "UNENCRYPTED",
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
            row["sha256"] = hashlib.sha256(_read_all(location, key)).hexdigest()
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
        what = _what(backup_id, location)
        try:
            data = _read_all(location, artifact["key"])
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
            dest, _mode_text(mode & ~0o077), _mode_text(mode)))
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
        "mode": _mode_text(mode), "owner": owner, "group": group, "uid": uid, "gid": gid, "secret": secret,
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
    kinds = _kinds(params)
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
            chosen_id, _count_text(manifest.get("counts") or _counts(items))))
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
