"""The three disaster scenarios at SCALE 10: RTO, RPO and phases against the goals, beside a raw pgBackRest restore.

    .venv/bin/python -m bench scenarios               # SCALE 10: scenario 1, 3, and 2 cold/warm/fenced
    .venv/bin/python -m bench scenarios --all         # also the dropped-table PITR
    .venv/bin/python -m bench scenarios --scale 20
    .venv/bin/python -m bench scenarios --doc-only    # rewrite docs/benchmarks.md from bench/results/scenarios.json

What runs: the scenario tests of `make test`, unchanged, in the benchmarks' own lab
(`.lab-bench-scale<N>`, ports +2000; see bench/scale_lab.py) seeded at SCALE N, so that every
figure below comes from a run that also passed the test's assertions (rows back, the app
serving behind the switched name, nothing lost). The figures are read from the DR reports the
playbooks wrote (report.json: RTO, RPO, phases). Beside them, in the same lab and run, the raw
tool: `pgbackrest restore` of the same stanza from repo2 (S3) and PostgreSQL started until it is
promoted, which is the floor under the restore phase of scenarios 1 and 2.

Goals: scenario 1 well inside the plan's 40 minutes, aim 2 minutes (issue 5); scenario 2 RTO at
most 120 s cold and 30 s warm, RPO at most 60 s cold and 5 s warm (issue 6).
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from xml.etree import ElementTree
from pathlib import Path

import bench
from bench import REPO, machine, scale_lab

NAME = "scenarios"

# (test node id, what it is, which goal applies)
RUNS = [
    ("tests/integration/test_scenarios_1_3.py::test_damaged_relation_file_is_restored_to_the_latest_commit",
     "Scenario 1: damaged relation file, restore_database.yml to the latest commit", "s1"),
    ("tests/integration/test_scenarios_1_3.py::test_deleted_rows_come_back_exactly_once",
     "Scenario 3: deleted rows, recover_deleted.yml (and a re-run that changes nothing)", "s3"),
    # Since 2026-12-03 one test: the site and the S3 primary region lost together (restore from
    # repo3, after passing over repo2); before, two tests, the region-down one under --all.
    ("tests/integration/test_scenario_2.py::test_cold_failover_after_the_primary_site_and_a_backup_region_die",
     "Scenario 2: cold failover after `lab fail primary` and S3 us-east-1 down, writer running (repo3)", "cold"),
    ("tests/integration/test_scenario_2.py::test_warm_failover_promotes_the_standby",
     "Scenario 2: warm failover (streaming standby promoted), writer running", "warm"),
    ("tests/integration/test_scenario_2.py::test_failover_with_the_primary_up_fences_it_first",
     "Scenario 2: primary still up, fenced first", "fenced"),
]
MORE_RUNS = [
    ("tests/integration/test_scenarios_1_3.py::test_dropped_table_is_restored_to_a_chosen_time",
     "Scenario 1: dropped table, PITR to a chosen time", "s1"),
]
GOALS = {  # (RTO seconds, RPO seconds) to meet; None: no goal of that kind
    "s1": (120, None), "s3": (None, None), "cold": (120, 60), "warm": (30, 5), "fenced": (120, None),
}
GOAL_TEXT = {"s1": "aim 2 min (plan: 40 min)", "s3": "-", "cold": "RTO 120 s, RPO 60 s",
             "warm": "RTO 30 s, RPO 5 s", "fenced": "RTO 120 s; no row lost (asserted)"}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench scenarios", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=10, help="SCALE of the benchmarks' lab (default 10)")
    parser.add_argument("--all", action="store_true", help="also the dropped-table run")
    parser.add_argument("--repeat", type=int, default=3, help="raw restores to take the median of")
    parser.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument("--doc-only", action="store_true",
                        help="measure nothing: write docs/benchmarks.md again from bench/results/scenarios.json")
    parser.add_argument("--down", action="store_true", help="stop the benchmarks' lab at the end")
    return parser.parse_args(argv)


def test_outcomes(junit_path):
    """{node id: "passed" | "failed" | "skipped"} from pytest's JUnit XML."""
    outcomes = {}
    for case in ElementTree.parse(str(junit_path)).getroot().iter("testcase"):
        node = "%s.py::%s" % (case.get("classname").replace(".", "/"), case.get("name"))
        failed = case.find("failure") is not None or case.find("error") is not None
        outcomes[node] = "failed" if failed else ("skipped" if case.find("skipped") is not None else "passed")
    return outcomes


def reports_of(basetemp, node):
    """The DR reports one test's playbooks wrote (its tmp_path is named after the test)."""
    name = node.split("::", 1)[1][:30]
    found = []
    for path in sorted(glob.glob(str(Path(basetemp) / (name + "*") / "reports" / "*" / "report.json"))):
        with open(path) as handle:
            found.append(json.load(handle))
    return found


def brief(report):
    rto, rpo = report.get("rto") or {}, report.get("rpo") or {}
    return {"playbook": os.path.basename(str(report.get("playbook") or "")), "status": report.get("status"),
            "rto_seconds": rto.get("achieved_seconds"), "rto_verdict": rto.get("verdict"),
            "rpo_seconds": rpo.get("achieved_seconds"), "rpo_verdict": rpo.get("verdict"),
            "phases": [{"name": p["name"], "status": p["status"], "seconds": round(p["duration_seconds"], 1)}
                       for p in report.get("phases", [])],
            "backup_used": report.get("backup_used")}


def run_tests(runs, workdir):
    basetemp, junit = Path(workdir) / "pytest", Path(workdir) / "junit.xml"
    log = Path(workdir) / "pytest.log"
    started = time.monotonic()
    with open(log, "w") as handle:
        rc = subprocess.call([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--basetemp",
                              str(basetemp), "--junitxml", str(junit)] + [node for node, _what, _goal in runs],
                             cwd=str(REPO), stdout=handle, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - started
    outcomes = test_outcomes(junit) if junit.exists() else {}
    rows = []
    for node, what, goal in runs:
        reports = [brief(r) for r in reports_of(basetemp, node)]
        rows.append({"test": node, "what": what, "goal": goal, "outcome": outcomes.get(node, "not run"),
                     "reports": reports})
    tail = log.read_text(errors="replace").strip().splitlines()[-1:]
    return rows, {"exit_code": rc, "seconds": round(seconds, 1), "summary": tail[0] if tail else "", "log": str(log)}


def raw_restores(lab, repeat):
    """The floor: raw pgbackrest restore (repo2, S3) to the end of the archive, started until
    promoted; and ours (the engine of the modules) in the same way, interleaved."""
    samples = {"raw": [], "ours": []}
    for _round in range(repeat):
        for side in ("raw", "ours"):
            samples[side].append(scale_lab.timed_restore(lab, side, 2, check_sql='SELECT count(*) FROM "Invoice"'))
    return samples


def run(args):
    lab, database = scale_lab.up_and_seeded(args.scale)
    runs = RUNS + (MORE_RUNS if args.all else [])
    print("bench scenarios: SCALE %g lab %s: %d invoices, %.0f MiB; running %d scenario tests" % (
        args.scale, lab["lab"]["dir"], database["invoices"], database["database_bytes"] / 1048576.0, len(runs)),
        flush=True)
    workdir = tempfile.mkdtemp(prefix="bench-scenarios-", dir=str(REPO / ".tmp") if (REPO / ".tmp").is_dir() else None)
    rows, tests = run_tests(runs, workdir)
    print("bench scenarios: tests %s in %.0f s (%s)" % (tests["summary"], tests["seconds"], tests["log"]), flush=True)
    samples = raw_restores(lab, args.repeat)
    results = {"machine": machine(), "database": database, "tests": tests, "runs": rows,
               "restore_repo2": {side: {"restore_seconds": bench.median([s["restore_seconds"] for s in values]),
                                        "total_seconds": bench.median([s["total_seconds"] for s in values]),
                                        "rows": [s["check"] for s in values], "samples": values}
                                 for side, values in samples.items()}}
    if args.down:
        from lab import servers  # pylint: disable=import-outside-toplevel
        servers.down(quiet=True)
    return results


def first_report(row, playbook):
    for report in row["reports"]:
        if report["playbook"].startswith(playbook):
            return report
    return None


def phase_seconds(report, name):
    for phase in report["phases"] if report else []:
        if phase["name"] == name:
            return phase["seconds"]
    return None


def seconds_text(value):
    return "-" if value is None else "%.1f s" % value


def verdict(row, report):
    rto_goal, rpo_goal = GOALS[row["goal"]]
    if row["outcome"] != "passed":
        return "test %s" % row["outcome"]
    if report is None:
        return "passed" if row["goal"] == "s3" else "no report"
    misses = []
    if rto_goal is not None and (report["rto_seconds"] is None or report["rto_seconds"] > rto_goal):
        misses.append("RTO")
    if rpo_goal is not None and (report["rpo_seconds"] is None or report["rpo_seconds"] > rpo_goal):
        misses.append("RPO")
    return "missed: " + ", ".join(misses) if misses else "met"


def markdown(results):
    db = results["database"]
    lines = [
        "## Disaster scenarios at SCALE %g (`python -m bench %s`)" % (db["scale"], NAME), "",
        "The scenario tests of `make test`, run unchanged in the benchmarks' own lab seeded at SCALE %g "
        "(%d invoices, database %.0f MiB); each figure comes from a run that also passed the test's "
        "assertions. RTO and RPO are the DR report's (report.json). Measured %s on %d CPUs (load %.2f); "
        "tests: %s." % (db["scale"], db["invoices"], db["database_bytes"] / 1048576.0,
                        results["machine"]["measured_at"], results["machine"]["cpus"],
                        results["machine"]["load_average_1m"], results["tests"]["summary"]), "",
        "| Run | Test | RTO | RPO | Longest phases | Goal | Verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["runs"]:
        playbook = {"s1": "restore_database", "s3": "recover_deleted"}.get(row["goal"], "failover")
        report = first_report(row, playbook)
        longest = sorted(report["phases"], key=lambda p: -p["seconds"])[:3] if report else []
        lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            row["what"], row["outcome"], seconds_text(report["rto_seconds"] if report else None),
            seconds_text(report["rpo_seconds"] if report else None),
            ", ".join("%s %.1f s" % (p["name"], p["seconds"]) for p in longest) or "-",
            GOAL_TEXT[row["goal"]], verdict(row, report)))
        for back in [r for r in row["reports"] if r["playbook"].startswith("failback")][:1]:
            lines.append("| ↳ failback.yml after it | | %s | %s | %s | | no row lost (asserted) |" % (
                seconds_text(back["rto_seconds"]), seconds_text(back["rpo_seconds"]),
                ", ".join("%s %.1f s" % (p["name"], p["seconds"])
                          for p in sorted(back["phases"], key=lambda p: -p["seconds"])[:2])))
    raw, ours = results["restore_repo2"]["raw"], results["restore_repo2"]["ours"]
    lines += [
        "",
        "The floor under the restore phases, in the same lab and run (median of %d, interleaved): restore of "
        "the stanza from repo2 (S3) to the end of the archive, PostgreSQL started until promoted." % len(raw["samples"]),
        "",
        "| Restore from repo2 until promoted | pgBackRest restore | total | invoices in the copy, round by round |",
        "|---|---|---|---|",
        "| raw `pgbackrest restore` + `pg_ctl start` | %s | %s | %s |" % (
            seconds_text(raw["restore_seconds"]), seconds_text(raw["total_seconds"]), ", ".join(raw["rows"])),
        "| ours (pgbackrest_restore + pg_instance engine) | %s | %s | %s |" % (
            seconds_text(ours["restore_seconds"]), seconds_text(ours["total_seconds"]), ", ".join(ours["rows"])),
    ]
    lines += ["", "Both sides restore the same archive in each round; the end of the archive may move between "
              "rounds (a last segment archived by archive_timeout), which the row counts show."]
    if raw["total_seconds"] and ours["total_seconds"]:
        lines.append("")
        lines.append("Ours / raw: %.2fx. " % (ours["total_seconds"] / raw["total_seconds"]) +
                     _restore_phase_note(results, raw["total_seconds"]))
    return "\n".join(lines) + "\n"


def _restore_phase_note(results, raw_total):
    notes = []
    for row in results["runs"]:
        if row["goal"] not in ("s1", "cold"):
            continue
        report = first_report(row, "restore_database" if row["goal"] == "s1" else "failover")
        name = "restore" if row["goal"] == "s1" else "restore_db"
        seconds = phase_seconds(report, name)
        if seconds:
            ratio = seconds / raw_total
            notes.append("%s phase of \"%s\": %.1f s (%.2fx the raw restore; the phase also stops and moves the "
                         "old cluster aside and checks the repositories)" % (name, row["what"], seconds, ratio))
    return "; ".join(notes[:2]) + ("." if notes else "")


def main(argv):
    args = parse_args(argv)
    status, results = scale_lab.main_in_lab(NAME, argv, args, run, markdown)
    if results is None:
        return status
    failed = [row["test"] for row in results["runs"] if row["outcome"] != "passed"]
    if failed:
        print("bench %s: tests that did not pass: %s (see %s)" % (NAME, ", ".join(failed), results["tests"]["log"]),
              file=sys.stderr)
        return 1
    return 0
