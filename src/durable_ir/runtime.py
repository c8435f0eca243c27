"""The runtime: one database, the graphs that run on it, and the safe operations on incidents.

Example:
    >>> import asyncio, operator
    >>> from typing import Annotated, Any, TypedDict
    >>> from langgraph.graph import END, START, StateGraph
    >>> from durable_ir import Approve, approval_node, open_runtime
    >>> class State(TypedDict, total=False):
    ...     plan: Any
    ...     approval: dict
    ...     applied: bool
    >>> gate = approval_node()
    >>> builder = StateGraph(State)
    >>> _ = builder.add_node("plan", lambda s: {"plan": {"steps": ["restart api"]}})
    >>> _ = builder.add_node("approval", gate)
    >>> _ = builder.add_node("apply", lambda s: {"applied": True})
    >>> _ = builder.add_edge(START, "plan")
    >>> _ = builder.add_edge("plan", "approval")
    >>> _ = builder.add_conditional_edges(
    ...     "approval", gate.route, {"approved": "apply", "rejected": END, "expired": END})
    >>> _ = builder.add_edge("apply", END)
    >>> async def main():
    ...     async with open_runtime("memory://") as rt:
    ...         incident = await rt.start(builder, {}, incident_id="inc-1")
    ...         print(incident.status)
    ...         await rt.decide("inc-1", Approve(by="alice"))
    ...         print((await rt.get("inc-1")).values["applied"])
    >>> asyncio.run(main())
    awaiting_approval
    True
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver

from durable_ir.approval.deciding import Decider, DecisionResult, validate_incident_id
from durable_ir.clock import Clock, system_clock
from durable_ir.decisions import Decision
from durable_ir.errors import ConfigurationError, Conflict, IncidentBusy, NotFound
from durable_ir.graphs import AnyGraph, GraphRegistry, RegisteredGraph
from durable_ir.incident import IncidentSnapshot, IncidentStatus
from durable_ir.persistence import Store, open_store
from durable_ir.reconciliation import reconcile
from durable_ir.records import ApprovalRecord
from durable_ir.services import NodeServices
from durable_ir.sla import SlaPolicy

__all__ = ["Runtime", "open_runtime"]

log = logging.getLogger("durable_ir.runtime")


class Runtime:
    """Runs incident graphs on one store. Create it with :func:`open_runtime`."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock = system_clock,
        sla: SlaPolicy | None = None,
        lock_timeout: float = 30.0,
    ) -> None:
        if lock_timeout < 0:
            raise ConfigurationError("lock_timeout must be >= 0 seconds")
        self.store = store
        self.clock = clock
        self.sla = sla or SlaPolicy()
        self.graphs = GraphRegistry(store.checkpointer)
        self._decider = Decider(store, self.graphs, self._services, clock, lock_timeout)

    def _services(self, graph_name: str) -> NodeServices:
        return NodeServices(
            ledger=self.store.ledger, clock=self.clock, sla=self.sla, graph=graph_name
        )

    def register(self, graph: AnyGraph, *, name: str | None = None) -> RegisteredGraph:
        """Make ``graph`` runnable here (compiling it with this runtime's checkpointer).

        A process that decides on or recovers incidents registers the same graphs, under the
        same names, as the process that started them.
        """
        return self.graphs.register(graph, name)

    def config_for(self, incident_id: str, *, graph: str | None = None) -> RunnableConfig:
        """The LangGraph config for ``incident_id``, for invoking a registered graph yourself
        (``durability="sync"`` recommended; you then take care of locking)."""
        names = self.graphs.names()
        name = graph or (names[0] if len(names) == 1 else None)
        if name is None:
            raise ConfigurationError("several graphs are registered: say which one")
        return self.graphs.get(name).config(validate_incident_id(incident_id), self._services(name))

    async def start(
        self,
        graph: AnyGraph,
        input: Any,
        *,
        incident_id: str | None = None,
        graph_name: str | None = None,
    ) -> IncidentSnapshot:
        """Run a new incident until it pauses for approval or ends.

        Raises ``Conflict`` if an incident with this id exists or is being started elsewhere.
        """
        registered = self.register(graph, name=graph_name)
        incident_id = validate_incident_id(incident_id or str(uuid.uuid4()))
        try:
            async with self.store.locks.hold(incident_id, wait=0):
                if await self._decider.incident_exists(incident_id):
                    raise Conflict(f"incident {incident_id!r} already exists")
                config = registered.config(incident_id, self._services(registered.name))
                await registered.compiled.ainvoke(input, config, durability="sync")
                # A decision that arrived while this run held the lock is applied now.
                await self._decider.apply_recorded(incident_id)
        except IncidentBusy:
            raise Conflict(f"incident {incident_id!r} is being started by another worker") from None
        return await self.get(incident_id)

    async def decide(
        self, incident_id: str, decision: Decision, *, approval_id: str | None = None
    ) -> DecisionResult:
        """Record ``decision`` on the incident's pending approval, then resume the graph.

        - unknown incident: ``NotFound``, nothing written;
        - not waiting (running, finished, already decided): ``Conflict`` with the winner;
        - malformed or not allowed: ``InvalidDecision``, nothing written.

        ``approval_id`` pins the decision to the request the decider saw.
        """
        return await self._decider.decide(incident_id, decision, approval_id=approval_id)

    async def apply_recorded_decision(self, record: ApprovalRecord) -> bool:
        """Hand a recorded decision to its graph; the caller holds the incident's lock
        (``runtime.store.locks.hold(record.incident_id)``). Idempotent."""
        return await self._decider.apply_locked(record)

    async def recover(self, *, limit: int = 100) -> list[ApprovalRecord]:
        """Apply decisions that were recorded but not applied (their process died)."""
        return await self._decider.recover(limit=limit)

    async def reconcile(self) -> list[ApprovalRecord]:
        """Register approvals that are pending in the checkpointer but missing from the ledger
        (e.g. incidents paused before the ledger existed), with deadlines from this runtime's
        SLA policy; see :func:`durable_ir.reconciliation.reconcile`. Returns the rows it
        registered."""
        return await reconcile(self.store.checkpointer, self.store.ledger, sla=self.sla)

    async def get(self, incident_id: str) -> IncidentSnapshot:
        """The incident's state and approvals (``NotFound`` if there is no such incident)."""
        incident_id = validate_incident_id(incident_id)
        approvals = await self.store.ledger.history(incident_id)
        if not await self._decider.incident_exists(incident_id):
            raise NotFound(f"no incident {incident_id!r}")
        if approvals:
            registered = self.graphs.get(approvals[-1].graph)
        else:  # it never asked for an approval, so the ledger cannot say which graph it runs
            names = self.graphs.names()
            if len(names) != 1:
                raise ConfigurationError(
                    f"incident {incident_id!r} has no approval yet, so its graph is unknown: "
                    "register exactly one graph, or read it with the graph's own aget_state()"
                )
            registered = self.graphs.get(names[0])
        state = await registered.compiled.aget_state(
            registered.config(incident_id, self._services(registered.name))
        )
        latest = approvals[-1] if approvals else None
        pending = latest if latest is not None and latest.is_pending else None
        paused_on_latest = latest is not None and any(
            i.id == latest.approval_id for i in state.interrupts
        )
        status: IncidentStatus
        if paused_on_latest and pending is not None:
            status = "awaiting_approval"
        elif latest is not None and not latest.is_pending and latest.applied_at is None:
            status = "resuming"
        else:
            status = "running" if state.next else "finished"
        return IncidentSnapshot(
            id=incident_id,
            status=status,
            values=dict(state.values)
            if isinstance(state.values, dict)
            else {"value": state.values},
            next=tuple(state.next),
            pending_approval=pending,
            approvals=approvals,
        )

    async def history(self, incident_id: str) -> list[ApprovalRecord]:
        """Every approval of the incident and its decision, oldest first."""
        return await self.store.ledger.history(validate_incident_id(incident_id))


@asynccontextmanager
async def open_runtime(
    url: str | None = None,
    *,
    clock: Clock = system_clock,
    sla: SlaPolicy | None = None,
    lock_timeout: float = 30.0,
    pool_size: int = 20,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
) -> AsyncIterator[Runtime]:
    """Open a runtime on ``url`` (``postgresql://…``, ``sqlite:///path`` or ``memory://``;
    default ``$DURABLE_IR_DATABASE_URL`` or ``sqlite:///durable_ir.db``). Pass ``checkpointer``
    to keep graph state in your own saver, with the ledger and locks behind ``url``.

    Example:
        >>> import asyncio
        >>> async def main():
        ...     async with open_runtime("memory://") as rt:
        ...         return rt.store.backend
        >>> asyncio.run(main())
        'memory'
    """
    async with open_store(url, pool_size=pool_size, checkpointer=checkpointer) as store:
        yield Runtime(store, clock=clock, sla=sla, lock_timeout=lock_timeout)
