"""Gatherers: where evidence comes from — :mod:`durable_ir.rca.gatherers.prometheus` reads a
real Prometheus. (The simulated fleet's gatherer is
:class:`durable_ir.simulation.SimulatedGatherer`.)

Example:
    >>> from durable_ir.rca.evidence import Gatherer
    >>> from durable_ir.rca.gatherers.prometheus import PrometheusGatherer
    >>> issubclass(PrometheusGatherer, object)
    True
"""

__all__: list[str] = []
