"""A gatherer over the simulated environment: what a monitoring stack would show about the
alert's service and everything it depends on, within the window.

Ids are stable: the same change, log signature, metric or kind of event has the same id in
every window (``chg-<n>``, ``log-<hash>``, ``met-<service>-<metric>``, ``evt-<hash>``), and
unique within one gathering.

Example:
    >>> import asyncio
    >>> from datetime import timedelta
    >>> from durable_ir.rca import EvidenceWindow
    >>> from durable_ir.simulation import SimulatedEnvironment
    >>> env = SimulatedEnvironment("bad_deploy", seed=1)
    >>> window = EvidenceWindow.ending_at(env.fired_at, timedelta(minutes=15))
    >>> evidence = asyncio.run(SimulatedGatherer(env).gather(env.alert, window))
    >>> sorted({e.kind for e in evidence})
    ['change', 'event', 'log', 'metric']
    >>> all(window.start <= e.at < window.end for e in evidence)
    True
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from datetime import timedelta
from typing import Any

from durable_ir.rca.evidence import (
    ChangeEvidence,
    EventEvidence,
    EvidenceWindow,
    LogEvidence,
    MetricEvidence,
)
from durable_ir.simulation.environment import SimulatedEnvironment
from durable_ir.simulation.records import Event

__all__ = ["SimulatedGatherer"]

Evidence = LogEvidence | MetricEvidence | ChangeEvidence | EventEvidence


def _digest(*parts: str) -> str:
    return hashlib.blake2b("|".join(parts).encode(), digest_size=5).hexdigest()


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


class SimulatedGatherer:
    """Evidence about an alert from a :class:`~durable_ir.simulation.SimulatedEnvironment`.

    Metric series are averaged to at most ``max_points`` points per window (at least one per
    minute)."""

    def __init__(self, environment: SimulatedEnvironment, *, max_points: int = 120) -> None:
        if max_points < 2:
            raise ValueError("max_points must be at least 2")
        self.environment = environment
        self.max_points = max_points

    def _services(self, alert: dict[str, Any]) -> tuple[str, ...]:
        labels = alert.get("labels") if isinstance(alert.get("labels"), dict) else {}
        service = alert.get("service") or (labels or {}).get("service")
        if service not in self.environment.services:
            raise ValueError(f"the alert names no known service: {service!r}")
        return (str(service), *self.environment.dependencies(str(service)))

    async def gather(self, alert: dict[str, Any], window: EvidenceWindow) -> list[Evidence]:
        """Metrics, logs, changes and events of the alert's service and its dependencies
        observed within ``[window.start, window.end)``."""
        services = self._services(alert)
        minutes = max(1, math.ceil(window.length.total_seconds() / 60 / self.max_points))
        step = timedelta(minutes=minutes)
        found: list[Evidence] = []
        for service in services:
            found.extend(self._metrics(service, window, step))
            found.extend(self._logs(service, window))
        found.extend(self._changes(services, window))
        found.extend(self._events(services, window))
        return found

    def _metrics(
        self, service: str, window: EvidenceWindow, step: timedelta
    ) -> list[MetricEvidence]:
        env = self.environment
        found = []
        for metric in env.metric_names(service):
            points = env.metric(service, metric, window.start, window.end, step=step)
            if not points:
                continue
            spec = env.metric_spec(service, metric)
            values = [v for _, v in points]
            usual = None
            if metric != "tls_cert_days_remaining":
                usual = env.baseline(service, metric, window.end)
            limit = env.limit(service, metric)
            summary = (
                f"{service} {metric}: {_fmt(values[0])} -> {_fmt(values[-1])} {spec.unit} "
                f"(min {_fmt(min(values))}, max {_fmt(max(values))}"
                + (f", usual {_fmt(usual)}" if usual is not None else "")
                + (f", limit {_fmt(limit)}" if limit is not None else "")
                + ")"
            )
            found.append(
                MetricEvidence(
                    id=f"met-{service}-{metric}",
                    service=service,
                    at=points[0][0],
                    summary=summary,
                    metric=metric,
                    unit=spec.unit,
                    points=points,
                    baseline=usual,
                    limit=limit,
                )
            )
        return found

    def _logs(self, service: str, window: EvidenceWindow) -> list[LogEvidence]:
        return [
            LogEvidence(
                id=f"log-{_digest(service, log.signature)}",
                service=service,
                at=log.first_seen,
                summary=f"{service}: {log.count} x {log.level} {log.signature!r} since "
                f"{log.first_seen:%H:%M}",
                level=log.level,
                signature=log.signature,
                count=log.count,
                first_seen=log.first_seen,
            )
            for log in self.environment.logs(service, window.start, window.end)
        ]

    def _changes(self, services: tuple[str, ...], window: EvidenceWindow) -> list[ChangeEvidence]:
        return [
            ChangeEvidence(
                id=f"chg-{change.seq}",
                service=change.service,
                at=change.at,
                summary=change.summary,
                change=change.kind,
                version=change.version,
                author=change.author,
            )
            for change in self.environment.changes(window.start, window.end)
            if change.service in services
        ]

    def _events(self, services: tuple[str, ...], window: EvidenceWindow) -> list[EventEvidence]:
        grouped: dict[tuple[str, str], list[Event]] = defaultdict(list)
        for event in self.environment.events(window.start, window.end, services):
            grouped[(event.service, event.reason)].append(event)
        found = []
        for (service, reason), events in grouped.items():
            count = sum(e.count for e in events)
            first, last = events[0], events[-1]
            span = (
                f"at {first.at:%H:%M}"
                if count == 1
                else (f"between {first.at:%H:%M} and {last.at:%H:%M}")
            )
            found.append(
                EventEvidence(
                    id=f"evt-{_digest(service, reason)}",
                    service=service,
                    at=first.at,
                    summary=f"{count} x {reason} on {service} {span}: {last.summary}",
                    reason=reason,
                    count=count,
                )
            )
        return found
