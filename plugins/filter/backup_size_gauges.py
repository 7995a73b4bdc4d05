# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_size_gauges: dr_metrics gauges of what a backup run stored. Documented in backup_size_gauges.yml."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.auditron.dr.plugins.module_utils.metrics import backup_size_gauges


def size_gauges(physical, logical=None, files=None, files_location=None):
    return backup_size_gauges(physical if isinstance(physical, dict) else None,
                              logical if isinstance(logical, dict) else None,
                              files if isinstance(files, dict) else None, files_location)


class FilterModule(object):
    def filters(self):
        return {"backup_size_gauges": size_gauges}
