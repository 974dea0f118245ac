"""The pyfuse3 operations class: kernel requests mapped onto the FirecREST API.

Handlers decode the request, call the client, the caches and the file data, and keep the
kernel's lookup counts. Every handler runs inside `_errors`, the one place where
exceptions become errno values: a handler that let any other exception escape would end
`pyfuse3.main()` and leave a dead mount behind.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pyfuse3
import trio

from . import names
from .cache import ListingCache
from .clock import ServerClock
from .client import FirecrestClient, SystemInfo, UserInfo
from .errors import (
    FirecrestError,
    FsError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
    errno_for,
)
from .files import FileData, FileStore, Version, ensure_mode, fill, upload
from .inodes import Attr, InodeTable, Node, attr_from_listing, attr_from_stat
from .transfers import Member, extract_members, read_link_target

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


@dataclass
class _Handle:
    node: Node
    flags: int


@contextmanager
def _errors(operation: str, detail: object = "") -> Iterator[None]:
    """Turn every exception of a handler into a FUSEError, logging the unexpected ones."""
    try:
        yield
    except pyfuse3.FUSEError:
        raise
    except (FsError, FirecrestError) as exc:
        code = errno_for(exc)
        level = logging.DEBUG if code in (errno.ENOENT, errno.EEXIST, errno.ENOTEMPTY) else logging.INFO
        if code == errno.EIO:
            level = logging.WARNING
        log.log(level, "%s %s: %s (%s)", operation, detail, exc, errno.errorcode.get(code, code))
        raise pyfuse3.FUSEError(code) from None
    except OSError as exc:
        log.error("%s %s: local I/O error: %s", operation, detail, exc)
        raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
    except Exception:
        log.exception("%s %s: unexpected error", operation, detail)
        raise pyfuse3.FUSEError(errno.EIO) from None


class Operations(pyfuse3.Operations):
    """FUSE operations of one mounted remote directory."""

    supports_dot_lookup = False
    enable_writeback_cache = False
    enable_acl = False

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
        super().__init__()
        self.client = client
        self.info = info
        self.user = user
        self.options = options
        self.clock = clock
        # Where background tasks of the mount run; set by `mount.run` once pyfuse3 is ready.
        self.background: trio.Nursery | None = None
        # Private folder for the mount's archives on their way to ops/extract.
        self.staging = staging
        self.inodes = InodeTable(root, root_attr)
        self.listings = ListingCache(client, options.dir_cache_ttl, self._listed_attr)
        self.store = FileStore(cache_bytes=options.cache_bytes)
        self._handles: dict[int, _Handle] = {}
        # Files created here that the server does not have yet: their first upload creates them.
        self._unsaved: set[Node] = set()
        self._dir_handles: dict[int, tuple[bytes, list[tuple[bytes, Attr]]]] = {}
        self._next_handle = 1
        self.local_uid = os.getuid()
        self.local_gid = os.getgid()

    # -- attributes ----------------------------------------------------------------------

    def _listed_attr(self, entry) -> Attr:
        return attr_from_listing(entry, self.clock.to_epoch(entry.last_modified))

    def _entry(self, node: Node) -> pyfuse3.EntryAttributes:
        attr = node.attr
        entry = pyfuse3.EntryAttributes()
        entry.st_ino = node.ino
        entry.generation = 0
        entry.entry_timeout = self.options.entry_timeout
        entry.attr_timeout = self.options.attr_timeout
        entry.st_mode = attr.mode
        entry.st_nlink = attr.nlink
        # Files of the remote user appear owned by the local user who mounted.
        entry.st_uid = self.local_uid if attr.uid in (None, self.user.uid) else attr.uid
        entry.st_gid = self.local_gid if attr.gid in (None, self.user.gid) else attr.gid
        size = attr.size
        mtime = attr.mtime
        data = node.data
        if data is not None and data.loaded and (data.dirty or data.open_count):
            size = data.size
            if data.dirty and data.local_mtime is not None:
                mtime = data.local_mtime
        if attr.is_link and attr.target is not None:
            size = len(attr.target)
        entry.st_size = size
        entry.st_blksize = 4096
        entry.st_blocks = (size + 511) // 512
        entry.st_atime_ns = int(attr.atime * 1e9)
        entry.st_mtime_ns = int(mtime * 1e9)
        entry.st_ctime_ns = int(max(attr.ctime, mtime) * 1e9)
        return entry

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
            if self.background is not None:
                self.background.start_soon(self._invalidate_kernel_attributes, node.ino)
        if directory != self.inodes.root.path:
            self.listings.drop(names.split(directory)[0])

    async def _invalidate_kernel_attributes(self, inode: int) -> None:
        """Make the kernel ask for a folder's attributes again; they changed on the server.

        The kernel notices changes it made itself (create, unlink, rename) but not those of an
        upload at close. pyfuse3's call blocks, so it runs in a worker thread.
        """
        try:
            await trio.to_thread.run_sync(pyfuse3.invalidate_inode, inode, True, abandon_on_cancel=True)
        except OSError as exc:
            # ENOENT: the kernel has already forgotten the inode, which is just as good.
            log.debug("invalidating the attributes of inode %d: %s", inode, exc)

    # -- lookups and listings ------------------------------------------------------------

    async def lookup(self, parent_inode, name, ctx=None):
        with _errors("lookup", name):
            parent = self.inodes.get(parent_inode)
            node = await self._lookup_path(self._child_path(parent, name))
            self.inodes.remember(node)
            return self._entry(node)

    async def forget(self, inode_list):
        for inode, count in inode_list:
            self.inodes.forget(inode, count)

    async def getattr(self, inode, ctx=None):
        with _errors("getattr", inode):
            node = self.inodes.get(inode)
            if node.data is None or not node.data.dirty:
                await self._refresh(node)
            return self._entry(node)

    async def readlink(self, inode, ctx):
        with _errors("readlink", inode):
            node = self.inodes.get(inode)
            if node.attr.target is None:
                node = await self._lookup_path(self._path(node))
            if node.attr.target is None:
                raise FsError(errno.EINVAL, f"{node.path!r} is not a symbolic link")
            if node.attr.target_ambiguous:
                target = await read_link_target(self.client, self._path(node), self.staging)
                node.attr = node.attr.copy(target=target, target_ambiguous=False)
            return node.attr.target

    async def opendir(self, inode, ctx):
        with _errors("opendir", inode):
            node = self.inodes.get(inode)
            directory = self._path(node)
            entries = await self._listing(directory)
            handle = self._new_handle()
            self._dir_handles[handle] = (directory, sorted(entries.items()))
            return handle

    async def readdir(self, fh, start_id, token):
        with _errors("readdir", fh):
            directory, entries = self._dir_handles[fh]
            for index in range(start_id, len(entries)):
                name, attr = entries[index]
                path = names.join(directory, name)
                node = self.inodes.at_path(path)
                if node is None or node.data is None or not node.data.dirty:
                    node = self.inodes.upsert(path, attr)
                if not pyfuse3.readdir_reply(token, name, self._entry(node), index + 1):
                    break
                self.inodes.remember(node)

    async def releasedir(self, fh):
        self._dir_handles.pop(fh, None)

    def _new_handle(self) -> int:
        handle = self._next_handle
        self._next_handle += 1
        return handle

    # -- file data -----------------------------------------------------------------------

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
            return node.attr.size == version.size and node.attr.mtime == version.mtime
        result = await self.client.stat(self._path(node))
        node.set_attr(attr_from_stat(result, node.attr.target))
        if (result.size, result.mtime) != (version.size, version.mtime):
            return False
        if version.ctime is None:
            # Recorded from a listing, which has no ctime and inode: take them from now on.
            data.version = Version.of(result)
            return True
        return (result.ctime, result.ino) == (version.ctime, version.remote_ino)

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

    async def open(self, inode, flags, ctx):
        with _errors("open", inode):
            node = self.inodes.get(inode)
            writing = flags & (os.O_WRONLY | os.O_RDWR)
            if writing:
                self._check_writable()
            if not node.attr.is_file:
                raise FsError(errno.EINVAL, f"{node.path!r} is not a regular file")
            data = self._data(node)
            self.store.opened(data)
            try:
                async with data.lock:
                    if writing and flags & os.O_TRUNC:
                        data.truncate(0)
                    else:
                        await self._load(node, data)
            except BaseException:
                self.store.closed(data, self._evict)
                raise
            handle = self._new_handle()
            self._handles[handle] = _Handle(node, flags)
            return pyfuse3.FileInfo(fh=handle)

    async def read(self, fh, off, size):
        with _errors("read", fh):
            data = self._handles[fh].node.data
            return data.read(off, size)

    async def write(self, fh, off, buf):
        with _errors("write", fh):
            handle = self._handles[fh]
            data = handle.node.data
            if handle.flags & os.O_APPEND:
                off = data.size
            limit = self.info.max_ops_file_size
            if off + len(buf) > limit:
                # Uploading the part that fit would replace the remote file with a truncated
                # copy, so the whole content is held back and close reports EFBIG too.
                data.rejected = (
                    f"{handle.node.path!r}: writing up to byte {off + len(buf)} would pass the "
                    f"{limit}-byte limit of direct uploads"
                )
                raise FsError(errno.EFBIG, data.rejected)
            return data.write(off, buf)

    async def flush(self, fh):
        with _errors("flush", fh):
            node = self._handles[fh].node
            await self._upload(node, node.data)

    async def fsync(self, fh, datasync):
        with _errors("fsync", fh):
            node = self._handles[fh].node
            await self._upload(node, node.data)

    async def release(self, fh):
        # The kernel ignores errors of release, so nothing is raised here.
        handle = self._handles.pop(fh, None)
        if handle is None:
            return
        try:
            await self._release(handle)
        except Exception:
            log.exception("release of %r failed", handle.node.path)

    async def _release(self, handle: _Handle) -> None:
        node = handle.node
        data = node.data
        if data.rejected is not None and data.open_count == 1:
            if node in self._unsaved and node.path is not None:
                log.error("%s; the file was not created on the cluster", data.rejected)
                self._unsaved.discard(node)
                self._record_removal(node.path)
            else:
                log.error("%s; the file was not uploaded and the cluster keeps its previous content", data.rejected)
            data.drop_changes()
        elif data.dirty and data.open_count == 1:
            try:
                await self._upload(node, data)
            except (FsError, FirecrestError, OSError) as exc:
                log.error("upload of %r failed at close: %s; the data is kept in %s", node.path, exc, data.path)
            except Exception:
                log.exception("upload of %r failed at close; the data is kept in %s", node.path, data.path)
        self.store.closed(data, self._evict)
        self.inodes.release_if_unused(node)

    async def create(self, parent_inode, name, mode, flags, ctx):
        with _errors("create", name):
            self._check_writable()
            parent = self.inodes.get(parent_inode)
            path = self._child_path(parent, name)
            names.to_wire(path)
            # The kernel calls create after a negative lookup, which may come from a listing
            # up to a TTL old: a file made on the cluster since then must not be clobbered.
            existing = None
            if self.listings.fresh(self._path(parent)) is None:
                existing = await self._stat_if_exists(path)
            if existing is not None:
                if flags & os.O_EXCL:
                    raise FsError(errno.EEXIST, f"{path!r} exists")
                node = self._record(path, attr_from_stat(existing))
                self.inodes.remember(node)
                try:
                    info = await self.open(node.ino, flags & ~os.O_CREAT, ctx)
                except BaseException:
                    self.inodes.forget(node.ino, 1)
                    raise
                return info, self._entry(node)
            # The file is created on the server by its first upload (at close or fsync), so a
            # rename before that stays local and the content travels once, under its final name.
            now = int(time.time())
            attr = Attr(mode=stat.S_IFREG | (mode & 0o7777), size=0, mtime=now, ctime=now, atime=now,
                        uid=self.user.uid, gid=self.user.gid)
            node = self._record(path, attr)
            data = self._data(node)
            data.truncate(0)
            self._unsaved.add(node)
            self.store.opened(data)
            handle = self._new_handle()
            self._handles[handle] = _Handle(node, flags)
            self.inodes.remember(node)
            return pyfuse3.FileInfo(fh=handle), self._entry(node)

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

    # -- attributes and namespace changes ------------------------------------------------

    async def setattr(self, inode, attr, fields, fh, ctx):
        with _errors("setattr", inode):
            node = self.inodes.get(inode)
            if fields.update_size:
                self._check_writable()
                await self._truncate(node, attr.st_size)
            if fields.update_mode and not node.attr.is_link:
                self._check_writable()
                mode = attr.st_mode & 0o7777
                if node not in self._unsaved:  # otherwise its upload applies the mode
                    await self.client.chmod(self._path(node), mode)
                self._record(self._path(node), node.attr.copy(mode=stat.S_IFMT(node.attr.mode) | mode))
            if fields.update_uid or fields.update_gid:
                await self._chown(node, attr, fields)
            if fields.update_mtime:
                self._check_writable()
                await self._set_mtime(node, attr.st_mtime_ns // 1_000_000_000)
            return self._entry(node)

    async def _chown(self, node: Node, attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields) -> None:
        """Change the owner on the server, except to the ids the files are shown with.

        `cp -a`, `rsync -a` and `tar` running as root chown every file to its owner, which
        here is the mounting user shown for the remote user: that needs no request.
        """
        # The ids as the server knows them: the local user's stand for the remote user's.
        uid = self.user.uid if attr.st_uid == self.local_uid else attr.st_uid
        gid = self.user.gid if attr.st_gid == self.local_gid else attr.st_gid
        current_uid = self.user.uid if node.attr.uid is None else node.attr.uid
        current_gid = self.user.gid if node.attr.gid is None else node.attr.gid
        new_uid = uid if fields.update_uid else current_uid
        new_gid = gid if fields.update_gid else current_gid
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

    async def mkdir(self, parent_inode, name, mode, ctx):
        with _errors("mkdir", name):
            self._check_writable()
            parent = self.inodes.get(parent_inode)
            path = self._child_path(parent, name)
            await self.client.mkdir(path)
            attr = await self._remote_attr(path)
            wanted = mode & 0o7777
            if attr.mode & 0o7777 != wanted:
                await self.client.chmod(path, wanted)
                attr = attr.copy(mode=stat.S_IFDIR | wanted)
            node = self._record(path, attr)
            self._parent_changed(path)
            self.inodes.remember(node)
            return self._entry(node)

    async def unlink(self, parent_inode, name, ctx):
        with _errors("unlink", name):
            self._check_writable()
            parent = self.inodes.get(parent_inode)
            path = self._child_path(parent, name)
            node = await self._lookup_path(path)
            if node.attr.is_dir:
                raise FsError(errno.EISDIR, f"{path!r} is a directory")
            if node in self._unsaved:
                self._unsaved.discard(node)
            else:
                await self.client.rm(path)
            self._record_removal(path)

    async def rmdir(self, parent_inode, name, ctx):
        with _errors("rmdir", name):
            self._check_writable()
            parent = self.inodes.get(parent_inode)
            path = self._child_path(parent, name)
            node = await self._lookup_path(path)
            if not node.attr.is_dir:
                raise FsError(errno.ENOTDIR, f"{path!r} is not a directory")
            await self._remove_empty_dir(path, node.attr)
            self._record_removal(path)

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

    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        with _errors("rename", name_old):
            self._check_writable()
            if flags & pyfuse3.RENAME_EXCHANGE:
                raise FsError(errno.EINVAL, "exchanging two entries is not supported: the API has no atomic rename")
            source = self._child_path(self.inodes.get(parent_inode_old), name_old)
            target = self._child_path(self.inodes.get(parent_inode_new), name_new)
            names.to_wire(target)
            if source == target:
                return
            node = await self._lookup_path(source)
            existing = await self._find(target)
            if existing is not None:
                if flags & pyfuse3.RENAME_NOREPLACE:
                    raise FsError(errno.EEXIST, f"{target!r} exists")
                if node.attr.is_dir and not existing.attr.is_dir:
                    raise FsError(errno.ENOTDIR, f"{target!r} is not a directory")
                if not node.attr.is_dir and existing.attr.is_dir:
                    raise FsError(errno.EISDIR, f"{target!r} is a directory")
                if existing.attr.is_dir:
                    await self._remove_empty_dir(target, existing.attr)
                    self._record_removal(target)
            if node in self._unsaved:
                # Not on the server yet, so its upload will use the new name. The file it
                # replaces goes now, so the server never keeps what rename(2) removed.
                if existing is not None and not existing.attr.is_dir and existing not in self._unsaved:
                    await self.client.rm(target)
            elif not await self._rename_by_archive(node, source, target):
                await self._rename_by_job(node, source, target)
            old_directory, old_name = names.split(source)
            self.listings.remove(old_directory, old_name)
            self.listings.forget(source)
            self.inodes.move(source, target)
            self._record(target, node.attr)
            self._parent_changed(source)
            self._parent_changed(target)

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

    async def symlink(self, parent_inode, name, target, ctx):
        with _errors("symlink", name):
            self._check_writable()
            parent = self.inodes.get(parent_inode)
            path = self._child_path(parent, name)
            inside = any(names.is_within(os.path.normpath(target), fs.path) for fs in self.info.file_systems)
            if target.startswith(b"/") and inside and b"'" not in target:
                await self.client.symlink(target, path)
            else:
                # ops/symlink takes only absolute targets inside the file systems.
                member = Member(name, 0o777, time.time(), target=target)
                await extract_members(self.client, self._path(parent), [member], self.staging)
            node = self._record(path, attr_from_stat(await self.client.stat(path), target))
            self._parent_changed(path)
            self.inodes.remember(node)
            return self._entry(node)

    async def link(self, inode, new_parent_inode, new_name, ctx):
        log.info("link %r: hard links are not supported by the FirecREST API", new_name)
        raise pyfuse3.FUSEError(errno.EPERM)

    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        log.info("mknod %r: special files are not supported by the FirecREST API", name)
        raise pyfuse3.FUSEError(errno.EPERM)

    async def statfs(self, ctx):
        # The API has no statfs: report a large, constant free space so tools do not refuse to write.
        result = pyfuse3.StatvfsData()
        result.f_bsize = 4096
        result.f_frsize = 4096
        result.f_blocks = result.f_bfree = result.f_bavail = (1 << 50) // 4096
        result.f_files = result.f_ffree = result.f_favail = 1 << 30
        result.f_namemax = NAME_MAX
        return result

    # Extended attributes: ENOSYS makes the kernel stop asking for the rest of the mount.
    async def getxattr(self, inode, name, ctx):
        raise pyfuse3.FUSEError(errno.ENOSYS)

    async def setxattr(self, inode, name, value, ctx):
        raise pyfuse3.FUSEError(errno.ENOSYS)

    async def listxattr(self, inode, ctx):
        raise pyfuse3.FUSEError(errno.ENOSYS)

    async def removexattr(self, inode, name, ctx):
        raise pyfuse3.FUSEError(errno.ENOSYS)

    # -- shutdown ------------------------------------------------------------------------

    async def flush_all(self) -> bool:
        """Upload every dirty file; return whether all of them reached the server."""
        saved = True
        for handle in list(self._handles.values()):
            data = handle.node.data
            if data is None or not data.dirty:
                continue
            try:
                await self._upload(handle.node, data)
            except (FsError, FirecrestError, OSError) as exc:
                saved = False
                log.error("upload of %r failed at unmount: %s; the data is kept in %s", handle.node.path, exc, data.path)
        return saved
