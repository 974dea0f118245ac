"""The pyfuse3 operations class: kernel requests mapped onto the filesystem core.

Handlers decode the request, call the core (`filesystem.Filesystem`), keep the kernel's
lookup counts and file handles, and build the attributes the kernel caches. Every handler runs inside `_errors`, the one place where
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
from .errors import FirecrestError, FsError, errno_for
from .filesystem import NAME_MAX, Filesystem
from .inodes import Attr, Node, attr_from_stat
from .transfers import Member, extract_members, read_link_target

log = logging.getLogger(__name__)


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


class Operations(Filesystem, pyfuse3.Operations):
    """FUSE operations of one mounted remote directory."""

    supports_dot_lookup = False
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Where background tasks of the mount run; set by `mount.run` once pyfuse3 is ready.
        self.background: trio.Nursery | None = None
        self._handles: dict[int, _Handle] = {}
        self._dir_handles: dict[int, tuple[bytes, list[tuple[bytes, Attr]]]] = {}
        self._next_handle = 1

    # -- attributes ----------------------------------------------------------------------

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

    def _kernel_attributes_changed(self, node: Node) -> None:
        if self.background is not None:
            self.background.start_soon(self._invalidate_kernel_attributes, node.ino)

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
            # The kernel keeps its cached pages of the file only while they are still right:
            # a change of the same size within the same second leaves no trace in the attributes.
            keep_cache = not data.kernel_cache_stale
            data.kernel_cache_stale = False
            return pyfuse3.FileInfo(fh=handle, keep_cache=keep_cache)

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
                uid = attr.st_uid if fields.update_uid else None
                gid = attr.st_gid if fields.update_gid else None
                await self._chown(node, uid, gid)
            if fields.update_mtime:
                self._check_writable()
                await self._set_mtime(node, attr.st_mtime_ns // 1_000_000_000)
            return self._entry(node)

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
