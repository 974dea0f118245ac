"""Wiring of one mount: HTTP client, credentials, checks of the source, pyfuse3 main loop.

Shutdown order: a SIGINT or SIGTERM (or an unmount from outside) ends `pyfuse3.main`; dirty
files are then uploaded within `SHUTDOWN_FLUSH_DEADLINE`, the kernel mount is removed, the
HTTP client closed and the spool deleted (or kept, with an ERROR line, if it still holds
data that did not reach the server).
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx
import pyfuse3
import trio

from . import names
from .auth import token_source_from_env
from .client import FirecrestClient, Timeouts
from .clock import ServerClock, probe_zone
from .cache import INTERNAL_PREFIX
from .errors import AlreadyExistsError, ConfigurationError, FirecrestError
from .inodes import attr_from_stat
from .filesystem import MountOptions
from .operations import Operations

log = logging.getLogger(__name__)

SHUTDOWN_FLUSH_DEADLINE = 60.0


@dataclass(frozen=True)
class Source:
    """The source of a mount, `SYSTEM[:PATH]`; without a path, the system's default work directory."""

    system: str
    path: bytes | None

    @classmethod
    def parse(cls, text: str) -> Source:
        system, _, path = text.partition(":")
        if not system:
            raise ConfigurationError(f"invalid source {text!r}: expected SYSTEM[:PATH]")
        if path and not path.startswith("/"):
            raise ConfigurationError(f"invalid source {text!r}: PATH must be absolute")
        normalized = os.path.normpath(path).encode() if path else None
        if normalized is not None and normalized.startswith(b"//"):
            normalized = normalized[1:]
        return cls(system, normalized)

    def __str__(self) -> str:
        return f"{self.system}:{self.path.decode(errors='replace')}" if self.path else self.system


async def _staging_folder(client: FirecrestClient, work_dir: bytes | None) -> bytes | None:
    """Return the mount's private folder in the default work directory, creating it once."""
    if work_dir is None:
        return None
    folder = names.join(work_dir, INTERNAL_PREFIX + b"staging")
    try:
        await client.mkdir(folder)
    except AlreadyExistsError:
        pass
    except FirecrestError as exc:
        log.info("no staging folder in %r (%s): archives go to the folders they fill", work_dir, exc)
        return None
    return folder


async def prepare(client: FirecrestClient, source: Source, options: MountOptions) -> Operations:
    """Check the source against the server and build the operations for it."""
    info = await client.system_info()
    user = await client.userinfo()
    root = source.path or info.default_work_dir
    if root is None:
        raise ConfigurationError(f"system {source.system!r} has no default work directory: give SYSTEM:PATH")
    if not any(names.is_within(root, fs.path) for fs in info.file_systems):
        roots = ", ".join(fs.path.decode(errors="replace") for fs in info.file_systems)
        raise ConfigurationError(f"{root.decode(errors='replace')} is outside the file systems of {source.system} ({roots})")
    result = await client.stat(root)
    if not stat.S_ISDIR(result.mode):
        raise ConfigurationError(f"{root.decode(errors='replace')} on {source.system} is not a directory")
    log.info(
        "mounting %s:%s as user %s (limits: %d bytes per upload, %d per download)",
        source.system, root.decode(errors="replace"), user.name, info.max_ops_file_size, info.max_download_size,
    )
    staging = await _staging_folder(client, info.default_work_dir)
    zone = None
    probe_directory = staging or (None if options.read_only else root)
    if probe_directory is not None:
        zone = await probe_zone(client, probe_directory)
    operations = Operations(client, root, info, user, attr_from_stat(result), options, ServerClock(zone), staging)
    await operations.start()
    return operations


async def run(
    source: Source,
    mountpoint: str,
    options: MountOptions,
    env: Mapping[str, str],
    *,
    timeouts: Timeouts = Timeouts(),
    fuse_options: set[str] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Mount `source` on `mountpoint` and serve it until unmounted or signalled."""
    url = env.get("FIRECREST_URL")
    if not url:
        raise ConfigurationError("FIRECREST_URL is not set: it must give the FirecREST API's base URL")
    async with httpx.AsyncClient(timeout=timeouts.for_httpx()) as http:
        tokens = token_source_from_env(env, http)
        client = FirecrestClient(url, source.system, tokens, http, timeouts=timeouts)
        operations = await prepare(client, source, options)
        fsname = f"firecrest-fs:{source}".replace(",", "_")
        fuse = set(pyfuse3.default_options) | {f"fsname={fsname}", "subtype=firecrest-fs"} | (fuse_options or set())
        if options.read_only:
            fuse.add("ro")
        pyfuse3.init(operations, mountpoint, fuse)
        log.info("mounted on %s", mountpoint)
        saved = True
        try:
            async with trio.open_nursery() as nursery:
                operations.background = nursery
                nursery.start_soon(_stop_on_signal, nursery.cancel_scope)
                if on_ready is not None:
                    on_ready()
                await pyfuse3.main()
                nursery.cancel_scope.cancel()
        finally:
            operations.background = None  # the kernel is gone: nothing left to invalidate
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + SHUTDOWN_FLUSH_DEADLINE
                try:
                    saved = await operations.flush_all()
                except Exception:
                    saved = False
                    log.exception("uploading pending files at unmount failed")
            if scope.cancelled_caught:
                saved = False
                log.error("pending uploads did not finish within %.0f s", SHUTDOWN_FLUSH_DEADLINE)
            pyfuse3.close(unmount=True)
            operations.store.remove(keep=not saved)
            log.info("unmounted %s", mountpoint)


async def _stop_on_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s: unmounting", signal.Signals(signum).name)
            pyfuse3.terminate()
            return


def describe_error(exc: BaseException) -> str:
    """Return a one-line message for errors that stop a mount from starting."""
    if isinstance(exc, FirecrestError):
        return str(exc)
    if isinstance(exc, RuntimeError) and "fuse" in str(exc).lower():
        return f"FUSE mount failed: {exc}"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EACCES):
        return f"{exc.filename or 'mount point'}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"
