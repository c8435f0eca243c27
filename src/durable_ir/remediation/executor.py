"""The executor protocol: dry-run before approval, apply step by step, undo on failure — and
the verifier that reads the world afterwards.

Every call gets a :class:`StepContext` naming the incident and the step, with an
``idempotency_key`` that is the same on every run of that step: the apply node records each
finished step in graph state before the next starts, so a crash re-runs at most the step that
was running, and an executor that can pass the key on (a deploy API, a ticket) makes even that
re-run harmless. Under a runtime each apply and rollback step is also *claimed* in the
database before it runs and finished after (fenced on the worker's ownership ``epoch``, which
the context carries): a worker that was paused and taken over cannot run another step, a step
an earlier owner finished is not run again, and a step it left unfinished comes back with
``in_doubt=True``.

Example:
    >>> import asyncio
    >>> from durable_ir.simulation import SimulatedEnvironment
    >>> from durable_ir.remediation.plan import RemediationStep
    >>> env = SimulatedEnvironment("bad_deploy", seed=1)
    >>> executor = SimulatedExecutor(env)
    >>> step = RemediationStep(action="restart", target="checkout")
    >>> context = StepContext(incident_id="inc-1", alert=env.alert, number=1)
    >>> preview = asyncio.run(executor.dry_run(step, context))
    >>> preview.ok, preview.detail.startswith("would restart checkout")
    (True, True)
    >>> context.idempotency_key
    'inc-1/step-1/apply'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from durable_ir.remediation.plan import RemediationPlan, StepAction

if TYPE_CHECKING:  # the simulation is only loaded by those who use it
    from durable_ir.simulation import SimulatedEnvironment

__all__ = [
    "Executor",
    "SimulatedExecutor",
    "StepContext",
    "StepResult",
    "Verification",
    "VerificationContext",
    "Verifier",
]

StepPhase = Literal["dry_run", "apply", "rollback"]


@dataclass(frozen=True)
class StepResult:
    """What running (or previewing) one step did."""

    ok: bool
    detail: str


@dataclass(frozen=True)
class StepContext:
    """Which incident and which step (1-based ``number``) a call is for."""

    incident_id: str
    alert: Mapping[str, Any]
    number: int
    phase: StepPhase = "apply"
    epoch: int | None = None
    """The ownership epoch of the worker running the step (``None`` outside a runtime): a
    fencing token to pass on to systems that accept one, so that they can refuse a worker
    that was taken over."""
    in_doubt: bool = False
    """An earlier owner claimed this step and never recorded its result: it may or may not
    have taken effect. The step runs again with the same ``idempotency_key``; an executor
    that can should check the target first (or let it deduplicate by the key)."""

    @property
    def idempotency_key(self) -> str:
        """The same for every run of this step of this incident in this phase."""
        return f"{self.incident_id}/step-{self.number}/{self.phase}"


@runtime_checkable
class Executor(Protocol):
    """Runs remediation steps against the real world (or a simulation of it)."""

    async def dry_run(self, step: StepAction, context: StepContext) -> StepResult:
        """What ``step`` would do, without doing it."""
        ...

    async def apply(self, step: StepAction, context: StepContext) -> StepResult:
        """Do ``step``; a failure is ``ok=False`` (or an exception)."""
        ...

    async def rollback(self, step: StepAction, context: StepContext) -> StepResult:
        """Undo a finished step by running its rollback action (``step`` is that action)."""
        ...


@dataclass(frozen=True)
class VerificationContext:
    """What verification needs: the incident, its alert, the applied plan and its results."""

    incident_id: str
    alert: Mapping[str, Any]
    plan: RemediationPlan
    results: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True)
class Verification:
    """Whether the remediation worked, why, and the readings it rests on."""

    ok: bool
    detail: str
    readings: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Verifier(Protocol):
    """Reads the environment (or its metrics) after apply: resolved, or escalate."""

    async def verify(self, context: VerificationContext) -> Verification:
        """Whether the incident's service is healthy again."""
        ...


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
