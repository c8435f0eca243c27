"""Shared helpers for the throughput, scale-out and paused-memory benchmarks.

- where the PostgreSQL server is, and throwaway databases on it (created and dropped here,
  through ``tests/support/postgres.py``);
- the no-op workload: parts for :class:`~durable_ir.IncidentGraphBuilder` that do nothing but
  what the graph needs to take its resolved path (one evidence item, a confident hypothesis
  with one suggested action, an executor and verifier that succeed at once);
- measurement: a phase runner (N calls at concurrency C: wall time, per-call latency, process
  CPU time, SQL statements sent, CPU time of the local PostgreSQL server's processes), RSS,
  percentiles;
- running a benchmark's child process and reading the JSON on its last line.

Nothing here changes the library: statements are counted by wrapping psycopg's and
aiosqlite's ``execute`` methods in the benchmark process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT / "tests", ROOT / "src"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import psycopg  # noqa: E402

from durable_ir import (  # noqa: E402
    AllowList,
    IncidentGraphBuilder,
    StepAction,
    StepContext,
    StepResult,
    Verification,
    VerificationContext,
)
from durable_ir.rca import EventEvidence, EvidenceWindow, Hypothesis  # noqa: E402
from durable_ir.rca.analysis import AnalysisRequest  # noqa: E402
from durable_ir.rca.evidence import Evidence  # noqa: E402
from support.postgres import (  # noqa: E402
    create_database,
    drop_database,
    resolution_errors,
    resolve_server_url,
)

URL_ENV = "DURABLE_IR_BENCH_POSTGRES_URL"
RESULT_PREFIX = "BENCH-RESULT "
"""A child process prints its result as one JSON line starting with this."""

ALERT: dict[str, Any] = {
    "name": "HighErrorRate",
    "service": "checkout",
    "severity": "P1",
    "fired_at": "2026-03-01T12:00:00+00:00",
    "description": "5xx ratio 12% after deploy",
    "labels": {"team": "payments", "env": "prod"},
}
ALLOW = AllowList({"restart": "low"})


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit`` so that ``finally`` blocks run: child processes are
    killed and throwaway databases dropped when a run is stopped."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def log(message: str) -> None:
    """Progress goes to stderr; stdout carries the table and the last line."""
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the workload


class OneEvidenceGatherer:
    """One deploy event on the alert's service, every time."""

    async def gather(self, alert: dict[str, Any], window: EvidenceWindow) -> list[Evidence]:
        return [
            EventEvidence(
                id="ev-1",
                service=str(alert["service"]),
                at=window.start,
                summary="deploy v42 rolled out",
                reason="Deployed",
            )
        ]


class ConfidentAnalyzer:
    """A confident root cause with one suggested action, at the first attempt."""

    async def analyze(self, request: AnalysisRequest) -> Hypothesis:
        return Hypothesis.model_validate(
            {
                "root_cause": "deploy v42 of checkout broke the payment client",
                "fault": "bad_deploy",
                "service": "checkout",
                "confidence": 0.9,
                "cited_evidence": ["ev-1"],
                "remediation": [{"action": "restart", "target": "checkout"}],
            }
        )


class NoopExecutor:
    """Executor and verifier: every step succeeds at once, the service is healthy."""

    async def dry_run(self, step: StepAction, context: StepContext) -> StepResult:
        return StepResult(True, "ok")

    async def apply(self, step: StepAction, context: StepContext) -> StepResult:
        return StepResult(True, "ok")

    async def rollback(self, step: StepAction, context: StepContext) -> StepResult:
        return StepResult(True, "ok")

    async def verify(self, context: VerificationContext) -> Verification:
        return Verification(True, "healthy")


def builder_graph() -> Any:
    """durable-ir's incident graph with the no-op parts (uncompiled)."""
    executor = NoopExecutor()
    return IncidentGraphBuilder(
        gatherer=OneEvidenceGatherer(),
        analyzer=ConfidentAnalyzer(),
        executor=executor,
        verifier=executor,
        allow_list=ALLOW,
    ).build()


async def start_paused(rt: Any, graph: Any, incident: str) -> None:
    """Start ``incident`` on ``graph``; it must come to rest awaiting approval."""
    snapshot = await rt.start(graph, {"alert": ALERT}, incident_id=incident)
    if snapshot.status != "awaiting_approval":
        raise AssertionError(f"{incident} is {snapshot.status}, not awaiting approval")


async def decide_applied(rt: Any, incident: str) -> None:
    """Approve ``incident``; the graph must have received the decision."""
    from durable_ir import Approve

    result = await rt.decide(incident, Approve(by="bench"))
    if not result.applied:
        raise AssertionError(f"the decision on {incident} was not applied")


def default_pool_size(concurrency: int) -> int:
    """Connections per process: each incident in flight holds one for its lock, one to work."""
    return max(20, 2 * concurrency + 4)


# --------------------------------------------------------------------------- PostgreSQL


def server_url(given: str | None) -> str:
    """The server to create throwaway databases on: ``given``, ``$DURABLE_IR_BENCH_POSTGRES_URL``,
    else the one the tests use (127.0.0.1:5432 or an embedded pgserver)."""
    url = given or os.environ.get(URL_ENV)
    if url:
        return url
    url = resolve_server_url()
    if url is None:
        raise SystemExit("no PostgreSQL server: " + "; ".join(resolution_errors()))
    return url


@contextlib.contextmanager
def fresh_database(server: str, prefix: str = "durable_ir_bench") -> Iterator[str]:
    """A new, empty database on ``server`` for the ``with`` block; dropped afterwards."""
    url = create_database(server, prefix=prefix)
    try:
        yield url
    finally:
        try:
            drop_database(url)
        except psycopg.Error as exc:
            log(f"could not drop the benchmark database {url}: {exc}")


def set_synchronous_commit_off(db_url: str) -> None:
    """For runs that only seed data: commits stop waiting for the WAL flush (new sessions)."""
    from psycopg import sql

    from support.postgres import database_name

    with psycopg.connect(db_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(
                sql.Identifier(database_name(db_url))
            )
        )


def server_settings(server: str) -> dict[str, str]:
    """The server settings that bear on commit latency, for the report's header."""
    names = ("server_version", "synchronous_commit", "fsync", "shared_buffers", "max_connections")
    with psycopg.connect(server, autocommit=True, connect_timeout=10) as conn:
        return {name: str(conn.execute(f"SHOW {name}").fetchone()[0]) for name in names}  # type: ignore[index]


def is_local_server(url: str) -> bool:
    """True if the server runs on this machine (so its processes' CPU time can be read)."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    return host in ("", "127.0.0.1", "localhost", "::1") or host.startswith("/")


def postgres_cpu_seconds() -> float | None:
    """User + system CPU time of every ``postgres`` process on this host, including backends
    that have exited (``/proc``), or None where that cannot be read. Includes whatever else
    the server does meanwhile."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    seen = False
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        name = text[text.find("(") + 1 : text.rfind(")")]
        if not name.startswith("postgres"):
            continue
        fields = text[text.rfind(")") + 2 :].split()
        # utime + stime, and cutime + cstime: the postmaster's reaped children (backends that
        # exited meanwhile) keep counting.
        total += sum(int(f) for f in fields[11:15])
        seen = True
    return total / ticks if seen else None


def host_cpu_seconds() -> float | None:
    """CPU time all processes on this host have used (``/proc/stat``: everything but idle and
    iowait), or None where that cannot be read."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- counting SQL


def _statement_key(query: object) -> str:
    if isinstance(query, bytes):
        text = query.decode(errors="replace")
    elif isinstance(query, str):
        text = query
    else:
        try:
            text = query.as_string(None)  # type: ignore[attr-defined]
        except Exception:
            text = type(query).__name__
    text = re.sub(r"\s+", " ", text).strip()
    return text[:110]


class StatementCounter:
    """Counts SQL statements this process sends (psycopg sync and async, aiosqlite), by text.

    ``executemany`` counts one statement per parameter set. Install once per process.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.installed = False

    def install(self) -> None:
        if self.installed:
            return
        self.installed = True
        import aiosqlite

        targets: list[tuple[type[Any], str, bool]] = [
            (psycopg.Cursor, "execute", False),
            (psycopg.Cursor, "executemany", True),
            (psycopg.AsyncCursor, "execute", False),
            (psycopg.AsyncCursor, "executemany", True),
            (aiosqlite.Connection, "execute", False),
            (aiosqlite.Connection, "executemany", True),
            (aiosqlite.Cursor, "execute", False),
            (aiosqlite.Cursor, "executemany", True),
        ]
        for cls, name, many in targets:
            original = getattr(cls, name)
            is_async = asyncio.iscoroutinefunction(original)
            setattr(cls, name, self._wrap(original, many, is_async))

    def _note(self, query: object, params: object, many: bool) -> None:
        n = 1
        if many:
            try:
                n = len(params)  # type: ignore[arg-type]
            except TypeError:
                n = 1
        self.counts[_statement_key(query)] += n

    def _wrap(self, original: Callable[..., Any], many: bool, is_async: bool) -> Any:
        note = self._note
        if is_async:

            @functools.wraps(original)
            async def counted_async(
                obj: Any, query: Any, params: Any = None, *a: Any, **k: Any
            ) -> Any:
                note(query, params, many)
                return await original(obj, query, params, *a, **k)

            return counted_async

        @functools.wraps(original)
        def counted(obj: Any, query: Any, params: Any = None, *a: Any, **k: Any) -> Any:
            note(query, params, many)
            return original(obj, query, params, *a, **k)

        return counted

    def snapshot(self) -> Counter[str]:
        return Counter(self.counts)


COUNTER = StatementCounter()


# --------------------------------------------------------------------------- measuring


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def rss_mb() -> float:
    """Current resident set size of this process, in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (``ru_maxrss``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def malloc_trim() -> bool:
    """Ask glibc to give free heap pages back to the OS; False where there is no glibc."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


@dataclass
class PhaseResult:
    """N calls run at some concurrency: rates, latencies and what they cost."""

    n: int
    wall_s: float
    cpu_s: float
    latencies_ms: list[float] = field(repr=False)
    statements: dict[str, int] = field(default_factory=dict, repr=False)
    db_cpu_s: float | None = None
    host_cpu_s: float | None = None

    @property
    def rate(self) -> float:
        return self.n / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99)

    @property
    def cpu_ms_per_incident(self) -> float:
        return self.cpu_s / self.n * 1000

    @property
    def db_cpu_ms_per_incident(self) -> float | None:
        return None if self.db_cpu_s is None else self.db_cpu_s / self.n * 1000

    @property
    def other_cores(self) -> float | None:
        """Cores that other processes on this host (neither this one nor PostgreSQL's, when
        measured) kept busy on average during the phase: a sign of a disturbed measurement."""
        if self.host_cpu_s is None or self.wall_s <= 0:
            return None
        other = self.host_cpu_s - self.cpu_s - (self.db_cpu_s or 0.0)
        return max(0.0, other) / self.wall_s

    @property
    def statements_per_incident(self) -> float:
        return sum(self.statements.values()) / self.n

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PhaseResult:
        return cls(**data)


async def run_phase(
    items: Iterable[str],
    call: Callable[[str], Awaitable[object]],
    concurrency: int,
    *,
    measure_db_cpu: bool = False,
) -> PhaseResult:
    """Run ``call(item)`` for every item, ``concurrency`` at a time, and measure it (with
    ``measure_db_cpu``, the local server's CPU time)."""
    todo = list(items)
    it = iter(todo)
    latencies: list[float] = []

    async def worker() -> None:
        for item in it:  # one shared iterator: each item is taken by exactly one worker
            began = time.perf_counter()
            await call(item)
            latencies.append((time.perf_counter() - began) * 1000)

    gc.collect()
    before = COUNTER.snapshot()
    db_before = postgres_cpu_seconds() if measure_db_cpu else None
    host_before = host_cpu_seconds()
    cpu_before = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(todo))))))
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    host_after = host_cpu_seconds()
    db_after = postgres_cpu_seconds() if measure_db_cpu else None
    statements = COUNTER.snapshot()
    statements.subtract(before)
    return PhaseResult(
        n=len(todo),
        wall_s=wall,
        cpu_s=cpu,
        latencies_ms=latencies,
        statements={k: v for k, v in statements.items() if v > 0},
        db_cpu_s=None if db_before is None or db_after is None else db_after - db_before,
        host_cpu_s=None if host_before is None or host_after is None else host_after - host_before,
    )


# --------------------------------------------------------------------------- child processes


def emit_result(result: dict[str, Any]) -> None:
    """A child's last stdout line: its result as JSON."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_child(argv: Sequence[str], *, timeout: float, label: str) -> dict[str, Any]:
    """Run ``python argv…`` and return the JSON result it printed; its stderr is shown only
    if it fails."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT / "tests"), str(ROOT / "src"), env.get("PYTHONPATH")])
    )
    env.setdefault("PYTHONHASHSEED", "0")
    proc = subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    results = [
        line[len(RESULT_PREFIX) :]
        for line in proc.stdout.splitlines()
        if line.startswith(RESULT_PREFIX)
    ]
    if proc.returncode != 0 or not results:
        sys.stderr.write(proc.stderr[-6000:])
        raise RuntimeError(f"{label}: child exited with status {proc.returncode} and no result")
    return dict(json.loads(results[-1]))


def disturbed(other_cores: float) -> str:
    """The end of the report line on other load: whether it makes the numbers suspect."""
    if other_cores < 0.15:
        return ": quiet enough."
    return ": the machine was busy with other work, the numbers are disturbed (run again)."


def fmt(value: float | None, spec: str = ".1f") -> str:
    """A number for a table cell; '-' when there is none."""
    if value is None or value != value:  # None or NaN
        return "-"
    return format(value, spec)
