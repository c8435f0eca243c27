"""Deciding on an approval: the one safe way a decision enters the system.

``decide`` validates the decision, records it in the ledger with a first-writer-wins
compare-and-set, and only then continues the graph, with ``durability="sync"``, under the
incident's cross-process lock; the approval node takes the decision it was handed with the
config. A decision that was recorded but whose resume did not finish (the process died, or
the lock holder was busy) is applied by ``recover``; applying is idempotent because it
re-reads the ledger and the checkpoint under the lock first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.errors import EmptyInputError
from langgraph.types import Command

from durable_ir.approval.request import allowed_decisions
from durable_ir.clock import Clock
from durable_ir.decisions import Decision, Edit, validate_decision
from durable_ir.errors import (
    Conflict,
    GraphVersionUnavailable,
    IncidentBusy,
    InvalidDecision,
    InvalidInput,
    NotFound,
)
from durable_ir.graphs import GraphRegistry, RegisteredGraph
from durable_ir.leases import LeaseKeeper
from durable_ir.ledger.base import DecisionWrite, LateDecision
from durable_ir.locks import Taking
from durable_ir.logs import log_context
from durable_ir.metrics import METRICS
from durable_ir.persistence import Store
from durable_ir.records import ApprovalRecord, ApprovalStatus
from durable_ir.runs import PAUSED_KEY, GraphRunner, RunCheck, has_work_left
from durable_ir.services import NodeServices, services_from
from durable_ir.sla.policy import SLA_IDENTITY
from durable_ir.text import check_text

__all__ = ["PAUSED_KEY", "Decider", "DecisionResult", "validate_incident_id"]

log = logging.getLogger("durable_ir.approval")

MAX_INCIDENT_ID_CHARS = 256


def _took(graph: RegisteredGraph, record: ApprovalRecord, values: Any) -> bool:
    """True if the graph state shows the approval node took ``record``'s decision: its
    outcome key names this approval."""
    node = graph.approval_node(record.node)
    if node is None or not isinstance(values, Mapping):
        return False
    outcome = values.get(node.state_key)
    return isinstance(outcome, Mapping) and outcome.get("approval_id") == record.approval_id


def validate_incident_id(incident_id: object) -> str:
    """Return ``incident_id`` if it is a usable id, else raise ``InvalidInput``: a non-empty
    string of at most :data:`MAX_INCIDENT_ID_CHARS` printable characters, which every
    backend stores as it is (no NUL, no unpaired surrogate: :func:`durable_ir.text.check_text`).
    Callers check it before any read, so a refused id never reaches a database."""
    if not isinstance(incident_id, str) or not incident_id.strip():
        raise InvalidInput("an incident id must be a non-empty string")
    if len(incident_id) > MAX_INCIDENT_ID_CHARS:
        raise InvalidInput(f"an incident id is at most {MAX_INCIDENT_ID_CHARS} characters")
    check_text("an incident id", incident_id)
    if not incident_id.isprintable():
        raise InvalidInput("an incident id must be printable text")
    return incident_id


@dataclass(frozen=True)
class DecisionResult:
    """What ``decide`` did: the recorded decision and whether the graph has received it.

    ``applied`` is False only when another worker held the incident past the lock timeout; the
    decision is durable, and that worker or ``Runtime.recover()`` applies it.
    """

    record: ApprovalRecord
    applied: bool


class Decider:
    """Records decisions and applies them to their graphs exactly once."""

    def __init__(
        self,
        store: Store,
        graphs: GraphRegistry,
        services_for: Callable[[RegisteredGraph], NodeServices],
        clock: Clock,
        lock_timeout: float,
        runner: GraphRunner,
        leases: LeaseKeeper,
    ) -> None:
        self._store = store
        self._graphs = graphs
        self._services_for = services_for
        self._clock = clock
        self._lock_timeout = lock_timeout
        self._runner = runner
        self._leases = leases
        self._skipped: set[str] = set()
        """Approvals recovery left alone (and said so once in the log)."""

    def graph_for(self, record: ApprovalRecord) -> RegisteredGraph:
        """The graph version ``record`` paused on, if this process can run it.

        Raises:
            GraphVersionUnavailable: that version is not registered here, or the registered
                graph has no node named where the incident is paused (renamed or removed
                under the same version string).
        """
        graphs = self._graphs
        graph = graphs.resolve(record.graph, record.graph_version, incident_id=record.incident_id)
        if not graph.has_node(record.node):
            raise GraphVersionUnavailable(
                record.incident_id,
                graph=record.graph,
                needed=record.graph_version,
                registered=graphs.versions(record.graph),
                detail=(
                    f"incident {record.incident_id!r} is paused at node {record.node!r}, which "
                    f"graph {record.graph!r} version {graph.version!r} does not have (renamed "
                    "or removed?); register the graph version it paused on "
                    f"({record.graph_version!r}) or migrate the incident"
                ),
            )
        return graph

    async def incident_exists(self, incident_id: str) -> bool:
        """True if the checkpointer holds any checkpoint for ``incident_id``."""
        config = {"configurable": {"thread_id": incident_id, "checkpoint_ns": ""}}
        return await self._store.checkpointer.aget_tuple(config) is not None  # type: ignore[arg-type]

    async def decide(
        self, incident_id: str, decision: Decision, *, approval_id: str | None = None
    ) -> DecisionResult:
        """Record ``decision`` on the incident's pending approval, then apply it.

        The write that records the decision takes the incident's lock too, where the store
        can (see :meth:`~durable_ir.locks.IncidentLocks.taking`); else the lock is waited for.
        """
        incident_id = validate_incident_id(incident_id)
        async with self._store.locks.taking(incident_id, self._store.ledger) as taking:
            row = await self._record(incident_id, decision, approval_id, taking)
            try:
                await taking.acquire(wait=self._lock_timeout)
            except IncidentBusy:
                log.warning(
                    "incident %s is busy; its decision %s is recorded and will be applied by "
                    "the running worker or by recovery",
                    row.incident_id,
                    row.approval_id,
                )
                return DecisionResult(record=row, applied=False)
            _, current = await self._apply_locked(row, fresh=True)
        return DecisionResult(record=current or row, applied=True)

    async def _expire_now(self, row: ApprovalRecord, taking: Taking | None) -> None:
        """A decision came too late and recorded the expiry: hand it to the graph now, as the
        SLA monitor would have (else its lease's expiry makes recovery do it)."""
        log.info(
            "a decision on incident %s came after the deadline %s: approval %s expired",
            row.incident_id,
            row.deadline_at.isoformat(),
            row.approval_id,
            extra=log_context(row.incident_id, row.approval_id, event="expired"),
        )
        try:
            if taking is None:
                await self.apply(row, wait=self._lock_timeout)
                return
            with suppress(IncidentBusy):  # its holder or recovery applies it
                await taking.acquire(wait=self._lock_timeout)
                await self._apply_locked(row, fresh=False, read_state=False)
        except Exception:
            log.exception("escalating incident %s after its late decision failed", row.incident_id)

    async def apply(self, row: ApprovalRecord, *, wait: float | None) -> bool:
        """Take the incident's lock (waiting up to ``wait`` seconds) and apply ``row``'s
        decision; False if the incident stayed busy (its holder or recovery applies it)."""
        try:
            async with self._store.locks.hold(row.incident_id, wait=wait):
                # The row is read again under the lock; if it is still unapplied, the graph
                # is where a fresh decision finds it: continue it without reading it first.
                await self._apply_locked(row, fresh=False, read_state=False)
        except IncidentBusy:
            return False
        return True

    async def record(
        self, incident_id: str, decision: Decision, *, approval_id: str | None = None
    ) -> ApprovalRecord:
        """Validate ``decision`` and record it durably on the incident's pending approval
        (first writer wins); the graph does not have it yet."""
        return await self._record(validate_incident_id(incident_id), decision, approval_id, None)

    async def _record(
        self,
        incident_id: str,
        decision: Decision,
        approval_id: str | None,
        taking: Taking | None,
    ) -> ApprovalRecord:
        """:meth:`record`; with ``taking``, the winning write takes the incident's lock too."""
        decision = validate_decision(decision)
        ledger = self._store.ledger
        if approval_id is not None:
            check_text("approval_id", approval_id)
            record = await ledger.get(approval_id)
            if record is not None and record.incident_id != incident_id:
                record = None
        else:
            record = await ledger.latest(incident_id)
        if record is None:
            indexed = approval_id is None and await ledger.get_incident(incident_id) is not None
            if indexed or (approval_id is None and await self.incident_exists(incident_id)):
                raise Conflict(
                    f"incident {incident_id!r} is not waiting for a decision "
                    "(it has not asked for an approval)"
                )
            what = f"approval {approval_id!r} of incident" if approval_id else "incident"
            raise NotFound(f"no {what} {incident_id!r}")
        if not record.is_pending:
            METRICS.conflict()
            raise Conflict(
                f"incident {incident_id!r} is not waiting for a decision: {record.describe()}",
                winner=record,
            )
        # The graph version it paused on must be here: refused before anything is recorded.
        graph = self.graph_for(record)
        if decision.kind not in allowed_decisions(record.request):
            raise InvalidDecision(
                f"{decision.kind!r} is not allowed on approval {record.approval_id}"
            )
        node = graph.approval_node(record.node)
        if node is not None:
            decision = node.check_decision(record, decision)
        elif isinstance(decision, Edit):
            # Never record a plan nobody validated.
            raise InvalidDecision(
                f"cannot validate the edited plan: graph {graph.name!r} has no ApprovalNode "
                f"registered as node {record.node!r} here (add the node object itself)"
            )
        policy = (node.sla if node is not None else None) or self._services_for(graph).sla
        window = record.deadline_at - record.requested_at
        write = DecisionWrite(
            status=decision.status,
            decided_by=decision.by,
            decided_at=self._clock(),
            reason=decision.reason,
            edited_plan=decision.plan if isinstance(decision, Edit) else None,
            # The deadline holds at the moment of decision: too late, the same write records
            # the expiry the monitor would have.
            late=None
            if decision.status is ApprovalStatus.EXPIRED
            else LateDecision(
                SLA_IDENTITY, policy.expiry_reason(record.severity, record.deadline_at, window)
            ),
        )
        # The decision and the lease on the run that applies it, in one write: if this
        # process dies before that run ends, recovery on any replica takes it over.
        won, row, epoch = await ledger.decide_and_take(
            record.approval_id,
            write,
            self._leases.lease(),
            taking.request if taking is not None else None,
        )
        if taking is not None:
            taking.took(epoch)
        if not won:
            METRICS.conflict()
            raise Conflict(
                f"incident {incident_id!r} was decided first: {row.describe()}", winner=row
            )
        METRICS.decision(row)
        if row.status is ApprovalStatus.EXPIRED and decision.status is not ApprovalStatus.EXPIRED:
            await self._expire_now(row, taking)
            raise Conflict(
                f"incident {incident_id!r}: the approval's deadline "
                f"{row.deadline_at.isoformat()} had passed; {row.describe()}",
                winner=row,
            )
        log.info(
            "recorded %s on incident %s (approval %s) by %s",
            row.status.value,
            incident_id,
            row.approval_id,
            row.decided_by,
            extra=log_context(
                incident_id, row.approval_id, decided_by=row.decided_by, event="decision"
            ),
        )
        return row

    async def apply_locked(self, record: ApprovalRecord, *, fresh: bool = False) -> bool:
        """Hand a recorded decision to its graph; the caller holds the incident's lock.

        ``fresh``: ``record`` is the row this process just recorded, so neither the ledger nor
        the checkpoint need be read first (see :meth:`_continue`). Returns True if this call
        ran the graph, False if there was nothing left to do (for ``fresh``, only when the
        thread has no checkpoint).
        """
        return (await self._apply_locked(record, fresh=fresh))[0]

    async def _apply_locked(
        self, record: ApprovalRecord, *, fresh: bool, read_state: bool | None = None
    ) -> tuple[bool, ApprovalRecord | None]:
        """``read_state``: read the checkpoint before resuming (default: unless ``fresh``),
        so that the result says whether the graph still needed the decision."""
        ledger = self._store.ledger
        current = record if fresh else await ledger.get(record.approval_id)
        if current is None or current.is_pending or current.applied_at is not None:
            return False, current
        graph = self.graph_for(current)
        # The approval node gets the decision with the config: no second read of the row.
        services = replace(self._services_for(graph), decided={current.approval_id: current})
        config = graph.config(current.incident_id, services)
        # LangSmith (when tracing) shows which decision, by whom, a run carried.
        config["metadata"] = {
            **config.get("metadata", {}),
            "durable_ir_approval_id": current.approval_id,
            "durable_ir_decided_by": current.decided_by,
            "durable_ir_decision": current.status.value,
        }
        if read_state if read_state is not None else not fresh:
            ran = await self._resume_checked(graph, current, config)
        else:
            ran = await self._continue(graph, current, config)
        applied_at = self._clock()
        await ledger.mark_applied(current.approval_id, applied_at)
        log.info(
            "applied %s on incident %s (approval %s)%s",
            current.status.value,
            current.incident_id,
            current.approval_id,
            "" if ran else ": the graph had already moved past it",
            extra=log_context(current.incident_id, current.approval_id, event="applied"),
        )
        return ran, replace(current, applied_at=applied_at)

    async def _continue(
        self, graph: RegisteredGraph, record: ApprovalRecord, config: RunnableConfig
    ) -> bool:
        """Continue the run with ``ainvoke(None)``, without reading the checkpoint first.

        For a decision this process has just won the compare-and-set for (or read again,
        still unapplied), under the incident's lock: the approval was pending a moment ago, so
        the graph is paused on it, or stopped before its pause was saved (the run died, or is
        the one that released the lock), or — if another worker applied it meanwhile — moved
        past it. Continuing is right in each case: the approval node takes the decision from
        ``services.decided`` without calling ``interrupt()``, so no resume value is needed (a
        thread paused on another interrupt pauses there again; a finished one runs nothing).
        And a thread without any checkpoint (deleted) is refused by LangGraph
        (``EmptyInputError``) before anything runs: unlike ``Command(resume=...)``, ``None``
        never starts a run from START. ``tests/test_performance_paths.py`` pins each case.
        """
        try:
            await self._hand_over(graph, record, None, config)
        except EmptyInputError:
            log.warning(
                "incident %s has no checkpoint: nothing to resume with approval %s",
                record.incident_id,
                record.approval_id,
            )
            return False
        except Exception:
            await self._mark_if_taken(graph, record, config)
            raise
        return True

    async def _resume_checked(
        self, graph: RegisteredGraph, record: ApprovalRecord, config: RunnableConfig
    ) -> bool:
        """Read the checkpoint, then resume the run if it waits on ``record`` or stopped
        before its pause was saved; False if it had moved past it."""
        state = await graph.compiled.aget_state(config)
        waiting = any(i.id == record.approval_id for i in state.interrupts)
        # If the run stopped before its pause was saved (it crashed, or the decision came in
        # while it was still running), continue it: the approval node finds the decision.
        stalled = has_work_left(state) and not state.interrupts
        if not (waiting or stalled):
            # Moved on only if the graph shows it took this decision: a missing interrupt is
            # also what a graph that cannot see the pause (a renamed node) looks like.
            if _took(graph, record, state.values):
                return False
            raise self._not_taken(graph, record)
        run_input: Command[Any] | None = None
        if waiting:
            run_input = Command(resume={record.approval_id: {"approval_id": record.approval_id}})
        try:
            await self._hand_over(graph, record, run_input, config)
        except Exception:
            await self._mark_if_taken(graph, record, config)
            raise
        return True

    async def _hand_over(
        self,
        graph: RegisteredGraph,
        record: ApprovalRecord,
        run_input: Command[Any] | None,
        config: RunnableConfig,
    ) -> None:
        """Run the graph to hand it ``record``'s decision, checking that it took it."""
        check = self._taken_check(graph, record, config)
        await self._runner.run(graph, record.incident_id, run_input, config, check=check)

    def _taken_check(
        self, graph: RegisteredGraph, record: ApprovalRecord, config: RunnableConfig
    ) -> RunCheck:
        """The runner's check after a run meant to hand over ``record``: its approval node
        took the decision during the run, or the graph shows it took it before (a run that
        applied it died before saying so) — else the graph could not see the pause."""
        services = services_from(config)

        async def check(result: Any) -> None:
            if record.approval_id in services.taken:
                return
            state = await graph.compiled.aget_state(config)
            if not _took(graph, record, state.values):
                raise self._not_taken(graph, record)

        return check

    def _not_taken(self, graph: RegisteredGraph, record: ApprovalRecord) -> GraphVersionUnavailable:
        log.error(
            "incident %s: graph %r version %r did not take decision %s at node %r; it is "
            "left recorded and unapplied",
            record.incident_id,
            graph.name,
            graph.version,
            record.approval_id,
            record.node,
        )
        return GraphVersionUnavailable(
            record.incident_id,
            graph=record.graph,
            needed=record.graph_version,
            registered=self._graphs.versions(record.graph),
            detail=(
                f"graph {graph.name!r} version {graph.version!r} cannot see incident "
                f"{record.incident_id!r} paused at node {record.node!r} (approval "
                f"{record.approval_id}): nothing was applied; run it on the graph version it "
                f"paused on ({record.graph_version!r}) or migrate it"
            ),
        )

    async def _mark_if_taken(
        self, graph: RegisteredGraph, record: ApprovalRecord, config: RunnableConfig
    ) -> None:
        """After a run that raised: mark the decision applied if the approval node took it
        (a later stage failed), else leave it for recovery (which applies it again). Only
        the saved state tells: the node may have returned and its task still failed (a
        wrapper around it raised), leaving nothing saved."""
        after = await graph.compiled.aget_state(config)
        if any(i.id == record.approval_id for i in after.interrupts):
            return  # still waiting on it
        if _took(graph, record, after.values):
            await self._store.ledger.mark_applied(record.approval_id, self._clock())

    async def apply_recorded(self, incident_id: str) -> int:
        """Apply every recorded-but-unapplied decision of one incident; caller holds its lock."""
        applied = 0
        for row in await self._store.ledger.history(incident_id):
            if not row.is_pending and row.applied_at is None:
                applied += int(await self.apply_locked(row))
        return applied

    async def recover(self, *, limit: int = 100) -> list[ApprovalRecord]:
        """Apply decisions that were recorded but never applied, skipping incidents another
        live worker holds, graphs this runtime does not know, and incidents holding a run
        lease (lease recovery applies those). Returns those applied."""
        done: list[ApprovalRecord] = []
        for row in await self._store.ledger.unapplied(limit):
            if not self._graphs.can_run(row.graph, row.graph_version):
                self.skip_once(row, "recovery")
                continue
            try:
                async with self._store.locks.hold(row.incident_id, wait=0):
                    if await self.apply_locked(row):
                        done.append(row)
            except IncidentBusy:
                continue
            except GraphVersionUnavailable:
                self.skip_once(row, "recovery")
        return done

    def skip_once(self, row: ApprovalRecord, who: str) -> None:
        """Log, once per approval in this process, that ``who`` leaves ``row`` alone because
        its graph version cannot run here."""
        if row.approval_id in self._skipped:
            return
        self._skipped.add(row.approval_id)
        log.warning(
            "%s leaves approval %s of incident %s alone: it paused on graph %r version %r, "
            "which this process cannot run (registered: %s); a process with that version "
            "applies it, or migrate the incident",
            who,
            row.approval_id,
            row.incident_id,
            row.graph,
            row.graph_version,
            ", ".join(self._graphs.versions(row.graph)) or "none",
        )
