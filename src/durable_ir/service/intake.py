"""Alert intake: each alert through ``Runtime.ingest``, answered as soon as it is indexed.

``Runtime.ingest`` indexes the alert (or attaches it to the open incident with the same
fingerprint) and then runs the new incident until it pauses or ends, in one call. The
service gives each alert a fresh incident id, runs ``ingest`` in a background task, and
answers as soon as the index holds that id (the alert opened an incident) or ``ingest``
returned (it was attached). The first runs go on after the answer, at most
``max_concurrent_runs`` at once; one whose process dies is started or continued by recovery.

Example:
    >>> import asyncio
    >>> from durable_ir import open_runtime, parse_alert
    >>> from durable_ir.demo.agent import DEMO_INCIDENTS, build_demo_graph, demo_alert
    >>> from durable_ir.service.background import BackgroundRuns
    >>> async def main():
    ...     async with open_runtime("memory://") as rt:
    ...         intake = AlertIntake(rt, build_demo_graph("offline"), "demo-agent",
    ...                              BackgroundRuns(limit=2))
    ...         (alert,) = parse_alert(demo_alert(DEMO_INCIDENTS[0], run="doc"))
    ...         first = await intake.accept(alert)
    ...         again = await intake.accept(alert)
    ...         await intake.runs.drain(grace=30)
    ...         return first.created, again.created, again.row.alerts_received
    >>> asyncio.run(main())
    (True, False, 2)
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from durable_ir.alerts import Alert
from durable_ir.graphs import AnyGraph
from durable_ir.records import IncidentRecord
from durable_ir.runtime import Intake, Runtime
from durable_ir.service.background import BackgroundRuns

__all__ = ["Accepted", "AlertIntake"]

_POLL_START_S = 0.005
_POLL_MAX_S = 0.1


@dataclass(frozen=True)
class Accepted:
    """One firing alert's fate: the incident it opened (``created``) or was attached to."""

    row: IncidentRecord
    created: bool


class AlertIntake:
    """Takes alerts in for one graph; see the module doc."""

    def __init__(
        self, runtime: Runtime, graph: AnyGraph, graph_name: str, runs: BackgroundRuns
    ) -> None:
        self.runtime = runtime
        self.graph = graph
        self.graph_name = graph_name
        self.runs = runs

    async def accept(self, alert: Alert) -> Accepted:
        """Index ``alert`` (a firing one) and start its run in the background."""
        incident_id = str(uuid.uuid4())
        await self.runs.slots.acquire()
        task = self.runs.spawn(
            self._ingest(alert, incident_id), name=f"first run of incident {incident_id}"
        )
        ledger = self.runtime.store.ledger
        pause = _POLL_START_S
        while True:
            row = await ledger.get_incident(incident_id)
            if row is not None:  # indexed under our id: this alert opened it
                return Accepted(row, created=True)
            if task.done():
                break
            await asyncio.wait({task}, timeout=pause)
            pause = min(pause * 2, _POLL_MAX_S)
        intake = task.result()  # raises what ingest raised before indexing
        if intake.incident is None:  # a resolution notice; callers filter these out
            raise ValueError("resolution notices open no incident")
        return Accepted(intake.incident, created=intake.created)

    async def _ingest(self, alert: Alert, incident_id: str) -> Intake:
        try:
            return await self.runtime.ingest(
                self.graph, alert, graph_name=self.graph_name, incident_id=incident_id
            )
        finally:
            self.runs.slots.release()
