"""What the evidence says is going on: each service's symptoms (when its errors or latency
departed from their usual level) and which service each service's errors blame.

The test bed's own metric names (error_ratio, latency_p99_ms, …) are read with thresholds
tuned to their known baselines; every other series (what a real Prometheus returns) is read
with the generic statistics of :mod:`~durable_ir.rca.analyzers.offline.telemetry`: the error
ratio (errors over requests when both are there), latency, and resources against their
limits."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from durable_ir.rca.analysis import AnalysisRequest
from durable_ir.rca.analyzers.offline.series import _baseline, _onset, _recent_mean, _step
from durable_ir.rca.analyzers.offline.telemetry import (
    LEGACY_METRICS,
    Departure,
    Role,
    departure,
    error_ratio,
    limit_for,
    role_of,
    saturation,
)
from durable_ir.rca.evidence import ChangeEvidence, EventEvidence, LogEvidence, MetricEvidence


@dataclass(frozen=True)
class _Finding:
    """A generic series' departure: what it measures, the evidence it rests on, and a sentence."""

    role: Role
    ids: tuple[str, ...]
    found: Departure
    note: str
    excess: float
    """How far beyond its baseline, on a 0..1 scale of how clearly it matters."""


@dataclass(frozen=True)
class _Saturated:
    """A generic resource series at its limit."""

    service: str
    metric: str
    ids: tuple[str, ...]
    share: float
    at: datetime


@dataclass
class _Symptom:
    """How one service departed from its usual behaviour, if it did."""

    service: str
    onset: datetime | None = None
    from_start: bool = False
    error_excess: float = 0.0
    ids: list[str] = field(default_factory=list)
    slack: timedelta = timedelta(0)
    """How much earlier than ``onset`` the trouble may have begun (the series' resolution)."""
    findings: list[_Finding] = field(default_factory=list)
    """Departures found by the generic statistics (series without the test bed's names)."""

    @property
    def anomalous(self) -> bool:
        return self.onset is not None


def _rate_strength(log: LogEvidence, end: datetime, since: datetime | None = None) -> float:
    """How loud a log signature is: its rate per minute since it first appeared (or since
    ``since``, when its service's trouble began later), on a log scale saturating at 30."""
    first = log.first_seen or log.at
    if since is not None and since > first:
        first = since
    minutes = max(1.0, (end - first).total_seconds() / 60)
    rate = log.count / minutes
    return min(1.0, math.log1p(rate) / math.log1p(30.0))


class _Situation:
    """The evidence of one request sorted by kind, with each service's symptoms and the chain of
    blame between services."""

    def __init__(self, request: AnalysisRequest) -> None:
        self.request = request
        self.end = request.window.end
        self.start = request.window.start
        self.metrics: dict[tuple[str, str], MetricEvidence] = {}
        self.logs: list[LogEvidence] = []
        self.changes: list[ChangeEvidence] = []
        self.events: list[EventEvidence] = []
        self.metrics_by_id: dict[str, MetricEvidence] = {}
        for item in request.evidence:
            if isinstance(item, MetricEvidence):
                self.metrics_by_id[item.id] = item
                key = (item.service, item.metric)
                if key in self.metrics and item.metric not in LEGACY_METRICS:
                    key = (item.service, f"{item.metric}#{item.id}")  # several series per name
                self.metrics[key] = item
            elif isinstance(item, LogEvidence):
                self.logs.append(item)
            elif isinstance(item, ChangeEvidence):
                self.changes.append(item)
            else:
                self.events.append(item)
        self.services = sorted({e.service for e in request.evidence})
        self.saturated: list[_Saturated] = []
        self._names = {
            s: re.compile(rf"(?<![\w-]){re.escape(s)}(?![\w-])", re.IGNORECASE)
            for s in self.services
        }
        self.symptoms = {s: self._symptom(s) for s in self.services}
        self.blame, self.blamed_share = self._blame_graph()

    def _symptom(self, service: str) -> _Symptom:
        symptom = _Symptom(service)
        onsets = []
        for name in ("error_ratio", "latency_p99_ms"):
            metric = self.metrics.get((service, name))
            if metric is None:
                continue
            found = _onset(metric)
            if found is not None:
                onsets.append(found)
                symptom.ids.append(metric.id)
                if name == "error_ratio":
                    symptom.error_excess = max(0.0, _recent_mean(metric) - _baseline(metric))
        slack = timedelta(0)
        if onsets:
            slack = max(_step(m) for m in self._series(service)) - timedelta(minutes=1)
        for finding in self._generic(service):
            symptom.findings.append(finding)
            onsets.append((finding.found.onset, finding.found.from_start))
            symptom.ids.extend(i for i in finding.ids if i not in symptom.ids)
            if finding.role in ("error_ratio", "errors"):
                symptom.error_excess = max(symptom.error_excess, finding.excess)
            step = min(_step(self.metrics_by_id[i]) for i in finding.ids)
            slack = max(slack, 2 * step)
        if onsets:
            symptom.onset = min(t for t, _ in onsets)
            symptom.from_start = any(flag for _, flag in onsets)
            symptom.slack = slack
            self._first_errors(symptom)
        return symptom

    def _generic(self, service: str) -> list[_Finding]:
        """Departures of the service's series that the test bed's thresholds do not cover:
        the error ratio (or the error rate, without a request rate), latency, and resources
        against their limits (recorded in ``self.saturated``)."""
        roles: dict[Role, list[MetricEvidence]] = defaultdict(list)
        for (owner, _), metric in self.metrics.items():
            if owner == service and metric.metric not in LEGACY_METRICS and len(metric.points) > 1:
                roles[role_of(metric.metric, metric.unit)].append(metric)
        found: list[_Finding] = []
        errors, requests = roles.get("errors", []), roles.get("requests", [])
        if errors and requests:
            ratio = error_ratio(_summed(errors), _summed(requests))
            ids = tuple(m.id for m in errors + requests)
            self._finding(found, service, "error_ratio", ratio, ids, "error ratio")
        elif errors:
            ids = tuple(m.id for m in errors)
            others = [m.points[0][0] for ms in roles.values() for m in ms if m not in errors]
            summed = _zero_filled(_summed(errors), min(others, default=None))
            self._finding(found, service, "errors", summed, ids, errors[0].metric)
        for metric in roles.get("error_ratio", []):
            self._finding(found, service, "error_ratio", metric.points, (metric.id,), metric.metric)
        for metric in roles.get("latency", []):
            self._finding(found, service, "latency", metric.points, (metric.id,), metric.metric)
        limits = {m.metric: m.points for m in roles.get("limit", [])}
        for metric in roles.get("usage", []) + roles.get("other", []):
            limit = limit_for(metric.metric, metric.unit, metric.limit, limits)
            full = saturation(metric.points, limit) if limit else None
            if full is not None:
                ids = (metric.id, *(m.id for m in roles.get("limit", [])))
                self.saturated.append(_Saturated(service, metric.metric, ids, *full))
        return found

    def _finding(
        self,
        found: list[_Finding],
        service: str,
        role: Role,
        points: list[tuple[datetime, float]],
        ids: tuple[str, ...],
        what: str,
    ) -> None:
        departed = departure(points, role=role)
        if departed is None:
            return
        before, now = departed.baseline, departed.level
        if role == "error_ratio":
            excess = min(1.0, (now - before) / 0.05)
            shown = f"{before:.2%} to {now:.2%}"
        elif role == "latency" and before > 0:
            excess = min(1.0, now / before - 1)
            shown = f"{before:.4g} to {now:.4g} ({now / before:.1f}x)"
        else:
            excess = min(1.0, departed.score / 12)
            shown = f"{before:.4g} to {now:.4g}"
        note = (
            f"{what} of {service} rose from {shown} at {departed.onset:%H:%M:%S} "
            f"({departed.score:.0f} robust deviations beyond the median of the "
            f"{departed.index} points before)"
        )
        found.append(_Finding(role, ids, departed, note, excess))

    def _series(self, service: str) -> list[MetricEvidence]:
        found = [self.metrics.get((service, n)) for n in ("error_ratio", "latency_p99_ms")]
        return [m for m in found if m is not None]

    def _first_errors(self, symptom: _Symptom) -> None:
        """Logs time the start of trouble more finely than metrics: a loud error signature that
        appeared (new in this window) shortly before the metric onset moves the onset back."""
        assert symptom.onset is not None
        for log in self.logs:
            first = log.first_seen or log.at
            if log.service != symptom.service or log.level not in ("error", "critical"):
                continue
            new = first > self.start + timedelta(minutes=1)
            close = symptom.onset - timedelta(minutes=3) <= first < symptom.onset
            if new and close and _rate_strength(log, self.end, first) >= 0.3:
                symptom.onset, symptom.slack = first, timedelta(0)

    def loudness(self, log: LogEvidence) -> float:
        """The rate strength of ``log``, counted from its service's symptom onset if later."""
        symptom = self.symptoms.get(log.service)
        since = symptom.onset if symptom is not None and symptom.anomalous else None
        return _rate_strength(log, self.end, since)

    def _named(self, log: LogEvidence) -> str | None:
        for service, pattern in self._names.items():
            if service != log.service and pattern.search(log.signature):
                return service
        return None

    def _errors(self) -> Iterable[LogEvidence]:
        return (log for log in self.logs if log.level in ("warning", "error", "critical"))

    def _blame_graph(self) -> tuple[dict[str, str], dict[str, float]]:
        """Which service each service's errors mostly name (when they are loud and make up a
        good share of its errors), and the share of its error volume that names another."""
        named: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        loudest: dict[str, float] = defaultdict(float)
        total: dict[str, int] = defaultdict(int)
        for log in self.logs:
            if log.level not in ("error", "critical"):
                continue
            total[log.service] += log.count
            other = self._named(log)
            if other is not None:
                named[log.service][other] += log.count
                loudest[log.service] = max(loudest[log.service], self.loudness(log))
        blame, share = {}, {}
        for service, targets in named.items():
            share[service] = sum(targets.values()) / total[service]
            target = max(targets, key=lambda t: targets[t])
            loud = loudest[service] > 0.3 and share[service] >= 0.3
            if loud and self.symptoms.get(target, _Symptom(target)).anomalous:
                blame[service] = target
        return blame, share

    def root(self, service: str) -> str:
        """Where the chain of blame starting at ``service`` ends."""
        seen = {service}
        while service in self.blame and self.blame[service] not in seen:
            service = self.blame[service]
            seen.add(service)
        return service

    def external(self, service: str) -> bool:
        """Seen only from the outside: no resource metrics and no logs of its own."""
        own = (service, "cpu_usage_pct") in self.metrics or any(
            owner == service and name not in LEGACY_METRICS for owner, name in self.metrics
        )
        return not own and not any(log.service == service for log in self.logs)

    def alert_visible(self) -> bool:
        """Whether the alerted service (or, if it is not in the evidence, anything) shows the
        trouble the alert is about."""
        alerted = self.symptoms.get(str(self.request.alert.get("service") or ""))
        if alerted is None:
            return any(s.anomalous for s in self.symptoms.values())
        return alerted.anomalous


def _summed(metrics: list[MetricEvidence]) -> list[tuple[datetime, float]]:
    """The series added up at each timestamp (several pods' or codes' series of one role)."""
    if len(metrics) == 1:
        return list(metrics[0].points)
    total: dict[datetime, float] = defaultdict(float)
    for metric in metrics:
        for t, v in metric.points:
            total[t] += v
    return sorted(total.items())


def _zero_filled(
    points: list[tuple[datetime, float]], since: datetime | None
) -> list[tuple[datetime, float]]:
    """An error series that begins after ``since`` (when the service's other series began),
    preceded by zeros at its own step: an exporter creates a failure counter with the first
    failure, so before it there were none."""
    if since is None or len(points) < 2 or points[0][0] <= since:
        return points
    step = points[1][0] - points[0][0]
    if step <= timedelta(0):
        return points
    missing = int((points[0][0] - since) / step)
    first = points[0][0]
    return [(first - (missing - i) * step, 0.0) for i in range(missing)] + points
