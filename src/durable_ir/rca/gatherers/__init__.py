"""Gatherers: where evidence comes from.

Example:
    >>> from durable_ir.rca.evidence import Gatherer
    >>> from durable_ir.simulation import SimulatedEnvironment
    >>> isinstance(SimulatedGatherer(SimulatedEnvironment("disk_full", seed=0)), Gatherer)
    True
"""

from durable_ir.rca.gatherers.simulated import SimulatedGatherer

__all__ = ["SimulatedGatherer"]
