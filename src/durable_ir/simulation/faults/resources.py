"""Faults where a resource runs out: a connection pool too small for a traffic surge, a disk
filling up, and CPU time stolen by a neighbour on the same host.

Example:
    >>> fault = DiskFull("db", start=400, full_at=700)
    >>> fault.remediate("restart", "db", 710, {}) is None
    True
    >>> fault.remediate("expand_disk", "db", 710, {"factor": 2})
    'db disk expanded to 1000 GB'
    >>> fault.limit("db", "disk_used_gb", 712, 500.0)
    1000.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from durable_ir.simulation.faults.base import (
    Fault,
    LogRate,
    PlannedEvent,
    World,
    generic_caller_signature,
    ramp,
)
from durable_ir.simulation.topology import SERVICES

__all__ = ["DiskFull", "NoisyNeighbour", "PoolExhaustion"]

_POOL_ERRORS = {
    "payments": "HikariPool-1 - Connection is not available, request timed out after 5000ms",
    "catalog": "QueuePool limit of size 25 overflow 0 reached, connection timed out, timeout 30",
    "auth": "pool exhausted: timed out waiting for a free connection (15/15 in use)",
    "checkout": "connection pool exhausted: timed out waiting for a free connection",
}

_DISK_ERRORS = {
    "db": 'could not write to file "pg_wal/xlogtemp.2231": No space left on device',
    "catalog": "failed to persist search index segment: write /var/lib/catalog/index/seg_: no "
    "space left on device",
}


def _limit(service: str, metric: str) -> float:
    limit = SERVICES[service].metrics[metric].limit
    assert limit is not None
    return limit


class PoolExhaustion(Fault):
    """A traffic surge (``surge`` times the usual load) makes ``service`` need more database
    connections than its pool holds; waiting requests time out. Scaling out spreads the load
    over more pods (and pools); restarting changes nothing."""

    name = "connection_pool_exhaustion"

    def __init__(self, service: str, start: int, *, surge: float) -> None:
        super().__init__(service, start)
        self.surge = surge
        self.scale = 1.0
        self.scaled_at: int | None = None
        self.size = _limit(service, "db_pool_in_use")

    def _load(self, minute: int) -> float:
        return 1 + (self.surge - 1) * ramp(minute, start=self.start, length=4)

    def _per_pod(self, minute: int) -> float:
        if self.scaled_at is not None and minute >= self.scaled_at + 3:
            return self.scale
        return 1.0

    def _demand(self, world: World, minute: int) -> float:
        load = self._load(minute)
        slowdown = 1 + 0.5 * (load - 1) / max(self.surge - 1, 1e-9)
        base = world.base(self.service, "db_pool_in_use", minute)
        return base * load * slowdown / self._per_pod(minute)

    def _starved(self, world: World, minute: int) -> float:
        """The share of requests that cannot get a connection."""
        demand = self._demand(world, minute)
        return max(0.0, 1 - self.size / demand) if demand > 0 else 0.0

    def adjust(self, world: World, service: str, metric: str, minute: int, value: float) -> float:
        load = self._load(minute)
        if service == "db" and metric == "request_rate":
            return value * (1 + 0.3 * (load - 1))
        if service == "db" and metric == "latency_p99_ms":
            return value * (1 + 0.25 * (load - 1))
        if service != self.service:
            return value
        if metric == "request_rate":
            return value * load
        if metric == "cpu_usage_pct":
            return min(100.0, value * math.pow(load / self._per_pod(minute), 0.6))
        if metric == "db_pool_in_use":
            return min(self.size, self._demand(world, minute))
        starved = self._starved(world, minute)
        if metric == "error_ratio":
            return value + 0.5 * starved
        if metric == "latency_p99_ms":
            return 5000.0 if starved > 0.02 else value * (1 + 0.5 * (load - 1) / self.surge)
        return value

    def log_rates(self, world: World, service: str, minute: int) -> Iterable[LogRate]:
        if service != self.service:
            return ()
        starved = self._starved(world, minute)
        if starved <= 0:
            return ()
        rps = world.value(service, "request_rate", minute)
        return (LogRate("error", _POOL_ERRORS[service], rps * 60 * 0.5 * starved * 0.3),)

    def caller_signature(self, caller: str, dependency: str) -> str:
        return generic_caller_signature(caller, dependency, "504 Gateway Timeout")

    def remediate(
        self, action: str, target: str, minute: int, params: Mapping[str, Any]
    ) -> str | None:
        if action == "scale" and target == self.service:
            self.scale *= float(params.get("factor", 2))
            self.scaled_at = minute
            return f"{self.service} scaled out x{self.scale:g}"
        return None


class DiskFull(Fault):
    """Something fills ``service``'s disk steadily from ``start`` until it is full at
    ``full_at``; then writes fail. Clearing space buys hours; expanding the disk more."""

    name = "disk_full"

    def __init__(self, service: str, start: int, *, full_at: int) -> None:
        super().__init__(service, start)
        self.full_at = full_at
        spec = SERVICES[service].metrics["disk_used_gb"]
        assert spec.limit is not None
        self.size = spec.limit
        self.rate = (spec.limit - spec.baseline) / (full_at - start)
        """GB per minute."""
        self.cleared: list[tuple[int, float]] = []
        """(minute, GB freed) for each clean-up."""
        self.expanded: list[tuple[int, float]] = []
        """(minute, new size) for each expansion."""

    def limit(self, service: str, metric: str, minute: int, limit: float | None) -> float | None:
        if service != self.service or metric != "disk_used_gb":
            return limit
        for at, size in self.expanded:
            if minute >= at + 1:
                limit = size
        return limit

    def _used(self, minute: int, value: float) -> float:
        used = value + self.rate * max(0, minute - self.start)
        for at, freed in self.cleared:
            if minute >= at + 1:
                used -= freed
        size = self.limit(self.service, "disk_used_gb", minute, self.size)
        assert size is not None
        return min(used, size)

    def _full(self, world: World, minute: int) -> float:
        """0 with room to spare, 1 once the disk is full."""
        size = self.limit(self.service, "disk_used_gb", minute, self.size)
        assert size is not None
        used = self._used(minute, world.base(self.service, "disk_used_gb", minute))
        return 1.0 if used >= size - 0.05 else 0.0

    def adjust(self, world: World, service: str, metric: str, minute: int, value: float) -> float:
        if service != self.service:
            return value
        if metric == "disk_used_gb":
            return self._used(minute, value)
        full = self._full(world, minute)
        if metric == "error_ratio":
            return value + full * (0.35 if service == "db" else 0.15)
        if metric == "latency_p99_ms":
            return value * (1 + 1.5 * full)
        return value

    def log_rates(self, world: World, service: str, minute: int) -> Iterable[LogRate]:
        if service != self.service or not self._full(world, minute):
            return ()
        rps = world.value(service, "request_rate", minute)
        return (LogRate("error", _DISK_ERRORS[service], rps * 60 * 0.35 * 0.05),)

    def caller_signature(self, caller: str, dependency: str) -> str:
        if dependency == "db":
            return (
                'pq: could not extend file "base/16384/2619": No space left on device '
                f"({SERVICES['db'].hostname}:5432)"
            )
        return generic_caller_signature(caller, dependency, "500 Internal Server Error")

    def events(self, world: World, start: int, end: int) -> Iterable[PlannedEvent]:
        for minute in range(max(start, self.start), end):
            size = self.limit(self.service, "disk_used_gb", minute, self.size)
            assert size is not None
            used = self._used(minute, world.base(self.service, "disk_used_gb", minute))
            if used >= 0.95 * size and minute % 5 == 0:
                yield PlannedEvent(
                    minute,
                    self.service,
                    "FreeDiskSpaceFailed",
                    f"volume of {self.service} is {used / size:.0%} full, failed to free space",
                )

    def remediate(
        self, action: str, target: str, minute: int, params: Mapping[str, Any]
    ) -> str | None:
        if target != self.service:
            return None
        if action == "clear_disk":
            size = self.limit(self.service, "disk_used_gb", minute, self.size)
            assert size is not None
            used = min(
                size,
                SERVICES[target].metrics["disk_used_gb"].baseline
                + self.rate * (minute - self.start)
                - sum(freed for _, freed in self.cleared),
            )
            freed = max(0.0, used - 0.55 * size)
            self.cleared.append((minute, freed))
            return f"{self.service} disk: {freed:.0f} GB of old files removed"
        if action == "expand_disk":
            size = self.limit(self.service, "disk_used_gb", minute, self.size)
            assert size is not None
            new_size = size * float(params.get("factor", 2))
            self.expanded.append((minute, new_size))
            return f"{self.service} disk expanded to {new_size:.0f} GB"
        return None


class NoisyNeighbour(Fault):
    """A CPU-hungry workload lands on the host of ``service``: CPU steal climbs to ``steal``
    percent and requests slow down, until the pods are rescheduled onto another node."""

    name = "noisy_neighbour"

    def __init__(self, service: str, start: int, *, steal: float, node: str) -> None:
        super().__init__(service, start)
        self.steal = steal
        self.node = node
        self.moved_at: int | None = None

    def _strength(self, minute: int) -> float:
        if self.moved_at is not None and minute >= self.moved_at + 2:
            return 0.0
        return ramp(minute, start=self.start, length=15)

    def adjust(self, world: World, service: str, metric: str, minute: int, value: float) -> float:
        if service != self.service:
            return value
        strength = self._strength(minute)
        if metric == "cpu_steal_pct":
            return value + self.steal * strength
        if metric == "latency_p99_ms":
            return value * (1 + 0.06 * self.steal * strength)
        if metric == "error_ratio":
            return value + 0.02 * strength
        if metric == "cpu_usage_pct":
            return value + 12 * strength
        return value

    def log_rates(self, world: World, service: str, minute: int) -> Iterable[LogRate]:
        strength = self._strength(minute)
        if service != self.service or strength == 0:
            return ()
        rps = world.value(service, "request_rate", minute)
        return (
            LogRate(
                "warning",
                "slow request: handler exceeded its 500ms budget",
                rps * 60 * 0.01 * strength,
            ),
            LogRate("error", "request timed out after 2000ms", rps * 60 * 0.02 * strength * 0.2),
        )

    def caller_signature(self, caller: str, dependency: str) -> str:
        return generic_caller_signature(caller, dependency, "504 Gateway Timeout")

    def remediate(
        self, action: str, target: str, minute: int, params: Mapping[str, Any]
    ) -> str | None:
        if action == "reschedule" and target == self.service and self.moved_at is None:
            self.moved_at = minute
            return f"{self.service} pods moved off {self.node}"
        return None
