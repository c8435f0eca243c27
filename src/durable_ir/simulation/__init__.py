"""A simulated production environment for demos, tests and evaluating analyzers: services
with metrics, logs, a change history and events, one injected fault per scenario, and
remediation actions that really change what happens next — and a fleet of them, one per
incident, each found again from its alert — with the gatherer and executor adapters that let
an incident graph read and act on them (:class:`SimulatedGatherer`, :class:`SimulatedExecutor`).

Example:
    >>> env = SimulatedEnvironment("bad_deploy", seed=1)
    >>> env.alert["name"], env.ground_truth.fault
    ('HighErrorRate', 'bad_deploy')
    >>> len(SCENARIOS)
    8
"""

from durable_ir.simulation.environment import ACTIONS, SimulatedEnvironment
from durable_ir.simulation.executor import SimulatedExecutor
from durable_ir.simulation.fleet import SIMULATED_ACTION_RISKS, SimulatedFleet, simulated_allow_list
from durable_ir.simulation.gatherer import SimulatedGatherer
from durable_ir.simulation.records import (
    Change,
    Event,
    GroundTruth,
    Health,
    LogCount,
    Remediation,
    Slowdown,
)
from durable_ir.simulation.scenarios import SCENARIOS

__all__ = [
    "ACTIONS",
    "SCENARIOS",
    "SIMULATED_ACTION_RISKS",
    "Change",
    "Event",
    "GroundTruth",
    "Health",
    "LogCount",
    "Remediation",
    "SimulatedEnvironment",
    "SimulatedExecutor",
    "SimulatedFleet",
    "SimulatedGatherer",
    "Slowdown",
    "simulated_allow_list",
]
