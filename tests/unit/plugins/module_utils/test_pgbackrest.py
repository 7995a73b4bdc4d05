"""The pgBackRest engine without pgBackRest: configuration reading, command lines, `info`
parsing, repository choice for restores and the refusals that protect a target directory.

A recording runner stands in for the pgbackrest binary; its answers are shaped as pgBackRest
2.45 prints them (info --output=json, repo-ls --output=json, log lines). Object-store
repositories point at a socket this test listens on (reachable) or at a port nothing listens
on (unreachable), so that the reachability probe is real.
"""

import datetime
import json
import os
import socket

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import pgbackrest
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError

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


def closed_port():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


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


# ---------------------------------------------------------------------------------------------
# Reading what pgBackRest prints

def test_error_line_takes_pgbackrests_error_code_and_message():
    text = ("2026-11-24 01:00:00.000 P00   INFO: backup command begin 2.45: --stanza=auditron\n"
            "2026-11-24 01:00:01.000 P00  ERROR: [056]: unable to find primary cluster - cannot proceed\n"
            "                                    HINT: are all available clusters in recovery?\n")
    assert pgbackrest.error_line(text) == "[056] unable to find primary cluster - cannot proceed"
    assert pgbackrest.error_line("just a line\nlast line\n") == "last line"
    assert pgbackrest.error_line("") == ""


def test_config_sections_and_repositories(tmp_path, listener):
    path = write_config(tmp_path, {2: listener, 3: 9})
    sections = pgbackrest.read_config(path)
    assert sections["auditron"]["pg1-port"] == "5432"
    repos = pgbackrest.configured_repos(sections, "auditron")
    assert [r["key"] for r in repos] == [1, 2, 3]
    assert repos[0]["type"] == "posix" and repos[0]["cipher"] == "aes-256-cbc"
    assert (repos[1]["host"], repos[1]["port"], repos[1]["bucket"]) == ("localhost", listener, "bucket2")
    assert repos[2]["port"] == 9


def test_stanza_section_overrides_global_and_endpoint_forms():
    sections = pgbackrest.parse_config(
        "[global]\nrepo1-type=s3\nrepo1-s3-endpoint=https://minio.example:9000/\nrepo1-path=/a\n"
        "# comment\n[auditron]\nrepo1-path=/b\n[other]\nrepo1-path=/c\n")
    repo = pgbackrest.configured_repos(sections, "auditron")[0]
    assert (repo["host"], repo["port"], repo["path"]) == ("minio.example", 9000, "/b")
    aws = pgbackrest.configured_repos(pgbackrest.parse_config(
        "[global]\nrepo2-type=s3\nrepo2-s3-endpoint=s3.eu-west-1.amazonaws.com\n"), "auditron")[0]
    assert (aws["key"], aws["port"]) == (2, 443)
    default = pgbackrest.configured_repos({}, "auditron")
    assert default == [{"key": 1, "name": "repo1", "type": "posix", "path": "/var/lib/pgbackrest", "cipher": "none"}]


def test_unreadable_config_is_one_line_naming_the_file(tmp_path):
    with pytest.raises(DRError) as err:
        pgbackrest.read_config(str(tmp_path / "missing.conf"))
    assert "missing.conf" in str(err.value) and "\n" not in str(err.value)


def test_command_line_carries_config_stanza_repo_and_timeout():
    tool = pgbackrest.PgBackRest("/etc/pgbackrest/pgbackrest.conf", "auditron", io_timeout=5)
    assert tool.argv("info", ["--output=json"], repo=2) == [
        "pgbackrest", "--config=/etc/pgbackrest/pgbackrest.conf", "--stanza=auditron", "--repo=2",
        "--io-timeout=5", "--output=json", "info"]
    assert tool.argv("check", io_timeout=0.5)[-2:] == ["--io-timeout=0.5", "check"]


def test_run_checked_raises_pgbackrests_own_message():
    def runner(argv, env, timeout):
        return 28, "", "P00  ERROR: [028]: backup and archive info files exist but do not match the database\n", 0.1
    tool = pgbackrest.PgBackRest("/x.conf", runner=runner)
    with pytest.raises(DRError) as err:
        tool.run_checked("check")
    assert str(err.value) == ("pgbackrest check failed: [028] backup and archive info files exist but do not "
                              "match the database")
    assert err.value.details["rc"] == 28


def test_probe_tells_reachable_from_dead(tmp_path, listener):
    assert pgbackrest.probe_repo({"host": "127.0.0.1", "port": listener}) is None
    dead = pgbackrest.probe_repo({"host": "127.0.0.1", "port": closed_port()}, timeout=2)
    assert "does not answer" in dead and "refused" in dead
    assert pgbackrest.probe_repo({"type": "posix", "path": str(tmp_path)}) is None
    assert "does not exist" in pgbackrest.probe_repo({"type": "posix", "path": str(tmp_path / "nope")})


# ---------------------------------------------------------------------------------------------
# info

def sample_backups():
    return [
        backup_entry(2, "20261124-020000F", "full", "2026-11-24T02:00:00", "2026-11-24T02:05:00"),
        backup_entry(2, "20261124-020000F_20261124-030000I", "incr", "2026-11-24T03:00:00", "2026-11-24T03:01:00",
                     prior="20261124-020000F"),
        backup_entry(3, "20261124-020100F", "full", "2026-11-24T02:01:00", "2026-11-24T02:06:00"),
        backup_entry(1, "20261124-015900F", "full", "2026-11-24T01:59:00", "2026-11-24T02:03:00"),
    ]


def test_parse_info_per_repository():
    document = info_document([1, 2, 3], list(reversed(sample_backups())),
                             statuses={3: (99, "[HostConnectError] unable to connect to 'localhost:1'")})
    summary = pgbackrest.parse_info(document, "auditron", now=NOW)
    repo2 = summary["repos"][1]
    assert [b["label"] for b in repo2["backups"]] == ["20261124-020000F", "20261124-020000F_20261124-030000I"]
    incr = repo2["backups"][1]
    assert (incr["type"], incr["prior"], incr["reference"], incr["duration_seconds"]) == (
        "incr", "20261124-020000F", ["20261124-020000F"], 60)
    assert incr["stop"] == "2026-11-24T03:01:00Z" and incr["system_id"] == str(SYSTEM_ID)
    assert (incr["size"], incr["repo_size"]) == (5000, 300)
    assert repo2["newest_backup"] == "20261124-020000F_20261124-030000I"
    assert repo2["newest_backup_age_seconds"] == 9 * 3600 - 60
    assert (repo2["wal_min"], repo2["wal_max"]) == ("000000010000000000000001", "00000001000000000000000A")
    repo3 = summary["repos"][2]
    assert repo3["reachable"] is False and "HostConnectError" in repo3["error"]
    assert summary["unreachable_repos"] == ["repo3: [HostConnectError] unable to connect to 'localhost:1'"]


def test_parse_info_missing_stanza_and_unknown_stanza():
    document = info_document([1, 2], [], statuses={1: (1, "missing stanza path"), 2: (2, "no valid backups")})
    summary = pgbackrest.parse_info(document, "auditron", now=NOW)
    assert summary["missing_stanza"] == ["repo1"]
    assert summary["repos"][1]["stanza_exists"] is True and summary["repos"][1]["newest_backup"] is None
    with pytest.raises(DRError):
        pgbackrest.parse_info(document, "other")


def test_info_summary_probes_first_and_adds_wal_age(tmp_path, listener):
    config = write_config(tmp_path, {2: listener, 3: closed_port()})
    fake = FakePgBackRest(sample_backups(), wal_time="2026-11-24T11:58:00")
    tool = pgbackrest.PgBackRest(config, runner=fake)
    summary = pgbackrest.info_summary(config, tool=tool, now=NOW, probe_timeout=2)
    by_name = dict((r["name"], r) for r in summary["repos"])
    assert by_name["repo3"]["reachable"] is False and "does not answer" in by_name["repo3"]["status"]
    assert [u.split(":")[0] for u in summary["unreachable_repos"]] == ["repo3"]
    # the dead repository is never handed to pgBackRest: info ran per live repository
    info_calls = [c for c in fake.calls if c[-1] == "info"]
    assert sorted(fake.repo_of(c) for c in info_calls) == [1, 2]
    assert by_name["repo2"]["wal_max_time"] == "2026-11-24T11:58:00Z"
    assert by_name["repo2"]["wal_max_age_seconds"] == 120
    assert summary["newest_archived_wal_age_seconds"] == 120
    assert summary["table"][0].startswith("REPO")
    assert any(line.startswith("repo3") and "UNREACHABLE" in line for line in summary["table"])


def test_info_summary_refuses_an_unknown_repository(tmp_path, listener):
    config = write_config(tmp_path, {2: listener})
    with pytest.raises(DRError) as err:
        pgbackrest.info_summary(config, repos=[5], tool=pgbackrest.PgBackRest(config, runner=FakePgBackRest([])))
    assert "repo5 is not configured" in str(err.value) and "repo1, repo2" in str(err.value)


# ---------------------------------------------------------------------------------------------
# Backups

def test_backup_runs_one_command_per_repository_and_reports_each(tmp_path, listener):
    config = write_config(tmp_path, {2: listener, 3: listener})
    fake = FakePgBackRest([])
    result = pgbackrest.backup(config, backup_type="incr", process_max=4, tool=pgbackrest.PgBackRest(config, runner=fake))
    backups = [c for c in fake.calls if c[-1] == "backup"]
    assert [fake.repo_of(c) for c in backups] == [1, 2, 3]
    assert all("--type=incr" in c and "--process-max=4" in c and "--start-fast" in c for c in backups)
    assert result["labels"] == {"repo1": "20261124-120000F_1", "repo2": "20261124-120000F_2",
                                "repo3": "20261124-120000F_3"}
    first = result["repos"][0]
    assert (first["type"], first["requested_type"], first["duration_seconds"], first["repo_size"]) == (
        "full", "incr", 30, 300)
    assert "incr backup has been changed to full" in first["warnings"][0]
    assert result["changed"] is True and result["failed_repos"] == []


def test_backup_failure_in_one_repository_does_not_stop_the_others(tmp_path, listener):
    dead = closed_port()
    config = write_config(tmp_path, {2: listener, 3: dead})
    fake = FakePgBackRest([], failing_backup_repos=(1,))
    with pytest.raises(DRError) as err:
        pgbackrest.backup(config, backup_type="full", tool=pgbackrest.PgBackRest(config, runner=fake),
                          probe_timeout=2)
    message = str(err.value)
    assert message.startswith("backup failed in repo1: [082] WAL segment")
    assert "repo3: unreachable: endpoint localhost:%d does not answer" % dead in message
    assert message.endswith("(made in repo2)")
    assert err.value.details["failed_repos"] == ["repo1", "repo3"]
    assert err.value.details["labels"] == {"repo2": "20261124-120000F_2"}
    # repo3 was never handed to pgBackRest
    assert [fake.repo_of(c) for c in fake.calls if c[-1] == "backup"] == [1, 2]


def test_backup_check_mode_runs_nothing(tmp_path, listener):
    config = write_config(tmp_path, {2: listener})
    fake = FakePgBackRest([])
    result = pgbackrest.backup(config, backup_type="full", repos=[2], check_mode=True,
                               tool=pgbackrest.PgBackRest(config, runner=fake))
    assert fake.calls == []
    assert [r["name"] for r in result["repos"]] == ["repo2"]
    assert result["repos"][0]["command"].endswith("--repo=2 --type=full --log-level-console=info --start-fast backup")
    assert result["msg"] == "would back up (full) to repo2"


def test_backup_rejects_unknown_type(tmp_path):
    with pytest.raises(DRError) as err:
        pgbackrest.backup(write_config(tmp_path, {}), backup_type="weekly")
    assert "weekly" in str(err.value)


# ---------------------------------------------------------------------------------------------
# Choosing the repository and backup for a restore

def plan(config, fake, **kwargs):
    return pgbackrest.plan_restore(config, tool=pgbackrest.PgBackRest(config, runner=fake), now=NOW,
                                   probe_timeout=2, **kwargs)


def test_restore_prefers_repo2_then_3_then_1(tmp_path, listener):
    config = write_config(tmp_path, {2: listener, 3: listener})
    chosen = plan(config, FakePgBackRest(sample_backups()))
    assert chosen["repo"] == 2 and chosen["backup"]["label"] == "20261124-020000F_20261124-030000I"
    assert chosen["fallbacks"] == [] and chosen["unreachable"] == []


def test_restore_falls_back_past_an_unreachable_repository_and_says_why(tmp_path, listener):
    dead = closed_port()
    config = write_config(tmp_path, {2: dead, 3: listener})
    fake = FakePgBackRest(sample_backups())
    chosen = plan(config, fake)
    assert chosen["repo"] == 3 and chosen["backup"]["label"] == "20261124-020100F"
    assert chosen["fallbacks"][0]["name"] == "repo2"
    assert chosen["fallbacks"][0]["reason"] == "unreachable: endpoint localhost:%d does not answer (connection refused)" % dead
    assert chosen["unreachable"] == ["repo2"]
    assert 2 not in [fake.repo_of(c) for c in fake.calls]


def test_restore_falls_back_past_a_repository_pgbackrest_cannot_read(tmp_path, listener):
    config = write_config(tmp_path, {2: listener, 3: listener})
    fake = FakePgBackRest(sample_backups(), statuses={2: (99, "[ServiceError] TLS error unexpected eof")})
    chosen = plan(config, fake, repos=[2, 1])
    assert chosen["repo"] == 1
    assert chosen["fallbacks"] == [{"repo": 2, "name": "repo2", "reason": "unreachable: [ServiceError] TLS error "
                                                                          "unexpected eof"}]


def test_time_target_picks_newest_backup_ended_before_it(tmp_path, listener):
    config = write_config(tmp_path, {2: listener, 3: listener})
    chosen = plan(config, FakePgBackRest(sample_backups()), target="time", target_time="2026-11-24T02:30:00Z")
    assert chosen["backup"]["label"] == "20261124-020000F"  # the incr ended after 02:30
    assert chosen["target_time"] == "2026-11-24T02:30:00Z"
    later = plan(config, FakePgBackRest(sample_backups()), target="time", target_time="2026-11-24T05:00:00+01:00")
    assert later["backup"]["label"] == "20261124-020000F_20261124-030000I"


def test_time_before_oldest_backup_is_refused_naming_both_bounds(tmp_path, listener):
    config = write_config(tmp_path, {2: listener, 3: listener})
    with pytest.raises(DRError) as err:
        plan(config, FakePgBackRest(sample_backups()), target="time", target_time="2026-11-24T01:00:00Z")
    assert str(err.value) == (
        "target_time 2026-11-24T01:00:00Z is before the oldest backup: restores can reach from 2026-11-24T02:03:00Z "
        "(end of backup 20261124-015900F in repo1) to 2026-11-24T11:59:00Z (newest WAL 00000001000000000000000A in "
        "repo2)")


def test_time_after_the_archive_and_in_the_future_are_refused(tmp_path, listener):
    config = write_config(tmp_path, {2: listener, 3: listener})
    with pytest.raises(DRError) as err:
        plan(config, FakePgBackRest(sample_backups()), target="time", target_time="2026-11-24T11:59:30Z")
    assert str(err.value).startswith("target_time 2026-11-24T11:59:30Z is after the end of the WAL archive: "
                                     "restores can reach from 2026-11-24T02:03:00Z")
    with pytest.raises(DRError) as err:
        plan(config, FakePgBackRest(sample_backups()), target="time", target_time="2026-11-25T00:00:00Z")
    assert str(err.value).startswith("target_time 2026-11-25T00:00:00Z is in the future (now 2026-11-24T12:00:00Z): "
                                     "restores can reach from")


@pytest.mark.parametrize("kwargs, words", [
    (dict(target="yesterday"), "restore target 'yesterday' is not one of latest, time, immediate"),
    (dict(target="time"), "target time requires target_time"),
    (dict(target="time", target_time="last tuesday"), "target_time 'last tuesday' is not a timestamp"),
    (dict(target="latest", target_time="2026-11-24T01:00:00Z"), "target_time is only used with target: time"),
    (dict(repos=[7]), "repo7 is not configured"),
])
def test_bad_targets_are_refused_before_anything_is_read(tmp_path, listener, kwargs, words):
    config = write_config(tmp_path, {2: listener})
    fake = FakePgBackRest(sample_backups())
    with pytest.raises(DRError) as err:
        plan(config, fake, **kwargs)
    assert words in str(err.value)
    assert fake.calls == []


def test_no_repository_with_a_backup(tmp_path, listener):
    config = write_config(tmp_path, {2: listener})
    with pytest.raises(DRError) as err:
        plan(config, FakePgBackRest([]), target="immediate")
    assert str(err.value) == ("no repository can restore to the end of a backup (immediate): repo2 holds no backup; "
                              "repo1 holds no backup")


# ---------------------------------------------------------------------------------------------
# The restore itself: the target directory is protected

def restore(config, fake, pg_path, system_id="42", **kwargs):
    """pgbackrest.restore with the fake pgBackRest; `system_id` is what pg_controldata would read."""
    return pgbackrest.restore(config, str(pg_path), tool=pgbackrest.PgBackRest(config, runner=fake), now=NOW,
                              probe_timeout=2, controldata=lambda path: system_id, **kwargs)


def test_restore_writes_the_command_pgbackrest_needs(tmp_path, listener):
    config = write_config(tmp_path, {2: listener, 3: listener})
    target = tmp_path / "scratch" / "data"
    fake = FakePgBackRest(sample_backups())
    result = restore(config, fake, target, target="time", target_time="2026-11-24T02:30:00.25Z", archive_mode="off",
                     recovery_options={"recovery_target_inclusive": "false"}, target_timeline="current")
    command = [c for c in fake.calls if c[-1] == "restore"][0]
    assert command[:4] == ["pgbackrest", "--config=%s" % config, "--stanza=auditron", "--repo=2"]
    assert command[4:-1] == ["--set=20261124-020000F", "--pg1-path=%s" % target, "--archive-mode=off",
                             "--log-level-console=info", "--type=time", "--target=2026-11-24 02:30:00.250000+00",
                             "--target-action=promote", "--target-timeline=current",
                             "--recovery-option=recovery_target_inclusive=false"]
    assert target.is_dir() and oct(target.stat().st_mode & 0o777) == "0o700"
    assert result["repo_name"] == "repo2" and result["target"]["time"] == "2026-11-24T02:30:00.250000Z"
    assert result["backup"]["label"] == "20261124-020000F"


def test_standby_restore(tmp_path, listener):
    config = write_config(tmp_path, {2: listener})
    fake = FakePgBackRest(sample_backups())
    restore(config, fake, tmp_path / "standby", standby=True, archive_mode="preserve")
    command = [c for c in fake.calls if c[-1] == "restore"][0]
    assert "--type=standby" in command and "--archive-mode=preserve" in command
    assert not [a for a in command if a.startswith("--target")]
    with pytest.raises(DRError) as err:
        restore(config, fake, tmp_path / "standby2", standby=True, target="immediate")
    assert "standby: true follows the archive to its end" in str(err.value)


def test_check_mode_says_which_repository_and_backup_and_writes_nothing(tmp_path, listener):
    config = write_config(tmp_path, {2: closed_port(), 3: listener})
    target = tmp_path / "new"
    fake = FakePgBackRest(sample_backups())
    result = restore(config, fake, target, check_mode=True)
    assert not target.exists()
    assert not [c for c in fake.calls if c[-1] == "restore"]
    assert result["msg"] == "would restore backup 20261124-020100F from repo3 into %s" % target
    assert result["fallbacks"][0]["name"] == "repo2"


def test_non_empty_target_is_refused_and_left_alone(tmp_path, listener):
    config = write_config(tmp_path, {2: listener})
    target = tmp_path / "busy"
    target.mkdir()
    (target / "important.txt").write_text("keep me")
    fake = FakePgBackRest(sample_backups())
    with pytest.raises(DRError) as err:
        restore(config, fake, target)
    assert str(err.value) == ("pg_path %s is not empty (1 entries): restore into a new directory, or use delta: true "
                              "for a stopped cluster of the same system, or force: true" % target)
    assert fake.calls == [] and (target / "important.txt").read_text() == "keep me"
    with pytest.raises(DRError) as err:
        restore(config, fake, target, delta=True)
    assert "holds no PostgreSQL cluster" in str(err.value)
    restore(config, fake, target, force=True)
    command = [c for c in fake.calls if c[-1] == "restore"][0]
    assert "--delta" in command and "--force" in command


def fake_cluster(path, pid=None):
    path.mkdir(parents=True)
    (path / "PG_VERSION").write_text("15\n")
    (path / "global").mkdir()
    if pid:
        (path / "postmaster.pid").write_text("%d\n%s\n" % (pid, path))


def test_delta_needs_the_same_system(tmp_path, listener):
    config = write_config(tmp_path, {2: listener})
    target = tmp_path / "cluster"
    fake_cluster(target)
    fake = FakePgBackRest(sample_backups())
    with pytest.raises(DRError) as err:
        restore(config, fake, target, delta=True, system_id="123")
    assert "holds a cluster of system 123, not %d" % SYSTEM_ID in str(err.value)
    assert not [c for c in fake.calls if c[-1] == "restore"]
    restore(config, fake, target, delta=True, system_id=str(SYSTEM_ID))
    command = [c for c in fake.calls if c[-1] == "restore"][0]
    assert "--delta" in command and "--force" not in command


def test_running_server_in_target_is_always_refused(tmp_path, listener):
    config = write_config(tmp_path, {2: listener})
    target = tmp_path / "running"
    fake_cluster(target, pid=os.getpid())
    with pytest.raises(DRError) as err:
        restore(config, FakePgBackRest(sample_backups()), target, force=True)
    assert "has a running PostgreSQL server (pid %d)" % os.getpid() in str(err.value)


def test_relative_target_is_refused(tmp_path, listener):
    with pytest.raises(DRError):
        restore(write_config(tmp_path, {2: listener}), FakePgBackRest([]), "relative/data")


def test_recovery_settings_are_read_back(tmp_path):
    (tmp_path / "postgresql.auto.conf").write_text(
        "archive_command = 'x'\n# Recovery settings generated by pgBackRest restore\narchive_mode = 'off'\n"
        "restore_command = 'pgbackrest --repo=3 --stanza=auditron archive-get %f \"%p\"'\n"
        "recovery_target_time = '2026-11-24 02:30:00+00'\n")
    (tmp_path / "recovery.signal").write_text("")
    found = pgbackrest.recovery_settings(str(tmp_path))
    assert found["restore_command"] == 'pgbackrest --repo=3 --stanza=auditron archive-get %f "%p"'
    assert found["archive_mode"] == "off" and found["recovery_signal"] and not found["standby_signal"]


def test_kms_blob_must_be_base64():
    with pytest.raises(DRError) as err:
        pgbackrest.unwrap_cipher_pass("not base64 !!", {})
    assert str(err.value) == "cipher_pass_kms_blob is not base64 KMS ciphertext"
