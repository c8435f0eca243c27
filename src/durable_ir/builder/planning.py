"""Planning: from a confident root cause to a remediation plan the allow-list accepts.

The default planner takes the actions the analyzer suggested, declares each at the risk the
allow-list allows for it, attaches a rollback step where one is known, and leaves out nothing
silently: an action outside the allow-list makes the plan refused (the incident escalates),
it is never dropped or replaced.

Example:
    >>> from durable_ir.remediation import AllowList
    >>> hypothesis = {"root_cause": "bad deploy of payments", "confidence": 0.9,
    ...               "remediation": [{"action": "rollback", "target": "payments"}]}
    >>> plan = plan_from_hypothesis(hypothesis, AllowList({"rollback": "medium"}))
    >>> [(s.action, s.target, s.risk) for s in plan.steps]
    [('rollback', 'payments', 'medium')]
    >>> plan.summary
    'bad deploy of payments'
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from durable_ir.remediation import AllowList, RemediationPlan, RemediationStep, StepAction

__all__ = ["Planner", "RollbackRule", "plan_from_hypothesis"]

Planner = Callable[[Mapping[str, Any]], Awaitable[RemediationPlan | dict[str, Any] | None]]
"""``await planner(state)``: the plan for this incident, or ``None`` when there is none."""

RollbackRule = Callable[[StepAction], StepAction | None]
"""How to undo a step of one action (``None``: nothing to undo)."""


def plan_from_hypothesis(
    hypothesis: Mapping[str, Any] | None,
    allow_list: AllowList,
    *,
    rollbacks: Mapping[str, RollbackRule] | None = None,
) -> RemediationPlan | None:
    """The analyzer's suggested actions as a plan, or ``None`` if it suggested none.

    Each step is declared at the highest risk the allow-list permits for its action, so the
    approver sees the worst case. Actions the allow-list does not know are kept as ``high``
    risk steps, so that :meth:`AllowList.check` refuses the plan, naming them.
    """
    if not hypothesis:
        return None
    suggested = hypothesis.get("remediation") or []
    if not suggested:
        return None
    rollbacks = rollbacks or {}
    steps = []
    for item in suggested:
        action = StepAction.model_validate(
            {k: item.get(k) for k in ("action", "target", "parameters") if k in item}
        )
        rule = rollbacks.get(action.action)
        steps.append(
            RemediationStep(
                action=action.action,
                target=action.target,
                parameters=action.parameters,
                risk=allow_list.actions.get(action.action, "high"),
                rollback=rule(action) if rule else None,
            )
        )
    root_cause = str(hypothesis.get("root_cause") or "")
    return RemediationPlan(summary=root_cause[:2_000], steps=steps)
