"""Graphs for the ``durable-ir versions`` tests, loadable as ``support.cli_graphs:NAME``: the
next versions of the demo agent's graph."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from durable_ir.builder.state import IncidentState
from durable_ir.demo.agent import build_demo_builder

FREEZE_MARKS_ENV = "DURABLE_IR_TEST_FREEZE_MARKS"


def with_freeze_check() -> StateGraph[Any, Any, Any, Any]:
    """The demo graph with a node inserted between the approval and ``apply``: a new version
    that incidents paused on the demo graph can migrate to. The inserted node records each
    incident it runs for in the directory ``$DURABLE_IR_TEST_FREEZE_MARKS``."""
    import os

    async def change_freeze_check(state: Any, config: RunnableConfig) -> dict[str, Any]:
        marks = Path(os.environ[FREEZE_MARKS_ENV])
        marks.mkdir(parents=True, exist_ok=True)
        (marks / str(config["configurable"]["thread_id"])).touch()
        return {}

    return (
        build_demo_builder("offline")
        .insert_before("apply", "change_freeze_check", change_freeze_check)
        .build()
    )


def without_approval() -> StateGraph[Any, Any, Any, Any]:
    """A next version with no approval at all: nothing paused on the demo graph can move to
    it."""
    graph: StateGraph[Any, Any, Any, Any] = StateGraph(IncidentState)
    graph.add_node("ingest", lambda state: {})
    graph.add_edge(START, "ingest")
    graph.add_edge("ingest", END)
    return graph
