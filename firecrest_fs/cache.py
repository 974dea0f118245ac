"""The metadata cache: directory listings from `ops/ls`, kept for a configurable TTL.

Concurrency contract (all tasks run in the one trio thread of the mount):

- A listing is fetched by at most one task at a time per directory; other tasks that miss
  the same directory wait for that fetch (`_Fetch.done`) instead of sending their own.
- Local changes (create, write, rename, delete, chmod) update the cached listing at once
  with `put` and `remove`. When a fetch of that directory is in flight, the change is also
  recorded in the fetch and replayed on its result, so a listing that left the server before
  the change never hides it (no stale or empty listings after a local change).
- Nothing here survives a restart: the cache is rebuilt from the server.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cachetools
import trio

from . import names
from .client import FirecrestClient, ListedEntry
from .errors import FsError, NotFoundError
from .inodes import Attr

log = logging.getLogger(__name__)

# Names of what the mount itself creates on the server: archives on their way to
# `ops/extract`, the time-zone probe, and the staging folder. They are never shown, but a
# user's own file that merely starts with the prefix is.
INTERNAL_PREFIX = b".firecrest-fs-"
_INTERNAL_NAME = re.compile(rb"\.firecrest-fs-(staging|probe-[0-9a-f]{32}|[0-9a-f]{32}\.tar)")


def is_internal(name: bytes) -> bool:
    return _INTERNAL_NAME.fullmatch(name) is not None
MAX_CACHED_LISTINGS = 4096


@dataclass
class Listing:
    """A directory's entries by name, and when they were read from the server."""

    entries: dict[bytes, Attr]
    fetched_at: float = field(default_factory=time.monotonic)


@dataclass
class _Fetch:
    done: trio.Event = field(default_factory=trio.Event)
    result: Listing | None = None
    error: BaseException | None = None
    # Local changes made while the fetch was in flight: name -> new attributes, or None if removed.
    changes: dict[bytes, Attr | None] = field(default_factory=dict)


class ListingCache:
    """Directory listings by remote path, with exact local updates and coalesced fetches."""

    def __init__(self, client: FirecrestClient, ttl: float, to_attr: Callable[[ListedEntry], Attr]):
        self.client = client
        self.ttl = ttl
        self._to_attr = to_attr
        self._listings: cachetools.LRUCache[bytes, Listing] = cachetools.LRUCache(MAX_CACHED_LISTINGS)
        self._fetches: dict[bytes, _Fetch] = {}

    def fresh(self, directory: bytes) -> Listing | None:
        """Return the cached listing of `directory` if it is younger than the TTL."""
        listing = self._listings.get(directory)
        if listing is None or time.monotonic() - listing.fetched_at >= self.ttl:
            return None
        return listing

    async def get(self, directory: bytes, *, refresh: bool = False) -> Listing:
        """Return a listing no older than the TTL, fetching it (once for all waiters) if needed."""
        if not refresh:
            listing = self.fresh(directory)
            if listing is not None:
                return listing
        fetch = self._fetches.get(directory)
        if fetch is None:
            fetch = _Fetch()
            self._fetches[directory] = fetch
            try:
                entries = await self._resolve_ambiguous(directory, await self.client.ls(directory))
                fetch.result = self._store(directory, entries, fetch)
            except BaseException as exc:
                fetch.error = exc
                raise
            finally:
                del self._fetches[directory]
                fetch.done.set()
            return fetch.result
        await fetch.done.wait()
        if fetch.result is None:
            # The fetch this task waited for failed: try once on its own.
            return await self.get(directory, refresh=True)
        return fetch.result

    async def _resolve_ambiguous(self, directory: bytes, entries: list[ListedEntry]) -> list[ListedEntry]:
        """Tell which of a listed name's two readings exists, when it contains a backslash.

        Rare, and one `ops/stat` per such name: `new\\nline` is listed the same whether the
        name contains a newline or a backslash and an `n`.
        """
        resolved = []
        for entry in entries:
            if entry.literal_name is not None and b"'" not in entry.name + entry.literal_name:
                try:
                    await self.client.stat(names.join(directory, entry.name))
                except NotFoundError:
                    try:
                        await self.client.stat(names.join(directory, entry.literal_name))
                        entry = dataclasses.replace(entry, name=entry.literal_name)
                    except NotFoundError:
                        pass
                except FsError:
                    pass  # a name the API cannot carry: keep the decoded reading
            resolved.append(entry)
        return resolved

    def _store(self, directory: bytes, entries: list[ListedEntry], fetch: _Fetch) -> Listing:
        by_name: dict[bytes, Attr] = {}
        for entry in entries:
            if is_internal(entry.name) or b"/" in entry.name or entry.name in (b"", b".", b".."):
                continue
            by_name[entry.name] = self._to_attr(entry)
        for name, attr in fetch.changes.items():
            if attr is None:
                by_name.pop(name, None)
            else:
                by_name[name] = attr
        listing = Listing(by_name)
        self._listings[directory] = listing
        log.debug("listed %r: %d entries", directory, len(by_name))
        return listing

    def put(self, directory: bytes, name: bytes, attr: Attr) -> None:
        """Record a local change that created or modified `name` in `directory`."""
        listing = self._listings.get(directory)
        if listing is not None:
            listing.entries[name] = attr
        fetch = self._fetches.get(directory)
        if fetch is not None:
            fetch.changes[name] = attr

    def remove(self, directory: bytes, name: bytes) -> None:
        """Record a local change that removed `name` from `directory`."""
        listing = self._listings.get(directory)
        if listing is not None:
            listing.entries.pop(name, None)
        fetch = self._fetches.get(directory)
        if fetch is not None:
            fetch.changes[name] = None

    def drop(self, directory: bytes) -> None:
        """Drop the listing of `directory` only, so that its next use fetches it again."""
        self._listings.pop(directory, None)

    def forget(self, directory: bytes) -> None:
        """Drop the listing of `directory` and of every directory below it."""
        prefix = directory.rstrip(b"/") + b"/"
        for key in [k for k in self._listings if k == directory or k.startswith(prefix)]:
            del self._listings[key]
