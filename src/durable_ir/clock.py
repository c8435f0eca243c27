"""Time as an injectable dependency: every timestamp durable-ir writes comes from a ``Clock``.

Example:
    >>> from datetime import UTC, datetime
    >>> from durable_ir.clock import FixedClock
    >>> clock = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    >>> clock.advance(minutes=5).isoformat()
    '2026-01-01T00:05:00+00:00'
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

__all__ = ["Clock", "FixedClock", "UtcDatetime", "system_clock"]

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
            raise ValueError("FixedClock needs an aware datetime (tzinfo=UTC)")
        self._now = start.astimezone(UTC)

    def __call__(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> datetime:
        """Move the clock forward by ``timedelta(**delta)`` and return the new time."""
        step = timedelta(**delta)
        if step < timedelta(0):
            raise ValueError("a clock does not go backwards")
        self._now += step
        return self._now
