"""Server faults through a real mount: errors map to EIO, never to a missing file, and the mount survives."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

LS = "/filesystem/{system_name}/ops/ls"
STAT = "/filesystem/{system_name}/ops/stat"
UPLOAD = "/filesystem/{system_name}/ops/upload"


def test_unavailable_server_is_not_missing_file(served: Path, mount_factory, server):
    (served / "existing").write_bytes(b"here")
    mount = mount_factory("dir_cache_ttl=0,entry_timeout=0,attr_timeout=0,timeout=3")
    mount.expect_log(r"WARNING")
    server.set_faults([{"route": LS, "kind": "status", "status": 503},
                       {"route": STAT, "kind": "status", "status": 503}])
    with pytest.raises(OSError) as raised:
        os.stat(mount.path / "existing")
    assert raised.value.errno == errno.EIO
    with pytest.raises(OSError) as listed:
        os.listdir(mount.path)
    assert listed.value.errno == errno.EIO
    server.clear_faults()
    assert os.listdir(mount.path) == ["existing"]
    assert (mount.path / "existing").read_bytes() == b"here"


def test_transient_errors_are_retried(served: Path, mount, server):
    mount.expect_log(r"WARNING .*attempt")
    server.set_faults([{"kind": "status", "status": 502, "count": 3}])
    (mount.path / "file").write_bytes(b"retried")
    assert (served / "file").read_bytes() == b"retried"
    assert sorted(os.listdir(mount.path)) == ["file"]


def test_failed_upload_reported_at_close(served: Path, mount_factory, server):
    mount = mount_factory("dir_cache_ttl=0,entry_timeout=0,attr_timeout=0,timeout=3")
    mount.expect_log(r"WARNING|ERROR")
    server.set_faults([{"route": UPLOAD, "kind": "status", "status": 500}])
    fd = os.open(mount.path / "kept", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"precious")
    with pytest.raises(OSError) as raised:
        os.close(fd)
    assert raised.value.errno == errno.EIO
    server.clear_faults()
    # The data stays in the mount; writing it again after the fault reaches the server.
    assert (mount.path / "kept").read_bytes() == b"precious"
    fd = os.open(mount.path / "kept", os.O_WRONLY)
    os.fsync(fd)
    os.close(fd)
    assert (served / "kept").read_bytes() == b"precious"


def test_dead_server_fails_fast(served: Path, mount_factory, server):
    (served / "a").write_bytes(b"x")
    mount = mount_factory("dir_cache_ttl=0,entry_timeout=0,attr_timeout=0,timeout=2")
    mount.expect_log(r"WARNING|ERROR")
    stall = 5.0  # longer than the mount's deadline, short enough to end before the server stops
    server.set_faults([{"kind": "stall", "seconds": stall}])
    started = time.monotonic()
    with pytest.raises(OSError) as raised:
        os.listdir(mount.path)
    assert raised.value.errno == errno.EIO
    assert time.monotonic() - started < stall
    server.clear_faults()
    assert os.listdir(mount.path) == ["a"]
    time.sleep(max(0.0, started + stall + 1 - time.monotonic()))  # let the stalled requests end
