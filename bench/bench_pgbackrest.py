"""Physical backups: our pgBackRest engine against raw pgbackrest, full backup and PITR restore at SCALE 10.

    .venv/bin/python -m bench pgbackrest              # SCALE 10, 5 interleaved rounds
    .venv/bin/python -m bench pgbackrest --scale 20 --repeat 5
    .venv/bin/python -m bench pgbackrest --doc-only

In the benchmarks' own lab (`.lab-bench-scale<N>`, see bench/scale_lab.py), on the primary's
stanza, side by side and interleaved round by round so that caches and background load fall on
both alike; both sides run as the database's OS user, ours in a fresh Python process as a
module does:

- full backup into repo1 (local disk) and into repo2 (S3): raw `pgbackrest --type=full
  --start-fast backup` against `pgbackrest.backup()`, the engine of the pgbackrest_backup module
  (which also probes the repository first and reads back what was made);
- PITR restore from repo2 to a time between two known writes, PostgreSQL started until
  promoted: raw `pgbackrest restore --type=time` + `pg_ctl start`, against
  `pgbackrest_restore.restore()` + `pginstance.manage(wait_for=promoted)` (the engines of the
  pgbackrest_restore and pg_instance modules). Each restored copy is checked: it must hold the
  row written before the target and not the one written after it.

Goal (issue 3): ours at most 1.1x raw; pgBackRest does the work on both sides, so the ratio is
what the engine's checks cost.
"""

import argparse
import json
import sys
import time

import bench
from bench import machine, median, scale_lab

NAME = "pgbackrest"

BACKUP_RUNNER = r"""
import json, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
job = json.loads(sys.argv[2])
started = time.monotonic()
if job["side"] == "raw":
    subprocess.run(["pgbackrest", "--config=" + job["config"], "--stanza=" + job["stanza"], "--repo=%d" % job["repo"],
                    "--type=full", "--start-fast", "--log-level-console=warn", "backup"], check=True, capture_output=True)
else:
    from ansible_collections.auditron.dr.plugins.module_utils import pgbackrest
    pgbackrest.backup(job["config"], job["stanza"], "full", repos=[job["repo"]])
print(json.dumps({"seconds": time.monotonic() - started}))
"""


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench pgbackrest", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=10, help="SCALE of the benchmarks' lab (default 10)")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds (the median is reported; 5: one round is noisy)")
    parser.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument("--doc-only", action="store_true",
                        help="measure nothing: write docs/benchmarks.md again from bench/results/pgbackrest.json")
    return parser.parse_args(argv)


def config_file():
    from lab import config  # pylint: disable=import-outside-toplevel
    return config.LAB_DIR / "pgbackrest" / "primary" / "pgbackrest.conf"


def timed_backup(lab, side, repo):
    from lab import config, proc  # pylint: disable=import-outside-toplevel
    job = {"side": side, "repo": repo, "config": str(config_file()), "stanza": lab["pgbackrest"]["stanza"]}
    result = proc.run_as_server_user([config.venv_python(), "-c", BACKUP_RUNNER, str(bench.REPO / ".collections"),
                                      json.dumps(job)], timeout=1800)
    return json.loads(result.stdout.strip().splitlines()[-1])["seconds"]


def archived(lab, lsn_text):
    """True once the WAL segment holding `lsn_text` is archived (pushed to every repository)."""
    row = scale_lab.sql(lab, "SELECT pg_walfile_name('%s'), last_archived_wal FROM pg_stat_archiver" % lsn_text)[0]
    return row[1] is not None and row[1] >= row[0]


def pitr_target(lab):
    """Write a row, take the time, write another row; return the time and both markers once the
    second row's WAL is in the archive."""
    stamp = int(time.time())
    before, after = "BENCH-PITR-BEFORE-%d" % stamp, "BENCH-PITR-AFTER-%d" % stamp
    insert = 'INSERT INTO "Invoice" ("userId", number, "amountCents", status) VALUES (1, \'%s\', 1, \'draft\')'
    scale_lab.sql(lab, insert % before)
    time.sleep(1.1)
    target = scale_lab.sql(lab, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', "
                                "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")[0][0]
    time.sleep(1.1)
    scale_lab.sql(lab, insert % after)
    lsn = scale_lab.sql(lab, "SELECT pg_switch_wal()::text")[0][0]
    deadline = time.monotonic() + 120
    while not archived(lab, lsn):
        if time.monotonic() > deadline:
            raise RuntimeError("the WAL holding %s was not archived within 2 minutes" % after)
        time.sleep(0.5)
    return target, before, after


def run(args):
    lab, database = scale_lab.up_and_seeded(args.scale)
    if not config_file().exists():  # pgBackRest not configured in this lab yet: the role does it
        scale_lab.playbook("backup_database.yml", "-e", "backup_type=full", "--tags", "physical")
    print("bench pgbackrest: SCALE %g, %d invoices, %.0f MiB" % (
        args.scale, database["invoices"], database["database_bytes"] / 1048576.0), flush=True)
    samples = {"backup_repo1": {"raw": [], "ours": []}, "backup_repo2": {"raw": [], "ours": []},
               "pitr_repo2": {"raw": [], "ours": []}}
    checks = []
    for round_number in range(args.repeat):
        order = ("raw", "ours") if round_number % 2 == 0 else ("ours", "raw")
        for side in order:
            samples["backup_repo1"][side].append(timed_backup(lab, side, 1))
        for side in order:
            samples["backup_repo2"][side].append(timed_backup(lab, side, 2))
        target, before, after = pitr_target(lab)
        check = "SELECT coalesce(string_agg(number, ',' ORDER BY number), '') FROM \"Invoice\" " \
                "WHERE number IN ('%s', '%s')" % (before, after)
        for side in order:
            result = scale_lab.timed_restore(lab, side, 2, target_time=target, check_sql=check)
            samples["pitr_repo2"][side].append(result["total_seconds"])
            checks.append({"side": side, "target": target, "rows": result["check"], "expected": before,
                           "ok": result["check"] == before, "error": result["check_error"]})
        print("bench pgbackrest: round %d of %d done" % (round_number + 1, args.repeat), flush=True)
    figures = {}
    for name, sides in samples.items():
        raw, ours = median(sides["raw"]), median(sides["ours"])
        figures[name] = {"raw_seconds": raw, "ours_seconds": ours, "ratio": ours / raw if raw else None,
                         "raw_samples": sides["raw"], "ours_samples": sides["ours"]}
    return {"machine": machine(), "database": database, "repeat": args.repeat, "figures": figures,
            "pitr_checks": checks}


LABELS = (("backup_repo1", "Full backup into repo1 (local disk)"),
          ("backup_repo2", "Full backup into repo2 (S3)"),
          ("pitr_repo2", "PITR restore from repo2 to a time, until promoted"))


def markdown(results):
    db = results["database"]
    checks = results["pitr_checks"]
    lines = [
        "## pgBackRest: full backup and PITR restore at SCALE %g (`python -m bench %s`)" % (db["scale"], NAME), "",
        "The benchmarks' lab seeded at SCALE %g (%d invoices, database %.0f MiB); median of %d interleaved "
        "rounds, both sides as the database's OS user, ours in a fresh Python process. Measured %s on %d CPUs "
        "(load %.2f)." % (db["scale"], db["invoices"], db["database_bytes"] / 1048576.0, results["repeat"],
                          results["machine"]["measured_at"], results["machine"]["cpus"],
                          results["machine"]["load_average_1m"]), "",
        "| Operation | Raw pgbackrest | Ours | Ours / raw (goal at most 1.1x) |",
        "|---|---|---|---|",
    ]
    for key, label in LABELS:
        fig = results["figures"][key]
        lines.append("| %s | %.2f s | %.2f s | %.2fx %s |" % (
            label, fig["raw_seconds"], fig["ours_seconds"], fig["ratio"], "met" if fig["ratio"] <= 1.1 else "MISSED"))
    good = len([c for c in checks if c["ok"]])
    lines += ["", "PITR copies checked: %d of %d hold the row written before the target and not the one after it."
              % (good, len(checks))]
    return "\n".join(lines) + "\n"


def main(argv):
    args = parse_args(argv)
    status, results = scale_lab.main_in_lab(NAME, argv, args, run, markdown)
    if results is None:
        return status
    bad = [c for c in results["pitr_checks"] if not c["ok"]]
    if bad:
        print("bench %s: %d restored copies did not hold exactly the rows before the target: %s" % (
            NAME, len(bad), bad[:2]), file=sys.stderr)
        return 1
    return 0
