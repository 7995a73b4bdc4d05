"""dr_drill.yml (the monthly drill) in the lab: isolated by default (primary, DNS and the DR
cluster untouched), measured against the plan's targets and earlier drills, torn down always."""

import glob
import json
import os
import socket
import subprocess

import pytest

from lab import servers
from ansible_collections.auditron.dr.plugins.module_utils.storage import location_from_params

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.usefixtures("site_backups")]


def leftovers(lab):
    found = glob.glob(os.path.join(lab["lab"]["pg_dir"], "drill-*")) + \
        glob.glob(os.path.join(lab["lab"]["dir"], "app", "drill-*"))
    store = dict(lab["sites"]["dr"]["object_store"], name="minio-dr", type="s3")
    found += [o.key for o in location_from_params(store).list(".drill-")]
    with socket.socket() as probe:
        probe.settimeout(0.5)
        if probe.connect_ex(("127.0.0.12", int(lab["sites"]["dr"]["app"]["url"].rsplit(":", 1)[1]) + 1)) == 0:
            found.append("an app still listens on the drill's port")
    return found


def reports(run):
    paths = sorted(glob.glob(str(run.report_dir / "*-dr_drill" / "report.json")))
    return [json.load(open(p)) for p in paths]


def dns_answer(lab):
    return subprocess.run(["dig", "+short", "@" + lab["dns"]["server"], "-p", str(lab["dns"]["port"]),
                           lab["dns"]["record"]], capture_output=True, text=True, check=True).stdout.split()


def test_isolated_drill_measures_and_leaves_nothing(lab, run_playbook):
    dr_before = servers.postmaster_pid(lab["sites"]["dr"]["postgres"]["data_dir"])
    first = run_playbook("dr_drill.yml")
    assert first.rc == 0, first
    second = run_playbook("dr_drill.yml")  # same report dir: the second sees the first in its trend
    assert second.rc == 0, second
    rep = reports(second)[-1]
    phases = [p["name"] for p in rep["phases"]]
    for phase in ("activate_dr", "restore_db", "restore_files", "restore_config", "deploy_app", "verify_switch",
                  "teardown"):
        assert phase in phases, phases
    assert rep["rto"]["verdict"] == "met" and rep["rto"]["achieved_seconds"] > 0
    assert rep["rpo"]["achieved_seconds"] is not None
    assert len(rep["extra"]["drill"]["earlier_drills"]) >= 1
    assert "DR drill: RTO" in " ".join(second.stdout.split())
    assert leftovers(lab) == []
    # isolated: the primary, DNS and the DR cluster itself were not touched
    assert dns_answer(lab) == ["127.0.0.11"]
    assert servers.postmaster_pid(lab["sites"]["dr"]["postgres"]["data_dir"]) == dr_before
    metrics = glob.glob(os.path.join(lab["lab"]["dir"], "monitoring", "textfile", "*dr_drill*.prom"))
    assert metrics and "auditron_dr_drill_rto_seconds" in open(metrics[0]).read()


def test_a_drill_whose_restore_fails_still_tears_down_and_reports(lab, run_playbook):
    run = run_playbook("dr_drill.yml", extra_vars={"drill_repos": [9]})
    assert run.rc != 0
    assert "everything it made was removed" in run.output
    rep = reports(run)[-1]
    assert rep["failure"]["phase"] == "restore_db", rep["failure"]
    assert {p["name"]: p["status"] for p in rep["phases"]}["restore_db"] == "failed"
    assert leftovers(lab) == []


def test_a_drill_without_a_configuration_bundle_stops_at_its_preflight(lab, run_playbook, tmp_path):
    """The scratch app needs the bundle's configuration: no bundle, no drill - said before anything is made."""
    no_bundles = tmp_path / "no-bundles"
    no_bundles.mkdir()
    run = run_playbook("dr_drill.yml", extra_vars={
        "auditron_dr_config_restore_locations": [{"name": "empty", "type": "local", "path": str(no_bundles)}]})
    assert run.rc != 0
    output = " ".join(run.output.split())
    assert "dr_drill.yml: nothing was changed. No configuration bundle in empty" in output, run
    assert "the drill needs one for its scratch app" in output
    assert reports(run)[-1]["failure"]["phase"] == "activate_dr"
    assert leftovers(lab) == []


def test_full_drill_needs_confirmation(lab, run_playbook):
    run = run_playbook("dr_drill.yml", extra_vars={"drill_mode": "full"})
    assert run.rc != 0
    assert "needs confirm_failover=true" in run.output
    assert dns_answer(lab) == ["127.0.0.11"]
