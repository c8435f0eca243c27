"""The metrics count what happened (prometheus-client's default registry, read back by
sample): decisions by kind and decider type, conflicts, expiries and the pending gauges a
sweep refreshes, alert intake outcomes, run failures, the outbox, analyzer errors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from durable_ir import Approve, Conflict, FixedClock, InvalidInput, open_runtime
from durable_ir.notifications import IncidentEvent, send_once
from durable_ir.sla import SlaMonitor
from support.graphs import build_graph
from support.incident_parts import ALERT

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Counted:
    """Differences of metric samples across a block."""

    def __init__(self, *samples: tuple[str, dict[str, str]]) -> None:
        self.samples = samples
        self.before = [value(n, **labels) for n, labels in samples]

    def deltas(self) -> list[float]:
        pairs = zip(self.samples, self.before, strict=True)
        return [value(name, **labels) - b for (name, labels), b in pairs]


async def test_decisions_conflicts_expiries_and_pending_gauges(
    database_url: str, counter_dir: Path
) -> None:
    clock = FixedClock(T0)
    graph = build_graph(counter_dir)
    approved, expired = f"m-{uuid.uuid4().hex[:8]}", f"m-{uuid.uuid4().hex[:8]}"
    counted = Counted(
        ("durable_ir_decisions_total", {"kind": "approved", "decider_type": "human"}),
        ("durable_ir_decisions_total", {"kind": "expired", "decider_type": "system:sla"}),
        ("durable_ir_decision_conflicts_total", {}),
        ("durable_ir_expiries_total", {}),
        ("durable_ir_approval_wait_seconds_count", {"decider_type": "human"}),
        ("durable_ir_decide_seconds_count", {}),
    )
    async with open_runtime(database_url, clock=clock) as rt:
        for incident in (approved, expired):
            await rt.start(graph, {"alert": {"severity": "P0"}}, incident_id=incident)
        clock.advance(minutes=5)
        await SlaMonitor(rt).sweep()  # nothing due yet: refreshes the gauges
        version = rt.graphs.get("incident").version
        assert value("durable_ir_pending_approvals", severity="P0", graph_version=version) >= 2
        # P0 deadlines are 15 minutes after T0.
        nearest = value("durable_ir_nearest_deadline_timestamp_seconds", severity="P0")
        assert nearest == pytest.approx((T0 + timedelta(minutes=15)).timestamp())
        assert value("durable_ir_sla_last_sweep_timestamp_seconds") == clock().timestamp()

        await rt.decide(approved, Approve(by="alice"))
        with pytest.raises(Conflict):
            await rt.decide(approved, Approve(by="bob"))
        clock.advance(minutes=20)
        report = await SlaMonitor(rt).sweep()
        assert [r.incident_id for r in report.expired] == [expired]
    assert counted.deltas() == [1, 1, 1, 1, 1, 1]  # decide_seconds: the decide that worked


async def test_alert_intake_outcomes(database_url: str, counter_dir: Path) -> None:
    graph = build_graph(counter_dir)
    fingerprint = uuid.uuid4().hex
    alert = {**ALERT, "fingerprint": fingerprint}
    outcomes = ("received", "opened", "deduplicated", "refused", "resolved")
    counted = Counted(*(("durable_ir_alerts_total", {"outcome": o}) for o in outcomes))
    async with open_runtime(database_url) as rt:
        await rt.ingest(graph, alert)
        await rt.ingest(graph, alert)  # the same fingerprint: attached
        with pytest.raises(InvalidInput):
            await rt.ingest(graph, {"name": "no fired_at"})
        await rt.ingest(graph, {**alert, "status": "resolved"})
    assert counted.deltas() == [4, 1, 1, 1, 1]


async def test_run_failures_and_analyzer_and_outbox(tmp_path: Path) -> None:
    class Flaky:
        name = "flaky"

        def __init__(self) -> None:
            self.fail = True

        async def notify(self, event: IncidentEvent) -> dict[str, Any] | None:
            if self.fail:
                raise ConnectionError("channel down")
            return {"ok": True}

    counted = Counted(
        ("durable_ir_notifications_total", {"channel": "flaky", "result": "failed"}),
        ("durable_ir_notifications_total", {"channel": "flaky", "result": "sent"}),
        ("durable_ir_notifications_total", {"channel": "flaky", "result": "repeated"}),
        ("durable_ir_integration_errors_total", {"integration": "flaky"}),
    )
    async with open_runtime(f"sqlite:///{tmp_path / 'm.db'}") as rt:
        event = IncidentEvent(
            kind="escalated", incident_id="inc-m", severity="P1", title="t", at=T0
        )
        channel = Flaky()
        assert (await send_once(rt.store.ledger, channel, event)).error
        channel.fail = False
        assert (await send_once(rt.store.ledger, channel, event)).result == {"ok": True}
        assert (await send_once(rt.store.ledger, channel, event)).repeated
    assert counted.deltas() == [1, 1, 1, 1]


async def test_a_run_that_raises_is_counted(tmp_path: Path) -> None:
    from langgraph.graph import END, START, StateGraph

    from support.graphs import IncidentState

    def broken(state: Any) -> dict[str, Any]:
        raise RuntimeError("node broke")

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(IncidentState)
    builder.add_node("broken", broken)
    builder.add_edge(START, "broken")
    builder.add_edge("broken", END)
    before = value("durable_ir_run_failures_total")
    async with open_runtime(f"sqlite:///{tmp_path / 'f.db'}") as rt:
        with pytest.raises(RuntimeError):
            await rt.start(builder, {}, incident_id="inc-f")
    assert value("durable_ir_run_failures_total") - before == 1
