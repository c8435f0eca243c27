"""An executor that changes nothing: the plan is reviewed, approved and recorded, and a person
carries it out.

This is what ``durable-ir serve`` uses when a config file names no executor of its own
(``[executor] kind = "suggest_only"``): an SRE can trust an agent that investigates and
proposes before trusting one that acts. Every phase is honest about it:

- ``dry_run`` previews each step as "would …, by hand" (so the approver sees exactly what the
  plan asks a person to do) and never fails for lack of access;
- ``apply`` and ``rollback`` record the step as handed over, "not applied by durable-ir",
  and touch nothing;
- ``verify`` never claims the world is healthy: it answers not verified, so an approved
  incident is escalated with reason ``verification_failed`` and the detail "durable-ir
  applied nothing: carry out the approved plan by hand", which pages whoever the graph's
  notifiers page, with the approved plan in the report.

Example:
    >>> import asyncio
    >>> from durable_ir.remediation import RemediationStep, StepContext
    >>> executor = SuggestOnlyExecutor()
    >>> step = RemediationStep(action="restart", target="checkout", parameters={"pods": 2})
    >>> context = StepContext(incident_id="inc-1", alert={"service": "checkout"}, number=1)
    >>> asyncio.run(executor.dry_run(step, context)).detail
    'would restart checkout (pods=2), by hand: durable-ir only suggests (suggest-only executor)'
    >>> asyncio.run(executor.apply(step, context)).detail
    'not applied by durable-ir: restart checkout (pods=2) is for a person to carry out'
"""

from __future__ import annotations

from durable_ir.remediation.executor import (
    StepContext,
    StepResult,
    Verification,
    VerificationContext,
)
from durable_ir.remediation.plan import StepAction

__all__ = ["SuggestOnlyExecutor"]


def _describe(step: StepAction) -> str:
    params = ", ".join(f"{k}={v}" for k, v in sorted(step.parameters.items()))
    return f"{step.action} {step.target}" + (f" ({params})" if params else "")


class SuggestOnlyExecutor:
    """Executor and verifier that record the plan and apply nothing (see the module doc)."""

    name = "suggest_only"

    async def dry_run(self, step: StepAction, context: StepContext) -> StepResult:
        """``ok``: what a person would do; nothing is checked against the world."""
        return StepResult(
            True,
            f"would {_describe(step)}, by hand: durable-ir only suggests (suggest-only executor)",
        )

    async def apply(self, step: StepAction, context: StepContext) -> StepResult:
        """Records the step as handed over; changes nothing."""
        return StepResult(
            True, f"not applied by durable-ir: {_describe(step)} is for a person to carry out"
        )

    async def rollback(self, step: StepAction, context: StepContext) -> StepResult:
        """As :meth:`apply`: nothing was done, so nothing is undone."""
        return await self.apply(step, context)

    async def verify(self, context: VerificationContext) -> Verification:
        """Never healthy: the incident is escalated with the approved plan for a person."""
        steps = "; ".join(_describe(s) for s in context.plan.steps) or "no steps"
        return Verification(
            False,
            f"durable-ir applied nothing (suggest-only executor): carry out the approved plan "
            f"by hand ({steps}) and close the incident where your on-call works",
        )
