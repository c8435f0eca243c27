"""Running an incident's graph once: under its lease, and leaving the index telling the truth.

Every run the runtime makes — the first one, the one that applies a decision, a recovery —
goes through :class:`GraphRunner`, whose caller holds the incident's lock. It invokes the graph
with ``durability="sync"`` while the lease's heartbeat runs; then the index says what became
of the run: ended (closed, with its outcome), paused (lease dropped), or failed (the error
kept, the run owed again after ``retry_after`` seconds, for any runtime's recovery).

Example:
    >>> import asyncio
    >>> from langgraph.graph import END, START, StateGraph
    >>> from typing import TypedDict
    >>> from durable_ir import open_runtime
    >>> class State(TypedDict, total=False):
    ...     outcome: dict
    >>> graph = StateGraph(State)
    >>> _ = graph.add_node("fix", lambda s: {"outcome": {"status": "resolved"}})
    >>> _ = graph.add_edge(START, "fix")
    >>> _ = graph.add_edge("fix", END)
    >>> async def main():
    ...     async with open_runtime("memory://") as rt:
    ...         await rt.start(graph, {}, incident_id="inc-1")
    ...         return (await rt.store.ledger.get_incident("inc-1")).outcome
    >>> asyncio.run(main())
    'resolved'
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.types import StateSnapshot

from durable_ir.clock import Clock
from durable_ir.errors import GraphVersionUnavailable, OwnershipLost
from durable_ir.graphs import RegisteredGraph
from durable_ir.leases import LeaseKeeper
from durable_ir.ledger import ApprovalLedger
from durable_ir.ledger.ownership import EPOCH_CONFIG_KEY
from durable_ir.locks import IncidentLocks
from durable_ir.metrics import METRICS
from durable_ir.tracing import span

log = logging.getLogger(__name__)

__all__ = ["PAUSED_KEY", "GraphRunner", "RunCheck", "has_work_left", "outcome_of"]

PAUSED_KEY = "__interrupt__"
"""The key LangGraph's ``ainvoke`` output carries when the run paused on ``interrupt()``."""


def has_work_left(state: StateSnapshot) -> bool:
    """True while the run in ``state`` can go on. ``next`` lists what is still to run; a task
    whose writes were saved before the run died (before the next checkpoint) is left out of
    ``next`` but is still in ``tasks``, and ``ainvoke(None)`` carries on from it: that run
    has not ended."""
    return bool(state.next or state.tasks)


def outcome_of(result: Any) -> str | None:
    """How a run that returned ``result`` ended — its ``outcome.status``, else ``finished`` —
    or ``None`` if it paused (or returned something that is not its state)."""
    if not isinstance(result, dict) or PAUSED_KEY in result:
        return None
    outcome = result.get("outcome")
    status = outcome.get("status") if isinstance(outcome, dict) else None
    return str(status or "finished")


RunCheck = Callable[[Any], Awaitable[None]]
"""Called with a run's output before the index records how it ended; raises
:class:`~durable_ir.errors.GraphVersionUnavailable` if the run did not do what it was for."""


class GraphRunner:
    """Invokes incident graphs under their lease and records how each run went."""

    def __init__(
        self,
        ledger: ApprovalLedger,
        leases: LeaseKeeper,
        clock: Clock,
        retry_after: float,
        *,
        locks: IncidentLocks | None = None,
    ) -> None:
        self.ledger = ledger
        self.leases = leases
        self.clock = clock
        self.retry_after = retry_after
        self.locks = locks

    async def run(
        self,
        graph: RegisteredGraph,
        incident_id: str,
        run_input: Any,
        config: RunnableConfig,
        *,
        check: RunCheck | None = None,
    ) -> Any:
        """Invoke ``graph`` for ``incident_id`` (the caller holds its lock); return its output.

        A run that raises keeps its lease as a retry due in ``retry_after`` seconds, with the
        error noted in the index, and the error propagates. ``check`` vets the output before
        the index is told the run ended: if it raises ``GraphVersionUnavailable`` (the graph
        could not see where the incident was paused), the incident is neither closed nor
        retried — its lease is dropped, it stays open — and the error propagates.

        The run carries the epoch of the caller's hold on the incident (in its config, under
        ``EPOCH_CONFIG_KEY``): step claims and checkpoints are fenced on it. If another worker
        took the incident over meanwhile, the run stops at its next fenced write with
        :class:`~durable_ir.errors.OwnershipLost`, and nothing more is written for it here.
        """
        config = self.fenced(incident_id, config)
        async with self.leases.running(incident_id):
            try:
                with span(
                    "durable_ir.run",
                    incident_id=incident_id,
                    graph=graph.name,
                    graph_version=graph.version,
                ):
                    result = await graph.compiled.ainvoke(run_input, config, durability="sync")
            except OwnershipLost as lost:
                # Another worker owns the incident now: the lease, the outcome and any retry
                # are its to write, not ours.
                METRICS.run_failures.inc()
                log.error("%s: this run stops here", lost)
                raise
            except Exception as exc:
                METRICS.run_failures.inc()
                retry_at = self.clock() + timedelta(seconds=self.retry_after)
                await self.ledger.fail_run(incident_id, f"{type(exc).__name__}: {exc}", retry_at)
                raise
            if check is not None:
                try:
                    await check(result)
                except GraphVersionUnavailable:
                    await self.ledger.settle_run(incident_id, self.clock())
                    raise
        await self.settle(incident_id, result)
        return result

    def fenced(self, incident_id: str, config: RunnableConfig) -> RunnableConfig:
        """``config`` carrying the epoch of this process's hold on ``incident_id`` (under
        ``EPOCH_CONFIG_KEY``), so that checkpoint writes made with it are fenced; unchanged
        if the locks have no epochs or the incident is not held here."""
        epoch = self.locks.epoch(incident_id) if self.locks is not None else None
        if epoch is None:
            return config
        return {
            **config,
            "configurable": {**config.get("configurable", {}), EPOCH_CONFIG_KEY: epoch},
        }

    async def settle(self, incident_id: str, result: Any) -> None:
        """Record in the index that the run which returned ``result`` ended or paused."""
        outcome = outcome_of(result)
        if outcome is None:
            await self.ledger.settle_run(incident_id, self.clock())
        else:
            await self.ledger.close_incident(incident_id, outcome, self.clock())
