"""The incident graph across processes: a SIGKILL mid-apply never re-applies a finished step,
and PagerDuty hears about an incident once however many processes escalate it."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from durable_ir import open_runtime
from support.incident_parts import build_incident_graph, lines
from support.incident_worker import ROUTING_KEY
from support.local_http import serving
from support.pagerduty_api import PagerDutyApi
from support.processes import finish
from support.processes import incident_worker as worker


@pytest.fixture
def pd() -> Iterator[PagerDutyApi]:
    with serving(PagerDutyApi()) as server:
        yield server


async def test_sigkill_after_step_2_of_4_then_recovery_applies_3_and_4_once(
    durable_url: str, counter_dir: Path, pd: PagerDutyApi
) -> None:
    incident = f"inc-{uuid.uuid4().hex[:8]}"
    args = [durable_url, str(counter_dir)]
    child = worker("approve", *args, incident, "--kill-before-step", "3", "--severity", "P0",
                   "--pagerduty", pd.url)  # fmt: skip
    assert "paused" in child.read()
    assert finish(child) == -signal.SIGKILL
    log = counter_dir / f"{incident}.log"
    assert lines(log) == ["apply 1 scale checkout-1", "apply 2 scale checkout-2"]

    async with open_runtime(durable_url) as rt:
        row = await rt.store.ledger.get_incident(incident)
        assert row is not None and row.is_open and row.started_at is not None
    recovering = worker("recover", *args, "--pagerduty", pd.url)
    assert len(recovering.read()["recovered"]) == 1
    assert finish(recovering) == 0

    assert lines(log) == [f"apply {n} scale checkout-{n}" for n in (1, 2, 3, 4)]
    async with open_runtime(durable_url) as rt:
        rt.register(build_incident_graph(counter_dir).build())
        done = await rt.get(incident)
        assert done.status == "finished" and done.values["outcome"]["status"] == "resolved"
        assert [r["number"] for r in done.values["applied_steps"]] == [1, 2, 3, 4]
    # P0 paged when it opened, and the recovered run resolved that page.
    actions = [e["event_action"] for e in pd.events()]
    assert actions == ["trigger", "resolve"]
    assert {e["dedup_key"] for e in pd.events()} == {f"durable-ir:{incident}"}
    assert all(e["routing_key"] == ROUTING_KEY for e in pd.events())


async def test_two_processes_escalating_one_incident_page_once(
    durable_url: str, counter_dir: Path, pd: PagerDutyApi
) -> None:
    incident = f"inc-{uuid.uuid4().hex[:8]}"
    args = [durable_url, str(counter_dir)]
    starter = worker("start", *args, incident, "--pagerduty", pd.url)
    assert "paused" in starter.read()
    starter.kill()  # the paused incident now lives only in the database
    starter.close()
    at = time.time() + 1.5
    rejecters = [worker("reject-at", *args, incident, str(at), "--pagerduty", pd.url)
                 for _ in range(2)]  # fmt: skip
    answers = [r.read() for r in rejecters]
    for r in rejecters:
        assert finish(r) == 0
    assert sorted(next(iter(a)) for a in answers) == ["conflict", "won"]
    triggers = [e for e in pd.events() if e["event_action"] == "trigger"]
    assert len(triggers) == 1, pd.events()
    assert triggers[0]["dedup_key"] == f"durable-ir:{incident}"
    assert pd.open_alerts() == [f"durable-ir:{incident}"]
