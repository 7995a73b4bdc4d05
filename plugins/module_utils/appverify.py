# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan's "Verify Application" step done properly: health, and data consistent with the database.

`verify_app` retries until /health answers 200 and /api/invoices (bearer token) serves what the
database holds (count, max id, newest createdAt), or a timeout; it returns check rows for the
timeline. Whatever runs the app (platform.py) does not matter here.

Plain Python: no Ansible module object in here; errors are DRError with one line naming the app.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import time

from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.urls import open_url

from ansible_collections.auditron.dr.plugins.module_utils import pg
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, first_line, format_time, parse_time, utc_now
from ansible_collections.auditron.dr.plugins.module_utils.platform import int_or_none


def http_get(url, token=None, ca_bundle=None, validate_certs=True, timeout=5.0):
    """(status, body bytes) of a GET with ansible's open_url; HTTP errors are answers too."""
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = "Bearer %s" % token
    try:
        response = open_url(url, headers=headers, timeout=timeout, ca_path=ca_bundle or None,
                            validate_certs=validate_certs)
        return response.getcode(), response.read()
    except HTTPError as exc:
        return exc.code, exc.read()


def _json_or_none(body):
    try:
        return json.loads(body.decode("utf-8", "replace"))
    except (ValueError, AttributeError):
        return None


def database_snapshot(postgres, db, table, schema="public", id_column="id", created_column="createdAt"):
    """count(*), max(id), max(createdAt) of the table, as the app should serve them."""
    sql = "SELECT count(*), max(%s), max(%s) FROM %s.%s" % (
        pg.quote_ident(id_column), pg.quote_ident(created_column), pg.quote_ident(schema), pg.quote_ident(table))
    conn = pg.connect(postgres, database=db)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            count, max_id, max_created = cur.fetchone()
    finally:
        conn.close()
    return {"count": count, "max_id": max_id, "max_createdAt": max_created}


def _same_id(app_value, db_value):
    if app_value is None or db_value is None:
        return app_value is None and db_value is None
    a_int, d_int = int_or_none(app_value), int_or_none(db_value)
    if a_int is not None and d_int is not None:
        return a_int == d_int
    return str(app_value) == str(db_value)


def _same_time(app_value, db_value, tolerance):
    if app_value is None or db_value is None:
        return app_value is None and db_value is None
    try:
        delta = parse_time(app_value, "max_createdAt") - parse_time(db_value, "max_createdAt")
    except DRError:
        return False
    return abs(delta.total_seconds()) <= tolerance


def compare_data(app, database, fields, tolerance=0.001):
    """Names of the fields where what the app serves differs from the database."""
    differ = []
    for field in fields:
        if field == "count":
            same = int_or_none(app.get("count")) == int_or_none(database["count"])
        elif field == "max_id":
            same = _same_id(app.get("max_id"), database["max_id"])
        else:
            same = _same_time(app.get("max_createdAt"), database["max_createdAt"], tolerance)
        if not same:
            differ.append(field)
    return differ


def _plain(value):
    """A timestamp (datetime or text) as the reports write time; anything else unchanged."""
    if value is None or isinstance(value, (int, float)):
        return value
    try:
        return format_time(parse_time(value))
    except DRError:
        return value


def _data_line(values):
    return "count %s, max id %s, newest createdAt %s" % (
        values.get("count"), values.get("max_id"), _plain(values.get("max_createdAt")))


class _Unrecoverable(Exception):
    """An answer no retry will change (a refused token): stop at once."""


def verify_app(site, url, token=None, postgres=None, db="auditron", table="Invoice", schema="public",
               id_column="id", created_column="createdAt", compare=("count", "max_id", "max_createdAt"),
               check_data=True, health_path="/health", invoices_path="/api/invoices", ca_bundle=None,
               validate_certs=True, timeout=120.0, interval=2.0, request_timeout=5.0, tolerance=0.001,
               mark_service_restored=True, progress=None, sleep=time.sleep, clock=time.monotonic):
    """Retry until /health answers 200 and /api/invoices serves what the database holds.

    The database is read just before and just after the request; the app's answer is
    consistent when it matches either (writes may land in between). Returns the module result
    with `dr_report.checks` (and `dr_report.markers.service_restored` when asked)."""
    base = (url or "").rstrip("/")
    if not base:
        raise DRError("app %s: no url to verify" % site)
    if check_data and not token:
        raise DRError("app %s: checking /api/invoices needs the bearer token (auditron_dr_app.token)" % site)
    what = "app %s at %s" % (site, base)
    started = clock()
    deadline = started + float(timeout)
    attempts = 0
    history = []
    health_row = {"name": "app health (%s)" % site, "result": "failed", "detail": "not reached"}
    data_row = {"name": "app data (%s)" % site, "result": "failed", "detail": "not reached"}
    found = {}

    def note(line):
        history.append("attempt %d: %s" % (attempts, line))
        del history[:-10]
        if progress:
            progress("%s: %s" % (what, line))

    while True:
        attempts += 1
        try:
            passed = _verify_once(base, token, postgres, db, table, schema, id_column, created_column, compare,
                                  check_data, health_path, invoices_path, ca_bundle, validate_certs,
                                  request_timeout, tolerance, health_row, data_row, found)
        except _Unrecoverable as exc:
            note(str(exc))
            raise DRError("%s: %s" % (what, exc), checks=[health_row, data_row] if check_data else [health_row],
                          attempts=attempts, history=history,
                          dr_report={"checks": [health_row, data_row] if check_data else [health_row]})
        if passed:
            break
        note(data_row["detail"] if health_row["result"] == "ok" else health_row["detail"])
        if clock() >= deadline:
            rows = [health_row, data_row] if check_data else [health_row]
            last = health_row["detail"] if health_row["result"] != "ok" else data_row["detail"]
            raise DRError("%s: not verified within %d s (%d attempts); last: %s" % (what, int(timeout), attempts, last),
                          checks=rows, attempts=attempts, history=history, dr_report={"checks": rows})
        sleep(interval)

    rows = [health_row, data_row] if check_data else [health_row]
    result = {"changed": False, "passed": True, "checks": rows, "attempts": attempts,
              "elapsed": round(clock() - started, 3), "history": history, "health": found.get("health")}
    if check_data:
        result["data"] = {"app": found.get("app"), "database": found.get("database")}
    result["dr_report"] = {"checks": rows}
    restored_at = format_time(utc_now())
    result["verified_at"] = restored_at
    if mark_service_restored:
        result["dr_report"]["markers"] = {"service_restored": restored_at}
    result["msg"] = "%s verified: %s" % (what, "; ".join(r["detail"] for r in rows))
    return result


def _verify_once(base, token, postgres, db, table, schema, id_column, created_column, compare, check_data,
                 health_path, invoices_path, ca_bundle, validate_certs, request_timeout, tolerance,
                 health_row, data_row, found):
    """One attempt; fills the two check rows and returns True when both pass."""
    health_url = base + health_path
    t0 = time.time()
    try:
        status, body = http_get(health_url, ca_bundle=ca_bundle, validate_certs=validate_certs,
                                timeout=request_timeout)
    except (URLError, OSError, ValueError) as exc:
        health_row.update(result="failed", detail="GET %s does not answer: %s"
                          % (health_url, first_line(getattr(exc, "reason", exc))))
        return False
    parsed = _json_or_none(body)
    found["health"] = {"status": status, "body": parsed}
    if status != 200:
        reason = parsed.get("checks") if isinstance(parsed, dict) and parsed.get("checks") else body[:200]
        health_row.update(result="failed", detail="GET %s answered %d: %s" % (health_url, status, reason))
        return False
    health_row.update(result="ok", detail="GET %s 200 in %d ms" % (health_url, (time.time() - t0) * 1000))
    if not check_data:
        return True

    data_url = base + invoices_path
    try:
        before = database_snapshot(postgres, db, table, schema, id_column, created_column)
    except DRError as exc:
        data_row.update(result="failed", detail="database: %s" % exc.message)
        return False
    try:
        status, body = http_get(data_url, token=token, ca_bundle=ca_bundle, validate_certs=validate_certs,
                                timeout=request_timeout)
    except (URLError, OSError, ValueError) as exc:
        data_row.update(result="failed", detail="GET %s does not answer: %s"
                        % (data_url, first_line(getattr(exc, "reason", exc))))
        return False
    if status in (401, 403):
        data_row.update(result="failed", detail="GET %s refused the bearer token (HTTP %d)" % (data_url, status))
        raise _Unrecoverable(data_row["detail"])
    served = _json_or_none(body)
    if status != 200:
        reason = served.get("error") if isinstance(served, dict) and served.get("error") else body[:200]
        data_row.update(result="failed", detail="GET %s answered %d: %s" % (data_url, status, reason))
        return False
    if not isinstance(served, dict) or any(field not in served for field in compare):
        data_row.update(result="failed", detail="GET %s did not return %s" % (data_url, ", ".join(compare)))
        return False
    try:
        after = database_snapshot(postgres, db, table, schema, id_column, created_column)
    except DRError as exc:
        data_row.update(result="failed", detail="database: %s" % exc.message)
        return False
    app_values = dict((k, served.get(k)) for k in ("count", "max_id", "max_createdAt"))
    found["app"] = app_values
    found["database"] = dict((k, _plain(v)) for k, v in after.items())
    invoices = served.get("invoices")
    if invoices is not None and (not isinstance(invoices, list) or (bool(invoices) != bool(int_or_none(
            served.get("count"))))):
        data_row.update(result="failed", detail="GET %s: the invoices list does not match count %s"
                        % (data_url, served.get("count")))
        return False
    differ_before = compare_data(app_values, before, compare, tolerance)
    differ_after = compare_data(app_values, after, compare, tolerance)
    if differ_before and differ_after:
        data_row.update(result="failed", detail="GET %s serves %s but database %s.%s holds %s (differs: %s)" % (
            data_url, _data_line(app_values), db, pg.quote_ident(table), _data_line(after), ", ".join(differ_after)))
        return False
    data_row.update(result="ok", detail="GET %s serves %s, as database %s.%s holds" % (
        data_url, _data_line(app_values), db, pg.quote_ident(table)))
    return True
