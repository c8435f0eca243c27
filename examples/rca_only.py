"""Only the RCA loop: the confidence-gated root-cause subgraph, on its own and inside a team's
own graph.

``build_rca_loop(gatherer, analyzer, config)`` returns an uncompiled LangGraph ``StateGraph``:
gather evidence over a window → analyze → confident enough? else widen the window and try again,
feeding earlier hypotheses back, up to ``max_attempts``; then conclude with the best hypothesis.
No approval, no runtime and no database are needed.

What it shows:

- the loop compiled on its own over the simulated environment (``SimulatedFleet``: its alerts
  carry the scenario and seed, so the fleet finds each alert's world again) and the offline
  ``CorrelationAnalyzer``: a config error that the first 15-minute window misses and the
  1-hour window finds, and a noise-only alert that exhausts its attempts and is escalated with
  the best (weak) hypothesis;
- the same loop embedded, compiled, as one node of a team's own graph whose state extends
  ``RcaState``, routed with ``route_after_rca``.

Run it (offline, no API key)::

    python examples/rca_only.py

For real systems, swap the parts: ``PrometheusGatherer`` (``durable_ir.rca.gatherers.prometheus``)
for evidence, ``AnthropicAnalyzer`` (``durable_ir.rca.analyzers.anthropic``) or
``ChatModelAnalyzer`` (``durable_ir.rca.analyzers.langchain``) for analysis.
"""

from __future__ import annotations

import asyncio
import operator
from datetime import timedelta
from typing import Annotated, Any, cast

from langgraph.graph import END, START, StateGraph

from durable_ir import RcaConfig, build_rca_loop, parse_alert, route_after_rca
from durable_ir.rca.analyzers import CorrelationAnalyzer
from durable_ir.rca_loop import RcaState
from durable_ir.simulation import SimulatedFleet

CONFIG = RcaConfig(
    threshold=0.7,
    max_attempts=3,
    windows=(timedelta(minutes=15), timedelta(hours=1), timedelta(hours=6)),
)


def alert_state(fleet: SimulatedFleet, scenario: str | None, seed: int) -> dict[str, Any]:
    """The simulated alert as graph state: parsed and normalised like any incoming alert."""
    (alert,) = parse_alert(fleet.alert(scenario, seed))
    return alert.as_state()


def show(result: dict[str, Any]) -> None:
    for attempt in result["rca_attempts"]:
        hypothesis = attempt["hypothesis"] or {}
        print(
            f"  attempt {attempt['attempt']}: window {timedelta(seconds=attempt['window_s'])}, "
            f"{len(attempt['evidence_ids'])} evidence items, "
            f"confidence {attempt['confidence']:.2f} ({hypothesis.get('fault', '-')})"
        )
    rca = result["rca"]
    best = rca["hypothesis"] or {}
    confidence = f"confidence {rca['confidence']:.2f} (threshold {rca['threshold']})"
    print(f"  → {rca['status']} after {rca['attempts']} attempt(s), {confidence}")
    print(f"    root cause: {best.get('root_cause')}")
    actions = [f"{a['action']} {a['target']}" for a in best.get("remediation") or []]
    print(f"    suggested:  {', '.join(actions) or 'nothing'}")
    print(f"    route:      {route_after_rca(cast(RcaState, result))}")


async def on_its_own(fleet: SimulatedFleet) -> None:
    """The loop compiled alone; ``ainvoke`` with ``{"alert": …}``."""
    rca = build_rca_loop(fleet, CorrelationAnalyzer(), CONFIG).compile()
    for scenario, seed in (("config_error", 1), (None, 1)):
        print(f"{scenario or 'healthy (noise only)'}:")
        result = await rca.ainvoke({"alert": alert_state(fleet, scenario, seed)})
        show(result)


# --- Embedding it in a team's own graph ------------------------------------------------------


class TriageState(RcaState, total=False):
    """The team's state: the RCA keys (``alert``, ``rca_evidence``, ``rca_attempts``, ``rca``)
    come from ``RcaState``; the rest is theirs."""

    ticket: str
    notes: Annotated[list[str], operator.add]


def open_ticket(state: TriageState) -> dict[str, Any]:
    return {"ticket": f"OPS-{state['alert']['service']}", "notes": ["ticket opened"]}


def assign_fix(state: TriageState) -> dict[str, Any]:
    cause = (state["rca"]["hypothesis"] or {}).get("root_cause", "")
    return {"notes": [f"assigned to the owning team: {cause[:60]}…"]}


def page_humans(state: TriageState) -> dict[str, Any]:
    return {"notes": [f"paged on-call: no confident root cause ({state['rca']['confidence']:.2f})"]}


def build_team_graph(fleet: SimulatedFleet) -> StateGraph[TriageState, Any, TriageState, Any]:
    graph: StateGraph[TriageState, Any, TriageState, Any] = StateGraph(TriageState)
    graph.add_node("open_ticket", open_ticket)
    # The compiled loop is one node; with a checkpointer on the parent graph, each of its
    # steps is checkpointed too, so a run killed mid-loop resumes at the attempt it was on.
    graph.add_node("rca", build_rca_loop(fleet, CorrelationAnalyzer(), CONFIG).compile())
    graph.add_node("assign_fix", assign_fix)
    graph.add_node("page_humans", page_humans)
    graph.add_edge(START, "open_ticket")
    graph.add_edge("open_ticket", "rca")
    graph.add_conditional_edges(
        "rca", route_after_rca, {"confident": "assign_fix", "escalate": "page_humans"}
    )
    graph.add_edge("assign_fix", END)
    graph.add_edge("page_humans", END)
    return graph


async def embedded(fleet: SimulatedFleet) -> None:
    graph = build_team_graph(fleet).compile()
    for scenario, seed in (("memory_leak", 2), (None, 2)):
        result = await graph.ainvoke({"alert": alert_state(fleet, scenario, seed)})
        notes = " → ".join(result["notes"])
        print(f"{scenario or 'healthy (noise only)'} in the team's graph: {notes}")


async def main() -> None:
    fleet = SimulatedFleet()
    await on_its_own(fleet)
    print()
    await embedded(fleet)


if __name__ == "__main__":
    asyncio.run(main())
