"""Fencing a paused worker: a run taken over while its worker was frozen is applied once.

Worker A (its own OS process, ``lease_ttl`` 2 s) approves a three-step remediation and is
frozen (SIGSTOP: a GC pause, a frozen VM) while its executor is inside step 2; on PostgreSQL
its database sessions are ended too (``pg_terminate_backend``, found by the
``application_name`` in its URL). Its lease expires, and replica B (another process running
``Runtime.recover(stalled=False)`` in a bounded loop, as a replica's SLA monitor does) takes
the run over and finishes it. Then A wakes (SIGCONT) and its executor carries on with step 2.

What must hold: A is fenced. It stops with ``OwnershipLost`` at its next write and changes
nothing in the database after B's takeover: no step result, no checkpoint, no outcome, no
page. Every step is claimed in the ledger under the claiming run's epoch
(``ledger.step_claims``). B re-runs step 2 *in doubt* (``StepContext.in_doubt``) with the
same idempotency key. A target that honours idempotency keys applies each step exactly once
(steps 2 and 3 by B). The incident closes once, resolved, with one page saying so.

The second test documents the limit. Against a target that applies every attempt, fencing
cannot undo what A's executor was already doing when it froze, so step 2 may be applied
twice (once by each worker). Step 3 never is.

On SQLite there is no session to end: the freeze and the lease's expiry alone hand the run
to B. No timing is asserted; every wait is bounded only so that a hang fails.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest

from durable_ir import open_runtime
from durable_ir.records import IncidentRecord, NotificationRecord
from support.outages import end_sessions
from support.processes import JsonLineProcess
from support.zombie_worker import Attempt, Effect, Effects, Page, Target, build_graph

pytestmark = pytest.mark.slow

STEPS = 3
HELD_STEP = 2
LEASE_TTL = 2.0
TAKEOVER_WITHIN_S = 60.0
"""How long B keeps running recovery before it reports that it could not take the run over:
a bound for a broken takeover, far beyond the 2 s lease."""


# -- the processes ----------------------------------------------------------------------------


def replica(
    mode: str, url: str, workdir: Path, incident: str, effects: str, role: str, *extra: str
) -> JsonLineProcess:
    """A ``support.zombie_worker`` process."""
    argv = [sys.executable, "-m", "support.zombie_worker", mode, url, str(workdir), incident]
    options = ["--effects", effects, "--role", role, "--lease-ttl", str(LEASE_TTL)]
    return JsonLineProcess([*argv, *options, *extra])


def with_application_name(url: str, name: str) -> str:
    """``url`` (a postgresql:// URI) whose sessions show as ``name`` in pg_stat_activity."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    query = [(k, v) for k, v in query if k != "application_name"] + [("application_name", name)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def wait_for_file(path: Path, child: JsonLineProcess, within: float = 120.0) -> None:
    deadline = time.monotonic() + within
    while not path.exists():
        if child.proc.poll() is not None:
            err = child.proc.stderr.read()[-4000:] if child.proc.stderr else ""
            raise AssertionError(
                f"the worker exited ({child.proc.returncode}) before {path}:\n{err}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {within}s")
        time.sleep(0.02)


def process_state(pid: int) -> str:
    """The kernel's one-letter state of ``pid`` (``T``: stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rpartition(")")[2].split()[0]


def sqlite_write_locked(path: Path) -> bool:
    """Whether some process holds the SQLite database's write lock."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return True
        raise
    else:
        conn.execute("ROLLBACK")
        return False
    finally:
        conn.close()


def freeze(child: JsonLineProcess, sqlite_db: Path | None) -> None:
    """SIGSTOP ``child``. On SQLite, never while it holds the database's write lock (its
    lease heartbeat writes every ttl/3): a process frozen inside a write transaction stops
    every other writer, which is SQLite's limit, not the one this test is about."""
    pid = child.proc.pid
    for _ in range(100):
        os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + 30
        while process_state(pid) != "T":
            assert time.monotonic() < deadline, f"worker {pid} did not stop"
            time.sleep(0.01)
        if sqlite_db is None or not sqlite_write_locked(sqlite_db):
            return
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.02)
    raise AssertionError("the worker held the SQLite write lock every time it was frozen")


def end_all_sessions(url: str, application_name: str) -> int:
    """End every session named ``application_name``; how many. None of them may be left."""
    ended_now = end_sessions(url, application_name)
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchone()
    assert left is not None and left[0] == 0, f"sessions of {application_name} still there"
    return ended_now


def ended(child: JsonLineProcess, within: float = 60.0) -> str:
    """Wait for ``child`` to exit; the tail of its stderr."""
    try:
        child.wait(within)
        return child.proc.stderr.read()[-3000:] if child.proc.stderr else ""
    finally:
        child.kill()
        child.close()


def stop(child: JsonLineProcess | None) -> None:
    """End a child that may still be frozen (SIGKILL ends a stopped process too)."""
    if child is None:
        return
    if child.proc.poll() is None:
        os.kill(child.proc.pid, signal.SIGCONT)
    child.kill()
    child.close()


# -- what the database holds ------------------------------------------------------------------


@dataclass
class Stored:
    """The incident as the database has it."""

    row: IncidentRecord | None
    status: str
    values: dict[str, Any]
    checkpoints: list[str]
    """Every checkpoint id of the incident's thread."""
    history: list[dict[str, Any]]
    """The values of every checkpoint, newest first."""
    notifications: list[NotificationRecord]
    claims: list[Any] | None
    """``ledger.step_claims(incident)``; ``None`` while the ledger has no such method."""


async def read_stored(url: str, incident: str, workdir: Path, effects: Effects) -> Stored:
    async with open_runtime(url) as rt:
        registered = rt.register(build_graph(workdir, effects, role="test", step_count=STEPS))
        snapshot = await rt.get(incident)
        config = rt.config_for(incident)
        history = [s async for s in registered.compiled.aget_state_history(config)]
        ledger = rt.store.ledger
        step_claims = getattr(ledger, "step_claims", None)
        return Stored(
            row=await ledger.get_incident(incident),
            status=snapshot.status,
            values=snapshot.values,
            checkpoints=sorted(str(s.config["configurable"]["checkpoint_id"]) for s in history),
            history=[dict(s.values) for s in history],
            notifications=await ledger.list_notifications(incident),
            claims=None if step_claims is None else list(await step_claims(incident)),
        )


# -- the scenario -----------------------------------------------------------------------------


@dataclass
class Scenario:
    incident: str
    a_owner: str = ""
    b_owner: str = ""
    a_end: dict[str, Any] = field(default_factory=dict)
    b_end: dict[str, Any] = field(default_factory=dict)
    a_stderr: str = ""
    b_stderr: str = ""
    sessions_ended: int | None = None
    after_b: Stored | None = None
    after_a: Stored | None = None
    effects: list[Effect] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    pages: list[Page] = field(default_factory=list)

    def key(self, step: int) -> str:
        return f"{self.incident}/step-{step}/apply"

    def tried(self, role: str, step: int | None = None) -> list[Attempt]:
        return [a for a in self.attempts if a.role == role and (step is None or a.step == step)]

    def applied(self, step: int) -> list[str]:
        """Who applied ``step``, one entry per application."""
        return [e.role for e in self.effects if e.key == self.key(step)]

    def epoch(self, role: str) -> int | None:
        epochs = {a.epoch for a in self.tried(role)}
        return epochs.pop() if len(epochs) == 1 else None

    def describe(self) -> str:
        final = self.after_a or self.after_b
        steps = [
            (r["number"], r["detail"])
            for r in (final.values if final else {}).get("applied_steps", [])
        ]
        lines = [
            f"A ended: {self.a_end}   B ended: {self.b_end}   A's sessions ended: "
            f"{self.sessions_ended}",
            "effects:  " + "; ".join(f"{e.key} by {e.role} epoch={e.epoch}" for e in self.effects),
            "attempts: "
            + "; ".join(
                f"step {a.step} by {a.role} epoch={a.epoch} in_doubt={a.in_doubt} "
                f"applied={a.applied}"
                for a in self.attempts
            ),
            "pages:    " + ", ".join(f"{p.kind} by {p.role}" for p in self.pages),
            f"final applied_steps: {steps}",
            f"step claims: {final.claims if final else None}",
            f"A's stderr (tail):\n{self.a_stderr}",
            f"B's stderr (tail):\n{self.b_stderr}",
        ]
        return "\n".join(lines)


def run_scenario(url: str, tmp_path: Path, target: Target) -> Scenario:
    postgres = url.startswith(("postgresql://", "postgres://"))
    effects_target = url if postgres else str(tmp_path / "effects.db")
    effects = Effects(effects_target)
    effects.create(target)
    workdir = tmp_path / "replicas"
    workdir.mkdir()
    tag = uuid.uuid4().hex[:8]
    run = Scenario(incident=f"zombie-{tag}")
    a_name = f"zombie-a-{tag}"
    a_url = with_application_name(url, a_name) if postgres else url
    b_url = with_application_name(url, f"zombie-b-{tag}") if postgres else url
    sqlite_db = None if postgres else Path(url.removeprefix("sqlite:///"))

    a = replica(
        "apply", a_url, workdir, run.incident, effects_target, "A", "--hold-step", str(HELD_STEP)
    )
    b: JsonLineProcess | None = None
    try:
        run.a_owner = a.read(120)["owner"]
        paused = a.read(120)
        assert "paused" in paused, paused
        wait_for_file(workdir / f"step-{HELD_STEP}.started", a)
        freeze(a, sqlite_db)
        if postgres:
            run.sessions_ended = end_all_sessions(url, a_name)
        b = replica(
            "take-over",
            b_url,
            workdir,
            run.incident,
            effects_target,
            "B",
            "--within",
            str(TAKEOVER_WITHIN_S),
        )
        run.b_owner = b.read(120)["owner"]
        run.b_end = b.read(TAKEOVER_WITHIN_S + 120)
        run.b_stderr = ended(b)
        b = None
        run.after_b = asyncio.run(read_stored(url, run.incident, workdir, effects))

        (workdir / "gate").touch()
        os.kill(a.proc.pid, signal.SIGCONT)
        run.a_end = a.read(120)
        run.a_stderr = ended(a)
    finally:
        stop(b)
        stop(a)
    run.after_a = asyncio.run(read_stored(url, run.incident, workdir, effects))
    run.effects, run.attempts, run.pages = effects.effects(), effects.attempts(), effects.pages()
    return run


# -- what must hold ---------------------------------------------------------------------------


class Findings:
    """Every broken guarantee of one scenario, reported together (the test fails once, with
    all of them and what the tables held)."""

    def __init__(self, run: Scenario) -> None:
        self.run = run
        self.broken: list[str] = []

    def expect(self, ok: bool, what: str) -> None:
        if not ok:
            self.broken.append(what)

    def verdict(self) -> None:
        assert not self.broken, (
            f"{len(self.broken)} broken:\n - "
            + "\n - ".join(self.broken)
            + f"\n\n{self.run.describe()}"
        )


def tagged(record: dict[str, Any], role: str) -> bool:
    """Whether a step record in graph state was written by ``role``'s executor."""
    return f"[{role} " in str(record.get("detail", ""))


def check_fencing(run: Scenario, f: Findings) -> None:
    """What holds whatever the target does with a repeated key."""
    f.expect(
        run.b_end.get("closed") == "resolved",
        f"B did not take the run over and resolve it: {run.b_end}",
    )
    f.expect(
        "fenced" in run.a_end,
        f"A was not fenced: after it woke it ended with {run.a_end} (expected OwnershipLost)",
    )
    if run.sessions_ended is not None:
        f.expect(run.sessions_ended >= 1, "A had no database session to end")

    # Who called the executor for what.
    a1, a2, a3 = (run.tried("A", n) for n in (1, 2, 3))
    b1, b2, b3 = (run.tried("B", n) for n in (1, 2, 3))
    f.expect(len(a1) == 1 and not b1, f"step 1 not tried exactly once, by A: {a1 + b1}")
    f.expect(len(a2) <= 1, f"A tried step 2 {len(a2)} times")
    f.expect(len(b2) == 1, f"B tried step 2 {len(b2)} times, expected once")
    f.expect(not a3, f"A tried step 3 after B took the run over: {a3}")
    f.expect(len(b3) == 1, f"B tried step 3 {len(b3)} times, expected once")

    # Epochs (fencing tokens) and the in-doubt re-run.
    epoch_a, epoch_b = run.epoch("A"), run.epoch("B")
    f.expect(
        isinstance(epoch_a, int) and isinstance(epoch_b, int) and epoch_b > epoch_a,
        f"expected one epoch per worker, B's later: A {epoch_a}, B {epoch_b} (StepContext.epoch)",
    )
    f.expect(
        [a.in_doubt for a in b2] == [True],
        f"B's re-run of step 2 was not marked in doubt: {[a.in_doubt for a in b2]} "
        "(StepContext.in_doubt)",
    )
    f.expect(
        [a.in_doubt for a in a1 + b3] == [False, False],
        f"steps never claimed before were marked in doubt: {[a.in_doubt for a in a1 + b3]}",
    )

    # The incident: closed once, by B's run, and nothing of A's written after B took over.
    assert run.after_b is not None and run.after_a is not None
    row = run.after_a.row
    f.expect(
        row is not None and row.status == "closed" and row.outcome == "resolved",
        f"incident row: {row}",
    )
    final = run.after_a.values
    f.expect(
        run.after_a.status == "finished"
        and (final.get("outcome") or {}).get("status") == "resolved",
        f"final state: {run.after_a.status}, outcome {final.get('outcome')}",
    )
    records = final.get("applied_steps") or []
    f.expect(
        [r["number"] for r in records] == [1, 2, 3]
        and tagged(records[0], "A")
        and tagged(records[1], "B")
        and tagged(records[2], "B"),
        "the final state is not B's (step 1 by A, steps 2 and 3 by B): "
        f"{[(r['number'], r['detail']) for r in records]}",
    )
    written_by_a = sorted(
        {
            r["number"]
            for values in run.after_a.history
            for r in values.get("applied_steps") or []
            if r["number"] >= 2 and tagged(r, "A")
        }
    )
    f.expect(
        not written_by_a, f"A checkpointed its result of step(s) {written_by_a} after B took over"
    )
    new = sorted(set(run.after_a.checkpoints) - set(run.after_b.checkpoints))
    f.expect(not new, f"{len(new)} checkpoint(s) written after B finished (by A): {new}")
    f.expect(
        run.after_b.row == run.after_a.row,
        f"A changed the incident row after B's turn:\n{run.after_b.row}\n{run.after_a.row}",
    )
    f.expect(
        [n.key for n in run.after_b.notifications] == [n.key for n in run.after_a.notifications],
        "A wrote notifications after B's turn",
    )

    # Pages: at most one per event, one saying it resolved, and none from A after takeover.
    kinds = Counter(p.kind for p in run.pages)
    f.expect(all(n == 1 for n in kinds.values()), f"paged more than once: {dict(kinds)}")
    resolved = [p.role for p in run.pages if p.kind == "resolved"]
    f.expect(resolved == ["B"], f"resolved paged by {resolved}, expected once by B")
    outbox = Counter((n.channel, n.kind) for n in run.after_a.notifications)
    f.expect(all(n == 1 for n in outbox.values()), f"outbox holds repeats: {dict(outbox)}")
    f.expect(outbox[("pager", "resolved")] == 1, f"outbox: {dict(outbox)}")

    check_claims(run, f)


def check_claims(run: Scenario, f: Findings) -> None:
    """The ledger's step claims: step 1 by A's epoch, step 2 by A's and then B's (finished),
    step 3 by B's only.

    Accepts either shape of ``step_claims``: one row per (key, epoch), or one row per key
    holding its latest epoch with an ``attempts`` field counting the epochs that claimed it.
    """
    assert run.after_a is not None
    claims = run.after_a.claims
    if claims is None:
        f.expect(False, "the ledger has no step_claims(incident_id)")
        return
    f.expect(all(c.incident_id == run.incident for c in claims), "claims of another incident")

    def of(step: int) -> list[Any]:
        return sorted((c for c in claims if c.key == run.key(step)), key=lambda c: c.epoch)

    epoch_a, epoch_b = run.epoch("A"), run.epoch("B")
    first, second, third = of(1), of(2), of(3)
    f.expect(
        len(first) == 1
        and first[0].owner == run.a_owner
        and first[0].epoch == epoch_a
        and first[0].finished_at is not None
        and first[0].ok is True,
        f"step 1 should be claimed and finished by A's epoch only: {first}",
    )
    latest = second[-1] if second else None
    f.expect(
        latest is not None
        and latest.owner == run.b_owner
        and latest.epoch == epoch_b
        and latest.finished_at is not None
        and latest.ok is True,
        f"step 2's latest claim should be B's, finished: {second}",
    )
    if len(second) == 1:
        f.expect(
            getattr(second[0], "attempts", 1) >= 2, f"step 2 claimed by one epoch only: {second}"
        )
    else:
        earlier = second[:-1]
        f.expect(
            [(c.owner, c.epoch, c.finished_at) for c in earlier] == [(run.a_owner, epoch_a, None)],
            f"step 2's earlier claim should be A's, never finished: {earlier}",
        )
    f.expect(
        len(third) == 1
        and third[0].owner == run.b_owner
        and third[0].epoch == epoch_b
        and getattr(third[0], "attempts", 1) == 1
        and third[0].finished_at is not None
        and third[0].ok is True,
        f"step 3 should be claimed by B's epoch only, once: {third}",
    )


def test_a_paused_worker_is_fenced_and_every_step_applied_once(
    durable_url: str, tmp_path: Path
) -> None:
    run = run_scenario(durable_url, tmp_path, "idempotent")
    f = Findings(run)

    # The target honours idempotency keys: each key applied once, steps 2 and 3 by B (A's
    # step 2, if its executor got that far after waking, was refused: see the attempts).
    for step, by in ((1, "A"), (2, "B"), (3, "B")):
        f.expect(run.applied(step) == [by], f"step {step} applied by {run.applied(step)}")
    check_fencing(run, f)
    f.verdict()


def test_without_an_idempotent_target_only_the_step_in_flight_can_repeat(
    durable_url: str, tmp_path: Path
) -> None:
    run = run_scenario(durable_url, tmp_path, "every-attempt")
    f = Findings(run)

    # The documented limit: A's executor was inside step 2 when A froze, so the target may
    # apply step 2 twice (B's in-doubt re-run, then A's call finishing). Nothing after it.
    f.expect(run.applied(1) == ["A"], f"step 1 applied by {run.applied(1)}")
    f.expect(
        sorted(run.applied(2)) in (["B"], ["A", "B"]),
        f"step 2 applied by {run.applied(2)}: expected B once, A at most once",
    )
    f.expect(run.applied(3) == ["B"], f"step 3 applied by {run.applied(3)}: expected B once")
    check_fencing(run, f)
    f.verdict()
