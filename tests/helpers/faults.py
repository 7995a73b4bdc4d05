"""Fault injection for the reliability and security suites (tests/faults, tests/security, tests/load).

Every fault here is played against the lab's real servers without stopping them:

- FaultProxy: tests/helpers/tcpproxy.py's proxy, plus what an endpoint that *stops* looks like:
  after N bytes up (an upload) or down (a download) it drops every connection and refuses new
  ones; it can throttle, so that a backup takes long enough to be killed half-way; it records
  every connection attempt, so that retries (and their spacing) can be counted.
- Tmpfs: a small file system the test mounts as a backup disk that fills up (root only).
- TlsS3Server: our own `rclone serve s3` on a free port with a certificate made by
  lab/certs.py (expired, or from a CA nobody trusts); stopped by its pid.
- OwnStanza: a pgBackRest stanza of our own on the lab's primary cluster, with its own local
  repository, S3 prefix, lock and log directories: pgBackRest's real behaviour under a kill or
  a lock, with no effect on the lab's stanza (whose repositories and lock other sessions use).
- ansible_module / playbook runners, PostgreSQL helpers, S3 listings (objects and unfinished
  multipart uploads) and the stale files a killed writer leaves.
"""

import contextlib
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import psycopg2

from tests.conftest import REPO, VENV_BIN, ansible_env, ansible_playbook
from tests.helpers import lab_db
from tests.helpers.tcpproxy import TcpProxy
from tests.helpers.ports import closed_port, free_port  # noqa: F401 pylint: disable=unused-import

INVENTORY = str(REPO / "inventories" / "local")
# backup_database.yml's logical backup alone (its role), keeping the result in {out}:
# LOGICAL_BACKUP_PLAYBOOK.format(repo=REPO, out=path).
LOGICAL_BACKUP_PLAYBOOK = """
- name: Logical backup as backup_database.yml runs it
  hosts: primary
  gather_facts: false
  vars_files: [{repo}/playbooks/vars/backup_settings.yml]
  tasks:
    - name: Include the logical backup role
      ansible.builtin.include_role:
        name: auditron.dr.logical_backup
    - name: Keep the result for the test
      ansible.builtin.copy:
        content: "{{{{ logical_backup_result | to_json }}}}"
        dest: {out}
        mode: "0600"
"""
LOCAL_TEMP_PREFIX = ".auditron-tmp-"
RCLONE_TEMP_PREFIX = ".rclone_temp_"


# ---------------------------------------------------------------------------------------------
# Processes (the ports are tests/helpers/ports.py's, named here too for the fault tests)

def descendants(pid):
    """Every process below `pid` (children, grandchildren...), read from /proc."""
    parents = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as handle:
                data = handle.read()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2:].split()
        parents.setdefault(int(fields[1]), []).append(int(name))
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        for child in parents.get(current, []):
            found.append(child)
            queue.append(child)
    return found


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            data = handle.read()
    except OSError:
        return False
    return data[data.rindex(b")") + 2:].split()[0] != b"Z"


def wait_gone(pids, timeout=10.0):
    """Wait until every pid has exited; the ones still alive after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [pid for pid in pids if alive(pid)]
        if not left:
            return []
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


def kill9(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_for(what, probe, timeout=60.0, interval=0.05):
    """Poll probe() until it returns something true; that value, or AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("%s: not seen within %.0f s" % (what, timeout))
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# The network: an endpoint that slows down, stops mid-transfer, or refuses

class FaultProxy(TcpProxy):
    """TcpProxy with the faults of a real endpoint going away.

    stop_after_upload_bytes / stop_after_download_bytes: once that many bytes went client->server
    (server->client), every connection is dropped and new ones are refused: the endpoint has
    stopped, it does not come back by itself (call resume()). rate: bytes per second each
    direction may carry (None: as fast as it goes). attempts: (time, accepted) of every
    connection a client made, refused ones included.
    """

    def __init__(self, target_host, target_port, stop_after_upload_bytes=None, stop_after_download_bytes=None,
                 rate=None):
        # Set before TcpProxy.__init__: its accept thread starts there and reads them.
        self.stop_after_upload_bytes = stop_after_upload_bytes
        self.stop_after_download_bytes = stop_after_download_bytes
        self.rate = rate
        self.uploaded = 0
        self.downloaded = 0
        self.attempts = []
        self.stopped_at = None
        super().__init__(target_host, target_port)

    def on_connection(self, refused):
        self.attempts.append((time.monotonic(), not refused))

    def admit(self, data, downstream):
        """Count the bytes; None (and the endpoint stops) once a limit is passed; throttle to `rate`."""
        with self.lock:
            if downstream:
                self.downloaded += len(data)
                over = self.stop_after_download_bytes is not None and self.downloaded > self.stop_after_download_bytes
            else:
                self.uploaded += len(data)
                over = self.stop_after_upload_bytes is not None and self.uploaded > self.stop_after_upload_bytes
        if over:
            if not self.refuse:
                self.stop()
            return None
        if self.rate:
            time.sleep(len(data) / float(self.rate))
        return data

    def stop(self):
        """The endpoint stops: every connection cut, every new one refused."""
        self.refuse = True
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()
        self.drop_all()

    def resume(self):
        self.refuse = False
        self.stop_after_upload_bytes = None
        self.stop_after_download_bytes = None

    def attempts_after_stop(self):
        """Connection attempts made after the endpoint stopped (a client's retries)."""
        if self.stopped_at is None:
            return []
        return [moment - self.stopped_at for moment, _accepted in self.attempts if moment >= self.stopped_at]


def endpoint_port(endpoint):
    return int(endpoint.rstrip("/").rsplit(":", 1)[1])


def s3_proxy(lab, region="us-east-1", **options):
    """A FaultProxy (options: stop_after_*_bytes, rate) in front of the region's S3 server; its
    `endpoint` is the URL a location reaches the server through."""
    proxy = FaultProxy("127.0.0.1", endpoint_port(lab["backup_stores"][region]["endpoint"]), **options)
    proxy.endpoint = "https://localhost:%d" % proxy.port
    return proxy


# ---------------------------------------------------------------------------------------------
# A disk that fills up

class Tmpfs(object):
    """`mount -t tmpfs -o size=<size>` on a new directory; unmounted and removed by close()."""

    def __init__(self, path, size="2m"):
        self.path = str(path)
        os.makedirs(self.path, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "auditron-faults", self.path],
                       check=True, capture_output=True, text=True, timeout=30)
        self.mounted = True

    def entries(self):
        found = []
        for root, _dirs, files in os.walk(self.path):
            for name in files:
                found.append(os.path.relpath(os.path.join(root, name), self.path))
        return sorted(found)

    def free_bytes(self):
        stats = os.statvfs(self.path)
        return stats.f_bavail * stats.f_frsize

    def close(self):
        if self.mounted:
            subprocess.run(["umount", self.path], check=True, capture_output=True, text=True, timeout=30)
            self.mounted = False
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.close()
        return False


# ---------------------------------------------------------------------------------------------
# Certificates and an S3 endpoint of our own that serves them

def expired_certificate():
    """(key, certificate) for localhost signed by the lab's own CA, expired yesterday."""
    from cryptography import x509  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives import serialization  # pylint: disable=import-outside-toplevel
    from lab import certs, config  # pylint: disable=import-outside-toplevel
    with open(os.path.join(str(config.TLS_DIR), "ca.key"), "rb") as handle:
        ca_key = serialization.load_pem_private_key(handle.read(), password=None)
    with open(os.path.join(str(config.TLS_DIR), "ca.crt"), "rb") as handle:
        ca_cert = x509.load_pem_x509_certificate(handle.read())
    now = datetime.datetime.now(datetime.timezone.utc)
    key, cert = certs.make_certificate(ca_key, ca_cert, not_before=now - datetime.timedelta(days=30),
                                       not_after=now - datetime.timedelta(days=1))
    return key, cert, ca_cert


def foreign_certificate():
    """(key, certificate) for localhost, valid, from a CA the lab's clients have never heard of."""
    from lab import certs  # pylint: disable=import-outside-toplevel
    ca_key, ca_cert = certs.make_ca(common_name="Somebody else's CA")
    key, cert = certs.make_certificate(ca_key, ca_cert)
    return key, cert, ca_cert


class TlsS3Server(object):
    """`rclone serve s3` of our own over a temporary directory, with the certificate given.

    Started as this process's child on a free port; stop() ends it by its pid. The data
    directory is a plain tree: <dir>/<bucket>/<key> (objects can be planted as files).
    """

    def __init__(self, workdir, key, cert, ca_cert, bucket="faults", access_key="faultsak",
                 secret_key="faults-secret-key-not-a-lab-secret"):
        from lab import certs  # pylint: disable=import-outside-toplevel
        self.workdir = str(workdir)
        self.data = os.path.join(self.workdir, "data")
        self.bucket = bucket
        self.access_key, self.secret_key = access_key, secret_key
        os.makedirs(os.path.join(self.data, bucket), exist_ok=True)
        certs.write_server_material(self.workdir, key, cert, ca_cert, prefix="server")
        self.port = free_port()
        self.endpoint = "https://localhost:%d" % self.port
        empty_config = os.path.join(self.workdir, "rclone.conf")
        with open(empty_config, "w"):
            pass
        self.log_path = os.path.join(self.workdir, "rclone.log")
        self.log_handle = open(self.log_path, "ab")  # pylint: disable=consider-using-with
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [str(VENV_BIN / "rclone"), "serve", "s3", self.data, "--config", empty_config,
             "--addr", "127.0.0.1:%d" % self.port, "--auth-key", "%s,%s" % (access_key, secret_key),
             "--cert", os.path.join(self.workdir, "server-chain.crt"),
             "--key", os.path.join(self.workdir, "server.key"), "--log-level", "NOTICE"],
            stdin=subprocess.DEVNULL, stdout=self.log_handle, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for("rclone serve s3 on port %d" % self.port, self.answers, timeout=30)

    def answers(self):
        if self.proc.poll() is not None:
            raise AssertionError("rclone serve s3 exited: %s" % open(self.log_path).read()[-500:])
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def location(self, name, prefix="", ca_bundle=None):
        return {"name": name, "type": "s3", "endpoint_url": self.endpoint, "bucket": self.bucket, "region": "us-east-1",
                "access_key": self.access_key, "secret_key": self.secret_key, "ca_bundle": ca_bundle,
                "prefix": prefix}

    def plant(self, prefix, source_dir):
        """Copy every file of a local backup directory in as objects under `prefix`."""
        target = os.path.join(self.data, self.bucket, prefix)
        os.makedirs(target, exist_ok=True)
        for name in os.listdir(source_dir):
            if os.path.isfile(os.path.join(source_dir, name)) and not name.startswith("."):
                shutil.copy(os.path.join(source_dir, name), os.path.join(target, name))

    def objects(self):
        found = []
        for root, _dirs, files in os.walk(os.path.join(self.data, self.bucket)):
            found.extend(os.path.join(root, name) for name in files)
        return found

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log_handle.close()


# ---------------------------------------------------------------------------------------------
# Key material and encryption settings

def kms_encryption(lab, **aws_overrides):
    aws = lab["aws"]
    params = {"endpoint_url": aws["endpoint"], "region": aws["region"], "access_key": aws["access_key"],
              "secret_key": aws["secret_key"], "ca_bundle": aws["ca_file"]}
    params.update(aws_overrides)
    return {"key_source": "kms", "kms_key_id": aws["kms_key_alias"], "aws": params}


def kms_unreachable(lab):
    """The lab's KMS key, at an endpoint where nothing answers (the KMS region is down)."""
    return kms_encryption(lab, endpoint_url="https://localhost:%d" % closed_port())


def file_encryption(path):
    return {"key_source": "file", "key_file": str(path)}


# ---------------------------------------------------------------------------------------------
# S3 and local listings, including what a killed writer leaves behind

def s3_params(lab, region, prefix, **overrides):
    store = lab["backup_stores"][region]
    params = {"name": "s3-" + region, "type": "s3", "endpoint_url": store["endpoint"], "bucket": store["bucket"],
              "region": region, "access_key": store["access_key"], "secret_key": store["secret_key"],
              "ca_bundle": store["ca_file"], "prefix": prefix}
    params.update(overrides)
    return params


def s3_client(lab, region):
    import boto3  # pylint: disable=import-outside-toplevel
    from botocore.config import Config  # pylint: disable=import-outside-toplevel
    store = lab["backup_stores"][region]
    return boto3.client("s3", endpoint_url=store["endpoint"], region_name=region,
                        aws_access_key_id=store["access_key"], aws_secret_access_key=store["secret_key"],
                        verify=store["ca_file"], config=Config(s3={"addressing_style": "path"},
                                                               request_checksum_calculation="when_required",
                                                               response_checksum_validation="when_required"))


def s3_keys(lab, region, prefix, since=None):
    """{key: (size, last modified)} under `prefix` in the region's backup bucket."""
    client = s3_client(lab, region)
    found = {}
    bucket = lab["backup_stores"][region]["bucket"]
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if since is None or item["LastModified"].timestamp() >= since:
                found[item["Key"]] = (item["Size"], item["LastModified"])
    return found


def unfinished_uploads(lab, region, prefix):
    """Multipart uploads started under `prefix` and neither completed nor aborted."""
    client = s3_client(lab, region)
    answer = client.list_multipart_uploads(Bucket=lab["backup_stores"][region]["bucket"], Prefix=prefix)
    return [item["Key"] for item in answer.get("Uploads") or []]


def server_temp_files(lab, region, prefix):
    """`.rclone_temp_*` files the region's server keeps on its disk for unfinished uploads."""
    from lab import config  # pylint: disable=import-outside-toplevel
    root = os.path.join(str(config.S3_DIR), "s3-%s" % region, lab["backup_stores"][region]["bucket"], prefix)
    found = []
    for directory, _dirs, files in os.walk(root):
        found.extend(os.path.join(directory, name) for name in files if name.startswith(RCLONE_TEMP_PREFIX))
    return found


def delete_s3_prefix(lab, region, prefix):
    """Remove every object and unfinished upload under `prefix` (a test's own)."""
    assert prefix.startswith("tests/"), "refusing to delete outside tests/: %s" % prefix
    client = s3_client(lab, region)
    bucket = lab["backup_stores"][region]["bucket"]
    try:
        uploads = client.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads") or []
    except client.exceptions.NoSuchUpload:
        uploads = []  # rclone serve s3 answers NoSuchUpload when there is none
    for upload in uploads:
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        except Exception:  # pylint: disable=broad-except
            pass
    keys = list(s3_keys(lab, region, prefix))
    for start in range(0, len(keys), 1000):
        client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in keys[start:start + 1000]],
                                                     "Quiet": True})


def local_temp_files(directory):
    """Temp files a local location's writer leaves when it is killed (LocalWriter's .auditron-tmp-*)."""
    found = []
    for root, _dirs, files in os.walk(str(directory)):
        found.extend(os.path.join(root, name) for name in files if name.startswith(LOCAL_TEMP_PREFIX))
    return found


def file_mode(path):
    return oct(os.stat(path).st_mode & 0o777)


# ---------------------------------------------------------------------------------------------
# PostgreSQL

def pg_params(lab, site="primary"):
    pg = lab["sites"][site]["postgres"]
    return {"login_host": pg["host"], "login_port": pg["port"], "login_user": pg["user"],
            "login_password": pg["password"], "connect_timeout": 5}


def module_connection(postgres):
    """The connection options a module takes (login_host, login_port, login_user, login_password)."""
    return dict((key, value) for key, value in postgres.items() if key.startswith("login_"))


def admin(postgres, database="postgres"):
    """An autocommit connection with a module's connection options (pg_params)."""
    return lab_db.open_connection(postgres["login_host"], postgres["login_port"], postgres["login_user"],
                                  postgres["login_password"], database)


def sql(postgres, statement, database="postgres", args=None):
    return lab_db.rows(admin(postgres, database), statement, args)


def database_exists(postgres, name):
    return bool(sql(postgres, "SELECT 1 FROM pg_database WHERE datname = %s", args=(name,)))


def row_digests(postgres, database, tables=("User", "Invoice")):
    """Every row of `tables` in `database`, as (table, md5 of the row's text): the acknowledged
    writes a fault may cost, compared by content rather than counted."""
    digests = set()
    for table in tables:
        digests.update((table, digest) for (digest,) in sql(
            postgres, 'SELECT md5(t::text) FROM "%s" t' % table, database=database))
    return digests


def rows_missing(postgres, acknowledged, *databases):
    """How many of the `acknowledged` rows (row_digests) each database does not hold, summed: the
    serving database after a fault, and a restore of the backup that should still hold them."""
    tables = sorted(set(table for table, _digest in acknowledged))
    return sum(len(acknowledged - row_digests(postgres, database, tables)) for database in databases)


def wait_for_primary(postgres, timeout=120.0):
    """Until the server accepts connections again (after a crash restart)."""

    def answers():
        try:
            return sql(postgres, "SELECT NOT pg_is_in_recovery()")[0][0]
        except psycopg2.Error:
            return False

    return wait_for("PostgreSQL at %s:%s" % (postgres["login_host"], postgres["login_port"]), answers,
                    timeout=timeout, interval=0.5)


# ---------------------------------------------------------------------------------------------
# The engine in a process of its own (so that it can be killed -9)

ENGINE_CHILD = r"""
import json, sys
sys.path[:0] = [sys.argv[1] + "/.collections", sys.argv[1]]
from ansible_collections.auditron.dr.plugins.module_utils import pgdump
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from ansible_collections.auditron.dr.plugins.module_utils.storage import location_from_params
call = json.load(sys.stdin)
tuning = call.pop("tuning", {})
locations = [location_from_params(item, **tuning) for item in call.pop("locations")]
def log(message):
    print(message, file=sys.stderr, flush=True)
try:
    result = getattr(pgdump, call.pop("function"))(call.pop("postgres"), locations, log=log, **call)
except DRError as exc:
    print(json.dumps({"failed": True, "msg": exc.message}))
    sys.exit(1)
print(json.dumps(result, default=str))
"""


class EngineChild(object):
    """pgdump.backup/restore in a child Python process; kill9() it, or wait() for its result."""

    def __init__(self, function, postgres, locations, tuning=None, **kwargs):
        call = dict(kwargs, function=function, postgres=postgres, locations=locations, tuning=tuning or {})
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [str(VENV_BIN / "python"), "-c", ENGINE_CHILD, str(REPO)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.proc.stdin.write(json.dumps(call))
        self.proc.stdin.close()
        self.proc.stdin = None  # communicate() must not flush it again
        self.pid = self.proc.pid

    def children(self):
        return descendants(self.pid)

    def still_running(self):
        """True while the engine runs; AssertionError with its output once it has ended (a
        wait_for() on a half-way point then fails at once, saying why, not after its timeout)."""
        if self.proc.poll() is None:
            return True
        out, err = self.proc.communicate(timeout=30)
        raise AssertionError("the engine ended (exit %s) before the fault was injected: %s %s" % (
            self.proc.returncode, out[-1500:], err[-3000:]))

    def kill9(self):
        """SIGKILL the engine (not its children: they are left as a real kill leaves them)."""
        orphans = self.children()
        kill9(self.pid)
        self.proc.wait(timeout=30)
        return orphans

    def log_text(self):
        """What the engine logged on stderr (after kill9 or wait)."""
        try:
            return self.proc.stderr.read()
        except ValueError:
            return ""

    def wait(self, timeout=600):
        out, err = self.proc.communicate(timeout=timeout)
        try:
            result = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise AssertionError("engine child said no JSON (exit %s): %s" % (self.proc.returncode, err[-3000:]))
        result["stderr"] = err
        return result


# ---------------------------------------------------------------------------------------------
# Ansible: one module ad hoc, or a playbook

def ansible_module(name, args, host="primary", check=False, become_user=None, extra_vars=None, timeout=600,
                   verbosity=0):
    """Run auditron.dr.<name> (or a FQCN) ad hoc against the lab inventory; (result dict, raw output)."""
    fqcn = name if "." in name else "auditron.dr." + name
    command = [str(VENV_BIN / "ansible"), host, "-i", INVENTORY, "-m", fqcn, "-a", json.dumps(args)]
    if become_user:
        command += ["--become", "--become-user", become_user, "--become-method", "ansible.builtin.su"]
    if check:
        command.append("--check")
    if extra_vars:
        command += ["-e", json.dumps(extra_vars)]
    if verbosity:
        command.append("-" + "v" * verbosity)
    env = ansible_env({"ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"})
    completed = subprocess.run(command, cwd=str(REPO), env=env, capture_output=True, text=True, timeout=timeout,
                               check=False)
    raw = completed.stdout + completed.stderr
    # The JSON callback prints one document; with -v.. Ansible's own lines come before it.
    start = completed.stdout.find("\n{") + 1 if not completed.stdout.startswith("{") else 0
    try:
        document = json.loads(completed.stdout[start:])
    except ValueError:
        raise AssertionError("no JSON from ansible (exit %d): %s" % (completed.returncode, raw[-3000:]))
    return document["plays"][0]["tasks"][0]["hosts"][host], raw


class PlaybookResult(object):
    def __init__(self, completed, report_dir):
        self.rc = completed.returncode
        self.output = completed.stdout + completed.stderr
        self.report_dir = report_dir

    @property
    def flat(self):
        """The output with line wrapping undone (the YAML result format folds long lines)."""
        return " ".join(self.output.split())

    def __repr__(self):
        return "PlaybookResult(rc=%d)\n%s" % (self.rc, self.output[-6000:])


def playbook(path, report_dir, extra_vars=None, check=False, inventory=None, args=(), env=None, timeout=900):
    """ansible-playbook as a user runs it (tests.conftest.ansible_playbook); `path` relative to
    playbooks/ or absolute."""
    completed = ansible_playbook(path, report_dir, extra_vars=extra_vars, check=check,
                                 inventory=inventory or INVENTORY, args=args, env=env, timeout=timeout)
    return PlaybookResult(completed, report_dir)


# ---------------------------------------------------------------------------------------------
# pgBackRest: a stanza of our own on the lab's primary cluster

def lab_user_ids():
    from lab import config  # pylint: disable=import-outside-toplevel
    _name, uid, gid, _home = config.server_user()
    return uid, gid


def chown_tree_to_lab_user(path):
    uid, gid = lab_user_ids()
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid)


def lab_user_output(argv, timeout=600):
    """stdout (bytes) of a command run as the lab's server user; AssertionError when it fails."""
    from lab import proc  # pylint: disable=import-outside-toplevel
    kwargs = {}
    if os.geteuid() == 0:
        uid, gid = lab_user_ids()
        kwargs = {"user": uid, "group": gid, "extra_groups": []}
    completed = subprocess.run(argv, env=proc.server_env(), cwd="/", capture_output=True, timeout=timeout,
                               check=False, **kwargs)
    assert completed.returncode == 0, "%s failed: %s" % (argv[:4], completed.stderr.decode("utf-8", "replace")[-2000:])
    return completed.stdout


def as_lab_user(argv, timeout=600, env=None):
    from lab import proc  # pylint: disable=import-outside-toplevel
    return proc.run_as_server_user(argv, check=False, timeout=timeout, env=env)


def lab_pgbackrest_config(lab, site="primary"):
    return os.path.join(lab["pgbackrest"]["config_dir"], site, "pgbackrest.conf")


def ensure_lab_archiving(lab, report_dir):
    """pgBackRest configured on the lab's primary and WAL archived to every repository, as
    backup_database.yml's configure phase leaves them (a fresh lab has neither). Changes nothing
    when they are in place; AssertionError with the playbook's output when it fails."""
    config = lab_pgbackrest_config(lab)
    if os.path.exists(config):
        check = as_lab_user(["pgbackrest", "--config=%s" % config, "--stanza=%s" % lab["pgbackrest"]["stanza"],
                             "check"], timeout=300)
        if check.returncode == 0:
            return config
    run = playbook("backup_database.yml", report_dir, args=("--tags", "configure"))
    assert run.rc == 0, "backup_database.yml --tags configure: %s" % run
    return config


class OwnStanza(object):
    """A pgBackRest stanza of this test run on the lab's primary cluster.

    The configuration is the lab's own (same cipher, compression, TLS settings: written by the
    auditron.dr.pgbackrest role), with the stanza renamed and everything that is shared moved
    to places of ours: repo1 in `workdir`, repo2 under `s3_prefix` in the us-east-1 bucket,
    repo3 dropped, and lock, log and spool directories in `workdir`. WAL goes on being archived
    to the lab's stanza only, so the configuration says archive-check=n: backups here are real
    backups, but not restorable on their own (nothing here restores them).

    pgBackRest also takes an advisory lock in the cluster for a backup: while a backup of this
    stanza runs (seconds), a backup of the lab's stanza waits for it or is refused, as it would
    be by another backup of its own.
    """

    def __init__(self, lab, workdir, name, s3_prefix):
        self.lab = lab
        self.workdir = str(workdir)
        self.name = name
        self.s3_prefix = s3_prefix.strip("/")
        lab_config = lab_pgbackrest_config(lab)
        with open(lab_config) as handle:
            text = handle.read()
        self.repo1 = os.path.join(self.workdir, "repo1")
        self.config = os.path.join(self.workdir, "pgbackrest.conf")
        lines = []
        for line in text.splitlines():
            key = line.split("=", 1)[0].strip()
            if key.startswith("repo3-") or key.startswith("# repo3"):
                continue
            if key == "repo1-path":
                line = "repo1-path=%s" % self.repo1
            elif key == "repo2-path":
                line = "repo2-path=/%s" % self.s3_prefix
            elif key in ("log-path", "lock-path", "spool-path"):
                line = "%s=%s" % (key, os.path.join(self.workdir, key.split("-")[0]))
            elif key == "[%s]" % lab["pgbackrest"]["stanza"]:
                line = "[%s]" % name
            elif key == "[global]":
                line = "[global]\narchive-check=n"
            lines.append(line)
        for directory in ("log", "lock", "spool"):
            os.makedirs(os.path.join(self.workdir, directory), exist_ok=True)
        with open(self.config, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        os.chmod(self.config, 0o600)
        chown_tree_to_lab_user(self.workdir)
        result = self.run("stanza-create")
        assert result.returncode == 0, result.stdout + result.stderr

    def argv(self, command, *options):
        return ["pgbackrest", "--config=%s" % self.config, "--stanza=%s" % self.name] + list(options) + [command]

    def run(self, command, *options, timeout=600):
        return as_lab_user(self.argv(command, *options), timeout=timeout)

    def spawn(self, command, *options):
        """Start a pgBackRest command as the lab user in the background (a Popen)."""
        from lab import proc  # pylint: disable=import-outside-toplevel
        kwargs = {}
        if os.geteuid() == 0:
            uid, gid = lab_user_ids()
            kwargs = {"user": uid, "group": gid, "extra_groups": []}
        return subprocess.Popen(  # pylint: disable=consider-using-with
            self.argv(command, *options), env=proc.server_env(), cwd=self.workdir, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, **kwargs)

    def info(self, repo=None):
        options = ["--output=json"] + (["--repo=%d" % repo] if repo else [])
        result = self.run("info", *options)
        assert result.returncode == 0, result.stdout + result.stderr
        return json.loads(result.stdout)[0]

    def backup_labels(self, repo=None):
        return [backup["label"] for backup in self.info(repo).get("backup") or []]

    def partial_backups(self):
        """Backup directories in repo1 that hold no finished manifest (an interrupted backup)."""
        root = os.path.join(self.repo1, "backup", self.name)
        if not os.path.isdir(root):
            return []
        return sorted(name for name in os.listdir(root)
                      if os.path.isdir(os.path.join(root, name)) and name[0].isdigit()
                      and not os.path.exists(os.path.join(root, name, "backup.manifest")))

    def remove(self):
        delete_s3_prefix(self.lab, "us-east-1", self.s3_prefix)
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def own_stanza(lab, name, s3_prefix):
    """An OwnStanza named `name` in a private work directory, removed (with its S3 prefix) afterwards."""
    stanza = OwnStanza(lab, new_workdir("auditron-%s-stanza-" % name, lab_user=True), name, s3_prefix)
    try:
        yield stanza
    finally:
        stanza.remove()


def new_workdir(prefix, lab_user=False):
    """A private temporary directory (0700); owned by the lab's server user when asked."""
    path = tempfile.mkdtemp(prefix=prefix)
    if lab_user and os.geteuid() == 0:
        uid, gid = lab_user_ids()
        os.chown(path, uid, gid)
    return path


def run_id():
    return uuid.uuid4().hex[:8]
