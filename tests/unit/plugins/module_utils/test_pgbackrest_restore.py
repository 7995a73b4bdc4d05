"""Restores with the pgBackRest engine, without pgBackRest: which repository and backup a
restore uses (preference order, fallbacks and why), time targets and their bounds, and the
refusals that protect a target directory.

The stand-ins (a recording pgBackRest, reachable and dead object-store ports) are those of
test_pgbackrest.py, in pgbackrest_fakes.py.
"""

import os

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import pgbackrest, pgbackrest_restore
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError
from tests.unit.plugins.module_utils.pgbackrest_fakes import (  # noqa: F401 pylint: disable=unused-import
    NOW, SYSTEM_ID, FakePgBackRest, closed_port, listener, sample_backups, write_config)


# ---------------------------------------------------------------------------------------------
# Choosing the repository and backup for a restore

def plan(config, fake, **kwargs):
    return pgbackrest_restore.plan_restore(config, tool=pgbackrest.PgBackRest(config, runner=fake), now=NOW,
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
    """pgbackrest_restore.restore with the fake pgBackRest; `system_id` is what pg_controldata would read."""
    return pgbackrest_restore.restore(config, str(pg_path), tool=pgbackrest.PgBackRest(config, runner=fake), now=NOW,
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
    found = pgbackrest_restore.recovery_settings(str(tmp_path))
    assert found["restore_command"] == 'pgbackrest --repo=3 --stanza=auditron archive-get %f "%p"'
    assert found["archive_mode"] == "off" and found["recovery_signal"] and not found["standby_signal"]


# ---------------------------------------------------------------------------------------------
# A run killed half-way: what its restore left is stopped and set aside, never restored over

def fake_pgbackrest_restore(pg_path):
    """A process whose command line is a pgBackRest restore into pg_path (a sleeping Python)."""
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel
    return subprocess.Popen(["pgbackrest", "-c", "import time; time.sleep(120)", "--stanza=auditron",
                             "--pg1-path=%s" % pg_path, "restore"], executable=sys.executable)


def test_leftover_restores_into_the_same_directory_are_found_and_stopped(tmp_path):
    target = tmp_path / "data"
    leftover = fake_pgbackrest_restore(target)
    other = fake_pgbackrest_restore(tmp_path / "other")
    try:
        import time  # pylint: disable=import-outside-toplevel
        deadline = time.monotonic() + 10
        while leftover.pid not in pgbackrest_restore.leftover_restores(str(target)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pgbackrest_restore.leftover_restores(str(target)) == [leftover.pid]
        assert pgbackrest_restore.stop_leftover_restores(str(target), timeout=5) == [leftover.pid]
        assert leftover.wait(5) is not None
        assert other.poll() is None                    # a restore into another directory is left alone
    finally:
        for process in (leftover, other):
            process.kill()
            process.wait()


def test_set_aside_moves_a_partial_restore_to_a_name_of_its_own_each_time(tmp_path, listener):
    config = write_config(tmp_path, {2: listener})
    target = tmp_path / "data"
    target.mkdir()
    (target / "base").mkdir()                           # what a killed restore left: no PG_VERSION yet
    (target / "base" / "1").write_text("half")
    fake = FakePgBackRest(sample_backups())
    check = restore(config, fake, target, set_aside_suffix=".pre-failover-X", check_mode=True)
    assert check["set_aside"] == str(target) + ".pre-failover-X" and (target / "base" / "1").exists()
    assert "moved to %s.pre-failover-X first" % target in check["msg"]
    first = restore(config, fake, target, set_aside_suffix=".pre-failover-X")
    assert first["set_aside"] == str(target) + ".pre-failover-X"
    assert (tmp_path / "data.pre-failover-X" / "base" / "1").read_text() == "half"
    assert target.is_dir() and "--force" not in [c for c in fake.calls if c[-1] == "restore"][0]
    (target / "again").write_text("second attempt")    # the same run tries again: a new name, not a skip
    second = restore(config, fake, target, set_aside_suffix=".pre-failover-X")
    assert second["set_aside"] == str(target) + ".pre-failover-X-2"
    assert (tmp_path / "data.pre-failover-X-2" / "again").exists()
    assert (tmp_path / "data.pre-failover-X" / "base" / "1").exists()
    empty = restore(config, fake, tmp_path / "fresh", set_aside_suffix=".pre-failover-X")
    assert empty["set_aside"] is None
