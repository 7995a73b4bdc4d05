"""The collection as users get it: built with `ansible-galaxy collection build`, installed with
`ansible-galaxy collection install --offline --no-deps` into an empty path, and used from there
only (no repository ansible.cfg, no .collections link):

- `ansible-doc` documents every module, and `ansible-doc -t role` every role and each of its
  entry points (from meta/argument_specs.yml);
- every playbook is callable by its FQCN (`ansible-playbook auditron.dr.<name> --syntax-check`);
- antsibull-docs lints the installed collection's docs clean and renders a page for every module
  and role (the reference docs are generated, not kept in git: docs/user-guide.md, "Reference").

tests/test_collection_quality.py checks the tarball's contents, sanity and lint; this adds roles,
playbooks by FQCN from the installed copy, and the rendered docs.
"""

import json
import os
import subprocess

import pytest
import yaml

from tests.conftest import REPO, VENV_BIN

PLAYBOOKS_USERS_HAVE = ["preflight", "backup_database", "backup_files", "backup_config", "prune_backups",
                        "verify_backups", "restore_database", "restore_files", "recover_deleted", "failover",
                        "failback", "setup_standby", "dr_drill"]
ALL_PLAYBOOKS = sorted(set(PLAYBOOKS_USERS_HAVE) | {p.stem for p in (REPO / "playbooks").glob("*.yml")})
MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py") if p.stem != "__init__")
ROLES = sorted(p.parent.parent.name for p in (REPO / "roles").glob("*/meta/argument_specs.yml"))


def _clean_env(collections):
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("ANSIBLE_", "AUDITRON_", "MOLECULE_"))}
    env.update({"ANSIBLE_COLLECTIONS_PATH": str(collections), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
                "PATH": "%s:%s" % (VENV_BIN, os.environ.get("PATH", "")), "PYTHONWARNINGS": "ignore"})
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(collections path, its environment, a working directory outside the repository)."""
    build = tmp_path_factory.mktemp("build")
    collections = tmp_path_factory.mktemp("collections")
    workdir = tmp_path_factory.mktemp("workdir")
    env = _clean_env(collections)
    subprocess.run([str(VENV_BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(build), str(REPO)],
                   cwd=workdir, env=env, check=True, capture_output=True)
    (tarball,) = build.glob("auditron-dr-*.tar.gz")
    subprocess.run([str(VENV_BIN / "ansible-galaxy"), "collection", "install", "--offline", "--no-deps", "-p",
                    str(collections), str(tarball)], cwd=workdir, env=env, check=True, capture_output=True)
    assert (collections / "ansible_collections" / "auditron" / "dr" / "MANIFEST.json").is_file()
    return collections, env, workdir


def test_ansible_doc_documents_every_module(installed):
    env, workdir = installed[1], installed[2]
    result = subprocess.run([str(VENV_BIN / "ansible-doc"), "--json"] + ["auditron.dr.%s" % m for m in MODULES],
                            env=env, cwd=workdir, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    docs = json.loads(result.stdout)
    for module in MODULES:
        entry = docs.get("auditron.dr.%s" % module)
        assert entry and entry["doc"]["short_description"] and entry["examples"], module
        assert entry["doc"]["module"] == module


@pytest.fixture(scope="module")
def role_docs(installed):
    """One `ansible-doc -t role --json` of every role."""
    env, workdir = installed[1], installed[2]
    result = subprocess.run([str(VENV_BIN / "ansible-doc"), "-t", "role", "--json"] +
                            ["auditron.dr.%s" % role for role in ROLES],
                            env=env, cwd=workdir, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("role", ROLES)
def test_ansible_doc_documents_every_role_and_entry_point(role_docs, role):
    doc = role_docs.get("auditron.dr.%s" % role)
    assert doc, "ansible-doc -t role knows no auditron.dr.%s" % role
    specs = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    assert set(doc["entry_points"]) == set(specs)
    for entry, spec in specs.items():
        assert doc["entry_points"][entry]["short_description"], (role, entry)
        assert set(doc["entry_points"][entry].get("options", {})) == set(spec.get("options", {})), (role, entry)


@pytest.fixture(scope="module")
def syntax_checked(installed):
    """One `ansible-playbook --syntax-check` of every playbook by its FQCN (a start per playbook
    cost 1.5 s of CPU each): {playbook: True} for those it checked, and its output."""
    env, workdir = installed[1], installed[2]
    result = subprocess.run([str(VENV_BIN / "ansible-playbook"), "--syntax-check"] +
                            ["auditron.dr.%s" % playbook for playbook in ALL_PLAYBOOKS],
                            env=env, cwd=workdir, capture_output=True, text=True, check=False, timeout=300)
    checked = set(line.rsplit("/", 1)[-1][:-len(".yml")] for line in result.stdout.splitlines()
                  if line.startswith("playbook: ") and line.endswith(".yml"))
    return result, checked


@pytest.mark.parametrize("playbook", ALL_PLAYBOOKS)
def test_playbook_is_callable_by_fqcn_from_the_installed_collection(installed, syntax_checked, playbook):
    collections = installed[0]
    shipped = collections / "ansible_collections" / "auditron" / "dr" / "playbooks" / ("%s.yml" % playbook)
    assert shipped.is_file(), "%s.yml is not in the built collection (not in playbooks/ yet?)" % playbook
    result, checked = syntax_checked
    assert result.returncode == 0 and playbook in checked, result.stdout + result.stderr


def test_antsibull_docs_lint_of_the_installed_collection_is_clean(installed):
    collections, env, workdir = installed
    result = subprocess.run([str(VENV_BIN / "antsibull-docs"), "lint-collection-docs", "--plugin-docs",
                             str(collections / "ansible_collections" / "auditron" / "dr")],
                            env=env, cwd=workdir, capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_antsibull_docs_renders_every_module_and_role(installed, tmp_path):
    env, workdir = installed[1], installed[2]
    dest = tmp_path / "reference"
    dest.mkdir()
    result = subprocess.run([str(VENV_BIN / "antsibull-docs"), "collection", "--use-current", "--dest-dir",
                             str(dest), "auditron.dr"], env=env, cwd=workdir, capture_output=True, text=True,
                            check=False, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    pages = {p.name for p in dest.rglob("*.rst")}
    missing = ["%s_module.rst" % m for m in MODULES if "%s_module.rst" % m not in pages]
    missing += ["%s_role.rst" % r for r in ROLES if "%s_role.rst" % r not in pages]
    assert not missing, missing
