"""What durable-ir nodes need at run time, passed to them through the LangGraph config.

The runtime puts a :class:`NodeServices` under ``config["configurable"]["__durable_ir"]`` on
every invocation. Keys starting with ``__`` are never copied into checkpoint metadata, so the
object stays out of the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from langchain_core.runnables import RunnableConfig

from durable_ir.clock import Clock
from durable_ir.decisions import Decision
from durable_ir.errors import ConfigurationError
from durable_ir.ledger import ApprovalLedger
from durable_ir.records import ApprovalRecord
from durable_ir.sla.policy import SlaPolicy

__all__ = ["SERVICES_CONFIG_KEY", "ApprovalPoint", "NodeServices", "services_from"]

SERVICES_CONFIG_KEY = "__durable_ir"


@runtime_checkable
class ApprovalPoint(Protocol):
    """What the runtime needs of a node that pauses for approval (the approval package's
    ``ApprovalNode`` is one): where it puts its outcome, its SLA policy, and the check of a
    decision before it is recorded. The graph registry finds such nodes by this shape (and
    its ``__durable_ir_approval__`` marker), so the runtime does not import the node."""

    __durable_ir_approval__: ClassVar[bool]
    state_key: str
    sla: SlaPolicy | None

    def check_decision(self, record: ApprovalRecord, decision: Decision) -> Decision:
        """``decision`` as it may be recorded on ``record``, or ``InvalidDecision``."""
        ...


@dataclass(frozen=True)
class NodeServices:
    """The ledger, clock, SLA policy, graph name and version a durable-ir node runs with."""

    ledger: ApprovalLedger
    clock: Clock
    sla: SlaPolicy
    graph: str
    decided: Mapping[str, ApprovalRecord] = field(default_factory=dict)
    """Decisions the runtime read from the ledger, under the incident's lock, just before
    this invocation: the approval node takes them from here instead of reading them again."""
    graph_version: str | None = None
    """The version of ``graph`` this invocation runs (recorded on the approvals it asks)."""
    taken: set[str] = field(default_factory=set, compare=False)
    """Filled by the approval node during the invocation: the approval ids whose decision it
    took and routed on. The runtime marks a decision applied only if its node took it (or
    the graph shows it moved past it): never because an interrupt is missing."""
    worker: str = ""
    """The runtime's worker id: who step claims name as their owner."""


def services_from(config: RunnableConfig | Mapping[str, Any]) -> NodeServices:
    """The services in ``config``, or a ``ConfigurationError`` saying how to provide them."""
    services = (config.get("configurable") or {}).get(SERVICES_CONFIG_KEY)
    if not isinstance(services, NodeServices):
        raise ConfigurationError(
            "this durable-ir node needs a runtime: run the graph with Runtime.start() / "
            "Runtime.decide(), or invoke it with Runtime.config_for(incident_id)"
        )
    return services
