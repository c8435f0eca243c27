"""Time as an injectable dependency: every timestamp durable-ir writes comes from a ``Clock``.

Example:
    >>> from datetime import UTC, datetime
    >>> from durable_ir.clock import FixedClock
    >>> clock = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    >>> clock.advance(minutes=5).isoformat()
    '2026-01-01T00:05:00+00:00'
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

from durable_ir.errors import ConfigurationError

__all__ = ["Clock", "DatabaseClock", "FixedClock", "UtcDatetime", "system_clock"]

log = logging.getLogger("durable_ir.clock")

UtcDatetime = Annotated[AwareDatetime, AfterValidator(lambda moment: moment.astimezone(UTC))]
"""For pydantic fields: a timezone-aware datetime (naive ones are refused), kept in UTC."""

Clock = Callable[[], datetime]
"""A callable returning the current time as an aware UTC ``datetime``."""


def system_clock() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


class FixedClock:
    """A clock that only moves when told to: for tests and simulations.

    Example:
        >>> from datetime import UTC, datetime
        >>> clock = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
        >>> clock() == datetime(2026, 1, 1, tzinfo=UTC)
        True
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ConfigurationError("FixedClock needs an aware datetime (tzinfo=UTC)")
        self._now = start.astimezone(UTC)

    def __call__(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> datetime:
        """Move the clock forward by ``timedelta(**delta)`` and return the new time."""
        step = timedelta(**delta)
        if step < timedelta(0):
            raise ConfigurationError("a clock does not go backwards")
        self._now += step
        return self._now


class DatabaseClock:
    """The database server's clock, read through the local one: every replica that shares a
    database then judges deadlines and leases by the same time, whatever its own clock says.

    ``read_server_time`` returns the server's time (PostgreSQL: ``clock_timestamp()``).
    :meth:`sync` measures the offset between it and the local clock (to within half a round
    trip); calling the clock is then local arithmetic, no I/O. Call :meth:`sync` again now
    and then (:func:`durable_ir.open_runtime` does, every ``resync`` seconds) to follow
    drift and steps of the local clock. A local clock more than ``warn_after`` seconds off the
    server's is logged once, at warning level (and once more when it comes back).

    Example:
        >>> import asyncio
        >>> from datetime import UTC, datetime, timedelta
        >>> server_ahead = timedelta(minutes=3)
        >>> async def read() -> datetime:
        ...     return datetime.now(UTC) + server_ahead
        >>> clock = DatabaseClock(read)
        >>> offset = asyncio.run(clock.sync())
        >>> abs(offset - server_ahead) < timedelta(seconds=1)
        True
        >>> abs(clock() - (datetime.now(UTC) + server_ahead)) < timedelta(seconds=1)
        True
    """

    def __init__(
        self,
        read_server_time: Callable[[], Awaitable[datetime]],
        *,
        warn_after: float = 2.0,
        resync: float = 60.0,
    ) -> None:
        if warn_after <= 0 or resync <= 0:
            raise ConfigurationError("warn_after and resync must be positive (seconds)")
        self._read = read_server_time
        self.warn_after = timedelta(seconds=warn_after)
        self.resync = resync
        self.offset = timedelta(0)
        """Server time minus local time, as last measured."""
        self.synced = False
        self._warned = False

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    async def sync(self) -> timedelta:
        """Measure the offset to the server's clock now; return it."""
        before = time.monotonic()
        local = datetime.now(UTC)
        server = (await self._read()).astimezone(UTC)
        trip = timedelta(seconds=time.monotonic() - before)
        self.offset = server - (local + trip / 2)
        self.synced = True
        off = abs(self.offset) > self.warn_after
        if off and not self._warned:
            log.warning(
                "this host's clock is %.1fs %s the database's: deadlines and leases follow "
                "the database's clock (check NTP on this host)",
                abs(self.offset.total_seconds()),
                "behind" if self.offset > timedelta(0) else "ahead of",
            )
        elif self._warned and not off:
            log.info("this host's clock agrees with the database's again")
        self._warned = off
        return self.offset

    async def run(self) -> None:
        """Sync every ``resync`` seconds until cancelled; a failed sync keeps the last offset
        (the database being unreachable is reported by whoever needs it)."""
        while True:
            await asyncio.sleep(self.resync)
            try:
                await self.sync()
            except Exception as exc:
                log.debug("syncing with the database's clock failed: %s", exc)
