"""Faults in a service's own code or configuration: a bad deploy, a configuration error, and a
memory leak that builds up over hours until pods are OOM-killed.

Example:
    >>> fault = BadDeploy("checkout", start=700, error_level=0.1, version="2026.03.02-2")
    >>> [c.kind for c in fault.changes()]
    ['deploy']
    >>> fault.remediate("restart", "checkout", 705, {}) is None
    True
    >>> fault.remediate("rollback", "checkout", 705, {})
    'rollback of checkout removes 2026.03.02-2'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from itertools import pairwise
from typing import Any

from durable_ir.simulation.faults.base import (
    Fault,
    LogRate,
    PlannedChange,
    PlannedEvent,
    World,
    generic_caller_signature,
    ramp,
)
from durable_ir.simulation.topology import SERVICES

__all__ = ["BadDeploy", "ConfigError", "MemoryLeak"]

_DEFECTS = {
    "checkout": "TypeError: Cannot read properties of undefined (reading 'currency') at "
    "applyPromotion (cart.js:214)",
    "payments": 'NullPointerException: Cannot invoke "Money.amount()" because "refund" is null '
    "at RefundService.settle(RefundService.java:88)",
    "catalog": "panic: runtime error: invalid memory address or nil pointer dereference "
    "[signal SIGSEGV] in pricing.Apply",
    "auth": "AttributeError: 'NoneType' object has no attribute 'scopes' in verify_token",
}

_CONFIG_ERRORS = {
    "checkout": 'invalid value for PAYMENT_TIMEOUT_MS="30s": strconv.Atoi: parsing "30s": '
    "invalid syntax; using 0",
    "payments": "config: unknown key 'retry_polcy' in service.yaml, using defaults: retries "
    "disabled",
    "catalog": "feature flag 'search_v2' references unknown ruleset 'ranking-2026q1'",
    "auth": "config: invalid value for session.ttl: '15 minutes' is not a duration",
}

_OUT_OF_MEMORY = {
    "checkout": "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
    "catalog": "java.lang.OutOfMemoryError: Java heap space",
    "auth": "java.lang.OutOfMemoryError: Java heap space",
    "payments": "java.lang.OutOfMemoryError: Java heap space",
}


def _rps(world: World, service: str, minute: int) -> float:
    return world.value(service, "request_rate", minute)


class BadDeploy(Fault):
    """A deploy whose new code path fails a share of requests, from a minute after it rolls out
    until it is rolled back."""

    name = "bad_deploy"

    def __init__(self, service: str, start: int, *, error_level: float, version: str) -> None:
        super().__init__(service, start)
        self.error_level = error_level
        self.version = version
        self.fixed_at: int | None = None

    def _strength(self, minute: int) -> float:
        if self.fixed_at is not None and minute >= self.fixed_at + 2:
            return 0.0
        return ramp(minute, start=self.start + 1, length=2)

    def adjust(self, world: World, service: str, metric: str, minute: int, value: float) -> float:
        if service != self.service:
            return value
        strength = self._strength(minute)
        if metric == "error_ratio":
            wobble = 1 + 0.15 * world.noise.gauss(f"bad-deploy/{service}", minute)
            return value + strength * self.error_level * max(0.3, wobble)
        if metric == "latency_p99_ms":
            return value * (1 + 0.6 * strength)
        return value

    def log_rates(self, world: World, service: str, minute: int) -> Iterable[LogRate]:
        strength = self._strength(minute)
        if service != self.service or strength == 0:
            return ()
        rate = _rps(world, service, minute) * 60 * self.error_level * strength * 0.5
        return (LogRate("error", _DEFECTS[service], rate),)

    def caller_signature(self, caller: str, dependency: str) -> str:
        return generic_caller_signature(caller, dependency, "500 Internal Server Error")

    def changes(self) -> Iterable[PlannedChange]:
        yield PlannedChange(
            self.start,
            self.service,
            "deploy",
            f"deploy {self.service} {self.version} (rolling, 100%)",
            version=self.version,
            author="ci-bot",
        )

    def events(self, world: World, start: int, end: int) -> Iterable[PlannedEvent]:
        if self.service != "catalog":  # a Go panic takes the process down
            return
        for minute in range(max(start, self.start + 2), end):
            if self._strength(minute) > 0 and minute % 3 == 0:
                yield PlannedEvent(
                    minute, self.service, "BackOff", "Back-off restarting failed container"
                )

    def remediate(
        self, action: str, target: str, minute: int, params: Mapping[str, Any]
    ) -> str | None:
        if action == "rollback" and target == self.service and self.fixed_at is None:
            self.fixed_at = minute
            return f"rollback of {self.service} removes {self.version}"
        return None


class ConfigError(Fault):
    """A configuration change that pods pick up gradually as they reload it: errors grow from
    the change until ``error_level`` at minute ``full_at``, until the change is reverted."""

    name = "config_error"

    def __init__(
        self, service: str, start: int, *, error_level: float, full_at: int, setting: str
    ) -> None:
        super().__init__(service, start)
        self.error_level = error_level
        self.full_at = full_at
        self.setting = setting
        self.fixed_at: int | None = None

    def _strength(self, minute: int) -> float:
        if self.fixed_at is not None and minute >= self.fixed_at + 1:
            return 0.0
        return ramp(minute, start=self.start, length=self.full_at - self.start)

    def adjust(self, world: World, service: str, metric: str, minute: int, value: float) -> float:
        if service != self.service:
            return value
        strength = self._strength(minute)
        if metric == "error_ratio":
            return value + strength * self.error_level
        if metric == "latency_p99_ms":
            return value * (1 + 0.2 * strength)
        return value

    def log_rates(self, world: World, service: str, minute: int) -> Iterable[LogRate]:
        strength = self._strength(minute)
        if service != self.service or strength == 0:
            return ()
        rate = _rps(world, service, minute) * 60 * self.error_level * strength * 0.3
        return (LogRate("error", _CONFIG_ERRORS[service], rate),)

    def changes(self) -> Iterable[PlannedChange]:
        yield PlannedChange(
            self.start,
            self.service,
            "config",
            f"{self.service} configuration: {self.setting}",
            author="j.doe",
        )

    def remediate(
        self, action: str, target: str, minute: int, params: Mapping[str, Any]
    ) -> str | None:
        if action == "fix_config" and target == self.service and self.fixed_at is None:
            self.fixed_at = minute
            return f"{self.service} configuration reverted"
        return None


class MemoryLeak(Fault):
    """Each pod of ``service`` leaks memory from ``start`` (when ``version`` was deployed) until
    it hits the container limit and is OOM-killed, then starts leaking again. A restart only
    resets the pods; a rollback removes the leak."""

    name = "memory_leak"

    def __init__(
        self, service: str, start: int, *, fill_minutes: float, version: str, pods: int
    ) -> None:
        super().__init__(service, start)
        self.version = version
        self.pods = pods
        spread = [1 + 0.06 * (i - (pods - 1) / 2) for i in range(pods)]
        self.periods = [fill_minutes / s for s in spread]
        """Minutes a fresh pod takes to reach the limit."""
        self.resets = [start]
        self.fixed_at: int | None = None
        spec = SERVICES[service].metrics["memory_used_mb"]
        assert spec.limit is not None
        self.limit_mb = spec.limit
        self.base_mb = spec.baseline

    def _leaked_fraction(self, pod: int, minute: float) -> float:
        """How far pod ``pod`` is from its usual memory towards the limit (0..1)."""
        if minute < self.start or (self.fixed_at is not None and minute >= self.fixed_at + 2):
            return 0.0
        origin = max(r for r in self.resets if r <= minute)
        return math.fmod(minute - origin, self.periods[pod]) / self.periods[pod]

    def _oom_minutes(self, pod: int, start: int, end: int) -> Iterable[int]:
        resets = [*self.resets, end if self.fixed_at is None else min(end, self.fixed_at + 2)]
        for origin, until in pairwise(resets):
            k = 1
            while (at := origin + k * self.periods[pod]) < until:
                if start <= at < end:
                    yield int(at)
                k += 1

    def _fractions(self, minute: int) -> list[float]:
        return [self._leaked_fraction(pod, minute) for pod in range(self.pods)]

    def _recently_killed(self, minute: int) -> int:
        return sum(
            1 for pod in range(self.pods) for _ in self._oom_minutes(pod, minute - 2, minute + 1)
        )

    def adjust(self, world: World, service: str, metric: str, minute: int, value: float) -> float:
        if service != self.service or minute < self.start:
            return value
        fractions = self._fractions(minute)
        top = max(fractions)
        if metric == "memory_used_mb":  # the fullest pod
            return value + top * (0.96 * self.limit_mb - self.base_mb)
        pressure = sum(max(0.0, f - 0.8) / 0.2 for f in fractions) / self.pods
        if metric == "latency_p99_ms":
            return value * (1 + 3.0 * pressure)
        if metric == "error_ratio":
            killed = self._recently_killed(minute) / self.pods
            failing = sum(max(0.0, f - 0.9) / 0.1 for f in fractions) / self.pods
            return value + 0.25 * killed + 0.12 * failing
        if metric == "cpu_usage_pct":  # garbage collection
            return value + 25 * pressure
        return value

    def log_rates(self, world: World, service: str, minute: int) -> Iterable[LogRate]:
        if service != self.service or minute < self.start:
            return ()
        fractions = self._fractions(minute)
        gc = sum(1 for f in fractions if f > 0.8)
        failing = sum(max(0.0, f - 0.9) / 0.1 for f in fractions) / self.pods
        rps = _rps(world, service, minute)
        rates = []
        if gc:
            rates.append(LogRate("warning", "GC overhead: full collection pause > 1s", 2.0 * gc))
        if failing:
            rates.append(LogRate("error", _OUT_OF_MEMORY[service], rps * 60 * 0.12 * failing * 0.2))
        return rates

    def events(self, world: World, start: int, end: int) -> Iterable[PlannedEvent]:
        for pod in range(self.pods):
            for minute in self._oom_minutes(pod, start, end):
                yield PlannedEvent(
                    minute,
                    self.service,
                    "OOMKilled",
                    f"container {self.service}-{pod} OOMKilled (limit {int(self.limit_mb)}Mi), "
                    "restarting",
                )

    def changes(self) -> Iterable[PlannedChange]:
        yield PlannedChange(
            self.start,
            self.service,
            "deploy",
            f"deploy {self.service} {self.version} (rolling, 100%)",
            version=self.version,
            author="ci-bot",
        )

    def remediate(
        self, action: str, target: str, minute: int, params: Mapping[str, Any]
    ) -> str | None:
        if target != self.service or self.fixed_at is not None:
            return None
        if action == "restart":
            self.resets.append(minute)
            return f"{self.service} pods restarted: memory back to normal, still leaking"
        if action == "rollback":
            self.fixed_at = minute
            return f"rollback of {self.service} removes {self.version} and its leak"
        return None
