"""The AUDITRON API stand-in: one per lab site, reading that site's database and object store.

GET /health        200 when the site's database and object store both answer, else 503
                   with what failed.
GET /api/invoices  bearer token required; the latest invoices from the site's database, with
                   the total count and the newest "createdAt", so tests and the verify phase
                   can compare what the app serves with what the database holds.

Run as a script by the venv's python (the lab's server user may not read the repository's
directories, only this file).
"""

import argparse
import datetime
import decimal
import hmac
import json
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import boto3
import psycopg2
from botocore.config import Config


def _json_default(value):
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    raise TypeError(type(value).__name__)


class App:
    def __init__(self, cfg):
        self.cfg = cfg
        store = cfg["object_store"]
        self.s3 = boto3.client(
            "s3", endpoint_url=store["endpoint"], aws_access_key_id=store["access_key"],
            aws_secret_access_key=store["secret_key"], region_name="us-east-1", verify=store["ca_file"],
            config=Config(connect_timeout=2, read_timeout=3, retries={"max_attempts": 1, "mode": "standard"},
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required", s3={"addressing_style": "path"}))

    def connect(self):
        pg = self.cfg["postgres"]
        return psycopg2.connect(host=pg["host"], port=pg["port"], user=pg["user"], password=pg["password"],
                                dbname=pg["database"], connect_timeout=2, application_name="auditron-api")

    def health(self):
        checks = {}
        try:
            conn = self.connect()
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_is_in_recovery()")
                    checks["database"] = "ok (standby)" if cur.fetchone()[0] else "ok"
            finally:
                conn.close()
        except Exception as exc:  # pylint: disable=broad-except
            checks["database"] = f"error: {str(exc).strip().splitlines()[0]}"
        try:
            self.s3.head_bucket(Bucket=self.cfg["object_store"]["bucket"])
            checks["object_store"] = "ok"
        except Exception as exc:  # pylint: disable=broad-except
            checks["object_store"] = f"error: {exc}"
        healthy = all(value.startswith("ok") for value in checks.values())
        return (200 if healthy else 503), {"status": "ok" if healthy else "unavailable",
                                           "site": self.cfg["site"], "checks": checks}

    def invoices(self, query):
        try:
            limit = max(1, min(int(query.get("limit", ["20"])[0]), 1000))
        except ValueError:
            return 400, {"error": "limit must be an integer"}
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute('SELECT count(*), max(id), max("createdAt") FROM "Invoice"')
                count, max_id, max_created = cur.fetchone()
                cur.execute('SELECT id, "userId", number, "amountCents", currency, status, "createdAt" '
                            'FROM "Invoice" ORDER BY id DESC LIMIT %s', (limit,))
                names = [d[0] for d in cur.description]
                rows = [dict(zip(names, row)) for row in cur.fetchall()]
        finally:
            conn.close()
        return 200, {"site": self.cfg["site"], "count": count, "max_id": max_id,
                     "max_createdAt": max_created, "invoices": rows}


def make_handler(app):
    class Handler(BaseHTTPRequestHandler):
        server_version = "auditron-api-lab/1"

        def log_message(self, format, *args):  # pylint: disable=redefined-builtin
            # Quiet: the lab's logs should show failures, not every health probe.
            return

        def _send(self, status, body):
            data = json.dumps(body, default=_json_default).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # pylint: disable=invalid-name
            url = urlparse(self.path)
            try:
                if url.path == "/health":
                    self._send(*app.health())
                elif url.path == "/api/invoices":
                    header = self.headers.get("Authorization", "")
                    expected = f"Bearer {app.cfg['token']}"
                    if not hmac.compare_digest(header.encode(), expected.encode()):
                        self._send(401, {"error": "missing or wrong bearer token"})
                    else:
                        self._send(*app.invoices(parse_qs(url.query)))
                else:
                    self._send(404, {"error": "not found"})
            except Exception as exc:  # pylint: disable=broad-except
                self._send(503, {"error": str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})

    return Handler


def main():
    parser = argparse.ArgumentParser(description="AUDITRON API stand-in (lab)")
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    with open(args.config) as handle:
        cfg = json.load(handle)
    app = App(cfg)
    address, port = cfg["listen"]
    server = ThreadingHTTPServer((address, int(port)), make_handler(app))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"auditron-api ({cfg['site']}) listening on {address}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
