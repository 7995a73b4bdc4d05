"""The stand-ins the pgBackRest engine tests share: a recording pgBackRest, its `info` answers,
a configuration file and object-store ports that answer or not (test_pgbackrest.py and
test_pgbackrest_restore.py)."""

import datetime
import json
import socket

import pytest
# closed_port is offered here too, beside the fake repositories it is used with.
from tests.helpers.ports import closed_port  # noqa: F401 pylint: disable=unused-import

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
SYSTEM_ID = 7711530728469923649


def epoch(text):
    moment = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return int((moment - datetime.datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())


@pytest.fixture
def listener():
    """A TCP port that accepts connections: an object store that answers the probe."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


def write_config(tmp_path, s3_ports, repo1=True):
    lines = ["[global]", "log-path=%s" % tmp_path, "compress-type=zst"]
    if repo1:
        repo1_path = tmp_path / "repo1"
        repo1_path.mkdir(exist_ok=True)
        lines += ["repo1-type=posix", "repo1-path=%s" % repo1_path, "repo1-cipher-type=aes-256-cbc",
                  "repo1-cipher-pass=secret-pass"]
    for key, port in s3_ports.items():
        lines += ["repo%d-type=s3" % key, "repo%d-path=/postgres/pgbackrest" % key,
                  "repo%d-s3-bucket=bucket%d" % (key, key), "repo%d-s3-endpoint=localhost" % key,
                  "repo%d-storage-port=%d" % (key, port), "repo%d-s3-region=us-east-1" % key,
                  "repo%d-s3-key=AKEY" % key, "repo%d-s3-key-secret=SECRET" % key]
    lines += ["", "[auditron]", "pg1-path=/var/lib/postgresql/15/main", "pg1-port=5432"]
    path = tmp_path / "pgbackrest.conf"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


WALS = ("000000010000000000000004", "000000010000000000000005")


def backup_entry(repo, label, kind, start, stop, prior=None, error=False, wal=WALS):
    return {"archive": {"start": wal[0], "stop": wal[1]}, "backrest": {"format": 5, "version": "2.45"},
            "database": {"id": 1, "repo-key": repo}, "error": error,
            "info": {"delta": 1000, "repository": {"delta": 300, "size": 300}, "size": 5000},
            "label": label, "lsn": {"start": "0/4000028", "stop": "0/5000100"}, "prior": prior,
            "reference": [prior] if prior else None, "timestamp": {"start": epoch(start), "stop": epoch(stop)},
            "type": kind}


def info_document(repos, backups, archive_max="00000001000000000000000A", statuses=None):
    statuses = statuses or {}
    return [{
        "archive": [{"database": {"id": 1, "repo-key": key}, "id": "15-1", "min": "000000010000000000000001",
                     "max": archive_max} for key in repos if statuses.get(key, (0,))[0] in (0, 2)],
        "backup": [b for b in backups if b["database"]["repo-key"] in repos],
        "cipher": "aes-256-cbc",
        "db": [{"id": 1, "repo-key": key, "system-id": SYSTEM_ID, "version": "15"} for key in repos
               if statuses.get(key, (0,))[0] in (0, 2)],
        "name": "auditron",
        "repo": [{"cipher": "aes-256-cbc", "key": key,
                  "status": {"code": statuses.get(key, (0, "ok"))[0], "message": statuses.get(key, (0, "ok"))[1]}}
                 for key in repos],
        "status": {"code": 0, "lock": {"backup": {"held": False}}, "message": "ok"},
    }]


class FakePgBackRest(object):
    """Answers like pgbackrest 2.45 from canned data; records every command line."""

    def __init__(self, backups, wal_time="2026-11-24T11:59:00", statuses=None, failing_backup_repos=(),
                 archive_max="00000001000000000000000A"):
        self.backups = backups
        self.wal_time = epoch(wal_time)
        self.statuses = statuses or {}
        self.failing_backup_repos = failing_backup_repos
        self.archive_max = archive_max
        self.calls = []

    @staticmethod
    def repo_of(argv):
        for arg in argv:
            if arg.startswith("--repo="):
                return int(arg.split("=", 1)[1])
        return None

    def __call__(self, argv, env, timeout):
        self.calls.append(list(argv))
        repo = self.repo_of(argv)
        if argv[-2] == "repo-ls":
            name = self.archive_max
            return 0, json.dumps({".": {"type": "path"}, name + "-0123abcd.zst": {
                "type": "file", "size": 100, "time": self.wal_time}}), "", 0.01
        command = argv[-1]
        if command == "info":
            repos = [repo] if repo else sorted(set([b["database"]["repo-key"] for b in self.backups] + [1, 2, 3]))
            return 0, json.dumps(info_document(repos, self.backups, self.archive_max, self.statuses)), "", 0.02
        if command == "backup":
            if repo in self.failing_backup_repos:
                return 82, "", ("P00  ERROR: [082]: WAL segment 000000010000000000000010 was not archived before "
                                "the 60000ms timeout\n"), 60.0
            label = "20261124-120000F_%d" % repo
            self.backups.append(backup_entry(repo, label, "full", "2026-11-24T12:00:00", "2026-11-24T12:00:30"))
            return 0, ("P00   INFO: backup command begin 2.45\n"
                       "P00   WARN: no prior backup exists, incr backup has been changed to full\n"
                       "P00   INFO: new backup label = %s\n" % label), "", 30.5
        if command == "restore":
            return 0, "P00   INFO: restore command end: completed successfully\n", "", 12.0
        return 0, "", "", 0.01


def sample_backups():
    return [
        backup_entry(2, "20261124-020000F", "full", "2026-11-24T02:00:00", "2026-11-24T02:05:00"),
        backup_entry(2, "20261124-020000F_20261124-030000I", "incr", "2026-11-24T03:00:00", "2026-11-24T03:01:00",
                     prior="20261124-020000F"),
        backup_entry(3, "20261124-020100F", "full", "2026-11-24T02:01:00", "2026-11-24T02:06:00"),
        backup_entry(1, "20261124-015900F", "full", "2026-11-24T01:59:00", "2026-11-24T02:03:00"),
    ]
