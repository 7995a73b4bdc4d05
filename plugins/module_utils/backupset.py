# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup-set protocol: how one backup is written to every location and made visible.

A backup set is a series of backups, each one artifact and one manifest per location::

    <id><artifact suffix>     the artifact: bytes -> AES-256-GCM envelope (crypto.py) -> sha256 -> fan-out
    <id>.manifest.json        the manifest, written LAST, only where the whole artifact is

Logical backups (pgdump.py, ids `<series>_YYYYMMDD_HHMMSS`) and configuration bundles
(configbackup.py, ids `config_YYYYMMDD_HHMMSS`) both follow it; what differs between them
(the artifact's own format, the manifest's content, the id's prefix) stays with them.

The order is the protocol: artifacts first, then each copy read back and hashed,
then the manifest only next to a copy that is whole. A reader that finds a manifest can trust
that the artifact it names was complete when the manifest was written.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import hashlib
import json
import time

from ansible_collections.auditron.dr.plugins.module_utils.common import UTC, DRError, first_line, parse_time, utc_now
from ansible_collections.auditron.dr.plugins.module_utils.crypto import EncryptingWriter
from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import describe_reference
from ansible_collections.auditron.dr.plugins.module_utils.storage import (
    FanOutWriter, Location, PrefixedLocation, locations_from_params)

MANIFEST_SUFFIX = ".manifest.json"
STAMP_FORMAT = "%Y%m%d_%H%M%S"
FRESH_ID_ATTEMPTS = 5
# Read-back reads a copy in slices of this size (bounded memory, whatever the artifact's size).
READ_BACK_SLICE = 1 << 20


# ---------------------------------------------------------------------------------------------
# Locations

def target_locations(items, key_prefix=None, **tuning):
    """The locations a backup set is written to and read from, parsed once from the module's
    `locations` (dicts as the argument spec returns them) or taken as they are when they are
    Location objects already (tests, benchmarks); seen through `key_prefix` when one is given."""
    items = list(items or [])
    if not items:
        raise DRError("no backup location given: set locations")
    if all(isinstance(item, Location) for item in items):
        names = [item.name for item in items]
        if len(set(names)) != len(names):
            raise DRError("locations: a name is used twice (%s)" % ", ".join(names))
        plain = items
    else:
        plain = locations_from_params(items, **tuning)
    if key_prefix is None:
        return plain
    return [PrefixedLocation(location, key_prefix) for location in plain]


# ---------------------------------------------------------------------------------------------
# Ids and keys

def id_stamp(moment=None):
    """`YYYYMMDD_HHMMSS` in UTC: the time part of every backup id."""
    return (moment or utc_now()).astimezone(UTC).strftime(STAMP_FORMAT)


def stamp_time(stamp):
    """The time of a `YYYYMMDD_HHMMSS` stamp, or None when it names no real second."""
    stamp = str(stamp or "")
    if len(stamp) != 15 or stamp[8] != "_":
        return None
    try:
        return parse_time("%s-%s-%sT%s:%s:%sZ" % (
            stamp[0:4], stamp[4:6], stamp[6:8], stamp[9:11], stamp[11:13], stamp[13:15]))
    except DRError:
        return None


def check_id(backup_id, parsed, message):
    """backup_id when `parsed` (what parsing it gave) is not None; else DRError(message % backup_id),
    a message that says what the id should look like."""
    if parsed is None:
        raise DRError(message % (backup_id,))
    return backup_id


def header_problems(manifest, backup_id, manifest_format, newest_version):
    """The problems of a manifest's common header (format, format_version, id), as short
    phrases; a manifest that is not a JSON object is one problem. Logical backups and
    configuration bundles check their own fields after these."""
    if not isinstance(manifest, dict):
        return ["not a JSON object"]
    problems = []
    if manifest.get("format") != manifest_format:
        problems.append("format is %r, expected %r" % (manifest.get("format"), manifest_format))
    version = manifest.get("format_version")
    if not isinstance(version, int) or version < 1:
        problems.append("format_version is %r" % (version,))
    elif version > newest_version:
        problems.append("format_version %d is newer than this collection reads (%d)" % (version, newest_version))
    if backup_id is not None and manifest.get("id") != backup_id:
        problems.append("id is %r, but the object is named for %s" % (manifest.get("id"), backup_id))
    return problems


def artifact_key(backup_id, encrypted, encrypted_suffix, plain_suffix):
    """The artifact's key: the id and the suffix that says whether it is encrypted."""
    return backup_id + (encrypted_suffix if encrypted else plain_suffix)


def manifest_key(backup_id):
    return backup_id + MANIFEST_SUFFIX


def fresh_backup_id(targets, new_id, keys_of, what):
    """A new id (`new_id()`) that no location holds yet (`keys_of(id)`: the keys it would take);
    when one of the same second exists already (two runs within a second), the next second's."""
    for _attempt in range(FRESH_ID_ATTEMPTS):
        backup_id = new_id()
        taken = False
        for location in targets:
            try:
                if any(location.head(key) is not None for key in keys_of(backup_id)):
                    taken = True
                    break
            except DRError:
                continue  # that location will fail (and be reported) when written
        if not taken:
            return backup_id
        time.sleep(1.05 - (time.time() % 1.0))
    raise DRError("%s: could not find a free backup id (every second taken?)" % what)


# ---------------------------------------------------------------------------------------------
# Encryption

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


def encryption_record(key_reference, context):
    """The manifest's `encryption` section: the key's reference (never a secret) and context."""
    encrypted = key_reference is not None
    return {
        "algorithm": "AES-256-GCM" if encrypted else "none",
        "key": key_reference,
        "key_description": describe_reference(key_reference) if encrypted else "unencrypted",
        "context": context,
    }


# ---------------------------------------------------------------------------------------------
# Writing the artifact

class HashingSink(object):
    """Feeds what it is given to sha256 and on to the fan-out: the stored bytes' checksum."""

    def __init__(self, target):
        self.target = target
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def write(self, data):
        self.sha256.update(data)
        self.bytes += len(data)
        self.target.write(data)
        return len(data)


class StoredArtifact(object):
    """One artifact, written once to every location: bytes in through write(), then the
    AES-256-GCM envelope (when a provider is given) | sha256 | fan-out. close() finishes the
    last encrypted chunk and commits every location still standing, returning
    ({location: ObjectInfo}, {location: error}); abort() leaves nothing visible anywhere."""

    def __init__(self, targets, key, provider=None, context=None, metadata=None):
        self.key = key
        self._fan = FanOutWriter(targets, key, metadata=metadata) if metadata else FanOutWriter(targets, key)
        self._sink = HashingSink(self._fan)
        self._encryptor = None
        try:
            if provider is not None:
                self._encryptor = EncryptingWriter(self._sink, provider, context)
        except BaseException:
            self._fan.abort()
            raise

    @property
    def locations(self):
        """Names of the locations still being written."""
        return list(self._fan.writers)

    @property
    def stored_bytes(self):
        return self._sink.bytes

    @property
    def sha256(self):
        return self._sink.sha256.hexdigest()

    @property
    def key_reference(self):
        return self._encryptor.key_reference if self._encryptor is not None else None

    @property
    def context(self):
        return self._encryptor.context if self._encryptor is not None else None

    def write(self, data):
        return (self._encryptor or self._sink).write(data)

    def close(self):
        if self._encryptor is not None:
            self._encryptor.close()
        return self._fan.close()

    def abort(self):
        self._fan.abort()


# ---------------------------------------------------------------------------------------------
# Read-back and commit

def read_slices(location, key):
    """The stored object `key`, slice by slice (READ_BACK_SLICE): bounded memory whatever its
    size; any failure is one DRError naming the location and the key."""
    reader = location.open_read(key)
    try:
        while True:
            data = reader.read(READ_BACK_SLICE)
            if not data:
                return
            yield data
    except DRError:
        raise
    except Exception as exc:  # pylint: disable=broad-except
        raise DRError("location %s: reading %s failed: %s" % (location.name, key, first_line(exc)))
    finally:
        try:
            reader.close()
        except Exception:  # pylint: disable=broad-except
            pass


def read_all(location, key):
    """The whole object (small ones only: manifests, configuration bundles)."""
    return b"".join(bytes(data) for data in read_slices(location, key))


def delete_quietly(locations, keys):
    """Best-effort removal (cleaning up after a failure that is being reported already)."""
    for location in locations:
        try:
            location.delete(keys)
        except Exception:  # pylint: disable=broad-except
            pass


def _read_back_digest(location, key):
    """(bytes, sha256) of the stored copy `key`: hashed as it streams, never held in memory
    (a logical dump is gigabytes)."""
    digest = hashlib.sha256()
    size = 0
    for data in read_slices(location, key):
        digest.update(data)
        size += len(data)
    return size, digest.hexdigest()


def stored_copies(targets, key, size, sha256, done, failed, read_back):
    """What each location holds of the artifact `key` after the fan-out ({name: row}).

    read_back=True: each copy the fan-out finished is read again and hashed; a copy that
    differs from what was written is removed and recorded as not present, so that no manifest
    is written beside it. read_back=False: the locations the fan-out finished are taken as
    holding it. Locations that failed during the fan-out are recorded with their error either
    way."""
    by_name = dict((location.name, location) for location in targets)
    copies = collections.OrderedDict()
    for name in done:
        if not read_back:
            copies[name] = {"present": True}
            continue
        location = by_name[name]
        try:
            read_size, digest = _read_back_digest(location, key)
        except DRError as exc:
            copies[name] = {"present": False, "error": "read back failed: %s" % exc.message}
            continue
        if read_size != size or digest != sha256:
            copies[name] = {"present": False, "error": "read back %d bytes with sha256 %s, %d bytes with %s were "
                                                       "written" % (read_size, digest[:16], size, sha256[:16])}
            delete_quietly([location], [key])
            continue
        copies[name] = {"present": True, "size": read_size, "sha256": digest}
    for name, error in failed.items():
        copies[name] = {"present": False, "error": error}
    return copies


def _listed(failed):
    return "; ".join("%s: %s" % item for item in failed.items())


def commit(targets, backup_id, key, copies, write_manifest, require_all_locations, what="backup",
           manifests_required=None):
    """The manifest, last, in every location whose copy is whole (`copies`, see stored_copies).

    write_manifest(location) writes it to one location. require_all_locations: a location
    without a whole copy fails the backup, and the copies elsewhere are removed.
    manifests_required (default: require_all_locations): a manifest that could not be written
    fails the backup too. Returns (written, failed): the names with a manifest, and
    {name: error} for every other location."""
    by_name = dict((location.name, location) for location in targets)
    good = [name for name, row in copies.items() if row.get("present")]
    failed = collections.OrderedDict((name, row["error"]) for name, row in copies.items() if not row.get("present"))
    if not good:
        raise DRError("%s %s: no location holds an intact copy: %s" % (what, backup_id, _listed(failed)))
    if failed and require_all_locations:
        delete_quietly([by_name[name] for name in good], [key])
        raise DRError("%s %s: not written to %s (require_all_locations): %s; the copies elsewhere were removed" % (
            what, backup_id, ", ".join(failed), _listed(failed)))
    written, manifest_failed = [], collections.OrderedDict()
    for name in good:
        try:
            write_manifest(by_name[name])
            written.append(name)
        except DRError as exc:
            manifest_failed[name] = exc.message
    if not written:
        delete_quietly([by_name[name] for name in good], [key])
        raise DRError("%s %s: the manifest could not be written to any location: %s" % (
            what, backup_id, _listed(manifest_failed)))
    if manifest_failed and (require_all_locations if manifests_required is None else manifests_required):
        raise DRError("%s %s: the manifest could not be written to %s (require_all_locations): %s" % (
            what, backup_id, ", ".join(manifest_failed), _listed(manifest_failed)))
    for name, error in manifest_failed.items():
        failed[name] = "manifest not written: %s" % error
    return written, failed


def manifest_bytes(manifest):
    """The stored form: JSON with sorted keys, so every location holds the same bytes."""
    return (json.dumps(manifest, sort_keys=True, indent=1, ensure_ascii=True) + "\n").encode("ascii")
