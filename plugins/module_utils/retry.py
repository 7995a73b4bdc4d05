# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How long to wait between attempts: one exponential schedule for every retry loop the
collection writes itself (the mirror's S3 client, storage's resumable reads, notifications and
metrics pushes). botocore's own retries, for boto3 clients, are configured in aws.py.

A file of its own, and without imports beyond the standard library, so that code which never
talks to AWS (webhooks) can use it without loading anything else.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import random
import time


def backoff_delay(attempt, base=0.25, cap=8.0, jitter=True):
    """Seconds to wait after failed attempt number `attempt` (1 for the first): base, then twice
    that, and so on, at most `cap` (None: no cap). With jitter a random 50-100 % of it, so that
    many threads failing together do not come back together."""
    delay = float(base or 0) * (2 ** (max(1, attempt) - 1))
    if cap is not None:
        delay = min(float(cap), delay)
    if jitter:
        delay *= random.uniform(0.5, 1.0)
    return delay


def backoff(attempt, base=0.25, cap=8.0, jitter=True, sleep=time.sleep):
    """Wait as backoff_delay says before the next attempt."""
    sleep(backoff_delay(attempt, base=base, cap=cap, jitter=jitter))
