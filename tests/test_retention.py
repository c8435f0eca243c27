"""Retention: the checkpoints of incidents closed long ago are deleted; the audit record — the
index row, approvals and decisions, notifications — stays; open incidents are never touched."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from durable_ir import Approve, FixedClock, InvalidInput, Reject, open_runtime
from durable_ir.cli import main
from support.incident_parts import ALERT, build_incident_graph

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def _checkpoint_rows(url: str, incident_id: str) -> int:
    """Rows of any LangGraph table that belong to ``incident_id`` (counted in the database)."""
    postgres = url.startswith("postgresql")
    tables = (
        ("checkpoints", "checkpoint_writes", "checkpoint_blobs")
        if postgres
        else ("checkpoints", "writes")
    )
    if url.startswith("postgresql"):
        async with await psycopg.AsyncConnection.connect(url) as conn:
            total = 0
            for table in tables:
                cur = await conn.execute(
                    f"SELECT count(*) FROM {table} WHERE thread_id = %s", (incident_id,)
                )
                row = await cur.fetchone()
                total += row[0] if row else 0
            return total
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        return sum(
            conn.execute(
                f"SELECT count(*) FROM {t} WHERE thread_id = ?", (incident_id,)
            ).fetchone()[0]
            for t in tables
        )


async def test_prune_deletes_old_closed_checkpoints_and_keeps_the_audit_record(
    durable_url: str, counter_dir: Path
) -> None:
    clock = FixedClock(T0)
    async with open_runtime(durable_url, clock=clock) as rt:
        graph = build_incident_graph(counter_dir).build()
        old = (await rt.ingest(graph, {**ALERT, "service": "a"})).incident
        # Rejected 20 days later: within its approval window (a decision after the deadline
        # is the expiry, tests/test_lifecycle_edges.py).
        window = {"approval_window_s": timedelta(days=30).total_seconds()}
        recent = (await rt.ingest(graph, {**ALERT, "service": "b"}, extra_input=window)).incident
        waiting = (await rt.ingest(graph, {**ALERT, "service": "c"})).incident
        assert old and recent and waiting
        await rt.decide(old.incident_id, Approve(by="alice"))
        clock.advance(days=20)
        await rt.decide(recent.incident_id, Reject(by="bob", reason="not now"))
        clock.advance(days=15)  # old closed 35 days ago, recent 15, waiting still open
        assert await _checkpoint_rows(durable_url, old.incident_id) > 0

        assert await rt.prune(older_than=timedelta(days=30)) == [old.incident_id]
        assert await rt.prune(older_than=timedelta(days=30)) == []  # done once

        assert await _checkpoint_rows(durable_url, old.incident_id) == 0
        assert await _checkpoint_rows(durable_url, recent.incident_id) > 0
        assert await _checkpoint_rows(durable_url, waiting.incident_id) > 0
        # The audit record stays: who decided what, when and why; how the incident ended.
        row = await rt.store.ledger.get_incident(old.incident_id)
        assert row is not None and row.outcome == "resolved" and row.pruned_at == clock()
        (approval,) = await rt.history(old.incident_id)
        assert approval.decided_by == "alice" and approval.applied_at is not None
        snapshot = await rt.get(old.incident_id)
        assert snapshot.status == "finished" and snapshot.values == {}
        # An open incident is never pruned, however old.
        clock.advance(days=400)
        assert await rt.prune(older_than=timedelta(0)) == [recent.incident_id]
        assert (await rt.get(waiting.incident_id)).status == "awaiting_approval"


@pytest.mark.parametrize("older_than", [timedelta(days=-1), 30])
async def test_prune_refuses_a_bad_age(older_than: object) -> None:
    async with open_runtime("memory://") as rt:
        with pytest.raises(InvalidInput):
            await rt.prune(older_than=older_than)  # type: ignore[arg-type]


def test_the_cli_prunes_and_reports(
    tmp_path: Path, counter_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'incidents.db'}"

    async def resolve_one() -> str:
        async with open_runtime(url) as rt:
            graph = build_incident_graph(counter_dir).build()
            incident = (await rt.ingest(graph, dict(ALERT))).incident
            assert incident is not None
            await rt.decide(incident.incident_id, Approve(by="alice"))
            return incident.incident_id

    incident_id = asyncio.run(resolve_one())
    assert main(["incidents", "prune", "--database-url", url, "--older-than-days", "1"]) == 0
    assert "0 incident(s)" in capsys.readouterr().out
    args = ["incidents", "prune", "--database-url", url, "--older-than-days", "0", "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out) == {"pruned": [incident_id]}
    with pytest.raises(SystemExit):
        main(["incidents", "prune", "--database-url", url, "--older-than-days", "-3"])
