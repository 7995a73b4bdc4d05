"""The application platform's shared states without a lab: the state file that remembers a
replica count, and the refusals of an unknown platform or state. Each driver has its own file:
test_platform_compose.py, test_platform_kubernetes.py, test_platform_process.py; verifying the
app: test_appverify.py.
"""

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import platform, platform_compose, platform_drivers
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from tests.unit.plugins.module_utils.platform_fakes import ComposeRunner


def test_state_file_reader_ignores_garbage(tmp_path):
    path = tmp_path / "s.json"
    for text, expected in (('{"replicas_before_stop": 3}', 3), ('{"replicas_before_stop": true}', None),
                           ('{"replicas_before_stop": -1}', None), ("[]", None), ("x", None)):
        path.write_text(text)
        assert platform.read_state_file(str(path)) == expected
    assert platform.read_state_file(str(tmp_path / "missing.json")) is None


def test_unknown_platform_and_state():
    with pytest.raises(DRError):
        platform_drivers.make_driver("nomad", "dr")
    with pytest.raises(DRError):
        platform.ensure(platform_compose.ComposeDriver("dr", "/x.yml", runner=ComposeRunner([""])), "paused")
