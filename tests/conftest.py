"""Fixtures: the local FirecREST server over a temporary directory, and real mounts of it.

Each mount runs `python -m firecrest_fs mount -f` in its own process (a process must not
serve its own file-system calls). Mount points live under pytest's temporary folder, outside
the repository. Teardown always runs: lazy unmount, then wait for the daemon, then kill it
by PID. A WARNING, ERROR or traceback in a daemon's log fails the test unless the test
declares it with `mount.expect_log(...)`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firecrest_fs.server.launch import LocalServer

MOUNT_READY_DEADLINE = 30.0
UNMOUNT_DEADLINE = 15.0
# Test settings of the local server: fast commands and jobs, so the suite stays quick.
TEST_SERVER_SETTINGS = dict(command_timeout=3.0, job_queue_delay=0.05, job_run_delay=0.05)


@pytest.fixture
def served(tmp_path: Path) -> Path:
    """The directory the local server serves: what the mount shows."""
    root = tmp_path / "served"
    root.mkdir()
    return root


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path, served: Path):
    """The local server over `served`, with the test settings.

    A test changes settings with indirect parametrization, for example
    `@pytest.mark.parametrize("server", [{"max_ops_file_size": 65536}], indirect=True)`:
    each dict holds `LocalServer` keyword arguments that replace the test settings.
    """
    workdir = tmp_path / "work"
    workdir.mkdir()
    settings = {**TEST_SERVER_SETTINGS, **getattr(request, "param", {})}
    with LocalServer(served, workdir, log_file=str(tmp_path / "server.log"), **settings) as local:
        yield local


class Mount:
    """One `firecrest-fs mount -f` process and its mount point."""

    def __init__(self, server: LocalServer, root: Path, mountpoint: Path, log_path: Path, options: str):
        self.server = server
        self.root = root
        self.path = mountpoint
        self.log_path = log_path
        self.options = options
        self.process: subprocess.Popen | None = None
        self._expected: list[str] = []

    def start(self) -> Mount:
        self.path.mkdir(exist_ok=True)
        env = {**os.environ, **self.server.client_env()}
        command = [sys.executable, "-m", "firecrest_fs", "mount", "-f", "-d",
                   "-o", self.options, f"{self.server.system}:{self.root}", str(self.path)]
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                                            stdout=log_file, stderr=log_file)
        deadline = time.monotonic() + MOUNT_READY_DEADLINE
        while not os.path.ismount(self.path):
            if self.process.poll() is not None:
                raise RuntimeError(f"the mount process exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"no mount at {self.path} after {MOUNT_READY_DEADLINE} s:\n{self.log()}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Unmount lazily, wait for the daemon, then kill it by PID if it is still there."""
        subprocess.run(["fusermount3", "-u", "-z", str(self.path)], capture_output=True)
        if self.process is None:
            return
        try:
            self.process.wait(timeout=UNMOUNT_DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def expect_log(self, pattern: str) -> None:
        """Declare a WARNING or ERROR line that this test provokes on purpose."""
        self._expected.append(pattern)

    def unexpected_log_lines(self) -> list[str]:
        lines = []
        for line in self.log().splitlines():
            if re.search(r" (WARNING|ERROR|CRITICAL) |Traceback", line):
                if not any(re.search(pattern, line) for pattern in self._expected):
                    lines.append(line)
        return lines


@pytest.fixture
def mount_factory(tmp_path: Path, server: LocalServer, served: Path):
    """Start mounts of the served directory with chosen options; all are stopped at the end."""
    mounts: list[Mount] = []

    def start(options: str = "dir_cache_ttl=0,entry_timeout=0,attr_timeout=0", root: Path | None = None) -> Mount:
        index = len(mounts)
        mount = Mount(server, root or served, tmp_path / f"mnt{index}", tmp_path / f"mount{index}.log", options)
        mounts.append(mount)
        return mount.start()

    yield start
    problems = []
    for mount in mounts:
        mount.stop()
        problems += mount.unexpected_log_lines()
    assert not problems, "unexpected warnings in the mount log:\n" + "\n".join(problems)


@pytest.fixture
def mount(mount_factory) -> Mount:
    """A mount of the served directory with every cache off, so remote changes show at once."""
    return mount_factory()


@pytest.fixture
def mnt(mount: Mount) -> Path:
    return mount.path
