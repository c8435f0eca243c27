"""The approval ledger in PostgreSQL, in the same database as the LangGraph checkpoints.

Every statement runs in autocommit mode on a pooled connection. The decision
compare-and-set is one ``UPDATE … WHERE status = 'pending' RETURNING *``: PostgreSQL's row
lock makes exactly one concurrent writer see the pending row, in any number of processes.
Opening an incident is one ``INSERT … ON CONFLICT (fingerprint) … DO UPDATE`` against the
partial unique index on open fingerprints, which makes alerts with one fingerprint attach to
one open incident, in any number of processes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

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
    IncidentRecord,
    IncidentState,
    NewApproval,
    NewIncident,
    NotificationRecord,
    PendingGroup,
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

POSTGRES_MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "ledger", _LEDGER_V1),
    Migration(2, "ownership", _OWNERSHIP_V2),
)
"""The schema, in order (see :mod:`durable_ir.ledger.migrations`)."""

POSTGRES_SCHEMA = "\n".join(m.script for m in POSTGRES_MIGRATIONS)
"""Every migration's DDL in one script: the schema as this release creates it."""

_SCHEMA_VERSION = f"SELECT coalesce(max(version), 0) AS v FROM {MIGRATIONS_TABLE}"
_MIGRATIONS_DDL = f"""
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

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
_VERSION_KEY = "(graph || chr(31) || coalesce(graph_version, ''))"
"""The SQL twin of :func:`durable_ir.records.version_key`."""
_RELEASE_LEASE = "lease_owner = NULL, lease_expires_at = NULL, run_attempts = 0, last_error = NULL"
"""What a run that paused or ended leaves of its lease: nothing."""
_NOTIFICATION_COLUMNS = "key, incident_id, kind, channel, sent_at, result"
_INCIDENTS_PKEY = "durable_ir_incidents_pkey"


class PostgresLedger(SqlOwnership):
    """Approval ledger on a psycopg 3 pool (``autocommit=True``, ``dict_row``).

    Example (needs a server)::

        pool = AsyncConnectionPool(url, kwargs={"autocommit": True, "row_factory": dict_row})
        ledger = PostgresLedger(pool)
        await ledger.setup()
    """

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def setup(self) -> None:
        """Apply the migrations this database lacks, each in a transaction with its version
        row (the store serialises set-up across processes)."""
        async with self._pool.connection() as conn:
            await conn.execute(_MIGRATIONS_DDL)
            cur = await conn.execute(_SCHEMA_VERSION)
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

    async def schema_version(self) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(_SCHEMA_VERSION)
            row = await cur.fetchone()
        return int(row["v"]) if row else 0

    async def _sql_rows(self, query: str, params: Sequence[Any]) -> list[Mapping[str, Any]]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, params)
            return list(await cur.fetchall())

    async def _sql_write(self, query: str, params: Sequence[Any]) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, params)
            return int(cur.rowcount)

    def _sql_time(self, moment: datetime) -> datetime:
        return moment

    def _sql_datetime(self, value: Any) -> datetime | None:
        return as_datetime(value)

    async def server_time(self) -> datetime:
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT clock_timestamp() AS now")
            row = await cur.fetchone()
        assert row is not None
        moment: datetime = row["now"]
        return moment

    async def _one(
        self, query: str, params: tuple[Any, ...] | dict[str, Any]
    ) -> ApprovalRecord | None:
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
                     requested_at, deadline_at, next_due_at, graph_version)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
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
                new.graph_version,
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

    async def latest_many(self, incident_ids: Sequence[str]) -> dict[str, ApprovalRecord]:
        if not incident_ids:
            return {}
        rows = await self._all(
            f"SELECT DISTINCT ON (incident_id) {_COLUMNS} FROM durable_ir_approvals"
            " WHERE incident_id = ANY(%s)"
            " ORDER BY incident_id, requested_at DESC, approval_id DESC",
            (list(dict.fromkeys(incident_ids)),),
        )
        return {row.incident_id: row for row in rows}

    async def record_decision(
        self, approval_id: str, decision: DecisionWrite, lease: RunLease | None = None
    ) -> tuple[bool, ApprovalRecord]:
        late = decision.late
        params: dict[str, Any] = {
            "late": late is not None,
            "at": decision.decided_at,
            "status": decision.status.value,
            "by": decision.decided_by,
            "reason": decision.reason,
            "plan": None if decision.edited_plan is None else Jsonb(decision.edited_plan),
            "late_by": late.decided_by if late else None,
            "late_reason": late.reason if late else None,
            "id": approval_id,
        }
        if lease is None:
            won = await self._one(
                f"""
                UPDATE durable_ir_approvals SET {_DECIDE_SET}
                 WHERE approval_id = %(id)s AND status = 'pending'
                RETURNING {_COLUMNS}
                """,
                params,
            )
        else:
            check_lease(lease)
            # One statement: the decision and the lease on the run that will apply it.
            won = await self._one(
                f"""
                WITH decided AS (
                    UPDATE durable_ir_approvals SET {_DECIDE_SET}
                     WHERE approval_id = %(id)s AND status = 'pending'
                    RETURNING {_COLUMNS}
                ), leased AS (
                    UPDATE durable_ir_incidents i
                       SET lease_owner = %(owner)s, lease_expires_at = %(expires)s
                      FROM decided d
                     WHERE i.incident_id = d.incident_id AND i.status = 'open'
                )
                SELECT {_COLUMNS} FROM decided
                """,
                {**params, "owner": lease.owner, "expires": lease.expires_at},
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
            f"SELECT {_COLUMNS} FROM durable_ir_approvals a"
            " WHERE status <> 'pending' AND applied_at IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM durable_ir_incidents i"
            "  WHERE i.incident_id = a.incident_id AND i.status = 'open'"
            "  AND i.lease_expires_at IS NOT NULL)"
            " ORDER BY decided_at LIMIT %s",
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
        only = "" if runnable is None else f" AND {_VERSION_KEY} = ANY(%s)"
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM durable_ir_approvals"
                f" WHERE status = 'pending' AND deadline_at <= %s{only}"
                " ORDER BY deadline_at LIMIT %s FOR UPDATE SKIP LOCKED",
                (now, limit) if runnable is None else (now, list(runnable), limit),
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
            if lease is not None and expired:
                await conn.execute(
                    "UPDATE durable_ir_incidents SET lease_owner = %s, lease_expires_at = %s"
                    " WHERE incident_id = ANY(%s) AND status = 'open'",
                    (lease.owner, check_lease(lease).expires_at, [r.incident_id for r in expired]),
                )
        return sorted(expired, key=lambda r: (r.deadline_at, r.approval_id))

    async def overdue_elsewhere(
        self, now: datetime, runnable: Sequence[str], limit: int
    ) -> list[ApprovalRecord]:
        return await self._all(
            f"SELECT {_COLUMNS} FROM durable_ir_approvals"
            f" WHERE status = 'pending' AND deadline_at <= %s AND NOT {_VERSION_KEY} = ANY(%s)"
            " ORDER BY deadline_at LIMIT %s",
            (now, list(runnable), limit),
        )

    async def pending_groups(self) -> list[PendingGroup]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT severity, graph_version, count(*) AS n, min(deadline_at) AS nearest"
                " FROM durable_ir_approvals WHERE status = 'pending'"
                " GROUP BY severity, graph_version ORDER BY severity, graph_version"
            )
            rows = await cur.fetchall()
        return [
            PendingGroup(r["severity"], r["graph_version"], int(r["n"]), r["nearest"]) for r in rows
        ]

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

    # --- incident index -----------------------------------------------------------------

    async def _incidents(self, query: str, params: tuple[Any, ...]) -> list[IncidentRecord]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, params)
            rows = await cur.fetchall()
        return [incident_from_row(r) for r in rows]

    async def open_incident(self, new: NewIncident) -> tuple[bool, IncidentRecord]:
        check_new_incident(new)
        params = (
            new.incident_id,
            new.graph,
            new.fingerprint,
            new.title,
            new.service,
            new.severity,
            None if new.alert is None else Jsonb(new.alert),
            new.opened_at,
            new.opened_at,
            new.lease.owner if new.lease else None,
            new.lease.expires_at if new.lease else None,
            new.graph_version,
        )
        # A primary-key clash with an incident whose fingerprint is open is retried: the
        # statement inserted into the id index before it saw (or waited for) that incident in
        # the fingerprint index, and a new statement takes the DO UPDATE path. Any other clash
        # is the answer. Each retry follows a commit that made the clash, so few are needed.
        for _ in range(5):
            try:
                async with self._pool.connection() as conn:
                    cur = await conn.execute(
                        f"""
                        INSERT INTO durable_ir_incidents AS i
                            (incident_id, graph, fingerprint, title, service, severity, alert,
                             status, alerts_received, opened_at, last_alert_at,
                             lease_owner, lease_expires_at, graph_version)
                        VALUES (%s, %s, %s, %s, %s, %s, %s, 'open', 1, %s, %s, %s, %s, %s)
                        ON CONFLICT (fingerprint) WHERE status = 'open' AND fingerprint IS NOT NULL
                        DO UPDATE SET
                            alerts_received = i.alerts_received + 1,
                            last_alert_at = greatest(i.last_alert_at, EXCLUDED.last_alert_at)
                        RETURNING {_INCIDENT_COLUMNS}, (xmax = 0) AS inserted
                        """,
                        params,
                    )
                    row = await cur.fetchone()
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
                    return False, existing
                continue
            assert row is not None
            inserted = bool(row.pop("inserted"))
            return inserted, incident_from_row(row)
        raise RuntimeError(f"could not open incident {new.incident_id}: too many conflicts")

    async def mark_incident_started(self, incident_id: str, at: datetime) -> None:
        check_aware("at", at)
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE durable_ir_incidents SET started_at = %s"
                " WHERE incident_id = %s AND started_at IS NULL",
                (at, incident_id),
            )

    async def close_incident(
        self, incident_id: str, outcome: str, at: datetime
    ) -> IncidentRecord | None:
        check_aware("at", at)
        rows = await self._incidents(
            f"UPDATE durable_ir_incidents SET status = 'closed', closed_at = %s, outcome = %s,"
            f" started_at = coalesce(started_at, %s), {_RELEASE_LEASE}"
            f" WHERE incident_id = %s AND status = 'open' RETURNING {_INCIDENT_COLUMNS}",
            (at, outcome, at, incident_id),
        )
        if rows:
            return rows[0]
        # Unknown, or closed already: a closed row stays closed, so this read shows it.
        return await self.get_incident(incident_id)

    async def get_incident(self, incident_id: str) -> IncidentRecord | None:
        rows = await self._incidents(
            f"SELECT {_INCIDENT_COLUMNS} FROM durable_ir_incidents WHERE incident_id = %s",
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
                " ORDER BY opened_at DESC, incident_id DESC LIMIT %s",
                (limit,),
            )
        return await self._incidents(
            f"SELECT {_INCIDENT_COLUMNS} FROM durable_ir_incidents WHERE status = %s"
            " ORDER BY opened_at DESC, incident_id DESC LIMIT %s",
            (status, limit),
        )

    async def settle_run(self, incident_id: str, at: datetime) -> None:
        check_aware("at", at)
        async with self._pool.connection() as conn:
            await conn.execute(
                f"UPDATE durable_ir_incidents SET started_at = coalesce(started_at, %s),"
                f" {_RELEASE_LEASE} WHERE incident_id = %s",
                (at, incident_id),
            )

    async def fail_run(self, incident_id: str, error: str, retry_at: datetime) -> None:
        check_aware("retry_at", retry_at)
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE durable_ir_incidents SET lease_owner = NULL, lease_expires_at = %s,"
                " last_error = %s WHERE incident_id = %s AND status = 'open'",
                (retry_at, error_text(error), incident_id),
            )

    async def extend_leases(
        self, incident_ids: Sequence[str], owner: str, expires_at: datetime
    ) -> int:
        check_lease(RunLease(owner, expires_at))
        if not incident_ids:
            return 0
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE durable_ir_incidents SET lease_owner = %s, lease_expires_at = %s"
                " WHERE incident_id = ANY(%s) AND status = 'open'"
                " AND lease_expires_at IS NOT NULL AND (lease_owner IS NULL OR lease_owner = %s)",
                (owner, expires_at, list(incident_ids), owner),
            )
            return int(cur.rowcount)

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
        only = "" if runnable is None else f" AND {_VERSION_KEY} = ANY(%s)"
        rows = await self._incidents(
            f"""
            UPDATE durable_ir_incidents AS i
               SET lease_owner = %s, lease_expires_at = %s
              FROM (SELECT incident_id FROM durable_ir_incidents
                     WHERE status = 'open' AND lease_expires_at <= %s{only}
                     ORDER BY lease_expires_at LIMIT %s
                     FOR UPDATE SKIP LOCKED) AS due
             WHERE i.incident_id = due.incident_id
            RETURNING {", ".join(f"i.{c.strip()}" for c in _INCIDENT_COLUMNS.split(","))}
            """,
            (lease.owner, lease.expires_at, now)
            + (() if runnable is None else (list(runnable),))
            + (limit,),
        )
        return sorted(rows, key=lambda r: (r.opened_at, r.incident_id))

    async def leased_incidents(self, limit: int) -> list[IncidentRecord]:
        check_limit(limit)
        return await self._incidents(
            f"SELECT {_INCIDENT_COLUMNS} FROM durable_ir_incidents"
            " WHERE status = 'open' AND lease_expires_at IS NOT NULL"
            " ORDER BY lease_expires_at, incident_id LIMIT %s",
            (limit,),
        )

    async def count_run_attempt(self, incident_id: str) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE durable_ir_incidents SET run_attempts = run_attempts + 1"
                " WHERE incident_id = %s RETURNING run_attempts",
                (incident_id,),
            )
            row = await cur.fetchone()
        return 0 if row is None else int(row["run_attempts"])

    async def prunable_incidents(self, closed_before: datetime, limit: int) -> list[IncidentRecord]:
        check_aware("closed_before", closed_before)
        check_limit(limit)
        return await self._incidents(
            f"SELECT {_INCIDENT_COLUMNS} FROM durable_ir_incidents"
            " WHERE status = 'closed' AND pruned_at IS NULL AND closed_at <= %s"
            " ORDER BY closed_at, incident_id LIMIT %s",
            (closed_before, limit),
        )

    async def mark_pruned(self, incident_id: str, at: datetime) -> None:
        check_aware("at", at)
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE durable_ir_incidents SET pruned_at = %s"
                " WHERE incident_id = %s AND status = 'closed' AND pruned_at IS NULL",
                (at, incident_id),
            )

    async def unstarted_incidents(
        self, opened_before: datetime, limit: int = 100
    ) -> list[IncidentRecord]:
        check_aware("opened_before", opened_before)
        check_limit(limit)
        return await self._incidents(
            f"SELECT {_INCIDENT_COLUMNS} FROM durable_ir_incidents"
            " WHERE started_at IS NULL AND status = 'open' AND opened_at <= %s"
            " ORDER BY opened_at, incident_id LIMIT %s",
            (opened_before, limit),
        )

    async def move_to_version(
        self, incident_id: str, graph: str, from_version: str | None, to_version: str
    ) -> bool:
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE durable_ir_incidents SET graph_version = %s"
                " WHERE incident_id = %s AND graph = %s AND status = 'open'"
                " AND graph_version IS NOT DISTINCT FROM %s",
                (to_version, incident_id, graph, from_version),
            )
            if cur.rowcount != 1:
                return False
            await conn.execute(
                "UPDATE durable_ir_approvals SET graph_version = %s"
                " WHERE incident_id = %s AND graph = %s AND applied_at IS NULL",
                (to_version, incident_id, graph),
            )
        return True

    async def open_on_version(
        self, graph: str, version: str | None, limit: int
    ) -> list[IncidentRecord]:
        check_limit(limit)
        return await self._incidents(
            f"SELECT {_INCIDENT_COLUMNS} FROM durable_ir_incidents"
            " WHERE status = 'open' AND graph = %s AND graph_version IS NOT DISTINCT FROM %s"
            " ORDER BY opened_at, incident_id LIMIT %s",
            (graph, version, limit),
        )

    async def version_census(self) -> list[VersionCount]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT i.graph, i.graph_version, count(*) AS open,"
                " count(*) FILTER (WHERE EXISTS (SELECT 1 FROM durable_ir_approvals a"
                "  WHERE a.incident_id = i.incident_id AND a.status = 'pending')) AS awaiting"
                " FROM durable_ir_incidents i WHERE i.status = 'open'"
                " GROUP BY i.graph, i.graph_version ORDER BY i.graph, i.graph_version"
            )
            rows = await cur.fetchall()
        return [
            VersionCount(r["graph"], r["graph_version"], int(r["open"]), int(r["awaiting"]))
            for r in rows
        ]

    # --- notification outbox --------------------------------------------------------------

    async def _notification(self, query: str, params: tuple[Any, ...]) -> list[NotificationRecord]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, params)
            rows = await cur.fetchall()
        return [notification_from_row(r) for r in rows]

    async def get_notification(self, key: str) -> NotificationRecord | None:
        rows = await self._notification(
            f"SELECT {_NOTIFICATION_COLUMNS} FROM durable_ir_notifications WHERE key = %s",
            (key,),
        )
        return rows[0] if rows else None

    async def record_notification(self, record: NotificationRecord) -> NotificationRecord:
        check_notification(record)
        # As in register(): the inserted row, else the one that was there.
        rows = await self._notification(
            f"""
            WITH inserted AS (
                INSERT INTO durable_ir_notifications
                    (key, incident_id, kind, channel, sent_at, result)
                VALUES (%s, %s, %s, %s, %s, %s)
                ON CONFLICT (key) DO NOTHING
                RETURNING {_NOTIFICATION_COLUMNS}
            )
            SELECT {_NOTIFICATION_COLUMNS} FROM inserted
            UNION ALL
            SELECT {_NOTIFICATION_COLUMNS} FROM durable_ir_notifications WHERE key = %s
            LIMIT 1
            """,
            (
                record.key,
                record.incident_id,
                record.kind,
                record.channel,
                record.sent_at,
                Jsonb(record.result),
                record.key,
            ),
        )
        if rows:
            return rows[0]
        # A concurrent writer committed after this statement's snapshot: a new one sees it.
        stored = await self.get_notification(record.key)
        if stored is None:
            raise LookupError(f"notification {record.key} vanished while recording")
        return stored

    async def list_notifications(self, incident_id: str) -> list[NotificationRecord]:
        return await self._notification(
            f"SELECT {_NOTIFICATION_COLUMNS} FROM durable_ir_notifications"
            " WHERE incident_id = %s ORDER BY sent_at, key",
            (incident_id,),
        )
