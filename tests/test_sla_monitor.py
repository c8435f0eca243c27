"""Guarantee 5: deadlines live in the database, expire exactly once, and escalate."""

from __future__ import annotations

import asyncio
import random
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from durable_ir import Approve, Conflict, FixedClock, Reject, SlaPolicy, open_runtime
from durable_ir.records import ApprovalRecord
from durable_ir.sla import Reminder, SlaMonitor
from support.graphs import PRE_PAUSE_NODES, Counters, build_graph
from support.processes import Worker

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
P0 = {"alert": {"severity": "P0"}}


def new_id() -> str:
    return f"inc-{uuid.uuid4()}"


async def test_overdue_approval_expires_once_and_escalates(
    database_url: str, counter_dir: Path
) -> None:
    clock = FixedClock(T0)
    incident = new_id()
    async with open_runtime(database_url, clock=clock) as rt:
        await rt.start(build_graph(counter_dir), P0, incident_id=incident)
        monitor = SlaMonitor(rt)

        clock.advance(minutes=14, seconds=59)
        early = await monitor.sweep()
        assert early.expired == [] and early.applied == []
        assert (await rt.get(incident)).status == "awaiting_approval"

        clock.advance(seconds=1)  # exactly the deadline
        report = await monitor.sweep()
        assert [r.incident_id for r in report.expired] == [incident]
        assert report.applied == [report.expired[0].approval_id] and report.deferred == []
        (record,) = await rt.history(incident)
        assert record.status.value == "expired"
        assert record.decided_by == "system:sla"
        assert record.decided_at == T0 + timedelta(minutes=15)
        assert record.reason is not None and "P0 approval deadline" in record.reason
        assert (T0 + timedelta(minutes=15)).isoformat() in record.reason
        assert record.applied_at is not None
        done = await rt.get(incident)
        assert done.status == "finished" and done.values["escalated"] is True

        clock.advance(hours=5)
        assert (await monitor.sweep()).expired == []  # never twice
        with pytest.raises(Conflict) as late:
            await rt.decide(incident, Approve(by="alice"))
        assert late.value.winner is not None and late.value.winner.decided_by == "system:sla"

    counts = Counters(counter_dir).read(incident)
    assert (counts["apply"], counts["escalate"], counts["finish"]) == (0, 1, 1)
    assert all(counts[node] == 1 for node in PRE_PAUSE_NODES)


async def test_a_human_decision_that_came_first_stands(
    database_url: str, counter_dir: Path
) -> None:
    clock = FixedClock(T0)
    decided, overdue = new_id(), new_id()
    async with open_runtime(database_url, clock=clock) as rt:
        graph = build_graph(counter_dir)
        await rt.start(graph, P0, incident_id=decided)
        await rt.start(graph, P0, incident_id=overdue)
        await rt.decide(decided, Reject(by="bob", reason="not that"))
        clock.advance(hours=1)
        report = await SlaMonitor(rt).sweep()
        assert [r.incident_id for r in report.expired] == [overdue]
        (record,) = await rt.history(decided)
        assert record.decided_by == "bob"


async def test_deadlines_follow_severity_graph_policy_and_incident_override(
    database_url: str, counter_dir: Path
) -> None:
    from durable_ir import approval_node
    from support.graphs import validate_plan

    clock = FixedClock(T0)
    async with open_runtime(database_url, clock=clock) as rt:
        default = await rt.start(
            build_graph(counter_dir), {"alert": {"severity": "P1"}}, incident_id=new_id()
        )
        assert default.pending_approval is not None
        assert default.pending_approval.deadline_at == T0 + timedelta(hours=2)

        strict = approval_node(
            validate_plan=validate_plan, sla=SlaPolicy(windows={"P1": timedelta(minutes=30)})
        )
        per_graph = await rt.start(
            build_graph(counter_dir, strict),
            {"alert": {"severity": "P1"}},
            incident_id=new_id(),
            graph_name="strict",
        )
        assert per_graph.pending_approval is not None
        assert per_graph.pending_approval.deadline_at == T0 + timedelta(minutes=30)

        per_incident = await rt.start(
            build_graph(counter_dir),
            {"alert": {"severity": "P1"}, "approval_window_s": 90},
            incident_id=new_id(),
        )
        assert per_incident.pending_approval is not None
        assert per_incident.pending_approval.deadline_at == T0 + timedelta(seconds=90)


async def test_reminders_fire_once_each_before_expiry(database_url: str, counter_dir: Path) -> None:
    clock = FixedClock(T0)
    policy = SlaPolicy(
        reminders=(Reminder(0.5), Reminder(0.8, "oncall-leads")), escalate_to="oncall-secondary"
    )
    sent: list[tuple[str, str]] = []

    async def remind(record: ApprovalRecord, reminder: Reminder) -> None:
        sent.append((record.incident_id, reminder.channel))

    incident = new_id()
    async with open_runtime(database_url, clock=clock, sla=policy) as rt:
        await rt.start(build_graph(counter_dir), P0, incident_id=incident)
        monitor = SlaMonitor(rt, on_reminder=remind)
        assert (await monitor.sweep()).reminded == []
        clock.advance(minutes=7, seconds=30)  # 50 % of 15 min
        assert len((await monitor.sweep()).reminded) == 1
        assert (await monitor.sweep()).reminded == []  # once
        clock.advance(minutes=5)  # 83 %
        assert len((await monitor.sweep()).reminded) == 1
        clock.advance(minutes=5)
        report = await monitor.sweep()
        assert report.reminded == [] and len(report.expired) == 1
        assert report.expired[0].reason is not None
        assert "escalating to oncall-secondary" in report.expired[0].reason
    assert sent == [(incident, "approvers"), (incident, "oncall-leads")]


async def test_missed_reminders_are_not_sent_in_a_burst(
    database_url: str, counter_dir: Path
) -> None:
    clock = FixedClock(T0)
    policy = SlaPolicy(reminders=(Reminder(0.25), Reminder(0.5), Reminder(0.75)))
    sent: list[str] = []

    async def remind(record: ApprovalRecord, reminder: Reminder) -> None:
        sent.append(reminder.channel + f"@{reminder.at}")

    async with open_runtime(database_url, clock=clock, sla=policy) as rt:
        await rt.start(build_graph(counter_dir), P0, incident_id=new_id())
        clock.advance(minutes=12)  # 80 %: the monitor was down for the first three steps
        await SlaMonitor(rt, on_reminder=remind).sweep()
        await SlaMonitor(rt, on_reminder=remind).sweep()
    assert sent == ["approvers@0.75"]


async def test_run_loop_expires_in_the_background_and_stops_cleanly(
    database_url: str, counter_dir: Path
) -> None:
    clock = FixedClock(T0)
    incident = new_id()
    async with open_runtime(database_url, clock=clock) as rt:
        await rt.start(build_graph(counter_dir), P0, incident_id=incident)
        task = asyncio.create_task(SlaMonitor(rt, interval=0.02).run())
        clock.advance(minutes=20)
        for _ in range(500):
            if (await rt.get(incident)).status == "finished":
                break
            await asyncio.sleep(0.01)
        assert (await rt.get(incident)).values["escalated"] is True
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert Counters(counter_dir).read(incident)["escalate"] == 1


def test_bad_monitor_settings_are_refused() -> None:
    from durable_ir import ConfigurationError

    with pytest.raises(ConfigurationError):
        SlaMonitor(None, interval=0)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        SlaMonitor(None, batch=0)  # type: ignore[arg-type]


async def test_monitor_in_another_process_expires_an_orphaned_pause(
    durable_url: str, counter_dir: Path
) -> None:
    """The process that paused the incident is gone; a monitor elsewhere escalates it."""
    incident = new_id()
    child = Worker("start", durable_url, incident, str(counter_dir))
    try:
        assert "paused" in child.read()
        child.proc.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        child.kill()
        child.close()
    sweeper = Worker("sweeper", durable_url, str(counter_dir))
    try:
        assert sweeper.read() == {"ready": True}
        later = datetime.now(UTC) + timedelta(hours=3)
        sweeper.send({"now": later.isoformat(), "at": time.time()})
        assert len(sweeper.read()["expired"]) == 1
    finally:
        sweeper.close()
    counts = Counters(counter_dir).read(incident)
    assert (counts["escalate"], counts["apply"], counts["finish"]) == (1, 0, 1)


@pytest.mark.slow
async def test_three_monitor_processes_expire_each_of_200_once(
    durable_url: str, counter_dir: Path
) -> None:
    incidents = [f"sweep-{i}-{uuid.uuid4()}" for i in range(200)]
    async with open_runtime(durable_url) as rt:
        graph = build_graph(counter_dir)
        for incident in incidents:
            await rt.start(graph, P0, incident_id=incident)
    sweepers = [Worker("sweeper", durable_url, str(counter_dir)) for _ in range(3)]
    try:
        for worker in sweepers:
            assert worker.read() == {"ready": True}
        later = datetime.now(UTC) + timedelta(hours=3)
        at = time.time() + 0.3
        for worker in sweepers:
            worker.send({"now": later.isoformat(), "at": at})
        results = [worker.read(timeout=240)["expired"] for worker in sweepers]
    finally:
        for worker in sweepers:
            worker.close()
    expired = [approval for result in results for approval in result]
    assert len(expired) == 200 and len(set(expired)) == 200
    print("expired per monitor:", [len(r) for r in results])
    async with open_runtime(durable_url) as rt:
        rt.register(build_graph(counter_dir))
        for incident in incidents:
            (record,) = await rt.history(incident)
            assert record.status.value == "expired" and record.applied_at is not None
    for incident in incidents:
        counts = Counters(counter_dir).read(incident)
        assert (counts["escalate"], counts["apply"]) == (1, 0), (incident, counts)


@pytest.mark.slow
async def test_approve_racing_expiry_fifty_times(durable_url: str, counter_dir: Path) -> None:
    decider = Worker("decider", durable_url, str(counter_dir))
    sweeper = Worker("sweeper", durable_url, str(counter_dir))
    outcomes: set[str] = set()
    try:
        assert decider.read() == {"ready": True} and sweeper.read() == {"ready": True}
        async with open_runtime(durable_url) as rt:
            graph = build_graph(counter_dir)
            for _ in range(50):
                incident = new_id()
                await rt.start(graph, P0, incident_id=incident)
                later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
                at = time.time() + 0.1
                # Jitter, so that both sides win some rounds on every backend.
                decider.send(
                    {
                        "incident": incident,
                        "decision": {"type": "approve", "by": "alice"},
                        "at": at + random.uniform(-0.01, 0.01),
                    }
                )
                sweeper.send({"now": later, "at": at})
                approved, swept = decider.read(), sweeper.read()
                if "won" in approved:
                    assert swept["expired"] == []
                    outcomes.add("approved")
                else:
                    assert approved["conflict"]["decided_by"] == "system:sla"
                    assert len(swept["expired"]) == 1
                    outcomes.add("expired")
                (record,) = await rt.history(incident)
                assert record.applied_at is not None
                counts = Counters(counter_dir).read(incident)
                assert counts["apply"] + counts["escalate"] == 1, counts
                assert counts["finish"] == 1
    finally:
        decider.close()
        sweeper.close()
    print("outcomes seen:", sorted(outcomes))


async def test_monitor_works_with_a_users_own_checkpointer(
    tmp_path: Path, counter_dir: Path
) -> None:
    """Graph state in the team's own saver (here a subclass), ledger in SQLite."""
    from langgraph.checkpoint.memory import InMemorySaver

    class TeamSaver(InMemorySaver):
        pass

    clock = FixedClock(T0)
    saver = TeamSaver()
    incident = new_id()
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    async with open_runtime(url, clock=clock, checkpointer=saver) as rt:
        assert rt.store.checkpointer is saver
        await rt.start(build_graph(counter_dir), P0, incident_id=incident)
        assert [t async for t in saver.alist({"configurable": {"thread_id": incident}})]
        clock.advance(hours=1)
        report = await SlaMonitor(rt).sweep()
        assert [r.incident_id for r in report.expired] == [incident]
        assert (await rt.get(incident)).values["escalated"] is True
