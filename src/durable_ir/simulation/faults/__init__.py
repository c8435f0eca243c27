"""The fault models the simulated environment can inject.

Example:
    >>> sorted(FAULT_TYPES)[:2]
    ['bad_deploy', 'config_error']
"""

from durable_ir.simulation.faults.application import BadDeploy, ConfigError, MemoryLeak
from durable_ir.simulation.faults.background import Disturbance
from durable_ir.simulation.faults.base import Fault, LogRate, PlannedChange, PlannedEvent, World
from durable_ir.simulation.faults.dependencies import ExpiredCertificate, UpstreamOutage
from durable_ir.simulation.faults.resources import DiskFull, NoisyNeighbour, PoolExhaustion

FAULT_TYPES: dict[str, type[Fault]] = {
    cls.name: cls
    for cls in (
        BadDeploy,
        ConfigError,
        MemoryLeak,
        PoolExhaustion,
        DiskFull,
        NoisyNeighbour,
        ExpiredCertificate,
        UpstreamOutage,
    )
}
"""Each fault model by the fault name it injects."""

__all__ = [
    "FAULT_TYPES",
    "BadDeploy",
    "ConfigError",
    "DiskFull",
    "Disturbance",
    "ExpiredCertificate",
    "Fault",
    "LogRate",
    "MemoryLeak",
    "NoisyNeighbour",
    "PlannedChange",
    "PlannedEvent",
    "PoolExhaustion",
    "UpstreamOutage",
    "World",
]
