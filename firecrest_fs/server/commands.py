"""Running the real server's shell commands locally and mapping their outcome to HTTP.

The real server sends each command line over SSH as `timeout N <command>`, reads
stdout and stderr up to `max_ops_file_size` bytes each, and maps the exit status
and stderr to an HTTP status. This module does the same with a local
`bash -c`, in its own process group, under `LC_ALL=C`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal

from firecrest_fs.server.config import RuntimeSettings, format_seconds
from firecrest_fs.server.errors import ApiError

log = logging.getLogger(__name__)

# Bash's error for a command line with an unbalanced single quote. The real
# server puts paths in single quotes without escaping, so a path containing `'`
# produces this error. This server returns the same error without running anything.
UNMATCHED_QUOTE_MESSAGE = (
    "Remote process failed with exit status:2 and error message:"
    "bash: -c: line 1: unexpected EOF while looking for matching `''"
)

OUTPUT_LIMIT_MESSAGE = "Command output exceeded buffer limit."
ASYNCIO_TIMEOUT_MESSAGE = "Command execution timeout limit exceeded."

# Extra time the asyncio timeout gives a command beyond `timeout N`, so that the
# `timeout` command normally ends it first (exit 124) and the response does not
# depend on which of the two fires first.
ASYNCIO_TIMEOUT_GRACE = 1.0

READ_CHUNK_SIZE = 64 * 1024


def quote(value: str) -> str:
    """Put a value in single quotes the way the real server does, without escaping.

    Raises ApiError 500 with bash's message when the value contains `'`, the
    response of the real server after the shell failed to parse its command.
    Nothing runs in that case, so the quote cannot be used to inject commands.
    """
    if "'" in value:
        raise ApiError(500, UNMATCHED_QUOTE_MESSAGE)
    return f"'{value}'"


@dataclasses.dataclass
class CommandResult:
    stdout: bytes
    stderr: bytes
    exit_status: int

    @property
    def stdout_text(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")

    @property
    def stderr_text(self) -> str:
        return self.stderr.decode("utf-8", errors="replace")


class CommandRunner:
    """Runs command lines as the real server runs them on a cluster, with its limits."""

    def __init__(self, settings: RuntimeSettings, output_limit: int, timezone: str | None) -> None:
        self._settings = settings
        self._output_limit = output_limit
        self._environment = command_environment(timezone)

    async def run(self, command: str, *, stdin: bytes | None = None) -> CommandResult:
        """Run `timeout N <command>` with bash and return its output and exit status.

        `stdin=None` gives the command /dev/null. Otherwise the bytes are written to
        its stdin, followed by end-of-file, except for empty bytes: like the real
        server, nothing is written and end-of-file is never sent, so a command that
        reads stdin waits until the timeout.

        Raises ApiError 413 when stdout or stderr reaches the output limit, and 408
        when the asyncio timeout fires.
        """
        timeout = self._settings.command_timeout
        command_line = f"timeout {format_seconds(timeout)} {command}"
        log.debug("running command: %s", command_line)

        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            command_line,
            stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._environment,
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(timeout + ASYNCIO_TIMEOUT_GRACE):
                if stdin:
                    process.stdin.write(stdin)
                stdout, stderr, _ = await asyncio.gather(
                    self._read_limited(process, process.stdout),
                    self._read_limited(process, process.stderr),
                    self._feed_stdin(process, stdin),
                )
                if len(stdout) >= self._output_limit or len(stderr) >= self._output_limit:
                    log.warning("command output reached %d bytes: %s", self._output_limit, command_line)
                    raise ApiError(413, OUTPUT_LIMIT_MESSAGE)
                exit_status = await process.wait()
        except TimeoutError as exc:
            log.warning("command timed out after %s s: %s", format_seconds(timeout), command_line)
            raise ApiError(408, ASYNCIO_TIMEOUT_MESSAGE) from exc
        finally:
            await _end_process(process)

        log.debug("command exited with %d: %s", exit_status, command_line)
        return CommandResult(stdout=stdout, stderr=stderr, exit_status=exit_status)

    async def run_checked(self, command: str, *, stdin: bytes | None = None) -> CommandResult:
        """Run a command and raise the real server's ApiError when it fails."""
        result = await self.run(command, stdin=stdin)
        raise_for_result(result)
        return result

    async def _read_limited(
        self, process: asyncio.subprocess.Process, stream: asyncio.StreamReader
    ) -> bytes:
        """Read until end-of-file or until the output limit is reached.

        At the limit the process group is killed, so that the other stream reaches
        end-of-file too instead of waiting for a writer blocked on a full pipe.
        """
        data = bytearray()
        while len(data) < self._output_limit:
            chunk = await stream.read(min(READ_CHUNK_SIZE, self._output_limit - len(data)))
            if not chunk:
                return bytes(data)
            data += chunk
        _kill_group(process)
        return bytes(data)

    @staticmethod
    async def _feed_stdin(process: asyncio.subprocess.Process, stdin: bytes | None) -> None:
        if not stdin:
            return
        try:
            await process.stdin.drain()
            process.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            log.debug("command closed its stdin before reading all input")


async def _end_process(process: asyncio.subprocess.Process) -> None:
    """Kill what is left of the command's process group and reap the process."""
    _kill_group(process)
    if process.stdin is not None and not process.stdin.is_closing():
        process.stdin.close()
    await process.wait()


def _kill_group(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def raise_for_result(result: CommandResult) -> None:
    """Raise the real server's ApiError for a failed command, and return if it succeeded.

    The exit status 124 of `timeout` is checked first. Then substrings of stderr
    choose the status: "No such file or directory" 404, "Permission denied" and
    "Operation not permitted" 403, "File exists" and "invalid user" 400. Any other
    failure is 500.
    """
    if result.exit_status == 0:
        return
    stderr = result.stderr_text
    message = f"Remote process failed with exit status:{result.exit_status}"
    if stderr:
        message += f" and error message:{stderr.strip()}"

    if result.exit_status == 124:
        raise ApiError(408, message)
    if "No such file or directory" in stderr:
        raise ApiError(404, message)
    if "Permission denied" in stderr or "Operation not permitted" in stderr:
        raise ApiError(403, message)
    if "File exists" in stderr or "invalid user" in stderr:
        raise ApiError(400, message)
    raise ApiError(500, message)


def command_environment(timezone: str | None) -> dict[str, str]:
    """Build the environment of commands and jobs: the C locale, and no secrets of the server."""
    environment = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        "LC_ALL": "C",
        "LANG": "C",
    }
    if timezone:
        environment["TZ"] = timezone
    elif "TZ" in os.environ:
        environment["TZ"] = os.environ["TZ"]
    return environment
