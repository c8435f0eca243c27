"""The approval request an incident pauses with.

Shaped like LangChain's human-in-the-loop request (``action_requests`` with name / args /
description, ``review_configs`` with the allowed decisions) so that existing HITL front ends can
render it, with durable-ir's own fields under the ``durable_ir`` key.

Example:
    >>> from datetime import UTC, datetime
    >>> request = build_request(
    ...     approval_id="a1", incident_id="inc-1", severity="P1",
    ...     requested_at=datetime(2026, 1, 1, tzinfo=UTC),
    ...     deadline_at=datetime(2026, 1, 1, 2, tzinfo=UTC),
    ...     plan={"steps": ["restart api"]}, summary="api 5xx after deploy",
    ... )
    >>> request["review_configs"][0]["allowed_decisions"]
    ['approve', 'edit', 'reject']
    >>> request["durable_ir"]["deadline_at"]
    '2026-01-01T02:00:00+00:00'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, NotRequired, TypedDict

__all__ = [
    "ALERT_RESOLVED_POLICIES",
    "DEFAULT_ACTION_NAME",
    "ActionRequest",
    "AlertResolvedPolicy",
    "ApprovalRequest",
    "DurableIRRequestFields",
    "ReviewConfig",
    "ReviewDecision",
    "alert_resolved_policy",
    "allowed_decisions",
    "build_request",
]

DEFAULT_ACTION_NAME = "apply_remediation_plan"
ReviewDecision = Literal["approve", "edit", "reject"]
AlertResolvedPolicy = Literal["annotate", "expire"]
"""What a pending approval does when its incident's alert resolves: ``annotate`` (the
default: the console and Slack say so, a person still decides) or ``expire`` (expired at
once by ``system:alertmanager`` with reason ``alert_resolved``: nothing is applied)."""
ALERT_RESOLVED_POLICIES: tuple[AlertResolvedPolicy, ...] = ("annotate", "expire")


class ActionRequest(TypedDict):
    """One action awaiting review (LangChain HITL ``ActionRequest``)."""

    name: str
    args: dict[str, Any]
    description: str


class ReviewConfig(TypedDict):
    """Which decisions a reviewer may take on an action (LangChain HITL ``ReviewConfig``)."""

    action_name: str
    allowed_decisions: list[ReviewDecision]


class DurableIRRequestFields(TypedDict):
    """durable-ir's own fields of a request."""

    approval_id: str
    incident_id: str
    graph: str
    node: str
    severity: str
    requested_at: str
    deadline_at: str
    on_alert_resolved: NotRequired[AlertResolvedPolicy]


class ApprovalRequest(TypedDict):
    """The value an approval interrupt carries, and the ledger stores."""

    action_requests: list[ActionRequest]
    review_configs: list[ReviewConfig]
    durable_ir: DurableIRRequestFields


def build_request(
    *,
    approval_id: str,
    incident_id: str,
    severity: str,
    requested_at: datetime,
    graph: str = "incident",
    node: str = "approval",
    deadline_at: datetime,
    plan: Any,
    summary: str,
    action_name: str = DEFAULT_ACTION_NAME,
    allowed: Sequence[ReviewDecision] = ("approve", "edit", "reject"),
    context: Mapping[str, Any] | None = None,
    on_alert_resolved: AlertResolvedPolicy = "annotate",
) -> ApprovalRequest:
    """Build the request for one plan awaiting approval; ``context`` (e.g. the plan's dry run)
    is shown next to the plan, under the action's ``args``."""
    return {
        "action_requests": [
            {
                "name": action_name,
                "args": {**(context or {}), "plan": plan},
                "description": summary,
            }
        ],
        "review_configs": [{"action_name": action_name, "allowed_decisions": list(allowed)}],
        "durable_ir": {
            "approval_id": approval_id,
            "incident_id": incident_id,
            "graph": graph,
            "node": node,
            "severity": severity,
            "requested_at": requested_at.isoformat(),
            "deadline_at": deadline_at.isoformat(),
            "on_alert_resolved": on_alert_resolved,
        },
    }


def alert_resolved_policy(request: Mapping[str, Any]) -> AlertResolvedPolicy:
    """The stored request's :data:`AlertResolvedPolicy` (``annotate`` for requests stored
    before the policy existed, or holding anything else).

    Example:
        >>> alert_resolved_policy({"durable_ir": {"on_alert_resolved": "expire"}})
        'expire'
        >>> alert_resolved_policy({})
        'annotate'
    """
    fields = request.get("durable_ir")
    value = fields.get("on_alert_resolved") if isinstance(fields, Mapping) else None
    return "expire" if value == "expire" else "annotate"


def allowed_decisions(request: dict[str, Any]) -> set[str]:
    """The decision kinds a stored request allows (``expire`` is always allowed)."""
    allowed = {"expire"}
    for config in request.get("review_configs") or []:
        allowed.update(config.get("allowed_decisions") or [])
    return allowed
