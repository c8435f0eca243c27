"""The SLA monitor: finds overdue approvals in the database, expires each exactly once, and
drives its graph to escalation.

It keeps no state in memory: every sweep reads the ledger through partial indexes on pending
rows, so its cost grows with the number of approvals due, not with history. Any number of
monitors, in any number of processes, may sweep one database: expiry is the ledger's
compare-and-set (``status = 'pending'``), claimed with ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so an approval is expired once, and a human decision that got there first stands.

It works with whatever checkpointer the runtime's graphs use: it only reads the ledger, and
resumes graphs through the runtime.

Example:
    >>> import asyncio
    >>> from durable_ir import open_runtime
    >>> async def main():
    ...     async with open_runtime("memory://") as rt:
    ...         report = await SlaMonitor(rt).sweep()
    ...         return len(report.expired)
    >>> asyncio.run(main())
    0
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from durable_ir.clock import Clock
from durable_ir.errors import ConfigurationError, GraphVersionUnavailable, IncidentBusy
from durable_ir.logs import log_context
from durable_ir.metrics import METRICS
from durable_ir.persistence import Store
from durable_ir.records import ApprovalRecord, RunLease
from durable_ir.sla.policy import SLA_IDENTITY, Reminder, SlaPolicy
from durable_ir.tracing import set_attributes, span

__all__ = ["SLA_IDENTITY", "MonitoredRuntime", "ReminderSender", "SlaMonitor", "SweepReport"]


class _Graphs(Protocol):
    def runnable_keys(self) -> list[str]: ...


class _Leases(Protocol):
    def lease(self) -> RunLease: ...


class MonitoredRuntime(Protocol):
    """What the monitor needs of a runtime (:class:`durable_ir.Runtime` is one): its clock,
    SLA policy, store, graph registry and leases, and the three operations it drives. The
    monitor depends on this shape, not on the runtime module."""

    @property
    def clock(self) -> Clock: ...
    @property
    def sla(self) -> SlaPolicy: ...
    @property
    def store(self) -> Store: ...
    @property
    def graphs(self) -> _Graphs: ...
    @property
    def leases(self) -> _Leases: ...

    def note_unrunnable(self, record: ApprovalRecord, who: str) -> None: ...
    async def apply_recorded_decision(self, record: ApprovalRecord) -> bool: ...
    async def recover(self, *, limit: int = ..., stalled: bool = ...) -> list[ApprovalRecord]: ...


log = logging.getLogger("durable_ir.sla")

ReminderSender = Callable[[ApprovalRecord, Reminder], Awaitable[None]]
"""Called once per reminder that falls due (after it is claimed, so at most once)."""


@dataclass(frozen=True)
class SweepReport:
    """What one sweep did.

    ``deferred`` are approvals this sweep expired but could not hand to their graph (the
    incident was busy, or its graph is not registered here): they are durable, and the busy
    worker or ``Runtime.recover()`` applies them. ``claim_ms`` is the time spent finding and
    claiming due approvals in the database; ``apply_ms`` the time spent running graphs.
    """

    at: datetime
    expired: list[ApprovalRecord] = field(default_factory=list)
    reminded: list[ApprovalRecord] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    claim_ms: float = 0.0
    apply_ms: float = 0.0

    @property
    def did_something(self) -> bool:
        """True if anything was expired or reminded."""
        return bool(self.expired or self.reminded)


async def _log_reminder(record: ApprovalRecord, reminder: Reminder) -> None:
    log.warning(
        "reminder to %s: approval %s of incident %s (%s) is due by %s",
        reminder.channel,
        record.approval_id,
        record.incident_id,
        record.severity,
        record.deadline_at.isoformat(),
    )


class SlaMonitor:
    """Expires overdue approvals and sends reminders, for one runtime.

    ``batch`` bounds the approvals handled per sweep; ``apply_wait`` is how long a sweep waits
    for a busy incident before leaving its expiry to recovery; ``on_reminder`` sends reminders
    (default: a log line).
    """

    def __init__(
        self,
        runtime: MonitoredRuntime,
        *,
        interval: float = 15.0,
        batch: int = 100,
        apply_wait: float = 5.0,
        on_reminder: ReminderSender | None = None,
    ) -> None:
        if interval <= 0:
            raise ConfigurationError("the monitor's interval must be positive (seconds)")
        if batch < 1:
            raise ConfigurationError("the monitor's batch must be at least 1")
        if apply_wait < 0:
            raise ConfigurationError("apply_wait must be >= 0 seconds")
        self.runtime = runtime
        self.interval = interval
        self.batch = batch
        self.apply_wait = apply_wait
        self.on_reminder = on_reminder or _log_reminder

    async def sweep(self, now: datetime | None = None) -> SweepReport:
        """One pass: expire what is overdue (and resume those graphs), then send due reminders."""
        with span("durable_ir.sla.sweep") as current:
            report = await self._sweep(now)
            set_attributes(current, expired=len(report.expired), reminded=len(report.reminded))
            return report

    async def _sweep(self, now: datetime | None) -> SweepReport:
        now = now or self.runtime.clock()
        policy = self.runtime.sla
        ledger = self.runtime.store.ledger

        started = time.perf_counter()
        runnable = self.runtime.graphs.runnable_keys()
        expired = await ledger.expire_due(
            now,
            self.batch,
            SLA_IDENTITY,
            lambda row: policy.expiry_reason(
                row.severity, row.deadline_at, row.deadline_at - row.requested_at
            ),
            # The expiry's run is owed from now: leased, so recovery takes it over if this
            # monitor dies before it ends.
            self.runtime.leases.lease(),
            # Only approvals that paused on a graph version this runtime has: an expiry it
            # could not apply is left for a runtime that can (said once, below).
            runnable,
        )
        for row in await ledger.overdue_elsewhere(now, runnable, self.batch):
            self.runtime.note_unrunnable(row, "the SLA monitor")
        claimed = time.perf_counter()
        applied: list[str] = []
        deferred: list[str] = []
        for row in expired:
            METRICS.decision(row)
            log.info(
                "expired approval %s of incident %s: %s",
                row.approval_id,
                row.incident_id,
                row.reason,
                extra=log_context(row.incident_id, row.approval_id, event="expired"),
            )
            (applied if await self._apply(row) else deferred).append(row.approval_id)
        resumed = time.perf_counter()
        reminded = [
            row
            for row in await ledger.due_reminders(now, self.batch)
            if await self._remind(row, now)
        ]
        METRICS.pending_approvals(await ledger.pending_groups(), now)
        finished = time.perf_counter()
        return SweepReport(
            at=now,
            expired=expired,
            reminded=reminded,
            applied=applied,
            deferred=deferred,
            claim_ms=(claimed - started + finished - resumed) * 1000,
            apply_ms=(resumed - claimed) * 1000,
        )

    async def _apply(self, row: ApprovalRecord) -> bool:
        try:
            async with self.runtime.store.locks.hold(row.incident_id, wait=self.apply_wait):
                await self.runtime.apply_recorded_decision(row)
        except GraphVersionUnavailable:
            self.runtime.note_unrunnable(row, "the SLA monitor")
            return False
        except IncidentBusy:
            log.info(
                "incident %s is busy; its expiry will be applied by its worker or recovery",
                row.incident_id,
            )
            return False
        except Exception:
            log.exception("escalating incident %s after expiry failed", row.incident_id)
            return False
        return True

    async def _remind(self, row: ApprovalRecord, now: datetime) -> bool:
        reminders = self.runtime.sla.reminders
        due_times = self.runtime.sla.due_times(row.requested_at, row.deadline_at)
        # Jump to the latest reminder already due: ones missed while no monitor ran are
        # skipped rather than sent late in a burst.
        due = [k for k, at in enumerate(due_times[:-1]) if at <= now]
        reached = max(row.reminders_sent, due[-1] + 1 if due else 0)
        next_due = due_times[min(reached, len(reminders))]
        if not await self.runtime.store.ledger.advance_reminder(
            row.approval_id, row.reminders_sent, reached, next_due
        ):
            return False  # another monitor took it, or it was decided meanwhile
        if reached == row.reminders_sent:
            return False  # only rescheduled: the policy changed since registration
        METRICS.reminders.inc()
        try:
            await self.on_reminder(row, reminders[reached - 1])
        except Exception:
            log.exception("sending the reminder for approval %s failed", row.approval_id)
        return True

    async def run(self) -> None:
        """Sweep every ``interval`` seconds, and recover unapplied decisions, until cancelled.

        Errors do not stop the loop, and an outage is logged once: the first failed sweep at
        error level (a database that cannot be reached or dropped the connection gets one line
        saying so; any other error its traceback), the same failure again at debug level, and
        one info line when a sweep works again, counting the failed ones.
        """
        log.info("SLA monitor started (every %.1fs, batch %d)", self.interval, self.batch)
        failures = _SweepFailures(self.interval)
        try:
            while True:
                try:
                    report = await self.sweep()
                    recovered = await self.runtime.recover()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures.failed(exc)
                else:
                    failures.succeeded()
                    if report.did_something or recovered:
                        log.info(
                            "SLA sweep: %d expired (%d deferred), %d reminded, %d recovered",
                            len(report.expired),
                            len(report.deferred),
                            len(report.reminded),
                            len(recovered),
                        )
                await asyncio.sleep(self.interval)
        finally:
            log.info("SLA monitor stopped")


_UNREACHABLE = "the database is unreachable"


def _failure_kind(exc: Exception) -> str:
    """What went wrong, such that one outage gives the same answer on every sweep: a
    PostgreSQL connection error (its wording changes as the pool goes from dropped connections
    to refused connects to time-outs) is :data:`_UNREACHABLE`; anything else is its type and
    message."""
    psycopg = sys.modules.get("psycopg")  # not loaded: not a PostgreSQL store, not its error
    if psycopg is not None and (
        isinstance(exc, psycopg.InterfaceError)
        or (isinstance(exc, psycopg.OperationalError) and _is_connection_state(exc.sqlstate))
    ):
        return _UNREACHABLE
    return f"{type(exc).__name__}: {exc}"


def _is_connection_state(sqlstate: str | None) -> bool:
    """True for the SQLSTATEs of a lost or refused connection: none at all (the client's own:
    a dropped socket, a refused connect, the pool's time-out), class 08, or the server
    shutting down or starting up (57P01–57P03)."""
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03")


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


class _SweepFailures:
    """The monitor loop's log of failed sweeps: the first of a run of identical failures at
    error level, the rest at debug level, and one info line when a sweep works again."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.count = 0
        self.kind: str | None = None

    def failed(self, exc: Exception) -> None:
        """Log a failed sweep."""
        kind = _failure_kind(exc)
        self.count += 1
        if kind == self.kind:
            log.debug("SLA sweep failed again (%d in a row): %s", self.count, _first_line(exc))
        elif kind == _UNREACHABLE:
            log.error(
                "SLA sweep failed: %s (%s); the monitor keeps retrying every %gs",
                _UNREACHABLE,
                _first_line(exc),
                self.interval,
            )
        else:
            log.error(
                "SLA sweep failed; the monitor keeps retrying every %gs",
                self.interval,
                exc_info=exc,
            )
        self.kind = kind

    def succeeded(self) -> None:
        """Note a sweep that worked: say so once if sweeps had been failing."""
        if self.count:
            if self.kind == _UNREACHABLE:
                log.info("database reachable again after %d failed sweeps", self.count)
            else:
                log.info("SLA sweep works again after %d failed sweeps", self.count)
        self.count = 0
        self.kind = None
