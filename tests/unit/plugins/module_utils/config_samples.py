# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the configuration-backup unit tests share (test_configbackup, test_configrestore,
test_rewrite, test_kubeapi): a site's configuration and the rules that make it the DR site's,
the fixtures (key file, two local locations, the app's config file), and the two Kubernetes
stand-ins - CoreV1ApiStandIn, which records every call after binding its arguments to the
real CoreV1Api method's signature, and KubeApiServerStandIn, a small HTTP server the real
`kubernetes` client talks to, recording each request (method, path, query, headers, body).
Neither is a cluster: they check what this code reads and sends, not how an API server
answers it. Not a test module itself: the tests load it by path.
"""

import base64
import copy
import http.server
import inspect
import json
import os
import urllib.parse

import pytest

from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import generate_key_file
from tests.helpers.http_stub import ServedOnLoopback

# Without the client the stand-ins cannot be built: every test module that loads this is skipped.
kubernetes = pytest.importorskip("kubernetes")
from kubernetes.client.exceptions import ApiException  # noqa: E402  pylint: disable=wrong-import-position


APP_CONFIG = {
    "site": "primary",
    "listen": ["127.0.0.11", 58080],
    "token": "tok-123",
    "postgres": {"host": "127.0.0.1", "port": 55432, "user": "postgres", "password": "pw-primary",
                 "database": "auditron", "socket_dir": "/srv/lab/pg/primary/run"},
    "object_store": {"endpoint": "https://localhost:55901", "access_key": "AKPRIMARY", "secret_key": "sk-primary",
                     "bucket": "auditron-files", "ca_file": "/srv/lab/tls/ca.crt"},
}


DR_RULES = [
    {"path": "site", "value": "dr"},
    {"match": "127.0.0.11", "replace": "127.0.0.12", "whole": True},
    {"match": 55432, "replace": 55433},
    {"match": "/srv/lab/pg/primary/run", "replace": "/srv/lab/pg/dr/run", "whole": True},
    {"match": "https://localhost:55901", "replace": "https://localhost:55902", "whole": True},
]


DR_SECRET_RULES = [
    {"match": "pw-primary", "replace": "pw-dr", "whole": True},
    {"match": "AKPRIMARY", "replace": "AKDR", "whole": True},
    {"match": "sk-primary", "replace": "sk-dr", "whole": True},
]


def dr_config():
    config = copy.deepcopy(APP_CONFIG)
    config["site"] = "dr"
    config["listen"][0] = "127.0.0.12"
    config["postgres"].update(port=55433, password="pw-dr", socket_dir="/srv/lab/pg/dr/run")
    config["object_store"].update(endpoint="https://localhost:55902", access_key="AKDR", secret_key="sk-dr")
    return config


@pytest.fixture
def key(tmp_path):
    path = tmp_path / "keys" / "config.key"
    path.parent.mkdir()
    generate_key_file(str(path))
    return {"key_source": "file", "key_file": str(path)}


@pytest.fixture
def stores(tmp_path):
    return [{"name": "local", "type": "local", "path": str(tmp_path / "disk")},
            {"name": "second", "type": "local", "path": str(tmp_path / "second")}]


@pytest.fixture
def app_file(tmp_path):
    path = tmp_path / "site" / "app" / "primary.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(APP_CONFIG, indent=2))
    os.chmod(path, 0o600)
    return str(path)


def bundle_file(root, name, backup_id, suffix=".json.enc"):
    return os.path.join(str(root), name, "config", backup_id + suffix)


def one_line(exc_info):
    message = str(exc_info.value)
    assert "\n" not in message
    return message


class RawResponseStandIn(object):
    """What CoreV1Api returns with _preload_content=False: a urllib3 response's .data."""

    def __init__(self, document):
        self.data = json.dumps(document).encode()
        self.released = False

    def release_conn(self):
        self.released = True


def _labels_match(labels, selector):
    if not selector:
        return True
    for term in selector.split(","):
        name, _sep, value = term.partition("=")
        if (labels or {}).get(name.strip()) != value.strip():
            return False
    return True


class CoreV1ApiStandIn(object):
    """A stand-in for kubernetes.client.CoreV1Api - NOT a cluster. Objects live in a dict; every
    call is checked against the real CoreV1Api method's signature, then recorded in `calls`.
    Server-side apply is imitated only as far as these tests need: the applied fields replace
    the stored ones."""

    def __init__(self, objects=(), namespaces=("auditron",)):
        self.objects = {}
        for kind, raw in objects:
            self.objects[(kind, raw["metadata"]["namespace"], raw["metadata"]["name"])] = copy.deepcopy(raw)
        self.namespaces = set(namespaces)
        self.calls = []

    def _record(self, method, *args, **kwargs):
        real = getattr(kubernetes.client.CoreV1Api, method)
        inspect.signature(real).bind(None, *args, **kwargs)  # TypeError if the real client has no such argument
        self.calls.append((method, args, kwargs))

    def _list(self, method, kind, namespace, **kwargs):
        self._record(method, namespace, **kwargs)
        if namespace not in self.namespaces:
            raise ApiException(status=404, reason="Not Found")
        items = [copy.deepcopy(raw) for (k, ns, _n), raw in sorted(self.objects.items())
                 if k == kind and ns == namespace and _labels_match(raw["metadata"].get("labels"),
                                                                    kwargs.get("label_selector"))]
        start = int(kwargs.get("_continue") or 0)
        limit = kwargs.get("limit") or len(items)
        page = items[start:start + limit]
        more = start + limit < len(items)
        for item in page:  # list items carry neither kind nor apiVersion, as on a real server
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return RawResponseStandIn({"kind": kind + "List", "apiVersion": "v1", "items": page,
                                   "metadata": {"continue": str(start + limit)} if more else {}})

    def _read(self, method, kind, name, namespace, **kwargs):
        self._record(method, name, namespace, **kwargs)
        raw = self.objects.get((kind, namespace, name))
        if raw is None:
            raise ApiException(status=404, reason="Not Found")
        return RawResponseStandIn(raw)

    def _patch(self, method, kind, name, namespace, body, **kwargs):
        self._record(method, name, namespace, body, **kwargs)
        if namespace not in self.namespaces:
            raise ApiException(status=404, reason="Not Found")
        stored = copy.deepcopy(self.objects.get((kind, namespace, name)) or {"metadata": {"uid": "new-uid"}})
        for field, value in body.items():
            if field == "metadata":
                stored["metadata"].update(copy.deepcopy(value))
            else:
                stored[field] = copy.deepcopy(value)
        self.objects[(kind, namespace, name)] = stored
        return RawResponseStandIn(stored)

    def list_namespaced_config_map(self, namespace, **kwargs):
        return self._list("list_namespaced_config_map", "ConfigMap", namespace, **kwargs)

    def list_namespaced_secret(self, namespace, **kwargs):
        return self._list("list_namespaced_secret", "Secret", namespace, **kwargs)

    def read_namespaced_config_map(self, name, namespace, **kwargs):
        return self._read("read_namespaced_config_map", "ConfigMap", name, namespace, **kwargs)

    def read_namespaced_secret(self, name, namespace, **kwargs):
        return self._read("read_namespaced_secret", "Secret", name, namespace, **kwargs)

    def patch_namespaced_config_map(self, name, namespace, body, **kwargs):
        return self._patch("patch_namespaced_config_map", "ConfigMap", name, namespace, body, **kwargs)

    def patch_namespaced_secret(self, name, namespace, body, **kwargs):
        return self._patch("patch_namespaced_secret", "Secret", name, namespace, body, **kwargs)

    def read_namespace(self, name, **kwargs):
        self._record("read_namespace", name, **kwargs)
        if name not in self.namespaces:
            raise ApiException(status=404, reason="Not Found")
        return RawResponseStandIn({"kind": "Namespace", "metadata": {"name": name}})


def b64(text):
    return base64.b64encode(text.encode()).decode()


def live_objects():
    server_set = {"uid": "3f1c", "resourceVersion": "81234", "creationTimestamp": "2026-11-20T10:00:00Z",
                  "managedFields": [{"manager": "kubectl", "operation": "Apply"}], "generation": 1}
    app = {"kind": "ConfigMap", "apiVersion": "v1",
           "metadata": dict(server_set, name="auditron-api", namespace="auditron", labels={"app": "auditron"},
                            annotations={"kubectl.kubernetes.io/last-applied-configuration": "{...}",
                                         "team": "sre"}),
           "data": {"DATABASE_URL": "postgresql://app@db.primary.internal:5432/auditron", "LOG_LEVEL": "info"}}
    secret = {"kind": "Secret", "apiVersion": "v1", "type": "Opaque",
              "metadata": dict(server_set, name="auditron-db", namespace="auditron", labels={"app": "auditron"}),
              "data": {"password": b64("pw-primary"), "blob": base64.b64encode(b"\xff\xfe\x00").decode()}}
    token = {"kind": "Secret", "type": "kubernetes.io/service-account-token",
             "metadata": dict(server_set, name="default-token-abcde", namespace="auditron",
                              labels={"app": "auditron"}), "data": {"token": b64("jwt")}}
    root_ca = {"kind": "ConfigMap", "metadata": dict(server_set, name="kube-root-ca.crt", namespace="auditron",
                                                     labels={"app": "auditron"}), "data": {"ca.crt": "PEM"}}
    owned = {"kind": "Secret", "type": "kubernetes.io/tls",
             "metadata": dict(server_set, name="api-tls", namespace="auditron", labels={"app": "auditron"},
                              ownerReferences=[{"kind": "Certificate", "name": "api", "uid": "77"}]),
             "data": {"tls.crt": b64("C"), "tls.key": b64("K")}}
    other = {"kind": "ConfigMap", "metadata": dict(server_set, name="unrelated", namespace="auditron",
                                                   labels={"app": "other"}), "data": {"x": "1"}}
    return [("ConfigMap", app), ("Secret", secret), ("Secret", token), ("ConfigMap", root_ca),
            ("Secret", owned), ("ConfigMap", other)]


KUBE_PARAMS = {"namespaces": ["auditron"], "label_selector": "app=auditron"}


class KubeApiServerStandIn(object):
    """A small HTTP server on 127.0.0.1 answering the few paths this engine uses, from a
    CoreV1ApiStandIn's store, and recording every request the real client sends."""

    def __init__(self, objects):
        self.store = CoreV1ApiStandIn(objects)
        self.requests = []
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # pylint: disable=arguments-differ
                pass

            def _answer(self, status, document):
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self):
                url = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                query = dict(urllib.parse.parse_qsl(url.query))
                stand_in.requests.append({"method": self.command, "path": url.path, "query": query,
                                          "content_type": self.headers.get("Content-Type"),
                                          "authorization": self.headers.get("Authorization"),
                                          "body": json.loads(body) if body else None})
                parts = url.path.strip("/").split("/")  # api v1 namespaces <ns> [<plural> [<name>]]
                kinds = {"configmaps": "ConfigMap", "secrets": "Secret"}
                try:
                    if len(parts) == 4:
                        answer = stand_in.store.read_namespace(parts[3])
                    elif len(parts) == 5 and self.command == "GET":
                        kind = kinds[parts[4]]
                        answer = stand_in.store._list(  # pylint: disable=protected-access
                            "list_namespaced_" + ("config_map" if kind == "ConfigMap" else "secret"), kind, parts[3],
                            limit=int(query.get("limit", 0)) or None, label_selector=query.get("labelSelector"),
                            _continue=query.get("continue"))
                    elif self.command == "GET":
                        kind = kinds[parts[4]]
                        answer = stand_in.store._read(  # pylint: disable=protected-access
                            "read_namespaced_" + ("config_map" if kind == "ConfigMap" else "secret"), kind, parts[5],
                            parts[3])
                    else:
                        kind = kinds[parts[4]]
                        answer = stand_in.store._patch(  # pylint: disable=protected-access
                            "patch_namespaced_" + ("config_map" if kind == "ConfigMap" else "secret"), kind, parts[5],
                            parts[3], json.loads(body))
                except ApiException as exc:
                    self._answer(exc.status, {"kind": "Status", "status": "Failure", "code": exc.status,
                                              "message": "%s not found" % url.path, "reason": "NotFound"})
                    return
                self._answer(200, json.loads(answer.data))

            do_GET = _handle
            do_PATCH = _handle

        self.served = ServedOnLoopback(Handler)
        self.url = self.served.url

    def close(self):
        self.served.close()


@pytest.fixture
def api_server():
    server = KubeApiServerStandIn(live_objects())
    yield server
    server.close()
