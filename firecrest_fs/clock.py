"""The server's time zone, so that listed times become the server's epoch times.

`ops/ls` prints modification times in the server's local time with no zone. One UTC offset
is wrong for half the year wherever daylight saving applies, so at mount the mount learns
the zone itself: it extracts a hidden probe folder whose files carry known epoch times (one
archive through `ops/extract`), lists it once, removes it, and keeps the IANA zones whose
offsets agree with every listed time. When the probe cannot run, a single offset learned
from one `ops/stat` stands in, and times from the other season are then one hour off.
"""

from __future__ import annotations

import calendar
import logging
import os
import time
import uuid
import zoneinfo
from datetime import datetime, timezone, tzinfo

from . import names
from .client import FirecrestClient
from .errors import FirecrestError, FsError
from .cache import INTERNAL_PREFIX
from .transfers import Member, extract_members

log = logging.getLogger(__name__)

LISTING_FORMAT = "%Y-%m-%dT%H:%M:%S"
# Probe times: the 1st and 15th of every month over these many past years, and mid-January
# and mid-July of every year since FIRST_PROBE_YEAR, so that zones which agree today but
# had other rules in the past can be distinguished.
PROBE_YEARS = 12
FIRST_PROBE_YEAR = 1970


def parse_listed(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, LISTING_FORMAT)
    except ValueError:
        return None


class ServerClock:
    """Conversion of the server's local times into epoch seconds."""

    def __init__(self, zone: tzinfo | None = None, offset: int | None = None):
        self.zone = zone
        self.offset = offset  # seconds east of UTC, used when the zone is unknown

    @property
    def known(self) -> bool:
        return self.zone is not None or self.offset is not None

    def to_epoch(self, text: str) -> int:
        """Return the epoch seconds of a listed local time (0 if it cannot be parsed).

        NOTE: in the hour that repeats when daylight saving ends, the earlier of the two
        possible times is taken, because the listing cannot tell them apart.
        """
        local = parse_listed(text)
        if local is None:
            return 0
        if self.zone is not None:
            return int(local.replace(tzinfo=self.zone, fold=0).timestamp())
        return calendar.timegm(local.timetuple()) - (self.offset or 0)

    def learn_offset(self, listed_as_utc: int, epoch: int) -> None:
        """Learn a single UTC offset from one entry: its listed time read as UTC, and its mtime."""
        step = 900  # offsets in use are whole quarter hours
        self.offset = round((listed_as_utc - epoch) / step) * step
        log.info("the server's clock is %+.2f h from UTC (time zone not known)", self.offset / 3600)


def probe_times(now: float) -> list[int]:
    year = time.gmtime(now).tm_year
    recent = {
        calendar.timegm((y, month, day, 12, 0, 0))
        for y in range(year - PROBE_YEARS, year + 1)
        for month in range(1, 13)
        for day in (1, 15)
    }
    older = {calendar.timegm((y, month, 15, 12, 0, 0)) for y in range(FIRST_PROBE_YEAR, year) for month in (1, 7)}
    return sorted(recent | older)


def local_zone_key() -> str | None:
    """Return the IANA name of this machine's time zone, when it can be read."""
    configured = os.environ.get("TZ", "").lstrip(":")
    if configured:
        return configured
    try:
        target = os.readlink("/etc/localtime")
    except OSError:
        return None
    _, found, key = target.partition("zoneinfo/")
    return key if found else None


def choose_zone(candidates: list[str]) -> str:
    """Pick one of zones that agree on every probe: this machine's, UTC, or a regional one."""
    for preferred in (local_zone_key(), "UTC"):
        if preferred in candidates:
            return preferred
    regional = [name for name in candidates if "/" in name and not name.startswith("Etc/")]
    return (regional or candidates)[0]


def zones_matching(samples: dict[int, datetime]) -> list[str]:
    """Return the IANA zones in which every epoch time shows as its listed local time."""
    matching = []
    utc_samples = [(datetime.fromtimestamp(epoch, timezone.utc), local) for epoch, local in samples.items()]
    for name in sorted(zoneinfo.available_timezones()):
        try:
            zone = zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            continue
        if all(moment.astimezone(zone).replace(tzinfo=None) == local for moment, local in utc_samples):
            matching.append(name)
    return matching


async def probe_zone(client: FirecrestClient, directory: bytes) -> tzinfo | None:
    """Find the server's time zone by listing files with known times in `directory`."""
    folder_name = INTERNAL_PREFIX + b"probe-" + uuid.uuid4().hex.encode()
    times = probe_times(time.time())
    members = [Member(folder_name, 0o700, times[-1], directory=True)]
    members += [Member(folder_name + b"/%d" % epoch, 0o600, epoch) for epoch in times]
    folder = names.join(directory, folder_name)
    try:
        await extract_members(client, directory, members)
        try:
            entries = await client.ls(folder)
        finally:
            await client.rm(folder)
    except (FirecrestError, FsError) as exc:
        log.info("could not probe the server's time zone in %r: %s", directory, exc)
        return None
    samples = {}
    for entry in entries:
        local = parse_listed(entry.last_modified)
        if local is not None and entry.name.isdigit():
            samples[int(entry.name)] = local
    if len(samples) < len(times) // 2:
        log.info("the time-zone probe listed %d of %d files; not using it", len(samples), len(times))
        return None
    candidates = zones_matching(samples)
    if not candidates:
        log.warning("no time zone matches the server's listed times; times may be off by the DST hour")
        return None
    preferred = choose_zone(candidates)
    log.info("the server's time zone behaves as %s", preferred)
    return zoneinfo.ZoneInfo(preferred)

