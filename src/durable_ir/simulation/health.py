"""Verification reads: is a service healthy now? Errors and latency against their usual
levels, resources against their limits, CPU steal, certificates, whether memory or disk is on
course to run out soon, and recent OOM kills, crash loops or failed probes.

Example:
    >>> slope([(0, 1.0), (1, 3.0), (2, 5.0)])
    2.0
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from durable_ir.simulation.records import Event, Health
from durable_ir.simulation.topology import MetricSpec

__all__ = ["assess_health", "slope"]

_TROUBLE = {"OOMKilled": 1, "BackOff": 1, "Unhealthy": 3}
"""Events that make a service unhealthy when they happened recently (at least this often: a
single failed probe is a flap). An OOM kill counts over the last half hour at least."""

_TRENDS = {"memory_used_mb": 12 * 60.0, "disk_used_gb": 2 * 60.0}
"""Resources whose exhaustion within this many minutes already makes a service unhealthy."""


class _Readable(Protocol):
    @property
    def now(self) -> datetime: ...

    def metric_names(self, service: str) -> tuple[str, ...]: ...

    def metric_spec(self, service: str, metric: str) -> MetricSpec: ...

    def limit(self, service: str, metric: str) -> float | None: ...

    def metric(
        self, service: str, metric: str, start: datetime, end: datetime, *, step: timedelta = ...
    ) -> list[tuple[datetime, float]]: ...

    def events(
        self, start: datetime, end: datetime, services: tuple[str, ...] | None = None
    ) -> list[Event]: ...


def slope(points: Sequence[tuple[float, float]]) -> float:
    """The least-squares slope of ``(x, y)`` points (0 for fewer than two)."""
    if len(points) < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def _mean(points: Sequence[tuple[datetime, float]]) -> float:
    return sum(v for _, v in points) / len(points) if points else 0.0


def assess_health(env: _Readable, service: str, over: timedelta) -> Health:
    """Read ``service``'s last ``over`` from ``env`` and list what is wrong."""
    now = env.now
    names = env.metric_names(service)
    issues: list[str] = []
    recent = {name: env.metric(service, name, now - over, now) for name in names}
    errors = _mean(recent["error_ratio"])
    latency = _mean(recent["latency_p99_ms"])
    usual_errors = env.metric_spec(service, "error_ratio").baseline
    usual_latency = env.metric_spec(service, "latency_p99_ms").baseline
    if errors > max(0.02, 4 * usual_errors):
        issues.append(f"error ratio {errors:.1%} (usually {usual_errors:.1%})")
    if latency > 2 * usual_latency:
        issues.append(f"p99 latency {latency:.0f}ms (usually {usual_latency:.0f}ms)")
    for name in names:
        limit = env.limit(service, name)
        level = _mean(recent[name])
        resource = name in ("db_pool_in_use", "disk_used_gb", "memory_used_mb")
        if resource and limit and level >= 0.9 * limit:
            issues.append(f"{name} at {level / limit:.0%} of its limit")
        if name == "cpu_steal_pct" and level > 10:
            issues.append(f"CPU steal {level:.0f}%")
        if name == "tls_cert_days_remaining" and recent[name] and recent[name][-1][1] <= 0:
            issues.append("serving certificate has expired")
        if name in _TRENDS and limit:
            trend = env.metric(service, name, now - max(over, timedelta(minutes=30)), now)
            if trend:
                rise = slope([(i, v) for i, (_, v) in enumerate(trend)])
                left = limit - trend[-1][1]
                if rise > 0 and 0 < left < rise * _TRENDS[name]:
                    issues.append(
                        f"{name} rising {rise:.2f}/min: limit reached in ~{left / rise:.0f} min"
                    )
    longer = now - max(over, timedelta(minutes=30))
    for reason, least in _TROUBLE.items():
        since = longer if reason == "OOMKilled" else now - over
        count = sum(e.count for e in env.events(since, now, (service,)) if e.reason == reason)
        if count >= least:
            issues.append(f"{count} x {reason} in the last {(now - since).seconds // 60} min")
    return Health(
        service=service,
        at=now,
        healthy=not issues,
        error_ratio=errors,
        latency_p99_ms=latency,
        issues=tuple(issues),
    )
