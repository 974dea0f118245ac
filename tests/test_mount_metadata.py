"""Metadata through a real mount: symlinks, times, owners, modes and names, checked on the server."""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path

import pytest

CHOWN = "PUT /filesystem/{system_name}/ops/chown"
WINTER = int(time.mktime((2021, 1, 15, 10, 30, 0, 0, 0, -1)))
SUMMER = int(time.mktime((2021, 7, 15, 10, 30, 0, 0, 0, -1)))


# -- symlinks --------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["../sibling/target", "plain-name", "/usr/bin/python3", "dir/with space/x"])
def test_symlink_any_target(served: Path, mnt: Path, target: str):
    os.symlink(target, mnt / "link")
    assert os.readlink(served / "link") == target
    assert os.readlink(mnt / "link") == target


def test_symlink_inside_file_systems(served: Path, mnt: Path):
    (served / "real").write_text("content")
    os.symlink(str(served / "real"), mnt / "absolute")
    assert os.readlink(served / "absolute") == str(served / "real")
    assert (mnt / "absolute").read_text() == "content"


def test_symlink_survives_remount(served: Path, mount_factory):
    first = mount_factory()
    os.symlink("../up/there", first.path / "kept")
    first.stop()
    second = mount_factory()
    assert os.readlink(second.path / "kept") == "../up/there"


# -- times -----------------------------------------------------------------------------


def test_utime_closed_file(served: Path, mnt: Path):
    (mnt / "f").write_bytes(b"data")
    os.utime(mnt / "f", (WINTER, WINTER))
    assert (served / "f").stat().st_mtime == WINTER
    assert (mnt / "f").stat().st_mtime == WINTER
    assert (served / "f").read_bytes() == b"data"


def test_futimens_before_close(served: Path, mnt: Path):
    fd = os.open(mnt / "g", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"payload")
        os.utime(fd, (SUMMER, SUMMER))
    finally:
        os.close(fd)
    assert (served / "g").stat().st_mtime == SUMMER
    assert (served / "g").read_bytes() == b"payload"


def test_write_after_utime_moves_mtime(served: Path, mnt: Path):
    fd = os.open(mnt / "h", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.utime(fd, (WINTER, WINTER))
        os.write(fd, b"later")
    finally:
        os.close(fd)
    assert (served / "h").stat().st_mtime > WINTER


def test_utime_directory_and_symlink(served: Path, mnt: Path):
    (mnt / "d").mkdir()
    os.symlink("d", mnt / "l")
    os.utime(mnt / "d", (WINTER, WINTER))
    os.utime(mnt / "l", (SUMMER, SUMMER), follow_symlinks=False)
    assert (served / "d").stat().st_mtime == WINTER
    assert os.lstat(served / "l").st_mtime == SUMMER
    assert os.readlink(served / "l") == "d"


def test_times_survive_remount(served: Path, mount_factory):
    first = mount_factory()
    (first.path / "kept").write_bytes(b"x")
    os.utime(first.path / "kept", (WINTER, WINTER))
    first.stop()
    second = mount_factory("")  # default caches: times come from the listing
    assert (second.path / "kept").stat().st_mtime == WINTER


@pytest.mark.parametrize("server", [{"timezone": "Europe/Zurich"}], indirect=True)
def test_listed_times_across_daylight_saving(served: Path, mount_factory):
    for name, moment in (("winter", WINTER), ("summer", SUMMER)):
        (served / name).write_bytes(b"x")
        os.utime(served / name, (moment, moment))
    mount = mount_factory("")  # the listing, not ops/stat, gives these times
    assert (mount.path / "winter").stat().st_mtime == WINTER
    assert (mount.path / "summer").stat().st_mtime == SUMMER


# -- owners and modes ------------------------------------------------------------------


def test_chown_to_self_sends_nothing(served: Path, mnt: Path, server):
    (mnt / "mine").write_bytes(b"x")
    server.reset_counters()
    os.chown(mnt / "mine", os.getuid(), os.getgid())
    assert server.counters().get(CHOWN, 0) == 0


@pytest.mark.skipif(os.getuid() != 0, reason="only root may give files away")
def test_chown_other_user_reaches_server(served: Path, mnt: Path):
    (mnt / "theirs").write_bytes(b"x")
    os.chown(mnt / "theirs", 12345, 23456)
    assert (served / "theirs").stat().st_uid == 12345
    assert (served / "theirs").stat().st_gid == 23456
    assert (mnt / "theirs").stat().st_uid == 12345


def test_chown_refused_gives_eperm(served: Path, mount, server):
    (served / "locked").write_bytes(b"x")
    server.set_faults([{"route": "/filesystem/{system_name}/ops/chown", "kind": "status", "status": 403}])
    mount.expect_log(r"chown")
    with pytest.raises(OSError) as raised:
        os.chown(mount.path / "locked", 4242, -1)
    assert raised.value.errno == errno.EPERM


@pytest.mark.parametrize(("umask", "requested", "expected"), [(0o022, 0o666, 0o644), (0o077, 0o666, 0o600),
                                                             (0, 0o640, 0o640), (0o022, 0o755, 0o755)])
def test_open_mode_with_umask(served: Path, mnt: Path, umask: int, requested: int, expected: int):
    previous = os.umask(umask)
    try:
        fd = os.open(mnt / "m", os.O_WRONLY | os.O_CREAT, requested)
        os.write(fd, b"x")
        os.close(fd)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((served / "m").stat().st_mode) == expected


def test_mkdir_mode_with_umask(served: Path, mnt: Path):
    previous = os.umask(0o027)
    try:
        os.mkdir(mnt / "private", 0o777)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((served / "private").stat().st_mode) == 0o750


def test_chmod_special_bits(served: Path, mnt: Path):
    (mnt / "tool").write_bytes(b"#!/bin/sh\n")
    os.chmod(mnt / "tool", 0o4755)
    assert stat.S_IMODE((served / "tool").stat().st_mode) == 0o4755
    assert stat.S_IMODE((mnt / "tool").stat().st_mode) == 0o4755


# -- names -----------------------------------------------------------------------------


AWKWARD = [b"a\x13b", b"new\nline", b"sp ace", "ünï".encode(), b"back\\slash", b'quo"te', b"tab\tname"]


def test_awkward_remote_names_listed_and_read(served: Path, mnt: Path):
    folder = os.fsencode(served / "dir")
    os.mkdir(folder)
    for name in AWKWARD:
        with open(os.path.join(folder, name), "wb") as handle:
            handle.write(b"content of " + name)
    listed = sorted(os.listdir(os.fsencode(mnt / "dir")))
    assert listed == sorted(AWKWARD)
    for name in AWKWARD:
        with open(os.path.join(os.fsencode(mnt / "dir"), name), "rb") as handle:
            assert handle.read() == b"content of " + name


def test_awkward_names_created_exactly(served: Path, mnt: Path):
    for name in AWKWARD:
        with open(os.path.join(os.fsencode(mnt), name), "wb") as handle:
            handle.write(name)
    assert sorted(os.listdir(os.fsencode(served))) == sorted(AWKWARD)
    for name in AWKWARD:
        with open(os.path.join(os.fsencode(served), name), "rb") as handle:
            assert handle.read() == name


def test_quote_name_leaves_nothing(served: Path, mount):
    mount.expect_log(r"single quote")
    for action in (lambda p: p.write_bytes(b"x"), lambda p: p.mkdir(), lambda p: os.symlink("t", p)):
        with pytest.raises(OSError) as raised:
            action(mount.path / "it's")
        assert raised.value.errno == errno.EINVAL
    assert os.listdir(served) == []


def test_longest_name_works(served: Path, mnt: Path):
    name = "n" * 255
    (mnt / name).write_bytes(b"long")
    assert (served / name).read_bytes() == b"long"
    assert name in os.listdir(mnt)
    (mnt / name).rename(mnt / ("m" * 255))
    assert (served / ("m" * 255)).read_bytes() == b"long"


def test_name_too_long_fails(served: Path, mnt: Path):
    with pytest.raises(OSError) as raised:
        (mnt / ("n" * 256)).write_bytes(b"x")
    assert raised.value.errno == errno.ENAMETOOLONG
    assert os.listdir(served) == []


@pytest.mark.skipif(os.getuid() != 0, reason="only root may give files away")
def test_chown_owner_only(served: Path, mnt: Path):
    (served / "f").write_bytes(b"x")
    os.chown(served / "f", 0, 4321)
    os.chown(mnt / "f", 1234, -1)
    assert (served / "f").stat().st_uid == 1234
    assert (served / "f").stat().st_gid == 4321


@pytest.mark.skipif(os.getuid() != 0, reason="only root may give files away")
def test_chown_back_to_self(served: Path, mnt: Path):
    (served / "f").write_bytes(b"x")
    os.chown(served / "f", 2, 3)
    os.chown(mnt / "f", os.getuid(), os.getgid())
    assert (served / "f").stat().st_uid == os.getuid()
    assert (served / "f").stat().st_gid == os.getgid()


@pytest.mark.parametrize("name", [b"lit\\nb", b"c\\101", b"x\\ty", b"a\\\\b"])
def test_backslash_names_read_literally(served: Path, mnt: Path, name: bytes):
    with open(os.path.join(os.fsencode(served), name), "wb") as handle:
        handle.write(b"literal")
    assert os.listdir(os.fsencode(mnt)) == [name]
    with open(os.path.join(os.fsencode(mnt), name), "rb") as handle:
        assert handle.read() == b"literal"


@pytest.mark.parametrize("target", ["c:\\temp\\x41", "a\\nb", "sp ace/q\"u\\b", "a\\\\b", "it's"])
def test_backslash_link_targets_exact(served: Path, mount_factory, target: str):
    os.symlink(target, served / "link")
    mount = mount_factory("")
    assert os.readlink(mount.path / "link") == target


def test_quote_in_link_target(served: Path, mnt: Path):
    os.symlink("it's", mnt / "quoted")
    assert os.readlink(served / "quoted") == "it's"


def test_user_file_with_internal_prefix_shown(served: Path, mnt: Path):
    (served / ".firecrest-fs-mine").write_bytes(b"mine")
    assert ".firecrest-fs-mine" in os.listdir(mnt)
    assert (mnt / ".firecrest-fs-mine").read_bytes() == b"mine"


@pytest.mark.parametrize("server", [{"timezone": "Europe/Zurich"}], indirect=True)
def test_listed_times_before_1986(served: Path, mount_factory):
    moments = {"y1980": 316785600, "y1983": 425908800}
    for name, moment in moments.items():
        (served / name).write_bytes(b"x")
        os.utime(served / name, (moment, moment))
    mount = mount_factory("")
    for name, moment in moments.items():
        assert (mount.path / name).stat().st_mtime == moment, name


@pytest.mark.parametrize("server", [{"max_ops_file_size": 65536}], indirect=True)
def test_time_and_rename_near_upload_limit(served: Path, mnt: Path):
    content = os.urandom(65536 - 4096)  # above the download limit: only the mount's copy has it
    (mnt / "big").write_bytes(content)
    os.utime(mnt / "big", (WINTER, WINTER))
    assert (served / "big").stat().st_mtime == WINTER
    os.rename(mnt / "big", mnt / ("renamed-" + "n" * 200))
    assert (served / ("renamed-" + "n" * 200)).read_bytes() == content
    assert (served / ("renamed-" + "n" * 200)).stat().st_mtime == WINTER
