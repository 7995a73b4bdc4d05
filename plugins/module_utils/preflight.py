# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preflight: check, per site, everything a recovery will need before it is needed.

Each check returns a row {check, site, result, required, detail}; nothing here raises for a
failed check — a failing check is an answer, and the table shows every answer at once.
Nothing is changed: object-store probes write an object and remove it (skipped in check
mode), the DNS check is a prerequisite-only update, the KMS check makes a data key and
throws it away.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import time

from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.urls import open_url

from ansible_collections.auditron.dr.plugins.module_utils import aws, checkrow, dnsops, pg
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, first_line
from ansible_collections.auditron.dr.plugins.module_utils.storage import location_from_params


def row(check, site, ok, detail, required=True, skipped=False):
    return checkrow.make(check, ok, detail, skipped=skipped, site=site, required=bool(required))


def check_postgres(site, params, expected_role=None):
    """The database's row, and its role: primary, standby, or None when it does not answer."""
    try:
        conn = pg.connect(params)
    except DRError as exc:
        return row("database", site, False, exc.message), None
    try:
        facts = pg.server_facts(conn)
    finally:
        conn.close()
    detail = "PostgreSQL %s, %s, %d MB, system id %s" % (
        facts["server_version"], facts["role"], facts["database_bytes"] // 1000000, facts["system_identifier"])
    if expected_role and expected_role != "any" and facts["role"] != expected_role:
        return row("database", site, False, "%s (expected %s)" % (detail, expected_role)), facts["role"]
    return row("database", site, True, detail), facts["role"]


def check_location(site, params, write, label="object store"):
    name = params.get("name") or params.get("bucket") or "location"
    check = "%s %s" % (label, name)
    try:
        location = location_from_params(params, max_attempts=2, connect_timeout=3, read_timeout=10)
        if location.kind == "s3":
            location.check_bucket()
    except DRError as exc:
        return row(check, site, False, exc.message)
    probe = location.probe(write=write)
    return row(check, site, probe["ok"], "%s: %s" % (location.describe(), probe["detail"]))


def check_kms(site, key_id, aws_params):
    check = "kms key"
    if not key_id:
        return row(check, site, False, "no KMS key id configured")
    try:
        kms = aws.client("kms", aws_params, max_attempts=2)
        described = kms.describe_key(KeyId=key_id)["KeyMetadata"]
        if described.get("KeyState") != "Enabled":
            return row(check, site, False, "key %s is %s" % (key_id, described.get("KeyState")))
        context = {"purpose": "auditron-dr-preflight"}
        data_key = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", EncryptionContext=context)
        plain = kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"], EncryptionContext=context)["Plaintext"]
        if plain != data_key["Plaintext"]:
            return row(check, site, False, "key %s: a data key did not decrypt to itself" % key_id)
    except Exception as exc:  # pylint: disable=broad-except
        error = exc if isinstance(exc, DRError) else aws.describe_error("kms", aws_params, exc, key_id)
        return row(check, site, False, error.message)
    return row(check, site, True, "key %s enabled; data key made and unwrapped at %s"
               % (key_id, aws.endpoint_label("kms", aws_params)))


def check_dns(site, params):
    provider = params.get("provider") or "rfc2136"
    record = params.get("record")
    if provider == "route53":
        return check_route53(site, params)
    check = "dns rfc2136"
    try:
        zone = dnsops.Rfc2136(params.get("server"), params.get("zone"), port=params.get("port") or 53,
                              tsig_key_file=params.get("tsig_key_file"), tsig_key_name=params.get("tsig_key_name"),
                              tsig_secret=params.get("tsig_secret"),
                              tsig_algorithm=params.get("tsig_algorithm") or "hmac-sha256")
        ttl, values = zone.lookup(record)
        zone.check_update_allowed(record)
    except DRError as exc:
        return row(check, site, False, exc.message)
    return row(check, site, True, "%s A %s (TTL %s) at %s:%s; update with key %s allowed (nothing changed)"
               % (record, ",".join(values) or "none", ttl, params.get("server"), params.get("port"), zone.key_name))


def check_route53(site, params):
    check = "dns route53"
    route53 = params.get("route53") or {}
    zone_id = route53.get("zone_id")
    record = params.get("record")
    aws_params = route53
    if not zone_id:
        return row(check, site, False, "no Route53 hosted zone id configured")
    try:
        client = aws.client("route53", aws_params, max_attempts=2)
        sets = client.list_resource_record_sets(HostedZoneId=zone_id, StartRecordName=record,
                                                StartRecordType="A", MaxItems="1")["ResourceRecordSets"]
    except Exception as exc:  # pylint: disable=broad-except
        return row(check, site, False, aws.describe_error("route53", aws_params, exc, zone_id).message)
    found = [s for s in sets if s["Name"].rstrip(".") == record.rstrip(".")]
    if not found:
        return row(check, site, False, "zone %s has no record %s" % (zone_id, record))
    values = [r["Value"] for r in found[0].get("ResourceRecords", [])]
    detail = "%s A %s (TTL %s) in hosted zone %s" % (record, ",".join(values), found[0].get("TTL"), zone_id)
    return row(check, site, True, detail)


def http_get(url, token=None, ca_bundle=None, timeout=5.0):
    """GET with ansible's open_url (proxies, TLS verification against ca_bundle)."""
    headers = {"Authorization": "Bearer %s" % token} if token else {}
    started = time.time()
    try:
        response = open_url(url, headers=headers, timeout=timeout, ca_path=ca_bundle, validate_certs=True)
        status, body = response.status, response.read()
    except HTTPError as exc:
        status, body = exc.code, exc.read()
    return status, body, time.time() - started


def check_app(site, params):
    url = (params.get("url") or "").rstrip("/")
    check = "app health"
    if not url:
        return row(check, site, False, "no app url configured")
    try:
        status, body, took = http_get(url + "/health", ca_bundle=params.get("ca_bundle"),
                                      timeout=params.get("timeout") or 5)
    except (URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return row(check, site, False, "%s/health does not answer: %s" % (url, first_line(reason)))
    if status != 200:
        try:
            detail = json.loads(body.decode("utf-8", "replace")).get("checks")
        except ValueError:
            detail = body[:200]
        return row(check, site, False, "%s/health answered %s: %s" % (url, status, detail))
    return row(check, site, True, "%s/health 200 in %d ms" % (url, took * 1000))


def run(site, postgres=None, expected_role=None, locations=None, kms=None, dns=None, app=None,
        write_probes=True, optional_checks=None):
    """Every check's row, and the facts a recovery decides on (see `facts`)."""
    optional = set(optional_checks or [])
    rows, stores = [], []
    database_role = None
    if postgres:
        database_row, database_role = check_postgres(site, postgres, expected_role)
        rows.append(database_row)
    for item in locations or []:
        label = item.get("role") or "object store"
        store_row = check_location(site, item, write_probes, label=label)
        name = item.get("name") or item.get("bucket") or "location"
        if name in optional:
            store_row["required"] = False
        rows.append(store_row)
        stores.append({"name": name, "role": label, "check": store_row})
    if kms and kms.get("key_id"):
        rows.append(check_kms(site, kms["key_id"], kms))
    if dns:
        rows.append(check_dns(site, dns))
    if app:
        rows.append(check_app(site, app))
    for item in rows:
        if item["name"] in optional or item["name"].split(" ")[0] in optional:
            item["required"] = False
    return rows, facts(database_role, stores)


def facts(database_role, stores):
    """What a recovery decides on, so that no playbook reads it out of the rows' text.

    database_role: primary, standby, or None (not checked, or it did not answer); mode: warm when
    the database is a standby (it is promoted), cold otherwise (it is restored); stores: each
    location's name, role (object store, or the location's own role) and result.
    """
    return {"database_role": database_role,
            "mode": "warm" if database_role == "standby" else "cold",
            "stores": [{"name": store["name"], "role": store["role"], "result": store["check"]["result"]}
                       for store in stores]}


def failed_required(rows):
    return [r for r in rows if r["result"] == "failed" and r["required"]]


def format_table(rows):
    """A plain-text table: check, site, result, detail (one line per check)."""
    headers = ("CHECK", "SITE", "RESULT", "DETAIL")
    body = [(r["name"], r["site"], r["result"].upper() + ("" if r["required"] else " (optional)"), r["detail"])
            for r in rows]
    widths = [max([len(headers[i])] + [len(str(line[i])) for line in body]) for i in range(3)]
    lines = ["  ".join(headers[i].ljust(widths[i]) for i in range(3)) + "  " + headers[3]]
    lines.append("  ".join("-" * widths[i] for i in range(3)) + "  " + "-" * 6)
    for line in body:
        lines.append("  ".join(str(line[i]).ljust(widths[i]) for i in range(3)) + "  " + str(line[3]))
    return lines
