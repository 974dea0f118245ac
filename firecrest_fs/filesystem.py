"""The filesystem core: remote paths, caches and file data, without the kernel interface.

`Filesystem` contains the state of one mount (API client, inode table, listing cache, file
store, files not uploaded yet) and the mechanisms that several kernel operations share:
looking up and refreshing entries, loading and uploading file data, recording local changes
in the caches, renames, times and owners. `operations.Operations` adds the pyfuse3 handlers
on top. The concurrency contract is in `cache`, `files` and docs/design.md.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import logging
import os
import stat
import time
from dataclasses import dataclass

import trio

from . import names
from .cache import ListingCache
from .client import FirecrestClient, ListedEntry, SystemInfo, UserInfo
from .clock import ServerClock
from .errors import (
    FirecrestError,
    FsError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
)
from .files import FileData, FileStore, Version, ensure_mode, fill, upload
from .inodes import Attr, InodeTable, Node, attr_from_listing, attr_from_stat
from .transfers import Member, extract_members

log = logging.getLogger(__name__)

NAME_MAX = 255
# Bytes an archive of one file adds to its content: header blocks and padding, below 4 KiB
# as long as names stay under NAME_MAX.
ARCHIVE_OVERHEAD = 4096


@dataclass
class MountOptions:
    """Settings of one mount, from `-o` options; times in seconds."""

    dir_cache_ttl: float = 10.0
    entry_timeout: float = 1.0
    attr_timeout: float = 1.0
    job_timeout: float = 600.0
    cache_bytes: int = 512 << 20
    read_only: bool = False


class Filesystem:
    """The state of one mounted remote directory and the operations its handlers share."""

    def __init__(
        self,
        client: FirecrestClient,
        root: bytes,
        info: SystemInfo,
        user: UserInfo,
        root_attr: Attr,
        options: MountOptions,
        clock: ServerClock,
        staging: bytes | None = None,
    ):
        self.client = client
        self.info = info
        self.user = user
        self.options = options
        self.clock = clock
        # Private folder for the mount's archives on their way to ops/extract.
        self.staging = staging
        self.inodes = InodeTable(root, root_attr)
        self.listings = ListingCache(client, options.dir_cache_ttl, self._listed_attr)
        self.store = FileStore(cache_bytes=options.cache_bytes)
        # Files created here that the server does not have yet: their first upload creates them.
        self._unsaved: set[Node] = set()
        self.local_uid = os.getuid()
        self.local_gid = os.getgid()

    def _kernel_attributes_changed(self, node: Node) -> None:
        """Tell the kernel that a node's attributes changed on the server (see `Operations`)."""

    def _listed_attr(self, entry: ListedEntry) -> Attr:
        return attr_from_listing(entry, self.clock.to_epoch(entry.last_modified))

    async def start(self) -> None:
        """List the root, which also learns the server's UTC offset if its zone is not known."""
        await self._listing(self.inodes.root.path)

    async def _learn_utc_offset(self, directory: bytes, entries: dict[bytes, Attr]) -> None:
        """Learn the server's UTC offset from one entry: its listed time against `ops/stat`."""
        # A name with a quote cannot be sent back to the server.
        name = next((candidate for candidate in entries if b"'" not in candidate), None)
        if name is None:
            return
        try:
            result = await self.client.stat(names.join(directory, name))
        except (FirecrestError, FsError) as exc:
            log.debug("could not learn the UTC offset from %r: %s", name, exc)
            return
        self.clock.learn_offset(entries[name].mtime, result.mtime)  # listed with offset 0 so far
        if self.clock.offset:
            self.listings.forget(b"/")

    async def _listing(self, directory: bytes, *, refresh: bool = False) -> dict[bytes, Attr]:
        """Return a directory's entries: the server's listing plus files not uploaded yet."""
        listing = await self.listings.get(directory, refresh=refresh)
        if not self.clock.known and listing.entries:
            await self._learn_utc_offset(directory, listing.entries)
            listing = await self.listings.get(directory, refresh=bool(self.clock.offset))
        unsaved = self._unsaved_in(directory)
        if not unsaved:
            return listing.entries
        return {**listing.entries, **{names.split(node.path)[1]: node.attr for node in unsaved}}

    def _unsaved_in(self, directory: bytes, *, below: bool = False) -> list[Node]:
        """Return the files not uploaded yet in `directory` (or anywhere below it)."""
        found = []
        for node in self._unsaved:
            if node.path is None:
                continue
            if below:
                inside = names.is_within(node.path, directory)
            else:
                inside = names.split(node.path)[0] == directory
            if inside:
                found.append(node)
        return found

    async def _lookup_path(self, path: bytes) -> Node:
        """Return the node of `path`, from the parent's listing (fetched if not fresh)."""
        if path == self.inodes.root.path:
            return self.inodes.root
        directory, name = names.split(path)
        entries = await self._listing(directory)
        attr = entries.get(name)
        if attr is None:
            raise FsError(errno.ENOENT, f"{path!r} does not exist")
        node = self.inodes.at_path(path)
        if node is not None and node.data is not None and node.data.dirty:
            # Local writes not uploaded yet: the listing cannot know them.
            return node
        return self.inodes.upsert(path, attr)

    async def _refresh(self, node: Node) -> None:
        """Make `node.attr` no older than the TTL, with one `ops/stat` if needed."""
        if node.path is None or self._fresh(node):
            return
        try:
            result = await self.client.stat(node.path)
        except NotFoundError:
            directory, name = names.split(node.path)
            self.listings.remove(directory, name)
            self.inodes.detach(node.path)
            raise
        node.set_attr(attr_from_stat(result, node.attr.target))

    def _path(self, node: Node) -> bytes:
        if node.path is None:
            raise FsError(errno.ENOENT, f"inode {node.ino} was deleted")
        return node.path

    def _child_path(self, parent: Node, name: bytes) -> bytes:
        if len(name) > NAME_MAX:
            raise FsError(errno.ENAMETOOLONG, f"{name[:40]!r}...: names are limited to {NAME_MAX} bytes")
        return names.join(self._path(parent), name)

    def _check_writable(self) -> None:
        if self.options.read_only:
            raise FsError(errno.EROFS, "the mount is read-only")

    async def _remote_attr(self, path: bytes) -> Attr:
        return attr_from_stat(await self.client.stat(path))

    def _record(self, path: bytes, attr: Attr) -> Node:
        """Record a local change: the entry at `path` now has `attr`."""
        directory, name = names.split(path)
        self.listings.put(directory, name, attr)
        return self.inodes.upsert(path, attr)

    def _record_removal(self, path: bytes) -> None:
        directory, name = names.split(path)
        self.listings.remove(directory, name)
        self.listings.forget(path)
        self.inodes.detach(path)
        self._parent_changed(path)

    def _parent_changed(self, path: bytes) -> None:
        """Note that the server changed the folder holding `path`: its mtime is now unknown.

        The folder's attributes are read again at the next getattr, and the listing they
        came from is dropped, so `rsync` and `make` see the folder's real time.
        """
        directory = names.split(path)[0]
        node = self.inodes.at_path(directory)
        if node is not None:
            node.attr_time = float("-inf")
            self._kernel_attributes_changed(node)
        if directory != self.inodes.root.path:
            self.listings.drop(names.split(directory)[0])

    def _data(self, node: Node) -> FileData:
        if node.data is None:
            node.data = self.store.new(node.ino)
        return node.data

    def _evict(self, data: FileData) -> None:
        node = self.inodes.find(data.ino)
        if node is not None and node.data is data:
            node.data = None
            self.inodes.release_if_unused(node)
        data.discard()

    def _fresh(self, node: Node) -> bool:
        return time.monotonic() - node.attr_time < self.options.dir_cache_ttl

    async def _unchanged(self, node: Node, data: FileData) -> bool:
        """Return whether the local copy still matches the remote file (see `files`)."""
        version = data.version
        if version is None:
            return False
        if self._fresh(node):
            if (node.attr.size, node.attr.mtime) != (version.size, version.mtime):
                return False
            if version.settled or time.monotonic() - version.recorded_at < 1:
                return True
            return await self._same_checksum(node, data, version)
        result = await self.client.stat(self._path(node))
        node.set_attr(attr_from_stat(result, node.attr.target))
        if (result.size, result.mtime) != (version.size, version.mtime):
            return False
        if version.ctime is not None and (result.ctime, result.ino) != (version.ctime, version.remote_ino):
            return False
        if version.ctime is None:
            # Recorded from a listing, which has no ctime and inode: take them from now on.
            version = data.version = Version.of(result)
        if not version.settled:
            return await self._same_checksum(node, data, version)
        return True

    async def _same_checksum(self, node: Node, data: FileData, version: Version) -> bool:
        """Compare the local copy with the server's SHA-256, for a version not settled yet."""
        remote = await self.client.checksum(self._path(node))
        if remote != hashlib.sha256(data.content()).hexdigest():
            log.info("%r changed on the server within the second of its last change", node.path)
            return False
        if time.monotonic() - version.recorded_at >= 1:
            data.version = dataclasses.replace(version, settled=True)
        return True

    async def _fill(self, node: Node, data: FileData) -> None:
        path = self._path(node)
        if self._fresh(node):
            known = Version(node.attr.size, node.attr.mtime)
        else:
            result = await self.client.stat(path)
            self._record(path, attr_from_stat(result, node.attr.target))
            known = Version.of(result)
        version = await fill(self.client, data, path, self.info.max_download_size, known)
        if version.size != known.size:
            self._record(path, node.attr.copy(size=version.size))

    async def _load(self, node: Node, data: FileData) -> None:
        """Make the local copy hold the current remote content, downloading it if needed."""
        if data.dirty:
            return
        if not data.loaded or not await self._unchanged(node, data):
            await self._fill(node, data)

    async def _upload(self, node: Node, data: FileData) -> None:
        async with data.lock:
            await self._upload_locked(node, data)

    async def _upload_locked(self, node: Node, data: FileData) -> None:
        if data.rejected is not None:
            raise FsError(errno.EFBIG, data.rejected)
        if not data.dirty:
            return
        if node.path is None:
            # The file was deleted or replaced while open: its content has no name left.
            log.debug("not uploading inode %d: it no longer has a path", node.ino)
            data.dirty = False
            return
        path = node.path
        result = await upload(self.client, data, path, node.attr.mode, self.info.max_ops_file_size, self.staging)
        self._unsaved.discard(node)
        self._record(path, attr_from_stat(result, node.attr.target))
        self._parent_changed(path)

    async def _stat_if_exists(self, path: bytes):
        try:
            return await self.client.stat(path)
        except NotFoundError:
            return None

    async def _truncate(self, node: Node, size: int) -> None:
        limit = self.info.max_ops_file_size
        if size > limit:
            raise FsError(errno.EFBIG, f"{node.path!r}: {size} bytes is above the {limit}-byte limit of direct uploads")
        data = self._data(node)
        self.store.opened(data)
        try:
            async with data.lock:
                if size > 0:
                    await self._load(node, data)
                data.truncate(size)
            if data.open_count == 1:
                await self._upload(node, data)
        finally:
            self.store.closed(data, self._evict)

    async def _chown(self, node: Node, uid: int | None, gid: int | None) -> None:
        """Change owner and group (local ids, None to keep one) on the server if they differ.

        `cp -a`, `rsync -a` and `tar` running as root chown every file to its owner, which
        here is the mounting user shown for the remote user: that needs no request.
        """
        current_uid = self.user.uid if node.attr.uid is None else node.attr.uid
        current_gid = self.user.gid if node.attr.gid is None else node.attr.gid
        new_uid = current_uid if uid is None else self._remote_id(uid, self.local_uid, self.user.uid)
        new_gid = current_gid if gid is None else self._remote_id(gid, self.local_gid, self.user.gid)
        if (new_uid, new_gid) == (current_uid, current_gid):
            return
        # The server runs chown 'OWNER':'GROUP', which rejects a numeric owner with an
        # empty group, so both are always given.
        owner, group = str(new_uid), str(new_gid)
        self._check_writable()
        if node in self._unsaved:
            raise FsError(errno.EPERM, f"{node.path!r}: the owner of a file can change only after it is uploaded")
        path = self._path(node)
        try:
            await self.client.chown(path, owner, group)
        except PermissionDeniedError:
            raise FsError(errno.EPERM, f"{path!r}: the server does not allow owner {owner or '-'} group {group or '-'}") from None
        except (ServerError, InvalidRequestError) as exc:
            raise FsError(errno.EINVAL, f"{path!r}: chown to {owner or '-'}:{group or '-'} failed: {exc}") from None
        result = await self.client.stat(path)
        self._record(path, attr_from_stat(result, node.attr.target))

    @staticmethod
    def _remote_id(local: int, mounting_user: int, remote_user: int) -> int:
        """Return the server's id for a local one: the mounting user's stands for the remote user's."""
        return remote_user if local == mounting_user else local

    async def _set_mtime(self, node: Node, mtime: int) -> None:
        """Set a modification time on the server, which has no call for it.

        The entry is written again through an archive that records the time: a directory or
        a symlink on its own, a file with its content. A file not uploaded yet only records
        the time, and its upload takes the archive route.
        """
        path = self._path(node)
        directory, name = names.split(path)
        if node.attr.is_dir:
            # A "." member sets the time of the folder it is extracted into, the root included.
            directory = path
            member = Member(b".", node.attr.mode & 0o7777, mtime, directory=True)
        elif node.attr.is_link:
            target = node.attr.target if node.attr.target is not None else (await self._lookup_path(path)).attr.target
            member = Member(name, 0o777, mtime, target=target)
        elif node.attr.is_file:
            await self._set_file_mtime(node, mtime)
            return
        else:
            log.info("setattr %r: times of special files cannot be set; keeping them locally", path)
            node.attr.mtime = mtime
            return
        await extract_members(self.client, directory, [member], self.staging)
        result = await self.client.stat(path)
        if node.attr.is_dir:
            result = await ensure_mode(self.client, path, result, node.attr.mode)
        self._record(path, attr_from_stat(result, member.target))
        if not node.attr.is_dir:
            self._parent_changed(path)

    async def _set_file_mtime(self, node: Node, mtime: int) -> None:
        data = self._data(node)
        self.store.opened(data)
        try:
            async with data.lock:
                if data.dirty:
                    data.set_mtime(mtime)
                    return
                await self._refresh(node)
                cached = data.loaded and await self._unchanged(node, data)
                too_large = node.attr.size + ARCHIVE_OVERHEAD > self.info.max_ops_file_size
                if too_large or (not cached and node.attr.size > self.info.max_download_size):
                    # NOTE: large files need a staged transfer to be written again; until then
                    # their time is kept by the mount only, and lost after the TTL.
                    log.info("setattr %r: cannot set the time of a file of %d bytes; keeping it locally",
                             node.path, node.attr.size)
                    node.attr.mtime = mtime
                    return
                if not cached:
                    await self._fill(node, data)
                data.set_mtime(mtime)
                await self._upload_locked(node, data)
        finally:
            self.store.closed(data, self._evict)

    async def _find(self, path: bytes) -> Node | None:
        try:
            return await self._lookup_path(path)
        except FsError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise

    async def _remove_empty_dir(self, path: bytes, attr: Attr) -> None:
        if self._unsaved_in(path, below=True):
            raise FsError(errno.ENOTEMPTY, f"{path!r} contains files that are not uploaded yet")
        await self._remove_empty_remote_dir(path, attr)

    async def _remove_empty_remote_dir(self, path: bytes, attr: Attr) -> None:
        """Remove a directory only if it is empty, although the server's `ops/rm` is `rm -r`.

        The directory loses its write permission while it is listed, so nothing can be
        created in it between the check and the removal; it gets it back if not empty.
        NOTE: the owner's root-like privileges (and a failed chmod) leave that race open.
        """
        mode = attr.mode & 0o7777
        locked = False
        try:
            await self.client.chmod(path, mode & ~0o222)
            locked = True
        except FirecrestError as exc:
            log.info("rmdir %r: could not lock the directory (%s); checking without the lock", path, exc)
        try:
            remaining = await self.client.ls(path)
            if remaining:
                raise FsError(errno.ENOTEMPTY, f"{path!r} is not empty")
            await self.client.rm(path)
            locked = False
        finally:
            if locked:
                with trio.CancelScope(shield=True):
                    try:
                        await self.client.chmod(path, mode)
                    except FirecrestError as exc:
                        log.error("rmdir %r: could not restore mode %o: %s", path, mode, exc)

    async def _rename_by_archive(self, node: Node, source: bytes, target: bytes) -> bool:
        """Re-create a small file or a symlink under the new name, then remove the old one.

        Returns False when the entry must move with a job instead (directories, files too
        large to pass through one archive).
        """
        attr = node.attr
        directory, name = names.split(target)
        if attr.is_link:
            link_target = attr.target
            if link_target is None:
                link_target = (await self._lookup_path(source)).attr.target
            member = Member(name, 0o777, attr.mtime, target=link_target)
            await extract_members(self.client, directory, [member], self.staging)
            await self.client.rm(source)
            node.set_attr(attr_from_stat(await self.client.stat(target), link_target))
            return True
        if not attr.is_file:
            return False
        data = self._data(node)
        self.store.opened(data)
        try:
            async with data.lock:
                if not data.dirty:
                    await self._refresh(node)
                    if node.attr.size > self.info.max_download_size:
                        return False
                    await self._load(node, data)
                if data.size + ARCHIVE_OVERHEAD > self.info.max_ops_file_size:
                    return False
                generation = data.generation
                mtime = data.local_mtime if data.dirty and data.local_mtime else attr.mtime
                member = Member(name, attr.mode & 0o7777, mtime, data.content())
                await extract_members(self.client, directory, [member], self.staging)
                await self.client.rm(source)
                result = await ensure_mode(self.client, target, await self.client.stat(target), attr.mode)
                node.set_attr(attr_from_stat(result))
                if data.generation == generation:
                    data.dirty = False
                    data.version = Version.of(result)
                return True
        finally:
            self.store.closed(data, self._evict)

    async def _rename_by_job(self, node: Node, source: bytes, target: bytes) -> None:
        """Move with a `transfer/mv` job, after checking that mv(1) will act as rename(2) does.

        mv(1) moves the source *into* a target that is a directory (or a symlink to one), so
        such a target, which the checks in `rename` did not see, stops the rename here.
        """
        current = await self._stat_if_exists(target)
        if current is not None and (node.attr.is_dir or not stat.S_ISREG(current.mode)):
            raise FsError(errno.EEXIST, f"{target!r} appeared on the server during the rename")
        await self.client.mv(source, target, timeout=self.options.job_timeout)
        result = await self.client.stat(target)
        node.set_attr(attr_from_stat(result, node.attr.target))
