"""Every line of the plan (DISASTER_RECOVERY.md) has an owner in docs/plan-coverage.md.

The plan is read into lines as the page says: every non-blank line (headings, paragraphs, bold
fields, bullets, numbered steps, table rows, each line of a code block) except `---` rules, code
fences and table separator rows, each with the id L<line number>. The page must have exactly one
row per line, quoting it exactly; every path it names as the owner must exist; a row without an
owner must say "Not automated:" and why.
"""

import os
import re

from pathlib import Path

import pytest

from tests.conftest import REPO

# The plan is the project's input, not part of the collection: beside the repository in the
# workspace (shared/seed), or wherever AUDITRON_PLAN points.
PLAN = Path(os.environ.get("AUDITRON_PLAN", str(REPO.parent / "shared" / "seed" / "DISASTER_RECOVERY.md")))
COVERAGE = REPO / "docs" / "plan-coverage.md"
ROW = re.compile(r"^\| L(\d+) \|")


def plan_lines(text):
    """[(line number, text as the page quotes it)]: code lines in backticks, | escaped."""
    lines, in_code = [], False
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            in_code = not in_code
            continue
        if not stripped or stripped == "---" or re.fullmatch(r"\|[-| ]+\|", stripped):
            continue
        quoted = stripped.replace("|", "\\|")
        lines.append((number, "`%s`" % quoted if in_code else quoted))
    return lines


def _cells(row):
    """Split a table row on the | that are not escaped."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row.strip())[1:-1]]


def coverage_rows():
    rows = {}
    for line in COVERAGE.read_text().splitlines():
        if ROW.match(line):
            cells = _cells(line)
            assert len(cells) == 4, "not 4 columns: %s" % line
            number = int(cells[0][1:])
            assert number not in rows, "L%d appears twice" % number
            rows[number] = {"text": cells[1], "owners": re.findall(r"`([^`]+)`", cells[2]), "how": cells[3]}
    return rows


@pytest.fixture(scope="module")
def plan():
    if not PLAN.is_file():
        # A checkout without the workspace around it (a clone elsewhere): the page's owners are
        # still checked by the test that does not need the plan.
        pytest.skip("the plan is not at %s: set AUDITRON_PLAN to check the page against it" % PLAN)
    return plan_lines(PLAN.read_text())


def test_the_plan_is_read_at_line_granularity(plan):
    texts = [text for number, text in plan]
    assert "## Disaster Scenarios & Recovery Procedures" in texts
    assert "- Full backup: Daily at 2:00 AM UTC" in texts
    assert "1. **Assess Damage** (5 minutes)" in texts
    assert "`# Point api.auditron.ai to DR load balancer`" in texts
    assert "\\| CTO \\| TBD \\| +1-XXX-XXX-XXXX \\| Final \\|" in texts
    assert not [t for t in texts if re.fullmatch(r"\\\|[-\\| ]+\\\|", t)], "table separators are not lines"
    assert len(plan) > 200


def test_every_plan_line_has_a_row_quoting_it(plan):
    rows = coverage_rows()
    missing = [number for number, text in plan if number not in rows]
    assert not missing, "plan lines with no row in docs/plan-coverage.md: %s" % ["L%d" % n for n in missing]
    misquoted = ["L%d: plan %r, page %r" % (number, text, rows[number]["text"]) for number, text in plan
                 if rows[number]["text"] != text]
    assert not misquoted, "\n".join(misquoted[:10])
    extra = sorted(set(rows) - {number for number, text in plan})
    assert not extra, "rows for lines the plan does not have: %s" % extra


def test_every_owner_exists_or_the_row_says_why_not():
    problems = []
    for number, row in sorted(coverage_rows().items()):
        if not row["owners"] and not row["how"].startswith("Not automated:"):
            problems.append("L%d: no owner and no 'Not automated:' reason" % number)
        if row["how"].startswith("Not automated:") and len(row["how"]) < len("Not automated: ") + 10:
            problems.append("L%d: say why it is not automated" % number)
        for owner in row["owners"]:
            if not (REPO / owner).exists():
                problems.append("L%d: %s does not exist" % (number, owner))
    assert not problems, "\n".join(problems)


def test_every_scenario_and_scheduled_playbook_owns_some_line():
    owners = {owner for row in coverage_rows().values() for owner in row["owners"]}
    for playbook in ("backup_database", "backup_files", "backup_config", "prune_backups", "verify_backups",
                     "restore_database", "restore_files", "recover_deleted", "failover", "failback",
                     "setup_standby", "dr_drill", "preflight", "notify"):
        assert "playbooks/%s.yml" % playbook in owners, playbook
