"""The demo agent: the full incident graph on a simulated fleet of services.

:func:`build_demo_graph` is the real :class:`~durable_ir.IncidentGraphBuilder` graph, with a
:class:`~durable_ir.simulation.SimulatedFleet` as gatherer, executor and verifier, the offline
:class:`~durable_ir.rca.analyzers.CorrelationAnalyzer` (or Claude, when ``ANTHROPIC_API_KEY``
is set), and the simulation's allow-list. It is also the graph ``durable-ir incidents
approve|reject`` resumes by default (``--graph durable_ir.demo.agent:build_demo_graph``).

One node is added for the demo: ``approval_window``, just before ``approval``. It copies an
alert label ``approval_window_s`` into ``state["approval_window_s"]``, which the approval node
takes as this incident's approval window instead of the SLA policy's window for its severity.
That is how one alert, sent through :meth:`durable_ir.Runtime.ingest` like the others, gets an
approval that expires in seconds.

Example:
    >>> builder = build_demo_builder(analyzer="offline")
    >>> names = builder.node_names
    >>> names[names.index("approval") - 1]
    'approval_window'
    >>> sorted(build_demo_graph(analyzer="offline").nodes)[:3]
    ['apply', 'approval', 'approval_window']
    >>> alert = demo_alert(DEMO_INCIDENTS[2], run="AB12")
    >>> alert["labels"]["approval_window_s"], alert["labels"]["sim_scenario"]
    ('4', 'expired_certificate')
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.graph import StateGraph

from durable_ir.builder import IncidentGraphBuilder, IncidentState
from durable_ir.rca.analysis import Analyzer
from durable_ir.rca.analyzers import CorrelationAnalyzer
from durable_ir.services import SERVICES_CONFIG_KEY, NodeServices
from durable_ir.simulation import SimulatedFleet, simulated_allow_list

__all__ = [
    "DEMO_GRAPH_NAME",
    "DEMO_INCIDENTS",
    "SETTLE",
    "WINDOW_LABEL",
    "AnalyzerChoice",
    "DemoIncident",
    "build_demo_builder",
    "build_demo_graph",
    "choose_analyzer",
    "demo_alert",
    "describe_analyzer",
]

DEMO_GRAPH_NAME = "demo-agent"
"""The name the demo registers its graph under (what the incident index records)."""
WINDOW_LABEL = "approval_window_s"
"""The alert label that sets one incident's approval window, in seconds."""
RUN_LABEL = "demo_run"
"""The alert label naming the demo run: alerts of different runs never deduplicate."""
SETTLE = timedelta(minutes=30)
"""Simulated time the fleet lets pass before verifying (15 minutes is too short for some
faults to show recovery)."""

AnalyzerChoice = Literal["auto", "offline", "anthropic"]
"""``auto``: Claude if ``ANTHROPIC_API_KEY`` is set (and the ``anthropic`` extra installed),
else the offline analyzer."""


@dataclass(frozen=True)
class DemoIncident:
    """One incident of the demo: a simulated fault, and what the humans do with it.

    Example:
        >>> DEMO_INCIDENTS[0].scenario, DEMO_INCIDENTS[0].decision
        ('bad_deploy', 'approve')
    """

    scenario: str
    seed: int
    decision: Literal["approve", "reject", "expire"]
    approval_window_s: int | None = None


DEMO_INCIDENTS: tuple[DemoIncident, ...] = (
    DemoIncident("bad_deploy", 3, "approve"),
    DemoIncident("disk_full", 1, "reject"),
    DemoIncident("expired_certificate", 3, "expire", approval_window_s=4),
)
"""The three incidents: the offline analyzer finds each root cause, and each plan verifies
healthy when applied."""


def describe_analyzer(choice: AnalyzerChoice = "auto") -> str:
    """Which analyzer ``choice`` picks here, in one line (nothing is constructed).

    Example:
        >>> describe_analyzer("offline").split()[0]
        'CorrelationAnalyzer'
    """
    return _pick(choice)[1]


def _anthropic_installed() -> bool:
    try:
        import anthropic  # noqa: F401
    except ImportError:
        return False
    return True


def _pick(choice: AnalyzerChoice) -> tuple[Literal["offline", "anthropic"], str]:
    offline = "CorrelationAnalyzer (offline: no network, no API key)"
    if choice == "offline":
        return "offline", offline
    has_key = bool(os.environ.get("ANTHROPIC_API_KEY"))
    if choice == "anthropic" or has_key:
        if not _anthropic_installed():
            if choice == "anthropic":
                raise RuntimeError(
                    "the anthropic analyzer needs the anthropic extra: "
                    "pip install 'durable-ir[anthropic]'"
                )
            return "offline", (
                f"{offline}; ANTHROPIC_API_KEY is set but the anthropic package is missing "
                "(pip install 'durable-ir[anthropic]')"
            )
        from durable_ir.rca.analyzers.anthropic import DEFAULT_MODEL

        return "anthropic", f"AnthropicAnalyzer (Claude {DEFAULT_MODEL}; ANTHROPIC_API_KEY is set)"
    return "offline", f"{offline}; set ANTHROPIC_API_KEY for Claude"


def choose_analyzer(choice: AnalyzerChoice = "auto") -> Analyzer:
    """The analyzer ``choice`` picks (see :data:`AnalyzerChoice`).

    Example:
        >>> type(choose_analyzer("offline")).__name__
        'CorrelationAnalyzer'
    """
    kind, _ = _pick(choice)
    if kind == "anthropic":
        from durable_ir.rca.analyzers.anthropic import AnthropicAnalyzer

        return AnthropicAnalyzer()
    return CorrelationAnalyzer()


def _now(config: RunnableConfig) -> datetime:
    services = (config.get("configurable") or {}).get(SERVICES_CONFIG_KEY)
    return services.clock() if isinstance(services, NodeServices) else datetime.now(UTC)


async def approval_window(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
    """Take this incident's approval window from its alert's ``approval_window_s`` label.

    Example:
        >>> import asyncio
        >>> state = {"alert": {"labels": {"approval_window_s": "4"}}}
        >>> asyncio.run(approval_window(state, {}))["approval_window_s"]
        4.0
        >>> asyncio.run(approval_window({"alert": {"labels": {}}}, {}))
        {}
    """
    labels = (state.get("alert") or {}).get("labels") or {}
    raw = labels.get(WINDOW_LABEL)
    if raw is None:
        return {}
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    at = _now(config).isoformat()
    if not 0 < seconds < 7 * 24 * 3600:
        text = f"ignored label {WINDOW_LABEL}={raw!r}: not a positive number of seconds"
        return {"timeline": [{"at": at, "stage": "approval_window", "event": text}]}
    text = (
        f"alert label {WINDOW_LABEL}={raw}: this approval expires after {seconds:g}s "
        "instead of the severity's SLA window"
    )
    return {
        "approval_window_s": seconds,
        "timeline": [{"at": at, "stage": "approval_window", "event": text}],
    }


def build_demo_builder(
    analyzer: Analyzer | AnalyzerChoice = "auto", *, fleet: SimulatedFleet | None = None
) -> IncidentGraphBuilder:
    """The demo agent's :class:`~durable_ir.IncidentGraphBuilder` (see the module doc).

    Example:
        >>> build_demo_builder("offline").node_names[:3]
        ('ingest', 'triage', 'rca')
    """
    fleet = fleet if fleet is not None else SimulatedFleet(settle=SETTLE)
    chosen = choose_analyzer(analyzer) if isinstance(analyzer, str) else analyzer
    builder = IncidentGraphBuilder(
        gatherer=fleet,
        analyzer=chosen,
        executor=fleet,
        allow_list=simulated_allow_list(),
    )
    return builder.insert_before("approval", "approval_window", approval_window)


def build_demo_graph(
    analyzer: Analyzer | AnalyzerChoice = "auto",
) -> StateGraph[IncidentState, Any, IncidentState, IncidentState]:
    """The demo agent's graph, uncompiled: what ``durable-ir incidents approve`` resumes by
    default.

    Example:
        >>> "approval_window" in build_demo_graph("offline").nodes
        True
    """
    return build_demo_builder(analyzer).build()


def demo_alert(
    incident: DemoIncident, run: str, *, fleet: SimulatedFleet | None = None
) -> dict[str, Any]:
    """The alert of one demo incident (generic JSON, as a monitoring system would send it),
    labelled with the demo ``run`` and, if it has one, its approval window.

    Example:
        >>> demo_alert(DEMO_INCIDENTS[0], run="AB12")["labels"]["demo_run"]
        'AB12'
    """
    payload = (fleet or SimulatedFleet(settle=SETTLE)).alert(incident.scenario, incident.seed)
    labels = {**payload["labels"], RUN_LABEL: run}
    if incident.approval_window_s is not None:
        labels[WINDOW_LABEL] = str(incident.approval_window_s)
    return {**payload, "labels": labels}
