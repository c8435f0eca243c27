"""Collecting the signals for candidate root causes (a fault category at a service) from the
evidence: changes, new errors, known signatures, resources, trends, events, timing, origin, and
— for series read by the generic statistics — *shift*: a clear departure (error ratio, error
rate, latency) beginning right after a change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from durable_ir.rca.analysis import AnalysisRequest
from durable_ir.rca.analyzers.offline.patterns import (
    _EVENT_PATTERNS,
    _FAULT_PHRASES,
    _RESOURCES,
    SIGNATURES,
)
from durable_ir.rca.analyzers.offline.series import (
    _baseline,
    _onset,
    _recent_mean,
    _saturation,
    _span_minutes,
    _steady_rise,
)
from durable_ir.rca.analyzers.offline.situation import _Situation
from durable_ir.rca.analyzers.offline.telemetry import resource_fault
from durable_ir.rca.evidence import ChangeEvidence, MetricEvidence


@dataclass(frozen=True)
class _Signal:
    fault: str
    service: str
    category: str
    strength: float
    ids: tuple[str, ...]
    observed_at: datetime
    note: str


def _timing(lag: timedelta, full: float, zero: float, slack: timedelta) -> float:
    """1 for a lag up to ``full`` minutes, falling linearly to 0.3 at ``zero``, then 0; a
    change after the onset explains nothing (within the ``slack`` of the onset's timing)."""
    minutes = lag.total_seconds() / 60
    if lag < -slack or minutes > zero:
        return 0.0
    if minutes <= full:
        return 1.0
    return 1.0 - 0.7 * (minutes - full) / (zero - full)


def _clock(t: datetime) -> str:
    """``HH:MM``, with seconds when the time has them (fine-grained real telemetry)."""
    return f"{t:%H:%M:%S}" if t.second or t.microsecond else f"{t:%H:%M}"


class _Analysis(_Situation):
    """One analysis of one request (the working state of :class:`CorrelationAnalyzer`): the
    situation, and the signals collected from it."""

    def __init__(self, request: AnalysisRequest) -> None:
        super().__init__(request)
        self.signals: list[_Signal] = []

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
        for full in self.saturated:
            fault = resource_fault(full.metric)
            if fault is not None:
                self.add(
                    fault,
                    full.service,
                    "resource",
                    0.5 * min(1.0, max(0.0, (full.share - 0.85) / 0.1)),
                    full.ids,
                    full.at,
                    f"{full.metric} on {full.service} at {full.share:.0%} of its limit "
                    f"since {full.at:%H:%M:%S}",
                )
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
        self._shift(change, fault, lag, _timing(lag, full, zero, symptom.slack) * own, closer)
        self.add(
            fault,
            service,
            "change",
            strength,
            (change.id, *symptom.ids),
            change.at,
            f"{change.summary} at {_clock(change.at)}, symptoms from {_clock(symptom.onset)}"
            + (f" ({'; '.join(notes)})" if notes else ""),
        )
        self._novelty(change, fault)

    def _shift(
        self,
        change: ChangeEvidence,
        fault: str,
        lag: timedelta,
        timing: float,
        closer: list[ChangeEvidence],
    ) -> None:
        """The clearest generic departure of the changed service (error ratio, error rate,
        latency) — how plainly the symptom shows, beginning ``lag`` after the change."""
        symptom = self.symptoms[change.service]
        if not symptom.findings:
            return
        best = max(symptom.findings, key=lambda f: f.excess)
        strength = 0.4 * best.excess * timing * (0.5 if closer else 1.0)
        if strength <= 0:
            return
        after = max(0, round(lag.total_seconds()))
        self.add(
            fault,
            change.service,
            "shift",
            strength,
            (change.id, *best.ids),
            best.found.onset,
            f"{best.note}, {after} s after the {change.change}",
        )

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
