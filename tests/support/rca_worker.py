"""Runs a parent graph with the RCA loop as a subgraph, for the kill-mid-loop test:
``python -m support.rca_worker URL THREAD LOG``. Attempt 2's analysis hangs (after noting that
it started), so the parent can SIGKILL the process mid-loop."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from langgraph.graph import END, START, StateGraph

from durable_ir import open_store
from durable_ir.rca import AnalysisRequest, Hypothesis
from durable_ir.rca_loop import RcaState, build_rca_loop, route_after_rca
from support.rca import ALERT, WindowedGatherer


class IncidentWithRca(RcaState, total=False):
    triaged: bool
    outcome: str


class LoggedAnalyzer:
    """Low confidence on attempt 1; on attempt 2, hangs if ``hang`` else answers 0.9."""

    def __init__(self, log: Path, *, hang: bool) -> None:
        self.log, self.hang = log, hang

    async def analyze(self, request: AnalysisRequest) -> Hypothesis:
        with self.log.open("a") as out:
            out.write(f"analyze {request.attempt}\n")
        if request.attempt >= 2 and self.hang:
            await asyncio.Event().wait()
        return Hypothesis(
            root_cause="deploy v42",
            fault="bad_deploy",
            service="checkout",
            confidence=0.3 if request.attempt == 1 else 0.9,
            cited_evidence=sorted(request.evidence_ids()),
        )


def build_parent(log: Path, *, hang: bool) -> StateGraph[Any, Any, Any, Any]:
    def triage(state: IncidentWithRca) -> dict[str, Any]:
        with log.open("a") as out:
            out.write("triage\n")
        return {"triaged": True}

    rca = build_rca_loop(WindowedGatherer(log), LoggedAnalyzer(log, hang=hang)).compile()
    parent: StateGraph[Any, Any, Any, Any] = StateGraph(IncidentWithRca)
    parent.add_node("triage", triage)
    parent.add_node("rca", rca)
    parent.add_node("plan", lambda s: {"outcome": "plan"})
    parent.add_node("escalate", lambda s: {"outcome": "escalate"})
    parent.add_edge(START, "triage")
    parent.add_edge("triage", "rca")
    parent.add_conditional_edges(
        "rca", route_after_rca, {"confident": "plan", "escalate": "escalate"}
    )
    parent.add_edge("plan", END)
    parent.add_edge("escalate", END)
    return parent


async def main(url: str, thread: str, log: str) -> None:
    async with open_store(url) as store:
        graph = build_parent(Path(log), hang=True).compile(checkpointer=store.checkpointer)
        await graph.ainvoke(
            {"alert": ALERT}, {"configurable": {"thread_id": thread}}, durability="sync"
        )


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
