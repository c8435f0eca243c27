"""The bundled demo: ``durable-ir demo`` (or ``python -m durable_ir.demo``).

Three incidents run end to end on the real incident graph (:mod:`durable_ir.demo.agent`) over
a simulated fleet, on SQLite, with no network and no API key: a worker process ingests their
alerts and pauses each for approval, is killed with SIGKILL, and a new worker approves one,
rejects one and lets the SLA monitor expire the third (:mod:`durable_ir.demo.worker`). The
parent process (:mod:`durable_ir.demo.runner`) narrates, then reads every incident back from
the database and shows its timeline (:mod:`durable_ir.demo.timeline`).

The names below are imported on first use, so that importing one submodule (the CLI renders
with :mod:`durable_ir.demo.timeline`) does not load the others.

Example:
    >>> from durable_ir.demo import build_demo_graph
    >>> "approval" in build_demo_graph("offline").nodes
    True
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["build_demo_builder", "build_demo_graph", "main", "run_demo"]

_HOMES = {
    "build_demo_builder": "durable_ir.demo.agent",
    "build_demo_graph": "durable_ir.demo.agent",
    "main": "durable_ir.demo.runner",
    "run_demo": "durable_ir.demo.runner",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'durable_ir.demo' has no attribute {name!r}")
