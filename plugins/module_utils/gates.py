# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Gates before a run overwrites what may serve: is a site serving, and may this run go on?

A site serves when its database is a primary (not in recovery) and either the API's name answers
the site's own address, or a failover to it completed (its state file says so) and its app
answers /health. What could not be read is never taken for "not serving": a database that runs
but does not answer, or a name whose server does not answer while the database is a primary,
make the state unknown, and an unknown site is treated as one that may serve.

The readers (database, DNS, app, failover state) take their clients as arguments, so that the
decision (`decide`) is a pure function of what they saw, tested without servers.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.auditron.dr.plugins.module_utils import journal, pg, pginstance
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, first_line

ACTIONS = ("standby", "restore_files", "read")

ROLE_QUERY = ("SELECT pg_is_in_recovery(), "
              "coalesce((SELECT status FROM pg_stat_wal_receiver), 'not streaming')")


# ----------------------------------------------------------------------------------------------
# What the site looks like now
# ----------------------------------------------------------------------------------------------

def read_database(postgres, data_dir=None, connect=pg.connect, running=pginstance.running_postmaster):
    """{state, receiver, detail}: state is primary, standby, stopped (nothing listens and no
    postmaster runs in data_dir), absent (no cluster in data_dir) or unreadable."""
    try:
        conn = connect(postgres)
    except DRError as exc:
        return _database_down(str(exc), data_dir, running)
    try:
        with conn.cursor() as cur:
            cur.execute(ROLE_QUERY)
            in_recovery, receiver = cur.fetchone()
    except Exception as exc:  # pylint: disable=broad-except
        detail = "%s answers but its role could not be read: %s" % (pg.server_label(postgres), first_line(exc))
        return {"state": "unreadable", "receiver": None, "detail": detail}
    finally:
        conn.close()
    if in_recovery:
        return {"state": "standby", "receiver": receiver,
                "detail": "a standby (in recovery), WAL receiver %s" % receiver}
    return {"state": "primary", "receiver": receiver, "detail": "a primary (not in recovery)"}


def _database_down(error, data_dir, running):
    """A database that did not answer is stopped only when nothing listens at its address and
    its data directory (when given and readable) has no postmaster running."""
    refused = "connection refused" in error or "No such file or directory" in error
    if data_dir:
        try:
            exists = os.path.exists(os.path.join(data_dir, "PG_VERSION"))
            postmaster = running(data_dir) if exists else None
        except (IOError, OSError) as exc:
            exists, postmaster = None, None
            error = "%s; its data directory %s could not be read (%s)" % (error, data_dir, first_line(exc))
        if exists is False and not os.path.exists(os.path.join(data_dir, "postmaster.pid")):
            return {"state": "absent", "receiver": None, "detail": "no cluster in %s" % data_dir}
        if postmaster:
            return {"state": "unreadable", "receiver": None,
                    "detail": "%s, yet a postmaster (pid %s) runs in %s" % (error, postmaster["pid"], data_dir)}
    if refused:
        return {"state": "stopped", "receiver": None, "detail": "not running (%s)" % error}
    return {"state": "unreadable", "receiver": None, "detail": error}


def read_dns(dns_params, target, rdtype="A", zone_factory=None):
    """{configured, values, here, error}: what the API's name answers, read from its
    authoritative side, and whether that is this site's address (`target`)."""
    if not dns_params or not dns_params.get("record") or not target:
        return {"configured": False, "values": [], "here": False, "error": None}
    if zone_factory is None:
        from ansible_collections.auditron.dr.plugins.module_utils import dnsswitch  # pylint: disable=import-outside-toplevel
        zone_factory = dnsswitch.zone_from_params
    record = dns_params["record"]
    try:
        values = list(zone_factory(dns_params).read(record, rdtype)["values"])
    except Exception as exc:  # pylint: disable=broad-except
        return {"configured": True, "values": [], "here": False, "record": record,
                "error": "the API's name %s could not be read: %s" % (record, first_line(exc))}
    wanted = str(target).strip().rstrip(".").lower()
    here = any(str(value).strip().rstrip(".").lower() == wanted for value in values)
    return {"configured": True, "values": values, "here": here, "record": record, "error": None}


def read_app(url, get, health_path="/health"):
    """{configured, healthy, detail}: whether the site's app answers its health check with 200."""
    if not url:
        return {"configured": False, "healthy": False, "detail": "no app url"}
    where = url.rstrip("/") + health_path
    try:
        status, _body = get(where)
    except Exception as exc:  # pylint: disable=broad-except
        return {"configured": True, "healthy": False, "detail": "GET %s: %s" % (where, first_line(exc))}
    return {"configured": True, "healthy": status == 200, "detail": "GET %s answered %s" % (where, status)}


def read_failover_state(path):
    """{recorded, completed, detail}: whether a failover to this site was recorded in its run
    journal (journal.py, the one reader of that file), and finished."""
    found, unreadable, _seen = journal.read_copies(path, [], "failover")
    if found is None and not unreadable:
        return {"recorded": False, "completed": False, "detail": "no failover recorded"}
    if found is None:
        # A journal that cannot be read may be a finished failover: not proof that none happened.
        return {"recorded": True, "completed": True,
                "detail": "failover journal could not be read (%s)" % "; ".join(unreadable)}
    completed = bool(found.get("completed"))
    return {"recorded": True, "completed": completed,
            "detail": "a failover %s recorded in %s" % ("completed" if completed else "in progress", path)}


def assess(database, dns, app, failover):
    """Whether the site serves, why, and what could not be read. A standby or a site with no
    cluster holds nothing a replacement would lose; any other site whose name answers it serves
    (a stopped primary the name still points at holds the only copy of what it took)."""
    state = database["state"]
    holds_data = state not in ("standby", "absent")
    reasons, unknown = [], []
    if state == "unreadable":
        unknown.append("its database: %s" % database["detail"])
    if dns["here"]:
        reasons.append("the API's name %s answers its address (%s)" % (dns.get("record"), ", ".join(dns["values"])))
    if state in ("primary", "unreadable") and app["healthy"] and failover["completed"]:
        reasons.append("its app answers (%s) after a failover to it (%s)" % (app["detail"], failover["detail"]))
    if dns["error"] and holds_data:
        unknown.append(dns["error"])
    return {"serving": holds_data and bool(reasons), "reasons": reasons, "unknown": unknown,
            "database": database, "dns": dns, "app": app, "failover": failover}


# ----------------------------------------------------------------------------------------------
# The decision
# ----------------------------------------------------------------------------------------------

def decide(action, caller, site, assessment, require_confirmation=True, confirmed=False,
           confirm_variable="confirm", check_mode=False, as_of="latest", production=False,
           replace_serving=False, replace_unreadable=False, replace_variables=("replace_serving", "replace_unreadable")):
    """{allowed, refusal, msg}. refusal is '' (allowed), 'serving', 'unreadable' or 'confirmation'.

    standby: a site that serves, or whose state is unknown, is never replaced unless the matching
    replace_* override is given (and the caller's confirmation, when required); otherwise only
    the confirmation is asked. restore_files: confirmation is needed when the site is the
    production site, serves, may serve (unknown), or is restored to an older point while its app
    answers. Check mode changes nothing, so it needs no confirmation, but still refuses a
    replacement the real run would refuse. read: never refuses (the caller decides on what was read)."""
    if action not in ACTIONS:
        raise DRError("gate action %s is not one of %s" % (action, ", ".join(ACTIONS)))
    if action == "read":  # what the site is, for a caller that decides itself (failback's re-run)
        return {"allowed": True, "refusal": "", "msg": "%s: %s" % (site, assessment["database"]["detail"])}
    head = "%s: nothing was changed." % caller
    database = assessment["database"]
    confirm_missing = require_confirmation and not confirmed and not check_mode
    if action == "standby":
        if assessment["unknown"] and not replace_unreadable:
            return _refuse("unreadable", "%s The state of %s could not be read (%s): a site whose state is unknown "
                           "is never replaced by a standby. Make it readable, or set %s=true (and %s=true) to "
                           "replace it anyway." % (head, site, "; ".join(assessment["unknown"]),
                                                   replace_variables[1], confirm_variable))
        if assessment["serving"] and not replace_serving:
            why = " and ".join(assessment["reasons"])
            return _refuse("serving", "%s %s serves: its database is %s and %s. Replacing it by a standby would "
                           "set aside the data it serves; fail back first (failback.yml), or set %s=true (and "
                           "%s=true) to replace it anyway." % (
                               head, site, database["detail"], why, replace_variables[0], confirm_variable))
        if confirm_missing:
            return _refuse("confirmation", "%s Replacing the data of %s (its database is %s) by a standby needs "
                           "%s=true." % (head, site, database["detail"], confirm_variable))
        return {"allowed": True, "refusal": "", "msg": "%s may be replaced by a standby: its database is %s" % (
            site, database["detail"])}
    why = list(assessment["reasons"])
    if production:
        why.insert(0, "it is the production site")
    why.extend("it may serve: %s" % item for item in assessment["unknown"])
    older = str(as_of or "latest") != "latest"
    if older and assessment["app"]["healthy"] and database["state"] != "standby":
        why.append("its app answers (%s) and the restore goes back to %s" % (assessment["app"]["detail"], as_of))
    if why and confirm_missing:
        return _refuse("confirmation", "%s Restoring the file storage of %s (as of %s) overwrites objects of a "
                       "site that serves or may serve (%s): it needs %s=true." % (
                           head, site, as_of or "latest", "; ".join(why), confirm_variable))
    if not why:
        return {"allowed": True, "refusal": "", "msg": "%s does not serve: no confirmation needed" % site}
    return {"allowed": True, "refusal": "", "msg": "%s: %s (%s)" % (
        site, "; ".join(why), "confirmed" if confirmed else "confirmation not required here")}


def _refuse(kind, msg):
    return {"allowed": False, "refusal": kind, "msg": msg}


def gate(params, get, check_mode=False, connect=pg.connect, zone_factory=None):
    """Read the site, decide, and raise a DRError with the one message when the run may not go on."""
    database = read_database(params["postgres"], params.get("data_dir"), connect=connect)
    dns = read_dns(params.get("dns"), params.get("dns_target"), params.get("dns_type") or "A",
                   zone_factory=zone_factory)
    app = read_app(params.get("app_url"), get, params.get("app_health_path") or "/health")
    failover = read_failover_state(params.get("failover_state_file"))
    seen = assess(database, dns, app, failover)
    decision = decide(params["action"], params["caller"], params["site"], seen,
                      require_confirmation=params["require_confirmation"], confirmed=params["confirmed"],
                      confirm_variable=params["confirm_variable"], check_mode=check_mode,
                      as_of=params.get("as_of"), production=params.get("production"),
                      replace_serving=params.get("replace_serving"), replace_unreadable=params.get("replace_unreadable"),
                      replace_variables=(params.get("replace_serving_variable") or "replace_serving",
                                         params.get("replace_unreadable_variable") or "replace_unreadable"))
    result = {"changed": False, "allowed": decision["allowed"], "refusal": decision["refusal"],
              "serving": seen["serving"], "reasons": seen["reasons"], "unknown": seen["unknown"],
              "database": database, "dns": dns, "app": app, "failover": failover}
    if not decision["allowed"]:
        raise DRError(decision["msg"], **result)
    result["msg"] = decision["msg"]
    return result
