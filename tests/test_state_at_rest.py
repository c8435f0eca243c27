"""State at rest: incident state round-trips under LANGGRAPH_STRICT_MSGPACK, and LangGraph's
EncryptedSerializer keeps it unreadable in the saver's tables — but not in the ledger or the
incident index, which are the audit record and stay plain (docs/persistence.md)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

from durable_ir import Approve, ConfigurationError, open_runtime, open_store
from support.incident_parts import ALERT, build_incident_graph
from support.processes import TESTS_DIR

MARKER = "do-not-store-in-clear-7f3a"
ALERT_WITH_MARKER = {**ALERT, "description": f"5xx after deploy; customer {MARKER}"}

STRICT_CHILD = """
import asyncio, json, sys
from durable_ir import Approve, open_runtime
from support.incident_parts import ALERT, build_incident_graph

async def main(url, directory):
    async with open_runtime(url) as rt:  # run to the pause, then close everything
        paused = await rt.start(build_incident_graph(directory).build(), {"alert": ALERT},
                                incident_id="strict-1")
        assert paused.status == "awaiting_approval", paused.status
    async with open_runtime(url) as rt:  # a fresh runtime reads the state back
        rt.register(build_incident_graph(directory).build())
        await rt.decide("strict-1", Approve(by="alice"))
        done = await rt.get("strict-1")
        print(json.dumps({"status": done.status, "outcome": done.values["outcome"]["status"],
                          "steps": len(done.values["applied_steps"])}))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_state_round_trips_under_strict_msgpack(durable_url: str, counter_dir: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(TESTS_DIR),
        "LANGGRAPH_STRICT_MSGPACK": "true",
        "PYTHONWARNINGS": "error::UserWarning",
    }
    done = subprocess.run(
        [sys.executable, "-c", STRICT_CHILD, durable_url, str(counter_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {
        "status": "finished",
        "outcome": "resolved",
        "steps": 2,
    }


def saver_bytes(url: str) -> bytes:
    """Everything LangGraph's saver stored, as bytes, to search for plaintext."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            rows = db.execute(
                "SELECT checkpoint, metadata FROM checkpoints UNION ALL "
                "SELECT value, NULL FROM writes"
            ).fetchall()
    else:
        with psycopg.connect(url) as db:
            rows = db.execute(
                "SELECT checkpoint::text::bytea, metadata::text::bytea FROM checkpoints "
                "UNION ALL SELECT blob, NULL FROM checkpoint_blobs "
                "UNION ALL SELECT blob, NULL FROM checkpoint_writes"
            ).fetchall()
    assert rows
    return b"\n".join(bytes(v) for row in rows for v in row if v is not None)


def ledger_text(url: str) -> str:
    query = "SELECT alert FROM durable_ir_incidents"
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            return "\n".join(str(r[0]) for r in db.execute(query))
    with psycopg.connect(url) as db:
        return "\n".join(json.dumps(r[0]) for r in db.execute(query))


async def test_encrypted_state_is_unreadable_at_rest_and_round_trips(
    durable_url: str, counter_dir: Path
) -> None:
    key = b"k" * 32
    serde = EncryptedSerializer.from_pycryptodome_aes(key=key)
    graph: Any = build_incident_graph(counter_dir).build()
    async with open_runtime(durable_url, serde=serde) as rt:
        paused = await rt.start(graph, {"alert": ALERT_WITH_MARKER}, incident_id="enc-1")
        assert paused.status == "awaiting_approval"

    stored = saver_bytes(durable_url)
    assert MARKER.encode() not in stored  # the alert, in graph state, is encrypted

    # The control: without encryption the same search finds the alert in the saver's tables.
    plain_marker = "stored-in-clear-4c1d"
    plain_alert = {**ALERT, "service": "search", "description": plain_marker}
    async with open_runtime(durable_url) as rt:
        await rt.start(graph, {"alert": plain_alert}, incident_id="plain-1")
    assert plain_marker.encode() in saver_bytes(durable_url)
    # The incident index keeps the alert in clear: it is the audit record (documented).
    assert MARKER in ledger_text(durable_url)

    async with open_runtime(durable_url, serde=serde) as rt:
        rt.register(graph)
        assert (await rt.get("enc-1")).values["alert"]["description"].endswith(MARKER)
        await rt.decide("enc-1", Approve(by="alice"))
        assert (await rt.get("enc-1")).values["outcome"]["status"] == "resolved"

    wrong = EncryptedSerializer.from_pycryptodome_aes(key=b"w" * 32)
    async with open_runtime(durable_url, serde=wrong) as rt:
        rt.register(graph)
        with pytest.raises(ValueError, match="MAC check failed"):
            await rt.get("enc-1")


async def test_serde_is_for_the_urls_own_saver_only() -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    with pytest.raises(ConfigurationError, match="your own checkpointer"):
        async with open_store("memory://", checkpointer=InMemorySaver(), serde=object()):  # type: ignore[arg-type]
            pass
    with pytest.raises(ConfigurationError, match="dumps_typed"):
        async with open_store("memory://", serde=object()):  # type: ignore[arg-type]
            pass
