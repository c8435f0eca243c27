"""The approval lifecycle on every backend: pause, decide, route, and every way to decide wrong."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from durable_ir import (
    Approve,
    Conflict,
    Edit,
    Expire,
    FixedClock,
    GraphVersionUnavailable,
    InvalidDecision,
    NotFound,
    Reject,
    Runtime,
    approval_node,
    open_runtime,
    open_store,
)
from durable_ir.ledger import ApprovalLedger
from durable_ir.records import ApprovalRecord, NewApproval
from support.graphs import ALERT, PRE_PAUSE_NODES, Counters, build_graph, validate_plan

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def new_id() -> str:
    return f"inc-{uuid.uuid4()}"


async def test_approve_runs_remediation_once_and_records_who(
    database_url: str, counter_dir: Path
) -> None:
    clock = FixedClock(T0)
    incident = new_id()
    async with open_runtime(database_url, clock=clock) as rt:
        paused = await rt.start(build_graph(counter_dir), {"alert": ALERT}, incident_id=incident)
        assert paused.status == "awaiting_approval"
        pending = paused.pending_approval
        assert pending is not None and pending.severity == "P1"
        assert pending.deadline_at == T0 + timedelta(hours=2)
        request = pending.request
        assert request["action_requests"][0]["args"]["plan"]["steps"][0]["action"] == "rollback"
        assert request["review_configs"][0]["allowed_decisions"] == ["approve", "edit", "reject"]
        assert request["durable_ir"]["incident_id"] == incident
        assert request["durable_ir"]["approval_id"] == pending.approval_id
        assert Counters(counter_dir).read(incident)["apply"] == 0

        clock.advance(minutes=3)
        result = await rt.decide(incident, Approve(by="alice", reason="looks right"))
        assert result.applied
        assert result.record.decided_by == "alice"
        assert result.record.decided_at == T0 + timedelta(minutes=3)
        assert result.record.reason == "looks right"
        assert result.record.applied_at is not None

        done = await rt.get(incident)
        assert done.status == "finished"
        assert done.values["approval"]["status"] == "approved"
        assert done.values["applied"] == ["api"]
        assert [r.status.value for r in await rt.history(incident)] == ["approved"]

    counts = Counters(counter_dir).read(incident)
    assert all(counts[node] == 1 for node in PRE_PAUSE_NODES)
    assert (counts["apply"], counts["escalate"], counts["finish"]) == (1, 0, 1)


@pytest.mark.parametrize(
    ("decision", "status"),
    [
        (Reject(by="bob", reason="wrong service"), "rejected"),
        (Expire(reason="P1 deadline passed"), "expired"),
    ],
)
async def test_reject_and_expire_route_to_escalation(
    database_url: str, counter_dir: Path, decision: Reject | Expire, status: str
) -> None:
    incident = new_id()
    async with open_runtime(database_url) as rt:
        await rt.start(build_graph(counter_dir), {"alert": ALERT}, incident_id=incident)
        result = await rt.decide(incident, decision)
        assert result.record.status.value == status
        assert result.record.reason == decision.reason
        done = await rt.get(incident)
    assert done.values["escalated"] is True and "applied" not in done.values
    counts = Counters(counter_dir).read(incident)
    assert (counts["apply"], counts["escalate"]) == (0, 1)


async def test_edit_replaces_the_plan_that_is_applied(database_url: str, counter_dir: Path) -> None:
    incident = new_id()
    edited = {
        "steps": [{"action": "scale", "target": "api"}, {"action": "restart", "target": "db"}]
    }
    async with open_runtime(database_url) as rt:
        await rt.start(build_graph(counter_dir), {}, incident_id=incident)
        result = await rt.decide(incident, Edit(by="carol", plan=edited))
        assert result.record.status.value == "approved"
        assert result.record.edited_plan == edited
        done = await rt.get(incident)
    assert done.values["plan"] == edited
    assert done.values["applied"] == ["api", "db"]
    assert done.values["approval"]["edited"] is True


@pytest.mark.parametrize(
    "decision",
    [
        Edit(by="carol", plan={"steps": [{"action": "rm -rf /", "target": "api"}]}),
        Edit(by="carol", plan={"steps": []}),
        Edit(by="carol", plan="drop everything"),
        Approve(by=""),
        Reject(by="bob", reason="   "),
        Expire(by="mallory", reason="I say so"),
    ],
    ids=[
        "edit-off-allow-list",
        "edit-empty",
        "edit-not-a-plan",
        "no-identity",
        "no-reason",
        "human-expire",
    ],
)
async def test_invalid_decisions_change_nothing(
    database_url: str, counter_dir: Path, decision: Any
) -> None:
    incident = new_id()
    async with open_runtime(database_url) as rt:
        paused = await rt.start(build_graph(counter_dir), {}, incident_id=incident)
        with pytest.raises(InvalidDecision):
            await rt.decide(incident, decision)
        still = await rt.get(incident)
        assert still.status == "awaiting_approval"
        assert still.pending_approval == paused.pending_approval
        assert Counters(counter_dir).read(incident)["apply"] == 0
        # ...and a valid decision afterwards works normally.
        await rt.decide(incident, Approve(by="alice"))
        assert (await rt.get(incident)).status == "finished"


async def test_decision_kinds_outside_the_request_are_refused(
    database_url: str, counter_dir: Path
) -> None:
    gate = approval_node(allowed=("approve", "reject"), validate_plan=validate_plan)
    incident = new_id()
    async with open_runtime(database_url) as rt:
        await rt.start(build_graph(counter_dir, gate), {}, incident_id=incident)
        with pytest.raises(InvalidDecision, match="'edit' is not allowed"):
            await rt.decide(
                incident, Edit(by="carol", plan={"steps": [{"action": "scale", "target": "x"}]})
            )
        assert (await rt.history(incident))[0].is_pending


async def test_unknown_incident_is_not_found_and_nothing_is_written(
    database_url: str, counter_dir: Path
) -> None:
    async with open_runtime(database_url) as rt:
        rt.register(build_graph(counter_dir))
        ghost = new_id()
        for decision in (Approve(by="alice"), Reject(by="bob", reason="x"), Expire(reason="late")):
            with pytest.raises(NotFound):
                await rt.decide(ghost, decision)
        with pytest.raises(NotFound):
            await rt.decide(ghost, Approve(by="alice"), approval_id="0" * 32)
        with pytest.raises(NotFound):
            await rt.get(ghost)
        config = {"configurable": {"thread_id": ghost, "checkpoint_ns": ""}}
        assert await rt.store.checkpointer.aget_tuple(config) is None  # type: ignore[arg-type]
        assert [c async for c in rt.store.checkpointer.alist(config)] == []  # type: ignore[arg-type]
        assert await rt.history(ghost) == []
    assert list(counter_dir.iterdir()) == []


async def test_finished_incident_is_a_conflict_naming_the_winner(
    database_url: str, counter_dir: Path
) -> None:
    incident = new_id()
    async with open_runtime(database_url) as rt:
        await rt.start(build_graph(counter_dir), {}, incident_id=incident)
        await rt.decide(incident, Reject(by="bob", reason="no"))
        for late in (Approve(by="alice"), Reject(by="carol", reason="also no"), Expire(reason="t")):
            with pytest.raises(Conflict) as conflict:
                await rt.decide(incident, late)
            assert conflict.value.winner is not None
            assert conflict.value.winner.decided_by == "bob"
            assert "rejected by bob" in str(conflict.value)
        (record,) = await rt.history(incident)
        assert record.decided_by == "bob"
    counts = Counters(counter_dir).read(incident)
    assert (counts["apply"], counts["escalate"], counts["finish"]) == (0, 1, 1)


async def test_approval_id_pins_the_request_the_decider_saw(
    database_url: str, counter_dir: Path
) -> None:
    incident = new_id()
    async with open_runtime(database_url) as rt:
        paused = await rt.start(build_graph(counter_dir), {}, incident_id=incident)
        assert paused.pending_approval is not None
        with pytest.raises(NotFound):
            await rt.decide(incident, Approve(by="alice"), approval_id="f" * 32)
        result = await rt.decide(
            incident, Approve(by="alice"), approval_id=paused.pending_approval.approval_id
        )
        assert result.applied


async def test_incident_that_never_asked_for_approval_is_a_conflict(
    database_url: str, counter_dir: Path
) -> None:
    """A run that stopped before the approval node (here: a failing stage)."""
    builder = build_graph(counter_dir)

    def broken_evidence(state: Any) -> dict[str, Any]:
        raise RuntimeError("metrics backend down")

    builder.nodes["evidence"] = replace(builder.nodes["evidence"], runnable=broken_evidence)  # type: ignore[arg-type]
    incident = new_id()
    async with open_runtime(database_url) as rt:
        with pytest.raises(RuntimeError, match="metrics backend down"):
            await rt.start(builder, {}, incident_id=incident)
        with pytest.raises(Conflict, match="not waiting") as conflict:
            await rt.decide(incident, Approve(by="alice"))
        assert conflict.value.winner is None
        assert await rt.history(incident) == []
        assert (await rt.get(incident)).status == "running"


async def test_starting_an_existing_incident_is_a_conflict(
    database_url: str, counter_dir: Path
) -> None:
    incident = new_id()
    async with open_runtime(database_url) as rt:
        graph = build_graph(counter_dir)
        await rt.start(graph, {}, incident_id=incident)
        with pytest.raises(Conflict, match="already exists"):
            await rt.start(graph, {}, incident_id=incident)
    assert Counters(counter_dir).read(incident)["ingest"] == 1


async def test_re_run_of_the_node_keeps_the_original_deadline(
    database_url: str, counter_dir: Path
) -> None:
    clock = FixedClock(T0)
    incident = new_id()
    async with open_runtime(database_url, clock=clock) as rt:
        await rt.start(
            build_graph(counter_dir), {"alert": {"severity": "P0"}}, incident_id=incident
        )
        # The node re-runs on resume, 10 minutes later (within the P0 window: a decision after
        # the deadline is the expiry, tests/test_lifecycle_edges.py); a re-run that computed
        # the deadline again would move it to T0 + 25 min.
        clock.advance(minutes=10)
        result = await rt.decide(incident, Approve(by="alice"))
        assert result.record.requested_at == T0
        assert result.record.deadline_at == T0 + timedelta(minutes=15)
        (record,) = await rt.history(incident)
        assert (
            record.request["durable_ir"]["deadline_at"] == (T0 + timedelta(minutes=15)).isoformat()
        )


class SlowAfterRegister:
    """The real ledger, with a pause between registering a request and the interrupt landing
    (every other call goes to the real ledger)."""

    def __init__(self, inner: ApprovalLedger) -> None:
        self.inner = inner
        self.registered = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def register(self, new: NewApproval) -> ApprovalRecord:
        row = await self.inner.register(new)
        self.registered.set()
        await asyncio.sleep(0.3)
        return row


async def test_decision_arriving_before_the_pause_lands_is_applied_once(
    database_url: str, counter_dir: Path
) -> None:
    incident = new_id()
    async with open_store(database_url) as store:
        ledger = SlowAfterRegister(store.ledger)
        rt = Runtime(replace(store, ledger=ledger))
        starting = asyncio.create_task(rt.start(build_graph(counter_dir), {}, incident_id=incident))
        await ledger.registered.wait()
        assert not starting.done()  # the interrupt is not saved yet
        result = await rt.decide(incident, Approve(by="alice"))
        await starting
        assert result.record.decided_by == "alice"
        assert result.applied
        done = await rt.get(incident)
        (record,) = await rt.history(incident)
    assert done.status == "finished"
    assert record.applied_at is not None
    counts = Counters(counter_dir).read(incident)
    assert all(counts[node] == 1 for node in PRE_PAUSE_NODES)
    assert (counts["apply"], counts["finish"]) == (1, 1)


async def test_run_that_died_before_its_pause_is_continued_by_the_decision(
    database_url: str, counter_dir: Path
) -> None:
    """The request was registered, then the run failed before interrupt() was saved."""

    class DiesAfterRegister(SlowAfterRegister):
        async def register(self, new: NewApproval) -> ApprovalRecord:
            await self.inner.register(new)
            raise ConnectionError("worker lost its connection")

    incident = new_id()
    async with open_store(database_url) as store:
        dying = Runtime(replace(store, ledger=DiesAfterRegister(store.ledger)))
        with pytest.raises(ConnectionError):
            await dying.start(build_graph(counter_dir), {}, incident_id=incident)
        rt = Runtime(store)
        rt.register(build_graph(counter_dir))
        assert (await rt.get(incident)).status == "running"
        result = await rt.decide(incident, Approve(by="alice"))
        assert result.applied
        assert (await rt.get(incident)).status == "finished"
    counts = Counters(counter_dir).read(incident)
    assert all(counts[node] == 1 for node in PRE_PAUSE_NODES)
    assert counts["apply"] == 1


async def test_a_graph_must_be_registered_before_deciding(
    database_url: str, counter_dir: Path
) -> None:
    incident = new_id()
    async with open_runtime(database_url) as rt:
        await rt.start(build_graph(counter_dir), {}, incident_id=incident, graph_name="triage-v2")
        other = Runtime(rt.store)
        with pytest.raises(GraphVersionUnavailable, match="triage-v2") as refused:
            await other.decide(incident, Approve(by="alice"))
        assert refused.value.incident_id == incident and refused.value.registered == []
        assert (await rt.history(incident))[0].is_pending


async def test_edits_are_refused_when_the_approval_node_cannot_be_found(
    database_url: str, counter_dir: Path
) -> None:
    """A wrapped approval node cannot validate edits here: refuse them, allow the rest."""
    from langchain_core.runnables import RunnableLambda

    from support.graphs import validate_plan

    gate = approval_node(validate_plan=validate_plan)

    async def wrapped(state: Any, config: Any) -> Any:
        return await gate(state, config)

    builder = build_graph(counter_dir, gate)
    builder.nodes["approval"] = replace(builder.nodes["approval"], runnable=RunnableLambda(wrapped))
    incident = new_id()
    async with open_runtime(database_url) as rt:
        await rt.start(builder, {}, incident_id=incident)
        plan = {"steps": [{"action": "scale", "target": "api"}]}
        with pytest.raises(InvalidDecision, match="cannot validate the edited plan"):
            await rt.decide(incident, Edit(by="carol", plan=plan))
        assert (await rt.history(incident))[0].is_pending
        await rt.decide(incident, Approve(by="alice"))
        assert (await rt.get(incident)).status == "finished"


async def test_a_decision_can_be_recorded_now_and_applied_later(
    database_url: str, counter_dir: Path
) -> None:
    incident = new_id()
    async with open_runtime(database_url) as rt:
        await rt.start(build_graph(counter_dir), {}, incident_id=incident)
        with pytest.raises(NotFound):
            await rt.record_decision("no-such-incident", Approve(by="alice"))
        record = await rt.record_decision(incident, Approve(by="alice"))
        assert record.decided_by == "alice" and record.applied_at is None
        assert (await rt.get(incident)).status == "resuming"  # durable, not yet applied
        assert Counters(counter_dir).read(incident).get("apply", 0) == 0
        with pytest.raises(Conflict) as lost:
            await rt.record_decision(incident, Reject(by="bob", reason="late"))
        assert lost.value.winner is not None and lost.value.winner.decided_by == "alice"

        async with rt.store.locks.hold(incident):  # another worker holds the incident
            assert await rt.apply_decision(record, wait=0) is False
        assert await rt.apply_decision(record) is True
        assert (await rt.get(incident)).status == "finished"
        assert await rt.apply_decision(record) is True  # idempotent: nothing left to do
    assert Counters(counter_dir).read(incident)["apply"] == 1
