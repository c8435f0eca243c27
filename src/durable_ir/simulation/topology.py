"""The simulated production system's shape: services, their dependencies, their metrics with
usual levels and limits, and the log lines they write on a normal day.

Example:
    >>> SERVICES["payments"].dependencies
    ('db', 'payment-provider')
    >>> dependency_closure("catalog")
    ('db', 'cache')
    >>> SERVICES["db"].metrics["disk_used_gb"].limit
    500.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

__all__ = [
    "SERVICES",
    "LogLevel",
    "LogSignature",
    "MetricSpec",
    "ServiceSpec",
    "callers",
    "dependency_closure",
]

LogLevel = Literal["debug", "info", "warning", "error", "critical"]


@dataclass(frozen=True)
class MetricSpec:
    """One metric of one service: its usual level, relative noise, unit and capacity."""

    baseline: float
    noise: float
    unit: str
    limit: float | None = None
    diurnal: bool = False
    """Whether it follows the daily traffic curve (request rate, CPU)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "baseline", float(self.baseline))
        if self.limit is not None:
            object.__setattr__(self, "limit", float(self.limit))


@dataclass(frozen=True)
class LogSignature:
    """A kind of log line and how often it appears per minute on a normal day."""

    level: LogLevel
    signature: str
    rate: float


@dataclass(frozen=True)
class ServiceSpec:
    """A service: its team, what it calls (with the share of its requests that fail when the
    dependency fails), its metrics and its everyday log lines."""

    name: str
    team: str
    dependencies: tuple[str, ...]
    weights: tuple[float, ...]
    metrics: MappingProxyType[str, MetricSpec]
    background_logs: tuple[LogSignature, ...] = ()
    external: bool = False
    pods: int = 3
    initial_version: str = "2026.02.20-1"
    hostname: str = field(default="")


def _metrics(**specs: MetricSpec) -> MappingProxyType[str, MetricSpec]:
    return MappingProxyType(dict(specs))


def _app_metrics(
    *,
    rps: float,
    p99: float,
    errors: float,
    cpu: float,
    memory: float,
    memory_limit: float,
    disk: float,
    disk_limit: float,
    pool: float | None = None,
    pool_size: float | None = None,
    tls: bool = True,
) -> MappingProxyType[str, MetricSpec]:
    specs = {
        "request_rate": MetricSpec(rps, 0.05, "req/s", diurnal=True),
        "latency_p99_ms": MetricSpec(p99, 0.08, "ms"),
        "error_ratio": MetricSpec(errors, 0.3, "ratio", limit=1.0),
        "cpu_usage_pct": MetricSpec(cpu, 0.06, "%", limit=100.0, diurnal=True),
        "cpu_steal_pct": MetricSpec(1.5, 0.25, "%", limit=100.0),
        "memory_used_mb": MetricSpec(memory, 0.01, "MB", limit=memory_limit),
        "disk_used_gb": MetricSpec(disk, 0.0005, "GB", limit=disk_limit),
    }
    if pool is not None and pool_size is not None:
        specs["db_pool_in_use"] = MetricSpec(pool, 0.12, "connections", limit=pool_size)
    if tls:
        specs["tls_cert_days_remaining"] = MetricSpec(60.0, 0.0, "days")
    return MappingProxyType(specs)


SERVICES: MappingProxyType[str, ServiceSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            ServiceSpec(
                name="checkout",
                team="storefront",
                dependencies=("payments", "catalog", "auth", "cache"),
                weights=(0.7, 0.5, 0.9, 0.1),
                metrics=_app_metrics(
                    rps=120,
                    p99=350,
                    errors=0.002,
                    cpu=35,
                    memory=900,
                    memory_limit=2048,
                    disk=9,
                    disk_limit=50,
                ),
                background_logs=(
                    LogSignature("warning", "client closed request before response (499)", 2.0),
                    LogSignature("error", "recommendations: context deadline exceeded", 0.3),
                    LogSignature("warning", "coupon code not found", 0.8),
                ),
                pods=4,
                hostname="checkout.internal",
            ),
            ServiceSpec(
                name="payments",
                team="payments",
                dependencies=("db", "payment-provider"),
                weights=(0.8, 0.8),
                metrics=_app_metrics(
                    rps=60,
                    p99=280,
                    errors=0.003,
                    cpu=30,
                    memory=700,
                    memory_limit=1536,
                    disk=8,
                    disk_limit=50,
                    pool=8,
                    pool_size=20,
                ),
                background_logs=(
                    LogSignature("warning", "card declined by issuer: insufficient_funds", 1.5),
                    LogSignature("error", "idempotency key reused with different payload", 0.05),
                    LogSignature(
                        "error",
                        "HikariPool-1 - Connection is not available, request timed out after "
                        "5000ms",
                        0.01,
                    ),
                ),
                hostname="payments.internal",
            ),
            ServiceSpec(
                name="catalog",
                team="discovery",
                dependencies=("db", "cache"),
                weights=(0.6, 0.3),
                metrics=_app_metrics(
                    rps=300,
                    p99=120,
                    errors=0.001,
                    cpu=45,
                    memory=1100,
                    memory_limit=3072,
                    disk=30,
                    disk_limit=100,
                    pool=10,
                    pool_size=25,
                ),
                background_logs=(
                    LogSignature("warning", "slow query: SELECT * FROM products (>500ms)", 0.5),
                    LogSignature("error", "image thumbnail missing for sku", 0.2),
                ),
                pods=4,
                hostname="catalog.internal",
            ),
            ServiceSpec(
                name="auth",
                team="identity",
                dependencies=("db",),
                weights=(0.5,),
                metrics=_app_metrics(
                    rps=200,
                    p99=60,
                    errors=0.001,
                    cpu=40,
                    memory=400,
                    memory_limit=1024,
                    disk=5,
                    disk_limit=20,
                    pool=6,
                    pool_size=15,
                ),
                background_logs=(
                    LogSignature("warning", "invalid password for user", 3.0),
                    LogSignature("warning", "token expired, client must refresh", 1.0),
                ),
                hostname="auth.internal",
            ),
            ServiceSpec(
                name="db",
                team="data-platform",
                dependencies=(),
                weights=(),
                metrics=_app_metrics(
                    rps=900,
                    p99=15,
                    errors=0.0005,
                    cpu=50,
                    memory=12000,
                    memory_limit=32768,
                    disk=350,
                    disk_limit=500,
                    tls=False,
                ),
                background_logs=(
                    LogSignature("warning", "checkpoints are occurring too frequently", 0.05),
                    LogSignature("error", "canceling statement due to statement timeout", 0.1),
                ),
                pods=2,
                hostname="db.internal",
            ),
            ServiceSpec(
                name="cache",
                team="data-platform",
                dependencies=(),
                weights=(),
                metrics=_app_metrics(
                    rps=2000,
                    p99=2,
                    errors=0.0001,
                    cpu=20,
                    memory=3000,
                    memory_limit=8192,
                    disk=20,
                    disk_limit=100,
                    tls=False,
                ),
                background_logs=(LogSignature("warning", "evicted keys under maxmemory", 0.5),),
                pods=3,
                hostname="cache.internal",
            ),
            ServiceSpec(
                name="payment-provider",
                team="payments",
                dependencies=(),
                weights=(),
                metrics=_metrics(
                    request_rate=MetricSpec(60, 0.05, "req/s", diurnal=True),
                    latency_p99_ms=MetricSpec(400, 0.1, "ms"),
                    error_ratio=MetricSpec(0.004, 0.3, "ratio", limit=1.0),
                ),
                external=True,
                pods=1,
                hostname="api.payment-provider.example",
            ),
        )
    }
)
"""Every service of the simulated system, by name."""


def dependency_closure(service: str) -> tuple[str, ...]:
    """Every service ``service`` depends on, directly or not, nearest first."""
    seen: list[str] = []
    frontier = list(SERVICES[service].dependencies)
    while frontier:
        name = frontier.pop(0)
        if name not in seen and name != service:
            seen.append(name)
            frontier.extend(SERVICES[name].dependencies)
    return tuple(seen)


def callers(service: str) -> tuple[str, ...]:
    """The services that call ``service`` directly."""
    return tuple(name for name, spec in SERVICES.items() if service in spec.dependencies)
