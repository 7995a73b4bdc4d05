# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rewrite rules of configuration restores: how a bundle taken on one site is made right for the
other (database port, object-store endpoint, listen address, passwords), and the documents
they work on (JSON trees, text, binary) written back in the layout they came in.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import copy
import fnmatch
import json
import re

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, first_line


_PATH_TOKEN_RE = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _parse_path(path, label):
    text = str(path or "").strip()
    tokens = []
    position = 0
    while position < len(text):
        if text[position] == ".":
            position += 1
            continue
        match = _PATH_TOKEN_RE.match(text, position)
        if not match:
            raise DRError("%s: path %r is not a key path such as postgres.port or listen[0]" % (label, path))
        tokens.append(int(match.group(2)) if match.group(2) is not None else match.group(1))
        position = match.end()
    if not tokens:
        raise DRError("%s: path is empty" % label)
    return tokens


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same_scalar(left, right):
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if _is_number(left) and _is_number(right):
        return left == right
    return type(left) is type(right) and left == right


class RewriteRule(object):
    """One rule of `rewrite` or `secret_rewrite`.

    match/replace: every value equal to `match` (a number or a boolean, or a string with
      whole: true) becomes `replace`; without whole, every occurrence of the string `match`
      inside a string value is replaced. Keys are never rewritten.
    path/value: the value at `path` (`postgres.port`, `listen[0]`, `data.DB_HOST`) becomes
      `value`; a path that is not there is an error unless optional.
    applies_to: glob patterns on the item's name (a file's path in the bundle, or
      Kind/namespace/name); none means every item.
    Rules of secret_rewrite are never shown with their values.
    """

    def __init__(self, spec, index, option="rewrite"):
        spec = spec or {}
        self.label = "%s[%d]" % (option, index)
        self.secret = option == "secret_rewrite"
        self.applies_to = [str(pattern) for pattern in spec.get("applies_to") or []]
        self.optional = bool(spec.get("optional"))
        self.changes = 0
        has_match = spec.get("match") is not None
        has_path = spec.get("path") not in (None, "")
        if has_match == has_path:
            raise DRError("%s: give either match (with replace) or path (with value)" % self.label)
        if has_match:
            self.kind = "match"
            self.match = spec["match"]
            if spec.get("replace") is None:
                raise DRError("%s: replace is required with match" % self.label)
            self.replace = spec["replace"]
            self.whole = bool(spec.get("whole")) or not isinstance(self.match, str)
            if isinstance(self.match, (dict, list)):
                raise DRError("%s: match must be a string, a number or a boolean" % self.label)
            if isinstance(self.match, str) and not self.match:
                raise DRError("%s: match is an empty string" % self.label)
            if not self.whole and not isinstance(self.replace, str):
                raise DRError("%s: replace must be a string when match replaces part of a string (or set whole: "
                              "true)" % self.label)
        else:
            self.kind = "path"
            self.path = str(spec["path"])
            self.tokens = _parse_path(self.path, self.label)
            if "value" not in spec or spec.get("value") is None:
                raise DRError("%s: value is required with path" % self.label)
            self.value = spec["value"]

    def describe(self):
        if self.kind == "path":
            return "%s (path %s)" % (self.label, self.path)
        if self.secret:
            return "%s (a secret value)" % self.label
        return "%s (match %s)" % (self.label, json.dumps(self.match))

    def selects(self, name):
        if not self.applies_to:
            return True
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.applies_to)

    # Match rules -----------------------------------------------------------------------------

    def rewrite_text(self, text):
        """(new text, replacements) for one string value."""
        if not isinstance(text, str) or not isinstance(self.match, str):
            return text, 0
        if self.whole:
            return (self.replace, 1) if text == self.match else (text, 0)
        count = text.count(self.match)
        return (text.replace(self.match, self.replace), count) if count else (text, 0)

    def rewrite_tree(self, value):
        """(new value, replacements) over a JSON document: every leaf, never a key."""
        if isinstance(value, dict):
            total = 0
            result = collections.OrderedDict()
            for key, item in value.items():
                result[key], count = self.rewrite_tree(item)
                total += count
            return result, total
        if isinstance(value, list):
            total = 0
            result = []
            for item in value:
                new, count = self.rewrite_tree(item)
                result.append(new)
                total += count
            return result, total
        if isinstance(value, str):
            return self.rewrite_text(value)
        if value is not None and not isinstance(self.match, str) and _same_scalar(value, self.match):
            return self.replace, 1
        return value, 0

    # Path rules ------------------------------------------------------------------------------

    def set_path(self, document, item_name):
        """Set the value at the path in place; (changed count). Raises unless optional."""
        node = document
        for depth, token in enumerate(self.tokens):
            last = depth == len(self.tokens) - 1
            if isinstance(node, list):
                index = token if isinstance(token, int) else (int(token) if str(token).isdigit() else None)
                if index is None or index >= len(node):
                    return self._missing(item_name)
                if last:
                    changed = not (_same_scalar(node[index], self.value) if not isinstance(self.value, (dict, list))
                                   else node[index] == self.value)
                    node[index] = copy.deepcopy(self.value)
                    return 1 if changed else 0
                node = node[index]
            elif isinstance(node, dict):
                key = str(token)
                if key not in node:
                    return self._missing(item_name)
                if last:
                    changed = not (_same_scalar(node[key], self.value) if not isinstance(self.value, (dict, list))
                                   else node[key] == self.value)
                    node[key] = copy.deepcopy(self.value)
                    return 1 if changed else 0
                node = node[key]
            else:
                return self._missing(item_name)
        return 0

    def _missing(self, item_name):
        if self.optional:
            return 0
        raise DRError("%s: %s has no value at path %s (limit the rule with applies_to, or set optional: true if "
                      "that is expected)" % (self.label, item_name, self.path))


def build_rules(rewrite=None, secret_rewrite=None):
    rules = [RewriteRule(spec, index, "rewrite") for index, spec in enumerate(rewrite or [])]
    rules += [RewriteRule(spec, index, "secret_rewrite") for index, spec in enumerate(secret_rewrite or [])]
    return rules


# ---------------------------------------------------------------------------------------------
# Documents: how an item's content is read for the rules and written back

_JSON_INDENTS = (None, 2, 4, 1, 3, "\t")


def _json_style(text, document):
    """The json.dumps arguments that give back `text` exactly, so a rewritten file keeps its
    layout; (style, trailing newline, exact)."""
    body = text.rstrip("\r\n")
    trailing = text[len(body):]
    non_ascii = any(ord(char) > 127 for char in text)
    for indent in _JSON_INDENTS:
        separator_choices = ((", ", ": "), (",", ":"), (",", ": ")) if indent is None else ((",", ": "), (",", ":"))
        for separators in separator_choices:
            for sort_keys in (False, True):
                for ensure_ascii in ((False, True) if non_ascii else (True,)):
                    style = {"indent": indent, "separators": separators, "sort_keys": sort_keys,
                             "ensure_ascii": ensure_ascii}
                    if json.dumps(document, **style) == body:
                        return style, trailing, True
    return {"indent": 2, "separators": (",", ": "), "sort_keys": False, "ensure_ascii": not non_ascii}, \
        trailing or "\n", False


class Document(object):
    """An item's content as the rules see it: 'json' (a parsed tree), 'text' or 'binary'."""

    def __init__(self, content, fmt="auto"):
        self.original = content
        self.format = "binary"
        self.tree = None
        self.text = None
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if fmt == "binary" or (text is None and fmt == "auto"):
            return
        if text is None:
            raise DRError("content is not UTF-8 text, so it cannot be read as %s" % fmt)
        if fmt in ("auto", "json"):
            try:
                self.tree = json.loads(text, object_pairs_hook=collections.OrderedDict)
                self.format = "json"
                self.text = text
                return
            except ValueError as exc:
                if fmt == "json":
                    raise DRError("content is not valid JSON: %s" % first_line(exc))
        self.format = "text"
        self.text = text

    def apply(self, rules, item_name):
        """Apply the rules that select this item; returns {rule label: replacements}."""
        counts = collections.OrderedDict()
        for rule in rules:
            if not rule.selects(item_name):
                continue
            if self.format == "binary":
                if rule.applies_to:
                    raise DRError("%s: %s is binary: rewrite rules cannot apply to it" % (rule.label, item_name))
                continue
            if rule.kind == "path":
                if self.format != "json":
                    if rule.applies_to and not rule.optional:
                        raise DRError("%s: %s is not JSON, so path rules cannot apply to it" % (rule.label, item_name))
                    continue
                count = rule.set_path(self.tree, item_name)
            elif self.format == "json":
                self.tree, count = rule.rewrite_tree(self.tree)
            else:
                self.text, count = rule.rewrite_text(self.text)
            if count:
                counts[rule.label] = counts.get(rule.label, 0) + count
        return counts

    def render(self):
        if self.format == "binary":
            return self.original
        if self.format == "text":
            return self.text.encode("utf-8")
        original_tree = json.loads(self.original.decode("utf-8"), object_pairs_hook=collections.OrderedDict)
        if original_tree == self.tree:
            return self.original
        style, trailing, _exact = _json_style(self.text, original_tree)
        return (json.dumps(self.tree, **style) + trailing).encode("utf-8")
