"""The recovery lock across controllers (roles/recovery_lock, plugins/module_utils/lease.py) in the
lab's backup stores (rclone's S3, which ignores conditional writes): while another controller
holds it, every recovery and destructive playbook is refused before its first change, naming the
holder (recover_deleted.yml takes it the same way, once it found rows to recover: not run here);
a holder that stopped renewing is taken over once its lease expired, and the run says so.
(Two failovers at once, and a killed one run again, are in tests/faults/test_rerun.py.)"""

import time

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import lease
from ansible_collections.auditron.dr.plugins.module_utils.storage import location_from_params
from tests.helpers import faults
from tests.helpers.lab_db import query

pytestmark = [pytest.mark.lab]

OTHER = {"run_id": "failover-20261208T010000Z", "host": "controller-b.example", "pid": 31337,
         "playbook": "failover.yml", "since": "2026-12-08T01:00:00Z"}


def backup_stores(lab):
    return [location_from_params(faults.s3_params(lab, region, "")) for region in ("us-east-1", "eu-west-1")]


@pytest.fixture
def held_elsewhere(lab):
    """The lock taken by a run on another controller (no heartbeat here: it lives for its ttl)."""
    stores = backup_stores(lab)
    taken = lease.acquire(stores, "recovery", OTHER, ttl=600, settle=0.2, contention_window=0)
    yield stores
    lease.release(stores, "recovery", taken["token"])


RUNS = [
    ("restore_database.yml", {"confirm_restore": True, "restore_method": "pitr",
                              "restore_target_time": "2026-12-08T00:00:00Z"}),
    ("prune_backups.yml", {"auditron_dr_prune_confirm": True}),
    ("setup_standby.yml", {"confirm_standby": True}),
    ("failback.yml", {"confirm_failback": True}),
]


@pytest.mark.parametrize("playbook,extra", RUNS, ids=[name for name, _extra in RUNS])
def test_a_recovery_run_is_refused_while_another_controller_holds_the_lock(
        lab, run_playbook, held_elsewhere, playbook, extra):
    before = (query(lab, "dr", "SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver)")[0],
              query(lab, "primary", "SELECT pg_is_in_recovery()")[0])
    listed = sorted(info.key for store in held_elsewhere for info in store.list("") if not info.key.startswith("runs/"))
    run = run_playbook(playbook, extra_vars=dict(extra, auditron_dr_require_confirmation=True))
    flat = " ".join(run.output.split())
    assert run.rc != 0, run
    assert ("lock recovery is held by run failover-20261208T010000Z on controller-b.example (pid 31337, "
            "failover.yml) since 2026-12-08T01:00:00Z") in flat and "nothing was changed" in flat, run
    after = (query(lab, "dr", "SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver)")[0],
             query(lab, "primary", "SELECT pg_is_in_recovery()")[0])
    assert after == before
    # Nothing removed (the primary's archiver keeps adding WAL meanwhile, so new keys are no sign).
    after = set(info.key for store in held_elsewhere for info in store.list(""))
    assert set(listed) - after == set()
    holders = lease.status(held_elsewhere, "recovery")
    assert [h["run_id"] for h in holders["s3-us-east-1"]] == [OTHER["run_id"]]   # the refused run withdrew


def test_a_lease_that_stopped_renewing_is_taken_over_once_expired_and_said(lab, run_playbook):
    stores = backup_stores(lab)
    lease.acquire(stores, "recovery", OTHER, ttl=3, settle=0.2, contention_window=0)
    time.sleep(4)
    run = run_playbook("prune_backups.yml",
                       extra_vars={"auditron_dr_prune_confirm": True, "auditron_dr_prune_logical": False})
    assert run.rc == 0, run
    flat = " ".join(run.output.split())
    assert "took over the expired lease of run failover-20261208T010000Z on controller-b.example" in flat, run
    deadline = time.monotonic() + 10
    while any(lease.status(stores, "recovery").values()):                 # released when the run ended
        assert time.monotonic() < deadline, lease.status(stores, "recovery")
        time.sleep(0.2)
