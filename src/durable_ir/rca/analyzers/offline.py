"""An offline analyzer that correlates evidence — no model, no network.

:class:`CorrelationAnalyzer` reads the symptoms off the metric series (when errors, latency or
CPU steal departed from their usual level), then collects *signals* for candidate root causes
(a fault category at a service):

- **change**: a deploy, configuration or infrastructure change on a service shortly before its
  symptoms began (a memory leak's rise starting with a deploy counts too);
- **novelty**: an error signature first seen right after such a change;
- **signature**: error lines matching known signatures ("No space left on device",
  "certificate has expired", "OutOfMemoryError", "pool exhausted", "503 from upstream", …),
  weighted by their rate and attributed to the service they name, if any;
- **resource**: a resource at its limit (connection pool, disk, memory), CPU steal, an expired
  serving certificate; **trend**: memory or disk rising steadily, a traffic surge;
- **event**: OOM kills, disk-space failures, a provider's status-page incident;
- **timing**: CPU steal rising just before latency did;
- **origin**: the service where the chain of blame ends (callers' errors name it) and whose
  symptoms began first.

A candidate's confidence combines its signal categories as independent pieces of evidence
(``1 - Π(1 - strength)``, strongest signal per category), and is then lowered when a rival
candidate is nearly as strong, when the symptoms were already present at the start of the
window with no change to explain them (the cause may lie earlier), and when the same
hypothesis was already offered in an earlier attempt and nothing new supports it.

Example:
    >>> import asyncio
    >>> from datetime import UTC, datetime, timedelta
    >>> from durable_ir.rca import AnalysisRequest, ChangeEvidence, EvidenceWindow
    >>> from durable_ir.rca import LogEvidence, MetricEvidence
    >>> end = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    >>> window = EvidenceWindow.ending_at(end, timedelta(minutes=15))
    >>> minutes = [window.start + timedelta(minutes=i) for i in range(15)]
    >>> errors = [0.002] * 6 + [0.12] * 9
    >>> evidence = [
    ...     MetricEvidence(id="met-api-errors", service="api", at=window.start, summary="5xx",
    ...                    metric="error_ratio", points=list(zip(minutes, errors)),
    ...                    baseline=0.002, limit=1.0),
    ...     ChangeEvidence(id="chg-7", service="api", at=minutes[5], summary="deploy v8",
    ...                    change="deploy", version="v8"),
    ...     LogEvidence(id="log-npe", service="api", at=minutes[6], summary="NPE x 900",
    ...                 signature="NullPointerException at Cart.total", count=900,
    ...                 first_seen=minutes[6]),
    ... ]
    >>> request = AnalysisRequest(alert={"service": "api"}, attempt=1, window=window,
    ...                           evidence=evidence)
    >>> h = asyncio.run(CorrelationAnalyzer().analyze(request))
    >>> h.fault, h.service, h.confidence >= 0.7, sorted(h.cited_evidence)
    ('bad_deploy', 'api', True, ['chg-7', 'log-npe', 'met-api-errors'])
    >>> h.remediation[0].action
    'rollback'
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from durable_ir.rca.analysis import AnalysisRequest, Hypothesis, SuggestedAction
from durable_ir.rca.evidence import ChangeEvidence, EventEvidence, LogEvidence, MetricEvidence

__all__ = ["SIGNATURES", "CorrelationAnalyzer"]

_Evidence = LogEvidence | MetricEvidence | ChangeEvidence | EventEvidence


@dataclass(frozen=True)
class _Pattern:
    fault: str
    regex: re.Pattern[str]
    weight: float


def _pattern(fault: str, regex: str, weight: float) -> _Pattern:
    return _Pattern(fault, re.compile(regex, re.IGNORECASE), weight)


SIGNATURES: tuple[_Pattern, ...] = (
    _pattern("disk_full", r"no space left on device|disk (is )?full|could not extend file", 0.6),
    _pattern(
        "expired_certificate",
        r"x509|certificate (has )?expired|certificate verify failed|tls: bad certificate",
        0.55,
    ),
    _pattern(
        "memory_leak",
        r"out ?of ?memory|outofmemoryerror|heap out of memory|heap space|oomkill",
        0.5,
    ),
    _pattern(
        "connection_pool_exhaustion",
        r"pool.{0,40}(exhausted|limit|not available|timed out)|connection is not available|"
        r"too many (clients|connections)|remaining connection slots|waiting for a free "
        r"connection",
        0.55,
    ),
    _pattern(
        "config_error",
        r"invalid (value|syntax|config)|unknown (key|option|field|setting|ruleset)|"
        r"is not a (valid )?duration|config(uration)? (error|invalid)|misconfigur",
        0.45,
    ),
    _pattern(
        "bad_deploy",
        r"nullpointer|typeerror|attributeerror|keyerror|nil pointer|panic:|sigsegv|"
        r"classcastexception|indexerror|cannot read propert",
        0.35,
    ),
    _pattern("upstream_outage", r"circuit breaker.{0,60}open", 0.4),
    _pattern("upstream_outage", r"upstream.{0,60}\b50[234]\b|\b50[234]\b.{0,60}upstream", 0.45),
    _pattern(
        "upstream_outage",
        r"\b50[234]\b|service unavailable|bad gateway|gateway timeout",
        0.3,
    ),
    _pattern("memory_leak", r"gc overhead|full (gc|collection) pause", 0.25),
    _pattern("noisy_neighbour", r"cpu steal|noisy neighbou?r", 0.4),
)
"""Known error signatures: the fault each suggests and how specific it is."""

_EVENT_PATTERNS: tuple[_Pattern, ...] = (
    _pattern("memory_leak", r"oom", 0.45),
    _pattern("disk_full", r"disk ?space|disk ?pressure|volume .* full", 0.3),
    _pattern("upstream_outage", r"status ?page|provider incident", 0.45),
)

_RESOURCES = {
    "db_pool_in_use": "connection_pool_exhaustion",
    "disk_used_gb": "disk_full",
    "memory_used_mb": "memory_leak",
}

_FAULT_PHRASES = {
    "bad_deploy": "a bad deploy",
    "memory_leak": "a memory leak",
    "connection_pool_exhaustion": "database connection pool exhaustion",
    "disk_full": "a full disk",
    "expired_certificate": "an expired TLS certificate",
    "upstream_outage": "an outage of an upstream dependency",
    "noisy_neighbour": "CPU contention from a noisy neighbour",
    "config_error": "a bad configuration change",
}


@dataclass(frozen=True)
class _Signal:
    fault: str
    service: str
    category: str
    strength: float
    ids: tuple[str, ...]
    observed_at: datetime
    note: str


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


@dataclass
class _Candidate:
    fault: str
    service: str
    signals: list[_Signal] = field(default_factory=list)
    confidence: float = 0.0
    notes: list[str] = field(default_factory=list)

    def best(self) -> dict[str, _Signal]:
        found: dict[str, _Signal] = {}
        for s in self.signals:
            if s.category not in found or s.strength > found[s.category].strength:
                found[s.category] = s
        return found

    def raw(self) -> float:
        miss = 1.0
        for s in self.best().values():
            miss *= 1 - s.strength
        return 1 - miss

    def specific(self) -> bool:
        return any(s.category != "origin" and s.strength > 0.05 for s in self.signals)


# -- reading metric series ------------------------------------------------------------------


def _baseline(metric: MetricEvidence) -> float:
    if metric.baseline is not None:
        return metric.baseline
    head = [v for _, v in metric.points[: max(1, len(metric.points) // 4)]]
    return statistics.median(head)


def _threshold(metric: str, usual: float) -> float | None:
    if metric == "error_ratio":
        return max(4 * usual, usual + 0.01)
    if metric == "latency_p99_ms":
        return 1.8 * usual
    if metric == "cpu_steal_pct":
        return max(8.0, 4 * usual)
    return None


def _current_run(
    values: Sequence[float], above: Callable[[float], bool], strong: Callable[[float], bool]
) -> tuple[int, int] | None:
    """The run of points beyond a threshold that lasts until (nearly) the end of the series,
    tolerating one-point gaps: at least three points, or fewer if all are far beyond it (a
    coarse series may hold only a point or two of a fresh incident)."""
    n = len(values)
    end = n - 1
    while end >= 0 and not above(values[end]):
        end -= 1
    if end < n - 2 or end < 0:
        return None
    start = end
    i = end - 1
    while i >= 0:
        if above(values[i]):
            start = i
        elif i == 0 or not above(values[i - 1]):
            break
        i -= 1
    if end - start + 1 >= min(3, n):
        return start, end
    if end == n - 1 and all(strong(v) for v in values[start : end + 1]):
        return start, end
    return None


def _onset(metric: MetricEvidence) -> tuple[datetime, bool] | None:
    """When the current departure of ``metric`` began, and whether it was there from the
    start of the series (so it may have begun earlier)."""
    usual = _baseline(metric)
    threshold = _threshold(metric.metric, usual)
    values = [v for _, v in metric.points]
    if threshold is None or not values:
        return None
    strong = usual + 2 * (threshold - usual)
    run = _current_run(values, lambda v: v > threshold, lambda v: v > strong)
    if run is None:
        return None
    start = run[0]
    low = usual + 0.35 * (threshold - usual)
    while start > 0 and values[start - 1] > low:
        start -= 1
    return metric.points[start][0], start == 0


def _step(metric: MetricEvidence) -> timedelta:
    """The spacing of the series' points."""
    if len(metric.points) < 2:
        return timedelta(minutes=1)
    return metric.points[1][0] - metric.points[0][0]


def _recent_mean(metric: MetricEvidence, minutes: int = 5) -> float:
    """The mean of the series over its last ``minutes`` (at least its last three points)."""
    if not metric.points:
        return 0.0
    since = metric.points[-1][0] - timedelta(minutes=minutes)
    recent = [v for t, v in metric.points if t > since]
    if len(recent) < 3:
        recent = [v for _, v in metric.points[-3:]]
    return sum(recent) / len(recent)


def _span_minutes(metric: MetricEvidence) -> float:
    if len(metric.points) < 2:
        return 0.0
    return (metric.points[-1][0] - metric.points[0][0]).total_seconds() / 60


def _steady_rise(metric: MetricEvidence) -> tuple[float, datetime] | None:
    """(rise as a share of the limit, when it began) if the series climbs steadily."""
    values = [v for _, v in metric.points]
    if len(values) < 12 or not metric.limit:
        return None
    size = len(values) // 6
    segments = [sum(values[i * size : (i + 1) * size]) / size for i in range(6)]
    ups = sum(1 for a, b in pairwise(segments) if b > a)
    rise = (max(segments[3:]) - segments[0]) / metric.limit
    if ups < 4 or rise < 0.08:
        return None
    usual = _baseline(metric)
    begin = next(
        (t for t, v in metric.points if v > usual + 0.05 * (metric.limit - usual)),
        metric.points[0][0],
    )
    return rise, begin


def _saturation(metric: MetricEvidence) -> tuple[float, datetime] | None:
    """(level as a share of the limit, when it got there) for a resource near its limit."""
    if not metric.limit or not metric.points:
        return None
    level = _recent_mean(metric) / metric.limit
    if level < 0.88:
        return None
    near = 0.85 * metric.limit
    run = _current_run([v for _, v in metric.points], lambda v: v >= near, lambda v: v >= near)
    at = metric.points[run[0]][0] if run else metric.points[-1][0]
    return level, at


# -- the analysis ---------------------------------------------------------------------------


def _rate_strength(log: LogEvidence, end: datetime, since: datetime | None = None) -> float:
    """How loud a log signature is: its rate per minute since it first appeared (or since
    ``since``, when its service's trouble began later), on a log scale saturating at 30."""
    first = log.first_seen or log.at
    if since is not None and since > first:
        first = since
    minutes = max(1.0, (end - first).total_seconds() / 60)
    rate = log.count / minutes
    return min(1.0, math.log1p(rate) / math.log1p(30.0))


def _timing(lag: timedelta, full: float, zero: float, slack: timedelta) -> float:
    """1 for a lag up to ``full`` minutes, falling linearly to 0.3 at ``zero``, then 0; a
    change after the onset explains nothing (within the ``slack`` of the onset's timing)."""
    minutes = lag.total_seconds() / 60
    if lag < -slack or minutes > zero:
        return 0.0
    if minutes <= full:
        return 1.0
    return 1.0 - 0.7 * (minutes - full) / (zero - full)


class _Analysis:
    """One analysis of one request (the working state of :class:`CorrelationAnalyzer`)."""

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
        self.signals: list[_Signal] = []

    # symptoms and blame

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

    # signal collection

    def add(
        self,
        fault: str,
        service: str,
        category: str,
        strength: float,
        ids: tuple[str, ...],
        observed_at: datetime,
        note: str,
    ) -> None:
        """Record a signal for ``fault`` at ``service``."""
        self.signals.append(_Signal(fault, service, category, strength, ids, observed_at, note))

    def collect(self) -> None:
        self._signatures()
        self._resources()
        self._changes()
        self._events()
        self._origin()

    def _signatures(self) -> None:
        for log in self._errors():
            for pattern in SIGNATURES:
                if pattern.regex.search(log.signature):
                    strength = pattern.weight * self.loudness(log)
                    if log.level == "warning":
                        strength *= 0.7
                    target = self._named(log) or log.service
                    service = self.root(target)
                    if pattern.fault == "upstream_outage" and not self.external(service):
                        strength *= 0.5
                    self.add(
                        pattern.fault,
                        service,
                        "signature",
                        strength,
                        (log.id,),
                        log.first_seen or log.at,
                        f"{log.count} x {log.signature!r} on {log.service}",
                    )
                    break

    def _resources(self) -> None:
        for (service, name), metric in self.metrics.items():
            if name in _RESOURCES:
                saturated = _saturation(metric)
                if saturated is not None:
                    level, at = saturated
                    strength = 0.5 * min(1.0, max(0.0, (level - 0.85) / 0.1))
                    self.add(
                        _RESOURCES[name],
                        service,
                        "resource",
                        strength,
                        (metric.id,),
                        at,
                        f"{name} on {service} at {level:.0%} of its limit",
                    )
            if name in ("memory_used_mb", "disk_used_gb"):
                rising = _steady_rise(metric)
                if rising is not None:
                    _, began = rising
                    coverage = min(1.0, _span_minutes(metric) / 120)
                    weight = 0.45 if name == "memory_used_mb" else 0.3
                    self.add(
                        _RESOURCES[name],
                        service,
                        "trend",
                        weight * coverage,
                        (metric.id,),
                        began,
                        f"{name} on {service} rising steadily since {began:%H:%M}",
                    )
            if name == "cpu_steal_pct":
                excess = _recent_mean(metric) - max(2.0, _baseline(metric))
                strength = 0.55 * min(1.0, max(0.0, (excess - 5) / 20))
                if strength > 0:
                    found = _onset(metric)
                    at = found[0] if found else metric.points[0][0]
                    self.add(
                        "noisy_neighbour",
                        service,
                        "resource",
                        strength,
                        (metric.id,),
                        at,
                        f"CPU steal on {service} at {excess + max(2.0, _baseline(metric)):.0f}%",
                    )
                    self._steal_timing(service, metric, found)
            if name == "request_rate" and (service, "db_pool_in_use") in self.metrics:
                surge = _recent_mean(metric) / max(_baseline(metric), 1e-9)
                if surge >= 1.6:
                    self.add(
                        "connection_pool_exhaustion",
                        service,
                        "trend",
                        0.25 * min(1.0, (surge - 1.4) / 0.6),
                        (metric.id,),
                        metric.points[-1][0],
                        f"traffic to {service} at {surge:.1f}x its usual rate",
                    )
            if name == "tls_cert_days_remaining" and metric.points:
                expired = next((t for t, v in metric.points if v <= 0), None)
                if expired is not None:
                    self.add(
                        "expired_certificate",
                        service,
                        "resource",
                        0.6,
                        (metric.id,),
                        expired,
                        f"the serving certificate of {service} expired at {expired:%H:%M}",
                    )

    def _steal_timing(
        self, service: str, steal: MetricEvidence, found: tuple[datetime, bool] | None
    ) -> None:
        latency = self.metrics.get((service, "latency_p99_ms"))
        if found is None or found[1] or latency is None:
            return
        slow = _onset(latency)
        if slow is None or slow[1]:
            return
        lag = slow[0] - found[0]
        if timedelta(minutes=-2) <= lag <= timedelta(minutes=15):
            self.add(
                "noisy_neighbour",
                service,
                "timing",
                0.4,
                (steal.id, latency.id),
                found[0],
                f"CPU steal on {service} rose from {found[0]:%H:%M}, latency followed",
            )

    def _changes(self) -> None:
        for change in self.changes:
            if change.change == "deploy":
                self._leak_start(change)
            self._change(change)

    def _change(self, change: ChangeEvidence) -> None:
        """A change shortly before its service's symptoms began. Discounted when a later
        change is closer to the onset, when its service's errors mostly name a dependency, and
        when a resource of the service was already running out before the change."""
        service = change.service
        symptom = self.symptoms.get(service)
        if symptom is None or symptom.onset is None:
            return
        lag = symptom.onset - change.at
        if symptom.from_start and lag > timedelta(0):
            return  # the trouble may have begun before the window: no telling
        fault, full, zero = {
            "deploy": ("bad_deploy", 10.0, 45.0),
            "config": ("config_error", 15.0, 60.0),
            "infra": ("noisy_neighbour", 10.0, 30.0),
        }.get(change.change, ("", 0.0, 0.0))
        if not fault:
            return
        if fault == "noisy_neighbour":
            steal = self.metrics.get((service, "cpu_steal_pct"))
            if steal is None or _recent_mean(steal) < 8:
                return
        own = 1.0 - self.blamed_share.get(service, 0.0)
        strength = 0.6 * _timing(lag, full, zero, symptom.slack) * own
        notes = []
        closer = [
            c for c in self.changes if c.service == service and change.at < c.at <= symptom.onset
        ]
        if closer:
            strength *= 0.5
            notes.append(f"{len(closer)} later change(s) came closer to the onset")
        brewing = [
            s
            for s in self.signals
            if s.service == service
            and s.category in ("resource", "trend")
            and s.strength > 0.1
            and s.observed_at < change.at - timedelta(minutes=2)
        ]
        if brewing and fault != "noisy_neighbour":
            strength *= 0.5
            notes.append(f"but {brewing[0].note} already before it")
        if strength <= 0:
            return
        self.add(
            fault,
            service,
            "change",
            strength,
            (change.id, *symptom.ids),
            change.at,
            f"{change.summary} at {change.at:%H:%M}, symptoms from {symptom.onset:%H:%M}"
            + (f" ({'; '.join(notes)})" if notes else ""),
        )
        self._novelty(change, fault)

    def _novelty(self, change: ChangeEvidence, fault: str) -> None:
        """Error signatures on the changed service first seen just after the change (unless
        they point to a different kind of fault)."""
        margin = timedelta(minutes=1)
        for log in self._errors():
            first = log.first_seen or log.at
            if log.service != change.service or first <= self.start + margin:
                continue
            if not change.at - margin <= first <= change.at + timedelta(minutes=10):
                continue
            kinds = {p.fault for p in SIGNATURES if p.regex.search(log.signature)}
            if kinds - {fault}:
                continue
            self.add(
                fault,
                change.service,
                "novelty",
                0.35 * self.loudness(log),
                (log.id, change.id),
                first,
                f"new error {log.signature!r} from {first:%H:%M}",
            )

    def _leak_start(self, change: ChangeEvidence) -> None:
        memory = self.metrics.get((change.service, "memory_used_mb"))
        rising = _steady_rise(memory) if memory is not None else None
        if memory is None or rising is None:
            return
        lag = rising[1] - change.at
        if timedelta(minutes=-10) <= lag <= timedelta(minutes=90):
            self.add(
                "memory_leak",
                change.service,
                "change",
                0.45,
                (change.id, memory.id),
                change.at,
                f"memory began rising after {change.summary} at {change.at:%H:%M}",
            )

    def _events(self) -> None:
        for event in self.events:
            text = f"{event.reason} {event.summary}"
            for pattern in _EVENT_PATTERNS:
                if pattern.regex.search(text):
                    strength = pattern.weight * min(1.0, 0.5 + event.count / 6)
                    self.add(
                        pattern.fault,
                        event.service,
                        "event",
                        strength,
                        (event.id,),
                        event.at,
                        f"{event.count} x {event.reason} on {event.service}",
                    )
                    break

    def _origin(self) -> None:
        """The end of the blame chain from the alert's service, if it shows symptoms; more so
        if its symptoms began first, or if it is an outside dependency failing badly."""
        alerted = str(self.request.alert.get("service") or "")
        origin = self.root(alerted) if alerted in self.symptoms else None
        anomalous = [s for s in self.symptoms.values() if s.anomalous]
        strength = 0.15
        if origin is None or not self.symptoms[origin].anomalous:
            if not anomalous:
                return
            origin = min(anomalous, key=lambda s: s.onset or self.end).service
            strength = 0.1  # the alerted service shows nothing: the earliest trouble, then
        elif origin != alerted:  # the alerted service's errors lead here
            strength += 0.15
        symptom = self.symptoms[origin]
        earliest = min(s.onset for s in anomalous if s.onset is not None)
        if len(anomalous) > 1 and symptom.onset == earliest:  # and it failed first
            strength += 0.1
        if self.external(origin):
            strength = 0.3 + 0.3 * min(1.0, symptom.error_excess / 0.5)
        for fault in _FAULT_PHRASES:
            self.add(
                fault,
                origin,
                "origin",
                strength,
                tuple(symptom.ids),
                symptom.onset or self.end,
                f"{origin} is where the failures lead",
            )

    # scoring

    def candidates(self) -> list[_Candidate]:
        grouped: dict[tuple[str, str], _Candidate] = {}
        for signal in self.signals:
            key = (signal.fault, signal.service)
            grouped.setdefault(key, _Candidate(*key)).signals.append(signal)
        found = []
        for candidate in grouped.values():
            if not candidate.specific() or not self._plausible(candidate):
                continue
            candidate.confidence = candidate.raw()
            found.append(candidate)
        return sorted(found, key=lambda c: c.confidence, reverse=True)

    def _plausible(self, candidate: _Candidate) -> bool:
        """Something is wrong at the candidate's service or downstream of it in the blame
        chain, or one of its resources is exhausted."""
        if any(s.category == "resource" and s.strength > 0.1 for s in candidate.signals):
            return True
        return any(
            symptom.anomalous and self.root(name) == candidate.service
            for name, symptom in self.symptoms.items()
        )

    def alert_visible(self) -> bool:
        """Whether the alerted service (or, if it is not in the evidence, anything) shows the
        trouble the alert is about."""
        alerted = self.symptoms.get(str(self.request.alert.get("service") or ""))
        if alerted is None:
            return any(s.anomalous for s in self.symptoms.values())
        return alerted.anomalous

    def early_onset(self, candidate: _Candidate) -> bool:
        """The symptoms were there when the window began and no change explains them."""
        categories = candidate.best()
        if "change" in categories or "timing" in categories:
            return False
        symptom = self.symptoms.get(candidate.service)
        alerted = self.symptoms.get(str(self.request.alert.get("service") or ""))
        return any(s is not None and s.anomalous and s.from_start for s in (symptom, alerted))


def _remediation(candidate: _Candidate, analysis: _Analysis) -> list[SuggestedAction]:
    service = candidate.service
    changes = [
        c
        for s in candidate.signals
        if s.category == "change"
        for c in analysis.changes
        if c.id in s.ids
    ]
    if candidate.fault == "bad_deploy":
        params = {"from_version": changes[0].version} if changes and changes[0].version else {}
        return [SuggestedAction(action="rollback", target=service, parameters=params)]
    if candidate.fault == "memory_leak":
        # A restart buys time; the leak goes only with the code that brought it.
        version = changes[0].version if changes else None
        rollback = SuggestedAction(
            action="rollback",
            target=service,
            parameters={"from_version": version} if version else {},
        )
        restart = SuggestedAction(action="restart", target=service)
        return [rollback, restart] if changes else [restart, rollback]
    if candidate.fault == "config_error":
        params = {"revert_change": changes[0].id} if changes else {}
        return [SuggestedAction(action="fix_config", target=service, parameters=params)]
    simple: dict[str, list[tuple[str, dict[str, Any]]]] = {
        "connection_pool_exhaustion": [("scale", {"factor": 2})],
        "disk_full": [("clear_disk", {}), ("expand_disk", {"factor": 2})],
        "expired_certificate": [("rotate_certificate", {})],
        "upstream_outage": [("failover_upstream", {})],
        "noisy_neighbour": [("reschedule", {})],
    }
    return [
        SuggestedAction(action=action, target=service, parameters=params)
        for action, params in simple.get(candidate.fault, [])
    ]


class CorrelationAnalyzer:
    """Finds the root cause by correlating the evidence (see the module documentation).

    ``conflict_penalty`` scales how much a rival candidate of similar strength lowers the
    confidence; ``early_onset_factor`` multiplies the confidence when the symptoms predate the
    window with no change to explain them, and again when the alerted service shows no
    symptom at all; ``repeat_factor`` multiplies it for a hypothesis an
    earlier attempt already offered when nothing new supports it.
    """

    def __init__(
        self,
        *,
        conflict_penalty: float = 0.4,
        early_onset_factor: float = 0.8,
        repeat_factor: float = 0.9,
    ) -> None:
        self.conflict_penalty = conflict_penalty
        self.early_onset_factor = early_onset_factor
        self.repeat_factor = repeat_factor

    async def analyze(self, request: AnalysisRequest) -> Hypothesis:
        """A hypothesis citing only ids from ``request.evidence``."""
        return self.hypothesis(request)

    def hypothesis(self, request: AnalysisRequest) -> Hypothesis:
        """The same as :meth:`analyze`, synchronously."""
        analysis = _Analysis(request)
        analysis.collect()
        candidates = analysis.candidates()
        if not candidates:
            return _nothing_found(analysis)
        for candidate in candidates:
            self._adjust(candidate, candidates, analysis, request)
        best = max(candidates, key=lambda c: c.confidence)
        return _hypothesis(best, analysis)

    def _adjust(
        self,
        candidate: _Candidate,
        candidates: list[_Candidate],
        analysis: _Analysis,
        request: AnalysisRequest,
    ) -> None:
        raw = candidate.raw()
        confidence = raw
        rivals = [c.raw() for c in candidates if c is not candidate]
        rival = max(rivals, default=0.0)
        if rival > 0:
            confidence *= 1 - self.conflict_penalty * min(1.0, rival / raw) ** 2
            if rival >= 0.5 * raw:
                candidate.notes.append(f"a rival explanation scores {rival:.2f}")
        if analysis.early_onset(candidate):
            confidence *= self.early_onset_factor
            candidate.notes.append("the symptoms predate this window")
        if not analysis.alert_visible():
            confidence *= self.early_onset_factor
            candidate.notes.append("the alerted service shows no symptom in this window")
        earlier = [
            p
            for p in request.previous
            if p.hypothesis is not None
            and (p.hypothesis.fault, p.hypothesis.service) == (candidate.fault, candidate.service)
        ]
        if earlier:
            seen_from = min(p.window.start for p in request.previous)
            new = [s for s in candidate.signals if s.observed_at < seen_from and s.strength > 0.05]
            if not new:
                before = max(p.hypothesis.confidence for p in earlier if p.hypothesis)
                confidence = min(confidence, before) * self.repeat_factor
                candidate.notes.append("already proposed, and the wider window adds nothing")
            else:
                kinds = sorted({s.category for s in new})
                candidate.notes.append(f"the wider window adds {', '.join(kinds)} evidence")
        candidate.confidence = max(0.0, min(1.0, confidence))


def _hypothesis(candidate: _Candidate, analysis: _Analysis) -> Hypothesis:
    signals = sorted(candidate.best().values(), key=lambda s: s.strength, reverse=True)
    cited: list[str] = []
    for signal in sorted(candidate.signals, key=lambda s: s.strength, reverse=True):
        if signal.strength > 0.02:
            cited.extend(i for i in signal.ids if i not in cited)
    known = analysis.request.evidence_ids()
    cited = [i for i in cited if i in known][:50]
    reasons = "; ".join(s.note for s in signals if s.category != "origin")
    root_cause = f"{_FAULT_PHRASES[candidate.fault]} in {candidate.service}: {reasons}"
    if candidate.notes:
        root_cause += f" ({'; '.join(candidate.notes)})"
    return Hypothesis(
        root_cause=root_cause[:2000],
        fault=candidate.fault,
        service=candidate.service,
        confidence=round(candidate.confidence, 3),
        cited_evidence=cited,
        remediation=_remediation(candidate, analysis),
    )


def _nothing_found(analysis: _Analysis) -> Hypothesis:
    alerted = str(analysis.request.alert.get("service") or "") or None
    symptom = analysis.symptoms.get(alerted or "")
    if symptom is not None and symptom.anomalous:
        return Hypothesis(
            root_cause=f"{alerted} is failing, but no change, known error signature or "
            "exhausted resource explains it",
            fault="unknown",
            service=alerted,
            confidence=0.15,
            cited_evidence=symptom.ids,
        )
    return Hypothesis(
        root_cause="nothing in the evidence departs from its usual level",
        fault="unknown",
        service=alerted,
        confidence=0.05,
        cited_evidence=[],
    )
