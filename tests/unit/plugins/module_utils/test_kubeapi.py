# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for module_utils/kubeapi.py, the Kubernetes API client of configuration backups:
paging, one-line errors, and what the real `kubernetes` client sends, against the stand-ins of
config_samples.py (not a cluster)."""

import importlib.util
import os

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import configbackup as cb
from ansible_collections.auditron.dr.plugins.module_utils import configrestore, kubeapi
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError

# Loaded by path, so that the tests do not depend on how tests/ is laid out as packages.
_SPEC = importlib.util.spec_from_file_location(
    "auditron_config_samples", os.path.join(os.path.dirname(os.path.abspath(__file__)), "config_samples.py"))
samples = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(samples)
key, stores, api_server = samples.key, samples.stores, samples.api_server  # fixtures


def test_kubernetes_lists_follow_continue_tokens(key, stores):
    objects = [("ConfigMap", {"metadata": {"name": "cm-%03d" % n, "namespace": "auditron"}, "data": {"n": str(n)}})
               for n in range(kubeapi.LIST_PAGE + 3)]
    core = samples.CoreV1ApiStandIn(objects)
    result = cb.backup(stores, key, kubernetes_params={"namespaces": ["auditron"], "kinds": ["ConfigMap"]},
                       kube_api=kubeapi.KubernetesApi(core))
    assert result["counts"]["ConfigMap"] == kubeapi.LIST_PAGE + 3
    assert [kwargs.get("_continue") for _m, _a, kwargs in core.calls] == [None, str(kubeapi.LIST_PAGE)]


def test_kubernetes_errors_are_one_line_naming_the_call():
    class Refusing(samples.CoreV1ApiStandIn):
        def list_namespaced_config_map(self, namespace, **kwargs):
            raise samples.ApiException(status=403, reason="Forbidden")

    with pytest.raises(DRError) as err:
        kubeapi.KubernetesApi(Refusing(), label="stand-in API").list("ConfigMap", "auditron")
    assert str(err.value) == "stand-in API: listing ConfigMaps in namespace auditron: HTTP 403, Forbidden"


def test_the_real_client_sends_what_the_engine_means(api_server, key, stores):
    params = dict(samples.KUBE_PARAMS, host=api_server.url, api_key="t0ken", request_timeout=5)
    result = cb.backup(stores, key, kubernetes_params=params)
    assert result["counts"]["total"] == 2
    assert [(r["method"], r["path"], r["query"]) for r in api_server.requests] == [
        ("GET", "/api/v1/namespaces/auditron/configmaps", {"labelSelector": "app=auditron", "limit": "250"}),
        ("GET", "/api/v1/namespaces/auditron/secrets", {"labelSelector": "app=auditron", "limit": "250"}),
    ]
    assert {r["authorization"] for r in api_server.requests} == {"Bearer t0ken"}

    api_server.requests[:] = []
    api_server.store.namespaces.add("auditron-dr")
    restore_params = {"host": api_server.url, "api_key": "t0ken", "namespace_map": {"auditron": "auditron-dr"}}
    configrestore.restore(stores, key, kubernetes_params=restore_params,
                          rewrite=[{"match": "db.primary.internal", "replace": "db.dr.internal"}])
    patches = [r for r in api_server.requests if r["method"] == "PATCH"]
    assert [(r["path"], r["query"], r["content_type"]) for r in patches] == [
        ("/api/v1/namespaces/auditron-dr/configmaps/auditron-api", {"fieldManager": "auditron-dr", "force": "true"},
         "application/apply-patch+yaml"),
        ("/api/v1/namespaces/auditron-dr/secrets/auditron-db", {"fieldManager": "auditron-dr", "force": "true"},
         "application/apply-patch+yaml"),
    ]
    assert patches[0]["body"]["data"]["DATABASE_URL"] == "postgresql://app@db.dr.internal:5432/auditron"
    assert patches[0]["body"]["metadata"] == {"name": "auditron-api", "namespace": "auditron-dr",
                                              "labels": {"app": "auditron"}, "annotations": {"team": "sre"}}


def test_an_api_server_that_does_not_answer_is_one_line(key, stores):
    with pytest.raises(DRError) as err:
        cb.backup(stores, key, kubernetes_params=dict(samples.KUBE_PARAMS, host="http://127.0.0.1:9", request_timeout=2))
    message = samples.one_line(err)
    assert message.startswith("kubernetes API http://127.0.0.1:9: listing ConfigMaps in namespace auditron: "
                              "the API server does not answer")
