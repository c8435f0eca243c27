"""Two ``durable-ir serve`` processes on one database (PostgreSQL, and SQLite on one
machine): an incident paused through one is approved through the other; one SIGKILLed while
incidents wait loses nothing; and a decision one acknowledged (202) just before it was
SIGKILLed is applied by the other's recovery, remediation running once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from durable_ir import open_runtime
from durable_ir.demo.agent import DEMO_INCIDENTS, demo_alert
from durable_ir.records import ApprovalRecord
from support.service import ServiceProcess, auth, service_env, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def replicas(durable_url: str, tmp_path: Path) -> Iterator[Callable[..., list[ServiceProcess]]]:
    started: list[ServiceProcess] = []

    def start(count: int, *args: str, **env: str) -> list[ServiceProcess]:
        # Without --graph, the demo agent, asked for explicitly (serve simulates nothing unasked).
        what = () if "--graph" in args else ("--demo",)
        processes = [
            ServiceProcess(durable_url, *what, *args, env=service_env(**env),
                           log=tmp_path / f"serve-{len(started) + i}.log")
            for i in range(count)
        ]  # fmt: skip
        started.extend(processes)
        for process in processes:
            process.wait_ready()
        return processes

    try:
        yield start
    finally:
        for process in started:
            process.stop()


def get(replica: ServiceProcess, path: str) -> dict[str, Any]:
    response = httpx.get(f"{replica.url}{path}", headers=auth("vic"), timeout=60)
    assert response.status_code == 200, response.text
    return dict(response.json())


def post(replica: ServiceProcess, path: str, who: str = "alice", **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{replica.url}{path}", headers=auth(who), timeout=60, **kwargs)


def open_incident(replica: ServiceProcess, index: int, run: str) -> str:
    alert = demo_alert(DEMO_INCIDENTS[index], run=run)
    response = post(replica, "/alerts", who="alertmanager", json=alert)
    assert response.status_code == 202, response.text
    return str(response.json()["incidents"][0]["incident_id"])


def wait_status(replica: ServiceProcess, incident: str, status: str) -> dict[str, Any]:
    return dict(
        wait_for(
            lambda: (d := get(replica, f"/incidents/{incident}"))["status"] == status and d,
            what=f"{incident} to be {status}",
        )
    )


def history(database_url: str, incident: str) -> list[ApprovalRecord]:
    async def read() -> list[ApprovalRecord]:
        async with open_runtime(database_url) as rt:
            return await rt.history(incident)

    return asyncio.run(read())


def stages(detail: dict[str, Any]) -> list[str]:
    return [entry["stage"] for entry in detail["timeline"]]


def test_paused_through_one_replica_approved_through_the_other(
    replicas: Callable[..., list[ServiceProcess]], durable_url: str
) -> None:
    a, b = replicas(2)
    incident = open_incident(a, 0, run="two-replicas")
    waiting = wait_status(b, incident, "awaiting_approval")
    assert waiting["pending_approval"]["deadline_at"]
    response = post(b, f"/incidents/{incident}/approve", json={"reason": "from b"})
    assert response.status_code == 202, response.text
    finished = wait_status(a, incident, "finished")
    assert finished["outcome"] == "resolved"
    second = post(a, f"/incidents/{incident}/approve", who="bob")
    assert second.status_code == 409
    assert second.json()["error"]["winner"]["decided_by"] == "alice"
    (record,) = history(durable_url, incident)
    assert record.decided_by == "alice" and record.applied_at is not None


def test_sigkill_while_incidents_wait_loses_nothing(
    replicas: Callable[..., list[ServiceProcess]], durable_url: str
) -> None:
    a, b = replicas(2)
    incidents = [open_incident(a, i, run="sigkill") for i in range(3)]
    for incident in incidents:
        wait_status(a, incident, "awaiting_approval")
    a.kill()

    listed = get(b, "/incidents?status=awaiting_approval")
    assert sorted(i["incident_id"] for i in listed["incidents"]) == sorted(incidents)
    first, second, third = incidents
    assert post(b, f"/incidents/{first}/approve").status_code == 202
    assert post(b, f"/incidents/{second}/reject", json={"reason": "no"}).status_code == 202
    assert post(b, f"/incidents/{third}/approve", params={"wait": "true"}).status_code == 200
    outcomes = {}
    for incident in incidents:
        detail = wait_status(b, incident, "finished")
        outcomes[incident] = detail["outcome"]
        done = stages(detail)
        # Stages before the pause ran once, in the killed process; none ran again.
        assert [done.count(s) for s in ("ingest", "triage", "rca", "plan")] == [1, 1, 1, 1]
        (record,) = history(durable_url, incident)
        assert record.applied_at is not None
    assert outcomes == {first: "resolved", second: "escalated", third: "resolved"}


def test_acknowledged_decision_of_a_killed_replica_is_applied_by_the_other(
    replicas: Callable[..., list[ServiceProcess]], durable_url: str, tmp_path: Path
) -> None:
    gate_dir = tmp_path / "gate"
    gate_dir.mkdir()
    graph = ["--graph", "support.service_graph:build_gated_graph", "--graph-name", "gated"]
    a, b = replicas(2, *graph, SERVICE_GATE_DIR=str(gate_dir))
    incident = open_incident(a, 0, run="gated")
    wait_status(a, incident, "awaiting_approval")

    response = post(a, f"/incidents/{incident}/approve")
    assert response.status_code == 202, response.text  # recorded: acknowledged
    wait_for(lambda: (gate_dir / "gate.log").exists(), what="a's run to reach the gate")
    a.kill()  # its run dies at the gate, before remediation
    assert get(b, f"/incidents/{incident}")["status"] == "resuming"

    pids = wait_for(
        lambda: len(lines := (gate_dir / "gate.log").read_text().split()) == 2 and lines,
        what="b's recovery to resume the run",
    )
    assert pids[0] != pids[1] and pids[0] == str(a.proc.pid)
    (gate_dir / "open").touch()
    finished = wait_status(b, incident, "finished")
    assert finished["outcome"] == "resolved"
    assert stages(finished).count("apply") == 1  # remediation ran once
    (record,) = history(durable_url, incident)
    assert record.decided_by == "alice" and record.applied_at is not None
