"""The approval ledger in PostgreSQL, in the same database as the LangGraph checkpoints.

Every statement runs in autocommit mode on a pooled connection. The decision
compare-and-set is one ``UPDATE … WHERE status = 'pending' RETURNING *``: PostgreSQL's row
lock makes exactly one concurrent writer see the pending row, in any number of processes.
Opening an incident is one ``INSERT … ON CONFLICT (fingerprint) … DO UPDATE`` against the
partial unique index on open fingerprints, which makes alerts with one fingerprint attach to
one open incident, in any number of processes.

The statements both backends share are in :mod:`durable_ir.ledger.sql`; this module holds
the schema, the driver (a pooled connection per statement, ``jsonb`` parameters,
``= ANY(%s)`` lists) and the methods PostgreSQL does its own way: the compare-and-set and
the SLA sweep and lease claims (``FOR UPDATE SKIP LOCKED``), opening an incident, and
inserts that return the row already there in one round trip (DML in a CTE).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from durable_ir.ledger.base import (
    DecisionWrite,
    check_lease,
    check_new_incident,
    check_notification,
    check_take,
)
from durable_ir.ledger.migrations import MIGRATIONS_TABLE, Migration, pending_migrations
from durable_ir.ledger.ownership import CLAIM_STEP, SqlParams, steal_param, take_sql
from durable_ir.ledger.sql import (
    APPROVAL_COLUMNS,
    APPROVAL_VALUES,
    DUE_APPROVALS,
    DUE_RUNS,
    INCIDENT_COLUMNS,
    INCIDENT_VALUES,
    LEASE,
    NOTIFICATION_COLUMNS,
    NOTIFICATION_VALUES,
    SCHEMA_VERSION,
    SqlLedger,
    SqlSession,
    qualified,
)
from durable_ir.records import (
    ApprovalRecord,
    IncidentRecord,
    NewApproval,
    NewIncident,
    NotificationRecord,
    OwnershipTake,
    RunLease,
)

__all__ = ["POSTGRES_MIGRATIONS", "POSTGRES_SCHEMA", "PostgresLedger"]


_LEDGER_V1 = """
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
    graph_version text,
    CHECK ((status = 'pending') = (decided_at IS NULL))
);
-- Ledgers made before graph versions existed get the column here (NULL: unversioned).
ALTER TABLE durable_ir_approvals ADD COLUMN IF NOT EXISTS graph_version text;
CREATE INDEX IF NOT EXISTS durable_ir_approvals_by_incident
    ON durable_ir_approvals (incident_id, requested_at);
CREATE INDEX IF NOT EXISTS durable_ir_approvals_pending_by_deadline
    ON durable_ir_approvals (deadline_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS durable_ir_approvals_pending_by_next_due
    ON durable_ir_approvals (next_due_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS durable_ir_approvals_unapplied
    ON durable_ir_approvals (decided_at) WHERE status <> 'pending' AND applied_at IS NULL;

CREATE TABLE IF NOT EXISTS durable_ir_incidents (
    incident_id     text PRIMARY KEY,
    graph           text NOT NULL,
    fingerprint     text,
    title           text NOT NULL DEFAULT '',
    service         text,
    severity        text,
    alert           jsonb,
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    alerts_received integer NOT NULL DEFAULT 1,
    opened_at       timestamptz NOT NULL,
    last_alert_at   timestamptz NOT NULL,
    started_at      timestamptz,
    closed_at       timestamptz,
    outcome         text,
    lease_owner     text,
    lease_expires_at timestamptz,
    run_attempts    integer NOT NULL DEFAULT 0,
    last_error      text,
    pruned_at       timestamptz,
    graph_version   text,
    CHECK ((status = 'closed') = (closed_at IS NOT NULL))
);
-- Indexes made before leases, retention and graph versions existed get their columns here.
ALTER TABLE durable_ir_incidents
    ADD COLUMN IF NOT EXISTS lease_owner text,
    ADD COLUMN IF NOT EXISTS lease_expires_at timestamptz,
    ADD COLUMN IF NOT EXISTS run_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS last_error text,
    ADD COLUMN IF NOT EXISTS pruned_at timestamptz,
    ADD COLUMN IF NOT EXISTS graph_version text;
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
    key         text PRIMARY KEY,
    incident_id text NOT NULL,
    kind        text NOT NULL,
    channel     text NOT NULL,
    sent_at     timestamptz NOT NULL,
    result      jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS durable_ir_notifications_by_incident
    ON durable_ir_notifications (incident_id, sent_at);
"""
"""The ledger as the releases before the version table left it (migration 1): approvals,
the incident index, the outbox; columns older releases lacked are added in place."""

_OWNERSHIP_V2 = """
CREATE TABLE IF NOT EXISTS durable_ir_owners (
    incident_id text PRIMARY KEY,
    owner       text,
    epoch       bigint NOT NULL,
    expires_at  timestamptz
);

CREATE TABLE IF NOT EXISTS durable_ir_step_claims (
    incident_id text NOT NULL,
    step_key    text NOT NULL,
    epoch       bigint NOT NULL,
    owner       text NOT NULL,
    claimed_at  timestamptz NOT NULL,
    finished_at timestamptz,
    ok          boolean,
    detail      text,
    PRIMARY KEY (incident_id, step_key, epoch)
);
"""
"""Ownership leases with a fencing epoch, and step claims (migration 2)."""

_LIFECYCLE_V3 = """
CREATE TABLE IF NOT EXISTS durable_ir_firings (
    fingerprint text NOT NULL,
    starts_at   timestamptz NOT NULL,
    incident_id text NOT NULL,
    PRIMARY KEY (fingerprint, starts_at)
);

CREATE TABLE IF NOT EXISTS durable_ir_alert_events (
    event_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('fired', 'repeated', 'resolved')),
    fingerprint text NOT NULL,
    starts_at   timestamptz NOT NULL,
    at          timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS durable_ir_alert_events_by_incident
    ON durable_ir_alert_events (incident_id, event_id);
"""
"""The alert lifecycle (migration 3): each firing (fingerprint, ``startsAt``) and the
incident it reached, so that its repeats attach there even after the incident closed; and
each incident's alert events (fired, repeated, resolved)."""

POSTGRES_MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "ledger", _LEDGER_V1),
    Migration(2, "ownership", _OWNERSHIP_V2),
    Migration(3, "alert lifecycle", _LIFECYCLE_V3),
)
"""The schema, in order (see :mod:`durable_ir.ledger.migrations`)."""

POSTGRES_SCHEMA = "\n".join(m.script for m in POSTGRES_MIGRATIONS)
"""Every migration's DDL in one script: the schema as this release creates it."""


_MIGRATIONS_DDL = f"""
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

_TOO_LATE = "%(late)s::boolean AND deadline_at <= %(at)s"
_DECIDE_SET = (
    f"status = CASE WHEN {_TOO_LATE} THEN 'expired' ELSE %(status)s END,"
    f" decided_by = CASE WHEN {_TOO_LATE} THEN %(late_by)s ELSE %(by)s END,"
    " decided_at = %(at)s,"
    f" reason = CASE WHEN {_TOO_LATE} THEN %(late_reason)s ELSE %(reason)s END,"
    f" edited_plan = CASE WHEN {_TOO_LATE} THEN NULL ELSE %(plan)s::jsonb END"
)
"""A decision's compare-and-set: the decision, or the expiry if it came too late
(:class:`~durable_ir.ledger.base.LateDecision`)."""

_DECIDE = f"""
UPDATE durable_ir_approvals SET {_DECIDE_SET}
 WHERE approval_id = %(id)s AND status = 'pending'
RETURNING {APPROVAL_COLUMNS}
"""

_LEASED = """, leased AS (
    UPDATE durable_ir_incidents i
       SET lease_owner = %(owner)s, lease_expires_at = %(expires)s
      FROM decided d
     WHERE i.incident_id = d.incident_id AND i.status = 'open'
)"""
_OWNED = f""", owned AS ({
    take_sql(
        "SELECT incident_id, %(take_owner)s, 1, %(take_expires)s FROM decided",
        now="%(take_now)s",
        steal_from="%(take_steal)s",
    ).strip()
})"""

_DECIDE_AND_LEASE = f"""
WITH decided AS ({_DECIDE}){_LEASED}
SELECT {APPROVAL_COLUMNS} FROM decided
"""
"""One statement: the decision and the lease on the run that will apply it."""

_DECIDE_AND_TAKE = f"""
WITH decided AS ({_DECIDE}){{leased}}{_OWNED}
SELECT {APPROVAL_COLUMNS}, (SELECT epoch FROM owned) AS epoch FROM decided
"""
"""One statement: the decision, the lease on its run (``{leased}``: :data:`_LEASED` or
nothing) and the take of the incident by the worker that applies it."""

_REGISTER = f"""
WITH inserted AS (
    INSERT INTO durable_ir_approvals {APPROVAL_VALUES}
    ON CONFLICT (approval_id) DO NOTHING
    RETURNING {APPROVAL_COLUMNS}
)
SELECT {APPROVAL_COLUMNS} FROM inserted
UNION ALL
SELECT {APPROVAL_COLUMNS} FROM durable_ir_approvals WHERE approval_id = %s
LIMIT 1
"""
"""One round trip: the CTE's INSERT is invisible to the outer SELECT's snapshot, so the UNION
returns the inserted row, or else the row that was already there."""

_RECORD_NOTIFICATION = f"""
WITH inserted AS (
    INSERT INTO durable_ir_notifications {NOTIFICATION_VALUES}
    ON CONFLICT (key) DO NOTHING
    RETURNING {NOTIFICATION_COLUMNS}
)
SELECT {NOTIFICATION_COLUMNS} FROM inserted
UNION ALL
SELECT {NOTIFICATION_COLUMNS} FROM durable_ir_notifications WHERE key = %s
LIMIT 1
"""
"""As :data:`_REGISTER`: the inserted row, else the one that was there."""

_EXPIRE = f"""
UPDATE durable_ir_approvals AS a
   SET status = 'expired', decided_by = %s, decided_at = %s, reason = d.reason
  FROM unnest(%s::text[], %s::text[]) AS d(approval_id, reason)
 WHERE a.approval_id = d.approval_id AND a.status = 'pending'
RETURNING {qualified("a", APPROVAL_COLUMNS)}
"""

_OPEN_INCIDENT = f"""
INSERT INTO durable_ir_incidents AS i {INCIDENT_VALUES}
ON CONFLICT (fingerprint) WHERE status = 'open' AND fingerprint IS NOT NULL
DO UPDATE SET
    alerts_received = i.alerts_received + 1,
    last_alert_at = greatest(i.last_alert_at, EXCLUDED.last_alert_at)
RETURNING {INCIDENT_COLUMNS}, (xmax = 0) AS inserted
"""

_OPEN_AND_TAKE = f"""
WITH opened AS ({_OPEN_INCIDENT.strip()}),
owned AS ({take_sql("SELECT incident_id, %s, 1, %s FROM opened WHERE inserted").strip()})
SELECT opened.*, (SELECT epoch FROM owned) AS epoch FROM opened
"""
"""One statement: open the incident (as :data:`_OPEN_INCIDENT`) and, if it was inserted, take
it for the worker that runs it first."""

_CLAIM_RUNS = f"""
UPDATE durable_ir_incidents AS i
   SET lease_owner = %s, lease_expires_at = %s
  FROM ({DUE_RUNS} FOR UPDATE SKIP LOCKED) AS due
 WHERE i.incident_id = due.incident_id
RETURNING {qualified("i", INCIDENT_COLUMNS)}
"""

_VERSION_KEY = "(graph || chr(31) || coalesce(graph_version, ''))"
"""The SQL twin of :func:`durable_ir.records.version_key`."""
_INCIDENTS_PKEY = "durable_ir_incidents_pkey"

_REPEAT_OF_KNOWN_FIRING = f"""
WITH seen AS (
    SELECT f.incident_id FROM durable_ir_firings f
     WHERE f.fingerprint = %(fingerprint)s AND f.starts_at = %(start)s
       AND NOT EXISTS (SELECT 1 FROM durable_ir_incidents n
                        WHERE n.incident_id = %(named)s AND n.status = 'closed')
), counted AS (
    UPDATE durable_ir_incidents AS i
       SET alerts_received = i.alerts_received + 1,
           last_alert_at = CASE WHEN i.last_alert_at < %(at)s THEN %(at)s ELSE i.last_alert_at END
      FROM seen WHERE i.incident_id = seen.incident_id
    RETURNING {qualified("i", INCIDENT_COLUMNS)}
), noted AS (
    INSERT INTO durable_ir_alert_events (incident_id, kind, fingerprint, starts_at, at)
    SELECT incident_id, 'repeated', %(fingerprint)s, %(start)s, %(at)s FROM counted
)
SELECT * FROM counted
"""
"""A repeat of a known firing in one statement: count it on its incident (open or closed)
and note it on the timeline — unless the incident named by id is closed (then the whole path
of ``open_firing`` answers, as for any case it does not cover)."""

_LOCK_FINGERPRINT = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0)) IS NULL AS locked"


_RELAXED = (
    "WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true))\n"
    "{statement}\n  AND EXISTS (SELECT 1 FROM relaxed)"
)
"""An ``UPDATE … WHERE …`` committed without waiting for its WAL flush (see
``SqlOwnership._sql_write_relaxed``)."""

_CLAIM_AND_READ = f"""
WITH claimed AS ({CLAIM_STEP.strip()}
    RETURNING incident_id, step_key, epoch, owner, claimed_at, finished_at, ok, detail)
SELECT * FROM claimed
UNION ALL
SELECT incident_id, step_key, epoch, owner, claimed_at, finished_at, ok, detail
FROM durable_ir_step_claims WHERE incident_id = %s AND step_key = %s
"""
"""A step's fenced claim and every claim of it, in one round trip (the outer ``SELECT``
sees the table as it was before the ``INSERT``, so the new row comes from ``claimed``)."""


class _Session:
    """Statements on one connection (:class:`~durable_ir.ledger.sql.SqlSession`)."""

    def __init__(self, conn: AsyncConnection[Any]) -> None:
        self._conn = conn

    async def rows(self, query: str, params: SqlParams = ()) -> list[Mapping[str, Any]]:
        cur = await self._conn.execute(query, params)
        return list(await cur.fetchall())

    async def write(self, query: str, params: SqlParams = ()) -> int:
        cur = await self._conn.execute(query, params)
        return int(cur.rowcount)


class PostgresLedger(SqlLedger):
    """Approval ledger on a psycopg 3 pool (``autocommit=True``, ``dict_row``).

    Example (needs a server)::

        pool = AsyncConnectionPool(url, kwargs={"autocommit": True, "row_factory": dict_row})
        ledger = PostgresLedger(pool)
        await ledger.setup()
    """

    _JSON_AS_TEXT = False
    _SAME = "IS NOT DISTINCT FROM"

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def setup(self) -> None:
        """Apply the migrations this database lacks, each in a transaction with its version
        row (the store serialises set-up across processes)."""
        async with self._pool.connection() as conn:
            await conn.execute(_MIGRATIONS_DDL)
            cur = await conn.execute(SCHEMA_VERSION)
            row = await cur.fetchone()
            current = int(row["v"]) if row else 0
            for migration in pending_migrations(current, POSTGRES_MIGRATIONS):
                async with conn.transaction():
                    await conn.execute(migration.script)
                    await conn.execute(
                        f"INSERT INTO {MIGRATIONS_TABLE} (version, name) VALUES (%s, %s)"
                        " ON CONFLICT (version) DO NOTHING",
                        (migration.version, migration.name),
                    )

    # --- the driver -----------------------------------------------------------------------

    async def _sql_rows(self, query: str, params: SqlParams) -> list[Mapping[str, Any]]:
        async with self._pool.connection() as conn:
            return await _Session(conn).rows(query, params)

    async def _sql_write(self, query: str, params: SqlParams) -> int:
        async with self._pool.connection() as conn:
            return await _Session(conn).write(query, params)

    async def _sql_write_relaxed(self, query: str, params: SqlParams) -> int:
        # One statement, its own transaction, committed without waiting for the WAL flush:
        # set_config(…, true) lasts until the commit, which is when it is read.
        async with self._pool.connection() as conn:
            cur = await conn.execute(_RELAXED.format(statement=query.strip()), params)
            return int(cur.rowcount)

    async def _sql_claim(
        self, incident_id: str, key: str, epoch: int, owner: str, now: Any
    ) -> list[Mapping[str, Any]]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                _CLAIM_AND_READ,
                (incident_id, key, epoch, owner, now, incident_id, epoch, incident_id, key),
            )
            return list(await cur.fetchall())

    @asynccontextmanager
    async def _sql_transaction(self) -> AsyncIterator[_Session]:
        async with self._pool.connection() as conn, conn.transaction():
            yield _Session(conn)

    def _sql_time(self, moment: datetime) -> datetime:
        return moment

    async def _repeat_of_known_firing(
        self, new: NewIncident, fingerprint: str, start: Any, at: Any
    ) -> IncidentRecord | None:
        rows = await self._sql_rows(
            _REPEAT_OF_KNOWN_FIRING,
            {"fingerprint": fingerprint, "start": start, "named": new.incident_id, "at": at},
        )
        return self._incident(rows[0]) if rows else None

    _RETRY_FIRING = (pg_errors.UniqueViolation,)

    async def _lock_fingerprint(self, tx: SqlSession, fingerprint: str) -> None:
        # Transaction-scoped: released at COMMIT/ROLLBACK, so it is safe behind a
        # transaction pooler, and nothing outlives the transaction that took it.
        await tx.rows(_LOCK_FINGERPRINT, (f"durable_ir:firing:{fingerprint}",))

    def _sql_json(self, value: Any) -> Jsonb:
        return Jsonb(value)

    def _sql_in(self, ids: Sequence[str]) -> list[tuple[str, tuple[Any, ...]]]:
        return [("= ANY(%s)", (list(dict.fromkeys(ids)),))] if ids else []

    def _sql_runnable(self, runnable: Sequence[str]) -> tuple[str, tuple[Any, ...]]:
        return f"{_VERSION_KEY} = ANY(%s)", (list(runnable),)

    async def server_time(self) -> datetime:
        rows = await self._sql_rows("SELECT clock_timestamp() AS now", ())
        moment: datetime = rows[0]["now"]
        return moment

    # --- what PostgreSQL does its own way -------------------------------------------------

    async def register(self, new: NewApproval) -> ApprovalRecord:
        row = await self._approval_one(_REGISTER, (*self._approval_params(new), new.approval_id))
        if row is None:
            # A concurrent register committed the row after this statement took its snapshot:
            # ON CONFLICT waited for it and did nothing, and the SELECT cannot see it. A new
            # statement (autocommit: a new snapshot) does.
            row = await self.get(new.approval_id)
        if row is None:
            raise LookupError(f"approval {new.approval_id} vanished while registering")
        return row

    async def record_decision(
        self, approval_id: str, decision: DecisionWrite, lease: RunLease | None = None
    ) -> tuple[bool, ApprovalRecord]:
        params = self._decision_params(approval_id, decision)
        if lease is None:
            won = await self._approval_one(_DECIDE, params)
        else:
            check_lease(lease)
            params.update(owner=lease.owner, expires=lease.expires_at)
            won = await self._approval_one(_DECIDE_AND_LEASE, params)
        if won is not None:
            return True, won
        return False, await self._winner(approval_id)

    async def decide_and_take(
        self,
        approval_id: str,
        decision: DecisionWrite,
        lease: RunLease | None,
        take: OwnershipTake | None,
    ) -> tuple[bool, ApprovalRecord, int | None]:
        if take is None:
            return (*await self.record_decision(approval_id, decision, lease), None)
        check_take(take)
        params = self._decision_params(approval_id, decision)
        params.update(
            take_owner=take.owner,
            take_expires=take.expires_at,
            take_now=take.now,
            take_steal=steal_param(take),
        )
        if lease is not None:
            check_lease(lease)
            params.update(owner=lease.owner, expires=lease.expires_at)
        query = _DECIDE_AND_TAKE.format(leased=_LEASED if lease is not None else "")
        rows = await self._sql_rows(query, params)
        if rows:
            epoch = rows[0]["epoch"]
            return True, self._approval(rows[0]), None if epoch is None else int(epoch)
        return False, await self._winner(approval_id), None

    async def _winner(self, approval_id: str) -> ApprovalRecord:
        # A decided row never returns to pending, so this read shows the winner.
        current = await self.get(approval_id)
        if current is None:
            raise LookupError(approval_id)
        return current

    async def expire_due(
        self,
        now: datetime,
        limit: int,
        decided_by: str,
        reason: Callable[[ApprovalRecord], str],
        lease: RunLease | None = None,
        runnable: Sequence[str] | None = None,
    ) -> list[ApprovalRecord]:
        only, among = self._only_runnable(runnable)
        async with self._sql_transaction() as tx:
            query = f"{DUE_APPROVALS.format(only=only)} FOR UPDATE SKIP LOCKED"
            due = [self._approval(r) for r in await tx.rows(query, (now, *among, limit))]
            if not due:
                return []
            # The rows are locked by this transaction: a concurrent decision waits, then finds
            # them decided. The status guard keeps this the same compare-and-set regardless.
            ids, reasons = [r.approval_id for r in due], [reason(r) for r in due]
            rows = await tx.rows(_EXPIRE, (decided_by, now, ids, reasons))
            expired = [self._approval(r) for r in rows]
            if lease is not None and expired:
                await tx.write(
                    LEASE.format(ids="= ANY(%s)"),
                    (lease.owner, check_lease(lease).expires_at, [r.incident_id for r in expired]),
                )
        return sorted(expired, key=lambda r: (r.deadline_at, r.approval_id))

    async def open_incident(self, new: NewIncident) -> tuple[bool, IncidentRecord]:
        opened, row, _ = await self._open(new, None)
        return opened, row

    async def open_and_take(
        self, new: NewIncident, take: OwnershipTake | None
    ) -> tuple[bool, IncidentRecord, int | None]:
        return await self._open(new, take)

    async def _open(
        self, new: NewIncident, take: OwnershipTake | None
    ) -> tuple[bool, IncidentRecord, int | None]:
        check_new_incident(new)
        params: tuple[Any, ...] = self._incident_params(new)
        query = _OPEN_INCIDENT
        if take is not None:
            check_take(take)
            query = _OPEN_AND_TAKE
            params = (*params, take.owner, take.expires_at, take.now, steal_param(take))
        # A primary-key clash with an incident whose fingerprint is open is retried: the
        # statement inserted into the id index before it saw (or waited for) that incident in
        # the fingerprint index, and a new statement takes the DO UPDATE path. Any other clash
        # is the answer. Each retry follows a commit that made the clash, so few are needed.
        for _ in range(5):
            try:
                rows = await self._sql_rows(query, params)
            except pg_errors.UniqueViolation as exc:
                # Autocommit: the failed statement rolled back on its own and the connection
                # went back to the pool idle, so the next statement runs normally.
                if exc.diag.constraint_name != _INCIDENTS_PKEY:
                    raise
                existing = await self.get_incident(new.incident_id)
                if existing is None:
                    continue  # deleted meanwhile (not by this ledger): try again
                if not (
                    new.fingerprint is not None
                    and existing.is_open
                    and existing.fingerprint == new.fingerprint
                ):
                    return False, existing, None
                continue
            row = rows[0]
            epoch = row.get("epoch")
            return bool(row["inserted"]), self._incident(row), None if epoch is None else int(epoch)
        raise RuntimeError(f"could not open incident {new.incident_id}: too many conflicts")

    async def _claim_due_runs(self, only: str, params: tuple[Any, ...]) -> list[Mapping[str, Any]]:
        # Rows another claimer has locked are skipped, not waited for: replicas share them.
        return await self._sql_rows(_CLAIM_RUNS.format(only=only), params)

    async def record_notification(self, record: NotificationRecord) -> NotificationRecord:
        check_notification(record)
        params = (*self._notification_params(record), record.key)
        rows = await self._notifications(_RECORD_NOTIFICATION, params)
        if rows:
            return rows[0]
        # A concurrent writer committed after this statement's snapshot: a new one sees it.
        stored = await self.get_notification(record.key)
        if stored is None:
            raise LookupError(f"notification {record.key} vanished while recording")
        return stored
