"""The graphs a runtime can run, by name, each compiled with the runtime's checkpointer."""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph

from durable_ir.approval.node import ApprovalNode
from durable_ir.errors import ConfigurationError
from durable_ir.services import SERVICES_CONFIG_KEY, NodeServices

__all__ = ["DEFAULT_GRAPH_NAME", "GraphRegistry", "RegisteredGraph"]

DEFAULT_GRAPH_NAME = "incident"
AnyGraph = StateGraph[Any, Any, Any, Any] | CompiledStateGraph[Any, Any, Any, Any]


class RegisteredGraph:
    """A compiled graph plus what the runtime needs to know about it."""

    def __init__(
        self, name: str, source: object, compiled: CompiledStateGraph[Any, Any, Any, Any]
    ) -> None:
        self.name = name
        self.source = source
        self.compiled = compiled
        self.approval_nodes = _approval_nodes(compiled)

    def approval_node(self, node: str) -> ApprovalNode | None:
        """The :class:`ApprovalNode` registered under ``node``, if it is one."""
        return self.approval_nodes.get(node)

    def config(self, incident_id: str, services: NodeServices) -> RunnableConfig:
        """The config to invoke this graph for ``incident_id`` with."""
        return {"configurable": {"thread_id": incident_id, SERVICES_CONFIG_KEY: services}}


def _approval_nodes(compiled: CompiledStateGraph[Any, Any, Any, Any]) -> dict[str, ApprovalNode]:
    found: dict[str, ApprovalNode] = {}
    for name, spec in compiled.builder.nodes.items():
        runnable = spec.runnable
        for candidate in (
            runnable,
            getattr(runnable, "afunc", None),
            getattr(runnable, "func", None),
        ):
            if isinstance(candidate, ApprovalNode):
                found[name] = candidate
                break
    return found


class GraphRegistry:
    """Compiles graphs with one checkpointer and finds them again by name."""

    def __init__(self, checkpointer: BaseCheckpointSaver[Any]) -> None:
        self._checkpointer = checkpointer
        self._graphs: dict[str, RegisteredGraph] = {}

    def register(self, graph: AnyGraph, name: str | None = None) -> RegisteredGraph:
        """Compile (or adopt) ``graph`` under ``name`` and return it.

        Passing a graph that is registered already (the builder or the compiled graph this
        returned) is a no-op. Registering another graph under a taken name replaces the entry:
        that is how a new version of a graph, or a graph rebuilt per request, takes over.
        """
        for known in self._graphs.values():
            if (graph is known.source or graph is known.compiled) and name in (None, known.name):
                return known
        if isinstance(graph, StateGraph):
            graph_name = name or DEFAULT_GRAPH_NAME
            compiled = graph.compile(checkpointer=self._checkpointer, name=graph_name)
        elif isinstance(graph, CompiledStateGraph):
            graph_name = name or graph.name
            if graph.checkpointer not in (None, self._checkpointer):
                raise ConfigurationError(
                    "this graph was compiled with another checkpointer; pass the uncompiled "
                    "StateGraph (or compile it without a checkpointer) and the runtime adds its own"
                )
            compiled = graph.copy(update={"checkpointer": self._checkpointer, "name": graph_name})
        else:
            raise ConfigurationError(
                f"expected a langgraph StateGraph or CompiledStateGraph, got {type(graph).__name__}"
            )
        if not graph_name or not isinstance(graph_name, str):
            raise ConfigurationError("a graph needs a non-empty name")
        registered = RegisteredGraph(graph_name, graph, compiled)
        self._graphs[graph_name] = registered
        return registered

    def get(self, name: str) -> RegisteredGraph:
        """The graph registered as ``name`` (``ConfigurationError`` if none)."""
        try:
            return self._graphs[name]
        except KeyError:
            raise ConfigurationError(
                f"graph {name!r} is not registered with this runtime; call "
                f"runtime.register(graph, name={name!r}) first"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._graphs

    def names(self) -> list[str]:
        """The registered names."""
        return sorted(self._graphs)
