"""The allow-list that bounds what a plan may do.

Use :meth:`AllowList.validate` as the approval node's ``validate_plan``: a plan (or an edited
plan) with an action outside the list, an unknown target, or a risk above an action's limit
never reaches the approver, let alone apply. The apply node checks again before acting.

Example:
    >>> allow = AllowList({"restart": "low", "rollback": "medium"})
    >>> allow.validate({"steps": [{"action": "restart", "target": "checkout", "risk": "low"}]})
    {'summary': '', 'steps': [{'action': 'restart', 'target': 'checkout', 'parameters': {}, \
'risk': 'low', 'rollback': None}]}
    >>> allow.validate({"steps": [{"action": "delete_database", "target": "db"}]})
    Traceback (most recent call last):
    ...
    durable_ir.errors.InvalidInput: step 1: action 'delete_database' is not allowed (allowed: \
restart, rollback)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from durable_ir.errors import ConfigurationError, InvalidInput
from durable_ir.remediation.plan import RISKS, RemediationPlan, Risk, StepAction

__all__ = ["AllowList"]


class AllowList:
    """Allowed actions, each with the highest risk it may be declared at, and optionally the
    targets plans may touch."""

    def __init__(
        self, actions: Mapping[str, Risk], *, targets: Iterable[str] | None = None
    ) -> None:
        if not actions:
            raise ConfigurationError("an allow-list needs at least one action")
        for action, risk in actions.items():
            if risk not in RISKS:
                raise ConfigurationError(
                    f"risk for {action!r} must be one of {RISKS}, got {risk!r}"
                )
        self.actions = dict(actions)
        self.targets = None if targets is None else frozenset(targets)

    def _check_action(self, where: str, step: StepAction, risk: Risk | None) -> None:
        if step.action not in self.actions:
            allowed = ", ".join(sorted(self.actions))
            raise InvalidInput(
                f"{where}: action {step.action!r} is not allowed (allowed: {allowed})"
            )
        if self.targets is not None and step.target not in self.targets:
            raise InvalidInput(f"{where}: target {step.target!r} is not one plans may touch")
        limit = self.actions[step.action]
        if risk is not None and RISKS.index(risk) > RISKS.index(limit):
            raise InvalidInput(
                f"{where}: {step.action!r} may be at most {limit!r} risk, not {risk!r}"
            )

    def check(self, plan: Any) -> RemediationPlan:
        """The plan as a :class:`RemediationPlan` if every step (and every rollback step) is
        allowed; :class:`~durable_ir.errors.InvalidInput` (a ``ValueError``) naming the first
        offending step otherwise."""
        try:
            parsed = (
                plan if isinstance(plan, RemediationPlan) else RemediationPlan.model_validate(plan)
            )
        except ValidationError as exc:
            raise InvalidInput(f"not a remediation plan: {exc.errors()[0]['msg']}") from None
        for number, step in enumerate(parsed.steps, start=1):
            self._check_action(f"step {number}", step, step.risk)
            if step.rollback is not None:
                self._check_action(f"step {number} rollback", step.rollback, None)
        return parsed

    def validate(self, plan: Any) -> dict[str, Any]:
        """:meth:`check`, returning the plan as JSON: the approval node's ``validate_plan``."""
        return self.check(plan).model_dump(mode="json")
