# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that build check rows (module_utils/checkrow) where the data already is, in the play.

failed_check: the failed row of a rescue; backup_copies: backup_catalog's result as one row per
location and the latest backup to restore; check_summary: the verdict over the rows.
Documented in the sidecar files failed_check.yml, backup_copies.yml and check_summary.yml.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.auditron.dr.plugins.module_utils import checkrow, verification


def failed_check(failed_result, name, context, task=None, default="?", **extra):
    """The row a rescue records: '<context>: [<task> failed: ]<the failed task's msg>'."""
    msg = (failed_result or {}).get("msg") if isinstance(failed_result, dict) else None
    detail = "%s: %s%s" % (context, ("%s failed: " % task) if task else "", msg or default)
    return checkrow.failed(name, detail, **extra)


def backup_copies(catalog_result, location_names=None):
    if not isinstance(catalog_result, dict):
        raise AnsibleFilterError("backup_copies expects the result of auditron.dr.backup_catalog")
    result = verification.copies_result(catalog_result, location_names)
    result.pop("changed", None)
    result.pop("dr_report", None)
    return result


def check_summary(checks, run="verify_backups.yml"):
    if not isinstance(checks, list):
        raise AnsibleFilterError("check_summary expects a list of check rows, got %s" % type(checks).__name__)
    return verification.summarize(checks, run=run)


class FilterModule(object):
    def filters(self):
        return {"failed_check": failed_check, "backup_copies": backup_copies, "check_summary": check_summary}
