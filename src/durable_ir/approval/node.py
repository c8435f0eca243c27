"""The durable approval node: register the request, pause on ``interrupt()``, apply the one
decision the ledger holds, and route on it.

The node re-runs from its first line when the graph is resumed, so everything before
``interrupt()`` is idempotent: the request is keyed by the interrupt id (a hash of the task's
checkpoint namespace, stable across re-runs), and registering it again returns the stored row
with its original deadline.

The value the graph is resumed with is never trusted: the node reads the decision from the
ledger. A resume that bypassed :meth:`durable_ir.Runtime.decide` (or carried junk) finds the
row still pending, raises ``DecisionNotRecorded``, and the incident stays waiting.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, ClassVar, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphInterrupt
from langgraph.types import Interrupt, interrupt

from durable_ir.approval.policy import AUTO_APPROVE_IDENTITY, AutoApprovePolicy
from durable_ir.approval.request import (
    ALERT_RESOLVED_POLICIES,
    DEFAULT_ACTION_NAME,
    AlertResolvedPolicy,
    ReviewDecision,
    allowed_decisions,
    build_request,
)
from durable_ir.decisions import Decision, Edit
from durable_ir.errors import (
    ConfigurationError,
    DecisionNotRecorded,
    DurableIRError,
    InvalidDecision,
    InvalidInput,
)
from durable_ir.ledger.base import DecisionWrite
from durable_ir.records import ApprovalRecord, ApprovalStatus, NewApproval
from durable_ir.services import NodeServices, services_from
from durable_ir.severity import parse_severity
from durable_ir.sla import SlaPolicy

__all__ = [
    "ApprovalNode",
    "ApprovalRoute",
    "PlanValidator",
    "RequestHook",
    "approval_node",
]

ApprovalRoute = Literal["approved", "rejected", "expired"]
PlanValidator = Callable[[Any], Any]
"""Returns the (possibly normalised) plan, or raises ``ValueError``/``InvalidInput``."""
RequestHook = Callable[[ApprovalRecord, Any, RunnableConfig], Awaitable[None]]
"""``on_request(record, state, config)``: called on every run of the node while the request
is pending, just before it pauses — so it must be idempotent; send notifications through
:func:`durable_ir.notifications.send_once`."""


def _read(state: Any, key: str) -> Any:
    if isinstance(state, Mapping):
        return state.get(key)
    return getattr(state, key, None)


class ApprovalNode:
    """A LangGraph node that waits, durably, for a human decision on a plan.

    Add it with ``builder.add_node("approval", approval_node())`` and route on its outcome with
    ``builder.add_conditional_edges("approval", node.route, {...})``. The state must have a key
    for the plan (``plan_key``), may have ``severity_key`` (default ``P2``) and ``summary_key``,
    and gets the outcome under ``state_key``; an edited plan replaces ``state[plan_key]``.

    The deadline comes from ``sla`` (this graph's policy) or else the runtime's policy, by
    severity; a positive number of seconds in ``state[window_key]`` overrides the window for one
    incident.

    ``context_keys`` name state keys shown to the approver next to the plan (e.g. the dry-run
    results). ``auto_approve`` is a policy (see :class:`~durable_ir.approval.AutoApprove`) that
    may approve a plan without a human; its decision is recorded in the ledger like any other.
    ``on_request`` is told about the pending request before each pause (see
    :data:`RequestHook`). ``on_alert_resolved`` (stored on each request, so it holds across
    redeploys) says what happens when the incident's alert resolves while the request is
    pending: ``"annotate"`` (default) or ``"expire"`` (see
    :data:`~durable_ir.approval.request.AlertResolvedPolicy`). ``on_resolved_notice``
    (a :data:`RequestHook`) is told, under ``annotate``, that the alert of a pending request
    resolved — ``Runtime.ingest`` of the notice calls it (the builder tells its notifiers).
    """

    __durable_ir_approval__: ClassVar[bool] = True
    """Marks it as an :class:`~durable_ir.services.ApprovalPoint` for the graph registry."""

    def __init__(
        self,
        *,
        plan_key: str = "plan",
        severity_key: str = "severity",
        summary_key: str = "summary",
        state_key: str = "approval",
        action_name: str = DEFAULT_ACTION_NAME,
        allowed: Sequence[ReviewDecision] = ("approve", "edit", "reject"),
        validate_plan: PlanValidator | None = None,
        default_severity: str = "P2",
        sla: SlaPolicy | None = None,
        window_key: str | None = "approval_window_s",
        context_keys: Sequence[str] = (),
        auto_approve: AutoApprovePolicy | None = None,
        on_request: RequestHook | None = None,
        on_alert_resolved: AlertResolvedPolicy = "annotate",
        on_resolved_notice: RequestHook | None = None,
    ) -> None:
        for name, key in (
            ("plan_key", plan_key),
            ("severity_key", severity_key),
            ("summary_key", summary_key),
            ("state_key", state_key),
            ("action_name", action_name),
        ):
            if not isinstance(key, str) or not key:
                raise ConfigurationError(f"{name} must be a non-empty string")
        if not allowed or not set(allowed) <= {"approve", "edit", "reject"}:
            raise ConfigurationError(
                f"allowed must be a non-empty subset of approve/edit/reject, got {allowed!r}"
            )
        if "approve" not in allowed and "edit" not in allowed:
            raise ConfigurationError("an approval that cannot be approved is not an approval")
        try:
            self.default_severity = parse_severity(default_severity)
        except InvalidInput as exc:
            raise ConfigurationError(str(exc)) from None
        self.plan_key = plan_key
        self.severity_key = severity_key
        self.summary_key = summary_key
        self.state_key = state_key
        self.action_name = action_name
        self.allowed: tuple[ReviewDecision, ...] = tuple(allowed)
        self._validate_plan = validate_plan
        if sla is not None and not isinstance(sla, SlaPolicy):
            raise ConfigurationError(f"sla must be an SlaPolicy, got {type(sla).__name__}")
        self.sla = sla
        self.window_key = window_key
        if isinstance(context_keys, str) or not all(isinstance(k, str) and k for k in context_keys):
            raise ConfigurationError("context_keys must be a sequence of non-empty strings")
        if "plan" in context_keys:
            raise ConfigurationError("context_keys must not include 'plan': it is always shown")
        self.context_keys = tuple(context_keys)
        if auto_approve is not None and not callable(auto_approve):
            raise ConfigurationError("auto_approve must be callable(plan, state) -> reason|None")
        self.auto_approve = auto_approve
        if on_request is not None and not callable(on_request):
            raise ConfigurationError("on_request must be an async callable")
        self.on_request = on_request
        if on_alert_resolved not in ALERT_RESOLVED_POLICIES:
            raise ConfigurationError(
                f"on_alert_resolved must be one of {ALERT_RESOLVED_POLICIES}, "
                f"got {on_alert_resolved!r}"
            )
        self.on_alert_resolved: AlertResolvedPolicy = on_alert_resolved
        if on_resolved_notice is not None and not callable(on_resolved_notice):
            raise ConfigurationError("on_resolved_notice must be an async callable")
        self.on_resolved_notice = on_resolved_notice
        self.__name__ = "approval"  # the default node name when added without one

    def validate_plan(self, plan: Any) -> Any:
        """Run the plan validator; ``InvalidInput`` with its message if the plan is refused."""
        if plan is None:
            raise InvalidInput("there is no plan to approve")
        if self._validate_plan is None:
            return plan
        try:
            return self._validate_plan(plan)
        except (ValueError, TypeError, InvalidInput) as exc:
            raise InvalidInput(f"the plan does not validate: {exc}") from None

    def _window_override(self, state: Any) -> timedelta | None:
        if self.window_key is None:
            return None
        seconds = _read(state, self.window_key)
        if seconds is None:
            return None
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
            raise InvalidInput(
                f"state[{self.window_key!r}] must be a positive number of seconds, got {seconds!r}"
            )
        return timedelta(seconds=seconds)

    def check_decision(self, record: ApprovalRecord, decision: Decision) -> Decision:
        """Refuse a decision its request does not allow, or an edit whose plan does not
        validate (``InvalidDecision``); return the decision with the edited plan normalised."""
        if decision.kind not in allowed_decisions(record.request):
            raise InvalidDecision(
                f"{decision.kind!r} is not allowed on approval {record.approval_id}"
            )
        if isinstance(decision, Edit):
            try:
                plan = self.validate_plan(decision.plan)
            except InvalidInput as exc:
                raise InvalidDecision(f"the edited plan was refused: {exc}") from None
            return Edit(by=decision.by, plan=plan, reason=decision.reason)
        return decision

    async def __call__(self, state: Any, config: RunnableConfig) -> dict[str, Any]:
        services = services_from(config)
        configurable = config.get("configurable") or {}
        incident_id = str(configurable["thread_id"])
        namespace = str(configurable.get("checkpoint_ns", ""))
        node = str((config.get("metadata") or {}).get("langgraph_node", "approval"))
        # interrupt() below names its interrupt by the same hash of the task namespace.
        approval_id = Interrupt.from_ns(None, namespace).id

        # A resume through the runtime hands the decision over with the config; otherwise
        # register the request (insert-if-absent: a re-run gets the stored row back, with its
        # original deadline) — one round trip either way.
        record = services.decided.get(approval_id)
        if record is None:
            try:
                new = self._new_approval(state, services, approval_id, incident_id, node)
            except InvalidInput:
                # A request registered earlier stands even if its plan no longer validates
                # here (a stricter allow-list deployed since): apply checks again before acting.
                record = await services.ledger.get(approval_id)
                if record is None:
                    raise
            else:
                record = await services.ledger.register(new)

        if record.is_pending and self.auto_approve is not None:
            record = await self._auto_approve(record, state, services)

        if record.is_pending:
            if self.on_request is not None:
                await self.on_request(record, state, config)
            try:
                interrupt(record.request)
            except GraphInterrupt as pause:
                paused_as = pause.args[0][0].id if pause.args and pause.args[0] else None
                if paused_as != approval_id:
                    raise DurableIRError(
                        f"LangGraph named the interrupt {paused_as!r}, not {approval_id!r}: "
                        "this LangGraph version is not supported by durable-ir"
                    ) from pause
                raise
            # Resumed. Whatever the resume value says, only the ledger decides.
            record = await services.ledger.get(approval_id)
            if record is None or record.is_pending:
                raise DecisionNotRecorded(
                    f"approval {approval_id} of incident {incident_id!r} was resumed without a "
                    "recorded decision; decide through Runtime.decide(). The incident is still "
                    "waiting."
                )
        services.taken.add(approval_id)
        return self.outcome(record)

    async def _auto_approve(
        self, record: ApprovalRecord, state: Any, services: NodeServices
    ) -> ApprovalRecord:
        plan = record.request["action_requests"][0]["args"]["plan"]
        reason = self.auto_approve(plan, state) if self.auto_approve else None
        if not reason:
            return record
        won, row = await services.ledger.record_decision(
            record.approval_id,
            DecisionWrite(
                status=ApprovalStatus.APPROVED,
                decided_by=AUTO_APPROVE_IDENTITY,
                decided_at=services.clock(),
                reason=str(reason)[:2_000],
            ),
        )
        if won:  # the graph takes the decision right here: nothing left for recovery
            await services.ledger.mark_applied(row.approval_id, services.clock())
        return row

    def _new_approval(
        self,
        state: Any,
        services: NodeServices,
        approval_id: str,
        incident_id: str,
        node: str,
    ) -> NewApproval:
        plan = self.validate_plan(_read(state, self.plan_key))
        severity = parse_severity(_read(state, self.severity_key) or self.default_severity)
        requested_at = services.clock()
        policy = self.sla or services.sla
        deadline_at = policy.deadline_for(
            severity, requested_at, override=self._window_override(state)
        )
        summary = _read(state, self.summary_key)
        request = build_request(
            approval_id=approval_id,
            incident_id=incident_id,
            graph=services.graph,
            node=node,
            severity=severity,
            requested_at=requested_at,
            deadline_at=deadline_at,
            plan=plan,
            summary=str(summary) if summary else f"Remediation plan for {incident_id}",
            action_name=self.action_name,
            allowed=self.allowed,
            context={key: _read(state, key) for key in self.context_keys},
            on_alert_resolved=self.on_alert_resolved,
        )
        return NewApproval(
            approval_id=approval_id,
            incident_id=incident_id,
            graph=services.graph,
            node=node,
            request=dict(request),
            severity=severity,
            requested_at=requested_at,
            deadline_at=deadline_at,
            next_due_at=policy.due_times(requested_at, deadline_at)[0],
            graph_version=services.graph_version,
        )

    def outcome(self, record: ApprovalRecord) -> dict[str, Any]:
        """The state update for a decided record."""
        update: dict[str, Any] = {
            self.state_key: {
                "approval_id": record.approval_id,
                "status": record.status.value,
                "decided_by": record.decided_by,
                "decided_at": record.decided_at.isoformat() if record.decided_at else None,
                "reason": record.reason,
                "edited": record.edited_plan is not None,
                "deadline_at": record.deadline_at.isoformat(),
            }
        }
        if record.status is ApprovalStatus.APPROVED and record.edited_plan is not None:
            update[self.plan_key] = record.edited_plan
        return update

    def route(self, state: Any) -> ApprovalRoute:
        """For ``add_conditional_edges``: ``"approved"``, ``"rejected"`` or ``"expired"``."""
        outcome = _read(state, self.state_key)
        status = outcome.get("status") if isinstance(outcome, Mapping) else None
        if status == "approved":
            return "approved"
        if status == "rejected":
            return "rejected"
        if status == "expired":
            return "expired"
        raise InvalidInput(f"state[{self.state_key!r}] holds no decision to route on: {outcome!r}")


def approval_node(**options: Any) -> ApprovalNode:
    """Create an :class:`ApprovalNode`; see its parameters.

    Example:
        >>> from typing import Any, TypedDict
        >>> from langgraph.graph import END, START, StateGraph
        >>> class State(TypedDict, total=False):
        ...     plan: Any
        ...     approval: dict
        >>> gate = approval_node(plan_key="plan")
        >>> builder = StateGraph(State)
        >>> _ = builder.add_node("approval", gate)
        >>> _ = builder.add_node("apply", lambda state: {})
        >>> _ = builder.add_edge(START, "approval")
        >>> _ = builder.add_conditional_edges(
        ...     "approval", gate.route, {"approved": "apply", "rejected": END, "expired": END})
        >>> _ = builder.add_edge("apply", END)
    """
    return ApprovalNode(**options)
