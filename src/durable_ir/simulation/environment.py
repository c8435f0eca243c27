"""A simulated production environment: services with metric time series, log signatures, a
change history and events, with one fault scenario injected relative to an alert — all
deterministic from a seed — and remediation actions that really change what happens next.

The clock starts at the alert (``fired_at``); data exists for the twelve hours before it and
for as far as :meth:`SimulatedEnvironment.advance` has moved the clock. Nothing later than
``now`` can be read.

Example:
    >>> from datetime import timedelta
    >>> env = SimulatedEnvironment("expired_certificate", seed=2)
    >>> env.alert["service"] in env.services
    True
    >>> target = env.ground_truth.service
    >>> _ = env.remediate("restart", target)          # reloads the same expired certificate
    >>> env.advance(timedelta(minutes=15))
    >>> env.health(target).healthy
    False
    >>> _ = env.remediate("rotate_certificate", target)
    >>> env.advance(timedelta(minutes=15))
    >>> env.health(target).healthy, env.health(env.alert["service"]).healthy
    (True, True)
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from durable_ir.simulation.faults import Fault, PlannedEvent
from durable_ir.simulation.faults.base import generic_caller_signature
from durable_ir.simulation.health import assess_health
from durable_ir.simulation.noise import NoiseField
from durable_ir.simulation.records import (
    Change,
    Event,
    GroundTruth,
    Health,
    LogCount,
    Remediation,
    Slowdown,
)
from durable_ir.simulation.scenarios import build_plan
from durable_ir.simulation.topology import SERVICES, LogLevel, MetricSpec, dependency_closure

__all__ = ["ACTIONS", "SimulatedEnvironment"]

ACTIONS = (
    "rollback",
    "restart",
    "scale",
    "rotate_certificate",
    "clear_disk",
    "expand_disk",
    "failover_upstream",
    "fix_config",
    "reschedule",
)
"""The remediation actions :meth:`SimulatedEnvironment.remediate` understands."""

_HISTORY = 12 * 60
"""Minutes of data before the alert."""
_DAY = 24 * 60
_FIRST_ALERT = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)


class SimulatedEnvironment:
    """The environment of ``scenario`` (a name from
    :data:`~durable_ir.simulation.scenarios.SCENARIOS`, or ``None`` for a healthy system whose
    alert is noise) built from ``seed``."""

    def __init__(self, scenario: str | None = None, *, seed: int = 0) -> None:
        self.scenario = scenario
        self.seed = seed
        rng = random.Random(f"durable-ir/simulation|{scenario}|{seed}")
        self.fired_at = _FIRST_ALERT + timedelta(minutes=rng.randrange(0, 7 * _DAY))
        self._epoch = self.fired_at - timedelta(minutes=_HISTORY)
        self._epoch_minute_of_day = self._epoch.hour * 60 + self._epoch.minute
        self._now = _HISTORY
        self.noise = NoiseField(seed)
        plan = build_plan(scenario, rng, now=_HISTORY)
        self._fault: Fault | None = plan.fault
        self._disturbances = tuple(plan.disturbances)
        self._effects: tuple[Fault, ...] = (
            (plan.fault, *plan.disturbances) if plan.fault else self._disturbances
        )
        self._alert_service = plan.alert_service
        self._planned_events: list[PlannedEvent] = list(plan.events)
        self._not_after = {
            name: _HISTORY + rng.randint(15 * _DAY, 80 * _DAY)
            for name, spec in SERVICES.items()
            if "tls_cert_days_remaining" in spec.metrics
        }
        self._changes: list[Change] = []
        for planned in sorted(plan.changes, key=lambda c: c.minute):
            self._record_change(
                planned.minute,
                planned.service,
                planned.kind,
                planned.summary,
                version=planned.version,
                author=planned.author,
            )
        self._memo: dict[tuple[str, str, int], float] = {}
        self.alert = self._make_alert()

    # -- time -----------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        """The environment's clock (starts at the alert)."""
        return self._time(self._now)

    @property
    def services(self) -> tuple[str, ...]:
        """Every service's name."""
        return tuple(SERVICES)

    @property
    def slowdowns(self) -> tuple[Slowdown, ...]:
        """The unrelated slowdowns of this world (noise; for tests and scoring)."""
        return tuple(
            Slowdown(
                d.service,
                self._time(d.start),
                self._time(d.end) if d.end is not None else None,
            )
            for d in self._disturbances
        )

    @property
    def ground_truth(self) -> GroundTruth | None:
        """The injected fault (for scoring; ``None`` when healthy)."""
        if self._fault is None:
            return None
        return GroundTruth(self._fault.name, self._fault.service, self._time(self._fault.start))

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward by ``delta`` (whole minutes)."""
        if delta < timedelta(0):
            raise ValueError("time only moves forward")
        self._now += int(delta.total_seconds() // 60)

    def _time(self, minute: int) -> datetime:
        return self._epoch + timedelta(minutes=minute)

    def _minutes(self, start: datetime, end: datetime) -> range:
        """The whole minutes that begin within ``[start, end)`` and have already ended."""
        first = math.ceil((start - self._epoch).total_seconds() / 60)
        last = min(math.ceil((end - self._epoch).total_seconds() / 60), self._now)
        return range(first, max(first, last))

    # -- topology ---------------------------------------------------------------------------

    def dependencies(self, service: str) -> tuple[str, ...]:
        """Every service ``service`` depends on, directly or not."""
        self._check_service(service)
        return dependency_closure(service)

    def metric_names(self, service: str) -> tuple[str, ...]:
        """The metrics ``service`` exports."""
        self._check_service(service)
        return tuple(SERVICES[service].metrics)

    def metric_spec(self, service: str, metric: str) -> MetricSpec:
        """Unit, usual level and capacity of a metric (as designed)."""
        return SERVICES[service].metrics[metric]

    def limit(self, service: str, metric: str) -> float | None:
        """The metric's capacity now (remediation such as expanding a disk changes it)."""
        limit = self.metric_spec(service, metric).limit
        if self._fault is not None:
            limit = self._fault.limit(service, metric, self._now, limit)
        return limit

    def baseline(self, service: str, metric: str, at: datetime) -> float:
        """The metric's usual level at ``at`` (what the same time last week looked like)."""
        spec = self.metric_spec(service, metric)
        if metric == "tls_cert_days_remaining":
            return self.base(service, metric, self._minute(at))
        return spec.baseline * (self._diurnal(self._minute(at)) if spec.diurnal else 1.0)

    def _check_service(self, service: str) -> None:
        if service not in SERVICES:
            raise ValueError(f"unknown service {service!r}; known: {', '.join(SERVICES)}")

    def _minute(self, at: datetime) -> int:
        return math.floor((at - self._epoch).total_seconds() / 60)

    # -- metrics ----------------------------------------------------------------------------

    def _diurnal(self, minute: int) -> float:
        of_day = (self._epoch_minute_of_day + minute) % _DAY
        return 1 + 0.25 * math.sin(2 * math.pi * (of_day / 60 - 10) / 24)

    def base(self, service: str, metric: str, minute: int) -> float:
        """A metric's healthy value at ``minute``: usual level, daily curve and noise."""
        spec = SERVICES[service].metrics[metric]
        if metric == "tls_cert_days_remaining":
            return (self._not_after[service] - minute) / _DAY
        value = spec.baseline * (self._diurnal(minute) if spec.diurnal else 1.0)
        value *= 1 + spec.noise * self.noise.gauss(f"{service}/{metric}", minute)
        spiky = metric in ("latency_p99_ms", "error_ratio")
        if spiky and self.noise.uniform(f"{service}/spike", minute) < 0.006:
            value = value * 2.2 if metric == "latency_p99_ms" else value + 0.01
        value = max(0.0, value)
        return min(value, spec.limit) if spec.limit is not None else value

    def value(self, service: str, metric: str, minute: int) -> float:
        """A metric's observed value at ``minute``, with the fault and its knock-on effects on
        callers (a failing dependency fails a share of its callers' requests a minute later)."""
        key = (service, metric, minute)
        found = self._memo.get(key)
        if found is not None:
            return found
        spec = SERVICES[service]
        value = self.base(service, metric, minute)
        for effect in self._effects:
            value = effect.adjust(self, service, metric, minute, value)
        if metric in ("error_ratio", "latency_p99_ms"):
            for dependency, weight in self._weights(service, minute):
                usual = SERVICES[dependency].metrics[metric].baseline
                excess = max(0.0, self.value(dependency, metric, minute - 1) - usual)
                if metric == "error_ratio":
                    value = 1 - (1 - value) * (1 - min(1.0, weight * excess))
                else:
                    value += 0.5 * weight * excess
        if metric == "latency_p99_ms":
            value = min(value, 30_000.0)
        limit = spec.metrics[metric].limit
        if limit is not None and metric != "disk_used_gb":
            value = min(value, limit)
        self._memo[key] = value
        return value

    def _weights(self, service: str, minute: int) -> list[tuple[str, float]]:
        spec = SERVICES[service]
        weights = []
        for dependency, weight in zip(spec.dependencies, spec.weights, strict=True):
            if self._fault is not None:
                override = self._fault.dependency_weight(service, dependency, minute)
                weight = weight if override is None else override
            weights.append((dependency, weight))
        return weights

    def metric(
        self,
        service: str,
        metric: str,
        start: datetime,
        end: datetime,
        *,
        step: timedelta = timedelta(minutes=1),
    ) -> list[tuple[datetime, float]]:
        """The series within ``[start, end)`` (no later than now), averaged over ``step``."""
        if metric not in self.metric_names(service):
            raise ValueError(f"{service} has no metric {metric!r}")
        minutes = self._minutes(start, end)
        width = max(1, int(step.total_seconds() // 60))
        points = []
        for first in range(minutes.start, minutes.stop - width + 1, width):
            values = [self.value(service, metric, m) for m in range(first, first + width)]
            points.append((self._time(first), sum(values) / width))
        return points

    # -- logs -------------------------------------------------------------------------------

    def _log_rates(self, service: str, minute: int) -> list[tuple[LogLevel, str, float]]:
        spec = SERVICES[service]
        rates: list[tuple[LogLevel, str, float]] = [
            (line.level, line.signature, line.rate) for line in spec.background_logs
        ]
        for effect in self._effects:
            rates.extend(
                (r.level, r.signature, r.rate) for r in effect.log_rates(self, service, minute)
            )
        if spec.external:
            return rates
        rps = self.value(service, "request_rate", minute)
        for dependency, weight in self._weights(service, minute):
            usual = SERVICES[dependency].metrics["error_ratio"].baseline
            excess = max(0.0, self.value(dependency, "error_ratio", minute - 1) - usual)
            if self._fault is not None and dependency == self._fault.service:
                signature = self._fault.caller_signature(service, dependency)
            else:
                signature = generic_caller_signature(service, dependency)
            rates.append(("error", signature, rps * 60 * weight * excess * 0.2))
        return rates

    def logs(self, service: str, start: datetime, end: datetime) -> list[LogCount]:
        """Warning-and-above log lines of ``service`` within ``[start, end)``, by signature."""
        self._check_service(service)
        counts: dict[tuple[LogLevel, str], list[int]] = {}
        for minute in self._minutes(start, end):
            for level, signature, rate in self._log_rates(service, minute):
                if rate <= 0:
                    continue
                key = f"{service}/log/{signature}"
                jitter = rate * (1 + 0.1 * self.noise.gauss(key, minute))
                count = math.floor(max(0.0, jitter) + self.noise.uniform(key, minute))
                if count:
                    found = counts.setdefault((level, signature), [0, minute])
                    found[0] += count
        return [
            LogCount(service, level, signature, count, self._time(first))
            for (level, signature), (count, first) in sorted(counts.items(), key=lambda i: i[1][1])
        ]

    # -- changes and events -----------------------------------------------------------------

    def _record_change(
        self,
        minute: int,
        service: str,
        kind: Any,
        summary: str,
        *,
        version: str | None = None,
        author: str | None = None,
    ) -> Change:
        change = Change(
            seq=len(self._changes) + 1,
            at=self._time(minute),
            service=service,
            kind=kind,
            summary=summary,
            version=version,
            author=author,
        )
        self._changes.append(change)
        return change

    def changes(self, start: datetime, end: datetime) -> list[Change]:
        """The change history within ``[start, end)`` (no later than now)."""
        return [c for c in self._changes if start <= c.at < end and c.at < self.now]

    def events(
        self, start: datetime, end: datetime, services: tuple[str, ...] | None = None
    ) -> list[Event]:
        """Events within ``[start, end)`` (no later than now), for ``services`` (default all):
        the fault's, everyday ones, remediation's, and failed readiness probes."""
        minutes = self._minutes(start, end)
        wanted = set(services or SERVICES)
        planned = list(self._planned_events)
        if self._fault is not None:
            planned.extend(self._fault.events(self, minutes.start, minutes.stop))
        found = [
            Event(self._time(p.minute), p.service, p.reason, p.summary, p.count)
            for p in planned
            if p.service in wanted and p.minute in minutes
        ]
        for service in sorted(wanted):
            if SERVICES[service].external:
                continue
            for minute in minutes:
                if self.value(service, "error_ratio", minute) > 0.25:
                    found.append(
                        Event(
                            self._time(minute),
                            service,
                            "Unhealthy",
                            "Readiness probe failed: HTTP probe failed with statuscode: 503",
                        )
                    )
        return sorted(found, key=lambda e: (e.at, e.service, e.reason))

    # -- the alert --------------------------------------------------------------------------

    def _make_alert(self) -> dict[str, Any]:
        service = self._alert_service
        recent = range(self._now - 5, self._now)
        errors = sum(self.value(service, "error_ratio", m) for m in recent) / len(recent)
        latency = sum(self.value(service, "latency_p99_ms", m) for m in recent) / len(recent)
        usual = SERVICES[service].metrics["latency_p99_ms"].baseline
        if errors >= 0.03 or latency < 1.5 * usual:
            name = "HighErrorRate"
            description = f"{service}: 5xx ratio {errors:.1%} over the last 5m (threshold 3%)"
        else:
            name = "HighLatencyP99"
            description = (
                f"{service}: p99 latency {latency:.0f}ms over the last 5m "
                f"(threshold {1.5 * usual:.0f}ms)"
            )
        severity = "P1" if service in ("checkout", "payments", "db") else "P2"
        return {
            "name": name,
            "service": service,
            "severity": severity,
            "fired_at": self.fired_at.isoformat(),
            "description": description,
            "labels": {
                "alertname": name,
                "service": service,
                "team": SERVICES[service].team,
                "env": "prod",
            },
        }

    # -- remediation and verification -------------------------------------------------------

    def remediate(self, action: str, target: str, **params: Any) -> Remediation:
        """Apply ``action`` to ``target`` now. Whether it helped shows in a later
        :meth:`health` read, after :meth:`advance`."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
        self._check_service(target)
        minute = self._now
        summary = self._record(action, target, minute, params)
        if self._fault is not None:
            note = self._fault.remediate(action, target, minute, params)
            if note:
                self._planned_events.append(PlannedEvent(minute, target, "Remediation", note))
        self._memo = {k: v for k, v in self._memo.items() if k[2] < minute}
        return Remediation(action, target, self._time(minute), summary)

    def _record(self, action: str, target: str, minute: int, params: dict[str, Any]) -> str:
        if action == "rollback":
            deploys = [c for c in self._changes if c.service == target and c.kind == "deploy"]
            previous = deploys[-2].version if len(deploys) > 1 else SERVICES[target].initial_version
            summary = f"rollback {target} to {previous}"
            self._record_change(
                minute, target, "deploy", summary, version=previous, author="incident-bot"
            )
        elif action == "restart":
            summary = f"rolling restart of {target}"
            self._planned_events.append(PlannedEvent(minute, target, "Restarted", summary))
        elif action == "rotate_certificate":
            summary = f"{target} serving certificate reissued"
            if target in self._not_after:
                self._not_after[target] = minute + 90 * _DAY
            self._record_change(minute, target, "certificate", summary, author="incident-bot")
        elif action == "fix_config":
            summary = f"{target} configuration reverted to the last known good revision"
            self._record_change(minute, target, "config", summary, author="incident-bot")
        elif action == "failover_upstream":
            summary = f"{target}: traffic failed over to the secondary provider"
            self._record_change(minute, target, "config", summary, author="incident-bot")
        elif action == "clear_disk":
            summary = f"{target}: old logs and WAL archives removed"
            self._record_change(minute, target, "other", summary, author="incident-bot")
        else:  # scale, expand_disk, reschedule
            detail = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
            summary = f"{action} {target}" + (f" ({detail})" if detail else "")
            self._record_change(minute, target, "infra", summary, author="incident-bot")
        return summary

    def health(self, service: str, *, over: timedelta = timedelta(minutes=10)) -> Health:
        """A verification read of ``service`` over the last ``over`` (memory and disk trends
        over at least the last 30 minutes)."""
        self._check_service(service)
        return assess_health(self, service, over)
