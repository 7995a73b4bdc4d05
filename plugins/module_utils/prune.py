# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pruning (backup_prune): the plan's GFS retention (retention.py decides) applied to the
logical backups of a series in every location (catalog.py lists them) and to pgBackRest's full
backup sets (pgbackrest expire). Apart from the catalog, which only reads, because this removes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections

from ansible_collections.auditron.dr.plugins.module_utils import catalog as catalog_mod
from ansible_collections.auditron.dr.plugins.module_utils import retention as retention_mod
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, format_time, parse_time, utc_now
from ansible_collections.auditron.dr.plugins.module_utils.storage import locations_from_params


# ---------------------------------------------------------------------------------------------
# Logical backups

def _delete_keys(listing, keys):
    """Delete the keys `listing` holds; (deleted keys, {key: error})."""
    present = [key for key in keys if key in listing.objects]
    if not present:
        return [], {}
    try:
        failed = dict(listing.location.delete(present))
    except DRError as exc:
        failed = dict((key, exc.message) for key in present)
    return [key for key in present if key not in failed], failed


def prune_logical(locations, series, retention=None, now=None, check_mode=False):
    """GFS retention over the logical backups of one series, in every location at once.

    Decides on the union of what every location holds (retention.decide_retention) and removes
    a backup everywhere: manifests first, then artifacts and verification records, so that a
    backup pruned half-way is never listed as valid. Refuses to remove anything when a location
    cannot be listed completely (a backup there might be the newest valid one). Never removes
    the newest valid backup. Returns the result dict (check mode: what would go, and why).
    """
    catalog_mod.check_series(series)
    now = parse_time(now, what="now") if now else utc_now()
    policy = retention_mod.Policy.from_params(retention or {}, plan="database")
    catalog = catalog_mod.Catalog.load(locations, series=series)
    if catalog.unreachable:
        raise DRError("prune of series %s refused, nothing removed: %s could not be listed completely (%s)" % (
            series, ", ".join(catalog.unreachable), "; ".join("%s" % error for error in catalog.unreachable.values())),
            unreachable_locations=dict(catalog.unreachable))
    entries = catalog.newest_first(series)
    items = [{"id": entry.id, "time": entry.time, "valid": entry.valid, "kind": catalog_mod.KIND} for entry in entries
             if entry.time is not None]
    decisions = retention_mod.decide_retention(items, now, policy)
    summary = retention_mod.summarize(decisions)
    newest_valid = catalog.latest_valid(series)
    if newest_valid is not None and newest_valid.id in summary["delete"]:
        # retention never does this; a guard so that a bug there can never empty a series.
        raise DRError("prune of series %s refused: retention chose the newest valid backup %s" % (
            series, newest_valid.id))
    by_id = dict((entry.id, entry) for entry in entries)
    plan = [{"id": backup_id, "time": format_time(by_id[backup_id].time), "valid": by_id[backup_id].valid,
             "reason": summary["reasons"][backup_id],
             "locations": [name for name, state in by_id[backup_id].locations.items()
                           if state["status"] != catalog_mod.MISSING],
             "bytes": sum(state["size"] or 0 for state in by_id[backup_id].locations.values())}
            for backup_id in summary["delete"]]
    result = {
        "series": series,
        "now": format_time(now),
        "policy": policy.to_params(),
        "newest_valid": newest_valid.id if newest_valid else None,
        "keep": summary["keep"],
        "delete": summary["delete"],
        "reasons": summary["reasons"],
        "plan": plan,
        "locations": [listing.name for listing in catalog.listings],
    }
    if check_mode:
        result.update(changed=bool(plan), check_mode=True, deleted=[], failed={},
                      msg="would remove %d of %d logical backups of %s (newest valid %s kept)" % (
                          len(plan), len(entries), series, newest_valid.id if newest_valid else "none"))
        return result
    deleted, failed = [], collections.OrderedDict()
    freed = 0
    for item in plan:
        backup_id = item["id"]
        errors = {}
        for listing in catalog.listings:
            _done, problems = _delete_keys(listing, [catalog_mod.manifest_key(backup_id)])
            errors.update(("%s:%s" % (listing.name, key), message) for key, message in problems.items())
        if errors:
            # A manifest left somewhere keeps the backup listed: its artifacts must stay too.
            failed[backup_id] = "; ".join("%s %s" % item_error for item_error in errors.items())
            continue
        for listing in catalog.listings:
            _done, problems = _delete_keys(listing, [catalog_mod.artifact_key(backup_id, True),
                                                     catalog_mod.artifact_key(backup_id, False),
                                                     catalog_mod.verification_key(backup_id)])
            errors.update(("%s:%s" % (listing.name, key), message) for key, message in problems.items())
        if errors:
            failed[backup_id] = "manifest removed; left behind: %s" % "; ".join(
                "%s %s" % item_error for item_error in errors.items())
        deleted.append(backup_id)
        freed += item["bytes"]
    result.update(changed=bool(deleted), deleted=deleted, failed=dict(failed), freed_bytes=freed,
                  msg="removed %d of %d logical backups of %s (newest valid %s kept)%s" % (
                      len(deleted), len(entries), series, newest_valid.id if newest_valid else "none",
                      "; %d could not be removed completely" % len(failed) if failed else ""))
    if failed:
        raise DRError("prune of series %s: %s" % (series, "; ".join(
            "%s: %s" % item for item in failed.items())), **dict((k, v) for k, v in result.items() if k != "msg"))
    return result


# ---------------------------------------------------------------------------------------------
# Physical backups (pgBackRest)

def prune_physical(config, stanza, repos=None, retention=None, now=None, check_mode=False, binary=None, tool=None):
    """GFS retention over pgBackRest full backups: `pgbackrest expire --set=<label> --repo=N`.

    pgBackRest's own retention is a count or an age of fulls; the plan's daily/weekly/monthly
    tiers are computed here (retention.pgbackrest_full_sets_to_expire) per repository, on that
    repository's full backups; expiring a full expires its differentials and incrementals.
    Refuses to expire anything when a repository could not be read. Runs as the current user,
    which must be the PostgreSQL OS user (modules run under become). `tool`: a
    pgbackrest.PgBackRest to run the commands with (tests give one with a recording runner).
    """
    engine = catalog_mod.pgbackrest_engine()
    now = parse_time(now, what="now") if now else utc_now()
    policy = retention_mod.Policy.from_params(retention or {}, plan="database")
    tool = tool or engine.PgBackRest(config, stanza, binary=binary or engine.DEFAULT_BINARY)
    summary = engine.info_summary(config, stanza, repos=repos or None, wal_times=False, now=now, tool=tool)
    repositories = summary.get("repos") or []
    unreadable = [repo for repo in repositories if not repo.get("reachable", True) or not repo.get("stanza_exists", True)]
    if unreadable:
        raise DRError("physical prune of stanza %s refused, nothing expired: %s" % (
            stanza, "; ".join("%s: %s" % (repo.get("name"), repo.get("error") or repo.get("status"))
                              for repo in unreadable)))
    plan = []
    for repo in repositories:
        fulls = [{"label": backup["label"], "time": backup.get("stop_epoch") or backup.get("stop"),
                  "valid": not backup.get("error"), "type": backup.get("type")}
                 for backup in repo.get("backups") or [] if backup.get("type") == "full"]
        if not fulls:
            continue
        for label in retention_mod.pgbackrest_full_sets_to_expire(fulls, now, policy):
            plan.append({"repo": repo.get("key"), "label": label})
    result = {"stanza": stanza, "config": config, "policy": policy.to_params(), "now": format_time(now),
              "plan": plan, "expired": [], "failed": {}}
    if check_mode or not plan:
        result.update(changed=bool(plan), msg="would expire %d pgBackRest full backup sets of stanza %s" % (
            len(plan), stanza) if check_mode else "no pgBackRest full backup set of stanza %s to expire" % stanza)
        return result
    for item in plan:
        try:
            tool.run_checked("expire", ["--set=%s" % item["label"]], repo=item["repo"],
                             what="expire --set=%s" % item["label"])
            result["expired"].append(item)
        except DRError as exc:
            result["failed"]["repo%s:%s" % (item["repo"], item["label"])] = exc.message
    result.update(changed=bool(result["expired"]), msg="expired %d of %d pgBackRest full backup sets of stanza %s%s" % (
        len(result["expired"]), len(plan), stanza, "; %d failed" % len(result["failed"]) if result["failed"] else ""))
    if result["failed"]:
        details = dict((k, v) for k, v in result.items() if k != "msg")
        raise DRError("physical prune of stanza %s: %s" % (stanza, "; ".join(
            "%s: %s" % item for item in result["failed"].items())), **details)
    return result


# ---------------------------------------------------------------------------------------------
# What backup_prune runs

def prune_backups(locations, series, retention=None, now=None, pgbackrest=None, check_mode=False):
    """The logical backups of `series` in `locations` (as the module gives them, or Locations),
    the pgBackRest full sets of `pgbackrest` ({config, stanza, repos, binary}), or both, under
    one retention policy (options left None take the plan's value)."""
    if not locations and not pgbackrest:
        raise DRError("nothing to prune: give locations (logical backups), pgbackrest (physical backups) or both")
    retention = dict((key, value) for key, value in (retention or {}).items() if value is not None)
    result = {"changed": False}
    messages = []
    if locations:
        logical = prune_logical(locations_from_params(locations), series, retention=retention, now=now,
                                check_mode=check_mode)
        result["changed"] = result["changed"] or logical.pop("changed")
        messages.append(logical.pop("msg"))
        result["logical"] = logical
    if pgbackrest:
        physical = prune_physical(pgbackrest["config"], pgbackrest["stanza"], repos=pgbackrest["repos"],
                                  retention=retention, now=now, check_mode=check_mode, binary=pgbackrest.get("binary"))
        result["changed"] = result["changed"] or physical.pop("changed")
        messages.append(physical.pop("msg"))
        result["physical"] = physical
    result["msg"] = "; ".join(messages)
    return result
