"""A child process running the full incident graph: ``python -m support.incident_worker MODE``.

The graph is ``support.incident_parts.build_incident_graph(DIR, step_count=STEPS, …)``, with a
PagerDuty notifier when ``--pagerduty URL`` is given. Modes (one JSON object per line out):

- ``approve URL DIR INCIDENT``: start the incident (``--severity``, ``--steps``), print
  ``{"paused": approval_id}``, approve it; with ``--kill-before-step N`` the process SIGKILLs
  itself as step N starts.
- ``start URL DIR INCIDENT``: start the incident, print ``{"paused": approval_id}``, then wait
  to be killed.
- ``recover URL DIR``: ``Runtime.recover(stalled=True)``, as at start-up; prints
  ``{"recovered": [approval ids]}``.
- ``reject-at URL DIR INCIDENT AT``: at wall-clock time AT, reject; prints ``{"won": …}`` or
  ``{"conflict": …}``.

``--lease-ttl S`` and ``--lock-timeout S`` are passed to ``open_runtime`` when given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from durable_ir import Approve, Conflict, Reject, Runtime, open_runtime
from durable_ir.integrations.pagerduty import PagerDutyNotifier
from support.incident_parts import ALERT, build_incident_graph

ROUTING_KEY = "R" * 32


def emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def graph(args: argparse.Namespace) -> Any:
    notifiers = []
    if args.pagerduty:
        notifiers.append(
            PagerDutyNotifier(ROUTING_KEY, base_url=args.pagerduty, backoff=0.01, max_retries=2)
        )
    return build_incident_graph(
        args.dir,
        step_count=args.steps,
        kill_before_step=args.kill_before_step,
        notifiers=notifiers,
    ).build()


async def run(args: argparse.Namespace, rt: Runtime) -> None:
    rt.register(graph(args))
    if args.mode in ("approve", "start"):
        alert = {**ALERT, "severity": args.severity}
        snapshot = await rt.start(graph(args), {"alert": alert}, incident_id=args.incident)
        assert snapshot.pending_approval is not None, snapshot
        emit({"paused": snapshot.pending_approval.approval_id})
        if args.mode == "start":
            await asyncio.Event().wait()
        await rt.decide(args.incident, Approve(by="alice"))
        emit({"done": (await rt.get(args.incident)).values["outcome"]})
    elif args.mode == "recover":
        emit({"recovered": [r.approval_id for r in await rt.recover(stalled=True)]})
    elif args.mode == "reject-at":
        await asyncio.sleep(max(0.0, args.at - time.time()))
        try:
            result = await rt.decide(args.incident, Reject(by="bob", reason="too risky"))
        except Conflict as conflict:
            emit({"conflict": conflict.winner.to_dict() if conflict.winner else None})
        else:
            emit({"won": result.record.to_dict()})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["approve", "start", "recover", "reject-at"])
    parser.add_argument("url")
    parser.add_argument("dir")
    parser.add_argument("incident", nargs="?")
    parser.add_argument("at", nargs="?", type=float)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--kill-before-step", type=int)
    parser.add_argument("--severity", default="P1")
    parser.add_argument("--pagerduty")
    parser.add_argument("--lease-ttl", type=float)
    parser.add_argument("--lock-timeout", type=float)
    args = parser.parse_args()
    options = {
        name: value
        for name, value in (("lease_ttl", args.lease_ttl), ("lock_timeout", args.lock_timeout))
        if value is not None
    }

    async def go() -> None:
        async with open_runtime(args.url, **options) as rt:
            await run(args, rt)

    asyncio.run(go())


if __name__ == "__main__":
    main()
