"""Real programs on a real mount: cp -a, rsync, tar, vim and git, checked on the server."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

OLD = 981158400  # 2001-02-03 00:00:00 UTC


def run(*command: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def make_tree(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "sub" / "b.bin").write_bytes(bytes(range(256)) * 40)
    (root / "sub" / "deeper" / "empty").write_bytes(b"")
    (root / "script.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "script.sh").chmod(0o750)
    os.symlink("../a.txt", root / "sub" / "up-link")
    for path in [root / "a.txt", root / "sub" / "b.bin", root / "sub" / "deeper" / "empty", root / "script.sh"]:
        os.utime(path, (OLD, OLD))


def snapshot(root: Path) -> dict[str, tuple]:
    """Return every entry's type, mode, mtime, size, content or link target, by relative path."""
    entries = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            detail = os.readlink(path)
        elif stat.S_ISREG(info.st_mode):
            detail = path.read_bytes()
        else:
            detail = None
        mtime = None if stat.S_ISDIR(info.st_mode) or stat.S_ISLNK(info.st_mode) else int(info.st_mtime)
        entries[str(path.relative_to(root))] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), mtime, detail)
    return entries


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "source"
    root.mkdir()
    make_tree(root)
    return root


def test_cp_archive_keeps_times(tmp_path: Path, served: Path, mnt: Path):
    scratch = tmp_path / "h"
    scratch.write_bytes(b"h")
    os.utime(scratch, (OLD, OLD))
    result = run("cp", "-a", str(scratch), str(mnt / "h"))
    assert result.returncode == 0, result.stderr
    assert run("stat", "-c", "%Y", str(mnt / "h")).stdout.strip() == str(OLD)
    assert int((served / "h").stat().st_mtime) == OLD


def test_cp_archive_tree(source: Path, served: Path, mnt: Path):
    result = run("cp", "-a", f"{source}/.", str(mnt / "copy"))
    assert result.returncode == 0, result.stderr
    assert snapshot(served / "copy") == snapshot(source)


def test_rsync_empty_file(tmp_path: Path, served: Path, mnt: Path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    result = run("rsync", "-a", str(empty), f"{mnt}/")
    assert result.returncode == 0, result.stderr
    assert (mnt / "empty").stat().st_size == 0
    assert (served / "empty").stat().st_size == 0


def test_rsync_twice_copies_nothing(source: Path, served: Path, mount_factory):
    mount = mount_factory("")  # default caches, as a user runs it
    first = run("rsync", "-a", f"{source}/", f"{mount.path}/")
    assert first.returncode == 0, first.stderr
    assert snapshot(served) == snapshot(source)
    second = run("rsync", "-ai", f"{source}/", f"{mount.path}/")
    assert second.returncode == 0, second.stderr
    assert second.stdout == ""


def test_rsync_twice_after_remount(source: Path, served: Path, mount_factory):
    first = mount_factory("")
    assert run("rsync", "-a", f"{source}/", f"{first.path}/").returncode == 0
    first.stop()
    second = mount_factory("")
    again = run("rsync", "-ai", f"{source}/", f"{second.path}/")
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""


def test_tar_extract_keeps_metadata(source: Path, tmp_path: Path, served: Path, mnt: Path):
    archive = tmp_path / "tree.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(source, arcname=".")
    (mnt / "x").mkdir()
    result = run("tar", "-xf", str(archive), "-C", str(mnt / "x"))
    assert result.returncode == 0, result.stderr
    assert snapshot(served / "x") == snapshot(source)


def test_tar_create_from_mount(source: Path, tmp_path: Path, served: Path, mnt: Path):
    shutil.copytree(source, served / "t", symlinks=True)
    result = run("tar", "-cf", str(tmp_path / "out.tar"), "-C", str(mnt / "t"), ".")
    assert result.returncode == 0, result.stderr
    (tmp_path / "unpacked").mkdir()
    assert run("tar", "-xf", str(tmp_path / "out.tar"), "-C", str(tmp_path / "unpacked")).returncode == 0
    assert snapshot(tmp_path / "unpacked") == snapshot(source)


def vim(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run vim with its default settings on a pseudo-terminal, as a person would."""
    command = " ".join(["vim", "-N", "-u", "DEFAULTS", "-i", "NONE", *arguments])
    return subprocess.run(["script", "-qec", command, "/dev/null"], cwd=cwd, capture_output=True,
                          timeout=60, env={**os.environ, "TERM": "xterm"})


def test_vim_new_file_leaves_no_swap(served: Path, mnt: Path):
    result = vim("-c", "'normal ihello'", "-c", "wq", "new.txt", cwd=mnt)
    assert result.returncode == 0
    assert (served / "new.txt").read_bytes() == b"hello\n"
    assert [name for name in os.listdir(served) if name.endswith((".swp", ".swo", "~"))] == []
    assert [name for name in os.listdir(mnt) if name.endswith((".swp", ".swo", "~"))] == []


def test_vim_edit_and_save(served: Path, mnt: Path):
    (served / "notes.txt").write_bytes(b"line one\n")
    (served / "notes.txt").chmod(0o640)
    result = vim("-c", "'normal Goline two'", "-c", "wq", "notes.txt", cwd=mnt)
    assert result.returncode == 0
    assert (served / "notes.txt").read_bytes() == b"line one\nline two\n"
    assert stat.S_IMODE((served / "notes.txt").stat().st_mode) == 0o640
    assert [name for name in os.listdir(served) if name != "notes.txt"] == []
    again = vim("-c", "wq", "notes.txt", cwd=mnt)
    assert b"ATTENTION" not in again.stdout


def test_git_commit_inside_mount(served: Path, mount_factory):
    mnt = mount_factory("").path  # default caches: git stats every file many times
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    repo = mnt / "repo"
    repo.mkdir()
    assert run("git", "init", "-q", cwd=repo).returncode == 0
    (repo / "file.txt").write_text("tracked\n")
    assert run("git", "add", "file.txt", cwd=repo, env=env).returncode == 0
    result = run("git", "commit", "-q", "-m", "first", cwd=repo, env=env)
    assert result.returncode == 0, result.stderr
    log = run("git", "log", "--format=%s", cwd=served / "repo", env=env)
    assert log.stdout.strip() == "first"
    assert run("git", "fsck", "--strict", cwd=served / "repo").returncode == 0
