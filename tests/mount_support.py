"""Helpers for the tests that drive a real mount: size limits, request counts, shell steps."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import httpx

from firecrest_fs.server.launch import LocalServer

# Keys of `LocalServer.counters()`: the method and the route template of the server.
DOWNLOAD = "GET /filesystem/{system_name}/ops/download"
LS = "GET /filesystem/{system_name}/ops/ls"
STAT = "GET /filesystem/{system_name}/ops/stat"

COMMAND_DEADLINE = 120.0


def upload_limit(server: LocalServer) -> int:
    """Return L, the server's `max_ops_file_size`, as a client reads it from `GET /status/systems`."""
    response = httpx.get(f"{server.url}/status/systems", headers=server.auth_headers(), timeout=30.0)
    response.raise_for_status()
    for system in response.json()["systems"]:
        if system["name"] == server.system:
            return system["dataOperation"]["max_ops_file_size"]
    raise AssertionError(f"system {server.system!r} is missing from GET /status/systems")


def download_limit(limit: int) -> int:
    """Return D, the largest file `ops/download` returns whole: its base64 text stays below L."""
    return 3 * ((limit - 1) // 4)


def requests_to(server: LocalServer, route: str) -> int:
    """Return how many requests the server counted for one `"METHOD /route"` key."""
    return server.counters().get(route, 0)


def shell(script: str, mountpoint: Path, **variables: str) -> subprocess.CompletedProcess[bytes]:
    """Run a bash script with `$M` set to the mount point. A failing step stops it (`set -e`)."""
    env = {**os.environ, "M": str(mountpoint), **variables}
    return subprocess.run(["bash", "-ec", script], env=env, capture_output=True, timeout=COMMAND_DEADLINE)


def write_until_error(path: Path, content: bytes, flags: int, chunk: int = 1 << 20) -> OSError | None:
    """Write `content` to `path` opened with `flags`, close it, and return the first error.

    A write that fails after part of its bytes went through returns a short count, so
    the loop writes the rest again and so reaches the error. The file is always closed,
    and an error of `close` is returned too.
    """
    fd = os.open(path, flags, 0o644)
    error = None
    try:
        offset = 0
        while offset < len(content):
            offset += os.write(fd, content[offset:offset + chunk])
    except OSError as exc:
        error = exc
    try:
        os.close(fd)
    except OSError as exc:
        error = error or exc
    return error


def errno_name(code: int | None) -> str:
    return errno.errorcode.get(code, str(code)) if code is not None else "no error"
