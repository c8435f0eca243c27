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
from typing import Any

__all__ = ["ApprovalRecord", "ApprovalStatus", "NewApproval"]


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
        }
