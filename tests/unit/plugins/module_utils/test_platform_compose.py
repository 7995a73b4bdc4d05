"""The compose platform without a Docker engine: the exact argv it would run, captured through
an injected runner that answers `ps --format json` with canned output in both formats Compose
has printed.
"""

import json

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import platform, platform_compose
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from tests.unit.plugins.module_utils.platform_fakes import ComposeRunner, FakeClock


# ---------------------------------------------------------------------------------------------
# compose

def ps_line(name, state="running", health="", service="api"):
    return json.dumps({"ID": "id-" + name, "Name": name, "Service": service, "State": state, "Health": health,
                       "Status": "Up 2 minutes" if state == "running" else "Exited (0)"})


def compose_driver(tmp_path, runner, clock=None, **kwargs):
    clock = clock or FakeClock()
    project = tmp_path / "docker-compose.yml"
    project.write_text("services: {api: {image: auditron/api}}\n")
    return platform_compose.ComposeDriver("primary", str(project), runner=runner, timeout=30, interval=1,
                                          sleep=clock.sleep, clock=clock.clock, **kwargs)


def base_argv(tmp_path, project="auditron"):
    return ["docker", "compose", "-f", str(tmp_path / "docker-compose.yml"), "-p", project]


THREE_RUNNING = "\n".join(ps_line("auditron-api-%d" % i) for i in (1, 2, 3))
THREE_EXITED = "\n".join(ps_line("auditron-api-%d" % i, state="exited") for i in (1, 2, 3))


def test_compose_stop_runs_stop_and_remembers_the_count(tmp_path):
    runner = ComposeRunner([THREE_RUNNING, THREE_EXITED])
    driver = compose_driver(tmp_path, runner)
    result = platform.ensure(driver, "stopped")
    base = base_argv(tmp_path)
    assert runner.calls == [
        base + ["ps", "--all", "--format", "json", "api"],
        base + ["stop", "api"],
        base + ["ps", "--all", "--format", "json", "api"],   # waited: nothing running
        base + ["ps", "--all", "--format", "json", "api"],   # observed after
    ]
    assert result["changed"] and result["previous_replicas"] == 3 and result["replicas"] == 0
    state_file = tmp_path / ".auditron-dr-auditron-api.state.json"
    assert json.loads(state_file.read_text())["replicas_before_stop"] == 3
    assert result["remembered_replicas"] == 3


def test_compose_start_restores_the_remembered_count_not_three_by_habit(tmp_path):
    (tmp_path / ".auditron-dr-auditron-api.state.json").write_text(json.dumps({"replicas_before_stop": 2}))
    two_running = "\n".join(ps_line("auditron-api-%d" % i, health="healthy") for i in (1, 2))
    runner = ComposeRunner([THREE_EXITED, two_running])
    driver = compose_driver(tmp_path, runner)
    result = platform.ensure(driver, "started")
    assert base_argv(tmp_path) + ["up", "-d", "--scale", "api=2", "api"] in runner.calls
    assert result["changed"] and result["replicas"] == 2
    assert not (tmp_path / ".auditron-dr-auditron-api.state.json").exists()   # memory used up


def test_compose_start_without_memory_leaves_the_scale_to_compose(tmp_path):
    runner = ComposeRunner(["", ps_line("auditron-api-1")])
    driver = compose_driver(tmp_path, runner)
    result = platform.ensure(driver, "started")
    assert base_argv(tmp_path) + ["up", "-d", "api"] in runner.calls
    assert result["replicas"] == 1


def test_compose_explicit_replicas_and_other_command_and_project(tmp_path):
    runner = ComposeRunner(["", "\n".join(ps_line("p-api-%d" % i) for i in range(1, 5))])
    driver = compose_driver(tmp_path, runner, project_name="auditron-dr", command=["docker-compose"])
    platform.ensure(driver, "started", replicas=4)
    assert ["docker-compose", "-f", str(tmp_path / "docker-compose.yml"), "-p", "auditron-dr",
            "up", "-d", "--scale", "api=4", "api"] in runner.calls


def test_compose_running_at_the_right_count_is_not_touched(tmp_path):
    runner = ComposeRunner([THREE_RUNNING])
    result = platform.ensure(compose_driver(tmp_path, runner), "started")
    assert not result["changed"]
    assert all(call[call.index("-p") + 2] == "ps" for call in runner.calls)


def test_compose_stopping_a_stopped_service_changes_nothing_and_keeps_the_memory(tmp_path):
    (tmp_path / ".auditron-dr-auditron-api.state.json").write_text(json.dumps({"replicas_before_stop": 3}))
    runner = ComposeRunner([THREE_EXITED])
    result = platform.ensure(compose_driver(tmp_path, runner), "stopped")
    assert not result["changed"] and result["previous_replicas"] == 3
    assert len(runner.calls) == 1


def test_compose_check_mode_runs_only_ps_and_writes_nothing(tmp_path):
    runner = ComposeRunner([THREE_RUNNING])
    result = platform.ensure(compose_driver(tmp_path, runner), "stopped", check_mode=True)
    assert result["changed"] and result["replicas"] == 0 and result["previous_replicas"] == 3
    assert [call[call.index("-p") + 2] for call in runner.calls] == ["ps"]
    assert all(a.startswith("would ") for a in result["actions"])
    assert not (tmp_path / ".auditron-dr-auditron-api.state.json").exists()


def test_compose_failure_is_one_line_naming_the_app_and_the_command(tmp_path):
    runner = ComposeRunner([THREE_RUNNING], fail={"stop": (1, "", "warn\nCannot connect to the Docker daemon\n")})
    with pytest.raises(DRError) as err:
        platform.ensure(compose_driver(tmp_path, runner), "stopped")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("app primary (compose auditron/api): `docker compose -f")
    assert "stop api` failed (exit 1): Cannot connect to the Docker daemon" in message


def test_compose_missing_docker_is_said_plainly(tmp_path):
    driver = compose_driver(tmp_path, platform_compose.run_command, command=["/nonexistent/docker", "compose"])
    with pytest.raises(DRError) as err:
        platform.ensure(driver, "status")
    assert "exit 127" in str(err.value) and "/nonexistent/docker" in str(err.value)


def test_compose_wait_times_out_with_the_last_state(tmp_path):
    clock = FakeClock()
    starting = ps_line("auditron-api-1", health="starting")
    runner = ComposeRunner([THREE_EXITED, starting])
    (tmp_path / ".auditron-dr-auditron-api.state.json").write_text(json.dumps({"replicas_before_stop": 1}))
    with pytest.raises(DRError) as err:
        platform.ensure(compose_driver(tmp_path, runner, clock=clock), "started")
    assert "not reached within 30 s" in str(err.value)
    assert "0 of 1 running and ready (auditron-api-1 running/starting)" in str(err.value)


def test_compose_deploy_is_up_d_for_the_project_and_changed_when_containers_change(tmp_path):
    runner = ComposeRunner([THREE_RUNNING, THREE_RUNNING, ps_line("new-1") + "\n" + ps_line("db", service="db")])
    driver = compose_driver(tmp_path, runner)
    changed, actions = driver.deploy(driver.observe(), None)
    assert base_argv(tmp_path) + ["up", "-d"] in runner.calls
    assert base_argv(tmp_path) + ["ps", "--all", "--format", "json"] in runner.calls   # whole project
    assert changed


@pytest.mark.parametrize("text", [
    # Compose >= 2.21: one object per line
    ps_line("a", health="healthy") + "\n" + ps_line("b", state="exited") + "\n",
    # Compose < 2.21: one JSON array
    json.dumps([json.loads(ps_line("a", health="healthy")), json.loads(ps_line("b", state="exited"))]),
])
def test_parse_compose_ps_reads_both_formats(text):
    containers = platform_compose.parse_compose_ps(text)
    found = [(c["name"], c["state"], c["health"]) for c in containers]
    assert found == [("a", "running", "healthy"), ("b", "exited", "")]


def test_parse_compose_ps_empty_and_garbage():
    assert platform_compose.parse_compose_ps("") == []
    assert platform_compose.parse_compose_ps("  \n") == []
    with pytest.raises(DRError):
        platform_compose.parse_compose_ps("no such service: api")


def test_unhealthy_containers_are_running_but_not_ready(tmp_path):
    runner = ComposeRunner([ps_line("a", health="unhealthy") + "\n" + ps_line("b", health="healthy")])
    found = compose_driver(tmp_path, runner).observe()
    assert found["replicas"] == 2 and found["ready_replicas"] == 1
