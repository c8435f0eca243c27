"""Faults in what services rely on: a TLS certificate that expired, and an outage of the
external payment provider.

Example:
    >>> fault = ExpiredCertificate("auth", start=715, error_level=0.8)
    >>> fault.remediate("restart", "auth", 720, {}) is None
    True
    >>> fault.remediate("rotate_certificate", "auth", 720, {})
    'auth certificate rotated'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from durable_ir.simulation.faults.base import Fault, LogRate, PlannedEvent, World, ramp
from durable_ir.simulation.topology import SERVICES, callers

__all__ = ["ExpiredCertificate", "UpstreamOutage"]

_DAY = 24 * 60


class ExpiredCertificate(Fault):
    """``service``'s serving certificate expires at ``start``; clients refuse the handshake
    until the certificate is rotated (a restart reloads the same expired certificate)."""

    name = "expired_certificate"

    def __init__(self, service: str, start: int, *, error_level: float) -> None:
        super().__init__(service, start)
        self.error_level = error_level
        self.rotated_at: int | None = None

    def _expired(self, minute: int) -> float:
        if self.rotated_at is not None and minute >= self.rotated_at + 1:
            return 0.0
        return ramp(minute, start=self.start, length=1)

    def adjust(self, world: World, service: str, metric: str, minute: int, value: float) -> float:
        if service != self.service:
            return value
        if metric == "tls_cert_days_remaining":
            if self.rotated_at is not None and minute >= self.rotated_at:
                return (self.rotated_at + 90 * _DAY - minute) / _DAY
            return (self.start - minute) / _DAY
        expired = self._expired(minute)
        if metric == "error_ratio":
            return value + expired * self.error_level
        if metric == "request_rate":  # failed handshakes never become requests
            return value * (1 - 0.7 * expired)
        return value

    def log_rates(self, world: World, service: str, minute: int) -> Iterable[LogRate]:
        expired = self._expired(minute)
        if service != self.service or expired == 0:
            return ()
        rps = world.base(service, "request_rate", minute)
        return (
            LogRate(
                "warning",
                "http: TLS handshake error: remote error: tls: bad certificate",
                rps * 60 * self.error_level * expired * 0.1,
            ),
        )

    def caller_signature(self, caller: str, dependency: str) -> str:
        return (
            f'Post "https://{SERVICES[dependency].hostname}/v1/verify": x509: certificate has '
            "expired or is not yet valid"
        )

    def remediate(
        self, action: str, target: str, minute: int, params: Mapping[str, Any]
    ) -> str | None:
        if action == "rotate_certificate" and target == self.service and self.rotated_at is None:
            self.rotated_at = minute
            return f"{self.service} certificate rotated"
        return None


class UpstreamOutage(Fault):
    """The external ``service`` fails ``error_level`` of calls from ``start``; callers recover
    only by failing over to a secondary provider (the provider itself stays down)."""

    name = "upstream_outage"

    def __init__(
        self, service: str, start: int, *, error_level: float, status_page_at: int | None
    ) -> None:
        super().__init__(service, start)
        self.error_level = error_level
        self.status_page_at = status_page_at
        self.failover_at: int | None = None

    def _down(self, minute: int) -> float:
        return ramp(minute, start=self.start, length=2)

    def adjust(self, world: World, service: str, metric: str, minute: int, value: float) -> float:
        if service != self.service:
            return value
        down = self._down(minute)
        if metric == "error_ratio":
            wobble = 1 + 0.1 * world.noise.gauss(f"upstream/{service}", minute)
            return min(1.0, value + down * self.error_level * wobble)
        if metric == "latency_p99_ms":
            return value + down * 7000
        return value

    def dependency_weight(self, caller: str, dependency: str, minute: int) -> float | None:
        if dependency == self.service and self.failover_at is not None:
            return 0.0 if minute >= self.failover_at + 1 else None
        return None

    def caller_signature(self, caller: str, dependency: str) -> str:
        return f"upstream {dependency} responded 503 Service Unavailable (POST /v2/charges)"

    def log_rates(self, world: World, service: str, minute: int) -> Iterable[LogRate]:
        if service not in callers(self.service) or self._down(minute) < 0.5:
            return ()
        if self.failover_at is not None and minute >= self.failover_at + 1:
            return ()
        return (
            LogRate(
                "warning",
                f"circuit breaker for {self.service} is OPEN, failing fast",
                2.0 * SERVICES[service].pods,
            ),
        )

    def events(self, world: World, start: int, end: int) -> Iterable[PlannedEvent]:
        at = self.status_page_at
        if at is not None and start <= at < end:
            yield PlannedEvent(
                at,
                self.service,
                "StatusPageIncident",
                f"{self.service} status page: 'Elevated error rates on the Charges API' "
                "(investigating)",
            )

    def remediate(
        self, action: str, target: str, minute: int, params: Mapping[str, Any]
    ) -> str | None:
        involved = target == self.service or target in callers(self.service)
        if action == "failover_upstream" and involved and self.failover_at is None:
            self.failover_at = minute
            return f"callers of {self.service} failed over to the secondary provider"
        return None
