"""Does a second worker process add throughput? The same durable-ir workload with 1 and then 2
worker processes against one PostgreSQL database.

Run from the repository root::

    python benchmarks/scale_out.py                    # 240 incidents per configuration, 2 rounds
    python benchmarks/scale_out.py --incidents 600 --repeat 2
    python benchmarks/scale_out.py --smoke            # tiny, for CI

For each configuration (1 worker, then 2), a fresh database is created on the server and
dropped afterwards. Each worker is its own process: it opens a runtime on that database,
registers the incident graph of ``IncidentGraphBuilder`` with no-op parts (the same workload as
``throughput.py``: one evidence item, a confident hypothesis with one suggested action, an
executor and verifier that succeed at once), runs an ``SlaMonitor`` (``--sla-interval``
seconds between sweeps, each sweep followed by ``recover()``, as in production), warms up with
a few incidents of its own, and waits. When every worker is ready, all are told to go at once;
each then takes its share of the incidents, ``--concurrency`` at a time, through the whole life
cycle: ``Runtime.start`` (alert→pause) and then ``Runtime.decide(Approve)`` (decide→end).

Throughput is all incidents over the time from "go" to the last worker's last incident. Also
shown: the p50/p99 of one incident's life cycle, worker CPU time per incident (all workers'
``time.process_time``), CPU time of the local server's ``postgres`` processes per incident,
and SQL statements per incident. At the end every incident must be closed as resolved.

The last line is machine-readable:
``scale_out workers1_per_s=… workers2_per_s=… scaling=…`` (scaling = 2 workers over 1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    COUNTER,
    RESULT_PREFIX,
    ROOT,
    builder_graph,
    decide_applied,
    default_pool_size,
    disturbed,
    emit_result,
    exit_cleanly_on_sigterm,
    fmt,
    fresh_database,
    host_cpu_seconds,
    is_local_server,
    log,
    peak_rss_mb,
    percentile,
    postgres_cpu_seconds,
    run_phase,
    server_settings,
    server_url,
    start_paused,
)

READY = "READY"


# --------------------------------------------------------------------------- worker


async def worker(args: argparse.Namespace) -> dict[str, Any]:
    from durable_ir import SlaMonitor, open_runtime

    async with open_runtime(args.db, pool_size=args.pool_size) as rt:
        graph = builder_graph()
        rt.register(graph)
        monitor = asyncio.create_task(SlaMonitor(rt, interval=args.sla_interval).run())

        async def lifecycle(incident: str) -> None:
            await start_paused(rt, graph, incident)
            await decide_applied(rt, incident)

        try:
            warm = [f"warm-w{args.index}-{i:04d}" for i in range(args.warmup)]
            if warm:
                await run_phase(warm, lifecycle, args.concurrency)
            print(READY, flush=True)
            # Wait for the parent's "go" without blocking the loop (the monitor keeps running).
            line = await asyncio.to_thread(sys.stdin.readline)
            if line.strip() != "go":
                raise SystemExit(f"worker {args.index}: expected 'go', got {line!r}")
            began = time.time()
            ids = [f"inc-w{args.index}-{i:06d}" for i in range(args.incidents)]
            phase = await run_phase(ids, lifecycle, args.concurrency)
            ended = time.time()
        finally:
            monitor.cancel()
            await asyncio.gather(monitor, return_exceptions=True)
    return {"began": began, "ended": ended, "phase": phase.to_json()}


def worker_main(args: argparse.Namespace) -> int:
    COUNTER.install()
    result = asyncio.run(worker(args))
    result["peak_rss_mb"] = peak_rss_mb()
    emit_result(result)
    return 0


# --------------------------------------------------------------------------- parent


def _read_line(stream: IO[str], timeout: float, what: str) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise TimeoutError(f"no {what} within {timeout:.0f}s")
    return stream.readline()


def _tail(stream: IO[str], chars: int = 4000) -> str:
    stream.seek(0)
    return stream.read()[-chars:]


def _kill_all(procs: list[tuple[subprocess.Popen[str], IO[str]]]) -> None:
    for proc, _ in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def run_configuration(
    workers: int, args: argparse.Namespace, server: str, round_no: int
) -> dict[str, Any]:
    """``workers`` processes on one fresh database; returns the aggregate."""
    shares = [args.incidents // workers + (k < args.incidents % workers) for k in range(workers)]
    with (
        fresh_database(server, prefix=f"durable_ir_bench_scale{workers}") as db,
        contextlib.ExitStack() as stack,
    ):
        procs: list[tuple[subprocess.Popen[str], IO[str]]] = []
        stack.callback(_kill_all, procs)
        for index, share in enumerate(shares):
            stderr_file: IO[str] = stack.enter_context(tempfile.TemporaryFile("w+"))
            argv = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--worker",
                "--db",
                db,
                "--index",
                str(index),
                "--incidents",
                str(share),
                "--concurrency",
                str(args.concurrency),
                "--warmup",
                str(args.warmup),
                "--sla-interval",
                str(args.sla_interval),
                "--pool-size",
                str(args.pool_size),
            ]
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr_file,
                text=True,
                bufsize=1,
                cwd=ROOT,
            )
            procs.append((proc, stderr_file))
        for proc, stderr_file in procs:
            assert proc.stdout is not None
            line = _read_line(proc.stdout, 300, "READY from a worker")
            if line.strip() != READY:
                raise RuntimeError(f"a worker failed to start: {line!r}\n{_tail(stderr_file)}")
        db_cpu_before = postgres_cpu_seconds() if is_local_server(db) else None
        host_before = host_cpu_seconds()
        go = time.perf_counter()
        for proc, _ in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc, stderr_file in procs:
            out, _ = proc.communicate(timeout=600 + 5.0 * args.incidents)
            found = [ln for ln in out.splitlines() if ln.startswith(RESULT_PREFIX)]
            if proc.returncode != 0 or not found:
                raise RuntimeError(f"a worker exited with {proc.returncode}:\n{_tail(stderr_file)}")
            results.append(json.loads(found[-1][len(RESULT_PREFIX) :]))
        db_cpu_after = postgres_cpu_seconds() if db_cpu_before is not None else None
        host_after = host_cpu_seconds()
        window = time.perf_counter() - go
        resolved = _count_resolved(db)
    expected = args.incidents + workers * args.warmup
    if resolved != expected:
        raise AssertionError(f"{resolved} incidents closed as resolved, expected {expected}")
    wall = max(r["ended"] for r in results) - min(r["began"] for r in results)
    phases = [r["phase"] for r in results]
    latencies = [v for p in phases for v in p["latencies_ms"]]
    statements = sum(sum(p["statements"].values()) for p in phases)
    db_cpu_s = (
        None if db_cpu_after is None or db_cpu_before is None else db_cpu_after - db_cpu_before
    )
    other_cores = None
    if host_before is not None and host_after is not None and window > 0:
        own = sum(p["cpu_s"] for p in phases) + (db_cpu_s or 0.0)
        other_cores = max(0.0, host_after - host_before - own) / window
    return {
        "workers": workers,
        "other_cores": other_cores,
        "round": round_no,
        "n": args.incidents,
        "wall_s": wall,
        "rate": args.incidents / wall,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "latencies_ms": latencies,
        "cpu_ms": sum(p["cpu_s"] for p in phases) / args.incidents * 1000,
        "db_cpu_ms": None if db_cpu_s is None else db_cpu_s / args.incidents * 1000,
        "statements": statements / args.incidents,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
        "per_worker_rate": [p["n"] / p["wall_s"] for p in phases],
    }


def _count_resolved(db: str) -> int:
    import psycopg

    with psycopg.connect(db, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT count(*) FROM durable_ir_incidents WHERE status = 'closed'"
            " AND outcome = 'resolved'"
        ).fetchone()
    return int(row[0]) if row else 0


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def report(runs: list[dict[str, Any]], args: argparse.Namespace, settings: dict[str, str]) -> str:
    out = [
        f"scale_out: {args.incidents} incidents per configuration (alert→pause→decide→end "
        f"each), concurrency {args.concurrency} per worker, {args.warmup} warm-up incidents "
        f"per worker, SlaMonitor every {args.sla_interval}s in each worker, {args.repeat} "
        f"round(s); PostgreSQL {settings.get('server_version', '?')}, "
        f"synchronous_commit={settings.get('synchronous_commit', '?')}; CPU cores here: "
        f"{__import__('os').cpu_count()}",
    ]
    header = (
        f"{'workers':>7}{'incidents/s':>13}{'wall s':>8}{'per worker /s':>15}"
        f"{'life p50/p99 ms':>18}{'worker cpu ms/inc':>19}{'db cpu ms/inc':>15}"
        f"{'stmts/inc':>11}{'peak MB':>9}"
    )
    out += [header, "-" * len(header)]
    rates: dict[int, float] = {}
    for workers in (1, 2):
        mine = [r for r in runs if r["workers"] == workers]
        rate = statistics.median(r["rate"] for r in mine)
        rates[workers] = rate
        latencies = [v for r in mine for v in r["latencies_ms"]]
        per_worker = " ".join(f"{v:.1f}" for v in mine[-1]["per_worker_rate"])
        p50, p99 = fmt(percentile(latencies, 50), ".0f"), fmt(percentile(latencies, 99), ".0f")
        out.append(
            f"{workers:>7}{rate:>13.2f}{statistics.median(r['wall_s'] for r in mine):>8.1f}"
            f"{per_worker:>15}"
            f"{p50 + '/' + p99:>18}"
            f"{fmt(_median([r['cpu_ms'] for r in mine])):>19}"
            f"{fmt(_median([r['db_cpu_ms'] for r in mine])):>15}"
            f"{fmt(_median([r['statements'] for r in mine]), '.0f'):>11}"
            f"{fmt(_median([r['peak_rss_mb'] for r in mine]), '.0f'):>9}"
        )
    out.append(
        "incidents/s = all incidents / (go → last incident ended); per worker = its share / its "
        "own time (last round); cpu and statements per incident, summed over workers; db cpu "
        "(all postgres processes here) is server-wide, from go until the workers exit."
    )
    others = [r["other_cores"] for r in runs if r["other_cores"] is not None]
    if others:
        out.append(
            f"other processes on this host kept about {statistics.mean(others):.2f} cores busy "
            f"during the runs (max {max(others):.2f}){disturbed(statistics.mean(others))}"
        )
    scaling = rates[2] / rates[1]
    out.append(
        f"scale_out workers1_per_s={rates[1]:.2f} workers2_per_s={rates[2]:.2f} "
        f"scaling={scaling:.2f}"
    )
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=240, help="per configuration")
    parser.add_argument("--concurrency", type=int, default=8, help="per worker")
    parser.add_argument("--warmup", type=int, default=5, help="incidents per worker, unmeasured")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of (1 worker, 2 workers)")
    parser.add_argument("--sla-interval", type=float, default=1.0, help="seconds between sweeps")
    parser.add_argument("--pool-size", type=int, default=None, help="connections per worker")
    parser.add_argument(
        "--url",
        default=None,
        help="PostgreSQL server URL (default: $DURABLE_IR_BENCH_POSTGRES_URL, else the server "
        "the tests use); a throwaway database per configuration is created and dropped",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.incidents, args.concurrency, args.warmup, args.repeat = 8, 2, 1, 1
    if args.incidents < 2 or args.concurrency < 1 or args.repeat < 1 or args.warmup < 0:
        parser.error("--incidents >= 2, --concurrency >= 1, --repeat >= 1, --warmup >= 0")
    if args.sla_interval <= 0:
        parser.error("--sla-interval must be positive")
    if args.pool_size is None:
        args.pool_size = default_pool_size(args.concurrency)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args)
    exit_cleanly_on_sigterm()
    started = time.perf_counter()
    server = server_url(args.url)
    settings = server_settings(server)
    runs: list[dict[str, Any]] = []
    for round_no in range(args.repeat):
        order = (1, 2) if round_no % 2 == 0 else (2, 1)
        for workers in order:
            run = run_configuration(workers, args, server, round_no)
            runs.append(run)
            log(
                f"round {round_no + 1}/{args.repeat}, {workers} worker(s): "
                f"{run['rate']:.1f} incidents/s over {run['wall_s']:.1f}s"
            )
    log(f"total {time.perf_counter() - started:.1f}s")
    print(report(runs, args, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
