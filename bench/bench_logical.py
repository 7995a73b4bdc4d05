"""Logical backups: pg_backup and pg_restore against raw pg_dump -Fc / pg_restore -j2.

    .venv/bin/python -m bench logical                 # the lab's auditron database as it is
    .venv/bin/python -m bench logical --scale 10      # a scratch database bench_scale10 (~1 GB),
                                                      # seeded with lab/seed.py's data, dropped after

Side by side, in one run, on the lab's primary cluster (every figure is the median of --repeat runs,
interleaved so that caches and background load fall on both sides alike):

- raw `pg_dump -Fc -f file` (pg_dump's own zlib, one core, to local disk);
- pg_backup's pipeline to one S3 location, and to all three (local disk + two S3 regions):
  pg_dump -Fc -Z0 | zstd (threads) | AES-256-GCM (data key from the lab's KMS, moto) | sha256 | fan-out,
  with row counts taken in the same snapshot, manifests written last;
- raw `createdb` + `pg_restore -j2` from that local file;
- pg_restore from S3: catalog, verification of sha256 and every GCM tag while spooling, createdb,
  pg_restore -j2, row counts compared with the manifest.

Our side runs in a fresh Python process each time, as an Ansible module does; its wall time is
given with and without Python's start-up (imports of boto3, cryptography, psycopg2), and its peak
memory is the process's own VmHWM. pg_dump's memory is sampled from /proc separately.
Goals (issue 3): backup <= 1.0x raw pg_dump, restore <= 1.1x raw pg_restore -j2, < 200 MB.
"""

import argparse
import copy
import json
import os
import shutil
import sys
import tempfile
import time
import uuid

import bench
from bench import Measured, machine, median, mib

RUNNER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
started = time.monotonic()
from ansible_collections.auditron.dr.plugins.module_utils import logicalrestore, pgdump
imported = time.monotonic() - started
job = json.loads(sys.argv[2])
if job["kind"] == "backup":
    result = pgdump.backup(job["postgres"], job["locations"], job["encryption"], database=job["database"])
else:
    result = logicalrestore.restore(job["postgres"], job["locations"], job["target"], job["encryption"],
                            backup_id=job["backup_id"], jobs=job["jobs"], spool_dir=job.get("spool_dir"))
keep = ("backup_id", "duration_seconds", "size", "dump_bytes", "peak_rss_bytes", "pg_dump_peak_rss_bytes",
        "timings", "counts_match", "location", "locations", "failed_locations")
out = dict((k, result.get(k)) for k in keep)
out["import_seconds"] = imported
print(json.dumps(out))
"""


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench logical", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, help="seed and use a scratch database bench_scale<N> at this SCALE")
    parser.add_argument("--database", default="auditron", help="database to use when --scale is not given")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement (median is reported)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database of --scale")
    parser.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument("--doc-only", action="store_true",
                        help="measure nothing: write docs/benchmarks.md again from bench/results/logical.json")
    return parser.parse_args(argv)


class Lab(object):
    def __init__(self, lab):
        self.lab = lab
        pg = lab["sites"]["primary"]["postgres"]
        self.pg = pg
        self.postgres = {"login_host": pg["host"], "login_port": pg["port"], "login_user": pg["user"],
                         "login_password": pg["password"]}
        self.bin_dir = pg.get("bin_dir") or "/usr/lib/postgresql/15/bin"
        self.env = dict(os.environ, PGHOST=pg["host"], PGPORT=str(pg["port"]), PGUSER=pg["user"],
                        PGPASSWORD=pg["password"])
        aws = lab["aws"]
        self.encryption = {"key_source": "kms", "kms_key_id": aws["kms_key_alias"],
                           "aws": {"endpoint_url": aws["endpoint"], "region": aws["region"],
                                   "access_key": aws["access_key"], "secret_key": aws["secret_key"],
                                   "ca_bundle": aws["ca_file"]}}

    def connect(self, database="postgres"):
        import psycopg2  # pylint: disable=import-outside-toplevel
        conn = psycopg2.connect(host=self.pg["host"], port=self.pg["port"], user=self.pg["user"],
                                password=self.pg["password"], dbname=database)
        conn.autocommit = True
        return conn

    def sql(self, statement, database="postgres"):
        conn = self.connect(database)
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def s3(self, region, prefix):
        store = self.lab["backup_stores"][region]
        return {"name": "s3-" + region, "type": "s3", "endpoint_url": store["endpoint"], "bucket": store["bucket"],
                "region": region, "access_key": store["access_key"], "secret_key": store["secret_key"],
                "ca_bundle": store["ca_file"], "prefix": prefix}

    def clean_prefix(self, prefix):
        from ansible_collections.auditron.dr.plugins.module_utils.storage import locations_from_params
        for location in locations_from_params([self.s3("us-east-1", prefix), self.s3("eu-west-1", prefix)]):
            keys = [info.key for info in location.list("")]
            if keys:
                location.delete(keys)


def seed_scratch(lab, scale):
    """CREATE DATABASE bench_scale<N> and load lab/seed.py's schema and data into it."""
    from lab import seed  # pylint: disable=import-outside-toplevel
    name = "bench_scale%s" % ("%g" % scale).replace(".", "_")
    lab.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
    lab.sql('CREATE DATABASE "%s"' % name)
    scratch = copy.deepcopy(lab.lab)
    scratch["sites"]["primary"]["postgres"]["database"] = name
    started = time.monotonic()
    facts = seed.seed_database(scratch, "primary", seed.parse_scale(scale))
    print("bench: seeded %s at SCALE=%g: %d invoices, %s in %.0f s" % (
        name, scale, facts["invoices"], mib(facts["database_bytes"]), time.monotonic() - started), flush=True)
    return name


def engine(lab, job):
    """Run one backup or restore in a fresh Python process; (result, process wall seconds)."""
    measured = Measured([sys.executable, "-c", RUNNER, str(bench.REPO / ".collections"), json.dumps(job)])
    result = json.loads(measured.stdout.strip().splitlines()[-1])
    return result, measured.seconds


def run(args):
    args.load_at_start = round(os.getloadavg()[0], 2)
    lab = Lab(bench.load_lab())
    database = seed_scratch(lab, args.scale) if args.scale else args.database
    run_id = uuid.uuid4().hex[:8]
    prefix = "bench/logical/%s" % run_id
    work = tempfile.mkdtemp(prefix="auditron-bench-logical-")
    samples = dict((name, []) for name in ("raw_dump", "ours_one", "ours_all", "raw_restore", "ours_restore"))
    details = {}
    try:
        size = lab.sql("SELECT pg_database_size('%s')" % database.replace("'", "''"))[0][0]
        print("bench: logical, database %s (%s), %d runs each" % (database, mib(size), args.repeat), flush=True)
        raw_file = os.path.join(work, "raw.dump")
        one = [lab.s3("us-east-1", prefix)]
        three = [{"name": "local", "type": "local", "path": os.path.join(work, "local")},
                 lab.s3("us-east-1", prefix), lab.s3("eu-west-1", prefix)]
        last_backup = None
        for attempt in range(args.repeat):
            raw = Measured([os.path.join(lab.bin_dir, "pg_dump"), "-Fc", "-f", raw_file, database],
                           env=dict(lab.env, PGDATABASE=database))
            samples["raw_dump"].append({"seconds": raw.seconds, "peak_rss_bytes": raw.peak_rss_bytes,
                                        "bytes": os.path.getsize(raw_file)})
            for name, locations in (("ours_one", one), ("ours_all", three)):
                lab.clean_prefix(prefix)
                shutil.rmtree(os.path.join(work, "local"), ignore_errors=True)
                result, wall = engine(lab, {"kind": "backup", "postgres": lab.postgres, "locations": locations,
                                            "encryption": lab.encryption, "database": database})
                samples[name].append({"seconds": wall, "engine_seconds": result["duration_seconds"],
                                      "import_seconds": result["import_seconds"],
                                      "peak_rss_bytes": result["peak_rss_bytes"],
                                      "pg_dump_peak_rss_bytes": result["pg_dump_peak_rss_bytes"],
                                      "bytes": result["size"], "dump_bytes": result["dump_bytes"]})
                last_backup = result
            print("bench: backup run %d: raw %.2f s, ours to 1 location %.2f s, to 3 locations %.2f s" % (
                attempt + 1, raw.seconds, samples["ours_one"][-1]["seconds"], samples["ours_all"][-1]["seconds"]),
                flush=True)
        # Restores: from the last backup (in both S3 regions and local) and the last raw file.
        for attempt in range(args.repeat):
            target = "bench_restore_%s_%d" % (run_id, attempt)
            started = time.monotonic()
            lab.sql('CREATE DATABASE "%s_raw" TEMPLATE template0' % target)
            raw = Measured([os.path.join(lab.bin_dir, "pg_restore"), "-j2", "--exit-on-error", "-d", target + "_raw",
                            raw_file], env=lab.env)
            samples["raw_restore"].append({"seconds": time.monotonic() - started, "peak_rss_bytes": raw.peak_rss_bytes})
            lab.sql('DROP DATABASE "%s_raw" WITH (FORCE)' % target)
            order = [three[1], three[2], three[0]]  # from S3 first, as a DR site would
            result, wall = engine(lab, {"kind": "restore", "postgres": lab.postgres, "locations": order,
                                        "encryption": lab.encryption, "backup_id": last_backup["backup_id"],
                                        "jobs": 2, "target": target + "_ours", "spool_dir": work})
            assert result["counts_match"] and result["location"] == "s3-us-east-1", result
            samples["ours_restore"].append({"seconds": wall, "engine_seconds": result["duration_seconds"],
                                            "import_seconds": result["import_seconds"],
                                            "peak_rss_bytes": result["peak_rss_bytes"], "timings": result["timings"]})
            lab.sql('DROP DATABASE "%s_ours" WITH (FORCE)' % target)
            print("bench: restore run %d: raw %.2f s, ours %.2f s" % (
                attempt + 1, samples["raw_restore"][-1]["seconds"], wall), flush=True)
        details = summarize(samples, database, size, args)
    finally:
        lab.clean_prefix(prefix)
        shutil.rmtree(work, ignore_errors=True)
        for (name,) in lab.sql("SELECT datname FROM pg_database WHERE datname LIKE 'bench_restore_%s%%'" % run_id):
            lab.sql('DROP DATABASE "%s" WITH (FORCE)' % name)
        if args.scale and not args.keep:
            lab.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % database)
    return details


def summarize(samples, database, size, args):
    def med(name, field="seconds"):
        return median([sample.get(field) for sample in samples[name]])

    figures = dict((name, {"median_seconds": med(name), "median_engine_seconds": med(name, "engine_seconds"),
                           "median_peak_rss_bytes": med(name, "peak_rss_bytes"),
                           "max_peak_rss_bytes": max([s.get("peak_rss_bytes") or 0 for s in samples[name]]) or None,
                           "samples": samples[name]}) for name in samples)

    def paired(ours, raw, field="seconds"):
        # Each run of ours is measured right after (backups) or beside (restores) its raw run:
        # the median of the per-run ratios keeps the shared lab's changing load out of the ratio.
        return median([o[field] / r["seconds"] for o, r in zip(samples[ours], samples[raw])])

    ratios = {
        "backup_one_location": paired("ours_one", "raw_dump"),
        "backup_one_location_engine": paired("ours_one", "raw_dump", "engine_seconds"),
        "backup_three_locations": paired("ours_all", "raw_dump"),
        "backup_three_locations_engine": paired("ours_all", "raw_dump", "engine_seconds"),
        "restore": paired("ours_restore", "raw_restore"),
        "restore_engine": paired("ours_restore", "raw_restore", "engine_seconds"),
    }
    peak = max(figures[name]["max_peak_rss_bytes"] or 0 for name in ("ours_one", "ours_all", "ours_restore"))
    return {
        "benchmark": "logical",
        "machine": dict(machine(), load_average_1m_at_start=args.load_at_start),
        "database": database,
        "scale": args.scale,
        "database_bytes": size,
        "dump_bytes": samples["ours_all"][-1]["dump_bytes"],
        "stored_bytes": samples["ours_all"][-1]["bytes"],
        "raw_dump_bytes": samples["raw_dump"][-1]["bytes"],
        "repeat": args.repeat,
        "figures": figures,
        "ratios": ratios,
        "peak_rss_bytes": peak,
        "goals": {"backup_ratio_max": 1.0, "restore_ratio_max": 1.1, "peak_rss_max_bytes": 200 * 1024 * 1024,
                  "backup_met": ratios["backup_three_locations"] <= 1.0,
                  "restore_met": ratios["restore"] <= 1.1, "memory_met": peak < 200 * 1024 * 1024},
    }


def restore_phases(samples):
    names = ("prepare_seconds", "verify_seconds", "pg_restore_seconds", "count_seconds")
    labels = {"prepare_seconds": "prepare (catalog of 3 locations, target, key)",
              "verify_seconds": "download + verify + spool", "pg_restore_seconds": "createdb + pg_restore -j2",
              "count_seconds": "row counts"}
    return [(labels[name], median([s.get("timings", {}).get(name) for s in samples])) for name in names
            if median([s.get("timings", {}).get(name) for s in samples]) is not None]


def verdict(with_start_up, without_start_up, goal):
    if with_start_up <= goal:
        return "met (%.2fx)" % with_start_up
    if without_start_up <= goal:
        return "met without Python's start-up (%.2fx), not with it (%.2fx)" % (without_start_up, with_start_up)
    return "NOT met (%.2fx; %.2fx without Python's start-up)" % (with_start_up, without_start_up)


def markdown(all_results):
    lines = ["## Logical backups (`python -m bench logical`)", "",
             "Lab primary (PostgreSQL 15), %d CPUs; S3 is the lab's `rclone serve s3` over TLS on loopback, KMS is "
             "moto (an AWS emulator). Times are medians of the runs; ratios are medians of the per-run ratios "
             "(each of our runs beside its raw run). Our side is a fresh Python process each time, as an Ansible "
             "module runs: its wall time includes Python's start-up (imports of boto3, cryptography, psycopg2), "
             "in brackets without it." % (
                 next(iter(all_results.values()))["machine"]["cpus"]), ""]
    for label, result in all_results.items():
        f, r = result["figures"], result["ratios"]
        lines += [
            "### %s: database `%s`, %s (dump %s; stored %s by us, %s by pg_dump -Fc)" % (
                label, result["database"], mib(result["database_bytes"]), mib(result["dump_bytes"]),
                mib(result["stored_bytes"]), mib(result["raw_dump_bytes"])),
            "",
            "%d runs each, %s; load average %s at the start, %s at the end (%d CPUs shared with other test "
            "sessions)." % (
                result["repeat"], result["machine"]["measured_at"], result["machine"].get("load_average_1m_at_start", "?"),
                result["machine"].get("load_average_1m", "?"), result["machine"]["cpus"]),
            "",
            "| Operation | Raw tool | Wall | Ours | Wall (w/o start-up) | Ratio (w/o start-up) | Our peak RSS | "
            "Child peak RSS |",
            "|---|---|---:|---|---:|---:|---:|---:|",
            "| Backup, 1 location | `pg_dump -Fc -f file` | %.2f s | pg_backup to s3-us-east-1 | %.2f s (%.2f s) | "
            "%.2fx (%.2fx) | %s | pg_dump %s (raw: %s) |" % (
                f["raw_dump"]["median_seconds"], f["ours_one"]["median_seconds"], f["ours_one"]["median_engine_seconds"],
                r["backup_one_location"], r["backup_one_location_engine"], mib(f["ours_one"]["max_peak_rss_bytes"]),
                mib(median([s["pg_dump_peak_rss_bytes"] for s in f["ours_one"]["samples"]])),
                mib(f["raw_dump"]["median_peak_rss_bytes"])),
            "| Backup, 3 locations | `pg_dump -Fc -f file` | %.2f s | pg_backup to local + 2 S3 regions | %.2f s "
            "(%.2f s) | %.2fx (%.2fx) | %s | pg_dump %s |" % (
                f["raw_dump"]["median_seconds"], f["ours_all"]["median_seconds"], f["ours_all"]["median_engine_seconds"],
                r["backup_three_locations"], r["backup_three_locations_engine"],
                mib(f["ours_all"]["max_peak_rss_bytes"]),
                mib(median([s["pg_dump_peak_rss_bytes"] for s in f["ours_all"]["samples"]]))),
            "| Restore | `createdb` + `pg_restore -j2` from the local file | %.2f s | pg_restore from S3 (verify, "
            "spool, -j2, row counts) | %.2f s (%.2f s) | %.2fx (%.2fx) | %s | pg_restore %s |" % (
                f["raw_restore"]["median_seconds"], f["ours_restore"]["median_seconds"],
                f["ours_restore"]["median_engine_seconds"], r["restore"], r["restore_engine"],
                mib(f["ours_restore"]["max_peak_rss_bytes"]), mib(f["raw_restore"]["median_peak_rss_bytes"])),
            "",
            "Our restore, median per phase: %s; Python's start-up %.2f s." % (
                ", ".join("%s %.2f s" % (phase, value) for phase, value in restore_phases(f["ours_restore"]["samples"])),
                median([s["seconds"] - s["engine_seconds"] for s in f["ours_restore"]["samples"]])),
            "",
            "Goals: backup <= 1.0x: %s; restore <= 1.1x: %s; our peak memory < 200 MB: %s (%s)." % (
                verdict(r["backup_three_locations"], r["backup_three_locations_engine"], 1.0),
                verdict(r["restore"], r["restore_engine"], 1.1),
                "met" if result["peak_rss_bytes"] < 200 * 1024 * 1024 else "NOT met", mib(result["peak_rss_bytes"])),
            "",
        ]
    return "\n".join(lines)


def main(argv):
    args = parse_args(argv)
    if args.doc_only:
        bench.update_doc_section("logical", markdown(json.loads((bench.RESULTS_DIR / "logical.json").read_text())["runs"]))
        return 0
    result = run(args)
    label = "SCALE %g (scratch database)" % args.scale if args.scale else "Lab as it is"
    previous = {}
    path = bench.RESULTS_DIR / "logical.json"
    if path.exists():
        try:
            previous = json.loads(path.read_text()).get("runs", {})
        except ValueError:
            previous = {}
    previous[label] = result
    bench.write_results("logical", {"benchmark": "logical", "runs": previous})
    if not args.no_doc:
        bench.update_doc_section("logical", markdown(previous))
    r = result["ratios"]
    print("bench: logical %s: backup %.2fx (1 location) / %.2fx (3 locations), restore %.2fx, peak %s" % (
        label, r["backup_one_location"], r["backup_three_locations"], r["restore"], mib(result["peak_rss_bytes"])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
