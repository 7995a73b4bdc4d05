"""The reliability suite (make test-faults): shared fixtures and the fault table.

Each test is one fault, declared with @pytest.mark.fault(name, expected). It injects the fault
into the lab, runs the real module, engine or playbook, and asserts the outcome: no false
success, no data lost, no backup deleted, one clear message naming the thing at fault, and a
re-run that completes. Through the `fault` fixture it says what it saw and how much data was
lost; the table (fault | expected | seen | data lost | outcome) is printed at the end (by
tests/conftest.py, which also sees the rows of pytest-xdist workers) and, after a complete
run of tests/faults, written to tests/faults/last-run.json and docs/reliability.md.

Test data of this run: a scratch database dr_faults_<run> on the lab's primary, key prefixes
tests/faults/<run>/ in both backup buckets, temporary directories; all removed at the end.
"""

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from ansible_collections.auditron.dr.plugins.module_utils.storage import location_from_params
from tests.conftest import REPO
from tests.faults import table
from tests.helpers import faults

RUN = faults.run_id()
PREFIX = "tests/faults/%s" % RUN
SCRATCH_DB = "dr_faults_%s" % RUN
FAULTS_DIR = Path(__file__).resolve().parent
# Rows of the scratch database's "Invoice": about 40 MB of table data, 25 MB stored after zstd,
# enough for a dump to be caught half-way.
SCRATCH_ROWS = 250000


# ---------------------------------------------------------------------------------------------
# The fault table

def pytest_configure(config):
    config.addinivalue_line("markers", "fault(name, expected): one row of the fault table (tests/faults)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # pylint: disable=unused-argument
    outcome = yield
    report = outcome.get_result()
    setattr(item, "fault_report_" + report.when, report)
    if report.when == "teardown":
        add_row(item, report)


class FaultRecord(object):
    """What one fault test saw; `data_lost` counts backups, rows or objects lost."""

    def __init__(self, name, expected):
        self.name = name
        self.expected = expected
        self.observations = []
        self.data_lost = None
        self.started = time.monotonic()

    def saw(self, text):
        self.observations.append(str(text).strip())

    def lost(self, count):
        self.data_lost = int(count)
        assert self.data_lost == 0, "%s: %d lost" % (self.name, self.data_lost)


@pytest.fixture
def fault(request):
    marker = request.node.get_closest_marker("fault")
    assert marker is not None, "a fault test needs @pytest.mark.fault(name, expected)"
    record = FaultRecord(*marker.args)
    request.node.fault_record = record
    return record


def add_row(item, report):
    """One table row per fault test, whatever happened to it (a failure in a fixture included).
    It travels in the teardown report's user_properties: under pytest-xdist (make test) the row
    is made in a worker and the table printed by the controller (tests/conftest.py)."""
    marker = item.get_closest_marker("fault")
    if marker is None:
        return
    record = getattr(item, "fault_record", None) or FaultRecord(*marker.args)
    reports = [getattr(item, "fault_report_" + when, None) for when in ("setup", "call", "teardown")]
    failed = [report for report in reports if report is not None and report.failed]
    skipped = [report for report in reports if report is not None and report.skipped]
    outcome = "failed" if failed else ("skipped" if skipped else "passed")
    seen = "; ".join(record.observations) or "-"
    if failed:
        crash = getattr(failed[0].longrepr, "reprcrash", None)
        message = crash.message if crash is not None else str(failed[0].longrepr)
        seen += " | %s: %s" % ("FAILED" if failed[0].when == "call" else "ERROR in " + failed[0].when,
                               " ".join(message.split())[:400])
    report.user_properties.append((table.ROW_PROPERTY, {
        "fault": record.name, "expected": record.expected, "seen": seen,
        "data_lost": record.data_lost if record.data_lost is not None else "not measured",
        "outcome": outcome, "test": item.nodeid, "seconds": round(time.monotonic() - record.started, 1)}))


# ---------------------------------------------------------------------------------------------
# Shared fixtures

@pytest.fixture(scope="session")
def postgres(lab):
    return faults.pg_params(lab)


@pytest.fixture(scope="session")
def scratch_db(lab, postgres):  # pylint: disable=unused-argument
    """dr_faults_<run>: an "Invoice" table big enough for a dump to be caught half-way, and a
    small "User" table. Every dr_faults_<run>* database is dropped at the end."""
    faults.sql(postgres, 'CREATE DATABASE "%s"' % SCRATCH_DB)
    faults.sql(postgres, """
        CREATE TABLE "User" (id bigint PRIMARY KEY, email text NOT NULL, "createdAt" timestamptz NOT NULL);
        INSERT INTO "User" SELECT g, 'u' || g || '@faults.test', now() - g * interval '1 minute'
          FROM generate_series(1, 2000) g;
        CREATE TABLE "Invoice" (id bigint PRIMARY KEY, "userId" bigint NOT NULL, note text NOT NULL,
                                "createdAt" timestamptz NOT NULL);
        INSERT INTO "Invoice" SELECT g, 1 + g %% 2000,
               md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) || md5((g * 31)::text),
               now() - g * interval '1 second'
          FROM generate_series(1, %d) g;
    """ % SCRATCH_ROWS, database=SCRATCH_DB)
    yield SCRATCH_DB
    for (name,) in faults.sql(postgres, "SELECT datname FROM pg_database WHERE datname LIKE %s",
                              args=(SCRATCH_DB + "%",)):
        faults.sql(postgres, 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


def scratch_counts(postgres, database=SCRATCH_DB):
    """Row counts of the scratch database's tables: what 'no data lost' is checked against."""
    return dict((table_name, faults.sql(postgres, 'SELECT count(*) FROM "%s"' % table_name, database=database)[0][0])
                for table_name in ("User", "Invoice"))


@pytest.fixture(scope="session")
def small_db(lab, postgres):  # pylint: disable=unused-argument
    """dr_faults_<run>_small: "User" and "Invoice" of a few thousand rows, for faults where the
    size of the dump does not matter (quick backups and restores)."""
    name = SCRATCH_DB + "_small"
    faults.sql(postgres, 'CREATE DATABASE "%s"' % name)
    faults.sql(postgres, """
        CREATE TABLE "User" (id bigint PRIMARY KEY, email text NOT NULL, "createdAt" timestamptz NOT NULL);
        INSERT INTO "User" SELECT g, 'u' || g || '@faults.test', now() - g * interval '1 hour'
          FROM generate_series(1, 300) g;
        CREATE TABLE "Invoice" (id bigint PRIMARY KEY, "userId" bigint NOT NULL, "amountCents" bigint NOT NULL,
                                "createdAt" timestamptz NOT NULL);
        INSERT INTO "Invoice" SELECT g, 1 + g % 300, g * 7, now() - g * interval '1 minute'
          FROM generate_series(1, 5000) g;
    """, database=name)
    yield name
    faults.sql(postgres, 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


@pytest.fixture(scope="session")
def lab_archiving(lab, tmp_path_factory):
    """pgBackRest configured and WAL archived on the lab's primary (backup_database.yml's
    configure phase, run only when a fresh lab lacks them)."""
    return faults.ensure_lab_archiving(lab, tmp_path_factory.mktemp("configure-reports"))


@pytest.fixture(scope="session")
def own_stanza(lab, lab_archiving):  # pylint: disable=unused-argument
    """A pgBackRest stanza of this run on the lab's primary (tests/helpers/faults.py, OwnStanza)."""
    with faults.own_stanza(lab, "faults%s" % RUN, "%s/pgbackrest" % PREFIX) as stanza:
        yield stanza


CANARY_ROWS = 3


@pytest.fixture(scope="session")
def canary(lab, postgres):  # pylint: disable=unused-argument
    """A table in the lab's production database that hostile input names: it must survive every
    bad-input run with its rows (proof that no typed-in name was ever executed as SQL)."""
    name = "auditron_dr_faults_canary_%s" % RUN
    database = lab["sites"]["primary"]["postgres"]["database"]
    faults.sql(postgres, 'CREATE TABLE "%s" (id int PRIMARY KEY, note text)' % name, database=database)
    faults.sql(postgres, 'INSERT INTO "%s" SELECT g, %%s FROM generate_series(1, %%s) g' % name, database=database,
               args=("still here", CANARY_ROWS))
    yield name
    faults.sql(postgres, 'DROP TABLE IF EXISTS "%s"' % name, database=database)


def canary_rows(lab, postgres, name):
    database = lab["sites"]["primary"]["postgres"]["database"]
    try:
        return faults.sql(postgres, 'SELECT count(*) FROM "%s" WHERE note = %%s' % name, database=database,
                          args=("still here",))[0][0]
    except Exception:  # pylint: disable=broad-except
        return 0


@pytest.fixture
def isolated_production(lab, postgres, tmp_path):
    """A production of this test: database dr_faults_<run>_prod and an AUDITRON API stand-in
    (lab/app.py) serving it on a port of its own, run by the app_platform module's process
    driver as the lab's user. Lets restore_database.yml run for real without touching the lab's
    production; both are removed afterwards (the app stopped by its pid file)."""
    database = SCRATCH_DB + "_prod"
    faults.sql(postgres, 'CREATE DATABASE "%s"' % database)
    faults.sql(postgres, """
        CREATE EXTENSION IF NOT EXISTS amcheck;
        CREATE TABLE "Invoice" (id bigint PRIMARY KEY, "amountCents" bigint NOT NULL, "createdAt" timestamptz NOT NULL);
        INSERT INTO "Invoice" SELECT g, g * 3, now() - g * interval '1 minute' FROM generate_series(1, 500) g;
    """, database=database)
    workdir = faults.new_workdir("auditron-faults-app-", lab_user=True)
    port = faults.free_port()
    site = lab["sites"]["primary"]
    config = dict(json.loads(open(site["app"]["config_file"]).read()), site="faults", listen=["127.0.0.1", port])
    config["postgres"] = dict(config["postgres"], database=database)
    config_file = os.path.join(workdir, "app.json")
    with open(config_file, "w") as handle:
        json.dump(config, handle)
    os.chmod(config_file, 0o600)
    faults.chown_tree_to_lab_user(workdir)
    app = {"platform": "process", "url": "http://127.0.0.1:%d" % port, "token": config["token"],
           "command": [lab["lab"]["python"], os.path.join(str(REPO), "lab", "app.py"), "--config", config_file],
           "pid_file": os.path.join(workdir, "app.pid.json"), "log_file": os.path.join(workdir, "app.log"),
           "config_file": config_file}
    process = {"command": app["command"], "pid_file": app["pid_file"], "log_file": app["log_file"],
               "run_as": lab["lab"]["os_user"]}
    started, _raw = faults.ansible_module("app_platform", {"platform": "process", "state": "started", "site": "faults",
                                                           "url": app["url"], "process": process})
    assert not started.get("failed"), started
    yield {"database": database, "app": app, "postgres": dict(site["postgres"], database=database)}
    faults.ansible_module("app_platform", {"platform": "process", "state": "stopped", "site": "faults",
                                           "url": app["url"], "process": process})
    for (name,) in faults.sql(postgres, "SELECT datname FROM pg_database WHERE datname LIKE %s",
                              args=(database + "%",)):
        faults.sql(postgres, 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
    shutil.rmtree(workdir, ignore_errors=True)


def app_pid(app):
    with open(app["pid_file"]) as handle:
        return json.load(handle)["pid"]


def app_running(prod):
    return os.path.exists(prod["app"]["pid_file"]) and faults.alive(app_pid(prod["app"]))


def production_databases(postgres, prod):
    """The databases named like the isolated production's (its own, and any made from it)."""
    return [row[0] for row in faults.sql(postgres, "SELECT datname FROM pg_database WHERE datname LIKE %s",
                                         args=(prod["database"] + "%",))]


def run_restore_database(prod, tmp_path, backup_id, **extra_vars):
    """restore_database.yml (logical, backup_id) against the isolated production, its local
    backup disk under tmp_path/backups and no S3 location."""
    backup_dir = tmp_path / "backups"
    (backup_dir / "postgres" / "logical").mkdir(parents=True, exist_ok=True)
    extra = {"restore_method": "logical", "restore_backup_id": backup_id, "restore_backup_after": False,
             "auditron_dr_postgres": prod["postgres"], "auditron_dr_app": prod["app"],
             "auditron_dr_local_backup_dir": str(backup_dir), "auditron_dr_backup_locations": []}
    extra.update(extra_vars)
    return faults.playbook("restore_database.yml", tmp_path / "reports", extra_vars=extra)


class Places(object):
    """Where one test's logical backups go: a local directory and both S3 regions, under a
    prefix of this test (tests/faults/<run>/<test>/). Location objects are made with short
    timeouts and few retries, so that a fault costs seconds."""

    TUNING = {"max_attempts": 3, "connect_timeout": 3, "read_timeout": 20}

    def __init__(self, lab, root, name):
        self.lab = lab
        self.prefix = "%s/%s" % (PREFIX, name)
        self.local_dir = str(root / ("local-" + name))
        self.params = [{"name": "local", "type": "local", "path": self.local_dir},
                       faults.s3_params(lab, "us-east-1", self.prefix), faults.s3_params(lab, "eu-west-1", self.prefix)]

    def param(self, name, **overrides):
        return dict(dict((p["name"], p) for p in self.params)[name], **overrides)

    def location(self, name, **overrides):
        return location_from_params(self.param(name, **overrides), **self.TUNING)

    def locations(self, order=("local", "s3-us-east-1", "s3-eu-west-1")):
        return [self.location(name) for name in order]

    def params_via(self, proxy):
        """The three locations' params, s3-us-east-1 reached through `proxy` (faults.s3_proxy)."""
        return [self.param("local"), self.param("s3-us-east-1", endpoint_url=proxy.endpoint),
                self.param("s3-eu-west-1")]

    def locations_via(self, proxy):
        return [location_from_params(params, **self.TUNING) for params in self.params_via(proxy)]

    def listing(self):
        """{location: sorted keys} as each location lists them."""
        return dict((location.name, sorted(info.key for info in location.list("")))
                    for location in self.locations())

    def clean(self):
        for region in ("us-east-1", "eu-west-1"):
            faults.delete_s3_prefix(self.lab, region, self.prefix)
        shutil.rmtree(self.local_dir, ignore_errors=True)


@pytest.fixture
def places(lab, tmp_path, request):
    made = Places(lab, tmp_path, request.node.name[5:45])
    yield made
    made.clean()


@pytest.fixture(scope="session", autouse=True)
def remove_run_prefixes(lab):
    """Whatever a test could not clean (a failure half-way), the run's prefixes go at the end."""
    yield
    for region in ("us-east-1", "eu-west-1"):
        faults.delete_s3_prefix(lab, region, PREFIX)
