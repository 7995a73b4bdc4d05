# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Kubernetes API client of configuration backups: ConfigMaps and Secrets listed, read and
applied (server-side apply) through the `kubernetes` Python client's CoreV1Api.

Not kubernetes.core's module_utils: those need an AnsibleModule, and the engine runs from
tests without one. KubernetesApi is the whole surface the engine uses, so tests can hand it
a stand-in CoreV1Api that records calls. Every failure is one DRError naming the call.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, first_line, importable

# The kubernetes client is imported when a Kubernetes API is used, not here: loading it costs
# about 0.4 s of CPU, and most runs back up and restore files or compose projects.
HAS_KUBERNETES = importable("kubernetes")
KUBERNETES_IMPORT_ERROR = None if HAS_KUBERNETES else "No module named 'kubernetes'"


def _api_exception_class():
    """kubernetes' ApiException, or a class nothing raises when the client is not installed
    (the unit tests' stand-in API raises DRError or plain exceptions)."""
    if HAS_KUBERNETES:
        from kubernetes.client.exceptions import ApiException  # pylint: disable=import-outside-toplevel
        return ApiException
    return _NoApiException


class _NoApiException(Exception):
    status = None
    body = None


KUBERNETES_KINDS = ("ConfigMap", "Secret")
_KIND_CALLS = {
    "ConfigMap": {"list": "list_namespaced_config_map", "read": "read_namespaced_config_map",
                  "patch": "patch_namespaced_config_map", "plural": "ConfigMaps"},
    "Secret": {"list": "list_namespaced_secret", "read": "read_namespaced_secret",
               "patch": "patch_namespaced_secret", "plural": "Secrets"},
}
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
DEFAULT_FIELD_MANAGER = "auditron-dr"
LIST_PAGE = 250


def _status_message(exc):
    """The message of a Kubernetes Status body, else the HTTP reason."""
    body = getattr(exc, "body", None)
    if body:
        try:
            document = json.loads(body)
            if isinstance(document, dict) and document.get("message"):
                return first_line(document["message"])
        except (ValueError, TypeError):
            pass
    return str(getattr(exc, "reason", None) or first_line(exc))


class KubernetesApi(object):
    """The calls this engine makes, on a `kubernetes.client.CoreV1Api` (or anything with the same
    methods, such as the recording stand-in of the unit tests).

    Responses are read raw (`_preload_content=False`) and parsed as JSON, so what is backed up
    is exactly what the API server sent, fields the client's models do not know included.
    """

    def __init__(self, core, label="the Kubernetes API", request_timeout=30):
        self.core = core
        self.label = label
        self.request_timeout = request_timeout
        self.api_exception = _api_exception_class()

    def _call(self, doing, method, *args, **kwargs):
        """The parsed JSON answer; None for 404."""
        try:
            response = getattr(self.core, method)(*args, _preload_content=False,
                                                  _request_timeout=self.request_timeout, **kwargs)
        except self.api_exception as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise DRError("%s: %s: HTTP %s, %s" % (self.label, doing, getattr(exc, "status", "?"),
                                                   _status_message(exc)))
        except DRError:
            raise
        except Exception as exc:  # pylint: disable=broad-except
            raise DRError("%s: %s: the API server does not answer (%s)" % (self.label, doing, first_line(exc)))
        try:
            data = response.data
        finally:
            release = getattr(response, "release_conn", None)
            if release is not None:
                release()
        try:
            return json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
        except (ValueError, UnicodeDecodeError, AttributeError) as exc:
            raise DRError("%s: %s: the answer is not JSON (%s)" % (self.label, doing, first_line(exc)))

    def list(self, kind, namespace, label_selector=None):
        calls = _KIND_CALLS[kind]
        doing = "listing %s in namespace %s" % (calls["plural"], namespace)
        items = []
        token = None
        while True:
            kwargs = {"limit": LIST_PAGE}
            if label_selector:
                kwargs["label_selector"] = label_selector
            if token:
                kwargs["_continue"] = token
            answer = self._call(doing, calls["list"], namespace, **kwargs)
            if answer is None:
                raise DRError("%s: %s: namespace %s not found" % (self.label, doing, namespace))
            items.extend(answer.get("items") or [])
            token = (answer.get("metadata") or {}).get("continue")
            if not token:
                return items

    def read(self, kind, namespace, name):
        return self._call("reading %s %s/%s" % (kind, namespace, name), _KIND_CALLS[kind]["read"], name, namespace)

    def namespace_exists(self, namespace):
        """True, False, or None when the credentials may not read namespaces."""
        try:
            return self._call("reading namespace %s" % namespace, "read_namespace", namespace) is not None
        except DRError as exc:
            if "HTTP 403" in exc.message:
                return None
            raise

    def apply(self, body, field_manager=DEFAULT_FIELD_MANAGER):
        """Server-side apply (PATCH application/apply-patch+yaml, force: take over the fields)."""
        kind, metadata = body["kind"], body["metadata"]
        return self._call("applying %s %s/%s" % (kind, metadata["namespace"], metadata["name"]),
                          _KIND_CALLS[kind]["patch"], metadata["name"], metadata["namespace"], body,
                          field_manager=field_manager, force=True, _content_type=APPLY_CONTENT_TYPE)


def kubernetes_api_from_params(params):
    """A KubernetesApi for the `kubernetes` option: a kubeconfig (and context), or host and
    api_key, or the in-cluster service account when running in a pod."""
    if not HAS_KUBERNETES:
        raise DRError("the kubernetes Python library is required for the kubernetes source and target")
    import kubernetes.client  # pylint: disable=import-outside-toplevel  # see HAS_KUBERNETES
    import kubernetes.config  # pylint: disable=import-outside-toplevel
    params = params or {}
    configuration = kubernetes.client.Configuration()
    host = params.get("host")
    try:
        if host:
            configuration.host = host
            label = "kubernetes API %s" % host
            if params.get("api_key"):
                configuration.api_key = {"authorization": "Bearer %s" % params["api_key"]}
        elif params.get("kubeconfig") or not os.environ.get("KUBERNETES_SERVICE_HOST"):
            kubeconfig = params.get("kubeconfig") or os.path.expanduser(
                os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0])
            kubernetes.config.load_kube_config(config_file=kubeconfig, context=params.get("context"),
                                               client_configuration=configuration, persist_config=False)
            label = "kubernetes context %s" % (params.get("context") or "(current) of %s" % kubeconfig)
        else:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
            label = "kubernetes in-cluster API %s" % configuration.host
    except DRError:
        raise
    except Exception as exc:  # pylint: disable=broad-except
        raise DRError("kubernetes: cannot load the connection settings (%s): %s" % (
            params.get("kubeconfig") or host or "kubeconfig", first_line(exc)))
    if params.get("ca_cert"):
        configuration.ssl_ca_cert = params["ca_cert"]
    if params.get("validate_certs") is False:
        configuration.verify_ssl = False
    core = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))
    return KubernetesApi(core, label=label, request_timeout=params.get("request_timeout") or 30)
