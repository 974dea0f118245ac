"""Writes through a real mount: when files reach the server, and what a rename before that does."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

UPLOAD = "POST /filesystem/{system_name}/ops/upload"


def test_new_file_reaches_server_at_close(served: Path, mnt: Path):
    fd = os.open(mnt / "new.txt", os.O_WRONLY | os.O_CREAT, 0o640)
    os.write(fd, b"first line\n")
    assert not (served / "new.txt").exists()
    os.close(fd)
    assert (served / "new.txt").read_bytes() == b"first line\n"
    assert (served / "new.txt").stat().st_mode & 0o777 == 0o640


def test_fsync_uploads_before_close(served: Path, mnt: Path):
    fd = os.open(mnt / "synced", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"abc")
        os.fsync(fd)
        assert (served / "synced").read_bytes() == b"abc"
        os.write(fd, b"def")
    finally:
        os.close(fd)
    assert (served / "synced").read_bytes() == b"abcdef"


def test_unsaved_file_is_listed(mnt: Path):
    fd = os.open(mnt / "pending", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"12345")
        assert "pending" in os.listdir(mnt)
        assert os.stat(mnt / "pending").st_size == 5
    finally:
        os.close(fd)


def test_rename_before_upload_uploads_once(served: Path, mnt: Path, server):
    server.reset_counters()
    fd = os.open(mnt / ".part", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"a")
        os.rename(mnt / ".part", mnt / "final")
        os.write(fd, b"b")
    finally:
        os.close(fd)
    assert (served / "final").read_bytes() == b"ab"
    assert not (served / ".part").exists()
    assert server.counters().get(UPLOAD, 0) == 1


def test_rename_unsaved_over_existing_file(served: Path, mnt: Path):
    (served / "target").write_bytes(b"old content")
    fd = os.open(mnt / "fresh", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"new")
        os.rename(mnt / "fresh", mnt / "target")
        assert (mnt / "target").read_bytes() == b"new"
    finally:
        os.close(fd)
    assert (served / "target").read_bytes() == b"new"
    assert not (served / "fresh").exists()


def test_rmdir_with_unsaved_file_fails(served: Path, mnt: Path):
    (mnt / "d").mkdir()
    fd = os.open(mnt / "d" / "inside", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with pytest.raises(OSError) as raised:
            os.rmdir(mnt / "d")
        assert raised.value.errno == errno.ENOTEMPTY
        assert (served / "d").is_dir()
    finally:
        os.close(fd)
    assert (served / "d" / "inside").read_bytes() == b""


def test_unlink_unsaved_file_sends_nothing(served: Path, mnt: Path, server):
    server.reset_counters()
    fd = os.open(mnt / "scratch", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"temporary")
    os.unlink(mnt / "scratch")
    os.close(fd)
    assert not (served / "scratch").exists()
    assert server.counters().get(UPLOAD, 0) == 0
    assert "scratch" not in os.listdir(mnt)


def test_touch_creates_empty_file_quickly(served: Path, mnt: Path):
    # ops/upload of 0 bytes would hang until the command timeout; the archive route does not.
    (mnt / "empty").touch()
    assert (served / "empty").exists()
    assert (served / "empty").stat().st_size == 0
    assert not [name for name in os.listdir(served) if name.startswith(".firecrest-fs-")]


def test_odd_names_take_archive_route(served: Path, mnt: Path):
    for name in ['quote"d', "back\\slash", "per%cent", "tab\there"]:
        (mnt / name).write_bytes(name.encode())
        assert (served / name).read_bytes() == name.encode(), name


def test_rename_open_file_then_patch(served: Path, mnt: Path):
    with open(mnt / ".t", "w") as handle:
        handle.write("a")
        handle.flush()
        os.rename(mnt / ".t", mnt / "final")
        handle.write("b")
    assert (served / "final").read_bytes() == b"ab"
    with open(mnt / "final", "r+") as handle:
        handle.seek(1)
        handle.write("Z")
    assert (served / "final").read_bytes() == b"aZ"
    assert (mnt / "final").read_bytes() == b"aZ"
    assert sorted(os.listdir(served)) == ["final"]
