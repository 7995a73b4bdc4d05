# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which driver a platform name means, built from the app_platform module's options.

The drivers themselves: platform_process.py, platform_compose.py, platform_kubernetes.py; the
states they share: platform.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.platform import PLATFORMS
from ansible_collections.auditron.dr.plugins.module_utils.platform_compose import ComposeDriver
from ansible_collections.auditron.dr.plugins.module_utils.platform_kubernetes import KubernetesDriver
from ansible_collections.auditron.dr.plugins.module_utils.platform_process import ProcessDriver


def make_driver(platform, site, state=None, url=None, process=None, compose=None, kubernetes=None,
                timeout=300.0, interval=2.0, progress=None, runner=None, client=None):
    """A driver from module-shaped options (the dicts of the app_platform module)."""
    common = {"timeout": timeout, "interval": interval, "progress": progress}
    if platform == "process":
        opts = process or {}
        return ProcessDriver(site, opts.get("pid_file"), command=opts.get("command"), log_file=opts.get("log_file"),
                             state_file=opts.get("state_file"), url=url, run_as=opts.get("run_as"),
                             chdir=opts.get("chdir"), environment=opts.get("environment"),
                             stop_grace_period=opts.get("stop_grace_period") or 30, **common)
    if platform == "compose":
        opts = compose or {}
        return ComposeDriver(site, opts.get("project_file"), project_name=opts.get("project_name"),
                             service=opts.get("service"), state_file=opts.get("state_file"),
                             command=opts.get("command"), chdir=opts.get("chdir"), runner=runner, **common)
    if platform == "kubernetes":
        opts = dict(kubernetes or {})
        auth = dict((k, opts.get(k)) for k in ("kubeconfig", "context", "host", "api_key", "validate_certs",
                                               "ca_cert", "client_cert", "client_key", "proxy"))
        return KubernetesDriver(site, namespace=opts.get("namespace"), deployment=opts.get("deployment"),
                                manifests_dir=opts.get("manifests_dir"), field_manager=opts.get("field_manager"),
                                client=client, auth=auth, allow_missing=(state == "deployed"), **common)
    raise DRError("platform %r is not one of %s" % (platform, ", ".join(PLATFORMS)))
