"""Approval deadlines per severity.

The defaults follow the product: 15 minutes for P0, 2 hours for P1–P3. Deadlines are computed
once, when an approval is registered, and stored with it in the ledger, so they survive
restarts and need no in-memory timer.

Example:
    >>> from datetime import UTC, datetime, timedelta
    >>> from durable_ir.sla import SlaPolicy
    >>> policy = SlaPolicy()
    >>> start = datetime(2026, 1, 1, tzinfo=UTC)
    >>> policy.deadline_for("P0", start) - start
    datetime.timedelta(seconds=900)
    >>> SlaPolicy(windows={"P0": timedelta(minutes=5)}).window_for("P1")
    datetime.timedelta(seconds=7200)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType

from durable_ir.errors import ConfigurationError, InvalidInput
from durable_ir.severity import SEVERITIES, Severity, parse_severity

__all__ = ["DEFAULT_WINDOWS", "SlaPolicy"]

DEFAULT_WINDOWS: Mapping[Severity, timedelta] = MappingProxyType(
    {
        "P0": timedelta(minutes=15),
        "P1": timedelta(hours=2),
        "P2": timedelta(hours=2),
        "P3": timedelta(hours=2),
    }
)


@dataclass(frozen=True)
class SlaPolicy:
    """How long an approval may wait, per severity.

    ``windows`` overrides some or all of :data:`DEFAULT_WINDOWS`; every window must be positive
    and every key a known severity, else ``ConfigurationError``.
    """

    windows: Mapping[str, timedelta] = field(default_factory=dict)

    def __post_init__(self) -> None:
        merged: dict[Severity, timedelta] = dict(DEFAULT_WINDOWS)
        for key, window in self.windows.items():
            try:
                severity = parse_severity(key)
            except InvalidInput as exc:
                raise ConfigurationError(f"SLA window for {key!r}: {exc}") from None
            if not isinstance(window, timedelta) or window <= timedelta(0):
                raise ConfigurationError(
                    f"SLA window for {severity} must be a positive timedelta, got {window!r}"
                )
            merged[severity] = window
        object.__setattr__(self, "windows", MappingProxyType(merged))

    def window_for(self, severity: str) -> timedelta:
        """The approval window for ``severity`` (``InvalidInput`` if unknown)."""
        return self.windows[parse_severity(severity)]

    def deadline_for(
        self, severity: str, requested_at: datetime, *, override: timedelta | None = None
    ) -> datetime:
        """The deadline of an approval requested at ``requested_at``.

        ``override`` replaces the severity's window for one incident; it must be positive.
        """
        window = self.window_for(severity) if override is None else override
        if window <= timedelta(0):
            raise InvalidInput(f"an approval window must be positive, got {window!r}")
        return requested_at + window


assert tuple(DEFAULT_WINDOWS) == SEVERITIES
