"""A read-only view of one incident: its graph state and its approvals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from durable_ir.records import ApprovalRecord

__all__ = ["IncidentSnapshot", "IncidentStatus"]

IncidentStatus = Literal["awaiting_approval", "running", "finished"]


@dataclass(frozen=True)
class IncidentSnapshot:
    """Where an incident stands, read from the checkpointer and the ledger.

    ``status`` is ``awaiting_approval`` when the graph is paused on a pending approval,
    ``finished`` when it has nothing left to run, else ``running`` (being run now, or stopped
    mid-stage by a crash, waiting for recovery).
    """

    id: str
    status: IncidentStatus
    values: dict[str, Any]
    next: tuple[str, ...]
    pending_approval: ApprovalRecord | None = None
    approvals: list[ApprovalRecord] = field(default_factory=list)
