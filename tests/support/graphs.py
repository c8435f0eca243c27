"""A small incident graph for tests, with a side-effect counter on every node.

Counters are lines appended to ``<counter_dir>/<incident_id>.log`` (``O_APPEND`` writes of a
few bytes are atomic), so they count across processes, whatever the database backend.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from durable_ir import ApprovalNode, approval_node

ALLOWED_ACTIONS = {"restart", "rollback", "scale"}
PRE_PAUSE_NODES = ("ingest", "triage", "evidence", "plan")


class IncidentState(TypedDict, total=False):
    alert: dict[str, Any]
    severity: str
    summary: str
    approval_window_s: float
    plan: Any
    approval: dict[str, Any]
    applied: list[str]
    escalated: bool
    done: bool


def validate_plan(plan: Any) -> Any:
    """Test plans are ``{"steps": [{"action": one of ALLOWED_ACTIONS, "target": str}]}``."""
    if not isinstance(plan, dict) or not isinstance(plan.get("steps"), list) or not plan["steps"]:
        raise ValueError("a plan is an object with a non-empty list of steps")
    for step in plan["steps"]:
        if not isinstance(step, dict) or step.get("action") not in ALLOWED_ACTIONS:
            raise ValueError(f"step {step!r} is not an allowed action")
        if not isinstance(step.get("target"), str) or not step["target"]:
            raise ValueError(f"step {step!r} has no target")
    return plan


class Counters:
    """Append-only per-incident run counters in a directory."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def hit(self, incident_id: str, node: str) -> None:
        fd = os.open(self.directory / f"{incident_id}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            os.write(fd, f"{node}\n".encode())
        finally:
            os.close(fd)

    def read(self, incident_id: str) -> Counter[str]:
        path = self.directory / f"{incident_id}.log"
        if not path.exists():
            return Counter()
        return Counter(path.read_text().split())


def _incident(config: RunnableConfig) -> str:
    return str((config.get("configurable") or {})["thread_id"])


def build_graph(
    counter_dir: str | os.PathLike[str], gate: ApprovalNode | None = None
) -> StateGraph[Any, Any, Any, Any]:
    """ingest → triage → evidence → plan → approval → apply | escalate → finish."""
    counters = Counters(counter_dir)
    gate = gate or approval_node(validate_plan=validate_plan)

    def counted(name: str, update: Any) -> Any:
        def node(state: IncidentState, config: RunnableConfig) -> dict[str, Any]:
            counters.hit(_incident(config), name)
            return update(state) if callable(update) else dict(update)

        node.__name__ = name
        return node

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(IncidentState)
    builder.add_node("ingest", counted("ingest", {}))
    builder.add_node(
        "triage",
        counted("triage", lambda s: {"severity": (s.get("alert") or {}).get("severity", "P2")}),
    )
    builder.add_node("evidence", counted("evidence", {"summary": "api 5xx after deploy"}))
    builder.add_node(
        "plan",
        counted(
            "plan",
            {"plan": {"steps": [{"action": "rollback", "target": "api"}]}},
        ),
    )
    builder.add_node("approval", gate)
    builder.add_node(
        "apply",
        counted("apply", lambda s: {"applied": [st["target"] for st in s["plan"]["steps"]]}),
    )
    builder.add_node("escalate", counted("escalate", {"escalated": True}))
    builder.add_node("finish", counted("finish", {"done": True}))
    builder.add_edge(START, "ingest")
    builder.add_edge("ingest", "triage")
    builder.add_edge("triage", "evidence")
    builder.add_edge("evidence", "plan")
    builder.add_edge("plan", "approval")
    builder.add_conditional_edges(
        "approval", gate.route, {"approved": "apply", "rejected": "escalate", "expired": "escalate"}
    )
    builder.add_edge("apply", "finish")
    builder.add_edge("escalate", "finish")
    builder.add_edge("finish", END)
    return builder


ALERT = {"name": "HighErrorRate", "service": "api", "severity": "P1"}
