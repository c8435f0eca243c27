"""What an injected fault is: how it bends a service's metrics, which log lines and events it
adds, which changes it brings into the history, and how remediation actions affect it.

Time is counted in whole minutes on the environment's clock (an integer index). Faults hold
their own remediation state, so an action taken "now" changes only what happens afterwards.

Example:
    >>> ramp(5, start=0, length=10)
    0.5
    >>> ramp(-1, start=0, length=10), ramp(99, start=0, length=10)
    (0.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from durable_ir.simulation.noise import NoiseField
from durable_ir.simulation.records import ChangeKind
from durable_ir.simulation.topology import SERVICES, LogLevel

__all__ = [
    "Fault",
    "LogRate",
    "PlannedChange",
    "PlannedEvent",
    "World",
    "generic_caller_signature",
    "ramp",
]


class World(Protocol):
    """What a fault may read from the environment."""

    noise: NoiseField

    def base(self, service: str, metric: str, minute: int) -> float:
        """The healthy value of a metric (usual level, daily curve and noise)."""
        ...

    def value(self, service: str, metric: str, minute: int) -> float:
        """The observed value, with every fault and dependency effect."""
        ...


@dataclass(frozen=True)
class LogRate:
    """Lines per minute of one kind on one service."""

    level: LogLevel
    signature: str
    rate: float


@dataclass(frozen=True)
class PlannedChange:
    """A change a scenario puts into the history."""

    minute: int
    service: str
    kind: ChangeKind
    summary: str
    version: str | None = None
    author: str | None = None


@dataclass(frozen=True)
class PlannedEvent:
    """An event a scenario or fault reports."""

    minute: int
    service: str
    reason: str
    summary: str
    count: int = 1


def ramp(minute: float, *, start: float, length: float) -> float:
    """0 before ``start``, rising linearly to 1 over ``length`` minutes, then 1."""
    if minute <= start:
        return 0.0
    if length <= 0 or minute >= start + length:
        return 1.0
    return (minute - start) / length


def generic_caller_signature(caller: str, dependency: str, status: str = "502 Bad Gateway") -> str:
    """The line a caller logs when a request to an internal dependency fails."""
    return f"POST https://{SERVICES[dependency].hostname}/v1/rpc: {status}"


class Fault:
    """Base class: a fault in ``service`` starting at minute ``start``; by default it changes
    nothing. Subclasses override what they affect."""

    name: ClassVar[str] = "unknown"

    def __init__(self, service: str, start: int) -> None:
        self.service = service
        self.start = start

    def adjust(self, world: World, service: str, metric: str, minute: int, value: float) -> float:
        """``value`` (the healthy reading) as this fault makes it look."""
        return value

    def limit(self, service: str, metric: str, minute: int, limit: float | None) -> float | None:
        """The capacity of a resource at ``minute`` (remediation may change it)."""
        return limit

    def log_rates(self, world: World, service: str, minute: int) -> Iterable[LogRate]:
        """Extra log lines ``service`` writes at ``minute`` because of this fault."""
        return ()

    def caller_signature(self, caller: str, dependency: str) -> str:
        """What ``caller`` logs when its requests to ``dependency`` (this fault's service) fail."""
        return generic_caller_signature(caller, dependency)

    def events(self, world: World, start: int, end: int) -> Iterable[PlannedEvent]:
        """Events this fault causes in minutes ``[start, end)``."""
        return ()

    def changes(self) -> Iterable[PlannedChange]:
        """Changes this fault brings into the history (e.g. the bad deploy itself)."""
        return ()

    def dependency_weight(self, caller: str, dependency: str, minute: int) -> float | None:
        """Overrides the share of ``caller``'s requests that depend on ``dependency``."""
        return None

    def remediate(
        self, action: str, target: str, minute: int, params: Mapping[str, Any]
    ) -> str | None:
        """Apply a remediation action taken at ``minute``; returns a note of what it did to
        this fault (``None`` if nothing), for the environment's history only."""
        return None
