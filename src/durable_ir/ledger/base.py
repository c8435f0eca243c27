"""The approval ledger interface, shared by the PostgreSQL, SQLite and in-memory backends.

The ledger is the source of truth for decisions. Its one write that matters,
:meth:`ApprovalLedger.record_decision`, is a first-writer-wins compare-and-set on
``status = 'pending'`` that is atomic across processes.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from durable_ir.records import ApprovalRecord, ApprovalStatus, NewApproval

__all__ = ["ApprovalLedger", "DecisionWrite", "record_from_row"]


@dataclass(frozen=True)
class DecisionWrite:
    """The fields a decision writes into its ledger row."""

    status: ApprovalStatus
    decided_by: str
    decided_at: datetime
    reason: str | None
    edited_plan: Any = None


class ApprovalLedger(ABC):
    """Durable record of approval requests and the one decision each receives."""

    @abstractmethod
    async def setup(self) -> None:
        """Create the ledger's tables and indexes if missing (idempotent)."""

    @abstractmethod
    async def register(self, new: NewApproval) -> ApprovalRecord:
        """Insert ``new`` unless a row with its ``approval_id`` exists; return the stored row.

        Idempotent: a re-run of the approval node gets the original row back, with its
        original ``requested_at`` and ``deadline_at``.
        """

    @abstractmethod
    async def get(self, approval_id: str) -> ApprovalRecord | None:
        """The row for ``approval_id``, or ``None``."""

    @abstractmethod
    async def history(self, incident_id: str) -> list[ApprovalRecord]:
        """Every approval of ``incident_id``, oldest first."""

    @abstractmethod
    async def latest(self, incident_id: str) -> ApprovalRecord | None:
        """The most recent approval of ``incident_id``, or ``None`` if it never asked for one."""

    @abstractmethod
    async def record_decision(
        self, approval_id: str, decision: DecisionWrite
    ) -> tuple[bool, ApprovalRecord]:
        """Compare-and-set the row from pending to ``decision``.

        Returns ``(True, row)`` when this call won, ``(False, row)`` with the winner's row when
        another decision was recorded first. Raises ``LookupError`` for an unknown id.
        """

    @abstractmethod
    async def mark_applied(self, approval_id: str, at: datetime) -> None:
        """Note that the recorded decision has been handed to the graph (a pending row, which
        has no decision to apply, is left alone)."""

    @abstractmethod
    async def unapplied(self, limit: int = 100) -> list[ApprovalRecord]:
        """Decided rows whose decision has not been applied yet, oldest decision first."""

    @abstractmethod
    async def expire_due(
        self, now: datetime, limit: int, decided_by: str, reason: Callable[[ApprovalRecord], str]
    ) -> list[ApprovalRecord]:
        """Expire up to ``limit`` pending approvals whose deadline is at or before ``now``,
        earliest deadline first, and return the rows this call expired.

        The same compare-and-set as :meth:`record_decision` (only a pending row changes), done
        in batch; rows another sweeper is expiring at the same moment are skipped, not waited
        for. Found through the partial index on pending deadlines, so the cost grows with the
        number overdue, not with history.
        """

    @abstractmethod
    async def due_reminders(self, now: datetime, limit: int) -> list[ApprovalRecord]:
        """Pending approvals whose next reminder (``next_due_at`` before the deadline) is due."""

    @abstractmethod
    async def advance_reminder(
        self, approval_id: str, sent: int, to: int, next_due_at: datetime
    ) -> bool:
        """Compare-and-set ``reminders_sent`` from ``sent`` to ``to`` on a pending row and move
        ``next_due_at``; True if this call did it (so exactly one sweeper reminds)."""

    async def close(self) -> None:  # noqa: B027 - optional hook, default no-op
        """Release what the ledger holds of its own (the store owns shared connections)."""


def _as_datetime(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, int):  # SQLite stores epoch microseconds; no float on the way
        return _EPOCH + timedelta(microseconds=value)
    raise TypeError(f"cannot read a timestamp from {value!r}")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def record_from_row(row: Mapping[str, Any], *, json_as_text: bool = False) -> ApprovalRecord:
    """Build an :class:`ApprovalRecord` from a database row.

    ``json_as_text``: the backend stores JSON columns as text (SQLite) rather than handing
    back decoded values (PostgreSQL ``jsonb``, where a JSON string is already a ``str``).
    """

    def _as_json(value: object) -> Any:
        return json.loads(value) if json_as_text and isinstance(value, str | bytes) else value

    requested_at = _as_datetime(row["requested_at"])
    deadline_at = _as_datetime(row["deadline_at"])
    assert requested_at is not None and deadline_at is not None
    return ApprovalRecord(
        approval_id=row["approval_id"],
        incident_id=row["incident_id"],
        graph=row["graph"],
        node=row["node"],
        request=_as_json(row["request"]),
        severity=row["severity"],
        requested_at=requested_at,
        deadline_at=deadline_at,
        status=ApprovalStatus(row["status"]),
        decided_by=row["decided_by"],
        decided_at=_as_datetime(row["decided_at"]),
        reason=row["reason"],
        edited_plan=None if row["edited_plan"] is None else _as_json(row["edited_plan"]),
        applied_at=_as_datetime(row["applied_at"]),
        next_due_at=_as_datetime(row["next_due_at"]),
        reminders_sent=int(row["reminders_sent"]),
    )
