"""Typed evidence that analyzers reason over and must cite by id, and the gatherer protocol.

Evidence is one of four kinds — :class:`LogEvidence`, :class:`MetricEvidence`,
:class:`ChangeEvidence`, :class:`EventEvidence` — each with an ``id`` unique within a gathering,
the ``service`` it concerns, when it was observed, and a one-line ``summary``. Evidence goes
into graph state as plain JSON (``model_dump(mode="json")``), never as objects.

Example:
    >>> from datetime import UTC, datetime, timedelta
    >>> window = EvidenceWindow.ending_at(datetime(2026, 1, 1, 12, tzinfo=UTC), timedelta(hours=1))
    >>> window.start.isoformat()
    '2026-01-01T11:00:00+00:00'
    >>> e = ChangeEvidence(id="chg-1", service="api", at=window.start, summary="deploy v42",
    ...                    change="deploy", version="v42")
    >>> parse_evidence(e.model_dump(mode="json")) == e
    True
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from durable_ir.clock import UtcDatetime

__all__ = [
    "ChangeEvidence",
    "ChangeKind",
    "EventEvidence",
    "Evidence",
    "EvidenceWindow",
    "Gatherer",
    "LogEvidence",
    "MetricEvidence",
    "parse_evidence",
]


class _EvidenceBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=128)
    service: str = Field(min_length=1, max_length=200)
    at: UtcDatetime
    summary: str = Field(min_length=1, max_length=2_000)


class LogEvidence(_EvidenceBase):
    """A log signature: how often a kind of line appeared in the window."""

    kind: Literal["log"] = "log"
    level: Literal["debug", "info", "warning", "error", "critical"] = "error"
    signature: str = Field(min_length=1, max_length=500)
    count: int = Field(ge=0)
    first_seen: datetime | None = None


class MetricEvidence(_EvidenceBase):
    """A metric series over the window, with its usual level when known."""

    kind: Literal["metric"] = "metric"
    metric: str = Field(min_length=1, max_length=200)
    unit: str = ""
    points: list[tuple[datetime, float]] = Field(default_factory=list, max_length=10_000)
    baseline: float | None = None
    limit: float | None = None
    """The resource's capacity where it has one (pool size, disk size, CPU quota)."""


ChangeKind = Literal["deploy", "config", "infra", "certificate", "other"]
"""What kind of change a :class:`ChangeEvidence` records."""


class ChangeEvidence(_EvidenceBase):
    """A change to the system: deploy, configuration, infrastructure, certificate."""

    kind: Literal["change"] = "change"
    change: ChangeKind
    version: str | None = None
    author: str | None = None


class EventEvidence(_EvidenceBase):
    """A discrete event: an OOM kill, a restart, a health-check failure, an upstream status."""

    kind: Literal["event"] = "event"
    reason: str = Field(min_length=1, max_length=200)
    count: int = Field(default=1, ge=1)


Evidence = Annotated[
    LogEvidence | MetricEvidence | ChangeEvidence | EventEvidence, Field(discriminator="kind")
]
_EVIDENCE: TypeAdapter[Any] = TypeAdapter(Evidence)


def parse_evidence(data: Any) -> LogEvidence | MetricEvidence | ChangeEvidence | EventEvidence:
    """Evidence from its JSON form (``pydantic.ValidationError`` if malformed)."""
    result: LogEvidence | MetricEvidence | ChangeEvidence | EventEvidence = (
        _EVIDENCE.validate_python(data)
    )
    return result


class EvidenceWindow(BaseModel):
    """The time range evidence is gathered over: ``[start, end)``."""

    model_config = ConfigDict(frozen=True)

    start: datetime
    end: datetime

    @classmethod
    def ending_at(cls, end: datetime, length: timedelta) -> EvidenceWindow:
        """The window of ``length`` that ends at ``end``."""
        return cls(start=end - length, end=end)

    @property
    def length(self) -> timedelta:
        """How long the window is."""
        return self.end - self.start


@runtime_checkable
class Gatherer(Protocol):
    """Collects evidence about an alert over a window. Ids must be unique within one call."""

    async def gather(
        self, alert: dict[str, Any], window: EvidenceWindow
    ) -> list[LogEvidence | MetricEvidence | ChangeEvidence | EventEvidence]:
        """Evidence about ``alert`` observed within ``window``."""
        ...
