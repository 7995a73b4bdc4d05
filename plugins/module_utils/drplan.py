# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The recovery plan's phases, written once: title, the plan step a phase implements, its budget.

A task (or block, or role) declares ``dr_plan_phase: scenario_2.restore_db`` and the dr_timeline
callback takes the phase's name (the part after the dot), title, plan step and budget from here;
``dr_phase``, ``dr_phase_title``, ``dr_phase_plan_step`` and ``dr_phase_budget_minutes`` declared
beside it still win (a drill's scratch copy has a title of its own, for example). The failover, the
drill, the restore and the failback use the same rows, so the plan's numbers cannot drift apart.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def _phase(title, plan_step=None, budget_minutes=None):
    return {"title": title, "plan_step": plan_step, "budget_minutes": budget_minutes}


PHASES = {
    # Scenario 1, database corruption (restore_database.yml).
    "scenario_1.assess": _phase("Assess damage", "Scenario 1, step 1: Assess Damage", 5),
    "scenario_1.stop_app": _phase("Stop application", "Scenario 1, step 2: Stop Application", 2),
    "scenario_1.identify_backup": _phase("Identify latest valid backup",
                                         "Scenario 1, step 3: Identify Latest Valid Backup", 3),
    "scenario_1.restore": _phase("Restore database", "Scenario 1, step 4: Restore Database", 15),
    "scenario_1.verify_restore": _phase("Verify restore", "Scenario 1, step 5: Verify Restore", 5),
    "scenario_1.swap": _phase("Swap the restored database in", "Scenario 1, step 4: Restore Database (swap in)"),
    "scenario_1.start_app": _phase("Restart application", "Scenario 1, step 6: Restart Application", 5),
    "scenario_1.verify_app": _phase("Verify application", "Scenario 1, step 7: Verify Application", 5),
    # Scenario 2, complete infrastructure failure (failover.yml, and dr_drill.yml on scratch copies).
    "scenario_2.activate_dr": _phase("Activate DR site", "Scenario 2, step 1: Activate DR Site", 10),
    "scenario_2.fence_primary": _phase("Fence the primary site",
                                       "Scenario 2, step 1: Activate DR Site (fence the old primary)"),
    "scenario_2.restore_db": _phase("Restore database at DR", "Scenario 2, step 2: Restore Database", 20),
    "scenario_2.restore_files": _phase("Restore file storage", "Scenario 2, step 3: Restore File Storage", 15),
    "scenario_2.restore_config": _phase("Restore configuration (ConfigMaps, Secrets, config files)",
                                        "Backup strategy: configuration backups, restored before the app starts"),
    "scenario_2.deploy_app": _phase("Deploy application at DR", "Scenario 2, step 4: Deploy Application", 10),
    "scenario_2.verify_switch": _phase("Verify and switch traffic", "Scenario 2, step 5: Verify and Switch Traffic", 5),
    # Failback (failback.yml): the plan has no such scenario, so no plan step and no budget.
    "failback.preflight_failback": _phase("Both sites answer; DR is serving"),
    "failback.stop_writes_dr": _phase("Stop writes at DR briefly"),
    "failback.rebuild_primary": _phase("Rebuild the primary from the archive (end of DR's WAL)"),
    "failback.files_back": _phase("Mirror DR's object store onto the primary's"),
    "failback.start_primary_app": _phase("Start and verify the primary's app"),
    "failback.switch_back": _phase("Switch the API's name back to the primary"),
    "failback.backup_after": _phase("Fresh full backup of the primary (DR's standby is made from it)"),
    "failback.dr_standby": _phase("Make DR a warm standby of the primary again"),
}


def phase_name(plan_phase):
    """The phase's name in the report: ``scenario_2.restore_db`` -> ``restore_db``."""
    return plan_phase.rsplit(".", 1)[-1]


def lookup(plan_phase):
    """The plan's row for ``plan_phase`` (a copy), or None when the plan has no such phase."""
    found = PHASES.get(plan_phase)
    return dict(found, name=phase_name(plan_phase)) if found is not None else None
