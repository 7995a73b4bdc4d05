"""The application platform engine without a lab, a Docker engine or a cluster.

- compose: the exact argv it would run, captured through an injected runner that answers
  `ps --format json` with canned output in both formats Compose has printed.
- kubernetes: every call it would send, recorded by `RecordingK8sClient`, a stand-in for
  kubernetes.core's K8SClient (same methods: resources.get, get, patch, apply) that keeps a few
  objects in memory and plays a very small Deployment controller. It is not a cluster; the
  opt-in test in tests/integration/test_app_platform.py runs against a real one.
- process: real processes (python -c sleep loops) and pid files under tmp_path, so the pid-file
  and signal rules are tested against the kernel, not a mock.
- verify: a real HTTP server on loopback; the database side is replaced by canned snapshots
  here (tests/integration/test_app_platform.py compares with the lab's PostgreSQL).
"""

import copy
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import platform
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError


class FakeClock:
    """monotonic() and sleep() for the drivers: waits take no real time."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


# ---------------------------------------------------------------------------------------------
# compose

def ps_line(name, state="running", health="", service="api"):
    return json.dumps({"ID": "id-" + name, "Name": name, "Service": service, "State": state, "Health": health,
                       "Status": "Up 2 minutes" if state == "running" else "Exited (0)"})


class ComposeRunner:
    """Records argv; answers `ps` from a queue of outputs (the last one repeats)."""

    def __init__(self, ps_outputs, fail=None):
        self.calls = []
        self.ps_outputs = list(ps_outputs)
        self.fail = fail or {}

    def __call__(self, argv, cwd):
        self.calls.append(list(argv))
        verb = argv[argv.index("-p") + 2]
        if verb in self.fail:
            return self.fail[verb]
        if verb == "ps":
            out = self.ps_outputs.pop(0) if len(self.ps_outputs) > 1 else self.ps_outputs[0]
            return 0, out, ""
        return 0, "", ""


def compose_driver(tmp_path, runner, clock=None, **kwargs):
    clock = clock or FakeClock()
    project = tmp_path / "docker-compose.yml"
    project.write_text("services: {api: {image: auditron/api}}\n")
    return platform.ComposeDriver("primary", str(project), runner=runner, timeout=30, interval=1,
                                  sleep=clock.sleep, clock=clock.clock, **kwargs)


def base_argv(tmp_path, project="auditron"):
    return ["docker", "compose", "-f", str(tmp_path / "docker-compose.yml"), "-p", project]


THREE_RUNNING = "\n".join(ps_line("auditron-api-%d" % i) for i in (1, 2, 3))
THREE_EXITED = "\n".join(ps_line("auditron-api-%d" % i, state="exited") for i in (1, 2, 3))


def test_compose_stop_runs_stop_and_remembers_the_count(tmp_path):
    runner = ComposeRunner([THREE_RUNNING, THREE_EXITED])
    driver = compose_driver(tmp_path, runner)
    result = platform.ensure(driver, "stopped")
    base = base_argv(tmp_path)
    assert runner.calls == [
        base + ["ps", "--all", "--format", "json", "api"],
        base + ["stop", "api"],
        base + ["ps", "--all", "--format", "json", "api"],   # waited: nothing running
        base + ["ps", "--all", "--format", "json", "api"],   # observed after
    ]
    assert result["changed"] and result["previous_replicas"] == 3 and result["replicas"] == 0
    state_file = tmp_path / ".auditron-dr-auditron-api.state.json"
    assert json.loads(state_file.read_text())["replicas_before_stop"] == 3
    assert result["remembered_replicas"] == 3


def test_compose_start_restores_the_remembered_count_not_three_by_habit(tmp_path):
    (tmp_path / ".auditron-dr-auditron-api.state.json").write_text(json.dumps({"replicas_before_stop": 2}))
    two_running = "\n".join(ps_line("auditron-api-%d" % i, health="healthy") for i in (1, 2))
    runner = ComposeRunner([THREE_EXITED, two_running])
    driver = compose_driver(tmp_path, runner)
    result = platform.ensure(driver, "started")
    assert base_argv(tmp_path) + ["up", "-d", "--scale", "api=2", "api"] in runner.calls
    assert result["changed"] and result["replicas"] == 2
    assert not (tmp_path / ".auditron-dr-auditron-api.state.json").exists()   # memory used up


def test_compose_start_without_memory_leaves_the_scale_to_compose(tmp_path):
    runner = ComposeRunner(["", ps_line("auditron-api-1")])
    driver = compose_driver(tmp_path, runner)
    result = platform.ensure(driver, "started")
    assert base_argv(tmp_path) + ["up", "-d", "api"] in runner.calls
    assert result["replicas"] == 1


def test_compose_explicit_replicas_and_other_command_and_project(tmp_path):
    runner = ComposeRunner(["", "\n".join(ps_line("p-api-%d" % i) for i in range(1, 5))])
    driver = compose_driver(tmp_path, runner, project_name="auditron-dr", command=["docker-compose"])
    platform.ensure(driver, "started", replicas=4)
    assert ["docker-compose", "-f", str(tmp_path / "docker-compose.yml"), "-p", "auditron-dr",
            "up", "-d", "--scale", "api=4", "api"] in runner.calls


def test_compose_running_at_the_right_count_is_not_touched(tmp_path):
    runner = ComposeRunner([THREE_RUNNING])
    result = platform.ensure(compose_driver(tmp_path, runner), "started")
    assert not result["changed"]
    assert all(call[call.index("-p") + 2] == "ps" for call in runner.calls)


def test_compose_stopping_a_stopped_service_changes_nothing_and_keeps_the_memory(tmp_path):
    (tmp_path / ".auditron-dr-auditron-api.state.json").write_text(json.dumps({"replicas_before_stop": 3}))
    runner = ComposeRunner([THREE_EXITED])
    result = platform.ensure(compose_driver(tmp_path, runner), "stopped")
    assert not result["changed"] and result["previous_replicas"] == 3
    assert len(runner.calls) == 1


def test_compose_check_mode_runs_only_ps_and_writes_nothing(tmp_path):
    runner = ComposeRunner([THREE_RUNNING])
    result = platform.ensure(compose_driver(tmp_path, runner), "stopped", check_mode=True)
    assert result["changed"] and result["replicas"] == 0 and result["previous_replicas"] == 3
    assert [call[call.index("-p") + 2] for call in runner.calls] == ["ps"]
    assert all(a.startswith("would ") for a in result["actions"])
    assert not (tmp_path / ".auditron-dr-auditron-api.state.json").exists()


def test_compose_failure_is_one_line_naming_the_app_and_the_command(tmp_path):
    runner = ComposeRunner([THREE_RUNNING], fail={"stop": (1, "", "warn\nCannot connect to the Docker daemon\n")})
    with pytest.raises(DRError) as err:
        platform.ensure(compose_driver(tmp_path, runner), "stopped")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("app primary (compose auditron/api): `docker compose -f")
    assert "stop api` failed (exit 1): Cannot connect to the Docker daemon" in message


def test_compose_missing_docker_is_said_plainly(tmp_path):
    driver = compose_driver(tmp_path, platform.run_command, command=["/nonexistent/docker", "compose"])
    with pytest.raises(DRError) as err:
        platform.ensure(driver, "status")
    assert "exit 127" in str(err.value) and "/nonexistent/docker" in str(err.value)


def test_compose_wait_times_out_with_the_last_state(tmp_path):
    clock = FakeClock()
    starting = ps_line("auditron-api-1", health="starting")
    runner = ComposeRunner([THREE_EXITED, starting])
    (tmp_path / ".auditron-dr-auditron-api.state.json").write_text(json.dumps({"replicas_before_stop": 1}))
    with pytest.raises(DRError) as err:
        platform.ensure(compose_driver(tmp_path, runner, clock=clock), "started")
    assert "not reached within 30 s" in str(err.value)
    assert "0 of 1 running and ready (auditron-api-1 running/starting)" in str(err.value)


def test_compose_deploy_is_up_d_for_the_project_and_changed_when_containers_change(tmp_path):
    runner = ComposeRunner([THREE_RUNNING, THREE_RUNNING, ps_line("new-1") + "\n" + ps_line("db", service="db")])
    driver = compose_driver(tmp_path, runner)
    changed, actions = driver.deploy(driver.observe(), None)
    assert base_argv(tmp_path) + ["up", "-d"] in runner.calls
    assert base_argv(tmp_path) + ["ps", "--all", "--format", "json"] in runner.calls   # whole project
    assert changed


@pytest.mark.parametrize("text", [
    # Compose >= 2.21: one object per line
    ps_line("a", health="healthy") + "\n" + ps_line("b", state="exited") + "\n",
    # Compose < 2.21: one JSON array
    json.dumps([json.loads(ps_line("a", health="healthy")), json.loads(ps_line("b", state="exited"))]),
])
def test_parse_compose_ps_reads_both_formats(text):
    containers = platform.parse_compose_ps(text)
    found = [(c["name"], c["state"], c["health"]) for c in containers]
    assert found == [("a", "running", "healthy"), ("b", "exited", "")]


def test_parse_compose_ps_empty_and_garbage():
    assert platform.parse_compose_ps("") == []
    assert platform.parse_compose_ps("  \n") == []
    with pytest.raises(DRError):
        platform.parse_compose_ps("no such service: api")


def test_unhealthy_containers_are_running_but_not_ready(tmp_path):
    runner = ComposeRunner([ps_line("a", health="unhealthy") + "\n" + ps_line("b", health="healthy")])
    found = compose_driver(tmp_path, runner).observe()
    assert found["replicas"] == 2 and found["ready_replicas"] == 1


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
        changed = existing is None or platform._comparable(existing) != platform._comparable(merged)
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
    return platform.KubernetesDriver("dr", client=client, timeout=60, interval=2, sleep=clock.sleep,
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
    driver = platform.make_driver("kubernetes", "dr", state="deployed", client=client,
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
    driver = platform.make_driver("kubernetes", "dr", state="deployed", client=client,
                                  kubernetes={"manifests_dir": str(tmp_path / "k8s")})
    result = platform.ensure(driver, "deployed", check_mode=True)
    assert result["changed"] and not client.objects
    assert all(c[5].get("dry_run") == "All" for c in client.calls if c[0] == "apply")


def test_k8s_deploy_refuses_a_manifest_for_another_namespace(tmp_path):
    directory = tmp_path / "k8s"
    directory.mkdir()
    (directory / "a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: default}\n")
    driver = platform.make_driver("kubernetes", "dr", state="deployed", client=RecordingK8sClient(exists=False),
                                  kubernetes={"manifests_dir": str(directory)})
    with pytest.raises(DRError) as err:
        platform.ensure(driver, "deployed")
    assert "is for namespace default, not auditron" in str(err.value)


def test_load_manifests_rejects_documents_without_a_name(tmp_path):
    (tmp_path / "a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n")
    with pytest.raises(DRError) as err:
        platform.load_manifests(str(tmp_path))
    assert "document 1: needs apiVersion, kind and metadata.name" in str(err.value)


@pytest.mark.skipif(platform.kubernetes_missing() is not None,
                    reason="needs the kubernetes library and the kubernetes.core collection")
def test_the_real_kubernetes_core_client_against_a_dead_api_server_is_one_line(tmp_path):
    """No stand-in here: kubernetes.core builds the client from a kubeconfig and fails to reach
    a closed port; the error names the app and the server."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:9', insecure-skip-tls-verify: true}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {token: t}}]\n")
    driver = platform.make_driver("kubernetes", "dr", kubernetes={"kubeconfig": str(kubeconfig)})
    with pytest.raises(DRError) as err:
        platform.ensure(driver, "stopped")
    assert str(err.value) == ("app dr (kubernetes deployment auditron/auditron-api): the API server 127.0.0.1:9 "
                              "does not answer (connection refused)")


def test_deployment_ready_needs_the_whole_rollout():
    dep = {"metadata": {"generation": 5}, "spec": {"replicas": 3},
           "status": {"observedGeneration": 5, "replicas": 4, "readyReplicas": 3, "updatedReplicas": 3}}
    assert not platform.deployment_ready(dep, 3)          # an old pod is still there
    dep["status"]["replicas"] = 3
    assert platform.deployment_ready(dep, 3)
    dep["status"]["observedGeneration"] = 4
    assert not platform.deployment_ready(dep, 3)          # the controller has not seen the change


# ---------------------------------------------------------------------------------------------
# process (real processes, private pid files)

SLEEPER = [sys.executable, "-c", "import time\nwhile True: time.sleep(1)"]
IGNORES_TERM = [sys.executable, "-c",
                "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n"
                "while True: time.sleep(1)"]


def process_driver(tmp_path, command="sleeper", **kwargs):
    command = SLEEPER if command == "sleeper" else command
    return platform.ProcessDriver("test", str(tmp_path / "pids" / "app.json"), command=command,
                                  log_file=str(tmp_path / "app.log"), timeout=10, **kwargs)


@pytest.fixture
def stray():
    """A process of this test that no pid file should make anyone signal."""
    child = subprocess.Popen(["sleep", "60"])
    yield child
    child.kill()
    child.wait()


def test_process_start_writes_the_labs_pid_format_then_stop_and_start_round_trip(tmp_path):
    driver = process_driver(tmp_path)
    started = platform.ensure(driver, "started")
    try:
        record = json.loads((tmp_path / "pids" / "app.json").read_text())
        assert list(record) == ["pid", "start_time", "argv"] and record["argv"] == SLEEPER
        with open("/proc/%d/stat" % record["pid"]) as handle:
            stat = handle.read()
        assert record["start_time"] == int(stat[stat.rindex(")") + 2:].split()[19])
        assert os.getpgid(record["pid"]) == record["pid"]          # own session, own group
        assert started["changed"] and started["replicas"] == 1
        assert not platform.ensure(process_driver(tmp_path), "started")["changed"]

        stopped = platform.ensure(process_driver(tmp_path), "stopped")
        assert stopped["changed"] and stopped["previous_replicas"] == 1
        assert not platform.pid_alive(record["pid"], record["start_time"])
        assert not (tmp_path / "pids" / "app.json").exists()
        assert json.loads((tmp_path / "pids" / "app.replicas.json").read_text())["replicas_before_stop"] == 1

        again = platform.ensure(process_driver(tmp_path), "stopped")
        assert not again["changed"] and again["previous_replicas"] == 1

        restarted = platform.ensure(process_driver(tmp_path), "started")
        assert restarted["changed"] and not (tmp_path / "pids" / "app.replicas.json").exists()
    finally:
        platform.ensure(process_driver(tmp_path), "stopped")


def test_process_restart_replaces_the_process(tmp_path):
    platform.ensure(process_driver(tmp_path), "started")
    first = json.loads((tmp_path / "pids" / "app.json").read_text())
    try:
        result = platform.ensure(process_driver(tmp_path), "restarted")
        second = json.loads((tmp_path / "pids" / "app.json").read_text())
        assert result["changed"] and second["pid"] != first["pid"]
        assert not platform.pid_alive(first["pid"], first["start_time"])
        assert platform.pid_alive(second["pid"], second["start_time"])
        assert not (tmp_path / "pids" / "app.replicas.json").exists()
    finally:
        platform.ensure(process_driver(tmp_path), "stopped")


def test_a_recycled_pid_is_never_signalled(tmp_path, stray):
    pid_file = tmp_path / "pids" / "app.json"
    pid_file.parent.mkdir()
    real_start = platform.proc_start_time(stray.pid)
    pid_file.write_text(json.dumps({"pid": stray.pid, "start_time": real_start - 1, "argv": SLEEPER}))
    result = platform.ensure(process_driver(tmp_path), "stopped")
    assert not result["changed"] and result["found"]["stale_pid_file"]
    time.sleep(0.1)
    assert stray.poll() is None


def test_a_pid_file_of_something_else_is_refused(tmp_path, stray):
    pid_file = tmp_path / "pids" / "app.json"
    pid_file.parent.mkdir()
    pid_file.write_text(json.dumps({"pid": stray.pid, "start_time": platform.proc_start_time(stray.pid),
                                    "argv": ["sleep", "60"]}))
    with pytest.raises(DRError) as err:
        platform.ensure(process_driver(tmp_path), "stopped")
    assert "belongs to something else: pid %d runs sleep 60" % stray.pid in str(err.value)
    assert stray.poll() is None


def test_a_pid_file_that_lies_about_its_argv_is_refused(tmp_path, stray):
    pid_file = tmp_path / "pids" / "app.json"
    pid_file.parent.mkdir()
    pid_file.write_text(json.dumps({"pid": stray.pid, "start_time": platform.proc_start_time(stray.pid),
                                    "argv": SLEEPER}))
    with pytest.raises(DRError) as err:
        platform.ensure(process_driver(tmp_path), "stopped")
    assert "but it runs sleep 60: refusing to signal it" in str(err.value)
    assert stray.poll() is None


def test_a_broken_pid_file_is_refused(tmp_path):
    pid_file = tmp_path / "pids" / "app.json"
    pid_file.parent.mkdir()
    pid_file.write_text("12345\n")
    with pytest.raises(DRError) as err:
        platform.ensure(process_driver(tmp_path), "status")
    assert "is not a pid record" in str(err.value)


def test_sigkill_after_the_grace_period(tmp_path):
    driver = process_driver(tmp_path, command=IGNORES_TERM, stop_grace_period=0.5)
    platform.ensure(driver, "started")
    deadline = time.monotonic() + 5
    while "ready" not in (tmp_path / "app.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    result = platform.ensure(process_driver(tmp_path, command=IGNORES_TERM, stop_grace_period=0.5), "stopped")
    assert any("SIGKILL after 0.5 s" in a for a in result["actions"]), result["actions"]


def test_no_command_and_too_many_replicas_are_clear_errors(tmp_path):
    with pytest.raises(DRError) as err:
        platform.ensure(process_driver(tmp_path, command=None), "started")
    assert str(err.value) == "app test (process): no command to start it with (auditron_dr_app.command, an argv list)"
    with pytest.raises(DRError) as err:
        platform.ensure(process_driver(tmp_path), "started", replicas=2)
    assert "the process driver runs at most 1" in str(err.value)


def test_a_port_taken_by_an_unrecorded_process_is_refused(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    url = "http://127.0.0.1:%d" % listener.getsockname()[1]
    try:
        with pytest.raises(DRError) as err:
            platform.ensure(process_driver(tmp_path, url=url), "started")
        assert "is already taken by a process that pid file" in str(err.value)
        with pytest.raises(DRError) as err:
            platform.ensure(process_driver(tmp_path, url=url), "stopped")
        assert "refusing to guess which process to stop" in str(err.value)
    finally:
        listener.close()


def test_an_app_that_dies_at_start_shows_its_log(tmp_path):
    crash = [sys.executable, "-c", "import sys; print('config file missing', flush=True); sys.exit(3)"]
    with pytest.raises(DRError) as err:
        platform.ensure(process_driver(tmp_path, command=crash, url="http://127.0.0.1:9"), "started")
    assert "exited during start-up: config file missing" in str(err.value)


def test_state_file_reader_ignores_garbage(tmp_path):
    path = tmp_path / "s.json"
    for text, expected in (('{"replicas_before_stop": 3}', 3), ('{"replicas_before_stop": true}', None),
                           ('{"replicas_before_stop": -1}', None), ("[]", None), ("x", None)):
        path.write_text(text)
        assert platform.read_state_file(str(path)) == expected
    assert platform.read_state_file(str(tmp_path / "missing.json")) is None


# ---------------------------------------------------------------------------------------------
# verify

class FakeApi:
    """A real HTTP server on loopback whose answers the test sets."""

    def __init__(self):
        self.health = [(200, {"status": "ok"})]
        self.invoices = (200, {"count": 3, "max_id": 3, "max_createdAt": "2026-11-24T01:00:00.123456+00:00",
                               "invoices": [{"id": 3}]})
        self.token = "s3cret-token"
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # pylint: disable=arguments-differ
                return

            def do_GET(self):  # pylint: disable=invalid-name
                if self.path == "/health":
                    status, body = api.health.pop(0) if len(api.health) > 1 else api.health[0]
                elif self.headers.get("Authorization") != "Bearer " + api.token:
                    status, body = 401, {"error": "missing or wrong bearer token"}
                else:
                    status, body = api.invoices
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api(monkeypatch):
    server = FakeApi()
    import datetime  # pylint: disable=import-outside-toplevel
    snapshot = {"count": 3, "max_id": 3,
                "max_createdAt": datetime.datetime(2026, 11, 24, 1, 0, 0, 123456, tzinfo=datetime.timezone.utc)}
    server.database = snapshot
    monkeypatch.setattr(platform, "database_snapshot", lambda *args, **kwargs: dict(server.database))
    yield server
    server.close()


def verify(api, **kwargs):
    clock = FakeClock()
    options = dict(token=api.token, postgres={}, timeout=10, interval=1, sleep=clock.sleep, clock=clock.clock)
    options.update(kwargs)
    return platform.verify_app("dr", api.url, **options)


def test_verify_passes_and_reports_checks_and_the_restored_marker(api):
    result = verify(api)
    assert result["passed"] and result["attempts"] == 1
    assert [c["result"] for c in result["dr_report"]["checks"]] == ["ok", "ok"]
    assert [c["name"] for c in result["checks"]] == ["app health (dr)", "app data (dr)"]
    assert result["dr_report"]["markers"]["service_restored"] == result["verified_at"]
    assert "count 3, max id 3, newest createdAt 2026-11-24T01:00:00.123456Z" in result["checks"][1]["detail"]
    assert "markers" not in verify(api, mark_service_restored=False)["dr_report"]


def test_verify_retries_until_health_answers(api):
    api.health = [(503, {"checks": {"database": "error: starting"}}), (503, {}), (200, {"status": "ok"})]
    result = verify(api)
    assert result["attempts"] == 3
    assert "answered 503" in result["history"][0]


def test_verify_times_out_naming_the_difference(api):
    api.database = dict(api.database, count=4, max_id=4)
    with pytest.raises(DRError) as err:
        verify(api)
    message = str(err.value)
    assert message.startswith("app dr at %s: not verified within 10 s (" % api.url)
    assert "serves count 3, max id 3" in message and "holds count 4, max id 4" in message
    assert "differs: count, max_id" in message
    assert err.value.details["dr_report"]["checks"][1]["result"] == "failed"


def test_verify_refused_token_fails_at_once_and_never_shows_the_token(api):
    with pytest.raises(DRError) as err:
        verify(api, token="wrong-token")
    assert "refused the bearer token (HTTP 401)" in str(err.value)
    assert err.value.details["attempts"] == 1
    assert "wrong-token" not in json.dumps(err.value.details) + str(err.value)


def test_verify_health_only(api):
    result = verify(api, check_data=False, token=None)
    assert [c["name"] for c in result["checks"]] == ["app health (dr)"]


def test_verify_an_unanswering_app(api):
    with pytest.raises(DRError) as err:
        platform.verify_app("dr", "http://127.0.0.1:9", token="t", postgres={}, timeout=0, interval=0)
    assert "GET http://127.0.0.1:9/health does not answer" in str(err.value)


@pytest.mark.parametrize("app, db, differ", [
    ({"count": 3, "max_id": "3", "max_createdAt": "2026-11-24T01:00:00.123Z"},
     {"count": 3, "max_id": 3, "max_createdAt": "2026-11-24T01:00:00.123456+00:00"}, []),   # ms precision
    ({"count": 3, "max_id": 3, "max_createdAt": "2026-11-24T01:00:01Z"},
     {"count": 3, "max_id": 3, "max_createdAt": "2026-11-24T01:00:00Z"}, ["max_createdAt"]),
    ({"count": 0, "max_id": None, "max_createdAt": None},
     {"count": 0, "max_id": None, "max_createdAt": None}, []),
    ({"count": 1, "max_id": "ckx9", "max_createdAt": None},
     {"count": 1, "max_id": "ckx8", "max_createdAt": None}, ["max_id"]),
])
def test_compare_data(app, db, differ):
    assert platform.compare_data(app, db, ["count", "max_id", "max_createdAt"]) == differ


def test_unknown_platform_and_state():
    with pytest.raises(DRError):
        platform.make_driver("nomad", "dr")
    with pytest.raises(DRError):
        platform.ensure(platform.ComposeDriver("dr", "/x.yml", runner=ComposeRunner([""])), "paused")


def test_signals_go_to_the_process_group_the_app_leads(tmp_path):
    # the app's own child (a worker) goes with it
    parent = [sys.executable, "-c", "import subprocess, time\nsubprocess.Popen(['sleep', '60'])\n"
              "print('forked', flush=True)\nwhile True: time.sleep(1)"]
    driver = process_driver(tmp_path, command=parent)
    platform.ensure(driver, "started")
    record = json.loads((tmp_path / "pids" / "app.json").read_text())
    deadline = time.monotonic() + 5
    while "forked" not in (tmp_path / "app.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    children = subprocess.run(["pgrep", "-g", str(record["pid"])], capture_output=True, text=True,
                              check=False).stdout.split()
    assert len(children) == 2
    platform.ensure(process_driver(tmp_path, command=parent), "stopped")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = subprocess.run(["pgrep", "-g", str(record["pid"])], capture_output=True, text=True,
                              check=False).stdout.split()
        if not left:
            break
        time.sleep(0.05)
    assert not left
