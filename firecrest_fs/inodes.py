"""The inode table: kernel inode numbers, remote paths, attributes and lookup counts.

Inode numbers come from a counter and are never reused. A path keeps its inode while the
kernel holds a reference to it (lookup count above zero) or while its file data is open or
cached; after that the node is dropped and the next lookup makes a new one. Nodes are
updated in place when fresh attributes arrive, so every holder sees the same object.
"""

from __future__ import annotations

import errno
import itertools
import logging
import stat
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import pyfuse3

from .errors import FsError
from .names import is_within

if TYPE_CHECKING:
    from .client import ListedEntry, RemoteStat
    from .files import FileData

log = logging.getLogger(__name__)

_TYPE_BITS = {
    "-": stat.S_IFREG,
    "d": stat.S_IFDIR,
    "l": stat.S_IFLNK,
    "p": stat.S_IFIFO,
    "s": stat.S_IFSOCK,
    "c": stat.S_IFCHR,
    "b": stat.S_IFBLK,
}


@dataclass
class Attr:
    """Attributes of a remote entry, in remote terms (remote ids, epoch seconds)."""

    mode: int  # full st_mode, file-type bits included
    size: int
    mtime: int
    ctime: int
    atime: int
    nlink: int = 1
    uid: int | None = None
    gid: int | None = None
    target: bytes | None = None  # symlink target
    remote_ino: int | None = None  # from ops/stat only
    # Whether `target` may be wrong: listed with a backslash, it has two readings.
    target_ambiguous: bool = False

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_link(self) -> bool:
        return stat.S_ISLNK(self.mode)

    def copy(self, **changes: object) -> Attr:
        return replace(self, **changes)


def mode_from_listing(kind: str, permissions: str) -> int:
    """Build st_mode from `ls -l`'s type letter and permission string (`rwsr-x--T`)."""
    mode = _TYPE_BITS.get(kind, stat.S_IFREG)
    bits = permissions[:9].ljust(9, "-")
    for index, (char, bit) in enumerate(zip(bits, (0o400, 0o200, 0o100, 0o40, 0o20, 0o10, 0o4, 0o2, 0o1))):
        if char in "rwxst":
            mode |= bit
        if index == 2 and char in "sS":
            mode |= stat.S_ISUID
        elif index == 5 and char in "sS":
            mode |= stat.S_ISGID
        elif index == 8 and char in "tT":
            mode |= stat.S_ISVTX
    return mode


def attr_from_listing(entry: ListedEntry, mtime: int) -> Attr:
    """Build attributes from a listing entry; `mtime` is its listed time in epoch seconds."""
    return Attr(
        mode=mode_from_listing(entry.type, entry.permissions),
        size=entry.size,
        mtime=mtime,
        ctime=mtime,
        atime=mtime,
        nlink=1,
        uid=entry.uid,
        gid=entry.gid,
        target=entry.link_target,
        target_ambiguous=entry.link_target_ambiguous,
    )


def attr_from_stat(result: RemoteStat, target: bytes | None = None) -> Attr:
    return Attr(
        mode=result.mode,
        size=result.size,
        mtime=result.mtime,
        ctime=result.ctime,
        atime=result.atime,
        nlink=result.nlink,
        uid=result.uid,
        gid=result.gid,
        target=target,
        remote_ino=result.ino,
    )


class Node:
    """One inode: the remote path it stands for, its attributes, its kernel references."""

    __slots__ = ("ino", "path", "attr", "attr_time", "lookups", "data")

    def __init__(self, ino: int, path: bytes, attr: Attr):
        self.ino = ino
        self.path: bytes | None = path  # None once unlinked or replaced
        self.attr = attr
        self.attr_time = time.monotonic()
        self.lookups = 0
        self.data: FileData | None = None

    def set_attr(self, attr: Attr) -> None:
        self.attr = attr
        self.attr_time = time.monotonic()

    def __repr__(self) -> str:
        return f"<Node {self.ino} {self.path!r}>"


class InodeTable:
    """Map between kernel inode numbers and remote paths."""

    def __init__(self, root_path: bytes, root_attr: Attr):
        self._numbers = itertools.count(pyfuse3.ROOT_INODE + 1)
        self.root = Node(pyfuse3.ROOT_INODE, root_path, root_attr)
        self.root.lookups = 1  # the kernel's reference to the root is never forgotten
        self._by_ino: dict[int, Node] = {self.root.ino: self.root}
        self._by_path: dict[bytes, Node] = {root_path: self.root}

    def __len__(self) -> int:
        return len(self._by_ino)

    def get(self, ino: int) -> Node:
        try:
            return self._by_ino[ino]
        except KeyError:
            raise FsError(errno.ENOENT, f"inode {ino} is not known") from None

    def find(self, ino: int) -> Node | None:
        return self._by_ino.get(ino)

    def at_path(self, path: bytes) -> Node | None:
        return self._by_path.get(path)

    def upsert(self, path: bytes, attr: Attr) -> Node:
        """Return the node for `path`, updated with `attr`; a new one if the type changed."""
        node = self._by_path.get(path)
        if node is not None and stat.S_IFMT(node.attr.mode) == stat.S_IFMT(attr.mode):
            node.set_attr(attr)
            return node
        if node is not None:
            self.detach(path)
        node = Node(next(self._numbers), path, attr)
        self._by_ino[node.ino] = node
        self._by_path[path] = node
        return node

    def remember(self, node: Node, count: int = 1) -> None:
        """Count kernel references handed out by lookup, create, mkdir, symlink or readdir."""
        node.lookups += count

    def forget(self, ino: int, count: int) -> None:
        node = self._by_ino.get(ino)
        if node is None or node is self.root:
            return
        node.lookups -= count
        if node.lookups <= 0:
            node.lookups = 0
            self.release_if_unused(node)

    def release_if_unused(self, node: Node) -> None:
        """Drop a node that is not used: no kernel reference and no open or cached data."""
        if node.lookups > 0 or node is self.root:
            return
        if node.data is not None and not node.data.can_drop():
            return
        if node.data is not None:
            node.data.discard()
            node.data = None
        del self._by_ino[node.ino]
        if node.path is not None and self._by_path.get(node.path) is node:
            del self._by_path[node.path]

    def detach(self, path: bytes) -> None:
        """Forget the node at `path` and below it: they were deleted or replaced remotely.

        Detached nodes live on, with no path, until the kernel forgets them, so an unlinked
        file that is still open keeps working on its local data.
        """
        for node in self._nodes_below(path):
            del self._by_path[node.path]  # type: ignore[index]
            node.path = None
            self.release_if_unused(node)

    def move(self, old: bytes, new: bytes) -> None:
        """Give `old` and everything below it their new paths after a rename."""
        self.detach(new)
        moved = self._nodes_below(old)
        for node in moved:
            del self._by_path[node.path]  # type: ignore[index]
        for node in moved:
            node.path = new + node.path[len(old):]  # type: ignore[index]
            self._by_path[node.path] = node

    def _nodes_below(self, path: bytes) -> list[Node]:
        node = self._by_path.get(path)
        if node is not None and not node.attr.is_dir:
            return [node]
        return [node for key, node in self._by_path.items() if is_within(key, path) and node is not self.root]
