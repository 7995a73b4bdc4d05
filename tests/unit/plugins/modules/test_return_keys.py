"""Module results must not use the keys Ansible reads as the task's own status: a module that
returned `unreachable: [...]` made the whole host unreachable in failover.yml (found in the lab,
when one S3 region was down)."""

import ast
import pathlib

import pytest
import yaml

MODULES = sorted((pathlib.Path(__file__).resolve().parents[4] / "plugins" / "modules").glob("*.py"))
# Keys the task executor interprets (task_executor / TaskResult): a module must not return them
# as data. `changed`, `failed`, `msg` and `rc` are returned with their Ansible meaning on purpose.
RESERVED = {"unreachable", "skipped", "skip_reason", "ansible_facts", "invocation", "_ansible_no_log"}


def return_doc(path):
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "RETURN" for t in node.targets):
            return yaml.safe_load(node.value.value) or {}
    return None


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_no_module_returns_a_key_ansible_reserves(path):
    doc = return_doc(path)
    if path.stem == "__init__":
        return
    assert doc is not None, "%s has no RETURN documentation" % path.name
    assert not RESERVED & set(doc), "%s returns %s" % (path.name, sorted(RESERVED & set(doc)))


def test_the_scan_sees_every_module():
    assert len(MODULES) >= 10
