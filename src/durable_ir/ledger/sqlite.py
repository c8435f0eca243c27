"""The approval ledger in SQLite, in the same file as the LangGraph checkpoints.

The connection runs in autocommit mode; the decision compare-and-set takes SQLite's write lock
with ``BEGIN IMMEDIATE``, which serialises it against every other process using the file.
Timestamps are stored as integer microseconds since the epoch (UTC), so they sort and index
exactly.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosqlite

from durable_ir.ledger.base import ApprovalLedger, DecisionWrite, record_from_row
from durable_ir.records import ApprovalRecord, ApprovalStatus, NewApproval

__all__ = ["SQLITE_SCHEMA", "SqliteLedger", "to_epoch_us"]

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS durable_ir_approvals (
    approval_id  TEXT PRIMARY KEY,
    incident_id  TEXT NOT NULL,
    graph        TEXT NOT NULL,
    node         TEXT NOT NULL,
    request      TEXT NOT NULL,
    severity     TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    deadline_at  INTEGER NOT NULL,
    status       TEXT NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'approved', 'rejected', 'expired')),
    decided_by   TEXT,
    decided_at   INTEGER,
    reason       TEXT,
    edited_plan  TEXT,
    applied_at   INTEGER,
    next_due_at  INTEGER NOT NULL,
    reminders_sent INTEGER NOT NULL DEFAULT 0,
    CHECK ((status = 'pending') = (decided_at IS NULL))
);
CREATE INDEX IF NOT EXISTS durable_ir_approvals_by_incident
    ON durable_ir_approvals (incident_id, requested_at);
CREATE INDEX IF NOT EXISTS durable_ir_approvals_pending_by_deadline
    ON durable_ir_approvals (deadline_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS durable_ir_approvals_pending_by_next_due
    ON durable_ir_approvals (next_due_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS durable_ir_approvals_unapplied
    ON durable_ir_approvals (decided_at) WHERE status <> 'pending' AND applied_at IS NULL;
"""

_COLUMNS = (
    "approval_id, incident_id, graph, node, request, severity, requested_at, deadline_at,"
    " status, decided_by, decided_at, reason, edited_plan, applied_at, next_due_at,"
    " reminders_sent"
)


def to_epoch_us(moment: datetime) -> int:
    """An aware datetime as integer microseconds since the Unix epoch (exact, no float)."""
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


class SqliteLedger(ApprovalLedger):
    """Approval ledger on its own aiosqlite connection (``isolation_level=None``).

    Example::

        conn = await aiosqlite.connect("incidents.db", isolation_level=None)
        ledger = SqliteLedger(conn)
        await ledger.setup()
    """

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._conn.row_factory = aiosqlite.Row
        # One connection, many coroutines: transactions must not interleave on it.
        self._lock = asyncio.Lock()

    async def setup(self) -> None:
        async with self._lock:
            await self._conn.executescript(SQLITE_SCHEMA)

    async def _one(self, query: str, params: tuple[Any, ...]) -> ApprovalRecord | None:
        async with self._lock, self._conn.execute(query, params) as cur:
            row = await cur.fetchone()
        return None if row is None else record_from_row(dict(row), json_as_text=True)

    async def _all(self, query: str, params: tuple[Any, ...]) -> list[ApprovalRecord]:
        async with self._lock, self._conn.execute(query, params) as cur:
            rows = await cur.fetchall()
        return [record_from_row(dict(r), json_as_text=True) for r in rows]

    async def register(self, new: NewApproval) -> ApprovalRecord:
        async with self._lock:
            await self._conn.execute(
                "INSERT OR IGNORE INTO durable_ir_approvals"
                " (approval_id, incident_id, graph, node, request, severity,"
                "  requested_at, deadline_at, next_due_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    new.approval_id,
                    new.incident_id,
                    new.graph,
                    new.node,
                    json.dumps(new.request),
                    new.severity,
                    to_epoch_us(new.requested_at),
                    to_epoch_us(new.deadline_at),
                    to_epoch_us(new.next_due_at or new.deadline_at),
                ),
            )
        row = await self.get(new.approval_id)
        assert row is not None
        return row

    async def get(self, approval_id: str) -> ApprovalRecord | None:
        return await self._one(
            f"SELECT {_COLUMNS} FROM durable_ir_approvals WHERE approval_id = ?", (approval_id,)
        )

    async def history(self, incident_id: str) -> list[ApprovalRecord]:
        return await self._all(
            f"SELECT {_COLUMNS} FROM durable_ir_approvals WHERE incident_id = ?"
            " ORDER BY requested_at, approval_id",
            (incident_id,),
        )

    async def latest(self, incident_id: str) -> ApprovalRecord | None:
        return await self._one(
            f"SELECT {_COLUMNS} FROM durable_ir_approvals WHERE incident_id = ?"
            " ORDER BY requested_at DESC, approval_id DESC LIMIT 1",
            (incident_id,),
        )

    async def record_decision(
        self, approval_id: str, decision: DecisionWrite
    ) -> tuple[bool, ApprovalRecord]:
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                cur = await self._conn.execute(
                    "UPDATE durable_ir_approvals"
                    " SET status = ?, decided_by = ?, decided_at = ?, reason = ?, edited_plan = ?"
                    " WHERE approval_id = ? AND status = 'pending'",
                    (
                        decision.status.value,
                        decision.decided_by,
                        to_epoch_us(decision.decided_at),
                        decision.reason,
                        None if decision.edited_plan is None else json.dumps(decision.edited_plan),
                        approval_id,
                    ),
                )
                won = cur.rowcount == 1
                async with self._conn.execute(
                    f"SELECT {_COLUMNS} FROM durable_ir_approvals WHERE approval_id = ?",
                    (approval_id,),
                ) as read:
                    row = await read.fetchone()
                await self._conn.execute("COMMIT")
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
        if row is None:
            raise LookupError(approval_id)
        return won, record_from_row(dict(row), json_as_text=True)

    async def mark_applied(self, approval_id: str, at: datetime) -> None:
        async with self._lock:
            await self._conn.execute(
                "UPDATE durable_ir_approvals SET applied_at = ?"
                " WHERE approval_id = ? AND applied_at IS NULL AND status <> 'pending'",
                (to_epoch_us(at), approval_id),
            )

    async def unapplied(self, limit: int = 100) -> list[ApprovalRecord]:
        return await self._all(
            f"SELECT {_COLUMNS} FROM durable_ir_approvals"
            " WHERE status <> 'pending' AND applied_at IS NULL"
            " ORDER BY decided_at LIMIT ?",
            (limit,),
        )

    async def expire_due(
        self, now: datetime, limit: int, decided_by: str, reason: Callable[[ApprovalRecord], str]
    ) -> list[ApprovalRecord]:
        expired: list[ApprovalRecord] = []
        async with self._lock:
            # BEGIN IMMEDIATE takes SQLite's single write lock: sweepers in other processes
            # wait here, then find these rows no longer pending.
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                async with self._conn.execute(
                    f"SELECT {_COLUMNS} FROM durable_ir_approvals"
                    " WHERE status = 'pending' AND deadline_at <= ?"
                    " ORDER BY deadline_at LIMIT ?",
                    (to_epoch_us(now), limit),
                ) as cur:
                    due = [
                        record_from_row(dict(r), json_as_text=True) for r in await cur.fetchall()
                    ]
                for row in due:
                    why = reason(row)
                    done = await self._conn.execute(
                        "UPDATE durable_ir_approvals"
                        " SET status = 'expired', decided_by = ?, decided_at = ?, reason = ?"
                        " WHERE approval_id = ? AND status = 'pending'",
                        (decided_by, to_epoch_us(now), why, row.approval_id),
                    )
                    if done.rowcount == 1:
                        expired.append(
                            replace(
                                row,
                                status=ApprovalStatus.EXPIRED,
                                decided_by=decided_by,
                                decided_at=now,
                                reason=why,
                            )
                        )
                await self._conn.execute("COMMIT")
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
        return expired

    async def due_reminders(self, now: datetime, limit: int) -> list[ApprovalRecord]:
        return await self._all(
            f"SELECT {_COLUMNS} FROM durable_ir_approvals"
            " WHERE status = 'pending' AND next_due_at <= ? AND next_due_at < deadline_at"
            " ORDER BY next_due_at LIMIT ?",
            (to_epoch_us(now), limit),
        )

    async def advance_reminder(
        self, approval_id: str, sent: int, to: int, next_due_at: datetime
    ) -> bool:
        async with self._lock:
            cur = await self._conn.execute(
                "UPDATE durable_ir_approvals SET reminders_sent = ?, next_due_at = ?"
                " WHERE approval_id = ? AND status = 'pending' AND reminders_sent = ?",
                (to, to_epoch_us(next_due_at), approval_id, sent),
            )
            return cur.rowcount == 1
