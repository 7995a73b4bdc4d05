# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""drill_figures: the key figures of an earlier drill, from its report.json; drill_trend: those of
every earlier drill under a report directory, oldest first. Documented in drill_figures.yml and
drill_trend.yml."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import json
import os

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


def drill_trend(report_root):
    """The figures of every drill report under report_root (<root>/<UTC time>-dr_drill/report.json),
    oldest first; none when the directory does not exist yet (before the first report). A glob in
    Python because ansible's fileglob lookup globs file names only, not the directories above them."""
    paths = sorted(glob.glob(os.path.join(glob.escape(str(report_root)), "*-dr_drill", "report.json")))
    return [drill_figures(path) for path in paths]


class FilterModule(object):
    def filters(self):
        return {"drill_figures": drill_figures, "drill_trend": drill_trend}
