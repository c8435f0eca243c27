"""Record a decision, answer, then apply it in the background: built on ``Runtime.decide``.

``Runtime.decide`` records the decision durably (the ledger's compare-and-set) and then
resumes the graph under the incident's lock, all in one call, so an HTTP request awaiting it
would wait for the remediation to run. :class:`DecisionRecorder` splits the two halves with
nothing but ``decide``'s documented behaviour:

1. it takes the incident's lock itself (without waiting);
2. it calls ``decide`` on a second runtime over the same store whose ``lock_timeout`` is 0:
   ``decide`` validates, records with the compare-and-set, finds the lock busy (held by
   step 1) and returns at once with ``applied=False`` — the decision is durable, and every
   refusal (``NotFound``, ``Conflict`` naming the winner, ``InvalidDecision``) comes from the
   library exactly as for any caller;
3. the route answers 202, and a background task, still holding the lock, hands the decision
   to the graph with ``Runtime.apply_recorded_decision`` (idempotent), then releases it.

If another worker holds the incident at step 1, ``decide`` still records (and applies at
once if the lock came free meanwhile); otherwise the background task waits for the lock up to
``lock_wait`` seconds. If this process dies anywhere after the record, the decision is
"decided but not applied" in the ledger, and ``Runtime.recover()`` — run by every replica's
SLA monitor loop and at start-up — applies it.

Example:
    >>> import asyncio
    >>> from durable_ir import Approve, approval_node, open_runtime
    >>> from durable_ir.service.background import BackgroundRuns
    >>> from langgraph.graph import END, START, StateGraph
    >>> from typing import Any, TypedDict
    >>> class State(TypedDict, total=False):
    ...     plan: Any
    ...     approval: dict
    >>> gate = approval_node()
    >>> builder = StateGraph(State)
    >>> _ = builder.add_node("approval", gate)
    >>> _ = builder.add_edge(START, "approval")
    >>> _ = builder.add_conditional_edges(
    ...     "approval", gate.route, {"approved": END, "rejected": END, "expired": END})
    >>> async def main():
    ...     async with open_runtime("memory://") as rt:
    ...         await rt.start(builder, {"plan": {"steps": []}}, incident_id="inc-1")
    ...         recorder = DecisionRecorder(rt, BackgroundRuns(limit=1), lock_wait=5.0)
    ...         recorder.register(builder, name="incident")
    ...         submitted = await recorder.submit("inc-1", Approve(by="alice"))
    ...         print(submitted.record.status.value, submitted.applied)
    ...         await submitted.done()
    ...         print((await rt.get("inc-1")).status)
    >>> asyncio.run(main())
    approved False
    finished
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from dataclasses import dataclass
from typing import Any

from durable_ir.approval.deciding import validate_incident_id
from durable_ir.decisions import Decision
from durable_ir.errors import IncidentBusy
from durable_ir.graphs import AnyGraph
from durable_ir.records import ApprovalRecord
from durable_ir.runtime import Runtime
from durable_ir.service.background import BackgroundRuns

__all__ = ["DecisionRecorder", "Submitted"]

log = logging.getLogger("durable_ir.service")

_holding: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "durable_ir_service_holding", default=None
)


class _QuietOwnLock(logging.Filter):
    """Drops ``decide``'s "incident is busy" warning when the busy lock is our own."""

    def filter(self, record: logging.LogRecord) -> bool:
        held = _holding.get()
        return not (
            held is not None
            and record.levelno == logging.WARNING
            and str(record.msg).startswith("incident %s is busy")
            and record.args
            and isinstance(record.args, tuple)
            and record.args[0] == held
        )


_FILTER = _QuietOwnLock()
logging.getLogger("durable_ir.approval").addFilter(_FILTER)


@dataclass(frozen=True)
class Submitted:
    """A decision that is recorded. ``applied``: the graph already has it; else ``task``
    hands it over in the background (``await done()`` to wait for the next pause or end)."""

    record: ApprovalRecord
    applied: bool
    task: asyncio.Task[Any] | None = None

    async def done(self) -> None:
        """Wait until the background run ends (its failure is logged, not raised)."""
        if self.task is not None:
            await asyncio.wait({self.task})


class DecisionRecorder:
    """Records decisions on ``runtime``'s store and applies them in the background.

    Register the served graphs here too (:meth:`register`): ``decide`` needs a graph's
    approval node to check edits and allowed decisions.
    """

    def __init__(self, runtime: Runtime, runs: BackgroundRuns, *, lock_wait: float) -> None:
        self.runtime = runtime
        self.runs = runs
        self.lock_wait = lock_wait
        self._recorder = Runtime(
            runtime.store, clock=runtime.clock, sla=runtime.sla, lock_timeout=0
        )

    def register(self, graph: AnyGraph, *, name: str) -> None:
        """Make ``graph`` decidable (register it on the runtime under ``name`` as well)."""
        self._recorder.register(graph, name=name)

    async def submit(
        self, incident_id: str, decision: Decision, *, approval_id: str | None = None
    ) -> Submitted:
        """Record ``decision`` and schedule applying it; raises what ``Runtime.decide``
        raises before recording (``NotFound``, ``Conflict``, ``InvalidDecision``)."""
        incident_id = validate_incident_id(incident_id)
        locks = self.runtime.store.locks
        held = await locks.try_acquire(incident_id)
        token = _holding.set(incident_id if held else None)
        try:
            result = await self._recorder.decide(incident_id, decision, approval_id=approval_id)
        except BaseException:
            if held:
                await locks.release(incident_id)
            raise
        finally:
            _holding.reset(token)
        if result.applied:  # the lock came free between our try and decide's: it applied
            return Submitted(result.record, applied=True)
        task = self.runs.spawn(
            self._apply(result.record, held=held),
            name=f"applying decision {result.record.approval_id} on incident {incident_id}",
        )
        return Submitted(result.record, applied=False, task=task)

    async def _apply(self, record: ApprovalRecord, *, held: bool) -> None:
        locks = self.runtime.store.locks
        if not held:
            try:
                async with locks.hold(record.incident_id, wait=self.lock_wait):
                    await self.runtime.apply_recorded_decision(record)
            except IncidentBusy:
                log.info(
                    "incident %s is still busy; its worker or recovery applies decision %s",
                    record.incident_id,
                    record.approval_id,
                )
            return
        try:
            await self.runtime.apply_recorded_decision(record)
        finally:
            await locks.release(record.incident_id)
