"""Many simulated incidents in one process: a fleet of
:class:`~durable_ir.simulation.SimulatedEnvironment` worlds, each found again from its alert.

:meth:`SimulatedFleet.alert` turns ``(scenario, seed)`` into a generic-JSON alert payload (what
:func:`durable_ir.alerts.parse_generic` accepts) whose labels carry ``sim_scenario`` and
``sim_seed``. Everything downstream — gathering evidence, dry-running and applying remediation
steps, verifying — receives the alert, reads those two labels and works on that alert's
environment. An incident graph needs nothing but the alert in its state to find its world
again, so a fresh process (after a crash) rebuilds it from the alert alone.

The fleet is at once a :class:`~durable_ir.rca.evidence.Gatherer`, a
:class:`~durable_ir.remediation.Executor` and a :class:`~durable_ir.remediation.Verifier`.
Environments are memoised on the fleet, one per ``(scenario, seed)``: use one fleet in a
process for all three roles, so that verification reads the world the executor changed.

Because nothing but the alert is durable, a fresh process (or a fresh fleet) rebuilds an
environment in its pre-remediation state: actions applied elsewhere are not replayed. That is
fine for the demo, where remediation runs after approval and is verified in the same process.

:data:`SIMULATED_ACTION_RISKS` is a risk for every simulated action, and
:func:`simulated_allow_list` the allow-list that permits exactly those actions on the
simulated services.

Example:
    >>> import asyncio
    >>> from durable_ir.alerts import parse_generic
    >>> from durable_ir.remediation import (
    ...     RemediationPlan, RemediationStep, StepContext, VerificationContext)
    >>> fleet = SimulatedFleet()
    >>> payload = fleet.alert("expired_certificate", seed=2)
    >>> payload["labels"]["sim_scenario"], payload["labels"]["sim_seed"]
    ('expired_certificate', '2')
    >>> alert = parse_generic(payload).as_state()   # what the graph keeps in its state
    >>> env = fleet.environment_for(alert)
    >>> env is fleet.environment_for(payload)
    True
    >>> step = RemediationStep(
    ...     action="rotate_certificate", target=env.ground_truth.service, risk="medium")
    >>> plan = simulated_allow_list().check({"steps": [step.model_dump()]})
    >>> context = StepContext(incident_id="inc-1", alert=alert, number=1)
    >>> asyncio.run(fleet.apply(step, context)).ok
    True
    >>> check = VerificationContext(incident_id="inc-1", alert=alert, plan=plan)
    >>> asyncio.run(fleet.verify(check)).ok
    True
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from durable_ir.errors import InvalidInput
from durable_ir.remediation import (
    AllowList,
    Risk,
    StepAction,
    StepContext,
    StepResult,
    Verification,
    VerificationContext,
)
from durable_ir.simulation.environment import SimulatedEnvironment
from durable_ir.simulation.executor import SimulatedExecutor
from durable_ir.simulation.gatherer import SimulatedGatherer
from durable_ir.simulation.scenarios import SCENARIOS
from durable_ir.simulation.topology import SERVICES

if TYPE_CHECKING:
    from durable_ir.rca.evidence import (
        ChangeEvidence,
        EventEvidence,
        EvidenceWindow,
        LogEvidence,
        MetricEvidence,
    )

__all__ = [
    "HEALTHY",
    "SCENARIO_LABEL",
    "SEED_LABEL",
    "SIMULATED_ACTION_RISKS",
    "SimulatedFleet",
    "simulated_allow_list",
]

SCENARIO_LABEL = "sim_scenario"
"""The alert label naming the environment's scenario."""
SEED_LABEL = "sim_seed"
"""The alert label holding the environment's seed (decimal)."""
HEALTHY = "healthy"
"""The :data:`SCENARIO_LABEL` value of a healthy system (scenario ``None``)."""

_SEED = re.compile(r"-?[0-9]{1,19}")

SIMULATED_ACTION_RISKS: dict[str, Risk] = {
    "restart": "low",
    "scale": "low",
    "reschedule": "low",
    "clear_disk": "medium",
    "expand_disk": "medium",
    "rotate_certificate": "medium",
    "fix_config": "medium",
    "rollback": "medium",
    "failover_upstream": "high",
}
"""The highest risk each simulated action (every name in
:data:`~durable_ir.simulation.ACTIONS`) may be declared at: restarting, scaling out and moving
pods are routine; deleting files, resizing disks, reissuing certificates, reverting
configuration and rolling back deploys change state; sending payment traffic to another
provider is the riskiest."""


def simulated_allow_list() -> AllowList:
    """The allow-list of the simulation: every simulated action at its
    :data:`SIMULATED_ACTION_RISKS` risk, and only the simulated services as targets."""
    return AllowList(SIMULATED_ACTION_RISKS, targets=SERVICES)


@dataclass(frozen=True)
class _Member:
    environment: SimulatedEnvironment
    executor: SimulatedExecutor
    gatherer: SimulatedGatherer


def _scenario(value: object) -> str | None:
    if value is None or value == HEALTHY:
        return None
    if not isinstance(value, str) or value not in SCENARIOS:
        known = ", ".join((*SCENARIOS, HEALTHY))
        raise InvalidInput(f"unknown simulated scenario {str(value)[:60]!r}; known: {known}")
    return value


def _seed(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _SEED.fullmatch(value):
        return int(value)
    raise InvalidInput(f"{SEED_LABEL} must be a whole number, got {str(value)[:40]!r}")


class SimulatedFleet:
    """Simulated environments for many incidents at once, each found from its alert's
    ``sim_scenario`` and ``sim_seed`` labels, built on first use and memoised on the fleet.

    A :class:`~durable_ir.rca.evidence.Gatherer` (evidence as
    :class:`~durable_ir.simulation.SimulatedGatherer` reads it, at most ``max_points``
    points per metric series), an :class:`~durable_ir.remediation.Executor` and a
    :class:`~durable_ir.remediation.Verifier` (as
    :class:`~durable_ir.simulation.SimulatedExecutor` does, letting ``settle`` of simulated
    time pass before reading health). Every call raises
    :class:`~durable_ir.errors.InvalidInput` when its alert lacks valid simulation labels.

    Nothing but the alert is durable: a fresh process rebuilds an environment in its
    pre-remediation state (see the module documentation)."""

    def __init__(self, *, settle: timedelta = timedelta(minutes=15), max_points: int = 120) -> None:
        if settle < timedelta(0):
            raise ValueError("settle must not be negative")
        if max_points < 2:
            raise ValueError("max_points must be at least 2")
        self.settle = settle
        self.max_points = max_points
        self._members: dict[tuple[str | None, int], _Member] = {}
        self._lock = threading.Lock()

    # -- alerts and environments -------------------------------------------------------------

    def alert(self, scenario: str | None, seed: int) -> dict[str, Any]:
        """The alert of ``scenario``'s environment (``None`` or ``"healthy"``: a healthy
        system whose alert is noise) built from ``seed``, as a generic-JSON payload with the
        ``sim_scenario`` and ``sim_seed`` labels added. The same ``(scenario, seed)`` always
        gives the same payload, hence the same fingerprint."""
        name, number = _scenario(scenario), _seed(seed)
        payload = dict(self._member(name, number).environment.alert)
        payload["labels"] = {
            **payload.get("labels", {}),
            SCENARIO_LABEL: name or HEALTHY,
            SEED_LABEL: str(number),
        }
        return payload

    def environment_for(self, alert: Mapping[str, Any]) -> SimulatedEnvironment:
        """The environment ``alert`` (a payload from :meth:`alert`, or its parsed
        :meth:`~durable_ir.alerts.Alert.as_state` form) came from: built on first use, the
        same object afterwards."""
        return self._member_for(alert).environment

    def _member_for(self, alert: Mapping[str, Any]) -> _Member:
        labels = alert.get("labels") if isinstance(alert, Mapping) else None
        if not isinstance(labels, Mapping):
            raise InvalidInput("the alert has no labels: it did not come from a SimulatedFleet")
        missing = [label for label in (SCENARIO_LABEL, SEED_LABEL) if label not in labels]
        if missing:
            raise InvalidInput(
                f"the alert lacks the label(s) {', '.join(missing)}: it did not come from a "
                "SimulatedFleet"
            )
        return self._member(_scenario(labels[SCENARIO_LABEL]), _seed(labels[SEED_LABEL]))

    def _member(self, scenario: str | None, seed: int) -> _Member:
        key = (scenario, seed)
        with self._lock:
            member = self._members.get(key)
            if member is None:
                environment = SimulatedEnvironment(scenario, seed=seed)
                member = _Member(
                    environment,
                    SimulatedExecutor(environment, settle=self.settle),
                    SimulatedGatherer(environment, max_points=self.max_points),
                )
                self._members[key] = member
            return member

    # -- Gatherer ---------------------------------------------------------------------------

    async def gather(
        self, alert: dict[str, Any], window: EvidenceWindow
    ) -> list[LogEvidence | MetricEvidence | ChangeEvidence | EventEvidence]:
        """Metrics, logs, changes and events of the alert's service and its dependencies
        within ``window``, from the alert's environment."""
        return await self._member_for(alert).gatherer.gather(alert, window)

    # -- Executor and Verifier ----------------------------------------------------------------

    async def dry_run(self, step: StepAction, context: StepContext) -> StepResult:
        """What ``step`` would do in the environment of ``context.alert``."""
        return await self._member_for(context.alert).executor.dry_run(step, context)

    async def apply(self, step: StepAction, context: StepContext) -> StepResult:
        """Do ``step`` in the environment of ``context.alert``."""
        return await self._member_for(context.alert).executor.apply(step, context)

    async def rollback(self, step: StepAction, context: StepContext) -> StepResult:
        """Run the rollback action ``step`` in the environment of ``context.alert``."""
        return await self._member_for(context.alert).executor.rollback(step, context)

    async def verify(self, context: VerificationContext) -> Verification:
        """Let ``settle`` of simulated time pass in the environment of ``context.alert``, then
        read the health of the alert's service and of every service the plan touched."""
        return await self._member_for(context.alert).executor.verify(context)
