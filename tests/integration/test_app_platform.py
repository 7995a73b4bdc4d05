"""The application platform against the lab: the DR site's app is stopped and started for real
(other tests use the primary's app), through the role as playbooks use it.

Every test that stops the DR app starts it again in `finally`, so the lab is left as found.
The kubernetes driver has an opt-in test against a real cluster at the end (no cluster runs
here): set AUDITRON_TEST_KUBECONFIG to a kubeconfig whose current context may create and delete
a namespace.
"""

import base64
import json
import os
import pwd
import subprocess
import urllib.error
import urllib.request
import uuid

import pytest
import yaml

from tests.conftest import REPO, VENV_BIN, ansible_env

pytestmark = pytest.mark.lab


def run_tasks(tmp_path, tasks, hosts="dr", check=False):
    """Run `tasks` in a play against inventories/local; returns ({task name: result}, run)."""
    playbook = tmp_path / ("play-%s.yml" % uuid.uuid4().hex[:8])
    playbook.write_text(yaml.safe_dump([{"name": "app platform test", "hosts": hosts, "gather_facts": False,
                                         "tasks": tasks}], sort_keys=False))
    command = [str(VENV_BIN / "ansible-playbook"), "-i", str(REPO / "inventories" / "local"), str(playbook)]
    if check:
        command.append("--check")
    env = ansible_env({"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
                       "AUDITRON_DR_REPORT_DIR": str(tmp_path / "reports")})
    completed = subprocess.run(command, cwd=str(REPO), env=env, capture_output=True, text=True, timeout=300,
                               check=False)
    try:
        output = json.loads(completed.stdout[completed.stdout.index("{"):])
    except ValueError:
        pytest.fail("ansible-playbook printed no JSON (rc %d):\n%s"
                    % (completed.returncode, completed.stdout + completed.stderr))
    results = {}
    for play in output["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                results.setdefault(task["task"]["name"], {})[host] = result
    return results, completed


def role_task(name, entry_point, check_mode=False, **role_vars):
    task = {"name": name, "ansible.builtin.include_role": {"name": "auditron.dr.app_platform",
                                                           "tasks_from": entry_point}}
    if check_mode:
        task["ansible.builtin.include_role"]["apply"] = {"check_mode": True}
    if role_vars:
        task["vars"] = role_vars
    return task


def show(name, var):
    """A debug task: the JSON callback then shows the role's registered result under `name`."""
    return {"name": name, "ansible.builtin.debug": {"var": var}}


def answers(url, path="/health"):
    try:
        with urllib.request.urlopen(url + path, timeout=3) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def process_user(pid):
    with open("/proc/%d/status" % pid) as handle:
        uid = next(int(line.split()[1]) for line in handle if line.startswith("Uid:"))
    return pwd.getpwuid(uid).pw_name


def ensure_dr_app_running(lab):
    """Leave the lab as found: the DR app running (through the lab itself if the role could not)."""
    from lab import proc, servers  # pylint: disable=import-outside-toplevel
    if not proc.running("app-dr"):
        servers.start_app("dr", servers.load_secrets())


def test_stop_then_start_the_dr_app_remembering_its_count(lab, tmp_path):
    """One play: stop (check mode, real, again), look at the stopped state from inside the play,
    then start (check mode, real, again) and verify. One play keeps the stopped window short:
    another test session's `lab` fixture starts any lab server it finds stopped."""
    from lab import proc  # pylint: disable=import-outside-toplevel
    app = lab["sites"]["dr"]["app"]
    host, port = app["url"].split("//")[1].split(":")[0], int(app["url"].rsplit(":", 1)[1])
    state_file = app["pid_file"][:-len(".json")] + ".replicas.json"
    before = proc.read_pid("app-dr")
    assert before and proc.running("app-dr"), "the lab's DR app is not running"
    tasks = [
        role_task("stop (check mode)", "stop", check_mode=True),
        show("check-mode stop result", "app_platform_result"),
        {"name": "still answering after the check-mode stop",
         "ansible.builtin.wait_for": {"host": host, "port": port, "timeout": 2}},
        role_task("stop", "stop"),
        show("stop result", "app_platform_result"),
        {"name": "port closed", "ansible.builtin.wait_for": {"host": host, "port": port, "state": "stopped",
                                                             "timeout": 1}},
        {"name": "pid file", "ansible.builtin.stat": {"path": app["pid_file"]}},
        {"name": "remembered count", "ansible.builtin.slurp": {"src": state_file}},
        role_task("stop again", "stop"),
        show("second stop result", "app_platform_result"),
        role_task("start (check mode)", "start", check_mode=True),
        show("check-mode start result", "app_platform_result"),
        {"name": "still closed after the check-mode start",
         "ansible.builtin.wait_for": {"host": host, "port": port, "state": "stopped", "timeout": 1}},
        role_task("start", "start"),
        show("start result", "app_platform_result"),
        role_task("start again", "start"),
        show("second start result", "app_platform_result"),
        role_task("verify", "verify", app_platform_verify_data=False),
        show("verify result", "app_platform_verify_result"),
    ]
    try:
        results, run = run_tasks(tmp_path, tasks)
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr

        def result_of(name, var="app_platform_result"):
            return results[name]["dr"][var]

        check = result_of("check-mode stop result")
        assert check["changed"] and check["found"]["replicas"] == 1 and check["replicas"] == 0
        assert check["msg"].startswith("app dr (process) would be stopped: would remember 1 replica")
        first = result_of("stop result")
        assert first["changed"] and first["previous_replicas"] == 1
        # really stopped: port closed (the play went on), no pid file, the count on disk
        assert not results["pid file"]["dr"]["stat"]["exists"]
        remembered = json.loads(base64.b64decode(results["remembered count"]["dr"]["content"]))
        assert remembered["replicas_before_stop"] == 1
        second = result_of("second stop result")
        assert not second["changed"] and second["previous_replicas"] == 1

        check = result_of("check-mode start result")
        assert check["changed"] and check["replicas"] == 1 and check["found"]["replicas"] == 0
        started = result_of("start result")
        assert started["changed"] and started["replicas"] == 1 and started["remembered_replicas"] is None
        assert not result_of("second start result")["changed"]
        verified = result_of("verify result", "app_platform_verify_result")
        assert verified["passed"] and verified["checks"][0]["result"] == "ok"

        # the lab's own pid logic (make lab-down) recognises the process the role started
        record = proc.read_pid("app-dr")
        assert record and record["pid"] == started["status"]["pid"] != before["pid"]
        assert proc.running("app-dr") and record["argv"] == app["command"]
        assert answers(app["url"]) == 200
        assert not os.path.exists(state_file)
        if lab["lab"]["become"]:
            assert process_user(record["pid"]) == lab["lab"]["os_user"]
    finally:
        ensure_dr_app_running(lab)


def test_check_mode_run_changes_nothing(lab, tmp_path):
    from lab import proc  # pylint: disable=import-outside-toplevel
    before = proc.read_pid("app-dr")
    results, run = run_tasks(tmp_path, [role_task("stop", "stop"),
                                        show("stop result", "app_platform_result")], check=True)
    try:
        assert run.returncode == 0, run.stdout[-4000:]
        assert results["stop result"]["dr"]["app_platform_result"]["changed"]
        assert proc.read_pid("app-dr") == before and proc.running("app-dr")
        assert answers(lab["sites"]["dr"]["app"]["url"]) == 200
    finally:
        ensure_dr_app_running(lab)


def test_verify_compares_the_primary_app_with_its_database(lab, tmp_path):
    """Read-only, so the primary's app is fine here."""
    results, run = run_tasks(tmp_path, [role_task("verify", "verify"),
                                        show("verify result", "app_platform_verify_result")],
                             hosts="primary")
    assert run.returncode == 0, run.stdout[-4000:]
    verified = results["verify result"]["primary"]["app_platform_verify_result"]
    assert [c["result"] for c in verified["dr_report"]["checks"]] == ["ok", "ok"]
    assert verified["data"]["app"]["count"] == verified["data"]["database"]["count"] > 0
    assert verified["dr_report"]["markers"]["service_restored"] == verified["verified_at"]
    assert lab["sites"]["primary"]["app"]["token"] not in run.stdout + run.stderr


@pytest.fixture
def probe_table(lab):
    """A table of this test's own in the primary database, unlike what the app serves."""
    import psycopg2  # pylint: disable=import-outside-toplevel
    pgconf = lab["sites"]["primary"]["postgres"]
    name = "app_verify_probe_%s" % uuid.uuid4().hex[:8]
    conn = psycopg2.connect(host=pgconf["host"], port=pgconf["port"], user=pgconf["user"],
                            password=pgconf["password"], dbname=pgconf["database"])
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute('CREATE TABLE "%s" (id bigint PRIMARY KEY, "createdAt" timestamptz NOT NULL DEFAULT now())'
                    % name)
        cur.execute('INSERT INTO "%s" (id) SELECT generate_series(1, 5)' % name)
    try:
        yield name
    finally:
        with conn.cursor() as cur:
            cur.execute('DROP TABLE IF EXISTS "%s"' % name)
        conn.close()


def test_failures_are_one_line_and_never_show_secrets(lab, tmp_path, probe_table):
    """In one play (read-only for the lab): verify against data the app does not serve, verify
    with a wrong token, and stop through a pid file that names another process."""
    from ansible_collections.auditron.dr.plugins.module_utils import platform_process  # pylint: disable=import-outside-toplevel
    app, pgconf = lab["sites"]["primary"]["app"], lab["sites"]["primary"]["postgres"]
    connection = {"login_host": pgconf["host"], "login_port": pgconf["port"], "login_user": pgconf["user"],
                  "login_password": pgconf["password"], "db": pgconf["database"]}
    wrong_token = "not-the-token-%s" % uuid.uuid4().hex
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        pid_file = tmp_path / "app.json"
        pid_file.write_text(json.dumps({"pid": sleeper.pid, "start_time": platform_process.proc_start_time(sleeper.pid),
                                        "argv": ["sleep", "60"]}))
        tasks = [
            {"name": "other data", "ignore_errors": True,
             "auditron.dr.app_verify": dict(connection, site="primary", url=app["url"], token=app["token"],
                                            table=probe_table, timeout=2, interval=0.5)},
            {"name": "wrong token", "ignore_errors": True,
             "auditron.dr.app_verify": dict(connection, site="primary", url=app["url"], token=wrong_token,
                                            timeout=30)},
            {"name": "foreign pid file", "ignore_errors": True,
             "auditron.dr.app_platform": {"platform": "process", "state": "stopped", "site": "primary",
                                          "process": {"pid_file": str(pid_file), "command": app["command"]}}},
        ]
        results, run = run_tasks(tmp_path, tasks, hosts="primary")
        assert sleeper.poll() is None          # nothing was signalled
    finally:
        sleeper.kill()
        sleeper.wait()

    other = results["other data"]["primary"]
    assert other["failed"]
    assert other["msg"].startswith("app primary at %s: not verified within 2 s" % app["url"])
    assert "but database auditron.\"%s\" holds count 5, max id 5" % probe_table in other["msg"]
    assert "differs: count, max_id, max_createdAt" in other["msg"]
    assert other["dr_report"]["checks"][1]["result"] == "failed"

    token = results["wrong token"]["primary"]
    assert token["failed"] and token["attempts"] == 1
    assert "refused the bearer token (HTTP 401)" in token["msg"]

    foreign = results["foreign pid file"]["primary"]
    assert foreign["failed"] and "\n" not in foreign["msg"]
    assert foreign["msg"].startswith("app primary (process): pid file %s belongs to something else: pid %d runs "
                                     "sleep 60" % (pid_file, sleeper.pid))

    for secret in (wrong_token, app["token"], pgconf["password"]):
        assert secret not in run.stdout + run.stderr


# ---------------------------------------------------------------------------------------------
# kubernetes: opt-in, against a real cluster

KUBECONFIG = os.environ.get("AUDITRON_TEST_KUBECONFIG")


@pytest.mark.skipif(not KUBECONFIG, reason="opt-in: set AUDITRON_TEST_KUBECONFIG to a kubeconfig whose context may "
                                           "create and delete a namespace (no cluster runs in this environment)")
def test_kubernetes_driver_against_a_real_cluster(tmp_path):
    """Deploy a two-replica Deployment (pause image) into a fresh namespace, stop it (2 remembered
    in the annotation), start it again (2 ready), then delete the namespace."""
    from ansible_collections.auditron.dr.plugins.module_utils import platform, platform_drivers, platform_kubernetes  # pylint: disable=import-outside-toplevel
    namespace = "auditron-dr-test-%s" % uuid.uuid4().hex[:6]
    manifests = tmp_path / "k8s"
    manifests.mkdir()
    (manifests / "10-deployment.yaml").write_text(yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "auditron-api"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "auditron-api"}},
                 "template": {"metadata": {"labels": {"app": "auditron-api"}},
                              "spec": {"terminationGracePeriodSeconds": 1,
                                       "containers": [{"name": "api", "image": "registry.k8s.io/pause:3.9"}]}}}}))
    kube = {"kubeconfig": KUBECONFIG, "namespace": namespace, "manifests_dir": str(manifests)}
    client = platform_kubernetes.kubernetes_client({"kubeconfig": KUBECONFIG})
    namespaces = client.resources.get(api_version="v1", kind="Namespace")
    client.create(namespaces, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    try:
        def driver(state):
            return platform_drivers.make_driver("kubernetes", "test", state=state, kubernetes=kube, timeout=240)
        deployed = platform.ensure(driver("deployed"), "deployed")
        assert deployed["changed"] and deployed["replicas"] == 2
        assert not platform.ensure(driver("deployed"), "deployed")["changed"]
        stopped = platform.ensure(driver("stopped"), "stopped")
        assert stopped["previous_replicas"] == 2 and stopped["status"]["remembered_replicas"] == 2
        assert not platform.ensure(driver("stopped"), "stopped")["changed"]
        started = platform.ensure(driver("started"), "started")
        assert started["replicas"] == 2 and started["status"]["ready_replicas"] == 2
        assert started["status"]["remembered_replicas"] is None
    finally:
        client.delete(namespaces, name=namespace)
