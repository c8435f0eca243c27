"""A replica for the paused-worker ("zombie") tests: ``python -m support.zombie_worker MODE``.

The graph is the builder's full incident graph (``support.incident_parts``' gatherer, analyzer
and verifier) with a :class:`TargetExecutor`: every remediation step acts on :class:`Effects`,
a stand-in for the external system that remediation changes. It is a few tables (in the
test's PostgreSQL database, or in a SQLite file of its own): ``zombie_effects`` holds what was
applied, ``zombie_attempts`` every call of the executor (who, with which key, epoch and
``in_doubt``), ``zombie_pages`` every page the graph's notifier sent. An ``idempotent`` target
applies an idempotency key once (``UNIQUE(key)``: a repeat is refused); an ``every-attempt``
target applies every call.

Modes (one JSON object per line on stdout; the first is ``{"owner": lease owner, "pid": …}``):

- ``apply URL DIR INCIDENT``: start the incident (``--steps``), print ``{"paused": approval
  id}``, approve it, and apply the plan. With ``--hold-step N``, step N's executor call
  creates ``DIR/step-N.started`` and then waits (bounded) for ``DIR/gate`` before it acts:
  the test freezes the process (SIGSTOP) in that window, so the executor is inside the step
  when the process stops, whatever the machine's load (a fixed sleep would race the test).
  Ends with ``{"done": outcome}`` if the run completed, ``{"fenced": message}`` if it stopped
  with ``OwnershipLost``, ``{"error": message}`` otherwise.
- ``take-over URL DIR INCIDENT``: ``Runtime.recover(stalled=False)`` in a loop, as a replica's
  SLA monitor runs it, until the incident is closed or ``--within`` seconds have passed;
  prints ``{"closed": outcome or null, "rounds": n}``.

``--role`` (``A``, ``B``) names the replica in the tables and in each step's result detail
(``[A pid=… epoch=…]``), so the test can tell which process wrote a step record.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import durable_ir.errors
from durable_ir import Approve, IncidentGraphBuilder, RcaConfig, Runtime, open_runtime
from durable_ir.notifications import IncidentEvent
from durable_ir.remediation import StepAction, StepContext, StepResult
from support.incident_parts import (
    ALERT,
    ALLOW,
    FixedVerifier,
    OneEventGatherer,
    ScriptedAnalyzer,
    steps,
    undo_scale,
)

Target = Literal["idempotent", "every-attempt"]
GATE_WITHIN_S = 300.0
"""How long a held step waits for the test's gate before it acts anyway (a bound, no more)."""


def emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


# -- the external system ----------------------------------------------------------------------


@dataclass(frozen=True)
class Effect:
    key: str
    step: int
    epoch: int | None
    pid: int
    role: str


@dataclass(frozen=True)
class Attempt:
    key: str
    step: int
    epoch: int | None
    in_doubt: bool | None
    pid: int
    role: str
    applied: bool


@dataclass(frozen=True)
class Page:
    kind: str
    pid: int
    role: str


class Effects:
    """The system remediation acts on: ``target`` is a PostgreSQL URL or a SQLite file path."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.postgres = target.startswith(("postgresql://", "postgres://"))

    def _run(self, query: str, params: tuple[Any, ...] = ()) -> tuple[int, list[tuple[Any, ...]]]:
        """Run one statement (``%s`` placeholders) in its own connection; (rowcount, rows)."""
        if self.postgres:
            import psycopg

            with psycopg.connect(
                self.target, autocommit=True, connect_timeout=10, application_name="zombie-effects"
            ) as conn:
                cur = conn.execute(query, params)
                rows = cur.fetchall() if cur.description else []
                return cur.rowcount, [tuple(r) for r in rows]
        conn = sqlite3.connect(self.target, timeout=30, isolation_level=None)
        try:
            cur = conn.execute(query.replace("%s", "?"), params)
            rows = cur.fetchall()
            return cur.rowcount, rows
        finally:
            conn.close()

    def create(self, target: Target) -> None:
        seq = "BIGSERIAL PRIMARY KEY" if self.postgres else "INTEGER PRIMARY KEY AUTOINCREMENT"
        unique = " UNIQUE" if target == "idempotent" else ""
        self._run(
            f"CREATE TABLE zombie_effects (seq {seq}, key TEXT NOT NULL{unique}, step INTEGER,"
            " epoch BIGINT, pid INTEGER, role TEXT)"
        )
        self._run(
            f"CREATE TABLE zombie_attempts (seq {seq}, key TEXT, step INTEGER, epoch BIGINT,"
            " in_doubt BOOLEAN, pid INTEGER, role TEXT, applied BOOLEAN)"
        )
        self._run(f"CREATE TABLE zombie_pages (seq {seq}, kind TEXT, pid INTEGER, role TEXT)")

    def apply(self, context: StepContext, role: str) -> bool:
        """Apply ``context``'s step unless the target already holds its key (idempotent
        target); record the attempt either way. True if it was applied now."""
        epoch, in_doubt = step_epoch(context), step_in_doubt(context)
        key, pid = context.idempotency_key, os.getpid()
        applied, _ = self._run(
            "INSERT INTO zombie_effects (key, step, epoch, pid, role) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (key, context.number, epoch, pid, role),
        )
        self._run(
            "INSERT INTO zombie_attempts (key, step, epoch, in_doubt, pid, role, applied)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (key, context.number, epoch, in_doubt, pid, role, applied > 0),
        )
        return applied > 0

    def page(self, kind: str, role: str) -> None:
        self._run(
            "INSERT INTO zombie_pages (kind, pid, role) VALUES (%s, %s, %s)",
            (kind, os.getpid(), role),
        )

    def effects(self) -> list[Effect]:
        _, rows = self._run("SELECT key, step, epoch, pid, role FROM zombie_effects ORDER BY seq")
        return [Effect(*row) for row in rows]

    def attempts(self) -> list[Attempt]:
        _, rows = self._run(
            "SELECT key, step, epoch, in_doubt, pid, role, applied FROM zombie_attempts"
            " ORDER BY seq"
        )
        return [
            Attempt(k, s, e, None if d is None else bool(d), p, r, bool(a))
            for k, s, e, d, p, r, a in rows
        ]

    def pages(self) -> list[Page]:
        _, rows = self._run("SELECT kind, pid, role FROM zombie_pages ORDER BY seq")
        return [Page(*row) for row in rows]


def step_epoch(context: StepContext) -> int | None:
    """``context.epoch`` (the fencing token of the run that claimed the step), once it exists."""
    value = getattr(context, "epoch", None)
    return None if value is None else int(value)


def step_in_doubt(context: StepContext) -> bool | None:
    """``context.in_doubt``, once it exists (``None`` before)."""
    value = getattr(context, "in_doubt", None)
    return None if value is None else bool(value)


# -- the graph --------------------------------------------------------------------------------


class TargetExecutor:
    """Applies each step to :class:`Effects` under its idempotency key.

    ``hold_step``: that step's call marks ``DIR/step-N.started`` and waits for ``DIR/gate``
    before acting (see the module doc).
    """

    def __init__(
        self, effects: Effects, role: str, directory: Path, hold_step: int | None = None
    ) -> None:
        self.effects = effects
        self.role = role
        self.directory = directory
        self.hold_step = hold_step

    def tag(self, context: StepContext) -> str:
        return f"[{self.role} pid={os.getpid()} epoch={step_epoch(context)}]"

    async def dry_run(self, step: StepAction, context: StepContext) -> StepResult:
        return StepResult(True, f"would {step.action} {step.target}")

    async def apply(self, step: StepAction, context: StepContext) -> StepResult:
        if context.number == self.hold_step:
            (self.directory / f"step-{context.number}.started").touch()
            gate = self.directory / "gate"
            deadline = time.monotonic() + GATE_WITHIN_S
            while True:  # bounded: a test that died never opens the gate
                if gate.exists() or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
        applied = await asyncio.to_thread(self.effects.apply, context, self.role)
        verb = "applied" if applied else "already applied (target refused the repeat)"
        return StepResult(True, f"{verb} {context.idempotency_key} {self.tag(context)}")

    async def rollback(self, step: StepAction, context: StepContext) -> StepResult:
        return StepResult(False, f"no rollback expected {self.tag(context)}")


class Pager:
    """A notifier that pages: every call is one row in ``zombie_pages``."""

    name = "pager"

    def __init__(self, effects: Effects, role: str) -> None:
        self.effects = effects
        self.role = role

    async def notify(self, event: IncidentEvent) -> dict[str, Any] | None:
        await asyncio.to_thread(self.effects.page, event.kind, self.role)
        return {"paged": event.kind, "by": self.role, "pid": os.getpid()}


def build_graph(
    directory: Path | str,
    effects: Effects,
    *,
    role: str,
    step_count: int = 3,
    hold_step: int | None = None,
) -> Any:
    """The full incident graph, remediating through ``effects`` (the same graph version in
    every process that builds it with the same ``step_count``)."""
    return IncidentGraphBuilder(
        gatherer=OneEventGatherer(),
        analyzer=ScriptedAnalyzer(0.9, steps(step_count)),
        executor=TargetExecutor(effects, role, Path(directory), hold_step),
        verifier=FixedVerifier(True),
        allow_list=ALLOW,
        rca=RcaConfig(retry_backoff=0),
        rollbacks={"scale": undo_scale},
        notifiers=[Pager(effects, role)],
    ).build()


# -- the modes --------------------------------------------------------------------------------


def fenced(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is ``OwnershipLost``, once that exists."""
    lost = getattr(durable_ir.errors, "OwnershipLost", None)
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if lost is not None and isinstance(current, lost):
            return True
        current = current.__cause__ or current.__context__
    return False


async def apply_mode(args: argparse.Namespace, rt: Runtime, graph: Any) -> None:
    snapshot = await rt.start(graph, {"alert": ALERT}, incident_id=args.incident)
    assert snapshot.pending_approval is not None, snapshot
    emit({"paused": snapshot.pending_approval.approval_id})
    try:
        await rt.decide(args.incident, Approve(by="alice"))
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        emit({"fenced": text} if fenced(exc) else {"error": text})
        return
    outcome = (await rt.get(args.incident)).values.get("outcome") or {}
    emit({"done": outcome.get("status")})


async def take_over_mode(args: argparse.Namespace, rt: Runtime, graph: Any) -> None:
    rt.register(graph)
    deadline = time.monotonic() + args.within
    rounds = 0
    while True:
        rounds += 1
        await rt.recover(stalled=False)
        row = await rt.store.ledger.get_incident(args.incident)
        if row is not None and not row.is_open:
            emit({"closed": row.outcome, "rounds": rounds})
            return
        if time.monotonic() > deadline:
            emit({"closed": None, "rounds": rounds})
            return
        await asyncio.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["apply", "take-over"])
    parser.add_argument("url")
    parser.add_argument("dir")
    parser.add_argument("incident")
    parser.add_argument("--effects", required=True)
    parser.add_argument("--role", required=True)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--hold-step", type=int)
    parser.add_argument("--lease-ttl", type=float, default=2.0)
    parser.add_argument("--within", type=float, default=60.0)
    args = parser.parse_args()
    graph = build_graph(
        args.dir, Effects(args.effects), role=args.role, step_count=args.steps,
        hold_step=args.hold_step,
    )  # fmt: skip

    async def go() -> None:
        async with open_runtime(args.url, lease_ttl=args.lease_ttl) as rt:
            emit({"owner": rt.leases.owner, "pid": os.getpid()})
            if args.mode == "apply":
                await apply_mode(args, rt, graph)
            else:
                await take_over_mode(args, rt, graph)

    asyncio.run(go())


if __name__ == "__main__":
    main()
