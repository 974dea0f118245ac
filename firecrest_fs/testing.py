"""A mount in a child process, for the test suite and the benchmarks.

`MountProcess` runs `python -m firecrest_fs mount -f` against a `LocalServer`. A process
must not serve its own file-system calls, so the filesystem never runs inside the caller.
`stop()` always cleans up: a lazy unmount, a wait for the daemon, then SIGTERM and SIGKILL
by PID.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from .server.launch import LocalServer

MOUNT_READY_DEADLINE = 30.0
UNMOUNT_DEADLINE = 15.0
# Options that turn every cache off, so changes made in the served directory show at once.
NO_CACHE_OPTIONS = "dir_cache_ttl=0,entry_timeout=0,attr_timeout=0"


class MountProcess:
    """One `firecrest-fs mount -f` process serving `root` of `server` on `mountpoint`."""

    def __init__(self, server: LocalServer, root: Path, mountpoint: Path, log_path: Path,
                 options: str = NO_CACHE_OPTIONS, debug: bool = True):
        self.server = server
        self.root = root
        self.path = mountpoint
        self.log_path = log_path
        self.options = options
        self.debug = debug
        self.process: subprocess.Popen | None = None
        self._expected: list[str] = []

    def __enter__(self) -> MountProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> MountProcess:
        """Start the daemon and wait until the mount point is a mount, or raise RuntimeError."""
        self.path.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.server.client_env()}
        command = [sys.executable, "-m", "firecrest_fs", "mount", "-f"]
        if self.debug:
            command.append("-d")
        command += ["-o", self.options, f"{self.server.system}:{self.root}", str(self.path)]
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
        """Unmount lazily, wait for the daemon, then end it by PID if it is still running."""
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
        """Declare a WARNING or ERROR line (a regular expression) that a test provokes on purpose."""
        self._expected.append(pattern)

    def unexpected_log_lines(self) -> list[str]:
        """Return the WARNING, ERROR and traceback lines not declared with `expect_log`."""
        lines = []
        for line in self.log().splitlines():
            if re.search(r" (WARNING|ERROR|CRITICAL) |Traceback", line):
                if not any(re.search(pattern, line) for pattern in self._expected):
                    lines.append(line)
        return lines
