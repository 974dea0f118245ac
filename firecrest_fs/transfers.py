"""Creating remote entries through one tar archive and `ops/extract`.

`ops/upload` cannot create an empty file (the server returns 408 after its command
timeout), changes some names on the way (quotes, control characters, backslashes), and
cannot set a mode or a time. An archive carries all of that: the mount uploads an
uncompressed tar under a hidden internal name to its staging folder (or, without one, to
the target directory), extracts it into the target directory and removes it, whatever
happened in between.
"""

from __future__ import annotations

import io
import logging
import tarfile
import time
import uuid
from dataclasses import dataclass

import trio

from . import names
from .cache import INTERNAL_PREFIX
from .client import FirecrestClient
from .errors import FirecrestError

log = logging.getLogger(__name__)

# Bytes a name must not contain to travel unchanged in the multipart `filename` of
# `ops/upload`: httpx percent-encodes quotes and control characters, and the server's
# multipart parser drops everything up to a backslash.
_UNSAFE_UPLOAD_BYTES = frozenset(b'"\\%') | frozenset(range(0x20)) | {0x7F}


def upload_keeps_name(name: bytes) -> bool:
    """Return whether `ops/upload` would create exactly this name."""
    if any(byte in _UNSAFE_UPLOAD_BYTES for byte in name):
        return False
    try:
        name.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@dataclass(frozen=True)
class Member:
    """One entry to create: a regular file (with `data`), a symlink (with `target`) or a directory."""

    name: bytes
    mode: int = 0o644
    mtime: float | None = None
    data: bytes = b""
    target: bytes | None = None
    directory: bool = False


def build_archive(members: list[Member]) -> bytes:
    """Return an uncompressed tar of `members` with their modes and times."""
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT,
                      encoding="utf-8", errors="surrogateescape") as archive:
        for member in members:
            info = tarfile.TarInfo(member.name.decode("utf-8", "surrogateescape"))
            info.mode = member.mode & 0o7777
            info.mtime = int(member.mtime if member.mtime is not None else now)
            if member.target is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = member.target.decode("utf-8", "surrogateescape")
                archive.addfile(info)
            elif member.directory:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(member.data)
                archive.addfile(info, io.BytesIO(member.data))
        end_of_members = archive.offset
    # tarfile pads the archive to a 10 KiB record, which could push a file close to the
    # upload limit over it; GNU tar needs only the two zero blocks that end the archive.
    return buffer.getvalue()[:end_of_members + 2 * tarfile.BLOCKSIZE]


async def extract_members(client: FirecrestClient, directory: bytes, members: list[Member],
                          staging: bytes | None = None) -> None:
    """Create `members` in the remote `directory` with one upload, one extract, one rm.

    The archive goes to the `staging` folder when there is one, so that the user's folders
    only change by what the archive creates in them (their mtimes included).
    """
    for member in members:
        names.to_wire(member.name)  # rejects names the server cannot carry, before any request
    archive = build_archive(members)
    archive_directory = staging or directory
    archive_path = _archive_path(archive_directory)
    await client.upload(archive_directory, names.split(archive_path)[1], archive)
    try:
        await client.extract(archive_path, directory)
    finally:
        await _remove_archive(client, archive_path)


def _archive_path(directory: bytes) -> bytes:
    return names.join(directory, INTERNAL_PREFIX + uuid.uuid4().hex.encode() + b".tar")


async def _remove_archive(client: FirecrestClient, archive_path: bytes) -> None:
    """Remove an internal archive, shielded so that a cancelled caller still removes it."""
    with trio.CancelScope(shield=True, deadline=trio.current_time() + client.timeouts.deadline):
        try:
            await client.rm(archive_path)
        except FirecrestError as exc:
            log.error("could not remove the internal archive %r: %s", archive_path, exc)


async def read_link_target(client: FirecrestClient, path: bytes, staging: bytes | None = None) -> bytes:
    """Return a symlink's exact target from an archive of it (`ops/compress`, one download).

    `ops/ls` lists targets C-escaped and cannot tell some of them apart; an archive records
    the target as it is.
    """
    archive_path = _archive_path(staging or names.split(path)[0])
    try:
        await client.compress(path, archive_path)
        content = await client.download(archive_path)
    finally:
        await _remove_archive(client, archive_path)
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:", encoding="utf-8", errors="surrogateescape") as archive:
        for member in archive:
            if member.issym():
                return member.linkname.encode("utf-8", "surrogateescape")
    raise FirecrestError(f"the archive of {path!r} contains no symbolic link")
