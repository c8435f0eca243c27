"""A deploy whose host clock may be off: ``python -m support.clock_worker URL COUNTERS
[--local-clock]``, run by tests under libfaketime (``FAKETIME=+20m``).

Reads JSON requests from stdin, one per line, and answers each with one JSON line:

- ``{"do": "start", "incident": ID}``: run the test graph to its approval pause; answers
  ``{"deadline_at": iso, "requested_at": iso}``.
- ``{"do": "hold", "incident": ID}``: start a run whose first node waits (holding the lease,
  heart-beating) until ``{"do": "release"}``; answers ``{"holding": ID}`` once inside it.
- ``{"do": "release"}``: let the held run finish; answers ``{"released": true}``.
- ``{"do": "sweep"}``: one SLA sweep and one recovery pass at this process's "now"; answers
  ``{"expired": [...], "recovered": [...], "now": iso, "local": iso}``.

``--local-clock`` times everything by this host's clock (``system_clock``) instead of the
database's: the control that shows what a skewed host does without the one clock.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from durable_ir import open_runtime, system_clock
from durable_ir.sla import SlaMonitor
from support.graphs import IncidentState, build_graph

P0 = {"alert": {"severity": "P0"}}


def emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def held_graph(entered: asyncio.Event, release: asyncio.Event) -> StateGraph[Any, Any, Any, Any]:
    async def wait(state: IncidentState, config: RunnableConfig) -> dict[str, Any]:
        entered.set()
        await release.wait()
        return {"done": True}

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(IncidentState)
    builder.add_node("wait", wait)
    builder.add_edge(START, "wait")
    builder.add_edge("wait", END)
    return builder


async def main(url: str, counters: str, local_clock: bool) -> None:
    loop = asyncio.get_running_loop()
    entered, release = asyncio.Event(), asyncio.Event()
    held: asyncio.Task[Any] | None = None
    async with open_runtime(url, clock=system_clock if local_clock else None) as rt:
        graph = build_graph(counters)
        rt.register(graph)
        rt.register(held_graph(entered, release), name="held")
        emit({"ready": True})
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            request = json.loads(line)
            if request["do"] == "start":
                snapshot = await rt.start(graph, P0, incident_id=request["incident"])
                pending = snapshot.pending_approval
                assert pending is not None, snapshot
                emit(
                    {
                        "deadline_at": pending.deadline_at.isoformat(),
                        "requested_at": pending.requested_at.isoformat(),
                    }
                )
            elif request["do"] == "hold":
                held = asyncio.create_task(
                    rt.start(
                        held_graph(entered, release), {}, incident_id=request["incident"],
                        graph_name="held",
                    )
                )  # fmt: skip
                await asyncio.wait_for(entered.wait(), 30)
                emit({"holding": request["incident"]})
            elif request["do"] == "release":
                release.set()
                if held is not None:
                    await asyncio.wait_for(held, 30)
                emit({"released": True})
            elif request["do"] == "sweep":
                report = await SlaMonitor(rt).sweep()
                recovered = await rt.recover_runs()
                emit(
                    {
                        "expired": [r.incident_id for r in report.expired],
                        "recovered": recovered,
                        "now": report.at.isoformat(),
                        "owner": rt.leases.owner,
                        "local": datetime.now(UTC).isoformat(),
                    }
                )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], "--local-clock" in sys.argv[3:]))
