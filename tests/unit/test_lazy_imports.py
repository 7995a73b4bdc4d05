"""Optional libraries are imported where first used, not when a module loads.

Every module run pays for what its file imports at load time: boto3 about 0.2 s of CPU, the
kubernetes client 0.4 s, requests and ansible's urls 0.1-0.2 s each. Most runs need none of
them (pgBackRest's modules, local locations, the textfile metrics). Each module is loaded in a
fresh interpreter and what it pulled in is compared with what it is allowed to.
"""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

HEAVY = ("boto3", "botocore.config", "kubernetes", "requests", "ansible.module_utils.urls")

# Modules that use a heavy library on every run may import it at load time.
ALLOWED = {
    "app_platform": {"ansible.module_utils.urls"},     # health checks on every run
    "app_verify": {"ansible.module_utils.urls"},
    "preflight": {"ansible.module_utils.urls"},
    "object_mirror": {"boto3", "botocore.config"},      # mirror.py's S3Location for listings
    "file_history": {"boto3", "botocore.config"},
}

MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py"))

SCRIPT = r"""
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
importlib.import_module("ansible_collections.auditron.dr.plugins.modules." + sys.argv[2])
print(json.dumps(sorted(name for name in sys.argv[3].split(",") if name in sys.modules)))
"""


@pytest.mark.parametrize("module", MODULES)
def test_module_loads_no_optional_library_it_does_not_always_use(module):
    loaded = subprocess.run([sys.executable, "-c", SCRIPT, str(REPO / ".collections"), module, ",".join(HEAVY)],
                            capture_output=True, text=True, check=True, timeout=60).stdout
    assert set(json.loads(loaded)) <= ALLOWED.get(module, set())


def test_s3_still_works_after_the_lazy_import(tmp_path):
    """The first client made imports boto3 then: a location's client is a real botocore client."""
    script = r"""
import sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.auditron.dr.plugins.module_utils import storage
assert "boto3" not in sys.modules and storage.HAS_BOTO3
location = storage.S3Location("s3", bucket="b", endpoint_url="http://127.0.0.1:9", region="us-east-1",
                              access_key="abcd", secret_key="secret")
print(type(location.client).__module__, "boto3" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", script, str(REPO / ".collections")], capture_output=True,
                         text=True, check=False, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["botocore.client", "True"]
