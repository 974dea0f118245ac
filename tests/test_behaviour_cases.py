"""Small inputs that remote file systems of this kind have got wrong, run on a real mount.

Each test does its steps through the mount (`$M` in the shell steps) and checks the
result on both sides: through the mount and in the directory the server serves. Steps
behind the mount's back write directly to that directory, as another client would.
"""

from __future__ import annotations

import errno
import os
import random
import subprocess
from pathlib import Path

import pytest

from mount_support import LS, STAT, download_limit, errno_name, requests_to, shell, upload_limit, write_until_error

# Mount options of the two configurations that the cache-sensitive cases run under.
CACHES_OFF = "dir_cache_ttl=0,entry_timeout=0,attr_timeout=0"
CACHES_DEFAULT = "dir_cache_ttl=10,entry_timeout=1,attr_timeout=1"
CACHE_SETTINGS = pytest.mark.parametrize("options", [CACHES_OFF, CACHES_DEFAULT], ids=["caches-off", "caches-default"])

# The size ladder runs at a small upload limit L, which keeps it quick, and at the default.
SMALL_LIMIT = 64 * 1024
DEFAULT_LIMIT = 5 * 1024 * 1024
LADDER_SERVERS = pytest.mark.parametrize(
    "server",
    [{"max_ops_file_size": SMALL_LIMIT}, {"max_ops_file_size": DEFAULT_LIMIT}],
    ids=["L=64KiB", "L=5MiB"],
    indirect=True,
)

# With every cache off, each read(2) of `cmp` costs an ops/stat because the kernel checks
# the size before reading. That makes megabytes slow, and the ladder is about sizes only.
LADDER_OPTIONS = CACHES_DEFAULT

BIG_DIRECTORY_FILES = 5000


def random_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def read_if_exists(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


# -- listing after create and delete -------------------------------------------------------


@CACHE_SETTINGS
def test_listing_after_create_delete(served: Path, mount_factory, options: str):
    mount = mount_factory(options)
    result = shell(
        'mkdir "$M/d"; touch "$M/d/a" "$M/d/b" "$M/d/c"; ls "$M/d"; echo ---;'
        ' touch "$M/d/x"; rm "$M/d/x"; ls "$M/d"',
        mount.path,
    )
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.decode().split("---\n")
    assert first == "a\nb\nc\n"
    assert second == "a\nb\nc\n"
    assert sorted(os.listdir(served / "d")) == ["a", "b", "c"]


# -- append --------------------------------------------------------------------------------


@CACHE_SETTINGS
def test_append_with_shell(served: Path, mount_factory, options: str):
    mount = mount_factory(options)
    result = shell('printf foo > "$M/a"; printf bar >> "$M/a"; cat "$M/a"', mount.path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"foobar"
    assert (served / "a").read_bytes() == b"foobar"


# -- truncate an open, modified file -------------------------------------------------------


def test_truncate_open_modified_file(served: Path, mnt: Path):
    fd = os.open(mnt / "f", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"data")
        result = subprocess.run(["truncate", "-s", "0", str(mnt / "f")], capture_output=True, timeout=60)
        assert result.returncode == 0, result.stderr
    finally:
        os.close(fd)
    assert os.stat(mnt / "f").st_size == 0
    assert (served / "f").read_bytes() == b""


# -- shrink then read before close ---------------------------------------------------------


def test_shrink_then_read_before_close(served: Path, mnt: Path):
    with open(mnt / "f", "w+b") as handle:
        handle.write(b"x" * 100)
        handle.flush()
        os.fsync(handle.fileno())
        os.ftruncate(handle.fileno(), 10)
        handle.seek(0)
        assert handle.read() == b"x" * 10
    assert (served / "f").read_bytes() == b"x" * 10


# -- random writes -------------------------------------------------------------------------


def test_random_writes_fill_zeros(served: Path, mnt: Path):
    fd = os.open(mnt / "r", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"B", 8192)
        os.pwrite(fd, b"A", 0)
    finally:
        os.close(fd)
    expected = b"A" + b"\0" * 8191 + b"B"
    assert os.stat(mnt / "r").st_size == 8193
    assert (mnt / "r").read_bytes() == expected
    assert (served / "r").read_bytes() == expected


# -- big directory -------------------------------------------------------------------------


def test_big_directory_one_listing(served: Path, mount_factory, server):
    big = served / "big"
    big.mkdir()
    for index in range(BIG_DIRECTORY_FILES):
        (big / f"file{index:04d}").write_bytes(b"x" * (index % 97))
    mount = mount_factory("dir_cache_ttl=30")
    server.reset_counters()

    result = subprocess.run(["ls", "-l", str(mount.path / "big")], capture_output=True, timeout=120)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()[1:]  # the first line is the "total"
    assert len(lines) == BIG_DIRECTORY_FILES
    assert requests_to(server, LS) == 1
    assert requests_to(server, STAT) == 0
    sizes = {line.split()[-1]: int(line.split()[4]) for line in lines}
    assert sizes["file0100"] == 100 % 97
    assert sizes["file4999"] == 4999 % 97


# -- size ladder ---------------------------------------------------------------------------


def check_read_through(mountpoint: Path, name: str, expected: bytes, scratch: Path) -> None:
    """Compare a file read through the mount with `cmp`, and its last byte read alone with `dd`."""
    reference = scratch / f"expected-{name}"
    reference.write_bytes(expected)
    compared = subprocess.run(["cmp", str(mountpoint / name), str(reference)], capture_output=True, timeout=120)
    assert compared.returncode == 0, compared.stdout + compared.stderr
    if expected:
        last = shell(f'dd if="$M/{name}" bs=1 skip=$(({len(expected)}-1)) status=none', mountpoint)
        assert last.returncode == 0, last.stderr
        assert last.stdout == expected[-1:]


@LADDER_SERVERS
def test_ladder_up_to_download_limit(served: Path, mount_factory, server, subtests, tmp_path: Path):
    limit = upload_limit(server)
    largest_read = download_limit(limit)
    sizes = [0, 1, 4095, 4096, largest_read - 1, largest_read]
    contents = {n: random_bytes(n, seed=n) for n in sizes}
    first = mount_factory(LADDER_OPTIONS)
    for n, content in contents.items():
        (first.path / f"n{n}").write_bytes(content)

    for n, content in contents.items():
        with subtests.test("written and read back", n=n):
            assert (served / f"n{n}").read_bytes() == content
            check_read_through(first.path, f"n{n}", content, tmp_path)

    # A new mount has no local copies, so every byte comes through ops/download.
    first.stop()
    second = mount_factory(LADDER_OPTIONS)
    for n, content in contents.items():
        with subtests.test("read after remount", n=n):
            check_read_through(second.path, f"n{n}", content, tmp_path)


@LADDER_SERVERS
def test_ladder_up_to_upload_limit(served: Path, mount_factory, server, subtests, tmp_path: Path):
    limit = upload_limit(server)
    sizes = [download_limit(limit) + 1, limit - 1, limit]
    contents = {n: random_bytes(n, seed=n) for n in sizes}
    first = mount_factory(LADDER_OPTIONS)
    for n, content in contents.items():
        with subtests.test("written", n=n):
            error = write_until_error(first.path / f"n{n}", content, os.O_WRONLY | os.O_CREAT)
            assert error is None, errno_name(error.errno)
            assert (served / f"n{n}").read_bytes() == content
            # The mount may return the bytes of its local copy, which must be exact too.
            check_read_through(first.path, f"n{n}", content, tmp_path)

    # Above D a file cannot be downloaded whole: open fails rather than return other bytes.
    first.stop()
    second = mount_factory(LADDER_OPTIONS)
    for n in sizes:
        with subtests.test("open after remount", n=n):
            with pytest.raises(OSError) as raised:
                open(second.path / f"n{n}", "rb").close()
            assert raised.value.errno == errno.EFBIG, errno_name(raised.value.errno)


@LADDER_SERVERS
def test_ladder_above_upload_limit(served: Path, mount_factory, server):
    limit = upload_limit(server)
    mount = mount_factory(LADDER_OPTIONS)
    mount.expect_log(r"ERROR .*limit of direct uploads; the file was not (uploaded|created)")
    content = random_bytes(limit + 1, seed=limit)

    error = write_until_error(mount.path / "over", content, os.O_WRONLY | os.O_CREAT)

    assert error is not None
    assert error.errno == errno.EFBIG, errno_name(error.errno)
    # The new file may exist empty or not at all, but none of the rejected bytes may arrive.
    assert read_if_exists(served / "over") in (None, b"")
    assert read_if_exists(mount.path / "over") == read_if_exists(served / "over")
