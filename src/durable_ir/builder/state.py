"""The incident graph's state: every key, who writes it, and what it holds (all JSON).

Example:
    >>> sorted(k for k in IncidentState.__annotations__ if k.startswith("rca"))
    ['rca', 'rca_attempts', 'rca_evidence']
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal

from durable_ir.rca_loop import RcaState

__all__ = ["EscalationReason", "IncidentState", "Outcome"]

Outcome = Literal["resolved", "escalated", "alert_resolved"]
EscalationReason = Literal[
    "rca_exhausted",
    "no_plan",
    "plan_refused",
    "dry_run_failed",
    "rejected",
    "expired",
    "apply_failed",
    "verification_failed",
]
"""Why an incident went to humans instead of being resolved by the agent."""


class IncidentState(RcaState, total=False):
    """State of the incident graph. Nodes that replace the built-in ones read and write the
    same keys (each key's writer is named below)."""

    alert: dict[str, Any]
    """ingest: the alert, normalised to :meth:`durable_ir.Alert.as_state`."""
    title: str
    """ingest: one line naming the incident."""
    alert_links: dict[str, str]
    """ingest: the alert's http(s) links (runbook, dashboard, source), if it has any."""
    severity: str
    """triage: P0–P3 (the approval node's deadline follows it)."""
    triage: dict[str, Any]
    """triage: severity, reason, and who decided it (``rules`` or ``analyzer``)."""
    plan: dict[str, Any] | None
    """plan: the remediation plan as JSON (:class:`durable_ir.RemediationPlan`); an approver's
    edit replaces it."""
    summary: str
    """plan: what the approver reads first."""
    dry_run: list[dict[str, Any]]
    """dry_run: one preview per step, shown to the approver next to the plan."""
    approval_window_s: float
    """input (optional): this incident's approval window in seconds, overriding the SLA."""
    approval: dict[str, Any]
    """approval: the decision (status, decided_by, decided_at, reason, edited)."""
    applied_steps: Annotated[list[dict[str, Any]], operator.add]
    """apply: one record per step run, appended before the next step starts."""
    rolled_back: Annotated[list[dict[str, Any]], operator.add]
    """rollback: one record per finished step undone, in reverse order."""
    verification: dict[str, Any]
    """verify: whether the service is healthy again, and the readings."""
    escalation: dict[str, Any]
    """the node that gives up: ``reason`` (:data:`EscalationReason`) and ``detail``."""
    outcome: dict[str, Any]
    """resolve / escalate / stand_down: ``status`` (:data:`Outcome`), ``reason``, ``at``."""
    report: dict[str, Any]
    """summarize: the post-incident summary."""
    timeline: Annotated[list[dict[str, Any]], operator.add]
    """every node: ``{"at", "stage", "event"}`` entries, oldest first."""
    notifications: Annotated[list[dict[str, Any]], operator.add]
    """what each channel was told (``channel``, ``kind``, ``repeated``, ``error``)."""
