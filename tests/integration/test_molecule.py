"""Every molecule scenario under extensions/molecule, against the lab (default driver: no
container engine runs here). Each runs syntax, converge, idempotence (a second converge
must report no change) and verify."""

import os
import subprocess

import pytest

from tests.conftest import REPO, VENV_BIN

pytestmark = [pytest.mark.lab, pytest.mark.slow]

SCENARIOS = sorted(p.parent.name for p in (REPO / "extensions" / "molecule").glob("*/molecule.yml"))


def test_there_are_scenarios():
    assert "preflight" in SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(lab, scenario):
    env = dict(os.environ, PATH="%s:%s" % (VENV_BIN, os.environ.get("PATH", "")), NO_COLOR="1",
               ANSIBLE_FORCE_COLOR="0", PY_COLORS="0")
    env.pop("ANSIBLE_CONFIG", None)
    result = subprocess.run([str(VENV_BIN / "molecule"), "test", "-s", scenario], cwd=REPO, env=env,
                            capture_output=True, text=True, check=False, timeout=1200)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    assert "failed=0" in output
