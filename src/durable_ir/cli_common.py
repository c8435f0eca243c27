"""What every ``durable-ir`` subcommand shares: exit codes, the one-line error, loading a graph
named ``module:attribute``, and output helpers. Imported by :mod:`durable_ir.cli` and its
subcommand modules (which never import each other's parents).

Example:
    >>> CliError("no incident 'INC-9'", EXIT_NOT_FOUND).code
    3
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = [
    "DEFAULT_GRAPH",
    "EXIT_CONFLICT",
    "EXIT_FAILED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
    "configured_graph",
    "console",
    "load_graph",
    "print_json",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4

DEFAULT_GRAPH = "durable_ir.demo.agent:build_demo_graph"
"""The graph ``approve``/``reject`` resume unless ``--graph`` names another."""


class CliError(Exception):
    """A failure the command reports in one line and an exit code.

    Example:
        >>> CliError("no incident 'INC-9'", EXIT_NOT_FOUND).code
        3
    """

    def __init__(self, message: str, code: int, *, kind: str = "error", winner: Any = None):
        super().__init__(message)
        self.code = code
        self.kind = kind
        self.winner = winner


def load_graph(spec: str) -> Any:
    """The graph ``spec`` (``module:attribute``) names, as a ``StateGraph`` or compiled graph.

    The attribute may be a graph, an :class:`~durable_ir.IncidentGraphBuilder`, or a callable
    returning either (called without arguments). ``CliError`` (exit 2) if it does not load.

    Example:
        >>> sorted(load_graph("durable_ir.demo.agent:build_demo_graph").nodes)[:2]
        ['apply', 'approval']
        >>> load_graph("no-colon")
        Traceback (most recent call last):
        ...
        durable_ir.cli_common.CliError: --graph must be module:attribute, e.g. \
durable_ir.demo.agent:build_demo_graph; got 'no-colon'
    """
    from langgraph.graph import StateGraph
    from langgraph.graph.state import CompiledStateGraph

    from durable_ir.builder import IncidentGraphBuilder
    from durable_ir.imports import import_object

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise CliError(
            f"--graph must be module:attribute, e.g. {DEFAULT_GRAPH}; got {spec!r}", EXIT_USAGE
        )
    try:
        target = import_object(spec)
    except (ImportError, AttributeError) as exc:
        raise CliError(f"--graph {spec}: {exc}", EXIT_USAGE) from None
    graph_types = (StateGraph, CompiledStateGraph)
    if callable(target) and not isinstance(target, (*graph_types, IncidentGraphBuilder)):
        try:
            target = target()
        except Exception as exc:
            raise CliError(
                f"--graph {spec}: calling it raised {type(exc).__name__}: {exc}", EXIT_USAGE
            ) from None
    if isinstance(target, IncidentGraphBuilder):
        target = target.build()
    if not isinstance(target, graph_types):
        raise CliError(
            f"--graph {spec} is a {type(target).__name__}, not a StateGraph, a compiled graph "
            "or an IncidentGraphBuilder",
            EXIT_USAGE,
        )
    return target


def configured_graph(graph: str | None, config: str | None) -> Any:
    """The graph a command resumes or checks: ``--graph`` (``module:attribute``), else the
    graph of a ``durable-ir serve`` config file (``--config``, else ``$DURABLE_IR_CONFIG``),
    else ``None``. ``CliError`` (exit 2) when both are given; a config file's own errors are
    :class:`~durable_ir.serve_config.ConfigFileError` (exit 2).

    Example:
        >>> configured_graph(None, None) is None or "DURABLE_IR_CONFIG" in os.environ
        True
    """
    from durable_ir.builder import IncidentGraphBuilder
    from durable_ir.serve_config import CONFIG_ENV, build_serve_plan, load_serve_config

    if graph and config:
        raise CliError("--graph and --config both name the graph: choose one", EXIT_USAGE)
    if graph:
        return load_graph(graph)
    path = config or os.environ.get(CONFIG_ENV, "").strip()
    if not path:
        return None
    built = build_serve_plan(load_serve_config(path)).graph
    return built.build() if isinstance(built, IncidentGraphBuilder) else built


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def console() -> Any:
    from rich.console import Console

    return Console(highlight=False)
