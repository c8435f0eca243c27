"""The approval ledger in PostgreSQL, in the same database as the LangGraph checkpoints.

Every statement runs in autocommit mode on a pooled connection. The decision
compare-and-set is one ``UPDATE … WHERE status = 'pending' RETURNING *``: PostgreSQL's row
lock makes exactly one concurrent writer see the pending row, in any number of processes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from durable_ir.ledger.base import ApprovalLedger, DecisionWrite, record_from_row
from durable_ir.records import ApprovalRecord, NewApproval

__all__ = ["POSTGRES_SCHEMA", "PostgresLedger"]

POSTGRES_SCHEMA = """
CREATE TABLE IF NOT EXISTS durable_ir_approvals (
    approval_id  text PRIMARY KEY,
    incident_id  text NOT NULL,
    graph        text NOT NULL,
    node         text NOT NULL,
    request      jsonb NOT NULL,
    severity     text NOT NULL,
    requested_at timestamptz NOT NULL,
    deadline_at  timestamptz NOT NULL,
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'approved', 'rejected', 'expired')),
    decided_by   text,
    decided_at   timestamptz,
    reason       text,
    edited_plan  jsonb,
    applied_at   timestamptz,
    next_due_at  timestamptz NOT NULL,
    reminders_sent integer NOT NULL DEFAULT 0,
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


class PostgresLedger(ApprovalLedger):
    """Approval ledger on a psycopg 3 pool (``autocommit=True``, ``dict_row``).

    Example (needs a server)::

        pool = AsyncConnectionPool(url, kwargs={"autocommit": True, "row_factory": dict_row})
        ledger = PostgresLedger(pool)
        await ledger.setup()
    """

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def setup(self) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(POSTGRES_SCHEMA)

    async def _one(self, query: str, params: tuple[Any, ...]) -> ApprovalRecord | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, params)
            row = await cur.fetchone()
        return None if row is None else record_from_row(row)

    async def _all(self, query: str, params: tuple[Any, ...]) -> list[ApprovalRecord]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, params)
            rows = await cur.fetchall()
        return [record_from_row(r) for r in rows]

    async def register(self, new: NewApproval) -> ApprovalRecord:
        # One round trip: the CTE's INSERT is invisible to the outer SELECT's snapshot, so the
        # UNION returns the inserted row, or else the row that was already there.
        row = await self._one(
            f"""
            WITH inserted AS (
                INSERT INTO durable_ir_approvals
                    (approval_id, incident_id, graph, node, request, severity,
                     requested_at, deadline_at, next_due_at)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (approval_id) DO NOTHING
                RETURNING {_COLUMNS}
            )
            SELECT {_COLUMNS} FROM inserted
            UNION ALL
            SELECT {_COLUMNS} FROM durable_ir_approvals WHERE approval_id = %s
            LIMIT 1
            """,
            (
                new.approval_id,
                new.incident_id,
                new.graph,
                new.node,
                Jsonb(new.request),
                new.severity,
                new.requested_at,
                new.deadline_at,
                new.next_due_at or new.deadline_at,
                new.approval_id,
            ),
        )
        if row is None:
            # A concurrent register committed the row after this statement took its snapshot:
            # ON CONFLICT waited for it and did nothing, and the SELECT cannot see it. A new
            # statement (autocommit: a new snapshot) does.
            row = await self.get(new.approval_id)
        if row is None:
            raise LookupError(f"approval {new.approval_id} vanished while registering")
        return row

    async def get(self, approval_id: str) -> ApprovalRecord | None:
        return await self._one(
            f"SELECT {_COLUMNS} FROM durable_ir_approvals WHERE approval_id = %s", (approval_id,)
        )

    async def history(self, incident_id: str) -> list[ApprovalRecord]:
        return await self._all(
            f"SELECT {_COLUMNS} FROM durable_ir_approvals WHERE incident_id = %s"
            " ORDER BY requested_at, approval_id",
            (incident_id,),
        )

    async def latest(self, incident_id: str) -> ApprovalRecord | None:
        return await self._one(
            f"SELECT {_COLUMNS} FROM durable_ir_approvals WHERE incident_id = %s"
            " ORDER BY requested_at DESC, approval_id DESC LIMIT 1",
            (incident_id,),
        )

    async def record_decision(
        self, approval_id: str, decision: DecisionWrite
    ) -> tuple[bool, ApprovalRecord]:
        won = await self._one(
            f"""
            UPDATE durable_ir_approvals
               SET status = %s, decided_by = %s, decided_at = %s, reason = %s, edited_plan = %s
             WHERE approval_id = %s AND status = 'pending'
            RETURNING {_COLUMNS}
            """,
            (
                decision.status.value,
                decision.decided_by,
                decision.decided_at,
                decision.reason,
                None if decision.edited_plan is None else Jsonb(decision.edited_plan),
                approval_id,
            ),
        )
        if won is not None:
            return True, won
        # A decided row never returns to pending, so this read shows the winner.
        current = await self.get(approval_id)
        if current is None:
            raise LookupError(approval_id)
        return False, current

    async def mark_applied(self, approval_id: str, at: datetime) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE durable_ir_approvals SET applied_at = %s"
                " WHERE approval_id = %s AND applied_at IS NULL AND status <> 'pending'",
                (at, approval_id),
            )

    async def unapplied(self, limit: int = 100) -> list[ApprovalRecord]:
        return await self._all(
            f"SELECT {_COLUMNS} FROM durable_ir_approvals"
            " WHERE status <> 'pending' AND applied_at IS NULL"
            " ORDER BY decided_at LIMIT %s",
            (limit,),
        )

    async def expire_due(
        self, now: datetime, limit: int, decided_by: str, reason: Callable[[ApprovalRecord], str]
    ) -> list[ApprovalRecord]:
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM durable_ir_approvals"
                " WHERE status = 'pending' AND deadline_at <= %s"
                " ORDER BY deadline_at LIMIT %s FOR UPDATE SKIP LOCKED",
                (now, limit),
            )
            due = [record_from_row(r) for r in await cur.fetchall()]
            if not due:
                return []
            # The rows are locked by this transaction: a concurrent decision waits, then finds
            # them decided. The status guard keeps this the same compare-and-set regardless.
            cur = await conn.execute(
                f"""
                UPDATE durable_ir_approvals AS a
                   SET status = 'expired', decided_by = %s, decided_at = %s, reason = d.reason
                  FROM unnest(%s::text[], %s::text[]) AS d(approval_id, reason)
                 WHERE a.approval_id = d.approval_id AND a.status = 'pending'
                RETURNING {", ".join(f"a.{c.strip()}" for c in _COLUMNS.split(","))}
                """,
                (decided_by, now, [r.approval_id for r in due], [reason(r) for r in due]),
            )
            expired = [record_from_row(r) for r in await cur.fetchall()]
        return sorted(expired, key=lambda r: (r.deadline_at, r.approval_id))

    async def due_reminders(self, now: datetime, limit: int) -> list[ApprovalRecord]:
        return await self._all(
            f"SELECT {_COLUMNS} FROM durable_ir_approvals"
            " WHERE status = 'pending' AND next_due_at <= %s AND next_due_at < deadline_at"
            " ORDER BY next_due_at LIMIT %s",
            (now, limit),
        )

    async def advance_reminder(
        self, approval_id: str, sent: int, to: int, next_due_at: datetime
    ) -> bool:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE durable_ir_approvals SET reminders_sent = %s, next_due_at = %s"
                " WHERE approval_id = %s AND status = 'pending' AND reminders_sent = %s",
                (to, next_due_at, approval_id, sent),
            )
            return bool(cur.rowcount == 1)
