# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""drill_figures: the key figures of an earlier drill, from its report.json. Documented in
drill_figures.yml."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible.errors import AnsibleFilterError

from ansible_collections.auditron.dr.plugins.module_utils.timeline import key_figures


def drill_figures(path):
    try:
        with open(path) as handle:
            report = json.load(handle)
        figures = key_figures(report)
    except (IOError, OSError, ValueError, KeyError, TypeError) as exc:
        raise AnsibleFilterError("drill_figures: %s is not a readable DR report: %s" % (path, exc))
    figures["started_at"] = (report.get("run") or {}).get("start")
    return figures


class FilterModule(object):
    def filters(self):
        return {"drill_figures": drill_figures}
