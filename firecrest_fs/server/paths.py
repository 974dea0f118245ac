"""Request path validation as the real server does it, plus this server's confinement.

The real server only checks that a path is absolute and that its normalised form
lies under a configured file system. This server also resolves symbolic links
before it runs a command, and rejects every request that would read or change
anything outside its file systems, with the same 400 message.

NOTE: the checks run before the command, so a concurrent change on disk (a
directory replaced by a symlink in between) is not covered. Only this server's
own clients change these directories in the demo and in tests.
"""

from __future__ import annotations

import logging
import os
import posixpath
import stat
import tarfile

from firecrest_fs.server.errors import ApiError

log = logging.getLogger(__name__)

# Upper bound on the entries that a symlink scan of a tree visits, so that a request
# on a huge tree fails fast instead of blocking the server.
MAX_SCANNED_ENTRIES = 100_000


class PathPolicy:
    """The file system roots of one system, and the checks made against them."""

    def __init__(self, system: str, roots: list[str]) -> None:
        self.system = system
        self.roots = [os.path.realpath(root) for root in roots]

    # -- The real server's checks ------------------------------------------------

    def check_request_path(self, path: str) -> None:
        """Check a request path as the real server does: absolute, under a file system.

        Raises ApiError 400 with the real server's messages.
        """
        if "\0" in path:
            raise ApiError(400, f"The provided path ({path!r}) contains a NUL character.")
        if not posixpath.isabs(path):
            raise ApiError(400, f"The provided path ({path}) is not an absolute path.")
        normalised = posixpath.normpath(path)
        if not any(_is_within(normalised, root) for root in self.roots):
            raise self.outside_error(path)

    def outside_error(self, path: str) -> ApiError:
        return ApiError(
            400,
            f"The provided path ({path}) does not match any of the defined filesystem "
            f"paths for the requested system ({self.system}).",
        )

    # -- Confinement ---------------------------------------------------------------

    def confine(self, path: str, *, follow: bool, allow_root: bool = True) -> str:
        """Reject a path whose resolved location leaves every file system root.

        The parent directory is always resolved, because every command follows
        symlinks there. The final component is resolved too when `follow` is true,
        which callers set for commands that follow it (chmod, reading a file, a
        redirect target). A trailing slash, `.` or `..` makes every command follow it,
        so those are resolved in any case. `allow_root=False` also rejects a root
        itself, for commands that would remove or replace it.

        Returns the resolved location. Raises ApiError 400 like `check_request_path`.
        """
        self.check_request_path(path)
        trimmed = path.rstrip("/") or "/"
        final = posixpath.basename(trimmed)
        if trimmed != path or final in ("", ".", ".."):
            follow = True

        parent = os.path.realpath(posixpath.dirname(trimmed))
        location = os.path.join(parent, final) if final not in ("", ".", "..") else parent
        if follow:
            location = os.path.realpath(location)

        if not any(_is_within(location, root) for root in self.roots):
            log.warning("rejected path %r: it resolves to %r, outside the file systems", path, location)
            raise self.outside_error(path)
        if not allow_root and location in self.roots:
            log.warning("rejected path %r: it is a file system root", path)
            raise self.outside_error(path)
        return location

    def check_tree_links(self, path: str, *, recursive: bool) -> None:
        """Reject a tree that contains a symlink resolving outside the file systems.

        Used for commands that dereference every link they meet (`ls -L`, `cp -L`,
        `tar --dereference`). Only the entries of `path` are checked unless
        `recursive` is true. Recursion also enters directories reached through
        links, as those commands do, and visits each directory once.
        """
        pending = [os.path.realpath(path)]
        visited_directories: set[str] = set()
        visited_entries = 0
        while pending:
            directory = pending.pop()
            if directory in visited_directories or not is_directory(directory):
                continue
            visited_directories.add(directory)
            try:
                entries = list(os.scandir(directory))
            except OSError:
                # The command itself reports the unreadable directory.
                continue
            for entry in entries:
                visited_entries += 1
                if visited_entries > MAX_SCANNED_ENTRIES:
                    raise ApiError(
                        400,
                        f"The tree under {path} has more than {MAX_SCANNED_ENTRIES} entries, "
                        "so its symbolic links cannot be checked.",
                    )
                resolved = os.path.realpath(entry.path)
                if entry.is_symlink() and not self._inside(resolved):
                    log.warning("rejected tree %r: link %r points outside the file systems", path, entry.path)
                    raise self.outside_error(entry.path)
                if recursive and is_directory(resolved):
                    pending.append(resolved)

    def check_archive(self, archive: str, target: str) -> None:
        """Reject an archive whose extraction into `target` could leave the file systems.

        Members must be plain relative paths without `..`, and neither hard links
        nor device files. No parent directory of a member may be a symlink, whether
        on disk under `target` or created by an earlier member of the same archive.
        Raises ApiError 400 naming the first offending member.
        """
        try:
            with tarfile.open(archive, mode="r:*") as tar:
                members = tar.getmembers()
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ApiError(400, f"The archive {archive} cannot be read for checking: {exc}") from exc

        archived_links: set[str] = set()
        for member in members:
            name = member.name
            parts = [part for part in name.split("/") if part not in ("", ".")]
            if name.startswith("/"):
                self._reject_member(archive, name, "it is an absolute path")
            if ".." in parts:
                self._reject_member(archive, name, "it contains '..'")
            if member.islnk():
                self._reject_member(archive, name, "it is a hard link")
            if member.ischr() or member.isblk():
                self._reject_member(archive, name, "it is a device file")

            for depth in range(1, len(parts)):
                prefix = "/".join(parts[:depth])
                if prefix in archived_links:
                    self._reject_member(archive, name, f"its parent {prefix} is a symlink in the archive")
                if os.path.islink(os.path.join(target, prefix)):
                    self._reject_member(archive, name, f"its parent {prefix} is a symlink on disk")

            relative = "/".join(parts)
            if member.issym():
                archived_links.add(relative)
            else:
                archived_links.discard(relative)

    def _reject_member(self, archive: str, member: str, reason: str) -> None:
        log.warning("rejected archive %r: member %r, because %s", archive, member, reason)
        raise ApiError(400, f"The archive {archive} cannot be extracted: member {member} is rejected because {reason}.")

    def _inside(self, location: str) -> bool:
        return any(_is_within(location, root) for root in self.roots)


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def is_directory(path: str) -> bool:
    """Return whether `path` is a directory, following symlinks, and false when it is missing."""
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return False
