"""pgBackRest against the lab: the role and backup_database.yml, WAL arriving in all three
repositories, PITR into a scratch cluster, and the faults a restore must refuse or survive.

Everything runs against the lab's real servers: PostgreSQL 15, pgBackRest 2.45, the two S3
regions (rclone serve s3). Test data lives in a table of its own, dropped at the end; scratch
clusters live under .lab/pg/<name>/ on ports 55440-55499 and are removed with pg_instance
state=absent. A dead repository is simulated by a copy of the site's configuration whose
repository points at a closed port, or at tests/helpers/tcpproxy.py refusing connections;
the lab's servers are never stopped.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest

from tests.conftest import REPO, VENV_BIN, ansible_env
from tests.helpers.tcpproxy import TcpProxy
from tests.helpers.ports import closed_port

pytestmark = [pytest.mark.lab, pytest.mark.slow]

INVENTORY = str(REPO / "inventories" / "local")
TIMINGS = {}


# ---------------------------------------------------------------------------------------------
# Helpers

def config_path(lab, site="primary"):
    return os.path.join(lab["pgbackrest"]["config_dir"], site, "pgbackrest.conf")


def playbook(name, *args, extra_vars=None, timeout=600):
    """ansible-playbook against the lab; `name` is under playbooks/ or a path."""
    path = name if os.path.isabs(name) else str(REPO / "playbooks" / name)
    command = [str(VENV_BIN / "ansible-playbook"), "-i", INVENTORY, path] + list(args)
    if extra_vars:
        command += ["-e", json.dumps(extra_vars)]
    report_dir = tempfile.mkdtemp(prefix="auditron-pgbackrest-reports-")
    try:
        completed = subprocess.run(command, cwd=str(REPO), env=ansible_env({"AUDITRON_DR_REPORT_DIR": report_dir}),
                                   capture_output=True, text=True, timeout=timeout, check=False)
    finally:
        shutil.rmtree(report_dir, ignore_errors=True)
    return completed.returncode, completed.stdout + completed.stderr


CONVERGE = str(REPO / "extensions" / "molecule" / "pgbackrest" / "converge.yml")


def recap(output, host="primary"):
    line = next(l for l in output.splitlines() if l.startswith(host + " ") and "ok=" in l)
    return dict(part.split("=") for part in line.split(":", 1)[1].split())


def module(lab, name, args, host="primary", check=False):
    """Run auditron.dr.<name> ad hoc as the PostgreSQL OS user; its result as a dict."""
    command = [str(VENV_BIN / "ansible"), host, "-i", INVENTORY, "-m", "auditron.dr." + name, "-a", json.dumps(args)]
    if lab["lab"]["become"]:
        command += ["--become", "--become-user", lab["lab"]["os_user"], "--become-method", "ansible.builtin.su"]
    if check:
        command.append("--check")
    env = ansible_env({"ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"})
    completed = subprocess.run(command, cwd=str(REPO), env=env, capture_output=True, text=True, timeout=600,
                               check=False)
    try:
        document = json.loads(completed.stdout)
    except ValueError:
        raise AssertionError("no JSON from ansible: %s" % (completed.stdout + completed.stderr)[-3000:])
    return document["plays"][0]["tasks"][0]["hosts"][host]


def as_lab_user(lab, argv, check=True, timeout=120):
    from lab import proc  # pylint: disable=import-outside-toplevel
    result = proc.run_as_server_user(argv, check=False, timeout=timeout,
                                     env={"PYTHONPATH": str(REPO / ".collections")})
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def engine_info(lab, config=None):
    """pgbackrest.info_summary run as the OS user, straight from the engine."""
    code = ("import json; from ansible_collections.auditron.dr.plugins.module_utils import pgbackrest; "
            "print(json.dumps(pgbackrest.info_summary(%r, %r, io_timeout=10)))"
            % (config or config_path(lab), lab["pgbackrest"]["stanza"]))
    return json.loads(as_lab_user(lab, [lab["lab"]["python"], "-c", code]).stdout)


def psql_primary(lab, sql):
    import psycopg2  # pylint: disable=import-outside-toplevel
    pg = lab["sites"]["primary"]["postgres"]
    conn = psycopg2.connect(host=pg["host"], port=pg["port"], user=pg["user"], password=pg["password"],
                            dbname=pg["database"])
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def psql_scratch(lab, socket_dir, port, sql, database="auditron"):
    result = as_lab_user(lab, [os.path.join(lab["lab"]["pg_bin_dir"], "psql"), "-X", "-At", "-h", socket_dir,
                               "-p", str(port), "-U", "postgres", "-d", database, "-c", sql])
    return result.stdout.strip()


def wait_for_wal(lab, segment, repos=(1, 2, 3), timeout=90):
    """Until every repository's archive holds `segment` (or a later one)."""
    deadline = time.monotonic() + timeout
    while True:
        info = engine_info(lab)
        maxima = dict((r["key"], r.get("wal_max") or "") for r in info["repos"])
        if all(maxima.get(key, "") >= segment for key in repos):
            return maxima
        assert time.monotonic() < deadline, "WAL %s not in every repository after %d s: %s" % (
            segment, timeout, maxima)
        time.sleep(1)


def copy_config(lab, workdir, old, new):
    """A copy of the primary's configuration, readable by the OS user, with one option changed."""
    text = open(config_path(lab)).read()
    assert old in text
    path = os.path.join(workdir, "pgbackrest.conf")
    with open(path, "w") as handle:
        handle.write(text.replace(old, new))
    os.chmod(path, 0o600)
    return path


@pytest.fixture
def lab_workdir(lab):
    """A directory the OS user owns, outside the lab's servers' own."""
    from lab import config as lab_config  # pylint: disable=import-outside-toplevel
    path = tempfile.mkdtemp(prefix="auditron-pgbackrest-test-")
    if lab["lab"]["become"]:
        _name, uid, gid, _home = lab_config.server_user()
        os.chown(path, uid, gid)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def chown_to_lab_user(lab, *paths):
    from lab import config as lab_config  # pylint: disable=import-outside-toplevel
    if lab["lab"]["become"]:
        _name, uid, gid, _home = lab_config.server_user()
        for path in paths:
            os.chown(path, uid, gid)


def scratch_dirs(lab, name):
    base = os.path.join(lab["lab"]["pg_dir"], name)
    return os.path.join(base, "data"), os.path.join(base, "run")


def remove_scratch(lab, data_dir):
    if os.path.exists(data_dir):
        module(lab, "pg_instance", {"pg_path": data_dir, "scratch": True, "state": "stopped"})
        result = module(lab, "pg_instance", {"pg_path": data_dir, "state": "absent"})
        assert not result.get("failed"), result


# ---------------------------------------------------------------------------------------------
# The role and backup_database.yml

@pytest.fixture(scope="module")
def backed_up(lab):
    """The role over both sites (the molecule scenario's converge), then an incremental backup
    through backup_database.yml (its logical part is left out to keep this quick)."""
    started = time.monotonic()
    rc, output = playbook(CONVERGE)
    TIMINGS["role over both sites"] = round(time.monotonic() - started, 1)
    assert rc == 0, output[-6000:]
    started = time.monotonic()
    rc, output = playbook("backup_database.yml", extra_vars={
        "backup_type": "incr", "auditron_dr_backup_logical_enabled": False, "auditron_dr_backup_configure": False})
    TIMINGS["backup_database.yml, incr to 3 repositories"] = round(time.monotonic() - started, 1)
    assert rc == 0, output[-6000:]
    yield output
    if TIMINGS:
        target = REPO / "tests" / "output"
        target.mkdir(parents=True, exist_ok=True)
        (target / "pgbackrest-timings.json").write_text(json.dumps(TIMINGS, indent=2, sort_keys=True) + "\n")


def test_every_repository_holds_a_backup_and_check_passes(lab, backed_up):
    info = engine_info(lab)
    assert [r["name"] for r in info["repos"]] == ["repo1", "repo2", "repo3"]
    for repo in info["repos"]:
        assert repo["reachable"] and repo["status"] == "ok", repo
        assert repo["backup_count"] >= 1 and repo["newest_backup"], repo
        assert repo["newest_backup_age_seconds"] < 600, repo
        assert repo["newest_backup"] in backed_up  # the summary table names each repository's newest backup
        assert repo["system_ids"] == [info["repos"][0]["system_ids"][0]]
    assert "REPO   STATUS" in backed_up
    # pgbackrest_repo_bundle (default on): the backup's small files are in bundles, here seen in
    # repo1 (a directory), whose newest backup has a bundle/ directory beside its manifest.
    settings = dict(line.split("=", 1) for line in open(config_path(lab)).read().splitlines() if "=" in line)
    assert [settings.get("repo%d-bundle" % key) for key in (1, 2, 3)] == ["y", "y", "y"]
    newest = os.path.join(settings["repo1-path"], "backup", "auditron", info["repos"][0]["newest_backup"])
    assert os.path.isdir(os.path.join(newest, "bundle")), os.listdir(newest)
    check = as_lab_user(lab, ["pgbackrest", "--config=" + config_path(lab), "--stanza=auditron", "check"],
                        check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    settings = dict(psql_primary(lab, "SELECT name, setting FROM pg_settings WHERE name IN "
                                      "('archive_command', 'archive_timeout', 'archive_mode')"))
    # The lab inventory shortens the role's 60 s default to 30 s so that drills see a small RPO.
    assert settings == {"archive_mode": "on", "archive_timeout": "30",
                        "archive_command": "pgbackrest --config=%s --stanza=auditron archive-push %%p"
                                           % config_path(lab)}


def test_the_dr_site_gets_the_configuration_but_pushes_no_wal(lab, backed_up):
    dr_config = config_path(lab, "dr")
    assert oct(os.stat(dr_config).st_mode & 0o777) == "0o640"
    assert "pg1-path=%s" % lab["sites"]["dr"]["postgres"]["data_dir"] in open(dr_config).read()
    dr = lab["sites"]["dr"]["postgres"]
    import psycopg2  # pylint: disable=import-outside-toplevel
    conn = psycopg2.connect(host=dr["host"], port=dr["port"], user=dr["user"], password=dr["password"],
                            dbname=dr["database"])
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_is_in_recovery(), current_setting('archive_mode'), "
                        "current_setting('archive_command')")
            in_recovery, archive_mode, archive_command = cur.fetchone()
    finally:
        conn.close()
    # A cold DR site has no archive_command. A warm one (a standby: scenario 2's failback leaves
    # DR so, and make test may run that file first on this lab) has the one setup_standby.yml
    # gave it for after a promotion, and archives nothing while it is a standby.
    assert archive_command == "" or (in_recovery and archive_mode != "always"), \
        (in_recovery, archive_mode, archive_command)


def test_role_second_run_changes_nothing_with_the_passphrase_unwrapped_by_kms(lab, backed_up):
    """A second run over both sites reports no change - and this run is given the passphrase as
    KMS ciphertext instead (the lab's KMS is moto, an AWS emulator): the role unwraps it and
    writes exactly the configuration it wrote from the plain passphrase."""
    import base64  # pylint: disable=import-outside-toplevel
    import boto3  # pylint: disable=import-outside-toplevel
    aws = lab["aws"]
    kms = boto3.client("kms", endpoint_url=aws["endpoint"], region_name=aws["region"], verify=aws["ca_file"],
                       aws_access_key_id=aws["access_key"], aws_secret_access_key=aws["secret_key"])
    blob = base64.b64encode(kms.encrypt(KeyId=aws["kms_key_alias"], Plaintext=lab["pgbackrest"]["cipher_pass"]
                                        .encode())["CiphertextBlob"]).decode()
    before = dict((site, open(config_path(lab, site)).read()) for site in ("primary", "dr"))
    started = time.monotonic()
    rc, output = playbook(CONVERGE, extra_vars={"pgbackrest_cipher_pass": "",
                                                "pgbackrest_cipher_pass_kms_blob": blob})
    TIMINGS["role over both sites, second run"] = round(time.monotonic() - started, 1)
    assert rc == 0, output[-4000:]
    assert "TASK [auditron.dr.pgbackrest : Unwrap the cipher passphrase with KMS]" in output
    assert recap(output, "primary")["changed"] == "0", output[-4000:]
    assert recap(output, "dr")["changed"] == "0", output[-4000:]
    assert "Run pgbackrest check" in output and "Create the stanza where it is missing" in output
    assert dict((site, open(config_path(lab, site)).read()) for site in ("primary", "dr")) == before
    assert lab["pgbackrest"]["cipher_pass"] not in output


def test_check_mode_run_changes_nothing(lab, backed_up):
    before = engine_info(lab)
    config_before = open(config_path(lab)).read()
    rc, output = playbook("backup_database.yml", "--check",
                          extra_vars={"backup_type": "full", "auditron_dr_backup_logical_enabled": False})
    assert rc == 0, output[-4000:]
    assert "would back up (full) to repo1, repo2, repo3" in output
    after = engine_info(lab)
    labels = [[b["label"] for b in r["backups"]] for r in after["repos"]]
    assert labels == [[b["label"] for b in r["backups"]] for r in before["repos"]]
    assert open(config_path(lab)).read() == config_before


def test_wal_keeps_arriving_in_every_repository(lab, backed_up):
    table = "auditron_dr_wal_probe_%s" % uuid.uuid4().hex[:8]
    try:
        before = dict((r["key"], r["wal_max"]) for r in engine_info(lab)["repos"])
        psql_primary(lab, "CREATE TABLE %s (id int); INSERT INTO %s SELECT generate_series(1, 1000)" % (table, table))
        segment = psql_primary(lab, "SELECT pg_walfile_name(pg_switch_wal())")[0][0]
        started = time.monotonic()
        maxima = wait_for_wal(lab, segment)
        TIMINGS["WAL switch to all 3 repositories"] = round(time.monotonic() - started, 1)
        assert all(maxima[key] > before[key] for key in (1, 2, 3)), (before, maxima)
    finally:
        psql_primary(lab, "DROP TABLE IF EXISTS %s" % table)


# ---------------------------------------------------------------------------------------------
# Point-in-time recovery into a scratch cluster

def test_pitr_between_two_writes_gives_exactly_the_rows_before(lab, backed_up):
    name = "pitr-%s" % uuid.uuid4().hex[:6]
    table = "auditron_dr_pitr_probe_%s" % uuid.uuid4().hex[:8]
    data_dir, socket_dir = scratch_dirs(lab, name)
    try:
        psql_primary(lab, "CREATE TABLE %s (id int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())" % table)
        psql_primary(lab, "INSERT INTO %s (id) VALUES (1)" % table)
        time.sleep(1.2)
        target = psql_primary(lab, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', "
                                   "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")[0][0]
        time.sleep(1.2)
        psql_primary(lab, "INSERT INTO %s (id) VALUES (2)" % table)
        # the switch comes after the second commit, so that the commit is in an archived segment
        segment = psql_primary(lab, "SELECT pg_walfile_name(pg_switch_wal())")[0][0]
        wait_for_wal(lab, segment, repos=(2,))

        started = time.monotonic()
        restored = module(lab, "pgbackrest_restore", {
            "config": config_path(lab), "pg_path": data_dir, "target": "time", "target_time": target,
            "archive_mode": "off", "target_timeline": "current"})
        TIMINGS["restore (pgbackrest_restore)"] = round(time.monotonic() - started, 1)
        assert not restored.get("failed"), restored
        assert restored["repo"] == 2 and restored["fallbacks"] == []
        assert restored["target"]["time"] == target
        assert restored["recovery_settings"]["archive_mode"] == "off"
        assert "--repo=2" in restored["recovery_settings"]["restore_command"]
        TIMINGS["pgbackrest restore itself"] = restored["duration_seconds"]

        started = time.monotonic()
        instance = module(lab, "pg_instance", {
            "pg_path": data_dir, "port": "auto", "socket_dir": socket_dir, "scratch": True,
            "settings": {"archive_mode": "off"}, "wait_for": "promoted", "timeout": 180})
        TIMINGS["start and recover to promotion (pg_instance)"] = round(time.monotonic() - started, 1)
        assert not instance.get("failed"), instance
        assert instance["in_recovery"] is False and instance["timeline"] >= 2
        assert 55440 <= instance["port"] <= 55499 and instance["port"] != lab["sites"]["primary"]["postgres"]["port"]
        assert instance["recovery_point"] <= target, (instance["recovery_point"], target)

        assert psql_scratch(lab, socket_dir, instance["port"], "SELECT string_agg(id::text, ',' ORDER BY id) FROM %s"
                            % table) == "1"
        assert psql_scratch(lab, socket_dir, instance["port"], "SHOW archive_mode") == "off"
        # a second run changes nothing: same port, already promoted
        again = module(lab, "pg_instance", {
            "pg_path": data_dir, "port": "auto", "socket_dir": socket_dir, "scratch": True,
            "settings": {"archive_mode": "off"}, "wait_for": "promoted"})
        assert again["changed"] is False and again["port"] == instance["port"]

        removed = module(lab, "pg_instance", {"pg_path": data_dir, "state": "absent"})
        assert removed["changed"] and not os.path.exists(os.path.dirname(data_dir)), removed
    finally:
        psql_primary(lab, "DROP TABLE IF EXISTS %s" % table)
        remove_scratch(lab, data_dir)


# ---------------------------------------------------------------------------------------------
# Faults

@pytest.mark.parametrize("args, words", [
    ({"target": "yesterday"}, "value of target must be one of: latest, time, immediate, got: yesterday"),
    ({"target": "time", "target_time": "2000-01-01T00:00:00Z"},
     "target_time 2000-01-01T00:00:00Z is before the oldest backup: restores can reach from "),
    ({"target": "time", "target_time": "2099-01-01T00:00:00Z"}, "target_time 2099-01-01T00:00:00Z is in the future"),
    ({"target": "time", "target_time": "noon"}, "target_time 'noon' is not a timestamp"),
])
def test_bad_targets_are_refused_and_nothing_is_written(lab, backed_up, args, words):
    data_dir, _socket_dir = scratch_dirs(lab, "refused-%s" % uuid.uuid4().hex[:6])
    result = module(lab, "pgbackrest_restore", dict({"config": config_path(lab), "pg_path": data_dir}, **args))
    assert result.get("failed"), result
    assert words in result["msg"] and "\n" not in result["msg"], result["msg"]
    if "before the oldest" in words:
        assert "newest WAL" in result["msg"]  # both bounds are named
    assert not os.path.exists(os.path.dirname(data_dir))


def test_non_empty_target_directory_is_refused_and_left_alone(lab, backed_up, lab_workdir):
    target = os.path.join(lab_workdir, "data")
    os.mkdir(target)
    keep = os.path.join(target, "keep.txt")
    with open(keep, "w") as handle:
        handle.write("precious")
    chown_to_lab_user(lab, target, keep)
    result = module(lab, "pgbackrest_restore", {"config": config_path(lab), "pg_path": target})
    assert result.get("failed")
    assert result["msg"] == ("pg_path %s is not empty (1 entries): restore into a new directory, or use delta: true "
                             "for a stopped cluster of the same system, or force: true" % target)
    assert os.listdir(target) == ["keep.txt"] and open(keep).read() == "precious"


def test_unreachable_repository_falls_back_to_the_next(lab, backed_up, lab_workdir):
    port = closed_port()
    config = copy_config(lab, lab_workdir, "repo2-storage-port=%s" % lab["backup_stores"]["us-east-1"]["endpoint"]
                         .rsplit(":", 1)[1], "repo2-storage-port=%d" % port)
    chown_to_lab_user(lab, config)
    data_dir, _socket_dir = scratch_dirs(lab, "fallback-%s" % uuid.uuid4().hex[:6])
    try:
        started = time.monotonic()
        result = module(lab, "pgbackrest_restore", {"config": config, "pg_path": data_dir, "target": "latest"})
        TIMINGS["restore with repo2 dead (fallback to repo3)"] = round(time.monotonic() - started, 1)
        assert not result.get("failed"), result
        assert result["repo"] == 3
        assert result["fallbacks"] == [{"repo": 2, "name": "repo2", "reason": "unreachable: endpoint localhost:%d "
                                                                              "does not answer (connection refused)"
                                        % port}]
        assert result["unreachable_repos"] == ["repo2"]
        assert "passed over repo2" in result["msg"]
        # recovery would read WAL from repo3 only, never from the dead one
        assert "--repo=3" in result["recovery_settings"]["restore_command"]
        assert os.path.exists(os.path.join(data_dir, "PG_VERSION"))
    finally:
        # never started, and this test's own: removed directly
        shutil.rmtree(os.path.dirname(data_dir), ignore_errors=True)


def test_repository_cut_by_a_proxy_is_passed_over(lab, backed_up, lab_workdir):
    """repo2 behind a proxy that accepts and drops every connection: the TCP probe passes, pgBackRest
    cannot read it, and the check-mode plan falls back to repo3 with pgBackRest's reason."""
    upstream = int(lab["backup_stores"]["us-east-1"]["endpoint"].rsplit(":", 1)[1])
    proxy = TcpProxy("127.0.0.1", upstream)
    proxy.refuse = True
    try:
        config = copy_config(lab, lab_workdir, "repo2-storage-port=%d" % upstream,
                             "repo2-storage-port=%d" % proxy.port)
        chown_to_lab_user(lab, config)
        data_dir, _socket_dir = scratch_dirs(lab, "cut-%s" % uuid.uuid4().hex[:6])
        result = module(lab, "pgbackrest_restore", {"config": config, "pg_path": data_dir}, check=True)
        assert not result.get("failed"), result
        assert result["repo"] == 3 and result["fallbacks"][0]["name"] == "repo2"
        assert result["fallbacks"][0]["reason"].startswith("unreachable: [")
        assert not os.path.exists(os.path.dirname(data_dir))
    finally:
        proxy.close()
