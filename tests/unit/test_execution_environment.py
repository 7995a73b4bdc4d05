"""The execution environment: meta/execution-environment.yml and bindep.txt.

- `ansible-builder introspect --sanitize` on a collections tree holding this collection lists the
  Python and system packages the collection needs (what ansible-builder installs into any image
  that includes auditron.dr);
- `ansible-builder create`, from a build directory staged as docs/awx.md says, accepts the
  definition (schema version 3) and writes the Containerfile and build context. No container
  engine runs here, so the image itself is not built;
- the image's collections are the versions the project is tested with, and cover galaxy.yml's
  dependencies.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, VENV_BIN, ansible_env

BUILDER = VENV_BIN / "ansible-builder"
DEFINITION = yaml.safe_load((REPO / "meta" / "execution-environment.yml").read_text())
INSTALLED = VENV_BIN.parent / "lib" / "python3.11" / "site-packages" / "ansible_collections"


def _builder():
    if not BUILDER.exists():
        pytest.fail("ansible-builder is not installed: run `make setup` (requirements/test.txt pins it), "
                    "or .venv/bin/pip install ansible-builder")
    return str(BUILDER)


def _requirement_names(lines):
    return {re.split(r"[<>=\[ ;#]", line.strip(), maxsplit=1)[0].lower() for line in lines
            if line.strip() and not line.startswith("#")}


def test_introspect_lists_the_collections_python_and_system_packages(tmp_path):
    tree = tmp_path / "ansible_collections" / "auditron"
    tree.mkdir(parents=True)
    (tree / "dr").symlink_to(REPO)
    result = subprocess.run([_builder(), "introspect", "--sanitize", str(tmp_path)], capture_output=True, text=True,
                            check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    found = yaml.safe_load(result.stdout.split("---", 1)[1])
    python = [line.split("#")[0].strip() for line in found["python"]]
    system = [line.split("#")[0].strip() for line in found["system"]]
    assert all(line.endswith("# from collection auditron.dr") for line in found["python"] + found["system"])
    wanted = {"boto3", "botocore", "psycopg2-binary", "kubernetes", "dnspython", "cryptography", "zstandard",
              "requests", "jmespath"}
    assert wanted <= _requirement_names(python)
    assert not {"ansible", "ansible-core"} & _requirement_names(python), "the image's Ansible comes from its own key"
    assert all("==" in line for line in python), "pinned: a DR tool must behave as it did in the last drill"
    assert {"postgresql-client-15 [platform:dpkg]", "postgresql15 [platform:rpm]",
            "pgbackrest [platform:dpkg platform:rpm]"} <= set(system)


def test_create_writes_the_build_context_without_a_container_engine(tmp_path):
    build = tmp_path / "ee"
    build.mkdir()
    subprocess.run([str(VENV_BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(build), str(REPO)],
                   cwd=REPO, env=ansible_env(), check=True, capture_output=True)
    shutil.copy(REPO / "meta" / "execution-environment.yml", build)
    shutil.copy(REPO / "bindep.txt", build)
    shutil.copytree(REPO / "requirements", build / "requirements")
    result = subprocess.run([_builder(), "create", "-f", str(build / "execution-environment.yml"), "-c",
                             str(build / "context"), "--output-filename", "Containerfile"], capture_output=True,
                            text=True, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    context = build / "context"
    containerfile = (context / "Containerfile").read_text()
    assert 'ARG EE_BASE_IMAGE="%s"' % DEFINITION["images"]["base_image"]["name"] in containerfile
    assert "pgdg-redhat-repo" in containerfile and "pgbackrest version" in containerfile
    galaxy = yaml.safe_load((context / "_build" / "requirements.yml").read_text())["collections"]
    assert {"name": "/build/auditron-dr.tar.gz", "type": "file"} in galaxy
    assert [p.name for p in (context / "_build" / "collections").iterdir()] == \
        [p.name for p in build.glob("auditron-dr-*.tar.gz")]
    assert (context / "_build" / "bindep.txt").read_text() == (REPO / "bindep.txt").read_text()


def test_image_collections_are_the_tested_versions_and_cover_galaxy_dependencies():
    galaxy = {c["name"]: c.get("version") for c in DEFINITION["dependencies"]["galaxy"]["collections"]
              if c.get("type") != "file"}
    needed = yaml.safe_load((REPO / "galaxy.yml").read_text())["dependencies"]
    assert set(needed) <= set(galaxy)
    for name, version in galaxy.items():
        manifest = INSTALLED / name.replace(".", "/") / "MANIFEST.json"
        tested = yaml.safe_load(manifest.read_text())["collection_info"]["version"]
        assert version == "==" + tested, "%s: image %s, tested %s" % (name, version, tested)
    core = DEFINITION["dependencies"]["ansible_core"]["package_pip"]
    assert core in Path(REPO / "requirements" / "run.txt").read_text().split()
