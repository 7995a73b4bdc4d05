# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""table_check: one per-table result of auditron.dr.pg_assess as a check row (module_utils/checkrow).
Documented in table_check.yml."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.auditron.dr.plugins.module_utils import checkrow


def table_check(item):
    if not isinstance(item, dict) or "key" not in item or "value" not in item:
        raise AnsibleFilterError("table_check expects dict2items entries of pg_assess's tables")
    stats = item["value"] or {}
    name = "table %s" % item["key"]
    if not stats.get("ok"):
        return checkrow.failed(name, stats.get("detail") or "not readable")
    detail = "%s rows" % stats["rows"] if stats.get("rows") is not None else "readable"
    if stats.get("max_created_at"):
        detail += ", newest createdAt %s" % stats["max_created_at"]
    return checkrow.make(name, True, detail)


class FilterModule(object):
    def filters(self):
        return {"table_check": table_check}
