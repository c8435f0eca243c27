"""``durable-ir demo``: three incidents on the full incident graph, a SIGKILL while all three
wait for approval, and a new process that approves one, rejects one and lets one expire.

The parent process only starts workers, kills one, and reads the database at the end; the
incidents run in the workers (:mod:`durable_ir.demo.worker`). Everything shown at the end (the
timelines and the final counts) is read back from the database.

Example:
    >>> parse_args(["--offline"]).offline
    True
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from rich.console import Console
from rich.markup import escape

from durable_ir.demo.agent import (
    DEMO_GRAPH_NAME,
    DEMO_INCIDENTS,
    WINDOW_LABEL,
    AnalyzerChoice,
    build_demo_graph,
    describe_analyzer,
)
from durable_ir.demo.timeline import IncidentView, Marker, clock_time, render_incident
from durable_ir.demo.worker import APPROVER, incident_ids
from durable_ir.persistence import redact_url
from durable_ir.runtime import open_runtime

__all__ = ["DemoFailed", "main", "parse_args", "run_demo"]

EXPECTED = ("resolved", "rejected", "expired")
"""The outcome each demo incident must reach: resolved, escalated (rejected), escalated
(expired)."""


class DemoFailed(Exception):
    """Something in the demo did not go as it must; the message says what."""


def _open_sink(path: Path) -> BinaryIO:
    return open(path, "wb")


class _Worker:
    """A worker process and the events it writes, one JSON object per line."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, stderr: Path) -> None:
        self.name = name
        self.process = process
        self.stderr = stderr

    @classmethod
    async def start(cls, name: str, args: Sequence[str], workdir: Path) -> _Worker:
        stderr = workdir / f"worker-{name}.stderr"
        with _open_sink(stderr) as sink:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "durable_ir.demo.worker",
                *args,
                stdout=asyncio.subprocess.PIPE,
                stderr=sink,
            )
        return cls(name, process, stderr)

    @property
    def pid(self) -> int:
        return self.process.pid

    def _stderr_tail(self) -> str:
        try:
            lines = self.stderr.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return ("\n" + "\n".join(lines[-15:])) if lines else ""

    async def next(self, expected: str, patience: float) -> dict[str, Any]:
        """The next event, which must be ``expected``; ``DemoFailed`` otherwise."""
        assert self.process.stdout is not None
        while True:
            try:
                raw = await asyncio.wait_for(self.process.stdout.readline(), timeout=patience)
            except TimeoutError:
                raise DemoFailed(
                    f"worker {self.name} said nothing for {patience:.0f}s (waiting for "
                    f"{expected!r}){self._stderr_tail()}"
                ) from None
            if not raw:
                code = await self.process.wait()
                raise DemoFailed(
                    f"worker {self.name} (pid {self.pid}) exited with code {code} before "
                    f"{expected!r}{self._stderr_tail()}"
                )
            try:
                event = json.loads(raw)
            except ValueError:
                continue  # not ours: something else printed to stdout
            if not isinstance(event, dict):
                continue
            if event.get("event") == "error":
                raise DemoFailed(f"worker {self.name} failed: {event.get('message')}")
            if event.get("event") == "unexpected":
                raise DemoFailed(f"worker {self.name}: {event.get('message')}")
            if event.get("event") != expected:
                raise DemoFailed(
                    f"worker {self.name} reported {event.get('event')!r}, expected {expected!r}"
                )
            return event

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
        await self.process.wait()


def _at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["at"]) if event.get("at") else datetime.now(UTC)


def _short(text: object, limit: int = 90) -> str:
    value = str(text or "")
    return value if len(value) <= limit else value[: limit - 1] + "…"


@dataclass
class _Demo:
    console: Console
    url: str
    run: str
    workdir: Path
    analyzer: AnalyzerChoice
    temporary: bool
    timeout: float
    markers: dict[str, list[Marker]] = field(default_factory=dict)
    conflict_winner: str | None = None
    duplicate_ok: bool = False

    def say(self, text: str = "") -> None:
        self.console.print(text, highlight=False)

    def mark(self, incident: str, at: datetime, text: str) -> None:
        self.markers.setdefault(incident, []).append(Marker(at, text))

    async def run_all(self) -> int:
        started = time.monotonic()
        ids = incident_ids(self.run)
        self.intro()
        intake = await _Worker.start("A", self.worker_args("intake"), self.workdir)
        restart: _Worker | None = None
        try:
            killed_at = await self.step_intake(intake, ids)
            restart = await _Worker.start("B", self.worker_args("restart"), self.workdir)
            await self.step_restart(restart, ids, intake.pid)
            await restart.process.wait()
        finally:
            await intake.kill()
            if restart is not None:
                await restart.kill()
        return await self.step_report(ids, killed_at, started)

    def worker_args(self, role: str) -> list[str]:
        return [role, self.url, self.run, "--analyzer", self.analyzer]

    def intro(self) -> None:
        where = "fresh, temporary" if self.temporary else "from --database-url"
        self.say("[bold]durable-ir demo[/]: three incidents, one SIGKILL, three kinds of decision")
        self.say(f"  database  {escape(redact_url(self.url))} ({where})")
        self.say(f"  analyzer  {escape(describe_analyzer(self.analyzer))}")
        self.say(
            "  world     SimulatedFleet: services with injected faults; remediation changes them"
        )
        self.say(
            "  agent     IncidentGraphBuilder: ingest → triage → rca → plan → dry_run → "
            "approval_window → approval → apply → verify → resolve | escalate → summarize"
        )
        self.say()

    async def step_intake(self, worker: _Worker, ids: list[str]) -> datetime:
        ready = await worker.next("ready", self.timeout)
        self.say(
            f"[bold]1.[/] Worker A (pid {ready['pid']}) takes the alerts in through "
            "Runtime.ingest and runs each incident until it pauses for approval."
        )
        for spec, incident in zip(DEMO_INCIDENTS, ids, strict=True):
            event = await worker.next("ingested", self.timeout)
            if not event.get("created") or event.get("status") != "awaiting_approval":
                hint = ""
                if (event.get("outcome") or {}).get("reason") == "rca_exhausted":
                    hint = " (the analyzer reached no confident root cause"
                    if "Anthropic" in describe_analyzer(self.analyzer):
                        hint += "; can this machine reach the Anthropic API? --offline uses "
                        hint += "the offline analyzer"
                    hint += ")"
                raise DemoFailed(
                    f"{incident} ({spec.scenario}) did not pause for approval: status "
                    f"{event.get('status')}, outcome {event.get('outcome')}{hint}"
                )
            deadline = datetime.fromisoformat(event["deadline_at"])
            requested = datetime.fromisoformat(event["requested_at"])
            self.say(
                f"   [bold]{incident}[/] {event['severity']} {escape(str(event['title']))} "
                f"[dim]({spec.scenario}, seed {spec.seed})[/]: opened; paused for approval, "
                f"due {clock_time(deadline)} (window {deadline - requested})"
            )
            self.say(
                f"      root cause [dim](confidence {float(event['confidence']):.2f})[/]: "
                f"{escape(_short(event['root_cause']))}"
            )
            self.say(f"      plan: {escape('; '.join(event['steps']))}")
            if spec.approval_window_s is not None:
                self.say(
                    f"      [cyan]its alert carries the label {WINDOW_LABEL}="
                    f"{spec.approval_window_s}[/]: ingest takes only the alert, so the alert "
                    "says it; the demo agent's approval_window node copies it into "
                    f"state['{WINDOW_LABEL}'], which the approval node uses instead of the "
                    f"{event['severity']} SLA window"
                )
            if incident == ids[0]:
                dup = await worker.next("duplicate", self.timeout)
                if dup.get("created") or dup.get("attached_to") != ids[0]:
                    raise DemoFailed(f"the duplicate alert was not attached to {ids[0]}: {dup}")
                self.duplicate_ok = True
                self.say(
                    f"   [bold]the same alert again[/]: attached to {dup['attached_to']} "
                    f"({dup['alerts_received']} alerts received); no second incident, no "
                    "second run"
                )
        await worker.next("waiting", self.timeout)
        self.say()
        self.say(
            f"[bold]2.[/] All three wait for a human. Worker A is [bold red]killed with "
            f"SIGKILL[/] (pid {worker.pid}): no shutdown, no cleanup."
        )
        await worker.kill()
        killed_at = datetime.now(UTC)
        for incident in ids:
            self.mark(incident, killed_at, f"worker A (pid {worker.pid}) killed with SIGKILL")
        self.say()
        return killed_at

    async def step_restart(self, worker: _Worker, ids: list[str], killed_pid: int) -> None:
        ready = await worker.next("ready", self.timeout)
        self.say(
            f"[bold]3.[/] Worker B (pid {ready['pid']}), a new process that knows only the "
            "database URL and the incident ids, takes over."
        )
        recovered = await worker.next("recovered", self.timeout)
        self.say(
            f"   Runtime.recover() on start: {recovered['count']} recorded decision(s) left "
            "to apply"
        )
        for incident in ids:
            found = await worker.next("found", self.timeout)
            self.mark(
                incident,
                _at(found),
                f"worker B (pid {ready['pid']}) restarted after the kill: found "
                f"{found.get('status')}",
            )
            self.say(
                f"   {incident}: [bold]{found.get('status')}[/] (it was paused when pid "
                f"{killed_pid} died)"
            )
            if found.get("status") != "awaiting_approval":
                raise DemoFailed(f"{incident} was not awaiting approval after the restart")
        first, second, third = ids

        approved = await worker.next("approved", self.timeout)
        self.say(
            f"   approve {first} as {APPROVER}: {escape(approved['decision'])}; applied, "
            f"verified → [green]{self._outcome(approved)}[/]"
        )
        conflict = await worker.next("conflict", self.timeout)
        self.conflict_winner = conflict.get("winner")
        self.say(
            f"   approve {first} again as {conflict['by']}: refused, Conflict: "
            f"{escape(conflict['message'])}"
        )
        rejected = await worker.next("rejected", self.timeout)
        self.say(
            f"   reject {second}: {escape(rejected['decision'])} → "
            f"[yellow]{self._outcome(rejected)}[/]"
        )
        deadline = await worker.next("deadline", self.timeout)
        left = float(deadline["seconds_left"])
        when = clock_time(datetime.fromisoformat(deadline["deadline_at"]))
        if left > 0:
            self.say(
                f"   {third}'s approval is due at {when}: waiting {left:.1f}s of real time, "
                "then one SlaMonitor(rt).sweep()"
            )
        else:
            self.say(
                f"   {third}'s approval was due at {when}, {-left:.1f}s ago, while no worker "
                "ran: the deadline lives in the database; one SlaMonitor(rt).sweep() now"
            )
        swept = await worker.next("swept", self.timeout)
        if swept.get("expired") != [third]:
            raise DemoFailed(f"the SLA sweep expired {swept.get('expired')}, not [{third}]")
        self.say(f"   the sweep expired {third} as system:sla → [yellow]{self._outcome(swept)}[/]")
        await worker.next("done", self.timeout)
        self.say()

    @staticmethod
    def _outcome(event: dict[str, Any]) -> str:
        outcome = event.get("outcome") or {}
        status = outcome.get("status") or event.get("status")
        reason = outcome.get("reason")
        return f"{status}" + (f" ({reason})" if reason else "")

    async def step_report(self, ids: list[str], killed_at: datetime, started: float) -> int:
        self.say("[bold]4.[/] The incidents, read back from the database (index, ledger, state)")
        problems: list[str] = []
        outcomes: list[str] = []
        survived = 0
        async with open_runtime(self.url) as rt:
            rt.register(build_demo_graph("offline"), name=DEMO_GRAPH_NAME)  # to read state
            prefix = f"INC-{self.run}-"
            rows = [r for r in await rt.incidents(limit=1000) if r.incident_id.startswith(prefix)]
            rows.sort(key=lambda r: r.incident_id)
            for row, (number, spec) in zip(rows, enumerate(DEMO_INCIDENTS, 1), strict=False):
                snapshot = await rt.get(row.incident_id)
                approvals = await rt.history(row.incident_id)
                view = IncidentView(
                    row.incident_id,
                    snapshot.values,
                    approvals,
                    label=f"{spec.scenario} (seed {spec.seed}), simulated",
                    alerts_received=row.alerts_received,
                )
                self.console.print(render_incident(view, self.markers.get(row.incident_id, [])))
                status, reason = view.outcome
                outcomes.append(str(status))
                want = EXPECTED[number - 1] if number <= len(EXPECTED) else None
                got = "resolved" if status == "resolved" else reason
                if got != want:
                    problems.append(f"{row.incident_id} ended {status} ({reason}), not {want}")
                if row.status != "closed" or row.outcome != status:
                    problems.append(
                        f"{row.incident_id}: the index says {row.status}/{row.outcome}, the "
                        f"state says {status}"
                    )
                if any(
                    a.requested_at < killed_at
                    and a.decided_at is not None
                    and a.decided_at > killed_at
                    and a.applied_at is not None
                    for a in approvals
                ):
                    survived += 1
            if [r.incident_id for r in rows] != ids:
                problems.append(
                    f"the index holds {[r.incident_id for r in rows]}, expected {ids} "
                    "(the duplicate alert must not open an incident)"
                )
        if self.conflict_winner != APPROVER:
            problems.append(f"the late approval named {self.conflict_winner!r} as the winner")
        if not self.duplicate_ok:
            problems.append("the duplicate alert was not attached to the first incident")
        self.say(
            "restarts_survived counts the incidents that were paused for approval when worker A "
            "was SIGKILLed and were then decided and resumed by worker B (ledger: approval "
            "requested before the kill, decided and applied after it)."
        )
        self.say(f"Done in {time.monotonic() - started:.1f}s.")
        self.console.file.flush()
        resolved = outcomes.count("resolved")
        escalated = outcomes.count("escalated")
        print(
            f"demo incidents={len(rows)} resolved={resolved} escalated={escalated} "
            f"restarts_survived={survived}",
            flush=True,
        )
        if survived == 0:
            problems.append("no incident survived the restart")
        if problems:
            print("demo FAILED: " + "; ".join(problems), file=sys.stderr, flush=True)
            return 1
        return 0


async def run_demo(
    database_url: str | None = None,
    *,
    analyzer: AnalyzerChoice = "auto",
    file: TextIO | None = None,
) -> int:
    """Run the demo; returns the process exit code (0: everything happened as it must).

    ``database_url`` defaults to a fresh SQLite file in a temporary directory. The demo's SLA
    sweep expires *every* overdue approval in the database: point it at a scratch database.
    """
    console = Console(file=file, highlight=False)
    run = secrets.token_hex(2).upper()
    try:
        choice_text = describe_analyzer(analyzer)
    except RuntimeError as exc:
        print(f"demo FAILED: {exc}", file=sys.stderr)
        return 2
    timeout = 900.0 if choice_text.startswith("Anthropic") else 120.0
    with tempfile.TemporaryDirectory(prefix="durable-ir-demo-") as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'incidents.db'}"
        demo = _Demo(
            console=console,
            url=url,
            run=run,
            workdir=Path(tmp),
            analyzer=analyzer,
            temporary=database_url is None,
            timeout=timeout,
        )
        try:
            return await demo.run_all()
        except DemoFailed as failure:
            console.file.flush()
            print(f"demo FAILED: {failure}", file=sys.stderr, flush=True)
            return 1


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options of ``python -m durable_ir.demo`` (the same as ``durable-ir demo``)."""
    parser = argparse.ArgumentParser(
        prog="python -m durable_ir.demo",
        description="Three incidents on the full incident graph, a SIGKILL while all three "
        "wait for approval, and a new process that approves one, rejects one and lets one "
        "expire (SQLite, no network, no API key).",
    )
    add_arguments(parser)
    return parser.parse_args(argv)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's options to ``parser``."""
    parser.add_argument(
        "--database-url",
        help="run on this database instead of a fresh temporary SQLite file (use a scratch "
        "database: the demo's SLA sweep expires every overdue approval in it)",
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="use the offline CorrelationAnalyzer even if ANTHROPIC_API_KEY is set",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``python -m durable_ir.demo``."""
    args = parse_args(argv)
    return asyncio.run(run_demo(args.database_url, analyzer="offline" if args.offline else "auto"))
