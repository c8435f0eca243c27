"""Everyday trouble that is not the incident: a service slows down for a while (a past blip, or
an ongoing minor degradation) and complains about it in its logs. Analyses must see past it.

Example:
    >>> blip = Disturbance("cache", 100, end=120, factor=2.5, errors=0.0)
    >>> blip.adjust(None, "cache", "latency_p99_ms", 110, 2.0)  # type: ignore[arg-type]
    5.0
    >>> blip.adjust(None, "cache", "latency_p99_ms", 130, 2.0)  # type: ignore[arg-type]
    2.0
"""

from __future__ import annotations

from collections.abc import Iterable

from durable_ir.simulation.faults.base import Fault, LogRate, World
from durable_ir.simulation.topology import SERVICES

__all__ = ["Disturbance"]


class Disturbance(Fault):
    """``service`` is slower by ``factor`` (and fails ``errors`` more requests) from minute
    ``start`` until ``end`` (``None``: still going); its first everyday log line appears ten
    times as often meanwhile."""

    name = "disturbance"

    def __init__(
        self, service: str, start: int, *, end: int | None, factor: float, errors: float
    ) -> None:
        super().__init__(service, start)
        self.end = end
        self.factor = factor
        self.errors = errors

    def active(self, minute: int) -> bool:
        """Whether the disturbance is going on at ``minute``."""
        return self.start <= minute and (self.end is None or minute < self.end)

    def adjust(self, world: World, service: str, metric: str, minute: int, value: float) -> float:
        if service != self.service or not self.active(minute):
            return value
        if metric == "latency_p99_ms":
            return value * self.factor
        if metric == "error_ratio":
            return value + self.errors
        return value

    def log_rates(self, world: World, service: str, minute: int) -> Iterable[LogRate]:
        logs = SERVICES[service].background_logs
        if service != self.service or not self.active(minute) or not logs:
            return ()
        return (LogRate(logs[0].level, logs[0].signature, 9 * logs[0].rate),)
