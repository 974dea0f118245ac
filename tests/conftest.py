"""Fixtures: the local FirecREST server over a temporary directory, and real mounts of it.

Each mount runs `python -m firecrest_fs mount -f` in its own process (a process must not
serve its own file-system calls). Mount points live under pytest's temporary folder, outside
the repository. Teardown always runs: lazy unmount, then wait for the daemon, then kill it
by PID. A WARNING, ERROR or traceback in a daemon's log fails the test unless the test
declares it with `mount.expect_log(...)`.

The local servers check each response against the official OpenAPI document and log an
ERROR for one that does not conform. An ERROR or traceback in the log of a server among a
test's fixtures fails that test.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from firecrest_fs.server.conformance import OPENAPI_DOCUMENT
from firecrest_fs.server.launch import LocalServer
from firecrest_fs.testing import NO_CACHE_OPTIONS, MountProcess

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
    `@pytest.mark.parametrize("server", [{"max_ops_file_size": 65536}], indirect=True)`.
    Each dict contains `LocalServer` keyword arguments that replace the test settings.
    """
    workdir = tmp_path / "work"
    workdir.mkdir()
    settings = {**TEST_SERVER_SETTINGS, **getattr(request, "param", {})}
    with LocalServer(
        served, workdir, log_file=str(tmp_path / "server.log"), validate_responses=OPENAPI_DOCUMENT, **settings
    ) as local:
        yield local


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory):
    """One local server with the test settings for a whole test module.

    Starting and stopping a server took about 0.65 s on a 2-core test machine, so a
    module of many short tests may share one. Such a module overrides `served` with a
    fresh folder inside `module_server.root` for each test, and `server` with this
    fixture. Request counters are then shared, so a test resets them before it counts.
    """
    base = tmp_path_factory.mktemp("module-server")
    root = base / "served"
    workdir = base / "work"
    root.mkdir()
    workdir.mkdir()
    with LocalServer(
        root, workdir, log_file=str(base / "server.log"), validate_responses=OPENAPI_DOCUMENT, **TEST_SERVER_SETTINGS
    ) as local:
        yield local


# How many bytes of each server log, by path, were already checked. A server shared by a
# module writes one log, so each test is checked for the lines added since the last check.
_checked_log_sizes: dict[str, int] = {}

SERVER_LOG_PROBLEM = re.compile(r" (ERROR|CRITICAL) |Traceback")


def new_server_log_problems(log_path: str) -> list[str]:
    """Return the ERROR, CRITICAL and traceback lines added to a server log since the last call."""
    checked = _checked_log_sizes.get(log_path, 0)
    try:
        with open(log_path, "rb") as server_log:
            server_log.seek(checked)
            added = server_log.read()
    except FileNotFoundError:
        return []
    # A line still being written is left for the next check.
    complete = added[: added.rfind(b"\n") + 1]
    _checked_log_sizes[log_path] = checked + len(complete)
    return [line for line in complete.decode(errors="replace").splitlines() if SERVER_LOG_PROBLEM.search(line)]


@pytest.fixture(autouse=True)
def server_log_check(request: pytest.FixtureRequest):
    """Fail a test when a local server among its fixtures logged an ERROR or a traceback.

    As an autouse fixture without dependencies it is set up before the test's other
    function-scoped fixtures and torn down after them, so a server of the test alone
    has stopped and its log is complete when it is read.
    """
    yield
    servers = {id(value): value for value in request.node.funcargs.values() if isinstance(value, LocalServer)}
    problems = []
    for server in servers.values():
        if server.log_file is not None:
            problems += new_server_log_problems(server.log_file)
    assert not problems, "errors in the local server's log:\n" + "\n".join(problems)


@pytest.fixture
def mount_factory(tmp_path: Path, server: LocalServer, served: Path):
    """Start mounts of the served directory with chosen options; all are stopped at the end."""
    mounts: list[MountProcess] = []

    def start(options: str = NO_CACHE_OPTIONS, root: Path | None = None) -> MountProcess:
        index = len(mounts)
        mount = MountProcess(server, root or served, tmp_path / f"mnt{index}", tmp_path / f"mount{index}.log", options)
        mounts.append(mount)
        return mount.start()

    yield start
    problems = []
    for mount in mounts:
        mount.stop()
        problems += mount.unexpected_log_lines()
    assert not problems, "unexpected warnings in the mount log:\n" + "\n".join(problems)


@pytest.fixture
def mount(mount_factory) -> MountProcess:
    """A mount of the served directory with every cache off, so remote changes show at once."""
    return mount_factory()


@pytest.fixture
def mnt(mount: MountProcess) -> Path:
    return mount.path
