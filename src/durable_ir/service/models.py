"""The JSON the service speaks: request bodies and responses, as pydantic models (they are
the OpenAPI schema).

Example:
    >>> ApproveBody.model_validate({"reason": "safe"}).reason
    'safe'
    >>> from pydantic import ValidationError
    >>> try:
    ...     ApproveBody.model_validate({"by": "mallory"})
    ... except ValidationError as exc:
    ...     print(exc.errors()[0]["type"], exc.errors()[0]["loc"])
    extra_forbidden ('by',)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from durable_ir.approval.deciding import MAX_INCIDENT_ID_CHARS
from durable_ir.decisions import MAX_REASON_CHARS
from durable_ir.incident import IncidentStatus
from durable_ir.records import ApprovalRecord

__all__ = [
    "AlertEventEntry",
    "AlertIntakeItem",
    "AlertRefused",
    "AlertResolution",
    "AlertsAccepted",
    "Approval",
    "ApproveBody",
    "DecisionAccepted",
    "Health",
    "IncidentDetail",
    "IncidentList",
    "IncidentSummary",
    "Live",
    "RcaConclusion",
    "Ready",
    "RejectBody",
    "SlackDecisionReply",
    "StatusFilter",
    "TimelineEntry",
]

StatusFilter = Literal["awaiting_approval", "running", "resuming", "finished", "open", "closed"]
"""``GET /incidents?status=``: a run status, or the index's ``open``/``closed``."""

_APPROVAL_EXAMPLE: JsonDict = {
    "approval_id": "0c7f3b0e-6a3c-5d8e-b1c2-4f9a7e2d1a55",
    "incident_id": "3f1b2c4d-0000-4000-8000-000000000001",
    "graph": "demo-agent",
    "node": "approval",
    "request": None,
    "severity": "P1",
    "requested_at": "2026-03-06T16:00:00Z",
    "deadline_at": "2026-03-06T18:00:00Z",
    "status": "approved",
    "decided_by": "alice",
    "decided_at": "2026-03-06T16:04:10Z",
    "reason": "rollback is safe",
    "edited_plan": None,
    "applied_at": None,
    "next_due_at": None,
    "reminders_sent": 0,
}


class Approval(BaseModel):
    """One approval of the ledger: the request and, once decided, the decision (who, when,
    what, why) — the audit record. ``request`` (the plan, its dry run, the allowed decisions)
    is left out of incident lists."""

    model_config = ConfigDict(json_schema_extra={"examples": [_APPROVAL_EXAMPLE]})

    approval_id: str
    incident_id: str
    graph: str
    node: str
    request: dict[str, Any] | None = None
    severity: str
    requested_at: datetime
    deadline_at: datetime
    status: Literal["pending", "approved", "rejected", "expired"]
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None
    edited_plan: Any = None
    applied_at: datetime | None = Field(
        None, description="when the graph received the decision (null: not yet)"
    )
    next_due_at: datetime | None = None
    reminders_sent: int = 0

    @classmethod
    def of(cls, record: ApprovalRecord, *, with_request: bool = True) -> Approval:
        """The model of a ledger record."""
        data = record.to_dict()
        if not with_request:
            data["request"] = None
        return cls.model_validate(data)


class IncidentSummary(BaseModel):
    """An incident as the index knows it, plus its pending approval (no checkpoint read).

    ``state`` is the index's ``open``/``closed``; ``status`` is where the run stands:
    ``awaiting_approval`` (an approval is pending), ``resuming`` (a decision is recorded and
    being applied), ``running`` (working, or stopped mid-stage and waiting for recovery), or
    ``finished``.
    """

    incident_id: str
    graph: str
    title: str
    service: str | None = None
    severity: str | None = None
    state: Literal["open", "closed"]
    status: IncidentStatus
    outcome: str | None = Field(None, description="how it ended: resolved, escalated, …")
    fingerprint: str | None = None
    alerts_received: int = 1
    opened_at: datetime
    started_at: datetime | None = None
    last_alert_at: datetime | None = None
    closed_at: datetime | None = None
    pending_approval: Approval | None = Field(
        None, description="the approval waiting for a decision, with its deadline"
    )


class IncidentList(BaseModel):
    """``GET /incidents``: newest first."""

    incidents: list[IncidentSummary]
    count: int


class TimelineEntry(BaseModel):
    """One line of the incident's timeline."""

    model_config = ConfigDict(extra="allow")

    at: str | None = None
    stage: str | None = None
    event: str | None = None


class RcaConclusion(BaseModel):
    """What root-cause analysis concluded."""

    status: str | None = Field(None, description="confident or exhausted")
    root_cause: str | None = None
    fault: str | None = None
    service: str | None = None
    confidence: float | None = None
    attempts: int | None = None


class AlertEventEntry(BaseModel):
    """One line of the incident's alert timeline: a firing reached it (``fired``), the same
    firing was sent again (``repeated``), or it resolved (``resolved``)."""

    kind: Literal["fired", "repeated", "resolved"]
    fingerprint: str
    starts_at: datetime
    at: datetime


class IncidentDetail(IncidentSummary):
    """``GET /incidents/{id}``: the summary, the graph state's highlights, the approval history
    and, once finished, the report."""

    next: list[str] = Field(default_factory=list, description="nodes the run continues with")
    summary: str | None = Field(None, description="what the approver reads first")
    outcome_reason: str | None = None
    timeline: list[TimelineEntry] = Field(default_factory=list)
    plan: dict[str, Any] | None = None
    dry_run: list[dict[str, Any]] | None = None
    rca: RcaConclusion | None = None
    approvals: list[Approval] = Field(
        default_factory=list, description="every approval and its decision, oldest first"
    )
    report: dict[str, Any] | None = None
    alert_events: list[AlertEventEntry] = Field(
        default_factory=list, description="the alert timeline (newest 200), oldest first"
    )
    alert_resolved_at: datetime | None = Field(
        None, description="when the alert last resolved (a pending approval may be moot)"
    )
    links: dict[str, str] = Field(
        default_factory=dict, description="runbook, dashboard, source: http(s) URLs"
    )
    group_key: str | None = Field(None, description="Alertmanager's groupKey")


class AlertIntakeItem(BaseModel):
    """What happened to one firing alert: it opened ``incident_id`` (``created``), or was
    attached to it — the open incident with its fingerprint (``event`` ``fired``), or the
    incident this same firing (fingerprint and ``startsAt``) reached before, even a closed
    one, which stays closed (``event`` ``repeated``)."""

    index: int = Field(description="the alert's place in the webhook's alerts (from 0)")
    incident_id: str
    created: bool
    event: Literal["fired", "repeated"] = "fired"
    state: Literal["open", "closed"] = "open"
    fingerprint: str | None = None
    title: str
    severity: str | None = None
    alerts_received: int


class AlertResolution(BaseModel):
    """A resolution notice: noted on the alert timeline of ``incident_id`` (``recorded``:
    the first notice for that firing), or matching no incident (``incident_id`` null:
    nothing written, counted in ``ignored``). ``expired_approval``: the pending approval it
    expired (policy ``expire``)."""

    index: int
    fingerprint: str
    incident_id: str | None = None
    recorded: bool = False
    expired_approval: str | None = None


class AlertRefused(BaseModel):
    """An alert of the webhook that was refused on its own; its neighbours were not."""

    index: int = Field(description="the alert's place in the webhook's alerts (from 0)")
    fingerprint: str | None = None
    reason: str


class AlertsAccepted(BaseModel):
    """``POST /alerts``: each alert of the body accepted or refused on its own — firing ones
    in ``incidents``, resolution notices in ``resolved``, malformed ones in ``refused``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "incidents": [
                        {
                            "index": 0,
                            "incident_id": "3f1b2c4d-0000-4000-8000-000000000001",
                            "created": True,
                            "event": "fired",
                            "state": "open",
                            "fingerprint": "6d3e0f0c8b0d4b0e9f5c1a2b3c4d5e6f",
                            "title": "HighErrorRate on checkout",
                            "severity": "P1",
                            "alerts_received": 1,
                        }
                    ],
                    "resolved": [],
                    "refused": [
                        {
                            "index": 1,
                            "fingerprint": "c0ffee0123456789",
                            "reason": "DiskFull has none of the labels service, app, job,"
                            " namespace",
                        }
                    ],
                    "created": 1,
                    "attached": 0,
                    "ignored": 0,
                }
            ]
        }
    )

    incidents: list[AlertIntakeItem]
    resolved: list[AlertResolution] = Field(default_factory=list)
    refused: list[AlertRefused] = Field(default_factory=list)
    created: int
    attached: int
    ignored: int = Field(description="resolution notices that matched no incident")


class ApproveBody(BaseModel):
    """``POST /incidents/{id}/approve``. The approver is the caller's credential, never the
    body. With ``plan``, the decision is an edit: that plan (validated like the original)
    is the one applied. ``approval_id`` pins the decision to the request the approver saw."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "rollback is safe"}]},
    )

    reason: str | None = Field(None, max_length=MAX_REASON_CHARS)
    plan: Any = Field(None, description="an edited plan: makes this an edit")
    approval_id: str | None = Field(None, min_length=1, max_length=MAX_INCIDENT_ID_CHARS)


class RejectBody(BaseModel):
    """``POST /incidents/{id}/reject``: a reason is required."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "not during the sale"}]},
    )

    reason: str = Field(min_length=1, max_length=MAX_REASON_CHARS)
    approval_id: str | None = Field(None, min_length=1, max_length=MAX_INCIDENT_ID_CHARS)


class DecisionAccepted(BaseModel):
    """202: the decision is recorded durably; the graph continues in the background (and,
    should this process die, recovery applies it)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "incident_id": _APPROVAL_EXAMPLE["incident_id"],
                    "decision": _APPROVAL_EXAMPLE,
                    "applied": False,
                    "status": "resuming",
                }
            ]
        }
    )

    incident_id: str
    decision: Approval
    applied: bool = Field(description="whether the graph had received it when this answered")
    status: IncidentStatus


class SlackDecisionReply(BaseModel):
    """The answer to a Slack button click (shown to the clicker only)."""

    response_type: Literal["ephemeral"] = "ephemeral"
    text: str
    decision: Approval


class GraphVersionRow(BaseModel):
    """Open incidents on one graph version, and whether this service runs it."""

    graph: str
    graph_version: str | None = Field(
        description="null: incidents recorded before graph versions were"
    )
    open: int
    awaiting_approval: int
    registered: bool = Field(description="whether this service runs this version")
    default: bool = Field(description="whether new incidents start on this version")


class GraphVersions(BaseModel):
    """``GET /versions``."""

    versions: list[GraphVersionRow]


class Health(BaseModel):
    """``GET /healthz``."""

    status: Literal["ok"]
    database: str = Field(description="postgres, sqlite or memory")
    graph: str
    sla_monitor: bool = Field(description="whether the SLA monitor task is running")


class Live(BaseModel):
    """``GET /livez``: the process answers (nothing else is checked)."""

    status: Literal["ok"]


class Ready(BaseModel):
    """``GET /readyz``: the database answered in time, with every table this version reads."""

    status: Literal["ready"]
    database: str = Field(description="postgres, sqlite or memory")
    checked_in_ms: float = Field(description="how long the database took to answer the checks")
