"""Where the lab lives and which loopback ports it uses.

Every server binds 127.0.0.1 (the two AUDITRON API stand-ins bind 127.0.0.11 and 127.0.0.12,
so a DNS switch between the sites can be seen). Ports can be shifted as a block with
AUDITRON_LAB_PORT_OFFSET so that two labs (say, a working tree and a fresh CI clone) can run
on one machine.
"""

import os
import pwd
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAB_DIR = Path(os.environ.get("AUDITRON_LAB_DIR", str(REPO / ".lab")))
LAB_JSON = LAB_DIR / "lab.json"
SECRETS_JSON = LAB_DIR / "secrets.json"
PIDS_DIR = LAB_DIR / "pids"
LOGS_DIR = LAB_DIR / "logs"
TLS_DIR = LAB_DIR / "tls"
PG_DIR = LAB_DIR / "pg"
S3_DIR = LAB_DIR / "s3"
DNS_DIR = LAB_DIR / "dns"
APP_DIR = LAB_DIR / "app"
BACKUP_DIR = LAB_DIR / "backups"

# PostgreSQL refuses to run as root: when the lab is started by root, every server runs as
# this unprivileged user, created on first use.
LAB_USER = os.environ.get("AUDITRON_LAB_USER", "auditron-lab")
LAB_USER_HOME = "/var/lib/auditron-lab"

OFFSET = int(os.environ.get("AUDITRON_LAB_PORT_OFFSET", "0") or 0)

SITES = ("primary", "dr")
REGIONS = ("us-east-1", "eu-west-1")

HOST = "127.0.0.1"
# Clients reach the TLS endpoints as "localhost": pgBackRest 2.45 checks a certificate against
# host names only, never IP addresses.
TLS_HOST = "localhost"

PORTS = {
    "postgres-primary": 55432 + OFFSET,
    "postgres-dr": 55433 + OFFSET,
    "minio-primary": 55901 + OFFSET,
    "minio-dr": 55902 + OFFSET,
    "s3-us-east-1": 55911 + OFFSET,
    "s3-eu-west-1": 55912 + OFFSET,
    "moto": 55920 + OFFSET,
    "dns": 55953 + OFFSET,
    "app": 58080 + OFFSET,
}

APP_ADDRESS = {"primary": "127.0.0.11", "dr": "127.0.0.12"}

DATABASE = "auditron"
DB_SUPERUSER = "postgres"
FILES_BUCKET = "auditron-files"
BACKUP_BUCKET = {"us-east-1": "auditron-backups", "eu-west-1": "auditron-backups-eu-west-1"}
DNS_ZONE = "auditron.test"
DNS_RECORD = "api.auditron.test"
TSIG_KEY_NAME = "auditron-lab-tsig"
KMS_ALIAS = "alias/auditron-backups"

PG_MAJOR = "15"


def pg_bin_dir():
    """The PostgreSQL 15 binaries (Debian keeps them out of PATH)."""
    for candidate in (os.environ.get("AUDITRON_PG_BIN"), f"/usr/lib/postgresql/{PG_MAJOR}/bin"):
        if candidate and Path(candidate, "postgres").exists():
            return candidate
    return f"/usr/lib/postgresql/{PG_MAJOR}/bin"


def running_as_root():
    return os.geteuid() == 0


def server_user():
    """Name, uid, gid and home of the user the lab's servers run as."""
    if running_as_root():
        entry = pwd.getpwnam(LAB_USER)
    else:
        entry = pwd.getpwuid(os.geteuid())
    return entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir


def venv_python():
    return str(REPO / ".venv" / "bin" / "python")


def venv_bin(name):
    return str(REPO / ".venv" / "bin" / name)
