"""The full incident agent: ``IncidentGraphBuilder`` with real integrations from the environment.

An alert comes in (``rt.ingest``: an open incident with the same fingerprint absorbs it), the
graph triages it, finds a root cause, writes a plan the allow-list accepts, dry-runs it, and
pauses for a human. The decision comes from *another process*: an engineer runs the
``durable-ir incidents approve`` command this script prints, against the same database. That
command records the decision and then resumes the graph itself — which is why it loads the
same graph (``--graph full_agent:agent_graph``). Meanwhile this process runs the SLA monitor in
the background (it expires overdue approvals, and its recovery pass applies any decision whose
process died before resuming the graph) and waits until the incident is resolved or escalated.

Configuration (every variable optional; each is reported at start):

==========================  ==============================================================
``DURABLE_IR_DATABASE_URL``  ``postgresql://…``, ``sqlite:///path.db`` or ``memory://``
                             (default ``sqlite:///durable_ir.db``); the approving process
                             must use the same database
``ANTHROPIC_API_KEY``        root-cause analysis on Claude (``AnthropicAnalyzer``); without
                             it, the offline ``CorrelationAnalyzer``
``PAGERDUTY_ROUTING_KEY``    page through PagerDuty Events v2 (``PagerDutyNotifier``)
``SLACK_BOT_TOKEN`` and      approval requests, decisions and outcomes in a Slack channel
``SLACK_CHANNEL``            (``SlackNotifier``; the channel's ID, ``C…``)
==========================  ==============================================================

The world it acts on is simulated (``SimulatedFleet``: evidence, executor and verifier in one);
the comments in ``build_agent`` show where a team plugs in its own.

Run it, then approve from another terminal with the command it prints, e.g.::

    python examples/full_agent.py [--scenario expired_certificate] [--seed 1]
    PYTHONPATH=examples durable-ir incidents approve <incident id> --by <your name> \\
        --graph full_agent:agent_graph [--database-url sqlite:////abs/path/durable_ir.db]

or approve in-process, as a self-check (used by the tests)::

    python examples/full_agent.py --once
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shlex
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from langgraph.graph import StateGraph

from durable_ir import (
    Approve,
    IncidentGraphBuilder,
    IncidentNotifier,
    IncidentSnapshot,
    RcaConfig,
    Runtime,
    SlaMonitor,
    open_runtime,
    parse_database_url,
)
from durable_ir.rca import Analyzer
from durable_ir.rca.analyzers import CorrelationAnalyzer
from durable_ir.simulation import SCENARIOS, SimulatedFleet, simulated_allow_list

SETTLE = timedelta(minutes=15)
"""Simulated time the fleet lets pass after remediation before it reads health again."""


@dataclass
class Integrations:
    """What the environment configured, and how to close it."""

    database_url: str
    database_from_environment: bool
    analyzer: Analyzer
    notifiers: list[IncidentNotifier] = field(default_factory=list)
    report: list[tuple[str, str]] = field(default_factory=list)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def from_environment() -> Integrations:
    """Each integration from its environment variables, or its offline stand-in."""
    env = os.environ
    # The default is durable-ir's own (sqlite:///durable_ir.db), made absolute so that the
    # approving command can name the same file from any directory.
    url = env.get("DURABLE_IR_DATABASE_URL") or f"sqlite:///{Path('durable_ir.db').resolve()}"
    source = "DURABLE_IR_DATABASE_URL" if env.get("DURABLE_IR_DATABASE_URL") else "default"
    shown = str(parse_database_url(url))  # refuses a bad URL now; the password is masked

    analyzer: Analyzer
    closers: list[Callable[[], Awaitable[None]]] = []
    if env.get("ANTHROPIC_API_KEY"):
        from durable_ir.rca.analyzers.anthropic import AnthropicAnalyzer

        claude = AnthropicAnalyzer()  # its client reads ANTHROPIC_API_KEY; the loop retries
        analyzer, analysis = claude, f"AnthropicAnalyzer ({claude.model})"
        closers.append(claude.aclose)
    else:
        analyzer = CorrelationAnalyzer()
        analysis = "CorrelationAnalyzer, offline (set ANTHROPIC_API_KEY for Claude)"

    found = Integrations(url, source != "default", analyzer, closers=closers)
    found.report += [("database", f"{shown} ({source})"), ("analyzer", analysis)]

    if env.get("PAGERDUTY_ROUTING_KEY"):
        from durable_ir.integrations.pagerduty import PagerDutyNotifier

        # Pages P0 incidents when they open, and every incident that is escalated; resolves
        # its own page when the incident is resolved. dedup_key = the incident id.
        found.notifiers.append(PagerDutyNotifier(env["PAGERDUTY_ROUTING_KEY"]))
        found.report.append(("pagerduty", "on (PAGERDUTY_ROUTING_KEY)"))
    else:
        found.report.append(("pagerduty", "off (set PAGERDUTY_ROUTING_KEY)"))

    token, channel = env.get("SLACK_BOT_TOKEN"), env.get("SLACK_CHANNEL")
    if token and channel:
        from slack_sdk.web.async_client import AsyncWebClient

        from durable_ir.integrations.slack import SlackNotifier

        found.notifiers.append(SlackNotifier(AsyncWebClient(token=token), channel))
        found.report.append(("slack", f"on, channel {channel}"))
    elif token or channel:
        missing = "SLACK_CHANNEL" if token else "SLACK_BOT_TOKEN"
        found.report.append(("slack", f"off: {missing} is not set"))
    else:
        found.report.append(("slack", "off (set SLACK_BOT_TOKEN and SLACK_CHANNEL)"))
    return found


def build_agent(integrations: Integrations, fleet: SimulatedFleet) -> IncidentGraphBuilder:
    """The incident graph. The simulated fleet plays three parts; for production, replace:

    - ``gatherer`` — where evidence comes from: ``PrometheusGatherer``
      (``durable_ir.rca.gatherers.prometheus``), or anything with
      ``async gather(alert, window) -> list[Evidence]``;
    - ``executor`` — what acts on the world: your own class with
      ``async dry_run / apply / rollback(step, context) -> StepResult``, e.g. a client of your
      Kubernetes or deploy API. Send ``context.idempotency_key`` along with every call (as a
      request id, an annotation, a deploy id): a crash re-runs at most the step that was
      running, with the same key, so an API that honours it makes the re-run harmless;
    - ``verifier`` — reads the world after apply: ``async verify(context) -> Verification``,
      e.g. the alert's PromQL (the queries a ``PrometheusGatherer`` runs) below threshold for
      a few minutes;
    - ``allow_list`` — every action your executor may run, at the highest risk it may be
      declared at, and optionally the targets plans may touch.
    """
    return IncidentGraphBuilder(
        gatherer=fleet,  # ← PrometheusGatherer(...)
        analyzer=integrations.analyzer,
        executor=fleet,  # ← KubernetesExecutor(...), DeployApiExecutor(...)
        verifier=fleet,  # ← a Verifier reading your metrics
        allow_list=simulated_allow_list(),  # ← AllowList({"rollback": "medium", ...})
        rca=RcaConfig(threshold=0.7, max_attempts=3, attempt_timeout=120),
        notifiers=integrations.notifiers,
        # Also: severity_rules=[SeverityRule(severity="P0", service="payments")],
        # auto_approve=AutoApprove(max_risk="read_only"), rollbacks={...}, sla=SlaPolicy(...)
    )


def agent_graph() -> IncidentGraphBuilder:
    """The agent's graph, configured from the environment: what the approving process loads
    (``durable-ir incidents approve … --graph full_agent:agent_graph``) to resume the incident
    after recording the decision. It must be the graph the incident was started with."""
    return build_agent(from_environment(), SimulatedFleet(settle=SETTLE))


def approve_command(incident_id: str, integrations: Integrations) -> str:
    """The command that approves ``incident_id`` from another terminal."""
    here = Path(__file__).resolve().parent
    database = (
        ""  # the other terminal needs the same DURABLE_IR_DATABASE_URL
        if integrations.database_from_environment
        else f" --database-url {shlex.quote(integrations.database_url)}"
    )
    return (
        f"PYTHONPATH={shlex.quote(str(here))} durable-ir incidents approve {incident_id} "
        f"--by '<your name>' --graph full_agent:agent_graph{database}"
    )


def describe_request(snapshot: IncidentSnapshot) -> None:
    approval = snapshot.pending_approval
    assert approval is not None
    asked = approval.request["action_requests"][0]
    print(f"\nwaiting for approval ({approval.severity}, due {approval.deadline_at:%H:%M} UTC):")
    print(f"  {asked['description']}")
    previews = {p["number"]: p["detail"] for p in asked["args"].get("dry_run") or []}
    for number, step in enumerate(asked["args"]["plan"]["steps"], start=1):
        preview = previews.get(number, "not previewed")
        print(f"  {number}. {step['action']} {step['target']} [{step['risk']} risk]: {preview}")


def describe_outcome(snapshot: IncidentSnapshot) -> None:
    report = snapshot.values.get("report") or {}
    decision = report.get("decision") or {}
    print(f"\nincident {snapshot.id}: {report.get('outcome')}", end="")
    print(f" ({report['escalation_reason']})" if report.get("escalation_reason") else "")
    print(f"  root cause:   {report.get('root_cause')}")
    if decision:
        print(f"  decision:     {decision.get('status')} by {decision.get('decided_by')}")
    for step in report.get("steps_applied") or []:
        print(f"  applied:      step {step['number']} {step['action']} {step['target']}")
    verification = report.get("verification") or {}
    if verification:
        print(f"  verification: {verification.get('detail')}")
    for sent in snapshot.values.get("notifications") or []:
        note = f" — {sent['error']}" if sent.get("error") else ""
        print(f"  notified:     {sent['channel']} {sent['kind']}{note}")


async def wait_until_finished(rt: Runtime, incident_id: str) -> IncidentSnapshot:
    """Poll the incident until its run ends. The decision may be applied by the process that
    recorded it, or here, by the SLA monitor's recovery pass."""
    last = None
    while True:
        snapshot = await rt.get(incident_id)
        if snapshot.status != last:
            if last is not None:
                print(f"  … {snapshot.status}")
            last = snapshot.status
        if snapshot.status == "finished":
            return snapshot
        await asyncio.sleep(1.0)


async def handle(
    rt: Runtime,
    graph: StateGraph[Any, Any, Any, Any],
    agent: Integrations,
    fleet: SimulatedFleet,
    args: argparse.Namespace,
) -> None:
    """Ingest one alert, get (or self-check) a decision, wait for the outcome."""
    # In production the alert arrives on a webhook: parse_alert() turns an Alertmanager or
    # generic payload into Alerts. Here it comes from the fleet.
    alert = fleet.alert(None if args.scenario == "healthy" else args.scenario, args.seed)
    intake = await rt.ingest(graph, alert)
    assert intake.incident is not None  # None only for a resolution notice
    incident_id = intake.incident.incident_id
    if intake.created:
        print(f"\nopened incident {incident_id}: {intake.incident.title}")
    else:  # an open incident with the same fingerprint absorbed the alert
        count = intake.incident.alerts_received
        print(f"\nthe alert joined open incident {incident_id} ({count} alerts)")

    snapshot = await rt.get(incident_id)
    if snapshot.status == "awaiting_approval":
        describe_request(snapshot)
        if args.once:
            decided = await rt.decide(incident_id, Approve(by=args.approver, reason="--once"))
            print(f"\nself-check: {decided.record.describe()}")
        else:
            print("\nto approve, from another terminal:")
            print(f"  {approve_command(incident_id, agent)}")
            print("waiting for a decision (Ctrl-C leaves it waiting in the database)")
    describe_outcome(await wait_until_finished(rt, incident_id))


async def run(args: argparse.Namespace) -> int:
    integrations = from_environment()
    print("durable-ir full agent")
    for name, value in integrations.report:
        print(f"  {name + ':':<11}{value}")
    print(f"  {'executor:':<11}SimulatedFleet (see build_agent for your own Executor/Verifier)")

    fleet = SimulatedFleet(settle=SETTLE)
    graph = build_agent(integrations, fleet).build()
    try:
        async with open_runtime(integrations.database_url) as rt:
            rt.register(graph)  # so that this process can resume it: decide, recover, expire
            # Expires overdue approvals and sends reminders (from the database, so any number
            # of replicas may run), then applies decisions recorded but not yet applied.
            monitor = asyncio.create_task(SlaMonitor(rt, interval=args.monitor_interval).run())
            try:
                await handle(rt, graph, integrations, fleet, args)
            finally:
                monitor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await monitor
    finally:
        for close in integrations.closers:
            await close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--scenario", default="expired_certificate", choices=[*SCENARIOS, "healthy"]
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--once", action="store_true", help="approve in-process and exit")
    parser.add_argument("--approver", default="self-check", help="who approves with --once")
    parser.add_argument(
        "--monitor-interval", type=float, default=5.0, help="seconds between SLA sweeps"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        print("\nstopped; a paused incident waits in the database: run again to pick it up")
        return 130


if __name__ == "__main__":
    sys.exit(main())
