"""An in-process approval ledger for ``memory://`` runtimes and unit tests."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from durable_ir.errors import InvalidInput
from durable_ir.ledger.base import (
    ApprovalLedger,
    DecisionWrite,
    VersionCount,
    check_aware,
    check_firing,
    check_incident_status,
    check_lease,
    check_limit,
    check_new_incident,
    check_notification,
    check_take,
    error_text,
)
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
    version_key,
)

__all__ = ["MemoryLedger"]


class MemoryLedger(ApprovalLedger):
    """Keeps rows in a dict. Atomic because every method runs without awaiting.

    Example:
        >>> import asyncio
        >>> asyncio.run(MemoryLedger().history("inc-1"))
        []
    """

    def __init__(self) -> None:
        self._rows: dict[str, ApprovalRecord] = {}
        self._incidents: dict[str, IncidentRecord] = {}
        self._open_by_fingerprint: dict[str, str] = {}  # the partial unique index
        self._notifications: dict[str, NotificationRecord] = {}
        self._owners: dict[str, Ownership] = {}
        self._claims: dict[tuple[str, str, int], StepClaim] = {}
        self._firings: dict[tuple[str, datetime], str] = {}
        self._alert_events: dict[str, list[AlertEvent]] = {}

    async def setup(self) -> None:
        return None

    # -- ownership and step claims (see durable_ir.ledger.ownership for the SQL) ---------

    async def take_ownership(
        self,
        incident_id: str,
        owner: str,
        now: datetime,
        expires_at: datetime,
        *,
        steal_from: str | None = None,
    ) -> int | None:
        check_aware("now", now)
        check_aware("expires_at", expires_at)
        held = self._owners.get(incident_id)
        if held is not None and not (
            held.owner is None
            or (held.expires_at is not None and held.expires_at <= now)
            or (steal_from and held.owner == steal_from)
        ):
            return None
        epoch = 1 if held is None else held.epoch + 1
        self._owners[incident_id] = Ownership(incident_id, owner, epoch, expires_at)
        return epoch

    async def renew_ownership(
        self, incident_ids: Sequence[str], owner: str, expires_at: datetime
    ) -> set[str]:
        check_aware("expires_at", expires_at)
        kept: set[str] = set()
        for incident_id in incident_ids:
            held = self._owners.get(incident_id)
            if held is not None and held.owner == owner:
                self._owners[incident_id] = replace(held, expires_at=expires_at)
                kept.add(incident_id)
        return kept

    async def release_ownership(self, incident_id: str, owner: str, epoch: int) -> bool:
        held = self._owners.get(incident_id)
        if held is None or held.owner != owner or held.epoch != epoch:
            return False
        self._owners[incident_id] = replace(held, owner=None, expires_at=None)
        return True

    async def get_ownership(self, incident_id: str) -> Ownership | None:
        return self._owners.get(incident_id)

    def _owns(self, incident_id: str, epoch: int) -> bool:
        held = self._owners.get(incident_id)
        return held is not None and held.epoch == epoch

    async def claim_step(
        self, incident_id: str, key: str, epoch: int, owner: str, now: datetime
    ) -> list[StepClaim] | None:
        check_aware("now", now)
        if not self._owns(incident_id, epoch):
            return None
        self._claims.setdefault(
            (incident_id, key, epoch), StepClaim(incident_id, key, epoch, owner, now)
        )
        return [c for c in await self.step_claims(incident_id) if c.key == key]

    async def finish_step(
        self, incident_id: str, key: str, epoch: int, ok: bool, detail: str, now: datetime
    ) -> bool:
        check_aware("now", now)
        claim = self._claims.get((incident_id, key, epoch))
        if claim is None or not self._owns(incident_id, epoch):
            return False
        self._claims[(incident_id, key, epoch)] = replace(
            claim, finished_at=now, ok=ok, detail=detail
        )
        return True

    async def step_claims(self, incident_id: str) -> list[StepClaim]:
        return sorted(
            (c for (i, _, _), c in self._claims.items() if i == incident_id),
            key=lambda c: (c.key, c.epoch),
        )

    async def register(self, new: NewApproval) -> ApprovalRecord:
        existing = self._rows.get(new.approval_id)
        if existing is not None:
            return existing
        row = ApprovalRecord(
            approval_id=new.approval_id,
            incident_id=new.incident_id,
            graph=new.graph,
            node=new.node,
            request=copy.deepcopy(new.request),
            severity=new.severity,
            requested_at=new.requested_at,
            deadline_at=new.deadline_at,
            status=ApprovalStatus.PENDING,
            next_due_at=new.next_due_at or new.deadline_at,
            graph_version=new.graph_version,
        )
        self._rows[new.approval_id] = row
        return row

    async def get(self, approval_id: str) -> ApprovalRecord | None:
        return self._rows.get(approval_id)

    async def history(self, incident_id: str) -> list[ApprovalRecord]:
        rows = [r for r in self._rows.values() if r.incident_id == incident_id]
        return sorted(rows, key=lambda r: (r.requested_at, r.approval_id))

    async def latest(self, incident_id: str) -> ApprovalRecord | None:
        rows = await self.history(incident_id)
        return rows[-1] if rows else None

    async def record_decision(
        self, approval_id: str, decision: DecisionWrite, lease: RunLease | None = None
    ) -> tuple[bool, ApprovalRecord]:
        if lease is not None:
            check_lease(lease)
        row = self._rows.get(approval_id)
        if row is None:
            raise LookupError(approval_id)
        if not row.is_pending:
            return False, row
        if decision.late is not None and row.deadline_at <= decision.decided_at:
            row = replace(
                row,
                status=ApprovalStatus.EXPIRED,
                decided_by=decision.late.decided_by,
                decided_at=decision.decided_at,
                reason=decision.late.reason,
            )
        else:
            row = replace(
                row,
                status=decision.status,
                decided_by=decision.decided_by,
                decided_at=decision.decided_at,
                reason=decision.reason,
                edited_plan=copy.deepcopy(decision.edited_plan),
            )
        self._rows[approval_id] = row
        if lease is not None:
            self._lease(row.incident_id, lease)
        return True, row

    def _lease(self, incident_id: str, lease: RunLease) -> None:
        row = self._incidents.get(incident_id)
        if row is not None and row.is_open:
            self._incidents[incident_id] = replace(
                row, lease_owner=lease.owner, lease_expires_at=lease.expires_at.astimezone(UTC)
            )

    async def mark_applied(self, approval_id: str, at: datetime) -> None:
        row = self._rows[approval_id]
        if row.applied_at is None and not row.is_pending:
            self._rows[approval_id] = replace(row, applied_at=at)

    async def unapplied(self, limit: int = 100) -> list[ApprovalRecord]:
        rows = [
            r
            for r in self._rows.values()
            if not r.is_pending and r.applied_at is None and not self._leased(r.incident_id)
        ]
        rows.sort(key=lambda r: (r.decided_at or r.requested_at, r.approval_id))
        return rows[:limit]

    def _leased(self, incident_id: str) -> bool:
        row = self._incidents.get(incident_id)
        return row is not None and row.is_open and row.lease_expires_at is not None

    async def expire_due(
        self,
        now: datetime,
        limit: int,
        decided_by: str,
        reason: Callable[[ApprovalRecord], str],
        lease: RunLease | None = None,
        runnable: Sequence[str] | None = None,
    ) -> list[ApprovalRecord]:
        keys = None if runnable is None else set(runnable)
        due = sorted(
            (
                r
                for r in self._rows.values()
                if r.is_pending
                and r.deadline_at <= now
                and (keys is None or version_key(r.graph, r.graph_version) in keys)
            ),
            key=lambda r: (r.deadline_at, r.approval_id),
        )[:limit]
        expired = []
        for row in due:
            won, row = await self.record_decision(
                row.approval_id,
                DecisionWrite(ApprovalStatus.EXPIRED, decided_by, now, reason(row)),
                lease,
            )
            if won:
                expired.append(row)
        return expired

    async def overdue_elsewhere(
        self, now: datetime, runnable: Sequence[str], limit: int
    ) -> list[ApprovalRecord]:
        keys = set(runnable)
        return sorted(
            (
                r
                for r in self._rows.values()
                if r.is_pending
                and r.deadline_at <= now
                and version_key(r.graph, r.graph_version) not in keys
            ),
            key=lambda r: (r.deadline_at, r.approval_id),
        )[:limit]

    async def pending_groups(self) -> list[PendingGroup]:
        groups: dict[tuple[str, str | None], list[Any]] = {}
        for row in self._rows.values():
            if row.is_pending:
                group = groups.setdefault((row.severity, row.graph_version), [0, row.deadline_at])
                group[0] += 1
                group[1] = min(group[1], row.deadline_at)
        return [
            PendingGroup(severity, version, n, nearest)
            for (severity, version), (n, nearest) in sorted(
                groups.items(), key=lambda item: (item[0][0], item[0][1] or "")
            )
        ]

    async def due_reminders(self, now: datetime, limit: int) -> list[ApprovalRecord]:
        due = [
            r
            for r in self._rows.values()
            if r.is_pending
            and r.next_due_at is not None
            and r.next_due_at <= now
            and r.next_due_at < r.deadline_at
        ]
        return sorted(due, key=lambda r: (r.next_due_at or r.deadline_at, r.approval_id))[:limit]

    async def advance_reminder(
        self, approval_id: str, sent: int, to: int, next_due_at: datetime
    ) -> bool:
        row = self._rows.get(approval_id)
        if row is None or not row.is_pending or row.reminders_sent != sent:
            return False
        self._rows[approval_id] = replace(row, reminders_sent=to, next_due_at=next_due_at)
        return True

    # --- the alert lifecycle (no await inside: each call is atomic on the event loop) -----

    def _count_alert(self, incident_id: str, at: datetime) -> None:
        row = self._incidents[incident_id]
        last = row.last_alert_at or row.opened_at
        self._incidents[incident_id] = replace(
            row, alerts_received=row.alerts_received + 1, last_alert_at=max(last, at)
        )

    async def open_firing(
        self, new: NewIncident, starts_at: datetime, *, take: OwnershipTake | None = None
    ) -> FiringIntake:
        if take is not None:
            check_take(take)
        key = (str(new.fingerprint), check_firing(new, starts_at).astimezone(UTC))
        at = new.opened_at.astimezone(UTC)
        named = self._incidents.get(new.incident_id)
        if named is not None and not named.is_open:
            return FiringIntake(False, named, None)  # a closed incident is never reopened by id
        seen = self._firings.get(key)
        if seen is not None:
            self._count_alert(seen, at)
            self._alert_events.setdefault(seen, []).append(
                AlertEvent(seen, "repeated", key[0], key[1], at)
            )
            return FiringIntake(False, self._incidents[seen], "repeated")
        if key[0] not in self._open_by_fingerprint and new.incident_id in self._incidents:
            return FiringIntake(False, self._incidents[new.incident_id], None)
        created, row, epoch = await self.open_and_take(new, take)
        self._firings[key] = row.incident_id
        self._alert_events.setdefault(row.incident_id, []).append(
            AlertEvent(row.incident_id, "fired", key[0], key[1], at)
        )
        return FiringIntake(created, row, "fired", epoch)

    async def resolve_firing(
        self, fingerprint: str, starts_at: datetime, at: datetime
    ) -> tuple[IncidentRecord | None, bool]:
        if not isinstance(fingerprint, str) or not fingerprint:
            raise InvalidInput("a resolution needs a fingerprint")
        key = (fingerprint, check_aware("starts_at", starts_at).astimezone(UTC))
        moment = check_aware("at", at).astimezone(UTC)
        incident_id = self._firings.get(key) or self._open_by_fingerprint.get(fingerprint)
        if incident_id is None:
            return None, False
        events = self._alert_events.setdefault(incident_id, [])
        first = not any(
            e.kind == "resolved" and (e.fingerprint, e.starts_at) == key for e in events
        )
        if first:
            events.append(AlertEvent(incident_id, "resolved", key[0], key[1], moment))
        return self._incidents[incident_id], first

    async def alert_events(self, incident_id: str, limit: int = 200) -> list[AlertEvent]:
        return list(self._alert_events.get(incident_id, [])[-check_limit(limit) :])

    # --- incident index -----------------------------------------------------------------

    async def open_incident(self, new: NewIncident) -> tuple[bool, IncidentRecord]:
        check_new_incident(new)
        opened_at = new.opened_at.astimezone(UTC)
        if new.fingerprint is not None:
            open_id = self._open_by_fingerprint.get(new.fingerprint)
            if open_id is not None:
                row = self._incidents[open_id]
                last = row.last_alert_at or row.opened_at
                row = replace(
                    row, alerts_received=row.alerts_received + 1, last_alert_at=max(last, opened_at)
                )
                self._incidents[open_id] = row
                return False, row
        existing = self._incidents.get(new.incident_id)
        if existing is not None:
            return False, existing
        row = IncidentRecord(
            incident_id=new.incident_id,
            graph=new.graph,
            opened_at=opened_at,
            status="open",
            fingerprint=new.fingerprint,
            title=new.title,
            service=new.service,
            severity=new.severity,
            alert=copy.deepcopy(new.alert),
            alerts_received=1,
            last_alert_at=opened_at,
            lease_owner=new.lease.owner if new.lease else None,
            lease_expires_at=new.lease.expires_at.astimezone(UTC) if new.lease else None,
            graph_version=new.graph_version,
        )
        self._incidents[new.incident_id] = row
        if new.fingerprint is not None:
            self._open_by_fingerprint[new.fingerprint] = new.incident_id
        return True, row

    async def mark_incident_started(self, incident_id: str, at: datetime) -> None:
        check_aware("at", at)
        row = self._incidents.get(incident_id)
        if row is not None and row.started_at is None:
            self._incidents[incident_id] = replace(row, started_at=at.astimezone(UTC))

    async def close_incident(
        self, incident_id: str, outcome: str, at: datetime
    ) -> IncidentRecord | None:
        check_aware("at", at)
        row = self._incidents.get(incident_id)
        if row is None or not row.is_open:
            return row
        row = replace(
            _released(row),
            status="closed",
            closed_at=at.astimezone(UTC),
            outcome=outcome,
            started_at=row.started_at or at.astimezone(UTC),
        )
        self._incidents[incident_id] = row
        if row.fingerprint is not None:
            self._open_by_fingerprint.pop(row.fingerprint, None)
        return row

    async def get_incident(self, incident_id: str) -> IncidentRecord | None:
        return self._incidents.get(incident_id)

    async def list_incidents(
        self, *, status: IncidentState | None = None, limit: int = 100
    ) -> list[IncidentRecord]:
        status = check_incident_status(status)
        check_limit(limit)
        rows = [r for r in self._incidents.values() if status is None or r.status == status]
        rows.sort(key=lambda r: (r.opened_at, r.incident_id), reverse=True)
        return rows[:limit]

    async def settle_run(self, incident_id: str, at: datetime) -> None:
        check_aware("at", at)
        row = self._incidents.get(incident_id)
        if row is not None:
            self._incidents[incident_id] = replace(
                _released(row), started_at=row.started_at or at.astimezone(UTC)
            )

    async def fail_run(self, incident_id: str, error: str, retry_at: datetime) -> None:
        check_aware("retry_at", retry_at)
        row = self._incidents.get(incident_id)
        if row is not None and row.is_open:
            self._incidents[incident_id] = replace(
                row,
                lease_owner=None,
                lease_expires_at=retry_at.astimezone(UTC),
                last_error=error_text(error),
            )

    async def extend_leases(
        self, incident_ids: Sequence[str], owner: str, expires_at: datetime
    ) -> int:
        check_lease(RunLease(owner, expires_at))
        extended = 0
        for incident_id in dict.fromkeys(incident_ids):
            row = self._incidents.get(incident_id)
            if self._leased(incident_id) and row is not None and row.lease_owner in (None, owner):
                self._lease(incident_id, RunLease(owner, expires_at))
                extended += 1
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
        keys = None if runnable is None else set(runnable)
        due = sorted(
            (
                r
                for r in self._incidents.values()
                if r.is_open
                and r.lease_expires_at is not None
                and r.lease_expires_at <= now
                and (keys is None or version_key(r.graph, r.graph_version) in keys)
            ),
            key=lambda r: (r.lease_expires_at, r.incident_id),
        )[:limit]
        for row in due:
            self._lease(row.incident_id, lease)
        claimed = [self._incidents[r.incident_id] for r in due]
        return sorted(claimed, key=lambda r: (r.opened_at, r.incident_id))

    async def leased_incidents(self, limit: int) -> list[IncidentRecord]:
        check_limit(limit)
        rows = [r for r in self._incidents.values() if self._leased(r.incident_id)]
        rows.sort(key=lambda r: (r.lease_expires_at, r.incident_id))
        return rows[:limit]

    async def count_run_attempt(self, incident_id: str) -> int:
        row = self._incidents.get(incident_id)
        if row is None:
            return 0
        self._incidents[incident_id] = row = replace(row, run_attempts=row.run_attempts + 1)
        return row.run_attempts

    async def prunable_incidents(self, closed_before: datetime, limit: int) -> list[IncidentRecord]:
        check_aware("closed_before", closed_before)
        check_limit(limit)
        rows = [
            r
            for r in self._incidents.values()
            if not r.is_open
            and r.pruned_at is None
            and r.closed_at is not None
            and r.closed_at <= closed_before
        ]
        rows.sort(key=lambda r: (r.closed_at, r.incident_id))
        return rows[:limit]

    async def mark_pruned(self, incident_id: str, at: datetime) -> None:
        check_aware("at", at)
        row = self._incidents.get(incident_id)
        if row is not None and not row.is_open and row.pruned_at is None:
            self._incidents[incident_id] = replace(row, pruned_at=at.astimezone(UTC))

    async def unstarted_incidents(
        self, opened_before: datetime, limit: int = 100
    ) -> list[IncidentRecord]:
        check_aware("opened_before", opened_before)
        check_limit(limit)
        rows = [
            r
            for r in self._incidents.values()
            if r.is_open and r.started_at is None and r.opened_at <= opened_before
        ]
        rows.sort(key=lambda r: (r.opened_at, r.incident_id))
        return rows[:limit]

    # --- notification outbox --------------------------------------------------------------

    async def move_to_version(
        self, incident_id: str, graph: str, from_version: str | None, to_version: str
    ) -> bool:
        row = self._incidents.get(incident_id)
        if row is None or not row.is_open or row.graph != graph:
            return False
        if row.graph_version != from_version:
            return False
        self._incidents[incident_id] = replace(row, graph_version=to_version)
        for key, approval in list(self._rows.items()):
            if (
                approval.incident_id == incident_id
                and approval.graph == graph
                and approval.applied_at is None
            ):
                self._rows[key] = replace(approval, graph_version=to_version)
        return True

    async def open_on_version(
        self, graph: str, version: str | None, limit: int
    ) -> list[IncidentRecord]:
        check_limit(limit)
        rows = [
            r
            for r in self._incidents.values()
            if r.is_open and r.graph == graph and r.graph_version == version
        ]
        return sorted(rows, key=lambda r: (r.opened_at, r.incident_id))[:limit]

    async def version_census(self) -> list[VersionCount]:
        counts: dict[tuple[str, str | None], list[int]] = {}
        pending = {r.incident_id for r in self._rows.values() if r.is_pending}
        for row in self._incidents.values():
            if row.is_open:
                count = counts.setdefault((row.graph, row.graph_version), [0, 0])
                count[0] += 1
                count[1] += row.incident_id in pending
        return [
            VersionCount(graph, version, n, waiting)
            for (graph, version), (n, waiting) in sorted(
                counts.items(), key=lambda item: (item[0][0], item[0][1] or "")
            )
        ]

    async def get_notification(self, key: str) -> NotificationRecord | None:
        return self._notifications.get(key)

    async def record_notification(self, record: NotificationRecord) -> NotificationRecord:
        check_notification(record)
        existing = self._notifications.get(record.key)
        if existing is not None:
            return existing
        row = replace(
            record, sent_at=record.sent_at.astimezone(UTC), result=copy.deepcopy(record.result)
        )
        self._notifications[record.key] = row
        return row

    async def list_notifications(self, incident_id: str) -> list[NotificationRecord]:
        rows = [r for r in self._notifications.values() if r.incident_id == incident_id]
        return sorted(rows, key=lambda r: (r.sent_at, r.key))


def _released(row: IncidentRecord) -> IncidentRecord:
    """``row`` without a lease (its run paused or ended)."""
    return replace(row, lease_owner=None, lease_expires_at=None, run_attempts=0, last_error=None)
