"""A child OS process for the store, ledger and lock tests: ``python _store_child.py MODE URL …``.

Every mode prints JSON lines on stdout:

- ``open URL AT``: wait until wall-clock time ``AT`` (``time.time()``), ``open_store(URL)``,
  print ``{"opened": backend}`` or ``{"error": "..."}``, exit.
- ``decide URL``: open the store, print ``{"ready": true}``, then for each stdin line
  ``{"approval_id", "status", "by", "at"}`` wait until ``at``, call ``record_decision`` and
  print ``{"won": bool, "row": record.to_dict()}``.
- ``hold URL INCIDENT``: open the store, take the incident's lock, print ``{"held": true}``
  (or ``{"held": false}`` and exit), then hold it until stdin closes or it is killed.
- ``open-incidents URL``: open the store, print ``{"ready": true}``, then for each stdin line
  ``{"fingerprint", "graph", "opened_at": [ISO …], "ids": […], "at"}`` wait until ``at``, call
  ``open_incident`` for every id at once (``asyncio.gather``) and print
  ``{"results": [[inserted, record.to_dict()], …]}`` in the order of ``ids``.

The parent side is :class:`Child`.
"""

from __future__ import annotations

import asyncio
import faulthandler
import json
import signal
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from support.processes import JsonLineProcess

SCRIPT = Path(__file__).resolve()


class Child(JsonLineProcess):
    """``python _store_child.py ARGS…`` in its own OS process, spoken to in JSON lines."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        super().__init__([sys.executable, str(SCRIPT), *args], env=env)

    def read(self, timeout: float = 30.0) -> dict[str, Any]:
        return super().read(timeout)


def emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def _dump_tasks() -> None:
    """On SIGUSR1: print every asyncio task's stack to stderr (for diagnosing a stall)."""
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()


def _run(main: Any) -> None:
    faulthandler.register(signal.SIGUSR2, all_threads=True)

    async def with_dump() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _dump_tasks)
        await main

    asyncio.run(with_dump())


async def _sleep_until(at: float) -> None:
    await asyncio.sleep(max(0.0, at - time.time()))


async def open_at(url: str, at: float) -> None:
    from durable_ir import open_store

    await _sleep_until(at)
    try:
        async with open_store(url) as store:
            emit({"opened": store.backend})
    except Exception as exc:
        emit({"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})


async def decide(url: str) -> None:
    from durable_ir import open_store
    from durable_ir.ledger import DecisionWrite
    from durable_ir.records import ApprovalStatus

    async with open_store(url) as store:
        emit({"ready": True})
        while line := await asyncio.to_thread(sys.stdin.readline):
            request = json.loads(line)
            write = DecisionWrite(
                status=ApprovalStatus(request["status"]),
                decided_by=request["by"],
                decided_at=datetime.now(UTC),
                reason=f"decided by {request['by']}",
            )
            await _sleep_until(request["at"])
            won, row = await store.ledger.record_decision(request["approval_id"], write)
            emit({"won": won, "row": row.to_dict()})


async def hold(url: str, incident: str) -> None:
    from durable_ir import open_store

    async with open_store(url) as store:
        if not await store.locks.try_acquire(incident):
            emit({"held": False})
            return
        emit({"held": True})
        await asyncio.to_thread(sys.stdin.read)  # hold until stdin closes (or we are killed)
        await store.locks.release(incident)


async def open_incidents(url: str) -> None:
    from durable_ir import open_store
    from durable_ir.records import NewIncident

    async with open_store(url) as store:
        emit({"ready": True})
        while line := await asyncio.to_thread(sys.stdin.readline):
            request = json.loads(line)
            news = [
                NewIncident(
                    incident_id=incident_id,
                    graph=request["graph"],
                    opened_at=datetime.fromisoformat(opened_at),
                    fingerprint=request["fingerprint"],
                    title=f"opened by {incident_id}",
                )
                for incident_id, opened_at in zip(request["ids"], request["opened_at"], strict=True)
            ]
            await _sleep_until(request["at"])
            results = await asyncio.gather(*(store.ledger.open_incident(new) for new in news))
            emit({"results": [[inserted, row.to_dict()] for inserted, row in results]})


def main(argv: list[str]) -> None:
    mode, *rest = argv
    if mode == "open":
        _run(open_at(rest[0], float(rest[1])))
    elif mode == "decide":
        _run(decide(rest[0]))
    elif mode == "hold":
        _run(hold(rest[0], rest[1]))
    elif mode == "open-incidents":
        _run(open_incidents(rest[0]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
