"""Run leases: every owed run holds one, a heartbeat keeps it, an expired one is taken over by
any runtime (once), and a run that keeps failing is stopped and escalated — never a crash loop.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from durable_ir import Approve, FixedClock, InvalidInput, open_runtime, open_store
from durable_ir.ledger import ApprovalLedger
from durable_ir.ledger.base import DecisionWrite
from durable_ir.records import ApprovalStatus, NewApproval, NewIncident, RunLease
from support.incident_parts import ALERT, build_incident_graph, lines
from support.processes import finish
from support.processes import incident_worker as worker

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@asynccontextmanager
async def open_ledger(url: str) -> AsyncIterator[ApprovalLedger]:
    async with open_store(url) as store:
        yield store.ledger


# --- the ledger's lease operations, on every backend -------------------------------------


def _incident(incident_id: str, lease: RunLease | None) -> NewIncident:
    return NewIncident(incident_id=incident_id, graph="g", opened_at=T0, lease=lease)


async def test_open_claim_extend_settle_fail(database_url: str) -> None:
    async with open_ledger(database_url) as ledger:
        await ledger.open_incident(_incident("a", RunLease("w1", T0 + timedelta(seconds=30))))
        await ledger.open_incident(_incident("b", RunLease(None, T0 + timedelta(seconds=60))))
        await ledger.open_incident(_incident("paused", None))
        row = await ledger.get_incident("a")
        assert row is not None and row.lease_owner == "w1"
        assert row.lease_expires_at == T0 + timedelta(seconds=30)

        # Nothing has expired yet.
        mine = RunLease("w2", T0 + timedelta(seconds=130))
        assert await ledger.claim_expired_runs(T0 + timedelta(seconds=29), mine, 10) == []
        # The heartbeat moves a's expiry; it does not give a lease to a paused incident.
        extended = await ledger.extend_leases(["a", "paused"], "w1", T0 + timedelta(seconds=90))
        assert extended == 1
        # Nor does it take back a lease another worker claimed (a paused worker waking up).
        assert await ledger.extend_leases(["a"], "zombie", T0 + timedelta(seconds=95)) == 0
        row = await ledger.get_incident("a")
        assert row is not None and row.lease_owner == "w1"
        assert row.lease_expires_at == T0 + timedelta(seconds=90)
        assert (await ledger.get_incident("paused")).lease_expires_at is None  # type: ignore[union-attr]

        claimed = await ledger.claim_expired_runs(T0 + timedelta(seconds=61), mine, 10)
        assert [r.incident_id for r in claimed] == ["b"]
        assert claimed[0].lease_owner == "w2"
        # Claimed: not claimable again until it expires once more.
        assert await ledger.claim_expired_runs(T0 + timedelta(seconds=61), mine, 10) == []
        assert [r.incident_id for r in await ledger.leased_incidents(10)] == ["a", "b"]

        assert await ledger.count_run_attempt("b") == 1
        assert await ledger.count_run_attempt("b") == 2
        await ledger.fail_run("b", "RuntimeError: boom", T0 + timedelta(seconds=200))
        row = await ledger.get_incident("b")
        assert (
            row is not None and row.lease_owner is None and row.last_error == "RuntimeError: boom"
        )
        assert row.run_attempts == 2 and row.lease_expires_at == T0 + timedelta(seconds=200)

        await ledger.settle_run("b", T0 + timedelta(seconds=201))
        row = await ledger.get_incident("b")
        assert row is not None and row.lease_expires_at is None and row.lease_owner is None
        assert row.run_attempts == 0 and row.last_error is None
        assert row.started_at == T0 + timedelta(seconds=201)

        closed = await ledger.close_incident("a", "resolved", T0 + timedelta(seconds=300))
        assert closed is not None and closed.lease_expires_at is None and closed.lease_owner is None
        assert await ledger.leased_incidents(10) == []


async def test_a_decision_leases_its_run_and_recovery_of_unapplied_skips_leased(
    database_url: str,
) -> None:
    async with open_ledger(database_url) as ledger:
        await ledger.open_incident(_incident("inc-1", None))
        await ledger.register(_approval("ap-1", "inc-1"))
        won, _ = await ledger.record_decision(
            "ap-1",
            DecisionWrite(ApprovalStatus.APPROVED, "alice", T0, None),
            RunLease("w1", T0 + timedelta(seconds=30)),
        )
        assert won
        row = await ledger.get_incident("inc-1")
        assert row is not None and row.lease_owner == "w1"
        # Lease recovery owns it (counting attempts); plain unapplied-decision recovery not.
        assert await ledger.unapplied() == []
        await ledger.settle_run("inc-1", T0)
        assert [r.approval_id for r in await ledger.unapplied()] == ["ap-1"]


async def test_expiry_leases_the_run_that_escalates(database_url: str) -> None:
    async with open_ledger(database_url) as ledger:
        await ledger.open_incident(_incident("inc-1", None))
        await ledger.register(_approval("ap-1", "inc-1"))
        lease = RunLease("monitor", T0 + timedelta(hours=2))
        expired = await ledger.expire_due(T0 + timedelta(hours=1), 10, "system:sla", _why, lease)
        assert [r.approval_id for r in expired] == ["ap-1"]
        row = await ledger.get_incident("inc-1")
        assert row is not None and row.lease_owner == "monitor"


def _why(_: object) -> str:
    return "deadline passed"


def _approval(approval_id: str, incident_id: str) -> NewApproval:
    return NewApproval(
        approval_id=approval_id,
        incident_id=incident_id,
        graph="g",
        node="approval",
        request={"plan": {}},
        severity="P1",
        requested_at=T0,
        deadline_at=T0 + timedelta(minutes=30),
    )


@pytest.mark.parametrize(
    "lease",
    [
        RunLease("", T0),
        RunLease("w1", datetime(2026, 3, 1, 12, 0)),  # naive
    ],
)
async def test_a_malformed_lease_is_refused_and_writes_nothing(
    lease: RunLease, tmp_path: Path
) -> None:
    async with open_ledger(f"sqlite:///{tmp_path / 'l.db'}") as ledger:
        with pytest.raises(InvalidInput):
            await ledger.open_incident(_incident("inc-1", lease))
        assert await ledger.get_incident("inc-1") is None


@pytest.mark.postgres
async def test_concurrent_claimers_split_the_expired_runs(postgres_url: str) -> None:
    async with open_ledger(postgres_url) as first, open_ledger(postgres_url) as second:
        for n in range(40):
            await first.open_incident(_incident(f"inc-{n:02}", RunLease("dead", T0)))
        later = T0 + timedelta(seconds=1)

        async def claim(ledger: ApprovalLedger, owner: str) -> list[str]:
            taken: list[str] = []
            while batch := await ledger.claim_expired_runs(
                later, RunLease(owner, later + timedelta(minutes=5)), 3
            ):
                taken += [r.incident_id for r in batch]
            return taken

        a, b = await asyncio.gather(claim(first, "a"), claim(second, "b"))
        assert sorted(a + b) == [f"inc-{n:02}" for n in range(40)]
        assert not set(a) & set(b)


# --- the runtime: lease lifecycle, heartbeat, takeover, crash-loop bound ------------------


class Slow(TypedDict, total=False):
    done: bool
    outcome: dict[str, Any]


def slow_graph(seconds: float, gate: asyncio.Event | None = None) -> StateGraph[Any, Any, Any, Any]:
    """One node that takes ``seconds``, then waits for ``gate`` if there is one."""

    async def work(state: Slow) -> Slow:
        await asyncio.sleep(seconds)
        if gate is not None:
            await gate.wait()
        return {"done": True, "outcome": {"status": "resolved"}}

    graph = StateGraph(Slow)
    graph.add_node("work", work)
    graph.add_edge(START, "work")
    graph.add_edge("work", END)
    return graph


async def test_the_heartbeat_keeps_a_long_run_leased_so_no_one_takes_it_over(
    durable_url: str,
) -> None:
    async with (
        open_runtime(durable_url, lease_ttl=0.3) as runner,
        open_runtime(durable_url, lease_ttl=0.3) as other,
    ):
        # The run lasts until the test has looked four times, 1.2 s at least (4 leases' worth),
        # however slowly a busy machine runs the test itself.
        gate = asyncio.Event()
        graph = slow_graph(0, gate)
        other.register(graph)
        run = asyncio.create_task(runner.start(graph, {}, incident_id="inc-1"))
        seen: list[datetime] = []
        for _ in range(4):
            await asyncio.sleep(0.3)
            row = await runner.store.ledger.get_incident("inc-1")
            assert row is not None and row.lease_expires_at is not None
            seen.append(row.lease_expires_at)
            assert await other.recover_runs() == []
        assert seen == sorted(seen) and seen[-1] > seen[0]  # it moved
        gate.set()
        await run
        row = await runner.store.ledger.get_incident("inc-1")
        assert row is not None and row.outcome == "resolved" and row.lease_expires_at is None
        assert row.run_attempts == 0


async def test_a_paused_incident_holds_no_lease_and_a_decided_one_is_leased_until_it_ends(
    database_url: str, counter_dir: Path
) -> None:
    async with open_runtime(database_url) as rt:
        intake = await rt.ingest(build_incident_graph(counter_dir).build(), dict(ALERT))
        assert intake.snapshot is not None and intake.snapshot.status == "awaiting_approval"
        row = await rt.store.ledger.get_incident(intake.incident.incident_id)  # type: ignore[union-attr]
        assert row is not None and row.lease_expires_at is None and row.started_at is not None
        record = await rt.record_decision(row.incident_id, Approve(by="alice"))
        leased = await rt.store.ledger.get_incident(row.incident_id)
        assert leased is not None and leased.lease_owner == rt.leases.owner
        await rt.apply_decision(record)
        done = await rt.store.ledger.get_incident(row.incident_id)
        assert done is not None and not done.is_open and done.lease_expires_at is None


async def test_an_unstarted_incident_is_started_by_recovery_once_its_grace_is_over(
    database_url: str, counter_dir: Path
) -> None:
    clock = FixedClock(T0)
    async with open_runtime(database_url, clock=clock, unstarted_grace=60) as rt:
        graph = build_incident_graph(counter_dir).build()
        intake = await rt.ingest(graph, dict(ALERT), run=False)
        assert intake.incident is not None
        row = await rt.store.ledger.get_incident(intake.incident.incident_id)
        assert row is not None and row.lease_owner is None
        assert row.lease_expires_at == T0 + timedelta(seconds=60)
        assert await rt.recover_runs() == []  # its opener may still start it
        assert (await rt.get(row.incident_id)).status == "running"  # owed a run, not finished
        clock.advance(seconds=61)
        assert await rt.recover_runs() == [row.incident_id]
        assert (await rt.get(row.incident_id)).status == "awaiting_approval"


class Flaky(TypedDict, total=False):
    tries: int
    outcome: dict[str, Any]
    escalation: dict[str, Any]


def flaky_graph(
    failures: int, calls: list[str], *, with_escalate: bool
) -> StateGraph[Any, Any, Any, Any]:
    """``fix`` raises its first ``failures`` calls; ``escalate`` records the reason."""

    def fix(state: Flaky) -> Flaky:
        calls.append("fix")
        if calls.count("fix") <= failures:
            raise RuntimeError(f"fix failed (call {calls.count('fix')})")
        return {"outcome": {"status": "resolved"}}

    def escalate(state: Flaky) -> Flaky:
        calls.append("escalate")
        return {"outcome": {"status": "escalated", "reason": state["escalation"]["reason"]}}

    graph = StateGraph(Flaky)
    graph.add_node("fix", fix)
    graph.add_edge(START, "fix")
    graph.add_edge("fix", END)
    if with_escalate:
        graph.add_node("escalate", escalate)
        graph.add_edge("escalate", END)
    return graph


async def test_a_failed_run_is_retried_by_recovery_after_its_delay(database_url: str) -> None:
    clock = FixedClock(T0)
    calls: list[str] = []
    async with open_runtime(database_url, clock=clock, lease_ttl=30) as rt:
        graph = flaky_graph(1, calls, with_escalate=True)
        with pytest.raises(RuntimeError, match="call 1"):
            await rt.start(graph, {}, incident_id="inc-1")
        row = await rt.store.ledger.get_incident("inc-1")
        assert row is not None and row.is_open and row.lease_owner is None
        assert row.last_error == "RuntimeError: fix failed (call 1)"
        assert await rt.recover() == [] and calls == ["fix"]  # not due yet
        clock.advance(seconds=31)
        assert await rt.recover_runs() == ["inc-1"]
        row = await rt.store.ledger.get_incident("inc-1")
        assert row is not None and row.outcome == "resolved" and row.last_error is None
        assert calls == ["fix", "fix"]


@pytest.mark.parametrize("with_escalate", [True, False], ids=["escalate-node", "no-escalate"])
async def test_a_run_that_keeps_failing_is_stopped_after_max_attempts(
    database_url: str, with_escalate: bool
) -> None:
    clock = FixedClock(T0)
    calls: list[str] = []
    async with open_runtime(database_url, clock=clock, lease_ttl=10, max_run_attempts=3) as rt:
        graph = flaky_graph(100, calls, with_escalate=with_escalate)
        with pytest.raises(RuntimeError):
            await rt.start(graph, {}, incident_id="inc-1")
        for attempt in (1, 2, 3):
            clock.advance(seconds=11)
            assert await rt.recover_runs() == []  # taken over, failed again (logged)
            row = await rt.store.ledger.get_incident("inc-1")
            assert row is not None and row.run_attempts == attempt and row.is_open
        assert calls == ["fix"] * 4
        clock.advance(seconds=11)
        assert await rt.recover_runs() == ["inc-1"]  # the fourth takeover gives up
        row = await rt.store.ledger.get_incident("inc-1")
        assert row is not None and not row.is_open and row.lease_expires_at is None
        state = (await rt.get("inc-1")).values
        if with_escalate:
            assert calls == ["fix"] * 4 + ["escalate"]
            assert row.outcome == "escalated"
            assert state["escalation"]["reason"] == "crash_loop"
            assert "RuntimeError: fix failed (call 4)" in state["escalation"]["detail"]
        else:
            assert calls == ["fix"] * 4
            assert row.outcome == "crash_loop"
        clock.advance(seconds=11)
        assert await rt.recover_runs() == [] and len(calls) == 4 + with_escalate


@pytest.mark.slow
async def test_a_step_that_kills_its_worker_every_time_is_escalated_after_three_takeovers(
    durable_url: str, counter_dir: Path
) -> None:
    """The crash loop with real deaths: apply's step 3 SIGKILLs every process that runs it.
    Three start-up recoveries die there too; the fourth stops the run and escalates it."""
    incident = f"inc-{uuid.uuid4().hex[:8]}"
    args = [durable_url, str(counter_dir), "--kill-before-step", "3"]
    child = worker("approve", *args[:2], incident, *args[2:])
    assert "paused" in child.read()
    assert finish(child) == -signal.SIGKILL
    for _ in range(3):
        assert finish(worker("recover", *args)) == -signal.SIGKILL
    recovering = worker("recover", *args)
    assert recovering.read() == {"recovered": []}
    assert finish(recovering) == 0

    # Steps 1 and 2 ran once; step 3 never completed; nothing was applied twice.
    assert lines(counter_dir / f"{incident}.log") == [
        "apply 1 scale checkout-1",
        "apply 2 scale checkout-2",
    ]
    async with open_runtime(durable_url) as rt:
        rt.register(build_incident_graph(counter_dir, step_count=4).build())
        row = await rt.store.ledger.get_incident(incident)
        assert row is not None and row.outcome == "escalated" and row.lease_expires_at is None
        escalation = (await rt.get(incident)).values["escalation"]
        assert escalation["reason"] == "crash_loop"
        assert "apply" in escalation["detail"] and "3 recovery attempts" in escalation["detail"]


class SaverDies(Exception):
    """The process dying between a task's saved writes and the next checkpoint."""


async def test_a_run_that_died_between_saved_writes_and_its_checkpoint_is_continued(
    durable_url: str, counter_dir: Path
) -> None:
    """LangGraph saved ``ingest``'s writes but not the checkpoint after it: ``next`` is empty
    while the task is still pending. Recovery must continue the run, not close it."""
    graph = build_incident_graph(counter_dir).build()
    async with open_runtime(durable_url) as rt:
        saver = rt.store.checkpointer
        original = saver.aput
        calls = 0

        async def aput(*args: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 2:  # the checkpoint after ingest (its writes are already stored)
                raise SaverDies("gone")
            return await original(*args)

        saver.aput = aput  # type: ignore[method-assign]
        with pytest.raises(SaverDies):
            await rt.start(graph, {"alert": dict(ALERT)}, incident_id="inc-1")
        saver.aput = original  # type: ignore[method-assign]
        state = await rt.graphs.get("incident").compiled.aget_state(rt.config_for("inc-1"))
        assert state.next == () and state.tasks  # the shape that looked "finished"
        assert (await rt.get("inc-1")).status == "running"

        assert await rt.recover_runs(all_leased=True) == ["inc-1"]
        snapshot = await rt.get("inc-1")
        assert snapshot.status == "awaiting_approval", snapshot.status
        row = await rt.store.ledger.get_incident("inc-1")
        assert row is not None and row.is_open


def test_owner_is_gone_only_for_a_dead_process_on_this_host() -> None:
    import socket
    import subprocess

    from durable_ir.leases import owner_is_gone, worker_id

    dead_pid = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_pid.wait()
    host = socket.gethostname()[:60]
    assert owner_is_gone(f"{host}:{dead_pid.pid}:abcd1234")
    assert not owner_is_gone(worker_id())  # this process
    assert not owner_is_gone(f"{host}:1:abcd1234")  # alive (init), not ours to signal
    assert not owner_is_gone(f"another-host:{dead_pid.pid}:abcd1234")  # cannot tell
    assert not owner_is_gone("my-own-worker-name")


async def test_start_up_recovery_leaves_a_live_runtimes_fresh_lease_alone(
    durable_url: str,
) -> None:
    """Another runtime in this process holds a fresh lease on an incident but (having lost
    its lock's session, say) no lock: start-up recovery must not take the run from it."""
    async with open_runtime(durable_url) as live, open_runtime(durable_url) as starting:
        graph = slow_graph(0)
        starting.register(graph)
        live.register(graph)
        await live.store.ledger.open_incident(
            NewIncident("inc-1", "incident", live.clock(), alert={}, lease=live.leases.lease())
        )
        assert await starting.recover_runs(all_leased=True) == []
        # The same lease, once its owner missed a heartbeat, is taken over.
        await live.store.ledger.extend_leases(["inc-1"], live.leases.owner, live.clock())
        assert await starting.recover_runs(all_leased=True) == ["inc-1"]


async def test_an_incident_whose_checkpoints_vanished_is_closed_not_started_again(
    database_url: str, counter_dir: Path
) -> None:
    clock = FixedClock(T0)
    async with open_runtime(database_url, clock=clock, lease_ttl=10) as rt:
        graph = build_incident_graph(counter_dir).build()
        intake = await rt.ingest(graph, dict(ALERT))
        assert intake.incident is not None
        incident_id = intake.incident.incident_id
        await rt.store.checkpointer.adelete_thread(incident_id)  # deleted behind its back
        await rt.decide(incident_id, Approve(by="alice"))  # nothing to resume: no run starts
        clock.advance(seconds=11)
        await rt.recover()
        row = await rt.store.ledger.get_incident(incident_id)
        assert row is not None and row.outcome == "state_missing"
        assert lines(counter_dir / f"{incident_id}.log") == []  # no remediation, no new run
