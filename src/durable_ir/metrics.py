"""Prometheus metrics: what an SRE alerts on — approvals about to breach their deadline,
decisions, expiries, takeovers, run failures, alert intake, the outbox, integration errors.

Recorded with ``prometheus-client`` (the ``service`` and ``observability`` extras) in its
default registry, so ``durable-ir serve`` exposes them on ``GET /metrics`` and any process can
with :func:`start_metrics_server`; without ``prometheus-client`` every recording is a no-op.
Counters count events in this process (Prometheus sums replicas); the pending-approval gauges
are the database's view, refreshed by every SLA sweep (``SlaMonitor``), so they are the same on
every replica that runs a monitor — aggregate them with ``max``, not ``sum``.

Example:
    >>> from durable_ir.metrics import METRICS
    >>> METRICS.alert("received")
    >>> METRICS.enabled in (True, False)
    True
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from types import ModuleType
from typing import Any

from durable_ir.records import ApprovalRecord, PendingGroup

__all__ = ["METRICS", "Metrics", "decider_type", "start_metrics_server"]

log = logging.getLogger("durable_ir.metrics")

_prom: ModuleType | None
try:
    import prometheus_client

    _prom = prometheus_client
except ImportError:  # pragma: no cover - the extras bring it; the core works without
    _prom = None

DECIDE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
WAIT_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0)


def decider_type(decided_by: str | None) -> str:
    """``human`` for a person, else the system identity (``system:sla``, …): a label with a
    small, fixed set of values (a person's name never becomes a label).

    Example:
        >>> decider_type("alice"), decider_type("system:sla")
        ('human', 'system:sla')
    """
    if decided_by and decided_by.startswith("system:"):
        return decided_by[:40]
    return "human"


class _Noop:
    def labels(self, *args: Any, **kwargs: Any) -> _Noop:
        return self

    def inc(self, amount: float = 1) -> None:
        return None

    def set(self, value: float) -> None:
        return None

    def observe(self, value: float) -> None:
        return None

    def clear(self) -> None:
        return None


class Metrics:
    """The collectors, and one method per event (so that call sites stay one line)."""

    def __init__(self) -> None:
        self.enabled = _prom is not None
        if _prom is None:
            noop: Any = _Noop()
            for name in _NAMES:
                setattr(self, name, noop)
            return
        counter, gauge, histogram = _prom.Counter, _prom.Gauge, _prom.Histogram
        self.decisions = counter(
            "durable_ir_decisions",
            "Decisions recorded, by kind and decider type (human, system:sla, …).",
            ["kind", "decider_type"],
        )
        self.conflicts = counter(
            "durable_ir_decision_conflicts", "Decisions refused because another won first."
        )
        self.expiries = counter("durable_ir_expiries", "Approvals expired past their deadline.")
        self.reminders = counter("durable_ir_reminders", "Approval reminders sent.")
        self.takeovers = counter(
            "durable_ir_runs_taken_over", "Runs taken over after their worker was gone."
        )
        self.crash_loops = counter(
            "durable_ir_crash_loop_escalations", "Runs stopped after too many takeovers."
        )
        self.run_failures = counter("durable_ir_run_failures", "Graph runs that raised.")
        self.alerts = counter(
            "durable_ir_alerts",
            "Alerts by what intake did: received, opened, deduplicated, refused, resolved.",
            ["outcome"],
        )
        self.notifications = counter(
            "durable_ir_notifications",
            "Outbox notifications by channel and result: sent, repeated, failed, retried.",
            ["channel", "result"],
        )
        self.integration_errors = counter(
            "durable_ir_integration_errors",
            "Errors from integrations (pagerduty, slack, analyzer, …).",
            ["integration"],
        )
        self.pending = gauge(
            "durable_ir_pending_approvals",
            "Approvals waiting for a decision, by severity and graph version (the database's "
            "view at the last SLA sweep).",
            ["severity", "graph_version"],
        )
        self.nearest_deadline = gauge(
            "durable_ir_nearest_deadline_timestamp_seconds",
            "Unix time of the nearest pending approval deadline, by severity (compare with "
            "time(): it stays right between sweeps, and a stalled monitor cannot freeze it).",
            ["severity"],
        )
        self.last_sweep = gauge(
            "durable_ir_sla_last_sweep_timestamp_seconds",
            "Unix time of this process's last completed SLA sweep.",
        )
        self.decide_seconds = histogram(
            "durable_ir_decide_seconds",
            "Recording a decision and running the graph on (Runtime.decide(), and the "
            "service's record-then-apply).",
            buckets=DECIDE_BUCKETS,
        )
        self.wait_seconds = histogram(
            "durable_ir_approval_wait_seconds",
            "From the approval request to its decision, by decider type.",
            ["decider_type"],
            buckets=WAIT_BUCKETS,
        )
        # Series that exist from the start, so that rate() and absent() see zeros, not gaps.
        for kind in ("approved", "rejected", "expired"):
            for who in ("human", "system:sla", "system:auto-approve"):
                self.decisions.labels(kind=kind, decider_type=who)
        for outcome in ("received", "opened", "deduplicated", "refused", "resolved"):
            self.alerts.labels(outcome=outcome)

    # -- events ---------------------------------------------------------------------------

    def decision(self, record: ApprovalRecord) -> None:
        """``record``'s decision was recorded (approved, rejected or expired)."""
        who = decider_type(record.decided_by)
        self.decisions.labels(kind=record.status.value, decider_type=who).inc()
        if record.status.value == "expired":
            self.expiries.inc()
        if record.decided_at is not None:
            waited = (record.decided_at - record.requested_at).total_seconds()
            self.wait_seconds.labels(decider_type=who).observe(max(waited, 0.0))

    def conflict(self) -> None:
        """A decision lost to one recorded first."""
        self.conflicts.inc()

    def alert(self, outcome: str) -> None:
        """Intake: ``received``, ``opened``, ``deduplicated``, ``refused`` or ``resolved``."""
        self.alerts.labels(outcome=outcome).inc()

    def notification(self, channel: str, result: str) -> None:
        """The outbox: ``sent``, ``repeated`` (already sent), ``failed``, ``retried``."""
        self.notifications.labels(channel=channel[:40], result=result).inc()
        if result == "failed":
            self.integration_errors.labels(integration=channel[:40]).inc()

    def integration_error(self, integration: str) -> None:
        """An integration (``analyzer``, ``pagerduty``, ``slack``, …) failed."""
        self.integration_errors.labels(integration=integration[:40]).inc()

    def pending_approvals(self, groups: Iterable[PendingGroup], now: datetime) -> None:
        """Replace the pending-approval gauges with the database's current view."""
        self.pending.clear()
        self.nearest_deadline.clear()
        nearest: dict[str, datetime] = {}
        for group in groups:
            version = group.graph_version or "unversioned"
            self.pending.labels(severity=group.severity, graph_version=version).set(group.count)
            if group.nearest_deadline is not None:
                known = nearest.get(group.severity)
                if known is None or group.nearest_deadline < known:
                    nearest[group.severity] = group.nearest_deadline
        for severity, deadline in nearest.items():
            self.nearest_deadline.labels(severity=severity).set(deadline.timestamp())
        self.last_sweep.set(now.timestamp())


_NAMES = (
    "decisions",
    "conflicts",
    "expiries",
    "reminders",
    "takeovers",
    "crash_loops",
    "run_failures",
    "alerts",
    "notifications",
    "integration_errors",
    "pending",
    "nearest_deadline",
    "last_sweep",
    "decide_seconds",
    "wait_seconds",
)

METRICS = Metrics()
"""The process's metrics (prometheus-client's default registry)."""


def start_metrics_server(port: int, addr: str = "127.0.0.1") -> None:
    """Serve ``/metrics`` on ``addr:port`` from a thread: for a worker process that is not the
    service (an SLA monitor sidecar, a recovery worker).

    Raises:
        RuntimeError: prometheus-client is not installed (the ``observability`` extra).
    """
    if _prom is None:
        raise RuntimeError("metrics need prometheus-client: pip install 'durable-ir[service]'")
    _prom.start_http_server(port, addr=addr)
    log.info("metrics on http://%s:%d/metrics", addr, port)
