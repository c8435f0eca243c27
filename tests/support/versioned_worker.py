"""One deploy of the versioned test graphs in its own OS process, driven in JSON lines:
``python -m support.versioned_worker URL COUNTERS [CLOCK_OFFSET_S]``.

It prints ``{"ready": true}`` once imported, opens the runtime on ``URL`` when the first
request arrives (so that several deploys can be started at once, then driven in turn), and
answers every request line with one JSON line. ``CLOCK_OFFSET_S`` shifts the runtime's clock
(a later deploy: the leases an earlier one wrote have expired by it).

Requests (``{"op": …, …}``):

- ``register {variant, default=true, version=null}`` → ``{"version"}``
- ``start {variant, incident}`` → ``{"status", "approval_id", "graph_version"}``
- ``decide {incident, decision: approve|reject}`` → ``{"applied", "record"}``
- ``decide-then-die {incident}``: prints ``{"deciding"}``, records an approval, then SIGKILLs
  itself before the graph is resumed (on the incident lock decide takes right after)
- ``sweep {now}``: SLA sweeps as of ``now`` until nothing more expires →
  ``{"expired", "applied", "deferred"}`` (approval ids)
- ``recover {stalled}`` → ``{"recovered": [approval ids]}``
- ``get {incident}`` → ``{"status", "graph_version", "runnable_here", "pending"}``
- ``migrate {dry_run, incident_ids=null, to_version=null}`` → the report's ``to_dict()``
- ``report`` → ``{"versions": version_report, "takeover": takeover_check}``

A library error answers ``{"error": class name, "message", "needed", "registered"}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import traceback
from datetime import UTC, datetime, timedelta
from typing import Any

from durable_ir import Approve, DurableIRError, Reject, Runtime, open_runtime
from durable_ir.sla import SlaMonitor
from durable_ir.versioning import migrate, takeover_check, version_report
from support.versioned_graphs import ALERT, GRAPH_NAME, VARIANTS, AnyBuilder


def emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


class Deploy:
    """The requests, on one runtime."""

    def __init__(self, rt: Runtime, counters: str) -> None:
        self.rt = rt
        self.counters = counters
        self.builders: dict[str, AnyBuilder] = {}

    def builder(self, variant: str) -> AnyBuilder:
        # One builder object per variant, so that start() finds the registration again.
        if variant not in self.builders:
            self.builders[variant] = VARIANTS[variant](self.counters)
        return self.builders[variant]

    async def register(
        self, variant: str, default: bool = True, version: str | None = None
    ) -> dict[str, Any]:
        registered = self.rt.register(
            self.builder(variant), name=GRAPH_NAME, version=version, default=default
        )
        return {"version": registered.version}

    async def start(self, variant: str, incident: str) -> dict[str, Any]:
        snapshot = await self.rt.start(
            self.builder(variant), {"alert": ALERT}, incident_id=incident, graph_name=GRAPH_NAME
        )
        pending = snapshot.pending_approval
        return {
            "status": snapshot.status,
            "approval_id": pending.approval_id if pending else None,
            "graph_version": snapshot.graph_version,
        }

    async def decide(self, incident: str, decision: str) -> dict[str, Any]:
        made = (
            Approve(by="alice")
            if decision == "approve"
            else Reject(by="alice", reason="not during the freeze")
        )
        result = await self.rt.decide(incident, made)
        return {"applied": result.applied, "record": result.record.to_dict()}

    async def decide_then_die(self, incident: str) -> dict[str, Any]:
        record_and_take = self.rt.store.ledger.decide_and_take

        async def die(*args: Any) -> Any:  # right after the decision is recorded
            await record_and_take(*args)
            os.kill(os.getpid(), signal.SIGKILL)
            raise AssertionError("unreachable")

        self.rt.store.ledger.decide_and_take = die  # type: ignore[method-assign]
        emit({"deciding": incident})
        await self.rt.decide(incident, Approve(by="alice"))
        raise AssertionError("decide returned after the process should have died")

    async def sweep(self, now: str) -> dict[str, Any]:
        monitor = SlaMonitor(self.rt, batch=25, apply_wait=5.0)
        at = datetime.fromisoformat(now)
        expired: list[str] = []
        applied: list[str] = []
        deferred: list[str] = []
        while True:
            report = await monitor.sweep(at)
            expired += [r.approval_id for r in report.expired]
            applied += report.applied
            deferred += report.deferred
            if not report.expired:
                break
        return {"expired": expired, "applied": applied, "deferred": deferred}

    async def recover(self, stalled: bool = False) -> dict[str, Any]:
        applied = await self.rt.recover(stalled=stalled)
        return {"recovered": [r.approval_id for r in applied]}

    async def get(self, incident: str) -> dict[str, Any]:
        snapshot = await self.rt.get(incident)
        pending = snapshot.pending_approval
        return {
            "status": snapshot.status,
            "graph_version": snapshot.graph_version,
            "runnable_here": snapshot.runnable_here,
            "pending": pending.approval_id if pending else None,
        }

    async def migrate(
        self,
        dry_run: bool,
        incident_ids: list[str] | None = None,
        to_version: str | None = None,
    ) -> dict[str, Any]:
        report = await migrate(
            self.rt,
            graph=GRAPH_NAME,
            to_version=to_version,
            incident_ids=incident_ids,
            dry_run=dry_run,
        )
        return report.to_dict()

    async def report(self) -> dict[str, Any]:
        return {
            "versions": [s.to_dict() for s in await version_report(self.rt)],
            "takeover": [i.to_dict() for i in await takeover_check(self.rt)],
        }

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.pop("op").replace("-", "_")
        try:
            return dict(await getattr(self, op)(**request))
        except DurableIRError as err:
            return {
                "error": type(err).__name__,
                "message": str(err),
                "needed": getattr(err, "needed", None),
                "registered": getattr(err, "registered", None),
            }
        except Exception:
            return {"crash": traceback.format_exc()}


async def main(url: str, counters: str, offset: float = 0.0) -> None:
    loop = asyncio.get_running_loop()
    emit({"ready": True})
    line = await loop.run_in_executor(None, sys.stdin.readline)
    if not line:
        return

    def clock() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=offset)

    async with open_runtime(url, clock=clock) as rt:
        deploy = Deploy(rt, counters)
        while line:
            emit(await deploy.handle(json.loads(line)))
            line = await loop.run_in_executor(None, sys.stdin.readline)


if __name__ == "__main__":
    url, counters, *offset = sys.argv[1:]
    asyncio.run(main(url, counters, float(offset[0]) if offset else 0.0))
