"""Fault scenarios: which fault is injected where and when (relative to the alert), which
service the alert fires on, and the unrelated activity around it — deploys and configuration
changes that did no harm, recent changes to other services, everyday pod events.

Every choice comes from the ``random.Random`` passed in, so a scenario and seed always build
the same plan.

Example:
    >>> import random
    >>> plan = build_plan("config_error", random.Random(1), now=720)
    >>> plan.fault.name, plan.fault.service == plan.alert_service
    ('config_error', True)
    >>> 720 - 60 < plan.fault.start < 720 - 15   # outside a 15-minute window
    True
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from durable_ir.rca.analysis import FAULTS
from durable_ir.simulation.faults import (
    BadDeploy,
    ConfigError,
    DiskFull,
    Disturbance,
    ExpiredCertificate,
    Fault,
    MemoryLeak,
    NoisyNeighbour,
    PlannedChange,
    PlannedEvent,
    PoolExhaustion,
    UpstreamOutage,
)
from durable_ir.simulation.topology import SERVICES

__all__ = ["SCENARIOS", "ScenarioPlan", "build_plan"]

SCENARIOS: tuple[str, ...] = tuple(f for f in FAULTS if f != "unknown")
"""The scenario names: one per fault category."""

_APPS = ("checkout", "payments", "catalog", "auth")
_INTERNAL = tuple(name for name, spec in SERVICES.items() if not spec.external)


@dataclass
class ScenarioPlan:
    """What a scenario injects (``fault`` is ``None`` for a healthy system with noise only),
    and the unrelated trouble around it."""

    fault: Fault | None
    alert_service: str
    changes: list[PlannedChange] = field(default_factory=list)
    events: list[PlannedEvent] = field(default_factory=list)
    disturbances: list[Disturbance] = field(default_factory=list)


def _version(rng: random.Random) -> str:
    return f"2026.03.{rng.randint(1, 28):02d}-{rng.randint(1, 9)}"


def _caller_or_self(rng: random.Random, service: str, self_share: float) -> str:
    if service == "checkout" or rng.random() < self_share:
        return service
    return "checkout"


def _bad_deploy(rng: random.Random, now: int) -> ScenarioPlan:
    service = rng.choice(_APPS)
    fault = BadDeploy(
        service,
        now - rng.randint(7, 12),
        error_level=rng.uniform(0.06, 0.2),
        version=_version(rng),
    )
    return ScenarioPlan(fault, _caller_or_self(rng, service, 0.7))


def _memory_leak(rng: random.Random, now: int) -> ScenarioPlan:
    service = rng.choice(_APPS)
    pods = SERVICES[service].pods
    fill = rng.uniform(200, 320)
    fastest = fill / (1 + 0.06 * (pods - 1) / 2)
    first_oom = now - rng.randint(-8, 25)  # may still be ahead: pods only thrashing in GC
    start = int(first_oom - fastest)
    fault = MemoryLeak(service, start, fill_minutes=fill, version=_version(rng), pods=pods)
    return ScenarioPlan(fault, _caller_or_self(rng, service, 0.8))


def _pool_exhaustion(rng: random.Random, now: int) -> ScenarioPlan:
    service = rng.choice(("payments", "catalog", "auth"))
    fault = PoolExhaustion(service, now - rng.randint(10, 16), surge=rng.uniform(2.2, 2.6))
    return ScenarioPlan(fault, _caller_or_self(rng, service, 0.7))


def _disk_full(rng: random.Random, now: int) -> ScenarioPlan:
    service = rng.choice(("db", "db", "catalog"))
    full_at = now - rng.randint(3, 10)
    fault = DiskFull(service, full_at - rng.randint(180, 330), full_at=full_at)
    if service == "db":
        alert_service = rng.choice(("db", "payments", "catalog", "auth", "checkout"))
    else:
        alert_service = _caller_or_self(rng, service, 0.6)
    return ScenarioPlan(fault, alert_service)


def _expired_certificate(rng: random.Random, now: int) -> ScenarioPlan:
    service = rng.choice(("auth", "payments", "catalog"))
    fault = ExpiredCertificate(service, now - rng.randint(3, 9), error_level=rng.uniform(0.6, 0.9))
    return ScenarioPlan(fault, _caller_or_self(rng, service, 0.4))


def _upstream_outage(rng: random.Random, now: int) -> ScenarioPlan:
    start = now - rng.randint(5, 12)
    status_page = start + rng.randint(3, 15) if rng.random() < 0.6 else None
    fault = UpstreamOutage(
        "payment-provider",
        start,
        error_level=rng.uniform(0.45, 0.9),
        status_page_at=status_page,
    )
    return ScenarioPlan(fault, rng.choice(("payments", "checkout")))


def _noisy_neighbour(rng: random.Random, now: int) -> ScenarioPlan:
    service = rng.choice(_APPS)
    node = f"ip-10-0-{rng.randint(1, 9)}-{rng.randint(10, 250)}"
    fault = NoisyNeighbour(service, now - rng.randint(30, 55), steal=rng.uniform(25, 45), node=node)
    plan = ScenarioPlan(fault, service)
    if rng.random() < 0.6:
        plan.changes.append(
            PlannedChange(
                fault.start - rng.randint(1, 6),
                service,
                "infra",
                f"cluster-autoscaler consolidated node pool general-2: {service} pods moved to "
                f"{node}",
                author="cluster-autoscaler",
            )
        )
    return plan


_SETTINGS = {
    "checkout": 'PAYMENT_TIMEOUT_MS: "30000" -> "30s"',
    "payments": "retry_policy renamed to retry_polcy",
    "catalog": "search_v2 ruleset -> ranking-2026q1",
    "auth": "session.ttl: 900 -> '15 minutes'",
}


def _config_error(rng: random.Random, now: int) -> ScenarioPlan:
    service = rng.choice(_APPS)
    start = now - rng.randint(45, 58)
    full_at = now + rng.randint(0, 10)
    at_alert = rng.uniform(0.05, 0.09)
    level = at_alert * (full_at - start) / (now - start)
    fault = ConfigError(
        service, start, error_level=level, full_at=full_at, setting=_SETTINGS[service]
    )
    return ScenarioPlan(fault, service)


def _healthy(rng: random.Random, now: int) -> ScenarioPlan:
    return ScenarioPlan(None, rng.choice(_APPS))


_BUILDERS: dict[str, Callable[[random.Random, int], ScenarioPlan]] = {
    "bad_deploy": _bad_deploy,
    "memory_leak": _memory_leak,
    "connection_pool_exhaustion": _pool_exhaustion,
    "disk_full": _disk_full,
    "expired_certificate": _expired_certificate,
    "upstream_outage": _upstream_outage,
    "noisy_neighbour": _noisy_neighbour,
    "config_error": _config_error,
}

_HARMLESS_CONFIG = (
    "log level info -> debug for 1h",
    "feature flag dark_mode enabled for 5% of users",
    "rate limit per client 100 -> 120 req/s",
    "HTTP keep-alive timeout 60s -> 75s",
)
_EVERYDAY_EVENTS = (
    ("Killing", "Stopping container: node drained for kernel upgrade"),
    ("Unhealthy", "Readiness probe failed: context deadline exceeded"),
    ("Pulled", "Successfully pulled image in 2.1s"),
    ("Rescheduled", "pod rescheduled after spot instance interruption"),
)


def _harmless_change(rng: random.Random, minute: int, service: str) -> PlannedChange:
    kind = rng.choices(("deploy", "config", "infra"), weights=(7, 2, 1))[0]
    if kind == "deploy":
        version = _version(rng)
        return PlannedChange(
            minute,
            service,
            "deploy",
            f"deploy {service} {version} (rolling, 100%)",
            version=version,
            author="ci-bot",
        )
    if kind == "config":
        setting = rng.choice(_HARMLESS_CONFIG)
        return PlannedChange(
            minute, service, "config", f"{service} configuration: {setting}", author="ops"
        )
    return PlannedChange(
        minute, service, "infra", f"{service}: node pool OS image patched", author="platform"
    )


def _add_noise(rng: random.Random, plan: ScenarioPlan, now: int) -> None:
    faulty = plan.fault.service if plan.fault else None
    for _ in range(rng.randint(2, 4)):
        service = rng.choice(_INTERNAL)
        plan.changes.append(_harmless_change(rng, now - rng.randint(25, 350), service))
    if rng.random() < 0.4:  # a recent change somewhere else, unrelated to the trouble
        service = rng.choice([s for s in _INTERNAL if s != faulty])
        plan.changes.append(_harmless_change(rng, now - rng.randint(2, 14), service))
    others = [s for s in _INTERNAL if s != faulty]
    if rng.random() < 0.4:  # a slowdown somewhere, over well before the alert
        start = now - rng.randint(60, 300)
        plan.disturbances.append(
            Disturbance(
                rng.choice(others),
                start,
                end=start + rng.randint(10, 25),
                factor=rng.uniform(2.0, 3.0),
                errors=rng.uniform(0.0, 0.01),
            )
        )
    if rng.random() < 0.25:  # a minor slowdown of a shared backend, still going on
        service = rng.choice([s for s in ("cache", "db") if s != faulty])
        start = now - rng.randint(20, 90)
        factor = rng.uniform(2.0, 2.6)
        # Not right after a change there: that would be a regression, not noise.
        if not [c for c in plan.changes if c.service == service and start - 30 <= c.minute]:
            plan.disturbances.append(
                Disturbance(service, start, end=None, factor=factor, errors=0.0)
            )
    for _ in range(rng.randint(1, 3)):
        reason, summary = rng.choice(_EVERYDAY_EVENTS)
        plan.events.append(
            PlannedEvent(now - rng.randint(1, 360), rng.choice(_INTERNAL), reason, summary)
        )


def build_plan(scenario: str | None, rng: random.Random, *, now: int) -> ScenarioPlan:
    """The plan of ``scenario`` (a name from :data:`SCENARIOS`, or ``None`` for a healthy
    system) with the alert at minute ``now``."""
    if scenario is not None and scenario not in _BUILDERS:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    plan = (_BUILDERS[scenario] if scenario else _healthy)(rng, now)
    if plan.fault is not None:
        plan.changes.extend(plan.fault.changes())
    _add_noise(rng, plan, now)
    return plan
