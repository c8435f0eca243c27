"""The chaos soak's processes, and the faults the driver injects into them.

- the **job queue** (a table in the soak's database): the driver inserts alerts and decisions;
  workers claim them with ``FOR UPDATE SKIP LOCKED``, and a job whose worker died is claimed
  again once its claim runs out, so every job is idempotent;
- the **worker** process: ``open_runtime``, ``register``, ``recover(stalled=True)``, then takes
  jobs ``concurrency`` at a time — an alert through ``Runtime.ingest``; a decision through
  ``Runtime.decide``, or ``Runtime.record_decision`` (acknowledged as soon as it is durable)
  then ``Runtime.apply_decision``;
- the **SLA monitor** process: ``SlaMonitor(runtime).run()``;
- :class:`Children`: starts, kills (SIGKILL), freezes (SIGSTOP/SIGCONT), restarts and stops
  them for the driver; each process's database URL names it (``application_name``, so that
  its sessions can be found in ``pg_stat_activity``), and some workers' URLs point at a
  PgBouncer in transaction mode instead of the server;
- **faults**: restarting this machine's PostgreSQL cluster, terminating every connection to
  one database, or one process's sessions.

A worker survives being fenced: when a run it was doing was taken over while it was frozen,
``OwnershipLost`` (from ``ingest``, ``decide`` or ``apply_decision``) is logged, the job is
acknowledged as far as it got (the incident exists; the decision is durable) or handed back,
and the incident is finished by its new owner.

Run as a script, this file is one worker or monitor (``python benchmarks/_soak_processes.py
worker 0 --db … ``); :meth:`ChildSettings.argv` makes that command line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

CHILD_SCRIPT = Path(__file__).resolve()
if str(CHILD_SCRIPT.parent) not in sys.path:
    sys.path.insert(0, str(CHILD_SCRIPT.parent))

import psycopg  # noqa: E402
from _common import ROOT, is_local_server, log  # noqa: E402
from _soak_workload import GRAPH_NAME, chaos_graph, runtime_options  # noqa: E402
from psycopg.rows import TupleRow  # noqa: E402
from psycopg.types.json import Jsonb  # noqa: E402
from psycopg_pool import AsyncConnectionPool, PoolTimeout  # noqa: E402

from durable_ir import (  # noqa: E402
    Approve,
    Conflict,
    InvalidDecision,
    NotFound,
    OwnershipLost,
    Reject,
    Runtime,
    SlaMonitor,
    open_runtime,
)
from support.outages import end_sessions  # noqa: E402

__all__ = [
    "QUEUE_SCHEMA",
    "ChildSettings",
    "Children",
    "Fault",
    "end_sessions",
    "freeze",
    "local_cluster_for",
    "restart_cluster",
    "terminate_backends",
    "with_application_name",
    "with_retries",
]

READY = "READY"
"""What a worker or monitor prints on stdout once it takes work."""
PG_RETRY_ERRORS: tuple[type[BaseException], ...] = (psycopg.OperationalError, PoolTimeout)
"""What a connection to a restarting server raises: retried by the harness's own queries."""
Role = Literal["worker", "monitor"]
T = TypeVar("T")


# --------------------------------------------------------------------------- the job queue

QUEUE_SCHEMA = """
CREATE TABLE IF NOT EXISTS chaos_jobs (
    job_id        bigserial PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('alert', 'decide')),
    incident_id   text NOT NULL,
    tag           text NOT NULL,
    payload       jsonb NOT NULL,
    due_at        timestamptz NOT NULL DEFAULT now(),
    claimed_by    text,
    claimed_until timestamptz,
    attempts      integer NOT NULL DEFAULT 0,
    done_at       timestamptz,
    result        jsonb,
    UNIQUE (kind, incident_id, tag)
);
CREATE INDEX IF NOT EXISTS chaos_jobs_todo ON chaos_jobs (due_at) WHERE done_at IS NULL;
"""

CLAIM = """
UPDATE chaos_jobs SET claimed_by = %(owner)s, attempts = attempts + 1,
       claimed_until = now() + make_interval(secs => %(seconds)s)
WHERE job_id = (
    SELECT job_id FROM chaos_jobs
    WHERE done_at IS NULL AND due_at <= now()
      AND (claimed_until IS NULL OR claimed_until < now())
    ORDER BY due_at, job_id
    LIMIT 1
    FOR UPDATE SKIP LOCKED)
RETURNING job_id, kind, incident_id, payload, attempts
"""


@dataclass(frozen=True)
class Job:
    """One claimed job: an alert to take in, or a decision to make."""

    job_id: int
    kind: str
    incident_id: str
    payload: dict[str, Any]
    attempts: int


class JobQueue:
    """A worker's side of the job table: claim a due job (``FOR UPDATE SKIP LOCKED``), finish
    it with its result, or hand it back for a retry. A job whose worker died is claimable
    again once its claim (``claim_seconds``) runs out."""

    def __init__(self, url: str, owner: str, *, size: int, claim_seconds: float) -> None:
        self.owner = owner
        self.claim_seconds = claim_seconds
        self.pool: AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]] = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=size,
            # No prepared statements: this pool may go through PgBouncer in transaction mode.
            kwargs={"autocommit": True, "prepare_threshold": None},
            open=False,
            check=AsyncConnectionPool.check_connection,
        )

    async def claim(self) -> Job | None:
        """A due job, now claimed by this worker, or ``None``."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(CLAIM, {"owner": self.owner, "seconds": self.claim_seconds})
            row = await cur.fetchone()
        if row is None:
            return None
        return Job(int(row[0]), str(row[1]), str(row[2]), dict(row[3]), int(row[4]))

    async def finish(self, job: Job, result: Mapping[str, Any]) -> None:
        """Mark ``job`` done with ``result``, retrying through a database outage (if this
        worker dies first, the job runs again elsewhere: every job is idempotent)."""
        await with_retries(
            lambda: self._execute(
                "UPDATE chaos_jobs SET done_at = now(), result = %s, claimed_until = NULL"
                " WHERE job_id = %s AND done_at IS NULL",
                (Jsonb(dict(result)), job.job_id),
            ),
            seconds=120,
        )

    async def hand_back(self, job: Job, retry_in: float) -> None:
        """Let ``job`` be claimed again after ``retry_in`` seconds."""
        with contextlib.suppress(*PG_RETRY_ERRORS):
            await self._execute(
                "UPDATE chaos_jobs SET claimed_until = now() + make_interval(secs => %s)"
                " WHERE job_id = %s AND done_at IS NULL AND claimed_by = %s",
                (retry_in, job.job_id, self.owner),
            )

    async def _execute(self, query: str, params: Sequence[Any]) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(query, params)


async def with_retries(
    call: Callable[[], Awaitable[T]], *, seconds: float, pause: float = 0.5
) -> T:
    """``await call()``, retried while PostgreSQL is unreachable, for up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await call()
        except PG_RETRY_ERRORS:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(pause)


# --------------------------------------------------------------------------- worker and monitor


def configure_child_logging() -> None:
    """Child processes log to stderr (a file per process, kept by the driver)."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpcore", "psycopg.pool"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextlib.asynccontextmanager
async def open_runtime_retrying(settings: ChildSettings) -> AsyncIterator[Runtime]:
    """``open_runtime`` on the soak database, retried while the server is restarting."""
    deadline = time.monotonic() + 120
    while True:
        stack = contextlib.AsyncExitStack()
        try:
            runtime = await stack.enter_async_context(
                open_runtime(settings.db, **runtime_options(settings.lease_ttl))
            )
        except PG_RETRY_ERRORS:
            await stack.aclose()
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.5)
            continue
        async with stack:
            yield runtime
        return


def decision_for(payload: Mapping[str, Any]) -> Approve | Reject:
    """The decision a decide job carries."""
    if payload["decision"] == "approve":
        return Approve(by=str(payload["by"]))
    return Reject(by=str(payload["by"]), reason=str(payload["reason"]))


class Worker:
    """A worker process: takes alerts in and makes decisions, ``concurrency`` jobs at a time."""

    def __init__(self, runtime: Runtime, graph: Any, queue: JobQueue, concurrency: int) -> None:
        self.runtime = runtime
        self.graph = graph
        self.queue = queue
        self.concurrency = concurrency
        self.log = logging.getLogger("chaos.worker")

    async def run(self) -> None:
        await asyncio.gather(*(self._loop(k) for k in range(self.concurrency)))

    async def _loop(self, slot: int) -> None:
        idle = random.Random(os.getpid() * 100 + slot)
        while True:
            try:
                job = await self.queue.claim()
            except PG_RETRY_ERRORS as exc:
                self.log.warning("claiming a job failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(0.5)
                continue
            if job is None:
                await asyncio.sleep(0.1 + 0.1 * idle.random())
                continue
            try:
                result = await self._handle(job)
            except Exception as exc:
                if fenced(exc):
                    result = await self._fenced(job, exc)
                    if result is not None:
                        await self.queue.finish(job, result)
                    continue
                self.log.warning(
                    "%s job %d for %s failed (%s: %s); it will be retried",
                    job.kind,
                    job.job_id,
                    job.incident_id,
                    type(exc).__name__,
                    exc,
                )
                await self.queue.hand_back(job, retry_in=1.0)
                continue
            if result is not None:
                await self.queue.finish(job, result)

    async def _handle(self, job: Job) -> dict[str, Any] | None:
        if job.kind == "alert":
            try:
                intake = await self.runtime.ingest(
                    self.graph,
                    job.payload["alert"],
                    graph_name=GRAPH_NAME,
                    incident_id=job.incident_id,
                    extra_input=job.payload["extra_input"],
                )
            except Conflict as exc:
                row = await self.runtime.store.ledger.get_incident(job.incident_id)
                if row is None or row.is_open or "is closed" not in str(exc):
                    raise
                # A redelivery (the first delivery's worker died or froze after the incident
                # opened) of an incident that has closed since: a closed incident's id
                # refuses alerts. The alert was taken in: done.
                return {"created": False, "incident_id": row.incident_id, "status": "closed",
                        "refused": "closed"}  # fmt: skip
            status = intake.snapshot.status if intake.snapshot is not None else None
            incident = intake.incident.incident_id if intake.incident is not None else None
            return {"created": intake.created, "incident_id": incident, "status": status}
        return await self._decide(job)

    async def _decide(self, job: Job) -> dict[str, Any] | None:
        """Make the job's decision through the library's decide path; the result is the
        acknowledgement the driver gets (``acked``), as an HTTP client would."""
        decision = decision_for(job.payload)
        try:
            if job.payload["mode"] == "decide":
                outcome = await self.runtime.decide(job.incident_id, decision)
                return acknowledgement(outcome.record.approval_id, outcome.record.status, decision)
            record = await self.runtime.record_decision(job.incident_id, decision)
            # Durable now: acknowledge (the service answers 202 here), then apply it.
            await self.queue.finish(
                job, acknowledgement(record.approval_id, record.status, decision)
            )
            try:
                if not await self.runtime.apply_decision(record, wait=5.0):
                    self.log.info("incident %s busy: its decision is left to its holder or "
                                  "recovery", job.incident_id)  # fmt: skip
            except Exception as exc:  # durable already: recovery applies it
                if fenced(exc):
                    self.log.warning(
                        "fenced: applying the decision on %s stopped (%s); its new owner "
                        "finishes the incident",
                        job.incident_id,
                        exc,
                    )
                    return None
                self.log.warning(
                    "applying the decision on %s failed (%s: %s); recovery applies it",
                    job.incident_id,
                    type(exc).__name__,
                    exc,
                )
            return None
        except Conflict as exc:
            winner = exc.winner
            if winner is not None and winner.decided_by == decision.by:
                # A retry of this job's own decision (its first attempt died after recording).
                return acknowledgement(winner.approval_id, winner.status, decision)
            return {
                "acked": False,
                "why": "conflict",
                "winner": None if winner is None else f"{winner.status} by {winner.decided_by}",
            }
        except (NotFound, InvalidDecision) as exc:
            return {"acked": False, "why": type(exc).__name__, "detail": str(exc)[:200]}

    async def _fenced(self, job: Job, exc: BaseException) -> dict[str, Any] | None:
        """A job whose run was taken over by another worker while this one was frozen
        (``OwnershipLost``): the result to acknowledge it with, or ``None`` once it is
        handed back. An alert's incident exists (this worker owned it); a decision the
        ledger holds under this job's identity is durable, whatever happens to the run."""
        self.log.warning(
            "fenced: %s job %d for %s lost its run to another worker (%s); the new owner "
            "finishes the incident",
            job.kind,
            job.job_id,
            job.incident_id,
            exc,
        )
        if job.kind == "alert":
            return {"created": None, "incident_id": job.incident_id, "fenced": True}
        decision = decision_for(job.payload)
        try:
            history = await with_retries(
                lambda: self.runtime.store.ledger.history(job.incident_id), seconds=60
            )
        except PG_RETRY_ERRORS:
            history = []
        for record in history:
            if record.decided_by == decision.by and str(record.status) != "pending":
                return {**acknowledgement(record.approval_id, record.status, decision),
                        "fenced": True}  # fmt: skip
        await self.queue.hand_back(job, retry_in=1.0)
        return None


def fenced(exc: BaseException) -> bool:
    """Whether ``exc``, or what caused it, is ``OwnershipLost``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OwnershipLost):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def acknowledgement(approval_id: str, status: Any, decision: Approve | Reject) -> dict[str, Any]:
    """What the driver is told when its decision is durable."""
    return {"acked": True, "approval_id": approval_id, "status": str(status), "by": decision.by}


def calls_file(settings: ChildSettings, role: str, index: int) -> Path:
    """Where this process's executor traces its calls."""
    return settings.calls_dir / f"calls-{role}{index}-{os.getpid()}.jsonl"


async def worker_process(settings: ChildSettings, index: int) -> None:
    """A worker: open the runtime, register the graph, recover what dead runs left
    (``recover(stalled=True)``, as at every start-up), report ready, then take jobs until
    killed."""
    graph = chaos_graph(
        settings.pagerduty,
        calls_file(settings, "worker", index),
        settings.step_seconds,
        settings.effects_dir,
        settings.hold_dir,
    )
    async with open_runtime_retrying(settings) as runtime:
        runtime.register(graph, name=GRAPH_NAME)
        started = time.perf_counter()
        applied = await with_retries(lambda: runtime.recover(stalled=True), seconds=120)
        logging.getLogger("chaos.worker").info(
            "start-up recovery: %d decisions applied in %.1fs",
            len(applied),
            time.perf_counter() - started,
        )
        queue = JobQueue(
            settings.db,
            f"worker{index}:{os.getpid()}",
            size=settings.concurrency + 1,
            claim_seconds=settings.claim_seconds,
        )
        await queue.pool.open()
        print(READY, flush=True)
        try:
            await Worker(runtime, graph, queue, settings.concurrency).run()
        finally:
            await queue.pool.close()


async def monitor_process(settings: ChildSettings, index: int) -> None:
    """An SLA monitor: a sweep every ``sla_interval`` seconds, then ``recover()``."""
    graph = chaos_graph(
        settings.pagerduty,
        calls_file(settings, "monitor", index),
        settings.step_seconds,
        settings.effects_dir,
        settings.hold_dir,
    )
    async with open_runtime_retrying(settings) as runtime:
        runtime.register(graph, name=GRAPH_NAME)
        print(READY, flush=True)
        await SlaMonitor(runtime, interval=settings.sla_interval).run()


@dataclass(frozen=True)
class ChildSettings:
    """What every worker and monitor process of one soak is started with."""

    db: str
    """The soak database's URL (the driver gives each process its own: its
    ``application_name``, and for some workers the PgBouncer in front of the server)."""
    pagerduty: str
    calls_dir: Path
    effects_dir: Path
    """The executors' target (see ``RecordingExecutor``)."""
    hold_dir: Path
    """Where the driver asks a process to hold inside a step (see ``RecordingExecutor``)."""
    concurrency: int
    sla_interval: float
    lease_ttl: float
    step_seconds: float
    claim_seconds: float

    def argv(self, role: Role, index: int) -> list[str]:
        """The command line that starts process ``role`` number ``index``."""
        options = [f"--{f.name.replace('_', '-')}={getattr(self, f.name)}" for f in fields(self)]
        return [sys.executable, str(CHILD_SCRIPT), role, str(index), *options]

    @classmethod
    def parse(cls, argv: Sequence[str]) -> tuple[Role, int, ChildSettings]:
        """The role, index and settings of a command line made by :meth:`argv`."""
        parser = argparse.ArgumentParser(description="a worker or monitor of the chaos soak")
        parser.add_argument("role", choices=("worker", "monitor"))
        parser.add_argument("index", type=int)
        hints = {
            "calls_dir": Path,
            "effects_dir": Path,
            "hold_dir": Path,
            "concurrency": int,
            "db": str,
            "pagerduty": str,
        }
        for f in fields(cls):
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=hints.get(f.name, float))
        args = parser.parse_args(argv)
        settings = cls(**{f.name: getattr(args, f.name) for f in fields(cls)})
        return args.role, args.index, settings


def child_main(argv: Sequence[str] | None = None) -> int:
    """Run one worker or monitor (``python benchmarks/_soak_processes.py worker 0 …``)."""
    role, index, settings = ChildSettings.parse(sys.argv[1:] if argv is None else argv)
    configure_child_logging()
    run = worker_process if role == "worker" else monitor_process
    asyncio.run(run(settings, index))
    return 0


# --------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class Fault:
    """A fault the driver injected: a worker SIGKILLed (``pid``), a worker frozen (a zombie:
    SIGSTOP at ``at``, its sessions ended, SIGCONT at ``until``), or PostgreSQL restarted or
    its connections terminated (from ``at`` to ``until``, epoch seconds)."""

    kind: Literal["kill", "zombie", "pg_restart", "pg_terminate"]
    at: float
    until: float
    pid: int | None = None
    detail: str = ""


def local_cluster_for(url: str) -> tuple[str, str] | None:
    """The ``(version, name)`` of this machine's Debian PostgreSQL cluster serving ``url``
    (from ``pg_lsclusters``), or ``None`` if the server is not one of them."""
    if not is_local_server(url) or shutil.which("pg_lsclusters") is None:
        return None
    port = str(urlsplit(url).port or 5432)
    try:
        listing = subprocess.run(
            ["pg_lsclusters", "--no-header"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == port and fields[3].startswith("online"):
            return fields[0], fields[1]
    return None


def restart_cluster(cluster: tuple[str, str]) -> str:
    """Restart the local PostgreSQL cluster; how long it took, for the report."""
    version, name = cluster
    began = time.perf_counter()
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return f"pg_ctlcluster {version} {name} restart took {time.perf_counter() - began:.1f}s"


def terminate_backends(server: str, database: str) -> str:
    """``pg_terminate_backend`` on every connection to ``database``; how many, for the report."""
    with psycopg.connect(server, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return f"pg_terminate_backend on {sum(1 for r in rows if r[0])} connections"


def process_state(pid: int) -> str:
    """The kernel's one-letter state of ``pid`` (``T``: stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rpartition(")")[2].split()[0]


def freeze(pid: int, within: float = 30.0) -> None:
    """SIGSTOP ``pid`` and wait until the kernel has stopped it."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + within
    while process_state(pid) != "T":
        if time.monotonic() > deadline:
            raise RuntimeError(f"process {pid} did not stop")
        time.sleep(0.005)


def with_application_name(url: str, name: str) -> str:
    """``url`` (a postgresql:// URI) whose sessions show as ``name`` in pg_stat_activity."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    query = [(k, v) for k, v in query if k != "application_name"] + [("application_name", name)]
    return urlunsplit(parts._replace(query=urlencode(query)))


# --------------------------------------------------------------------------- child processes


@dataclass
class Child:
    """One worker or monitor process of the soak."""

    role: Role
    index: int
    proc: subprocess.Popen[str]
    log_path: Path
    application_name: str
    via_pgbouncer: bool = False
    expected_exit: bool = False


class Children:
    """Starts, kills, freezes, restarts and stops the soak's worker and monitor processes.

    ``pgbouncer_db``: the soak database's URL through a PgBouncer; workers numbered in
    ``pgbouncer_workers`` connect through it (every time they start), the others directly.
    """

    def __init__(
        self,
        settings: ChildSettings,
        logs_dir: Path,
        *,
        pgbouncer_db: str | None = None,
        pgbouncer_workers: frozenset[int] = frozenset(),
    ) -> None:
        self.settings = settings
        self.logs_dir = logs_dir
        self.pgbouncer_db = pgbouncer_db
        self.pgbouncer_workers = pgbouncer_workers if pgbouncer_db else frozenset()
        self.current: dict[tuple[Role, int], Child] = {}
        self.every: list[Child] = []
        self.unexpected_exits: list[str] = []

    def spawn(self, role: Role, index: int) -> Child:
        """Start process ``role`` number ``index`` (again, after a kill)."""
        generation = sum(1 for c in self.every if (c.role, c.index) == (role, index))
        log_path = self.logs_dir / f"{role}{index}.{generation}.log"
        via_pgbouncer = role == "worker" and index in self.pgbouncer_workers
        base = self.pgbouncer_db if via_pgbouncer and self.pgbouncer_db else self.settings.db
        name = f"chaos-{role}{index}.{generation}"
        settings = replace(self.settings, db=with_application_name(base, name))
        with open(log_path, "w") as stderr:
            proc = subprocess.Popen(
                settings.argv(role, index),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                cwd=ROOT,
            )
        child = Child(role, index, proc, log_path, name, via_pgbouncer)
        self.current[(role, index)] = child
        self.every.append(child)
        return child

    async def ready(self, child: Child, within: float = 180.0) -> None:
        """Wait (at most ``within`` seconds) for the child's ``READY`` line."""
        assert child.proc.stdout is not None
        stdout = child.proc.stdout

        def read() -> str:
            ready, _, _ = select.select([stdout], [], [], within)
            return stdout.readline() if ready else ""

        line = await asyncio.to_thread(read)
        if line.strip() != READY:
            raise RuntimeError(
                f"{child.role} {child.index} did not start (exit {child.proc.poll()}):\n"
                + tail(child.log_path)
            )

    async def start_all(self, *, workers: int, monitors: int) -> None:
        """Start every process and wait until each is ready."""
        started = [self.spawn("monitor", k) for k in range(monitors)]
        started += [self.spawn("worker", k) for k in range(workers)]
        await asyncio.gather(*(self.ready(c) for c in started))

    def kill_worker(self, index: int) -> int:
        """SIGKILL worker ``index``; its pid."""
        child = self.current[("worker", index)]
        child.expected_exit = True
        child.proc.send_signal(signal.SIGKILL)
        child.proc.wait()
        return child.proc.pid

    async def watch(self) -> None:
        """Restart any process that died without being killed here (and note it)."""
        while True:
            await asyncio.sleep(1.0)
            for (role, index), child in list(self.current.items()):
                code = child.proc.poll()
                if code is None or child.expected_exit:
                    continue
                child.expected_exit = True
                self.unexpected_exits.append(f"{role} {index} exited with {code}")
                log(f"!! {role} {index} exited with {code}; restarting it\n{tail(child.log_path)}")
                restarted = self.spawn(role, index)
                asyncio.get_running_loop().create_task(self.ready(restarted))

    def stop_all(self) -> None:
        for child in self.every:
            child.expected_exit = True
            if child.proc.poll() is None:
                child.proc.terminate()
                with contextlib.suppress(OSError):  # a frozen one must wake to die
                    os.kill(child.proc.pid, signal.SIGCONT)
        for child in self.every:
            try:
                child.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
            if child.proc.stdout is not None:
                child.proc.stdout.close()


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


if __name__ == "__main__":
    sys.exit(child_main())
