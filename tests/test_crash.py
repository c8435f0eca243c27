"""Guarantees 1 and 3: a pause survives SIGKILL, and a recorded decision is never lost."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

from durable_ir import Approve, open_runtime
from support.graphs import PRE_PAUSE_NODES, Counters, build_graph
from support.processes import Worker


async def test_pause_survives_sigkill_and_resumes_in_a_new_process(
    durable_url: str, counter_dir: Path
) -> None:
    incident = f"inc-{uuid.uuid4()}"
    child = Worker("start", durable_url, incident, str(counter_dir))
    try:
        paused = child.read()
        assert "paused" in paused
        child.proc.send_signal(signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL
    finally:
        child.kill()
        child.close()

    # This process never ran the graph: it has only the URL and the incident id.
    async with open_runtime(durable_url) as rt:
        rt.register(build_graph(counter_dir))
        before = await rt.get(incident)
        assert before.status == "awaiting_approval"
        assert before.pending_approval is not None
        assert before.pending_approval.approval_id == paused["paused"]

        result = await rt.decide(incident, Approve(by="alice"))
        assert result.applied and result.record.decided_by == "alice"
        after = await rt.get(incident)

    assert after.status == "finished"
    assert after.values["applied"] == ["api"]
    counts = Counters(counter_dir).read(incident)
    assert {node: counts[node] for node in PRE_PAUSE_NODES} == dict.fromkeys(PRE_PAUSE_NODES, 1)
    assert counts["apply"] == 1 and counts["finish"] == 1 and counts["escalate"] == 0


async def test_decision_recorded_by_a_dead_process_is_applied_once_by_recover(
    durable_url: str, counter_dir: Path
) -> None:
    incident = f"inc-{uuid.uuid4()}"
    async with open_runtime(durable_url) as rt:
        await rt.start(build_graph(counter_dir), {}, incident_id=incident)

    dying = Worker("decide-then-die", durable_url, incident, str(counter_dir))
    try:
        assert dying.read() == {"deciding": incident}
        assert dying.wait() == -signal.SIGKILL
    finally:
        dying.kill()
        dying.close()

    async with open_runtime(durable_url) as rt:
        rt.register(build_graph(counter_dir))
        (record,) = await rt.history(incident)
        assert record.status.value == "approved" and record.applied_at is None
        assert (await rt.get(incident)).status == "resuming"
        assert Counters(counter_dir).read(incident)["apply"] == 0

    for expected in ([record.approval_id], []):  # a second recovery finds nothing to do
        recoverer = Worker("recover", durable_url, str(counter_dir))
        try:
            assert recoverer.read() == {"recovered": expected}
            assert recoverer.wait() == 0
        finally:
            recoverer.close()

    async with open_runtime(durable_url) as rt:
        rt.register(build_graph(counter_dir))
        snapshot = await rt.get(incident)
        (record,) = await rt.history(incident)
    assert snapshot.status == "finished"
    assert record.applied_at is not None
    counts = Counters(counter_dir).read(incident)
    assert counts["apply"] == 1 and counts["finish"] == 1
    assert all(counts[node] == 1 for node in PRE_PAUSE_NODES)
