# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""shift_time: an ISO 8601 time moved by a number of seconds, in UTC. Documented in shift_time.yml."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from ansible.errors import AnsibleFilterError

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, format_time, parse_time


def shift_time(value, seconds):
    try:
        moment = parse_time(value, "shift_time input")
        return format_time(moment + datetime.timedelta(seconds=float(seconds)))
    except (DRError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule(object):
    def filters(self):
        return {"shift_time": shift_time}
