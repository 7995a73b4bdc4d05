# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""seconds_between: seconds from one ISO 8601 time to another. Documented in seconds_between.yml."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, parse_time


def seconds_between(start, end):
    try:
        return (parse_time(end, "seconds_between end") - parse_time(start, "seconds_between start")).total_seconds()
    except DRError as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule(object):
    def filters(self):
        return {"seconds_between": seconds_between}
