"""AWX as code, checked without an AWX (none can run here: no container engine).

- Every schedule's rrule passes AWX's own rrule rules and fires at the plan's times for twelve
  months (tests/unit/schedule_times.py holds the plan's times); the hourly jobs and the daily ones
  they give way to cover every hour exactly once.
- Every job template runs a playbook that exists, against an inventory that exists; every survey
  question sets a variable its playbook reads; every confirmation defaults to "no" and the
  playbook reads it with `| bool` (a "no" string is otherwise true); schedules and workflow nodes
  pass only variables the template accepts.
- playbooks/awx_configure.yml passes --syntax-check and, against a recording stand-in of the awx.awx
  modules (action plugins of the same names that write down their arguments, which are checked
  against the real modules' argument specs), makes the calls the data describes.
- test_against_a_real_awx is opt-in: AUDITRON_TEST_AWX_HOST (+ _TOKEN, or _USERNAME and _PASSWORD).
"""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, VENV_BIN, ansible_env
from tests.unit.schedule_times import (UTC, WINDOW_END, WINDOW_START, jobs_by_name, load_jobs, max_gap_seconds,
                                       plan_times, rrule_times)


class _UnsafeLoader(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
    """Reads Ansible's !unsafe tag (the credential types' injector templates) as a plain string."""


_UnsafeLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))

AWX_VARS = yaml.load((REPO / "playbooks" / "vars" / "awx.yml").read_text(), Loader=_UnsafeLoader)  # nosec B506
TEMPLATES = {t["id"]: t for t in AWX_VARS["auditron_dr_awx_job_templates"]}
INVENTORIES = {i["id"]: i for i in AWX_VARS["auditron_dr_awx_inventories"]}
JOBS = load_jobs()
PLAYBOOKS_USERS_HAVE = ["preflight", "backup_database", "backup_files", "backup_config", "prune_backups",
                        "verify_backups", "restore_database", "restore_files", "recover_deleted", "failover",
                        "failback", "setup_standby", "dr_drill"]
AWX_COLLECTION = Path(VENV_BIN).parent / "lib" / "python3.11" / "site-packages" / "ansible_collections" / "awx" / "awx"


def _playbook_text(playbook_file, seen=None):
    """The playbook, the playbooks it imports and the task files of the roles it names:
    everywhere its variables are read."""
    seen = seen if seen is not None else set()
    seen.add(playbook_file)
    text = (REPO / "playbooks" / playbook_file).read_text()
    for imported in re.findall(r"import_playbook:\s*([\w.]+\.yml)", text):
        if imported not in seen and (REPO / "playbooks" / imported).is_file():
            text += "\n" + _playbook_text(imported, seen)
    for role in sorted(set(re.findall(r"name:\s*auditron\.dr\.(\w+)", text))):
        for tasks_file in sorted((REPO / "roles" / role / "tasks").glob("*.yml")):
            if str(tasks_file) not in seen:
                seen.add(str(tasks_file))
                text += "\n" + tasks_file.read_text()
    return text


def _read_as_boolean(variable, text, depth=0):
    """`variable | bool` in the text, or the variable handed on (`other: "{{ variable ... }}"`)
    to a variable that is read so."""
    if re.search(r"\b%s\s*\|\s*(?:default\([^)]*\)\s*\|\s*)?bool\b" % variable, text):
        return True
    if depth > 2:
        return False
    forwarded = re.findall(r"(\w+):\s*\"\{\{\s*%s\s*(?:\|\s*default\([^)]*\)\s*)?\}\}\"" % variable, text)
    return any(_read_as_boolean(other, text, depth + 1) for other in forwarded if other != variable)


def _is_yes_no(question):
    return question["type"] == "multiplechoice" and sorted(question["choices"]) == ["no", "yes"]


# ---- schedules -------------------------------------------------------------------------------

@pytest.mark.parametrize("job", JOBS, ids=[j["name"] for j in JOBS])
def test_rrule_is_one_awx_accepts(job):
    """AWX's rules (awx/api/serializers.py, SchedulePreviewSerializer.validate_rrule)."""
    rrule = job["rrule"]
    assert re.match(r"^DTSTART:\d{8}T\d{6}Z RRULE:", rrule), "DTSTART in UTC (Z), then one RRULE: " + rrule
    rule = rrule.split("RRULE:", 1)[1]
    assert "INTERVAL=" in rule
    assert "SECONDLY" not in rule and "COUNT=" not in rule and "UNTIL=" not in rule
    assert not re.search(r"BYDAY=[^;]*[+-]?\d+[A-Z]{2}", rule), "AWX refuses BYDAY with a numeric prefix"
    assert not re.search(r"BYMONTHDAY=\d+,", rule), "older AWX refuses several BYMONTHDAYs"
    assert not re.search(r"BYMONTH=\d+,", rule) and "BYYEARDAY" not in rule and "BYWEEKNO" not in rule
    assert rrule_times(rrule), "the rrule never fires"


@pytest.mark.parametrize("job", JOBS, ids=[j["name"] for j in JOBS])
def test_rrule_fires_at_the_plans_times_for_twelve_months(job):
    expected = plan_times()[job["name"]]
    actual = rrule_times(job["rrule"])
    assert actual == expected, "%s: first differences %s" % (
        job["name"], sorted(set(actual) ^ set(expected))[:5])
    assert all(t.tzinfo == UTC for t in actual)


def test_incremental_and_full_backups_cover_every_hour_once():
    times = jobs_by_name()
    full = rrule_times(times["backup_database_full"]["rrule"])
    incr = rrule_times(times["backup_database_incr"]["rrule"])
    hours = int((WINDOW_END - WINDOW_START).total_seconds() // 3600)
    assert not set(full) & set(incr)
    assert len(full) + len(incr) == hours
    assert all(t.minute == 0 for t in full + incr)


def test_file_sync_and_snapshot_cover_every_hour_once():
    times = jobs_by_name()
    snapshot = rrule_times(times["backup_files_snapshot"]["rrule"])
    sync = rrule_times(times["backup_files_sync"]["rrule"])
    hours = int((WINDOW_END - WINDOW_START).total_seconds() // 3600)
    assert not set(snapshot) & set(sync)
    assert len(snapshot) + len(sync) == hours
    assert all(t.minute == 15 for t in snapshot + sync)


def test_full_backup_daily_at_two_and_backup_test_sundays_at_three():
    times = jobs_by_name()
    full = rrule_times(times["backup_database_full"]["rrule"])
    assert len(full) == 365 and {(t.hour, t.minute) for t in full} == {(2, 0)}
    verify = rrule_times(times["verify_backups"]["rrule"])
    assert len(verify) == 52 and {(t.isoweekday(), t.hour, t.minute) for t in verify} == {(7, 3, 0)}


def test_dr_drill_on_the_first_saturday_of_each_of_twelve_months():
    drills = rrule_times(jobs_by_name()["dr_drill"]["rrule"])
    assert [(t.year, t.month) for t in drills] == [(2027, month) for month in range(1, 13)]
    for drill in drills:
        assert drill.isoweekday() == 6 and drill.day <= 7, drill
    assert [t.day for t in drills] == [2, 6, 6, 3, 1, 5, 3, 7, 4, 2, 6, 4]


@pytest.mark.parametrize("job", JOBS, ids=[j["name"] for j in JOBS])
def test_max_gap_is_the_longest_silence_of_the_schedule(job):
    assert job["max_gap_seconds"] == max_gap_seconds(rrule_times(job["rrule"]))


def test_jobs_sharing_pgbackrest_never_start_together():
    """pgBackRest refuses a second backup, or an expire during a backup: those jobs share a lock
    and their start times never meet."""
    sharing = [j for j in JOBS if j["lock"] == "pgbackrest"]
    assert {j["name"] for j in sharing} == {"backup_database_full", "backup_database_incr", "prune_backups"}
    starts = [set(rrule_times(j["rrule"])) for j in sharing]
    for index, first in enumerate(starts):
        for second in starts[index + 1:]:
            assert not first & second


@pytest.mark.parametrize("job", JOBS, ids=[j["name"] for j in JOBS])
def test_schedule_runs_a_job_template_with_answers_its_survey_accepts(job):
    template = TEMPLATES.get(job["playbook"])
    assert template, "no job template runs %s" % job["playbook"]
    assert template["inventory"] == job["inventory"]
    questions = {q["variable"]: q for q in template["survey"]}
    for variable, value in job["extra_vars"].items():
        assert variable in questions or template.get("ask_variables_on_launch"), \
            "AWX drops %s from the schedule: not a survey question of %s" % (variable, template["id"])
        question = questions[variable]
        if question["type"] == "multiplechoice":
            assert value in question["choices"], "%s=%r is not one of %s" % (variable, value, question["choices"])


# ---- job templates ---------------------------------------------------------------------------

def test_every_playbook_users_have_has_a_job_template():
    runs = {t["playbook"] for t in TEMPLATES.values()}
    assert not [p for p in PLAYBOOKS_USERS_HAVE if p + ".yml" not in runs]


@pytest.mark.parametrize("template_id", sorted(TEMPLATES))
def test_job_template_playbook_exists(template_id):
    playbook = REPO / "playbooks" / TEMPLATES[template_id]["playbook"]
    assert playbook.is_file(), "%s runs %s, which is not in playbooks/ (yet)" % (template_id, playbook.name)


@pytest.mark.parametrize("template_id", sorted(TEMPLATES))
def test_job_template_inventory_exists(template_id):
    inventory = INVENTORIES.get(TEMPLATES[template_id]["inventory"])
    assert inventory, "%s names inventory %s" % (template_id, TEMPLATES[template_id]["inventory"])
    for source in inventory["source_paths"]:
        assert (REPO / source).is_file(), source


def test_playbooks_that_read_both_sites_get_the_both_sites_inventory():
    """Whatever reads the other site's hostvars needs both sites in its inventory."""
    for template in TEMPLATES.values():
        playbook = REPO / "playbooks" / template["playbook"]
        if not playbook.is_file():
            continue
        text = _playbook_text(template["playbook"])
        reads_primary = re.search(r"groups\['auditron_primary'\]\[0\]|hosts: auditron_primary", text)
        reads_dr = re.search(r"groups\['auditron_dr'\]\[0\]|hosts: auditron_dr\b", text)
        if reads_primary and reads_dr and not template.get("ask_inventory_on_launch"):
            assert len(INVENTORIES[template["inventory"]]["source_paths"]) == 2, template["id"]


@pytest.mark.parametrize("template_id", sorted(TEMPLATES))
def test_survey_variables_are_read_by_the_playbook(template_id):
    template = TEMPLATES[template_id]
    playbook = REPO / "playbooks" / template["playbook"]
    if not playbook.is_file():
        pytest.fail("%s is not in playbooks/ (yet): its survey cannot be checked" % playbook.name)
    text = _playbook_text(template["playbook"])
    unread = [q["variable"] for q in template["survey"] if not re.search(r"\b%s\b" % q["variable"], text)]
    assert not unread, "%s never reads %s" % (template["playbook"], unread)


def test_survey_questions_are_well_formed():
    for template in list(TEMPLATES.values()) + AWX_VARS["auditron_dr_awx_workflows"]:
        name = template.get("id", template.get("name"))
        variables = [q["variable"] for q in template["survey"]]
        assert len(variables) == len(set(variables)), name
        for question in template["survey"]:
            assert question["type"] in ("text", "multiplechoice", "integer"), (name, question)
            assert question["question_name"] and isinstance(question["required"], bool), (name, question)
            if question["type"] == "multiplechoice":
                assert question["default"] in question["choices"], (name, question)
            if question["type"] == "text":
                assert question["min"] <= len(question["default"]) <= question["max"], (name, question)


def _confirmations():
    found = []
    for template in list(TEMPLATES.values()) + AWX_VARS["auditron_dr_awx_workflows"]:
        for question in template["survey"]:
            if question.get("confirmation"):
                found.append((template.get("id", template.get("name")), question))
    return found


@pytest.mark.parametrize("owner,question", _confirmations(), ids=["%s:%s" % (o, q["variable"]) for o, q in _confirmations()])
def test_confirmation_question_defaults_to_no(owner, question):
    assert question["type"] == "multiplechoice" and question["required"], owner
    assert question["default"] == question["choices"][0], "%s: the safe answer comes first and is the default" % owner
    assert question["default"] not in ("yes", "true", "full"), owner
    if _is_yes_no(question):
        assert question["default"] == "no"


def test_the_confirmations_the_playbooks_require_are_asked():
    asked = {(o, q["variable"]) for o, q in _confirmations()}
    for pair in [("restore_database", "confirm_restore"), ("recover_deleted", "confirm_restore"),
                 ("failover", "confirm_failover"), ("prune_backups", "auditron_dr_prune_confirm"),
                 ("restore_files", "confirm_restore_files"), ("setup_standby", "confirm_standby"),
                 ("dr_drill", "drill_mode"), ("Failover to the DR site", "confirm_failover")]:
        assert pair in asked, pair


@pytest.mark.parametrize("owner,question", [c for c in _confirmations() if _is_yes_no(c[1]) and c[0] in TEMPLATES],
                         ids=lambda value: value if isinstance(value, str) else value["variable"])
def test_yes_no_confirmation_is_read_as_a_boolean(owner, question):
    """A survey answers with the string "no": only `| bool` makes it false."""
    playbook = REPO / "playbooks" / TEMPLATES[owner]["playbook"]
    if not playbook.is_file():
        pytest.fail("%s is not in playbooks/ (yet)" % playbook.name)
    assert _read_as_boolean(question["variable"], _playbook_text(TEMPLATES[owner]["playbook"])), \
        "%s does not read %s with | bool" % (playbook.name, question["variable"])


def test_job_template_credentials_exist():
    credentials = {c["name"] for c in AWX_VARS["auditron_dr_awx_credentials"]}
    for template in TEMPLATES.values():
        missing = set(template.get("credentials", AWX_VARS["auditron_dr_awx_site_credentials"])) - credentials
        assert not missing, (template["id"], missing)
    assert AWX_VARS["auditron_dr_awx_project"]["scm_credential"] in credentials


def test_credential_types_inject_only_their_own_inputs():
    types = {t["name"]: t for t in AWX_VARS["auditron_dr_awx_credential_types"]}
    builtin = {"Source Control", "Machine", "Vault"}
    for credential in AWX_VARS["auditron_dr_awx_credentials"]:
        assert credential["credential_type"] in types or credential["credential_type"] in builtin, credential
    for credential_type in types.values():
        fields = {f["id"] for f in credential_type["inputs"]["fields"]}
        assert set(credential_type["inputs"]["required"]) <= fields, credential_type["name"]
        for kind, injected in credential_type["injectors"].items():
            assert kind in ("env", "extra_vars"), kind
            for name, value in injected.items():
                used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", value))
                assert used and used <= fields, (credential_type["name"], name, value)
                if kind == "extra_vars":
                    assert name.startswith(("auditron_dr_", "vault_auditron_")), name
        for field in credential_type["inputs"]["fields"]:
            if re.search(r"key|pass|token|url", field["id"]) and "access_key" not in field["id"] \
                    and field["id"] != "key_source":
                assert field.get("secret"), (credential_type["name"], field["id"])


# ---- workflow --------------------------------------------------------------------------------

def test_failover_workflow_runs_preflight_failover_verify_notify():
    workflow = AWX_VARS["auditron_dr_awx_workflows"][0]
    nodes = {n["identifier"]: n for n in workflow["nodes"]}
    path, node = [], nodes["preflight_dr"]
    while node:
        path.append(node["job_template"])
        node = nodes.get((node.get("success_nodes") or [None])[0])
    assert path == ["preflight", "failover", "preflight", "notify"]
    assert nodes["verify_dr"]["extra_data"]["auditron_dr_expected_role"] == "primary"
    for identifier in ("preflight_dr", "failover", "verify_dr"):
        assert nodes[identifier]["failure_nodes"] == ["notify_failed"]
    assert nodes["notify_failed"]["extra_data"]["notify_status"] == "failed"
    assert nodes["notify_failed"]["extra_data"]["notify_fail_after"] is True, "a failure must leave the workflow failed"


@pytest.mark.parametrize("workflow", AWX_VARS["auditron_dr_awx_workflows"], ids=lambda w: w["name"])
def test_workflow_nodes_are_created_children_first_and_pass_what_templates_accept(workflow):
    order = [n["identifier"] for n in workflow["nodes"]]
    assert len(order) == len(set(order))
    assert workflow["inventory"] in INVENTORIES
    for position, node in enumerate(workflow["nodes"]):
        template = TEMPLATES[node["job_template"]]
        for child in node.get("success_nodes", []) + node.get("failure_nodes", []):
            assert child in order[position + 1:], "%s must come after %s (nodes are made last to first)" % (
                child, node["identifier"])
        accepted = {q["variable"] for q in template["survey"]}
        for variable in node.get("extra_data", {}):
            assert variable in accepted or template.get("ask_variables_on_launch"), (node["identifier"], variable)
        if "limit" in node:
            assert template.get("ask_limit_on_launch"), node["identifier"]


# ---- the playbook ----------------------------------------------------------------------------

def test_awx_configure_passes_syntax_check():
    result = subprocess.run([str(VENV_BIN / "ansible-playbook"), "--syntax-check", "playbooks/awx_configure.yml"],
                            cwd=REPO, env=ansible_env(), capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


RECORDER = '''
import json
import os

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    """Test stand-in for an awx.awx module: writes down the task's arguments, changes nothing."""

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        with open(os.environ["AUDITRON_AWX_RECORDING"], "a", encoding="utf-8") as recording:
            recording.write(json.dumps({"module": self._task.action.split(".")[-1], "args": self._task.args},
                                       default=str) + "\\n")
        result.update(changed=True, id=1)
        return result
'''

MODULES_USED = ["organization", "execution_environment", "credential_type", "credential", "project", "inventory",
                "inventory_source", "job_template", "workflow_job_template", "workflow_job_template_node", "schedule"]


def _real_argument_names(module):
    """Option names of the real awx.awx module (its argument_spec) and of the controller's auth."""
    source = (AWX_COLLECTION / "plugins" / "modules" / ("%s.py" % module)).read_text()
    spec = source[source.index("argument_spec = dict("):]
    spec = spec[:spec.index("\n    )\n")]
    names = set(re.findall(r"^\s{8}(\w+)=dict\(", spec, re.M))
    auth = (AWX_COLLECTION / "plugins" / "module_utils" / "controller_api.py").read_text()
    auth = auth[auth.index("AUTH_ARGSPEC = dict("):]
    names |= set(re.findall(r"^\s{8}(\w+)=dict\(", auth[:auth.index("\n    )\n")], re.M))
    assert names, module
    return names


@pytest.fixture(scope="module")
def recorded_calls(tmp_path_factory):
    root = tmp_path_factory.mktemp("awx-stand-in")
    collection = root / "ansible_collections" / "awx" / "awx"
    (collection / "plugins" / "action").mkdir(parents=True)
    (collection / "meta").mkdir()
    (collection / "meta" / "runtime.yml").write_text((AWX_COLLECTION / "meta" / "runtime.yml").read_text())
    for module in MODULES_USED:
        (collection / "plugins" / "action" / ("%s.py" % module)).write_text(RECORDER)
    recording = root / "calls.jsonl"
    inputs = {"auditron_dr_awx_credential_inputs": {
        "AUDITRON database": {"username": "postgres", "password": "not-a-real-password"},
        "DR notification webhook": {"url": "https://hooks.example.invalid/x", "format": "slack"}}}
    result = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "playbooks/awx_configure.yml",
         "-e", json.dumps(inputs), "-e", "ansible_python_interpreter=%s" % (VENV_BIN / "python")],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=300,
        env=ansible_env({"ANSIBLE_COLLECTIONS_PATH": "%s:%s" % (root, REPO / ".collections"),
                         "AUDITRON_AWX_RECORDING": str(recording)}))
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return [json.loads(line) for line in recording.read_text().splitlines()]


def test_stand_in_calls_use_only_options_the_real_modules_have(recorded_calls):
    real = {module: _real_argument_names(module) for module in MODULES_USED}
    for call in recorded_calls:
        unknown = set(call["args"]) - real[call["module"]]
        assert not unknown, (call["module"], unknown)


def test_stand_in_calls_create_what_the_data_describes(recorded_calls):
    by_module = {}
    for call in recorded_calls:
        by_module.setdefault(call["module"], []).append(call["args"])
    prefix = AWX_VARS["auditron_dr_awx_prefix"]

    types = {c["name"]: c for c in by_module["credential_type"]}
    assert types[prefix + "S3 backup storage"]["injectors"]["env"]["AWS_ACCESS_KEY_ID"] == "{{ access_key }}", \
        "injector templates must reach AWX untemplated"
    assert sorted(c["name"] for c in by_module["credential"]) == [
        prefix + "AUDITRON database", prefix + "DR notification webhook"]
    assert [i["name"] for i in by_module["inventory"]] == [prefix + i["name"] for i in INVENTORIES.values()]

    templates = {t["name"]: t for t in by_module["job_template"]}
    assert set(templates) == {prefix + t for t in TEMPLATES}
    restore = templates[prefix + "restore_database"]
    assert restore["playbook"] == "playbooks/restore_database.yml"
    assert restore["survey_enabled"] is True and restore["allow_simultaneous"] is False
    spec = {q["variable"]: q for q in restore["survey_spec"]["spec"]}
    assert spec["confirm_restore"]["default"] == "no" and "confirmation" not in spec["confirm_restore"]
    assert "incident_start" in spec
    assert templates[prefix + "backup_config"]["survey_enabled"] is False

    nodes = [n["identifier"] for n in by_module["workflow_job_template_node"]]
    assert nodes == [n["identifier"] for n in reversed(AWX_VARS["auditron_dr_awx_workflows"][0]["nodes"])]

    schedules = {s["name"]: s for s in by_module["schedule"]}
    assert len(schedules) == len(JOBS)
    for job in JOBS:
        schedule = schedules[prefix + job["name"]]
        assert schedule["rrule"] == job["rrule"]
        assert schedule["unified_job_template"] == prefix + job["playbook"]
        assert schedule["extra_data"] == job["extra_vars"]
        assert schedule["enabled"] is True


@pytest.mark.skipif(not os.environ.get("AUDITRON_TEST_AWX_HOST"),
                    reason="opt-in: set AUDITRON_TEST_AWX_HOST (and AUDITRON_TEST_AWX_TOKEN, or _USERNAME and "
                           "_PASSWORD) to configure a real AWX; none can run here")
def test_against_a_real_awx():
    """Runs awx_configure.yml twice against a real AWX: the second run must change nothing.
    AUDITRON_TEST_AWX_SCM_URL points the project at a reachable copy of this repository."""
    env = {"CONTROLLER_HOST": os.environ["AUDITRON_TEST_AWX_HOST"],
           "CONTROLLER_VERIFY_SSL": os.environ.get("AUDITRON_TEST_AWX_VERIFY_SSL", "true")}
    for name in ("TOKEN", "USERNAME", "PASSWORD"):
        if os.environ.get("AUDITRON_TEST_AWX_" + name):
            env["CONTROLLER_OAUTH_TOKEN" if name == "TOKEN" else "CONTROLLER_" + name] = \
                os.environ["AUDITRON_TEST_AWX_" + name]
    extra = {"auditron_dr_awx_schedules_enabled": False, "auditron_dr_awx_credential_inputs": {}}
    if os.environ.get("AUDITRON_TEST_AWX_SCM_URL"):
        extra["auditron_dr_awx_project"] = dict(AWX_VARS["auditron_dr_awx_project"],
                                                scm_url=os.environ["AUDITRON_TEST_AWX_SCM_URL"], scm_credential="")
    command = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "playbooks/awx_configure.yml",
               "-e", json.dumps(extra), "-e", "ansible_python_interpreter=%s" % (VENV_BIN / "python")]
    outputs = []
    for attempt in range(2):
        result = subprocess.run(command, cwd=REPO, env=ansible_env(env), capture_output=True, text=True,
                                check=False, timeout=1200)
        assert result.returncode == 0, "run %d: %s" % (attempt + 1, (result.stdout + result.stderr)[-6000:])
        outputs.append(result.stdout)
    assert re.search(r"changed=0\s", outputs[1]), outputs[1][-3000:]
