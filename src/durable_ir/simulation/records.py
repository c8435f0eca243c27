"""What the simulated environment reports: changes, events, log counts, health, and the
outcome of a remediation action.

Example:
    >>> from datetime import UTC, datetime
    >>> at = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
    >>> Change(seq=3, at=at, service="checkout", kind="deploy", summary="deploy v9").kind
    'deploy'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from durable_ir.rca.evidence import ChangeKind
from durable_ir.simulation.topology import LogLevel

__all__ = [
    "Change",
    "ChangeKind",
    "Event",
    "GroundTruth",
    "Health",
    "LogCount",
    "Remediation",
    "Slowdown",
]


@dataclass(frozen=True)
class Change:
    """An entry of the change history (deploys, configuration, infrastructure, certificates).
    ``seq`` numbers the history in the order it was recorded."""

    seq: int
    at: datetime
    service: str
    kind: ChangeKind
    summary: str
    version: str | None = None
    author: str | None = None


@dataclass(frozen=True)
class Event:
    """A discrete event on a service: OOM kill, restart, failed probe, status-page notice."""

    at: datetime
    service: str
    reason: str
    summary: str
    count: int = 1


@dataclass(frozen=True)
class LogCount:
    """How many lines of one kind a service logged in a time range, and when the first was."""

    service: str
    level: LogLevel
    signature: str
    count: int
    first_seen: datetime


@dataclass(frozen=True)
class Health:
    """A verification read of one service over the recent past."""

    service: str
    at: datetime
    healthy: bool
    error_ratio: float
    latency_p99_ms: float
    issues: tuple[str, ...]


@dataclass(frozen=True)
class Remediation:
    """An action applied to the environment (what was done, not whether it helped: read
    :meth:`~durable_ir.simulation.SimulatedEnvironment.health` for that)."""

    action: str
    target: str
    at: datetime
    summary: str


@dataclass(frozen=True)
class GroundTruth:
    """The injected fault, for scoring an analysis. Analyzers and gatherers never see it."""

    fault: str
    service: str
    started_at: datetime


@dataclass(frozen=True)
class Slowdown:
    """Unrelated trouble in the background: ``service`` slower from ``started_at`` until
    ``ended_at`` (``None``: still going). Noise, not the incident."""

    service: str
    started_at: datetime
    ended_at: datetime | None

    def ongoing(self, at: datetime) -> bool:
        """Whether it is going on at ``at``."""
        return self.started_at <= at and (self.ended_at is None or at < self.ended_at)
