"""fileset: the engine of the file_set module, on a temporary directory."""

import os
import stat

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import common, fileset
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError


def mode_of(path):
    return stat.S_IMODE(os.stat(str(path)).st_mode)


def tree(directory):
    return dict((name, (directory / name).read_text()) for name in sorted(os.listdir(str(directory)))
                if (directory / name).is_file())


def test_writes_what_differs_and_a_second_run_changes_nothing(tmp_path):
    files = [{"path": str(tmp_path / "a.timer"), "content": "A\n"},
             {"path": str(tmp_path / "b.env"), "content": "B=1\n", "mode": "0600"}]
    first = fileset.sync(files)
    assert first["changed"] and first["written"] == sorted(f["path"] for f in files) and first["unchanged"] == 0
    assert tree(tmp_path) == {"a.timer": "A\n", "b.env": "B=1\n"}
    assert mode_of(tmp_path / "a.timer") == 0o644 and mode_of(tmp_path / "b.env") == 0o600
    second = fileset.sync(files)
    assert second == {"changed": False, "directories": [], "written": [], "removed": [], "unchanged": 2}
    files[0]["content"] = "A2\n"
    third = fileset.sync(files)
    assert third["written"] == [str(tmp_path / "a.timer")] and third["unchanged"] == 1
    assert (tmp_path / "a.timer").read_text() == "A2\n"


def test_a_mode_alone_is_set_without_rewriting(tmp_path):
    path = tmp_path / "unit.service"
    path.write_text("same\n")
    os.chmod(str(path), 0o600)
    inode = os.stat(str(path)).st_ino
    result = fileset.sync([{"path": str(path), "content": "same\n"}], default_mode=0o644, want_diff=True)
    assert result["written"] == [str(path)] and mode_of(path) == 0o644
    assert os.stat(str(path)).st_ino == inode                    # chmod, not a new file
    assert result["diff"][0]["before_header"].endswith("(mode 0600)")


def test_prune_removes_unlisted_matches_only(tmp_path):
    for name in ("auditron-dr-keep.timer", "auditron-dr-old.timer", "auditron-dr-old.service", "other.timer"):
        (tmp_path / name).write_text(name)
    (tmp_path / "auditron-dr-dir.timer").mkdir()                 # a directory is never removed
    result = fileset.sync([{"path": str(tmp_path / "auditron-dr-keep.timer"), "content": "auditron-dr-keep.timer"}],
                          prune=[{"directory": str(tmp_path), "patterns": ["auditron-dr-*.timer", "auditron-dr-*.service"]}])
    assert result["removed"] == [str(tmp_path / "auditron-dr-old.service"), str(tmp_path / "auditron-dr-old.timer")]
    assert sorted(os.listdir(str(tmp_path))) == ["auditron-dr-dir.timer", "auditron-dr-keep.timer", "other.timer"]
    assert not result["written"]


def test_prune_of_a_missing_directory_is_passed_over(tmp_path):
    result = fileset.sync([], prune=[{"directory": str(tmp_path / "nowhere"), "patterns": ["*"]}])
    assert result == {"changed": False, "directories": [], "written": [], "removed": [], "unchanged": 0}


def test_check_mode_says_what_would_change_and_changes_nothing(tmp_path):
    (tmp_path / "stale.env").write_text("old\n")
    (tmp_path / "kept.env").write_text("v1\n")
    before = tree(tmp_path)
    files = [{"path": str(tmp_path / "kept.env"), "content": "v2\n"}, {"path": str(tmp_path / "new.env"), "content": "n\n"}]
    result = fileset.sync(files, prune=[{"directory": str(tmp_path), "patterns": ["*.env"]}], check_mode=True,
                          want_diff=True)
    assert result["changed"] and result["written"] == [str(tmp_path / "kept.env"), str(tmp_path / "new.env")]
    assert result["removed"] == [str(tmp_path / "stale.env")]
    assert tree(tmp_path) == before
    by_header = dict((entry["after_header"], entry) for entry in result["diff"])
    assert by_header[str(tmp_path / "kept.env")]["before"] == "v1\n"
    assert by_header[str(tmp_path / "kept.env")]["after"] == "v2\n"
    assert by_header[str(tmp_path / "new.env")]["before_header"].endswith("(absent)")
    assert by_header[str(tmp_path / "stale.env") + " (absent)"]["before"] == "old\n"


@pytest.mark.parametrize("files, prune, fault", [
    ([{"path": "relative.env", "content": "x"}], None, "relative.env: path must be absolute"),
    ([{"path": "/nonexistent-auditron/a.env", "content": "x"}], None, "its directory /nonexistent-auditron does not exist"),
    ([{"path": "{d}/a.env", "content": "x"}, {"path": "{d}/a.env", "content": "y"}], None, "a.env: listed twice"),
    ([{"path": "{d}/a.env", "content": "x", "mode": "0999"}], None, "a.env: mode '0999' is not an octal mode"),
    ([{"path": "{d}/a.env", "content": "x", "mode": "17777"}], None, "a.env: mode '17777' is out of range"),
    ([{"path": "{d}/a.env", "content": None}], None, "a.env: content is missing"),
    ([{"path": "{d}/sub", "content": "x"}], None, "sub: is a directory"),
    ([{"path": "{d}/good.env", "content": "x"}], [{"directory": "{d}", "patterns": []}], "patterns are missing"),
    ([{"path": "{d}/good.env", "content": "x"}], [{"directory": "rel", "patterns": ["*"]}], "directory must be absolute"),
])
def test_bad_input_names_the_file_and_changes_nothing(tmp_path, files, prune, fault):
    (tmp_path / "sub").mkdir()
    (tmp_path / "old.env").write_text("old\n")

    def fill(entry):
        return dict((key, value.replace("{d}", str(tmp_path)) if isinstance(value, str) else value)
                    for key, value in entry.items())

    before = tree(tmp_path)
    with pytest.raises(DRError) as caught:
        fileset.sync([fill(f) for f in files], prune=[fill(p) for p in prune or []])
    assert fault in str(caught.value)
    assert tree(tmp_path) == before and not (tmp_path / "good.env").exists()


def test_check_mode_counts_a_file_in_a_directory_not_made_yet_as_new(tmp_path):
    """In check mode the task creating the directory did not run: the file would be written."""
    path = str(tmp_path / "not-yet" / "a.env")
    result = fileset.sync([{"path": path, "content": "x"}], check_mode=True)
    assert result["written"] == [path] and not (tmp_path / "not-yet").exists()
    with pytest.raises(DRError, match="does not exist"):
        fileset.sync([{"path": path, "content": "x"}])


def test_a_symlink_is_refused_not_followed(tmp_path):
    target = tmp_path / "target"
    target.write_text("keep\n")
    os.symlink(str(target), str(tmp_path / "link.env"))
    with pytest.raises(DRError, match="symbolic link"):
        fileset.sync([{"path": str(tmp_path / "link.env"), "content": "x"}])
    assert target.read_text() == "keep\n"


def test_modes_as_yaml_and_strings_read_alike():
    assert fileset.parse_mode(0o644, "m") == fileset.parse_mode("0644", "m") == fileset.parse_mode("644", "m") == 0o644
    with pytest.raises(DRError):
        fileset.parse_mode(True, "m")


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    def refuse(*args):
        raise OSError("disk full")
    monkeypatch.setattr(common.os, "replace", refuse)
    with pytest.raises(OSError):
        fileset.sync([{"path": str(tmp_path / "a.env"), "content": "x"}])
    assert os.listdir(str(tmp_path)) == []


# Directories: made in the same run as the files that go in them.

def test_directories_are_made_with_their_mode_before_the_files_and_a_second_run_changes_nothing(tmp_path):
    conf_dir, spool = tmp_path / "etc" / "pgbackrest", tmp_path / "var" / "spool"
    directories = [{"path": str(conf_dir), "mode": "0750"}, {"path": str(spool), "mode": "0700"}]
    files = [{"path": str(conf_dir / "pgbackrest.conf"), "content": "[global]\n", "mode": "0640"}]
    first = fileset.sync(files, directories=directories)
    assert first["changed"] and first["directories"] == [str(conf_dir), str(spool)]
    assert mode_of(conf_dir) == 0o750 and mode_of(spool) == 0o700 and mode_of(conf_dir / "pgbackrest.conf") == 0o640
    assert fileset.sync(files, directories=directories) == {
        "changed": False, "directories": [], "written": [], "removed": [], "unchanged": 3}
    os.chmod(str(spool), 0o755)
    again = fileset.sync(files, directories=directories)
    assert again["directories"] == [str(spool)] and again["written"] == [] and mode_of(spool) == 0o700


def test_a_create_only_directory_is_made_when_missing_and_never_changed(tmp_path):
    shared = tmp_path / "backups"
    directories = [{"path": str(shared), "mode": "0750", "create_only": True}]
    assert fileset.sync([], directories=directories)["directories"] == [str(shared)] and mode_of(shared) == 0o750
    os.chmod(str(shared), 0o775)  # another role's choice
    assert not fileset.sync([], directories=directories)["changed"] and mode_of(shared) == 0o775


def test_owner_and_group_are_set_and_compared(tmp_path):
    me, group = os.getuid(), os.getgid()
    directories = [{"path": str(tmp_path / "d"), "owner": str(me), "group": str(group)}]
    files = [{"path": str(tmp_path / "d" / "f"), "content": "x", "owner": str(me), "group": str(group)}]
    assert fileset.sync(files, directories=directories)["changed"]
    assert not fileset.sync(files, directories=directories)["changed"]
    assert os.stat(str(tmp_path / "d" / "f")).st_uid == me


def test_check_mode_lists_the_directories_and_files_it_would_make_and_makes_none(tmp_path):
    new_dir = tmp_path / "new"
    result = fileset.sync([{"path": str(new_dir / "f"), "content": "x"}],
                          directories=[{"path": str(new_dir), "mode": "0750"}], check_mode=True, want_diff=True)
    assert result["directories"] == [str(new_dir)] and result["written"] == [str(new_dir / "f")]
    assert not new_dir.exists()
    assert result["diff"][0]["before_header"] == "%s/ (absent)" % new_dir
    assert result["diff"][0]["after_header"] == "%s/ (directory, mode 0750)" % new_dir


@pytest.mark.parametrize("directories, fault", [
    ([{"path": "relative/dir"}], "path must be absolute"),
    ([{"path": "/tmp/x-%d" % os.getpid(), "owner": "no-such-user-auditron"}], "owner 'no-such-user-auditron' is not a user"),
    ([{"path": "/tmp/x-%d" % os.getpid(), "group": "no-such-group-auditron"}], "group 'no-such-group-auditron' is not a group"),
    ([{"path": "/tmp/x-%d" % os.getpid(), "mode": "0999"}], "is not an octal mode"),
])
def test_bad_directories_are_refused_by_name_and_nothing_is_made(tmp_path, directories, fault):
    target = tmp_path / "f"
    with pytest.raises(DRError) as err:
        fileset.sync([{"path": str(target), "content": "x"}], directories=directories)
    assert fault in str(err.value)
    assert not target.exists() and not os.path.exists("/tmp/x-%d" % os.getpid())


def test_a_file_where_a_directory_is_wanted_is_refused(tmp_path):
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(DRError, match="exists and is not a directory"):
        fileset.sync([], directories=[{"path": str(tmp_path / "taken")}])
