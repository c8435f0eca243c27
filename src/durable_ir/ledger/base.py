"""The approval ledger interface, shared by the PostgreSQL, SQLite and in-memory backends.

The ledger is the source of truth for decisions. Its one write that matters,
:meth:`ApprovalLedger.record_decision`, is a first-writer-wins compare-and-set on
``status = 'pending'`` that is atomic across processes.

Beside the approvals it keeps the incident index (one :class:`IncidentRecord` per incident,
with alert de-duplication by fingerprint) and the notification outbox (one
:class:`NotificationRecord` per notification sent).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from durable_ir.errors import InvalidInput
from durable_ir.records import (
    AlertEvent,
    ApprovalRecord,
    ApprovalStatus,
    FiringIntake,
    IncidentRecord,
    IncidentState,
    NewApproval,
    NewIncident,
    NotificationRecord,
    Ownership,
    OwnershipTake,
    PendingGroup,
    RunLease,
    StepClaim,
)
from durable_ir.text import check_json_text, check_text

__all__ = [
    "MAX_LIST_LIMIT",
    "ApprovalLedger",
    "DecisionWrite",
    "LateDecision",
    "VersionCount",
    "as_datetime",
    "check_aware",
    "check_firing",
    "check_incident_status",
    "check_lease",
    "check_limit",
    "check_new_incident",
    "check_notification",
    "check_take",
    "error_text",
    "incident_from_row",
    "notification_from_row",
    "record_from_row",
]

MAX_LIST_LIMIT = 1000
"""The most rows one incident listing returns."""


@dataclass(frozen=True)
class LateDecision:
    """What a decision records instead when it arrives at or after the approval's deadline:
    the expiry, by ``decided_by`` (``system:sla``), with ``reason``."""

    decided_by: str
    reason: str


@dataclass(frozen=True)
class DecisionWrite:
    """The fields a decision writes into its ledger row.

    ``late``: if the row's ``deadline_at`` is at or before ``decided_at`` when the
    compare-and-set runs, the row is expired instead (``status = 'expired'``, ``late``'s
    identity and reason, no edited plan) — the deadline holds at the moment of decision, in
    the same atomic write, not at the monitor's next sweep.
    """

    status: ApprovalStatus
    decided_by: str
    decided_at: datetime
    reason: str | None
    edited_plan: Any = None
    late: LateDecision | None = None


@dataclass(frozen=True)
class VersionCount:
    """Open incidents of one graph version: how many, and how many of them wait on a
    pending approval (what a deploy's drain check reads)."""

    graph: str
    graph_version: str | None
    open: int
    awaiting_approval: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return asdict(self)


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

    async def latest_many(self, incident_ids: Sequence[str]) -> dict[str, ApprovalRecord]:
        """:meth:`latest` for many incidents at once (those with no approval are absent): one
        query on the database backends, for listing incidents."""
        found: dict[str, ApprovalRecord] = {}
        for incident_id in dict.fromkeys(incident_ids):
            row = await self.latest(incident_id)
            if row is not None:
                found[incident_id] = row
        return found

    @abstractmethod
    async def record_decision(
        self, approval_id: str, decision: DecisionWrite, lease: RunLease | None = None
    ) -> tuple[bool, ApprovalRecord]:
        """Compare-and-set the row from pending to ``decision``.

        Returns ``(True, row)`` when this call won, ``(False, row)`` with the winner's row when
        another decision was recorded first. Raises ``LookupError`` for an unknown id. With
        ``lease``, a winning decision's incident (if indexed) takes that run lease in the same
        transaction: from then on the run that applies it is owed, and recovered if its
        runner dies.
        """

    @abstractmethod
    async def mark_applied(self, approval_id: str, at: datetime) -> None:
        """Note that the recorded decision has been handed to the graph (a pending row, which
        has no decision to apply, is left alone)."""

    @abstractmethod
    async def unapplied(self, limit: int = 100) -> list[ApprovalRecord]:
        """Decided rows whose decision has not been applied yet, oldest decision first —
        except those of incidents that hold a run lease: lease recovery
        (:meth:`claim_expired_runs`) applies those, counting its tries."""

    @abstractmethod
    async def expire_due(
        self,
        now: datetime,
        limit: int,
        decided_by: str,
        reason: Callable[[ApprovalRecord], str],
        lease: RunLease | None = None,
        runnable: Sequence[str] | None = None,
    ) -> list[ApprovalRecord]:
        """Expire up to ``limit`` pending approvals whose deadline is at or before ``now``,
        earliest deadline first, and return the rows this call expired; with ``lease``, their
        incidents take it in the same transaction (as :meth:`record_decision`). With
        ``runnable`` (:func:`~durable_ir.records.version_key` values), only approvals that
        paused on one of those graph versions: the caller can apply the expiry.

        The same compare-and-set as :meth:`record_decision` (only a pending row changes), done
        in batch; rows another sweeper is expiring at the same moment are skipped, not waited
        for. Found through the partial index on pending deadlines, so the cost grows with the
        number overdue, not with history.
        """

    @abstractmethod
    async def overdue_elsewhere(
        self, now: datetime, runnable: Sequence[str], limit: int
    ) -> list[ApprovalRecord]:
        """Pending approvals whose deadline is at or before ``now`` that paused on a graph
        version *not* in ``runnable``: what a monitor without that version leaves alone (and
        says so)."""

    @abstractmethod
    async def pending_groups(self) -> list[PendingGroup]:
        """Pending approvals per severity and graph version, each with its nearest deadline
        (what the pending-approval metrics show; one grouped query on the pending index)."""

    @abstractmethod
    async def due_reminders(self, now: datetime, limit: int) -> list[ApprovalRecord]:
        """Pending approvals whose next reminder (``next_due_at`` before the deadline) is due."""

    @abstractmethod
    async def advance_reminder(
        self, approval_id: str, sent: int, to: int, next_due_at: datetime
    ) -> bool:
        """Compare-and-set ``reminders_sent`` from ``sent`` to ``to`` on a pending row and move
        ``next_due_at``; True if this call did it (so exactly one sweeper reminds)."""

    # --- incident index -----------------------------------------------------------------

    @abstractmethod
    async def open_incident(self, new: NewIncident) -> tuple[bool, IncidentRecord]:
        """Open ``new``, or attach it to the open incident with the same fingerprint.

        Atomic across processes, in this order:

        1. ``new.fingerprint`` is set and an *open* incident has it: nothing is inserted;
           that incident's ``alerts_received`` goes up by one and its ``last_alert_at`` becomes
           ``new.opened_at`` if that is later. Returns ``(False, updated_row)``.
        2. A row with ``new.incident_id`` exists (open or closed): nothing changes. Returns
           ``(False, existing_row)``.
        3. Otherwise the incident is inserted, open, with ``alerts_received = 1`` and
           ``last_alert_at = opened_at``. Returns ``(True, row)``.

        Raises :class:`~durable_ir.errors.InvalidInput` for an empty id, a naive
        ``opened_at`` or an ``alert`` that is not storable JSON.
        """

    # --- the alert lifecycle (Alertmanager's firings and resolutions) --------------------------

    @abstractmethod
    async def open_firing(
        self, new: NewIncident, starts_at: datetime, *, take: OwnershipTake | None = None
    ) -> FiringIntake:
        """:meth:`open_incident`, idempotent on the firing (``new.fingerprint``, ``starts_at``).

        Atomic across processes (one lock per fingerprint: PostgreSQL's transaction-scoped
        advisory lock, SQLite's write lock), in this order:

        0. a *closed* incident has ``new.incident_id``: nothing changes; ``kind`` ``None``
           (a closed incident is never reopened, nor counted, by its id).
        1. this firing was seen before: its incident — open *or closed* — counts the alert
           (``alerts_received``, ``last_alert_at``); nothing is opened or reopened. ``kind``
           ``"repeated"``.
        2. an open incident has the fingerprint: the alert attaches to it as in
           :meth:`open_incident`, and the firing is remembered for it. ``kind`` ``"fired"``.
        3. a row with ``new.incident_id`` exists: nothing changes; ``kind`` ``None``.
        4. otherwise the incident is inserted (``created``) and the firing remembered.

        Every case but 0 and 3 appends an :class:`~durable_ir.records.AlertEvent`. Raises
        :class:`~durable_ir.errors.InvalidInput` as :meth:`open_incident` does, and for a
        missing fingerprint or a naive ``starts_at``. With ``take``, an incident this call
        opens is taken as :meth:`open_and_take` does, in the same transaction
        (``FiringIntake.epoch``). :meth:`open_incident` itself is
        unchanged (it knows nothing of firings).
        """

    @abstractmethod
    async def resolve_firing(
        self, fingerprint: str, starts_at: datetime, at: datetime
    ) -> tuple[IncidentRecord | None, bool]:
        """Record that the firing (``fingerprint``, ``starts_at``) resolved at ``at``.

        Its incident is the one that firing reached, else the open incident with the
        fingerprint; ``(None, False)`` if there is none (nothing is written). Returns the
        incident and whether this call recorded the resolution (the first notice for that
        firing: repeats of the notice add nothing)."""

    @abstractmethod
    async def alert_events(self, incident_id: str, limit: int = 200) -> list[AlertEvent]:
        """The newest ``limit`` alert events of ``incident_id``, oldest first."""

    @abstractmethod
    async def mark_incident_started(self, incident_id: str, at: datetime) -> None:
        """Record that the incident's first run began at ``at`` (kept if already set; an
        unknown id is ignored)."""

    @abstractmethod
    async def close_incident(
        self, incident_id: str, outcome: str, at: datetime
    ) -> IncidentRecord | None:
        """Close an open incident with ``outcome`` at ``at``; return the stored row.

        Idempotent: a closed incident keeps its first ``closed_at`` and ``outcome``. Returns
        ``None`` for an unknown id. A closed incident no longer absorbs alerts with its
        fingerprint: the next :meth:`open_incident` with it opens a new incident (only
        repeats of a firing it reached attach to it, through :meth:`open_firing`).
        """

    @abstractmethod
    async def get_incident(self, incident_id: str) -> IncidentRecord | None:
        """The index row of ``incident_id``, or ``None``."""

    @abstractmethod
    async def list_incidents(
        self, *, status: IncidentState | None = None, limit: int = 100
    ) -> list[IncidentRecord]:
        """Up to ``limit`` incidents (all, or only ``status``), most recently opened first.

        Raises :class:`~durable_ir.errors.InvalidInput` unless ``1 <= limit <= 1000`` and
        ``status`` is ``None``, ``"open"`` or ``"closed"``.
        """

    @abstractmethod
    async def settle_run(self, incident_id: str, at: datetime) -> None:
        """The incident's run paused (for approval) at ``at``: note it started (kept if already
        set), drop its lease, reset ``run_attempts`` and clear ``last_error``."""

    @abstractmethod
    async def fail_run(self, incident_id: str, error: str, retry_at: datetime) -> None:
        """The incident's run raised ``error``: keep the run owed, free for any runtime to
        retry from ``retry_at`` (owner cleared), with ``error`` as ``last_error``."""

    @abstractmethod
    async def extend_leases(
        self, incident_ids: Sequence[str], owner: str, expires_at: datetime
    ) -> int:
        """The heartbeat: ``owner`` is still running these incidents; move their leases to
        ``expires_at``. Incidents without a lease (paused, closed) and leases another worker
        claimed (this one was taken over) are left alone. Returns the number extended."""

    @abstractmethod
    async def claim_expired_runs(
        self,
        now: datetime,
        lease: RunLease,
        limit: int,
        runnable: Sequence[str] | None = None,
    ) -> list[IncidentRecord]:
        """Take over up to ``limit`` open incidents whose lease expired at or before ``now``,
        oldest expiry first, giving them ``lease``; return them as claimed. With ``runnable``
        (as in :meth:`expire_due`), only incidents on those graph versions.

        Rows another runtime is claiming at the same moment are skipped, not waited for
        (PostgreSQL: ``FOR UPDATE SKIP LOCKED``), so replicas share the work. Found through the
        partial index on leases, so the cost grows with the runs owed, not with history.
        """

    @abstractmethod
    async def leased_incidents(self, limit: int) -> list[IncidentRecord]:
        """Open incidents holding a lease, expired or not, oldest expiry first (what a
        runtime starting up checks: those whose runner is gone are taken over at once)."""

    @abstractmethod
    async def count_run_attempt(self, incident_id: str) -> int:
        """Add one to the incident's ``run_attempts`` and return the new count (recovery is
        taking its run over)."""

    @abstractmethod
    async def prunable_incidents(self, closed_before: datetime, limit: int) -> list[IncidentRecord]:
        """Closed incidents not pruned yet, closed at or before ``closed_before``, oldest
        first (what retention prunes). ``limit`` as in :meth:`list_incidents`."""

    @abstractmethod
    async def mark_pruned(self, incident_id: str, at: datetime) -> None:
        """Note that the closed incident's checkpoints were deleted at ``at`` (kept if set)."""

    @abstractmethod
    async def unstarted_incidents(
        self, opened_before: datetime, limit: int = 100
    ) -> list[IncidentRecord]:
        """Open incidents whose run never started, opened at or before ``opened_before``,
        oldest first (what recovery starts). ``limit`` as in :meth:`list_incidents`."""

    @abstractmethod
    async def move_to_version(
        self, incident_id: str, graph: str, from_version: str | None, to_version: str
    ) -> bool:
        """Move an open incident, and its approvals not yet applied, from ``from_version``
        (``None``: unversioned) to ``to_version`` of ``graph`` — a compare-and-set on the
        incident's current version, in one transaction. True if this call moved it."""

    @abstractmethod
    async def open_on_version(
        self, graph: str, version: str | None, limit: int
    ) -> list[IncidentRecord]:
        """Up to ``limit`` open incidents of ``graph`` on ``version`` (``None``: unversioned),
        oldest first. ``limit`` as in :meth:`list_incidents`."""

    @abstractmethod
    async def version_census(self) -> list[VersionCount]:
        """Open incidents per graph version, and how many wait on a pending approval."""

    # --- notification outbox --------------------------------------------------------------

    @abstractmethod
    async def get_notification(self, key: str) -> NotificationRecord | None:
        """The outbox row with ``key``, or ``None`` if that notification was never recorded."""

    @abstractmethod
    async def record_notification(self, record: NotificationRecord) -> NotificationRecord:
        """Insert ``record`` unless a row with its ``key`` exists; return the stored row.

        First writer wins: when two senders race, both get the first one's row back.
        """

    @abstractmethod
    async def list_notifications(self, incident_id: str) -> list[NotificationRecord]:
        """Every notification recorded for ``incident_id``, oldest first."""

    # -- ownership (the incident lock with a fencing epoch) and step claims -----------------

    @abstractmethod
    async def take_ownership(
        self,
        incident_id: str,
        owner: str,
        now: datetime,
        expires_at: datetime,
        *,
        steal_from: str | None = None,
    ) -> int | None:
        """Take ``incident_id`` for ``owner`` until ``expires_at`` if nobody holds it, its
        holder's hold expired by ``now``, or its holder is ``steal_from`` (a worker known to
        be dead). One conditional write that bumps the incident's epoch; returns the new epoch,
        or ``None`` if another worker holds it."""

    async def open_and_take(
        self, new: NewIncident, take: OwnershipTake | None
    ) -> tuple[bool, IncidentRecord, int | None]:
        """:meth:`open_incident`, and if it opened ``new``, :meth:`take_ownership` of it as
        ``take`` says: ``(opened, row, epoch)``, the epoch ``None`` when nothing was taken.

        The database backends may do both in one statement (PostgreSQL does: one round trip
        and one commit fewer per incident); the outcome is the same as the two calls in a row.
        """
        if take is not None:
            check_take(take)
        opened, row = await self.open_incident(new)
        if not opened or take is None:
            return opened, row, None
        return opened, row, await self._take(new.incident_id, take)

    async def decide_and_take(
        self,
        approval_id: str,
        decision: DecisionWrite,
        lease: RunLease | None,
        take: OwnershipTake | None,
    ) -> tuple[bool, ApprovalRecord, int | None]:
        """:meth:`record_decision`, and if this call won, :meth:`take_ownership` of the
        approval's incident as ``take`` says: ``(won, row, epoch)`` (see
        :meth:`open_and_take`)."""
        if take is not None:
            check_take(take)
        won, row = await self.record_decision(approval_id, decision, lease)
        if not won or take is None:
            return won, row, None
        return won, row, await self._take(row.incident_id, take)

    async def _take(self, incident_id: str, take: OwnershipTake) -> int | None:
        return await self.take_ownership(
            incident_id, take.owner, take.now, take.expires_at, steal_from=take.steal_from
        )

    @abstractmethod
    async def renew_ownership(
        self, incident_ids: Sequence[str], owner: str, expires_at: datetime
    ) -> set[str]:
        """The heartbeat: move ``owner``'s holds on ``incident_ids`` to ``expires_at``.
        Returns the ids ``owner`` still holds (the others were taken over)."""

    @abstractmethod
    async def release_ownership(self, incident_id: str, owner: str, epoch: int) -> bool:
        """Give up ``owner``'s hold of epoch ``epoch``; False if it had been taken over."""

    @abstractmethod
    async def get_ownership(self, incident_id: str) -> Ownership | None:
        """Who holds ``incident_id`` (``None``: it was never taken)."""

    @abstractmethod
    async def claim_step(
        self, incident_id: str, key: str, epoch: int, owner: str, now: datetime
    ) -> list[StepClaim] | None:
        """Claim the step ``key`` of ``incident_id`` for ownership ``epoch`` before running
        it. Returns every claim of that step, oldest epoch first (this one included), or
        ``None`` if ``epoch`` no longer owns the incident: then nothing was written."""

    @abstractmethod
    async def finish_step(
        self, incident_id: str, key: str, epoch: int, ok: bool, detail: str, now: datetime
    ) -> bool:
        """Record the result of a step claimed by ``epoch``; False (nothing written) if
        ``epoch`` no longer owns the incident."""

    @abstractmethod
    async def step_claims(self, incident_id: str) -> list[StepClaim]:
        """Every step claim of ``incident_id``, by key, then epoch."""

    async def schema_version(self) -> int | None:
        """The highest schema migration applied to this database (``None``: no schema, as
        in memory)."""
        return None

    async def server_time(self) -> datetime | None:
        """The database server's clock, or ``None`` where the local clock is the database's
        (SQLite, memory): what :class:`~durable_ir.clock.DatabaseClock` follows."""
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook, default no-op
        """Release what the ledger holds of its own (the store owns shared connections)."""


def as_datetime(value: object) -> datetime | None:
    """A stored timestamp (a datetime, or SQLite's integer epoch microseconds) as an aware
    UTC datetime; ``None`` stays ``None``."""
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

    requested_at = as_datetime(row["requested_at"])
    deadline_at = as_datetime(row["deadline_at"])
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
        decided_at=as_datetime(row["decided_at"]),
        reason=row["reason"],
        edited_plan=None if row["edited_plan"] is None else _as_json(row["edited_plan"]),
        applied_at=as_datetime(row["applied_at"]),
        next_due_at=as_datetime(row["next_due_at"]),
        reminders_sent=int(row["reminders_sent"]),
        graph_version=row["graph_version"],
    )


# --- incident index and outbox: validation and rows -------------------------------------


def check_limit(limit: int) -> int:
    """``limit`` if it is an int from 1 to :data:`MAX_LIST_LIMIT`, else :class:`InvalidInput`."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidInput(f"limit must be an integer, got {limit!r}")
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}")
    return limit


_INCIDENT_STATES: tuple[str, ...] = get_args(IncidentState)


def check_incident_status(status: object) -> IncidentState | None:
    """``status`` if it is ``None`` or an :data:`IncidentState`, else :class:`InvalidInput`."""
    if status is not None and status not in _INCIDENT_STATES:
        raise InvalidInput(f"status must be one of {_INCIDENT_STATES} or None, got {status!r}")
    return status  # type: ignore[return-value]


def check_aware(name: str, moment: object) -> datetime:
    """``moment`` if it is a timezone-aware datetime, else :class:`InvalidInput`."""
    if not isinstance(moment, datetime):
        raise InvalidInput(f"{name} must be a datetime, got {moment!r}")
    if moment.utcoffset() is None:
        raise InvalidInput(f"{name} must be timezone-aware, got {moment.isoformat()}")
    return moment


def _check_id(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{name} must be a non-empty string, got {value!r}")
    check_text(name, value)


def _check_optional_text(name: str, value: object) -> None:
    if value is not None:
        if not isinstance(value, str):
            raise InvalidInput(f"{name} must be a string or None, got {type(value).__name__}")
        check_text(name, value)


def _check_json(name: str, value: object) -> None:
    """Every backend must store ``value`` and give it back equal: JSON without NaN or
    infinities, and no string (key or value) that some backend cannot store — a NUL
    character (PostgreSQL ``jsonb`` refuses it) or an unpaired surrogate (not text): see
    :mod:`durable_ir.text`."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInput(f"{name} is not storable JSON: {exc}") from None
    check_json_text(name, value)


def check_firing(new: NewIncident, starts_at: object) -> datetime:
    """Raise :class:`InvalidInput` unless ``new`` is storable and names a firing."""
    check_new_incident(new)
    if not new.fingerprint:
        raise InvalidInput("a firing needs a fingerprint")
    return check_aware("starts_at", starts_at)


def check_new_incident(new: NewIncident) -> None:
    """Raise :class:`InvalidInput` unless every backend can store ``new`` as it is."""
    _check_id("incident_id", new.incident_id)
    _check_id("graph", new.graph)
    check_aware("opened_at", new.opened_at)
    if new.fingerprint is not None and not isinstance(new.fingerprint, str):
        raise InvalidInput(f"fingerprint must be a string or None, got {new.fingerprint!r}")
    _check_optional_text("fingerprint", new.fingerprint)
    _check_optional_text("title", new.title)
    _check_optional_text("service", new.service)
    _check_optional_text("severity", new.severity)
    _check_optional_text("graph_version", new.graph_version)
    if new.alert is not None:
        if not isinstance(new.alert, dict):
            raise InvalidInput(f"alert must be a dict or None, got {type(new.alert).__name__}")
        _check_json("alert", new.alert)
    if new.lease is not None:
        check_lease(new.lease)


MAX_ERROR_CHARS = 2000
"""How much of a run's error the index keeps (``last_error``)."""


def check_lease(lease: RunLease) -> RunLease:
    """Raise :class:`InvalidInput` unless ``lease`` can be stored as it is."""
    if not isinstance(lease, RunLease):
        raise InvalidInput(f"lease must be a RunLease, got {type(lease).__name__}")
    if lease.owner is not None:
        _check_id("lease owner", lease.owner)
    check_aware("lease expires_at", lease.expires_at)
    return lease


def check_take(take: OwnershipTake) -> OwnershipTake:
    """Raise :class:`InvalidInput` unless ``take`` can be stored as it is."""
    if not isinstance(take, OwnershipTake):
        raise InvalidInput(f"take must be an OwnershipTake, got {type(take).__name__}")
    _check_id("owner", take.owner)
    if take.steal_from is not None:
        _check_id("steal_from", take.steal_from)
    check_aware("take now", take.now)
    check_aware("take expires_at", take.expires_at)
    return take


def error_text(error: object) -> str:
    """``error`` as the index keeps it: text, at most :data:`MAX_ERROR_CHARS` characters."""
    text = str(error)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def check_notification(record: NotificationRecord) -> None:
    """Raise :class:`InvalidInput` unless every backend can store ``record`` as it is."""
    _check_id("key", record.key)
    _check_id("incident_id", record.incident_id)
    _check_optional_text("kind", record.kind)
    _check_optional_text("channel", record.channel)
    check_aware("sent_at", record.sent_at)
    if not isinstance(record.result, dict):
        raise InvalidInput(f"result must be a dict, got {type(record.result).__name__}")
    _check_json("result", record.result)


def _json_value(value: object, json_as_text: bool) -> Any:
    return json.loads(value) if json_as_text and isinstance(value, str | bytes) else value


def incident_from_row(row: Mapping[str, Any], *, json_as_text: bool = False) -> IncidentRecord:
    """Build an :class:`IncidentRecord` from a ``durable_ir_incidents`` row
    (``json_as_text`` as in :func:`record_from_row`)."""
    opened_at = as_datetime(row["opened_at"])
    assert opened_at is not None
    status = row["status"]
    if status not in _INCIDENT_STATES:
        raise ValueError(f"unknown incident status {status!r}")
    return IncidentRecord(
        incident_id=row["incident_id"],
        graph=row["graph"],
        opened_at=opened_at,
        status=status,
        fingerprint=row["fingerprint"],
        title=row["title"],
        service=row["service"],
        severity=row["severity"],
        alert=None if row["alert"] is None else _json_value(row["alert"], json_as_text),
        alerts_received=int(row["alerts_received"]),
        last_alert_at=as_datetime(row["last_alert_at"]),
        started_at=as_datetime(row["started_at"]),
        closed_at=as_datetime(row["closed_at"]),
        outcome=row["outcome"],
        lease_owner=row["lease_owner"],
        lease_expires_at=as_datetime(row["lease_expires_at"]),
        run_attempts=int(row["run_attempts"]),
        last_error=row["last_error"],
        pruned_at=as_datetime(row["pruned_at"]),
        graph_version=row["graph_version"],
    )


def notification_from_row(
    row: Mapping[str, Any], *, json_as_text: bool = False
) -> NotificationRecord:
    """Build a :class:`NotificationRecord` from a ``durable_ir_notifications`` row
    (``json_as_text`` as in :func:`record_from_row`)."""
    sent_at = as_datetime(row["sent_at"])
    assert sent_at is not None
    return NotificationRecord(
        key=row["key"],
        incident_id=row["incident_id"],
        kind=row["kind"],
        channel=row["channel"],
        sent_at=sent_at,
        result=_json_value(row["result"], json_as_text),
    )
