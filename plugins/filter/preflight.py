# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn the preflight module's results into one table and one verdict.

Documented in the sidecar files preflight_rows.yml, checks_table.yml and failed_checks.yml.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.auditron.dr.plugins.module_utils import preflight


def preflight_rows(hostvars, hosts, result_var="auditron_dr_preflight"):
    """Every host's check rows; a host that could not run its checks gets a failed row."""
    rows = []
    for host in hosts:
        host_vars = hostvars[host]
        site = host_vars.get("auditron_dr_site", host)
        result = host_vars.get(result_var)
        if result is None:
            rows.append(preflight.row("host", site, False, "%s: checks did not run" % host))
        elif result.get("unreachable"):
            rows.append(preflight.row("host", site, False, "%s unreachable: %s" % (host, result.get("msg", ""))))
        elif result.get("failed") and not result.get("checks"):
            rows.append(preflight.row("host", site, False, "%s: %s" % (host, result.get("msg", "module failed"))))
        else:
            rows.extend(result.get("checks", []))
    return rows


def checks_table(rows):
    if not isinstance(rows, list):
        raise AnsibleFilterError("checks_table expects a list of check rows, got %s" % type(rows).__name__)
    return preflight.format_table(rows)


def failed_checks(rows):
    return ["%s/%s: %s" % (r["site"], r["name"], r["detail"]) for r in preflight.failed_required(rows)]


class FilterModule(object):
    def filters(self):
        return {"preflight_rows": preflight_rows, "checks_table": checks_table, "failed_checks": failed_checks}
