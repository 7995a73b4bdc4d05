"""Shared pieces of the security suite (run by `make test`).

What is treated as a secret (searched for, must never appear in output, logs or reports):
every password, secret key, token and passphrase in .lab/lab.json and .lab/secrets.json -
PostgreSQL passwords, the S3 secret keys of every object store, the AWS secret key, the TSIG
secret, the app's bearer token, pgBackRest's cipher passphrase - and the encryption keys: the
contents of a key file and the data key of a KMS-wrapped backup made during the run.

Not treated as secrets: access key ids (they name a key, like a user name), KMS key ids and
aliases, the Route53 zone id, moto's seed (it only makes the emulator's ids repeatable), host
names, ports and bucket names.

Where secrets live by design, and are therefore not searched: lab.json and secrets.json,
the app's config files (.lab/app/*.json), the TSIG key file, the pgBackRest configuration
files, an empty rclone.conf.
"""

import base64
import json
import os
from urllib.parse import quote

import pytest

from tests.helpers import faults

RUN = faults.run_id()
PREFIX = "tests/security/%s" % RUN
SECRET_WORDS = ("password", "secret", "token", "cipher_pass")


def walk(document, path=""):
    if isinstance(document, dict):
        for key, value in document.items():
            yield from walk(value, "%s.%s" % (path, key) if path else key)
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from walk(value, "%s[%d]" % (path, index))
    else:
        yield path, document


def lab_secrets(lab):
    """{where it comes from: value} of every secret the lab holds (see the module docstring)."""
    found = {}
    with open(os.path.join(lab["lab"]["dir"], "secrets.json")) as handle:
        secrets_json = json.load(handle)
    for source, document in (("lab.json", lab), ("secrets.json", secrets_json)):
        for path, value in walk(document):
            names = path.replace("[", ".").split(".")
            if isinstance(value, str) and value and any(word in name for name in names for word in SECRET_WORDS):
                found.setdefault(value, "%s:%s" % (source, path))
    return dict((where, value) for value, where in found.items())


def key_forms(name, raw):
    """A binary key as it could leak: raw, hex and base64."""
    return {name + " (raw)": raw, name + " (hex)": raw.hex().encode(),
            name + " (base64)": base64.b64encode(raw)}


def text_forms(secrets):
    """Each text secret as it could appear: as is, and URL-encoded when that differs."""
    forms = {}
    for where, value in secrets.items():
        forms[where] = value.encode()
        quoted = quote(value, safe="")
        if quoted != value:
            forms[where + " (URL-encoded)"] = quoted.encode()
    return forms


def search(needles, places):
    """[(what, where)] of every needle (name -> bytes) found in places (name -> bytes or path)."""
    hits = []
    for place, content in places.items():
        if not isinstance(content, (bytes, bytearray)):
            try:
                with open(content, "rb") as handle:
                    content = handle.read()
            except OSError:
                continue
        for name, needle in needles.items():
            if needle and needle in content:
                hits.append((name, place))
    return hits


def files_under(*roots):
    found = {}
    for root in roots:
        if os.path.isfile(str(root)):
            found[str(root)] = str(root)
            continue
        for directory, _dirs, files in os.walk(str(root)):
            for name in files:
                path = os.path.join(directory, name)
                found[path] = path
    return found


@pytest.fixture(scope="session")
def lab_archiving(lab, tmp_path_factory):
    """pgBackRest configured and WAL archived on the lab's primary (see faults.ensure_lab_archiving)."""
    return faults.ensure_lab_archiving(lab, tmp_path_factory.mktemp("configure-reports"))


@pytest.fixture(scope="session")
def security_stanza(lab, lab_archiving):  # pylint: disable=unused-argument
    with faults.own_stanza(lab, "security%s" % RUN, "%s/pgbackrest" % PREFIX) as stanza:
        yield stanza


@pytest.fixture(scope="session", autouse=True)
def remove_security_prefixes(lab):
    yield
    for region in ("us-east-1", "eu-west-1"):
        faults.delete_s3_prefix(lab, region, PREFIX)
