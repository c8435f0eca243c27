"""The full incident graph, every path, on SQLite and PostgreSQL: resolved, rejected, expired,
RCA exhausted, apply failed with rollback, verification failed — plus the paths that never
reach an approver (plan refused, dry run failed) and the auto-approve policy."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig

from durable_ir import (
    AUTO_APPROVE_IDENTITY,
    Approve,
    AutoApprove,
    ConfigurationError,
    Edit,
    FixedClock,
    IncidentGraphBuilder,
    InvalidDecision,
    Reject,
    Runtime,
    SlaMonitor,
    open_runtime,
)
from durable_ir.remediation import StepAction, StepContext, StepResult
from support.incident_parts import (
    ALERT,
    ALLOW,
    FileExecutor,
    FixedVerifier,
    OneEventGatherer,
    ScriptedAnalyzer,
    build_incident_graph,
    fired_at,
    lines,
)

pytestmark = pytest.mark.usefixtures("counter_dir")


def log_of(directory: Path, incident: str = "inc-1") -> list[str]:
    return lines(directory / f"{incident}.log")


async def start(rt: Runtime, builder: IncidentGraphBuilder, incident: str = "inc-1") -> Any:
    return await rt.start(builder.build(), {"alert": ALERT}, incident_id=incident)


async def finished(rt: Runtime, incident: str = "inc-1") -> dict[str, Any]:
    snapshot = await rt.get(incident)
    assert snapshot.status == "finished", snapshot
    record = await rt.store.ledger.get_incident(incident)
    assert record is not None and record.status == "closed"
    assert record.outcome == snapshot.values["outcome"]["status"]
    report = snapshot.values["report"]
    assert report["outcome"] == snapshot.values["outcome"]["status"]  # summary on every path
    return snapshot.values


async def test_resolved(durable_url: str, counter_dir: Path) -> None:
    async with open_runtime(durable_url) as rt:
        paused = await start(rt, build_incident_graph(counter_dir, step_count=2))
        assert paused.status == "awaiting_approval"
        request = paused.pending_approval.request
        args = request["action_requests"][0]["args"]
        assert [s["action"] for s in args["plan"]["steps"]] == ["scale", "scale"]
        assert [p["ok"] for p in args["dry_run"]] == [True, True]  # the approver sees it
        assert "confidence 0.90" in request["action_requests"][0]["description"]
        assert log_of(counter_dir) == []  # nothing touched production before approval

        await rt.decide("inc-1", Approve(by="alice"))
        values = await finished(rt)
    assert values["outcome"]["status"] == "resolved"
    assert log_of(counter_dir) == ["apply 1 scale checkout-1", "apply 2 scale checkout-2"]
    assert values["report"]["decision"]["decided_by"] == "alice"
    assert [e["stage"] for e in values["timeline"]] == [
        "ingest", "triage", "rca", "plan", "dry_run", "approval", "apply", "apply", "verify",
        "resolve", "summarize",
    ]  # fmt: skip


async def test_rejected(durable_url: str, counter_dir: Path) -> None:
    async with open_runtime(durable_url) as rt:
        await start(rt, build_incident_graph(counter_dir))
        await rt.decide("inc-1", Reject(by="bob", reason="not during the sale"))
        values = await finished(rt)
    assert values["outcome"] == values["outcome"] | {"status": "escalated", "reason": "rejected"}
    assert "not during the sale" in values["escalation"]["detail"]
    assert log_of(counter_dir) == []


async def test_expired(durable_url: str, counter_dir: Path) -> None:
    clock = FixedClock(fired_at())
    async with open_runtime(durable_url, clock=clock) as rt:
        paused = await start(rt, build_incident_graph(counter_dir))
        deadline = paused.pending_approval.deadline_at
        assert deadline - fired_at() == timedelta(hours=2)  # P1
        clock.advance(hours=2, seconds=1)
        report = await SlaMonitor(rt).sweep()
        assert [r.incident_id for r in report.expired] == ["inc-1"]
        values = await finished(rt)
    assert values["outcome"]["reason"] == "expired"
    assert values["approval"]["decided_by"] == "system:sla"
    assert log_of(counter_dir) == []


async def test_rca_exhausted(durable_url: str, counter_dir: Path) -> None:
    async with open_runtime(durable_url) as rt:
        snapshot = await start(rt, build_incident_graph(counter_dir, confidence=0.4))
        assert snapshot.status == "finished"
        values = await finished(rt)
        assert await rt.history("inc-1") == []  # nobody was asked to approve a guess
    assert values["rca"]["status"] == "exhausted" and values["rca"]["attempts"] == 3
    assert [a["window_s"] for a in values["rca_attempts"]] == [900, 3600, 21600]
    assert values["outcome"]["reason"] == "rca_exhausted"


async def test_apply_failed_rolls_back_in_reverse(durable_url: str, counter_dir: Path) -> None:
    async with open_runtime(durable_url) as rt:
        await start(rt, build_incident_graph(counter_dir, step_count=4, fail_step=3))
        await rt.decide("inc-1", Approve(by="alice"))
        values = await finished(rt)
    assert log_of(counter_dir) == [
        "apply 1 scale checkout-1",
        "apply 2 scale checkout-2",
        "fail 3 scale checkout-3",
        "rollback 2 scale checkout-2",
        "rollback 1 scale checkout-1",
    ]
    assert values["outcome"]["reason"] == "apply_failed"
    assert [r["number"] for r in values["rolled_back"]] == [2, 1]
    assert "verification" not in values


async def test_verification_failed(durable_url: str, counter_dir: Path) -> None:
    async with open_runtime(durable_url) as rt:
        await start(rt, build_incident_graph(counter_dir, verify_ok=False))
        await rt.decide("inc-1", Approve(by="alice"))
        values = await finished(rt)
    assert values["outcome"]["reason"] == "verification_failed"
    assert values["verification"]["readings"] == {"error_ratio": 0.12}
    assert len(log_of(counter_dir)) == 2


async def test_an_edited_plan_is_the_one_applied(counter_dir: Path) -> None:
    async with open_runtime("memory://") as rt:
        paused = await start(rt, build_incident_graph(counter_dir, step_count=2))
        plan = paused.pending_approval.request["action_requests"][0]["args"]["plan"]
        edited = {**plan, "steps": plan["steps"][:1]}
        with pytest.raises(InvalidDecision, match="not allowed"):
            bad = {**plan, "steps": [{"action": "drop_database", "target": "db"}]}
            await rt.decide("inc-1", Edit(by="alice", plan=bad))
        await rt.decide("inc-1", Edit(by="alice", plan=edited))
        values = await finished(rt)
    assert log_of(counter_dir) == ["apply 1 scale checkout-1"]
    assert values["approval"]["edited"] is True


async def test_a_plan_outside_the_allow_list_never_reaches_an_approver(counter_dir: Path) -> None:
    actions = [{"action": "drop_database", "target": "db"}]
    async with open_runtime("memory://") as rt:
        await start(rt, build_incident_graph(counter_dir, actions=actions))
        values = await finished(rt)
        assert await rt.history("inc-1") == []
    assert values["outcome"]["reason"] == "plan_refused"
    assert "drop_database" in values["escalation"]["detail"]


async def test_no_suggested_action_escalates(counter_dir: Path) -> None:
    async with open_runtime("memory://") as rt:
        await start(rt, build_incident_graph(counter_dir, actions=[]))
        values = await finished(rt)
    assert values["outcome"]["reason"] == "no_plan"


async def test_a_failed_dry_run_escalates_before_approval(counter_dir: Path) -> None:
    class PickyExecutor(FileExecutor):
        async def dry_run(self, step: StepAction, context: StepContext) -> StepResult:
            return StepResult(context.number != 2, f"{step.target} not found")

    builder = build_incident_graph(counter_dir)
    builder.parts.executor = PickyExecutor(counter_dir)
    async with open_runtime("memory://") as rt:
        await start(rt, builder)
        values = await finished(rt)
        assert await rt.history("inc-1") == []
    assert values["outcome"]["reason"] == "dry_run_failed"
    assert "step 2: checkout-2 not found" in values["escalation"]["detail"]


async def test_auto_approve_is_off_by_default_and_recorded_when_on(counter_dir: Path) -> None:
    read_only = [{"action": "snapshot", "target": "db"}]
    alert = {**ALERT, "severity": "P3"}
    async with open_runtime("memory://") as rt:
        off = build_incident_graph(counter_dir, actions=read_only)
        paused = await rt.start(off.build(), {"alert": alert}, incident_id="inc-off")
        assert paused.status == "awaiting_approval"

        on = build_incident_graph(counter_dir, actions=read_only, auto_approve=AutoApprove())
        done = await rt.start(on.build(), {"alert": alert}, incident_id="inc-on", graph_name="on")
        assert done.status == "finished"
        assert done.values["outcome"]["status"] == "resolved"
        (record,) = await rt.history("inc-on")
        assert record.decided_by == AUTO_APPROVE_IDENTITY and record.applied_at is not None
        assert "read_only" in (record.reason or "")

        risky = build_incident_graph(counter_dir, auto_approve=AutoApprove())  # scale: medium
        held = await rt.start(risky.build(), {"alert": alert}, incident_id="inc-risky",
                              graph_name="risky")  # fmt: skip
        assert held.status == "awaiting_approval"


async def test_nodes_can_be_inserted_replaced_and_wrapped(counter_dir: Path) -> None:
    seen: list[str] = []

    async def enrich(state: dict[str, Any]) -> dict[str, Any]:
        seen.append("enrich")
        return {"timeline": [{"at": "", "stage": "enrich", "event": "owner: payments"}]}

    async def triage(state: dict[str, Any]) -> dict[str, Any]:
        return {"severity": "P0", "triage": {"severity": "P0", "reason": "mine", "by": "rules"}}

    def traced(node: Any) -> Any:
        async def run(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
            seen.append("verify")
            return dict(await node(state, config))

        return run

    builder = build_incident_graph(counter_dir)
    builder.insert_after("triage", "enrich", enrich).replace("triage", triage)
    builder.wrap("verify", traced).insert_before("approval", "page_owner", enrich)
    assert builder.node_names.index("enrich") == builder.node_names.index("triage") + 1
    with pytest.raises(ConfigurationError, match="cannot be wrapped"):
        builder.wrap("approval", traced)
    with pytest.raises(ConfigurationError, match="routes to several"):
        builder.insert_after("approval", "x", enrich)
    with pytest.raises(ConfigurationError, match="already"):
        builder.insert_after("triage", "enrich", enrich)
    async with open_runtime("memory://") as rt:
        paused = await start(rt, builder)
        assert paused.pending_approval.severity == "P0"  # the replaced triage decided
        assert paused.pending_approval.deadline_at - paused.pending_approval.requested_at == (
            timedelta(minutes=15)
        )
        await rt.decide("inc-1", Approve(by="alice"))
        await finished(rt)
    assert seen == ["enrich", "enrich", "verify"]


def test_the_builder_refuses_incomplete_parts(counter_dir: Path) -> None:
    parts: dict[str, Any] = {
        "gatherer": OneEventGatherer(),
        "analyzer": ScriptedAnalyzer(0.9, []),
        "executor": FileExecutor(counter_dir),
        "allow_list": ALLOW,
    }
    with pytest.raises(ConfigurationError, match="verifier"):
        IncidentGraphBuilder(**parts)
    with pytest.raises(ConfigurationError, match="allow_list"):
        IncidentGraphBuilder(**{**parts, "allow_list": {"restart": "low"}},
                             verifier=FixedVerifier(True))  # fmt: skip
    with pytest.raises(ConfigurationError, match="executor"):
        IncidentGraphBuilder(**{**parts, "executor": object()}, verifier=FixedVerifier(True))


async def test_a_run_that_died_mid_stage_is_resumed_without_redoing_earlier_stages(
    durable_url: str, counter_dir: Path
) -> None:
    calls: list[str] = []
    crashed: list[bool] = []

    def crash_once(node: Any) -> Any:
        async def run(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
            if not crashed:
                crashed.append(True)
                raise RuntimeError("worker lost its database connection")
            return dict(await node(state, config))

        return run

    def counted(node: Any) -> Any:
        async def run(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
            calls.append("triage")
            return dict(await node(state, config))

        return run

    builder = build_incident_graph(counter_dir).wrap("plan", crash_once).wrap("triage", counted)
    async with open_runtime(durable_url) as rt:
        with pytest.raises(RuntimeError, match="lost its database"):
            await start(rt, builder)
        assert (await rt.get("inc-1")).status == "running"
        row = await rt.store.ledger.get_incident("inc-1")
        assert row is not None and row.is_open
        await rt.recover()  # the periodic pass leaves mid-stage runs alone
        assert (await rt.get("inc-1")).status == "running"

        await rt.recover(stalled=True)  # what a process does once at start-up
        resumed = await rt.get("inc-1")
        assert resumed.status == "awaiting_approval"
        assert calls == ["triage"]  # triage and the RCA loop were not run again
        assert await rt.recover_runs(all_leased=True) == []  # waiting for approval: no lease
        with pytest.deprecated_call():
            assert await rt.resume_stalled() == []
        await rt.decide("inc-1", Approve(by="alice"))
        await finished(rt)


async def test_a_planner_that_raises_escalates(counter_dir: Path) -> None:
    async def broken_planner(state: Any) -> Any:
        raise KeyError("runbook service unavailable")

    builder = build_incident_graph(counter_dir, planner=broken_planner)
    async with open_runtime("memory://") as rt:
        await start(rt, builder)
        values = await finished(rt)
    assert values["outcome"]["reason"] == "no_plan"
    assert "runbook service unavailable" in values["escalation"]["detail"]
