"""``IncidentGraphBuilder``: the whole incident graph from replaceable parts.

::

    START → ingest → triage → rca ─confident→ plan → dry_run → approval ─approved→ apply ⟲
                               │               │        │          │ rejected/     │ failed
                               └─exhausted─────┴────────┴──────────┤ expired       ├→ rollback ⟲
                                                                   ↓               ↓ done
            verify ─healthy→ resolve ─┐                         escalate ←─────────┘
              └─not healthy──────────────────────────────────────→ ┘
                                      └──────────→ summarize ←─────┘ → END

An approval that expired because the alert resolved (``on_alert_resolved="expire"``: by
``system:alertmanager``, reason ``alert_resolved``) goes to ``stand_down`` instead of
``escalate``: the incident closes with outcome ``alert_resolved``, nothing applied, nobody
paged.

``build()`` returns the uncompiled ``StateGraph``: compile it with your checkpointer, or hand
it to :meth:`durable_ir.Runtime.start`, which compiles it with the runtime's and runs it with
``durability="sync"``. Before building, any node can be replaced (:meth:`replace`) or wrapped
(:meth:`wrap`), and new nodes inserted (:meth:`insert_before` / :meth:`insert_after`).

Example:
    >>> from durable_ir.rca.analyzers.offline import CorrelationAnalyzer
    >>> from durable_ir.simulation import SimulatedFleet, simulated_allow_list
    >>> fleet = SimulatedFleet()
    >>> builder = IncidentGraphBuilder(gatherer=fleet, analyzer=CorrelationAnalyzer(),
    ...                                executor=fleet, allow_list=simulated_allow_list())
    >>> async def page_owner(state):
    ...     return {}
    >>> _ = builder.insert_after("triage", "page_owner", page_owner)
    >>> builder.node_names[:4]
    ('ingest', 'triage', 'page_owner', 'rca')
    >>> sorted(builder.build().nodes)[:3]
    ['apply', 'approval', 'dry_run']
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from durable_ir.approval.node import ApprovalNode
from durable_ir.approval.policy import AutoApprovePolicy
from durable_ir.approval.request import AlertResolvedPolicy, ReviewDecision
from durable_ir.builder.nodes import IncidentNodes
from durable_ir.builder.planning import Planner, RollbackRule
from durable_ir.builder.state import IncidentState
from durable_ir.builder.triage import SeverityRule, Triager
from durable_ir.clock import Clock, system_clock
from durable_ir.errors import ConfigurationError
from durable_ir.notifications import IncidentNotifier
from durable_ir.rca.analysis import Analyzer
from durable_ir.rca.evidence import Gatherer
from durable_ir.rca_loop import RcaConfig, build_rca_loop, route_after_rca
from durable_ir.records import ApprovalRecord
from durable_ir.remediation import AllowList, Executor, Verifier
from durable_ir.sla import SlaPolicy

__all__ = ["IncidentGraphBuilder"]

Route = tuple[Callable[[Any], str], dict[str, str]]


class IncidentGraphBuilder:
    """Assembles the incident graph (see the module doc for its shape).

    Required parts: a ``gatherer`` and an ``analyzer`` for the RCA loop, an ``executor`` for
    remediation, and the ``allow_list`` that bounds what a plan may do. ``verifier`` reads the
    world after apply (default: the executor, if it is also a :class:`~durable_ir.Verifier`).

    Optional: ``rca`` (:class:`~durable_ir.RcaConfig`), ``severity_rules`` and a ``triager``
    for triage, a ``planner`` replacing the default (the analyzer's suggested actions),
    ``rollbacks`` (how to undo each action), ``auto_approve`` (a policy letting low-risk plans
    through; off by default), ``notifiers`` (PagerDuty, Slack, your own), ``sla`` (this graph's
    approval deadlines), the decisions an approver may take, and ``on_alert_resolved``: what
    a pending approval does when the incident's alert resolves (``"annotate"``, the default,
    or ``"expire"``: see the module doc).
    """

    def __init__(
        self,
        *,
        gatherer: Gatherer,
        analyzer: Analyzer,
        executor: Executor,
        allow_list: AllowList,
        verifier: Verifier | None = None,
        rca: RcaConfig | None = None,
        severity_rules: Sequence[SeverityRule] = (),
        triager: Triager | None = None,
        planner: Planner | None = None,
        rollbacks: Mapping[str, RollbackRule] | None = None,
        auto_approve: AutoApprovePolicy | None = None,
        notifiers: Sequence[IncidentNotifier] = (),
        sla: SlaPolicy | None = None,
        allowed_decisions: Sequence[ReviewDecision] = ("approve", "edit", "reject"),
        on_alert_resolved: AlertResolvedPolicy = "annotate",
        clock: Clock = system_clock,
        rca_sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        if not isinstance(executor, Executor):
            raise ConfigurationError(
                f"executor must have async dry_run/apply/rollback(step, context): {executor!r}"
            )
        if not isinstance(allow_list, AllowList):
            raise ConfigurationError("allow_list must be an AllowList: it bounds what plans do")
        verifier = verifier if verifier is not None else executor  # type: ignore[assignment]
        if not isinstance(verifier, Verifier):
            raise ConfigurationError(
                "pass a verifier (async verify(context)), or an executor that is also one: "
                "apply is not done until the world is read again"
            )
        for notifier in notifiers:
            if not isinstance(notifier, IncidentNotifier):
                raise ConfigurationError(
                    f"a notifier needs a name and async notify(event): {notifier!r}"
                )
        if len({n.name for n in notifiers}) != len(notifiers):
            raise ConfigurationError("notifier names must be unique (they key the outbox)")
        for rule in severity_rules:
            if not isinstance(rule, SeverityRule):
                raise ConfigurationError(f"severity_rules must be SeverityRule, got {rule!r}")
        self.parts = IncidentNodes(
            allow_list=allow_list,
            executor=executor,
            verifier=verifier,
            clock=clock,
            rules=tuple(severity_rules),
            triager=triager,
            planner=planner,
            rollbacks=dict(rollbacks or {}),
            notifiers=tuple(notifiers),
        )
        self.approval = ApprovalNode(
            validate_plan=allow_list.validate,
            context_keys=("dry_run", "alert_links"),
            auto_approve=auto_approve,
            on_request=self._announce if notifiers else None,
            sla=sla,
            allowed=allowed_decisions,
            on_alert_resolved=on_alert_resolved,
            on_resolved_notice=self._announce_resolved if notifiers else None,
        )
        rca_loop = build_rca_loop(gatherer, analyzer, rca, clock=clock, sleep=rca_sleep)
        p = self.parts
        self._nodes: dict[str, Any] = {
            "ingest": p.ingest,
            "triage": p.triage,
            "rca": rca_loop.compile(name="rca"),
            "plan": p.plan,
            "dry_run": p.dry_run,
            "approval": self.approval,
            "apply": p.apply,
            "rollback": p.rollback,
            "verify": p.verify,
            "resolve": p.resolve,
            "escalate": p.escalate,
            "stand_down": p.stand_down,
            "summarize": p.summarize,
        }
        self._edges: dict[str, str] = {
            START: "ingest",
            "ingest": "triage",
            "triage": "rca",
            "resolve": "summarize",
            "escalate": "summarize",
            "stand_down": "summarize",
            "summarize": END,
        }
        self._routes: dict[str, Route] = {
            "rca": (route_after_rca, {"confident": "plan", "escalate": "escalate"}),
            "plan": (p.after_plan, {"dry_run": "dry_run", "escalate": "escalate"}),
            "dry_run": (p.after_dry_run, {"approval": "approval", "escalate": "escalate"}),
            "approval": (
                self._after_approval,
                {
                    "approved": "apply",
                    "rejected": "escalate",
                    "expired": "escalate",
                    "alert_resolved": "stand_down",
                },
            ),
            "apply": (
                p.after_apply,
                {
                    "apply": "apply",
                    "rollback": "rollback",
                    "verify": "verify",
                    "escalate": "escalate",
                },
            ),
            "rollback": (p.after_rollback, {"rollback": "rollback", "escalate": "escalate"}),
            "verify": (p.after_verify, {"resolve": "resolve", "escalate": "escalate"}),
        }

    def _after_approval(self, state: Any) -> str:
        route: str = self.approval.route(state)
        return "alert_resolved" if self.parts.alert_resolved_first(state) else route

    async def _announce_resolved(
        self, record: ApprovalRecord, state: Any, config: RunnableConfig
    ) -> None:
        await self.parts.notify(
            config,
            state,
            "alert_resolved",
            summary="the alert resolved while this approval waits: it may no longer be needed",
            approval=record,
        )

    async def _announce(self, record: ApprovalRecord, state: Any, config: RunnableConfig) -> None:
        await self.parts.notify(
            config,
            state,
            "approval_requested",
            summary=str(state.get("summary") or ""),
            approval=record,
        )

    @property
    def node_names(self) -> tuple[str, ...]:
        """The nodes in the order they were added."""
        return tuple(self._nodes)

    def _known(self, name: str) -> None:
        if name not in self._nodes:
            raise ConfigurationError(f"no node {name!r}; nodes: {', '.join(self._nodes)}")

    def _new(self, name: str) -> None:
        if not isinstance(name, str) or not name or name in (START, END):
            raise ConfigurationError(f"invalid node name {name!r}")
        if name in self._nodes:
            raise ConfigurationError(f"there is a node {name!r} already: use replace()")

    def replace(self, name: str, node: Any) -> IncidentGraphBuilder:
        """Use ``node`` (any LangGraph node: a function, a runnable, a compiled graph) as
        ``name``. It reads and writes the keys the built-in node does (see
        :class:`~durable_ir.builder.IncidentState`); the routes after it stay.

        Replacing ``approval`` with something other than an
        :class:`~durable_ir.approval.ApprovalNode` removes the durable approval: don't, unless
        you mean it.
        """
        self._known(name)
        if node is None:
            raise ConfigurationError(f"replacement for {name!r} must be a node, not None")
        if name == "approval" and isinstance(node, ApprovalNode):
            self.approval = node
            _, targets = self._routes["approval"]
            # The new node's route, and an alert-resolved expiry still stands down.
            self._routes["approval"] = (self._after_approval, targets)
        self._nodes[name] = node
        return self

    def wrap(self, name: str, wrapper: Callable[[Any], Any]) -> IncidentGraphBuilder:
        """Replace ``name`` with ``wrapper(current_node)``: add logging, timing, a guard.

        Example:
            >>> def logged(node):
            ...     async def run(state, config):
            ...         print("running")
            ...         return await node(state, config)
            ...     return run
        """
        self._known(name)
        if name == "approval":
            raise ConfigurationError(
                "the approval node cannot be wrapped (the runtime must find the ApprovalNode "
                "itself); insert a node before or after it instead"
            )
        self._nodes[name] = wrapper(self._nodes[name])
        return self

    def insert_before(self, name: str, new: str, node: Any) -> IncidentGraphBuilder:
        """Add ``new`` so that everything that led to ``name`` leads to ``new``, then ``name``."""
        self._known(name)
        self._new(new)
        for source, target in list(self._edges.items()):
            if target == name and source != name:
                self._edges[source] = new
        for source, (route, targets) in self._routes.items():
            if source != name:
                self._routes[source] = (
                    route,
                    {label: new if t == name else t for label, t in targets.items()},
                )
        nodes = list(self._nodes.items())
        at = [n for n, _ in nodes].index(name)
        self._nodes = dict([*nodes[:at], (new, node), *nodes[at:]])
        self._edges[new] = name
        return self

    def insert_after(self, name: str, new: str, node: Any) -> IncidentGraphBuilder:
        """Add ``new`` between ``name`` and the node it always leads to."""
        self._known(name)
        self._new(new)
        if name not in self._edges:
            raise ConfigurationError(
                f"{name!r} routes to several nodes; insert before one of them instead"
            )
        following = self._edges[name]
        nodes = list(self._nodes.items())
        at = [n for n, _ in nodes].index(name) + 1
        self._nodes = dict([*nodes[:at], (new, node), *nodes[at:]])
        self._edges[name] = new
        self._edges[new] = following
        return self

    def build(self) -> StateGraph[IncidentState, Any, IncidentState, IncidentState]:
        """The graph, uncompiled."""
        graph: StateGraph[IncidentState, Any, IncidentState, IncidentState] = StateGraph(
            IncidentState
        )
        for name, node in self._nodes.items():
            graph.add_node(name, node)
        for source, target in self._edges.items():
            graph.add_edge(source, target)
        for source, (route, targets) in self._routes.items():
            path_map: dict[Hashable, str] = {label: t for label, t in targets.items()}
            graph.add_conditional_edges(source, _on_the_event_loop(route), path_map)
        return graph


def _on_the_event_loop(route: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``route`` as a coroutine function, unless it is one. LangGraph runs a plain function
    on a thread pool when the graph runs asynchronously — a thread hop per call — while a
    route is a few dict reads: cheaper run in place on the event loop."""
    if inspect.iscoroutinefunction(route):
        return route

    async def routed(state: Any) -> Any:
        return route(state)

    routed.__name__ = getattr(route, "__name__", "route")
    routed.__doc__ = route.__doc__
    return routed
