"""Alert intake: each alert indexed (or attached) before the answer, its first run after it.

``Runtime.ingest(..., run=False)`` opens the incident — or attaches the alert to the
incident its firing reached before (even a closed one) or to the open incident with the same
fingerprint — and returns; the answer goes out, and a background task
runs the new incident with ``Runtime.start_opened`` until it pauses or ends, at most
``limit`` first runs at once. If this process dies first, recovery on any replica starts the
incident from its indexed input.

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

import contextlib
from dataclasses import dataclass

from durable_ir.alerts import Alert
from durable_ir.errors import Conflict, InvalidInput
from durable_ir.graphs import AnyGraph
from durable_ir.records import AlertEventKind, ApprovalRecord, IncidentRecord
from durable_ir.runtime import Intake, Runtime
from durable_ir.service.background import BackgroundRuns

__all__ = ["Accepted", "AlertIntake"]


@dataclass(frozen=True)
class Accepted:
    """One firing alert's fate: the incident it opened (``created``) or was attached to
    (``event`` ``fired``: the open incident with its fingerprint; ``repeated``: the incident
    this same firing reached before, open or closed)."""

    row: IncidentRecord
    created: bool
    event: AlertEventKind | None = "fired"


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
        intake = await self.runtime.ingest(self.graph, alert, graph_name=self.graph_name, run=False)
        if intake.incident is None:  # a resolution notice; callers filter these out
            raise InvalidInput("resolution notices open no incident")
        if intake.created:
            incident_id = intake.incident.incident_id
            self.runs.spawn(self._first_run(incident_id), name=f"first run of {incident_id}")
        return Accepted(intake.incident, created=intake.created, event=intake.event)

    async def resolve(self, alert: Alert) -> Intake:
        """Note a resolution notice on its incident's alert timeline; if it expired the
        pending approval (policy ``expire``), hand that expiry to the graph in the
        background (recovery applies it if this process dies first)."""
        if alert.status != "resolved":
            raise InvalidInput("only resolution notices are resolved")
        intake = await self.runtime.ingest(self.graph, alert, graph_name=self.graph_name, run=False)
        if intake.expired is not None:
            record = intake.expired
            self.runs.spawn(
                self._apply(record), name=f"applying alert_resolved on {record.incident_id}"
            )
        elif intake.event == "resolved" and intake.incident is not None:
            # annotate: the channels (Slack) are told after the answer, not before it
            incident_id = intake.incident.incident_id
            self.runs.spawn(
                self.runtime.announce_alert_resolved(incident_id),
                name=f"announcing the resolved alert of {incident_id}",
            )
        return intake

    async def _apply(self, record: ApprovalRecord) -> None:
        async with self.runs.slots:
            await self.runtime.apply_decision(record)

    async def _first_run(self, incident_id: str) -> None:
        # Conflict: recovery or another replica started it, and it runs there.
        async with self.runs.slots:
            with contextlib.suppress(Conflict):
                await self.runtime.start_opened(incident_id)
