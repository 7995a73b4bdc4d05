# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The `kubernetes` platform: a Deployment, through kubernetes.core's API client.

`spec.replicas` is the count; the count remembered at a stop is an annotation on the Deployment
(`auditron.dr/replicas-before-stop`). The client is kubernetes.core's (its auth handling:
kubeconfig, context, in-cluster, K8S_AUTH_* variables), imported on first use; manifests are
applied server-side; the client is injectable so tests can record what would be sent.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import os
import re
import traceback

try:
    import yaml
    HAS_YAML = True
    YAML_IMPORT_ERROR = None
except ImportError:
    HAS_YAML = False
    YAML_IMPORT_ERROR = traceback.format_exc()

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, first_line, format_time, utc_now
from ansible_collections.auditron.dr.plugins.module_utils.platform import Driver, int_or_none

REPLICAS_ANNOTATION = "auditron.dr/replicas-before-stop"
# What `kubectl rollout restart` sets: a changed pod template makes the Deployment replace its pods.
RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"


def _as_dict(obj):
    """A kubernetes ResourceInstance (or a plain dict from a stand-in) as a plain dict."""
    if obj is None:
        return None
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return obj


def _is_not_found(exc):
    return getattr(exc, "status", None) == 404


def _api_error(exc):
    summary = getattr(exc, "summary", None)
    if callable(summary):
        try:
            return first_line(summary())
        except Exception:  # pylint: disable=broad-except
            pass
    return first_line(exc)


def deployment_summary(dep):
    status = dep.get("status") or {}
    meta = dep.get("metadata") or {}
    return ("replicas %s, ready %d, updated %d, available %d, generation %s observed %s" % (
        (dep.get("spec") or {}).get("replicas"), status.get("readyReplicas") or 0, status.get("updatedReplicas") or 0,
        status.get("availableReplicas") or 0, meta.get("generation"), status.get("observedGeneration")))


def deployment_ready(dep, replicas):
    """Rolled out at `replicas`: the controller has seen the latest spec, and exactly that many
    pods exist, run the current template and are ready (no old pod left behind)."""
    status = dep.get("status") or {}
    meta = dep.get("metadata") or {}
    return ((status.get("observedGeneration") or 0) >= (meta.get("generation") or 0)
            and (status.get("readyReplicas") or 0) == replicas
            and (status.get("updatedReplicas") or 0) == replicas
            and (status.get("replicas") or 0) == replicas)


def _comparable(obj):
    """An object without what the server changes on every write, to compare before/after."""
    obj = copy.deepcopy(obj or {})
    obj.pop("status", None)
    meta = obj.get("metadata") or {}
    for key in ("managedFields", "resourceVersion", "generation", "creationTimestamp", "uid", "selfLink"):
        meta.pop(key, None)
    return obj


def load_manifests(directory):
    """Every YAML document of every *.yaml / *.yml / *.json file in `directory` (not recursive,
    as `kubectl apply -f dir`), files in name order; List kinds are expanded."""
    if not HAS_YAML:
        raise DRError("reading manifests needs the PyYAML Python library")
    if not directory or not os.path.isdir(directory):
        raise DRError("manifests directory %s does not exist" % directory)
    documents = []
    for name in sorted(os.listdir(directory)):
        if not name.endswith((".yaml", ".yml", ".json")):
            continue
        path = os.path.join(directory, name)
        try:
            with open(path) as handle:
                loaded = list(yaml.safe_load_all(handle))
        except (OSError, yaml.YAMLError) as exc:
            raise DRError("manifest %s cannot be read: %s" % (path, first_line(exc)))
        for index, doc in enumerate(loaded):
            if doc is None:
                continue
            items = doc.get("items", []) if isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List") \
                else [doc]
            for item in items:
                if not isinstance(item, dict) or not item.get("apiVersion") or not item.get("kind") \
                        or not (item.get("metadata") or {}).get("name"):
                    raise DRError("manifest %s, document %d: needs apiVersion, kind and metadata.name" % (path, index + 1))
                documents.append((path, item))
    if not documents:
        raise DRError("manifests directory %s holds no YAML document" % directory)
    return documents


_KUBERNETES = {}


def kubernetes_missing():
    """None when the kubernetes platform can run, else (what is missing, import traceback).

    Imported on first use, not at the top: the kubernetes library takes a quarter of a second
    to import, which every process and compose task would pay. Ansible still ships
    kubernetes.core's module_utils with the module (nested imports are optional dependencies)."""
    if "get_api_client" not in _KUBERNETES:
        _KUBERNETES.update(get_api_client=None, missing=None)
        try:
            import kubernetes  # noqa: F401 pylint: disable=unused-import,import-outside-toplevel
        except ImportError:
            _KUBERNETES["missing"] = ("kubernetes", traceback.format_exc())
            return _KUBERNETES["missing"]
        try:
            # kubernetes.core's client factory: the same authentication as its k8s modules
            # (kubeconfig file or dict, context, host + api_key, in-cluster config, K8S_AUTH_*
            # variables), and its K8SClient whose apply() does server-side apply.
            from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import (  # pylint: disable=import-outside-toplevel
                get_api_client)
        except ImportError:
            _KUBERNETES["missing"] = ("the kubernetes.core collection", traceback.format_exc())
            return _KUBERNETES["missing"]
        _KUBERNETES["get_api_client"] = get_api_client
    return _KUBERNETES["missing"]


def kubernetes_client(auth):
    """kubernetes.core's K8SClient for `auth` (its option names: kubeconfig, context, host,
    api_key, validate_certs, ca_cert, client_cert, client_key, ...)."""
    missing = kubernetes_missing()
    if missing:
        raise DRError("the kubernetes platform needs %s" % missing[0])
    get_api_client = _KUBERNETES["get_api_client"]
    try:
        return get_api_client(**dict((k, v) for k, v in (auth or {}).items() if v is not None))
    except Exception as exc:  # pylint: disable=broad-except
        text = first_line(exc)
        refused = re.search(r"host='([^']+)', port=(\d+)", text)
        if refused and ("Connection refused" in text or "NewConnectionError" in text):
            raise DRError("the API server %s:%s does not answer (connection refused)" % refused.groups())
        raise DRError("cannot build a Kubernetes API client: %s" % text)


class KubernetesDriver(Driver):
    """A Deployment: spec.replicas is the count; the remembered count is an annotation on it."""

    platform = "kubernetes"

    def __init__(self, site, namespace="auditron", deployment="auditron-api", manifests_dir=None,
                 field_manager="auditron.dr", client=None, auth=None, allow_missing=False, **kwargs):
        super(KubernetesDriver, self).__init__(site, **kwargs)
        # Only `deployed` may find no Deployment yet (a first deploy into an empty namespace).
        self.allow_missing = allow_missing
        self.namespace = namespace or "auditron"
        self.deployment = deployment or "auditron-api"
        self.manifests_dir = manifests_dir or None
        self.field_manager = field_manager or "auditron.dr"
        self._client = client
        self.auth = auth or {}
        self._resources = {}

    def where(self):
        return "kubernetes deployment %s/%s" % (self.namespace, self.deployment)

    @property
    def client(self):
        if self._client is None:
            try:
                self._client = kubernetes_client(self.auth)
            except DRError as exc:
                raise self.error(exc.message)
        return self._client

    def resource(self, api_version, kind):
        key = (api_version, kind)
        if key not in self._resources:
            try:
                self._resources[key] = self.client.resources.get(api_version=api_version, kind=kind)
            except DRError:
                raise
            except Exception as exc:  # pylint: disable=broad-except
                raise self.error("the cluster does not serve %s %s: %s" % (api_version, kind, _api_error(exc)))
        return self._resources[key]

    def read_deployment(self, required=True):
        try:
            dep = self.client.get(self.resource("apps/v1", "Deployment"), name=self.deployment,
                                  namespace=self.namespace)
        except DRError:
            raise
        except Exception as exc:  # pylint: disable=broad-except
            if _is_not_found(exc):
                if required:
                    raise self.error("deployment %s not found in namespace %s" % (self.deployment, self.namespace))
                return None
            raise self.error("cannot read the deployment: %s" % _api_error(exc))
        return _as_dict(dep)

    def observe(self):
        dep = self.read_deployment(required=not self.allow_missing)
        if dep is None:
            return {"running": False, "replicas": 0, "ready_replicas": 0, "updated_replicas": 0,
                    "available_replicas": 0, "remembered_replicas": None, "namespace": self.namespace,
                    "deployment": self.deployment, "exists": False, "generation": None,
                    "observed_generation": None, "selector": {}}
        spec = dep.get("spec") or {}
        status = dep.get("status") or {}
        annotations = (dep.get("metadata") or {}).get("annotations") or {}
        replicas = int(spec.get("replicas") if spec.get("replicas") is not None else 1)
        return {
            "running": replicas > 0,
            "replicas": replicas,
            "ready_replicas": status.get("readyReplicas") or 0,
            "updated_replicas": status.get("updatedReplicas") or 0,
            "available_replicas": status.get("availableReplicas") or 0,
            "remembered_replicas": int_or_none(annotations.get(REPLICAS_ANNOTATION)),
            "namespace": self.namespace,
            "deployment": self.deployment,
            "exists": True,
            "generation": (dep.get("metadata") or {}).get("generation"),
            "observed_generation": status.get("observedGeneration"),
            "selector": (spec.get("selector") or {}).get("matchLabels") or {},
        }

    def default_replicas(self, found):
        raise self.error("the deployment has 0 replicas and no %s annotation: give replicas explicitly"
                         % REPLICAS_ANNOTATION)

    def patch(self, body):
        try:
            return _as_dict(self.client.patch(self.resource("apps/v1", "Deployment"), body, name=self.deployment,
                                              namespace=self.namespace, content_type="application/merge-patch+json",
                                              field_manager=self.field_manager))
        except DRError:
            raise
        except Exception as exc:  # pylint: disable=broad-except
            if _is_not_found(exc):
                raise self.error("deployment %s not found in namespace %s" % (self.deployment, self.namespace))
            raise self.error("patch refused: %s" % _api_error(exc))

    def stop(self, found, check_mode=False, wait=True):
        body = {"metadata": {"annotations": {REPLICAS_ANNOTATION: str(found["replicas"])}}, "spec": {"replicas": 0}}
        action = "annotate %s=%d and scale from %d to 0" % (REPLICAS_ANNOTATION, found["replicas"], found["replicas"])
        if check_mode:
            return ["would " + action]
        self.patch(body)
        actions = [action.replace("annotate", "annotated").replace("scale", "scaled")]
        if wait:
            took = self.wait_stopped(found["selector"])
            actions.append("no pod left after %.0f s" % took)
        return actions

    def wait_stopped(self, selector):
        """Scaled to 0 is not stopped until the pods are gone: a terminating pod still holds its
        database connections, which a restore must not race."""
        pods = self.resource("v1", "Pod")
        label_selector = ",".join("%s=%s" % item for item in sorted(selector.items()))

        def probe():
            dep = self.read_deployment()
            remaining = None
            if label_selector:
                try:
                    listed = _as_dict(self.client.get(pods, namespace=self.namespace, label_selector=label_selector))
                except Exception as exc:  # pylint: disable=broad-except
                    raise self.error("cannot list pods %s: %s" % (label_selector, _api_error(exc)))
                remaining = [(p.get("metadata") or {}).get("name") for p in (listed or {}).get("items") or []]
            count = (dep.get("status") or {}).get("replicas") or 0
            done = count == 0 and not remaining
            return done, "%s; pods left: %s" % (deployment_summary(dep), ", ".join(remaining) if remaining else "none")
        return self.wait_until("deployment %s scaled to 0" % self.deployment, probe)

    def start(self, found, desired, check_mode=False, wait=True):
        body = {"spec": {"replicas": desired}}
        action = "scale from %d to %d" % (found["replicas"], desired)
        if found["remembered_replicas"] is not None:
            body["metadata"] = {"annotations": {REPLICAS_ANNOTATION: None}}
            action += " and remove the %s annotation" % REPLICAS_ANNOTATION
        if check_mode:
            return ["would " + action]
        self.patch(body)
        actions = [action.replace("scale", "scaled").replace("remove", "removed")]
        if wait:
            actions.append("%d ready after %.0f s" % (desired, self.wait_ready(desired)))
        return actions

    def wait_ready(self, replicas):
        def probe():
            dep = self.read_deployment()
            return deployment_ready(dep, replicas), deployment_summary(dep)
        return self.wait_until("deployment %s ready with %d replica(s)" % (self.deployment, replicas), probe)

    def restart(self, found, desired, check_mode=False, wait=True):
        stamp = format_time(utc_now().replace(microsecond=0))
        body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: stamp}}}}}
        action = "rollout restart (%s=%s)" % (RESTARTED_AT_ANNOTATION, stamp)
        if desired is not None and desired != found["replicas"]:
            body["spec"]["replicas"] = desired
            action += " at %d replicas" % desired
        if check_mode:
            return ["would " + action]
        self.patch(body)
        actions = [action]
        if wait:
            target = desired if desired is not None else found["replicas"]
            actions.append("%d ready after %.0f s" % (target, self.wait_ready(target)))
        return actions

    def apply_one(self, path, doc, check_mode):
        """Server-side apply of one document; returns (changed, line)."""
        api_version, kind = doc["apiVersion"], doc["kind"]
        name = doc["metadata"]["name"]
        resource = self.resource(api_version, kind)
        doc = copy.deepcopy(doc)
        namespace = None
        if getattr(resource, "namespaced", True):
            namespace = doc["metadata"].get("namespace") or self.namespace
            if namespace != self.namespace:
                raise self.error("manifest %s: %s %s is for namespace %s, not %s"
                                 % (path, kind, name, namespace, self.namespace))
            doc["metadata"]["namespace"] = namespace
        try:
            existing = _as_dict(self.client.get(resource, name=name, namespace=namespace))
        except Exception as exc:  # pylint: disable=broad-except
            if not _is_not_found(exc):
                raise self.error("cannot read %s %s: %s" % (kind, name, _api_error(exc)))
            existing = None
        params = {"server_side": True, "field_manager": self.field_manager, "force_conflicts": True}
        if check_mode:
            params["dry_run"] = "All"
        try:
            applied = _as_dict(self.client.apply(resource, doc, namespace, **params))
        except Exception as exc:  # pylint: disable=broad-except
            raise self.error("apply of %s %s (%s) refused: %s" % (kind, name, os.path.basename(path), _api_error(exc)))
        if existing is None:
            changed = True
        elif check_mode:
            changed = _comparable(existing) != _comparable(applied)
        else:
            changed = ((existing.get("metadata") or {}).get("resourceVersion")
                       != ((applied or {}).get("metadata") or {}).get("resourceVersion"))
        verb = ("created" if existing is None else "configured") if changed else "unchanged"
        if check_mode and changed:
            verb = "would be " + verb
        return changed, "%s/%s %s (%s)" % (kind, name, verb, os.path.basename(path))

    def deploy(self, found, replicas, check_mode=False, wait=True):
        if not self.manifests_dir:
            raise self.error("state=deployed needs kubernetes.manifests_dir (the plan's k8s/ directory)")
        try:
            documents = load_manifests(self.manifests_dir)
        except DRError as exc:
            raise self.error(exc.message)
        changed = False
        actions = []
        for path, doc in documents:
            one_changed, line = self.apply_one(path, doc, check_mode)
            changed = changed or one_changed
            actions.append(line)
        if check_mode:
            return changed, actions
        now = self.observe()
        if not now["exists"]:
            raise self.error("the manifests in %s do not create deployment %s" % (self.manifests_dir, self.deployment))
        if replicas is not None and replicas != now["replicas"]:
            self.patch({"spec": {"replicas": replicas}})
            actions.append("scaled from %d to %d" % (now["replicas"], replicas))
            changed = True
        target = replicas if replicas is not None else now["replicas"]
        if wait and target > 0:
            actions.append("%d ready after %.0f s" % (target, self.wait_ready(target)))
        return changed, actions
