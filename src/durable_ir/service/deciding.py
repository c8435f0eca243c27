"""Record a decision, answer, then apply it in the background.

:meth:`Runtime.record_decision` validates the decision and records it with the ledger's
compare-and-set — every refusal (``NotFound``, ``Conflict`` naming the winner,
``InvalidDecision``) comes from the library exactly as for any caller — and the route answers
202. A background task then hands the decision to the graph with
:meth:`Runtime.apply_decision`, under the incident's lock (waiting up to ``lock_wait``
seconds for a worker that holds it). If this process dies anywhere after the record, the
decision is "decided but not applied" in the ledger, and ``Runtime.recover()`` — run by every
replica's SLA monitor loop and at start-up — applies it.

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
    ...         submitted = await recorder.submit("inc-1", Approve(by="alice"))
    ...         print(submitted.record.status.value, submitted.record.applied_at)
    ...         await submitted.done()
    ...         print((await rt.get("inc-1")).status)
    >>> asyncio.run(main())
    approved None
    finished
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from durable_ir.decisions import Decision
from durable_ir.metrics import METRICS
from durable_ir.records import ApprovalRecord
from durable_ir.runtime import Runtime
from durable_ir.service.background import BackgroundRuns
from durable_ir.tracing import set_attributes, span

__all__ = ["DecisionRecorder", "Submitted"]

log = logging.getLogger("durable_ir.service")


@dataclass(frozen=True)
class Submitted:
    """A decision that is recorded; ``task`` hands it to the graph in the background
    (``await done()`` to wait for the next pause or end): when the answer is sent, the graph
    does not have it yet."""

    record: ApprovalRecord
    task: asyncio.Task[Any] | None = None

    async def done(self) -> None:
        """Wait until the background run ends (its failure is logged, not raised)."""
        if self.task is not None:
            await asyncio.wait({self.task})


class DecisionRecorder:
    """Records decisions on ``runtime``'s store and applies them in the background (the
    runtime must have the incidents' graphs registered: it checks edits with their approval
    nodes)."""

    def __init__(self, runtime: Runtime, runs: BackgroundRuns, *, lock_wait: float) -> None:
        self.runtime = runtime
        self.runs = runs
        self.lock_wait = lock_wait

    async def submit(
        self, incident_id: str, decision: Decision, *, approval_id: str | None = None
    ) -> Submitted:
        """Record ``decision`` and schedule applying it; raises what
        :meth:`Runtime.record_decision` raises (nothing is recorded then)."""
        # One span for the request's decision: recording it, and (the task copies the
        # context) the background run that applies it, as its child.
        started = time.perf_counter()
        with span("durable_ir.submit_decision", incident_id=incident_id) as current:
            record = await self.runtime.record_decision(
                incident_id, decision, approval_id=approval_id
            )
            set_attributes(current, approval_id=record.approval_id)
            task = self.runs.spawn(
                self._apply(record, started),
                name=f"applying decision {record.approval_id} on incident {record.incident_id}",
            )
        return Submitted(record, task=task)

    async def _apply(self, record: ApprovalRecord, started: float) -> None:
        applied = await self.runtime.apply_decision(record, wait=self.lock_wait)
        # From the request to the graph having the decision: what decide() times in-process.
        METRICS.decide_seconds.observe(time.perf_counter() - started)
        if not applied:
            log.info(
                "incident %s is still busy; its worker or recovery applies decision %s",
                record.incident_id,
                record.approval_id,
            )
