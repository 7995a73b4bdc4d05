"""The shape the code keeps (issue 15, "One home for each concept"): limits a reviewer would
otherwise have to check by hand after every change.

- no engine file (plugins/module_utils) over 1,000 lines, no playbook over 300: past that a file
  holds more than one concern and a change has to hunt through it;
- no `auditron_dr_is_lab` switch in the product: the lab inventory says what it wants
  (confirmation, package installation, become) in variables of their own;
- every role entry point that something outside the role calls (`tasks_from:` in a playbook,
  another role or a molecule scenario) is declared in the role's meta/argument_specs.yml, so
  that Ansible checks what it is handed;
- no playbook under playbooks/tasks/: included task files are roles with declared entry points.
"""

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ENGINE_LINE_LIMIT = 1000
PLAYBOOK_LINE_LIMIT = 300


def _line_count(path):
    with open(path, encoding="utf-8") as handle:
        return sum(1 for line in handle)


def test_no_engine_file_is_over_the_line_limit():
    too_long = {path.name: _line_count(path) for path in sorted((REPO / "plugins" / "module_utils").glob("*.py"))
                if _line_count(path) > ENGINE_LINE_LIMIT}
    assert too_long == {}, "split these along their concerns: %s" % too_long


def test_no_playbook_is_over_the_line_limit():
    # playbooks/vars/ holds data (the AWX objects, the derived backup settings), not plays.
    playbooks = [path for path in sorted((REPO / "playbooks").rglob("*.yml")) if "vars" not in path.relative_to(
        REPO / "playbooks").parts]
    too_long = {str(path.relative_to(REPO)): _line_count(path) for path in playbooks
                if _line_count(path) > PLAYBOOK_LINE_LIMIT}
    assert too_long == {}, "move the logic into roles or engine functions: %s" % too_long


def test_no_task_files_beside_the_playbooks():
    task_files = sorted(str(path.relative_to(REPO)) for path in (REPO / "playbooks" / "tasks").glob("*.yml"))
    assert task_files == [], "make these declared role entry points: %s" % task_files


def test_the_product_has_no_lab_switch():
    found = []
    for top in ("playbooks", "roles", "plugins"):
        for path in sorted((REPO / top).rglob("*")):
            if path.is_file() and path.suffix in (".yml", ".yaml", ".py", ".j2", ".md"):
                for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                    if "auditron_dr_is_lab" in line:
                        found.append("%s:%d" % (path.relative_to(REPO), number))
    assert found == [], "say what the lab wants in variables of their own: %s" % found


_ROLE_CALLS = ("ansible.builtin.include_role", "ansible.builtin.import_role", "include_role", "import_role")


def _calls_from_outside():
    """(caller path, role, entry point) for every include_role/import_role outside the called
    role's own directory; no tasks_from is the main entry point."""
    calls = []
    sources = list((REPO / "playbooks").rglob("*.yml")) + list((REPO / "roles").rglob("*.yml")) \
        + list((REPO / "extensions").rglob("*.yml"))
    for path in sorted(sources):
        try:
            documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except yaml.YAMLError:
            continue
        for document in documents:
            for task in _tasks_in(document):
                if isinstance(task.get("role"), str) and "{{" not in task["role"]:  # a play's `roles:` item
                    role = task["role"].split(".")[-1]
                    if (REPO / "roles" / role) not in path.parents:
                        calls.append((str(path.relative_to(REPO)), role, "main"))
                for key in _ROLE_CALLS:
                    spec = task.get(key)
                    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
                        role = spec["name"].split(".")[-1]
                        entry_point = str(spec.get("tasks_from") or "main")
                        if "{{" in role or "{{" in entry_point:
                            continue
                        inside = (REPO / "roles" / role) in path.parents
                        if not inside:
                            calls.append((str(path.relative_to(REPO)), role, Path(entry_point).stem))
    return calls


def _tasks_in(node):
    """Every mapping in a parsed YAML tree that could be a task (plays, blocks and rescues included)."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _tasks_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from _tasks_in(item)


def test_the_walk_finds_calls_from_outside():
    # The check below is only as good as this walk: it must see the playbooks' role calls.
    assert len(_calls_from_outside()) >= 5


@pytest.mark.parametrize("caller,role,entry_point", _calls_from_outside())
def test_every_entry_point_called_from_outside_is_declared(caller, role, entry_point):
    specs_path = REPO / "roles" / role / "meta" / "argument_specs.yml"
    assert specs_path.is_file(), "%s calls role %s, which has no meta/argument_specs.yml" % (caller, role)
    declared = (yaml.safe_load(specs_path.read_text(encoding="utf-8")) or {}).get("argument_specs") or {}
    assert entry_point in declared, "%s calls %s's entry point %s, not declared in %s (declared: %s)" % (
        caller, role, entry_point, specs_path.relative_to(REPO), ", ".join(sorted(declared)))
