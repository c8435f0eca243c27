"""The approval node dropped into a team's own graph, with its own state and node names."""

from __future__ import annotations

import operator
import uuid
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from durable_ir import Approve, ConfigurationError, Edit, Reject, approval_node, open_runtime


class DeployState(TypedDict, total=False):
    change: dict[str, Any]
    risk: str
    review: dict[str, Any]
    log: Annotated[list[str], operator.add]


def build(gate: Any) -> StateGraph[Any, Any, Any, Any]:
    builder: StateGraph[Any, Any, Any, Any] = StateGraph(DeployState)
    builder.add_node(
        "draft_change", lambda s: {"change": {"flag": "new-checkout", "to": 50}, "log": ["draft"]}
    )
    builder.add_node("review", gate)
    builder.add_node("ship", lambda s: {"log": [f"ship {s['change']['flag']}={s['change']['to']}"]})
    builder.add_edge(START, "draft_change")
    builder.add_edge("draft_change", "review")
    builder.add_conditional_edges(
        "review", gate.route, {"approved": "ship", "rejected": END, "expired": END}
    )
    builder.add_edge("ship", END)
    return builder


def gate_for_changes() -> Any:
    def validate(change: Any) -> Any:
        if not isinstance(change, dict) or not 0 <= change.get("to", -1) <= 100:
            raise ValueError("rollout percentage must be 0-100")
        return change

    return approval_node(
        plan_key="change",
        severity_key="risk",
        state_key="review",
        action_name="roll_out_flag",
        validate_plan=validate,
    )


async def test_approval_node_in_a_users_own_graph(database_url: str) -> None:
    gate = gate_for_changes()
    async with open_runtime(database_url) as rt:
        shipped, dropped = f"chg-{uuid.uuid4()}", f"chg-{uuid.uuid4()}"
        paused = await rt.start(build(gate), {"risk": "p3"}, incident_id=shipped)
        assert paused.status == "awaiting_approval" and paused.values["log"] == ["draft"]
        assert paused.pending_approval is not None
        request = paused.pending_approval.request
        assert request["action_requests"][0]["name"] == "roll_out_flag"
        assert request["action_requests"][0]["args"] == {"plan": {"flag": "new-checkout", "to": 50}}
        assert paused.pending_approval.severity == "P3"
        assert paused.pending_approval.node == "review"

        await rt.decide(shipped, Edit(by="dana", plan={"flag": "new-checkout", "to": 10}))
        done = await rt.get(shipped)
        assert done.values["log"] == ["draft", "ship new-checkout=10"]
        assert done.values["review"]["decided_by"] == "dana"

        await rt.start(build(gate), {}, incident_id=dropped)
        await rt.decide(dropped, Reject(by="erin", reason="freeze week"))
        assert (await rt.get(dropped)).values["log"] == ["draft"]


async def test_a_precompiled_graph_without_checkpointer_is_adopted(database_url: str) -> None:
    gate = gate_for_changes()
    compiled = build(gate).compile()
    async with open_runtime(database_url) as rt:
        incident = f"chg-{uuid.uuid4()}"
        await rt.start(compiled, {}, incident_id=incident, graph_name="rollouts")
        await rt.decide(incident, Approve(by="dana"))
        assert (await rt.get(incident)).values["log"][-1] == "ship new-checkout=50"


async def test_running_the_node_outside_a_runtime_says_how_to_fix_it() -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    graph = build(gate_for_changes()).compile(checkpointer=InMemorySaver())
    with pytest.raises(ConfigurationError, match="needs a runtime"):
        await graph.ainvoke({}, {"configurable": {"thread_id": "x"}})


@pytest.mark.parametrize(
    "options",
    [
        {"plan_key": ""},
        {"allowed": ()},
        {"allowed": ("reject",)},
        {"allowed": ("maybe",)},
        {"default_severity": "P9"},
    ],
)
def test_bad_node_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        approval_node(**options)
