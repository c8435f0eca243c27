"""A read-only view of one incident: its graph state and its approvals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from durable_ir.records import ApprovalRecord

__all__ = ["IncidentSnapshot", "IncidentStatus", "run_status"]

IncidentStatus = Literal["awaiting_approval", "resuming", "running", "finished"]


@dataclass(frozen=True)
class IncidentSnapshot:
    """Where an incident stands, read from the checkpointer and the ledger.

    ``status`` is ``awaiting_approval`` when the graph is paused on a pending approval,
    ``resuming`` when a decision is recorded but the graph has not received it yet (the worker
    applying it is running, or died and recovery will apply it), ``finished`` when it has
    nothing left to run, else ``running`` (being run now, or stopped mid-stage by a crash).
    """

    id: str
    status: IncidentStatus
    values: dict[str, Any]
    next: tuple[str, ...]
    pending_approval: ApprovalRecord | None = None
    approvals: list[ApprovalRecord] = field(default_factory=list)
    graph_version: str | None = None
    """The graph version the incident runs on (``None``: recorded before versions were)."""
    runnable_here: bool = True
    """False when that version is not registered in this process: the snapshot then comes
    from the ledger and the stored checkpoint, and deciding here is refused."""


def run_status(state: str, latest: ApprovalRecord | None) -> IncidentStatus:
    """Where an indexed incident's run stands, from its latest approval alone (no checkpoint
    read): closed is ``finished``; a pending approval ``awaiting_approval``; a decision not yet
    applied ``resuming``; anything else ``running``. What lists answer (the API's, the
    CLI's) without reading checkpoints; :meth:`durable_ir.Runtime.get` agrees with it.

    Example:
        >>> run_status("open", None), run_status("closed", None)
        ('running', 'finished')
    """
    if state == "closed":
        return "finished"
    if latest is None:
        return "running"
    if latest.is_pending:
        return "awaiting_approval"
    return "resuming" if latest.applied_at is None else "running"
