"""The lab's servers: what each one is, how it starts, how the lab knows it answers.

up() starts whatever is not running yet and writes .lab/lab.json; a second up() changes
nothing. When a start fails, everything this call started is stopped again, so nothing
half-started is left behind. down() stops exactly what the lab recorded, by pid.
"""

import base64
import json
import os
import secrets as pysecrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

from . import certs, config, proc
from .proc import LabError


# ---------------------------------------------------------------------------------------------
# Users, directories, secrets

def ensure_server_user():
    """As root, create the unprivileged user the servers run as (PostgreSQL refuses root)."""
    if not config.running_as_root():
        return
    try:
        config.server_user()
        return
    except KeyError:
        pass
    result = subprocess.run(["useradd", "--system", "--create-home", "--home-dir", config.LAB_USER_HOME,
                             "--shell", "/bin/bash", config.LAB_USER], check=False, capture_output=True, text=True)
    if result.returncode != 0:
        try:
            config.server_user()  # made meanwhile by a second lab starting at the same time
        except KeyError:
            raise LabError(f"useradd {config.LAB_USER} failed: {result.stderr.strip()}") from None


def _owned_dir(path, mode=0o700):
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    if config.running_as_root():
        _n, uid, gid, _h = config.server_user()
        os.chown(path, uid, gid)
    return path


def _owned_file(path, text, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)
    if config.running_as_root():
        _n, uid, gid, _h = config.server_user()
        os.chown(path, uid, gid)


def ensure_traversable():
    """The server user must reach the venv's python and the lab dir: as root, grant search (x)
    on the ancestors that lack it (a mktemp clone is 0700). The repository's own top directory
    also gets read (r): Python lists a directory to import from it, and the tests run the engine
    as the server user from .collections, which links to it. Nothing else is made readable."""
    if not config.running_as_root():
        return []
    granted = []
    wanted = [(ancestor, 0o001) for target in (config.REPO / ".venv" / "bin", config.LAB_DIR)
              for ancestor in reversed(list(target.parents))] + [(config.REPO, 0o005)]
    for ancestor, bits in wanted:
        try:
            mode = ancestor.stat().st_mode
        except FileNotFoundError:
            continue
        if mode & bits != bits:
            os.chmod(ancestor, mode | bits)
            granted.append(str(ancestor))
    if granted:
        print(f"lab: granted search permission (o+x; o+rx on the repository) on {', '.join(sorted(set(granted)))} "
              f"so that user {config.LAB_USER} can reach the lab")
    return granted


def lab_dirs():
    config.LAB_DIR.mkdir(parents=True, exist_ok=True)
    os.chmod(config.LAB_DIR, 0o711)
    for directory in (config.PIDS_DIR, config.TLS_DIR):
        directory.mkdir(exist_ok=True)
        os.chmod(directory, 0o755)
    os.chmod(config.PIDS_DIR, 0o700)
    for directory in (config.LOGS_DIR, config.PG_DIR, config.S3_DIR, config.DNS_DIR,
                      config.APP_DIR, config.BACKUP_DIR, config.LAB_DIR / "pgbackrest"):
        _owned_dir(directory)
    os.chmod(config.PG_DIR, 0o711)
    os.chmod(config.BACKUP_DIR, 0o711)
    # The lab host's node_exporter textfile directory: on a real host the node_exporter package
    # makes it; playbooks write their metrics there whether or not the monitoring role has run.
    (config.LAB_DIR / "monitoring" / "textfile").mkdir(parents=True, exist_ok=True)


def _token(nbytes=18):
    return pysecrets.token_urlsafe(nbytes).replace("-", "x").replace("_", "y")


def load_secrets():
    """Credentials are made once per lab and kept, so that restarts keep data readable."""
    if config.SECRETS_JSON.exists():
        data = json.loads(config.SECRETS_JSON.read_text())
        if "pgbackrest_cipher_pass" not in data:  # labs made before pgBackRest was configured
            data["pgbackrest_cipher_pass"] = _token(32)
            config.SECRETS_JSON.write_text(json.dumps(data, indent=2))
        if isinstance(data["postgres_password"], dict):  # labs made with one password per site
            data["postgres_password"] = data["postgres_password"]["primary"]
            config.SECRETS_JSON.write_text(json.dumps(data, indent=2))
        return data
    data = {
        "postgres_password": _token(),
        "object_store": {name: {"access_key": "AK" + _token(6).upper(), "secret_key": _token(24)}
                         for name in object_store_names()},
        "aws": {"access_key": "AKIA" + _token(8).upper(), "secret_key": _token(24)},
        "tsig_secret": base64.b64encode(pysecrets.token_bytes(32)).decode(),
        "app_token": _token(24),
        "pgbackrest_cipher_pass": _token(32),
        "moto_seed": pysecrets.randbits(31),
    }
    fd = os.open(config.SECRETS_JSON, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    return data


def object_store_names():
    return [f"minio-{site}" for site in config.SITES] + [f"s3-{region}" for region in config.REGIONS]


# ---------------------------------------------------------------------------------------------
# PostgreSQL

def pg_paths(name):
    base = config.PG_DIR / name
    socket_dir = base / "run"
    if len(str(socket_dir)) > 80:
        # Unix socket paths are limited to 107 bytes: deep checkouts get a short directory.
        socket_dir = Path("/tmp") / f"auditron-lab-{abs(hash(str(config.LAB_DIR))) % 10**8}-{name}"
    return {"base": base, "data": base / "data", "run": socket_dir}


def _pg(binary):
    return str(Path(config.pg_bin_dir()) / binary)


def postmaster_pid(data_dir):
    """The pid of the postmaster running on data_dir; None when none is.

    A postmaster killed with -9 leaves its postmaster.pid behind, and its pid is soon another
    process's (pid_max is 32768 here, and a test run starts far more processes than that): the
    file's pid counts only if that process started when the file says the postmaster did (its
    third line). Else a stopped cluster would be taken for a running one, and a kill aimed at
    it would hit a stranger."""
    try:
        lines = Path(data_dir, "postmaster.pid").read_text().splitlines()
        pid, started = int(lines[0]), int(lines[2])
    except (OSError, ValueError, IndexError):
        return None
    live = proc.started_at(pid)
    if live is None or abs(live - started) > 5:
        return None
    return pid


def cluster_running(data_dir):
    pid = postmaster_pid(data_dir)
    return bool(pid) and proc.alive(pid)


def init_cluster(site, password):
    paths = pg_paths(site)
    _owned_dir(paths["base"])
    _owned_dir(paths["run"], 0o755)
    if (paths["data"] / "PG_VERSION").exists():
        return False
    pwfile = paths["base"] / ".pwfile"
    _owned_file(pwfile, password + "\n")
    try:
        proc.run_as_server_user([
            _pg("initdb"), "-D", str(paths["data"]), "-U", config.DB_SUPERUSER, "--pwfile", str(pwfile),
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
            "--data-checksums"])
    finally:
        pwfile.unlink(missing_ok=True)
    port = config.PORTS[f"postgres-{site}"]
    conf = f"""# Written by the AUDITRON lab (lab/servers.py). Roles change archiving and recovery
# settings with ALTER SYSTEM; this file holds what the lab needs to start.
listen_addresses = '{config.HOST}'
port = {port}
unix_socket_directories = '{paths["run"]}'
max_connections = 60
shared_buffers = 256MB
maintenance_work_mem = 256MB
wal_level = replica
archive_mode = on
max_wal_senders = 10
max_wal_size = 2GB
hot_standby = on
log_timezone = 'UTC'
timezone = 'UTC'
log_line_prefix = '%m [%p] '
"""
    _owned_file(paths["data"] / "lab.conf", conf, 0o600)
    with open(paths["data"] / "postgresql.conf", "a") as handle:
        handle.write("\ninclude 'lab.conf'\n")
    return True


def start_cluster(site):
    paths = pg_paths(site)
    if cluster_running(paths["data"]):
        return False
    port = config.PORTS[f"postgres-{site}"]
    if proc.port_taken(config.HOST, port):
        raise LabError(f"port {port} (postgres {site}) is already taken by another process: "
                       f"free it or set AUDITRON_LAB_PORT_OFFSET")
    log = config.LOGS_DIR / f"postgres-{site}.log"
    if not log.exists():
        _owned_file(log, "")
    result = proc.run_as_server_user(
        [_pg("pg_ctl"), "-D", str(paths["data"]), "-l", str(log), "-w", "-t", "90", "start"], check=False)
    if result.returncode != 0:
        # pg_ctl stops waiting but leaves the postmaster running: stop it, so that the error
        # leaves nothing behind and the next `lab up` is not refused by a stale postmaster.
        stop_cluster(paths["data"], mode="immediate")
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        raise LabError(f"postgres {site} did not start: {tail[0] if tail else result.stderr.strip()}")
    return True


def stop_cluster(data_dir, mode="fast"):
    pid = postmaster_pid(data_dir)
    if not pid or not proc.alive(pid):
        return False
    result = proc.run_as_server_user([_pg("pg_ctl"), "-D", str(data_dir), "-m", mode, "-w", "-t", "60", "stop"],
                                     check=False)
    if result.returncode != 0 and proc.alive(pid):
        # Its children too: an archiver stuck on a dead repository outlives a killed postmaster
        # and keeps the shared memory, and the next start is refused.
        kill_cluster(data_dir)
    return True


def kill_cluster(data_dir):
    """kill -9 the postmaster and every backend it started: a site losing power."""
    pid = postmaster_pid(data_dir)
    if not pid or not proc.alive(pid):
        return False
    children = [p for p in _pids() if _ppid(p) == pid]
    for victim in [pid] + children:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # Wait until the kernel has let go of them (reaped, not merely zombies): PostgreSQL
    # refuses to start while the old postmaster's pid still exists.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{v}") for v in [pid] + children):
        time.sleep(0.02)
    return True


def _pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _ppid(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
        return int(data[data.rindex(b")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def all_clusters():
    """Every cluster the lab or a playbook made under .lab/pg (sites and scratch clusters)."""
    if not config.PG_DIR.exists():
        return []
    return sorted(p.parent.parent for p in config.PG_DIR.glob("*/data/PG_VERSION"))


def psql(site, sql, database="postgres", via_stdin=False):
    """Run SQL over the site's Unix socket; via_stdin keeps it off the command line (passwords)."""
    paths = pg_paths(site)
    argv = [_pg("psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", str(paths["run"]),
            "-p", str(config.PORTS[f"postgres-{site}"]), "-U", config.DB_SUPERUSER, "-d", database]
    # The lab's own statements must work on a primary that a failover fenced (made read-only by
    # ALTER SYSTEM) when the lab brings that site back.
    env = {"PGOPTIONS": "-c default_transaction_read_only=off"}
    if via_stdin:
        result = proc.run_as_server_user(argv + ["-f", "-"], input_text=sql, env=env)
    else:
        result = proc.run_as_server_user(argv + ["-c", sql], env=env)
    return result.stdout.strip()


def ensure_database(site, password):
    # One password for both sites: the DR cluster becomes a copy of the primary's (roles and
    # passwords included) when it takes over, so a site-specific password would not survive it.
    if psql(site, "SELECT pg_is_in_recovery()") == "t":
        return  # a standby (warm DR): read-only, and its roles are the primary's already
    escaped = password.replace("'", "''")
    psql(site, f"ALTER ROLE {config.DB_SUPERUSER} PASSWORD '{escaped}'", via_stdin=True)
    if psql(site, f"SELECT 1 FROM pg_database WHERE datname = '{config.DATABASE}'") != "1":
        psql(site, f'CREATE DATABASE "{config.DATABASE}"')
    psql(site, "CREATE EXTENSION IF NOT EXISTS amcheck", database=config.DATABASE)


# ---------------------------------------------------------------------------------------------
# Object stores: `rclone serve s3`, one per MinIO site and per backup region

def _store_bucket(name):
    if name.startswith("minio-"):
        return config.FILES_BUCKET
    return config.BACKUP_BUCKET[name[len("s3-"):]]


def start_object_store(name, creds):
    if proc.running(name):
        return False
    port = config.PORTS[name]
    if proc.port_taken(config.HOST, port):
        raise LabError(f"port {port} ({name}) is already taken by another process: "
                       f"free it or set AUDITRON_LAB_PORT_OFFSET")
    data = _owned_dir(config.S3_DIR / name)
    _owned_dir(data / _store_bucket(name))
    empty_conf = config.S3_DIR / "rclone.conf"
    if not empty_conf.exists():
        _owned_file(empty_conf, "", 0o600)
    proc.spawn(name, [
        config.venv_bin("rclone"), "serve", "s3", str(data), "--config", str(empty_conf),
        "--addr", f"{config.HOST}:{port}", "--auth-key", f"{creds['access_key']},{creds['secret_key']}",
        "--cert", str(config.TLS_DIR / "server-chain.crt"), "--key", str(config.TLS_DIR / "server.key"),
        "--log-level", "NOTICE"])
    proc.wait_until(f"object store {name}", lambda: proc.port_answers(config.HOST, port), 30, name)
    return True


# ---------------------------------------------------------------------------------------------
# AWS emulator (moto server): KMS and Route53

def start_moto(seed):
    name = "moto"
    if proc.running(name):
        return False
    port = config.PORTS[name]
    if proc.port_taken(config.HOST, port):
        raise LabError(f"port {port} (moto, the AWS emulator) is already taken by another process: "
                       f"free it or set AUDITRON_LAB_PORT_OFFSET")
    proc.spawn(name, [config.venv_python(), str(config.REPO / "lab" / "moto_lab.py"),
                      "--host", config.HOST, "--port", str(port), "--seed", str(seed),
                      "--cert", str(config.TLS_DIR / "server.crt"), "--key", str(config.TLS_DIR / "server.key")])
    proc.wait_until("moto (AWS emulator)", lambda: _https_ok(f"https://{config.TLS_HOST}:{port}/moto-api/"), 60, name)
    return True


def _https_ok(url):
    context = ssl.create_default_context(cafile=str(config.TLS_DIR / "ca.crt"))
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return response.status < 500
    except Exception:  # pylint: disable=broad-except
        return False


def _aws_client(service, sec):
    import boto3  # pylint: disable=import-outside-toplevel
    return boto3.client(service, endpoint_url=f"https://{config.TLS_HOST}:{config.PORTS['moto']}",
                        region_name="us-east-1", aws_access_key_id=sec["aws"]["access_key"],
                        aws_secret_access_key=sec["aws"]["secret_key"], verify=str(config.TLS_DIR / "ca.crt"))


def ensure_aws_resources(sec):
    """The KMS key (by alias) and the Route53 zone; made in one fixed order so that the
    emulator, seeded the same way, gives them the same ids after a restart."""
    kms = _aws_client("kms", sec)
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    if config.KMS_ALIAS in aliases:
        key_id = aliases[config.KMS_ALIAS]
    else:
        key_id = kms.create_key(Description="AUDITRON backup key (lab, AWS emulator)")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=config.KMS_ALIAS, TargetKeyId=key_id)
    route53 = _aws_client("route53", sec)
    zones = [z for z in route53.list_hosted_zones()["HostedZones"] if z["Name"] == config.DNS_ZONE + "."]
    if zones:
        zone_id = zones[0]["Id"].split("/")[-1]
    else:
        zone_id = route53.create_hosted_zone(Name=config.DNS_ZONE + ".", CallerReference="auditron-lab")[
            "HostedZone"]["Id"].split("/")[-1]
        route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{
            "Action": "UPSERT", "ResourceRecordSet": {
                "Name": config.DNS_RECORD + ".", "Type": "A", "TTL": 30,
                "ResourceRecords": [{"Value": config.APP_ADDRESS["primary"]}]}}]})
    return key_id, zone_id


# ---------------------------------------------------------------------------------------------
# DNS: BIND 9, authoritative for auditron.test, dynamic updates with a TSIG key

def tsig_key_text(secret):
    return f'key "{config.TSIG_KEY_NAME}" {{\n\talgorithm hmac-sha256;\n\tsecret "{secret}";\n}};\n'


def start_dns(sec):
    name = "dns"
    if proc.running(name):
        return False
    port = config.PORTS[name]
    if proc.port_taken(config.HOST, port) or proc.port_taken(config.HOST, port, socket.SOCK_DGRAM):
        raise LabError(f"port {port} (BIND, DNS) is already taken by another process: "
                       f"free it or set AUDITRON_LAB_PORT_OFFSET")
    directory = _owned_dir(config.DNS_DIR)
    key_file = directory / "tsig.key"
    _owned_file(key_file, tsig_key_text(sec["tsig_secret"]), 0o600)
    zone_file = directory / f"db.{config.DNS_ZONE}"
    if not zone_file.exists():
        # Written once: later changes live in the zone's journal, as on a real server.
        _owned_file(zone_file, f"""$TTL 300
@\tIN SOA ns1.{config.DNS_ZONE}. hostmaster.{config.DNS_ZONE}. ( 1 60 60 3600 30 )
@\tIN NS ns1.{config.DNS_ZONE}.
ns1\tIN A 127.0.0.1
api\t30 IN A {config.APP_ADDRESS['primary']}
""", 0o644)
    _owned_file(directory / "named.conf", f"""// Written by the AUDITRON lab (lab/servers.py)
include "{key_file}";
options {{
  directory "{directory}";
  pid-file none;
  listen-on port {port} {{ {config.HOST}; }};
  listen-on-v6 {{ none; }};
  recursion no;
  dnssec-validation no;
  session-keyfile none;
  managed-keys-directory "{directory}";
}};
controls {{ }};
zone "{config.DNS_ZONE}" {{
  type primary;
  file "{zone_file}";
  update-policy {{ grant {config.TSIG_KEY_NAME} name {config.DNS_RECORD}. A AAAA CNAME TXT; }};
}};
logging {{
  channel lab_log {{ stderr; severity info; print-time yes; }};
  category default {{ lab_log; }};
  category update {{ lab_log; }};
  category lame-servers {{ null; }};
}};
""", 0o644)
    proc.spawn(name, ["/usr/sbin/named", "-f", "-c", str(directory / "named.conf")])
    proc.wait_until("BIND (DNS)", lambda: _dns_answers(port), 30, name)
    return True


def _dns_answers(port):
    import dns.message  # pylint: disable=import-outside-toplevel
    import dns.query  # pylint: disable=import-outside-toplevel
    try:
        query = dns.message.make_query(config.DNS_RECORD, "A")
        response = dns.query.udp(query, config.HOST, port=port, timeout=0.5)
        return len(response.answer) > 0
    except Exception:  # pylint: disable=broad-except
        return False


# ---------------------------------------------------------------------------------------------
# The AUDITRON API stand-in, one per site

def app_config(site, sec):
    paths = pg_paths(site)
    store = f"minio-{site}"
    return {
        "site": site,
        "listen": [config.APP_ADDRESS[site], config.PORTS["app"]],
        "token": sec["app_token"],
        "postgres": {"host": config.HOST, "port": config.PORTS[f"postgres-{site}"], "user": config.DB_SUPERUSER,
                     "password": sec["postgres_password"], "database": config.DATABASE,
                     "socket_dir": str(paths["run"])},
        "object_store": {"endpoint": f"https://{config.TLS_HOST}:{config.PORTS[store]}",
                         "access_key": sec["object_store"][store]["access_key"],
                         "secret_key": sec["object_store"][store]["secret_key"],
                         "bucket": config.FILES_BUCKET, "ca_file": str(config.TLS_DIR / "ca.crt")},
    }


def app_command(site):
    return [config.venv_python(), str(config.REPO / "lab" / "app.py"), "--config",
            str(config.APP_DIR / f"{site}.json")]


def write_app_config(site, sec):
    """Write the app's config; True when it changed (a running app then needs a restart)."""
    path = config.APP_DIR / f"{site}.json"
    text = json.dumps(app_config(site, sec), indent=2)
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    _owned_file(path, text, 0o600)
    return True


def start_app(site, sec):
    name = f"app-{site}"
    if proc.running(name):
        if not write_app_config(site, sec):
            return False
        proc.stop(name)  # its configuration changed (an older lab): start it again with the new one
    address, port = config.APP_ADDRESS[site], config.PORTS["app"]
    if proc.port_taken(address, port):
        raise LabError(f"port {address}:{port} (app {site}) is already taken by another process: "
                       f"free it or set AUDITRON_LAB_PORT_OFFSET")
    write_app_config(site, sec)
    proc.spawn(name, app_command(site))
    proc.wait_until(f"app {site}", lambda: proc.port_answers(address, port), 30, name)
    return True


# ---------------------------------------------------------------------------------------------
# lab.json: every endpoint and credential, for tests, benchmarks, inventories and people

def describe(sec, key_id=None, zone_id=None):
    ca_file = str(config.TLS_DIR / "ca.crt")
    user, _uid, _gid, _home = config.server_user()

    def store(name, bucket, region="us-east-1"):
        creds = sec["object_store"][name]
        return {"endpoint": f"https://{config.TLS_HOST}:{config.PORTS[name]}", "access_key": creds["access_key"],
                "secret_key": creds["secret_key"], "bucket": bucket, "region": region, "ca_file": ca_file}

    sites = {}
    for site in config.SITES:
        paths = pg_paths(site)
        sites[site] = {
            "postgres": {"host": config.HOST, "port": config.PORTS[f"postgres-{site}"], "user": config.DB_SUPERUSER,
                         "password": sec["postgres_password"], "database": config.DATABASE,
                         "data_dir": str(paths["data"]), "socket_dir": str(paths["run"]),
                         "bin_dir": config.pg_bin_dir(), "os_user": user,
                         "log_file": str(config.LOGS_DIR / f"postgres-{site}.log")},
            "object_store": store(f"minio-{site}", config.FILES_BUCKET),
            "app": {"url": f"http://{config.APP_ADDRESS[site]}:{config.PORTS['app']}", "token": sec["app_token"],
                    "command": app_command(site), "pid_file": str(proc.pid_file(f"app-{site}")),
                    "log_file": str(config.LOGS_DIR / f"app-{site}.log"),
                    "config_file": str(config.APP_DIR / f"{site}.json")},
        }
    return {
        "sites": sites,
        "backup_stores": {region: store(f"s3-{region}", config.BACKUP_BUCKET[region], region)
                          for region in config.REGIONS},
        "aws": {"endpoint": f"https://{config.TLS_HOST}:{config.PORTS['moto']}", "access_key": sec["aws"]["access_key"],
                "secret_key": sec["aws"]["secret_key"], "region": "us-east-1", "ca_file": ca_file,
                "emulator": "moto", "kms_key_alias": config.KMS_ALIAS, "kms_key_id": key_id,
                "route53_zone_id": zone_id},
        "dns": {"server": config.HOST, "port": config.PORTS["dns"], "zone": config.DNS_ZONE,
                "record": config.DNS_RECORD, "tsig_key_file": str(config.DNS_DIR / "tsig.key"),
                "tsig_key_name": config.TSIG_KEY_NAME, "tsig_algorithm": "hmac-sha256"},
        "pgbackrest": {"stanza": "auditron", "cipher_pass": sec["pgbackrest_cipher_pass"],
                       "config_dir": str(config.LAB_DIR / "pgbackrest")},
        "lab": {"dir": str(config.LAB_DIR), "repo": str(config.REPO), "os_user": user,
                "become": config.running_as_root(), "ca_file": ca_file, "pg_bin_dir": config.pg_bin_dir(),
                "backup_dir": str(config.BACKUP_DIR), "pg_dir": str(config.PG_DIR),
                "python": config.venv_python(), "port_offset": config.OFFSET},
    }


def write_lab_json(data):
    tmp = config.LAB_JSON.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    os.replace(tmp, config.LAB_JSON)


def load_lab_json():
    try:
        return json.loads(config.LAB_JSON.read_text())
    except FileNotFoundError:
        raise LabError("the lab is not set up: run `make lab-up`") from None


# ---------------------------------------------------------------------------------------------
# The whole lab

def up(quiet=False):
    say = (lambda *_: None) if quiet else print
    ensure_server_user()
    lab_dirs()
    ensure_traversable()
    sec = load_secrets()
    certs.ensure_lab_tls(str(config.TLS_DIR))
    key = config.TLS_DIR / "server.key"
    if config.running_as_root():
        _n, uid, gid, _h = config.server_user()
        os.chown(key, uid, gid)
    started = []  # (kind, name) of what this call started, to undo on failure
    try:
        # The object stores first: a cluster left as a standby (failback.yml ends that way)
        # fetches WAL from them while it starts, and pg_ctl gives up if they are not there yet.
        for name in object_store_names():
            if start_object_store(name, sec["object_store"][name]):
                started.append(("proc", name))
        if start_moto(sec["moto_seed"]):
            started.append(("proc", "moto"))
        key_id, zone_id = ensure_aws_resources(sec)
        if start_dns(sec):
            started.append(("proc", "dns"))
        for site in config.SITES:
            init_cluster(site, sec["postgres_password"])
            if start_cluster(site):
                started.append(("cluster", site))
            ensure_database(site, sec["postgres_password"])
        for site in config.SITES:
            if start_app(site, sec):
                started.append(("proc", f"app-{site}"))
        write_lab_json(describe(sec, key_id, zone_id))
    except (LabError, OSError, subprocess.SubprocessError) as exc:
        stop_started(started)
        if isinstance(exc, LabError):
            raise
        raise LabError(f"lab start failed: {exc}") from exc
    say(f"lab: up ({len(started)} started, {len(status()) - len(started)} already running); "
        f"endpoints in {config.LAB_JSON}")
    return started


def stop_started(started):
    """Stop what one up() call started (its return value): the apps, then the clusters (their
    archivers push a last WAL to the object stores at shutdown), then the rest, newest first."""
    def order(item):
        kind, name = item
        return 0 if name.startswith("app-") else 1 if kind == "cluster" else 2
    for kind, name in sorted(reversed(started), key=order):
        if kind == "cluster":
            stop_cluster(pg_paths(name)["data"])
        else:
            proc.stop(name)


def down(quiet=False):
    say = (lambda *_: None) if quiet else print
    stopped = []
    for name in ["app-primary", "app-dr"]:
        if proc.stop(name):
            stopped.append(name)
    # The clusters before the object stores: at shutdown the archiver pushes its last WAL to them.
    for base in all_clusters():
        if stop_cluster(base / "data"):
            stopped.append(f"postgres {base.name}")
    for name in ["dns", "moto"] + object_store_names():
        if proc.stop(name):
            stopped.append(name)
    say(f"lab: down ({len(stopped)} stopped)" + (f": {', '.join(stopped)}" if stopped else ""))
    return stopped


def fail(site):
    if site not in config.SITES:
        raise LabError(f"unknown site {site!r}: the lab has {', '.join(config.SITES)}")
    killed = []
    if kill_cluster(pg_paths(site)["data"]):
        killed.append(f"postgres-{site}")
    for name in (f"minio-{site}", f"app-{site}"):
        if proc.kill9(name):
            killed.append(name)
        proc.pid_file(name).unlink(missing_ok=True)
    print(f"lab: site {site} failed (kill -9): {', '.join(killed) if killed else 'nothing was running'}")
    return killed


def status():
    rows = {}
    for site in config.SITES:
        rows[f"postgres-{site}"] = cluster_running(pg_paths(site)["data"])
    for name in object_store_names() + ["moto", "dns", "app-primary", "app-dr"]:
        rows[name] = proc.running(name)
    return rows


def remove():
    """lab-down, then delete the lab's state (data, backups, secrets)."""
    down(quiet=True)
    if config.LAB_DIR.exists():
        shutil.rmtree(config.LAB_DIR)
    print(f"lab: removed {config.LAB_DIR}")
