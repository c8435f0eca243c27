"""The executor and verifier over a :class:`~durable_ir.simulation.SimulatedEnvironment`:
remediation actions that really change the simulated fleet.

Example:
    >>> import asyncio
    >>> from durable_ir.remediation import RemediationStep, StepContext
    >>> env = SimulatedEnvironment("bad_deploy", seed=1)
    >>> executor = SimulatedExecutor(env)
    >>> step = RemediationStep(action="restart", target="checkout")
    >>> context = StepContext(incident_id="inc-1", alert=env.alert, number=1)
    >>> preview = asyncio.run(executor.dry_run(step, context))
    >>> preview.ok, preview.detail.startswith("would restart checkout")
    (True, True)
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from durable_ir.remediation.executor import (
    StepContext,
    StepResult,
    Verification,
    VerificationContext,
)
from durable_ir.remediation.plan import StepAction
from durable_ir.simulation.environment import ACTIONS, SimulatedEnvironment

__all__ = ["SimulatedExecutor"]


class SimulatedExecutor:
    """An executor over :class:`~durable_ir.simulation.SimulatedEnvironment`: actions really
    change the environment, so a verification read (:meth:`verify`, after ``settle`` of
    simulated time) shows whether they helped."""

    def __init__(
        self, environment: SimulatedEnvironment, *, settle: timedelta = timedelta(minutes=15)
    ) -> None:
        self.environment = environment
        self.settle = settle

    async def dry_run(self, step: StepAction, context: StepContext) -> StepResult:
        if step.action not in ACTIONS:
            return StepResult(False, f"the environment cannot {step.action!r}")
        try:
            self.environment.health(step.target)
        except (KeyError, ValueError) as exc:
            return StepResult(False, f"cannot {step.action} {step.target}: {exc}")
        params = ", ".join(f"{k}={v}" for k, v in sorted(step.parameters.items()))
        return StepResult(
            True, f"would {step.action} {step.target}" + (f" ({params})" if params else "")
        )

    async def apply(self, step: StepAction, context: StepContext) -> StepResult:
        try:
            done = self.environment.remediate(step.action, step.target, **step.parameters)
        except (KeyError, ValueError, TypeError) as exc:
            return StepResult(False, f"{step.action} {step.target} failed: {exc}")
        return StepResult(True, done.summary)

    async def rollback(self, step: StepAction, context: StepContext) -> StepResult:
        return await self.apply(step, context)

    async def verify(self, context: VerificationContext) -> Verification:
        """Let ``settle`` of simulated time pass, then read the health of the alert's service
        and of every service the plan touched."""
        self.environment.advance(self.settle)
        # The alert's service, and what the plan acted on — except a provider that traffic was
        # failed over away from: it is routed around, not fixed.
        services = [str(context.alert.get("service", ""))] + [
            s.target for s in context.plan.steps if s.action != "failover_upstream"
        ]
        readings: dict[str, Any] = {}
        unhealthy: list[str] = []
        for service in dict.fromkeys(s for s in services if s):
            try:
                health = self.environment.health(service)
            except (KeyError, ValueError) as exc:
                return Verification(False, f"cannot read {service}: {exc}")
            readings[service] = {"healthy": health.healthy, "issues": list(health.issues)}
            if not health.healthy:
                unhealthy.append(f"{service}: {'; '.join(health.issues) or 'unhealthy'}")
        if unhealthy:
            return Verification(
                False, "still unhealthy after remediation: " + " | ".join(unhealthy), readings
            )
        return Verification(True, f"healthy after {self.settle}: {', '.join(readings)}", readings)
