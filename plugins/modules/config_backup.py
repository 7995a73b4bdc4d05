#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: config_backup
short_description: Encrypted backup and restore of Kubernetes ConfigMaps/Secrets and configuration files
version_added: 0.1.0
author:
  - AUDITRON SRE (@auditron)
description:
  - The plan's configuration backups (Kubernetes ConfigMaps and Secrets, encrypted), and the configuration
    files an application reads at start, as one bundle per backup in every backup location.
  - O(state=backup) reads the sources - O(files) (content, owner and mode kept) and O(kubernetes) (ConfigMaps
    and Secrets of the given namespaces, server-set metadata stripped, service-account tokens, the cluster's
    C(kube-root-ca.crt) and objects a controller owns left out) - into one JSON bundle, and streams it through
    AES-256-GCM envelope encryption to every location at once, under C(config/) (O(key_prefix)), named
    C(config_YYYYMMDD_HHMMSS). Each copy is read back and hashed; a small manifest (id, time, site, sources,
    object count, sha256 per location, key reference) is written last, only next to a copy that matched.
  - O(state=restore) picks the newest complete bundle (or O(backup_id)), takes the first location, in the order
    given, whose copy has the manifest's size and sha256 and whose every GCM tag verifies, plans every item with
    the O(rewrite) and O(secret_rewrite) rules applied, and only then writes - files atomically with their mode
    and owner (no access for group and others when the file holds secrets; missing parent directories are made
    0700), Kubernetes objects by server-side apply into the target namespace. What already matches (content,
    mode, owner; for objects, the fields this module sends) is left alone, so restoring the same bundle twice
    changes nothing the second time.
  - M(auditron.dr.config_backup_info) lists every bundle in every location, with presence, size and the sha256
    of each stored copy against the manifest.
  - A location that does not answer, or whose copy is damaged or truncated, is skipped for the next one and
    named in the result. A wrong key fails the restore with one line naming the bundle and location. Nothing is
    written before a copy has verified and every item could be planned.
extends_documentation_fragment:
  - auditron.dr.location
  - auditron.dr.encryption
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - With O(state=backup), the sources are read and the module says what would be written where; nothing is
        written and no data key is made.
      - With O(state=restore), the bundle is fetched and verified as in a real restore, and the module returns
        per file and object whether it would be created, updated (and what - content, mode, owner, data keys)
        or left unchanged; nothing is written or applied.
  diff_mode:
    support: full
    details:
      - With O(state=restore), before and after per file and Kubernetes object. Values of files that hold
        secrets and of Secrets are masked - keys are shown, each marked when its value differs.
      - O(state=backup) adds a bundle and changes nothing that could be diffed.
  platform:
    platforms: posix
options:
  state:
    description:
      - V(backup) writes a new bundle, V(restore) applies one. M(auditron.dr.config_backup_info) lists them.
    type: str
    required: true
    choices: [backup, restore]
  key_prefix:
    description: Prefix under each location (its own O(locations[].prefix) included) where bundles live.
    type: str
    default: config/
  site:
    description: Name of the site being backed up, recorded in the bundle and its manifest.
    type: str
  source_site:
    description:
      - Restore only. With O(backup_id=latest), take the newest bundle made at this site (for example
        V(primary) when DR restores the primary's configuration).
    type: str
  backup_id:
    description: Bundle to restore, C(config_YYYYMMDD_HHMMSS), or V(latest) for the newest complete one.
    type: str
    default: latest
  files:
    description:
      - With O(state=backup), the files (or directories, every regular file under them) to back up.
      - With O(state=restore), the files of the bundle to restore, and where. Omit to restore every file of the
        bundle where it was; V([]) restores none.
    type: list
    elements: dict
    suboptions:
      path:
        description:
          - The absolute path of a file or directory as it was backed up.
        type: path
        required: true
      dest:
        description:
          - Restore only. Where to write it (for a directory, the directory that takes its place). Defaults to
            O(files[].path). A symbolic link at the destination is followed.
        type: path
      owner:
        description: Restore only. Owner to give the file, instead of the one recorded (a name or a uid).
        type: str
      group:
        description: Restore only. Group to give the file, instead of the one recorded (a name or a gid).
        type: str
      mode:
        description:
          - Restore only. Octal mode such as V('0600'), instead of the one recorded.
          - A file that holds secrets never gets group or other permissions.
        type: str
      secret:
        description:
          - The file holds secrets. Its values are masked in diffs and it is restored without group or other
            permissions. Recorded in the bundle at backup; a restore may override it.
        type: bool
      optional:
        description: Backup only. A missing file is skipped with a warning instead of failing the backup.
        type: bool
        default: false
      format:
        description:
          - Restore only. How O(rewrite) reads the file - V(json) (rules see values, path rules work, layout is
            kept), V(text) (match rules on the text), V(binary) (no rules); V(auto) tries JSON, then text.
        type: str
        choices: [auto, json, text, binary]
        default: auto
  kubernetes:
    description:
      - ConfigMaps and Secrets to back up, or to restore, and the cluster to reach.
      - Connection - O(kubernetes.kubeconfig) (and O(kubernetes.context)), or O(kubernetes.host) with
        O(kubernetes.api_key); with none of them, the in-cluster service account when running in a pod, else
        C(~/.kube/config).
      - With O(state=restore), omit it to leave the bundle's objects alone (the module warns that it did).
    type: dict
    suboptions:
      kubeconfig:
        description: Path of the kubeconfig file.
        type: path
      context:
        description: Context of the kubeconfig to use; its current context when omitted.
        type: str
      host:
        description: URL of the API server, instead of a kubeconfig.
        type: str
      api_key:
        description: Bearer token for O(kubernetes.host). Never logged.
        type: str
      ca_cert:
        description: CA bundle for the API server's certificate.
        type: path
      validate_certs:
        description: Verify the API server's TLS certificate.
        type: bool
        default: true
      request_timeout:
        description: Seconds to wait for each API call.
        type: int
        default: 30
      namespaces:
        description:
          - Backup - the namespaces to read (at least one).
          - Restore - restore only the objects of these namespaces of the bundle; all when omitted.
        type: list
        elements: str
      kinds:
        description: Kinds to back up or restore.
        type: list
        elements: str
        choices: [ConfigMap, Secret]
        default: [ConfigMap, Secret]
      label_selector:
        description: Backup only. Only objects with these labels, for example V(app=auditron).
        type: str
      include_owned:
        description:
          - Backup only. Also keep objects that a controller owns (they have ownerReferences); the references
            are dropped. By default they are left out, since their controller makes them again.
        type: bool
        default: false
      exclude:
        description: Backup only. Names (or C(Kind/name)) to leave out; shell-style patterns.
        type: list
        elements: str
        default: []
      namespace_map:
        description: Restore only. Target namespace per namespace of the bundle; unmapped namespaces keep their name.
        type: dict
        default: {}
      field_manager:
        description: Restore only. Field manager of the server-side apply.
        type: str
        default: auditron-dr
  rewrite:
    description:
      - Restore only. Rules applied in order to the values of every restored item before it is written, so that
        a configuration of one site becomes the other's (database port, object-store endpoint, listen address).
      - Files are rewritten as JSON when they parse as JSON (values only, never keys; the file's layout is kept),
        else as text. Kubernetes objects are rewritten in their C(data) values (a Secret's decoded).
      - Put rules whose values are secrets in O(secret_rewrite) instead.
      - A match rule that changes nothing in the whole bundle is reported as a warning.
    type: list
    elements: dict
    default: []
    suboptions:
      match:
        description:
          - A value to find. A string is replaced wherever it occurs inside a string value (only whole values with
            O(rewrite[].whole)); a number or a boolean replaces values equal to it.
          - Give either O(rewrite[].match) or O(rewrite[].path).
        type: raw
      replace:
        description: What O(rewrite[].match) becomes.
        type: raw
      whole:
        description: Replace only values that equal O(rewrite[].match) entirely.
        type: bool
        default: false
      path:
        description:
          - Key path of one value to set, such as V(postgres.port), V(listen[0]) or V(data.DB_HOST) (Kubernetes
            objects; a Secret's value decoded). JSON files and Kubernetes objects only.
        type: str
      value:
        description: The value to set at O(rewrite[].path).
        type: raw
      optional:
        description: A path that is not there is skipped instead of failing the restore.
        type: bool
        default: false
      applies_to:
        description:
          - Shell-style patterns of the items the rule applies to - a file's path as backed up, or
            C(Kind/namespace/name). All items when omitted.
        type: list
        elements: str
  secret_rewrite:
    description:
      - Restore only. Rules like O(rewrite) whose values are secrets (passwords, keys); their values are never
        logged or shown. Applied after O(rewrite).
    type: list
    elements: dict
    default: []
    suboptions:
      match:
        description: A value to find, as O(rewrite[].match). Never logged.
        type: raw
      replace:
        description: What it becomes. Never logged.
        type: raw
      whole:
        description: Replace only values that equal O(secret_rewrite[].match) entirely.
        type: bool
        default: false
      path:
        description: Key path of one value to set, as O(rewrite[].path).
        type: str
      value:
        description: The value to set at O(secret_rewrite[].path). Never logged.
        type: raw
      optional:
        description: A path that is not there is skipped instead of failing the restore.
        type: bool
        default: false
      applies_to:
        description: Patterns of the items the rule applies to, as O(rewrite[].applies_to).
        type: list
        elements: str
  require_all_locations:
    description: Backup only. Fail (and remove the copies that were written) unless every location has an intact copy.
    type: bool
    default: false
  verify_after_write:
    description: Backup only. Read every copy back and compare its sha256 before the manifest is written.
    type: bool
    default: true
notes:
  - Give O(encryption) always. O(encryption.key_source=none) stores Secrets in plain text, and the module says
    so in a warning on every run.
  - The Kubernetes source and target were tested against a stand-in of the API that records calls, not against a
    real cluster; an opt-in test runs against one (see docs/config-backup.md).
  - Bundles are kept whole in memory (configuration, not data); one file may be at most 16 MiB.
requirements:
  - cryptography
  - boto3 (for S3 locations and KMS)
  - kubernetes (for O(kubernetes))
seealso:
  - module: auditron.dr.config_backup_info
  - module: kubernetes.core.k8s
  - module: auditron.dr.pg_backup
"""

EXAMPLES = r"""
- name: Back up the app's ConfigMaps/Secrets and its config file to every backup location
  auditron.dr.config_backup:
    state: backup
    site: primary
    files:
      - path: /etc/auditron/app.json
    kubernetes:
      kubeconfig: /etc/auditron/kubeconfig
      namespaces: [auditron]
      label_selector: app.kubernetes.io/part-of=auditron
    locations:
      - name: local
        type: local
        path: /var/backups/auditron
      - name: s3-us-east-1
        bucket: auditron-backups
        region: us-east-1
      - name: s3-eu-west-1
        bucket: auditron-backups-eu-west-1
        region: eu-west-1
    encryption:
      key_source: kms
      kms_key_id: alias/auditron-backups

- name: On DR, before the app starts - the primary's newest configuration, rewritten for DR
  auditron.dr.config_backup:
    state: restore
    source_site: primary
    files:
      - path: /etc/auditron/app.json
    kubernetes:
      namespaces: [auditron]
    rewrite:
      - match: db.primary.auditron.internal
        replace: db.dr.auditron.internal
      - match: https://minio.primary.auditron.internal:9000
        replace: https://minio.dr.auditron.internal:9000
        whole: true
      - path: site
        value: dr
        applies_to: [/etc/auditron/app.json]
    secret_rewrite:
      - match: "{{ vault_minio_primary_secret_key }}"
        replace: "{{ vault_minio_dr_secret_key }}"
    locations: "{{ auditron_dr_backup_locations }}"
    encryption:
      key_source: kms
      kms_key_id: alias/auditron-backups
  register: config_restore
"""

RETURN = r"""
msg:
  description: One line saying what was done.
  returned: always
  type: str
  sample: "config bundle config_20261124_020000 (2026-11-24T02:00:00Z, site primary) restored from s3-us-east-1:
    1 create"
backup_id:
  description: The bundle written or restored (in check mode of a backup, an example of the id it would get).
  returned: always
  type: str
  sample: config_20261124_020000
locations:
  description:
    - Backup - locations that hold an intact copy and its manifest. In check mode, per location what would be
      written.
  returned: state is backup
  type: list
  elements: raw
  sample: ["local", "s3-us-east-1", "s3-eu-west-1"]
failed_locations:
  description: Backup - locations that did not get an intact copy, with the reason.
  returned: state is backup and not check mode
  type: dict
  sample: {"s3-eu-west-1": "location s3-eu-west-1: endpoint https://localhost:55912/auditron-backups does not answer"}
sha256:
  description: Backup - sha256 of the stored bundle (the same in every location).
  returned: state is backup and not check mode
  type: str
counts:
  description: Backup - items in the bundle per kind (V(files), V(ConfigMap), V(Secret), V(total)).
  returned: state is backup
  type: dict
  sample: {"files": 1, "ConfigMap": 2, "Secret": 1, "total": 4}
items:
  description: Backup - what the bundle holds (names, sizes, checksums, data keys; never values).
  returned: state is backup
  type: list
  elements: dict
left_out:
  description:
    - Backup - Kubernetes objects left out, with the reason.
    - Not named C(skipped), which Ansible would read as the task's own status.
  returned: state is backup
  type: list
  elements: dict
  sample: [{"kind": "Secret", "namespace": "auditron", "name": "default-token-x2v9k",
            "reason": "service-account token: the DR cluster issues its own"}]
location:
  description: Restore - the location the verified copy came from.
  returned: state is restore
  type: str
  sample: s3-us-east-1
skipped_locations:
  description: Restore - locations tried before it, or not reachable, with the reason.
  returned: state is restore
  type: dict
files:
  description: Restore - per file, where it went and what was done.
  returned: state is restore
  type: list
  elements: dict
  contains:
    path:
      description: The file as backed up.
      type: str
    dest:
      description: Where it was (or would be) written.
      type: str
    action:
      description: V(create), V(update) or V(unchanged).
      type: str
    changes:
      description: What differed - V(content), V(mode), V(owner).
      type: list
      elements: str
    mode:
      description: Mode of the restored file.
      type: str
    rewritten:
      description: Values changed, per rule.
      type: dict
objects:
  description: Restore - per Kubernetes object, the target namespace and what was done (changes name data keys,
    never values).
  returned: state is restore
  type: list
  elements: dict
rewrite:
  description: Restore - per rule, how many values it changed (values of O(secret_rewrite) never shown).
  returned: state is restore
  type: list
  elements: dict
  sample: [{"rule": "rewrite[0] (path site)", "changes": 1}]
dr_report:
  description: Checks and the phase detail for the dr_timeline callback's report.
  returned: state is backup or restore, and not check mode
  type: dict
"""

from ansible_collections.auditron.dr.plugins.module_utils.base import (
    AuditronModule, encryption_suboptions, location_suboptions)
from ansible_collections.auditron.dr.plugins.module_utils.configbackup import backup
from ansible_collections.auditron.dr.plugins.module_utils.configrestore import restore
from ansible_collections.auditron.dr.plugins.module_utils.keyproviders import CRYPTOGRAPHY_IMPORT_ERROR, HAS_CRYPTOGRAPHY
from ansible_collections.auditron.dr.plugins.module_utils.kubeapi import HAS_KUBERNETES, KUBERNETES_IMPORT_ERROR


def _rule_options(secret):
    return dict(
        match=dict(type="raw", no_log=secret),
        replace=dict(type="raw", no_log=secret),
        whole=dict(type="bool", default=False),
        path=dict(type="str"),
        value=dict(type="raw", no_log=secret),
        optional=dict(type="bool", default=False),
        applies_to=dict(type="list", elements="str"),
    )


def argument_spec():
    return dict(
        state=dict(type="str", required=True, choices=["backup", "restore"]),
        locations=dict(type="list", elements="dict", default=[], options=location_suboptions()),
        encryption=dict(type="dict", options=encryption_suboptions()),
        key_prefix=dict(type="str", default="config/", no_log=False),
        site=dict(type="str"),
        source_site=dict(type="str"),
        backup_id=dict(type="str", default="latest"),
        files=dict(type="list", elements="dict", options=dict(
            path=dict(type="path", required=True),
            dest=dict(type="path"),
            owner=dict(type="str"),
            group=dict(type="str"),
            mode=dict(type="str"),
            secret=dict(type="bool", no_log=False),
            optional=dict(type="bool", default=False),
            format=dict(type="str", default="auto", choices=["auto", "json", "text", "binary"]),
        )),
        kubernetes=dict(type="dict", options=dict(
            kubeconfig=dict(type="path"),
            context=dict(type="str"),
            host=dict(type="str"),
            api_key=dict(type="str", no_log=True),
            ca_cert=dict(type="path"),
            validate_certs=dict(type="bool", default=True),
            request_timeout=dict(type="int", default=30),
            namespaces=dict(type="list", elements="str"),
            kinds=dict(type="list", elements="str", choices=["ConfigMap", "Secret"], default=["ConfigMap", "Secret"]),
            label_selector=dict(type="str"),
            include_owned=dict(type="bool", default=False),
            exclude=dict(type="list", elements="str", default=[]),
            namespace_map=dict(type="dict", default={}),
            field_manager=dict(type="str", default="auditron-dr"),
        )),
        rewrite=dict(type="list", elements="dict", default=[], options=_rule_options(False)),
        secret_rewrite=dict(type="list", elements="dict", default=[], no_log=False, options=_rule_options(True)),
        require_all_locations=dict(type="bool", default=False),
        verify_after_write=dict(type="bool", default=True),
    )


def _run(module):
    params = module.params
    if params["kubernetes"] is not None and not HAS_KUBERNETES:
        module.fail_json(msg="the kubernetes Python library is required for the kubernetes option",
                         exception=KUBERNETES_IMPORT_ERROR)
    if params["state"] == "backup":
        result = backup(params["locations"], encryption=params["encryption"], files=params["files"],
                        kubernetes_params=params["kubernetes"], site=params["site"], key_prefix=params["key_prefix"],
                        require_all_locations=params["require_all_locations"],
                        verify_after_write=params["verify_after_write"], check_mode=module.check_mode)
    else:
        result = restore(params["locations"], encryption=params["encryption"], backup_id=params["backup_id"],
                         files=params["files"], kubernetes_params=params["kubernetes"], rewrite=params["rewrite"],
                         secret_rewrite=params["secret_rewrite"], source_site=params["source_site"],
                         key_prefix=params["key_prefix"], check_mode=module.check_mode, diff=module.diff_mode)
    return result


def main():
    module = AuditronModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        required_libs=[("cryptography", HAS_CRYPTOGRAPHY, CRYPTOGRAPHY_IMPORT_ERROR)],
    )
    module.run(_run, module)


if __name__ == "__main__":
    main()
