"""The bundled demo: an incident paused for approval survives a SIGKILL, and exactly one
decision wins. Runs on SQLite in a temporary directory, with no network and no API key.

Run it with ``durable-ir demo`` (or ``python -m durable_ir.demo``).

Example:
    >>> sorted(build_demo_graph("/tmp").nodes)
    ['approval', 'escalate', 'investigate', 'plan', 'remediate', 'triage']
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from durable_ir.approval import approval_node
from durable_ir.decisions import Approve, Reject
from durable_ir.errors import Conflict, NotFound
from durable_ir.runtime import open_runtime

__all__ = ["build_demo_graph", "run_demo"]

ALERT = {
    "name": "HighErrorRate",
    "service": "checkout-api",
    "severity": "P1",
    "description": "5xx ratio 12% for 10m, started 3 minutes after deploy 2026.11.24-1",
}


class DemoState(TypedDict, total=False):
    alert: dict[str, Any]
    severity: str
    summary: str
    plan: dict[str, Any]
    approval: dict[str, Any]
    outcome: str


def build_demo_graph(run_log_dir: str | os.PathLike[str]) -> StateGraph[Any, Any, Any, Any]:
    """A small incident graph whose stages log each run to ``run_log_dir/<incident>.log``."""
    log_dir = Path(run_log_dir)

    def stage(name: str, update: Callable[[DemoState], dict[str, Any]]) -> Any:
        def node(state: DemoState, config: RunnableConfig) -> dict[str, Any]:
            incident = str((config.get("configurable") or {})["thread_id"])
            with open(log_dir / f"{incident}.log", "a") as runs:
                runs.write(f"{name}\n")
            return update(state)

        node.__name__ = name
        return node

    gate = approval_node()
    builder: StateGraph[Any, Any, Any, Any] = StateGraph(DemoState)
    builder.add_node("triage", stage("triage", lambda s: {"severity": s["alert"]["severity"]}))
    builder.add_node(
        "investigate",
        stage(
            "investigate",
            lambda s: {"summary": f"{s['alert']['service']}: errors began after the last deploy"},
        ),
    )
    builder.add_node(
        "plan",
        stage(
            "plan",
            lambda s: {
                "plan": {"steps": [{"action": "rollback", "target": s["alert"]["service"]}]}
            },
        ),
    )
    builder.add_node("approval", gate)
    builder.add_node("remediate", stage("remediate", lambda s: {"outcome": "rolled back"}))
    builder.add_node("escalate", stage("escalate", lambda s: {"outcome": "escalated"}))
    builder.add_edge(START, "triage")
    builder.add_edge("triage", "investigate")
    builder.add_edge("investigate", "plan")
    builder.add_edge("plan", "approval")
    builder.add_conditional_edges(
        "approval",
        gate.route,
        {"approved": "remediate", "rejected": "escalate", "expired": "escalate"},
    )
    builder.add_edge("remediate", END)
    builder.add_edge("escalate", END)
    return builder


def _runs(log_dir: Path, incident: str) -> Counter[str]:
    path = log_dir / f"{incident}.log"
    return Counter(path.read_text().split()) if path.exists() else Counter()


async def _child(url: str, incident: str, log_dir: str) -> None:
    async with open_runtime(url) as rt:
        snapshot = await rt.start(build_demo_graph(log_dir), {"alert": ALERT}, incident_id=incident)
        assert snapshot.pending_approval is not None
        print(f"PAUSED {snapshot.pending_approval.deadline_at.isoformat()}", flush=True)
        await asyncio.Event().wait()  # wait, paused, until killed


def _say(text: str = "") -> None:
    print(text, flush=True)


async def run_demo(workdir: str | None = None) -> int:
    """Run the demo scenario; returns the process exit code."""
    with tempfile.TemporaryDirectory(prefix="durable-ir-demo-") as tmp:
        base = Path(workdir or tmp)
        url = f"sqlite:///{base / 'incidents.db'}"
        incident = "INC-1042"
        _say("durable-ir demo: a durable human approval (SQLite, no network, no API key)")
        _say(f"  database: {url}")
        _say()
        _say(f"1. A worker process takes alert {ALERT['name']} on {ALERT['service']} and runs")
        _say("   triage -> investigate -> plan, then pauses for a human approval.")
        started = time.monotonic()
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "durable_ir.demo",
            "--child",
            url,
            incident,
            str(base),
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdout is not None
        line = (await asyncio.wait_for(child.stdout.readline(), timeout=120)).decode().strip()
        if not line.startswith("PAUSED"):
            child.kill()
            _say(f"   the worker failed to pause (exit {await child.wait()})")
            return 1
        _say(f"   paused; the approval is due by {line.split()[1]}")
        _say()
        _say(f"2. The worker is killed with SIGKILL (pid {child.pid}) while it waits.")
        child.send_signal(signal.SIGKILL)
        await child.wait()
        _say()
        _say("3. A new process, knowing only the database URL and the incident id, approves.")
        async with open_runtime(url) as rt:
            rt.register(build_demo_graph(base))
            waiting = await rt.get(incident)
            _say(f"   incident status before deciding: {waiting.status}")
            result = await rt.decide(
                incident, Approve(by="alice@oncall", reason="rollback is safe")
            )
            done = await rt.get(incident)
            _say(f"   decision: {result.record.describe()}")
            _say(f"   incident status now: {done.status}, outcome: {done.values.get('outcome')}")
            runs = _runs(base, incident)
            _say("   stage runs: " + ", ".join(f"{k}={v}" for k, v in sorted(runs.items())))
            if any(runs[s] != 1 for s in ("triage", "investigate", "plan", "remediate")):
                _say("   UNEXPECTED: a stage ran more or less than once")
                return 1
            _say("   no stage before the pause ran twice; remediation ran exactly once.")
            _say()
            _say("4. A second on-call engineer clicks Reject a moment too late.")
            try:
                await rt.decide(incident, Reject(by="bob@oncall", reason="wait for the owner"))
            except Conflict as conflict:
                _say(f"   refused: {conflict}")
            else:
                _say("   UNEXPECTED: a second decision was accepted")
                return 1
            _say()
            _say("5. Someone approves an incident id that does not exist.")
            try:
                await rt.decide("INC-9999", Approve(by="carol@oncall"))
            except NotFound as missing:
                _say(f"   refused: {missing} (and no run was started for it)")
            _say()
            _say(f"Done in {time.monotonic() - started:.1f}s.")
            _say(
                "Coming next: the full incident agent (alert intake, RCA loop with Claude or the "
                "offline analyzer, SLA monitor, PagerDuty/Slack) is being built; this demo shows "
                "the durable-approval foundation it stands on."
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python -m durable_ir.demo``."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--child"]:
        url, incident, log_dir = args[1:4]
        asyncio.run(_child(url, incident, log_dir))
        return 0
    return asyncio.run(run_demo())


if __name__ == "__main__":
    raise SystemExit(main())
