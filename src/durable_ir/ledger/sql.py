"""The ledger's statements, written once for PostgreSQL and SQLite, and the methods that run them.

:class:`SqlLedger` holds every method whose statement both backends run as written: plain
SQL with ``%s`` placeholders (SQLite's driver turns them into ``?``), timestamps and JSON
passed as parameters in the form the backend stores them (``_sql_time``, ``_sql_json``).
A backend (:mod:`~durable_ir.ledger.postgres`, :mod:`~durable_ir.ledger.sqlite`) supplies
the driver — how to run a statement, alone or in a transaction — and the few fragments the
dialects spell differently (a list of ids, a set of graph versions, a null-safe
comparison). It writes itself what differs in substance: the decision compare-and-set, the
SLA sweep, the lease claim's statement (``_claim_due_runs``), opening an incident (the
partial unique index of open fingerprints, or SQLite's write lock), and inserts that return
the row already there (one round trip on PostgreSQL).

Ownership and step claims follow the same pattern, in :mod:`~durable_ir.ledger.ownership`.

Example:
    >>> LATEST_APPROVALS.format(ids="IN (%s, %s)").count("%s")
    2
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, ClassVar, Protocol

from durable_ir.errors import InvalidInput
from durable_ir.ledger.base import (
    DecisionWrite,
    VersionCount,
    as_datetime,
    check_aware,
    check_firing,
    check_incident_status,
    check_lease,
    check_limit,
    check_notification,
    check_take,
    error_text,
    incident_from_row,
    notification_from_row,
    record_from_row,
)
from durable_ir.ledger.migrations import MIGRATIONS_TABLE
from durable_ir.ledger.ownership import TAKE, SqlOwnership, SqlParams
from durable_ir.records import (
    AlertEvent,
    ApprovalRecord,
    FiringIntake,
    IncidentRecord,
    IncidentState,
    NewApproval,
    NewIncident,
    NotificationRecord,
    OwnershipTake,
    PendingGroup,
    RunLease,
)
from durable_ir.text import check_text

__all__ = [
    "APPROVAL_COLUMNS",
    "INCIDENT_COLUMNS",
    "NOTIFICATION_COLUMNS",
    "SqlLedger",
    "SqlSession",
    "qualified",
]

# --- columns --------------------------------------------------------------------------------

APPROVAL_COLUMNS = (
    "approval_id, incident_id, graph, node, request, severity, requested_at, deadline_at,"
    " status, decided_by, decided_at, reason, edited_plan, applied_at, next_due_at,"
    " reminders_sent, graph_version"
)
INCIDENT_COLUMNS = (
    "incident_id, graph, fingerprint, title, service, severity, alert, status,"
    " alerts_received, opened_at, last_alert_at, started_at, closed_at, outcome,"
    " lease_owner, lease_expires_at, run_attempts, last_error, pruned_at, graph_version"
)
NOTIFICATION_COLUMNS = "key, incident_id, kind, channel, sent_at, result"


def qualified(alias: str, columns: str) -> str:
    """``columns`` (a comma-separated list) each prefixed with ``alias.``.

    >>> qualified("a", "approval_id, status")
    'a.approval_id, a.status'
    """
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


SCHEMA_VERSION = f"SELECT coalesce(max(version), 0) AS v FROM {MIGRATIONS_TABLE}"

# --- approvals ------------------------------------------------------------------------------

APPROVAL_VALUES = (
    "(approval_id, incident_id, graph, node, request, severity,"
    " requested_at, deadline_at, next_due_at, graph_version)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
"""What ``INSERT INTO durable_ir_approvals`` takes for a new approval
(:meth:`SqlLedger._approval_params`); each backend says what a clash does."""

GET_APPROVAL = f"SELECT {APPROVAL_COLUMNS} FROM durable_ir_approvals WHERE approval_id = %s"

APPROVAL_HISTORY = (
    f"SELECT {APPROVAL_COLUMNS} FROM durable_ir_approvals WHERE incident_id = %s"
    " ORDER BY requested_at, approval_id"
)

LATEST_APPROVAL = (
    f"SELECT {APPROVAL_COLUMNS} FROM durable_ir_approvals WHERE incident_id = %s"
    " ORDER BY requested_at DESC, approval_id DESC LIMIT 1"
)

LATEST_APPROVALS = (
    f"SELECT {APPROVAL_COLUMNS} FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY incident_id"
    " ORDER BY requested_at DESC, approval_id DESC) AS newest"
    " FROM durable_ir_approvals WHERE incident_id {ids}) AS ranked WHERE newest = 1"
)
"""The newest approval of each incident ``{ids}`` matches (:meth:`SqlLedger._sql_in`)."""

MARK_APPLIED = (
    "UPDATE durable_ir_approvals SET applied_at = %s"
    " WHERE approval_id = %s AND applied_at IS NULL AND status <> 'pending'"
)

UNAPPLIED = (
    f"SELECT {APPROVAL_COLUMNS} FROM durable_ir_approvals a"
    " WHERE status <> 'pending' AND applied_at IS NULL"
    " AND NOT EXISTS (SELECT 1 FROM durable_ir_incidents i"
    "  WHERE i.incident_id = a.incident_id AND i.status = 'open'"
    "  AND i.lease_expires_at IS NOT NULL)"
    " ORDER BY decided_at LIMIT %s"
)

DUE_APPROVALS = (
    f"SELECT {APPROVAL_COLUMNS} FROM durable_ir_approvals"
    " WHERE status = 'pending' AND deadline_at <= %s{only}"
    " ORDER BY deadline_at LIMIT %s"
)
"""Pending approvals past their deadline, earliest first; ``{only}`` is
:meth:`SqlLedger._only_runnable`'s filter. The SLA sweep reads them in its transaction."""

OVERDUE_ELSEWHERE = (
    f"SELECT {APPROVAL_COLUMNS} FROM durable_ir_approvals"
    " WHERE status = 'pending' AND deadline_at <= %s AND NOT {runnable}"
    " ORDER BY deadline_at LIMIT %s"
)

PENDING_GROUPS = (
    "SELECT severity, graph_version, count(*) AS n, min(deadline_at) AS nearest"
    " FROM durable_ir_approvals WHERE status = 'pending'"
    " GROUP BY severity, graph_version ORDER BY severity, graph_version"
)

DUE_REMINDERS = (
    f"SELECT {APPROVAL_COLUMNS} FROM durable_ir_approvals"
    " WHERE status = 'pending' AND next_due_at <= %s AND next_due_at < deadline_at"
    " ORDER BY next_due_at LIMIT %s"
)

ADVANCE_REMINDER = (
    "UPDATE durable_ir_approvals SET reminders_sent = %s, next_due_at = %s"
    " WHERE approval_id = %s AND status = 'pending' AND reminders_sent = %s"
)

# --- incident index -------------------------------------------------------------------------

INCIDENT_VALUES = (
    "(incident_id, graph, fingerprint, title, service, severity, alert,"
    " status, alerts_received, opened_at, last_alert_at,"
    " lease_owner, lease_expires_at, graph_version)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, 'open', 1, %s, %s, %s, %s, %s)"
)
"""What ``INSERT INTO durable_ir_incidents`` takes for a new incident
(:meth:`SqlLedger._incident_params`); each backend says what a clash does."""

GET_INCIDENT = f"SELECT {INCIDENT_COLUMNS} FROM durable_ir_incidents WHERE incident_id = %s"

RELEASE_LEASE = "lease_owner = NULL, lease_expires_at = NULL, run_attempts = 0, last_error = NULL"
"""What a run that paused or ended leaves of its lease: nothing."""

MARK_STARTED = (
    "UPDATE durable_ir_incidents SET started_at = %s WHERE incident_id = %s AND started_at IS NULL"
)

CLOSE_INCIDENT = (
    "UPDATE durable_ir_incidents SET status = 'closed', closed_at = %s, outcome = %s,"
    f" started_at = coalesce(started_at, %s), {RELEASE_LEASE}"
    f" WHERE incident_id = %s AND status = 'open' RETURNING {INCIDENT_COLUMNS}"
)

LIST_INCIDENTS = (
    f"SELECT {INCIDENT_COLUMNS} FROM durable_ir_incidents"
    " ORDER BY opened_at DESC, incident_id DESC LIMIT %s"
)

LIST_INCIDENTS_BY_STATUS = (
    f"SELECT {INCIDENT_COLUMNS} FROM durable_ir_incidents WHERE status = %s"
    " ORDER BY opened_at DESC, incident_id DESC LIMIT %s"
)

SETTLE_RUN = (
    "UPDATE durable_ir_incidents SET started_at = coalesce(started_at, %s),"
    f" {RELEASE_LEASE} WHERE incident_id = %s"
)

FAIL_RUN = (
    "UPDATE durable_ir_incidents SET lease_owner = NULL, lease_expires_at = %s,"
    " last_error = %s WHERE incident_id = %s AND status = 'open'"
)

LEASE = (
    "UPDATE durable_ir_incidents SET lease_owner = %s, lease_expires_at = %s"
    " WHERE incident_id {ids} AND status = 'open'"
)
"""Give the open incidents ``{ids}`` matches a run lease (with a decision or an expiry)."""

EXTEND_LEASES = (
    f"{LEASE} AND lease_expires_at IS NOT NULL AND (lease_owner IS NULL OR lease_owner = %s)"
)
"""The heartbeat: leases still held (not paused, not taken over) move on."""

DUE_RUNS = (
    "SELECT incident_id FROM durable_ir_incidents"
    " WHERE status = 'open' AND lease_expires_at <= %s{only}"
    " ORDER BY lease_expires_at LIMIT %s"
)
"""The incidents whose lease expired, oldest expiry first: what a lease claim takes over
(each backend's claim wraps it; ``{only}`` as in :data:`DUE_APPROVALS`)."""

LEASED_INCIDENTS = (
    f"SELECT {INCIDENT_COLUMNS} FROM durable_ir_incidents"
    " WHERE status = 'open' AND lease_expires_at IS NOT NULL"
    " ORDER BY lease_expires_at, incident_id LIMIT %s"
)

COUNT_RUN_ATTEMPT = (
    "UPDATE durable_ir_incidents SET run_attempts = run_attempts + 1"
    " WHERE incident_id = %s RETURNING run_attempts"
)

PRUNABLE_INCIDENTS = (
    f"SELECT {INCIDENT_COLUMNS} FROM durable_ir_incidents"
    " WHERE status = 'closed' AND pruned_at IS NULL AND closed_at <= %s"
    " ORDER BY closed_at, incident_id LIMIT %s"
)

MARK_PRUNED = (
    "UPDATE durable_ir_incidents SET pruned_at = %s"
    " WHERE incident_id = %s AND status = 'closed' AND pruned_at IS NULL"
)

UNSTARTED_INCIDENTS = (
    f"SELECT {INCIDENT_COLUMNS} FROM durable_ir_incidents"
    " WHERE started_at IS NULL AND status = 'open' AND opened_at <= %s"
    " ORDER BY opened_at, incident_id LIMIT %s"
)

MOVE_INCIDENT = (
    "UPDATE durable_ir_incidents SET graph_version = %s"
    " WHERE incident_id = %s AND graph = %s AND status = 'open' AND graph_version {same} %s"
)
"""``{same}``: the dialect's null-safe equality (:attr:`SqlLedger._SAME`)."""

MOVE_APPROVALS = (
    "UPDATE durable_ir_approvals SET graph_version = %s"
    " WHERE incident_id = %s AND graph = %s AND applied_at IS NULL"
)

OPEN_ON_VERSION = (
    f"SELECT {INCIDENT_COLUMNS} FROM durable_ir_incidents"
    " WHERE status = 'open' AND graph = %s AND graph_version {same} %s"
    " ORDER BY opened_at, incident_id LIMIT %s"
)

VERSION_CENSUS = (
    "SELECT i.graph, i.graph_version, count(*) AS open,"
    " count(*) FILTER (WHERE EXISTS (SELECT 1 FROM durable_ir_approvals a"
    "  WHERE a.incident_id = i.incident_id AND a.status = 'pending')) AS awaiting"
    " FROM durable_ir_incidents i WHERE i.status = 'open'"
    " GROUP BY i.graph, i.graph_version ORDER BY i.graph, i.graph_version"
)

# --- notification outbox --------------------------------------------------------------------

NOTIFICATION_VALUES = (
    "(key, incident_id, kind, channel, sent_at, result) VALUES (%s, %s, %s, %s, %s, %s)"
)

GET_NOTIFICATION = f"SELECT {NOTIFICATION_COLUMNS} FROM durable_ir_notifications WHERE key = %s"

RECORD_NOTIFICATION = (
    f"INSERT INTO durable_ir_notifications {NOTIFICATION_VALUES} ON CONFLICT (key) DO NOTHING"
)

LIST_NOTIFICATIONS = (
    f"SELECT {NOTIFICATION_COLUMNS} FROM durable_ir_notifications"
    " WHERE incident_id = %s ORDER BY sent_at, key"
)


# --- the alert lifecycle ------------------------------------------------------------------

FIRING_INCIDENT = (
    "SELECT incident_id FROM durable_ir_firings WHERE fingerprint = %s AND starts_at = %s"
)
"""The incident a firing (fingerprint, ``startsAt``) reached, if it was seen before."""

INCIDENT_STATUS = "SELECT status FROM durable_ir_incidents WHERE incident_id = %s"

OPEN_WITH_FINGERPRINT = (
    "SELECT incident_id FROM durable_ir_incidents WHERE fingerprint = %s AND status = 'open'"
)

COUNT_ALERT = (
    "UPDATE durable_ir_incidents SET alerts_received = alerts_received + 1,"
    " last_alert_at = CASE WHEN last_alert_at < %s THEN %s ELSE last_alert_at END"
    " WHERE incident_id = %s"
)
"""One more alert for an incident, open or closed (its status is left alone)."""

INSERT_INCIDENT = f"INSERT INTO durable_ir_incidents {INCIDENT_VALUES}"

REMEMBER_FIRING = (
    "INSERT INTO durable_ir_firings (fingerprint, starts_at, incident_id) VALUES (%s, %s, %s)"
    " ON CONFLICT (fingerprint, starts_at) DO NOTHING"
)

ALERT_EVENT = (
    "INSERT INTO durable_ir_alert_events (incident_id, kind, fingerprint, starts_at, at)"
    " VALUES (%s, %s, %s, %s, %s)"
)

RESOLVED_BEFORE = (
    "SELECT 1 AS found FROM durable_ir_alert_events WHERE incident_id = %s AND kind = 'resolved'"
    " AND fingerprint = %s AND starts_at = %s"
)

ALERT_EVENTS = (
    "SELECT incident_id, kind, fingerprint, starts_at, at FROM (SELECT *"
    " FROM durable_ir_alert_events WHERE incident_id = %s ORDER BY event_id DESC LIMIT %s)"
    " AS newest ORDER BY event_id"
)


class SqlSession(Protocol):
    """Statements on one connection, inside the transaction that
    :meth:`SqlLedger._sql_transaction` opened."""

    async def rows(self, query: str, params: SqlParams = ()) -> list[Mapping[str, Any]]:
        """Run ``query`` (``%s`` placeholders, or the dialect's named ones) and return its
        rows."""

    async def write(self, query: str, params: SqlParams = ()) -> int:
        """Run a write and return how many rows it changed."""


class SqlLedger(SqlOwnership):
    """Every :class:`~durable_ir.ledger.base.ApprovalLedger` method whose statement is the
    same on both backends, over the driver a backend supplies: ``_sql_rows``,
    ``_sql_write``, ``_sql_transaction``, ``_sql_time``, ``_sql_json``, ``_sql_in``,
    ``_sql_runnable`` and the class attributes ``_JSON_AS_TEXT`` and ``_SAME``; and the
    lease claim's own statement, ``_claim_due_runs``."""

    _JSON_AS_TEXT: ClassVar[bool]
    """JSON columns come back as text to decode (SQLite), not as values (``jsonb``)."""

    _SAME: ClassVar[str]
    """Null-safe equality of a column and a parameter (``IS NOT DISTINCT FROM``, ``IS``)."""

    # --- the driver ---------------------------------------------------------------------

    @abstractmethod
    def _sql_transaction(self) -> AbstractAsyncContextManager[SqlSession]:
        """A transaction: committed when the block ends, rolled back if it raises."""

    @abstractmethod
    def _sql_json(self, value: Any) -> Any:
        """``value`` as a parameter for a JSON column."""

    @abstractmethod
    def _sql_in(self, ids: Sequence[str]) -> list[tuple[str, tuple[Any, ...]]]:
        """``ids`` (duplicates dropped) as ``(condition, parameters)`` batches: the
        condition follows a column (``= ANY(%s)``, ``IN (%s, …)``) and matches the batch's
        ids. No batch for no ids."""

    @abstractmethod
    def _sql_runnable(self, runnable: Sequence[str]) -> tuple[str, tuple[Any, ...]]:
        """A condition that holds for rows whose
        :func:`~durable_ir.records.version_key` is in ``runnable``, and its parameters."""

    @abstractmethod
    async def _claim_due_runs(self, only: str, params: tuple[Any, ...]) -> list[Mapping[str, Any]]:
        """Lease the incidents :data:`DUE_RUNS` finds (``only`` filling its ``{only}``) to a
        new owner, so that no concurrent claimer takes the same ones, and return their rows.
        ``params``: the lease's owner and expiry, then those of :data:`DUE_RUNS`."""

    @abstractmethod
    async def _lock_fingerprint(self, tx: SqlSession, fingerprint: str) -> None:
        """Inside ``tx``, wait for and take the lock that serialises the firings of
        ``fingerprint`` across processes until ``tx`` ends."""

    async def _repeat_of_known_firing(
        self, new: NewIncident, fingerprint: str, start: Any, at: Any
    ) -> IncidentRecord | None:
        """The common case of :meth:`open_firing` (a repeat of a firing already seen, which
        Alertmanager re-sends with every group notification) without its transaction and
        lock, where a backend can do it in one statement: the incident it counted and noted
        the repeat on, or ``None`` to take the whole path. A firing's row never changes once
        written, so no lock is needed to act on it. Default: ``None``."""
        return None

    _RETRY_FIRING: ClassVar[tuple[type[Exception], ...]] = ()
    """Errors after which :meth:`open_firing` tries again (an insert that clashed with a
    concurrent :meth:`open_incident`, which takes no fingerprint lock)."""

    def _sql_datetime(self, value: Any) -> datetime | None:
        return as_datetime(value)

    def _only_runnable(self, runnable: Sequence[str] | None) -> tuple[str, tuple[Any, ...]]:
        """``" AND "`` :meth:`_sql_runnable`, or nothing when every version is runnable."""
        if runnable is None:
            return "", ()
        condition, params = self._sql_runnable(runnable)
        return f" AND {condition}", params

    # --- rows -----------------------------------------------------------------------------

    def _approval(self, row: Mapping[str, Any]) -> ApprovalRecord:
        return record_from_row(row, json_as_text=self._JSON_AS_TEXT)

    def _incident(self, row: Mapping[str, Any]) -> IncidentRecord:
        return incident_from_row(row, json_as_text=self._JSON_AS_TEXT)

    async def _approvals(self, query: str, params: SqlParams) -> list[ApprovalRecord]:
        return [self._approval(row) for row in await self._sql_rows(query, params)]

    async def _approval_one(self, query: str, params: SqlParams) -> ApprovalRecord | None:
        rows = await self._approvals(query, params)
        return rows[0] if rows else None

    async def _incidents(self, query: str, params: Sequence[Any]) -> list[IncidentRecord]:
        return [self._incident(row) for row in await self._sql_rows(query, params)]

    async def _notifications(self, query: str, params: Sequence[Any]) -> list[NotificationRecord]:
        rows = await self._sql_rows(query, params)
        return [notification_from_row(row, json_as_text=self._JSON_AS_TEXT) for row in rows]

    async def schema_version(self) -> int:
        rows = await self._sql_rows(SCHEMA_VERSION, ())
        return int(rows[0]["v"]) if rows else 0

    # --- approvals ------------------------------------------------------------------------

    def _approval_params(self, new: NewApproval) -> tuple[Any, ...]:
        """The parameters of :data:`APPROVAL_VALUES`."""
        return (
            new.approval_id,
            new.incident_id,
            new.graph,
            new.node,
            self._sql_json(new.request),
            new.severity,
            self._sql_time(new.requested_at),
            self._sql_time(new.deadline_at),
            self._sql_time(new.next_due_at or new.deadline_at),
            new.graph_version,
        )

    def _decision_params(self, approval_id: str, decision: DecisionWrite) -> dict[str, Any]:
        """The named parameters of a backend's decision compare-and-set."""
        late = decision.late
        plan = decision.edited_plan
        return {
            "late": late is not None,
            "at": self._sql_time(decision.decided_at),
            "status": decision.status.value,
            "by": decision.decided_by,
            "reason": decision.reason,
            "plan": None if plan is None else self._sql_json(plan),
            "late_by": late.decided_by if late else None,
            "late_reason": late.reason if late else None,
            "id": approval_id,
        }

    async def get(self, approval_id: str) -> ApprovalRecord | None:
        return await self._approval_one(GET_APPROVAL, (approval_id,))

    async def history(self, incident_id: str) -> list[ApprovalRecord]:
        return await self._approvals(APPROVAL_HISTORY, (incident_id,))

    async def latest(self, incident_id: str) -> ApprovalRecord | None:
        return await self._approval_one(LATEST_APPROVAL, (incident_id,))

    async def latest_many(self, incident_ids: Sequence[str]) -> dict[str, ApprovalRecord]:
        found: dict[str, ApprovalRecord] = {}
        for ids, params in self._sql_in(incident_ids):
            rows = await self._approvals(LATEST_APPROVALS.format(ids=ids), params)
            found.update((row.incident_id, row) for row in rows)
        return found

    async def mark_applied(self, approval_id: str, at: datetime) -> None:
        # Lost in a database crash, the mark only makes recovery hand the decision over again:
        # it reads the checkpoint first, finds the graph past the approval, and marks it then.
        await self._sql_write_relaxed(MARK_APPLIED, (self._sql_time(at), approval_id))

    async def unapplied(self, limit: int = 100) -> list[ApprovalRecord]:
        return await self._approvals(UNAPPLIED, (limit,))

    async def overdue_elsewhere(
        self, now: datetime, runnable: Sequence[str], limit: int
    ) -> list[ApprovalRecord]:
        condition, params = self._sql_runnable(runnable)
        return await self._approvals(
            OVERDUE_ELSEWHERE.format(runnable=condition), (self._sql_time(now), *params, limit)
        )

    async def pending_groups(self) -> list[PendingGroup]:
        rows = await self._sql_rows(PENDING_GROUPS, ())
        return [
            PendingGroup(
                r["severity"], r["graph_version"], int(r["n"]), self._sql_datetime(r["nearest"])
            )
            for r in rows
        ]

    async def due_reminders(self, now: datetime, limit: int) -> list[ApprovalRecord]:
        return await self._approvals(DUE_REMINDERS, (self._sql_time(now), limit))

    async def advance_reminder(
        self, approval_id: str, sent: int, to: int, next_due_at: datetime
    ) -> bool:
        params = (to, self._sql_time(next_due_at), approval_id, sent)
        return await self._sql_write(ADVANCE_REMINDER, params) == 1

    # --- incident index -------------------------------------------------------------------

    def _incident_params(self, new: NewIncident) -> tuple[Any, ...]:
        """The parameters of :data:`INCIDENT_VALUES`."""
        opened_at = self._sql_time(new.opened_at)
        return (
            new.incident_id,
            new.graph,
            new.fingerprint,
            new.title,
            new.service,
            new.severity,
            None if new.alert is None else self._sql_json(new.alert),
            opened_at,
            opened_at,
            new.lease.owner if new.lease else None,
            self._sql_time(new.lease.expires_at) if new.lease else None,
            new.graph_version,
        )

    async def mark_incident_started(self, incident_id: str, at: datetime) -> None:
        check_aware("at", at)
        await self._sql_write(MARK_STARTED, (self._sql_time(at), incident_id))

    async def close_incident(
        self, incident_id: str, outcome: str, at: datetime
    ) -> IncidentRecord | None:
        check_aware("at", at)
        moment = self._sql_time(at)
        rows = await self._incidents(CLOSE_INCIDENT, (moment, outcome, moment, incident_id))
        if rows:
            return rows[0]
        # Unknown, or closed already: a closed row stays closed, so this read shows it.
        return await self.get_incident(incident_id)

    async def get_incident(self, incident_id: str) -> IncidentRecord | None:
        rows = await self._incidents(GET_INCIDENT, (incident_id,))
        return rows[0] if rows else None

    async def list_incidents(
        self, *, status: IncidentState | None = None, limit: int = 100
    ) -> list[IncidentRecord]:
        status = check_incident_status(status)
        check_limit(limit)
        if status is None:
            return await self._incidents(LIST_INCIDENTS, (limit,))
        return await self._incidents(LIST_INCIDENTS_BY_STATUS, (status, limit))

    async def settle_run(self, incident_id: str, at: datetime) -> None:
        check_aware("at", at)
        # Lost in a database crash, the note only leaves the run's lease to expire: recovery
        # then reads the checkpoint, finds the run paused (or ended) and notes it.
        await self._sql_write_relaxed(SETTLE_RUN, (self._sql_time(at), incident_id))

    async def fail_run(self, incident_id: str, error: str, retry_at: datetime) -> None:
        check_aware("retry_at", retry_at)
        params = (self._sql_time(retry_at), error_text(error), incident_id)
        await self._sql_write(FAIL_RUN, params)

    async def extend_leases(
        self, incident_ids: Sequence[str], owner: str, expires_at: datetime
    ) -> int:
        check_lease(RunLease(owner, expires_at))
        extended = 0
        for ids, params in self._sql_in(incident_ids):
            extended += await self._sql_write(
                EXTEND_LEASES.format(ids=ids),
                (owner, self._sql_time(expires_at), *params, owner),
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
        only, among = self._only_runnable(runnable)
        rows = await self._claim_due_runs(
            only,
            (lease.owner, self._sql_time(lease.expires_at), self._sql_time(now), *among, limit),
        )
        return sorted(map(self._incident, rows), key=lambda r: (r.opened_at, r.incident_id))

    async def leased_incidents(self, limit: int) -> list[IncidentRecord]:
        check_limit(limit)
        return await self._incidents(LEASED_INCIDENTS, (limit,))

    async def count_run_attempt(self, incident_id: str) -> int:
        rows = await self._sql_rows(COUNT_RUN_ATTEMPT, (incident_id,))
        return int(rows[0]["run_attempts"]) if rows else 0

    async def prunable_incidents(self, closed_before: datetime, limit: int) -> list[IncidentRecord]:
        check_aware("closed_before", closed_before)
        check_limit(limit)
        params = (self._sql_time(closed_before), limit)
        return await self._incidents(PRUNABLE_INCIDENTS, params)

    async def mark_pruned(self, incident_id: str, at: datetime) -> None:
        check_aware("at", at)
        await self._sql_write(MARK_PRUNED, (self._sql_time(at), incident_id))

    async def unstarted_incidents(
        self, opened_before: datetime, limit: int = 100
    ) -> list[IncidentRecord]:
        check_aware("opened_before", opened_before)
        check_limit(limit)
        params = (self._sql_time(opened_before), limit)
        return await self._incidents(UNSTARTED_INCIDENTS, params)

    async def move_to_version(
        self, incident_id: str, graph: str, from_version: str | None, to_version: str
    ) -> bool:
        async with self._sql_transaction() as tx:
            moved = await tx.write(
                MOVE_INCIDENT.format(same=self._SAME),
                (to_version, incident_id, graph, from_version),
            )
            if moved != 1:
                return False
            await tx.write(MOVE_APPROVALS, (to_version, incident_id, graph))
        return True

    async def open_on_version(
        self, graph: str, version: str | None, limit: int
    ) -> list[IncidentRecord]:
        check_limit(limit)
        query = OPEN_ON_VERSION.format(same=self._SAME)
        return await self._incidents(query, (graph, version, limit))

    async def version_census(self) -> list[VersionCount]:
        rows = await self._sql_rows(VERSION_CENSUS, ())
        return [
            VersionCount(r["graph"], r["graph_version"], int(r["open"]), int(r["awaiting"]))
            for r in rows
        ]

    # --- notification outbox --------------------------------------------------------------

    def _notification_params(self, record: NotificationRecord) -> tuple[Any, ...]:
        """The parameters of :data:`NOTIFICATION_VALUES`."""
        return (
            record.key,
            record.incident_id,
            record.kind,
            record.channel,
            self._sql_time(record.sent_at),
            self._sql_json(record.result),
        )

    async def get_notification(self, key: str) -> NotificationRecord | None:
        rows = await self._notifications(GET_NOTIFICATION, (key,))
        return rows[0] if rows else None

    async def record_notification(self, record: NotificationRecord) -> NotificationRecord:
        check_notification(record)
        await self._sql_write(RECORD_NOTIFICATION, self._notification_params(record))
        # A row is never updated or deleted, so a plain read returns the first writer's.
        stored = await self.get_notification(record.key)
        assert stored is not None
        return stored

    async def list_notifications(self, incident_id: str) -> list[NotificationRecord]:
        return await self._notifications(LIST_NOTIFICATIONS, (incident_id,))

    # --- the alert lifecycle ----------------------------------------------------------------

    async def open_firing(
        self, new: NewIncident, starts_at: datetime, *, take: OwnershipTake | None = None
    ) -> FiringIntake:
        starts_at = check_firing(new, starts_at)
        if take is not None:
            check_take(take)
        fingerprint = str(new.fingerprint)
        at, start = self._sql_time(new.opened_at), self._sql_time(starts_at)
        repeated = await self._repeat_of_known_firing(new, fingerprint, start, at)
        if repeated is not None:
            return FiringIntake(False, repeated, "repeated")
        for _ in range(5):
            epoch = None
            try:
                async with self._sql_transaction() as tx:
                    await self._lock_fingerprint(tx, fingerprint)
                    outcome = await self._open_firing(tx, new, fingerprint, start, at)
                    rows = await tx.rows(GET_INCIDENT, (outcome[0],))
                    if outcome[1] and take is not None:
                        # The opener takes it in the same transaction: no commit of its own.
                        taken = await tx.rows(TAKE, self._take_params(new.incident_id, take))
                        epoch = int(taken[0]["epoch"]) if taken else None
            except self._RETRY_FIRING:
                continue  # a concurrent open_incident (no lock) inserted first: look again
            _, created, kind = outcome
            return FiringIntake(created, self._incident(rows[0]), kind, epoch)
        raise RuntimeError(f"could not open incident {new.incident_id}: too many conflicts")

    async def _open_firing(
        self, tx: SqlSession, new: NewIncident, fingerprint: str, start: Any, at: Any
    ) -> tuple[str, bool, Any]:
        named = await tx.rows(INCIDENT_STATUS, (new.incident_id,))
        if named and named[0]["status"] == "closed":
            return new.incident_id, False, None  # a closed incident is never reopened by id
        seen = await tx.rows(FIRING_INCIDENT, (fingerprint, start))
        if seen:
            incident_id = str(seen[0]["incident_id"])
            await tx.write(COUNT_ALERT, (at, at, incident_id))
            await tx.write(ALERT_EVENT, (incident_id, "repeated", fingerprint, start, at))
            return incident_id, False, "repeated"
        found = await tx.rows(OPEN_WITH_FINGERPRINT, (fingerprint,))
        created = not found
        if found:
            incident_id = str(found[0]["incident_id"])
            await tx.write(COUNT_ALERT, (at, at, incident_id))
        else:
            incident_id = new.incident_id
            if named:
                return incident_id, False, None
            await tx.write(INSERT_INCIDENT, self._incident_params(new))
        await tx.write(REMEMBER_FIRING, (fingerprint, start, incident_id))
        await tx.write(ALERT_EVENT, (incident_id, "fired", fingerprint, start, at))
        return incident_id, created, "fired"

    async def resolve_firing(
        self, fingerprint: str, starts_at: datetime, at: datetime
    ) -> tuple[IncidentRecord | None, bool]:
        if not isinstance(fingerprint, str) or not fingerprint:
            raise InvalidInput("a resolution needs a fingerprint")
        check_text("fingerprint", fingerprint)
        start = self._sql_time(check_aware("starts_at", starts_at))
        moment = self._sql_time(check_aware("at", at))
        async with self._sql_transaction() as tx:
            await self._lock_fingerprint(tx, fingerprint)
            found = await tx.rows(FIRING_INCIDENT, (fingerprint, start))
            if not found:
                found = await tx.rows(OPEN_WITH_FINGERPRINT, (fingerprint,))
            if not found:
                return None, False
            incident_id = str(found[0]["incident_id"])
            first = not await tx.rows(RESOLVED_BEFORE, (incident_id, fingerprint, start))
            if first:
                await tx.write(ALERT_EVENT, (incident_id, "resolved", fingerprint, start, moment))
            rows = await tx.rows(GET_INCIDENT, (incident_id,))
        return self._incident(rows[0]), first

    async def alert_events(self, incident_id: str, limit: int = 200) -> list[AlertEvent]:
        rows = await self._sql_rows(ALERT_EVENTS, (incident_id, check_limit(limit)))
        return [
            AlertEvent(
                incident_id=row["incident_id"],
                kind=row["kind"],
                fingerprint=row["fingerprint"],
                starts_at=as_datetime(row["starts_at"]),  # type: ignore[arg-type]
                at=as_datetime(row["at"]),  # type: ignore[arg-type]
            )
            for row in rows
        ]
