"""The lab itself: what it serves, and how it refuses bad input without leaving anything behind."""

import json
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.request

import pytest

from tests.conftest import REPO, VENV_BIN

pytestmark = pytest.mark.lab


def make(*args, env=None):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(["make", "-s", "--no-print-directory"] + list(args), cwd=REPO, env=full_env,
                          capture_output=True, text=True, check=False, timeout=300)


def test_lab_json_has_the_promised_shape(lab):
    for site in ("primary", "dr"):
        assert set(lab["sites"][site]) >= {"postgres", "object_store", "app"}
        assert set(lab["sites"][site]["postgres"]) >= {"host", "port", "user", "password", "database"}
        assert set(lab["sites"][site]["object_store"]) >= {"endpoint", "access_key", "secret_key", "bucket", "ca_file"}
        assert set(lab["sites"][site]["app"]) >= {"url", "token"}
    for region in ("us-east-1", "eu-west-1"):
        assert set(lab["backup_stores"][region]) >= {"endpoint", "access_key", "secret_key", "bucket", "region",
                                                     "ca_file"}
    assert set(lab["aws"]) >= {"endpoint", "access_key", "secret_key", "region"}
    assert set(lab["dns"]) >= {"server", "port", "zone", "record", "tsig_key_file"}
    for store in list(lab["backup_stores"].values()) + [lab["sites"]["primary"]["object_store"]]:
        assert len(store["access_key"]) >= 4
    assert oct(os.stat(REPO / ".lab" / "lab.json").st_mode & 0o777) == "0o600"


def test_every_server_binds_loopback_only(lab):
    ports = [lab["sites"][s]["postgres"]["port"] for s in ("primary", "dr")]
    ports += [int(s["endpoint"].rsplit(":", 1)[1]) for s in lab["backup_stores"].values()]
    listening = subprocess.run(["ss", "-Htlnu"], capture_output=True, text=True, check=False).stdout
    for line in listening.splitlines():
        local = line.split()[4]
        port = int(local.rsplit(":", 1)[1])
        if port in ports:
            assert local.startswith("127.0.0."), line


def test_app_serves_its_sites_data_behind_a_token(lab):
    app = lab["sites"]["primary"]["app"]
    with urllib.request.urlopen(app["url"] + "/health", timeout=5) as response:
        assert json.load(response)["status"] == "ok"
    request = urllib.request.Request(app["url"] + "/api/invoices?limit=3",
                                     headers={"Authorization": "Bearer " + app["token"]})
    with urllib.request.urlopen(request, timeout=5) as response:
        body = json.load(response)
    assert body["site"] == "primary" and "count" in body
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(app["url"] + "/api/invoices", timeout=5)
    assert err.value.code == 401


def test_dns_name_starts_on_the_primary(lab):
    out = subprocess.run(["dig", "+short", "@" + lab["dns"]["server"], "-p", str(lab["dns"]["port"]),
                          lab["dns"]["record"]], capture_output=True, text=True, check=True).stdout.split()
    assert out == [lab["sites"]["primary"]["app"]["url"].split("//")[1].split(":")[0]]


def test_lab_up_twice_changes_nothing(lab):
    result = make("lab-up")
    assert result.returncode == 0, result.stderr
    assert "0 started, 10 already running" in result.stdout


def test_bad_scale_is_refused_in_one_line(lab):
    result = make("lab-seed", "SCALE=abc")
    assert result.returncode != 0
    lines = [l for l in result.stderr.splitlines() if l.startswith("lab:")]
    assert lines == ["lab: SCALE must be a positive number up to 1000 (1 is about 100 MB), got 'abc'"]


def test_a_taken_port_stops_a_second_lab_cleanly(tmp_path):
    """A second lab (its own dir, ports shifted) finds its moto port taken: it says which port,
    and stops what it had started."""
    offset = 300
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", 55920 + offset))
    blocker.listen(1)
    lab_dir = tmp_path / "second-lab"
    env = {"AUDITRON_LAB_DIR": str(lab_dir), "AUDITRON_LAB_PORT_OFFSET": str(offset)}
    try:
        result = subprocess.run([str(VENV_BIN / "python"), "-m", "lab", "up"], cwd=REPO, capture_output=True,
                                text=True, check=False, timeout=300, env=dict(os.environ, **env))
        status = subprocess.run([str(VENV_BIN / "python"), "-m", "lab", "status"], cwd=REPO, capture_output=True,
                                text=True, check=True, env=dict(os.environ, **env)).stdout
    finally:
        blocker.close()
        subprocess.run([str(VENV_BIN / "python"), "-m", "lab", "down"], cwd=REPO, capture_output=True,
                       check=False, env=dict(os.environ, **env))
        shutil.rmtree(lab_dir, ignore_errors=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "lab: port %d (moto, the AWS emulator) is already taken by another process: "
        "free it or set AUDITRON_LAB_PORT_OFFSET" % (55920 + offset)]
    assert not any(json.loads(status).values()), status


def test_missing_package_names_the_install_command(tmp_path):
    """bootstrap.sh, run by a user who cannot install, prints the apt-get command and stops."""
    env = dict(os.environ, AUDITRON_BOOTSTRAP_EXTRA_REQUIREMENT="/nonexistent/auditron-tool=auditron-fake-package")
    command = ["bash", str(REPO / "lab" / "bootstrap.sh")]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "auditron-lab", "--", "env",
                   "AUDITRON_BOOTSTRAP_EXTRA_REQUIREMENT=" + env["AUDITRON_BOOTSTRAP_EXTRA_REQUIREMENT"]] + command
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False, env=env, timeout=60)
    assert result.returncode == 1
    assert "setup: missing Debian packages: auditron-fake-package" in result.stdout
    assert "setup: run: sudo apt-get install -y auditron-fake-package" in result.stdout
