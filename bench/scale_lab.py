"""The benchmarks' own lab at a chosen SCALE, and the raw pgBackRest restore they compare with.

The recovery benchmarks (bench_scenarios, bench_pgbackrest) need a database ten times the size
the tests use, and must not disturb the lab a working tree or a test run is using. They run in
a third lab, `.lab-bench-scale<N>`, with every port 2000 higher (tests use +0 and +200).

The `lab` package reads its directory and ports from the environment once, when it is
imported: a benchmark first re-executes itself with that environment (`reexec`), and only then
imports `lab`.
"""

import json
import os
import subprocess
import sys
import time
import uuid

from bench import REPO

PORT_STEP = 2000


def lab_dir(scale):
    return REPO / (".lab-bench-scale%g" % scale)


def environment(scale):
    """The environment of a process that works in the benchmarks' lab at `scale`."""
    directory = lab_dir(scale)
    base = int(os.environ.get("AUDITRON_BENCH_BASE_OFFSET", os.environ.get("AUDITRON_LAB_PORT_OFFSET") or 0) or 0)
    env = dict(os.environ)
    env.update({
        "AUDITRON_LAB_DIR": str(directory), "AUDITRON_LAB_DIR_NAME": directory.name,
        "AUDITRON_LAB_JSON": str(directory / "lab.json"), "AUDITRON_LAB_PORT_OFFSET": str(base + PORT_STEP),
        "AUDITRON_BENCH_BASE_OFFSET": str(base), "AUDITRON_TEST_SCALE": "%g" % scale,
        # Tests run by the benchmark leave the lab up: the raw side is measured in it afterwards.
        "AUDITRON_KEEP_LAB": "1", "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "PATH": "%s:%s" % (REPO / ".venv" / "bin", os.environ.get("PATH", "")),
    })
    return env


def reexec(name, argv, scale):
    """Run `python -m bench <name> argv` again inside the benchmarks' lab, unless this process
    already is; returns its exit code, or None when this process is the one to go on."""
    env = environment(scale)
    if os.environ.get("AUDITRON_LAB_DIR") == env["AUDITRON_LAB_DIR"]:
        return None
    return subprocess.call([sys.executable, "-m", "bench", name] + list(argv), env=env, cwd=str(REPO))


def up_and_seeded(scale):
    """Start the lab (what is not running) and seed its primary at `scale` once; returns what
    the database holds and how long seeding took (0 when it was seeded before)."""
    from lab import seed, servers  # pylint: disable=import-outside-toplevel
    servers.up(quiet=True)
    lab = servers.load_lab_json()
    seconds = 0.0
    if not invoice_count(lab):
        started = time.monotonic()
        seed.seed(lab, "primary", "%g" % scale)
        seconds = time.monotonic() - started
    return lab, {"scale": scale, "seed_seconds": round(seconds, 1), "invoices": invoice_count(lab),
                 "database_bytes": int(sql(lab, "SELECT pg_database_size(current_database())")[0][0])}


def sql(lab, statement, site="primary"):
    import psycopg2  # pylint: disable=import-outside-toplevel
    pg = lab["sites"][site]["postgres"]
    conn = psycopg2.connect(host=pg["host"], port=pg["port"], user=pg["user"], password=pg["password"],
                            dbname=pg["database"], connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def invoice_count(lab):
    if not sql(lab, """SELECT to_regclass('public."Invoice"') IS NOT NULL""")[0][0]:
        return 0
    return int(sql(lab, 'SELECT count(*) FROM "Invoice"')[0][0])


def playbook(name, *args, report_dir=None):
    """ansible-playbook against inventories/local (this process's lab); raises on failure."""
    env = dict(os.environ, AUDITRON_DR_REPORT_DIR=str(report_dir or REPO / "reports" / "bench"))
    result = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(REPO / "inventories" / "local"),
                             str(REPO / "playbooks" / name)] + list(args), cwd=str(REPO), env=env,
                            capture_output=True, text=True, check=False, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError("%s failed:\n%s" % (name, (result.stdout + result.stderr)[-3000:]))
    return result


# One restore, run as the database's OS user in a fresh Python process: restore, start on a free
# port with archiving off (the copy must not push WAL into the lab's repositories), and poll until
# it has left recovery. The raw side runs pgbackrest and pg_ctl itself; ours calls the engine the
# pgbackrest_restore and pg_instance modules call, as failover.yml and restore_database.yml do.
RESTORE_RUNNER = r"""
import json, os, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
job = json.loads(sys.argv[2])
bin_dir, pg_path, sock = job["bin_dir"], job["pg_path"], job["socket_dir"]
log = pg_path + ".log"
os.makedirs(sock, exist_ok=True)
started = time.monotonic()
if job["side"] == "raw":
    argv = ["pgbackrest", "--config=" + job["config"], "--stanza=" + job["stanza"], "--repo=%d" % job["repo"],
            "--pg1-path=" + pg_path, "--archive-mode=off", "--log-level-console=warn"]
    if job.get("target_time"):
        # pgBackRest reads the target as PostgreSQL prints a time ("2026-12-03 10:52:47.776+00"), not ISO 8601.
        target = job["target_time"].replace("T", " ").replace("Z", "+00")
        argv += ["--type=time", "--target=" + target, "--target-action=promote"]
    subprocess.run(argv + ["restore"], check=True, capture_output=True)
    restored = time.monotonic()
    options = "-c port=%d -c listen_addresses='' -c unix_socket_directories=%s" % (job["port"], sock)
    subprocess.run([os.path.join(bin_dir, "pg_ctl"), "-D", pg_path, "-l", log, "-w", "-t", "900", "-o", options,
                    "start"], check=True, capture_output=True)
    while True:
        out = subprocess.run([os.path.join(bin_dir, "psql"), "-X", "-At", "-h", sock, "-p", str(job["port"]),
                              "-U", "postgres", "-d", "postgres", "-c", "SELECT pg_is_in_recovery()"],
                             capture_output=True, text=True, check=False).stdout.strip()
        if out == "f":
            break
        time.sleep(0.1)
else:
    from ansible_collections.auditron.dr.plugins.module_utils import pgbackrest_restore, pginstance
    pgbackrest_restore.restore(job["config"], pg_path, stanza=job["stanza"], target="time" if job.get("target_time") else "latest",
                       target_time=job.get("target_time"), repos=[job["repo"]], archive_mode="off", pg_bin_dir=bin_dir)
    restored = time.monotonic()
    pginstance.manage(pg_path, state="started", settings={"port": job["port"], "listen_addresses": "",
                                                          "unix_socket_directories": sock},
                      wait_for="promoted", timeout=900, bin_dir=bin_dir, log_file=log, poll_interval=0.1)
ready = time.monotonic()
out = subprocess.run([os.path.join(bin_dir, "psql"), "-X", "-At", "-h", sock, "-p", str(job["port"]), "-U", "postgres",
                      "-d", job["database"], "-c", job["check_sql"]], capture_output=True, text=True, check=False)
subprocess.run([os.path.join(bin_dir, "pg_ctl"), "-D", pg_path, "-m", "immediate", "-w", "stop"], capture_output=True,
               check=False)
print(json.dumps({"restore_seconds": restored - started, "total_seconds": ready - started,
                  "check": out.stdout.strip(), "check_error": out.stderr.strip()[-500:]}))
"""


def free_port(low=56440, high=56499):
    import socket  # pylint: disable=import-outside-toplevel
    for port in range(low, high + 1):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in %d-%d" % (low, high))


def timed_restore(lab, side, repo, target_time=None, check_sql="SELECT 1"):
    """Restore the primary's stanza from `repo` into a scratch directory and start it until it
    is promoted, as `side` ("raw" or "ours"); returns the runner's figures (seconds, and what
    `check_sql` printed in the restored copy). The scratch copy is removed afterwards."""
    from lab import config, proc  # pylint: disable=import-outside-toplevel
    import shutil  # pylint: disable=import-outside-toplevel
    scratch = config.PG_DIR / ("bench-%s-%s" % (side, uuid.uuid4().hex[:8]))
    job = {"side": side, "repo": repo, "target_time": target_time, "check_sql": check_sql,
           "config": str(config.LAB_DIR / "pgbackrest" / "primary" / "pgbackrest.conf"),
           "stanza": lab["pgbackrest"]["stanza"], "bin_dir": lab["lab"]["pg_bin_dir"],
           "pg_path": str(scratch / "data"), "socket_dir": str(scratch / "run"), "port": free_port(),
           "database": lab["sites"]["primary"]["postgres"]["database"]}
    proc.run_as_server_user(["mkdir", "-p", str(scratch)])
    try:
        result = proc.run_as_server_user([config.venv_python(), "-c", RESTORE_RUNNER, str(REPO / ".collections"),
                                          json.dumps(job)], timeout=1800)
        return json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main_in_lab(name, argv, args, run, markdown):
    """What a benchmark in this lab does when called: --doc-only, or re-execute in the lab, or
    run, print the table and write the figures (bench/results/<name>.json) and the section of
    docs/benchmarks.md. Returns (exit code, results); results is None when nothing was run here."""
    import bench as package  # pylint: disable=import-outside-toplevel
    if args.doc_only:
        return package.doc_from_results(name, markdown), None
    child = reexec(name, argv, args.scale)
    if child is not None:
        return child, None
    results = run(args)
    path = package.write_results(name, results)
    text = markdown(results)
    print(text)
    print("bench %s: figures in %s" % (name, path))
    if not args.no_doc:
        print("bench %s: table in %s" % (name, package.update_doc_section(name, text)))
    return 0, results
