"""Verification from Prometheus: after apply, read the alert's symptom back and pass only when
it has recovered.

What ``durable-ir serve`` builds from ``[verifier] kind = "prometheus"`` (see docs/service.md,
*The config file*). Each :class:`RecoveryCheck` is a PromQL template (placeholders
``{service}``, ``{alertname}`` and the alert's labels, filled and escaped as the gatherer
fills them) with a bound — ``below`` or ``above`` — that every series it returns must meet,
limited if wanted to some services and alert names. The verifier runs the checks that apply
to the incident's alert as instant queries every ``interval`` until all of them hold, or until
``wait`` has passed: a metric averaged over a range (``rate(…[1m])``) needs that long to
forget the fault, so verification waits for it instead of failing on the first read.

- No check applies to the alert: not verified (nothing was read), with the reason.
- A check whose query returns no series has no reading: not recovered, unless its
  ``absent_ok`` is set (an error series that vanishes once the fault clears).
- A ``NaN`` reading (0/0: no traffic at all) is not recovered.
- Prometheus unreachable or refusing the query: read again on the next round; if it never
  answers, the detail says so.

The last reading of each check is kept in the verification's ``readings`` (its PromQL, value,
bound and whether it held) and so in the incident's record.

Example:
    >>> check = RecoveryCheck('sum(rate(http_requests_total{service="{service}",code=~"5.."}'
    ...                       '[1m]))', below=0.05)
    >>> check.render({"name": "HighErrors", "service": "checkout"})
    'sum(rate(http_requests_total{service="checkout",code=~"5.."}[1m]))'
    >>> check.holds(0.01), check.holds(0.2)
    (True, False)
    >>> verifier = PrometheusVerifier("http://prometheus:9090", {"errors": check})
    >>> sorted(verifier.checks_for({"name": "HighErrors", "service": "checkout"}))
    ['errors']
    >>> RecoveryCheck("up", below=1, above=0)
    Traceback (most recent call last):
    ...
    durable_ir.errors.ConfigurationError: a recovery check needs exactly one of below or above
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx

from durable_ir.errors import ConfigurationError
from durable_ir.rca.gatherers.prometheus import PromQuery
from durable_ir.remediation.executor import Verification, VerificationContext

__all__ = ["PrometheusVerifier", "RecoveryCheck"]

log = logging.getLogger("durable_ir.remediation.prometheus")


@dataclass(frozen=True)
class RecoveryCheck:
    """A PromQL template whose every series must be ``below`` (or ``above``) a bound."""

    query: str
    below: float | None = None
    above: float | None = None
    services: frozenset[str] = field(default_factory=frozenset)
    alerts: frozenset[str] = field(default_factory=frozenset)
    absent_ok: bool = False

    def __post_init__(self) -> None:
        if not self.query.strip():
            raise ConfigurationError("a recovery check needs a PromQL query")
        if (self.below is None) == (self.above is None):
            raise ConfigurationError("a recovery check needs exactly one of below or above")
        bound = self.below if self.below is not None else self.above
        if bound is None or not math.isfinite(bound):
            raise ConfigurationError(f"a recovery check's bound must be finite, got {bound}")

    def applies_to(self, alert: Mapping[str, Any]) -> bool:
        """Whether the check is for ``alert``'s service and name (empty: for every one)."""
        service, name = alert.get("service"), alert.get("name")
        return (not self.services or service in self.services) and (
            not self.alerts or name in self.alerts
        )

    def render(self, alert: Mapping[str, Any]) -> str:
        """The PromQL for ``alert`` (``ConfigurationError`` for a placeholder it cannot fill)."""
        values = dict(alert)
        if "name" in alert:
            values.setdefault("alertname", alert["name"])
        return PromQuery(self.query, metric="recovery").render(values)

    def holds(self, value: float) -> bool:
        """Whether one reading meets the bound (``NaN`` never does)."""
        if math.isnan(value):
            return False
        if self.below is not None:
            return value < self.below
        assert self.above is not None
        return value > self.above

    def bound(self) -> str:
        """``< 0.05`` or ``> 0.9``, for details."""
        return f"< {self.below:g}" if self.below is not None else f"> {self.above:g}"


class PrometheusVerifier:
    """Reads ``checks`` (name → :class:`RecoveryCheck`) from the Prometheus at ``base_url``
    until they hold or ``wait`` has passed, reading every ``interval``; ``timeout`` is seconds
    per query, ``headers`` go with every request (e.g. ``Authorization``)."""

    def __init__(
        self,
        base_url: str,
        checks: Mapping[str, RecoveryCheck],
        *,
        wait: timedelta = timedelta(minutes=2),
        interval: timedelta = timedelta(seconds=5),
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"base_url must be an http(s) URL, got {base_url!r}")
        if not checks:
            raise ConfigurationError("a PrometheusVerifier needs at least one check")
        if wait < timedelta(0) or interval <= timedelta(0):
            raise ConfigurationError("wait must be ≥ 0 and interval positive")
        if timeout <= 0:
            raise ConfigurationError(f"timeout must be positive seconds, got {timeout}")
        self.url = base_url.rstrip("/") + "/api/v1/query"
        self.checks = dict(checks)
        self.wait = wait
        self.interval = interval
        self.timeout = timeout
        self._headers = dict(headers or {})
        self.client = client

    def __repr__(self) -> str:
        return f"PrometheusVerifier({self.url!r}, {sorted(self.checks)})"  # never the headers

    def checks_for(self, alert: Mapping[str, Any]) -> dict[str, RecoveryCheck]:
        """The checks that apply to ``alert``."""
        return {name: c for name, c in self.checks.items() if c.applies_to(alert)}

    async def verify(self, context: VerificationContext) -> Verification:
        """Healthy once every applicable check holds, within ``wait``."""
        checks = self.checks_for(context.alert)
        if not checks:
            return Verification(
                False,
                f"no recovery check applies to alert {context.alert.get('name')!r} of service "
                f"{context.alert.get('service')!r}: nothing was read, so recovery is not "
                "verified",
            )
        promql = {}
        for name, check in checks.items():
            try:
                promql[name] = check.render(context.alert)
            except ConfigurationError as exc:
                return Verification(False, f"recovery check {name!r}: {exc}")
        if self.client is not None:
            return await self._poll(self.client, checks, promql)
        async with httpx.AsyncClient() as client:
            return await self._poll(client, checks, promql)

    async def _poll(
        self,
        client: httpx.AsyncClient,
        checks: Mapping[str, RecoveryCheck],
        promql: Mapping[str, str],
    ) -> Verification:
        deadline = time.monotonic() + self.wait.total_seconds()
        reads = 0
        while True:
            reads += 1
            readings = {
                name: await self._reading(client, name, check, promql[name])
                for name, check in checks.items()
            }
            failing = [name for name, r in readings.items() if not r["ok"]]
            if not failing:
                shown = ", ".join(f"{n} {r['value']} {r['bound']}" for n, r in readings.items())
                return Verification(
                    True, f"recovered in Prometheus ({shown}; read {reads}×)", readings
                )
            if time.monotonic() + self.interval.total_seconds() > deadline:
                shown = "; ".join(f"{n}: {readings[n]['problem']}" for n in failing)
                waited = self.wait.total_seconds()
                return Verification(
                    False,
                    f"not recovered in Prometheus after {waited:g}s ({reads} reads): {shown}",
                    readings,
                )
            await asyncio.sleep(self.interval.total_seconds())

    async def _reading(
        self, client: httpx.AsyncClient, name: str, check: RecoveryCheck, query: str
    ) -> dict[str, Any]:
        reading: dict[str, Any] = {"query": query, "bound": check.bound(), "value": None}
        try:
            response = await client.post(
                self.url, data={"query": query}, headers=self._headers, timeout=self.timeout
            )
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            return reading | {"ok": False, "problem": f"Prometheus did not answer: {exc!r}"}
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else None
            problem = f"Prometheus refused the query (HTTP {response.status_code}): {error}"
            return reading | {"ok": False, "problem": problem}
        data = body.get("data") or {}
        values = _values(data)
        if values is None:
            problem = f"the query must return a vector or scalar, got {data.get('resultType')}"
            return reading | {"ok": False, "problem": problem}
        if not values:
            if check.absent_ok:
                return reading | {"ok": True, "value": "absent", "problem": ""}
            return reading | {"ok": False, "problem": "no series (no data yet)"}
        worst = max(values) if check.below is not None else min(values)
        held = all(check.holds(v) for v in values)
        value = "NaN" if math.isnan(worst) else round(worst, 6)
        problem = "" if held else f"{value} is not {check.bound()}"
        return reading | {"ok": held, "value": value, "problem": problem}


def _values(data: Mapping[str, Any]) -> list[float] | None:
    kind = data.get("resultType")
    result = data.get("result")
    try:
        if kind == "scalar" and isinstance(result, list):
            return [float(result[1])]
        if kind == "vector" and isinstance(result, list):
            return [float(item["value"][1]) for item in result]
    except (TypeError, ValueError, KeyError, IndexError):
        return None
    return None
