"""AuditronModule's library check is derived from the params: boto3 is asked for exactly when a
location is on S3 or the key is in KMS, with missing_required_lib's message, before anything runs."""

import json

import pytest

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.auditron.dr.plugins.module_utils import aws, base


@pytest.mark.parametrize("params, needed", [
    ({"locations": [{"name": "local", "type": "local"}]}, False),
    ({"locations": [{"name": "local", "type": "local"}, {"name": "s3-us-east-1", "type": "s3"}]}, True),
    ({"locations": [{"name": "untyped"}]}, True),  # s3 is the location's default type
    ({"locations": [], "encryption": {"key_source": "kms"}}, True),
    ({"locations": [], "encryption": {"key_source": "file"}}, False),
    ({"encryption": None}, False),
])
def test_boto3_is_needed_for_an_s3_location_or_a_kms_key(params, needed):
    assert base.boto3_needed(params) is needed


def run_module(monkeypatch, capsys, args):
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args})))
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy", raising=False)
    spec = dict(locations=dict(type="list", elements="dict", default=[], options=base.location_suboptions()),
                encryption=dict(type="dict", options=base.encryption_suboptions()))
    with pytest.raises(SystemExit):
        module = base.AuditronModule(spec)
        module.exit_json(changed=False, msg="ran")
    return json.loads(capsys.readouterr().out)


def test_a_missing_boto3_fails_the_module_before_it_runs(monkeypatch, capsys):
    monkeypatch.setattr(aws, "HAS_BOTO3", False)
    monkeypatch.setattr(aws, "BOTO3_IMPORT_ERROR", "No module named 'boto3'")
    result = run_module(monkeypatch, capsys, {"locations": [{"name": "s3-us-east-1", "bucket": "b"}]})
    assert result["failed"] and "Failed to import the required Python library (boto3)" in result["msg"]
    local = run_module(monkeypatch, capsys, {"locations": [{"name": "local", "type": "local", "path": "/tmp"}]})
    assert local["msg"] == "ran" and not local.get("failed")
