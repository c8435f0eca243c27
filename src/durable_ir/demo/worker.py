"""The demo's worker process: ``python -m durable_ir.demo.worker intake|restart URL RUN``.

It writes one JSON object per line to stdout (what it did, for the parent to show) and logs to
stderr. Two roles:

- ``intake``: ingests the demo alerts through :meth:`durable_ir.Runtime.ingest` (plus a
  duplicate of the first), runs each incident until it pauses for approval, then waits to be
  killed.
- ``restart``: a new process with nothing but the database URL and the incident ids. It runs
  :meth:`~durable_ir.Runtime.recover` as any worker does on start, checks that every incident
  is still awaiting approval, approves the first (and shows that a second decision is
  refused), rejects the second, waits for the third's deadline and runs the SLA monitor.

Example:
    >>> incident_ids("AB12")
    ['INC-AB12-1', 'INC-AB12-2', 'INC-AB12-3']
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, cast

from durable_ir.decisions import Approve, Reject
from durable_ir.demo.agent import (
    DEMO_GRAPH_NAME,
    DEMO_INCIDENTS,
    SETTLE,
    AnalyzerChoice,
    build_demo_builder,
    choose_analyzer,
    demo_alert,
    describe_analyzer,
)
from durable_ir.errors import Conflict
from durable_ir.incident import IncidentSnapshot
from durable_ir.runtime import Runtime, open_runtime
from durable_ir.simulation import SimulatedFleet
from durable_ir.sla import SlaMonitor

__all__ = ["APPROVER", "REJECTER", "REJECT_REASON", "incident_ids", "main"]

APPROVER = "alice@oncall"
APPROVE_REASON = "the rollback is the runbook's first step"
LATE_APPROVER = "bob@oncall"
REJECTER = "carol@dba"
REJECT_REASON = "db is the primary: the DBA team expands its disk by hand, not the agent"


def incident_ids(run: str) -> list[str]:
    """The ids of the demo run's incidents, in order."""
    return [f"INC-{run}-{n}" for n in range(1, len(DEMO_INCIDENTS) + 1)]


def emit(event: str, **fields: Any) -> None:
    """One line for the parent."""
    line = {"event": event, "at": datetime.now(UTC).isoformat(), **fields}
    sys.stdout.write(json.dumps(line, default=str) + "\n")
    sys.stdout.flush()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _brief(snapshot: IncidentSnapshot | None) -> dict[str, Any]:
    if snapshot is None:
        return {}
    values = snapshot.values
    pending = snapshot.pending_approval
    rca = values.get("rca") or {}
    plan = values.get("plan") or {}
    return {
        "status": snapshot.status,
        "severity": values.get("severity"),
        "title": values.get("title"),
        "root_cause": (rca.get("hypothesis") or {}).get("root_cause"),
        "confidence": rca.get("confidence"),
        "steps": [f"{s['action']} {s['target']}" for s in plan.get("steps") or []],
        "window_s": values.get("approval_window_s"),
        "requested_at": _iso(pending.requested_at) if pending else None,
        "deadline_at": _iso(pending.deadline_at) if pending else None,
        "outcome": values.get("outcome"),
        "verification": values.get("verification"),
    }


async def intake(rt: Runtime, run: str, choice: AnalyzerChoice) -> None:
    """Ingest the demo alerts and run each incident until it pauses; then wait forever."""
    fleet = SimulatedFleet(settle=SETTLE)
    graph = build_demo_builder(choice, fleet=fleet).build()
    ids = incident_ids(run)
    for number, (spec, incident_id) in enumerate(zip(DEMO_INCIDENTS, ids, strict=True), 1):
        taken = await rt.ingest(
            graph, demo_alert(spec, run, fleet=fleet), incident_id=incident_id,
            graph_name=DEMO_GRAPH_NAME,
        )  # fmt: skip
        emit(
            "ingested",
            incident=incident_id,
            created=taken.created,
            scenario=spec.scenario,
            seed=spec.seed,
            **_brief(taken.snapshot),
        )
        if number == 1:  # the monitoring system sends the same alert again
            again = await rt.ingest(
                graph, demo_alert(spec, run, fleet=fleet), incident_id=f"INC-{run}-dup",
                graph_name=DEMO_GRAPH_NAME,
            )  # fmt: skip
            emit(
                "duplicate",
                created=again.created,
                attached_to=again.incident.incident_id if again.incident else None,
                alerts_received=again.incident.alerts_received if again.incident else None,
            )
    emit("waiting", incidents=ids)
    await asyncio.Event().wait()


async def restart(rt: Runtime, run: str, choice: AnalyzerChoice) -> None:
    """Take over after the kill: check, approve, reject, let one expire."""
    analyzer = choose_analyzer(choice)
    rt.register(build_demo_builder(analyzer).build(), name=DEMO_GRAPH_NAME)
    recovered = await rt.recover(stalled=True)
    emit("recovered", count=len(recovered))
    first, second, third = incident_ids(run)
    for incident_id in (first, second, third):
        emit("found", incident=incident_id, **_brief(await rt.get(incident_id)))

    decided = await rt.decide(first, Approve(by=APPROVER, reason=APPROVE_REASON))
    emit(
        "approved",
        incident=first,
        decision=decided.record.describe(),
        **_brief(await rt.get(first)),
    )
    try:
        await rt.decide(first, Approve(by=LATE_APPROVER))
    except Conflict as conflict:
        emit(
            "conflict",
            incident=first,
            by=LATE_APPROVER,
            message=str(conflict),
            winner=conflict.winner.decided_by if conflict.winner else None,
        )
    else:
        emit("unexpected", message=f"a second approval of {first} was accepted")

    decided = await rt.decide(second, Reject(by=REJECTER, reason=REJECT_REASON))
    emit(
        "rejected",
        incident=second,
        decision=decided.record.describe(),
        **_brief(await rt.get(second)),
    )

    waiting = await rt.get(third)
    if waiting.pending_approval is None:
        emit("unexpected", message=f"{third} has no pending approval ({waiting.status})")
        return
    deadline = waiting.pending_approval.deadline_at
    left = (deadline - rt.clock()).total_seconds()
    emit("deadline", incident=third, deadline_at=deadline.isoformat(), seconds_left=left)
    if left > 0:
        await asyncio.sleep(left + 0.25)
    report = await SlaMonitor(rt).sweep()
    ours = [r for r in report.expired if r.incident_id in (first, second, third)]
    emit(
        "swept",
        expired=[r.incident_id for r in ours],
        reasons=[r.reason for r in ours],
        applied=len(report.applied),
        deferred=len(report.deferred),
        **_brief(await rt.get(third)),
    )
    close = getattr(analyzer, "aclose", None)
    if close is not None:  # Claude's HTTP client
        await close()
    emit("done")


async def _run(role: str, url: str, run: str, choice: AnalyzerChoice) -> int:
    emit("ready", role=role, pid=os.getpid(), analyzer=describe_analyzer(choice))
    try:
        async with open_runtime(url) as rt:
            if role == "intake":
                await intake(rt, run, choice)
            else:
                await restart(rt, run, choice)
    except Exception as exc:
        logging.getLogger("durable_ir.demo").exception("the %s worker failed", role)
        emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the worker process."""
    parser = argparse.ArgumentParser(prog="python -m durable_ir.demo.worker")
    parser.add_argument("role", choices=["intake", "restart"])
    parser.add_argument("url")
    parser.add_argument("run")
    parser.add_argument("--analyzer", choices=["auto", "offline", "anthropic"], default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(_run(args.role, args.url, args.run, cast(AnalyzerChoice, args.analyzer)))


if __name__ == "__main__":
    raise SystemExit(main())
