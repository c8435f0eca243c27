"""What the approval ledger stores: one :class:`ApprovalRecord` per approval request.

Example:
    >>> from durable_ir.records import ApprovalStatus
    >>> ApprovalStatus("approved").is_final
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

__all__ = [
    "AlertEvent",
    "AlertEventKind",
    "ApprovalRecord",
    "ApprovalStatus",
    "FiringIntake",
    "IncidentRecord",
    "IncidentState",
    "NewApproval",
    "NewIncident",
    "NotificationRecord",
    "Ownership",
    "OwnershipTake",
    "PendingGroup",
    "RunLease",
    "StepClaim",
    "version_key",
]

VERSION_KEY_SEPARATOR = "\x1f"


def version_key(graph: str, version: str | None) -> str:
    """One string naming a graph version, as the ledger matches it in SQL
    (``graph || chr(31) || coalesce(graph_version, '')``); ``version`` ``None`` is an incident
    recorded before graph versions existed.

    Example:
        >>> version_key("incident", "v1").split(VERSION_KEY_SEPARATOR)
        ['incident', 'v1']
    """
    return f"{graph}{VERSION_KEY_SEPARATOR}{version or ''}"


class ApprovalStatus(StrEnum):
    """Where an approval stands. Only ``pending`` may change, and only once."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_final(self) -> bool:
        """True once a decision is recorded."""
        return self is not ApprovalStatus.PENDING


@dataclass(frozen=True)
class NewApproval:
    """An approval request as the approval node registers it."""

    approval_id: str
    incident_id: str
    graph: str
    node: str
    request: dict[str, Any]
    severity: str
    requested_at: datetime
    deadline_at: datetime
    next_due_at: datetime | None = None
    """When the SLA monitor next has work on it: the first reminder, else the deadline."""
    graph_version: str | None = None
    """The version of ``graph`` the incident paused on (see :mod:`durable_ir.graphs`)."""


@dataclass(frozen=True)
class ApprovalRecord:
    """One row of the approval ledger: the request and, once decided, the decision.

    ``applied_at`` is set once the decision has been handed to the graph; a decided record
    without it is a decision that recovery still has to apply.
    """

    approval_id: str
    incident_id: str
    graph: str
    node: str
    request: dict[str, Any]
    severity: str
    requested_at: datetime
    deadline_at: datetime
    status: ApprovalStatus
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None
    edited_plan: Any = None
    applied_at: datetime | None = None
    next_due_at: datetime | None = None
    reminders_sent: int = 0
    graph_version: str | None = None
    """The version of ``graph`` the incident paused on here, which applies the decision;
    ``None`` for an approval registered before graph versions were recorded."""

    @property
    def is_pending(self) -> bool:
        """True while no decision is recorded."""
        return self.status is ApprovalStatus.PENDING

    def describe(self) -> str:
        """One line for logs and error messages, e.g. ``approved by alice at …``."""
        if self.is_pending:
            return f"approval {self.approval_id} is pending until {self.deadline_at.isoformat()}"
        at = self.decided_at.isoformat() if self.decided_at else "?"
        edited = " with an edited plan" if self.edited_plan is not None else ""
        return f"{self.status.value}{edited} by {self.decided_by} at {at}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (timestamps as ISO 8601), for APIs and graph state."""
        return {
            "approval_id": self.approval_id,
            "incident_id": self.incident_id,
            "graph": self.graph,
            "node": self.node,
            "request": self.request,
            "severity": self.severity,
            "requested_at": self.requested_at.isoformat(),
            "deadline_at": self.deadline_at.isoformat(),
            "status": self.status.value,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "reason": self.reason,
            "edited_plan": self.edited_plan,
            "applied_at": self.applied_at.isoformat() if self.applied_at else None,
            "next_due_at": self.next_due_at.isoformat() if self.next_due_at else None,
            "reminders_sent": self.reminders_sent,
            "graph_version": self.graph_version,
        }


IncidentState = Literal["open", "closed"]


@dataclass(frozen=True)
class RunLease:
    """A claim on running an incident: ``owner`` (a runtime's worker id) runs it, and if
    ``expires_at`` passes without a heartbeat, any live runtime may take the run over.

    ``owner`` is ``None`` for a run nobody has picked up yet (an incident opened with
    ``ingest(run=False)``, or a run that failed and waits for its retry).
    """

    owner: str | None
    expires_at: datetime


@dataclass(frozen=True)
class NewIncident:
    """An incident as intake (or :meth:`durable_ir.Runtime.start`) opens it.

    ``fingerprint`` identifies "the same alert": while an incident with this fingerprint is
    open, another alert with it attaches to that incident instead of opening a second one.
    ``alert`` is the run's input, kept so that recovery can start an incident whose first run
    never began.
    """

    incident_id: str
    graph: str
    opened_at: datetime
    fingerprint: str | None = None
    title: str = ""
    service: str | None = None
    severity: str | None = None
    alert: dict[str, Any] | None = None
    lease: RunLease | None = None
    graph_version: str | None = None


@dataclass(frozen=True)
class IncidentRecord:
    """One row of the incident index: what the incident is, whether it is open, how it ended.

    The index is what lists incidents without walking checkpoints; the graph state stays the
    checkpointer's, the decisions the approval ledger's.

    While a run is under way (or owed: a failed run waiting for its retry, a recorded decision
    not yet applied), the row holds its lease — ``lease_owner``, ``lease_expires_at`` — and
    ``run_attempts`` counts the times recovery has taken the run over since it last paused;
    ``last_error`` is why the last try failed. A paused or closed incident holds no lease.
    ``pruned_at``: when retention deleted the closed incident's checkpoints (the row, its
    approvals and its notifications stay, as the audit record).
    """

    incident_id: str
    graph: str
    opened_at: datetime
    status: IncidentState = "open"
    fingerprint: str | None = None
    title: str = ""
    service: str | None = None
    severity: str | None = None
    alert: dict[str, Any] | None = None
    alerts_received: int = 1
    last_alert_at: datetime | None = None
    started_at: datetime | None = None
    closed_at: datetime | None = None
    outcome: str | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    run_attempts: int = 0
    last_error: str | None = None
    pruned_at: datetime | None = None
    graph_version: str | None = None
    """The version of ``graph`` the incident opened on (changed only by an explicit
    migration); ``None`` for an incident opened before graph versions were recorded."""

    @property
    def is_open(self) -> bool:
        """True until the incident's run has ended."""
        return self.status == "open"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (timestamps as ISO 8601)."""
        return {
            "incident_id": self.incident_id,
            "graph": self.graph,
            "status": self.status,
            "fingerprint": self.fingerprint,
            "title": self.title,
            "service": self.service,
            "severity": self.severity,
            "alert": self.alert,
            "alerts_received": self.alerts_received,
            "opened_at": self.opened_at.isoformat(),
            "last_alert_at": self.last_alert_at.isoformat() if self.last_alert_at else None,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "outcome": self.outcome,
            "lease_owner": self.lease_owner,
            "lease_expires_at": (
                self.lease_expires_at.isoformat() if self.lease_expires_at else None
            ),
            "run_attempts": self.run_attempts,
            "last_error": self.last_error,
            "pruned_at": self.pruned_at.isoformat() if self.pruned_at else None,
            "graph_version": self.graph_version,
        }


@dataclass(frozen=True)
class PendingGroup:
    """Pending approvals of one severity and graph version, and the nearest deadline."""

    severity: str
    graph_version: str | None
    count: int
    nearest_deadline: datetime | None


AlertEventKind = Literal["fired", "repeated", "resolved"]
"""What an alert event says: a firing reached the incident (a new firing, or another
firing with the open incident's fingerprint), the same firing was sent again, or it
resolved."""


@dataclass(frozen=True)
class AlertEvent:
    """One line of an incident's alert timeline: ``kind``, the firing it is about
    (``fingerprint``, ``starts_at`` — Alertmanager's ``startsAt``) and when it arrived."""

    incident_id: str
    kind: AlertEventKind
    fingerprint: str
    starts_at: datetime
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (timestamps as ISO 8601)."""
        return {
            "kind": self.kind,
            "fingerprint": self.fingerprint,
            "starts_at": self.starts_at.isoformat(),
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True)
class FiringIntake:
    """What :meth:`~durable_ir.ledger.ApprovalLedger.open_firing` did with a firing alert.

    ``created``: it opened ``incident``. Otherwise ``kind`` says why not: ``"repeated"``
    (this firing — fingerprint and ``startsAt`` — was seen before: it attached to that
    firing's incident, open or closed), ``"fired"`` (a new firing attached to the open
    incident with its fingerprint) or ``None`` (an incident with the requested id exists:
    nothing was written)."""

    created: bool
    incident: IncidentRecord
    kind: AlertEventKind | None
    epoch: int | None = None
    """The ownership epoch taken with a ``take`` when the incident was opened, else ``None``."""


@dataclass(frozen=True)
class NotificationRecord:
    """A notification that was sent: the outbox row that stops a re-run node sending it again.

    ``key`` names the notification (e.g. ``<incident>:escalated``); ``result`` is what the
    channel answered (a Slack message ``ts``, a PagerDuty ``dedup_key``), for later updates.
    """

    key: str
    incident_id: str
    kind: str
    channel: str
    sent_at: datetime
    result: dict[str, Any]


@dataclass(frozen=True)
class Ownership:
    """Who holds an incident now: the fencing record behind its lock.

    Taking an incident is a conditional write that bumps ``epoch``; every write a run makes
    afterwards (step claims, step results, checkpoints through durable-ir's PostgreSQL saver)
    names that epoch and does not happen once a higher one exists. ``owner`` is ``None``
    while nobody holds it; ``expires_at`` is when a holder that stopped renewing may be
    taken over.
    """

    incident_id: str
    owner: str | None
    epoch: int
    expires_at: datetime | None


@dataclass(frozen=True)
class OwnershipTake:
    """A take of an incident to fold into another write (the same conditional upsert as
    :meth:`~durable_ir.ledger.base.ApprovalLedger.take_ownership`, in that write's statement):
    for ``owner`` until ``expires_at`` if nobody holds it, its hold expired by ``now``, or its
    holder is ``steal_from``."""

    owner: str
    now: datetime
    expires_at: datetime
    steal_from: str | None = None


@dataclass(frozen=True)
class StepClaim:
    """One owner's claim to run one remediation step, written before its executor runs.

    ``key`` is the step's idempotency key; ``epoch`` the ownership epoch that claimed it.
    ``finished_at`` stays ``None`` until that owner recorded the step's result (``ok``,
    ``detail``): a claim of an older epoch left unfinished means the step is *in doubt* — it
    may or may not have taken effect — and the next owner runs it again with the same key.
    """

    incident_id: str
    key: str
    epoch: int
    owner: str
    claimed_at: datetime
    finished_at: datetime | None = None
    ok: bool | None = None
    detail: str | None = None
