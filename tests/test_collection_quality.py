"""The collection as a published artifact: it builds, installs, documents itself, and passes
ansible-test sanity and ansible-lint's production profile."""

import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import REPO, VENV_BIN, ansible_env

pytestmark = pytest.mark.slow


def tracked_files():
    listing = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                             capture_output=True, check=True).stdout.decode()
    return [name for name in listing.split("\0") if name and (REPO / name).exists()]


@pytest.fixture(scope="module")
def built_tarball(tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    subprocess.run([str(VENV_BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out), str(REPO)],
                   cwd=REPO, env=ansible_env(), check=True, capture_output=True)
    tarballs = list(out.glob("auditron-dr-*.tar.gz"))
    assert len(tarballs) == 1
    return tarballs[0]


def test_build_leaves_out_the_lab_and_benchmarks(built_tarball):
    with tarfile.open(built_tarball) as tar:
        names = tar.getnames()
    assert "plugins/modules/preflight.py" in names
    assert "playbooks/preflight.yml" in names
    for private in ("lab/", ".lab/", ".lab-", "bench/", ".venv/", "reports/"):
        assert not [n for n in names if n.startswith(private)], private


def test_installed_tarball_documents_its_modules(built_tarball, tmp_path):
    """Rendered as text, as a user reads it (tests/unit/test_installed_collection.py checks the
    JSON, the roles and every playbook by its FQCN from an installed copy)."""
    target = tmp_path / "collections"
    env = ansible_env({"ANSIBLE_COLLECTIONS_PATH": str(target)})
    env.pop("ANSIBLE_CONFIG")
    subprocess.run([str(VENV_BIN / "ansible-galaxy"), "collection", "install", "--offline", "--no-deps",
                    "-p", str(target), str(built_tarball)], env=env, check=True, capture_output=True, cwd=tmp_path)
    listing = subprocess.run([str(VENV_BIN / "ansible-doc"), "-l", "auditron.dr"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, check=True).stdout
    modules = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py"))
    assert modules
    for module in modules:
        assert "auditron.dr.%s" % module in listing
    # One ansible-doc for every module (each start costs a second of CPU): a module whose
    # documentation does not render is named in a warning, or fails the run.
    doc = subprocess.run([str(VENV_BIN / "ansible-doc")] + ["auditron.dr.%s" % module for module in modules],
                         env=dict(env, ANSIBLE_NOCOLOR="1"), cwd=tmp_path, capture_output=True, text=True,
                         check=False)
    assert doc.returncode == 0 and "WARNING" not in doc.stderr, doc.stderr
    rendered = re.findall(r"^> MODULE (auditron\.dr\.\w+) ", doc.stdout, re.MULTILINE)
    assert rendered == ["auditron.dr.%s" % module for module in modules], doc.stdout[:2000]


def test_ansible_test_sanity(tmp_path):
    """Every sanity test that runs offline; the collection is copied under a path ending in
    ansible_collections/auditron/dr, as ansible-test requires."""
    root = tmp_path / "ansible_collections" / "auditron" / "dr"
    for name in tracked_files():
        destination = root / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, destination)
    result = subprocess.run([str(VENV_BIN / "ansible-test"), "sanity", "--local", "--python", "3.11", "--color",
                             "no"], cwd=root, env=ansible_env(), capture_output=True, text=True, check=False,
                            timeout=1200)
    errors = [line for line in (result.stdout + result.stderr).splitlines()
              if line.startswith(("ERROR", "FATAL"))]
    assert result.returncode == 0, "\n".join(errors[:60])


def test_ansible_lint_production_profile():
    result = subprocess.run([str(VENV_BIN / "ansible-lint"), "--nocolor", "--profile", "production"], cwd=REPO,
                            env=ansible_env(), capture_output=True, text=True, check=False, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]


def test_changelog_fragments_lint():
    result = subprocess.run([str(VENV_BIN / "antsibull-changelog"), "lint"], cwd=REPO, env=ansible_env(),
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_no_sanity_ignore_without_a_reason():
    for ignore in (REPO / "tests" / "sanity").glob("ignore-*.txt"):
        for line in Path(ignore).read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                assert "#" in line, "%s: %s has no justification comment" % (os.path.basename(ignore), line)
