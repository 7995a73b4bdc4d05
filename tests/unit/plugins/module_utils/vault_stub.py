# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A stand-in for HashiCorp Vault's transit engine, NOT Vault: just enough HTTP for crypto tests.

No Vault server exists in this environment, so VaultTransitProvider is tested against this
small stdlib http.server on 127.0.0.1 (random port). It implements only

    POST /v1/<mount>/datakey/plaintext/<name>   {"bits": 256[, "context": base64]}
    POST /v1/<mount>/decrypt/<name>             {"ciphertext": "vault:v1:..."[, "context": base64]}

checks X-Vault-Token, really wraps data keys (AES-GCM under a per-key secret, the context as
AAD, so a wrong context fails as it does in Vault), and records every request (path,
headers, JSON body) so tests can assert exactly what the provider sends. Error bodies have
Vault's shape ({"errors": [...]}) and roughly its wording; behaviour beyond that (policies,
key rotation, convergent encryption, batch input) is not imitated. The opt-in test in
test_keyproviders.py runs the same provider against a real Vault.
"""

import base64
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class _Server(ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class VaultTransitStandIn(object):
    """Start with `with VaultTransitStandIn(token=..., keys={"name": {"derived": False}}) as vault:`.

    vault.url: base address; vault.requests: list of {"path", "headers", "json"};
    vault.fail_next: HTTP statuses to answer (in order) before behaving normally.
    """

    def __init__(self, token="stand-in-token", keys=None, mount="transit"):
        self.token = token
        self.mount = mount.strip("/")
        self.keys = {}
        for name, options in (keys or {"auditron-backups": {}}).items():
            self.keys[name] = {"secret": AESGCM.generate_key(256), "derived": bool(options.get("derived"))}
        self.requests = []
        self.fail_next = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self.url = "http://127.0.0.1:%d" % self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="vault-stand-in", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        return False

    # -- transit, as far as the tests need it ------------------------------------------------

    def handle(self, path, headers, body):
        """(status, JSON document) for one request."""
        with self._lock:
            self.requests.append({"path": path, "headers": {name.lower(): value for name, value in headers.items()},
                                  "json": body})
            if self.fail_next:
                return self.fail_next.pop(0), {"errors": ["stand-in told to fail"]}
        if headers.get("X-Vault-Token") != self.token:
            return 403, {"errors": ["permission denied"]}
        prefix = "/v1/%s/" % self.mount
        if not path.startswith(prefix) or not isinstance(body, dict):
            return 404, {"errors": []}
        action, name = path[len(prefix):].rsplit("/", 1) if "/" in path[len(prefix):] else ("", path[len(prefix):])
        key = self.keys.get(name)
        if action not in ("datakey/plaintext", "decrypt"):
            return 404, {"errors": []}
        if key is None:
            return 400, {"errors": ["encryption key not found"]}
        context = b""
        if key["derived"]:
            if not body.get("context"):
                return 400, {"errors": ["missing 'context' for key derivation"]}
            context = base64.b64decode(body["context"])
        elif body.get("context"):
            return 400, {"errors": ["key is not derived: context must not be given (stand-in rule)"]}
        sealer = AESGCM(key["secret"])
        if action == "datakey/plaintext":
            if body.get("bits", 256) != 256:
                return 400, {"errors": ["invalid bits"]}
            plaintext = os.urandom(32)
            nonce = os.urandom(12)
            ciphertext = "vault:v1:" + base64.b64encode(nonce + sealer.encrypt(nonce, plaintext, context)).decode()
            return 200, {"data": {"plaintext": base64.b64encode(plaintext).decode(), "ciphertext": ciphertext,
                                  "key_version": 1}}
        ciphertext = body.get("ciphertext") or ""
        if not ciphertext.startswith("vault:v1:"):
            return 400, {"errors": ["invalid ciphertext: no prefix"]}
        raw = base64.b64decode(ciphertext[len("vault:v1:"):])
        try:
            plaintext = sealer.decrypt(raw[:12], raw[12:], context)
        except InvalidTag:
            return 400, {"errors": ["cipher: message authentication failed"]}
        return 200, {"data": {"plaintext": base64.b64encode(plaintext).decode()}}

    def _handler_class(self):
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # pylint: disable=invalid-name
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw.decode("utf-8")) if raw else None
                except ValueError:
                    body = None
                status, document = stand_in.handle(self.path, self.headers, body)
                payload = json.dumps(document).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):  # keep test output clean
                pass

        return Handler
