#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: app_platform
short_description: Stop, start, restart or deploy the AUDITRON application, remembering its replica count
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - Brings the AUDITRON API of one site to a state - V(stopped) (the plan's scenario 1 step 2), V(started)
    (step 6), V(restarted), V(deployed) (scenario 2 step 4) - or only reports it (V(status)).
  - B(Stopping remembers the replica count it found) and starting restores it, where the plan hard-codes
    C(--replicas=3). The count is returned as RV(previous_replicas) and persisted so that another run can start
    the app again - on the Deployment as the annotation C(auditron.dr/replicas-before-stop) (kubernetes), or in
    a small JSON state file (compose - next to the compose file; process - next to the pid file). Starting
    without O(replicas) keeps a running app's count, else uses the remembered count, else 1 (process), the
    compose file's own scale (compose), or fails (a Deployment at 0 with nothing remembered).
  - B(process) (the lab) - one process started from O(process.command), detached (new session, stdin
    C(/dev/null), output appended to O(process.log_file)), recorded in O(process.pid_file) as JSON
    C({pid, start_time, argv}) where C(start_time) is field 22 of C(/proc/<pid>/stat), the format of the lab's
    own pid files. A pid is signalled only when its start time still matches the record, so a recycled pid is
    never killed. Stop is SIGTERM (to the process group the app leads), then SIGKILL after
    O(process.stop_grace_period).
  - B(compose) - C(docker compose -f <file> -p <project> stop <service>), C(up -d --scale <service>=<n>
    <service>), C(ps --all --format json <service>). Not run against a real Docker engine in this collection's
    tests (none runs there); its command lines and its parsing of C(ps) are unit-tested.
  - B(kubernetes) - patches the Deployment's C(spec.replicas) (and the annotation, in the same request), waits
    for C(status.readyReplicas) to reach the count (and, when stopping, for its pods to be gone), and applies a
    manifests directory with server-side apply. Uses kubernetes.core's API client, so authentication works as in
    its C(k8s) modules (kubeconfig, context, in-cluster, C(K8S_AUTH_*) variables). Not run against a real
    cluster in this collection's default tests; see the opt-in test in the documentation.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports what would be stopped or started and the current replica count; nothing is signalled,
      started, patched or written. Kubernetes manifests are sent with server-side dry run to tell what would
      change; for compose O(state=deployed) is always reported as a change (compose decides).
  diff_mode:
    support: full
    details: Before and after - running, replica count, remembered count.
  platform:
    platforms: posix
options:
  platform:
    description: How the application runs.
    type: str
    choices: [process, compose, kubernetes]
    required: true
  state:
    description:
      - V(stopped) - stop it and remember the count found. Stopping a stopped app changes nothing.
      - V(started) - run it with O(replicas), else the running or remembered count. Starting a running app at the
        right count changes nothing.
      - V(restarted) - stop and start a process, C(docker compose restart), or a rollout restart of the
        Deployment; always a change.
      - V(deployed) - apply O(kubernetes.manifests_dir), C(docker compose up -d) the project, or (process) start
        it if it is not running; then wait until ready.
      - V(status) - report only.
    type: str
    choices: [stopped, started, restarted, deployed, status]
    default: started
  site:
    description: Site name, shown in every message (V(primary), V(dr)).
    type: str
    default: app
  replicas:
    description:
      - Replicas to run. Omit to use the running or remembered count. At most 1 for O(platform=process).
    type: int
  wait:
    description: Wait until the app is ready (started) or gone (stopped).
    type: bool
    default: true
  timeout:
    description: Seconds to wait; a timeout fails with the last state seen.
    type: int
    default: 300
  url:
    description: Base URL of the app. O(platform=process) waits for its port to answer after a start and to close
      after a stop, and refuses to start when the port is taken by a process its pid file does not record.
    type: str
  process:
    description: The process platform (the lab).
    type: dict
    suboptions:
      command:
        description: Argv list that starts the app (not run through a shell).
        type: list
        elements: str
      pid_file:
        description: Pid file, JSON C({pid, start_time, argv}) as the lab writes it.
        type: path
      log_file:
        description: File the app's output is appended to. Omit to discard it.
        type: path
      state_file:
        description: Where the remembered count is kept. Default - the pid file's name with C(.replicas.json)
          in place of C(.json).
        type: path
      run_as:
        description:
          - Start the app as this user. The module must then run as root (it drops privileges for the child
            only), which keeps the pid file writable in a directory only root may write, as in the lab.
          - Omit to run it as the user the task runs as.
        type: str
      chdir:
        description: Working directory of the app.
        type: path
        default: /
      environment:
        description: Variables added to the app's minimal environment (PATH, HOME, USER, LANG, TZ=UTC).
        type: dict
      stop_grace_period:
        description: Seconds between SIGTERM and SIGKILL.
        type: int
        default: 30
  compose:
    description: The docker compose platform.
    type: dict
    suboptions:
      project_file:
        description: The compose file (C(-f)).
        type: path
      project_name:
        description: Project name (C(-p)).
        type: str
        default: auditron
      service:
        description: The API's service.
        type: str
        default: api
      state_file:
        description: Where the remembered count is kept. Default - C(.auditron-dr-<project>-<service>.state.json)
          next to O(compose.project_file).
        type: path
      command:
        description: The compose command, for example V([docker-compose]) or V([podman, compose]).
        type: list
        elements: str
        default: [docker, compose]
      chdir:
        description: Directory the command runs in. Default - the compose file's directory.
        type: path
  kubernetes:
    description: The Kubernetes platform. Authentication options are named as in kubernetes.core and fall back to
      the same C(K8S_AUTH_*) environment variables.
    type: dict
    suboptions:
      namespace:
        description: Namespace of the Deployment (the plan's C(-n auditron)).
        type: str
        default: auditron
      deployment:
        description: The API's Deployment.
        type: str
        default: auditron-api
      manifests_dir:
        description: Directory of manifests for O(state=deployed) (the plan's C(k8s/)); every C(*.yaml), C(*.yml)
          and C(*.json) file in name order, every document, server-side applied.
        type: path
      field_manager:
        description: Field manager of the server-side apply and of the patches.
        type: str
        default: auditron.dr
      kubeconfig:
        description: Kubeconfig file.
        type: path
      context:
        description: Context in the kubeconfig.
        type: str
      host:
        description: API server URL.
        type: str
      api_key:
        description: Bearer token for the API server. Never logged.
        type: str
      validate_certs:
        description: Verify the API server's certificate.
        type: bool
      ca_cert:
        description: CA certificate of the API server.
        type: path
      client_cert:
        description: Client certificate.
        type: path
      client_key:
        description: Client key.
        type: path
      proxy:
        description: HTTP proxy for the API server.
        type: str
requirements:
  - kubernetes (Python library) and the kubernetes.core collection, for O(platform=kubernetes)
  - PyYAML, for O(kubernetes.manifests_dir)
  - docker compose (or a compatible command), for O(platform=compose)
notes:
  - The remembered count is cleared when the app is started again, so a later stop records the count then found.
  - A Deployment scaled to 0 is not considered stopped until its pods are gone (a terminating pod still holds its
    database connections).
  - For a Deployment under a HorizontalPodAutoscaler, scaling to 0 pauses the autoscaler; starting restores the
    count recorded before the stop, and the autoscaler takes over from there.
seealso:
  - module: auditron.dr.app_verify
  - module: kubernetes.core.k8s_scale
  - module: community.docker.docker_compose_v2
"""

EXAMPLES = r"""
- name: Stop the application before restoring its database (scenario 1, step 2)
  auditron.dr.app_platform:
    platform: kubernetes
    state: stopped
    site: primary
    kubernetes:
      namespace: auditron
      deployment: auditron-api
  register: app_stop

- name: Start it again with the count it had (scenario 1, step 6)
  auditron.dr.app_platform:
    platform: kubernetes
    state: started
    site: primary
    kubernetes:
      namespace: auditron
      deployment: auditron-api

- name: Deploy to the DR cluster (scenario 2, step 4)
  auditron.dr.app_platform:
    platform: kubernetes
    state: deployed
    site: dr
    kubernetes:
      namespace: auditron
      manifests_dir: "{{ playbook_dir }}/../k8s"
      context: dr-cluster

- name: Compose
  auditron.dr.app_platform:
    platform: compose
    state: stopped
    compose:
      project_file: /srv/auditron/docker-compose.yml
      service: api

- name: The lab's process (as its server user)
  auditron.dr.app_platform:
    platform: process
    state: started
    site: dr
    url: "{{ auditron_dr_app.url }}"
    process:
      command: "{{ auditron_dr_app.command }}"
      pid_file: "{{ auditron_dr_app.pid_file }}"
      log_file: "{{ auditron_dr_app.log_file }}"
      run_as: "{{ auditron_dr_os_user }}"
"""

RETURN = r"""
changed:
  description: Whether the app was (or, in check mode, would be) stopped, started, restarted or deployed.
  returned: always
  type: bool
msg:
  description: One line - the app, where it ends up and what was done.
  returned: always
  type: str
  sample: "app dr (process, pid file /srv/lab/.lab/pids/app-dr.json) is stopped: remembered 1 replica(s) ..."
previous_replicas:
  description: With O(state=stopped) - the count found before stopping; when it was already stopped, the count
    remembered from the stop before (0 when none).
  returned: when state is stopped
  type: int
  sample: 3
replicas:
  description: The count after the task (predicted in check mode).
  returned: always
  type: int
running:
  description: Whether the app runs after the task (predicted in check mode).
  returned: always
  type: bool
remembered_replicas:
  description: The remembered count after the task, or null.
  returned: always
  type: int
actions:
  description: What was done, or in check mode what would be done, one line each.
  returned: always
  type: list
  elements: str
found:
  description: What was found before acting - running, replicas, ready_replicas, remembered_replicas, and per
    platform the pid and pid file, the containers, or the Deployment's status.
  returned: always
  type: dict
status:
  description: The same, observed again after a change (equal to RV(found) otherwise).
  returned: always
  type: dict
wait_log:
  description: Progress lines of the waits (last 20).
  returned: always
  type: list
  elements: str
dr_report:
  description: For the dr_timeline callback - C(phase_detail) with RV(msg).
  returned: always
  type: dict
platform:
  description: O(platform).
  returned: always
  type: str
state:
  description: O(state).
  returned: always
  type: str
site:
  description: O(site).
  returned: always
  type: str
app:
  description: The app's label used in messages.
  returned: always
  type: str
"""

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.auditron.dr.plugins.module_utils import platform, platform_drivers, platform_kubernetes
from ansible_collections.auditron.dr.plugins.module_utils.base import AuditronModule


def argument_spec():
    return dict(
        platform=dict(type="str", required=True, choices=list(platform.PLATFORMS)),
        state=dict(type="str", default="started", choices=list(platform.STATES)),
        site=dict(type="str", default="app"),
        replicas=dict(type="int"),
        wait=dict(type="bool", default=True),
        timeout=dict(type="int", default=300),
        url=dict(type="str"),
        process=dict(type="dict", options=dict(
            command=dict(type="list", elements="str"),
            pid_file=dict(type="path"),
            log_file=dict(type="path"),
            state_file=dict(type="path"),
            run_as=dict(type="str"),
            chdir=dict(type="path", default="/"),
            environment=dict(type="dict"),
            stop_grace_period=dict(type="int", default=30),
        )),
        compose=dict(type="dict", options=dict(
            project_file=dict(type="path"),
            project_name=dict(type="str", default="auditron"),
            service=dict(type="str", default="api"),
            state_file=dict(type="path"),
            command=dict(type="list", elements="str", default=["docker", "compose"]),
            chdir=dict(type="path"),
        )),
        kubernetes=dict(type="dict", options=dict(
            namespace=dict(type="str", default="auditron"),
            deployment=dict(type="str", default="auditron-api"),
            manifests_dir=dict(type="path"),
            field_manager=dict(type="str", default="auditron.dr"),
            kubeconfig=dict(type="path"),
            context=dict(type="str"),
            host=dict(type="str"),
            api_key=dict(type="str", no_log=True),
            validate_certs=dict(type="bool"),
            ca_cert=dict(type="path"),
            client_cert=dict(type="path"),
            client_key=dict(type="path"),
            proxy=dict(type="str"),
        )),
    )


def run(params, check_mode, progress):
    driver = platform_drivers.make_driver(params["platform"], params["site"], state=params["state"],
                                          url=params["url"], process=params["process"], compose=params["compose"],
                                          kubernetes=params["kubernetes"], timeout=params["timeout"],
                                          progress=progress)
    return platform.ensure(driver, params["state"], replicas=params["replicas"], check_mode=check_mode,
                           wait=params["wait"])


def main():
    module = AuditronModule(argument_spec(), supports_check_mode=True)
    params = module.params
    if params["platform"] == "kubernetes":
        missing = platform_kubernetes.kubernetes_missing()
        if missing:
            module.fail_json(msg=missing_required_lib(missing[0]), exception=missing[1])
        if params["state"] == "deployed" and not platform_kubernetes.HAS_YAML:
            module.fail_json(msg=missing_required_lib("PyYAML"), exception=platform_kubernetes.YAML_IMPORT_ERROR)
    module.run(run, params, module.check_mode, module.log)


if __name__ == "__main__":
    main()
