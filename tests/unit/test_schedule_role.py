"""The schedule role (cron/systemd fallback of AWX) installed into a temporary root, never /etc:

- the timers' OnCalendar and the cron lines fire at the plan's times for twelve months (read by
  tests/unit/schedule_times.py, and OnCalendar by systemd-analyze too), the units pass
  `systemd-analyze verify`, units of a job dropped from the list go (a second install changing
  nothing is molecule's idempotence step: extensions/molecule/schedule);
- the runner, driven by the role's own configuration with a stand-in for ansible-playbook that
  records its arguments and sleeps: two runs of a job never overlap (the second is refused with
  75, or waits when the job allows), jobs sharing a lock neither, a missed run is reported (log,
  counter, `check` exit 1 and the overdue gauge), the weekday guard, the timeout, the metrics
  (promtool), shellcheck, the alert rules (promtool).
"""

import json
import os
import re
import shutil
import subprocess
import time

import pytest
import yaml

from tests.conftest import REPO, VENV_BIN, ansible_env
from tests.unit.schedule_times import (cron_times, load_jobs, oncalendar_times, plan_times, rrule_times,
                                       systemd_times)

ROLE = REPO / "roles" / "schedule"
RUNNER = ROLE / "files" / "auditron-dr-run"
JOBS = load_jobs()
EX_REFUSED = 75

FAKE_PLAYBOOK = """#!/bin/bash
# Stand-in for ansible-playbook: records when it ran and with what, then sleeps FAKE_SLEEP.
printf '%s start %s %s\\n' "$(date +%s.%N)" "$AUDITRON_DR_SCHEDULED_JOB" "$*" >> "$FAKE_RECORD"
sleep "${FAKE_SLEEP:-0}"
printf '%s end %s\\n' "$(date +%s.%N)" "$AUDITRON_DR_SCHEDULED_JOB" >> "$FAKE_RECORD"
exit "${FAKE_RC:-0}"
"""

TEST_JOBS = [
    {"name": "t_alone", "playbook": "backup_config", "extra_vars": {"k": "v w"}, "on_calendar": "*-*-* 12:00:00 UTC",
     "cron": "0 12 * * *", "max_gap_seconds": 86400, "timeout_seconds": 60},
    {"name": "t_waits", "playbook": "backup_config", "on_calendar": "*-*-* 12:00:00 UTC", "cron": "0 12 * * *",
     "max_gap_seconds": 86400, "lock_wait_seconds": 20},
    {"name": "t_shared_a", "playbook": "backup_config", "lock": "t_shared", "on_calendar": "*-*-* 12:00:00 UTC",
     "cron": "0 12 * * *", "max_gap_seconds": 86400},
    {"name": "t_shared_b", "playbook": "backup_config", "lock": "t_shared", "on_calendar": "*-*-* 12:00:00 UTC",
     "cron": "0 12 * * *", "max_gap_seconds": 86400},
    {"name": "t_timeout", "playbook": "backup_config", "on_calendar": "*-*-* 12:00:00 UTC", "cron": "0 12 * * *",
     "max_gap_seconds": 86400, "timeout_seconds": 1},
    {"name": "t_other_day", "playbook": "backup_config", "on_calendar": "*-*-* 12:00:00 UTC", "cron": "0 12 * * *",
     "max_gap_seconds": 86400, "weekday": (int(time.strftime("%u", time.gmtime())) % 7) + 1},
]

INSTALL_PLAY = """
- name: Install the schedule under a temporary root
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Apply the role
      ansible.builtin.include_role:
        name: auditron.dr.schedule
"""


def _install_command(root, backend, extra=None):
    play = root.parent / ("install-%s.yml" % backend)
    play.write_text(INSTALL_PLAY)
    variables = {"schedule_root": str(root), "schedule_backend": backend,
                 "schedule_rules_dir": "/etc/prometheus/rules",
                 "ansible_python_interpreter": str(VENV_BIN / "python")}
    variables.update(extra or {})
    return [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(play), "-e", json.dumps(variables)]


def install(root, backend, extra=None):
    result = subprocess.run(_install_command(root, backend, extra), cwd=REPO, env=ansible_env(), capture_output=True,
                            text=True, check=False, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Both installs at once (each is a few dozen template tasks): the plan's jobs as systemd units,
    and as cron entries with the test jobs and the stand-in for ansible-playbook."""
    base = tmp_path_factory.mktemp("schedule")
    fake = base / "ansible-playbook"
    fake.write_text(FAKE_PLAYBOOK)
    fake.chmod(0o755)
    roots = {"systemd": base / "systemd", "cron": base / "cron"}
    (base / "cron").mkdir()
    (base / "systemd").mkdir()
    extras = {"systemd": {}, "cron": {
        "schedule_ansible_playbook": str(fake), "schedule_jobs": JOBS + TEST_JOBS,
        "schedule_inventories": {"primary": "/srv/inv/primary", "dr": ["/srv/inv/dr", "/srv/inv/p"]}}}
    processes = {backend: subprocess.Popen(_install_command(roots[backend] / "root", backend, extras[backend]), cwd=REPO,
                                           env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                           text=True)
                 for backend in roots}
    outputs = {}
    for backend, process in processes.items():
        outputs[backend] = process.communicate(timeout=300)[0]
        assert process.returncode == 0, outputs[backend][-4000:]
    return {backend: (roots[backend] / "root", outputs[backend]) for backend in roots}


@pytest.fixture(scope="module")
def systemd_root(installed):
    return installed["systemd"]


@pytest.fixture(scope="module")
def cron_root(installed):
    return installed["cron"][0]


class Runner:
    def __init__(self, root, record):
        self.root = root
        self.record = record
        self.config = root / "etc" / "auditron-dr" / "schedule"
        self.state = root / "var" / "lib" / "auditron-dr" / "schedule"
        self.textfile = root / "var" / "lib" / "prometheus" / "node-exporter"
        self.log = root / "var" / "log" / "auditron-dr" / "auditron-dr-run.log"

    def env(self, **extra):
        env = dict(os.environ, FAKE_RECORD=str(self.record))
        env.pop("INVOCATION_ID", None)
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def start(self, *args, **env):
        return subprocess.Popen([str(self.root / "usr" / "local" / "bin" / "auditron-dr-run"), "-c", str(self.config)]
                                + list(args), env=self.env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def run(self, *args, **env):
        process = self.start(*args, **env)
        stdout, stderr = process.communicate(timeout=120)
        return process.returncode, stdout, stderr

    def metrics(self, job):
        values = {}
        for line in (self.textfile / ("auditron_dr_schedule_%s.prom" % job)).read_text().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def events(self, job):
        if not self.record.exists():
            return []
        return [line.split() for line in self.record.read_text().splitlines() if line.split()[2] == job]


@pytest.fixture
def runner(cron_root, tmp_path):
    return Runner(cron_root, tmp_path / "record.txt")


def _unit_setting(path, key):
    return [line.split("=", 1)[1] for line in path.read_text().splitlines() if line.startswith(key + "=")]


# ---- what the role writes --------------------------------------------------------------------

@pytest.mark.parametrize("job", JOBS, ids=[j["name"] for j in JOBS])
def test_timer_fires_at_the_plans_times(systemd_root, job):
    units = systemd_root[0] / "etc" / "systemd" / "system"
    timer = units / ("auditron-dr-%s.timer" % job["name"])
    assert _unit_setting(timer, "OnCalendar") == [job["on_calendar"]]
    assert _unit_setting(timer, "Persistent") == ["true"]
    assert _unit_setting(timer, "Unit") == ["auditron-dr-%s.service" % job["name"]]
    assert oncalendar_times(job["on_calendar"]) == plan_times()[job["name"]]
    by_systemd = systemd_times(job["on_calendar"])
    if by_systemd is not None:
        expected = rrule_times(job["rrule"])
        assert by_systemd[:len(expected)] == expected[:len(by_systemd)], "systemd reads %s otherwise" % job["on_calendar"]
    service = units / ("auditron-dr-%s.service" % job["name"])
    assert _unit_setting(service, "ExecStart") == ["%s/usr/local/bin/auditron-dr-run -c %s/etc/auditron-dr/schedule run %s"
                                                   % (systemd_root[0], systemd_root[0], job["name"])]


def test_units_pass_systemd_analyze_verify(systemd_root):
    if not shutil.which("systemd-analyze"):
        pytest.fail("systemd-analyze is missing (Debian package systemd): the units cannot be verified")
    units = sorted(str(p) for p in (systemd_root[0] / "etc" / "systemd" / "system").glob("*.timer"))
    assert len(units) == len(JOBS) + 1
    result = subprocess.run(["systemd-analyze", "verify"] + units, capture_output=True, text=True, check=False)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


def test_systemd_install_leaves_no_cron_file_and_installs_the_alert_rules(systemd_root):
    """(A second install changing nothing is molecule's idempotence step, extensions/molecule/schedule.)"""
    root, first = systemd_root
    assert re.search(r"changed=[1-9]", first)
    assert not (root / "etc" / "cron.d" / "auditron-dr").exists()
    assert (root / "etc" / "prometheus" / "rules" / "auditron_dr_schedule_alerts.yml").is_file()
    assert (root / "usr" / "local" / "bin" / "auditron-dr-run").stat().st_mode & 0o777 == 0o755


def test_removed_job_loses_its_units_and_settings(tmp_path):
    root = tmp_path / "root"
    install(root, "systemd", {"schedule_jobs": TEST_JOBS[:2]})
    install(root, "systemd", {"schedule_jobs": TEST_JOBS[:1]})
    units = sorted(p.name for p in (root / "etc" / "systemd" / "system").iterdir())
    assert units == ["auditron-dr-schedule-check.service", "auditron-dr-schedule-check.timer",
                     "auditron-dr-t_alone.service", "auditron-dr-t_alone.timer"]
    assert sorted(p.name for p in (root / "etc" / "auditron-dr" / "schedule" / "jobs").iterdir()) == ["t_alone.env"]


@pytest.mark.parametrize("job", JOBS, ids=[j["name"] for j in JOBS])
def test_cron_line_fires_at_the_plans_times(cron_root, job):
    lines = (cron_root / "etc" / "cron.d" / "auditron-dr").read_text().splitlines()
    command = "root %s/usr/local/bin/auditron-dr-run -c %s/etc/auditron-dr/schedule run %s" % (
        cron_root, cron_root, job["name"])
    matching = [line for line in lines if line.endswith(command)]
    assert len(matching) == 1, command
    fields = matching[0][:-len(command)].strip()
    settings = dict(line.split("=", 1) for line in (cron_root / "etc" / "auditron-dr" / "schedule" / "jobs" /
                                                    ("%s.env" % job["name"])).read_text().splitlines()
                    if line and not line.startswith("#"))
    weekday = settings["WEEKDAY"] or None
    assert cron_times(fields, weekday=weekday) == plan_times()[job["name"]]
    assert "CRON_TZ=UTC" in lines


def test_job_settings_carry_the_playbook_inventories_and_extra_vars(cron_root):
    jobs_dir = cron_root / "etc" / "auditron-dr" / "schedule" / "jobs"

    def settings(name):
        return dict(line.split("=", 1) for line in (jobs_dir / ("%s.env" % name)).read_text().splitlines()
                    if line and not line.startswith("#"))

    full = settings("backup_database_full")
    assert full["PLAYBOOK"] == "auditron.dr.backup_database"
    assert json.loads(full["EXTRA_VARS"]) == {"backup_type": "full"}
    assert full["INVENTORIES"] == "/srv/inv/primary"
    assert full["LOCK"] == "pgbackrest" and full["LOCK_WAIT_SECONDS"] == "3600"
    assert full["GRACE_SECONDS"] == str(900 + 3600)
    assert settings("dr_drill")["INVENTORIES"] == "/srv/inv/dr:/srv/inv/p"
    assert settings("dr_drill")["WEEKDAY"] == "6"
    assert not (cron_root / "etc" / "systemd" / "system").exists()


# ---- the runner ------------------------------------------------------------------------------

def test_a_run_calls_ansible_playbook_with_the_jobs_arguments(runner):
    rc, stdout, stderr = runner.run("run", "t_alone")
    assert rc == 0, stderr
    (event,) = [e for e in runner.events("t_alone") if e[1] == "start"]
    assert event[3:] == ["-i", "/srv/inv/primary", "-e", '{"k":', '"v', 'w"}', "auditron.dr.backup_config"]
    metrics = runner.metrics("t_alone")
    assert metrics['auditron_dr_schedule_last_exit_code{job="t_alone"}'] == 0
    assert metrics['auditron_dr_schedule_runs_total{job="t_alone",status="success"}'] >= 1
    assert metrics['auditron_dr_schedule_overdue{job="t_alone"}'] == 0
    run_logs = list((runner.root / "var" / "log" / "auditron-dr" / "t_alone").glob("*.log"))
    assert run_logs and "auditron.dr.backup_config" in run_logs[0].read_text()


def test_a_second_run_of_a_job_is_refused_while_the_first_runs(runner):
    before = runner.metrics("t_alone") if (runner.textfile / "auditron_dr_schedule_t_alone.prom").exists() else {}
    first = runner.start("run", "t_alone", FAKE_SLEEP=3)
    time.sleep(1)
    rc, stdout, stderr = runner.run("run", "t_alone")
    assert rc == EX_REFUSED, stderr
    assert "refused: lock t_alone is held (pid %d, job t_alone" % first.pid in stderr
    first.communicate(timeout=60)
    assert first.returncode == 0
    assert len([e for e in runner.events("t_alone") if e[1] == "start"]) == 1
    refused = 'auditron_dr_schedule_runs_total{job="t_alone",status="refused"}'
    assert runner.metrics("t_alone")[refused] == before.get(refused, 0) + 1


def test_a_run_that_may_wait_starts_when_the_first_has_ended(runner):
    first = runner.start("run", "t_waits", FAKE_SLEEP=2)
    time.sleep(0.5)
    rc, stdout, stderr = runner.run("run", "t_waits", FAKE_SLEEP=0)
    assert rc == 0, stderr
    first.communicate(timeout=60)
    events = runner.events("t_waits")
    assert [e[1] for e in events] == ["start", "end", "start", "end"], events
    assert float(events[2][0]) >= float(events[1][0])


def test_jobs_sharing_a_lock_never_overlap(runner):
    first = runner.start("run", "t_shared_a", FAKE_SLEEP=3)
    time.sleep(1)
    rc, stdout, stderr = runner.run("run", "t_shared_b")
    first.communicate(timeout=60)
    assert rc == EX_REFUSED and "lock t_shared is held" in stderr, stderr
    assert runner.events("t_shared_b") == []


def test_a_missed_run_is_reported_by_check_and_by_the_late_run(runner):
    rc, stdout, stderr = runner.run("run", "t_shared_b")
    assert rc == 0
    state = runner.state / "t_shared_b"
    (state / "last_trigger").write_text("%d\n" % (time.time() - 2 * 86400))
    rc, stdout, stderr = runner.run("check")
    assert rc == 1
    assert re.search(r"warning t_shared_b: missed: not started since .*; the schedule allows 86400 s", stderr), stderr
    assert runner.metrics("t_shared_b")['auditron_dr_schedule_overdue{job="t_shared_b"}'] == 1
    rc, stdout, stderr = runner.run("run", "t_shared_b")
    assert rc == 0
    assert "missed run: the previous start was at" in stderr
    metrics = runner.metrics("t_shared_b")
    assert metrics['auditron_dr_schedule_missed_runs_total{job="t_shared_b"}'] == 1
    assert metrics['auditron_dr_schedule_overdue{job="t_shared_b"}'] == 0
    assert "missed run" in runner.log.read_text()
    rc, stdout, stderr = runner.run("status")
    assert rc == 0 and re.search(r"t_shared_b\s+\S+Z\s+0\s+on time", stdout), stdout


def test_a_job_that_never_ran_is_overdue_once_installed_longer_than_its_gap(runner):
    job_file = runner.config / "jobs" / "t_timeout.env"
    state = runner.state / "t_timeout" / "last_trigger"
    if state.exists():
        state.unlink()
    old = time.time() - 3 * 86400
    os.utime(job_file, (old, old))
    try:
        rc, stdout, stderr = runner.run("check")
        assert rc == 1 and "t_timeout: missed: not started since" in stderr, stderr
    finally:
        os.utime(job_file, None)


def test_weekday_guard_runs_nothing_on_another_day(runner):
    rc, stdout, stderr = runner.run("run", "t_other_day")
    assert rc == 0, stderr
    assert runner.events("t_other_day") == []
    assert not (runner.state / "t_other_day" / "last_trigger").exists()


def test_a_run_past_its_timeout_is_stopped(runner):
    rc, stdout, stderr = runner.run("run", "t_timeout", FAKE_SLEEP=30)
    assert rc == 124 and "timed out after 1 s" in stderr, stderr


def test_a_failed_run_keeps_its_exit_status(runner):
    rc, stdout, stderr = runner.run("run", "t_shared_a", FAKE_RC=3)
    assert rc == 3 and "failed with exit status 3" in stderr
    assert runner.metrics("t_shared_a")['auditron_dr_schedule_last_exit_code{job="t_shared_a"}'] == 3


def test_unknown_job_and_bad_settings_are_configuration_errors(runner, tmp_path):
    rc, stderr = runner.run("run", "no_such_job")[::2]
    assert rc == 78 and "no job no_such_job" in stderr
    bad = tmp_path / "config"
    shutil.copytree(runner.config, bad)
    with open(bad / "jobs" / "t_alone.env", "a", encoding="utf-8") as settings:
        settings.write("RM=$(rm -rf /)\n")
    result = subprocess.run([str(RUNNER), "-c", str(bad), "run", "t_alone"], capture_output=True, text=True,
                            check=False, env=runner.env())
    assert result.returncode == 78 and "unknown setting RM" in result.stderr


def test_metrics_pass_promtool(runner):
    if not shutil.which("promtool"):
        pytest.fail("promtool is missing (Debian package prometheus): the metrics cannot be linted")
    runner.run("run", "t_alone")
    for prom in runner.textfile.glob("auditron_dr_schedule_*.prom"):
        result = subprocess.run(["promtool", "check", "metrics"], input=prom.read_text(), capture_output=True,
                                text=True, check=False)
        assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


def test_alert_rules_pass_promtool():
    if not shutil.which("promtool"):
        pytest.fail("promtool is missing (Debian package prometheus)")
    result = subprocess.run(["promtool", "check", "rules", str(ROLE / "files" / "auditron_dr_schedule_alerts.yml")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    rules = yaml.safe_load((ROLE / "files" / "auditron_dr_schedule_alerts.yml").read_text())
    expressions = " ".join(r["expr"] for g in rules["groups"] for r in g["rules"])
    written = set(re.findall(r"printf '# TYPE (\w+) ", RUNNER.read_text()))
    assert set(re.findall(r"auditron_dr_schedule_\w+", expressions)) <= written


def test_runner_passes_shellcheck():
    if not shutil.which("shellcheck"):
        pytest.fail("shellcheck is missing (Debian package shellcheck)")
    result = subprocess.run(["shellcheck", str(RUNNER)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout
