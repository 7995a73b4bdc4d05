# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The catalog of logical backups: manifests, what each location holds, and the queries.

The plan's "identify latest valid backup" was `ls`. Here a backup is a set of objects in every
location, and the catalog says what "valid" means:

- Layout, the same in every location (a local directory or an S3 prefix, normally
  ``postgres/logical/``)::

      <id>.dump.zst.enc          the artifact: pg_dump -Fc | zstd | AES-256-GCM envelope
      <id>.dump.zst              the same, unencrypted (encryption.key_source: none)
      <id>.manifest.json         the manifest, written LAST, only where the artifact is complete
      verifications/<id>.json    the last verifications of the backup (weekly test, deep catalog)

  ``<id>`` is the plan's ``auditron_YYYYMMDD_HHMMSS`` (UTC): ``<series>_<stamp>``, where the
  series is the database name unless told otherwise.
- Atomic commit: artifacts first, manifest last. An artifact without a manifest anywhere is a
  backup that crashed (``incomplete``) and is never valid; pruning removes manifests before
  artifacts, so a half-pruned backup is never listed as valid either.
- Per location, a backup is ``present`` (artifact there with the manifest's size),
  ``missing``, ``different`` (size or checksum differs from the manifest, or this location's
  manifest disagrees with the others), ``incomplete`` (artifact, no manifest anywhere) or
  ``unknown`` (the location could not be listed).
- ``valid``: a complete manifest, the artifact present with the manifest's size in at least
  one location (with ``deep``, its sha256 and every GCM tag checked), and the last
  verification passed when a verification record exists.

Listing costs one LIST per location plus one small GET per manifest (in parallel), so that
manifests that disagree between locations are found. `Catalog.load(..., lazy=True)` reads a
backup's manifests only when a query needs them, so a restore of the latest backup reads the
manifests of one or two backups, not of a year of them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import concurrent.futures
import json
import os
import re

from ansible_collections.auditron.dr.plugins.module_utils import backupset
from ansible_collections.auditron.dr.plugins.module_utils.common import (
    DRError, first_line, format_time, human_bytes, parse_time, utc_now)
from ansible_collections.auditron.dr.plugins.module_utils.storage import locations_from_params

MANIFEST_FORMAT = "auditron.dr/logical-backup"
MANIFEST_VERSION = 1
KIND = "logical"

MANIFEST_SUFFIX = backupset.MANIFEST_SUFFIX
ARTIFACT_SUFFIX_ENCRYPTED = ".dump.zst.enc"
ARTIFACT_SUFFIX_PLAIN = ".dump.zst"
VERIFICATIONS_DIR = "verifications/"
VERIFICATION_HISTORY = 20

PRESENT = "present"
MISSING = "missing"
DIFFERENT = "different"
INCOMPLETE = "incomplete"
UNKNOWN = "unknown"

SERIES_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ID_RE = re.compile(r"^(?P<series>[A-Za-z0-9][A-Za-z0-9_.-]{0,62})_(?P<stamp>\d{8}_\d{6})$")
_KEY_RE = re.compile(r"^(?P<id>[A-Za-z0-9][A-Za-z0-9_.-]{0,62}_\d{8}_\d{6})"
                     r"(?P<suffix>\.manifest\.json|\.dump\.zst\.enc|\.dump\.zst)$")
_VERIFICATION_RE = re.compile(r"^verifications/(?P<id>[A-Za-z0-9][A-Za-z0-9_.-]{0,62}_\d{8}_\d{6})\.json$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

LIST_WORKERS = 8
READ_WORKERS = 16


# ---------------------------------------------------------------------------------------------
# Names

def series_for_database(database):
    """The default series of a database: its name, with anything an object key should not hold
    replaced by '-' (database names may hold any character)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", str(database or ""))[:63].lstrip("_.-")
    return cleaned or "database"


def check_series(series):
    if not isinstance(series, str) or not SERIES_RE.match(series):
        raise DRError("series %r is not a valid backup series name (letters, digits, '_', '.', '-'; at most 63 "
                      "characters, starting with a letter or digit)" % (series,))
    return series


def new_backup_id(series, moment=None):
    """`<series>_YYYYMMDD_HHMMSS` in UTC: the plan's `auditron_YYYYMMDD_HHMMSS`."""
    return "%s_%s" % (check_series(series), backupset.id_stamp(moment))


def parse_backup_id(backup_id):
    """(series, time) of a backup id, or None when it is not one."""
    match = ID_RE.match(str(backup_id or ""))
    if not match:
        return None
    moment = backupset.stamp_time(match.group("stamp"))
    return None if moment is None else (match.group("series"), moment)


def check_backup_id(backup_id):
    return backupset.check_id(backup_id, parse_backup_id(backup_id), "backup id %r is not a logical backup id "
                              "(expected <series>_YYYYMMDD_HHMMSS, for example auditron_20261124_020000)")


def artifact_key(backup_id, encrypted=True):
    return backupset.artifact_key(backup_id, encrypted, ARTIFACT_SUFFIX_ENCRYPTED, ARTIFACT_SUFFIX_PLAIN)


manifest_key = backupset.manifest_key


def verification_key(backup_id):
    return VERIFICATIONS_DIR + backup_id + ".json"


def parse_key(key):
    """(backup id, 'manifest' | 'artifact' | 'verification') for a catalog key, else (None, None)."""
    match = _KEY_RE.match(key or "")
    if match:
        return match.group("id"), "manifest" if match.group("suffix") == MANIFEST_SUFFIX else "artifact"
    match = _VERIFICATION_RE.match(key or "")
    if match:
        return match.group("id"), "verification"
    return None, None


# ---------------------------------------------------------------------------------------------
# Manifests

manifest_bytes = backupset.manifest_bytes


def manifest_time(manifest):
    """The backup's point in time: the snapshot the dump and the row counts were taken in."""
    return parse_time(manifest.get("snapshot_at") or manifest.get("started_at"), what="manifest snapshot_at")


def manifest_problems(manifest, backup_id=None):
    """What makes a manifest incomplete or unusable, as short phrases (empty when complete)."""
    problems = backupset.header_problems(manifest, backup_id, MANIFEST_FORMAT, MANIFEST_VERSION)
    if not isinstance(manifest, dict):
        return problems
    for field in ("database", "series", "started_at", "snapshot_at", "finished_at"):
        if not manifest.get(field):
            problems.append("%s is missing" % field)
    for field in ("snapshot_at", "started_at", "finished_at"):
        if manifest.get(field):
            try:
                parse_time(manifest[field], what="manifest %s" % field)
            except DRError as exc:
                problems.append(exc.message)
    artifacts = manifest.get("artifacts")
    if not isinstance(artifacts, list) or not artifacts:
        problems.append("no artifacts")
    else:
        for index, artifact in enumerate(artifacts):
            if not isinstance(artifact, dict):
                problems.append("artifact #%d is not an object" % (index + 1))
                continue
            if not artifact.get("key") or parse_key(artifact.get("key"))[1] != "artifact":
                problems.append("artifact #%d has no valid key" % (index + 1))
            if not isinstance(artifact.get("size"), int) or artifact.get("size") < 0:
                problems.append("artifact #%d has no size" % (index + 1))
            if not _SHA256_RE.match(str(artifact.get("sha256") or "")):
                problems.append("artifact #%d has no sha256" % (index + 1))
    if not isinstance(manifest.get("tables"), list):
        problems.append("no table list")
    return problems


def main_artifact(manifest):
    """The dump artifact of a manifest (the first one)."""
    return manifest["artifacts"][0]


# ---------------------------------------------------------------------------------------------
# Reading and writing small JSON documents

def read_json(location, key, what):
    reader = location.open_read(key)
    try:
        data = reader.read()
    finally:
        reader.close()
    try:
        return json.loads(data.decode("utf-8")), data
    except (ValueError, UnicodeDecodeError) as exc:
        raise DRError("%s at location %s is not valid JSON: %s" % (what, location.name, first_line(exc)))


def write_manifest(location, manifest):
    """Write `<id>.manifest.json` (atomically: it appears complete or not at all)."""
    return location.put_bytes(manifest_key(manifest["id"]), manifest_bytes(manifest),
                              metadata={"auditron-dr": "logical-backup-manifest"})


# ---------------------------------------------------------------------------------------------
# Verification records (the weekly backup test writes them; `valid` honours the last one)

def record_verification(locations, backup_id, passed, detail="", by="", checks=None, location_results=None,
                        now=None):
    """Record that `backup_id` was verified (passed or not) next to its manifest in every location.

    locations: Location objects (the catalog's). detail: one line. by: who verified (for example
    'weekly backup test' or 'backup_catalog deep'). checks: optional list of {name, result,
    detail}. location_results: optional {location name: {'result', 'detail'}}.
    The record keeps the last VERIFICATION_HISTORY verifications, newest last; `last` is the
    newest. Returns {'written': [names], 'failed': {name: message}}: a location that cannot be
    written does not stop the others.
    """
    check_backup_id(backup_id)
    entry = {
        "backup_id": backup_id,
        "verified_at": format_time(now or utc_now()),
        "result": "passed" if passed else "failed",
        "detail": str(detail or ""),
        "by": str(by or ""),
    }
    if checks:
        entry["checks"] = list(checks)
    if location_results:
        entry["locations"] = dict(location_results)
    return append_verification(locations, verification_key(backup_id), entry, backup_id,
                               {"format": MANIFEST_FORMAT + "-verification", "format_version": 1,
                                "backup_id": backup_id})


def append_verification(locations, key, entry, what, header):
    """Add `entry` to the verification record at `key` in every location: the document is
    `header` plus `last` (the entry) and `history` (the last VERIFICATION_HISTORY entries, newest
    last). Logical backups (record_verification) and pgBackRest sets
    (verification.record_physical_verification) keep their records so. A damaged record is
    replaced; a location that cannot be written does not stop the others. Returns {'written':
    [names], 'failed': {name: message}, 'record': entry}."""
    written, failed = [], {}
    for location in locations:
        try:
            history = []
            if location.head(key) is not None:
                try:
                    previous, _raw = read_json(location, key, "verification record of %s" % what)
                    history = [item for item in previous.get("history", []) if isinstance(item, dict)]
                except DRError:
                    history = []  # a damaged record is replaced, not a reason to stop recording
            document = dict(header, last=entry, history=(history + [entry])[-VERIFICATION_HISTORY:])
            location.put_bytes(key, (json.dumps(document, sort_keys=True, indent=1) + "\n").encode("ascii"))
            written.append(location.name)
        except DRError as exc:
            failed[location.name] = exc.message
    return {"written": written, "failed": failed, "record": entry}


def last_verification(locations, backup_id):
    """The newest verification record of `backup_id` over `locations`, or None.

    locations: Location objects. A location that cannot be read is skipped; the record carries
    `found_at` (the location it was read from).
    """
    newest = None
    for location in locations:
        try:
            if location.head(verification_key(backup_id)) is None:
                continue
            document, _raw = read_json(location, verification_key(backup_id), "verification record of %s" % backup_id)
        except DRError:
            continue
        record = _last_of(document)
        if record is not None and (newest is None or _record_time(record) > _record_time(newest)):
            newest = dict(record, found_at=location.name)
    return newest


def _last_of(document):
    if not isinstance(document, dict) or not isinstance(document.get("last"), dict):
        return None
    record = document["last"]
    if record.get("result") not in ("passed", "failed"):
        return None
    return record


def _record_time(record):
    try:
        return parse_time(record.get("verified_at"))
    except DRError:
        return parse_time("1970-01-01T00:00:00Z")


# ---------------------------------------------------------------------------------------------
# Listing locations

class LocationListing(object):
    """What one location holds under its prefix: {key: ObjectInfo} of catalog keys, or the error."""

    def __init__(self, location):
        self.location = location
        self.name = location.name
        self.objects = {}
        self.error = None

    @property
    def complete(self):
        return self.error is None

    def fill(self):
        path = getattr(self.location, "path", None)
        if getattr(self.location, "kind", None) == "local" and not os.path.isdir(path):
            # Checked here because LocalLocation.list("") of a missing directory walks its parent
            # instead of failing; an unmounted backup disk must not look like an empty one.
            self.error = "location %s: directory %s does not exist" % (self.name, path)
            return self
        try:
            for info in self.location.list(""):
                if parse_key(info.key)[0] is not None:
                    self.objects[info.key] = info
        except DRError as exc:
            self.error = exc.message
            self.objects = {}
        except Exception as exc:  # pylint: disable=broad-except
            self.error = "location %s: listing failed: %s" % (self.name, first_line(exc))
            self.objects = {}
        return self


def list_locations(locations):
    """List every location at once (threads); one LocationListing per location, in order."""
    listings = [LocationListing(location) for location in locations]
    if len(listings) <= 1:
        return [listing.fill() for listing in listings]
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(LIST_WORKERS, len(listings))) as pool:
        return list(pool.map(lambda listing: listing.fill(), listings))


# ---------------------------------------------------------------------------------------------
# The catalog

class BackupEntry(object):
    """One backup id across every location."""

    def __init__(self, backup_id):
        self.id = backup_id
        parsed = parse_backup_id(backup_id)
        self.series, self.id_time = parsed if parsed else (None, None)
        self.manifest = None
        self.manifest_from = None
        self.manifest_problems = []
        self.manifest_errors = {}     # location -> why its manifest could not be read
        self.locations = collections.OrderedDict()  # name -> {status, detail, size, manifest}
        self.verification = None
        self.deep = {}                # location -> {"verified": bool, "detail": str}
        self.loaded = False

    @property
    def time(self):
        if self.manifest is not None and not self.manifest_problems:
            try:
                return manifest_time(self.manifest)
            except DRError:
                pass
        return self.id_time

    @property
    def complete(self):
        return self.manifest is not None and not self.manifest_problems

    @property
    def present_in(self):
        return [name for name, state in self.locations.items() if state["status"] == PRESENT]

    @property
    def valid(self):
        return self.why_invalid is None

    @property
    def why_invalid(self):
        if self.manifest is None:
            if self.manifest_errors:
                return "manifest unreadable (%s)" % "; ".join(
                    "%s: %s" % item for item in self.manifest_errors.items())
            return "incomplete: artifact without a manifest (a backup that did not finish)"
        if self.manifest_problems:
            return "manifest incomplete: %s" % "; ".join(self.manifest_problems)
        present = self.present_in  # after a deep check, only the copies that passed it
        if not present and self.deep:
            return "no copy passed deep verification (%s)" % "; ".join(
                "%s: %s" % (name, result["detail"]) for name, result in self.deep.items())
        if not present:
            return "no location holds the artifact with the manifest's size (%s)" % "; ".join(
                "%s: %s" % (name, state["status"]) for name, state in self.locations.items())
        if self.verification is not None and self.verification.get("result") != "passed":
            return "last verification failed at %s: %s" % (
                self.verification.get("verified_at"), self.verification.get("detail") or "no detail")
        return None

    def as_dict(self):
        manifest = self.manifest or {}
        artifact = manifest.get("artifacts", [{}])[0] if self.complete else {}
        result = {
            "id": self.id,
            "series": self.series,
            "database": manifest.get("database"),
            "time": format_time(self.time) if self.time else None,
            "started_at": manifest.get("started_at"),
            "finished_at": manifest.get("finished_at"),
            "valid": self.valid,
            "why_invalid": self.why_invalid,
            "encrypted": bool((manifest.get("encryption") or {}).get("key")) if self.complete else None,
            "size": artifact.get("size"),
            "sha256": artifact.get("sha256"),
            "dump_bytes": artifact.get("plaintext_bytes"),
            "locations": dict((name, dict(state)) for name, state in self.locations.items()),
            "last_verification": self.verification,
            "tables": len(manifest.get("tables") or []) if self.complete else None,
            "manifest_from": self.manifest_from,
        }
        if self.deep:
            result["deep"] = dict(self.deep)
        return result


class Catalog(object):
    """Every logical backup in a set of locations. Build with Catalog.load(locations, ...)."""

    def __init__(self, locations, listings, series=None):
        self.locations = list(locations)
        self.listings = listings
        self.series = series
        self.entries = collections.OrderedDict()
        ids = set()
        for listing in listings:
            for key in listing.objects:
                backup_id, kind = parse_key(key)
                if backup_id is not None and kind in ("manifest", "artifact"):
                    ids.add(backup_id)
        for backup_id in sorted(ids, key=_id_order):
            entry = BackupEntry(backup_id)
            if series is not None and entry.series != series:
                continue
            self.entries[backup_id] = entry

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def load(cls, locations, series=None, lazy=False):
        """List `locations` (Location objects, in order of preference) and build the catalog.

        lazy: read manifests only when a query needs them (restores); otherwise read them all
        now, in parallel.
        """
        if series is not None:
            check_series(series)
        catalog = cls(locations, list_locations(locations), series=series)
        if not lazy:
            catalog.load_all()
        return catalog

    @property
    def unreachable(self):
        """{location name: error} of the locations that could not be listed completely."""
        return collections.OrderedDict((listing.name, listing.error) for listing in self.listings
                                       if not listing.complete)

    def load_all(self):
        pending = [entry for entry in self.entries.values() if not entry.loaded]
        if len(pending) > 1:
            with concurrent.futures.ThreadPoolExecutor(max_workers=min(READ_WORKERS, len(pending))) as pool:
                list(pool.map(self.resolve, pending))
        else:
            for entry in pending:
                self.resolve(entry)
        return self

    def resolve(self, entry):
        """Read what `entry` needs (its manifest in every location, its verification record)
        and judge each location."""
        if entry.loaded:
            return entry
        holding = [listing for listing in self.listings
                   if listing.complete and manifest_key(entry.id) in listing.objects]

        def read(listing):
            try:
                return listing.name, read_json(listing.location, manifest_key(entry.id),
                                               "manifest of %s" % entry.id)[0], None
            except DRError as exc:
                return listing.name, None, exc.message

        if len(holding) > 1:  # one GET per location, at once
            with concurrent.futures.ThreadPoolExecutor(max_workers=len(holding)) as pool:
                outcomes = list(pool.map(read, holding))
        else:
            outcomes = [read(listing) for listing in holding]
        documents = collections.OrderedDict()
        for name, document, error in outcomes:
            if error is None:
                documents[name] = document
            else:
                entry.manifest_errors[name] = error
        # The reference: the first complete manifest in the locations' order (else the first one).
        for name, document in documents.items():
            problems = manifest_problems(document, entry.id)
            if entry.manifest is None or (entry.manifest_problems and not problems):
                entry.manifest, entry.manifest_from, entry.manifest_problems = document, name, problems
        for listing in self.listings:
            entry.locations[listing.name] = self._judge(entry, listing, documents.get(listing.name))
        verification_holders = [listing.location for listing in self.listings
                                if listing.complete and verification_key(entry.id) in listing.objects]
        if verification_holders:
            entry.verification = last_verification(verification_holders, entry.id)
        entry.loaded = True
        return entry

    def _judge(self, entry, listing, own_manifest):
        if not listing.complete:
            return {"status": UNKNOWN, "detail": listing.error, "size": None, "manifest": None}
        has_manifest = manifest_key(entry.id) in listing.objects
        artifact_info = None
        for suffix in (ARTIFACT_SUFFIX_ENCRYPTED, ARTIFACT_SUFFIX_PLAIN):
            if entry.id + suffix in listing.objects:
                artifact_info = listing.objects[entry.id + suffix]
                break
        size = artifact_info.size if artifact_info is not None else None
        if entry.manifest is None:
            if artifact_info is not None:
                return {"status": INCOMPLETE, "detail": "artifact %s without a manifest in any location"
                        % artifact_info.key, "size": size, "manifest": has_manifest}
            return {"status": MISSING, "detail": "nothing here", "size": None, "manifest": has_manifest}
        if entry.manifest_problems:
            return {"status": DIFFERENT if artifact_info is not None else MISSING,
                    "detail": "manifest incomplete", "size": size, "manifest": has_manifest}
        artifact = main_artifact(entry.manifest)
        stored = listing.objects.get(artifact["key"])
        if stored is None:
            other = " (an artifact of another kind is there)" if artifact_info is not None else ""
            return {"status": MISSING, "detail": "%s not here%s" % (artifact["key"], other), "size": size,
                    "manifest": has_manifest}
        if stored.size != artifact["size"]:
            return {"status": DIFFERENT, "detail": "%s is %d bytes, the manifest says %d" % (
                artifact["key"], stored.size, artifact["size"]), "size": stored.size, "manifest": has_manifest}
        if has_manifest and listing.name != entry.manifest_from:
            disagreement = self._manifest_disagrees(entry, listing, own_manifest)
            if disagreement:
                return {"status": DIFFERENT, "detail": disagreement, "size": stored.size, "manifest": True}
        detail = "%s, %d bytes" % (artifact["key"], stored.size)
        if not has_manifest:
            detail += " (no manifest in this location)"
        return {"status": PRESENT, "detail": detail, "size": stored.size, "manifest": has_manifest}

    @staticmethod
    def _manifest_disagrees(entry, listing, own_manifest):
        """Why this location's own manifest does not describe the reference's artifact, or None."""
        if own_manifest is None:
            return "its manifest cannot be read: %s" % entry.manifest_errors.get(listing.name, "unknown error")
        if manifest_problems(own_manifest, entry.id):
            return "its manifest is incomplete"
        mine, reference = main_artifact(own_manifest), main_artifact(entry.manifest)
        if (mine.get("sha256"), mine.get("size"), mine.get("key")) != (
                reference.get("sha256"), reference.get("size"), reference.get("key")):
            return "its manifest says sha256 %s (%s bytes), %s says %s (%s bytes)" % (
                mine.get("sha256"), mine.get("size"), entry.manifest_from, reference.get("sha256"),
                reference.get("size"))
        return None

    # -- deep verification ----------------------------------------------------------------

    def verify_deep(self, entry, verify_copy):
        """Run `verify_copy(location, entry) -> detail` (raises DRError) on every present copy."""
        self.resolve(entry)
        if not entry.complete:
            return entry
        by_name = dict((location.name, location) for location in self.locations)
        for name, state in entry.locations.items():
            if state["status"] != PRESENT:
                continue
            try:
                detail = verify_copy(by_name[name], entry)
                entry.deep[name] = {"verified": True, "detail": detail}
            except DRError as exc:
                entry.deep[name] = {"verified": False, "detail": exc.message}
                state["status"] = DIFFERENT
                state["detail"] = exc.message
        return entry

    # -- queries ----------------------------------------------------------------------------

    def entry(self, backup_id):
        entry = self.entries.get(backup_id)
        return self.resolve(entry) if entry is not None else None

    def newest_first(self, series=None):
        """Entries newest first (by the time in their id, which is the start time)."""
        items = [entry for entry in self.entries.values() if series is None or entry.series == series]
        return sorted(items, key=lambda entry: _id_order(entry.id), reverse=True)

    def valid_newest_first(self, series=None, before=None):
        """Valid entries, newest first, resolving lazily; `before`: only those taken at or before it."""
        for entry in self.newest_first(series):
            if before is not None and entry.id_time is not None and entry.id_time > before:
                # The id's time is the start; the snapshot comes a moment later, so this entry
                # cannot be before `before`. Skipped without reading its manifest.
                continue
            self.resolve(entry)
            if not entry.valid:
                continue
            if before is not None and entry.time > before:
                continue
            yield entry

    def latest_valid(self, series=None):
        return next(iter(self.valid_newest_first(series)), None)

    def latest_before(self, moment, series=None):
        return next(iter(self.valid_newest_first(series, before=moment)), None)

    def oldest(self, series=None):
        items = self.newest_first(series)
        return items[-1] if items else None

    def series_names(self):
        return sorted(set(entry.series for entry in self.entries.values() if entry.series))

    def location_summary(self):
        """One row per location: reachable or not, how many catalog objects it holds."""
        rows = []
        for listing in self.listings:
            rows.append({"name": listing.name, "description": listing.location.describe(),
                         "reachable": listing.complete, "error": listing.error,
                         "objects": len(listing.objects) if listing.complete else None})
        return rows


def _id_order(backup_id):
    parsed = parse_backup_id(backup_id)
    stamp = parsed[1] if parsed else None
    return (format_time(stamp) if stamp else "", backup_id)


def catalog_result(catalog, series=None, before=None, now=None):
    """The info the backup_catalog module returns (plain data)."""
    now = now or utc_now()
    catalog.load_all()
    backups = [entry.as_dict() for entry in catalog.newest_first(series)]
    latest = catalog.latest_valid(series)
    result = {
        "backups": backups,
        "locations": catalog.location_summary(),
        "unreachable_locations": dict(catalog.unreachable),
        "series": catalog.series_names() if series is None else [series],
        "latest_valid": latest.as_dict() if latest else None,
        "latest_valid_id": latest.id if latest else None,
        "age_of_latest_valid_seconds": round((now - latest.time).total_seconds(), 1) if latest else None,
        "counts": dict(collections.Counter(
            "valid" if item["valid"] else "invalid" for item in backups)),
    }
    if before is not None:
        chosen = catalog.latest_before(before, series)
        result["latest_before"] = chosen.as_dict() if chosen else None
        result["latest_before_id"] = chosen.id if chosen else None
    return result


# ---------------------------------------------------------------------------------------------
# The listing backup_catalog returns

def format_table(backups, location_names):
    """The listing as a table for people: one row per backup, one column per location."""
    header = ["BACKUP", "TIME", "VALID", "SIZE"] + list(location_names)
    rows = [header]
    for item in backups:
        rows.append([item["id"], item["time"] or "-", "yes" if item["valid"] else "NO",
                     human_bytes(item["size"]) if item["size"] is not None else "-"] +
                    [item["locations"].get(name, {}).get("status", "-") for name in location_names])
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    return ["  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


def list_backups(locations, series=None, latest_before=None, backup_id=None, deep=False, encryption=None,
                 pgbackrest=None):
    """What backup_catalog returns: every logical backup of every location (the locations as the
    module's `locations` gives them, or Locations), the latest valid one, the one asked for by id
    or by time, and with `pgbackrest` ({config, stanza, repos, binary}) the physical backups too.
    deep: every present copy read and checked (sha256, and the GCM tags with `encryption`)."""
    if not locations:
        raise DRError("no backup location given: set locations")
    locations = locations_from_params(locations)
    if series is not None:
        check_series(series)
    before = parse_time(latest_before, what="latest_before") if latest_before else None
    if backup_id is not None:
        check_backup_id(backup_id)
    catalog = Catalog.load(locations, series=series)
    if deep:
        # logicalrestore imports this file: imported here, when a deep check asks for it.
        from ansible_collections.auditron.dr.plugins.module_utils import logicalrestore  # pylint: disable=import-outside-toplevel
        for entry in list(catalog.entries.values()):
            catalog.verify_deep(entry, lambda location, item: logicalrestore.verify_copy(location, item, encryption))
    result = catalog_result(catalog, series=series, before=before)
    result["changed"] = False
    result["table"] = format_table(result["backups"], [location.name for location in locations])
    result["warnings"] = ["location %s could not be listed: %s" % (name, error)
                          for name, error in result["unreachable_locations"].items()]
    if pgbackrest:
        result["physical"] = physical_summary(pgbackrest["config"], pgbackrest["stanza"], pgbackrest["repos"],
                                              binary=pgbackrest.get("binary"))
    if backup_id is not None:
        result["backup"] = chosen_backup(result, backup_id, [location.name for location in locations])
    valid = result["counts"].get("valid", 0)
    result["msg"] = "%d logical backups (%d valid) in %s; latest valid: %s" % (
        len(result["backups"]), valid, ", ".join(location.name for location in locations),
        result["latest_valid_id"] or "none")
    return result


def chosen_backup(result, backup_id, location_names):
    """The entry of `backup_id`; DRError when no location holds it or it is not valid."""
    entry = next((item for item in result["backups"] if item["id"] == backup_id), None)
    unreachable = result["unreachable_locations"]
    if entry is None:
        raise DRError("backup %s not found in %s%s: nothing was changed" % (
            backup_id, ", ".join(location_names),
            " (could not list %s)" % ", ".join(unreachable) if unreachable else ""))
    if not entry["valid"]:
        raise DRError("backup %s is not valid: %s; nothing was changed" % (backup_id, entry["why_invalid"]))
    return entry


# ---------------------------------------------------------------------------------------------
# Physical backups (pgBackRest), through the pgBackRest engine's info_summary

def pgbackrest_engine():
    try:
        from ansible_collections.auditron.dr.plugins.module_utils import pgbackrest
    except ImportError:
        pgbackrest = None
    if pgbackrest is None or not hasattr(pgbackrest, "info_summary"):
        raise DRError("physical backups: pgbackrest.info_summary not available")
    return pgbackrest


def physical_summary(config, stanza, repos=None, binary=None):
    """What pgBackRest's repositories hold (pgbackrest.info_summary), for the catalog."""
    engine = pgbackrest_engine()
    return engine.info_summary(config, stanza, repos=repos or None, binary=binary or engine.DEFAULT_BINARY,
                               wal_times=False)
