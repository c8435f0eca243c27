"""The approval ledger in SQLite, in the same file as the LangGraph checkpoints.

The connection runs in autocommit mode; the decision compare-and-set takes SQLite's write lock
with ``BEGIN IMMEDIATE``, which serialises it against every other process using the file.
Timestamps are stored as integer microseconds since the epoch (UTC), so they sort and index
exactly. Opening an incident takes the same write lock, so that alerts with one fingerprint
attach to one open incident across processes.

The statements both backends share are in :mod:`durable_ir.ledger.sql`; this module holds
the schema, the driver (one connection behind a lock, ``%s`` turned into ``?``, JSON as
text, ``IN (…)`` lists in chunks) and the methods SQLite does its own way, each in one
``BEGIN IMMEDIATE`` transaction: the compare-and-set, the SLA sweep, lease claims and
opening an incident.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosqlite

from durable_ir.ledger.base import (
    DecisionWrite,
    check_lease,
    check_new_incident,
)
from durable_ir.ledger.migrations import MIGRATIONS_TABLE, Migration, pending_migrations
from durable_ir.ledger.ownership import SqlParams
from durable_ir.ledger.sql import (
    APPROVAL_VALUES,
    DUE_APPROVALS,
    DUE_RUNS,
    GET_APPROVAL,
    GET_INCIDENT,
    INCIDENT_COLUMNS,
    INCIDENT_VALUES,
    LEASE,
    SCHEMA_VERSION,
    SqlLedger,
    SqlSession,
)
from durable_ir.records import (
    ApprovalRecord,
    ApprovalStatus,
    IncidentRecord,
    NewApproval,
    NewIncident,
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

_LIFECYCLE_V3 = """
CREATE TABLE IF NOT EXISTS durable_ir_firings (
    fingerprint TEXT NOT NULL,
    starts_at   INTEGER NOT NULL,
    incident_id TEXT NOT NULL,
    PRIMARY KEY (fingerprint, starts_at)
);

CREATE TABLE IF NOT EXISTS durable_ir_alert_events (
    event_id    INTEGER PRIMARY KEY,
    incident_id TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('fired', 'repeated', 'resolved')),
    fingerprint TEXT NOT NULL,
    starts_at   INTEGER NOT NULL,
    at          INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS durable_ir_alert_events_by_incident
    ON durable_ir_alert_events (incident_id, event_id);
"""
"""The alert lifecycle (migration 3): each firing (fingerprint, ``startsAt``) and the
incident it reached, so that its repeats attach there even after the incident closed; and
each incident's alert events (fired, repeated, resolved)."""

SQLITE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "ledger", _LEDGER_V1),
    Migration(2, "ownership", _OWNERSHIP_V2),
    Migration(3, "alert lifecycle", _LIFECYCLE_V3),
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

_DECIDE = (
    f"UPDATE durable_ir_approvals SET {_DECIDE_SET} WHERE approval_id = :id AND status = 'pending'"
)

_EXPIRE = (
    "UPDATE durable_ir_approvals SET status = 'expired', decided_by = %s, decided_at = %s,"
    " reason = %s WHERE approval_id = %s AND status = 'pending'"
)

_LEASE_ONE = LEASE.format(ids="= %s")

_REGISTER = f"INSERT OR IGNORE INTO durable_ir_approvals {APPROVAL_VALUES}"

_OPEN_WITH_FINGERPRINT = (
    "SELECT incident_id FROM durable_ir_incidents WHERE fingerprint = %s AND status = 'open'"
)

_ANOTHER_ALERT = (
    "UPDATE durable_ir_incidents"
    " SET alerts_received = alerts_received + 1, last_alert_at = max(last_alert_at, %s)"
    " WHERE incident_id = %s"
)

_OPEN_INCIDENT = (
    f"INSERT INTO durable_ir_incidents {INCIDENT_VALUES} ON CONFLICT (incident_id) DO NOTHING"
)

_CLAIM_RUNS = (
    "UPDATE durable_ir_incidents SET lease_owner = %s, lease_expires_at = %s"
    f" WHERE incident_id IN ({DUE_RUNS}) RETURNING {INCIDENT_COLUMNS}"
)

_IN_CHUNK = 500
"""Ids per ``IN (…)`` list: well under SQLite's bound-parameter limit."""
_VERSION_KEY = "(graph || char(31) || coalesce(graph_version, ''))"
"""The SQL twin of :func:`durable_ir.records.version_key`."""


def to_epoch_us(moment: datetime) -> int:
    """An aware datetime as integer microseconds since the Unix epoch (exact, no float)."""
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _qmark(query: str) -> str:
    """``query`` with SQLite's placeholders (named ``:name`` ones are left as they are)."""
    return query.replace("%s", "?")


class _Session:
    """Statements on the ledger's connection (:class:`~durable_ir.ledger.sql.SqlSession`);
    the caller holds the connection's lock."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def rows(self, query: str, params: SqlParams = ()) -> list[Mapping[str, Any]]:
        async with self._conn.execute(_qmark(query), params) as cur:
            return [dict(row) for row in await cur.fetchall()]

    async def write(self, query: str, params: SqlParams = ()) -> int:
        cur = await self._conn.execute(_qmark(query), params)
        return cur.rowcount


class SqliteLedger(SqlLedger):
    """Approval ledger on its own aiosqlite connection (``isolation_level=None``).

    Example::

        conn = await aiosqlite.connect("incidents.db", isolation_level=None)
        ledger = SqliteLedger(conn)
        await ledger.setup()
    """

    _JSON_AS_TEXT = True
    _SAME = "IS"

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._conn.row_factory = aiosqlite.Row
        # One connection, many coroutines: transactions must not interleave on it.
        self._lock = asyncio.Lock()
        self._session = _Session(conn)

    @asynccontextmanager
    async def _write_transaction(self) -> AsyncIterator[_Session]:
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
                yield self._session
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
            async with self._conn.execute(SCHEMA_VERSION) as cur:
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

    # --- the driver -----------------------------------------------------------------------

    async def _sql_rows(self, query: str, params: SqlParams) -> list[Mapping[str, Any]]:
        async with self._lock:
            return await self._session.rows(query, params)

    async def _sql_write(self, query: str, params: SqlParams) -> int:
        async with self._lock:
            return await self._session.write(query, params)

    def _sql_transaction(self) -> AbstractAsyncContextManager[_Session]:
        return self._write_transaction()

    def _sql_time(self, moment: datetime) -> int:
        return to_epoch_us(moment)

    async def _lock_fingerprint(self, tx: SqlSession, fingerprint: str) -> None:
        """Nothing more to take: the transaction's ``BEGIN IMMEDIATE`` holds SQLite's one
        write lock, which serialises every writer of the file."""

    def _sql_json(self, value: Any) -> str:
        return json.dumps(value)

    def _sql_in(self, ids: Sequence[str]) -> list[tuple[str, tuple[Any, ...]]]:
        unique = list(dict.fromkeys(ids))
        chunks = (unique[start : start + _IN_CHUNK] for start in range(0, len(unique), _IN_CHUNK))
        return [(f"IN ({', '.join(['%s'] * len(chunk))})", tuple(chunk)) for chunk in chunks]

    def _sql_runnable(self, runnable: Sequence[str]) -> tuple[str, tuple[Any, ...]]:
        # The graph versions in one JSON array parameter.
        return f"{_VERSION_KEY} IN (SELECT value FROM json_each(%s))", (json.dumps(list(runnable)),)

    # --- what SQLite does its own way -----------------------------------------------------

    async def register(self, new: NewApproval) -> ApprovalRecord:
        await self._sql_write(_REGISTER, self._approval_params(new))
        row = await self.get(new.approval_id)
        assert row is not None
        return row

    async def _lease(self, tx: _Session, incident_id: str, lease: RunLease) -> None:
        """Give an open incident ``lease`` (inside a write transaction)."""
        await tx.write(_LEASE_ONE, (lease.owner, to_epoch_us(lease.expires_at), incident_id))

    async def record_decision(
        self, approval_id: str, decision: DecisionWrite, lease: RunLease | None = None
    ) -> tuple[bool, ApprovalRecord]:
        if lease is not None:
            check_lease(lease)
        async with self._write_transaction() as tx:
            won = await tx.write(_DECIDE, self._decision_params(approval_id, decision)) == 1
            rows = await tx.rows(GET_APPROVAL, (approval_id,))
            if won and lease is not None and rows:
                await self._lease(tx, rows[0]["incident_id"], lease)
        if not rows:
            raise LookupError(approval_id)
        return won, self._approval(rows[0])

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
        only, among = self._only_runnable(runnable)
        at = to_epoch_us(now)
        async with self._write_transaction() as tx:
            # BEGIN IMMEDIATE takes SQLite's single write lock: sweepers in other processes
            # wait here, then find these rows no longer pending.
            rows = await tx.rows(DUE_APPROVALS.format(only=only), (at, *among, limit))
            for row in map(self._approval, rows):
                why = reason(row)
                if await tx.write(_EXPIRE, (decided_by, at, why, row.approval_id)) == 1:
                    if lease is not None:
                        await self._lease(tx, row.incident_id, lease)
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

    async def open_incident(self, new: NewIncident) -> tuple[bool, IncidentRecord]:
        check_new_incident(new)
        params = self._incident_params(new)
        async with self._write_transaction() as tx:
            # The write lock first: another process's open_incident waits here, then sees
            # this one's row (the partial unique index is the backstop, not the mechanism).
            inserted = False
            open_id = None
            if new.fingerprint is not None:
                found = await tx.rows(_OPEN_WITH_FINGERPRINT, (new.fingerprint,))
                open_id = found[0]["incident_id"] if found else None
            if open_id is not None:
                await tx.write(_ANOTHER_ALERT, (to_epoch_us(new.opened_at), open_id))
            else:
                open_id = new.incident_id
                inserted = await tx.write(_OPEN_INCIDENT, params) == 1
            rows = await tx.rows(GET_INCIDENT, (open_id,))
        assert rows
        return inserted, self._incident(rows[0])

    async def _claim_due_runs(self, only: str, params: tuple[Any, ...]) -> list[Mapping[str, Any]]:
        # SQLite's single write lock serialises claimers across processes: each sees the rows
        # the one before it claimed as leased to the future.
        async with self._write_transaction() as tx:
            return await tx.rows(_CLAIM_RUNS.format(only=only), params)
