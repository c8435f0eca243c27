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

import asyncio
import json
import logging
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.base import SerializerProtocol

from durable_ir.alerts import Alert, check_alert
from durable_ir.approval.deciding import (
    PAUSED_KEY,
    Decider,
    DecisionResult,
    validate_incident_id,
)
from durable_ir.approval.request import alert_resolved_policy
from durable_ir.clock import Clock, DatabaseClock, system_clock
from durable_ir.decisions import ALERT_RESOLVED, ALERTMANAGER_IDENTITY, Decision, Expire
from durable_ir.errors import (
    ConfigurationError,
    Conflict,
    GraphVersionUnavailable,
    IncidentBusy,
    InvalidInput,
    NotFound,
)
from durable_ir.graphs import AnyGraph, GraphRegistry, RegisteredGraph
from durable_ir.incident import IncidentSnapshot, IncidentStatus
from durable_ir.leases import LeaseKeeper
from durable_ir.locks import Taking
from durable_ir.logs import log_context
from durable_ir.metrics import METRICS, decider_type
from durable_ir.persistence import Store, open_store
from durable_ir.reconciliation import reconcile
from durable_ir.records import (
    AlertEventKind,
    ApprovalRecord,
    FiringIntake,
    IncidentRecord,
    IncidentState,
    NewIncident,
    RunLease,
)
from durable_ir.retention import prune_closed
from durable_ir.runs import GraphRunner, has_work_left
from durable_ir.services import NodeServices
from durable_ir.sla import SlaPolicy
from durable_ir.takeover import RunTakeover
from durable_ir.tracing import set_attributes, span

__all__ = ["Intake", "Runtime", "open_runtime"]

log = logging.getLogger("durable_ir.runtime")


@dataclass(frozen=True)
class Intake:
    """What :meth:`Runtime.ingest` did with an alert: opened ``incident`` (``created``), or
    attached the alert to it. ``event`` is the alert event recorded on the incident's alert
    timeline: ``"fired"`` (opened, or a new firing attached to the open incident),
    ``"repeated"`` (the same firing again: attached to its incident, even a closed one) or
    ``"resolved"``; ``None`` when nothing was recorded (a repeated resolution notice).

    For a resolution notice, ``incident`` is the incident the firing reached (``None``: no
    incident knows it; the notice is logged and counted, nothing is written) and
    ``expired`` the approval this notice expired (the approval's policy is ``expire``).
    ``snapshot`` is where a new incident stands after its first run."""

    incident: IncidentRecord | None
    created: bool
    snapshot: IncidentSnapshot | None = None
    event: AlertEventKind | None = None
    expired: ApprovalRecord | None = None


def _snapshot_from_output(
    registered: RegisteredGraph,
    incident_id: str,
    output: Any,
    approvals: list[ApprovalRecord],
) -> IncidentSnapshot | None:
    """Where an incident stands, from the output of the run that just ended — when that is
    unambiguous: the graph outputs its whole state, and the run either finished or paused on
    exactly its latest, pending approval. ``None`` otherwise (read the checkpoint instead)."""
    builder = registered.compiled.builder
    if not isinstance(output, dict) or builder.output_schema is not builder.state_schema:
        return None
    values = {k: v for k, v in output.items() if k != PAUSED_KEY}
    latest = approvals[-1] if approvals else None
    paused = output.get(PAUSED_KEY)
    if paused:
        ids = {getattr(i, "id", None) for i in paused}
        if latest is None or not latest.is_pending or ids != {latest.approval_id}:
            return None
        return IncidentSnapshot(
            id=incident_id,
            status="awaiting_approval",
            values=values,
            next=(latest.node,),
            pending_approval=latest,
            approvals=approvals,
            graph_version=registered.version,
        )
    if latest is not None and (latest.is_pending or latest.applied_at is None):
        return None
    return IncidentSnapshot(
        id=incident_id,
        status="finished",
        values=values,
        next=(),
        approvals=approvals,
        graph_version=registered.version,
    )


def _new_incident(
    incident_id: str, graph: RegisteredGraph, run_input: Any, at: datetime
) -> NewIncident:
    """The index row of a new incident, described from its alert when the input has one."""
    alert = run_input.get("alert") if isinstance(run_input, Mapping) else None
    alert = alert if isinstance(alert, Mapping) else {}
    name, service, severity = alert.get("name"), alert.get("service"), alert.get("severity")
    title = f"{name} on {service}" if name and service else str(name or incident_id)
    return NewIncident(
        incident_id=incident_id,
        graph=graph.name,
        graph_version=graph.version,
        opened_at=at,
        title=title[:500],
        service=str(service)[:200] if service else None,
        severity=str(severity)[:10] if severity else None,
        alert=dict(run_input) if _is_json(run_input) else None,
    )


def _is_json(value: Any) -> bool:
    """True if ``value`` is a JSON object (so that recovery can start the run from it)."""
    if not isinstance(value, Mapping):
        return False
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


class Runtime:
    """Runs incident graphs on one store. Create it with :func:`open_runtime`.

    ``lease_ttl``: how long a run's lease lasts without a heartbeat — the longest a dead
    worker's incident waits before another runtime takes its run over (see
    :mod:`durable_ir.leases`); a run that raised is retried after the same delay.
    ``max_run_attempts``: how many times recovery takes one run over (after crashes or
    errors) before it gives up and escalates the incident with the error (see
    :meth:`recover_runs`). ``unstarted_grace``: how long an incident opened with
    ``ingest(run=False)`` may wait for :meth:`start_opened` before recovery starts it.
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock = system_clock,
        sla: SlaPolicy | None = None,
        lock_timeout: float = 30.0,
        lease_ttl: float = 30.0,
        max_run_attempts: int = 3,
        unstarted_grace: float = 60.0,
    ) -> None:
        if lock_timeout < 0:
            raise ConfigurationError("lock_timeout must be >= 0 seconds")
        if isinstance(max_run_attempts, bool) or not isinstance(max_run_attempts, int):
            raise ConfigurationError("max_run_attempts must be an integer")
        if max_run_attempts < 1:
            raise ConfigurationError("max_run_attempts must be at least 1")
        if unstarted_grace < 0:
            raise ConfigurationError("unstarted_grace must be >= 0 seconds")
        self.store = store
        self.clock = clock
        self.sla = sla or SlaPolicy()
        self.graphs = GraphRegistry(store.checkpointer)
        self.leases = LeaseKeeper(store.ledger, ttl=lease_ttl, clock=clock)
        store.locks.bind(owner=self.leases.owner, ttl=lease_ttl, clock=clock)
        self._lock_timeout = lock_timeout
        self._unstarted_grace = unstarted_grace
        self._runner = GraphRunner(
            store.ledger, self.leases, clock, retry_after=lease_ttl, locks=store.locks
        )
        self._decider = Decider(
            store, self.graphs, self._services, clock, lock_timeout, self._runner, self.leases
        )
        self._takeover = RunTakeover(
            store,
            self.graphs,
            self._services,
            self._runner,
            self._decider,
            self._run_first,
            clock,
            max_run_attempts,
        )

    async def aclose(self) -> None:
        """Stop this runtime's background work (the lease heartbeat). :func:`open_runtime`
        calls it on exit."""
        await self.leases.aclose()

    def _services(self, registered: RegisteredGraph) -> NodeServices:
        return NodeServices(
            ledger=self.store.ledger,
            clock=self.clock,
            sla=self.sla,
            graph=registered.name,
            graph_version=registered.version,
            worker=self.leases.owner,
        )

    def register(
        self,
        graph: AnyGraph,
        *,
        name: str | None = None,
        version: str | None = None,
        default: bool = True,
    ) -> RegisteredGraph:
        """Make ``graph`` runnable here (compiling it with this runtime's checkpointer).

        Args:
            graph: a LangGraph ``StateGraph`` (or one compiled without a checkpointer).
            name: the name incidents record (default ``incident``, or the compiled name).
            version: the version incidents record (default: the graph's structural
                fingerprint, see :func:`durable_ir.graphs.graph_fingerprint`).
            default: new incidents of ``name`` start on this version (else it is only kept
                for incidents that paused on it: an old version during a rollout).

        Every operation on an incident runs the graph version the incident paused on: a
        process that decides on or recovers incidents registers that version (see
        ``docs/versioning.md``). Several versions of one name may be registered side by side.

        Raises:
            ConfigurationError: not a graph, or an unusable name or version.
        """
        return self.graphs.register(graph, name, version=version, default=default)

    def config_for(
        self, incident_id: str, *, graph: str | None = None, version: str | None = None
    ) -> RunnableConfig:
        """The LangGraph config for ``incident_id``, for invoking a registered graph yourself
        (``durability="sync"`` recommended; you then take care of locking)."""
        names = self.graphs.names()
        name = graph or (names[0] if len(names) == 1 else None)
        if name is None:
            raise ConfigurationError("several graphs are registered: say which one")
        registered = self.graphs.get(name, version)
        return registered.config(validate_incident_id(incident_id), self._services(registered))

    def note_unrunnable(self, record: ApprovalRecord, who: str) -> None:
        """Log once (per approval, in this process) that ``who`` leaves ``record`` alone
        because the graph version it paused on cannot run here."""
        self._decider.skip_once(record, who)

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
        new = replace(
            _new_incident(incident_id, registered, input, self.clock()), lease=self.leases.lease()
        )
        ledger = self.store.ledger
        try:
            async with self.store.locks.taking(incident_id, ledger) as taking:
                # The index knows every incident the runtime started (threads written to the
                # checkpointer by other means are not looked up). Opening it takes it too.
                opened, _, epoch = await ledger.open_and_take(new, taking.request)
                taking.took(epoch)
                if not opened:
                    raise Conflict(f"incident {incident_id!r} already exists")
                await taking.acquire(wait=0)
                log.info(
                    "opened incident %s (graph %s version %s)",
                    incident_id,
                    registered.name,
                    registered.version,
                    extra=log_context(incident_id, event="opened"),
                )
                snapshot = await self._run_first(registered, incident_id, input)
        except IncidentBusy:
            raise Conflict(f"incident {incident_id!r} is being started by another worker") from None
        return snapshot or await self.get(incident_id)

    async def _run_first(
        self, registered: RegisteredGraph, incident_id: str, input: Any
    ) -> IncidentSnapshot | None:
        """The incident's first run; the caller holds its lock and has indexed it. Returns
        where it stands, when the run's own output tells (else ``None``: ask :meth:`get`)."""
        config = registered.config(incident_id, self._services(registered))
        result = await self._runner.run(registered, incident_id, input, config)
        approvals = await self.store.ledger.history(incident_id)
        if any(not r.is_pending and r.applied_at is None for r in approvals):
            # A decision that arrived while this run held the lock is applied now.
            await self._decider.apply_recorded(incident_id)
            return None
        return _snapshot_from_output(registered, incident_id, result, approvals)

    async def ingest(
        self,
        graph: AnyGraph,
        alert: Alert | Mapping[str, Any],
        *,
        graph_name: str | None = None,
        incident_id: str | None = None,
        extra_input: Mapping[str, Any] | None = None,
        run: bool = True,
    ) -> Intake:
        """Open an incident for ``alert`` and run it until it pauses or ends — unless the
        same firing (fingerprint and ``fired_at``, Alertmanager's ``startsAt``) reached an
        incident before, open or closed (the alert attaches there; a closed incident is not
        reopened), or an open incident has the same fingerprint (the alert attaches to it).

        ``alert`` is an :class:`~durable_ir.Alert` or its JSON (the generic shape, see
        :mod:`durable_ir.alerts`); a malformed one raises ``InvalidInput`` and writes nothing.
        The graph gets ``{"alert": alert.as_state(), **extra_input}`` as input (e.g.
        ``{"approval_window_s": 600}``; JSON only). An alert that reports a resolution
        (Alertmanager's ``resolved``) never opens an incident: it is recorded on the alert
        timeline of its firing's incident and, if that incident's pending approval has the
        policy ``on_alert_resolved="expire"``, expires it as ``system:alertmanager``
        (``Intake.expired``; applied here when ``run``). Concurrent copies of one alert, from
        any number of processes, open one incident
        (:meth:`~durable_ir.ledger.ApprovalLedger.open_firing`).

        With ``run=False`` the incident is only opened (indexed, with its input); run it with
        :meth:`start_opened` — or recovery starts it, if this process dies first.
        """
        with span("durable_ir.ingest", graph=graph_name, incident_id=incident_id) as current:
            intake = await self._ingest(
                graph,
                alert,
                graph_name=graph_name,
                incident_id=incident_id,
                extra_input=extra_input,
                run=run,
            )
            if intake.incident is not None:
                set_attributes(
                    current,
                    incident_id=intake.incident.incident_id,
                    created=intake.created,
                    fingerprint=intake.incident.fingerprint,
                )
            return intake

    async def _ingest(
        self,
        graph: AnyGraph,
        alert: Alert | Mapping[str, Any],
        *,
        graph_name: str | None = None,
        incident_id: str | None = None,
        extra_input: Mapping[str, Any] | None = None,
        run: bool = True,
    ) -> Intake:
        METRICS.alert("received")
        try:
            parsed = check_alert(alert)
        except InvalidInput:
            METRICS.alert("refused")
            raise
        registered = self.register(graph, name=graph_name)
        incident_id = validate_incident_id(incident_id or str(uuid.uuid4()))
        run_input = {**(extra_input or {}), "alert": parsed.as_state()}
        if not _is_json(run_input):
            raise InvalidInput("extra_input must be a JSON object")
        if parsed.status == "resolved":
            return await self._resolved(parsed, run=run)
        new = _new_incident(incident_id, registered, run_input, self.clock())
        # Run now: this runtime holds the lease. Not now: the lease is free, and expires
        # (recovery starts the incident) if start_opened() has not run it by then.
        lease = (
            self.leases.lease()
            if run
            else RunLease(None, self.clock() + timedelta(seconds=self._unstarted_grace))
        )
        new = replace(new, fingerprint=parsed.fingerprint, lease=lease)
        ledger = self.store.ledger
        if not run:  # only indexed: nothing to take
            intake = await ledger.open_firing(new, parsed.fired_at)
            return await self._ingested(registered, parsed, incident_id, run_input, intake, None)
        async with self.store.locks.taking(incident_id, ledger) as taking:
            intake = await ledger.open_firing(new, parsed.fired_at, take=taking.request)
            taking.took(intake.epoch)
            return await self._ingested(registered, parsed, incident_id, run_input, intake, taking)

    async def _ingested(
        self,
        registered: RegisteredGraph,
        parsed: Alert,
        incident_id: str,
        run_input: dict[str, Any],
        intake: FiringIntake,
        taking: Taking | None,
    ) -> Intake:
        """The rest of :meth:`ingest` once the alert is indexed: attached, refused, or opened
        (and, with ``taking``, run under the lock that opening it may have taken)."""
        opened, row = intake.created, intake.incident
        if not opened:
            if intake.kind == "repeated":
                # The same firing again (Alertmanager re-sends whole groups): counted on the
                # incident it reached, open or closed — never a new incident, run or page.
                METRICS.alert("deduplicated")
                log.info(
                    "alert %s (started %s) repeated: attached to %s incident %s (%d alerts)",
                    parsed.fingerprint,
                    parsed.fired_at.isoformat(),
                    row.status,
                    row.incident_id,
                    row.alerts_received,
                )
                return Intake(row, created=False, event="repeated")
            if row.fingerprint != parsed.fingerprint:
                METRICS.alert("refused")
                raise Conflict(f"incident {incident_id!r} already exists (another alert)")
            METRICS.alert("refused" if not row.is_open else "deduplicated")
            if not row.is_open:
                # Never a silent drop: the alert is not counted against a closed incident,
                # and a closed incident is not reopened by an id.
                log.info(
                    "alert %s for closed incident %s refused (closed %s, outcome %s)",
                    parsed.fingerprint,
                    row.incident_id,
                    row.closed_at.isoformat() if row.closed_at else "?",
                    row.outcome,
                )
                raise Conflict(
                    f"incident {row.incident_id!r} is closed (outcome {row.outcome!r}); an "
                    "alert cannot be attached to it by id: ingest it without incident_id to "
                    "open a new incident"
                )
            log.info(
                "alert %s attached to open incident %s (%d alerts)",
                parsed.fingerprint,
                row.incident_id,
                row.alerts_received,
            )
            return Intake(row, created=False, event=intake.kind)
        METRICS.alert("opened")
        log.info(
            "opened incident %s from alert %s (graph %s version %s)",
            row.incident_id,
            parsed.fingerprint,
            registered.name,
            registered.version,
            extra=log_context(row.incident_id, event="opened"),
        )
        if taking is None:
            return Intake(row, created=True, event="fired")
        snapshot = None
        try:
            epoch = await taking.acquire(wait=0)
            # Epoch 1: nobody held this new incident before us (opening it took it). A later
            # epoch means that this process stalled between indexing and taking it, past its
            # lease, and recovery ran it meanwhile: an input to a thread that exists would
            # start the graph over, so it is not run again here.
            if epoch == 1 or not await self._started_elsewhere(incident_id):
                snapshot = await self._run_first(registered, incident_id, run_input)
        except IncidentBusy:  # recovery picked it up first: it runs there
            pass
        return Intake(
            row, created=True, snapshot=snapshot or await self.get(incident_id), event="fired"
        )

    async def _resolved(self, alert: Alert, *, run: bool) -> Intake:
        """A resolution notice: on the timeline of the incident its firing reached; with
        the pending approval's policy ``expire``, that approval expires (the same
        compare-and-set as every decision: a person who decided first wins)."""
        METRICS.alert("resolved")
        row, first = await self.store.ledger.resolve_firing(
            alert.fingerprint, alert.fired_at, self.clock()
        )
        if row is None:
            log.warning(
                "resolution of alert %s (%s on %s, started %s) matches no incident: "
                "nothing to resolve",
                alert.fingerprint,
                alert.name,
                alert.service,
                alert.fired_at.isoformat(),
            )
            return Intake(None, created=False)
        log.info(
            "alert %s resolved: noted on %s incident %s%s",
            alert.fingerprint,
            row.status,
            row.incident_id,
            "" if first else " (again)",
        )
        if not first or not row.is_open:
            return Intake(row, created=False, event="resolved" if first else None)
        expired = await self._expire_resolved(row.incident_id)
        if expired is not None and run:
            await self.apply_decision(expired)
        if expired is None and run:
            await self.announce_alert_resolved(row.incident_id)
        return Intake(row, created=False, event="resolved", expired=expired)

    async def announce_alert_resolved(self, incident_id: str) -> None:
        """Under the ``annotate`` policy: tell the incident's pending approval node that its
        alert resolved (its ``on_resolved_notice``; the builder's tells its notifiers, and
        Slack notes it on the approval message). :meth:`ingest` does this itself when it
        runs (``run=True``); with ``run=False`` it is the caller's to do, e.g. in the
        background. Nothing for an incident with no pending approval. Best effort: the alert
        timeline already holds the resolution, so a failure is only logged."""
        latest = await self.store.ledger.latest(incident_id)
        if latest is None or not latest.is_pending:
            return
        try:
            registered = self.graphs.resolve(
                latest.graph, latest.graph_version, incident_id=incident_id
            )
            hook = getattr(registered.approval_node(latest.node), "on_resolved_notice", None)
            if hook is None:
                return
            values = (await self.get(incident_id)).values
            await hook(latest, values, registered.config(incident_id, self._services(registered)))
        except Exception:
            log.warning(
                "could not tell the channels of incident %s that its alert resolved",
                incident_id,
                exc_info=True,
            )

    async def _expire_resolved(self, incident_id: str) -> ApprovalRecord | None:
        latest = await self.store.ledger.latest(incident_id)
        if latest is None or not latest.is_pending:
            return None
        if alert_resolved_policy(latest.request) != "expire":
            return None  # annotate: the console and Slack show it; a person decides
        try:
            return await self.record_decision(
                incident_id,
                Expire(reason=ALERT_RESOLVED, by=ALERTMANAGER_IDENTITY),
                approval_id=latest.approval_id,
            )
        except Conflict as exc:
            log.info("alert of incident %s resolved after a decision: %s", incident_id, exc)
            return None
        except GraphVersionUnavailable as exc:
            log.warning("cannot expire the approval of incident %s: %s", incident_id, exc)
            return None

    async def _started_elsewhere(self, incident_id: str) -> bool:
        """True if another runtime started (or even closed) ``incident_id`` already."""
        row = await self.store.ledger.get_incident(incident_id)
        if row is None or not row.is_open or row.started_at is not None:
            return True
        return await self._decider.incident_exists(incident_id)

    async def start_opened(self, incident_id: str) -> IncidentSnapshot:
        """Run an incident opened with ``ingest(..., run=False)`` until it pauses or ends.

        ``NotFound`` if it was never opened; ``Conflict`` if it has started already (here,
        elsewhere, or by recovery).
        """
        incident_id = validate_incident_id(incident_id)
        row = await self.store.ledger.get_incident(incident_id)
        if row is None:
            raise NotFound(f"no incident {incident_id!r}")
        registered = self.graphs.resolve(row.graph, row.graph_version, incident_id=incident_id)
        try:
            async with self.store.locks.hold(incident_id, wait=0):
                if row.started_at is not None or await self._decider.incident_exists(incident_id):
                    raise Conflict(f"incident {incident_id!r} has started already")
                await self._run_first(registered, incident_id, row.alert)
        except IncidentBusy:
            raise Conflict(f"incident {incident_id!r} is being run by another worker") from None
        return await self.get(incident_id)

    async def start_unstarted(self, *, older_than: float = 60.0, limit: int = 100) -> list[str]:
        """Deprecated: :meth:`recover` (or :meth:`recover_runs`) starts an opened incident
        whose first run never began once its lease expires. Starts incidents opened at
        least ``older_than`` seconds ago whose first run never began."""
        warnings.warn(
            "Runtime.start_unstarted() is deprecated: recover() and recover_runs() start "
            "incidents whose first run never began once their lease expires",
            DeprecationWarning,
            stacklevel=2,
        )
        cutoff = self.clock() - timedelta(seconds=older_than)
        started: list[str] = []
        for row in await self.store.ledger.unstarted_incidents(cutoff, limit):
            if not self.graphs.can_run(row.graph, row.graph_version):
                continue
            try:
                async with self.store.locks.hold(row.incident_id, wait=0):
                    if await self._decider.incident_exists(row.incident_id):
                        # It ran; only its start was not noted.
                        await self.store.ledger.mark_incident_started(row.incident_id, self.clock())
                        continue
                    graph = self.graphs.resolve(
                        row.graph, row.graph_version, incident_id=row.incident_id
                    )
                    await self._run_first(graph, row.incident_id, row.alert)
                    started.append(row.incident_id)
            except IncidentBusy:
                continue
        return started

    async def decide(
        self, incident_id: str, decision: Decision, *, approval_id: str | None = None
    ) -> DecisionResult:
        """Record ``decision`` on the incident's pending approval, then resume the graph.

        - unknown incident: ``NotFound``, nothing written;
        - not waiting (running, finished, already decided): ``Conflict`` with the winner;
        - malformed or not allowed: ``InvalidDecision``, nothing written.

        ``approval_id`` pins the decision to the request the decider saw.
        """
        started = time.perf_counter()
        with span(
            "durable_ir.decide",
            incident_id=incident_id,
            approval_id=approval_id,
            decision=getattr(decision, "kind", None),
            decider_type=decider_type(getattr(decision, "by", None)),
        ) as current:
            result = await self._decider.decide(incident_id, decision, approval_id=approval_id)
            set_attributes(current, approval_id=result.record.approval_id, applied=result.applied)
        METRICS.decide_seconds.observe(time.perf_counter() - started)
        return result

    async def record_decision(
        self, incident_id: str, decision: Decision, *, approval_id: str | None = None
    ) -> ApprovalRecord:
        """The first half of :meth:`decide`: validate ``decision`` and record it durably,
        without resuming the graph; the same errors as :meth:`decide`. Hand it over with
        :meth:`apply_decision` — or, if this process dies first, recovery does.

        For an HTTP handler that answers as soon as the decision is durable (202) and lets
        the graph go on in the background.
        """
        with span(
            "durable_ir.record_decision",
            incident_id=incident_id,
            approval_id=approval_id,
            decision=getattr(decision, "kind", None),
            decider_type=decider_type(getattr(decision, "by", None)),
        ) as current:
            record = await self._decider.record(incident_id, decision, approval_id=approval_id)
            set_attributes(current, approval_id=record.approval_id)
            return record

    async def apply_decision(self, record: ApprovalRecord, *, wait: float | None = None) -> bool:
        """The second half of :meth:`decide`: take the incident's lock (waiting up to
        ``wait`` seconds, default this runtime's ``lock_timeout``) and hand ``record``'s
        decision to its graph. False if the incident stayed busy: its holder or recovery
        applies it. Idempotent."""
        with span(
            "durable_ir.apply_decision",
            incident_id=record.incident_id,
            approval_id=record.approval_id,
            decision=record.status.value,
        ) as current:
            applied = await self._decider.apply(
                record, wait=self._lock_timeout if wait is None else wait
            )
            set_attributes(current, applied=applied)
            return applied

    async def apply_recorded_decision(self, record: ApprovalRecord) -> bool:
        """Hand a recorded decision to its graph; the caller holds the incident's lock
        (``runtime.store.locks.hold(record.incident_id)``). Idempotent."""
        return await self._decider.apply_locked(record)

    async def recover(self, *, limit: int = 100, stalled: bool = False) -> list[ApprovalRecord]:
        """Make good what dead or failed runs left: take over runs whose lease expired
        (:meth:`recover_runs`: crashed or hung mid-stage, failed and due for a retry, opened
        and never started, a decision recorded and never applied), and apply decisions
        recorded outside any lease. Cheap enough to call in a loop (the SLA monitor does).

        ``stalled``: this runtime is starting up, so take over every leased run whose
        runner is gone now, without waiting for its lease to expire. Returns the decisions
        applied.
        """
        applied = await self._decider.recover(limit=limit)
        taken = await self._takeover.recover(limit=limit, all_leased=stalled)
        return applied + taken.applied

    async def recover_runs(self, *, limit: int = 100, all_leased: bool = False) -> list[str]:
        """Take over up to ``limit`` runs whose lease expired — or, with ``all_leased``,
        every leased run whose runner is gone — and continue each from its last checkpoint.
        Returns the incidents taken over.

        Each takeover counts against the run's ``max_run_attempts``; past it the run is
        stopped and the incident escalated with the error (graphs with an ``escalate`` node,
        such as the builder's, are sent there with ``escalation.reason = "crash_loop"``;
        others are closed with outcome ``crash_loop``) — never an endless crash loop.
        """
        return (await self._takeover.recover(limit=limit, all_leased=all_leased)).incidents

    async def resume_stalled(self, *, limit: int = 100) -> list[str]:
        """Deprecated: ``recover_runs(all_leased=True)`` (or ``recover(stalled=True)``, which
        also applies recorded decisions)."""
        warnings.warn(
            "Runtime.resume_stalled() is deprecated: use recover_runs(all_leased=True)",
            DeprecationWarning,
            stacklevel=2,
        )
        return await self.recover_runs(limit=limit, all_leased=True)

    async def prune(self, *, older_than: timedelta, limit: int = 100) -> list[str]:
        """Delete the checkpoints of up to ``limit`` incidents closed at least ``older_than``
        ago, keeping their index rows, approvals and notifications as the audit record (see
        :mod:`durable_ir.retention`). Returns the incidents pruned, oldest first."""
        return await prune_closed(self.store, self.clock, older_than=older_than, limit=limit)

    async def incidents(
        self, *, status: IncidentState | None = None, limit: int = 100
    ) -> list[IncidentRecord]:
        """Incidents from the index, newest first (``status``: ``open`` or ``closed``)."""
        return await self.store.ledger.list_incidents(status=status, limit=limit)

    async def reconcile(self) -> list[ApprovalRecord]:
        """Register approvals that are pending in the checkpointer but missing from the ledger
        (e.g. incidents paused before the ledger existed), with deadlines from this runtime's
        SLA policy; see :func:`durable_ir.reconciliation.reconcile`. Returns the rows it
        registered."""
        return await reconcile(self.store.checkpointer, self.store.ledger, sla=self.sla)

    async def get(self, incident_id: str) -> IncidentSnapshot:
        """The incident's state and approvals (``NotFound`` if there is no such incident).

        An incident whose graph version is not registered here is still shown — its status
        from the ledger, its values from the raw checkpoint — and never as ``finished`` while
        its approval is pending.
        """
        incident_id = validate_incident_id(incident_id)
        approvals = await self.store.ledger.history(incident_id)
        indexed = None if approvals else await self.store.ledger.get_incident(incident_id)
        latest = approvals[-1] if approvals else None
        pending = latest if latest is not None and latest.is_pending else None
        source = latest or indexed
        if source is not None:
            try:
                registered = self.graphs.resolve(
                    source.graph, source.graph_version, incident_id=incident_id
                )
            except GraphVersionUnavailable:
                return await self._snapshot_elsewhere(incident_id, approvals, source.graph_version)
        else:  # not in the index (run outside the runtime): only the checkpointer knows it
            if not await self._decider.incident_exists(incident_id):
                raise NotFound(f"no incident {incident_id!r}")
            names = self.graphs.names()
            if len(names) != 1:
                raise ConfigurationError(
                    f"incident {incident_id!r} is not in the incident index, so its graph is "
                    "unknown: register exactly one graph, or read it with the graph's own "
                    "aget_state()"
                )
            registered = self.graphs.get(names[0])
        state = await registered.compiled.aget_state(
            registered.config(incident_id, self._services(registered))
        )
        paused_on_latest = latest is not None and any(
            i.id == latest.approval_id for i in state.interrupts
        )
        status: IncidentStatus
        if pending is not None and (paused_on_latest or not has_work_left(state)):
            # Never "finished" while an approval is pending: a graph that cannot see the
            # pause (it was changed under the same version) still has one.
            status = "awaiting_approval"
        elif latest is not None and not latest.is_pending and latest.applied_at is None:
            status = "resuming"
        else:
            # An open incident whose first run has not begun is owed one: running, not
            # finished.
            owed = indexed is not None and indexed.is_open and not state.values
            status = "running" if has_work_left(state) or owed else "finished"
        return IncidentSnapshot(
            id=incident_id,
            status=status,
            values=dict(state.values)
            if isinstance(state.values, dict)
            else {"value": state.values},
            next=tuple(state.next),
            pending_approval=pending,
            approvals=approvals,
            graph_version=source.graph_version if source is not None else registered.version,
        )

    async def _snapshot_elsewhere(
        self, incident_id: str, approvals: list[ApprovalRecord], version: str | None
    ) -> IncidentSnapshot:
        """Where an incident stands whose graph version is not registered here: the status
        from the ledger and the index, the values from the checkpoint as stored."""
        latest = approvals[-1] if approvals else None
        status: IncidentStatus
        if latest is not None and latest.is_pending:
            status = "awaiting_approval"
        elif latest is not None and latest.applied_at is None:
            status = "resuming"
        else:
            row = await self.store.ledger.get_incident(incident_id)
            status = "running" if row is None or row.is_open else "finished"
        values = await self.stored_values(incident_id) or {}
        return IncidentSnapshot(
            id=incident_id,
            status=status,
            values=values,
            next=(latest.node,) if status == "awaiting_approval" and latest else (),
            pending_approval=latest if status == "awaiting_approval" else None,
            approvals=approvals,
            graph_version=version,
            runnable_here=False,
        )

    async def stored_values(self, incident_id: str) -> dict[str, Any] | None:
        """The incident's latest checkpointed state values as stored, read without its graph
        (which may not be registered here); ``None`` if it has no checkpoint. LangGraph's
        internal channels (branches, ``__…__``) are left out."""
        config: RunnableConfig = {
            "configurable": {"thread_id": validate_incident_id(incident_id), "checkpoint_ns": ""}
        }
        stored = await self.store.checkpointer.aget_tuple(config)
        if stored is None:
            return None
        channels = stored.checkpoint.get("channel_values") or {}
        return {
            k: v for k, v in channels.items() if not str(k).startswith(("branch:", "__", "start:"))
        }

    async def history(self, incident_id: str) -> list[ApprovalRecord]:
        """Every approval of the incident and its decision, oldest first."""
        return await self.store.ledger.history(validate_incident_id(incident_id))


@asynccontextmanager
async def open_runtime(
    url: str | None = None,
    *,
    clock: Clock | None = None,
    sla: SlaPolicy | None = None,
    lock_timeout: float = 30.0,
    pool_size: int = 20,
    connect_timeout: float = 30.0,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    serde: SerializerProtocol | None = None,
    lease_ttl: float = 30.0,
    max_run_attempts: int = 3,
    unstarted_grace: float = 60.0,
) -> AsyncIterator[Runtime]:
    """Open a runtime on ``url`` (``postgresql://…``, ``sqlite:///path`` or ``memory://``;
    default ``$DURABLE_IR_DATABASE_URL`` or ``sqlite:///durable_ir.db``). Pass ``checkpointer``
    to keep graph state in your own saver, with the ledger and locks behind ``url``, or
    ``serde`` to have the URL's own saver store it through another serializer (e.g.
    LangGraph's ``EncryptedSerializer``: see ``docs/persistence.md``). ``lease_ttl``,
    ``max_run_attempts`` and ``unstarted_grace`` as in :class:`Runtime`.

    ``clock``: what every deadline, lease and decision is timed by. Default: on PostgreSQL the
    database server's clock (:class:`~durable_ir.clock.DatabaseClock`: measured at start and
    every minute, so that replicas whose own clocks disagree judge deadlines and leases
    alike; a host clock more than 2 s off is logged once); on SQLite and memory, where the
    database's clock is the local one, :func:`~durable_ir.clock.system_clock`. Pass a clock to
    override it (tests inject a :class:`~durable_ir.FixedClock`).

    Example:
        >>> import asyncio
        >>> async def main():
        ...     async with open_runtime("memory://") as rt:
        ...         return rt.store.backend
        >>> asyncio.run(main())
        'memory'
    """
    async with open_store(
        url,
        pool_size=pool_size,
        connect_timeout=connect_timeout,
        checkpointer=checkpointer,
        serde=serde,
    ) as store:
        synced: DatabaseClock | None = None
        if clock is None and store.backend == "postgres":
            synced = DatabaseClock(partial(_server_time, store))
            await synced.sync()
        runtime = Runtime(
            store,
            clock=clock or synced or system_clock,
            sla=sla,
            lock_timeout=lock_timeout,
            lease_ttl=lease_ttl,
            max_run_attempts=max_run_attempts,
            unstarted_grace=unstarted_grace,
        )
        resync = asyncio.create_task(synced.run()) if synced is not None else None
        try:
            yield runtime
        finally:
            if resync is not None:
                resync.cancel()
                with suppress(asyncio.CancelledError):
                    await resync
            await runtime.aclose()


async def _server_time(store: Store) -> datetime:
    return await store.ledger.server_time() or system_clock()
