"""The graphs a runtime can run: by name and by version, each compiled with the runtime's
checkpointer.

LangGraph applies whatever graph is compiled now to every thread, and a thread paused at a
node that was renamed or removed silently runs nothing (or, inside a subgraph, the next node).
So every registered graph has a **version** — by default a fingerprint of its structure (nodes,
edges, branches, subgraphs, approval nodes, state keys), or a string the caller gives — and
each incident records the version it runs on and the version each approval paused on. Several
versions of one graph may be registered side by side: every operation on an incident runs the
version it needs, and a process that lacks it refuses loudly
(:class:`~durable_ir.errors.GraphVersionUnavailable`) instead of guessing.

Example:
    >>> from typing import TypedDict
    >>> from langgraph.checkpoint.memory import InMemorySaver
    >>> from langgraph.graph import END, START, StateGraph
    >>> class State(TypedDict, total=False):
    ...     done: bool
    >>> def build(node: str) -> StateGraph:
    ...     builder = StateGraph(State)
    ...     _ = builder.add_node(node, lambda s: {"done": True})
    ...     _ = builder.add_edge(START, node)
    ...     _ = builder.add_edge(node, END)
    ...     return builder
    >>> registry = GraphRegistry(InMemorySaver())
    >>> v1 = registry.register(build("fix"), "incident")
    >>> v2 = registry.register(build("repair"), "incident")
    >>> v1.version != v2.version, registry.get("incident") is v2
    (True, True)
    >>> registry.get("incident", v1.version) is v1
    True
"""

from __future__ import annotations

import hashlib
import json
import typing
from collections.abc import Iterator
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.pregel import Pregel

from durable_ir.errors import ConfigurationError, GraphVersionUnavailable
from durable_ir.records import version_key
from durable_ir.services import SERVICES_CONFIG_KEY, ApprovalPoint, NodeServices

__all__ = [
    "DEFAULT_GRAPH_NAME",
    "VERSION_METADATA_KEY",
    "GraphRegistry",
    "RegisteredGraph",
    "graph_fingerprint",
]

DEFAULT_GRAPH_NAME = "incident"
VERSION_METADATA_KEY = "durable_ir_graph_version"
"""The checkpoint metadata key that records which graph version wrote a checkpoint."""
MAX_VERSION_CHARS = 100
AnyGraph = StateGraph[Any, Any, Any, Any] | CompiledStateGraph[Any, Any, Any, Any]


class RegisteredGraph:
    """A compiled graph, its version, and what the runtime needs to know about it."""

    def __init__(
        self,
        name: str,
        source: object,
        compiled: CompiledStateGraph[Any, Any, Any, Any],
        version: str | None = None,
    ) -> None:
        self.name = name
        self.source = source
        self.compiled = compiled
        self.fingerprint = graph_fingerprint(compiled)
        self.version = version or self.fingerprint
        self.approval_nodes: dict[str, ApprovalPoint] = {}
        self.node_names: frozenset[str] = frozenset()
        names: set[str] = set()
        for graph in _graph_levels(compiled):
            names.update(n for n in graph.builder.nodes)
            for node, approval in _approval_nodes(graph).items():
                self.approval_nodes.setdefault(node, approval)
        self.node_names = frozenset(names)

    def approval_node(self, node: str) -> ApprovalPoint | None:
        """The approval node (an :class:`~durable_ir.services.ApprovalPoint`, such as an
        ``ApprovalNode``) registered under ``node``, at any subgraph level."""
        return self.approval_nodes.get(node)

    def has_node(self, node: str) -> bool:
        """True if ``node`` names a node of this graph or of one of its subgraphs."""
        return node in self.node_names

    def config(self, incident_id: str, services: NodeServices) -> RunnableConfig:
        """The config to invoke this graph for ``incident_id`` with (its checkpoints record
        this version in their metadata)."""
        return {
            "configurable": {"thread_id": incident_id, SERVICES_CONFIG_KEY: services},
            # Recorded in each checkpoint's metadata, and in LangSmith's runs when tracing.
            "metadata": {VERSION_METADATA_KEY: self.version, "durable_ir_incident_id": incident_id},
        }

    def __repr__(self) -> str:
        return f"RegisteredGraph(name={self.name!r}, version={self.version!r})"


def _graph_levels(
    compiled: Pregel[Any, Any, Any, Any],
) -> Iterator[CompiledStateGraph[Any, Any, Any, Any]]:
    """The graph and every subgraph LangGraph can find in it, depth first."""
    if isinstance(compiled, CompiledStateGraph):
        yield compiled
    for _, sub in compiled.get_subgraphs(recurse=True):
        if isinstance(sub, CompiledStateGraph):
            yield sub


def _approval_nodes(compiled: CompiledStateGraph[Any, Any, Any, Any]) -> dict[str, ApprovalPoint]:
    found: dict[str, ApprovalPoint] = {}
    for name, spec in compiled.builder.nodes.items():
        runnable = spec.runnable
        for candidate in (
            runnable,
            getattr(runnable, "afunc", None),
            getattr(runnable, "func", None),
        ):
            if isinstance(candidate, ApprovalPoint) and getattr(
                candidate, "__durable_ir_approval__", False
            ):
                found[name] = candidate
                break
    return found


def _schema_keys(schema: Any) -> dict[str, bool]:
    """A state schema's keys, each with whether it is required (Pydantic models, TypedDicts
    and dataclasses; other schemas contribute nothing)."""
    fields = getattr(schema, "model_fields", None)
    if isinstance(fields, dict):  # Pydantic
        return {name: bool(field.is_required()) for name, field in fields.items()}
    dataclass_fields = getattr(schema, "__dataclass_fields__", None)
    if isinstance(dataclass_fields, dict):
        from dataclasses import MISSING

        return {
            name: f.default is MISSING and f.default_factory is MISSING
            for name, f in dataclass_fields.items()
        }
    try:
        annotations = typing.get_type_hints(schema)
    except Exception:
        annotations = dict(getattr(schema, "__annotations__", {}) or {})
    required: frozenset[str] = getattr(schema, "__required_keys__", frozenset())
    return {name: name in required for name in annotations}


def _describe(compiled: CompiledStateGraph[Any, Any, Any, Any]) -> dict[str, Any]:
    """The parts of a graph that decide where a paused thread can go on: what the version
    fingerprint hashes."""
    builder = compiled.builder
    subgraphs = dict(compiled.get_subgraphs())
    approvals = _approval_nodes(compiled)
    nodes: dict[str, Any] = {}
    for name in builder.nodes:
        sub = subgraphs.get(name)
        nodes[name] = {
            "approval": name in approvals,
            "subgraph": _describe(sub) if isinstance(sub, CompiledStateGraph) else None,
        }
    branches = {
        source: {
            branch_name: (
                sorted((str(k), str(v)) for k, v in spec.ends.items()) if spec.ends else None
            )
            for branch_name, spec in sorted(specs.items())
        }
        for source, specs in sorted(builder.branches.items())
    }
    return {
        "nodes": nodes,
        "edges": sorted([str(a), str(b)] for a, b in builder.edges),
        "waiting_edges": sorted(
            [sorted(map(str, starts)), str(end)] for starts, end in builder.waiting_edges
        ),
        "branches": branches,
        "state": _schema_keys(builder.state_schema),
        "interrupt_before": sorted(map(str, compiled.interrupt_before_nodes or ())),
        "interrupt_after": sorted(map(str, compiled.interrupt_after_nodes or ())),
    }


def graph_fingerprint(graph: AnyGraph) -> str:
    """A stable fingerprint of ``graph``'s structure: 12 hex digits, the same in every process
    that builds the same graph, different when a node, edge, branch, subgraph, approval node
    or state key (or whether it is required) changes. Node *code* is not part of it: give an
    explicit version when a change of behaviour alone must not mix with running incidents.

    Example:
        >>> from typing import TypedDict
        >>> from langgraph.graph import END, START, StateGraph
        >>> class State(TypedDict):
        ...     x: int
        >>> builder = StateGraph(State)
        >>> _ = builder.add_node("a", lambda s: s)
        >>> _ = builder.add_edge(START, "a")
        >>> _ = builder.add_edge("a", END)
        >>> graph_fingerprint(builder) == graph_fingerprint(builder.compile())
        True
    """
    compiled = graph.compile() if isinstance(graph, StateGraph) else graph
    text = json.dumps(_describe(compiled), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _check_version(version: object) -> str:
    if not isinstance(version, str) or not version.strip():
        raise ConfigurationError("a graph version must be a non-empty string")
    if len(version) > MAX_VERSION_CHARS or not version.isprintable():
        raise ConfigurationError(
            f"a graph version is printable text of at most {MAX_VERSION_CHARS} characters"
        )
    return version


class GraphRegistry:
    """Compiles graphs with one checkpointer and finds them again by name and version."""

    def __init__(self, checkpointer: BaseCheckpointSaver[Any]) -> None:
        self._checkpointer = checkpointer
        self._graphs: dict[str, dict[str, RegisteredGraph]] = {}
        self._default: dict[str, str] = {}

    def register(
        self,
        graph: AnyGraph,
        name: str | None = None,
        *,
        version: str | None = None,
        default: bool = True,
    ) -> RegisteredGraph:
        """Compile (or adopt) ``graph`` under ``name`` and ``version`` and return it.

        ``version`` defaults to the graph's structural fingerprint. Several versions of one
        name live side by side; with ``default`` (the default) this one is the version new
        incidents of ``name`` start on. Passing a graph object that is registered already
        (the builder or the compiled graph this returned) returns that entry unchanged.
        Registering another graph under a taken name and version replaces that entry.

        Raises:
            ConfigurationError: not a LangGraph graph, compiled with another checkpointer,
                or an unusable name or version.
        """
        if version is not None:
            _check_version(version)
        for versions in self._graphs.values():
            for known in versions.values():
                if (
                    (graph is known.source or graph is known.compiled)
                    and name in (None, known.name)
                    and version in (None, known.version)
                ):
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
        registered = RegisteredGraph(graph_name, graph, compiled, version)
        self._graphs.setdefault(graph_name, {})[registered.version] = registered
        if default or graph_name not in self._default:
            self._default[graph_name] = registered.version
        return registered

    def get(self, name: str, version: str | None = None) -> RegisteredGraph:
        """The graph registered as ``name`` at ``version`` (default: its default version).

        Raises:
            ConfigurationError: no graph is registered under ``name``, or not at ``version``.
        """
        versions = self._graphs.get(name)
        if not versions:
            raise ConfigurationError(
                f"graph {name!r} is not registered with this runtime; call "
                f"runtime.register(graph, name={name!r}) first"
            )
        found = versions.get(version or self._default[name])
        if found is None:
            raise ConfigurationError(
                f"graph {name!r} has no version {version!r} here (registered: "
                f"{', '.join(sorted(versions))})"
            )
        return found

    def resolve(self, name: str, version: str | None, *, incident_id: str) -> RegisteredGraph:
        """The graph an incident that runs on ``name``/``version`` must run on: that version,
        or (``version`` ``None``: an incident from before versions were recorded) the default.

        Raises:
            GraphVersionUnavailable: that version (or any version of ``name``) is not
                registered here; the error names the incident, the version it needs and the
                versions registered.
        """
        versions = self._graphs.get(name, {})
        found = versions.get(version if version is not None else self._default.get(name, ""))
        if found is None:
            raise GraphVersionUnavailable(
                incident_id, graph=name, needed=version, registered=sorted(versions)
            )
        return found

    def can_run(self, name: str, version: str | None) -> bool:
        """True if an incident on ``name``/``version`` can run here (see :meth:`resolve`)."""
        versions = self._graphs.get(name, {})
        return (version in versions) if version is not None else bool(versions)

    def runnable_keys(self) -> list[str]:
        """:func:`~durable_ir.records.version_key` of every graph version that can run here,
        including each name's unversioned key (incidents from before versions were recorded,
        which run on the default): what the ledger's claims are filtered by."""
        keys = [version_key(name, None) for name in self._graphs]
        keys += [version_key(name, v) for name, versions in self._graphs.items() for v in versions]
        return sorted(keys)

    def versions(self, name: str) -> list[str]:
        """The versions of ``name`` registered here (empty if none)."""
        return sorted(self._graphs.get(name, {}))

    def default_version(self, name: str) -> str | None:
        """The version new incidents of ``name`` start on, or ``None`` if not registered."""
        return self._default.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._graphs

    def names(self) -> list[str]:
        """The registered names."""
        return sorted(self._graphs)

    def all(self) -> list[RegisteredGraph]:
        """Every registered graph version, by name then version."""
        return [
            self._graphs[name][version]
            for name in sorted(self._graphs)
            for version in sorted(self._graphs[name])
        ]
