"""Ownership and step claims in SQL, written once for PostgreSQL and SQLite.

Who runs an incident is a row in ``durable_ir_owners``: taking the incident is one
conditional upsert that bumps its ``epoch`` (a fencing token), succeeding only if nobody holds
it, the holder's hold expired, or the holder is known to be dead. The epoch never goes back:
releasing clears the owner and keeps the row. Every write a run makes on the strength of its
hold names its epoch and is conditional on it (``FENCE``), so a worker that was paused past its
expiry and taken over finds out at its next write, which does not happen.

Remediation steps are claimed in ``durable_ir_step_claims`` — one row per (incident, step
key, epoch) — before the executor runs, and finished with their result after it. A claim of
an older epoch that was never finished is a step *in doubt*.

The statements are plain SQL that both backends run as written: ``%s`` placeholders
(SQLite's ledger turns them into ``?``) and timestamps passed as parameters — the runtime's
clock, which on PostgreSQL follows the database server's. Only the tables' column types
differ, in each backend's schema.

Example:
    >>> "epoch = o.epoch + 1" in TAKE
    True
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypeAlias

from durable_ir.ledger.base import ApprovalLedger, check_aware
from durable_ir.records import Ownership, OwnershipTake, StepClaim

__all__ = [
    "CLAIM_STEP",
    "EPOCH_CONFIG_KEY",
    "FENCE",
    "FINISH_STEP",
    "RELEASE",
    "STEP_CLAIMS",
    "TAKE",
    "SqlOwnership",
    "SqlParams",
    "steal_param",
    "take_sql",
]

EPOCH_CONFIG_KEY = "__durable_ir_epoch"
"""Where a run's config carries its ownership epoch (``configurable``): the runtime puts it
there, and the approval and remediation nodes and durable-ir's PostgreSQL saver fence their
writes on it. Keys starting with ``__`` stay out of checkpoint metadata."""

FENCE = "EXISTS (SELECT 1 FROM durable_ir_owners WHERE incident_id = %s AND epoch = %s)"
"""True while epoch ``%s`` still owns incident ``%s``: the condition of every fenced write."""


def take_sql(rows: str, *, now: str = "%s", steal_from: str = "%s") -> str:
    """The take of :meth:`~durable_ir.ledger.base.ApprovalLedger.take_ownership` as one
    upsert of ``rows`` — ``VALUES (…)`` or a ``SELECT`` giving (incident_id, owner, 1,
    expires_at) — with ``now`` and ``steal_from`` as placeholders: the statement itself, or a
    ``WITH`` clause of another write that takes the incident in the same statement."""
    return f"""
INSERT INTO durable_ir_owners AS o (incident_id, owner, epoch, expires_at)
{rows}
ON CONFLICT (incident_id) DO UPDATE
SET owner = excluded.owner, epoch = o.epoch + 1, expires_at = excluded.expires_at
WHERE o.owner IS NULL OR o.expires_at <= {now} OR o.owner = {steal_from}
RETURNING epoch
"""


TAKE = take_sql("VALUES (%s, %s, 1, %s)")

RENEW = """
UPDATE durable_ir_owners SET expires_at = %s
WHERE owner = %s AND incident_id IN ({ids})
RETURNING incident_id
"""

RELEASE = """
UPDATE durable_ir_owners SET owner = NULL, expires_at = NULL
WHERE incident_id = %s AND owner = %s AND epoch = %s
"""

GET = "SELECT incident_id, owner, epoch, expires_at FROM durable_ir_owners WHERE incident_id = %s"

CLAIM_STEP = f"""
INSERT INTO durable_ir_step_claims (incident_id, step_key, epoch, owner, claimed_at)
SELECT %s, %s, %s, %s, %s WHERE {FENCE}
ON CONFLICT (incident_id, step_key, epoch) DO NOTHING
"""

STEP_CLAIMS = """
SELECT incident_id, step_key, epoch, owner, claimed_at, finished_at, ok, detail
FROM durable_ir_step_claims WHERE incident_id = %s{key}
ORDER BY step_key, epoch
"""

FINISH_STEP = f"""
UPDATE durable_ir_step_claims SET finished_at = %s, ok = %s, detail = %s
WHERE incident_id = %s AND step_key = %s AND epoch = %s AND {FENCE}
"""

SqlParams: TypeAlias = Sequence[Any] | Mapping[str, Any]
"""A statement's parameters: positional (``%s``), or named in the backend's own style."""

_NOBODY = ""
"""What ``steal_from`` is compared with when there is no dead holder to take over from: no
worker id is empty."""


def steal_param(take: OwnershipTake) -> str:
    """``take.steal_from`` as :data:`TAKE` compares it: never NULL."""
    return take.steal_from or _NOBODY


def claim_from_row(row: Mapping[str, Any], as_datetime: Any) -> StepClaim:
    """A :class:`StepClaim` from a ``durable_ir_step_claims`` row."""
    ok = row["ok"]
    return StepClaim(
        incident_id=row["incident_id"],
        key=row["step_key"],
        epoch=int(row["epoch"]),
        owner=row["owner"],
        claimed_at=as_datetime(row["claimed_at"]),
        finished_at=as_datetime(row["finished_at"]),
        ok=None if ok is None else bool(ok),
        detail=row["detail"],
    )


class SqlOwnership(ApprovalLedger):
    """The ownership and step-claim methods of :class:`ApprovalLedger` over the statements
    above; a backend supplies how to run a statement and how it stores a timestamp."""

    @abstractmethod
    async def _sql_rows(self, query: str, params: SqlParams) -> list[Mapping[str, Any]]:
        """Run ``query`` (``%s`` placeholders) and return its rows."""

    async def _sql_write_relaxed(self, query: str, params: SqlParams) -> int:
        """A write whose loss in a database crash costs liveness, never safety (a release,
        a renewal, a step's result): a backend may commit it without waiting for its WAL
        flush. Default: an ordinary write."""
        return await self._sql_write(query, params)

    async def _sql_claim(
        self, incident_id: str, key: str, epoch: int, owner: str, now: Any
    ) -> list[Mapping[str, Any]]:
        """Write the claim (fenced) and return every claim of the step: two statements here,
        one where the backend can (PostgreSQL's data-modifying CTE)."""
        claim = (incident_id, key, epoch, owner, now, incident_id, epoch)
        await self._sql_write(CLAIM_STEP, claim)
        return await self._sql_rows(
            STEP_CLAIMS.format(key=" AND step_key = %s"), (incident_id, key)
        )

    @abstractmethod
    async def _sql_write(self, query: str, params: SqlParams) -> int:
        """Run a write and return how many rows it changed."""

    @abstractmethod
    def _sql_time(self, moment: datetime) -> Any:
        """``moment`` as this backend stores it."""

    @abstractmethod
    def _sql_datetime(self, value: Any) -> datetime | None:
        """A stored timestamp back as an aware datetime."""

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
        take = OwnershipTake(owner, now, expires_at, steal_from)
        rows = await self._sql_rows(TAKE, self._take_params(incident_id, take))
        return int(rows[0]["epoch"]) if rows else None

    def _take_params(self, incident_id: str, take: OwnershipTake) -> tuple[Any, ...]:
        """:data:`TAKE`'s parameters."""
        return (
            incident_id,
            take.owner,
            self._sql_time(take.expires_at),
            self._sql_time(take.now),
            steal_param(take),
        )

    async def renew_ownership(
        self, incident_ids: Sequence[str], owner: str, expires_at: datetime
    ) -> set[str]:
        check_aware("expires_at", expires_at)
        if not incident_ids:
            return set()
        query = RENEW.format(ids=", ".join(["%s"] * len(incident_ids)))
        rows = await self._sql_rows(query, (self._sql_time(expires_at), owner, *incident_ids))
        return {str(row["incident_id"]) for row in rows}

    async def release_ownership(self, incident_id: str, owner: str, epoch: int) -> bool:
        # Lost in a crash, a release only leaves the hold to expire (or to this worker).
        return await self._sql_write_relaxed(RELEASE, (incident_id, owner, epoch)) == 1

    async def get_ownership(self, incident_id: str) -> Ownership | None:
        rows = await self._sql_rows(GET, (incident_id,))
        if not rows:
            return None
        row = rows[0]
        return Ownership(
            incident_id=row["incident_id"],
            owner=row["owner"],
            epoch=int(row["epoch"]),
            expires_at=self._sql_datetime(row["expires_at"]),
        )

    async def claim_step(
        self, incident_id: str, key: str, epoch: int, owner: str, now: datetime
    ) -> list[StepClaim] | None:
        check_aware("now", now)
        rows = await self._sql_claim(incident_id, key, epoch, owner, self._sql_time(now))
        claims = sorted(
            (claim_from_row(row, self._sql_datetime) for row in rows), key=lambda c: c.epoch
        )
        # Written now, or earlier in this epoch (a re-run of the node under one hold): either
        # way the claim stands only while this epoch still owns the incident.
        if not any(c.epoch == epoch for c in claims):
            return None
        if any(c.epoch > epoch for c in claims):
            return None
        return claims

    async def finish_step(
        self, incident_id: str, key: str, epoch: int, ok: bool, detail: str, now: datetime
    ) -> bool:
        check_aware("now", now)
        # Lost in a crash, a result only makes the step in doubt: the next owner runs it
        # again with the same idempotency key.
        changed = await self._sql_write_relaxed(
            FINISH_STEP,
            (self._sql_time(now), ok, detail, incident_id, key, epoch, incident_id, epoch),
        )
        return changed == 1

    async def step_claims(self, incident_id: str) -> list[StepClaim]:
        return await self._claims(incident_id, None)

    async def _claims(self, incident_id: str, key: str | None) -> list[StepClaim]:
        if key is None:
            rows = await self._sql_rows(STEP_CLAIMS.format(key=""), (incident_id,))
        else:
            query = STEP_CLAIMS.format(key=" AND step_key = %s")
            rows = await self._sql_rows(query, (incident_id, key))
        return [claim_from_row(row, self._sql_datetime) for row in rows]
