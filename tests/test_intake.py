"""Alert intake: a malformed alert changes nothing, copies of one firing alert open one
incident (from one process or several), and a closed incident absorbs nothing."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from durable_ir import (
    Approve,
    Conflict,
    FixedClock,
    InvalidInput,
    NotFound,
    open_runtime,
    parse_alert,
)
from durable_ir.records import FiringIntake, NewIncident, OwnershipTake
from support.incident_parts import ALERT, build_incident_graph, fired_at
from support.processes import JsonLineProcess


async def test_a_malformed_alert_is_refused_and_writes_nothing(
    durable_url: str, counter_dir: Path
) -> None:
    graph = build_incident_graph(counter_dir).build()
    async with open_runtime(durable_url) as rt:
        for bad in ({}, {**ALERT, "severity": "P9"}, {**ALERT, "service": "rm -rf /"}, [ALERT]):
            with pytest.raises(InvalidInput):
                await rt.ingest(graph, bad)  # type: ignore[arg-type]
        assert await rt.incidents() == []


async def test_copies_of_one_alert_open_one_incident(durable_url: str, counter_dir: Path) -> None:
    graph = build_incident_graph(counter_dir).build()
    async with open_runtime(durable_url) as rt:
        results = await asyncio.gather(*(rt.ingest(graph, ALERT) for _ in range(100)))
        created = [r for r in results if r.created]
        assert len(created) == 1
        incident = created[0].incident
        assert incident is not None
        assert {r.incident.incident_id for r in results if r.incident} == {incident.incident_id}
        (row,) = await rt.incidents()
        assert row.alerts_received == 100 and row.fingerprint == incident.fingerprint
        assert created[0].snapshot is not None
        assert created[0].snapshot.status == "awaiting_approval"


async def test_a_closed_incident_absorbs_repeats_of_its_firing_but_not_new_firings(
    durable_url: str, counter_dir: Path
) -> None:
    graph = build_incident_graph(counter_dir).build()
    async with open_runtime(durable_url) as rt:
        first = await rt.ingest(graph, ALERT)
        assert first.incident is not None
        again = await rt.ingest(graph, ALERT)
        assert not again.created and again.incident is not None
        assert again.incident.incident_id == first.incident.incident_id

        await rt.decide(first.incident.incident_id, Approve(by="alice"))
        closed = await rt.store.ledger.get_incident(first.incident.incident_id)
        assert closed is not None and closed.status == "closed" and closed.outcome == "resolved"

        # The same firing (fingerprint and fired_at / startsAt) again: counted on the closed
        # incident, which stays closed; no new incident, no new run.
        repeat = await rt.ingest(graph, ALERT)
        assert not repeat.created and repeat.event == "repeated" and repeat.incident is not None
        assert repeat.incident.incident_id == first.incident.incident_id
        assert repeat.incident.status == "closed" and repeat.incident.alerts_received == 3
        assert len(await rt.incidents()) == 1

        later = await rt.ingest(graph, {**ALERT, "fired_at": "2026-03-01T13:00:00+00:00"})
        assert later.created and later.incident is not None
        assert later.incident.incident_id != first.incident.incident_id
        other = await rt.ingest(graph, {**ALERT, "service": "search"})
        assert other.created  # another fingerprint is another incident


async def test_a_resolution_notice_opens_nothing(counter_dir: Path) -> None:
    webhook = {
        "version": "4",
        "status": "resolved",
        "alerts": [
            {
                "status": "resolved",
                "labels": {"alertname": "HighErrorRate", "service": "checkout",
                           "severity": "critical"},
                "annotations": {"description": "back to normal"},
                "startsAt": "2026-03-01T12:00:00Z",
                "fingerprint": "abc123",
            }
        ],
    }  # fmt: skip
    (alert,) = parse_alert(webhook)
    async with open_runtime("memory://") as rt:
        result = await rt.ingest(build_incident_graph(counter_dir).build(), alert)
        assert result.incident is None and not result.created
        assert await rt.incidents() == []


async def test_an_incident_opened_by_a_dead_process_is_started_by_recovery(
    durable_url: str, counter_dir: Path
) -> None:
    clock = FixedClock(fired_at())
    graph = build_incident_graph(counter_dir).build()
    async with open_runtime(durable_url, clock=clock) as rt:
        rt.register(graph)
        # What a process that died right after indexing the incident leaves behind.
        await rt.store.ledger.open_incident(
            NewIncident("inc-orphan", "incident", clock(), fingerprint="fp", alert={"alert": ALERT})
        )
        with pytest.deprecated_call():  # recover() starts these once their lease expires
            assert await rt.start_unstarted() == []  # too young: its opener may still run
            clock.advance(minutes=2)
            assert await rt.start_unstarted() == ["inc-orphan"]
            assert (await rt.get("inc-orphan")).status == "awaiting_approval"
            assert await rt.start_unstarted() == []
        with pytest.raises(Conflict):
            await rt.start(graph, {"alert": ALERT}, incident_id="inc-orphan")


CHILD = """
import asyncio, json, sys, time
from durable_ir import open_runtime
from support.incident_parts import ALERT, build_incident_graph

async def main(url, directory, at, copies):
    async with open_runtime(url) as rt:
        graph = build_incident_graph(directory).build()
        rt.register(graph)
        await asyncio.sleep(max(0.0, at - time.time()))
        results = await asyncio.gather(*(rt.ingest(graph, ALERT) for _ in range(copies)))
        print(json.dumps({"created": sum(r.created for r in results)}), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))
"""


async def test_copies_from_several_processes_open_one_incident(
    durable_url: str, counter_dir: Path
) -> None:
    at = time.time() + 2.0
    children = [
        JsonLineProcess([sys.executable, "-c", CHILD, durable_url, str(counter_dir), str(at), "25"])
        for _ in range(4)
    ]
    try:
        created = sum(child.read(timeout=120)["created"] for child in children)
    finally:
        for child in children:
            child.close()
    assert created == 1
    async with open_runtime(durable_url) as rt:
        (row,) = await rt.incidents()
        assert row.alerts_received == 100
        rt.register(build_incident_graph(counter_dir).build())
        assert (await rt.get(row.incident_id)).status == "awaiting_approval"


async def test_extra_input_reaches_the_graph_and_must_be_json(counter_dir: Path) -> None:
    graph = build_incident_graph(counter_dir).build()
    async with open_runtime("memory://") as rt:
        with pytest.raises(InvalidInput, match="JSON"):
            await rt.ingest(graph, ALERT, extra_input={"approval_window_s": object()})
        assert await rt.incidents() == []
        result = await rt.ingest(graph, ALERT, extra_input={"approval_window_s": 90})
        assert result.snapshot is not None and result.snapshot.pending_approval is not None
        approval = result.snapshot.pending_approval
        assert (approval.deadline_at - approval.requested_at).total_seconds() == 90


async def test_an_incident_can_be_opened_now_and_run_later(
    durable_url: str, counter_dir: Path
) -> None:
    graph = build_incident_graph(counter_dir).build()
    async with open_runtime(durable_url) as rt:
        opened = await rt.ingest(graph, ALERT, run=False)
        assert opened.created and opened.snapshot is None and opened.incident is not None
        incident_id = opened.incident.incident_id
        assert (await rt.ingest(graph, ALERT, run=False)).created is False  # deduplicated
        snapshot = await rt.start_opened(incident_id)
        assert snapshot.status == "awaiting_approval"
        with pytest.raises(Conflict, match="started already"):
            await rt.start_opened(incident_id)
        with pytest.raises(NotFound):
            await rt.start_opened("never-opened")


async def test_an_incident_run_by_recovery_before_its_opener_got_to_it_is_not_run_again(
    durable_url: str, counter_dir: Path
) -> None:
    """The opener stalls between indexing the incident and taking it (a long pause, a
    pooler slow to reconnect) past its lease: another runtime's recovery starts the
    incident, and it is decided and finished there. When the opener gets the incident at
    last, it must not run the graph from the start a second time (LangGraph would: an input
    to a thread that exists starts a new run).

    The stores' own ledgers take the incident in the write that indexes it, which closes
    that window; a ledger that cannot (here: the take left out, as a custom ledger would)
    takes it in a second write, and the window is open."""
    clock = FixedClock(fired_at())
    graph = build_incident_graph(counter_dir, step_count=2).build()
    async with (
        open_runtime(durable_url, clock=clock) as opener,
        open_runtime(durable_url, clock=clock) as other,
    ):
        other.register(graph)
        real_try = opener.store.locks.try_acquire
        stalled: list[str] = []

        async def stall_then_try(incident_id: str) -> bool:
            if not stalled:
                stalled.append(incident_id)
                clock.advance(seconds=31)  # the opener's lease (30 s) runs out
                assert await other.recover() == []  # takes the run over: it pauses
                paused = await other.get(incident_id)
                assert paused.status == "awaiting_approval"
                assert (await other.decide(incident_id, Approve(by="alice"))).applied
            return await real_try(incident_id)

        real_open = opener.store.ledger.open_firing

        async def open_without_take(
            new: NewIncident, starts_at: datetime, *, take: OwnershipTake | None = None
        ) -> FiringIntake:
            return await real_open(new, starts_at)

        opener.store.locks.try_acquire = stall_then_try  # type: ignore[method-assign]
        opener.store.ledger.open_firing = open_without_take  # type: ignore[method-assign]
        intake = await opener.ingest(graph, ALERT)
        assert intake.created and intake.incident is not None
        incident_id = intake.incident.incident_id
        assert stalled == [incident_id]
        done = await opener.get(incident_id)
        assert done.status == "finished" and done.values["outcome"]["status"] == "resolved"
        assert intake.snapshot is not None and intake.snapshot.status == "finished"
        # Ran once: one approval asked, each step applied once, the index closed once.
        assert len(await opener.history(incident_id)) == 1
        applied = (counter_dir / f"{incident_id}.log").read_text().splitlines()
        assert applied == ["apply 1 scale checkout-1", "apply 2 scale checkout-2"]
        row = await opener.store.ledger.get_incident(incident_id)
        assert row is not None and row.status == "closed" and row.outcome == "resolved"
