"""The incident lifecycle's edges, on every backend: a deadline holds at the moment of
decision (also racing the SLA sweep from other processes), an alert is never silently
dropped, every state answers the same through every way of asking, and a raw resume that
bypasses ``decide()`` changes nothing."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

from durable_ir import (
    Approve,
    Conflict,
    DecisionNotRecorded,
    Edit,
    FixedClock,
    NotFound,
    Reject,
    open_runtime,
)
from durable_ir.cli import EXIT_NOT_FOUND, EXIT_OK, main
from durable_ir.records import ApprovalStatus
from durable_ir.service.views import incident_detail, list_incidents
from durable_ir.sla import SLA_IDENTITY, SlaMonitor
from support.graphs import Counters, IncidentState, build_graph
from support.incident_parts import ALERT
from support.processes import Worker

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
P1 = {"alert": {"severity": "P1"}}
PLAN = {"steps": [{"action": "scale", "target": "api"}]}


def new_id() -> str:
    return f"inc-{uuid.uuid4()}"


def move_to(clock: FixedClock, moment: datetime) -> None:
    clock.advance(seconds=(moment - clock()).total_seconds())


# -- 1. the deadline holds at decision time --------------------------------------------------


@pytest.mark.parametrize(
    "decision",
    [Approve(by="alice"), Reject(by="bob", reason="wrong pool"), Edit(by="carol", plan=PLAN)],
    ids=["approve", "reject", "edit"],
)
async def test_a_decision_after_the_deadline_is_the_expiry(
    database_url: str, counter_dir: Path, decision: Any
) -> None:
    """1.5 s past the deadline and before any sweep: the decision is refused with Conflict
    naming the expiry (system:sla) that the same compare-and-set recorded, the graph
    escalates at once, and the monitor then finds nothing left to do."""
    clock = FixedClock(T0)
    incident = new_id()
    async with open_runtime(database_url, clock=clock) as rt:
        snapshot = await rt.start(build_graph(counter_dir), P1, incident_id=incident)
        assert snapshot.pending_approval is not None
        move_to(clock, snapshot.pending_approval.deadline_at + timedelta(seconds=1.5))

        with pytest.raises(Conflict, match="deadline") as refused:
            await rt.decide(incident, decision)

        winner = refused.value.winner
        assert winner is not None and winner.status is ApprovalStatus.EXPIRED
        assert winner.decided_by == SLA_IDENTITY and winner.edited_plan is None
        assert "deadline" in (winner.reason or "")
        (record,) = await rt.history(incident)
        assert record.status is ApprovalStatus.EXPIRED and record.applied_at is not None
        counts = Counters(counter_dir).read(incident)
        assert (counts["apply"], counts["escalate"], counts["finish"]) == (0, 1, 1)
        assert (await SlaMonitor(rt).sweep()).expired == []
        assert (await rt.get(incident)).status == "finished"


async def test_a_decision_just_before_the_deadline_still_counts(
    database_url: str, counter_dir: Path
) -> None:
    clock = FixedClock(T0)
    incident = new_id()
    async with open_runtime(database_url, clock=clock) as rt:
        snapshot = await rt.start(build_graph(counter_dir), P1, incident_id=incident)
        assert snapshot.pending_approval is not None
        move_to(clock, snapshot.pending_approval.deadline_at - timedelta(milliseconds=1))
        result = await rt.decide(incident, Approve(by="alice"))
        assert result.record.status is ApprovalStatus.APPROVED and result.applied
        assert Counters(counter_dir).read(incident)["apply"] == 1


async def test_a_late_decision_over_the_two_phase_path_is_refused_too(
    durable_url: str, counter_dir: Path
) -> None:
    """``record_decision`` (what the HTTP route calls before answering 202) keeps the
    deadline the same way, and leaves nothing for ``apply_decision`` to do."""
    clock = FixedClock(T0)
    incident = new_id()
    async with open_runtime(durable_url, clock=clock) as rt:
        snapshot = await rt.start(build_graph(counter_dir), P1, incident_id=incident)
        assert snapshot.pending_approval is not None
        move_to(clock, snapshot.pending_approval.deadline_at)  # at the deadline is too late
        with pytest.raises(Conflict) as refused:
            await rt.record_decision(incident, Approve(by="alice"))
        assert refused.value.winner is not None
        assert refused.value.winner.decided_by == SLA_IDENTITY
        assert Counters(counter_dir).read(incident)["escalate"] == 1
        assert await rt.recover() == []


@pytest.mark.slow
async def test_late_approvals_racing_the_sweep_across_processes_never_win(
    durable_url: str, counter_dir: Path
) -> None:
    """An approver process and a sweeper process act at the same instant on approvals whose
    deadline has just passed: every round records exactly one decision, the expiry by
    system:sla (whichever process wrote it), remediation never runs and escalation runs
    once."""
    decider = Worker("decider", durable_url, str(counter_dir))
    sweeper = Worker("sweeper", durable_url, str(counter_dir))
    sweeps_won = 0
    try:
        assert decider.read() == {"ready": True} and sweeper.read() == {"ready": True}
        async with open_runtime(durable_url) as rt:
            graph = build_graph(counter_dir)
            for _ in range(12):
                incident = new_id()
                started = await rt.start(
                    graph, {**P1, "approval_window_s": 0.2}, incident_id=incident
                )
                assert started.pending_approval is not None
                deadline = started.pending_approval.deadline_at
                # Both act once the deadline has passed on every clock here.
                wait = (deadline - datetime.now(UTC)).total_seconds() + 0.05
                at = time.time() + max(wait, 0.0) + 0.05
                decider.send(
                    {"incident": incident, "decision": {"type": "approve", "by": "alice"}, "at": at}
                )
                sweeper.send({"now": (deadline + timedelta(seconds=1)).isoformat(), "at": at})
                approved, swept = decider.read(), sweeper.read()
                assert "conflict" in approved, approved
                assert approved["conflict"]["decided_by"] == SLA_IDENTITY
                sweeps_won += len(swept["expired"])
                (record,) = await rt.history(incident)
                assert record.status is ApprovalStatus.EXPIRED and record.applied_at is not None
                counts = Counters(counter_dir).read(incident)
                assert (counts["apply"], counts["escalate"], counts["finish"]) == (0, 1, 1)
    finally:
        decider.close()
        sweeper.close()
    print("rounds whose expiry the sweep wrote:", sweeps_won, "of 12")


# -- 2. an alert is never silently dropped ---------------------------------------------------


async def test_an_alert_for_a_closed_incident_id_is_a_conflict_and_changes_nothing(
    database_url: str, counter_dir: Path
) -> None:
    incident = new_id()
    async with open_runtime(database_url) as rt:
        graph = build_graph(counter_dir)
        await rt.ingest(graph, ALERT, incident_id=incident)
        await rt.decide(incident, Approve(by="alice"))
        closed = await rt.store.ledger.get_incident(incident)
        assert closed is not None and not closed.is_open

        with pytest.raises(Conflict, match="closed") as refused:
            await rt.ingest(graph, ALERT, incident_id=incident)
        assert incident in str(refused.value)

        after = await rt.store.ledger.get_incident(incident)
        assert after == closed  # not counted, not reopened
        assert [r.incident_id for r in await rt.incidents()] == [incident]
        # Without the id, the same firing attaches to the closed incident (counted, not
        # reopened); a new firing of the alert opens a new incident.
        repeat = await rt.ingest(graph, ALERT)
        assert not repeat.created and repeat.event == "repeated"
        assert repeat.incident is not None and repeat.incident.incident_id == incident
        assert not repeat.incident.is_open
        fresh = await rt.ingest(graph, {**ALERT, "fired_at": "2026-03-01T13:00:00+00:00"})
        assert fresh.created and fresh.incident is not None
        assert fresh.incident.incident_id != incident


# -- 3. one answer per state, whoever asks ---------------------------------------------------


class Gate:
    """Holds a node until released, so that a run can be caught mid-stage."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()


def running_graph(gate: Gate) -> StateGraph[Any, Any, Any, Any]:
    async def slow(state: IncidentState, config: RunnableConfig) -> dict[str, Any]:
        gate.entered.set()
        await gate.release.wait()
        return {"done": True}

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(IncidentState)
    builder.add_node("slow", slow)
    builder.add_edge(START, "slow")
    builder.add_edge("slow", END)
    return builder


STATES = {
    # state: (get().status, decide() raises, index open?)
    "opened_not_started": ("running", Conflict, True),
    "running": ("running", Conflict, True),
    "awaiting_approval": ("awaiting_approval", None, True),
    "resuming": ("resuming", Conflict, True),
    "finished": ("finished", Conflict, False),
    "pruned": ("finished", Conflict, False),
    "unknown": (None, NotFound, None),
}
"""The table in docs/approvals.md ("Incident states and what each operation answers")."""


async def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    """``durable-ir incidents …--json``, run in a thread (it runs its own event loop)."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["incidents", *args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


async def test_every_state_answers_the_same_way(
    database_url: str, counter_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gate = Gate()
    graph = build_graph(counter_dir)
    ids = {state: f"{state}-{uuid.uuid4().hex[:6]}" for state in STATES}
    async with open_runtime(database_url) as rt:
        await rt.ingest(graph, ALERT, incident_id=ids["opened_not_started"], run=False)
        run = asyncio.create_task(rt.start(running_graph(gate), {}, incident_id=ids["running"]))
        await asyncio.wait_for(gate.entered.wait(), 30)
        await rt.start(graph, P1, incident_id=ids["awaiting_approval"])
        await rt.start(graph, P1, incident_id=ids["resuming"])
        await rt.record_decision(ids["resuming"], Approve(by="alice"))  # not applied yet
        for state in ("finished", "pruned"):
            await rt.start(graph, P1, incident_id=ids[state])
            await rt.decide(ids[state], Reject(by="bob", reason="no"))
        await rt.prune(older_than=timedelta(0))
        assert (await rt.store.ledger.get_incident(ids["pruned"])).pruned_at is not None  # type: ignore[union-attr]
        # Pruning also took "finished": give it a fresh twin that keeps its checkpoints.
        ids["finished"] = f"finished2-{uuid.uuid4().hex[:6]}"
        await rt.start(graph, P1, incident_id=ids["finished"])
        await rt.decide(ids["finished"], Reject(by="bob", reason="no"))

        for state, (status, decide_error, is_open) in STATES.items():
            incident = ids[state]
            if status is None:
                with pytest.raises(NotFound):
                    await rt.get(incident)
            else:
                assert (await rt.get(incident)).status == status, state
            row = await rt.store.ledger.get_incident(incident)
            assert (row.is_open if row else None) == is_open, state
            # What GET /incidents/{id} and GET /incidents answer (and the console shows).
            if status is None:
                with pytest.raises(NotFound):
                    await incident_detail(rt, incident)
            else:
                assert (await incident_detail(rt, incident)).status == status, state
                listed = {
                    i.incident_id: i.status
                    for i in await list_incidents(rt, status=None, limit=100)
                }
                assert listed[incident] == status, state
            # What `durable-ir incidents list/show` answer (they open the database themselves).
            if not database_url.startswith("memory"):
                url = ("--database-url", database_url)
                code, shown = await cli_json(capsys, "show", incident, *url)
                if status is None:
                    assert code == EXIT_NOT_FOUND, state
                else:
                    assert code == EXIT_OK and shown["run_status"] == status, (state, shown)
                    code, rows = await cli_json(capsys, "list", "--limit", "100", *url)
                    by_id = {r["incident_id"]: r["run_status"] for r in rows}
                    assert by_id[incident] == status, state
            before = await rt.history(incident)
            if decide_error is None:
                continue
            with pytest.raises(decide_error):
                await rt.decide(incident, Approve(by="mallory"))
            assert await rt.history(incident) == before, state  # nothing written

        # The one state that accepts a decision does, once.
        assert (await rt.decide(ids["awaiting_approval"], Approve(by="alice"))).applied
        gate.release.set()
        await asyncio.wait_for(run, 30)


# -- 4. raw resumes that bypass decide() change nothing --------------------------------------


@pytest.mark.parametrize(
    "value",
    ["approve", {"decisions": [{"type": "approve"}]}, {"approval_id": "x"}, 0, None],
    ids=["text", "hitl-shape", "forged-id", "zero", "none"],
)
async def test_a_raw_resume_changes_nothing(
    database_url: str, counter_dir: Path, value: Any
) -> None:
    """``Command(resume=...)`` sent to the compiled graph directly: our
    ``DecisionNotRecorded`` — or, for ``resume=None``, LangGraph's own ``UnboundLocalError``
    raised before any node runs (documented in docs/approvals.md) — and the incident still
    waits, decidable as before."""
    incident = new_id()
    async with open_runtime(database_url) as rt:
        graph = build_graph(counter_dir)
        await rt.start(graph, P1, incident_id=incident)
        compiled = rt.graphs.get("incident").compiled
        config = rt.config_for(incident)
        expected: tuple[type[BaseException], ...] = (
            (UnboundLocalError,) if value is None else (DecisionNotRecorded,)
        )
        with pytest.raises(expected):
            await compiled.ainvoke(Command(resume=value), config, durability="sync")
        (record,) = await rt.history(incident)
        assert record.is_pending
        assert (await rt.get(incident)).status == "awaiting_approval"
        assert Counters(counter_dir).read(incident)["apply"] == 0
        assert (await rt.decide(incident, Approve(by="alice"))).applied
        assert Counters(counter_dir).read(incident)["apply"] == 1
