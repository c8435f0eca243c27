"""reconcile(): approvals pending in the checkpointer but missing from the ledger come back, on
every saver, through the saver's public API only."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict

import psycopg
import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Interrupt, interrupt

from durable_ir import (
    Approve,
    FixedClock,
    Reject,
    Runtime,
    SlaPolicy,
    Store,
    approval_node,
    open_runtime,
    parse_database_url,
    reconcile,
)
from durable_ir.ledger import DecisionWrite, MemoryLedger
from durable_ir.locks import ProcessLocks
from durable_ir.reconciliation import CONTROL_CHANNELS, INTERRUPT_CHANNEL, NULL_TASK_ID
from durable_ir.records import ApprovalRecord, ApprovalStatus, NewApproval
from support.graphs import ALERT, PRE_PAUSE_NODES, Counters, build_graph

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# Different from the defaults (15 min / 2 h) the incidents were registered with, so a
# reconciled deadline can only be right if it was computed from this policy.
RECONCILE_SLA = SlaPolicy(
    windows={
        "P0": timedelta(minutes=7),
        "P1": timedelta(minutes=42),
        "P2": timedelta(hours=5),
        "P3": timedelta(hours=9),
    }
)


def new_id(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def alert(severity: str) -> dict[str, Any]:
    return {"alert": {**ALERT, "severity": severity}}


async def forget(rt: Runtime, database_url: str, approval_ids: Iterable[str]) -> Runtime:
    """A runtime over the same checkpoints whose ledger has lost ``approval_ids`` (and nothing
    else), with the reconcile policy. SQLite and PostgreSQL: the rows are deleted through a
    connection of our own. Memory: a fresh ledger gets a faithful copy of every other row."""
    gone = set(approval_ids)
    backend = parse_database_url(database_url).backend
    store = rt.store
    if backend == "sqlite":
        with sqlite3.connect(parse_database_url(database_url).target) as conn:
            conn.executemany(
                "DELETE FROM durable_ir_approvals WHERE approval_id = ?", [(a,) for a in gone]
            )
    elif backend == "postgres":
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "DELETE FROM durable_ir_approvals WHERE approval_id = ANY(%s)", (list(gone),)
            )
    else:
        assert isinstance(store.ledger, MemoryLedger)
        fresh = MemoryLedger()
        for row in await _all_rows(store.ledger):
            if row.approval_id not in gone:
                await _copy_row(row, fresh)
        store = replace(store, ledger=fresh)
    fresh_rt = Runtime(store, clock=rt.clock, sla=RECONCILE_SLA)
    for name in rt.graphs.names():
        fresh_rt.register(rt.graphs.get(name).source, name=name)  # type: ignore[arg-type]
    return fresh_rt


async def _all_rows(ledger: MemoryLedger) -> list[ApprovalRecord]:
    return list(ledger._rows.values())  # a test-only peek: the ledger API lists by incident


async def _copy_row(row: ApprovalRecord, into: MemoryLedger) -> None:
    await into.register(
        NewApproval(
            approval_id=row.approval_id,
            incident_id=row.incident_id,
            graph=row.graph,
            node=row.node,
            request=row.request,
            severity=row.severity,
            requested_at=row.requested_at,
            deadline_at=row.deadline_at,
            next_due_at=row.next_due_at,
            graph_version=row.graph_version,
        )
    )
    if not row.is_pending:
        assert row.decided_by is not None and row.decided_at is not None
        await into.record_decision(
            row.approval_id,
            DecisionWrite(row.status, row.decided_by, row.decided_at, row.reason, row.edited_plan),
        )
    if row.applied_at is not None:
        await into.mark_applied(row.approval_id, row.applied_at)
    copied = await into.get(row.approval_id)
    assert copied == row


async def only_row(rt: Runtime, incident: str) -> ApprovalRecord:
    rows = await rt.history(incident)
    assert len(rows) == 1, rows
    return rows[0]


async def interrupt_ids(rt: Runtime, incident: str) -> list[str]:
    graph = rt.graphs.get("incident")
    state = await graph.compiled.aget_state(rt.config_for(incident, graph="incident"))
    return [i.id for i in state.interrupts]


async def test_lost_approvals_come_back_with_computed_deadlines_and_decide_end_to_end(
    database_url: str, counter_dir: Path
) -> None:
    clock = FixedClock(T0)
    graph = build_graph(counter_dir)
    lost = {new_id("lost-p0"): "P0", new_id("lost-p1"): "P1", new_id("lost-p3"): "P3"}
    kept = new_id("kept")
    approved = new_id("approved")
    rejected = new_id("rejected")
    recorded = new_id("recorded-unapplied")
    async with open_runtime(database_url, clock=clock) as rt:
        for incident, severity in lost.items():
            clock.advance(minutes=1)  # distinct requested_at per incident
            paused = await rt.start(graph, alert(severity), incident_id=incident)
            assert paused.status == "awaiting_approval"
        for incident in (kept, approved, rejected, recorded):
            clock.advance(minutes=1)
            await rt.start(graph, alert("P2"), incident_id=incident)
        await rt.decide(approved, Approve(by="alice"))
        await rt.decide(rejected, Reject(by="bob", reason="not this one"))
        # A decision whose process died before applying it: recovery's job, not reconcile's.
        pending = await only_row(rt, recorded)
        await rt.store.ledger.record_decision(
            pending.approval_id,
            DecisionWrite(ApprovalStatus.APPROVED, "carol", clock(), None),
        )
        before = {i: await only_row(rt, i) for i in (*lost, kept, approved, rejected, recorded)}
        assert before[approved].applied_at is not None and before[rejected].applied_at is not None
        assert before[recorded].applied_at is None
        for incident in lost:
            assert await interrupt_ids(rt, incident) == [before[incident].approval_id]

        clock.advance(hours=1)
        forgotten = [before[i].approval_id for i in (*lost, approved, rejected)]
        rt2 = await forget(rt, database_url, forgotten)
        for incident in (*lost, approved, rejected):
            assert await rt2.history(incident) == []

        found = await rt2.reconcile()

        assert sorted(r.incident_id for r in found) == sorted(lost)
        for row in found:
            old = before[row.incident_id]
            severity = lost[row.incident_id]
            assert row.approval_id == old.approval_id
            assert await interrupt_ids(rt2, row.incident_id) == [row.approval_id]
            assert row.status is ApprovalStatus.PENDING
            assert (row.severity, row.graph, row.node) == (severity, "incident", "approval")
            assert row.requested_at == old.requested_at
            assert row.deadline_at == old.requested_at + RECONCILE_SLA.window_for(severity)
            assert row.deadline_at != old.deadline_at
            assert row.request == old.request
            assert await rt2.store.ledger.get(row.approval_id) == row
            snapshot = await rt2.get(row.incident_id)
            assert snapshot.status == "awaiting_approval"
            assert snapshot.pending_approval == row

        assert await rt2.reconcile() == []
        assert await reconcile(rt2.store.checkpointer, rt2.store.ledger) == []
        for incident in (kept, recorded):
            assert await only_row(rt2, incident) == before[incident]
        for incident in (approved, rejected):
            assert await rt2.history(incident) == []
            assert (await rt2.get(incident)).status == "finished"

        # P3: an hour after the pause, its reconciled 9-hour deadline has not passed (a
        # decision after the deadline is the expiry: tests/test_lifecycle_edges.py).
        target = next(i for i, s in lost.items() if s == "P3")
        clock.advance(minutes=2)
        result = await rt2.decide(
            target, Approve(by="dave"), approval_id=before[target].approval_id
        )
        assert result.applied
        assert result.record.decided_by == "dave" and result.record.applied_at is not None
        done = await rt2.get(target)
        assert done.status == "finished"
        assert done.values["applied"] == ["api"]
        assert (
            done.values["approval"]["deadline_at"]
            == (before[target].requested_at + RECONCILE_SLA.window_for("P3")).isoformat()
        )

    counts = Counters(counter_dir).read(target)
    assert all(counts[node] == 1 for node in PRE_PAUSE_NODES)
    assert (counts["apply"], counts["escalate"], counts["finish"]) == (1, 0, 1)
    for incident in lost:
        if incident != target:
            assert Counters(counter_dir).read(incident)["apply"] == 0


async def test_default_policy_and_an_empty_checkpointer(
    database_url: str, counter_dir: Path
) -> None:
    clock = FixedClock(T0)
    async with open_runtime(database_url, clock=clock) as rt:
        assert await reconcile(rt.store.checkpointer, rt.store.ledger) == []
        incident = new_id("p0")
        await rt.start(build_graph(counter_dir), alert("P0"), incident_id=incident)
        old = await only_row(rt, incident)
        rt2 = await forget(rt, database_url, [old.approval_id])
        (row,) = await reconcile(rt2.store.checkpointer, rt2.store.ledger)
        assert row.deadline_at == T0 + timedelta(minutes=15) == old.deadline_at


class AskState(TypedDict, total=False):
    section: Any
    plan: Any
    severity: str
    approval: dict[str, Any]
    other: Any
    applied: bool


def _ask(state: AskState, config: RunnableConfig) -> dict[str, Any]:
    """Interrupt with a hand-built request: ``section`` overrides a valid durable-ir section
    (``None`` values delete the key), or replaces it when it is not a dict."""
    configurable = config.get("configurable") or {}
    approval_id = Interrupt.from_ns(None, str(configurable.get("checkpoint_ns", ""))).id
    section = state["section"]
    if section == "foreign":
        interrupt({"question": "restart the database?"})
        return {}
    if isinstance(section, dict):
        valid = {
            "approval_id": approval_id,
            "incident_id": str(configurable["thread_id"]),
            "graph": "hand-built",
            "node": "ask",
            "severity": "P1",
            "requested_at": T0.isoformat(),
            "deadline_at": (T0 + timedelta(minutes=1)).isoformat(),
        }
        valid.update(section)
        section = {k: v for k, v in valid.items() if v is not None}
    interrupt({"action_requests": [], "review_configs": [], "durable_ir": section})
    return {}


def ask_graph() -> StateGraph[Any, Any, Any, Any]:
    builder: StateGraph[Any, Any, Any, Any] = StateGraph(AskState)
    builder.add_node("ask", _ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    return builder


MALFORMED: dict[str, Any] = {
    "not-a-mapping": "oops",
    "no-approval-id": {"approval_id": None},
    "other-approval-id": {"approval_id": "someone-elses"},
    "other-incident": {"incident_id": "another-incident"},
    "empty-graph": {"graph": ""},
    "no-node": {"node": None},
    "bad-severity": {"severity": "P9"},
    "no-severity": {"severity": None},
    "naive-time": {"requested_at": "2026-03-01T12:00:00"},
    "not-a-time": {"requested_at": "yesterday"},
    "time-not-text": {"requested_at": 1_772_366_400},
}


async def test_foreign_and_malformed_interrupts_are_skipped_without_stopping_the_pass(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_runtime(database_url) as rt:
        compiled = ask_graph().compile(checkpointer=rt.store.checkpointer)

        async def run(thread: str, section: Any) -> None:
            config: RunnableConfig = {"configurable": {"thread_id": thread}}
            await compiled.ainvoke({"section": section}, config, durability="sync")
            assert (await compiled.aget_state(config)).interrupts

        for label, section in MALFORMED.items():
            await run(f"bad-{label}", section)
        await run("foreign", "foreign")
        await run("good", {"severity": "p3"})  # any case, as the approval node accepts
        finished = "finished-without-approval"
        plain: StateGraph[Any, Any, Any, Any] = StateGraph(AskState)
        plain.add_node("work", lambda s: {"applied": True})
        plain.add_edge(START, "work")
        plain.add_edge("work", END)
        await plain.compile(checkpointer=rt.store.checkpointer).ainvoke(
            {}, {"configurable": {"thread_id": finished}}, durability="sync"
        )

        with caplog.at_level(logging.WARNING, logger="durable_ir.reconciliation"):
            found = await reconcile(rt.store.checkpointer, rt.store.ledger, sla=RECONCILE_SLA)

        (row,) = found
        assert (row.incident_id, row.graph, row.node, row.severity) == (
            "good",
            "hand-built",
            "ask",
            "P3",
        )
        assert row.requested_at == T0
        assert row.deadline_at == T0 + timedelta(hours=9)  # not the request's T0 + 1 min
        warned = [r.getMessage() for r in caplog.records if r.name == "durable_ir.reconciliation"]
        assert len(warned) == len(MALFORMED)
        for label in MALFORMED:
            assert sum(f"'bad-{label}'" in message for message in warned) == 1, label
        for thread in ("foreign", finished, *(f"bad-{label}" for label in MALFORMED)):
            assert await rt.store.ledger.history(thread) == []


def parallel_graph() -> StateGraph[Any, Any, Any, Any]:
    """plan → (approval ∥ ask), both pausing in one step: ask with a non-durable-ir question."""
    gate = approval_node()
    builder: StateGraph[Any, Any, Any, Any] = StateGraph(AskState)
    builder.add_node("plan", lambda s: {"plan": {"steps": ["restart api"]}, "severity": "P0"})
    builder.add_node("approval", gate)
    builder.add_node("ask", _ask)
    builder.add_node("apply", lambda s: {"applied": True})
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "approval")
    builder.add_edge("plan", "ask")
    builder.add_conditional_edges(
        "approval", gate.route, {"approved": "apply", "rejected": END, "expired": END}
    )
    builder.add_edge("apply", END)
    return builder


async def test_an_answered_interrupt_is_not_pending_while_its_step_is_still_open(
    database_url: str,
) -> None:
    """Two tasks pause in one step. Once the approval is decided, its task finishes but the
    step stays open (the other task still waits), so the checkpoint still holds the approval's
    interrupt write, next to its output: it must not come back."""
    clock = FixedClock(T0)
    incident = new_id("parallel")
    async with open_runtime(database_url, clock=clock) as rt:
        paused = await rt.start(
            parallel_graph(), {"section": "foreign"}, incident_id=incident, graph_name="incident"
        )
        assert paused.status == "awaiting_approval"
        old = await only_row(rt, incident)
        assert len(await interrupt_ids(rt, incident)) == 2

        rt2 = await forget(rt, database_url, [old.approval_id])
        (row,) = await rt2.reconcile()  # the approval, not the foreign question
        assert row.approval_id == old.approval_id
        assert row.deadline_at == old.requested_at + timedelta(minutes=7)

        result = await rt2.decide(incident, Approve(by="alice"))
        assert result.applied
        after = await rt2.get(incident)
        assert after.values.get("approval", {}).get("status") == "approved"
        still_waiting = await interrupt_ids(rt2, incident)
        assert len(still_waiting) == 1 and still_waiting != [row.approval_id]

        # The answered interrupt is still written in the open step's checkpoint.
        saved = await rt2.store.checkpointer.aget_tuple(
            {"configurable": {"thread_id": incident, "checkpoint_ns": ""}}
        )
        assert saved is not None
        written = [v for _, channel, v in saved.pending_writes or [] if channel == "__interrupt__"]
        assert any(i.id == row.approval_id for batch in written for i in batch)

        rt3 = await forget(rt2, database_url, [row.approval_id])
        assert await rt3.reconcile() == []
        assert await rt3.history(incident) == []


def subgraph_graph() -> StateGraph[Any, Any, Any, Any]:
    """plan → review (a compiled subgraph: approval → apply)."""
    gate = approval_node()
    inner: StateGraph[Any, Any, Any, Any] = StateGraph(AskState)
    inner.add_node("approval", gate)
    inner.add_node("apply", lambda s: {"applied": True})
    inner.add_edge(START, "approval")
    inner.add_conditional_edges(
        "approval", gate.route, {"approved": "apply", "rejected": END, "expired": END}
    )
    inner.add_edge("apply", END)
    outer: StateGraph[Any, Any, Any, Any] = StateGraph(AskState)
    outer.add_node("plan", lambda s: {"plan": {"steps": ["restart api"]}, "severity": "P3"})
    outer.add_node("review", inner.compile())
    outer.add_edge(START, "plan")
    outer.add_edge("plan", "review")
    outer.add_edge("review", END)
    return outer


async def test_an_approval_inside_a_subgraph_is_reconciled(database_url: str) -> None:
    clock = FixedClock(T0)
    incident = new_id("subgraph")
    async with open_runtime(database_url, clock=clock) as rt:
        paused = await rt.start(subgraph_graph(), {}, incident_id=incident)
        assert paused.status == "awaiting_approval"
        old = await only_row(rt, incident)
        assert await interrupt_ids(rt, incident) == [old.approval_id]

        rt2 = await forget(rt, database_url, [old.approval_id])
        (row,) = await rt2.reconcile()
        assert (row.incident_id, row.approval_id, row.node) == (
            incident,
            old.approval_id,
            "approval",
        )
        assert row.deadline_at == T0 + timedelta(hours=9)

        result = await rt2.decide(incident, Approve(by="alice"))
        assert result.applied
        done = await rt2.get(incident)
        assert done.status == "finished" and done.values["applied"] is True
        assert await rt2.reconcile() == []


class PublicApiOnlySaver(InMemorySaver):
    """A user's own saver: counts the public reads reconcile may use and refuses every other
    read while policing is on (InMemorySaver's async methods delegate to its sync ones, so
    those are allowed only from inside them)."""

    def __init__(self) -> None:
        self.policing = False
        self._inside = 0
        super().__init__()
        self.alist_calls: list[RunnableConfig | None] = []
        self.aget_tuple_calls: list[RunnableConfig] = []

    def _refuse(self, name: str) -> None:
        if self.policing and not self._inside:
            raise AssertionError(f"reconcile used {name}(), which is not the public async API")

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        if self.policing:
            self.aget_tuple_calls.append(config)
        self._inside += 1
        try:
            return await super().aget_tuple(config)
        finally:
            self._inside -= 1

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        if self.policing:
            self.alist_calls.append(config)
        self._inside += 1
        try:
            async for item in super().alist(config, filter=filter, before=before, limit=limit):
                yield item
        finally:
            self._inside -= 1

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        self._refuse("get_tuple")
        return super().get_tuple(config)

    def list(self, *args: Any, **kwargs: Any) -> Any:
        self._refuse("list")
        return super().list(*args, **kwargs)

    def get(self, config: RunnableConfig) -> Any:
        self._refuse("get")
        return super().get(config)

    async def aget(self, config: RunnableConfig) -> Any:
        self._refuse("aget")
        return await super().aget(config)

    def __getattribute__(self, name: str) -> Any:
        if (
            name in ("storage", "writes", "blobs")
            and object.__getattribute__(self, "policing")
            and not object.__getattribute__(self, "_inside")
        ):
            raise AssertionError(f"reconcile read the saver's private {name!r}")
        return object.__getattribute__(self, name)


async def test_a_users_own_saver_is_walked_through_alist_and_aget_tuple_only(
    counter_dir: Path,
) -> None:
    saver = PublicApiOnlySaver()
    store = Store(
        parse_database_url("memory://"), saver, MemoryLedger(), ProcessLocks(str(uuid.uuid4()))
    )
    clock = FixedClock(T0)
    rt = Runtime(store, clock=clock)
    graph = build_graph(counter_dir)
    waiting = [new_id("own-a"), new_id("own-b")]
    done = new_id("own-done")
    for incident in (*waiting, done):
        await rt.start(graph, alert("P1"), incident_id=incident)
    await rt.decide(done, Approve(by="alice"))
    rt2 = Runtime(replace(store, ledger=MemoryLedger()), clock=clock, sla=RECONCILE_SLA)
    rt2.register(graph)

    saver.policing = True
    try:
        found = await rt2.reconcile()
    finally:
        saver.policing = False

    assert sorted(r.incident_id for r in found) == sorted(waiting)
    assert all(r.deadline_at == T0 + timedelta(minutes=42) for r in found)
    assert saver.alist_calls == [None]
    assert sorted(c["configurable"]["thread_id"] for c in saver.aget_tuple_calls) == sorted(
        [*waiting, done]
    )
    assert all(
        c["configurable"] == {"thread_id": c["configurable"]["thread_id"], "checkpoint_ns": ""}
        for c in saver.aget_tuple_calls
    )

    result = await rt2.decide(waiting[0], Approve(by="bob"))
    assert result.applied
    assert Counters(counter_dir).read(waiting[0])["apply"] == 1
    assert (await rt2.get(waiting[0])).status == "finished"


def test_the_control_channel_names_are_langgraphs() -> None:
    from langgraph._internal import _constants as lg

    assert lg.INTERRUPT == INTERRUPT_CHANNEL
    assert lg.NULL_TASK_ID == NULL_TASK_ID
    assert {
        lg.INTERRUPT,
        lg.RESUME,
        lg.ERROR,
        lg.ERROR_SOURCE_NODE,
    } == CONTROL_CHANNELS
