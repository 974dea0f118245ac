"""Helpers for the local server's tests: a server per test module and an API client.

The test modules import the fixtures they use from here. Fixture names start with
`api` so that they do not replace the `server` fixture of conftest.py.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from firecrest_fs.server.conformance import OPENAPI_DOCUMENT
from firecrest_fs.server.launch import LocalServer

# A small limit keeps the size-boundary tests quick, and short delays keep the job tests quick.
TEST_MAX_OPS_FILE_SIZE = 4096
FAST_SETTINGS: dict[str, Any] = dict(
    max_ops_file_size=TEST_MAX_OPS_FILE_SIZE,
    command_timeout=1,
    job_queue_delay=0.05,
    job_run_delay=0.05,
)

JOB_WAIT_SECONDS = 20.0
JOB_POLL_SECONDS = 0.05

_area_numbers = itertools.count()


class Api:
    """A small FirecREST client for tests: paths relative to the system, a fresh token."""

    def __init__(self, server: LocalServer) -> None:
        self.server = server
        self.system = server.system
        self.http = httpx.Client(base_url=server.url, timeout=30.0)
        self.headers = {"Authorization": f"Bearer {server.token()}"}

    def request(self, method: str, endpoint: str, **kwargs: Any) -> httpx.Response:
        """Send `method` to `/<group>/<system>/<rest>` for an endpoint given as `filesystem/ops/ls`."""
        group, rest = endpoint.split("/", 1)
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.http.request(method, f"/{group}/{self.system}/{rest}", headers=headers, **kwargs)

    def get(self, endpoint: str, **params: Any) -> httpx.Response:
        return self.request("GET", endpoint, params=params)

    def post(self, endpoint: str, body: dict[str, Any]) -> httpx.Response:
        return self.request("POST", endpoint, json=body)

    def put(self, endpoint: str, body: dict[str, Any]) -> httpx.Response:
        return self.request("PUT", endpoint, json=body)

    def delete(self, endpoint: str, **params: Any) -> httpx.Response:
        return self.request("DELETE", endpoint, params=params)

    def upload(self, directory: Path | str, name: str, content: bytes) -> httpx.Response:
        return self.request(
            "POST",
            "filesystem/ops/upload",
            params={"path": str(directory)},
            files={"file": (name, content, "application/octet-stream")},
        )

    def wait_for_job(self, job_id: str) -> dict[str, Any]:
        """Poll a job until it reaches a terminal state and return its record."""
        deadline = time.monotonic() + JOB_WAIT_SECONDS
        while time.monotonic() < deadline:
            response = self.get(f"compute/jobs/{job_id}")
            assert response.status_code == 200, response.text
            job = response.json()["jobs"][0]
            if job["status"]["state"].split(" ")[0] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"):
                return job
            time.sleep(JOB_POLL_SECONDS)
        raise AssertionError(f"job {job_id} did not finish within {JOB_WAIT_SECONDS} s")

    def close(self) -> None:
        self.http.close()


def start_server(base: Path, **settings: Any) -> LocalServer:
    """Return a started server over `base/root` and `base/work`, logging to `base/server.log`.

    The server checks its responses against the OpenAPI document unless `settings`
    sets `validate_responses` to None.
    """
    root = base / "root"
    workdir = base / "work"
    root.mkdir()
    workdir.mkdir()
    settings = {"validate_responses": OPENAPI_DOCUMENT, **settings}
    server = LocalServer(root, workdir, log_file=base / "server.log", **settings)
    server.start()
    return server


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """One server per test module, with a 4096-byte limit and a 1 s command timeout."""
    server = start_server(tmp_path_factory.mktemp("server"), **FAST_SETTINGS)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def api(api_server: LocalServer) -> Iterator[Api]:
    client = Api(api_server)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def area(api_server: LocalServer) -> Path:
    """A fresh, empty directory inside the served root, for one test."""
    directory = Path(api_server.root) / f"area{next(_area_numbers)}"
    directory.mkdir()
    return directory


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside every file system of the server, with a file in it."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "secret.txt").write_text("secret\n")
    return directory


def error_message(response: httpx.Response) -> str:
    return response.json()["message"]
