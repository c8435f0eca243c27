"""Two deploys of one incident graph, for the graph-versioning tests (issue 14).

Each *variant* builds a graph named ``incident`` whose nodes append to the side-effect
counters of :class:`support.graphs.Counters` (one line per run of a node, across processes).
:data:`CHANGES` pairs the graph an incident pauses on (the old deploy, "v1") with the graph
the new deploy registers ("v2"):

- ``rename``: the paused approval node is renamed (``approval`` → ``signoff``);
- ``remove``: the approval node is removed (plan → apply → finish);
- ``subgraph``: the approval node lives in a subgraph (``review``), and is renamed there;
- ``pydantic``: the state is a Pydantic model, and v2 adds a required field to it;
- ``insert``: v2 inserts a node (``audit``) right after the approval.

Every v1 runs ``ingest`` and ``plan`` before it pauses, then ``apply`` (approved) or
``escalate`` (rejected, expired), then ``finish``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel

from durable_ir import ApprovalNode, approval_node
from support.graphs import Counters, validate_plan

GRAPH_NAME = "incident"
PRE_PAUSE = ("ingest", "plan")
AFTER_PAUSE = ("apply", "escalate", "finish", "audit")
PLAN = {"steps": [{"action": "rollback", "target": "api"}]}
ALERT = {"name": "HighErrorRate", "service": "api", "severity": "P1"}

AnyBuilder = StateGraph[Any, Any, Any, Any]


class State(TypedDict, total=False):
    alert: dict[str, Any]
    severity: str
    plan: Any
    approval: dict[str, Any]
    applied: list[str]
    escalated: bool
    audited: bool
    done: bool


class PydanticState(BaseModel):
    alert: dict[str, Any] = {}
    severity: str | None = None
    plan: Any = None
    approval: dict[str, Any] | None = None
    applied: list[str] = []
    escalated: bool = False
    done: bool = False


class PydanticStateWithTicket(PydanticState):
    """v2 of :class:`PydanticState`: a new required field, which no paused state has."""

    ticket: str


def _get(state: Any, key: str) -> Any:
    return state.get(key) if isinstance(state, Mapping) else getattr(state, key, None)


class _Nodes:
    """The counted nodes of one graph."""

    def __init__(self, counter_dir: str | os.PathLike[str]) -> None:
        self.counters = Counters(counter_dir)

    def counted(self, name: str, update: Callable[[Any], dict[str, Any]]) -> Any:
        counters = self.counters

        def node(state: Any, config: RunnableConfig) -> dict[str, Any]:
            counters.hit(str((config.get("configurable") or {})["thread_id"]), name)
            return update(state)

        node.__name__ = name
        return node

    def add_common(self, builder: AnyBuilder) -> None:
        """ingest and plan (before the pause)."""
        builder.add_node(
            "ingest",
            self.counted(
                "ingest", lambda s: {"severity": (_get(s, "alert") or {}).get("severity", "P2")}
            ),
        )
        builder.add_node("plan", self.counted("plan", lambda s: {"plan": PLAN}))
        builder.add_edge(START, "ingest")
        builder.add_edge("ingest", "plan")

    def add_outcomes(self, builder: AnyBuilder, *, finish: bool = True) -> None:
        """apply and escalate (and finish, then END)."""
        builder.add_node(
            "apply",
            self.counted("apply", lambda s: {"applied": [t["target"] for t in PLAN["steps"]]}),
        )
        builder.add_node("escalate", self.counted("escalate", lambda s: {"escalated": True}))
        if finish:
            builder.add_node("finish", self.counted("finish", lambda s: {"done": True}))
            builder.add_edge("apply", "finish")
            builder.add_edge("escalate", "finish")
            builder.add_edge("finish", END)
        else:
            builder.add_edge("apply", END)
            builder.add_edge("escalate", END)


def _routes() -> dict[str, str]:
    return {"approved": "apply", "rejected": "escalate", "expired": "escalate"}


def _gate() -> ApprovalNode:
    return approval_node(validate_plan=validate_plan)


def flat(counter_dir: str | os.PathLike[str], *, gate_name: str = "approval") -> AnyBuilder:
    """ingest → plan → <gate_name> → apply | escalate → finish."""
    nodes, gate = _Nodes(counter_dir), _gate()
    builder: AnyBuilder = StateGraph(State)
    nodes.add_common(builder)
    builder.add_node(gate_name, gate)
    builder.add_edge("plan", gate_name)
    builder.add_conditional_edges(gate_name, gate.route, _routes())
    nodes.add_outcomes(builder)
    return builder


def removed(counter_dir: str | os.PathLike[str]) -> AnyBuilder:
    """ingest → plan → apply → finish: no approval any more."""
    nodes = _Nodes(counter_dir)
    builder: AnyBuilder = StateGraph(State)
    nodes.add_common(builder)
    builder.add_node(
        "apply",
        nodes.counted("apply", lambda s: {"applied": [t["target"] for t in PLAN["steps"]]}),
    )
    builder.add_node("finish", nodes.counted("finish", lambda s: {"done": True}))
    builder.add_edge("plan", "apply")
    builder.add_edge("apply", "finish")
    builder.add_edge("finish", END)
    return builder


def inserted(counter_dir: str | os.PathLike[str]) -> AnyBuilder:
    """ingest → plan → approval → audit → apply | escalate → finish."""
    nodes, gate = _Nodes(counter_dir), _gate()
    builder: AnyBuilder = StateGraph(State)
    nodes.add_common(builder)
    builder.add_node("approval", gate)
    builder.add_node("audit", nodes.counted("audit", lambda s: {"audited": True}))
    builder.add_edge("plan", "approval")
    builder.add_edge("approval", "audit")
    builder.add_conditional_edges("audit", gate.route, _routes())
    nodes.add_outcomes(builder)
    return builder


def with_subgraph(
    counter_dir: str | os.PathLike[str], *, gate_name: str = "approval"
) -> AnyBuilder:
    """ingest → plan → review → finish, where review is a subgraph:
    <gate_name> → apply | escalate."""
    nodes, gate = _Nodes(counter_dir), _gate()
    inner: AnyBuilder = StateGraph(State)
    inner.add_node(gate_name, gate)
    inner.add_edge(START, gate_name)
    inner.add_conditional_edges(gate_name, gate.route, _routes())
    nodes.add_outcomes(inner, finish=False)

    builder: AnyBuilder = StateGraph(State)
    nodes.add_common(builder)
    builder.add_node("review", inner.compile())
    builder.add_node("finish", nodes.counted("finish", lambda s: {"done": True}))
    builder.add_edge("plan", "review")
    builder.add_edge("review", "finish")
    builder.add_edge("finish", END)
    return builder


def pydantic(counter_dir: str | os.PathLike[str], *, state: type[BaseModel]) -> AnyBuilder:
    """The flat graph on a Pydantic state."""
    nodes, gate = _Nodes(counter_dir), _gate()
    builder: AnyBuilder = StateGraph(state)
    nodes.add_common(builder)
    builder.add_node("approval", gate)
    builder.add_edge("plan", "approval")
    builder.add_conditional_edges("approval", gate.route, _routes())
    nodes.add_outcomes(builder)
    return builder


VARIANTS: dict[str, Callable[[str | os.PathLike[str]], AnyBuilder]] = {
    "flat": flat,
    "renamed": lambda d: flat(d, gate_name="signoff"),
    "removed": removed,
    "inserted": inserted,
    "subgraph": with_subgraph,
    "subgraph-renamed": lambda d: with_subgraph(d, gate_name="signoff"),
    "pydantic": lambda d: pydantic(d, state=PydanticState),
    "pydantic-required": lambda d: pydantic(d, state=PydanticStateWithTicket),
}
"""Graph builders by name; each takes the counter directory."""

CHANGES: dict[str, tuple[str, str]] = {
    "rename": ("flat", "renamed"),
    "remove": ("flat", "removed"),
    "subgraph": ("subgraph", "subgraph-renamed"),
    "pydantic": ("pydantic", "pydantic-required"),
    "insert": ("flat", "inserted"),
}
"""Each change a redeploy makes: (the variant incidents pause on, the variant deployed)."""
