"""Approval deadlines per severity.

The defaults follow the product: 15 minutes for P0, 2 hours for P1–P3. Deadlines are computed
once, when an approval is registered, and stored with it in the ledger, so they survive
restarts and need no in-memory timer.

Escalation levels are data: optional :class:`Reminder` steps at fractions of the window
(e.g. 50 % to the approver channel), expiry at 100 %, and then the incident graph escalates
(to ``escalate_to``, recorded in the expiry's reason).

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

__all__ = ["DEFAULT_WINDOWS", "SLA_IDENTITY", "Reminder", "SlaPolicy"]

DEFAULT_WINDOWS: Mapping[Severity, timedelta] = MappingProxyType(
    {
        "P0": timedelta(minutes=15),
        "P1": timedelta(hours=2),
        "P2": timedelta(hours=2),
        "P3": timedelta(hours=2),
    }
)


@dataclass(frozen=True)
class Reminder:
    """Remind ``channel`` when ``at`` (a fraction strictly between 0 and 1) of the approval
    window has passed without a decision.

    Example:
        >>> Reminder(at=0.5).channel
        'approvers'
    """

    at: float
    channel: str = "approvers"

    def __post_init__(self) -> None:
        if isinstance(self.at, bool) or not isinstance(self.at, int | float) or not 0 < self.at < 1:
            raise ConfigurationError(
                f"a reminder's 'at' is a fraction of the window between 0 and 1, got {self.at!r}"
            )
        if not isinstance(self.channel, str) or not self.channel.strip():
            raise ConfigurationError("a reminder needs a channel name")


@dataclass(frozen=True)
class SlaPolicy:
    """How long an approval may wait, per severity, and what happens on the way.

    ``windows`` overrides some or all of :data:`DEFAULT_WINDOWS`; every window must be positive
    and every key a known severity, else ``ConfigurationError``. ``reminders`` fire before the
    deadline, in increasing order of ``at``; ``escalate_to`` names who is paged after expiry.

    Example:
        >>> from datetime import UTC, datetime
        >>> policy = SlaPolicy(reminders=(Reminder(0.5),), escalate_to="oncall-secondary")
        >>> start = datetime(2026, 1, 1, tzinfo=UTC)
        >>> [t.isoformat() for t in policy.due_times(start, policy.deadline_for("P0", start))]
        ['2026-01-01T00:07:30+00:00', '2026-01-01T00:15:00+00:00']
    """

    windows: Mapping[str, timedelta] = field(default_factory=dict)
    reminders: tuple[Reminder, ...] = ()
    escalate_to: str | None = None

    def __post_init__(self) -> None:
        reminders = tuple(self.reminders)
        if not all(isinstance(r, Reminder) for r in reminders):
            raise ConfigurationError("reminders must be Reminder(at=…, channel=…) values")
        fractions = [r.at for r in reminders]
        if fractions != sorted(set(fractions)):
            raise ConfigurationError(
                f"reminders must be in strictly increasing order of 'at', got {fractions}"
            )
        object.__setattr__(self, "reminders", reminders)
        if self.escalate_to is not None and (
            not isinstance(self.escalate_to, str) or not self.escalate_to.strip()
        ):
            raise ConfigurationError("escalate_to must be a non-empty name or None")
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

    def due_times(self, requested_at: datetime, deadline_at: datetime) -> list[datetime]:
        """When each SLA step falls due: every reminder, then the deadline itself."""
        window = deadline_at - requested_at
        return [requested_at + window * r.at for r in self.reminders] + [deadline_at]

    def expiry_reason(self, severity: str, deadline_at: datetime, window: timedelta) -> str:
        """The reason recorded when the monitor expires an approval."""
        reason = f"{severity} approval deadline {deadline_at.isoformat()} passed (window {window})"
        if self.escalate_to:
            reason += f"; escalating to {self.escalate_to}"
        return reason


assert tuple(DEFAULT_WINDOWS) == SEVERITIES

SLA_IDENTITY = "system:sla"
"""Who expires an approval whose deadline passed: the SLA monitor's sweep, or the
compare-and-set of a decision that came too late."""
