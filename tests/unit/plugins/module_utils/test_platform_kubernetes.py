"""The kubernetes platform without a cluster: every call it would send, recorded by
`RecordingK8sClient`, a stand-in for kubernetes.core's K8SClient (same methods: resources.get,
get, patch, apply) that keeps a few objects in memory and plays a very small Deployment
controller. It is not a cluster; the opt-in test in tests/integration/test_app_platform.py runs
against a real one.
"""

import copy

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import platform, platform_drivers, platform_kubernetes
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from tests.unit.plugins.module_utils.platform_fakes import FakeClock


# ---------------------------------------------------------------------------------------------
# kubernetes

class NotFound(Exception):
    """Like kubernetes.dynamic.exceptions.NotFoundError: status 404."""
    status = 404

    def summary(self):
        return "404 Not Found"


class FakeResource:
    def __init__(self, api_version, kind, namespaced=True):
        self.api_version, self.kind, self.namespaced = api_version, kind, namespaced


class FakeResources:
    CLUSTER_SCOPED = {"Namespace", "ClusterRole"}

    def __init__(self, calls):
        self.calls = calls

    def get(self, api_version, kind):
        return FakeResource(api_version, kind, namespaced=kind not in self.CLUSTER_SCOPED)


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch, as the API server applies application/merge-patch+json."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class RecordingK8sClient:
    """A stand-in for kubernetes.core's K8SClient: records calls, keeps objects in memory and
    moves a Deployment's status one pod per read toward its spec (a tiny controller)."""

    def __init__(self, replicas=3, annotations=None, exists=True, stuck_at=None, linger_polls=1):
        self.calls = []
        self.resources = FakeResources(self.calls)
        self.objects = {}
        self.version = 100
        self.stuck_at = stuck_at          # the controller never gets past this many ready pods
        self.linger_polls = linger_polls  # polls a terminating pod stays listed after status reaches 0
        self._lingering = 0
        self.pod_listings = []            # (status.replicas of the Deployment, pods listed)
        if exists:
            self.objects[("Deployment", "auditron", "auditron-api")] = {
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "auditron-api", "namespace": "auditron", "generation": 4,
                             "resourceVersion": "100", "annotations": dict(annotations or {})},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "auditron-api"}},
                         "template": {"metadata": {"labels": {"app": "auditron-api"}}}},
                "status": {"observedGeneration": 4, "replicas": replicas, "readyReplicas": replicas,
                           "updatedReplicas": replicas, "availableReplicas": replicas},
            }

    def _bump(self, obj):
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)

    def _reconcile(self, dep):
        want = dep["spec"].get("replicas", 1)
        status = dep.setdefault("status", {})
        have = status.get("replicas") or 0
        if have < want and (self.stuck_at is None or have < self.stuck_at):
            have += 1
        elif have > want:
            have -= 1
            if have == 0:
                self._lingering = self.linger_polls
        status.update(replicas=have, readyReplicas=have, updatedReplicas=have, availableReplicas=have,
                      observedGeneration=dep["metadata"]["generation"])

    def get(self, resource, name=None, namespace=None, label_selector=None):
        self.calls.append(("get", resource.kind, namespace, name or label_selector))
        if resource.kind == "Pod":
            dep = self.objects.get(("Deployment", "auditron", "auditron-api"))
            count = (dep["status"].get("replicas") or 0) if dep else 0
            status_replicas = count
            if count == 0 and self._lingering:
                self._lingering -= 1
                count = 1
            self.pod_listings.append((status_replicas, count))
            return {"kind": "PodList", "items": [{"metadata": {"name": "auditron-api-%d" % i}} for i in range(count)]}
        key = (resource.kind, namespace, name)
        if key not in self.objects:
            raise NotFound("%s %s not found" % (resource.kind, name))
        if resource.kind == "Deployment":
            self._reconcile(self.objects[key])
        return copy.deepcopy(self.objects[key])

    def patch(self, resource, body, name=None, namespace=None, content_type=None, field_manager=None):
        self.calls.append(("patch", resource.kind, namespace, name, copy.deepcopy(body), content_type, field_manager))
        key = (resource.kind, namespace, name)
        if key not in self.objects:
            raise NotFound(name)
        obj = merge_patch(self.objects[key], body)
        if body.get("spec"):
            obj["metadata"]["generation"] += 1
        self._bump(obj)
        self.objects[key] = obj
        return copy.deepcopy(obj)

    def apply(self, resource, definition, namespace, **params):
        self.calls.append(("apply", resource.kind, namespace, definition["metadata"]["name"],
                           copy.deepcopy(definition), dict(params)))
        key = (resource.kind, namespace if resource.namespaced else None, definition["metadata"]["name"])
        existing = self.objects.get(key)
        merged = merge_patch(existing or {}, definition)
        changed = existing is None or platform_kubernetes._comparable(existing) != platform_kubernetes._comparable(merged)
        if changed:
            merged.setdefault("metadata", {}).setdefault("generation", 0)
            merged["metadata"]["generation"] += 1
            if params.get("dry_run"):
                return merged
            self._bump(merged)
            self.objects[key] = merged
            return copy.deepcopy(merged)
        return copy.deepcopy(existing)

    def verbs(self):
        return [c[0] for c in self.calls]

    def patches(self):
        return [c for c in self.calls if c[0] == "patch"]


def k8s_driver(client, clock=None, **kwargs):
    clock = clock or FakeClock()
    return platform_kubernetes.KubernetesDriver("dr", client=client, timeout=60, interval=2, sleep=clock.sleep,
                                                clock=clock.clock, **kwargs)


def test_k8s_stop_annotates_and_scales_to_zero_in_one_merge_patch_then_waits_for_pods():
    client = RecordingK8sClient(replicas=3)
    result = platform.ensure(k8s_driver(client), "stopped")
    assert client.patches() == [("patch", "Deployment", "auditron", "auditron-api",
                                 {"metadata": {"annotations": {"auditron.dr/replicas-before-stop": "3"}},
                                  "spec": {"replicas": 0}},
                                 "application/merge-patch+json", "auditron.dr")]
    assert result["changed"] and result["previous_replicas"] == 3
    assert result["replicas"] == 0 and result["remembered_replicas"] == 3
    pod_lists = [c for c in client.calls if c[1] == "Pod"]
    assert pod_lists and pod_lists[0][3] == "app=auditron-api"
    # it waited past "status.replicas is 0" until the terminating pod was gone
    assert client.pod_listings[-2:] == [(0, 1), (0, 0)]


def test_k8s_start_restores_the_annotation_count_and_removes_it():
    client = RecordingK8sClient(replicas=0, annotations={"auditron.dr/replicas-before-stop": "5"})
    result = platform.ensure(k8s_driver(client), "started")
    assert client.patches()[0][4] == {"spec": {"replicas": 5},
                                      "metadata": {"annotations": {"auditron.dr/replicas-before-stop": None}}}
    assert result["changed"] and result["replicas"] == 5 and result["remembered_replicas"] is None
    dep = client.objects[("Deployment", "auditron", "auditron-api")]
    assert dep["status"]["readyReplicas"] == 5
    assert "auditron.dr/replicas-before-stop" not in dep["metadata"]["annotations"]


def test_k8s_stop_then_start_round_trip_keeps_the_count():
    client = RecordingK8sClient(replicas=4)
    assert platform.ensure(k8s_driver(client), "stopped")["previous_replicas"] == 4
    second = platform.ensure(k8s_driver(client), "stopped")
    assert not second["changed"] and second["previous_replicas"] == 4
    assert len(client.patches()) == 1
    started = platform.ensure(k8s_driver(client), "started")
    assert started["replicas"] == 4
    again = platform.ensure(k8s_driver(client), "started")
    assert not again["changed"] and len(client.patches()) == 2


def test_k8s_explicit_replicas_win_over_the_memory():
    client = RecordingK8sClient(replicas=0, annotations={"auditron.dr/replicas-before-stop": "3"})
    platform.ensure(k8s_driver(client), "started", replicas=6)
    assert client.patches()[0][4]["spec"] == {"replicas": 6}


def test_k8s_at_zero_with_nothing_remembered_asks_for_replicas():
    client = RecordingK8sClient(replicas=0)
    with pytest.raises(DRError) as err:
        platform.ensure(k8s_driver(client), "started")
    assert "app dr (kubernetes deployment auditron/auditron-api)" in str(err.value)
    assert "no auditron.dr/replicas-before-stop annotation" in str(err.value)
    assert not client.patches()


def test_k8s_check_mode_sends_nothing_and_tells_what_would_happen():
    client = RecordingK8sClient(replicas=3)
    result = platform.ensure(k8s_driver(client), "stopped", check_mode=True)
    assert set(client.verbs()) == {"get"}
    assert result["changed"] and result["found"]["replicas"] == 3 and result["replicas"] == 0
    assert result["actions"] == ["would annotate auditron.dr/replicas-before-stop=3 and scale from 3 to 0"]
    assert result["diff"] == {"before": {"running": True, "replicas": 3, "remembered_replicas": None},
                              "after": {"running": False, "replicas": 0, "remembered_replicas": 3}}


def test_k8s_missing_deployment_is_one_line():
    client = RecordingK8sClient(exists=False)
    with pytest.raises(DRError) as err:
        platform.ensure(k8s_driver(client), "stopped")
    assert str(err.value) == ("app dr (kubernetes deployment auditron/auditron-api): deployment auditron-api not "
                              "found in namespace auditron")


def test_k8s_ready_timeout_names_the_last_state():
    clock = FakeClock()
    client = RecordingK8sClient(replicas=0, annotations={"auditron.dr/replicas-before-stop": "3"}, stuck_at=1)
    with pytest.raises(DRError) as err:
        platform.ensure(k8s_driver(client, clock=clock), "started")
    message = str(err.value)
    assert "deployment auditron-api ready with 3 replica(s) not reached within 60 s" in message
    assert "last seen replicas 3, ready 1, updated 1, available 1" in message
    assert clock.now - 1000.0 >= 60


def test_k8s_restart_is_a_rollout_restart():
    client = RecordingK8sClient(replicas=2)
    result = platform.ensure(k8s_driver(client), "restarted")
    body = client.patches()[0][4]
    assert list(body) == ["spec"] and list(body["spec"]) == ["template"]
    assert "kubectl.kubernetes.io/restartedAt" in body["spec"]["template"]["metadata"]["annotations"]
    assert result["changed"]


def write_manifests(directory):
    directory.mkdir()
    (directory / "20-deployment.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: auditron-api\nspec:\n  replicas: 2\n"
        "  selector:\n    matchLabels: {app: auditron-api}\n  template:\n    metadata:\n"
        "      labels: {app: auditron-api}\n    spec:\n      containers:\n      - {name: api, image: auditron/api:1}\n"
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: auditron-api\nspec:\n  ports: [{port: 80}]\n")
    (directory / "10-config.yml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: auditron\ndata:\n"
                                             "  LOG_LEVEL: info\n---\n")
    (directory / "README.md").write_text("not a manifest\n")


def test_k8s_deploy_applies_every_document_server_side_in_name_order(tmp_path):
    write_manifests(tmp_path / "k8s")
    client = RecordingK8sClient(exists=False)
    driver = platform_drivers.make_driver("kubernetes", "dr", state="deployed", client=client,
                                          kubernetes={"manifests_dir": str(tmp_path / "k8s")})
    driver.sleep, driver.interval = (lambda s: None), 0
    result = platform.ensure(driver, "deployed")
    applies = [c for c in client.calls if c[0] == "apply"]
    assert [(c[1], c[3]) for c in applies] == [("ConfigMap", "auditron"), ("Deployment", "auditron-api"),
                                               ("Service", "auditron-api")]
    for call in applies:
        assert call[2] == "auditron" and call[4]["metadata"]["namespace"] == "auditron"
        assert call[5] == {"server_side": True, "field_manager": "auditron.dr", "force_conflicts": True}
    assert result["changed"] and result["replicas"] == 2
    assert "ConfigMap/auditron created (10-config.yml)" in result["actions"]

    # a second deploy changes nothing, and check mode sends dry_run
    again = platform.ensure(driver, "deployed")
    assert not again["changed"]
    preview = platform.ensure(driver, "deployed", check_mode=True)
    assert not preview["changed"]
    assert [c for c in client.calls if c[0] == "apply"][-1][5]["dry_run"] == "All"


def test_k8s_deploy_check_mode_sees_a_change_without_making_it(tmp_path):
    write_manifests(tmp_path / "k8s")
    client = RecordingK8sClient(exists=False)
    driver = platform_drivers.make_driver("kubernetes", "dr", state="deployed", client=client,
                                          kubernetes={"manifests_dir": str(tmp_path / "k8s")})
    result = platform.ensure(driver, "deployed", check_mode=True)
    assert result["changed"] and not client.objects
    assert all(c[5].get("dry_run") == "All" for c in client.calls if c[0] == "apply")


def test_k8s_deploy_refuses_a_manifest_for_another_namespace(tmp_path):
    directory = tmp_path / "k8s"
    directory.mkdir()
    (directory / "a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: default}\n")
    driver = platform_drivers.make_driver("kubernetes", "dr", state="deployed", client=RecordingK8sClient(exists=False),
                                          kubernetes={"manifests_dir": str(directory)})
    with pytest.raises(DRError) as err:
        platform.ensure(driver, "deployed")
    assert "is for namespace default, not auditron" in str(err.value)


def test_load_manifests_rejects_documents_without_a_name(tmp_path):
    (tmp_path / "a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n")
    with pytest.raises(DRError) as err:
        platform_kubernetes.load_manifests(str(tmp_path))
    assert "document 1: needs apiVersion, kind and metadata.name" in str(err.value)


@pytest.mark.skipif(platform_kubernetes.kubernetes_missing() is not None,
                    reason="needs the kubernetes library and the kubernetes.core collection")
def test_the_real_kubernetes_core_client_against_a_dead_api_server_is_one_line(tmp_path):
    """No stand-in here: kubernetes.core builds the client from a kubeconfig and fails to reach
    a closed port; the error names the app and the server."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:9', insecure-skip-tls-verify: true}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {token: t}}]\n")
    driver = platform_drivers.make_driver("kubernetes", "dr", kubernetes={"kubeconfig": str(kubeconfig)})
    with pytest.raises(DRError) as err:
        platform.ensure(driver, "stopped")
    assert str(err.value) == ("app dr (kubernetes deployment auditron/auditron-api): the API server 127.0.0.1:9 "
                              "does not answer (connection refused)")


def test_deployment_ready_needs_the_whole_rollout():
    dep = {"metadata": {"generation": 5}, "spec": {"replicas": 3},
           "status": {"observedGeneration": 5, "replicas": 4, "readyReplicas": 3, "updatedReplicas": 3}}
    assert not platform_kubernetes.deployment_ready(dep, 3)          # an old pod is still there
    dep["status"]["replicas"] = 3
    assert platform_kubernetes.deployment_ready(dep, 3)
    dep["status"]["observedGeneration"] = 4
    assert not platform_kubernetes.deployment_ready(dep, 3)          # the controller has not seen the change
