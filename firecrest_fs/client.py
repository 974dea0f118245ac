"""The FirecREST v2 API client: one `httpx.AsyncClient`, trio-native, bounded in time.

Every call has per-phase httpx timeouts and one overall deadline that covers its retries, so
an operation on a dead server ends with `DeadlineExceededError` (EIO) within
`Timeouts.deadline` seconds. Only requests that are safe to repeat are retried on their own;
calls that change something and fail without a clear response check their outcome first
(`_change`). Status codes become exceptions in one place, `errors.api_error_for`.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import trio

from . import names
from .auth import TokenSource
from .errors import (
    ConfigurationError,
    DeadlineExceededError,
    FirecrestError,
    JobFailedError,
    NotFoundError,
    ServerError,
    TransportError,
    api_error_for,
    is_transient,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# Substrings of a job state that mean the job will not change any more (sacct prints
# "CANCELLED by <uid>", so states are matched as substrings).
TERMINAL_JOB_STATES = (
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
    "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT",
)
MV_SUCCESS_LINE = "Files were successfully moved."
# A job can be unknown to the scheduler's accounting for a while right after submission.
JOB_VISIBILITY_GRACE = 20.0


@dataclass(frozen=True)
class Timeouts:
    """Time bounds of one request, in seconds."""

    connect: float = 5.0
    # Longer than the server's command timeout (5 s by default), which bounds its responses.
    read: float = 20.0
    write: float = 20.0
    pool: float = 5.0
    # The whole call, retries and back-off included.
    deadline: float = 30.0

    def for_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


@dataclass(frozen=True)
class RetryPolicy:
    """The retry rule for transient failures: attempts and exponential back-off in seconds."""

    attempts: int = 6
    base_delay: float = 0.2
    max_delay: float = 5.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Return the pause before attempt number `attempt + 1`, with jitter."""
        if retry_after is not None:
            return retry_after  # the caller's deadline bounds it
        backoff = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return backoff * random.uniform(0.75, 1.25)


@dataclass(frozen=True)
class ListedEntry:
    """One entry of an `ops/ls` response, with its name decoded to bytes."""

    name: bytes
    type: str  # first letter of the mode string: "-", "d", "l", "p", "s", "c", "b"
    permissions: str
    uid: int | None
    gid: int | None
    size: int
    last_modified: str  # the server's local time, no zone: "2024-05-16T13:48:53"
    link_target: bytes | None
    # The listed text taken literally, when it contains a backslash: the server prints a
    # name containing a backslash and a letter or digits exactly as the escape it resembles.
    literal_name: bytes | None = None
    link_target_ambiguous: bool = False


@dataclass(frozen=True)
class RemoteStat:
    """The answer of `ops/stat`: lstat(2) fields, times in epoch seconds."""

    mode: int
    ino: int
    dev: int
    nlink: int
    uid: int
    gid: int
    size: int
    atime: int
    mtime: int
    ctime: int


@dataclass(frozen=True)
class FileSystemInfo:
    path: bytes
    data_type: str
    default_work_dir: bool


@dataclass(frozen=True)
class SystemInfo:
    """The part of `GET /status/systems` about one system that a mount needs."""

    name: str
    file_systems: list[FileSystemInfo]
    max_ops_file_size: int
    command_timeout: float
    needs_account: bool = False

    @property
    def default_work_dir(self) -> bytes | None:
        for fs in self.file_systems:
            if fs.default_work_dir:
                return fs.path
        return None

    @property
    def max_download_size(self) -> int:
        """The largest file `ops/download` can return: its base64 text must stay below the limit."""
        return 3 * ((self.max_ops_file_size - 1) // 4)


@dataclass
class UserInfo:
    uid: int
    gid: int
    name: str
    groups: list[int] = field(default_factory=list)


class FirecrestClient:
    """Calls of the FirecREST v2 API for one system, over one long-lived HTTP client."""

    def __init__(
        self,
        base_url: str,
        system: str,
        tokens: TokenSource,
        http: httpx.AsyncClient,
        *,
        timeouts: Timeouts = Timeouts(),
        retry: RetryPolicy = RetryPolicy(),
    ):
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"FIRECREST_URL must be an http(s) URL, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.system = system
        self.tokens = tokens
        self.http = http
        self.timeouts = timeouts
        self.retry = retry
        self.info: SystemInfo | None = None
        self._request_ids = itertools.count(1)

    # -- transport ---------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        route: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        files: Any = None,
        ok: tuple[int, ...] = (200,),
        idempotent: bool,
    ) -> httpx.Response:
        """Send one request, refresh the token once on 401, retry if safe, within the deadline."""
        request_id = next(self._request_ids)
        url = self.base_url + route
        target = route + (f" path={params['path']!r}" if params and "path" in params else "")
        label = f"{method} {target}"
        refreshed = False
        attempt = 0
        deadline = trio.current_time() + self.timeouts.deadline
        while True:
            attempt += 1
            failure: FirecrestError
            retry_after: float | None = None
            try:
                with trio.fail_at(deadline):
                    token = await self.tokens.token()
                    response = await self.http.request(
                        method, url, params=params, json=json, files=files,
                        headers={"Authorization": f"Bearer {token}"},
                    )
            except trio.TooSlowError:
                raise DeadlineExceededError(
                    f"request {request_id} {label} got no response within {self.timeouts.deadline:.0f} s"
                ) from None
            except httpx.HTTPError as exc:
                failure = TransportError(f"request {request_id} {label} failed: {type(exc).__name__}: {exc}")
            else:
                if response.status_code in ok:
                    if attempt > 1:
                        log.info("request %d %s succeeded at attempt %d", request_id, label, attempt)
                    return response
                message = _error_message(response)
                if _needs_new_token(response.status_code, message) and not refreshed and self.tokens.can_refresh:
                    log.info("request %d %s: token rejected (%s), fetching a new one", request_id, label, message)
                    refreshed = True
                    await self.tokens.token(refresh=True)
                    attempt -= 1
                    continue
                failure = api_error_for(response.status_code, message, method=method, url=target)
                retry_after = _retry_after(response)

            if not (idempotent and is_transient(failure)) or attempt >= self.retry.attempts:
                if is_transient(failure):
                    log.warning("request %d %s failed after %d attempt(s): %s", request_id, label, attempt, failure)
                raise failure
            delay = self.retry.delay(attempt, retry_after)
            if trio.current_time() + delay >= deadline:
                log.warning("request %d %s: no time left to retry: %s", request_id, label, failure)
                raise failure
            log.log(_retry_log_level(attempt), "request %d %s failed (attempt %d): %s; retrying in %.2f s",
                    request_id, label, attempt, failure, delay)
            await trio.sleep(delay)

    async def _change(self, send: Callable[[], Awaitable[T]], took_effect: Callable[[], Awaitable[bool]], description: str) -> T | None:
        """Send a request that changes something; after an unclear failure, check before resending.

        Returns what `send` returned, or None when the check found the change already made.
        """
        deadline = trio.current_time() + self.timeouts.deadline
        attempt = 0
        while True:
            attempt += 1
            try:
                with trio.fail_at(deadline):
                    return await send()
            except trio.TooSlowError:
                raise DeadlineExceededError(f"{description}: no response within {self.timeouts.deadline:.0f} s") from None
            except (ServerError, TransportError, DeadlineExceededError) as exc:
                failure: FirecrestError = exc
            try:
                with trio.fail_at(deadline):
                    if await took_effect():
                        log.info("%s: the request failed (%s) but its change was made", description, failure)
                        return None
            except trio.TooSlowError:
                raise failure from None
            except FirecrestError as exc:
                if not is_transient(exc):
                    raise
            delay = self.retry.delay(attempt, None)
            if attempt >= self.retry.attempts or trio.current_time() + delay >= deadline:
                log.warning("%s failed after %d attempt(s): %s", description, attempt, failure)
                raise failure
            log.log(_retry_log_level(attempt), "%s failed (attempt %d): %s; retrying in %.2f s",
                    description, attempt, failure, delay)
            await trio.sleep(delay)

    def _fs(self, op: str) -> str:
        return f"/filesystem/{self.system}/{op}"

    # -- status --------------------------------------------------------------------------

    async def system_info(self) -> SystemInfo:
        """Read this system's file systems and limits from `GET /status/systems`, once."""
        if self.info is not None:
            return self.info
        response = await self._send("GET", "/status/systems", idempotent=True)
        for system in response.json().get("systems", []):
            if str(system.get("name", "")).lower() == self.system.lower():
                self.info = _parse_system(system)
                return self.info
        known = ", ".join(str(s.get("name")) for s in response.json().get("systems", []))
        raise ConfigurationError(f"system {self.system!r} is not served by {self.base_url} (systems: {known or 'none'})")

    async def userinfo(self) -> UserInfo:
        response = await self._send("GET", f"/status/{self.system}/userinfo", idempotent=True)
        body = response.json()
        return UserInfo(
            uid=int(body["user"]["id"]),
            gid=int(body["group"]["id"]),
            name=str(body["user"]["name"]),
            groups=[int(g["id"]) for g in body.get("groups", [])],
        )

    # -- reading -------------------------------------------------------------------------

    async def ls(self, path: bytes) -> list[ListedEntry]:
        """List a directory with hidden files and numeric ids (one `ops/ls`)."""
        params = {"path": names.to_wire(path), "showHidden": "true", "numericUid": "true"}
        response = await self._send("GET", self._fs("ops/ls"), params=params, idempotent=True)
        return [_parse_listed(item) for item in response.json().get("output", [])]

    async def stat(self, path: bytes) -> RemoteStat:
        """Return lstat(2) of a path (`ops/stat`)."""
        params = {"path": names.to_wire(path)}
        response = await self._send("GET", self._fs("ops/stat"), params=params, idempotent=True)
        out = response.json()["output"]
        return RemoteStat(**{key: int(out[key]) for key in RemoteStat.__dataclass_fields__})

    async def exists(self, path: bytes) -> bool:
        try:
            await self.stat(path)
        except NotFoundError:
            return False
        return True

    async def download(self, path: bytes) -> bytes:
        """Return a small file's whole content (`ops/download`, binary-safe)."""
        params = {"path": names.to_wire(path)}
        response = await self._send("GET", self._fs("ops/download"), params=params, idempotent=True)
        return response.content

    async def checksum(self, path: bytes) -> str:
        """Return the SHA-256 of a file as lower-case hex (`ops/checksum`)."""
        params = {"path": names.to_wire(path)}
        response = await self._send("GET", self._fs("ops/checksum"), params=params, idempotent=True)
        return str(response.json()["output"]["checksum"]).lower()

    async def view(self, path: bytes, offset: int, size: int) -> str:
        """Return `ops/view` text: exact only for ASCII, see the API notes on `view`."""
        params = {"path": names.to_wire(path), "offset": offset, "size": size}
        response = await self._send("GET", self._fs("ops/view"), params=params, idempotent=True)
        return response.json()["output"]

    # -- changing ------------------------------------------------------------------------

    async def upload(self, directory: bytes, name: bytes, data: bytes) -> None:
        """Write a whole file with `ops/upload`; repeating it writes the same bytes again."""
        if not data:
            raise ValueError("ops/upload cannot create empty files: the server returns 408")
        params = {"path": names.to_wire(directory)}
        files = {"file": (names.to_wire(name), data, "application/octet-stream")}
        await self._send("POST", self._fs("ops/upload"), params=params, files=files, ok=(201, 204), idempotent=True)

    async def mkdir(self, path: bytes) -> None:
        body = {"path": names.to_wire(path), "parent": False}

        async def send() -> None:
            await self._send("POST", self._fs("ops/mkdir"), json=body, ok=(201,), idempotent=False)

        await self._change(send, lambda: self.exists(path), f"mkdir {path!r}")

    async def rm(self, path: bytes) -> None:
        """Remove a path; the server runs `rm -r`, so callers guard directories themselves."""
        params = {"path": names.to_wire(path)}

        async def send() -> None:
            await self._send("DELETE", self._fs("ops/rm"), params=params, ok=(204,), idempotent=False)

        async def gone() -> bool:
            return not await self.exists(path)

        await self._change(send, gone, f"rm {path!r}")

    async def chmod(self, path: bytes, mode: int) -> None:
        body = {"path": names.to_wire(path), "mode": format(mode & 0o7777, "o")}
        await self._send("PUT", self._fs("ops/chmod"), json=body, idempotent=True)

    async def chown(self, path: bytes, owner: str, group: str) -> None:
        """Change owner and group (names or numbers; "" keeps one); not retried, see below."""
        body = {"path": names.to_wire(path), "owner": owner, "group": group}
        # The server answers some invalid owners with 500, which must not be retried.
        await self._send("PUT", self._fs("ops/chown"), json=body, idempotent=False)

    async def symlink(self, target: bytes, link: bytes) -> None:
        body = {"path": names.to_wire(target), "linkPath": names.to_wire(link)}

        async def send() -> None:
            await self._send("POST", self._fs("ops/symlink"), json=body, ok=(201,), idempotent=False)

        await self._change(send, lambda: self.exists(link), f"symlink {link!r}")

    async def extract(self, archive: bytes, target: bytes) -> None:
        """Unpack an uncompressed tar into a directory; repeating it unpacks the same files."""
        body = {"path": names.to_wire(archive), "targetPath": names.to_wire(target), "compression": "none"}
        await self._send("POST", self._fs("ops/extract"), json=body, ok=(201, 204), idempotent=True)

    async def compress(self, path: bytes, archive: bytes) -> None:
        body = {"path": names.to_wire(path), "targetPath": names.to_wire(archive),
                "dereference": False, "compression": "none"}
        await self._send("POST", self._fs("ops/compress"), json=body, ok=(201, 204), idempotent=True)

    # -- jobs ----------------------------------------------------------------------------

    async def mv(self, source: bytes, target: bytes, *, timeout: float) -> None:
        """Move with a `transfer/mv` job and wait for it; mv(1) semantics, so check types first."""
        body: dict[str, Any] = {"sourcePath": names.to_wire(source), "targetPath": names.to_wire(target)}
        # NOTE: sites whose transfer jobs need an `account` answer 400 here; not supported yet.
        route = self._fs("transfer/mv")

        async def send() -> dict[str, Any]:
            response = await self._send("POST", route, json=body, ok=(201,), idempotent=False)
            return response.json()["transferJob"]

        async def moved() -> bool:
            return not await self.exists(source) and await self.exists(target)

        job = await self._change(send, moved, f"transfer/mv {source!r} -> {target!r}")
        if job is None:
            return
        await self.wait_for_job(job, MV_SUCCESS_LINE, timeout=timeout)

    async def wait_for_job(self, job: dict[str, Any], success_line: str, *, timeout: float) -> None:
        """Poll a transfer job until it ends, then require its success line in the output log.

        COMPLETED with exit code 0 is not proof: the server's job scripts exit 0 after a
        failure too, so the output log decides.
        """
        job_id = str(job["jobId"])
        submitted = trio.current_time()
        delay = 0.1
        with trio.move_on_after(timeout) as scope:
            while True:
                try:
                    response = await self._send("GET", f"/compute/{self.system}/jobs/{job_id}", idempotent=True)
                    jobs = response.json().get("jobs") or []
                    state = str(jobs[0]["status"]["state"]) if jobs else ""
                    exit_code = jobs[0]["status"].get("exitCode") if jobs else None
                except NotFoundError:
                    if trio.current_time() - submitted > JOB_VISIBILITY_GRACE:
                        raise JobFailedError(f"job {job_id} is not known to the scheduler") from None
                    state, exit_code = "", None
                if any(terminal in state for terminal in TERMINAL_JOB_STATES):
                    break
                await trio.sleep(delay)
                delay = min(delay * 2, 2.0)
        if scope.cancelled_caught:
            await self._cancel_job(job_id)
            raise JobFailedError(f"job {job_id} did not finish within {timeout:.0f} s; it was cancelled")
        output = await self._read_log(job["logs"]["outputLog"])
        if "COMPLETED" in state and exit_code == 0 and success_line in output:
            log.debug("job %s completed", job_id)
            return
        errors = await self._read_log(job["logs"]["errorLog"])
        raise JobFailedError(f"job {job_id} ended {state} (exit code {exit_code}): {errors.strip()[-500:] or 'no error output'}")

    async def _read_log(self, path: str) -> str:
        info = await self.system_info()
        # view reads up to twice `size` remotely and fails when that reaches the limit.
        size = max(1, min(info.max_ops_file_size // 2 - 1, 1 << 20))
        try:
            return await self.view(path.encode(), 0, size)
        except NotFoundError:
            return ""

    async def _cancel_job(self, job_id: str) -> None:
        try:
            await self._send("DELETE", f"/compute/{self.system}/jobs/{job_id}", ok=(200, 204), idempotent=True)
        except FirecrestError as exc:
            # A finished job answers 500 ("already completing or completed"): nothing to cancel.
            log.info("cancelling job %s failed: %s", job_id, exc)


def _retry_log_level(attempt: int) -> int:
    """Return the log level of a retry: DEBUG for the first, INFO for the second, then WARNING."""
    if attempt == 1:
        return logging.DEBUG
    if attempt == 2:
        return logging.INFO
    return logging.WARNING


def _needs_new_token(status: int, message: str) -> bool:
    return status == 401 or (status == 403 and "Not authenticated" in message)


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict):
        message = body.get("message") or body.get("detail") or body.get("error")
        if message:
            return str(message)
    return response.text[:500]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _parse_listed(item: dict[str, Any]) -> ListedEntry:
    target = item.get("linkTarget")

    def number(value: Any) -> int | None:
        try:
            return int(value)
        except (TypeError, ValueError):
            return None

    name = names.decode_listed_name(item["name"])
    literal = item["name"].encode("utf-8", "surrogateescape")
    return ListedEntry(
        name=name,
        type=item.get("type") or "-",
        permissions=item.get("permissions") or "---------",
        uid=number(item.get("user")),
        gid=number(item.get("group")),
        size=number(item.get("size")) or 0,
        last_modified=item.get("lastModified") or "1970-01-01T00:00:00",
        link_target=names.decode_listed_name(target) if target is not None else None,
        literal_name=literal if literal != name else None,
        link_target_ambiguous=target is not None and "\\" in target,
    )


def _parse_system(system: dict[str, Any]) -> SystemInfo:
    operation = system.get("dataOperation") or {}
    directives = operation.get("datatransfer_jobs_directives") or []
    ssh_timeouts = (system.get("ssh") or {}).get("timeout") or {}
    return SystemInfo(
        name=system["name"],
        file_systems=[
            FileSystemInfo(
                path=str(fs["path"]).encode(),
                data_type=str(fs.get("dataType", "")),
                default_work_dir=bool(fs.get("defaultWorkDir")),
            )
            for fs in system.get("fileSystems") or []
        ],
        max_ops_file_size=int(operation.get("max_ops_file_size") or 5 * 1024 * 1024),
        command_timeout=float(ssh_timeouts.get("commandExecution") or 5),
        needs_account=any("{account}" in str(d) for d in directives),
    )

