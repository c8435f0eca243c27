"""The executor protocol: dry-run before approval, apply step by step, undo on failure.

Example:
    >>> import asyncio
    >>> from durable_ir.simulation import SimulatedEnvironment
    >>> from durable_ir.remediation.plan import RemediationStep
    >>> executor = SimulatedExecutor(SimulatedEnvironment("bad_deploy", seed=1))
    >>> step = RemediationStep(action="restart", target="checkout")
    >>> preview = asyncio.run(executor.dry_run(step))
    >>> preview.ok, preview.detail.startswith("would restart checkout")
    (True, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from durable_ir.remediation.plan import StepAction

if TYPE_CHECKING:  # the simulation is only loaded by those who use it
    from durable_ir.simulation import SimulatedEnvironment

__all__ = ["Executor", "SimulatedExecutor", "StepResult"]


@dataclass(frozen=True)
class StepResult:
    """What running (or previewing) one step did."""

    ok: bool
    detail: str


@runtime_checkable
class Executor(Protocol):
    """Runs remediation steps against the real world (or a simulation of it)."""

    async def dry_run(self, step: StepAction) -> StepResult:
        """What ``step`` would do, without doing it."""
        ...

    async def apply(self, step: StepAction) -> StepResult:
        """Do ``step``; a failure is ``ok=False`` (or an exception)."""
        ...

    async def rollback(self, step: StepAction) -> StepResult:
        """Undo a finished step by running its rollback action."""
        ...


class SimulatedExecutor:
    """An executor over :class:`~durable_ir.simulation.SimulatedEnvironment`: actions really
    change the environment, so a verification read shows whether they helped."""

    def __init__(self, environment: SimulatedEnvironment) -> None:
        self.environment = environment

    async def dry_run(self, step: StepAction) -> StepResult:
        from durable_ir.simulation import ACTIONS

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

    async def apply(self, step: StepAction) -> StepResult:
        try:
            done = self.environment.remediate(step.action, step.target, **step.parameters)
        except (KeyError, ValueError, TypeError) as exc:
            return StepResult(False, f"{step.action} {step.target} failed: {exc}")
        return StepResult(True, done.summary)

    async def rollback(self, step: StepAction) -> StepResult:
        return await self.apply(step)
