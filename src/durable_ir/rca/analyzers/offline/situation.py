"""What the evidence says is going on: each service's symptoms (when its errors or latency
departed from their usual level) and which service each service's errors blame."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from durable_ir.rca.analysis import AnalysisRequest
from durable_ir.rca.analyzers.offline.series import _baseline, _onset, _recent_mean, _step
from durable_ir.rca.evidence import ChangeEvidence, EventEvidence, LogEvidence, MetricEvidence


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
        for item in request.evidence:
            if isinstance(item, MetricEvidence):
                self.metrics[(item.service, item.metric)] = item
            elif isinstance(item, LogEvidence):
                self.logs.append(item)
            elif isinstance(item, ChangeEvidence):
                self.changes.append(item)
            else:
                self.events.append(item)
        self.services = sorted({e.service for e in request.evidence})
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
        if onsets:
            symptom.onset = min(t for t, _ in onsets)
            symptom.from_start = any(flag for _, flag in onsets)
            symptom.slack = max(_step(m) for m in self._series(service)) - timedelta(minutes=1)
            self._first_errors(symptom)
        return symptom

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
        own = (service, "cpu_usage_pct") in self.metrics
        return not own and not any(log.service == service for log in self.logs)

    def alert_visible(self) -> bool:
        """Whether the alerted service (or, if it is not in the evidence, anything) shows the
        trouble the alert is about."""
        alerted = self.symptoms.get(str(self.request.alert.get("service") or ""))
        if alerted is None:
            return any(s.anomalous for s in self.symptoms.values())
        return alerted.anomalous
