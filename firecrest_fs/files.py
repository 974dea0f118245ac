"""File data: the private spool, whole-file downloads and uploads of small files.

Each remote file that is open, or was read recently, has one `FileData`: a local file in
the mount's private spool folder that contains its whole content, shared by every open handle
of the inode. Reads and writes go to that local file. Dirty content is uploaded by `flush`
(each close) and `fsync`, and their errors reach the program there.

Concurrency contract (one trio thread):

- `FileData.lock` is held while the local copy is filled (download), uploaded or truncated,
  so a reader never sees a half-downloaded copy and two uploads of one file never overlap.
  Plain reads and writes do not take it: `os.pread`/`os.pwrite` on the spool file are
  complete as soon as they return.
- `generation` counts local writes. An upload marks the data clean only if no write
  happened while it was in flight; otherwise the data stays dirty for the next flush.
- Clean data of closed files stays cached (LRU, `cache_bytes` in all) while the remote file
  is unchanged: same size and mtime, and when the attributes are older than the TTL, the
  same `ops/stat` ctime and inode too.
- The spool is removed at unmount. NOTE: dirty data of a killed daemon is not recovered yet.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import shutil
import stat
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import trio

from . import names
from .client import FirecrestClient, RemoteStat
from .errors import FsError
from .transfers import Member, extract_members, upload_keeps_name

log = logging.getLogger(__name__)

# Seconds by which this machine's clock may differ from the server's without a recent
# change being taken for an old one.
CLOCK_SKEW_MARGIN = 60.0


@dataclass(frozen=True)
class Version:
    """The size, times and inode that identify one state of a remote file's content."""

    size: int
    mtime: int
    ctime: int | None = None
    remote_ino: int | None = None
    # Times are whole seconds, so a rewrite of the same size in the second of `mtime` looks
    # unchanged. A version is settled when that second had surely passed at recording: its
    # mtime is older than CLOCK_SKEW_MARGIN by this machine's clock, or a checksum matched
    # at least a second after it was recorded (time.monotonic()).
    recorded_at: float = dataclasses.field(default_factory=time.monotonic, compare=False)
    settled: bool = dataclasses.field(default=False, compare=False)

    def __post_init__(self) -> None:
        if time.time() - self.mtime >= CLOCK_SKEW_MARGIN:
            object.__setattr__(self, "settled", True)

    @classmethod
    def of(cls, result: RemoteStat) -> Version:
        return cls(result.size, result.mtime, result.ctime, result.ino)


class FileData:
    """The local copy of one remote file's content, shared by all handles of its inode."""

    def __init__(self, store: FileStore, ino: int):
        self.store = store
        self.ino = ino
        self.path = os.path.join(store.directory, str(ino))
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self.lock = trio.Lock()
        self.loaded = False  # whether the local file contains the content
        self.version: Version | None = None  # remote state that the local copy matches
        self.dirty = False
        # Why the content must not be uploaded: a write passed the upload limit.
        self.rejected: str | None = None
        self.generation = 0
        self.open_count = 0
        self.local_mtime: float | None = None
        # Whether `local_mtime` was set by a program (utimensat) rather than by a write.
        self.mtime_set = False
        self.cached_size = 0  # size counted in the store's LRU
        self.kernel_cache_stale = False

    @property
    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def can_drop(self) -> bool:
        return self.open_count == 0 and not self.dirty

    def discard(self) -> None:
        self.store.forget(self)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def write(self, offset: int, data: bytes) -> int:
        written = os.pwrite(self.fd, data, offset)
        self.mark_dirty()
        return written

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)
        self.loaded = True
        self.mark_dirty()

    def mark_dirty(self) -> None:
        self.dirty = True
        self.generation += 1
        self.local_mtime = time.time()
        self.mtime_set = False

    def set_mtime(self, mtime: float) -> None:
        """Record a modification time a program set; the next upload must carry it."""
        self.dirty = True
        self.generation += 1
        self.local_mtime = mtime
        self.mtime_set = True

    def drop_changes(self) -> None:
        """Forget local changes, so the next open reads the remote file again."""
        self.dirty = False
        self.rejected = None
        self.loaded = False
        self.version = None

    def replace(self, content: bytes, version: Version) -> None:
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, content, 0)
        # The kernel may cache pages of the old content; the next open must drop them.
        self.kernel_cache_stale = True
        self.loaded = True
        self.version = version
        self.dirty = False

    def content(self) -> bytes:
        return os.pread(self.fd, self.size, 0)


class FileStore:
    """The private spool folder and the LRU of cached clean contents."""

    def __init__(self, parent: str | None = None, cache_bytes: int = 512 << 20):
        self.directory = tempfile.mkdtemp(prefix="firecrest-fs-spool-", dir=parent)
        os.chmod(self.directory, 0o700)
        self.cache_bytes = cache_bytes
        self._idle: OrderedDict[int, FileData] = OrderedDict()  # closed, clean, by id()
        self._idle_bytes = 0

    def new(self, ino: int) -> FileData:
        return FileData(self, ino)

    def opened(self, data: FileData) -> None:
        data.open_count += 1
        self.forget(data)

    def closed(self, data: FileData, evict: Callable[[FileData], None]) -> None:
        """Put clean data of a closed file in the LRU; `evict(data)` drops what falls out."""
        data.open_count -= 1
        if not data.can_drop():
            return
        self.forget(data)
        data.cached_size = data.size if data.loaded else 0
        self._idle[id(data)] = data
        self._idle_bytes += data.cached_size
        while self._idle_bytes > self.cache_bytes and len(self._idle) > 1:
            _, oldest = self._idle.popitem(last=False)
            self._idle_bytes -= oldest.cached_size
            evict(oldest)

    def forget(self, data: FileData) -> None:
        if self._idle.pop(id(data), None) is not None:
            self._idle_bytes -= data.cached_size

    def remove(self, keep: bool) -> None:
        """Delete the spool folder, or keep it and log its path when it contains unsaved data."""
        if keep:
            log.error("unsaved file data was kept in %s", self.directory)
            return
        shutil.rmtree(self.directory, ignore_errors=True)


async def fill(client: FirecrestClient, data: FileData, path: bytes, max_download: int, known: Version) -> Version:
    """Download a remote file into `data`, or raise EFBIG when it is above the direct limit.

    `known` is the file's state, read before the download from `ops/stat` or from a listing
    younger than the TTL. Returns the state the local copy is recorded to match.
    """
    if known.size > max_download:
        raise FsError(
            errno.EFBIG,
            f"{path!r} is {known.size} bytes, above the {max_download}-byte limit of direct downloads",
        )
    # The state was read first: if the file changes before the download, the recorded
    # version is older than the content and the next open downloads again, which is safe.
    content = await client.download(path) if known.size else b""
    version = known
    if len(content) != known.size:
        version = Version(len(content), known.mtime)  # changed meanwhile; `ctime` None forces a check
    data.replace(content, version)
    return version


async def upload(client: FirecrestClient, data: FileData, path: bytes, mode: int, max_upload: int,
                 staging: bytes | None = None) -> RemoteStat:
    """Upload the whole local copy to `path` and return the remote file's new state."""
    generation = data.generation
    content = data.content()
    if len(content) > max_upload:
        raise FsError(errno.EFBIG, f"{path!r}: {len(content)} bytes is above the {max_upload}-byte upload limit")
    directory, name = names.split(path)
    if content and upload_keeps_name(name) and not data.mtime_set:
        await client.upload(directory, name, content)
    else:
        # Empty files, names that ops/upload would change, and files whose time a program
        # set go through an archive.
        mtime = data.local_mtime or time.time()
        await extract_members(client, directory, [Member(name, mode, mtime, content)], staging)
    result = await ensure_mode(client, path, await client.stat(path), mode)
    if data.generation == generation:
        data.dirty = False
        data.mtime_set = False
        data.version = Version.of(result)
    log.debug("uploaded %d bytes to %r", len(content), path)
    return result


async def ensure_mode(client: FirecrestClient, path: bytes, result: RemoteStat, mode: int) -> RemoteStat:
    """Give `path` the permission bits of `mode` if the server's state `result` differs.

    `ops/upload` gives a new file the server's default mode, and tar run by a user who is
    not root applies the remote umask to the modes it extracts.
    """
    if result.mode & 0o7777 == mode & 0o7777:
        return result
    await client.chmod(path, mode)
    return dataclasses.replace(result, mode=stat.S_IFMT(result.mode) | (mode & 0o7777))
