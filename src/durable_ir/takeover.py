"""Taking over runs whose worker is gone, and stopping runs that keep failing.

A run's lease (see :mod:`durable_ir.leases`) expires when its worker stops heart-beating —
killed, crashed, hung, cut off from the database — or when a run that raised is due for its
retry. :class:`RunTakeover` claims such runs and, holding each incident's lock (so a worker
that is merely slow is never run over), continues it from its last checkpoint: the first run
if it never started, the recorded decision if one was never applied, else ``ainvoke(None)``.

Each takeover counts one attempt in the index. A run taken over more than
``max_run_attempts`` times — the same node crashing its worker, or raising, again and again —
is stopped: its pending tasks are cleared and, if the graph has an ``escalate`` node (the
builder's does), the incident is sent there with ``escalation = {"reason": "crash_loop",
"detail": …}``, else closed with outcome ``crash_loop``. Humans get the incident and the error;
the fleet never gets an endless crash loop.

Example:
    >>> import asyncio
    >>> from durable_ir import open_runtime
    >>> async def main():
    ...     async with open_runtime("memory://") as rt:
    ...         return await rt.recover_runs()
    >>> asyncio.run(main())
    []
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.constants import END
from langgraph.types import Command, StateSnapshot

from durable_ir.approval.deciding import Decider
from durable_ir.clock import Clock
from durable_ir.errors import IncidentBusy, NotFound
from durable_ir.graphs import GraphRegistry, RegisteredGraph
from durable_ir.leases import owner_is_gone
from durable_ir.logs import log_context
from durable_ir.metrics import METRICS
from durable_ir.persistence import Store
from durable_ir.records import ApprovalRecord, IncidentRecord
from durable_ir.runs import GraphRunner, has_work_left
from durable_ir.services import NodeServices
from durable_ir.tracing import set_attributes, span

__all__ = ["CRASH_LOOP", "ESCALATION_NODE", "RunTakeover", "TakeoverReport"]

log = logging.getLogger("durable_ir.recovery")

ESCALATION_NODE = "escalate"
"""The node a run stopped for crash-looping is sent to, when its graph has one."""
CRASH_LOOP = "crash_loop"
"""The escalation reason (and, without an escalation node, the outcome) of a stopped run."""

FirstRun = Callable[[RegisteredGraph, str, Any], Awaitable[Any]]


@dataclass
class TakeoverReport:
    """What one recovery pass did: the incidents whose runs it took over, and the recorded
    decisions it applied on the way."""

    incidents: list[str] = field(default_factory=list)
    applied: list[ApprovalRecord] = field(default_factory=list)


class RunTakeover:
    """Claims runs whose lease expired and continues them, within ``max_run_attempts``."""

    def __init__(
        self,
        store: Store,
        graphs: GraphRegistry,
        services_for: Callable[[RegisteredGraph], NodeServices],
        runner: GraphRunner,
        decider: Decider,
        first_run: FirstRun,
        clock: Clock,
        max_run_attempts: int,
    ) -> None:
        self._store = store
        self._graphs = graphs
        self._services_for = services_for
        self._runner = runner
        self._decider = decider
        self._first_run = first_run
        self._clock = clock
        self._max_attempts = max_run_attempts
        self._skipped: set[str] = set()
        """Incidents left alone for their graph version (said once in the log)."""

    async def recover(self, *, limit: int, all_leased: bool) -> TakeoverReport:
        """Claim up to ``limit`` runs — expired leases, or with ``all_leased`` every lease
        (at start-up) — and take over those whose runner is gone."""
        with span("durable_ir.recover", all_leased=all_leased) as current:
            report = await self._recover(limit=limit, all_leased=all_leased)
            set_attributes(current, taken_over=len(report.incidents))
            return report

    async def _recover(self, *, limit: int, all_leased: bool) -> TakeoverReport:
        ledger = self._store.ledger
        now = self._clock()
        if all_leased:
            rows = [r for r in await ledger.leased_incidents(limit) if self._runner_gone(r, now)]
        else:
            # Only runs on graph versions this runtime has: the others stay expired for a
            # runtime that has theirs (said once in the log, below).
            rows = await ledger.claim_expired_runs(
                now, self._runner.leases.lease(), limit, self._graphs.runnable_keys()
            )
            if not rows:
                await self._note_stranded(now, limit)
        report = TakeoverReport()
        for row in rows:
            if not self._graphs.can_run(row.graph, row.graph_version):
                self._skip_once(row)
                continue
            try:
                async with self._store.locks.hold(row.incident_id, wait=0):
                    if await self._take_over(row, report):
                        METRICS.takeovers.inc()
                        report.incidents.append(row.incident_id)
            except IncidentBusy:
                continue  # its runner is alive (slow heartbeat): it carries on
            except Exception:
                log.exception("taking over incident %s failed", row.incident_id)
        return report

    async def _note_stranded(self, now: datetime, limit: int) -> None:
        """Say (once each) which expired runs this runtime leaves for another version."""
        for row in await self._store.ledger.leased_incidents(limit):
            expired = row.lease_expires_at is not None and row.lease_expires_at <= now
            if expired and not self._graphs.can_run(row.graph, row.graph_version):
                self._skip_once(row)

    def _skip_once(self, row: IncidentRecord) -> None:
        if row.incident_id in self._skipped:
            return
        self._skipped.add(row.incident_id)
        log.warning(
            "recovery leaves incident %s alone: it runs on graph %r version %r, which this "
            "runtime cannot run (registered: %s); a runtime with that version takes it over, "
            "or migrate it",
            row.incident_id,
            row.graph,
            row.graph_version,
            ", ".join(self._graphs.versions(row.graph)) or "none",
        )

    def _runner_gone(self, row: IncidentRecord, now: datetime) -> bool:
        """Whether a lease that has not expired may be taken over at start-up: its owner
        is this runtime and not running it, a dead process on this host, or missed a
        heartbeat. Being able to take the incident's lock is not enough: a live runner whose
        lock's session was cut (a database restart) has lost the lock but is still running,
        and still heart-beating."""
        if row.lease_owner is None or row.lease_expires_at is None:
            return True  # nobody runs it: opened and not started, or a failed run's retry
        leases = self._runner.leases
        if row.lease_owner == leases.owner:
            return row.incident_id not in leases.held()  # this runtime's own: it knows
        missed_beat = row.lease_expires_at <= now + timedelta(seconds=leases.ttl * 2 / 3)
        return missed_beat or owner_is_gone(row.lease_owner)

    async def _take_over(self, row: IncidentRecord, report: TakeoverReport) -> bool:
        """Continue ``row``'s run; the caller holds its lock. False if nothing was owed."""
        graph = self._graphs.resolve(row.graph, row.graph_version, incident_id=row.incident_id)
        config = graph.config(row.incident_id, self._services_for(graph))
        state = await graph.compiled.aget_state(config)
        ledger = self._store.ledger
        unapplied = [
            r
            for r in await ledger.history(row.incident_id)
            if not r.is_pending and r.applied_at is None
        ]
        pending = has_work_left(state)
        started = bool(state.values) or pending
        if started and not pending:
            # It ended; only the index (and the decision that ended it) were not told.
            for record in unapplied:
                await self._decider.apply_locked(record)
            await self._runner.settle(row.incident_id, state.values)
            return False
        if state.interrupts and not unapplied:
            await ledger.settle_run(row.incident_id, self._clock())  # paused, waiting
            return False
        attempt = await ledger.count_run_attempt(row.incident_id)
        if attempt > self._max_attempts:
            await self._give_up(graph, row, config, state, attempt)
            return True
        log.warning(
            "taking over incident %s, stopped before %s (attempt %d of %d)%s",
            row.incident_id,
            _stopped_before(state),
            attempt,
            self._max_attempts,
            f"; last error: {row.last_error}" if row.last_error else "",
            extra=log_context(row.incident_id, event="takeover"),
        )
        if not started:
            if row.started_at is not None:
                # It ran before, and its checkpoints are gone (deleted by hand, or pruned):
                # starting it again from its alert would be a second incident, not recovery.
                log.error(
                    "incident %s has no checkpoint left although it ran; closing it",
                    row.incident_id,
                )
                await ledger.close_incident(row.incident_id, "state_missing", self._clock())
                return True
            if row.alert is None:
                raise NotFound(f"incident {row.incident_id!r} has no stored input to start")
            await self._first_run(graph, row.incident_id, row.alert)
        elif unapplied:
            for record in unapplied:
                if await self._decider.apply_locked(record):
                    report.applied.append(record)
        else:
            await self._runner.run(graph, row.incident_id, None, config)
        return True

    async def _give_up(
        self,
        graph: RegisteredGraph,
        row: IncidentRecord,
        config: RunnableConfig,
        state: StateSnapshot,
        attempt: int,
    ) -> None:
        """Stop a run that keeps failing and hand the incident to humans, with the error."""
        nodes = _stopped_before(state)
        cause = row.last_error or "its worker died (killed or crashed) while running it"
        detail = (
            f"the run was stopped after {attempt - 1} recovery attempts, failing in "
            f"{nodes}: {cause}"
        )
        log.error(
            "incident %s: %s",
            row.incident_id,
            detail,
            extra=log_context(row.incident_id, event="crash_loop"),
        )
        METRICS.crash_loops.inc()
        # Clear the pending tasks: the node that keeps failing must not run again.
        await graph.compiled.aupdate_state(
            self._runner.fenced(row.incident_id, config), None, as_node=END
        )
        values = state.values if isinstance(state.values, dict) else {}
        outcome = values.get("outcome")
        ended_as = outcome.get("status") if isinstance(outcome, dict) else None
        escalating = (
            ESCALATION_NODE in graph.compiled.builder.nodes
            # Once only: an escalation that itself keeps failing just stops, and so does a
            # run that failed after it had decided how the incident ends.
            and attempt == self._max_attempts + 1
            and ESCALATION_NODE not in state.next
            and ended_as is None
        )
        if escalating:
            escalation = {"reason": CRASH_LOOP, "detail": detail}
            await self._runner.run(
                graph,
                row.incident_id,
                Command(goto=ESCALATION_NODE, update={"escalation": escalation}),
                config,
            )
            return
        await self._store.ledger.close_incident(
            row.incident_id, str(ended_as or CRASH_LOOP), self._clock()
        )


def _stopped_before(state: StateSnapshot) -> str:
    """The nodes a stopped run would run next, for log lines and escalations."""
    return ", ".join(state.next or [t.name for t in state.tasks]) or "its first node"
