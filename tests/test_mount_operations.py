"""Each file operation through a real mount, checked in the directory the server serves.

The default `mount` fixture turns every cache off, so a change made in `served` shows
through the mount at once and each check reads the server's current state. The tests
share one server (see `module_server`), and each mounts its own folder of it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import random
import stat
import subprocess
import time
from pathlib import Path

import pytest

from mount_support import (
    DOWNLOAD,
    download_limit,
    errno_name,
    requests_to,
    shell,
    upload_limit,
    write_until_error,
)

CACHES_OFF = "dir_cache_ttl=0,entry_timeout=0,attr_timeout=0"
CACHES_DEFAULT = "dir_cache_ttl=10,entry_timeout=1,attr_timeout=1"

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
AT_FDCWD = -100

_libc = ctypes.CDLL(None, use_errno=True)


@pytest.fixture
def served(module_server, tmp_path: Path) -> Path:
    """Create a fresh folder of the shared server for this test. The mount shows only this folder."""
    root = Path(module_server.root) / tmp_path.name
    root.mkdir()
    return root


@pytest.fixture
def server(module_server):
    return module_server


def renameat2(source: Path, target: Path, flags: int) -> None:
    """Call renameat2(2) through glibc, which Python's os module does not expose."""
    result = _libc.renameat2(AT_FDCWD, os.fsencode(source), AT_FDCWD, os.fsencode(target), flags)
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(source))


def random_bytes(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def served_tree(root: Path) -> dict[str, bytes | None]:
    """Map every path under `root` to its bytes, or None for a folder or symlink."""
    tree: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        tree[relative] = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    return tree


def file_mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# -- listing and attributes ----------------------------------------------------------------


@pytest.fixture
def sample(served: Path) -> Path:
    """Fill `served` with text, an executable, a hidden file, a folder and three kinds of symlinks."""
    (served / "text.txt").write_bytes(b"hello\n")
    (served / "text.txt").chmod(0o640)
    (served / "run.sh").write_bytes(b"#!/bin/sh\necho run\n")
    (served / "run.sh").chmod(0o755)
    (served / "data").mkdir()
    (served / "data").chmod(0o750)
    (served / "data" / "values.bin").write_bytes(random_bytes(3000))
    (served / ".hidden").write_bytes(b"hidden\n")
    os.symlink("text.txt", served / "relative-link")
    os.symlink(served / "data", served / "absolute-link")
    os.symlink("missing/target", served / "dangling-link")
    return served


def test_lstat_matches_served_entries(sample: Path, mnt: Path):
    for name in sorted(os.listdir(sample)):
        remote = os.lstat(sample / name)
        mounted = os.lstat(mnt / name)
        assert stat.S_IFMT(mounted.st_mode) == stat.S_IFMT(remote.st_mode), name
        if not stat.S_ISLNK(remote.st_mode):
            assert stat.S_IMODE(mounted.st_mode) == stat.S_IMODE(remote.st_mode), name
        if not stat.S_ISDIR(remote.st_mode):
            assert mounted.st_size == remote.st_size, name


def test_ls_long_matches_served(sample: Path, mnt: Path):
    result = subprocess.run(["ls", "-lnA", "--time-style=+%s", str(mnt)], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()[1:]  # the first line is the "total"
    rows = {}
    for line in lines:
        permissions, _links, _uid, _gid, size, mtime, rest = line.split(maxsplit=6)
        name, _, target = rest.partition(" -> ")
        rows[name] = (permissions, int(size), int(mtime), target)

    assert sorted(rows) == sorted(os.listdir(sample))
    for name, (permissions, size, mtime, target) in rows.items():
        remote = os.lstat(sample / name)
        assert permissions == stat.filemode(remote.st_mode), name
        assert mtime == int(remote.st_mtime), name
        if not stat.S_ISDIR(remote.st_mode):
            assert size == remote.st_size, name
        if stat.S_ISLNK(remote.st_mode):
            assert target == os.readlink(sample / name), name


def test_symlink_targets_match_served(sample: Path, mnt: Path):
    for name in ("relative-link", "absolute-link", "dangling-link"):
        assert os.readlink(mnt / name) == os.readlink(sample / name), name


def test_relative_symlink_is_followed(sample: Path, mnt: Path):
    assert (mnt / "relative-link").read_bytes() == b"hello\n"


def test_mtimes_match_served(sample: Path, mnt: Path):
    for name in ("text.txt", "run.sh", "data"):
        assert int(os.stat(mnt / name).st_mtime) == int(os.stat(sample / name).st_mtime), name


def test_remote_owner_is_local_user(sample: Path, mnt: Path):
    mounted = os.stat(mnt / "text.txt")
    assert mounted.st_uid == os.getuid()
    assert mounted.st_gid == os.getgid()


# -- reading and copying -------------------------------------------------------------------


def test_cat_prints_text_file(served: Path, mnt: Path):
    text = "first line\nsecond line, with ümlauts\n".encode()
    (served / "notes.txt").write_bytes(text)
    result = subprocess.run(["cat", str(mnt / "notes.txt")], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == text


def test_read_binary_file_exactly(served: Path, mnt: Path):
    content = random_bytes(200_000) + bytes(range(256)) + b"\0" * 100
    (served / "blob.bin").write_bytes(content)
    assert (mnt / "blob.bin").read_bytes() == content


def test_read_at_offsets(served: Path, mnt: Path):
    content = random_bytes(10_000)
    (served / "blob.bin").write_bytes(content)
    with open(mnt / "blob.bin", "rb") as handle:
        handle.seek(4097)
        assert handle.read(10) == content[4097:4107]
        handle.seek(9_995)
        assert handle.read(100) == content[9_995:]


def test_cp_out_byte_exact(served: Path, mnt: Path, tmp_path: Path):
    (served / "blob.bin").write_bytes(random_bytes(300_000))
    copy = tmp_path / "copy.bin"
    result = subprocess.run(["cp", str(mnt / "blob.bin"), str(copy)], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    compared = subprocess.run(["cmp", str(served / "blob.bin"), str(copy)], capture_output=True, timeout=60)
    assert compared.returncode == 0, compared.stdout


def test_cp_in_byte_exact(served: Path, mnt: Path, tmp_path: Path):
    local = tmp_path / "local.bin"
    local.write_bytes(random_bytes(300_000))
    result = subprocess.run(["cp", str(local), str(mnt / "blob.bin")], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    compared = subprocess.run(["cmp", str(local), str(served / "blob.bin")], capture_output=True, timeout=60)
    assert compared.returncode == 0, compared.stdout


def test_cp_in_keeps_executable_mode(served: Path, mnt: Path, tmp_path: Path):
    local = tmp_path / "tool.sh"
    local.write_bytes(b"#!/bin/sh\n")
    local.chmod(0o755)
    result = subprocess.run(["cp", str(local), str(mnt / "tool.sh")], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert file_mode(served / "tool.sh") == 0o755


def test_cp_in_over_existing_file(served: Path, mnt: Path, tmp_path: Path):
    (served / "blob.bin").write_bytes(random_bytes(50_000, seed=2))
    local = tmp_path / "local.bin"
    local.write_bytes(random_bytes(20_000, seed=3))
    result = subprocess.run(["cp", str(local), str(mnt / "blob.bin")], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (served / "blob.bin").read_bytes() == local.read_bytes()


# -- folders -------------------------------------------------------------------------------


def test_mkdir_creates_on_server(served: Path, mnt: Path):
    os.mkdir(mnt / "new", 0o750)
    assert (served / "new").is_dir()
    assert file_mode(served / "new") == 0o750


def test_mkdir_parents_creates_nested(served: Path, mnt: Path):
    result = subprocess.run(["mkdir", "-p", str(mnt / "a" / "b" / "c")], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (served / "a" / "b" / "c").is_dir()


def test_mkdir_existing_name_eexist(served: Path, mnt: Path):
    (served / "taken").write_bytes(b"keep")
    with pytest.raises(OSError) as raised:
        os.mkdir(mnt / "taken")
    assert raised.value.errno == errno.EEXIST, errno_name(raised.value.errno)
    assert (served / "taken").read_bytes() == b"keep"


def test_rmdir_removes_empty_dir(served: Path, mnt: Path):
    (served / "empty").mkdir()
    os.rmdir(mnt / "empty")
    assert not (served / "empty").exists()


def test_rmdir_non_empty_enotempty(served: Path, mnt: Path):
    (served / "full" / "sub").mkdir(parents=True)
    (served / "full" / "sub" / "file.txt").write_bytes(b"keep me")
    before = served_tree(served)
    with pytest.raises(OSError) as raised:
        os.rmdir(mnt / "full")
    assert raised.value.errno == errno.ENOTEMPTY, errno_name(raised.value.errno)
    assert served_tree(served) == before


def test_rmdir_hidden_file_enotempty(served: Path, mnt: Path):
    (served / "dotted").mkdir()
    (served / "dotted").chmod(0o755)
    (served / "dotted" / ".hidden").write_bytes(b"keep me")
    with pytest.raises(OSError) as raised:
        os.rmdir(mnt / "dotted")
    assert raised.value.errno == errno.ENOTEMPTY, errno_name(raised.value.errno)
    assert (served / "dotted" / ".hidden").read_bytes() == b"keep me"
    # rmdir takes the folder's write permission away while it checks, and must give it back.
    assert file_mode(served / "dotted") == 0o755


def test_rmdir_of_file_enotdir(served: Path, mnt: Path):
    (served / "plain").write_bytes(b"keep")
    with pytest.raises(OSError) as raised:
        os.rmdir(mnt / "plain")
    assert raised.value.errno == errno.ENOTDIR, errno_name(raised.value.errno)
    assert (served / "plain").read_bytes() == b"keep"


# -- renames -------------------------------------------------------------------------------


def test_mv_file_same_folder(served: Path, mnt: Path):
    content = random_bytes(5000)
    (served / "old.bin").write_bytes(content)
    (served / "old.bin").chmod(0o600)
    result = subprocess.run(["mv", str(mnt / "old.bin"), str(mnt / "new.bin")], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (served / "new.bin").read_bytes() == content
    assert not (served / "old.bin").exists()
    assert file_mode(served / "new.bin") == 0o600


def test_mv_file_keeps_mtime(served: Path, mnt: Path):
    (served / "old.txt").write_bytes(b"dated")
    os.utime(served / "old.txt", (981_158_400, 981_158_400))
    os.rename(mnt / "old.txt", mnt / "new.txt")
    assert int(os.stat(served / "new.txt").st_mtime) == 981_158_400


def test_mv_file_other_folder(served: Path, mnt: Path):
    (served / "src").mkdir()
    (served / "dst").mkdir()
    (served / "src" / "f.txt").write_bytes(b"moving")
    result = subprocess.run(["mv", str(mnt / "src" / "f.txt"), str(mnt / "dst")], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (served / "dst" / "f.txt").read_bytes() == b"moving"
    assert os.listdir(served / "src") == []
    assert os.listdir(mnt / "dst") == ["f.txt"]


def test_mv_file_over_existing(served: Path, mnt: Path):
    (served / "a.bin").write_bytes(random_bytes(7000, seed=4))
    (served / "b.bin").write_bytes(random_bytes(100, seed=5))
    result = subprocess.run(["mv", str(mnt / "a.bin"), str(mnt / "b.bin")], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (served / "b.bin").read_bytes() == random_bytes(7000, seed=4)
    assert not (served / "a.bin").exists()


def test_mv_symlink_keeps_target(served: Path, mnt: Path):
    os.symlink("../some/where", served / "link")
    os.rename(mnt / "link", mnt / "moved-link")
    assert os.readlink(served / "moved-link") == "../some/where"
    assert not os.path.lexists(served / "link")


def test_mv_folder_with_nested_content(served: Path, mnt: Path):
    project = served / "project"
    (project / "sub" / "deeper").mkdir(parents=True)
    (project / "a.txt").write_bytes(b"a")
    (project / ".hidden").write_bytes(b"hidden")
    (project / "sub" / "b.bin").write_bytes(random_bytes(20_000))
    (project / "sub" / "deeper" / "c.txt").write_bytes(b"c")
    (project / "sub" / "deeper" / "c.txt").chmod(0o751)
    before = served_tree(project)

    result = subprocess.run(["mv", str(mnt / "project"), str(mnt / "moved")], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert served_tree(served / "moved") == before
    assert not project.exists()
    assert file_mode(served / "moved" / "sub" / "deeper" / "c.txt") == 0o751
    assert sorted(os.listdir(mnt / "moved" / "sub")) == ["b.bin", "deeper"]


def test_mv_folder_into_other_folder(served: Path, mnt: Path):
    (served / "inner").mkdir()
    (served / "inner" / "x.txt").write_bytes(b"x")
    (served / "outer").mkdir()
    result = subprocess.run(["mv", str(mnt / "inner"), str(mnt / "outer")], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (served / "outer" / "inner" / "x.txt").read_bytes() == b"x"
    assert not (served / "inner").exists()


def test_rename_folder_over_empty_folder(served: Path, mnt: Path):
    (served / "source").mkdir()
    (served / "source" / "x.txt").write_bytes(b"x")
    (served / "empty").mkdir()
    os.rename(mnt / "source", mnt / "empty")
    # rename(2) replaces the empty folder, whereas mv(1) would have moved `source` into it.
    assert sorted(os.listdir(served / "empty")) == ["x.txt"]
    assert not (served / "source").exists()


def test_rename_folder_over_full_folder(served: Path, mnt: Path):
    (served / "source").mkdir()
    (served / "source" / "x.txt").write_bytes(b"x")
    (served / "full").mkdir()
    (served / "full" / "y.txt").write_bytes(b"y")
    before = served_tree(served)
    with pytest.raises(OSError) as raised:
        os.rename(mnt / "source", mnt / "full")
    assert raised.value.errno == errno.ENOTEMPTY, errno_name(raised.value.errno)
    assert served_tree(served) == before


def test_rename_file_over_folder_eisdir(served: Path, mnt: Path):
    (served / "file.txt").write_bytes(b"f")
    (served / "folder").mkdir()
    before = served_tree(served)
    with pytest.raises(OSError) as raised:
        os.rename(mnt / "file.txt", mnt / "folder")
    assert raised.value.errno == errno.EISDIR, errno_name(raised.value.errno)
    assert served_tree(served) == before


def test_rename_folder_over_file_enotdir(served: Path, mnt: Path):
    (served / "file.txt").write_bytes(b"f")
    (served / "folder").mkdir()
    (served / "folder" / "inside.txt").write_bytes(b"i")
    before = served_tree(served)
    with pytest.raises(OSError) as raised:
        os.rename(mnt / "folder", mnt / "file.txt")
    assert raised.value.errno == errno.ENOTDIR, errno_name(raised.value.errno)
    assert served_tree(served) == before


def test_rename_noreplace_existing_eexist(served: Path, mnt: Path):
    (served / "a.txt").write_bytes(b"a")
    (served / "b.txt").write_bytes(b"b")
    with pytest.raises(OSError) as raised:
        renameat2(mnt / "a.txt", mnt / "b.txt", RENAME_NOREPLACE)
    assert raised.value.errno == errno.EEXIST, errno_name(raised.value.errno)
    assert (served / "a.txt").read_bytes() == b"a"
    assert (served / "b.txt").read_bytes() == b"b"


def test_rename_noreplace_free_name(served: Path, mnt: Path):
    (served / "a.txt").write_bytes(b"a")
    renameat2(mnt / "a.txt", mnt / "c.txt", RENAME_NOREPLACE)
    assert (served / "c.txt").read_bytes() == b"a"
    assert not (served / "a.txt").exists()


def test_rename_exchange_einval(served: Path, mnt: Path):
    (served / "a.txt").write_bytes(b"a")
    (served / "b.txt").write_bytes(b"b")
    with pytest.raises(OSError) as raised:
        renameat2(mnt / "a.txt", mnt / "b.txt", RENAME_EXCHANGE)
    assert raised.value.errno == errno.EINVAL, errno_name(raised.value.errno)
    assert (served / "a.txt").read_bytes() == b"a"
    assert (served / "b.txt").read_bytes() == b"b"


def test_rename_above_download_limit(served: Path, mnt: Path, server):
    # Too large to pass through one archive: the mount moves it with a transfer job.
    size = download_limit(upload_limit(server)) + 1
    content = random_bytes(size)
    (served / "large.bin").write_bytes(content)
    os.rename(mnt / "large.bin", mnt / "renamed.bin")
    assert (served / "renamed.bin").read_bytes() == content
    assert not (served / "large.bin").exists()


def test_rename_large_over_existing_file(served: Path, mnt: Path, server):
    size = download_limit(upload_limit(server)) + 1
    content = random_bytes(size)
    (served / "large.bin").write_bytes(content)
    (served / "old.bin").write_bytes(b"replaced")
    os.rename(mnt / "large.bin", mnt / "old.bin")
    assert (served / "old.bin").read_bytes() == content
    assert not (served / "large.bin").exists()


# -- removing, modes, creating -------------------------------------------------------------


def test_rm_removes_file(served: Path, mnt: Path):
    (served / "gone.txt").write_bytes(b"x")
    result = subprocess.run(["rm", str(mnt / "gone.txt")], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert not (served / "gone.txt").exists()
    assert "gone.txt" not in os.listdir(mnt)


def test_rm_symlink_keeps_target(served: Path, mnt: Path):
    (served / "target.txt").write_bytes(b"target")
    os.symlink("target.txt", served / "link")
    os.unlink(mnt / "link")
    assert not os.path.lexists(served / "link")
    assert (served / "target.txt").read_bytes() == b"target"


def test_unlink_folder_eisdir(served: Path, mnt: Path):
    (served / "folder").mkdir()
    with pytest.raises(OSError) as raised:
        os.unlink(mnt / "folder")
    assert raised.value.errno == errno.EISDIR, errno_name(raised.value.errno)
    assert (served / "folder").is_dir()


@pytest.mark.parametrize("mode", [0o600, 0o755, 0o444, 0o4750])
def test_chmod_file_reaches_server(served: Path, mnt: Path, mode: int):
    (served / "f.txt").write_bytes(b"x")
    os.chmod(mnt / "f.txt", mode)
    assert file_mode(served / "f.txt") == mode
    assert stat.S_IMODE(os.stat(mnt / "f.txt").st_mode) == mode


def test_fchmod_new_file_before_close(served: Path, mnt: Path):
    fd = os.open(mnt / "new.sh", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"#!/bin/sh\n")
        os.fchmod(fd, 0o755)
    finally:
        os.close(fd)
    assert (served / "new.sh").read_bytes() == b"#!/bin/sh\n"
    assert file_mode(served / "new.sh") == 0o755


def test_cp_preserve_mode_new_file(served: Path, mnt: Path, tmp_path: Path):
    # cp -p (and cp -a, install -m) set the mode on the open file before closing it.
    local = tmp_path / "private.txt"
    local.write_bytes(b"secret")
    local.chmod(0o700)
    result = subprocess.run(["cp", "-p", str(local), str(mnt / "private.txt")], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (served / "private.txt").read_bytes() == b"secret"
    assert file_mode(served / "private.txt") == 0o700


def test_chmod_folder_reaches_server(served: Path, mnt: Path):
    (served / "folder").mkdir()
    os.chmod(mnt / "folder", 0o700)
    assert file_mode(served / "folder") == 0o700


def test_touch_creates_empty_file(served: Path, mount, server):
    started = time.monotonic()
    result = subprocess.run(["touch", str(mount.path / "empty")], capture_output=True, timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert (served / "empty").stat().st_size == 0
    # The server responds to a 0-byte ops/upload only after its command timeout, with 408.
    assert elapsed < server.command_timeout

    mount.stop()
    assert (served / "empty").stat().st_size == 0


def test_touch_existing_keeps_content(served: Path, mnt: Path):
    (served / "f.txt").write_bytes(b"content")
    result = subprocess.run(["touch", str(mnt / "f.txt")], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (served / "f.txt").read_bytes() == b"content"


def test_create_sets_mode(served: Path, mnt: Path):
    fd = os.open(mnt / "private.txt", os.O_CREAT | os.O_WRONLY, 0o600)
    os.write(fd, b"secret")
    os.close(fd)
    assert (served / "private.txt").read_bytes() == b"secret"
    assert file_mode(served / "private.txt") == 0o600


def test_shell_append_to_remote_file(served: Path, mnt: Path):
    (served / "log.txt").write_bytes(b"line 1\n")
    result = shell('echo "line 2" >> "$M/log.txt"', mnt)
    assert result.returncode == 0, result.stderr
    assert (served / "log.txt").read_bytes() == b"line 1\nline 2\n"


def test_python_append_to_remote_file(served: Path, mnt: Path):
    content = random_bytes(10_000)
    (served / "data.bin").write_bytes(content)
    with open(mnt / "data.bin", "ab") as handle:
        handle.write(b"tail")
    assert (served / "data.bin").read_bytes() == content + b"tail"


def test_symlink_created_on_server(served: Path, mnt: Path):
    os.symlink("../elsewhere/file", mnt / "relative")
    os.symlink(str(served / "data"), mnt / "absolute")
    assert os.readlink(served / "relative") == "../elsewhere/file"
    assert os.readlink(served / "absolute") == str(served / "data")


# -- truncation ----------------------------------------------------------------------------


def test_truncate_command_shrinks(served: Path, mnt: Path):
    (served / "f.bin").write_bytes(b"0123456789")
    result = subprocess.run(["truncate", "-s", "3", str(mnt / "f.bin")], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (served / "f.bin").read_bytes() == b"012"


def test_truncate_command_grows(served: Path, mnt: Path):
    (served / "f.bin").write_bytes(b"012")
    result = subprocess.run(["truncate", "-s", "10", str(mnt / "f.bin")], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (served / "f.bin").read_bytes() == b"012" + b"\0" * 7


def test_ftruncate_shrinks(served: Path, mnt: Path):
    (served / "f.bin").write_bytes(b"0123456789")
    fd = os.open(mnt / "f.bin", os.O_RDWR)
    try:
        os.ftruncate(fd, 2)
    finally:
        os.close(fd)
    assert (served / "f.bin").read_bytes() == b"01"


def test_ftruncate_grows(served: Path, mnt: Path):
    (served / "f.bin").write_bytes(b"01")
    fd = os.open(mnt / "f.bin", os.O_RDWR)
    try:
        os.ftruncate(fd, 6)
    finally:
        os.close(fd)
    assert (served / "f.bin").read_bytes() == b"01" + b"\0" * 4


def test_open_truncate_empties_file(served: Path, mnt: Path):
    (served / "f.bin").write_bytes(b"old content")
    with open(mnt / "f.bin", "wb"):
        pass
    assert (served / "f.bin").read_bytes() == b""


# -- file system information and unsupported operations -----------------------------------


def test_statvfs_reports_name_max(mnt: Path):
    info = os.statvfs(mnt)
    assert info.f_namemax == 255
    assert info.f_bavail > 0


@pytest.mark.parametrize("call", ["getxattr", "setxattr", "listxattr"])
def test_xattr_not_supported(served: Path, mnt: Path, call: str):
    # The mount returns ENOSYS, which the kernel turns into EOPNOTSUPP for programs.
    (served / "f.txt").write_bytes(b"x")
    target = mnt / "f.txt"
    with pytest.raises(OSError) as raised:
        if call == "getxattr":
            os.getxattr(target, "user.test")
        elif call == "setxattr":
            os.setxattr(target, "user.test", b"value")
        else:
            os.listxattr(target)
    assert raised.value.errno == errno.EOPNOTSUPP, errno_name(raised.value.errno)
    assert "user.test" not in os.listxattr(served / "f.txt")


def test_hard_link_eperm(served: Path, mnt: Path):
    (served / "f.txt").write_bytes(b"x")
    with pytest.raises(OSError) as raised:
        os.link(mnt / "f.txt", mnt / "hard")
    assert raised.value.errno == errno.EPERM, errno_name(raised.value.errno)
    assert not os.path.lexists(served / "hard")


def test_mkfifo_eperm(served: Path, mnt: Path):
    with pytest.raises(OSError) as raised:
        os.mkfifo(mnt / "pipe")
    assert raised.value.errno == errno.EPERM, errno_name(raised.value.errno)
    assert not os.path.lexists(served / "pipe")


# -- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["with space.txt", "café.txt", "日本語.txt", "ünï cödé"])
def test_remote_name_listed_and_read(served: Path, mnt: Path, name: str):
    (served / name).write_bytes(name.encode() + b" content")
    assert name in os.listdir(mnt)
    assert (mnt / name).read_bytes() == name.encode() + b" content"


def test_non_ascii_folder_listed(served: Path, mnt: Path):
    (served / "日本語").mkdir()
    (served / "日本語" / "ファイル.txt").write_bytes(b"jp")
    assert os.listdir(mnt / "日本語") == ["ファイル.txt"]
    assert (mnt / "日本語" / "ファイル.txt").read_bytes() == b"jp"


@pytest.mark.parametrize("name", ["with space.txt", "café.txt", "日本語.txt"])
def test_created_name_kept_on_server(served: Path, mnt: Path, name: str):
    (mnt / name).write_bytes(b"made here")
    assert os.listdir(served) == [name]
    assert (served / name).read_bytes() == b"made here"


@pytest.mark.parametrize("operation", ["create", "mkdir", "symlink", "rename"])
def test_quote_in_name_einval(served: Path, mount, operation: str):
    (served / "plain.txt").write_bytes(b"plain")
    before = served_tree(served)
    target = mount.path / "it's"
    with pytest.raises(OSError) as raised:
        if operation == "create":
            target.write_bytes(b"x")
        elif operation == "mkdir":
            os.mkdir(target)
        elif operation == "symlink":
            os.symlink("plain.txt", target)
        else:
            os.rename(mount.path / "plain.txt", target)
    assert raised.value.errno == errno.EINVAL, errno_name(raised.value.errno)
    assert served_tree(served) == before
    assert "single quote" in mount.log()


def test_remote_quote_name_listed(served: Path, mnt: Path):
    # The mount's root was empty when it started, so this listing is the mount's first look
    # at a file's time stamps.
    (served / "it's.txt").write_bytes(b"quoted")
    (served / "plain.txt").write_bytes(b"plain")
    assert sorted(os.listdir(mnt)) == ["it's.txt", "plain.txt"]
    assert (mnt / "plain.txt").read_bytes() == b"plain"
    with pytest.raises(OSError) as raised:
        (mnt / "it's.txt").read_bytes()
    assert raised.value.errno == errno.EINVAL, errno_name(raised.value.errno)
    assert (served / "it's.txt").read_bytes() == b"quoted"


# -- size limits ---------------------------------------------------------------------------


def test_read_above_download_limit_efbig(served: Path, mnt: Path, server):
    size = download_limit(upload_limit(server)) + 1
    (served / "large.bin").write_bytes(random_bytes(size))
    server.reset_counters()
    with pytest.raises(OSError) as raised:
        open(mnt / "large.bin", "rb").close()
    assert raised.value.errno == errno.EFBIG, errno_name(raised.value.errno)
    assert requests_to(server, DOWNLOAD) == 0


def test_cat_above_download_limit_prints_nothing(served: Path, mnt: Path, server):
    size = download_limit(upload_limit(server)) + 1
    (served / "large.bin").write_bytes(random_bytes(size))
    result = subprocess.run(["cat", str(mnt / "large.bin")], capture_output=True, timeout=60)
    assert result.returncode != 0
    assert result.stdout == b""
    assert b"too large" in result.stderr


def test_read_at_download_limit_exact(served: Path, mnt: Path, server):
    content = random_bytes(download_limit(upload_limit(server)))
    (served / "edge.bin").write_bytes(content)
    assert (mnt / "edge.bin").read_bytes() == content


def test_overwrite_past_upload_limit_efbig(served: Path, mount, server):
    limit = upload_limit(server)
    mount.expect_log(r"ERROR .*limit of direct uploads; the file was not (uploaded|created)")
    old = b"previous content\n"
    (served / "f.bin").write_bytes(old)
    error = write_until_error(mount.path / "f.bin", random_bytes(limit + 1), os.O_RDWR)
    assert error is not None
    assert error.errno == errno.EFBIG, errno_name(error.errno)
    assert (served / "f.bin").read_bytes() == old
    assert (mount.path / "f.bin").read_bytes() == old


def test_append_past_upload_limit_efbig(served: Path, mount, server):
    limit = upload_limit(server)
    mount.expect_log(r"ERROR .*limit of direct uploads; the file was not (uploaded|created)")
    old = random_bytes(download_limit(limit))
    (served / "f.bin").write_bytes(old)
    tail = b"x" * (limit - len(old) + 1)
    error = write_until_error(mount.path / "f.bin", tail, os.O_WRONLY | os.O_APPEND)
    assert error is not None
    assert error.errno == errno.EFBIG, errno_name(error.errno)
    assert (served / "f.bin").read_bytes() == old


def test_truncated_write_past_limit_no_partial(served: Path, mount, server):
    limit = upload_limit(server)
    mount.expect_log(r"ERROR .*limit of direct uploads; the file was not (uploaded|created)")
    old = b"previous content\n"
    (served / "f.bin").write_bytes(old)
    error = write_until_error(mount.path / "f.bin", random_bytes(limit + 1), os.O_WRONLY | os.O_TRUNC)
    assert error is not None
    assert error.errno == errno.EFBIG, errno_name(error.errno)
    # O_TRUNC may empty the file at open; a prefix of the rejected data must never arrive.
    assert (served / "f.bin").read_bytes() in (old, b"")


def test_truncate_past_upload_limit_efbig(served: Path, mnt: Path, server):
    limit = upload_limit(server)
    (served / "f.bin").write_bytes(b"small")
    with pytest.raises(OSError) as raised:
        os.truncate(mnt / "f.bin", limit + 1)
    assert raised.value.errno == errno.EFBIG, errno_name(raised.value.errno)
    assert (served / "f.bin").read_bytes() == b"small"


def test_write_at_upload_limit_arrives(served: Path, mnt: Path, server):
    content = random_bytes(upload_limit(server))
    (mnt / "full.bin").write_bytes(content)
    assert (served / "full.bin").read_bytes() == content


# -- changes made on the server, and the local copy ----------------------------------------


def test_remote_edit_shows_through(served: Path, mnt: Path):
    (served / "f.txt").write_bytes(b"version one\n")
    assert (mnt / "f.txt").read_bytes() == b"version one\n"
    (served / "f.txt").write_bytes(b"the second version\n")
    assert (mnt / "f.txt").read_bytes() == b"the second version\n"


def test_remote_create_shows_through(served: Path, mnt: Path):
    assert os.listdir(mnt) == []
    (served / "appeared.txt").write_bytes(b"new")
    assert os.listdir(mnt) == ["appeared.txt"]
    assert (mnt / "appeared.txt").read_bytes() == b"new"


def test_remote_delete_shows_through(served: Path, mnt: Path):
    (served / "doomed.txt").write_bytes(b"x")
    assert os.listdir(mnt) == ["doomed.txt"]
    (served / "doomed.txt").unlink()
    assert os.listdir(mnt) == []
    assert not (mnt / "doomed.txt").exists()


def test_remote_mode_change_shows_through(served: Path, mnt: Path):
    (served / "f.txt").write_bytes(b"x")
    (served / "f.txt").chmod(0o644)
    assert file_mode(mnt / "f.txt") == 0o644
    (served / "f.txt").chmod(0o600)
    assert file_mode(mnt / "f.txt") == 0o600


@pytest.mark.parametrize("options", [CACHES_OFF, CACHES_DEFAULT], ids=["caches-off", "caches-default"])
def test_reopen_unchanged_downloads_nothing(served: Path, mount_factory, server, options: str):
    content = random_bytes(100_000)
    (served / "f.bin").write_bytes(content)
    mnt = mount_factory(options).path
    assert (mnt / "f.bin").read_bytes() == content
    server.reset_counters()
    assert (mnt / "f.bin").read_bytes() == content
    assert (mnt / "f.bin").read_bytes() == content
    assert requests_to(server, DOWNLOAD) == 0


def test_changed_file_downloaded_again(served: Path, mnt: Path, server):
    (served / "f.bin").write_bytes(random_bytes(100_000, seed=6))
    assert (mnt / "f.bin").read_bytes() == random_bytes(100_000, seed=6)
    # The content changes but not the size, so only the later mtime shows the change.
    changed = random_bytes(100_000, seed=7)
    (served / "f.bin").write_bytes(changed)
    later = os.stat(served / "f.bin").st_mtime + 10
    os.utime(served / "f.bin", (later, later))
    server.reset_counters()
    assert (mnt / "f.bin").read_bytes() == changed
    assert requests_to(server, DOWNLOAD) == 1


def test_written_file_reread_downloads_nothing(served: Path, mnt: Path, server):
    content = random_bytes(50_000)
    (mnt / "f.bin").write_bytes(content)
    server.reset_counters()
    assert (mnt / "f.bin").read_bytes() == content
    assert requests_to(server, DOWNLOAD) == 0


def test_same_second_rewrite_detected(served: Path, mount_factory):
    mount = mount_factory("dir_cache_ttl=1")
    (mount.path / "g.txt").write_bytes(b"GGGG")
    assert (mount.path / "g.txt").read_bytes() == b"GGGG"
    (served / "g.txt").write_bytes(b"HHHH")  # same size, very likely the same second
    time.sleep(1.5)  # past the listing TTL
    assert (mount.path / "g.txt").read_bytes() == b"HHHH"
