# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one check row: what every module that checks something returns, and what the DR report,
dr_metrics and the verdicts read.

    {"name": str, "result": "ok" | "failed" | "skipped", "detail": str, ...}

A producer may add keys of its own (``backups``, ``kind``, ``site``, ``required``, ``location``);
readers rely only on the three above. Rows are built here so that no producer spells a result
its own way and no reader has to guess synonyms.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

OK, FAILED, SKIPPED = "ok", "failed", "skipped"
RESULTS = (OK, FAILED, SKIPPED)


def outcome(passed, skipped=False):
    """The result word of a check that passed (True) or not; skipped wins."""
    if skipped:
        return SKIPPED
    return OK if passed else FAILED


def make(name, passed, detail="", skipped=False, **extra):
    """A check row. `passed` is a bool (or one of RESULTS); extra keys are kept as given."""
    result = passed if passed in RESULTS else outcome(bool(passed), skipped)
    row = {"name": str(name), "result": result, "detail": "" if detail is None else str(detail)}
    row.update(extra)
    return row


def failed(name, detail, **extra):
    """The row a rescue records for a step that could not run or failed."""
    return make(name, FAILED, detail, **extra)


def problem(row):
    """Why `row` is not a check row, or None when it is one."""
    if not isinstance(row, dict):
        return "check %r is not a mapping {name, result, detail}" % (row,)
    if not isinstance(row.get("name"), str) or not row.get("name"):
        return "check %r has no name" % (row,)
    if row.get("result") not in RESULTS:
        return "check %s: result %r is not one of %s" % (row["name"], row.get("result"), ", ".join(RESULTS))
    if not isinstance(row.get("detail", ""), str):
        return "check %s: detail is not text" % row["name"]
    return None


def is_ok(row):
    return row.get("result") == OK


def is_failed(row):
    return row.get("result") == FAILED
