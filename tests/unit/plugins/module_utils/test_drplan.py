"""The plan's phases, written once (module_utils/drplan)."""

from ansible_collections.auditron.dr.plugins.module_utils import drplan


def test_a_phase_of_the_plan_has_its_name_title_step_and_budget():
    row = drplan.lookup("scenario_2.restore_db")
    assert row == {"name": "restore_db", "title": "Restore database at DR",
                   "plan_step": "Scenario 2, step 2: Restore Database", "budget_minutes": 20}
    row["title"] = "changed"
    assert drplan.lookup("scenario_2.restore_db")["title"] == "Restore database at DR"  # a copy


def test_an_unknown_phase_is_none():
    assert drplan.lookup("scenario_2.nowhere") is None
    assert drplan.lookup("restore_db") is None


def test_every_phase_has_a_title_and_budgets_are_minutes():
    for key, row in drplan.PHASES.items():
        assert "." in key and row["title"], key
        assert row["budget_minutes"] is None or (row["plan_step"] and row["budget_minutes"] > 0), key
