"""The short cuts the optimisation passes took, and the cases each one relies on.

``decide()`` continues the graph with ``ainvoke(None)`` without reading the checkpoint first
(``Decider._continue``): these tests pin what that relies on — in every state the thread can
be in when a decision has just won its compare-and-set — and count the checkpoint reads.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import EmptyInputError
from langgraph.graph import END, START, StateGraph

from durable_ir import Approve, FixedClock, Runtime, approval_node, open_runtime
from support.graphs import PRE_PAUSE_NODES, Counters, IncidentState, build_graph, validate_plan

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def new_id() -> str:
    return f"inc-{uuid.uuid4()}"


class CountingReads:
    """Counts ``aget_tuple`` calls on the runtime's checkpointer (every checkpoint read:
    ``aget_state`` and each run's own load go through it)."""

    def __init__(self, rt: Runtime) -> None:
        self.calls = 0
        saver = rt.store.checkpointer
        inner = saver.aget_tuple

        async def counted(config: RunnableConfig) -> Any:
            self.calls += 1
            return await inner(config)

        saver.aget_tuple = counted  # type: ignore[method-assign]


async def _checkpoints(rt: Runtime, incident: str) -> int:
    config: RunnableConfig = {"configurable": {"thread_id": incident}}
    return len([c async for c in rt.store.checkpointer.alist(config)])


async def test_decide_reads_the_checkpoint_once(database_url: str, counter_dir: Path) -> None:
    """Only the resumed run's own load: no read before it (the hand-written resume's count)."""
    incident = new_id()
    async with open_runtime(database_url) as rt:
        await rt.start(build_graph(counter_dir), {}, incident_id=incident)
        reads = CountingReads(rt)
        result = await rt.decide(incident, Approve(by="alice"))
        assert result.applied and result.record.applied_at is not None
        assert reads.calls == 1
        assert (await rt.get(incident)).values["applied"] == ["api"]
    counts = Counters(counter_dir).read(incident)
    assert all(counts[node] == 1 for node in PRE_PAUSE_NODES)
    assert (counts["apply"], counts["finish"]) == (1, 1)


async def test_applying_a_recorded_decision_reads_the_checkpoint_once(
    database_url: str, counter_dir: Path
) -> None:
    """The service's path (record, answer 202, apply in the background): the same one read."""
    incident = new_id()
    async with open_runtime(database_url) as rt:
        await rt.start(build_graph(counter_dir), {}, incident_id=incident)
        recorded = await rt.record_decision(incident, Approve(by="alice"))
        reads = CountingReads(rt)
        assert await rt.apply_decision(recorded)
        assert reads.calls == 1
        assert await rt.apply_decision(recorded)  # again: the ledger says it is applied
        assert reads.calls == 1
        (record,) = await rt.history(incident)
        assert record.applied_at is not None
    counts = Counters(counter_dir).read(incident)
    assert (counts["apply"], counts["finish"]) == (1, 1)


async def test_continuing_a_thread_without_checkpoints_is_refused_by_langgraph() -> None:
    """What ``Decider._continue`` relies on: ``ainvoke(None)`` on a thread that has no
    checkpoint raises ``EmptyInputError`` and runs and writes nothing (unlike a
    ``Command(resume=…)``, which would start the graph from START)."""
    ran: list[str] = []

    def node(state: IncidentState) -> dict[str, Any]:
        ran.append("node")
        return {"done": True}

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(IncidentState)
    builder.add_node("node", node)
    builder.add_edge(START, "node")
    builder.add_edge("node", END)
    saver = InMemorySaver()
    graph = builder.compile(checkpointer=saver)
    config: RunnableConfig = {"configurable": {"thread_id": "never-started"}}
    with pytest.raises(EmptyInputError):
        await graph.ainvoke(None, config, durability="sync")
    assert ran == []
    assert [c async for c in saver.alist(config)] == []


async def test_a_decision_on_a_thread_whose_checkpoints_are_gone_runs_nothing(
    database_url: str, counter_dir: Path
) -> None:
    """A pending approval whose thread was deleted (a user's own checkpointer reset, say):
    deciding records the decision and starts no phantom run."""
    incident = new_id()
    async with open_runtime(database_url) as rt:
        await rt.start(build_graph(counter_dir), {}, incident_id=incident)
        await rt.store.checkpointer.adelete_thread(incident)
        result = await rt.decide(incident, Approve(by="alice"))
        assert result.record.decided_by == "alice"
        assert await _checkpoints(rt, incident) == 0
    counts = Counters(counter_dir).read(incident)
    assert all(counts[node] == 1 for node in PRE_PAUSE_NODES)
    assert counts["apply"] == 0 and counts["finish"] == 0


async def test_a_decision_another_worker_applied_first_runs_nothing_again(
    database_url: str, counter_dir: Path
) -> None:
    """Between this process's compare-and-set and its lock, another worker (recovery, or the
    run that held the lock) applied the decision and the graph finished: continuing it runs
    no node and writes no checkpoint."""
    incident = new_id()
    async with open_runtime(database_url) as rt:
        await rt.start(build_graph(counter_dir), {}, incident_id=incident)
        recorded = await rt.record_decision(incident, Approve(by="alice"))
        assert await rt.apply_decision(recorded)  # the other worker
        before = await _checkpoints(rt, incident)
        async with rt.store.locks.hold(incident):
            await rt._decider.apply_locked(recorded, fresh=True)  # a stale, "fresh" row
        assert await _checkpoints(rt, incident) == before
        assert (await rt.get(incident)).status == "finished"
    counts = Counters(counter_dir).read(incident)
    assert (counts["apply"], counts["finish"]) == (1, 1)


def _two_approvals(counter_dir: Path) -> StateGraph[Any, Any, Any, Any]:
    """plan → first approval → replan → second approval → apply."""
    counters = Counters(counter_dir)
    first = approval_node(validate_plan=validate_plan, state_key="approval")
    second = approval_node(validate_plan=validate_plan, state_key="second")

    def step(name: str) -> Any:
        def node(state: Any, config: RunnableConfig) -> dict[str, Any]:
            counters.hit(str(config["configurable"]["thread_id"]), name)
            return {"plan": {"steps": [{"action": "restart", "target": name}]}}

        return node

    class State(IncidentState, total=False):
        second: dict[str, Any]

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(State)
    builder.add_node("plan", step("plan"))
    builder.add_node("first", first)
    builder.add_node("replan", step("replan"))
    builder.add_node("second", second)
    builder.add_node("apply", step("apply"))
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "first")
    builder.add_conditional_edges("first", first.route, {"approved": "replan", "rejected": END})
    builder.add_edge("replan", "second")
    builder.add_conditional_edges("second", second.route, {"approved": "apply", "rejected": END})
    builder.add_edge("apply", END)
    return builder


async def test_a_stale_decision_leaves_the_next_approval_waiting(
    database_url: str, counter_dir: Path
) -> None:
    """The graph moved past the decided approval and now waits on the next one: continuing
    it for the old decision re-asks the waiting question (same request, still pending) and
    answers nothing."""
    incident = new_id()
    async with open_runtime(database_url) as rt:
        rt.register(_two_approvals(counter_dir))
        await rt.start(_two_approvals(counter_dir), {}, incident_id=incident)
        recorded = await rt.record_decision(incident, Approve(by="alice"))
        assert await rt.apply_decision(recorded)
        waiting = await rt.get(incident)
        assert waiting.status == "awaiting_approval"
        assert waiting.pending_approval is not None
        assert waiting.pending_approval.approval_id != recorded.approval_id
        async with rt.store.locks.hold(incident):
            await rt._decider.apply_locked(recorded, fresh=True)
        again = await rt.get(incident)
        assert again.status == "awaiting_approval"
        assert again.pending_approval == waiting.pending_approval
        assert [r.approval_id for r in again.approvals] == [
            r.approval_id for r in waiting.approvals
        ]
        await rt.decide(incident, Approve(by="bob"))
        assert (await rt.get(incident)).status == "finished"
    counts = Counters(counter_dir).read(incident)
    assert (counts["plan"], counts["replan"], counts["apply"]) == (1, 1, 1)


async def test_a_stage_failing_after_the_approval_still_marks_the_decision_applied(
    database_url: str, counter_dir: Path
) -> None:
    """The approval node took the decision, then apply raised: the decision is applied (the
    run's retry belongs to its lease), and recovery does not hand it over a second time."""
    incident = new_id()
    builder = build_graph(counter_dir)
    failing = {"on": True}

    def apply(state: Any, config: RunnableConfig) -> dict[str, Any]:
        Counters(counter_dir).hit(incident, "apply")
        if failing["on"]:
            raise RuntimeError("apply broke")
        return {"applied": ["api"]}

    builder.nodes["apply"] = replace(builder.nodes["apply"], runnable=RunnableLambda(apply))
    async with open_runtime(database_url) as rt:
        await rt.start(builder, {}, incident_id=incident)
        with pytest.raises(RuntimeError, match="apply broke"):
            await rt.decide(incident, Approve(by="alice"))
        (record,) = await rt.history(incident)
        assert record.applied_at is not None
        assert await rt.recover() == []


async def test_a_failure_before_the_approval_node_took_the_decision_leaves_it_to_recovery(
    database_url: str, counter_dir: Path
) -> None:
    """The approval step raised on resume (here: a wrapper around the node): the decision is
    not marked applied, and recovery applies it later, once."""
    gate = approval_node(validate_plan=validate_plan)
    failing = {"on": False}

    async def wrapped(state: Any, config: RunnableConfig) -> Any:
        out = await gate(state, config)
        if failing["on"]:
            raise ConnectionError("lost the database after the node ran")
        return out

    builder = build_graph(counter_dir, gate)
    builder.nodes["approval"] = replace(builder.nodes["approval"], runnable=RunnableLambda(wrapped))
    incident = new_id()
    clock = FixedClock(T0)
    async with open_runtime(database_url, clock=clock) as rt:
        await rt.start(builder, {}, incident_id=incident)
        failing["on"] = True
        with pytest.raises(ConnectionError):
            await rt.decide(incident, Approve(by="alice"))
        (record,) = await rt.history(incident)
        assert record.applied_at is None
        failing["on"] = False
        clock.advance(minutes=5)  # the failed run's retry is due
        applied = await rt.recover()
        assert [r.approval_id for r in applied] == [record.approval_id]
        assert (await rt.get(incident)).status == "finished"
    counts = Counters(counter_dir).read(incident)
    assert (counts["apply"], counts["finish"]) == (1, 1)


async def _alert_writes(rt: Runtime, incident: str) -> list[tuple[str, Any]]:
    """Every write to the ``alert`` channel stored for the incident's root graph, with the
    task that wrote it (``__start__`` for the input)."""
    config: RunnableConfig = {"configurable": {"thread_id": incident, "checkpoint_ns": ""}}
    saved_tuples = [c async for c in rt.store.checkpointer.alist(config)]
    found = []
    for saved in saved_tuples:
        if saved.config["configurable"].get("checkpoint_ns"):
            continue
        tasks = {t.id: t.name for t in (await _tasks(rt, saved.config))}
        for task_id, channel, value in saved.pending_writes or []:
            if channel == "alert":
                found.append((tasks.get(task_id, task_id), value))
    return found


async def _tasks(rt: Runtime, config: RunnableConfig) -> Any:
    graph = rt.graphs.get(rt.graphs.names()[0]).compiled
    return (await graph.aget_state(config)).tasks


@pytest.mark.parametrize("how", ["ingest", "start"])
async def test_ingest_stores_an_alert_it_need_not_normalise_once(
    durable_url: str, counter_dir: Path, how: str
) -> None:
    """``Runtime.ingest`` hands the graph a normalised alert: the ingest node does not write
    it again. A raw alert given to ``start`` is normalised and written by the node."""
    from durable_ir.builder.nodes import check_alert
    from support.incident_parts import ALERT, build_incident_graph

    graph = build_incident_graph(counter_dir).build()
    async with open_runtime(durable_url) as rt:
        if how == "ingest":
            intake = await rt.ingest(graph, ALERT, incident_id="inc-1")
            assert intake.snapshot is not None
        else:
            await rt.start(graph, {"alert": ALERT}, incident_id="inc-1")
        snapshot = await rt.get("inc-1")
        assert snapshot.status == "awaiting_approval"
        normalised = check_alert(ALERT).as_state()
        assert snapshot.values["alert"] == normalised
        assert snapshot.values["title"] == "HighErrorRate on checkout"
        writers = [task for task, _ in await _alert_writes(rt, "inc-1")]
    assert writers.count("ingest") == (0 if how == "ingest" else 1)
