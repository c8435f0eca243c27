"""A separate OS process for crash and race tests: ``python -m support.worker [OPTION…] MODE …``.

Options, before the mode, are ``open_runtime`` keywords: ``--lock-timeout=S``,
``--lease-ttl=S``. Modes (all print one JSON object per line on stdout):

- ``start URL INCIDENT COUNTERS``: run the incident to its approval pause, print
  ``{"paused": approval_id}``, then wait to be killed.
- ``decider URL COUNTERS``: read requests ``{"incident", "decision", "at"}`` from stdin; at the
  wall-clock time ``at``, decide; print ``{"won": record}`` or ``{"conflict": winner}``.
- ``decide-then-die URL INCIDENT COUNTERS``: record an approval, then SIGKILL itself before the
  graph is resumed (right after the write that records it and takes the incident's lock).
- ``recover URL COUNTERS``: run ``Runtime.recover(stalled=True)`` (as at start-up), print the
  approvals it applied.
- ``sweeper URL COUNTERS``: read requests ``{"now": iso, "at"}`` from stdin; at ``at``, sweep
  with the SLA monitor as of ``now`` until nothing more is due; print ``{"expired": [ids]}``.
- ``locker URL``: the incident lock alone (``rt.store.locks``). Reads requests from stdin:
  ``{"do": "try", "incident", "at"}``: at ``at``, ``try_acquire``, print ``{"won": bool}``
  (a lock won stays held until asked); ``{"do": "release", "incident"}``: release it, print
  ``{"released": incident}``; ``{"do": "hold", "incident"}``: ``hold(incident, wait=0)`` and
  let go at once, print ``{"held": true}`` or ``{"held": false, "busy": message}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from datetime import datetime
from typing import Any

from durable_ir import Conflict, IncidentBusy, Runtime, open_runtime, parse_decision
from durable_ir.sla import SlaMonitor
from support.graphs import ALERT, build_graph


def emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


async def start(rt: Runtime, incident: str, counters: str) -> None:
    snapshot = await rt.start(build_graph(counters), {"alert": ALERT}, incident_id=incident)
    assert snapshot.pending_approval is not None, snapshot
    emit({"paused": snapshot.pending_approval.approval_id})
    await asyncio.Event().wait()


async def decider(rt: Runtime, counters: str) -> None:
    rt.register(build_graph(counters))
    emit({"ready": True})
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        request = json.loads(line)
        decision = parse_decision(request["decision"])
        await asyncio.sleep(max(0.0, request["at"] - time.time()))
        try:
            result = await rt.decide(request["incident"], decision)
        except Conflict as conflict:
            winner = conflict.winner.to_dict() if conflict.winner else None
            emit({"conflict": winner, "message": str(conflict)})
        else:
            emit({"won": result.record.to_dict(), "applied": result.applied})


async def decide_then_die(rt: Runtime, incident: str, counters: str) -> None:
    rt.register(build_graph(counters))

    record_and_take = rt.store.ledger.decide_and_take

    async def die(*args: Any) -> Any:
        await record_and_take(*args)
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")

    rt.store.ledger.decide_and_take = die  # type: ignore[method-assign]
    emit({"deciding": incident})
    from durable_ir import Approve

    await rt.decide(incident, Approve(by="alice"))


async def sweeper(rt: Runtime, counters: str) -> None:
    rt.register(build_graph(counters))
    monitor = SlaMonitor(rt, batch=25)
    emit({"ready": True})
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        request = json.loads(line)
        now = datetime.fromisoformat(request["now"])
        await asyncio.sleep(max(0.0, request["at"] - time.time()))
        expired: list[str] = []
        while report := await monitor.sweep(now):
            expired += [r.approval_id for r in report.expired]
            assert not report.deferred, report
            if not report.expired:
                break
        emit({"expired": expired})


async def recover(rt: Runtime, counters: str) -> None:
    rt.register(build_graph(counters))
    applied = await rt.recover(stalled=True)
    emit({"recovered": [r.approval_id for r in applied]})


async def locker(rt: Runtime) -> None:
    locks = rt.store.locks
    emit({"ready": True})
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        request = json.loads(line)
        incident = request["incident"]
        if request["do"] == "try":
            await asyncio.sleep(max(0.0, request["at"] - time.time()))
            emit({"won": await locks.try_acquire(incident)})
        elif request["do"] == "release":
            await locks.release(incident)
            emit({"released": incident})
        elif request["do"] == "hold":
            try:
                async with locks.hold(incident, wait=0):
                    pass
            except IncidentBusy as busy:
                emit({"held": False, "busy": str(busy)})
            else:
                emit({"held": True})
        else:
            raise SystemExit(f"unknown request {request!r}")


RUNTIME_OPTIONS = {"--lock-timeout": float, "--lease-ttl": float}


def runtime_options(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """``open_runtime`` keywords from leading ``--name=value`` options, and the rest."""
    options: dict[str, Any] = {}
    while argv and argv[0].startswith("--"):
        name, _, value = argv[0].partition("=")
        if name not in RUNTIME_OPTIONS:
            raise SystemExit(f"unknown option {argv[0]!r}")
        options[name[2:].replace("-", "_")] = RUNTIME_OPTIONS[name](value)
        argv = argv[1:]
    return options, argv


async def main(argv: list[str]) -> None:
    options, argv = runtime_options(argv)
    mode, url, *rest = argv
    async with open_runtime(url, **options) as rt:
        if mode == "start":
            await start(rt, rest[0], rest[1])
        elif mode == "decider":
            await decider(rt, rest[0])
        elif mode == "decide-then-die":
            await decide_then_die(rt, rest[0], rest[1])
        elif mode == "sweeper":
            await sweeper(rt, rest[0])
        elif mode == "recover":
            await recover(rt, rest[0])
        elif mode == "locker":
            await locker(rt)
        else:
            raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
