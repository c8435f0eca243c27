"""durable-ir behind a real PgBouncer, in transaction and in session pooling mode.

PgBouncer (Debian's, started by the ``pgbouncer`` fixture on a free loopback port, with 4
server connections per database in transaction mode) is what many deployments put between
their workers and PostgreSQL. In transaction mode each statement of the store's autocommit
connections runs on whichever server connection is free, and a server connection outlives the
clients that used it: nothing kept in a PostgreSQL session — a session-level advisory lock
above all — belongs to one client any more. The incident lock must hold all the same: one
holder at a time, free again once let go or once its holder died, nothing left behind on the
server.

Every process here — the test's own runtime and its worker processes — connects through the
bouncer; only the look at ``pg_locks`` connects to PostgreSQL directly. No wall-clock time is
asserted: every wait is bounded, and a bound that runs out is a failure.
"""

from __future__ import annotations

import asyncio
import importlib
import signal
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from durable_ir import Approve, IncidentBusy, open_runtime
from support.graphs import PRE_PAUSE_NODES, Counters, build_graph
from support.incident_parts import build_incident_graph, lines
from support.pgbouncer import PgBouncer
from support.postgres import database_name
from support.processes import Worker, finish, incident_worker

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(240)]

LOCK_TIMEOUT = 5.0
"""How long a decision waits for the incident lock: short, so that a lock nobody holds any
more (one left behind on a shared server connection) fails a test rather than stalls it."""
LEASE_TTL = 2.0
"""The lease of the runs (and locks) that are killed here: recovery waits no longer than that."""
READY_S = 30.0
"""A worker's start-up (imports, and opening its runtime through the bouncer)."""
ANSWER_S = 30.0
"""One request to a worker."""
RECOVERY_S = 20.0
"""Recovery's passes until a killed run is finished."""
STALL_S = 30.0
"""Starting and deciding a few incidents at once, in the test's own runtime."""
STEPS = 4
"""Remediation steps of the full incident graph (``support.incident_worker``'s default)."""

DECISIONS = {
    "approve": {"type": "approve", "by": "alice"},
    "reject": {"type": "reject", "by": "bob", "reason": "not this plan"},
    "expire": {"type": "expire", "by": "system:sla", "reason": "deadline passed"},
}
FOLLOW_UP = {"approved": "apply", "rejected": "escalate", "expired": "escalate"}


def worker(*args: str) -> Worker:
    """``support.worker`` with the short lock timeout."""
    return Worker(f"--lock-timeout={LOCK_TIMEOUT}", *args)


def started(child: Worker) -> Worker:
    assert child.read(READY_S) == {"ready": True}
    return child


def applied_steps(counter_dir: Path, incident: str) -> list[str]:
    return lines(counter_dir / f"{incident}.log")


def all_steps(count: int = STEPS) -> list[str]:
    return [f"apply {n} scale checkout-{n}" for n in range(1, count + 1)]


# --- what PostgreSQL itself holds ------------------------------------------------------


def advisory_locks(direct_url: str) -> list[dict[str, Any]]:
    """The advisory locks held in the test's database, seen on a direct connection (other
    databases are other tests')."""
    with psycopg.connect(
        direct_url, autocommit=True, connect_timeout=10, row_factory=dict_row
    ) as conn:
        return conn.execute(
            "SELECT l.pid, (l.classid::bigint << 32) | l.objid::bigint AS key, l.granted,"
            " a.state, a.query"
            " FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory'"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " ORDER BY l.pid"
        ).fetchall()


def describe_locks(locks: list[dict[str, Any]], incidents: Iterable[str]) -> str:
    """Which lock each advisory lock is (incident locks are rows now: any advisory lock left
    is a leak; the schema set-up's is named)."""
    if not locks:
        return "none"
    names: dict[int, str] = {}
    setup = getattr(importlib.import_module("durable_ir.postgres_store"), "_SETUP_LOCK_KEY", None)
    if setup is not None:
        names[setup] = "schema setup"
    return "; ".join(
        f"{names.get(lock['key'], 'key ' + str(lock['key']))}"
        f"{'' if lock['granted'] else ' (waiting)'} on server backend {lock['pid']}"
        f" ({lock['state']}, last query {' '.join(str(lock['query']).split())[:70]!r})"
        for lock in locks
    )


def pool_line(pgbouncer: PgBouncer, dbname: str) -> str:
    """PgBouncer's client and server connections for the test database."""
    pool = pgbouncer.pool(dbname)
    servers = sum(pool[k] for k in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"))
    return (
        f"{pgbouncer.pool_mode} pool: {pool['cl_active'] + pool['cl_waiting']} client "
        f"connections on {servers} server connections (at most {pgbouncer.pool_size})"
    )


# --- the store through the bouncer -----------------------------------------------------


OPENERS = 3


async def test_processes_open_the_store_and_run_incidents_through_pgbouncer(
    pgbouncer_url: str, postgres_url: str, counter_dir: Path
) -> None:
    """Processes open the fresh database at once through the bouncer (schema setup
    included); an incident started here pauses for approval and is approved by one of them;
    the full incident graph is started, paused and approved by another process and read
    here."""
    incident = f"inc-{uuid.uuid4().hex[:8]}"
    deciders = [worker("decider", pgbouncer_url, str(counter_dir)) for _ in range(OPENERS)]
    try:
        for decider in deciders:
            try:
                started(decider)
            except AssertionError as stuck:
                held = describe_locks(advisory_locks(postgres_url), [])
                raise AssertionError(
                    f"of {OPENERS} processes opening the fresh database at once through the "
                    "bouncer, one did not get its runtime open (advisory locks on the server: "
                    f"{held}):\n{stuck}"
                ) from None
        async with open_runtime(pgbouncer_url, lock_timeout=LOCK_TIMEOUT) as rt:
            paused = await rt.start(build_graph(counter_dir), {}, incident_id=incident)
            assert paused.status == "awaiting_approval" and paused.pending_approval is not None
            deciders[0].send({"incident": incident, "decision": DECISIONS["approve"], "at": 0})
            answer = deciders[0].read(ANSWER_S)
    finally:
        for decider in deciders:
            decider.close()
    assert "won" in answer and answer["applied"] is True, answer
    assert answer["won"]["approval_id"] == paused.pending_approval.approval_id

    async with open_runtime(pgbouncer_url, lock_timeout=LOCK_TIMEOUT) as rt:
        rt.register(build_graph(counter_dir))
        after = await rt.get(incident)
        assert after.status == "finished" and after.values["applied"] == ["api"]
        counts = Counters(counter_dir).read(incident)
        assert all(counts[node] == 1 for node in PRE_PAUSE_NODES), counts
        assert counts["apply"] == counts["finish"] == 1 and counts["escalate"] == 0, counts

        # The full graph, started, paused and approved in another process.
        full = f"full-{uuid.uuid4().hex[:8]}"
        child = incident_worker(
            "approve", pgbouncer_url, str(counter_dir), full, "--lock-timeout", str(LOCK_TIMEOUT)
        )
        try:
            paused_full = child.read(READY_S)
            done = child.read(ANSWER_S)
        finally:
            code = finish(child)
        assert "paused" in paused_full and code == 0, (paused_full, code)
        assert done["done"]["status"] == "resolved", done

        rt.register(build_incident_graph(counter_dir, step_count=STEPS).build())
        snapshot = await rt.get(full)
        assert snapshot.status == "finished", snapshot.status
        (record,) = await rt.history(full)
        assert record.status.value == "approved" and record.applied_at is not None
        row = await rt.store.ledger.get_incident(full)
        assert row is not None and row.outcome == "resolved" and row.lease_expires_at is None
    assert applied_steps(counter_dir, full) == all_steps()


# --- the incident lock -----------------------------------------------------------------

CONTENDERS = 3
LOCK_ROUNDS = 10


@dataclass
class LockRound:
    """One round of the lock race: who won, and whether the lock was free again after."""

    number: int
    incident: str
    winners: list[int]
    taker: int
    again: dict[str, Any]

    @property
    def ok(self) -> bool:
        return len(self.winners) == 1 and self.again.get("held") is True

    def __str__(self) -> str:
        taken = "took it at once" if self.again.get("held") else f"got {self.again}"
        return (
            f"round {self.number} ({self.incident}): try_acquire won by workers "
            f"{self.winners}; after release, worker {self.taker}'s hold(wait=0) {taken}"
            f"{'' if self.ok else '   <-- WRONG'}"
        )


async def test_the_incident_lock_is_exclusive_and_released_through_pgbouncer(
    pgbouncer: PgBouncer, pgbouncer_url: str, postgres_url: str
) -> None:
    """Three processes race ``try_acquire`` on one fresh incident per round, the winners
    holding it until all have tried: exactly one wins. Once released, another process takes
    it with ``hold(wait=0)``. And no advisory lock is left on the server."""
    async with open_runtime(pgbouncer_url):
        pass  # the schema, set up before the workers open it
    lockers: list[Worker] = []
    rounds: list[LockRound] = []
    try:
        for _ in range(CONTENDERS):  # one by one: only the race below runs concurrently
            lockers.append(started(worker("locker", pgbouncer_url)))
        for number in range(LOCK_ROUNDS):
            incident = f"lock-{number}-{uuid.uuid4().hex[:8]}"
            at = time.time() + 0.1
            for locker in lockers:
                locker.send({"do": "try", "incident": incident, "at": at})
            won = [locker.read(ANSWER_S)["won"] for locker in lockers]
            winners = [index for index, yes in enumerate(won) if yes]
            for index in winners:  # every contender has tried: now let go
                lockers[index].send({"do": "release", "incident": incident})
                assert lockers[index].read(ANSWER_S) == {"released": incident}
            taker = next((i for i in range(CONTENDERS) if i not in winners), number % CONTENDERS)
            lockers[taker].send({"do": "hold", "incident": incident})
            again = lockers[taker].read(ANSWER_S)
            rounds.append(LockRound(number, incident, winners, taker, again))
        pool = pool_line(pgbouncer, database_name(postgres_url))
        held_while_connected = advisory_locks(postgres_url)
    finally:
        for locker in lockers:
            locker.close()
    held_after_exit = advisory_locks(postgres_url)

    incidents = [r.incident for r in rounds]
    report = "\n".join(
        [
            f"lock race through pgbouncer ({pgbouncer.pool_mode} mode), "
            f"{CONTENDERS} processes, {LOCK_ROUNDS} rounds; {pool}:",
            *(f"  {r}" for r in rounds),
            "advisory locks on the server once all was released: "
            + describe_locks(held_while_connected, incidents),
            "advisory locks on the server after the processes exited: "
            + describe_locks(held_after_exit, incidents),
        ]
    )
    if not all(r.ok for r in rounds) or held_while_connected or held_after_exit:
        pytest.fail(report)


# --- decisions -------------------------------------------------------------------------

DECIDE_ROUNDS = 3


async def test_a_decision_raced_from_three_processes_through_pgbouncer_has_one_winner(
    pgbouncer_url: str, counter_dir: Path
) -> None:
    """Approve, reject and expire at the same moment from three processes: one decision is
    recorded and applied, the others get ``Conflict`` naming it, remediation runs once."""
    async with open_runtime(pgbouncer_url, lock_timeout=LOCK_TIMEOUT) as rt:
        deciders: dict[str, Worker] = {}
        try:
            for kind in DECISIONS:  # at once (the schema is there: this runtime set it up)
                deciders[kind] = worker("decider", pgbouncer_url, str(counter_dir))
            for decider in deciders.values():
                started(decider)
            graph = build_graph(counter_dir)
            for number in range(DECIDE_ROUNDS):
                incident = f"race-{number}-{uuid.uuid4().hex[:8]}"
                await rt.start(graph, {}, incident_id=incident)
                at = time.time() + 0.2
                for kind, decider in deciders.items():
                    decider.send({"incident": incident, "decision": DECISIONS[kind], "at": at})
                answers = {kind: decider.read(ANSWER_S) for kind, decider in deciders.items()}
                seen = f"round {number} ({incident}): {answers}"

                won = [kind for kind, answer in answers.items() if "won" in answer]
                assert len(won) == 1, seen
                record = answers[won[0]]["won"]
                assert answers[won[0]]["applied"] is True, seen
                for kind, answer in answers.items():
                    if kind != won[0]:
                        assert answer.get("conflict") is not None, seen
                        assert answer["conflict"]["approval_id"] == record["approval_id"], seen
                        assert answer["conflict"]["status"] == record["status"], seen
                        assert answer["conflict"]["decided_by"] == record["decided_by"], seen

                (stored,) = await rt.history(incident)
                assert stored.status.value == record["status"] and stored.applied_at is not None
                counts = Counters(counter_dir).read(incident)
                assert counts[FOLLOW_UP[record["status"]]] == 1, (seen, counts)
                assert counts["apply"] + counts["escalate"] == 1, (seen, counts)
                assert counts["finish"] == 1, (seen, counts)
                assert all(counts[node] == 1 for node in PRE_PAUSE_NODES), (seen, counts)
                assert (await rt.get(incident)).status == "finished"
        finally:
            for decider in deciders.values():
                decider.close()


# --- takeover --------------------------------------------------------------------------


async def recover_until_closed(url: str, counter_dir: Path, incident: str) -> tuple[Any, list[str]]:
    """Recovery passes by a runtime with a short lease, until ``incident`` is closed (or
    fail, with what each pass saw). Returns its index row and the passes' log."""
    passes: list[str] = []
    async with open_runtime(url, lease_ttl=LEASE_TTL, lock_timeout=LOCK_TIMEOUT) as rt:
        rt.register(build_incident_graph(counter_dir, step_count=STEPS).build())
        deadline = time.monotonic() + RECOVERY_S
        while True:
            applied = await rt.recover(stalled=True)
            row = await rt.store.ledger.get_incident(incident)
            assert row is not None
            passes.append(
                f"applied {[r.approval_id for r in applied]}, open={row.is_open}, "
                f"lease {row.lease_owner} until {row.lease_expires_at}, "
                f"steps {applied_steps(counter_dir, incident)}"
            )
            if not row.is_open:
                return row, passes
            if time.monotonic() > deadline:
                try:
                    async with rt.store.locks.hold(incident, wait=0):
                        lock = "free"
                except IncidentBusy:
                    lock = "held by someone (IncidentBusy)"
                raise AssertionError(
                    f"recovery did not finish {incident} within {RECOVERY_S}s (its lock is "
                    f"{lock} now); {len(passes)} passes, the last ones:\n  "
                    + "\n  ".join(passes[-3:])
                )
            await asyncio.sleep(0.25)


def kill_mid_run(url: str, counter_dir: Path, incident: str, *, before_step: int) -> None:
    """The full graph in another process: paused, approved, then SIGKILLed as remediation
    step ``before_step`` starts (holding the incident's lock and run lease)."""
    child = incident_worker(
        "approve",
        url,
        str(counter_dir),
        incident,
        "--kill-before-step",
        str(before_step),
        "--lease-ttl",
        str(LEASE_TTL),
        "--lock-timeout",
        str(LOCK_TIMEOUT),
    )
    try:
        paused = child.read(READY_S)
    finally:
        code = finish(child)
    assert "paused" in paused and code == -signal.SIGKILL, (paused, code)
    assert applied_steps(counter_dir, incident) == all_steps(before_step - 1)


async def test_a_run_killed_mid_remediation_is_taken_over_through_pgbouncer(
    pgbouncer_url: str, postgres_url: str, counter_dir: Path
) -> None:
    """A worker dies (SIGKILL) holding the incident between remediation steps; another
    runtime with a short lease, through the bouncer, takes the run over and finishes it:
    every step applied once, and the dead holder left no lock on the server."""
    incident = f"kill-{uuid.uuid4().hex[:8]}"
    kill_mid_run(pgbouncer_url, counter_dir, incident, before_step=3)

    row, passes = await recover_until_closed(pgbouncer_url, counter_dir, incident)
    assert applied_steps(counter_dir, incident) == all_steps(), passes
    assert row.outcome == "resolved" and row.lease_expires_at is None, (row, passes)
    async with open_runtime(pgbouncer_url) as rt:
        rt.register(build_incident_graph(counter_dir, step_count=STEPS).build())
        assert (await rt.get(incident)).status == "finished"
        (record,) = await rt.history(incident)
        assert record.status.value == "approved" and record.applied_at is not None
        held = advisory_locks(postgres_url)
    assert held == [], "advisory locks left on the server: " + describe_locks(held, [incident])


# --- nothing left behind in transaction mode -------------------------------------------


FRESH = 4


@pytest.mark.parametrize("pgbouncer", ["transaction"], indirect=True)
async def test_transaction_pooling_leaves_no_lock_behind_and_decisions_do_not_stall(
    pgbouncer: PgBouncer, pgbouncer_url: str, postgres_url: str, counter_dir: Path
) -> None:
    """After a worker died holding an incident, decision races and a takeover, all through a
    transaction pooler: fresh incidents started at once are decided at once — here and from
    other processes — without waiting for a lock, and no advisory lock is held on the
    server."""
    killed = f"kill-{uuid.uuid4().hex[:8]}"
    kill_mid_run(pgbouncer_url, counter_dir, killed, before_step=2)
    deciders = [
        started(worker("decider", pgbouncer_url, str(counter_dir))) for _ in ("alice", "bob")
    ]
    incidents = [killed]
    fresh: list[str] = []
    try:
        async with open_runtime(pgbouncer_url, lock_timeout=LOCK_TIMEOUT) as rt:
            graph = build_graph(counter_dir)
            for number in range(2):  # a decision race per round
                incident = f"race-{number}-{uuid.uuid4().hex[:8]}"
                incidents.append(incident)
                await rt.start(graph, {}, incident_id=incident)
                at = time.time() + 0.2
                for decider, kind in zip(deciders, ("approve", "reject"), strict=True):
                    decider.send({"incident": incident, "decision": DECISIONS[kind], "at": at})
                for decider in deciders:
                    decider.read(ANSWER_S)  # judged by the other tests; here, just the load
        problems: list[str] = []
        try:
            await recover_until_closed(pgbouncer_url, counter_dir, killed)
        except AssertionError as failed:
            problems.append(str(failed))

        # Then fresh incidents, started at once here and decided at once, two here and one by
        # each other process: a lock left held on a server connection would make a decision
        # wait for it, and give up unapplied.
        async with open_runtime(pgbouncer_url, lock_timeout=LOCK_TIMEOUT) as rt:
            graph = build_graph(counter_dir)
            fresh = [f"fresh-{n}-{uuid.uuid4().hex[:8]}" for n in range(FRESH)]
            elsewhere = dict(zip(fresh, deciders, strict=False))
            answers: dict[str, dict[str, Any]] = {}
            asked: list[str] = []

            async def decide_here(incident: str, at: float) -> None:
                await asyncio.sleep(max(0.0, at - time.time()))
                result = await rt.decide(incident, Approve(by="carol"))
                answers[incident] = {"applied": result.applied, "won": result.record.to_dict()}

            try:
                async with asyncio.timeout(STALL_S):
                    await asyncio.gather(*(rt.start(graph, {}, incident_id=i) for i in fresh))
                    at = time.time() + 0.2
                    for incident, decider in elsewhere.items():
                        decider.send(
                            {"incident": incident, "decision": DECISIONS["approve"], "at": at}
                        )
                        asked.append(incident)
                    await asyncio.gather(*(decide_here(i, at) for i in fresh if i not in elsewhere))
            except TimeoutError:
                problems.append(f"starting and deciding {fresh} took more than {STALL_S}s")
            for incident in asked:
                answers[incident] = elsewhere[incident].read(ANSWER_S)
            for incident in fresh:
                answer = answers.get(incident, {})
                status = (await rt.get(incident)).status
                applies = Counters(counter_dir).read(incident)["apply"]
                if answer.get("applied") is not True or status != "finished" or applies != 1:
                    by = "another process" if incident in elsewhere else "this process"
                    outcome = {k: v for k, v in answer.items() if k != "won"}
                    problems.append(
                        f"fresh incident {incident}, decided by {by}: {outcome or 'no answer'}; "
                        f"then {status!r}, remediation applied {applies}x"
                    )
            pool = pool_line(pgbouncer, database_name(postgres_url))
            held = advisory_locks(postgres_url)
    finally:
        for decider in deciders:
            decider.close()
    report = "\n".join(
        [
            f"through pgbouncer in transaction mode ({pool}):",
            *(f"- {problem}" for problem in problems),
            f"- advisory locks left on the server: {describe_locks(held, [*incidents, *fresh])}",
        ]
    )
    if problems or held:
        pytest.fail(report)
