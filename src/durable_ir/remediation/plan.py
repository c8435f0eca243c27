"""A remediation plan: a list of typed steps, each with its risk and how to undo it.

Plans travel through graph state and the approval ledger as JSON
(``plan.model_dump(mode="json")``) and come back with :meth:`RemediationPlan.model_validate`.

Example:
    >>> plan = RemediationPlan(summary="roll back checkout", steps=[
    ...     RemediationStep(action="rollback", target="checkout", parameters={"to": "v41"},
    ...                     risk="medium",
    ...                     rollback=StepAction(action="rollback", target="checkout",
    ...                                         parameters={"to": "v42"}))])
    >>> plan.max_risk
    'medium'
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RISKS", "RemediationPlan", "RemediationStep", "Risk", "StepAction"]

Risk = Literal["read_only", "low", "medium", "high"]
RISKS: tuple[Risk, ...] = ("read_only", "low", "medium", "high")
"""Risks from least to most."""


class StepAction(BaseModel):
    """One action on one target."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: str = Field(min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9_]*$")
    target: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
    parameters: dict[str, Any] = Field(default_factory=dict)


class RemediationStep(StepAction):
    """A step of a plan: what it does, how risky it is, and the step that undoes it (``None``
    when there is nothing to undo, e.g. a read-only step)."""

    risk: Risk = "medium"
    rollback: StepAction | None = None


class RemediationPlan(BaseModel):
    """What the approver approves: an ordered list of steps."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    summary: str = Field(default="", max_length=2_000)
    steps: list[RemediationStep] = Field(min_length=1, max_length=20)

    @property
    def max_risk(self) -> Risk:
        """The riskiest step's risk."""
        return max((s.risk for s in self.steps), key=RISKS.index)
