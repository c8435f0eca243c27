"""Only the approval node, in a team's own LangGraph graph.

The team has its own graph — its own state keys and node names — and wants one thing from
durable-ir: a human approval that survives restarts and races. It adds ``approval_node()`` as
one node and routes on ``gate.route``; everything else stays theirs.

What it shows:

- the node configured for the team's state (``plan_key``, ``severity_key``, ``state_key``) and
  a validator that refuses bad plans (and bad edits) before anyone sees them;
- ``rt.start`` runs until the pause, the request is in the database (with its deadline);
- ``rt.decide`` records the decision, then resumes the graph; a second, late decision is a
  ``Conflict`` naming the winner, and the ledger keeps who decided what, when, and why.

Run it (offline, about a second, on SQLite in a temporary directory)::

    python examples/approval_only.py
"""

from __future__ import annotations

import asyncio
import operator
import tempfile
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

from durable_ir import Approve, Conflict, Reject, approval_node, open_runtime


class TicketState(TypedDict, total=False):
    """The team's own state: none of these names come from durable-ir."""

    ticket: dict[str, Any]
    priority: str
    proposal: dict[str, Any]
    proposal_text: str
    review: dict[str, Any]
    """Written by the approval node (``state_key="review"``)."""
    log: Annotated[list[str], operator.add]


def diagnose(state: TicketState) -> dict[str, Any]:
    ticket = state["ticket"]
    return {"priority": ticket["priority"], "log": [f"diagnosed {ticket['id']}"]}


def propose_fix(state: TicketState) -> dict[str, Any]:
    queue = state["ticket"]["queue"]
    proposal = {"action": "scale_consumers", "queue": queue, "from": 4, "to": 12}
    return {
        "proposal": proposal,
        "proposal_text": f"Scale {queue} consumers 4 → 12 to drain a backlog of 80k messages",
        "log": ["proposed scaling"],
    }


def execute(state: TicketState) -> dict[str, Any]:
    p = state["proposal"]
    return {
        "log": [f"scaled {p['queue']} to {p['to']} (approved by {state['review']['decided_by']})"]
    }


def hand_over(state: TicketState) -> dict[str, Any]:
    review = state["review"]
    return {"log": [f"handed to on-call: {review['status']} — {review['reason']}"]}


def check_proposal(proposal: Any) -> Any:
    """Refuse plans (and edits) the team would never run: the node raises before asking."""
    if not isinstance(proposal, dict) or proposal.get("action") != "scale_consumers":
        raise ValueError("only scale_consumers proposals can be approved here")
    if not 1 <= int(proposal.get("to", 0)) <= 20:
        raise ValueError("consumers must stay between 1 and 20")
    return proposal


# The one piece from durable-ir, pointed at the team's state keys.
gate = approval_node(
    plan_key="proposal",
    summary_key="proposal_text",
    severity_key="priority",  # P0–P3: the deadline follows it (P2: 2 hours by default)
    state_key="review",
    action_name="scale_consumers",
    validate_plan=check_proposal,
)


def build_graph() -> StateGraph[TicketState, Any, TicketState, TicketState]:
    graph: StateGraph[TicketState, Any, TicketState, TicketState] = StateGraph(TicketState)
    graph.add_node("diagnose", diagnose)
    graph.add_node("propose_fix", propose_fix)
    graph.add_node("human_review", gate)
    graph.add_node("execute", execute)
    graph.add_node("hand_over", hand_over)
    graph.add_edge(START, "diagnose")
    graph.add_edge("diagnose", "propose_fix")
    graph.add_edge("propose_fix", "human_review")
    graph.add_conditional_edges(
        "human_review",
        gate.route,
        {"approved": "execute", "rejected": "hand_over", "expired": "hand_over"},
    )
    graph.add_edge("execute", END)
    graph.add_edge("hand_over", END)
    return graph


async def main() -> None:
    ticket = {"id": "OPS-1234", "queue": "orders", "priority": "P2"}
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{Path(directory) / 'approvals.db'}"
        async with open_runtime(url) as rt:
            paused = await rt.start(build_graph(), {"ticket": ticket}, incident_id="OPS-1234")
            request = paused.pending_approval
            assert request is not None
            print(f"status: {paused.status}")
            print(f"asks:   {request.request['action_requests'][0]['description']}")
            print(f"plan:   {request.request['action_requests'][0]['args']['plan']}")
            print(f"due:    {request.deadline_at.isoformat()} ({request.severity})")

            # From an HTTP route, a Slack button, a CLI — in this or any other process.
            result = await rt.decide(
                "OPS-1234", Approve(by="alice", reason="backlog is growing, go")
            )
            print(f"decided: {result.record.describe()} (applied: {result.applied})")

            try:
                await rt.decide("OPS-1234", Reject(by="bob", reason="too late"))
            except Conflict as late:
                winner = late.winner.describe() if late.winner else "?"
                print(f"bob was too late: {winner}")

            done = await rt.get("OPS-1234")
            print(f"status: {done.status}")
            for line in done.values["log"]:
                print(f"  - {line}")
            for row in await rt.history("OPS-1234"):  # the audit trail
                print(f"audit: {row.approval_id[:12]}… {row.describe()}: {row.reason}")


if __name__ == "__main__":
    asyncio.run(main())
