# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for module_utils/rewrite.py: the rewrite rules that make a bundle from one site
right for the other, and the documents they rewrite keeping each file's layout."""

import importlib.util
import json
import os

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import rewrite
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError

# Loaded by path, so that the tests do not depend on how tests/ is laid out as packages.
_SPEC = importlib.util.spec_from_file_location(
    "auditron_config_samples", os.path.join(os.path.dirname(os.path.abspath(__file__)), "config_samples.py"))
samples = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(samples)


def test_rules_turn_the_primary_config_into_the_dr_config_keeping_its_layout():
    text = json.dumps(samples.APP_CONFIG, indent=2)
    document = rewrite.Document(text.encode())
    counts = document.apply(rewrite.build_rules(samples.DR_RULES, samples.DR_SECRET_RULES), "/app/primary.json")
    assert document.render().decode() == json.dumps(samples.dr_config(), indent=2)
    assert counts == {"rewrite[0]": 1, "rewrite[1]": 1, "rewrite[2]": 1, "rewrite[3]": 1, "rewrite[4]": 1,
                      "secret_rewrite[0]": 1, "secret_rewrite[1]": 1, "secret_rewrite[2]": 1}


@pytest.mark.parametrize("dump", [
    lambda d: json.dumps(d, indent=4, sort_keys=True) + "\n",
    lambda d: json.dumps(d, separators=(",", ":")),
    lambda d: json.dumps(d, indent="\t") + "\n",
])
def test_rewritten_json_keeps_the_files_layout(dump):
    text = dump({"b": 1, "a": {"port": 55432, "name": "é"}})
    document = rewrite.Document(text.encode())
    document.apply(rewrite.build_rules([{"match": 55432, "replace": 55433}]), "x")
    assert document.render().decode() == dump({"b": 1, "a": {"port": 55433, "name": "é"}})


def test_unchanged_json_is_written_back_byte_for_byte():
    text = '{ "odd" :  "layout" ,"n":1}\n'
    document = rewrite.Document(text.encode())
    assert document.apply(rewrite.build_rules([{"match": "nothing-here", "replace": "x"}]), "x") == {}
    assert document.render() == text.encode()


def test_match_rules_never_touch_keys_and_respect_types():
    document = rewrite.Document(json.dumps({"55432": "55432", "n": 55432, "flag": True, "one": 1}).encode())
    document.apply(rewrite.build_rules([{"match": 55432, "replace": 1}, {"match": True, "replace": False},
                                        {"match": 1, "replace": 2}]), "x")
    # 55432 (int) becomes 1, then every int 1 becomes 2; the string "55432" and the key stay;
    # True is a boolean, not the number 1.
    assert json.loads(document.render()) == {"55432": "55432", "n": 2, "flag": False, "one": 2}


def test_substring_and_whole_matches_on_text():
    document = rewrite.Document(b"DB=postgres://db.primary:5432/a\nHOST=db.primary\n")
    rules = rewrite.build_rules([{"match": "db.primary", "replace": "db.dr"}])
    assert document.apply(rules, "env") == {"rewrite[0]": 2}
    assert document.render() == b"DB=postgres://db.dr:5432/a\nHOST=db.dr\n"
    document = rewrite.Document(b"db.primary")
    document.apply(rewrite.build_rules([{"match": "db.primary", "replace": "db.dr", "whole": True}]), "x")
    assert document.format == "text" and document.render() == b"db.dr"


def test_path_rules_set_values_and_name_what_is_missing():
    document = rewrite.Document(json.dumps(samples.APP_CONFIG).encode())
    document.apply(rewrite.build_rules([{"path": "listen[0]", "value": "10.0.0.1"},
                                        {"path": "postgres.port", "value": 6432},
                                        {"path": "listen.1", "value": 9090}]), "x")
    tree = json.loads(document.render())
    assert tree["listen"] == ["10.0.0.1", 9090] and tree["postgres"]["port"] == 6432
    with pytest.raises(DRError, match=r"rewrite\[0\]: /app.json has no value at path postgres.nope"):
        rewrite.Document(json.dumps(samples.APP_CONFIG).encode()).apply(
            rewrite.build_rules([{"path": "postgres.nope", "value": 1}]), "/app.json")
    assert rewrite.Document(json.dumps(samples.APP_CONFIG).encode()).apply(
        rewrite.build_rules([{"path": "postgres.nope", "value": 1, "optional": True}]), "/app.json") == {}


def test_applies_to_limits_a_rule_to_some_items():
    rules = rewrite.build_rules([{"match": "a", "replace": "b", "applies_to": ["/etc/one/*"]}])
    first, second = rewrite.Document(b"a"), rewrite.Document(b"a")
    first.apply(rules, "/etc/one/x.env")
    second.apply(rules, "/etc/two/x.env")
    assert (first.render(), second.render()) == (b"b", b"a")


@pytest.mark.parametrize("spec, message", [
    ({}, "either match"),
    ({"match": "a", "path": "b", "value": 1}, "either match"),
    ({"match": "a"}, "replace is required"),
    ({"match": "", "replace": "x"}, "empty string"),
    ({"match": "a", "replace": 5}, "replace must be a string"),
    ({"path": "a.b"}, "value is required"),
    ({"path": "a[", "value": 1}, "not a key path"),
])
def test_bad_rules_are_refused_with_their_name(spec, message):
    with pytest.raises(DRError, match=r"rewrite\[0\]: .*" + message):
        rewrite.build_rules([spec])


def test_secret_rules_never_describe_their_values():
    rule = rewrite.build_rules(None, [{"match": "hunter2", "replace": "x"}])[0]
    assert "hunter2" not in rule.describe() and rule.describe() == "secret_rewrite[0] (a secret value)"
