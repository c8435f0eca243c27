"""Chaos: nothing is lost or done twice while workers are killed, frozen and fenced, and
PostgreSQL restarts.

Run from the repository root::

    python benchmarks/chaos.py                  # kill matrix, then the soak: 2,000 incidents
    python benchmarks/chaos.py --no-pg-restart  # for a server that is not this machine's
    python benchmarks/chaos.py --pg-terminate   # pg_terminate_backend instead of a restart
    python benchmarks/chaos.py --smoke          # 60 incidents, 2 workers (1 through
                                                # PgBouncer), 1 monitor, 1 kill, 1 zombie,
                                                # --pg-terminate, no kill matrix (for tests)

Two parts, summed into the last line:

(a) the **kill matrix** (``benchmarks/_chaos_matrix.py``, ``run_kill_matrix``): the full graph
    in a child process SIGKILLed at every node boundary and inside apply, then recovered;

(b) the **soak**: ``--incidents`` incidents through ``--workers`` worker processes and
    ``--monitors`` SLA monitor processes on one fresh PostgreSQL database (created here and
    dropped at the end). The driver (this process) plays the outside world: it queues alerts
    in a job table, watches the ledger for approvals, and queues decisions — approve or
    reject, at random (seeded) — or lets the approval's short window run out. Workers take
    jobs with ``FOR UPDATE SKIP LOCKED``: an alert goes in through ``Runtime.ingest`` (which
    runs the incident until it pauses), a decision through ``Runtime.decide`` or
    ``Runtime.record_decision`` (acknowledged to the driver as soon as it is durable, as the
    HTTP service answers 202) followed by ``Runtime.apply_decision``. Some incidents get two
    opposite decisions at once; some get a decision racing their deadline. Monitors run
    ``SlaMonitor.run()`` (sweeps, then ``Runtime.recover()``). ``--pgbouncer-workers`` of the
    workers (1) connect through a PgBouncer in transaction pooling mode that the driver starts
    (``tests/support/pgbouncer.py``), the others and the monitors directly; each process's
    URL carries its own ``application_name``. Meanwhile the driver SIGKILLs a random worker
    ``--kills`` times and restarts it (a worker runs ``recover(stalled=True)`` when it
    starts); makes ``--zombies`` **zombies**: asks a worker to hold inside its next
    remediation step, SIGSTOPs it there, ends its database sessions (``pg_terminate_backend``
    on its ``application_name``), keeps it stopped past the lease ttl until another process
    has taken its run over and re-run the step, and SIGCONTs it — it wakes up fenced
    (``OwnershipLost``) and carries on with other jobs; and restarts PostgreSQL once
    (``pg_ctlcluster … restart``; with ``--pg-terminate``, ``pg_terminate_backend`` on every
    connection to the soak's database instead).

The graph is :class:`~durable_ir.IncidentGraphBuilder` with counting parts — a confident
analyzer proposing 1–3 steps, an executor that appends every apply and rollback (start and
end, with its idempotency key, process id, ownership epoch and ``in_doubt``) to a file of its
process and acts on a target that deduplicates by idempotency key, some plans failing a step
and rolling back — and the real :class:`~durable_ir.integrations.pagerduty.PagerDutyNotifier`
pointed at a local server speaking PagerDuty's Events API v2 (``_local_pagerduty.py``).

When every alert is in and every fault done, the driver waits (at most ``--drain-timeout``
seconds) for every incident to close, stops the processes, and checks the invariants from the
database, the executors' traces and the PagerDuty server's log: nothing **lost** (alerts,
acknowledged decisions, decisions applied, outcomes, remediation steps, pages), nothing
**duplicated** (remediation steps, outcomes, incidents), nothing **stuck** (open, or with work
left in its checkpoint), nothing **double_paged**, nothing **double_applied** (a step
completed under two owners other than the documented in-doubt re-run, from the traces and
``durable_ir_step_claims``). ``_soak_checks.py`` says exactly what adds to each counter;
``docs/reliability.md`` explains the whole run.

The pieces: ``_soak_workload.py`` (the graph and the plan of incidents), ``_soak_processes.py``
(the job queue, the worker and monitor processes, the faults), ``_soak_checks.py`` (evidence
and invariants); this file is the driver, part (a) and the report.

It prints a table and, as its last line, ``chaos incidents=… kills=… zombies=… pg_restarts=…
in_doubt_reruns=… lost=… duplicated=… stuck=… double_paged=… double_applied=…``
(``pg_restarts`` counts the database faults injected, ``in_doubt_reruns`` the executor calls
that re-ran a step in doubt), and exits with status 1 if any of lost, duplicated, stuck,
double_paged or double_applied is not zero.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from _common import exit_cleanly_on_sigterm, fresh_database, log, server_url
from _local_pagerduty import LocalPagerDuty
from _soak_checks import SoakResult, check, collect_evidence, count_logged_errors
from _soak_processes import (
    QUEUE_SCHEMA,
    Children,
    ChildSettings,
    Fault,
    end_sessions,
    freeze,
    local_cluster_for,
    restart_cluster,
    terminate_backends,
    with_retries,
)
from _soak_workload import DecisionKind, PlannedIncident, make_plan, runtime_options
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from durable_ir import open_runtime

# --------------------------------------------------------------------------- the driver


class HarnessDatabase:
    """The driver's own connections to the soak database; every query is retried through a
    restart of the server."""

    def __init__(self, url: str) -> None:
        self.pool: AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]] = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=4,
            kwargs={"autocommit": True},
            open=False,
            check=AsyncConnectionPool.check_connection,
        )

    async def fetch(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async def once() -> list[tuple[Any, ...]]:
            async with self.pool.connection() as conn:
                cur = await conn.execute(query, params)
                return list(await cur.fetchall()) if cur.description else []

        return await with_retries(once, seconds=180)

    async def scalar(self, query: str, params: Sequence[Any] = ()) -> Any:
        rows = await self.fetch(query, params)
        return rows[0][0] if rows else None


@dataclass
class SoakState:
    """What the driver did during the soak, for the checks and the report."""

    plan: list[PlannedIncident]
    fed: int = 0
    decisions_sent: int = 0
    faults: list[Fault] = field(default_factory=list)
    seen_pending: set[str] = field(default_factory=set)
    _fed_more: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def note_fed(self) -> None:
        """One more alert queued."""
        async with self._fed_more:
            self.fed += 1
            self._fed_more.notify_all()

    async def fed_at_least(self, count: int) -> None:
        """Wait until ``count`` alerts are queued (or all of them)."""
        async with self._fed_more:
            await self._fed_more.wait_for(lambda: self.fed >= min(count, len(self.plan)))


class Driver:
    """Plays the outside world for the soak: alerts in, decisions, faults (see module doc)."""

    def __init__(
        self,
        args: argparse.Namespace,
        server: str,
        db: str,
        database: HarnessDatabase,
        children: Children,
        state: SoakState,
    ) -> None:
        self.args = args
        self.server = server
        self.db = db
        self.database = database
        self.children = children
        self.state = state
        self.rng = random.Random(args.seed + 1)
        self.zombie_rng = random.Random(args.seed + 2)
        self.by_id = {p.incident_id: p for p in state.plan}
        self.last_killed: int | None = None
        self.busy: set[int] = set()
        """Workers being killed and restarted, or frozen: no second fault on them meanwhile."""
        self.hold_dir = children.settings.hold_dir

    async def feed(self) -> None:
        """Queue every alert, keeping at most ``--queue-depth`` waiting to be claimed."""
        depth = self.args.queue_depth
        for planned in self.state.plan:
            while True:
                waiting = await self.database.scalar(
                    "SELECT count(*) FROM chaos_jobs WHERE kind = 'alert' AND done_at IS NULL"
                )
                if int(waiting) < depth:
                    break
                await asyncio.sleep(0.05)
            payload = {
                "alert": planned.alert(self.args.run_id),
                "extra_input": {"approval_window_s": planned.window_s},
            }
            await self._queue("alert", planned.incident_id, "alert", payload, 0.0)
            await self.state.note_fed()

    async def _queue(
        self, kind: str, incident_id: str, tag: str, payload: dict[str, Any], delay: float
    ) -> None:
        await self.database.fetch(
            "INSERT INTO chaos_jobs (kind, incident_id, tag, payload, due_at)"
            " VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s))"
            " ON CONFLICT (kind, incident_id, tag) DO NOTHING",
            (kind, incident_id, tag, Jsonb(payload), delay),
        )

    async def decide(self) -> None:
        """Watch the ledger for new approvals (as an approver's console would) and queue each
        planned decision after its delay."""
        while True:
            rows = await self.database.fetch(
                "SELECT incident_id FROM durable_ir_approvals WHERE status = 'pending'"
            )
            for (incident_id,) in rows:
                if incident_id in self.state.seen_pending:
                    continue
                self.state.seen_pending.add(incident_id)
                planned = self.by_id.get(incident_id)
                if planned is None or planned.fate == "expire":
                    continue
                await self._queue_decision(planned, planned.fate, "first", planned.delay_s)
                if planned.contested:
                    other: DecisionKind = "reject" if planned.fate == "approve" else "approve"
                    await self._queue_decision(planned, other, "second", planned.delay_s)
            await asyncio.sleep(0.3)

    async def _queue_decision(
        self, planned: PlannedIncident, kind: DecisionKind, tag: str, delay: float
    ) -> None:
        payload = {
            "decision": kind,
            "by": f"oncall-{tag}-{planned.number}",
            "reason": f"chaos soak: {kind} ({tag} decision)",
            "mode": planned.mode if tag == "first" else "decide",
        }
        await self._queue("decide", planned.incident_id, tag, payload, delay)
        self.state.decisions_sent += 1

    def schedule(self) -> list[tuple[float, str]]:
        """When (fraction of alerts fed) each fault happens: kills spread over the run with
        some jitter, the database fault near the middle."""
        kills = self.args.kills
        points: list[tuple[float, str]] = []
        for k in range(kills):
            base = 0.1 + 0.8 * (k + 0.5) / kills
            points.append((min(0.95, max(0.05, base + self.rng.uniform(-0.04, 0.04))), "kill"))
        if self.args.pg_fault != "none":
            points.append((0.55, self.args.pg_fault))
        return sorted(points)

    async def inject_faults(self) -> None:
        """Kill workers and fault the database as :meth:`schedule` says, as feeding goes."""
        total = len(self.state.plan)
        for fraction, kind in self.schedule():
            await self.state.fed_at_least(math.ceil(fraction * total))
            await asyncio.sleep(self.rng.uniform(0.0, 1.0))
            if kind == "kill":
                await self._kill_a_worker()
            else:
                await self._database_fault(kind)

    async def _free_workers(self) -> list[int]:
        """The workers no fault is busy with (waiting until there is one)."""
        while True:
            free = [k for k in range(self.args.workers) if k not in self.busy]
            if free:
                return free
            await asyncio.sleep(0.2)

    async def _kill_a_worker(self) -> None:
        # A random worker, not the one killed last time when there is a choice.
        free = await self._free_workers()
        choices = [k for k in free if k != self.last_killed]
        index = self.rng.choice(choices or free)
        self.last_killed = index
        self.busy.add(index)
        try:
            at = time.time()
            pid = self.children.kill_worker(index)
            self.state.faults.append(Fault("kill", at, time.time(), pid, f"worker {index}"))
            log(
                f"-- SIGKILL worker {index} (pid {pid}) at {self.state.fed} alerts fed; "
                "restarting it"
            )
            await asyncio.sleep(self.args.restart_after)
            restarted = self.children.spawn("worker", index)
            await self.children.ready(restarted)
            log(f"-- worker {index} is back (pid {restarted.proc.pid})")
        finally:
            self.busy.discard(index)

    def zombie_schedule(self) -> list[float]:
        """When (fraction of alerts fed) each zombie is made: spread over the run."""
        count = self.args.zombies
        points = [0.1 + 0.7 * (k + 0.5) / count for k in range(count)]
        return [min(0.9, max(0.05, x + self.zombie_rng.uniform(-0.03, 0.03))) for x in points]

    async def inject_zombies(self) -> None:
        """Freeze workers as :meth:`zombie_schedule` says, as feeding goes."""
        total = len(self.state.plan)
        for number, fraction in enumerate(self.zombie_schedule()):
            await self.state.fed_at_least(math.ceil(fraction * total))
            await asyncio.sleep(self.zombie_rng.uniform(0.0, 0.5))
            await self._zombie(number)

    async def _zombie(self, number: int) -> None:
        """Make a zombie of a worker: ask it to hold inside its next remediation step,
        SIGSTOP it there, end its database sessions (``pg_terminate_backend`` on its
        ``application_name``), keep it stopped past the lease ttl until its runs are taken
        over (the held step re-run by its new owner), then SIGCONT it. It wakes up fenced."""
        free = await self._free_workers()
        # Every other zombie is a worker behind PgBouncer, when there is one.
        bounced = [k for k in free if k in self.children.pgbouncer_workers]
        direct = [k for k in free if k not in self.children.pgbouncer_workers]
        group = (bounced if number % 2 == 1 else direct) or free
        index = self.zombie_rng.choice(group)
        self.busy.add(index)
        try:
            await self._freeze_worker(index)
        finally:
            self.busy.discard(index)

    async def _freeze_worker(self, index: int) -> None:
        child = self.children.current[("worker", index)]
        pid = child.proc.pid
        hold, held = self.hold_dir / f"hold-{pid}", self.hold_dir / f"held-{pid}"
        held.unlink(missing_ok=True)
        hold.touch()
        try:
            step = await self._held_step(held, within=self.args.zombie_wait)
            at = time.time()
            await asyncio.to_thread(freeze, pid)
        except (OSError, RuntimeError) as exc:  # it died meanwhile: no zombie this time
            log(f"!! could not freeze worker {index} (pid {pid}): {exc}")
            return
        finally:
            hold.unlink(missing_ok=True)
        began = time.monotonic()
        where = (
            f"inside {step['key']} (epoch {step['epoch']})"
            if step
            else f"at a random moment (no step started within {self.args.zombie_wait:g}s)"
        )
        via = " behind PgBouncer" if child.via_pgbouncer else ""
        log(f"-- SIGSTOP worker {index}{via} (pid {pid}) {where} at {self.state.fed} alerts fed")
        try:
            ended = await with_retries(
                lambda: asyncio.to_thread(end_sessions, self.server, child.application_name),
                seconds=120,
            )
            taken_over = await self._wait_for_takeover(step, began)
            owned = await self.database.scalar(
                "SELECT count(*) FROM durable_ir_owners WHERE owner LIKE %s",
                (f"%:{pid}:%",),
            )
        finally:
            os.kill(pid, signal.SIGCONT)
        until = time.time()
        detail = (
            f"worker {index}{via} (pid {pid}) stopped {until - at:.1f}s {where}; "
            f"{ended} session(s) named {child.application_name} ended; {taken_over}; "
            f"{owned} incident(s) still its own at SIGCONT"
        )
        self.state.faults.append(Fault("zombie", at, until, pid, detail))
        log(f"-- SIGCONT worker {index} (pid {pid}) after {until - at:.1f}s: {taken_over}")

    async def _held_step(self, held: Path, within: float) -> dict[str, Any] | None:
        """The first step the worker holds in (its trace record), once it does; ``None`` if
        it started none within ``within`` seconds."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            step = take_first_record(held)
            if step is not None:
                return step
            await asyncio.sleep(0.02)
        return None

    async def _wait_for_takeover(self, step: dict[str, Any] | None, began: float) -> str:
        """Keep the zombie stopped past the lease ttl, and (when it holds inside a step)
        until a later owner has re-run that step and recorded its result: what happened."""
        ttl = self.args.lease_ttl
        await asyncio.sleep(max(0.0, began + ttl + 1.0 - time.monotonic()))
        if step is None:
            return "not inside a step"
        deadline = began + ttl + self.args.takeover_within
        while True:
            row = await self.database.fetch(
                "SELECT epoch FROM durable_ir_step_claims WHERE incident_id = %s"
                " AND step_key = %s AND epoch > %s AND finished_at IS NOT NULL",
                (step["incident"], step["key"], step["epoch"]),
            )
            if row:
                return f"its step re-run and finished by epoch {row[0][0]}"
            if time.monotonic() > deadline:
                return f"its step NOT taken over within {ttl + self.args.takeover_within:g}s"
            await asyncio.sleep(0.2)

    async def _database_fault(self, kind: str) -> None:
        at = time.time()
        if kind == "pg_restart":
            cluster = local_cluster_for(self.server)
            assert cluster is not None  # checked before the soak started
            detail = await asyncio.to_thread(restart_cluster, cluster)
            fault = Fault("pg_restart", at, time.time(), None, detail)
        else:
            database = urlsplit(self.db).path.lstrip("/")
            detail = await asyncio.to_thread(terminate_backends, self.server, database)
            fault = Fault("pg_terminate", at, time.time(), None, detail)
        self.state.faults.append(fault)
        log(f"-- {detail} at {self.state.fed} alerts fed")

    async def progress(self) -> None:
        """A line on stderr every 5 seconds."""
        began = time.perf_counter()
        while True:
            await asyncio.sleep(5.0)
            rows = await self.database.fetch(
                "SELECT status, count(*) FROM durable_ir_incidents GROUP BY status"
            )
            counts = dict(rows)
            log(
                f"   {time.perf_counter() - began:5.0f}s fed {self.state.fed}/"
                f"{len(self.state.plan)}, open {counts.get('open', 0)}, closed "
                f"{counts.get('closed', 0)}, decisions queued {self.state.decisions_sent}"
            )

    async def drain(self) -> bool:
        """Wait until every incident is closed and every job done (at most
        ``--drain-timeout`` seconds); whether that happened."""
        deadline = time.monotonic() + self.args.drain_timeout
        while time.monotonic() < deadline:
            open_incidents = await self.database.scalar(
                "SELECT count(*) FROM durable_ir_incidents WHERE status = 'open'"
            )
            jobs_left = await self.database.scalar(
                "SELECT count(*) FROM chaos_jobs WHERE done_at IS NULL"
            )
            indexed = await self.database.scalar("SELECT count(*) FROM durable_ir_incidents")
            if (
                int(open_incidents) == 0
                and int(jobs_left) == 0
                and int(indexed) >= len(self.state.plan)
            ):
                return True
            await asyncio.sleep(1.0)
        return False


def take_first_record(path: Path) -> dict[str, Any] | None:
    """The first JSON line of ``path``, which is removed; ``None`` while there is none."""
    try:
        first = path.read_text().splitlines()[0]
        record = dict(json.loads(first))
    except (OSError, ValueError, IndexError):
        return None
    path.unlink()
    return record


async def run_driver(args: argparse.Namespace, server: str, db: str, run_dir: Path) -> SoakResult:
    """The soak on database ``db``: start the processes, feed, decide, inject faults, drain,
    stop, and check."""
    plan = make_plan(args.incidents, args.seed, args.run_id, expire_window=args.expire_window)
    state = SoakState(plan)
    from support.postgres import database_name

    # The schema is created once here, before the processes race to create it.
    async with open_runtime(db):
        pass
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(QUEUE_SCHEMA)
    database = HarnessDatabase(db)
    await database.pool.open()
    began = time.perf_counter()
    with LocalPagerDuty() as pagerduty, pgbouncer_for(args, server, run_dir) as bouncer:
        settings = ChildSettings(
            db=db,
            pagerduty=pagerduty.url,
            calls_dir=run_dir / "calls",
            effects_dir=run_dir / "effects",
            hold_dir=run_dir / "holds",
            concurrency=args.concurrency,
            sla_interval=args.sla_interval,
            lease_ttl=args.lease_ttl,
            step_seconds=args.step_seconds,
            claim_seconds=args.claim_seconds,
        )
        bounced = frozenset(range(args.workers - args.pgbouncer_workers, args.workers))
        children = Children(
            settings,
            run_dir / "logs",
            pgbouncer_db=None if bouncer is None else bouncer.url(database_name(db)),
            pgbouncer_workers=bounced,
        )
        try:
            await children.start_all(workers=args.workers, monitors=args.monitors)
            log(
                f"   {args.workers} workers ({len(children.pgbouncer_workers)} through PgBouncer"
                f" in transaction mode) and {args.monitors} monitors ready"
            )
            driver = Driver(args, server, db, database, children, state)
            background = [
                asyncio.create_task(driver.decide()),
                asyncio.create_task(driver.progress()),
                asyncio.create_task(children.watch()),
            ]
            try:
                await asyncio.gather(driver.feed(), driver.inject_faults(), driver.inject_zombies())
                log(f"   all {len(plan)} alerts queued and every fault injected; draining")
                drained = await driver.drain()
            finally:
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
            soak_seconds = time.perf_counter() - began
            if not drained:
                log(f"!! not drained after {args.drain_timeout:.0f}s: checking what is there")
        finally:
            children.stop_all()
        pooled = await asyncio.to_thread(pgbouncer_report, bouncer, database_name(db), bounced)
        await database.pool.close()
        evidence = await collect_evidence(db, run_dir / "calls", pagerduty)
    result = check(plan, state.faults, evidence)
    result.seconds = soak_seconds
    result.unexpected_exits = list(children.unexpected_exits)
    result.errors_logged = count_logged_errors(run_dir / "logs")
    result.facts["PgBouncer (transaction mode)"] = pooled
    result.facts["runs fenced (OwnershipLost logged by workers)"] = count_fenced(run_dir / "logs")
    return result


@contextlib.contextmanager
def pgbouncer_for(args: argparse.Namespace, server: str, run_dir: Path) -> Iterator[Any]:
    """A PgBouncer in transaction mode in front of ``server`` for the ``with`` block
    (``tests/support/pgbouncer.py``'s, on a free loopback port), or ``None`` without
    ``--pgbouncer-workers``."""
    if not args.pgbouncer_workers:
        yield None
        return
    from support.pgbouncer import running_pgbouncer

    with running_pgbouncer(run_dir / "pgbouncer", server, pool_mode="transaction") as bouncer:
        log(
            f"   PgBouncer (transaction mode, {bouncer.pool_size} server connections) on "
            f"127.0.0.1:{bouncer.port}"
        )
        yield bouncer


def pgbouncer_report(bouncer: Any, dbname: str, workers: frozenset[int]) -> str:
    """What went through the PgBouncer, from its admin console (``SHOW STATS``)."""
    if bouncer is None:
        return "not used (--pgbouncer-workers 0)"
    try:
        rows = [r for r in bouncer.show("STATS") if r["database"] == dbname]
    except Exception as exc:  # the report must not fail on the console
        return f"workers {sorted(workers)}; SHOW STATS failed: {exc}"
    xacts = sum(int(r["total_xact_count"]) for r in rows)
    queries = sum(int(r["total_query_count"]) for r in rows)
    return (
        f"workers {sorted(workers)} through PgBouncer on 127.0.0.1:{bouncer.port}, "
        f"pool_mode transaction, {bouncer.pool_size} server connections: {xacts} "
        f"transactions, {queries} queries"
    )


def count_fenced(logs_dir: Path) -> int:
    """Jobs and decisions the workers logged as fenced (``OwnershipLost``)."""
    return sum(
        path.read_text(errors="replace").count(" WARNING fenced: ")
        for path in logs_dir.glob("worker*.log")
    )


# --------------------------------------------------------------------------- part (a)


@dataclass(frozen=True)
class PartCounts:
    """One part's headline counts. The kill matrix's own finer counts are folded in as the
    soak counts them: ``unpaged`` and ``missing`` (a page, a node run or a side effect that
    never happened) are lost; ``rerun`` and ``wrong_outcome`` (a finished node run again, an
    outcome the path does not lead to) are duplicated."""

    incidents: int = 0
    kills: int = 0
    lost: int = 0
    duplicated: int = 0
    stuck: int = 0
    double_paged: int = 0
    double_applied: int = 0
    """Only the soak counts it (it needs owners changing mid-step: takeovers)."""
    note: str = ""
    failed: bool = False
    """The part could not check what it should have (e.g. a cell was never killed)."""


async def run_matrix_part(server: str, args: argparse.Namespace) -> PartCounts:
    """Part (a): the kill matrix (``benchmarks/_chaos_matrix.py``) on a fresh database."""
    if args.no_matrix:
        return PartCounts(note="skipped (--no-matrix)")
    from _chaos_matrix import run_kill_matrix

    with fresh_database(server, prefix="durable_ir_chaos_matrix") as db:
        report = await run_kill_matrix(db, progress=log)
    note = (
        f"{report.children} child processes, {report.seconds:.0f}s; unpaged {report.unpaged}, "
        f"missing {report.missing}, rerun {report.rerun}, wrong outcome {report.wrong_outcome}"
    )
    if report.errors:
        note += "; errors: " + "; ".join(report.errors[:3])
    return PartCounts(
        incidents=report.incidents,
        kills=report.kills,
        lost=report.lost + report.unpaged + report.missing,
        duplicated=report.duplicated + report.rerun + report.wrong_outcome,
        stuck=report.stuck,
        double_paged=report.double_paged,
        note=note,
        failed=not report.ok,
    )


def soak_counts(soak: SoakResult) -> PartCounts:
    """Part (b)'s headline counts."""
    return PartCounts(
        incidents=soak.incidents,
        kills=soak.kills,
        lost=soak.count("lost"),
        duplicated=soak.count("duplicated"),
        stuck=soak.count("stuck"),
        double_paged=soak.count("double_paged"),
        double_applied=soak.count("double_applied"),
        note=(
            f"{soak.zombies} zombie(s), {soak.pg_faults} database fault(s), "
            f"{soak.in_doubt_reruns} in-doubt re-run(s), {soak.seconds:.0f}s"
        ),
    )


# --------------------------------------------------------------------------- report

HEADLINE = ("lost", "duplicated", "stuck", "double_paged", "double_applied")


def print_report(matrix: PartCounts, soak: SoakResult, args: argparse.Namespace) -> dict[str, int]:
    """The tables, then the last line; returns the headline counts."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(file=sys.stdout, width=110, no_color=True, highlight=False)
    table = Table(title="chaos soak: invariants, checked after the drain", box=box.SIMPLE)
    table.add_column("check", no_wrap=True)
    table.add_column("broken", justify="right")
    table.add_column("counts as")
    for item in soak.checks:
        table.add_row(item.name, str(len(item.failures)), item.counter)
    console.print(table)
    for item in soak.checks:
        for failure in item.failures[:10]:
            print(f"  {item.counter}: {item.name}: {failure}")
        if len(item.failures) > 10:
            print(f"  {item.counter}: {item.name}: … and {len(item.failures) - 10} more")
    facts = Table(title="chaos soak: what happened", box=box.SIMPLE, show_header=False)
    facts.add_column("what")
    facts.add_column("value", overflow="fold")
    leases = (
        f"lease_ttl {args.lease_ttl:g}s"
        if "lease_ttl" in runtime_options(args.lease_ttl)
        else "no leases in this runtime"
    )
    facts.add_row(
        "setup",
        f"{soak.incidents} incidents, {args.workers} workers x {args.concurrency} jobs "
        f"({args.pgbouncer_workers} through PgBouncer in transaction mode), "
        f"{args.monitors} SLA monitors (every {args.sla_interval:g}s), {leases}, seed {args.seed}",
    )
    facts.add_row("soak duration", f"{soak.seconds:.0f}s (feeding, faults and drain)")
    for name, value in soak.facts.items():
        facts.add_row(name, value if isinstance(value, str) else json.dumps(value))
    facts.add_row("unexpected process exits", str(len(soak.unexpected_exits)))
    facts.add_row("ERROR lines logged by the processes", str(soak.errors_logged))
    console.print(facts)
    parts = Table(title="chaos: both parts", box=box.SIMPLE)
    for column in ("part", "incidents", "kills", *HEADLINE, "notes"):
        column = column.replace("double_", "double_\n")
        parts.add_column(column, justify="left" if column in ("part", "notes") else "right")
    soak_part = soak_counts(soak)
    for label, part in (("(a) kill matrix", matrix), ("(b) soak", soak_part)):
        counts = (part.incidents, part.kills, *(getattr(part, name) for name in HEADLINE))
        parts.add_row(label, *(str(v) for v in counts), part.note)
    console.print(parts)
    totals = {
        "incidents": matrix.incidents + soak_part.incidents,
        "kills": matrix.kills + soak_part.kills,
        "zombies": soak.zombies,
        "pg_restarts": soak.pg_faults,
        "in_doubt_reruns": soak.in_doubt_reruns,
        **{name: getattr(matrix, name) + getattr(soak_part, name) for name in HEADLINE},
    }
    print("chaos " + " ".join(f"{name}={value}" for name, value in totals.items()), flush=True)
    return totals


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see ``--help``)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=2000, help="soak incidents")
    parser.add_argument("--workers", type=int, default=3, help="worker processes")
    parser.add_argument("--monitors", type=int, default=2, help="SLA monitor processes")
    parser.add_argument("--kills", type=int, default=10, help="workers SIGKILLed (and restarted)")
    parser.add_argument(
        "--zombies",
        type=int,
        default=3,
        help="workers frozen (SIGSTOP inside a remediation step, sessions ended, past the "
        "lease ttl until taken over, SIGCONT)",
    )
    parser.add_argument(
        "--pgbouncer-workers",
        type=int,
        default=1,
        help="workers that connect through a PgBouncer in transaction mode (started here; 0: none)",
    )
    parser.add_argument("--seed", type=int, default=8, help="seeds every random choice")
    parser.add_argument(
        "--no-pg-restart",
        action="store_true",
        help="do not restart PostgreSQL (for a server that is not this machine's cluster)",
    )
    parser.add_argument(
        "--pg-terminate",
        action="store_true",
        help="instead of restarting the cluster, pg_terminate_backend every connection to the "
        "soak's database (disturbs nobody else on the server)",
    )
    parser.add_argument("--no-matrix", action="store_true", help="skip part (a), the kill matrix")
    parser.add_argument(
        "--keep-database", action="store_true", help="do not drop the soak's database"
    )
    parser.add_argument(
        "--keep-logs", default=None, help="copy the processes' logs and traces here"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="jobs at once per worker")
    parser.add_argument("--sla-interval", type=float, default=1.0, help="seconds between sweeps")
    parser.add_argument("--lease-ttl", type=float, default=10.0, help="run lease, if supported")
    parser.add_argument("--drain-timeout", type=float, default=150.0, help="seconds")
    parser.add_argument("--step-seconds", type=float, default=0.05, help="one remediation step")
    parser.add_argument("--restart-after", type=float, default=1.0, help="seconds dead")
    parser.add_argument("--claim-seconds", type=float, default=10.0, help="job claim lifetime")
    parser.add_argument(
        "--zombie-wait",
        type=float,
        default=20.0,
        help="seconds to wait for the chosen worker to start a step before freezing it anyway",
    )
    parser.add_argument(
        "--takeover-within",
        type=float,
        default=60.0,
        help="seconds past the lease ttl a zombie stays frozen waiting for its step's takeover",
    )
    parser.add_argument("--queue-depth", type=int, default=None, help="alerts waiting, at most")
    parser.add_argument(
        "--url",
        default=None,
        help="PostgreSQL server URL (default: $DURABLE_IR_BENCH_POSTGRES_URL, else the server "
        "the tests use); the soak creates a throwaway database on it and drops it at the end",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="60 incidents, 2 workers (one through PgBouncer), 1 monitor, 1 kill, 1 zombie, "
        "--pg-terminate, no kill matrix (it has its own tests)",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.incidents, args.workers, args.monitors, args.kills = 60, 2, 1, 1
        args.zombies = min(args.zombies, 1)
        args.pgbouncer_workers = min(args.pgbouncer_workers, 1)
        args.pg_terminate = args.no_matrix = True
        args.drain_timeout = min(args.drain_timeout, 120.0)
    if args.incidents < 1 or args.workers < 1 or args.monitors < 1 or args.kills < 0:
        parser.error("--incidents, --workers and --monitors >= 1, --kills >= 0")
    if args.zombies < 0 or not 0 <= args.pgbouncer_workers <= args.workers:
        parser.error("--zombies >= 0, 0 <= --pgbouncer-workers <= --workers")
    args.pg_fault = (
        "pg_terminate" if args.pg_terminate else "none" if args.no_pg_restart else "pg_restart"
    )
    if args.queue_depth is None:
        args.queue_depth = 2 * args.workers * args.concurrency
    args.expire_window = (1.0, 4.0)
    args.run_id = f"s{args.seed}"
    return args


@contextlib.contextmanager
def soak_database(server: str, *, keep: bool) -> Iterator[str]:
    """A fresh database for the soak, dropped afterwards unless ``keep`` (for a post-mortem)."""
    if not keep:
        with fresh_database(server, prefix="durable_ir_chaos") as db:
            yield db
        return
    from support.postgres import create_database

    db = create_database(server, prefix="durable_ir_chaos")
    try:
        yield db
    finally:
        log(f"   the soak's database is kept: {db}")


async def main_async(args: argparse.Namespace) -> int:
    """Part (a), then part (b), then the report; the exit status."""
    server = server_url(args.url)
    if args.pg_fault == "pg_restart" and local_cluster_for(server) is None:
        raise SystemExit(
            f"{server} is not a cluster of this machine that pg_ctlcluster can restart: "
            "run with --no-pg-restart (or --pg-terminate)"
        )
    if args.pgbouncer_workers:
        from support.pgbouncer import PGBOUNCER

        if not (PGBOUNCER.is_file() and os.access(PGBOUNCER, os.X_OK)):
            raise SystemExit(
                f"{PGBOUNCER} is missing (apt-get install --no-install-recommends pgbouncer): "
                "install it, or run with --pgbouncer-workers 0"
            )
    started = time.perf_counter()
    log(f"chaos: part (a), the kill matrix{' (skipped)' if args.no_matrix else ''}, on {server}")
    matrix = await run_matrix_part(server, args)
    log(
        f"chaos: part (b), the soak: {args.incidents} incidents, {args.kills} kills, "
        f"{args.zombies} zombies, database fault {args.pg_fault}, {args.pgbouncer_workers} "
        "worker(s) through PgBouncer"
    )
    with (
        soak_database(server, keep=args.keep_database) as db,
        tempfile.TemporaryDirectory(prefix="durable-ir-chaos-") as tmp,
    ):
        run_dir = Path(tmp)
        for sub in ("calls", "effects", "holds", "logs"):
            (run_dir / sub).mkdir()
        soak = await run_driver(args, server, db, run_dir)
        if args.keep_logs:
            kept = Path(args.keep_logs)
            shutil.copytree(run_dir, kept, dirs_exist_ok=True)
            log(f"   logs and traces kept in {kept}")
    log(f"chaos: done in {time.perf_counter() - started:.0f}s")
    totals = print_report(matrix, soak, args)
    if matrix.failed:
        log(f"chaos: the kill matrix did not check every cell: {matrix.note}")
    broken = any(totals[name] for name in HEADLINE) or matrix.failed
    return 1 if broken else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    exit_cleanly_on_sigterm()
    # In this process, the kill matrix's recovery logs a warning per incident it takes over,
    # and the driver's pool one per failed reconnect while PostgreSQL restarts: only errors
    # here (the soak's processes keep full logs, see --keep-logs).
    for name in ("durable_ir", "psycopg.pool"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
