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
    >>> context = StepContext(incident_id="inc-1", alert={"service": "checkout"}, number=1)
    >>> context.idempotency_key, context.in_doubt
    ('inc-1/step-1/apply', False)

A simulated executor for demos and tests is
:class:`durable_ir.simulation.SimulatedExecutor`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from durable_ir.remediation.plan import RemediationPlan, StepAction

__all__ = [
    "Executor",
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
