"""The approval ledger in SQLite, in the same file as the LangGraph checkpoints.

The connection runs in autocommit mode; the decision compare-and-set takes SQLite's write lock
with ``BEGIN IMMEDIATE``, which serialises it against every other process using the file.
Timestamps are stored as integer microseconds since the epoch (UTC), so they sort and index
exactly. Opening an incident takes the same write lock, so that alerts with one fingerprint
attach to one open incident across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosqlite

from durable_ir.ledger.base import (
    DecisionWrite,
    VersionCount,
    as_datetime,
    check_aware,
    check_incident_status,
    check_lease,
    check_limit,
    check_new_incident,
    check_notification,
    error_text,
    incident_from_row,
    notification_from_row,
    record_from_row,
)
from durable_ir.ledger.migrations import MIGRATIONS_TABLE, Migration, pending_migrations
from durable_ir.ledger.ownership import SqlOwnership
from durable_ir.records import (
    ApprovalRecord,
    ApprovalStatus,
    IncidentRecord,
    IncidentState,
    NewApproval,
    NewIncident,
    NotificationRecord,
    PendingGroup,
    RunLease,
)

__all__ = ["SQLITE_MIGRATIONS", "SQLITE_SCHEMA", "SqliteLedger", "to_epoch_us"]

_LEDGER_V1 = """
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
    graph_version TEXT,
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

CREATE TABLE IF NOT EXISTS durable_ir_incidents (
    incident_id     TEXT PRIMARY KEY,
    graph           TEXT NOT NULL,
    fingerprint     TEXT,
    title           TEXT NOT NULL DEFAULT '',
    service         TEXT,
    severity        TEXT,
    alert           TEXT,
    status          TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    alerts_received INTEGER NOT NULL DEFAULT 1,
    opened_at       INTEGER NOT NULL,
    last_alert_at   INTEGER NOT NULL,
    started_at      INTEGER,
    closed_at       INTEGER,
    outcome         TEXT,
    lease_owner     TEXT,
    lease_expires_at INTEGER,
    run_attempts    INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    pruned_at       INTEGER,
    graph_version   TEXT,
    CHECK ((status = 'closed') = (closed_at IS NOT NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS durable_ir_incidents_open_fingerprint
    ON durable_ir_incidents (fingerprint) WHERE status = 'open' AND fingerprint IS NOT NULL;
CREATE INDEX IF NOT EXISTS durable_ir_incidents_by_opened
    ON durable_ir_incidents (opened_at DESC, incident_id DESC);
CREATE INDEX IF NOT EXISTS durable_ir_incidents_unstarted
    ON durable_ir_incidents (opened_at) WHERE started_at IS NULL AND status = 'open';
CREATE INDEX IF NOT EXISTS durable_ir_incidents_prunable
    ON durable_ir_incidents (closed_at) WHERE status = 'closed' AND pruned_at IS NULL;
CREATE INDEX IF NOT EXISTS durable_ir_incidents_leased
    ON durable_ir_incidents (lease_expires_at)
    WHERE status = 'open' AND lease_expires_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS durable_ir_notifications (
    key         TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL,
    kind        TEXT NOT NULL,
    channel     TEXT NOT NULL,
    sent_at     INTEGER NOT NULL,
    result      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS durable_ir_notifications_by_incident
    ON durable_ir_notifications (incident_id, sent_at);
"""
"""The ledger as the releases before the version table left it (migration 1); columns older
releases lacked are added first (``_ADDED_COLUMNS``)."""

_OWNERSHIP_V2 = """
CREATE TABLE IF NOT EXISTS durable_ir_owners (
    incident_id TEXT PRIMARY KEY,
    owner       TEXT,
    epoch       INTEGER NOT NULL,
    expires_at  INTEGER
);

CREATE TABLE IF NOT EXISTS durable_ir_step_claims (
    incident_id TEXT NOT NULL,
    step_key    TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    owner       TEXT NOT NULL,
    claimed_at  INTEGER NOT NULL,
    finished_at INTEGER,
    ok          INTEGER,
    detail      TEXT,
    PRIMARY KEY (incident_id, step_key, epoch)
);
"""
"""Ownership leases with a fencing epoch, and step claims (migration 2)."""

SQLITE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "ledger", _LEDGER_V1),
    Migration(2, "ownership", _OWNERSHIP_V2),
)
"""The schema, in order (see :mod:`durable_ir.ledger.migrations`)."""

SQLITE_SCHEMA = "\n".join(m.script for m in SQLITE_MIGRATIONS)
"""Every migration's DDL in one script: the schema as this release creates it."""

_MIGRATIONS_DDL = f"""
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at INTEGER NOT NULL
);
"""
_SCHEMA_VERSION = f"SELECT coalesce(max(version), 0) FROM {MIGRATIONS_TABLE}"

_TOO_LATE = ":late AND deadline_at <= :at"
_DECIDE_SET = (
    f"status = CASE WHEN {_TOO_LATE} THEN 'expired' ELSE :status END,"
    f" decided_by = CASE WHEN {_TOO_LATE} THEN :late_by ELSE :by END,"
    " decided_at = :at,"
    f" reason = CASE WHEN {_TOO_LATE} THEN :late_reason ELSE :reason END,"
    f" edited_plan = CASE WHEN {_TOO_LATE} THEN NULL ELSE :plan END"
)
"""A decision's compare-and-set: the decision, or the expiry if it came too late
(:class:`~durable_ir.ledger.base.LateDecision`)."""
_IN_CHUNK = 500
"""Ids per ``IN (…)`` list: well under SQLite's bound-parameter limit."""
_COLUMNS = (
    "approval_id, incident_id, graph, node, request, severity, requested_at, deadline_at,"
    " status, decided_by, decided_at, reason, edited_plan, applied_at, next_due_at,"
    " reminders_sent, graph_version"
)

_INCIDENT_COLUMNS = (
    "incident_id, graph, fingerprint, title, service, severity, alert, status,"
    " alerts_received, opened_at, last_alert_at, started_at, closed_at, outcome,"
    " lease_owner, lease_expires_at, run_attempts, last_error, pruned_at, graph_version"
)
_ADDED_COLUMNS = {
    "durable_ir_incidents": {
        "lease_owner": "TEXT",
        "lease_expires_at": "INTEGER",
        "run_attempts": "INTEGER NOT NULL DEFAULT 0",
        "last_error": "TEXT",
        "pruned_at": "INTEGER",
        "graph_version": "TEXT",
    },
    "durable_ir_approvals": {"graph_version": "TEXT"},
}
"""Columns tables made before leases, retention and graph versions existed get at setup."""
_VERSION_KEY = "(graph || char(31) || coalesce(graph_version, ''))"
"""The SQL twin of :func:`durable_ir.records.version_key`."""
_IN_RUNNABLE = f"{_VERSION_KEY} IN (SELECT value FROM json_each(?))"
"""Matches the graph versions in a JSON array parameter."""
_RELEASE_LEASE = "lease_owner = NULL, lease_expires_at = NULL, run_attempts = 0, last_error = NULL"
"""What a run that paused or ended leaves of its lease: nothing."""
_NOTIFICATION_COLUMNS = "key, incident_id, kind, channel, sent_at, result"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_epoch_us(moment: datetime) -> int:
    """An aware datetime as integer microseconds since the Unix epoch (exact, no float)."""
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


class SqliteLedger(SqlOwnership):
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

    @asynccontextmanager
    async def _write_transaction(self) -> AsyncIterator[None]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` under the connection's lock, rolled back on any
        error, cancellation included.

        aiosqlite finishes a statement on its thread even when the task awaiting it is
        cancelled, and runs the next one after it: a cancelled ``BEGIN`` still opens the
        transaction (the rollback closes it, rather than leaving the write lock held), and a
        cancelled ``COMMIT`` still commits (the rollback then finds no transaction, and the
        cancellation — not the rollback's error — is what propagates)."""
        async with self._lock:
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
                yield
                await self._conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.OperationalError):
                    await self._conn.execute("ROLLBACK")
                raise

    async def setup(self) -> None:
        """Apply the migrations this database lacks, each in one ``BEGIN IMMEDIATE``
        transaction with its version row (so several processes may set up at once: the
        DDL is idempotent and the version row is inserted once)."""
        async with self._lock:
            await self._conn.executescript(_MIGRATIONS_DDL)
            async with self._conn.execute(_SCHEMA_VERSION) as cur:
                row = await cur.fetchone()
            current = int(row[0]) if row else 0
            for migration in pending_migrations(current, SQLITE_MIGRATIONS):
                if migration.version == 1:
                    await self._add_missing_columns()
                record = (
                    f"INSERT OR IGNORE INTO {MIGRATIONS_TABLE} (version, name, applied_at)"
                    f" VALUES ({migration.version}, '{migration.name}',"
                    f" {to_epoch_us(datetime.now(UTC))});"
                )
                try:
                    await self._conn.executescript(
                        f"BEGIN IMMEDIATE;\n{migration.script}\n{record}\nCOMMIT;"
                    )
                except BaseException:
                    with contextlib.suppress(sqlite3.OperationalError):
                        await self._conn.execute("ROLLBACK")
                    raise

    async def _add_missing_columns(self) -> None:
        """Tables made before leases, retention and graph versions get their columns."""
        for table, added in _ADDED_COLUMNS.items():
            async with self._conn.execute(f"PRAGMA table_info({table})") as cur:
                existing = {row[1] for row in await cur.fetchall()}
            if existing:  # an older table: add the newer columns first
                for column, kind in added.items():
                    if column not in existing:
                        await self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    async def schema_version(self) -> int:
        async with self._lock, self._conn.execute(_SCHEMA_VERSION) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

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
                "  requested_at, deadline_at, next_due_at, graph_version)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    new.graph_version,
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

    async def latest_many(self, incident_ids: Sequence[str]) -> dict[str, ApprovalRecord]:
        unique = list(dict.fromkeys(incident_ids))
        found: dict[str, ApprovalRecord] = {}
        for start in range(0, len(unique), _IN_CHUNK):
            chunk = unique[start : start + _IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            rows = await self._all(
                f"SELECT {_COLUMNS} FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY incident_id"
                " ORDER BY requested_at DESC, approval_id DESC) AS newest"
                f" FROM durable_ir_approvals WHERE incident_id IN ({marks})) WHERE newest = 1",
                tuple(chunk),
            )
            found.update((row.incident_id, row) for row in rows)
        return found

    async def record_decision(
        self, approval_id: str, decision: DecisionWrite, lease: RunLease | None = None
    ) -> tuple[bool, ApprovalRecord]:
        if lease is not None:
            check_lease(lease)
        late = decision.late
        async with self._write_transaction():
            cur = await self._conn.execute(
                f"UPDATE durable_ir_approvals SET {_DECIDE_SET}"
                " WHERE approval_id = :id AND status = 'pending'",
                {
                    "late": late is not None,
                    "at": to_epoch_us(decision.decided_at),
                    "status": decision.status.value,
                    "by": decision.decided_by,
                    "reason": decision.reason,
                    "plan": (
                        None if decision.edited_plan is None else json.dumps(decision.edited_plan)
                    ),
                    "late_by": late.decided_by if late else None,
                    "late_reason": late.reason if late else None,
                    "id": approval_id,
                },
            )
            won = cur.rowcount == 1
            async with self._conn.execute(
                f"SELECT {_COLUMNS} FROM durable_ir_approvals WHERE approval_id = ?",
                (approval_id,),
            ) as read:
                row = await read.fetchone()
            if won and lease is not None and row is not None:
                await self._lease(row["incident_id"], lease)
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

    async def _lease(self, incident_id: str, lease: RunLease) -> None:
        """Give an open incident ``lease`` (call inside a transaction, with the lock held)."""
        await self._conn.execute(
            "UPDATE durable_ir_incidents SET lease_owner = ?, lease_expires_at = ?"
            " WHERE incident_id = ? AND status = 'open'",
            (lease.owner, to_epoch_us(lease.expires_at), incident_id),
        )

    async def unapplied(self, limit: int = 100) -> list[ApprovalRecord]:
        return await self._all(
            f"SELECT {_COLUMNS} FROM durable_ir_approvals a"
            " WHERE status <> 'pending' AND applied_at IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM durable_ir_incidents i"
            "  WHERE i.incident_id = a.incident_id AND i.status = 'open'"
            "  AND i.lease_expires_at IS NOT NULL)"
            " ORDER BY decided_at LIMIT ?",
            (limit,),
        )

    async def expire_due(
        self,
        now: datetime,
        limit: int,
        decided_by: str,
        reason: Callable[[ApprovalRecord], str],
        lease: RunLease | None = None,
        runnable: Sequence[str] | None = None,
    ) -> list[ApprovalRecord]:
        if lease is not None:
            check_lease(lease)
        expired: list[ApprovalRecord] = []
        only = "" if runnable is None else f" AND {_IN_RUNNABLE}"
        params: tuple[Any, ...] = (to_epoch_us(now),)
        params += () if runnable is None else (json.dumps(list(runnable)),)
        async with self._write_transaction():
            # BEGIN IMMEDIATE takes SQLite's single write lock: sweepers in other processes
            # wait here, then find these rows no longer pending.
            async with self._conn.execute(
                f"SELECT {_COLUMNS} FROM durable_ir_approvals"
                f" WHERE status = 'pending' AND deadline_at <= ?{only}"
                " ORDER BY deadline_at LIMIT ?",
                (*params, limit),
            ) as cur:
                due = [record_from_row(dict(r), json_as_text=True) for r in await cur.fetchall()]
            for row in due:
                why = reason(row)
                done = await self._conn.execute(
                    "UPDATE durable_ir_approvals"
                    " SET status = 'expired', decided_by = ?, decided_at = ?, reason = ?"
                    " WHERE approval_id = ? AND status = 'pending'",
                    (decided_by, to_epoch_us(now), why, row.approval_id),
                )
                if done.rowcount == 1:
                    if lease is not None:
                        await self._lease(row.incident_id, lease)
                    expired.append(
                        replace(
                            row,
                            status=ApprovalStatus.EXPIRED,
                            decided_by=decided_by,
                            decided_at=now,
                            reason=why,
                        )
                    )
        return expired

    async def overdue_elsewhere(
        self, now: datetime, runnable: Sequence[str], limit: int
    ) -> list[ApprovalRecord]:
        return await self._all(
            f"SELECT {_COLUMNS} FROM durable_ir_approvals"
            f" WHERE status = 'pending' AND deadline_at <= ? AND NOT {_IN_RUNNABLE}"
            " ORDER BY deadline_at LIMIT ?",
            (to_epoch_us(now), json.dumps(list(runnable)), limit),
        )

    async def pending_groups(self) -> list[PendingGroup]:
        async with (
            self._lock,
            self._conn.execute(
                "SELECT severity, graph_version, count(*), min(deadline_at)"
                " FROM durable_ir_approvals WHERE status = 'pending'"
                " GROUP BY severity, graph_version ORDER BY severity, graph_version"
            ) as cur,
        ):
            rows = await cur.fetchall()
        return [
            PendingGroup(
                r[0],
                r[1],
                int(r[2]),
                None if r[3] is None else _EPOCH + timedelta(microseconds=r[3]),
            )
            for r in rows
        ]

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

    # --- incident index -----------------------------------------------------------------

    async def _incidents(self, query: str, params: tuple[Any, ...]) -> list[IncidentRecord]:
        async with self._lock, self._conn.execute(query, params) as cur:
            rows = await cur.fetchall()
        return [incident_from_row(dict(r), json_as_text=True) for r in rows]

    async def _fetch_incident(self, incident_id: str) -> dict[str, Any] | None:
        """The row, read on the connection as it is (call with the lock held)."""
        async with self._conn.execute(
            f"SELECT {_INCIDENT_COLUMNS} FROM durable_ir_incidents WHERE incident_id = ?",
            (incident_id,),
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else dict(row)

    async def open_incident(self, new: NewIncident) -> tuple[bool, IncidentRecord]:
        check_new_incident(new)
        opened_at = to_epoch_us(new.opened_at)
        async with self._write_transaction():
            # The write lock first: another process's open_incident waits here, then sees
            # this one's row (the partial unique index is the backstop, not the mechanism).
            inserted = False
            open_id = None
            if new.fingerprint is not None:
                async with self._conn.execute(
                    "SELECT incident_id FROM durable_ir_incidents"
                    " WHERE fingerprint = ? AND status = 'open'",
                    (new.fingerprint,),
                ) as cur:
                    found = await cur.fetchone()
                open_id = None if found is None else found[0]
            if open_id is not None:
                await self._conn.execute(
                    "UPDATE durable_ir_incidents"
                    " SET alerts_received = alerts_received + 1,"
                    "     last_alert_at = max(last_alert_at, ?)"
                    " WHERE incident_id = ?",
                    (opened_at, open_id),
                )
            else:
                open_id = new.incident_id
                cur = await self._conn.execute(
                    "INSERT INTO durable_ir_incidents"
                    " (incident_id, graph, fingerprint, title, service, severity, alert,"
                    "  status, alerts_received, opened_at, last_alert_at,"
                    "  lease_owner, lease_expires_at, graph_version)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, 'open', 1, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (incident_id) DO NOTHING",
                    (
                        new.incident_id,
                        new.graph,
                        new.fingerprint,
                        new.title,
                        new.service,
                        new.severity,
                        None if new.alert is None else json.dumps(new.alert),
                        opened_at,
                        opened_at,
                        new.lease.owner if new.lease else None,
                        to_epoch_us(new.lease.expires_at) if new.lease else None,
                        new.graph_version,
                    ),
                )
                inserted = cur.rowcount == 1
            row = await self._fetch_incident(open_id)
        assert row is not None
        return inserted, incident_from_row(row, json_as_text=True)

    async def mark_incident_started(self, incident_id: str, at: datetime) -> None:
        check_aware("at", at)
        async with self._lock:
            await self._conn.execute(
                "UPDATE durable_ir_incidents SET started_at = ?"
                " WHERE incident_id = ? AND started_at IS NULL",
                (to_epoch_us(at), incident_id),
            )

    async def close_incident(
        self, incident_id: str, outcome: str, at: datetime
    ) -> IncidentRecord | None:
        check_aware("at", at)
        async with self._write_transaction():
            await self._conn.execute(
                "UPDATE durable_ir_incidents"
                " SET status = 'closed', closed_at = ?, outcome = ?,"
                f" started_at = coalesce(started_at, ?), {_RELEASE_LEASE}"
                " WHERE incident_id = ? AND status = 'open'",
                (to_epoch_us(at), outcome, to_epoch_us(at), incident_id),
            )
            row = await self._fetch_incident(incident_id)
        return None if row is None else incident_from_row(row, json_as_text=True)

    async def get_incident(self, incident_id: str) -> IncidentRecord | None:
        rows = await self._incidents(
            f"SELECT {_INCIDENT_COLUMNS} FROM durable_ir_incidents WHERE incident_id = ?",
            (incident_id,),
        )
        return rows[0] if rows else None

    async def list_incidents(
        self, *, status: IncidentState | None = None, limit: int = 100
    ) -> list[IncidentRecord]:
        status = check_incident_status(status)
        check_limit(limit)
        if status is None:
            return await self._incidents(
                f"SELECT {_INCIDENT_COLUMNS} FROM durable_ir_incidents"
                " ORDER BY opened_at DESC, incident_id DESC LIMIT ?",
                (limit,),
            )
        return await self._incidents(
            f"SELECT {_INCIDENT_COLUMNS} FROM durable_ir_incidents WHERE status = ?"
            " ORDER BY opened_at DESC, incident_id DESC LIMIT ?",
            (status, limit),
        )

    async def _sql_rows(self, query: str, params: Sequence[Any]) -> list[Mapping[str, Any]]:
        async with self._lock, self._conn.execute(query.replace("%s", "?"), params) as cur:
            return [dict(row) for row in await cur.fetchall()]

    async def _sql_write(self, query: str, params: Sequence[Any]) -> int:
        return await self._write(query.replace("%s", "?"), tuple(params))

    def _sql_time(self, moment: datetime) -> int:
        return to_epoch_us(moment)

    def _sql_datetime(self, value: Any) -> datetime | None:
        return as_datetime(value)

    async def _write(self, query: str, params: tuple[Any, ...]) -> int:
        async with self._lock:
            cur = await self._conn.execute(query, params)
            return cur.rowcount

    async def settle_run(self, incident_id: str, at: datetime) -> None:
        check_aware("at", at)
        await self._write(
            f"UPDATE durable_ir_incidents SET started_at = coalesce(started_at, ?),"
            f" {_RELEASE_LEASE} WHERE incident_id = ?",
            (to_epoch_us(at), incident_id),
        )

    async def fail_run(self, incident_id: str, error: str, retry_at: datetime) -> None:
        check_aware("retry_at", retry_at)
        await self._write(
            "UPDATE durable_ir_incidents SET lease_owner = NULL, lease_expires_at = ?,"
            " last_error = ? WHERE incident_id = ? AND status = 'open'",
            (to_epoch_us(retry_at), error_text(error), incident_id),
        )

    async def extend_leases(
        self, incident_ids: Sequence[str], owner: str, expires_at: datetime
    ) -> int:
        check_lease(RunLease(owner, expires_at))
        extended = 0
        ids = list(dict.fromkeys(incident_ids))
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            extended += await self._write(
                "UPDATE durable_ir_incidents SET lease_owner = ?, lease_expires_at = ?"
                f" WHERE incident_id IN ({', '.join('?' * len(chunk))}) AND status = 'open'"
                " AND lease_expires_at IS NOT NULL AND (lease_owner IS NULL OR lease_owner = ?)",
                (owner, to_epoch_us(expires_at), *chunk, owner),
            )
        return extended

    async def claim_expired_runs(
        self,
        now: datetime,
        lease: RunLease,
        limit: int,
        runnable: Sequence[str] | None = None,
    ) -> list[IncidentRecord]:
        check_aware("now", now)
        check_lease(lease)
        check_limit(limit)
        only = "" if runnable is None else f" AND {_IN_RUNNABLE}"
        params: tuple[Any, ...] = (to_epoch_us(now),)
        params += () if runnable is None else (json.dumps(list(runnable)),)
        # SQLite's single write lock serialises claimers across processes: each sees the rows
        # the one before it claimed as leased to the future.
        async with (
            self._write_transaction(),
            self._conn.execute(
                f"UPDATE durable_ir_incidents SET lease_owner = ?, lease_expires_at = ?"
                " WHERE incident_id IN (SELECT incident_id FROM durable_ir_incidents"
                f"  WHERE status = 'open' AND lease_expires_at <= ?{only}"
                "  ORDER BY lease_expires_at LIMIT ?)"
                f" RETURNING {_INCIDENT_COLUMNS}",
                (lease.owner, to_epoch_us(lease.expires_at), *params, limit),
            ) as cur,
        ):
            rows = [dict(r) for r in await cur.fetchall()]
        claimed = [incident_from_row(r, json_as_text=True) for r in rows]
        return sorted(claimed, key=lambda r: (r.opened_at, r.incident_id))

    async def leased_incidents(self, limit: int) -> list[IncidentRecord]:
        check_limit(limit)
        return await self._incidents(
            f"SELECT {_INCIDENT_COLUMNS} FROM durable_ir_incidents"
            " WHERE status = 'open' AND lease_expires_at IS NOT NULL"
            " ORDER BY lease_expires_at, incident_id LIMIT ?",
            (limit,),
        )

    async def count_run_attempt(self, incident_id: str) -> int:
        async with (
            self._lock,
            self._conn.execute(
                "UPDATE durable_ir_incidents SET run_attempts = run_attempts + 1"
                " WHERE incident_id = ? RETURNING run_attempts",
                (incident_id,),
            ) as cur,
        ):
            row = await cur.fetchone()
        return 0 if row is None else int(row[0])

    async def prunable_incidents(self, closed_before: datetime, limit: int) -> list[IncidentRecord]:
        check_aware("closed_before", closed_before)
        check_limit(limit)
        return await self._incidents(
            f"SELECT {_INCIDENT_COLUMNS} FROM durable_ir_incidents"
            " WHERE status = 'closed' AND pruned_at IS NULL AND closed_at <= ?"
            " ORDER BY closed_at, incident_id LIMIT ?",
            (to_epoch_us(closed_before), limit),
        )

    async def mark_pruned(self, incident_id: str, at: datetime) -> None:
        check_aware("at", at)
        await self._write(
            "UPDATE durable_ir_incidents SET pruned_at = ?"
            " WHERE incident_id = ? AND status = 'closed' AND pruned_at IS NULL",
            (to_epoch_us(at), incident_id),
        )

    async def unstarted_incidents(
        self, opened_before: datetime, limit: int = 100
    ) -> list[IncidentRecord]:
        check_aware("opened_before", opened_before)
        check_limit(limit)
        return await self._incidents(
            f"SELECT {_INCIDENT_COLUMNS} FROM durable_ir_incidents"
            " WHERE started_at IS NULL AND status = 'open' AND opened_at <= ?"
            " ORDER BY opened_at, incident_id LIMIT ?",
            (to_epoch_us(opened_before), limit),
        )

    async def move_to_version(
        self, incident_id: str, graph: str, from_version: str | None, to_version: str
    ) -> bool:
        async with self._write_transaction():
            cur = await self._conn.execute(
                "UPDATE durable_ir_incidents SET graph_version = ?"
                " WHERE incident_id = ? AND graph = ? AND status = 'open'"
                " AND graph_version IS ?",
                (to_version, incident_id, graph, from_version),
            )
            if cur.rowcount != 1:
                return False
            await self._conn.execute(
                "UPDATE durable_ir_approvals SET graph_version = ?"
                " WHERE incident_id = ? AND graph = ? AND applied_at IS NULL",
                (to_version, incident_id, graph),
            )
        return True

    async def open_on_version(
        self, graph: str, version: str | None, limit: int
    ) -> list[IncidentRecord]:
        check_limit(limit)
        return await self._incidents(
            f"SELECT {_INCIDENT_COLUMNS} FROM durable_ir_incidents"
            " WHERE status = 'open' AND graph = ? AND graph_version IS ?"
            " ORDER BY opened_at, incident_id LIMIT ?",
            (graph, version, limit),
        )

    async def version_census(self) -> list[VersionCount]:
        async with (
            self._lock,
            self._conn.execute(
                "SELECT i.graph, i.graph_version, count(*) AS open,"
                " sum(EXISTS (SELECT 1 FROM durable_ir_approvals a"
                "  WHERE a.incident_id = i.incident_id AND a.status = 'pending')) AS awaiting"
                " FROM durable_ir_incidents i WHERE i.status = 'open'"
                " GROUP BY i.graph, i.graph_version ORDER BY i.graph, i.graph_version"
            ) as cur,
        ):
            rows = await cur.fetchall()
        return [VersionCount(r[0], r[1], int(r[2]), int(r[3] or 0)) for r in rows]

    # --- notification outbox --------------------------------------------------------------

    async def _notifications(self, query: str, params: tuple[Any, ...]) -> list[NotificationRecord]:
        async with self._lock, self._conn.execute(query, params) as cur:
            rows = await cur.fetchall()
        return [notification_from_row(dict(r), json_as_text=True) for r in rows]

    async def get_notification(self, key: str) -> NotificationRecord | None:
        rows = await self._notifications(
            f"SELECT {_NOTIFICATION_COLUMNS} FROM durable_ir_notifications WHERE key = ?", (key,)
        )
        return rows[0] if rows else None

    async def record_notification(self, record: NotificationRecord) -> NotificationRecord:
        check_notification(record)
        async with self._lock:
            await self._conn.execute(
                "INSERT INTO durable_ir_notifications"
                " (key, incident_id, kind, channel, sent_at, result) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (key) DO NOTHING",
                (
                    record.key,
                    record.incident_id,
                    record.kind,
                    record.channel,
                    to_epoch_us(record.sent_at),
                    json.dumps(record.result),
                ),
            )
        # A row is never updated or deleted, so a plain read returns the first writer's.
        stored = await self.get_notification(record.key)
        assert stored is not None
        return stored

    async def list_notifications(self, incident_id: str) -> list[NotificationRecord]:
        return await self._notifications(
            f"SELECT {_NOTIFICATION_COLUMNS} FROM durable_ir_notifications"
            " WHERE incident_id = ? ORDER BY sent_at, key",
            (incident_id,),
        )
