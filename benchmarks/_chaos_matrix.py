"""The kill matrix: the full incident graph, killed with SIGKILL at every node boundary and
inside apply, then recovered by another process; the invariants are read back from the
database.

For every *cell* — a decision path (approve, reject, SLA expiry, a failing last step whose
predecessors are rolled back) and a *kill point* on it:

1. a child process (this file: ``python benchmarks/_chaos_matrix.py child SPEC``) opens the
   runtime, ingests the cell's alert into the full :class:`~durable_ir.IncidentGraphBuilder`
   graph and, for points after the approval pause, decides (``rt.decide``; expiry by an
   :class:`~durable_ir.SlaMonitor` sweep). The run stops at the kill point and the child dies
   there by SIGKILL. The points (:class:`KillPoint`): *before* each node runs; *after* it
   returned, before LangGraph wrote its checkpoint (with ``durability="sync"`` the moment a
   crash costs the most); *before* and *after* each side effect — every remediation step of
   ``apply`` and ``rollback``, every analysis of the RCA loop; and three moments outside the
   nodes: the approval request *registered* but the pause not saved, the decision *decided*
   (recorded) but never applied, the run *ended* but the incident index not closed. The node
   list comes from the builder (:func:`all_kill_points`), so a new node is covered without
   touching this file; each point is killed at every occurrence (step 1, 2, 3 …).
2. this process, holding nothing of the child's, opens the runtime, registers the same graph
   (same node names and graph name, no kill points) and calls ``rt.recover(stalled=True)``
   until every incident is paused for approval or closed; then it decides, along their paths,
   those that died before their pause.
3. it checks every incident: exactly one terminal state (index row closed, outcome and reason
   as the path says, the graph finished, its report written); one decision, recorded as the
   path says, applied, and the one the graph acted on (``lost`` otherwise); every remediation
   step applied as often as in a run without kills plus the one re-run the kill cut off, with
   the same idempotency key (``duplicated`` counts the surplus); no node that had finished ran
   again (``rerun``) and nothing skipped (``missing``); PagerDuty (a local server) paged
   exactly once per escalation and never for a resolution (``double_paged``, ``unpaged``).

The expectations come from a *baseline*: each path run once without kills (in memory, in this
process). A kill adds only the node run it cut off, which recovery runs again (a node that is a
compiled graph, the RCA loop, checkpoints inside and repeats only the step cut off).
Everything else must match the baseline entry for entry, so a recovery that continues from a
stale checkpoint, re-applies a finished step, loses a decision or leaves an incident behind
makes the report non-zero.

Batching: a child runs a batch of cells at once. A run that reaches its kill point parks there
(awaits forever) instead of dying alone; when every run of the batch has parked, the child
SIGKILLs itself — each incident dies exactly at its point, and the matrix costs one process
start per batch rather than one per cell.

Side effects are counted in per-incident journal files (the executor's "API"): a line per node
start and end and per executor or analyzer call, naming the process and, for steps, the
idempotency key. PagerDuty is ``_local_pagerduty.LocalPagerDuty``, served here.

``run_kill_matrix(url)`` needs a database several processes share (``sqlite:///…`` or
``postgresql://…``), best a fresh one: it recovers and sweeps everything there.
``python benchmarks/_chaos_matrix.py matrix [--store sqlite|postgres] [--url SERVER]`` runs it
on a throwaway database and prints the table and one last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, cast

CHILD_SCRIPT = Path(__file__).resolve()
"""This file: child processes run it (``child SPEC``)."""
BENCHMARKS_DIR = CHILD_SCRIPT.parent
if str(BENCHMARKS_DIR) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS_DIR))

from _common import (  # noqa: E402  (puts src/ and tests/ on sys.path)
    ALERT,
    ROOT,
    OneEvidenceGatherer,
    fresh_database,
    log,
    server_url,
)
from _local_pagerduty import LocalPagerDuty  # noqa: E402
from langchain_core.runnables import Runnable, RunnableConfig  # noqa: E402
from langgraph.graph import StateGraph  # noqa: E402
from langgraph.pregel import Pregel  # noqa: E402

from durable_ir import (  # noqa: E402
    AllowList,
    Approve,
    Expire,
    IncidentGraphBuilder,
    RcaConfig,
    Reject,
    Runtime,
    SlaMonitor,
    StepAction,
    StepContext,
    StepResult,
    Verification,
    VerificationContext,
    open_runtime,
)
from durable_ir.approval.node import ApprovalNode  # noqa: E402
from durable_ir.decisions import ALERT_RESOLVED, ALERTMANAGER_IDENTITY, Decision  # noqa: E402
from durable_ir.integrations.pagerduty import PagerDutyNotifier, dedup_key  # noqa: E402
from durable_ir.rca import Hypothesis  # noqa: E402
from durable_ir.rca.analysis import AnalysisRequest  # noqa: E402
from durable_ir.sla import SLA_IDENTITY  # noqa: E402

__all__ = [
    "GRAPH_NAME",
    "PATHS",
    "CellResult",
    "KillPoint",
    "MatrixCell",
    "MatrixPath",
    "MatrixReport",
    "Recovery",
    "all_kill_points",
    "build_matrix_graph",
    "matrix_builder",
    "matrix_cells",
    "nested_graph_nodes",
    "recover_until_at_rest",
    "run_kill_matrix",
]

GRAPH_NAME = "kill-matrix"
"""The graph's name in the runtime, the same in the child and in the recovering process."""
ROUTING_KEY = "K" * 32
STEP_COUNT = 3
"""Remediation steps per plan: kills land before, between and after them."""
ALLOW = AllowList({"scale": "medium"})
APPROVER = "alice"
REJECTER = "bob"
EXPIRE_WINDOW_S = 1
"""The approval window of incidents the child lets expire (the rest keep their severity's 2 h),
so that its sweep, a few minutes "ahead" (``CHILD_SWEEP_AHEAD``), expires exactly those — not
a pending approval another child left behind."""
CHILD_SWEEP_AHEAD = timedelta(minutes=5)
RECOVERY_SWEEP_AHEAD = timedelta(days=1)
"""The recovering process sweeps past every deadline, once every incident not on the expiry
path has been decided."""
FAIL_STEP_LABEL = "kill_matrix_fail_step"
CELL_LABEL = "kill_matrix_cell"

Where = Literal[
    "before", "after", "before_effect", "after_effect", "registered", "decided", "ended"
]
ONCE: dict[Where, bool] = {"registered": True, "decided": False, "ended": False}
"""The moments that come once per incident, outside the traced nodes, and whether each comes
before the approval pause."""
DecisionKind = Literal["approve", "reject", "expire", "alert_resolved"]


# --------------------------------------------------------------------------- points, paths


@dataclass(frozen=True)
class KillPoint:
    """Where a child process dies.

    ``where``: ``before``/``after`` node ``node`` runs (after: it returned, its checkpoint is
    not written); ``before_effect``/``after_effect``: around a side effect in phase ``node``
    (``apply`` or ``rollback``: the executor's step; ``rca``: the analyzer's call inside the
    RCA loop). Three moments come once per incident and need no ``node``: ``registered``,
    the approval request is in the ledger but the pause is not checkpointed; ``decided``, the
    decision is recorded and the graph never got it; ``ended``, the run's last checkpoint is
    written but the incident index not closed. ``hit``: the how-many-th time the moment comes
    for the incident (1 = the first); ``None`` means every time it comes on a path (the
    matrix expands it from the baseline).
    """

    where: Where
    node: str = ""
    hit: int | None = None

    @property
    def label(self) -> str:
        """``after apply#2``, ``after_effect rollback#1``, ``decided``."""
        if self.where in ONCE:
            return self.where
        return f"{self.where} {self.node}" + ("" if self.hit is None else f"#{self.hit}")

    def at(self, hit: int) -> KillPoint:
        """This point at its ``hit``-th occurrence."""
        return KillPoint(self.where, self.node, hit)

    def site(self) -> tuple[str, str]:
        """The ``(where, node)`` a :class:`Parking` counts occurrences of."""
        return (self.where, self.node)


@dataclass(frozen=True)
class MatrixPath:
    """A way through the graph: the decision taken on the approval (``fail_step``: that step
    fails, so the finished ones are rolled back) and the ending it must reach."""

    name: str
    decision: DecisionKind
    outcome: Literal["resolved", "escalated", "alert_resolved"]
    reason: str | None = None
    fail_step: int | None = None

    @property
    def decided_status(self) -> str:
        return {
            "approve": "approved",
            "reject": "rejected",
            "expire": "expired",
            "alert_resolved": "expired",
        }[self.decision]

    @property
    def decided_by(self) -> str:
        return {
            "approve": APPROVER,
            "reject": REJECTER,
            "expire": SLA_IDENTITY,
            "alert_resolved": ALERTMANAGER_IDENTITY,
        }[self.decision]


PATHS: tuple[MatrixPath, ...] = (
    MatrixPath("approve", "approve", "resolved"),
    MatrixPath("reject", "reject", "escalated", "rejected"),
    MatrixPath("expire", "expire", "escalated", "expired"),
    MatrixPath("apply_failed", "approve", "escalated", "apply_failed", fail_step=STEP_COUNT),
    MatrixPath("alert_resolved", "alert_resolved", "alert_resolved", "alert_resolved"),
)
"""Resolved; escalated by a rejection; by the SLA monitor; by a failed last step (after
rolling the others back); stood down because the alert resolved (the approval expired by
``system:alertmanager``: nothing applied, nobody paged). Together they run every node of the
builder's graph."""


def all_kill_points(
    graph: IncidentGraphBuilder | StateGraph[Any, Any, Any, Any],
) -> list[KillPoint]:
    """Every kill point of ``graph``: before and after each of its nodes (from
    ``builder.node_names``, so new nodes are included); around each side effect of ``apply``,
    ``rollback`` and the RCA loop's analysis; the approval request registered but not yet
    paused on, the decision recorded but not applied, the run ended but not yet closed. Each
    at every occurrence (``hit=None``)."""
    names = graph.node_names if isinstance(graph, IncidentGraphBuilder) else tuple(graph.nodes)
    points = [KillPoint(where, name) for name in names for where in ("before", "after")]
    points += [
        KillPoint(where, phase)
        for phase in ("rca", "apply", "rollback")
        if phase in names
        for where in ("before_effect", "after_effect")
    ]
    points += [KillPoint(where) for where in ONCE]
    return points


@dataclass(frozen=True)
class MatrixCell:
    """One incident of the matrix: a path and a kill point at a concrete occurrence."""

    incident_id: str
    path: MatrixPath
    point: KillPoint
    before_pause: bool
    """The point comes before the approval pause (the child never decides)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MatrixCell:
        return cls(
            incident_id=str(data["incident_id"]),
            path=MatrixPath(**data["path"]),
            point=KillPoint(**data["point"]),
            before_pause=bool(data["before_pause"]),
        )


# --------------------------------------------------------------------------- journal, parking


@dataclass(frozen=True)
class JournalEntry:
    """One line of an incident's journal: which process (``role``) did what."""

    role: str
    kind: Literal["enter", "leave", "call"]
    detail: str
    """The node (enter/leave), or ``<phase> <number>`` (call: ``apply 2``, ``rca 1``)."""
    key: str = ""
    """The idempotency key the executor was given (its calls only)."""

    @property
    def event(self) -> tuple[str, str]:
        """What happened, whichever process and incident it happened in."""
        return (self.kind, self.detail)


class Journal:
    """Per-incident journals in ``directory`` (``<incident>.journal``), appended by every
    process that runs the incident; each line names the writing process's ``role``.

    A line is one ``write(2)`` on an ``O_APPEND`` descriptor: in the kernel before the call
    returns, so a SIGKILL right after it cannot lose it.
    """

    def __init__(self, directory: Path, role: str) -> None:
        self.directory = Path(directory)
        self.role = role

    def path(self, incident_id: str) -> Path:
        return self.directory / f"{incident_id}.journal"

    def write(self, incident_id: str, kind: str, detail: str, key: str = "") -> None:
        line = f"{self.role}\t{kind}\t{detail}\t{key}\n".encode()
        fd = os.open(self.path(incident_id), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def read(self, incident_id: str) -> list[JournalEntry]:
        path = self.path(incident_id)
        if not path.exists():
            return []
        entries = []
        for line in path.read_text().splitlines():
            role, kind, detail, key = line.split("\t")
            entries.append(JournalEntry(role, cast(Any, kind), detail, key))
        return entries


class Parking:
    """The kill points of this process, one per incident at most.

    The node wrappers, the analyzer, the executor and (in the child) the ledger report each
    moment they reach (:meth:`reach`); when an incident reaches its point, ``on_park`` is told
    and the run awaits forever — the process is killed with it. A process with no points (the
    recovering one) only counts.
    """

    def __init__(
        self,
        points: Mapping[str, KillPoint] | None = None,
        on_park: Callable[[str], None] | None = None,
    ) -> None:
        self.points = dict(points or {})
        self.on_park = on_park
        self.reached: Counter[tuple[str, str, str]] = Counter()

    async def reach(self, incident_id: str, where: Where, node: str) -> None:
        """``incident_id`` is at ``(where, node)``: park it there if that is its point."""
        self.reached[(incident_id, where, node)] += 1
        point = self.points.get(incident_id)
        if point is None or point.site() != (where, node):
            return
        if point.hit != self.reached[(incident_id, where, node)]:
            return
        if self.on_park is not None:
            self.on_park(incident_id)
        await asyncio.Event().wait()  # never set: the process dies with the run parked here


def _incident_of(config: RunnableConfig) -> str:
    return str((config.get("configurable") or {}).get("thread_id", ""))


# --------------------------------------------------------------------------- the graph's parts


class ScaleOutAnalyzer:
    """The RCA loop's analyzer: unsure at the first attempt, confident at the second (so the
    loop widens its window once), with ``steps`` undoable ``scale`` actions as remediation.
    Each analysis is journaled as ``call rca <attempt>`` — the expensive call of a real
    analyzer — and the moments around it reported to ``parking``."""

    def __init__(self, journal: Journal, parking: Parking, steps: int = STEP_COUNT) -> None:
        self.journal = journal
        self.parking = parking
        self.steps = steps

    async def analyze(self, request: AnalysisRequest) -> Hypothesis:
        incident = str((request.alert.get("labels") or {}).get(CELL_LABEL, ""))
        await self.parking.reach(incident, "before_effect", "rca")
        self.journal.write(incident, "call", f"rca {request.attempt}")
        await self.parking.reach(incident, "after_effect", "rca")
        return Hypothesis.model_validate(
            {
                "root_cause": "deploy v42 of checkout exhausted its connection pool",
                "fault": "bad_deploy",
                "service": "checkout",
                "confidence": 0.4 if request.attempt == 1 else 0.9,
                "cited_evidence": ["ev-1"],
                "remediation": [
                    {"action": "scale", "target": f"checkout-{n}", "parameters": {"replicas": 4}}
                    for n in range(1, self.steps + 1)
                ],
            }
        )


def undo_scale(step: StepAction) -> StepAction:
    """The rollback of a ``scale`` step: back to one replica."""
    return StepAction(action="scale", target=step.target, parameters={"replicas": 1})


class JournalingExecutor:
    """Executor and verifier whose side effects are journal lines (``call <phase> <n>``, with
    the idempotency key). A step fails if the alert's ``kill_matrix_fail_step`` label names
    it; the service is always healthy afterwards. Reports the moments around each apply and
    rollback side effect to ``parking``."""

    def __init__(self, journal: Journal, parking: Parking) -> None:
        self.journal = journal
        self.parking = parking

    async def _act(self, context: StepContext, *, fail: bool = False) -> StepResult:
        incident = context.incident_id
        acts = context.phase in ("apply", "rollback")
        if acts:
            await self.parking.reach(incident, "before_effect", context.phase)
        self.journal.write(
            incident, "call", f"{context.phase} {context.number}", context.idempotency_key
        )
        if acts:
            await self.parking.reach(incident, "after_effect", context.phase)
        if fail:
            return StepResult(False, f"{context.phase} of step {context.number} timed out")
        return StepResult(True, f"{context.phase} of step {context.number} done")

    async def dry_run(self, step: StepAction, context: StepContext) -> StepResult:
        return await self._act(context)

    async def apply(self, step: StepAction, context: StepContext) -> StepResult:
        labels = context.alert.get("labels") or {}
        fail = str(context.number) == str(labels.get(FAIL_STEP_LABEL))
        return await self._act(context, fail=fail)

    async def rollback(self, step: StepAction, context: StepContext) -> StepResult:
        return await self._act(context)

    async def verify(self, context: VerificationContext) -> Verification:
        return Verification(True, "error ratio back under 1%", {"error_ratio": 0.004})


def _traced(name: str, journal: Journal, parking: Parking) -> Callable[[Any], Any]:
    """A ``builder.wrap`` wrapper: journal the node's start and end, report the moments before
    and after it to ``parking``."""

    def wrapper(node: Any) -> Any:
        is_graph = isinstance(node, Runnable)  # the RCA loop, a compiled subgraph

        async def run(state: dict[str, Any], config: RunnableConfig) -> Any:
            incident = _incident_of(config)
            await parking.reach(incident, "before", name)
            journal.write(incident, "enter", name)
            result = await (node.ainvoke(state, config) if is_graph else node(state, config))
            journal.write(incident, "leave", name)
            await parking.reach(incident, "after", name)
            return result

        return run

    return wrapper


class TracedApprovalNode(ApprovalNode):
    """The builder's approval node, journaled like the others (the builder refuses to wrap
    it: the runtime must find the :class:`ApprovalNode` itself; a subclass still is one).

    A pause raises out of it, so an ``after approval`` point is only reached by the run that
    takes the decision."""

    journal: Journal
    parking: Parking

    @classmethod
    def clone(cls, node: ApprovalNode, journal: Journal, parking: Parking) -> TracedApprovalNode:
        """The same node (same validator, SLA, hook, allowed decisions), traced."""
        traced = cls.__new__(cls)
        traced.__dict__.update(vars(node))
        traced.journal = journal
        traced.parking = parking
        return traced

    async def __call__(self, state: Any, config: RunnableConfig) -> dict[str, Any]:
        incident = _incident_of(config)
        await self.parking.reach(incident, "before", "approval")
        self.journal.write(incident, "enter", "approval")
        update = await super().__call__(state, config)
        self.journal.write(incident, "leave", "approval")
        await self.parking.reach(incident, "after", "approval")
        return update


def matrix_builder(
    workdir: Path, role: str, parking: Parking, pagerduty_url: str | None = None
) -> IncidentGraphBuilder:
    """The full incident graph over journaling parts (the RCA loop's analyzer, the executor
    and verifier), PagerDuty when a URL is given; its nodes are not traced yet."""
    journal = Journal(workdir, role)
    executor = JournalingExecutor(journal, parking)
    notifiers = (
        [PagerDutyNotifier(ROUTING_KEY, base_url=pagerduty_url, backoff=0.01, max_retries=3)]
        if pagerduty_url
        else []
    )
    return IncidentGraphBuilder(
        gatherer=OneEvidenceGatherer(),
        analyzer=ScaleOutAnalyzer(journal, parking),
        executor=executor,
        verifier=executor,
        allow_list=ALLOW,
        rca=RcaConfig(retry_backoff=0),
        rollbacks={"scale": undo_scale},
        notifiers=notifiers,
    )


def build_matrix_graph(
    workdir: Path, role: str, parking: Parking, pagerduty_url: str | None = None
) -> IncidentGraphBuilder:
    """:func:`matrix_builder` with every node traced: journaled, and its moments reported to
    ``parking``. The child and the recovering process build it alike (their ``parking``
    differs, the graph does not)."""
    builder = matrix_builder(workdir, role, parking, pagerduty_url)
    journal = Journal(workdir, role)
    for name in builder.node_names:
        if name != "approval":
            builder.wrap(name, _traced(name, journal, parking))
    builder.replace("approval", TracedApprovalNode.clone(builder.approval, journal, parking))
    return builder


NEXT_VERSION_NODE = "change_freeze_check"
"""The node the next deploy inserts after the approval: a run that reaches it ran an incident
on a graph version it did not pause on."""


def next_version_graph(workdir: Path) -> StateGraph[Any, Any, Any, Any]:
    """The next deploy's graph: the matrix graph with a node inserted between the approval
    and ``apply`` — a new fingerprint, so a new version. Both the child and the recovering
    process register it beside the matrix graph (as the default in the recovering process):
    every incident must still finish on the version it started on, and the inserted node,
    which records every incident it runs for, must never run."""
    builder = matrix_builder(workdir, "next-version", Parking())
    marks = workdir / "next-version-ran"

    async def change_freeze_check(state: Any, config: RunnableConfig) -> dict[str, Any]:
        marks.mkdir(parents=True, exist_ok=True)
        (marks / str(config["configurable"]["thread_id"])).touch()
        return {}

    builder.insert_before("apply", NEXT_VERSION_NODE, change_freeze_check)
    return builder.build()


def ran_on_next_version(workdir: Path) -> list[str]:
    """The incidents :func:`next_version_graph`'s inserted node ran for (should be none)."""
    marks = workdir / "next-version-ran"
    return sorted(p.name for p in marks.iterdir()) if marks.is_dir() else []


def nested_graph_nodes(builder: IncidentGraphBuilder) -> frozenset[str]:
    """The nodes of ``builder`` that are compiled graphs (the RCA loop). They checkpoint their
    own steps, so a kill inside one costs only the step it cut off."""
    return frozenset(
        name for name, spec in builder.build().nodes.items() if isinstance(spec.runnable, Pregel)
    )


def cell_alert(incident_id: str, path: MatrixPath) -> dict[str, Any]:
    """The alert of one incident: its own fingerprint, and the step that fails on its path."""
    labels = {**ALERT["labels"], CELL_LABEL: incident_id}
    if path.fail_step is not None:
        labels[FAIL_STEP_LABEL] = str(path.fail_step)
    return {**ALERT, "labels": labels}


def cell_input(path: MatrixPath, *, before_pause: bool) -> dict[str, Any]:
    """Extra graph input: incidents the child lets expire get a short approval window."""
    short = path.decision == "expire" and not before_pause
    return {"approval_window_s": EXPIRE_WINDOW_S} if short else {}


def decision_for(path: MatrixPath) -> Decision:
    """The decision a person (or the SLA) takes on ``path``."""
    if path.decision == "approve":
        return Approve(by=APPROVER)
    if path.decision == "reject":
        return Reject(by=REJECTER, reason="the plan scales the wrong pool")
    if path.decision == "alert_resolved":
        return Expire(reason=ALERT_RESOLVED, by=ALERTMANAGER_IDENTITY)
    return Expire(reason="approval deadline passed")


# --------------------------------------------------------------------------- baseline


@dataclass(frozen=True)
class PathTrace:
    """A path run without kills: its journal up to the approval pause, and after it."""

    before_pause: tuple[JournalEntry, ...]
    after_decision: tuple[JournalEntry, ...]

    @property
    def events(self) -> Counter[tuple[str, str]]:
        return Counter(e.event for e in (*self.before_pause, *self.after_decision))


def _marks(entry: JournalEntry, point: KillPoint) -> bool:
    """True if ``entry`` is the journal's record of a moment ``point`` names."""
    if point.where == "before":
        return entry.event == ("enter", point.node)
    if point.where == "after":
        return entry.event == ("leave", point.node)
    if point.where in ("before_effect", "after_effect"):
        return entry.kind == "call" and entry.detail.partition(" ")[0] == point.node
    return False


def _occurrences(entries: Sequence[JournalEntry], point: KillPoint) -> int:
    """How often the moment ``point`` names comes in ``entries``."""
    return sum(_marks(e, point) for e in entries)


def _position(trace: PathTrace, point: KillPoint) -> tuple[int, int]:
    """Where the moment ``point`` (at its ``hit``) comes in the run: to list cells in order."""
    if point.where in ONCE:  # registered, then decided, at the pause; ended, last
        pause = len(trace.before_pause)
        at = {"registered": (pause, -2), "decided": (pause, -1)}
        return at.get(point.where, (pause + len(trace.after_decision), 0))
    entries = (*trace.before_pause, *trace.after_decision)
    marked = [i for i, e in enumerate(entries) if _marks(e, point)]
    return (marked[(point.hit or 1) - 1], 0 if point.where.startswith("before") else 1)


async def trace_paths(paths: Sequence[MatrixPath], workdir: Path) -> dict[str, PathTrace]:
    """Run each path once without kills (memory store, this process) and keep its journal."""
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    journal = Journal(workdir, "baseline")
    graph = build_matrix_graph(workdir, "baseline", Parking()).build()
    traces = {}
    async with open_runtime("memory://") as rt:
        rt.register(graph, name=GRAPH_NAME)
        for path in paths:
            incident = f"baseline-{path.name}"
            intake = await rt.ingest(
                graph,
                cell_alert(incident, path),
                graph_name=GRAPH_NAME,
                incident_id=incident,
                extra_input=cell_input(path, before_pause=False),
            )
            if intake.snapshot is None or intake.snapshot.status != "awaiting_approval":
                raise RuntimeError(f"baseline {path.name}: the run did not pause for approval")
            paused_at = len(journal.read(incident))
            await rt.decide(incident, decision_for(path))
            done = await rt.get(incident)
            outcome = done.values.get("outcome") or {}
            if (outcome.get("status"), outcome.get("reason")) != (path.outcome, path.reason):
                raise RuntimeError(f"baseline {path.name} ended {outcome}, not as the path says")
            entries = journal.read(incident)
            traces[path.name] = PathTrace(tuple(entries[:paused_at]), tuple(entries[paused_at:]))
    return traces


def matrix_cells(
    points: Sequence[KillPoint],
    paths: Sequence[MatrixPath],
    traces: Mapping[str, PathTrace],
    *,
    token: str,
    every_path_before_pause: bool = False,
) -> list[MatrixCell]:
    """The cells: each point at each occurrence on each path. Moments before the approval
    pause are the same on every path, so they are killed on the first path only unless
    ``every_path_before_pause``. A point a path never reaches gets no cell there."""
    cells: list[MatrixCell] = []
    for p, path in enumerate(paths):
        trace = traces[path.name]
        found: list[tuple[KillPoint, bool]] = []
        for point in points:
            if point.where in ONCE:
                found.append((point.at(1), ONCE[point.where]))
                continue
            early = _occurrences(trace.before_pause, point)
            total = early + _occurrences(trace.after_decision, point)
            hits = range(1, total + 1) if point.hit is None else [point.hit]
            found += [(point.at(h), h <= early) for h in hits if 1 <= h <= total]
        found.sort(key=lambda item: _position(trace, item[0]))
        for at, before_pause in found:
            if before_pause and p > 0 and not every_path_before_pause:
                continue
            slug = re.sub(r"[^a-z0-9]+", "-", at.label.lower()).strip("-")
            incident = f"km-{token}-{len(cells):03d}-{path.name}-{slug}"
            cells.append(MatrixCell(incident, path, at, before_pause))
    return cells


# --------------------------------------------------------------------------- the child


def _emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


async def run_child(spec: Mapping[str, Any]) -> None:
    """Run a batch of cells until each has parked at its point (or cannot), then SIGKILL this
    process. Writes one JSON line per cell to stdout: ``parked``, ``unreached`` (the run came
    to rest before its point) or ``error``; then ``killing``."""
    cells = [MatrixCell.from_json(c) for c in spec["cells"]]
    workdir = Path(spec["workdir"])
    settled = {c.incident_id: asyncio.Event() for c in cells}
    paused = {c.incident_id: asyncio.Event() for c in cells}

    def settle(incident: str, kind: str, detail: str = "") -> None:
        if not settled[incident].is_set():
            _emit({kind: incident, "detail": detail})
            settled[incident].set()
            paused[incident].set()

    # A decision is recorded here and never applied: by rt.record_decision (approve, reject),
    # or by the SLA monitor's claim, which then parks before handing it to the graph.
    recorded_here = [c for c in cells if c.point.where == "decided" and c.path.decision != "expire"]
    parking = Parking(
        {c.incident_id: c.point for c in cells if c not in recorded_here},
        on_park=lambda incident: settle(incident, "parked"),
    )
    graph = build_matrix_graph(workdir, "child", parking, spec.get("pagerduty")).build()
    tasks: list[asyncio.Task[None]] = []  # held, so that parked runs are not collected
    async with open_runtime(spec["url"], pool_size=int(spec["pool_size"])) as rt:
        # Two versions side by side: new incidents start on the matrix graph (the default).
        rt.register(next_version_graph(workdir), name=GRAPH_NAME, default=False)
        rt.register(graph, name=GRAPH_NAME)
        _park_inside_the_runtime(rt, parking)

        async def open_cell(cell: MatrixCell) -> None:
            incident = cell.incident_id
            try:
                intake = await rt.ingest(
                    graph,
                    cell_alert(incident, cell.path),
                    graph_name=GRAPH_NAME,
                    incident_id=incident,
                    extra_input=cell_input(cell.path, before_pause=cell.before_pause),
                )
            except Exception as exc:
                settle(incident, "error", f"ingest raised {type(exc).__name__}: {exc}")
                return
            status = intake.snapshot.status if intake.snapshot else "?"
            if cell.before_pause:
                settle(incident, "unreached", f"the first run came to rest ({status})")
            elif status != "awaiting_approval":
                settle(incident, "error", f"the first run ended {status}, not paused")
            else:
                paused[incident].set()

        async def decide_cell(cell: MatrixCell) -> None:
            try:
                result = await rt.decide(cell.incident_id, decision_for(cell.path))
            except Exception as exc:
                settle(cell.incident_id, "error", f"decide raised {type(exc).__name__}: {exc}")
                return
            settle(cell.incident_id, "unreached", f"decided, applied={result.applied}")

        expiring = {
            c.incident_id for c in cells if not c.before_pause and c.path.decision == "expire"
        }

        async def expire_some() -> None:
            monitor = SlaMonitor(rt, batch=1, apply_wait=30.0)
            while True:
                try:
                    report = await monitor.sweep(rt.clock() + CHILD_SWEEP_AHEAD)
                except Exception as exc:
                    for incident in expiring:
                        settle(incident, "error", f"sweep raised {type(exc).__name__}: {exc}")
                    return
                if not report.expired:
                    return  # every overdue approval is claimed (by this or another sweep)
                for row in report.expired:
                    if row.incident_id in settled:
                        done = "applied" if row.approval_id in report.applied else "deferred"
                        settle(row.incident_id, "unreached", f"expired and {done}")

        # Every incident starts; those killed before the pause park, the others pause.
        tasks += [asyncio.create_task(open_cell(c)) for c in cells]
        await _wait_all([paused[c.incident_id] for c in cells], spec["settle_timeout"])
        # Decisions recorded and never applied; then the others are decided and run on.
        for cell in recorded_here:
            if not settled[cell.incident_id].is_set():
                try:
                    await rt.record_decision(cell.incident_id, decision_for(cell.path))
                except Exception as exc:
                    settle(cell.incident_id, "error", f"recording raised {exc!r}")
                else:
                    settle(cell.incident_id, "parked", "decision recorded, never applied")
        deciding = [
            c
            for c in cells
            if not c.before_pause
            and c.path.decision != "expire"
            and not settled[c.incident_id].is_set()
        ]
        tasks += [asyncio.create_task(decide_cell(c)) for c in deciding]
        tasks += [asyncio.create_task(expire_some()) for _ in expiring]
        await _wait_all(list(settled.values()), spec["settle_timeout"])
        # Every run is parked at its point (or reported): die with them.
        for incident, event in settled.items():
            if not event.is_set():
                settle(incident, "error", "did not reach its kill point in time")
        _emit({"killing": os.getpid()})
        os.kill(os.getpid(), signal.SIGKILL)


def _park_inside_the_runtime(rt: Runtime, parking: Parking) -> None:
    """Report to ``parking`` three moments no node sees: an approval request just registered
    (``registered``); an expiry the SLA monitor claimed, about to be handed to the graph
    (``decided``); an incident about to be closed in the index after its run ended
    (``ended``). This child process only: it dies with them."""
    ledger: Any = rt.store.ledger
    runtime: Any = rt
    register, close_incident = ledger.register, ledger.close_incident
    apply_recorded = runtime.apply_recorded_decision

    async def applying(record: Any, *args: Any, **kwargs: Any) -> Any:
        await parking.reach(str(record.incident_id), "decided", "")
        return await apply_recorded(record, *args, **kwargs)

    async def registered(new: Any, *args: Any, **kwargs: Any) -> Any:
        row = await register(new, *args, **kwargs)
        await parking.reach(str(new.incident_id), "registered", "")
        return row

    async def closing(incident_id: str, *args: Any, **kwargs: Any) -> Any:
        await parking.reach(incident_id, "ended", "")
        return await close_incident(incident_id, *args, **kwargs)

    ledger.register = registered
    ledger.close_incident = closing
    runtime.apply_recorded_decision = applying


async def _wait_all(events: Sequence[asyncio.Event], seconds: float) -> None:
    """Wait until every event is set, or ``seconds`` have passed."""
    with suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), seconds)


# --------------------------------------------------------------------------- orchestration


@dataclass
class ChildRun:
    """What one child process said about its cells, and how it ended."""

    parked: set[str] = field(default_factory=set)
    problems: dict[str, str] = field(default_factory=dict)
    exit_code: int | None = None


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT / "tests"), str(ROOT / "src"), env.get("PYTHONPATH")])
    )
    return env


async def _run_batch(
    url: str,
    cells: Sequence[MatrixCell],
    workdir: Path,
    pagerduty_url: str,
    number: int,
    limit_s: float,
) -> ChildRun:
    """One child process over ``cells``: it must end by SIGKILL with every cell parked."""
    spec = {
        "url": url,
        "workdir": str(workdir),
        "pagerduty": pagerduty_url,
        "pool_size": 2 * len(cells) + 6,
        "settle_timeout": max(5.0, limit_s - 15.0),
        "cells": [c.to_json() for c in cells],
    }
    spec_path = workdir / f"child-{number:03d}.json"
    spec_path.write_text(json.dumps(spec))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD_SCRIPT),
        "child",
        str(spec_path),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_child_env(),
    )
    run = ChildRun()
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
    run.exit_code = proc.returncode
    for line in out.decode(errors="replace").splitlines():
        try:
            said = json.loads(line)
        except ValueError:
            continue
        if "parked" in said:
            run.parked.add(said["parked"])
        for kind in ("unreached", "error"):
            if kind in said:
                run.problems[said[kind]] = f"{kind}: {said.get('detail', '')}"
    if run.exit_code != -signal.SIGKILL:
        tail = err.decode(errors="replace")[-3000:]
        for cell in cells:
            run.problems.setdefault(
                cell.incident_id,
                f"child {number} exited with {run.exit_code}, not SIGKILL:\n{tail}",
            )
        run.parked.clear()
    for cell in cells:
        if cell.incident_id not in run.parked:
            run.problems.setdefault(cell.incident_id, "the child never reported it parked")
    return run


Recovery = Callable[[Runtime, Sequence[str]], Awaitable[None]]
"""How the recovering process brings killed incidents back: given the runtime (the graph
registered) and the incident ids, leave each paused for approval or closed."""


async def at_rest(rt: Runtime, incident_id: str) -> bool:
    """True if the incident is closed in the index, or paused for approval."""
    row = await rt.store.ledger.get_incident(incident_id)
    if row is not None and not row.is_open:
        return True
    try:
        return (await rt.get(incident_id)).status == "awaiting_approval"
    except Exception:
        return False


async def recover_until_at_rest(
    rt: Runtime, incident_ids: Sequence[str], *, rounds: int = 5
) -> None:
    """What a process does at start-up: ``rt.recover(stalled=True)``, again while some
    incident is neither paused for approval nor closed (at most ``rounds`` times, waiting a
    little longer each time: a dead child's PostgreSQL session may take a moment to end and
    give back its locks)."""
    limit = max(100, 2 * len(incident_ids))
    for attempt in range(rounds):
        await rt.recover(stalled=True, limit=limit)
        if all([await at_rest(rt, i) for i in incident_ids]):
            return
        await asyncio.sleep(0.1 * 2**attempt)


async def _decide_the_paused(rt: Runtime, cells: Sequence[MatrixCell]) -> dict[str, str]:
    """Decide, along their paths, the incidents recovery left paused (they died before the
    pause); expiries by SLA monitor sweeps. Returns problems by incident."""
    problems: dict[str, str] = {}
    expiring = False
    for cell in cells:
        try:
            snapshot = await rt.get(cell.incident_id)
        except Exception as exc:
            problems[cell.incident_id] = f"unreadable after recovery: {exc!r}"
            continue
        if snapshot.status != "awaiting_approval":
            continue
        if cell.path.decision == "expire":
            expiring = True
            continue
        try:
            await rt.decide(cell.incident_id, decision_for(cell.path))
        except Exception as exc:
            problems[cell.incident_id] = f"deciding after recovery raised {exc!r}"
    if expiring:
        monitor = SlaMonitor(rt, batch=100, apply_wait=30.0)
        for _ in range(10):
            if not (await monitor.sweep(rt.clock() + RECOVERY_SWEEP_AHEAD)).expired:
                break
    return problems


@dataclass
class CellResult:
    """One cell after recovery: how its kill went and what the database says."""

    cell: MatrixCell
    killed: bool
    outcome: str | None = None
    reason: str | None = None
    pages: int = 0
    rerun: int = 0
    duplicated: int = 0
    missing: int = 0
    lost: bool = False
    stuck: bool = False
    wrong_outcome: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.killed and not self.problems


@dataclass
class MatrixReport:
    """What the kill matrix found. Counts are incidents, except ``duplicated`` (remediation
    side effects beyond what the run needed — a step applied or rolled back twice, not
    counting the one re-run a kill after its side effect makes), ``rerun`` (node runs and
    analyses beyond that) and ``missing`` (node runs or side effects that never happened).
    ``errors``: cells whose child did not die at their point (the point was never reached,
    or the child failed) — the harness's problems, not recovery's. ``rows``: one
    :class:`CellResult` per cell, in path and run order."""

    backend: str
    incidents: int = 0
    kills: int = 0
    children: int = 0
    lost: int = 0
    duplicated: int = 0
    stuck: int = 0
    double_paged: int = 0
    unpaged: int = 0
    rerun: int = 0
    missing: int = 0
    wrong_outcome: int = 0
    errors: list[str] = field(default_factory=list)
    rows: list[CellResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Every cell killed at its point and recovered with every invariant kept."""
        return (
            self.kills == self.incidents > 0
            and not self.errors
            and all(row.ok for row in self.rows)
        )

    def summary_line(self) -> str:
        """``kill_matrix store=… incidents=… kills=… lost=… duplicated=… stuck=…
        double_paged=…`` and the other counts."""
        return (
            f"kill_matrix store={self.backend} incidents={self.incidents} kills={self.kills} "
            f"lost={self.lost} duplicated={self.duplicated} stuck={self.stuck} "
            f"double_paged={self.double_paged} unpaged={self.unpaged} rerun={self.rerun} "
            f"missing={self.missing} wrong_outcome={self.wrong_outcome}"
        )

    def table(self) -> str:
        """One row per cell: path, kill point, whether the child died there, the outcome,
        pages, surplus/missing runs, and what went wrong."""
        head = ("path", "kill point", "killed", "outcome", "pages", "rerun", "dup", "missing")
        rows = [head] + [
            (
                r.cell.path.name,
                r.cell.point.label + (" (pre-pause)" if r.cell.before_pause else ""),
                "yes" if r.killed else "NO",
                f"{r.outcome}" + (f" ({r.reason})" if r.reason else ""),
                str(r.pages),
                str(r.rerun),
                str(r.duplicated),
                str(r.missing),
            )
            for r in self.rows
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        for r in self.rows:
            lines += [f"  {r.cell.incident_id}: {p}" for p in r.problems]
        lines += [f"  error: {e}" for e in self.errors]
        return "\n".join(lines)


def _expected_extra(
    cell: MatrixCell, child: Sequence[JournalEntry], nested: frozenset[str]
) -> list[tuple[str, str]]:
    """What the kill adds to a run without kills: recovery runs the node it cut off again.
    Nothing for a kill before a node, after the decision was recorded, or after the run
    ended. A plain node repeats every call its cut-off run made; a node that is a compiled
    graph (``nested``: the RCA loop) checkpoints inside, so it repeats only the call cut off
    after its side effect."""
    where, node = cell.point.where, cell.point.node
    if where == "registered":  # inside the approval node, before its pause is saved
        node = "approval"
    elif where == "before" or where in ONCE:
        return []
    began = [i for i, e in enumerate(child) if e.event == ("enter", node)]
    if not began:
        return []
    segment = child[began[-1] :]
    calls = [e.event for e in segment if e.kind == "call"]
    if node in nested:
        calls = calls[-1:] if where == "after_effect" else []
    elif where == "after":
        # The node finished: a remediation step's result is recorded on its claim, so the
        # re-run takes that result and does not call the executor again.
        calls = [c for c in calls if c[1].split()[0] not in ("apply", "rollback")]
    return [("enter", node), *([("leave", node)] if where == "after" else []), *calls]


async def _check_cell(
    rt: Runtime,
    cell: MatrixCell,
    killed: bool,
    trace: PathTrace,
    journal: Journal,
    triggers: Mapping[str, int],
    nested: frozenset[str],
) -> CellResult:
    """Read one incident back from the database, its journal and PagerDuty's triggers (by
    ``dedup_key``)."""
    path = cell.path
    result = CellResult(cell, killed)
    problems = result.problems
    incident = cell.incident_id
    row = await rt.store.ledger.get_incident(incident)
    if row is None:
        result.lost = True
        problems.append("the incident is gone from the index")
        return result
    if row.is_open:
        result.stuck = True
        problems.append("the index still has it open")
    elif row.outcome != path.outcome:
        result.wrong_outcome = True
        problems.append(f"closed with outcome {row.outcome!r}, not {path.outcome!r}")
    snapshot = await rt.get(incident)
    values = snapshot.values
    outcome = values.get("outcome") or {}
    result.outcome, result.reason = outcome.get("status"), outcome.get("reason")
    if snapshot.status != "finished":
        result.stuck = True
        problems.append(f"the graph is {snapshot.status} (next: {', '.join(snapshot.next)})")
    elif (result.outcome, result.reason) != (path.outcome, path.reason) or "report" not in values:
        result.wrong_outcome = True
        problems.append(f"ended {outcome}, expected {path.outcome} ({path.reason})")

    history = await rt.history(incident)
    decided = [r for r in history if not r.is_pending]
    taken = (values.get("approval") or {}).get("status")
    if len(history) != 1 or len(decided) != 1:
        result.lost = True
        problems.append(f"{len(history)} approval(s), {len(decided)} decided: expected 1 and 1")
    else:
        record = decided[0]
        if (record.status.value, record.decided_by) != (path.decided_status, path.decided_by):
            result.lost = True
            problems.append(f"recorded {record.describe()}, expected {path.decided_status}")
        if record.applied_at is None:
            result.lost = True
            problems.append("the decision was never marked applied")
        if taken != path.decided_status:
            result.lost = True
            problems.append(f"the graph acted on {taken!r}, not {path.decided_status!r}")

    entries = journal.read(incident)
    child = [e for e in entries if e.role == "child"]
    expected = trace.events + Counter(_expected_extra(cell, child, nested))
    observed = Counter(e.event for e in entries)
    for (kind, detail), n in (observed - expected).items():
        if kind == "call" and detail.split()[0] in ("apply", "rollback"):
            result.duplicated += n
            problems.append(f"{detail} ran {n} time(s) more than it may")
        elif kind == "enter":
            result.rerun += n
            problems.append(f"node {detail} ran {n} time(s) more than it may")
        elif kind == "call":
            result.rerun += n
            problems.append(f"{detail} (no side effect) ran {n} time(s) more than it may")
    for (kind, detail), n in (expected - observed).items():
        result.missing += n
        problems.append(f"{kind} {detail} is missing {n} time(s)")
    for e in entries:
        phase, _, number = e.detail.partition(" ")
        keyed = e.kind == "call" and phase in ("dry_run", "apply", "rollback")
        if keyed and e.key != f"{incident}/step-{number}/{phase}":
            problems.append(f"{e.detail} ran with idempotency key {e.key!r}")

    result.pages = triggers.get(dedup_key(incident), 0)
    owed = 1 if path.outcome == "escalated" else 0
    if result.pages != owed:
        problems.append(f"paged {result.pages} time(s), expected {owed}")
    return result


def _batches(cells: Sequence[MatrixCell], size: int) -> Iterator[list[MatrixCell]]:
    """``cells`` in as few batches of at most ``size`` as can be, of even sizes."""
    count = -(-len(cells) // size)
    for n in range(count):
        yield list(cells[n * len(cells) // count : (n + 1) * len(cells) // count])


@contextmanager
def _workdir(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="kill-matrix-") as tmp:
        yield Path(tmp)


async def run_kill_matrix(
    url: str,
    *,
    points: Sequence[KillPoint] | None = None,
    paths: Sequence[MatrixPath] = PATHS,
    every_path_before_pause: bool = False,
    batch_size: int = 16,
    parallel: int = 1,
    workdir: Path | None = None,
    child_timeout: float = 180.0,
    recovery: Recovery | None = None,
    progress: Callable[[str], None] | None = None,
) -> MatrixReport:
    """Kill the full incident graph at every point of ``points`` (default
    :func:`all_kill_points` of the builder) on every path of ``paths``, recover, and check.

    ``url``: a database several processes share (SQLite file or PostgreSQL), best a fresh
    one. Cells run ``batch_size`` to a child process, ``parallel`` children at a time.
    ``recovery`` replaces the recovering process's procedure (default
    :func:`recover_until_at_rest`), e.g. to show that a broken one is caught. ``workdir``
    keeps the journals and child specs (default: a temporary directory, removed).
    """
    if url.startswith("memory:"):
        raise ValueError("the kill matrix needs a database several processes share")
    if batch_size < 1 or parallel < 1:
        raise ValueError("batch_size and parallel must be at least 1")
    say = progress or (lambda message: None)
    began = time.monotonic()
    backend = "postgres" if url.startswith("postgres") else "sqlite"
    report = MatrixReport(backend=backend)
    with _workdir(workdir) as work, LocalPagerDuty() as pagerduty:
        traces = await trace_paths(paths, work / "baseline")
        plain = matrix_builder(work, "probe", Parking())
        chosen = list(points) if points is not None else all_kill_points(plain)
        nested = nested_graph_nodes(plain)
        cells = matrix_cells(
            chosen,
            paths,
            traces,
            token=uuid.uuid4().hex[:6],
            every_path_before_pause=every_path_before_pause,
        )
        report.incidents = len(cells)
        batches = list(_batches(cells, batch_size))
        report.children = len(batches)
        say(f"kill matrix: {len(cells)} cells in {len(batches)} child process(es)")

        runs: list[ChildRun] = []
        gate = asyncio.Semaphore(parallel)

        async def one(number: int, batch: list[MatrixCell]) -> ChildRun:
            async with gate:
                run = await _run_batch(url, batch, work, pagerduty.url, number, child_timeout)
                say(f"  child {number + 1}/{len(batches)}: {len(run.parked)}/{len(batch)} killed")
                return run

        runs = list(await asyncio.gather(*(one(n, b) for n, b in enumerate(batches))))
        parked = set().union(*(r.parked for r in runs)) if runs else set()
        child_problems = {k: v for r in runs for k, v in r.problems.items()}
        report.kills = len(parked)

        graph = build_matrix_graph(work, "recovery", Parking(), pagerduty.url).build()
        ids = [c.incident_id for c in cells]
        async with open_runtime(url) as rt:
            # The recovering process is the next deploy: the matrix graph kept registered for
            # the incidents that started on it, the next version the default.
            rt.register(graph, name=GRAPH_NAME, default=False)
            rt.register(next_version_graph(work), name=GRAPH_NAME)
            await (recovery or recover_until_at_rest)(rt, ids)
            decide_problems = await _decide_the_paused(rt, cells)
            await (recovery or recover_until_at_rest)(rt, ids)
            journal = Journal(work, "check")
            triggers = pagerduty.triggers_by_key()
            for cell in cells:
                row = await _check_cell(
                    rt,
                    cell,
                    cell.incident_id in parked,
                    traces[cell.path.name],
                    journal,
                    triggers,
                    nested,
                )
                if cell.incident_id in decide_problems:
                    row.problems.insert(0, decide_problems[cell.incident_id])
                report.rows.append(row)
        wrong_version = ran_on_next_version(work)
    report.errors = [f"{incident}: {problem}" for incident, problem in child_problems.items()]
    report.errors += [
        f"{incident}: ran {NEXT_VERSION_NODE!r} of the next graph version, not the version it "
        "started on"
        for incident in wrong_version
    ]
    for row in report.rows:
        report.lost += row.lost
        report.stuck += row.stuck
        report.wrong_outcome += row.wrong_outcome
        report.duplicated += row.duplicated
        report.rerun += row.rerun
        report.missing += row.missing
        owed = 1 if row.cell.path.outcome == "escalated" else 0
        report.double_paged += row.pages > owed
        report.unpaged += row.pages < owed
    report.seconds = time.monotonic() - began
    return report


# --------------------------------------------------------------------------- command line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode")
    child = sub.add_parser("child", help="(internal) run one batch of cells, then die")
    child.add_argument("spec", type=Path)
    matrix = sub.add_parser("matrix", help="run the matrix on a throwaway database")
    matrix.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    matrix.add_argument("--url", help="PostgreSQL server to create the database on")
    matrix.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    if args.mode == "child":
        asyncio.run(run_child(json.loads(args.spec.read_text())))
        return

    store = getattr(args, "store", "sqlite")
    batch_size = getattr(args, "batch_size", 16)

    def run(url: str) -> MatrixReport:
        return asyncio.run(run_kill_matrix(url, batch_size=batch_size, progress=log))

    if store == "postgres":
        with fresh_database(server_url(getattr(args, "url", None)), "durable_ir_kill") as url:
            report = run(url)
    else:
        with tempfile.TemporaryDirectory(prefix="kill-matrix-db-") as tmp:
            report = run(f"sqlite:///{Path(tmp) / 'incidents.db'}")
    print(report.table())
    print(report.summary_line())
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
