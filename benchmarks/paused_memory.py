"""Does a worker's memory grow with the number of incidents waiting for approval? It must not:
paused incidents live in the database, not in the process.

Run from the repository root::

    python benchmarks/paused_memory.py                 # 100, then 10,000 paused incidents
    python benchmarks/paused_memory.py --sizes 100,1000,10000
    python benchmarks/paused_memory.py --smoke         # tiny, for CI

For each size N, a fresh process on a fresh PostgreSQL database (created and dropped here)
opens a runtime, registers ``IncidentGraphBuilder``'s graph with no-op parts (the workload of
``throughput.py``), runs a few warm-up incidents end to end, and records its RSS (after
``gc.collect()``); it then starts N incidents, ``--concurrency`` at a time, each of which pauses
at its approval, and records its RSS again after ``gc.collect()`` — with the runtime still open,
as a worker would be. It also reports the number of objects the garbage collector tracks and
the RSS after asking glibc to return free heap pages (``malloc_trim``), which tells objects
that are kept from memory the allocator merely holds on to. Every size runs in its own process
so the numbers are comparable. Before it exits, the child checks that the database holds N
pending approvals and N paused threads.

The databases of this benchmark run with ``synchronous_commit = off``: only memory is measured
here, and seeding 10,000 incidents should not wait for the disk.

The last line is machine-readable:
``paused_memory rss_mb_100=… rss_mb_10k=… growth=…`` (keys named after the smallest and
largest sizes; growth = RSS at the largest size over RSS at the smallest).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    builder_graph,
    decide_applied,
    default_pool_size,
    emit_result,
    exit_cleanly_on_sigterm,
    fmt,
    fresh_database,
    log,
    malloc_trim,
    peak_rss_mb,
    rss_mb,
    run_child,
    run_phase,
    server_settings,
    server_url,
    set_synchronous_commit_off,
    start_paused,
)


def size_label(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


# --------------------------------------------------------------------------- child


def _settled_rss() -> tuple[float, int]:
    gc.collect()
    gc.collect()
    return rss_mb(), len(gc.get_objects())


async def child(args: argparse.Namespace) -> dict[str, Any]:
    from durable_ir import open_runtime

    async with open_runtime(args.db, pool_size=args.pool_size) as rt:
        graph = builder_graph()
        rt.register(graph)

        start = partial(start_paused, rt, graph)
        decide = partial(decide_applied, rt)

        warm = [f"warm-{i:03d}" for i in range(args.warmup)]
        await run_phase(warm, start, args.concurrency)
        await run_phase(warm, decide, args.concurrency)
        rss_before, objects_before = _settled_rss()

        ids = [f"inc-{i:06d}" for i in range(args.incidents)]
        last_log = time.monotonic()
        done = 0

        async def start_logged(incident: str) -> None:
            nonlocal done, last_log
            await start(incident)
            done += 1
            if time.monotonic() - last_log > 30:
                last_log = time.monotonic()
                log(f"  {done}/{args.incidents} paused, RSS {rss_mb():.0f} MB")

        phase = await run_phase(ids, start_logged, args.concurrency)
        rss_after, objects_after = _settled_rss()
        trimmed = malloc_trim()
        rss_trimmed = rss_mb() if trimmed else None

        sample = await rt.get(ids[-1])
        if sample.status != "awaiting_approval" or sample.pending_approval is None:
            raise AssertionError(f"{ids[-1]} is {sample.status}")
    check_database(args.db, args.incidents)
    return {
        "n": args.incidents,
        "rss_before_mb": rss_before,
        "rss_after_mb": rss_after,
        "rss_trimmed_mb": rss_trimmed,
        "objects_before": objects_before,
        "objects_after": objects_after,
        "peak_rss_mb": peak_rss_mb(),
        "pause_s": phase.wall_s,
        "cpu_ms": phase.cpu_ms_per_incident,
        "rate": phase.rate,
    }


def check_database(db: str, n: int) -> None:
    """The paused incidents are in the database: N pending approvals, N paused threads."""
    import psycopg

    with psycopg.connect(db, autocommit=True, connect_timeout=10) as conn:
        pending = conn.execute(
            "SELECT count(*) FROM durable_ir_approvals"
            " WHERE status = 'pending' AND incident_id LIKE 'inc-%'"
        ).fetchone()
        paused = conn.execute(
            "SELECT count(DISTINCT thread_id) FROM checkpoint_writes"
            " WHERE channel = '__interrupt__' AND thread_id LIKE 'inc-%'"
        ).fetchone()
    found = (int(pending[0]) if pending else 0, int(paused[0]) if paused else 0)
    if found != (n, n):
        raise AssertionError(f"expected {n} pending approvals and paused threads, found {found}")


def child_main(args: argparse.Namespace) -> int:
    result = asyncio.run(child(args))
    emit_result(result)
    return 0


# --------------------------------------------------------------------------- parent


def run_size(n: int, args: argparse.Namespace, server: str) -> dict[str, Any]:
    with fresh_database(server, prefix="durable_ir_bench_paused") as db:
        set_synchronous_commit_off(db)
        argv = [
            str(Path(__file__).resolve()),
            "--child",
            "--db",
            db,
            "--incidents",
            str(n),
            "--concurrency",
            str(args.concurrency),
            "--warmup",
            str(args.warmup),
            "--pool-size",
            str(args.pool_size),
        ]
        return run_child(argv, timeout=600 + 0.5 * n, label=f"{n} paused incidents")


def report(
    results: list[dict[str, Any]], args: argparse.Namespace, settings: dict[str, str]
) -> str:
    out = [
        f"paused_memory: RSS of one worker process before and after pausing N incidents "
        f"(concurrency {args.concurrency}, {args.warmup} warm-up incidents, gc.collect() "
        f"before each reading); PostgreSQL {settings.get('server_version', '?')}",
    ]
    header = (
        f"{'paused':>8}{'RSS before MB':>15}{'RSS after MB':>14}{'after trim MB':>15}"
        f"{'peak MB':>9}{'gc objects before/after':>25}{'paused/s':>10}{'cpu ms/inc':>12}"
        f"{'seconds':>9}"
    )
    out += [header, "-" * len(header)]
    for r in results:
        objects = f"{r['objects_before']}/{r['objects_after']}"
        out.append(
            f"{r['n']:>8}{r['rss_before_mb']:>15.1f}{r['rss_after_mb']:>14.1f}"
            f"{fmt(r['rss_trimmed_mb']):>15}{r['peak_rss_mb']:>9.1f}{objects:>25}"
            f"{r['rate']:>10.1f}{r['cpu_ms']:>12.1f}{r['pause_s']:>9.1f}"
        )
    small, large = results[0], results[-1]
    extra = large["n"] - small["n"]
    per_incident = (large["rss_after_mb"] - small["rss_after_mb"]) * 1024 / extra if extra else 0
    kept = (large["objects_after"] - small["objects_after"]) / extra if extra else 0
    out.append(
        f"from {small['n']} to {large['n']} paused: {per_incident:+.2f} KiB of RSS and "
        f"{kept:+.3f} gc-tracked objects per extra paused incident"
    )
    growth = large["rss_after_mb"] / small["rss_after_mb"]
    out.append(
        f"paused_memory rss_mb_{size_label(small['n'])}={small['rss_after_mb']:.1f} "
        f"rss_mb_{size_label(large['n'])}={large['rss_after_mb']:.1f} growth={growth:.3f}"
    )
    return "\n".join(out)


def parse_sizes(text: str) -> list[int]:
    sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    if len(sizes) < 2 or sizes[0] < 1:
        raise argparse.ArgumentTypeError("give at least two positive sizes")
    return sizes


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", type=parse_sizes, default=[100, 10_000])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--pool-size", type=int, default=None)
    parser.add_argument(
        "--url",
        default=None,
        help="PostgreSQL server URL (default: $DURABLE_IR_BENCH_POSTGRES_URL, else the server "
        "the tests use); a throwaway database per size is created and dropped",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--incidents", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.concurrency, args.warmup = [5, 20], 4, 1
    if args.concurrency < 1 or args.warmup < 0:
        parser.error("--concurrency must be >= 1 and --warmup >= 0")
    if args.pool_size is None:
        args.pool_size = default_pool_size(args.concurrency)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    exit_cleanly_on_sigterm()
    started = time.perf_counter()
    server = server_url(args.url)
    settings = server_settings(server)
    results = []
    for n in args.sizes:
        log(f"pausing {n} incidents in a fresh process …")
        result = run_size(n, args, server)
        results.append(result)
        log(
            f"{n} paused in {result['pause_s']:.1f}s ({result['rate']:.1f}/s): RSS "
            f"{result['rss_before_mb']:.1f} → {result['rss_after_mb']:.1f} MB"
        )
    log(f"total {time.perf_counter() - started:.1f}s")
    print(report(results, args, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
