"""Start and stop the local server in a subprocess, for the demo and for tests.

Example::

    with LocalServer(root, workdir, command_timeout=1) as server:
        token = server.token()
        env = server.client_env()   # FIRECREST_URL, FIRECREST_CLIENT_ID, ...
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import httpx

from firecrest_fs.server.config import (
    DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_JOB_QUEUE_DELAY,
    DEFAULT_JOB_RUN_DELAY,
    DEFAULT_MAX_OPS_FILE_SIZE,
    DEFAULT_TOKEN_LIFETIME,
)

log = logging.getLogger(__name__)

# The directory that contains the `firecrest_fs` package, put on the server's
# PYTHONPATH so that it starts from a source checkout without installation.
PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])

DEFAULT_START_TIMEOUT = 30.0
DEFAULT_STOP_TIMEOUT = 10.0
READY_POLL_INTERVAL = 0.05
HTTP_TIMEOUT = 30.0

# A cached admin token is replaced when fewer seconds than this remain.
TOKEN_REFRESH_MARGIN = 60


class LocalServerError(RuntimeError):
    """The local server could not be started, or a knob request failed."""


class LocalServer:
    """A local FirecREST server process over `root` and `workdir`.

    Times are in seconds and sizes in bytes. `log_file` receives the server's log
    (its stdout and stderr). Without it, the log goes to a temporary file, which
    the error shows when the server fails to start. With `validate_responses`, the
    path of an OpenAPI document such as `conformance.OPENAPI_DOCUMENT`, the server
    logs an ERROR for every response that does not conform to it. `extra_args` are
    appended to the server's command line.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        workdir: str | os.PathLike[str],
        *,
        system: str = "demo",
        max_ops_file_size: int = DEFAULT_MAX_OPS_FILE_SIZE,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        job_queue_delay: float = DEFAULT_JOB_QUEUE_DELAY,
        job_run_delay: float = DEFAULT_JOB_RUN_DELAY,
        latency: float = 0,
        timezone: str | None = None,
        token_lifetime: int = DEFAULT_TOKEN_LIFETIME,
        log_file: str | os.PathLike[str] | None = None,
        validate_responses: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.root = str(root)
        self.workdir = str(workdir)
        self.system = system.lower()
        self.max_ops_file_size = max_ops_file_size
        self.command_timeout = command_timeout
        self.job_queue_delay = job_queue_delay
        self.job_run_delay = job_run_delay
        self.latency = latency
        self.timezone = timezone
        self.token_lifetime = token_lifetime
        self.log_file = str(log_file) if log_file is not None else None
        self.validate_responses = str(validate_responses) if validate_responses is not None else None
        self.extra_args = list(extra_args)

        self.url: str | None = None
        self.token_url: str | None = None
        self.client_id: str | None = None
        self.client_secret: str | None = None
        self.pid: int | None = None

        self._process: subprocess.Popen[bytes] | None = None
        self._state_directory: str | None = None
        self._log_path: str | None = None
        self._http: httpx.Client | None = None
        self._admin_token: str | None = None
        self._admin_token_expiry = 0.0

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- Lifecycle ---------------------------------------------------------------

    def command_line(self, ready_file: str) -> list[str]:
        command = [
            sys.executable,
            "-m",
            "firecrest_fs.server",
            "--root", self.root,
            "--workdir", self.workdir,
            "--system", self.system,
            "--ready-file", ready_file,
            "--max-ops-file-size", str(self.max_ops_file_size),
            "--command-timeout", str(self.command_timeout),
            "--job-queue-delay", str(self.job_queue_delay),
            "--job-run-delay", str(self.job_run_delay),
            "--latency", str(self.latency),
            "--token-lifetime", str(self.token_lifetime),
        ]
        if self.timezone:
            command += ["--timezone", self.timezone]
        if self.validate_responses:
            command += ["--validate-responses", self.validate_responses]
        return command + self.extra_args

    def start(self, timeout: float = DEFAULT_START_TIMEOUT) -> None:
        """Start the server and wait until it listens.

        Raises LocalServerError with the server's log when it exits early or does
        not get ready within `timeout` seconds.
        """
        if self._process is not None:
            raise LocalServerError("the local server is already started")
        self.client_id = f"firecrest-fs-local-{secrets.token_hex(4)}"
        self.client_secret = secrets.token_urlsafe(32)
        self._state_directory = tempfile.mkdtemp(prefix="firecrest-fs-server-")
        ready_file = os.path.join(self._state_directory, "ready.json")
        self._log_path = self.log_file or os.path.join(self._state_directory, "server.log")

        environment = dict(os.environ)
        environment["F7T_LOCAL_CLIENT_ID"] = self.client_id
        environment["F7T_LOCAL_CLIENT_SECRET"] = self.client_secret
        environment["PYTHONPATH"] = os.pathsep.join(
            path for path in (PACKAGE_PARENT, environment.get("PYTHONPATH")) if path
        )

        with open(self._log_path, "ab") as log_output:
            self._process = subprocess.Popen(
                self.command_line(ready_file),
                stdin=subprocess.DEVNULL,
                stdout=log_output,
                stderr=log_output,
                env=environment,
            )
        self.pid = self._process.pid
        log.info("started local server, pid %d", self.pid)

        deadline = time.monotonic() + timeout
        while not os.path.exists(ready_file):
            status = self._process.poll()
            if status is not None:
                output = self._read_log()
                self._cleanup()
                raise LocalServerError(f"the local server exited with status {status} before it was ready:\n{output}")
            if time.monotonic() > deadline:
                output = self._read_log()
                self.stop()
                raise LocalServerError(f"the local server was not ready after {timeout} s:\n{output}")
            time.sleep(READY_POLL_INTERVAL)

        with open(ready_file, encoding="utf-8") as ready:
            details = json.load(ready)
        self.url = details["url"]
        self.token_url = details["token_url"]
        self._http = httpx.Client(base_url=self.url, timeout=HTTP_TIMEOUT)
        # Fetched now, so that the token requests of later knob calls do not show
        # in the counters while this token is valid.
        self.auth_headers()

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop the server with SIGTERM, then SIGKILL if it has not exited after `timeout` seconds."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("local server pid %d did not stop within %s s, so it is killed", process.pid, timeout)
                process.kill()
                process.wait()
        if process is not None:
            log.info("local server pid %d stopped with status %s", process.pid, process.returncode)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._state_directory is not None:
            shutil.rmtree(self._state_directory, ignore_errors=True)
            self._state_directory = None
        self._process = None

    def _read_log(self) -> str:
        try:
            with open(self._log_path or "", encoding="utf-8", errors="replace") as server_log:
                return server_log.read()[-20_000:]
        except OSError:
            return "(no server log)"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- Clients ------------------------------------------------------------------

    def client_env(self) -> dict[str, str]:
        """Return the environment variables a FirecREST client reads to reach this server."""
        self._require_started()
        return {
            "FIRECREST_URL": self.url or "",
            "FIRECREST_CLIENT_ID": self.client_id or "",
            "FIRECREST_CLIENT_SECRET": self.client_secret or "",
            "AUTH_TOKEN_URL": self.token_url or "",
        }

    def token(self) -> str:
        """Fetch a new access token with the client-credentials grant."""
        return self._request_token()[0]

    def _request_token(self) -> tuple[str, float]:
        self._require_started()
        response = self._client().post(
            "/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self.client_secret,
            },
        )
        if response.status_code != 200:
            raise LocalServerError(f"token request failed with {response.status_code}: {response.text}")
        token_response = response.json()
        return token_response["access_token"], float(token_response["expires_in"])

    def auth_headers(self) -> dict[str, str]:
        """Return an Authorization header with a cached token, fetched again before it expires."""
        if self._admin_token is None or time.time() > self._admin_token_expiry - TOKEN_REFRESH_MARGIN:
            self._admin_token, lifetime = self._request_token()
            self._admin_token_expiry = time.time() + lifetime
        return {"Authorization": f"Bearer {self._admin_token}"}

    # -- Knobs ----------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """Return the request counts per `"METHOD /route/template"`."""
        return self._knob("GET", "/_local/counters").json()

    def reset_counters(self) -> None:
        self._knob("DELETE", "/_local/counters")

    def set_faults(self, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Replace the fault rules. `firecrest_fs.server.knobs.FaultRule` describes the fields."""
        return self._knob("PUT", "/_local/faults", json=rules).json()

    def clear_faults(self) -> None:
        self._knob("DELETE", "/_local/faults")

    def update_settings(self, **settings: float) -> dict[str, float]:
        """Change runtime settings: latency, command_timeout, job_queue_delay, job_run_delay, token_lifetime."""
        return self._knob("PUT", "/_local/settings", json=settings).json()

    def _knob(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        self._require_started()
        response = self._client().request(method, path, headers=self.auth_headers(), **kwargs)
        if response.status_code >= 400:
            raise LocalServerError(f"{method} {path} failed with {response.status_code}: {response.text}")
        return response

    def _client(self) -> httpx.Client:
        if self._http is None:
            raise LocalServerError("the local server is not started. Call start() first.")
        return self._http

    def _require_started(self) -> None:
        if self.url is None or self._process is None:
            raise LocalServerError("the local server is not started. Call start() first.")
