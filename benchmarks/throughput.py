"""Incidents per second through durable-ir, against the same graph in bare LangGraph and the same
shape as a DBOS workflow.

Run from the repository root::

    python benchmarks/throughput.py                                  # postgres, 150 incidents
    python benchmarks/throughput.py --store sqlite --incidents 300 --concurrency 8
    python benchmarks/throughput.py --statements                     # + SQL per incident
    python benchmarks/throughput.py --synchronous-commit off         # no wait for WAL flush
    python benchmarks/throughput.py --smoke                          # tiny, for CI

One run measures the same workload three ways (four on PostgreSQL), each in a fresh process
and a fresh database (PostgreSQL: a throwaway database on the server, dropped afterwards;
SQLite: a file in a temporary directory):

- **hand-written**: a LangGraph graph with exactly the nodes, subgraph and routes of
  durable-ir's incident graph (checked at start-up), no-op node bodies and an ``interrupt()``
  approval node, on LangGraph's own saver with the connections durable-ir configures
  (PostgreSQL: an ``AsyncConnectionPool`` with ``autocommit``, ``dict_row``,
  ``prepare_threshold=None`` and ``AsyncPostgresSaver``, as a team writes it by hand; SQLite:
  ``aiosqlite`` in WAL mode and ``AsyncSqliteSaver``, which durable-ir uses too). Started
  with ``ainvoke(alert)``, resumed with ``ainvoke(Command(resume=…))``, ``durability="sync"``.
- **hand-written, our saver** (PostgreSQL): the same hand-written graph on durable-ir's
  ``InlineSerdePostgresSaver`` instead of ``AsyncPostgresSaver`` (same pool settings), to
  tell what the saver saves from what durable-ir's own layer costs.
- **ours**: ``IncidentGraphBuilder`` with no-op parts (one evidence item, a confident
  hypothesis with one suggested action, an executor and verifier that succeed at once): the
  real approval node, ledger, incident index, locks and SLA registration. Started with
  ``Runtime.start`` and decided with ``Runtime.decide(Approve)``.
- **dbos** (PostgreSQL, when the ``dbos`` package is installed: ``pip install -e .[bench]``):
  the same shape as a DBOS workflow on the same server, in its own database: one step per
  node, ``DBOS.set_event`` to publish the approval request, ``DBOS.recv`` to wait for the
  decision, ``DBOS.send`` to decide.

Every incident takes the resolved path: alert → ingest → triage → rca (gather_evidence,
analyze, conclude) → plan → dry_run → approval (pause) | decision → approval → apply → verify
→ resolve → summarize. Each variant first runs ``--warmup`` incidents end to end, then
measures two phases, each over ``--incidents`` incidents at ``--concurrency``:

- **alert→pause**: start every incident until it waits for approval;
- **decide→end**: decide every one of them (approve) until its run ends.

For each phase: rate (incidents/s), p50 and p99 latency of one call, process CPU time per
incident (``time.process_time``, all threads), SQL statements sent per incident (psycopg and
aiosqlite ``execute`` calls, ``executemany`` counted per parameter set), and — for a server on
this machine — the CPU time of all ``postgres`` processes per incident. **alert→end** is the
rate of the whole life cycle, ``N / (pause time + decide time)``. Peak RSS is the child
process's ``ru_maxrss``. The variants run ``--repeat`` times, interleaved (the order rotates
each round); the table shows medians over rounds (latency percentiles over all rounds' calls),
and ``ratio`` is the median of each round's ours / hand-written alert→end rate. A line
under the table says how many cores other processes on the host kept busy meanwhile: well
above zero, the numbers are disturbed and the run should be repeated.

The last line is machine-readable:
``throughput store=… incidents=… ours_per_s=… handwritten_per_s=… ratio=… decide_p50_ms=…
handwritten_resume_p50_ms=… dbos_per_s=…`` (``dbos_per_s=n/a`` when DBOS was skipped).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import operator
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ALERT,
    COUNTER,
    PhaseResult,
    builder_graph,
    decide_applied,
    default_pool_size,
    disturbed,
    emit_result,
    exit_cleanly_on_sigterm,
    fmt,
    fresh_database,
    is_local_server,
    log,
    peak_rss_mb,
    percentile,
    run_child,
    run_phase,
    server_settings,
    server_url,
    set_synchronous_commit_off,
    start_paused,
)
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

VARIANTS = ("handwritten", "handwritten_inline", "ours", "dbos")
LABELS = {
    "handwritten": "hand-written LangGraph",
    "handwritten_inline": "hand-written, our saver",
    "ours": "durable-ir",
    "dbos": "DBOS",
}
Variant = Literal["handwritten", "handwritten_inline", "ours", "dbos"]


# --------------------------------------------------------------------------- hand-written graph


class HandState(TypedDict, total=False):
    """The keys the no-op nodes need to take the same routes as durable-ir's graph."""

    alert: dict[str, Any]
    rca_attempts: Annotated[list[dict[str, Any]], operator.add]
    rca: dict[str, Any]
    plan: dict[str, Any] | None
    approval: dict[str, Any]
    applied_steps: Annotated[list[dict[str, Any]], operator.add]
    rolled_back: Annotated[list[dict[str, Any]], operator.add]
    verification: dict[str, Any]
    outcome: dict[str, Any]


Update = dict[str, Any]


def _noop(state: HandState) -> Update:
    return {}


def _analyze(state: HandState) -> Update:
    return {"rca_attempts": [{"confidence": 0.9}]}


def _assess(state: HandState) -> str:
    attempts = state.get("rca_attempts") or []
    if attempts and attempts[-1]["confidence"] >= 0.7:
        return "conclude"
    return "gather_evidence" if len(attempts) < 3 else "conclude"


def _conclude(state: HandState) -> Update:
    return {"rca": {"status": "confident"}}


def _plan(state: HandState) -> Update:
    return {"plan": {"steps": [{"action": "restart", "target": "checkout"}]}}


def _approval(state: HandState) -> Update:
    answer = interrupt({"plan": state.get("plan")})
    return {"approval": {"status": answer.get("status") if isinstance(answer, dict) else None}}


def _apply(state: HandState) -> Update:
    return {"applied_steps": [{"ok": True}]}


def _rollback(state: HandState) -> Update:
    return {"rolled_back": [{"ok": True}]}


def _verify(state: HandState) -> Update:
    return {"verification": {"ok": True}}


def _resolve(state: HandState) -> Update:
    return {"outcome": {"status": "resolved"}}


def _escalate(state: HandState) -> Update:
    return {"outcome": {"status": "escalated"}}


def _route_rca(state: HandState) -> str:
    return "confident" if (state.get("rca") or {}).get("status") == "confident" else "escalate"


def _route_plan(state: HandState) -> str:
    return "dry_run" if state.get("plan") else "escalate"


def _route_dry_run(state: HandState) -> str:
    return "approval"


def _stand_down(state: HandState) -> Update:
    return {"outcome": {"status": "alert_resolved"}}


def _route_approval(state: HandState) -> str:
    approval = state.get("approval") or {}
    status = approval.get("status")
    if status == "expired" and approval.get("reason") == "alert_resolved":
        return "alert_resolved"
    return status if status in ("approved", "rejected", "expired") else "rejected"


def _route_apply(state: HandState) -> str:
    done = state.get("applied_steps") or []
    if done and not done[-1]["ok"]:
        return "rollback" if any(r["ok"] for r in done) else "escalate"
    steps = (state.get("plan") or {}).get("steps") or []
    return "apply" if len(done) < len(steps) else "verify"


def _route_rollback(state: HandState) -> str:
    return "escalate"


def _route_verify(state: HandState) -> str:
    return "resolve" if (state.get("verification") or {}).get("ok") else "escalate"


def handwritten_graph() -> StateGraph[Any, Any, Any, Any]:
    """durable-ir's incident graph, node for node and route for route, with no-op bodies."""
    rca: StateGraph[Any, Any, Any, Any] = StateGraph(HandState)
    rca.add_node("gather_evidence", _noop)
    rca.add_node("analyze", _analyze)
    rca.add_node("conclude", _conclude)
    rca.add_edge(START, "gather_evidence")
    rca.add_edge("gather_evidence", "analyze")
    rca.add_conditional_edges("analyze", _assess, ["gather_evidence", "conclude"])
    rca.add_edge("conclude", END)

    graph: StateGraph[Any, Any, Any, Any] = StateGraph(HandState)
    nodes: dict[str, Any] = {
        "ingest": _noop,
        "triage": _noop,
        "rca": rca.compile(name="rca"),
        "plan": _plan,
        "dry_run": _noop,
        "approval": _approval,
        "apply": _apply,
        "rollback": _rollback,
        "verify": _verify,
        "resolve": _resolve,
        "escalate": _escalate,
        "stand_down": _stand_down,
        "summarize": _noop,
    }
    for name, node in nodes.items():
        graph.add_node(name, node)
    graph.add_edge(START, "ingest")
    graph.add_edge("ingest", "triage")
    graph.add_edge("triage", "rca")
    graph.add_edge("resolve", "summarize")
    graph.add_edge("escalate", "summarize")
    graph.add_edge("stand_down", "summarize")
    graph.add_edge("summarize", END)
    routes: dict[str, tuple[Callable[[HandState], str], dict[str, str]]] = {
        "rca": (_route_rca, {"confident": "plan", "escalate": "escalate"}),
        "plan": (_route_plan, {"dry_run": "dry_run", "escalate": "escalate"}),
        "dry_run": (_route_dry_run, {"approval": "approval", "escalate": "escalate"}),
        "approval": (
            _route_approval,
            {
                "approved": "apply",
                "rejected": "escalate",
                "expired": "escalate",
                "alert_resolved": "stand_down",
            },
        ),
        "apply": (
            _route_apply,
            {"apply": "apply", "rollback": "rollback", "verify": "verify", "escalate": "escalate"},
        ),
        "rollback": (_route_rollback, {"rollback": "rollback", "escalate": "escalate"}),
        "verify": (_route_verify, {"resolve": "resolve", "escalate": "escalate"}),
    }
    for source, (route, targets) in routes.items():
        graph.add_conditional_edges(source, route, dict(targets))  # type: ignore[arg-type]
    return graph


def graph_shape(graph: StateGraph[Any, Any, Any, Any]) -> dict[str, Any]:
    """Nodes, edges and subgraph nodes of an uncompiled graph, comparable across graphs."""
    compiled = graph.compile()
    drawn = compiled.get_graph(xray=1)
    return {
        "nodes": sorted(graph.nodes),
        "edges": sorted((e.source, e.target, bool(e.conditional)) for e in drawn.edges),
    }


def check_same_shape() -> str:
    """Fail unless the hand-written graph mirrors durable-ir's; describe the shape."""
    ours, hand = graph_shape(builder_graph()), graph_shape(handwritten_graph())
    if ours != hand:
        raise SystemExit(
            "the hand-written graph no longer mirrors durable-ir's incident graph:\n"
            f"  ours: {ours}\n  hand-written: {hand}"
        )
    ends = ("__start__", "__end__")
    names = {n for s, t, _ in ours["edges"] for n in (s, t)}
    sub = {n.split(":", 1)[1] for n in names if ":" in n} - set(ends)
    return f"{len(ours['nodes'])} nodes + {len(sub)} in the rca subgraph"


# --------------------------------------------------------------------------- child: one variant


def incident_ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:06d}" for i in range(n)]


async def _measure(
    args: argparse.Namespace,
    start: Callable[[str], Any],
    decide: Callable[[str], Any],
) -> dict[str, Any]:
    """Warm up, then the two phases."""
    warm = incident_ids("warm", args.warmup)
    if warm:
        await run_phase(warm, start, args.concurrency)
        await run_phase(warm, decide, args.concurrency)
    ids = incident_ids("inc", args.incidents)
    db_cpu = args.store == "postgres" and is_local_server(args.db)
    pause = await run_phase(ids, start, args.concurrency, measure_db_cpu=db_cpu)
    end = await run_phase(ids, decide, args.concurrency, measure_db_cpu=db_cpu)
    return {"pause": pause.to_json(), "decide": end.to_json(), "sample": ids[0]}


def _checkpoint_rows(args: argparse.Namespace, thread: str) -> dict[str, int]:
    """Checkpoints (root and subgraph namespaces), writes, and the bytes the saver stored for
    ``thread`` (checkpoints with their metadata, channel blobs, pending writes)."""
    if args.store == "postgres":
        queries = {
            "root": "SELECT count(*) FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = ''",
            "subgraph": "SELECT count(*) FROM checkpoints"
            " WHERE thread_id = %s AND checkpoint_ns <> ''",
            "writes": "SELECT count(*) FROM checkpoint_writes WHERE thread_id = %s",
            "bytes": "SELECT (SELECT coalesce(sum(length(checkpoint::text)"
            " + length(metadata::text)), 0) FROM checkpoints WHERE thread_id = %(t)s)"
            " + (SELECT coalesce(sum(length(blob)), 0) FROM checkpoint_blobs"
            " WHERE thread_id = %(t)s)"
            " + (SELECT coalesce(sum(length(blob)), 0) FROM checkpoint_writes"
            " WHERE thread_id = %(t)s)",
        }
        import psycopg

        found: dict[str, int] = {}
        with psycopg.connect(args.db, autocommit=True) as conn:
            for key, query in queries.items():
                params: Any = {"t": thread} if key == "bytes" else (thread,)
                row = conn.execute(query, params).fetchone()
                found[key] = int(row[0]) if row else 0
        return found
    lite = {
        "root": "SELECT count(*) FROM checkpoints WHERE thread_id = :t AND checkpoint_ns = ''",
        "subgraph": "SELECT count(*) FROM checkpoints WHERE thread_id = :t AND checkpoint_ns <> ''",
        "writes": "SELECT count(*) FROM writes WHERE thread_id = :t",
        "bytes": "SELECT (SELECT coalesce(sum(length(checkpoint) + length(metadata)), 0)"
        " FROM checkpoints WHERE thread_id = :t)"
        " + (SELECT coalesce(sum(length(value)), 0) FROM writes WHERE thread_id = :t)",
    }
    with contextlib.closing(sqlite3.connect(args.db)) as lite_conn:
        return {
            key: int(lite_conn.execute(query, {"t": thread}).fetchone()[0])
            for key, query in lite.items()
        }


async def child_ours(args: argparse.Namespace) -> dict[str, Any]:
    from durable_ir import open_runtime

    url = args.db if args.store == "postgres" else f"sqlite:///{args.db}"
    async with open_runtime(url, pool_size=args.pool_size) as rt:
        graph = builder_graph()
        rt.register(graph)

        start = partial(start_paused, rt, graph)
        decide = partial(decide_applied, rt)

        result = await _measure(args, start, decide)
        final = await rt.get(result["sample"])
        outcome = (final.values.get("outcome") or {}).get("status")
        if final.status != "finished" or outcome != "resolved":
            raise AssertionError(f"{result['sample']} ended {final.status}/{outcome}")
    result["rows"] = _checkpoint_rows(args, result["sample"])
    return result


async def child_handwritten(args: argparse.Namespace) -> dict[str, Any]:
    from langgraph.checkpoint.base import BaseCheckpointSaver

    graph = handwritten_graph()
    async with _saver(args) as saver:
        compiled = graph.compile(checkpointer=saver)

        def config(incident: str) -> Any:
            return {"configurable": {"thread_id": incident}}

        async def start(incident: str) -> None:
            out = await compiled.ainvoke({"alert": ALERT}, config(incident), durability="sync")
            if "__interrupt__" not in out:
                raise AssertionError(f"{incident} did not pause")

        async def decide(incident: str) -> None:
            out = await compiled.ainvoke(
                Command(resume={"status": "approved", "by": "bench"}),
                config(incident),
                durability="sync",
            )
            if (out.get("outcome") or {}).get("status") != "resolved":
                raise AssertionError(f"{incident} ended {out.get('outcome')}")

        assert isinstance(saver, BaseCheckpointSaver)
        result = await _measure(args, start, decide)
    result["rows"] = _checkpoint_rows(args, result["sample"])
    return result


class _saver:
    """The hand-written graph's saver: LangGraph's own (or, for ``handwritten_inline``,
    durable-ir's ``InlineSerdePostgresSaver``) on connections configured as ``open_store``
    configures them (written out here, so that the baseline does not move when the library's
    own settings change)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._close: list[Callable[[], Any]] = []

    async def __aenter__(self) -> Any:
        if self.args.store == "postgres":
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
            from psycopg.rows import dict_row
            from psycopg_pool import AsyncConnectionPool

            from durable_ir import InlineSerdePostgresSaver

            pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                self.args.db,
                min_size=1,
                max_size=self.args.pool_size,
                open=False,
                timeout=30,
                kwargs={"autocommit": True, "row_factory": dict_row, "prepare_threshold": None},
            )
            await pool.open(wait=True, timeout=30)
            self._close.append(pool.close)
            saver: Any = (
                InlineSerdePostgresSaver(conn=pool)
                if self.args.child == "handwritten_inline"
                else AsyncPostgresSaver(conn=pool)
            )
        else:
            import aiosqlite
            from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

            conn = await aiosqlite.connect(self.args.db, isolation_level="")
            await conn.executescript("PRAGMA busy_timeout = 30000;")
            await conn.executescript("PRAGMA journal_mode = WAL;")
            self._close.append(conn.close)
            saver = AsyncSqliteSaver(conn)
        await saver.setup()
        return saver

    async def __aexit__(self, *exc: object) -> None:
        for close in reversed(self._close):
            await close()


async def child_dbos(args: argparse.Namespace) -> dict[str, Any]:
    from dbos import DBOS, DBOSConfig, SetWorkflowID

    # One step per node of the incident graph; rca's three nodes are three steps.
    @DBOS.step()
    async def ingest(alert: dict[str, Any]) -> dict[str, Any]:
        return {}

    @DBOS.step()
    async def triage(alert: dict[str, Any]) -> dict[str, Any]:
        return {}

    @DBOS.step()
    async def gather_evidence(alert: dict[str, Any]) -> dict[str, Any]:
        return {}

    @DBOS.step()
    async def analyze(alert: dict[str, Any]) -> dict[str, Any]:
        return {"confidence": 0.9}

    @DBOS.step()
    async def conclude(attempt: dict[str, Any]) -> dict[str, Any]:
        return {"status": "confident" if attempt["confidence"] >= 0.7 else "exhausted"}

    @DBOS.step()
    async def plan(rca: dict[str, Any]) -> dict[str, Any]:
        return {"steps": [{"action": "restart", "target": "checkout"}]}

    @DBOS.step()
    async def dry_run(plan: dict[str, Any]) -> dict[str, Any]:
        return {}

    @DBOS.step()
    async def apply(step: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True}

    @DBOS.step()
    async def verify(plan: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True}

    @DBOS.step()
    async def resolve(plan: dict[str, Any]) -> dict[str, Any]:
        return {"status": "resolved"}

    @DBOS.step()
    async def escalate(reason: str) -> dict[str, Any]:
        return {"status": "escalated"}

    @DBOS.step()
    async def summarize(outcome: dict[str, Any]) -> dict[str, Any]:
        return {}

    @DBOS.workflow()
    async def incident_workflow(alert: dict[str, Any]) -> dict[str, Any]:
        await ingest(alert)
        await triage(alert)
        attempt: dict[str, Any] = {"confidence": 0.0}
        for _ in range(3):
            await gather_evidence(alert)
            attempt = await analyze(alert)
            if attempt["confidence"] >= 0.7:
                break
        rca = await conclude(attempt)
        if rca["status"] != "confident":
            outcome = await escalate("rca_exhausted")
        else:
            the_plan = await plan(rca)
            await dry_run(the_plan)
            await DBOS.set_event_async("approval_request", {"plan": the_plan})
            decision = await DBOS.recv_async("approval", timeout_seconds=24 * 3600)
            if not isinstance(decision, dict) or decision.get("status") != "approved":
                outcome = await escalate("rejected")
            else:
                results = [await apply(step) for step in the_plan["steps"]]
                healthy = all(r["ok"] for r in results) and (await verify(the_plan))["ok"]
                outcome = await resolve(the_plan) if healthy else await escalate("unhealthy")
        await summarize(outcome)
        return outcome

    config: DBOSConfig = {
        "name": "durable-ir-bench",
        "system_database_url": args.db,
        "sys_db_pool_size": args.pool_size,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    handles: dict[str, Any] = {}
    try:

        async def start(incident: str) -> None:
            with SetWorkflowID(incident):
                handles[incident] = await DBOS.start_workflow_async(incident_workflow, ALERT)
            request = await DBOS.get_event_async(incident, "approval_request", timeout_seconds=60)
            if not request:
                raise AssertionError(f"{incident} did not ask for approval")

        async def decide(incident: str) -> None:
            await DBOS.send_async(incident, {"status": "approved", "by": "bench"}, topic="approval")
            outcome = await handles.pop(incident).get_result()
            if outcome.get("status") != "resolved":
                raise AssertionError(f"{incident} ended {outcome}")

        result = await _measure(args, start, decide)
    finally:
        DBOS.destroy()
    import psycopg

    with psycopg.connect(args.db, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid = %s",
            (result["sample"],),
        ).fetchone()
    result["rows"] = {"steps": int(row[0]) if row else 0}
    return result


def child_main(args: argparse.Namespace) -> int:
    COUNTER.install()
    runner = {
        "ours": child_ours,
        "handwritten": child_handwritten,
        "handwritten_inline": child_handwritten,
        "dbos": child_dbos,
    }[args.child]
    started = time.perf_counter()
    result = asyncio.run(runner(args))
    result["peak_rss_mb"] = peak_rss_mb()
    result["total_s"] = time.perf_counter() - started
    emit_result(result)
    return 0


# --------------------------------------------------------------------------- parent


def run_variant(variant: Variant, args: argparse.Namespace, server: str | None) -> dict[str, Any]:
    """One variant in a fresh process and a fresh database."""
    child = [
        str(Path(__file__).resolve()),
        "--child",
        variant,
        "--store",
        args.store,
        "--incidents",
        str(args.incidents),
        "--concurrency",
        str(args.concurrency),
        "--warmup",
        str(args.warmup),
        "--pool-size",
        str(args.pool_size),
    ]
    timeout = 600 + 2.0 * (args.incidents + args.warmup)
    if args.store == "postgres":
        assert server is not None
        with fresh_database(server, prefix=f"durable_ir_bench_{variant}") as db:
            if args.synchronous_commit == "off":
                set_synchronous_commit_off(db)
            return run_child([*child, "--db", db], timeout=timeout, label=variant)
    with tempfile.TemporaryDirectory(prefix=f"durable-ir-bench-{variant}-") as tmp:
        db = os.path.join(tmp, "incidents.db")
        return run_child([*child, "--db", db], timeout=timeout, label=variant)


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None and v == v]
    return statistics.median(present) if present else None


class Summary:
    """One variant's rounds, summarised."""

    def __init__(self, variant: Variant, rounds: list[dict[str, Any]]) -> None:
        self.variant = variant
        self.rounds = rounds
        self.pause = [PhaseResult.from_json(r["pause"]) for r in rounds]
        self.decide = [PhaseResult.from_json(r["decide"]) for r in rounds]

    def end_rates(self) -> list[float]:
        return [p.n / (p.wall_s + d.wall_s) for p, d in zip(self.pause, self.decide, strict=True)]

    def rate(self, phase: str) -> float | None:
        if phase == "end":
            return _median(self.end_rates())
        return _median([r.rate for r in getattr(self, phase)])

    def latency(self, phase: str, q: float) -> float:
        return percentile([v for r in getattr(self, phase) for v in r.latencies_ms], q)

    def cpu_ms(self, phase: str) -> float | None:
        return _median([r.cpu_ms_per_incident for r in getattr(self, phase)])

    def db_cpu_ms(self, phase: str) -> float | None:
        return _median([r.db_cpu_ms_per_incident for r in getattr(self, phase)])

    def statements(self, phase: str) -> float | None:
        return _median([r.statements_per_incident for r in getattr(self, phase)])

    def rows(self) -> str:
        rows = self.rounds[-1].get("rows") or {}
        if "steps" in rows:
            return f"{rows['steps']} steps"
        kib = rows.get("bytes", 0) / 1024
        return (
            f"{rows.get('root', '?')}+{rows.get('subgraph', '?')}/{rows.get('writes', '?')}w"
            f"/{kib:.0f}K"
        )

    def peak_rss(self) -> float | None:
        return _median([r["peak_rss_mb"] for r in self.rounds])


def report(
    summaries: dict[str, Summary],
    args: argparse.Namespace,
    shape: str,
    settings: dict[str, str],
    notes: dict[str, str | None],
) -> list[str]:
    out = [
        f"throughput: store={args.store}, {args.incidents} incidents per phase, concurrency "
        f"{args.concurrency}, {args.warmup} warm-up incidents, {args.repeat} round(s) "
        f"interleaved; graph shape: {shape} (the same in every LangGraph variant)",
    ]
    if settings:
        if args.synchronous_commit == "off":
            settings = {**settings, "synchronous_commit": "off (--synchronous-commit off)"}
        out.append(
            "server: PostgreSQL "
            + ", ".join(f"{k}={v}" for k, v in settings.items() if k != "server_version")
            + f" (version {settings.get('server_version', '?')}); CPU cores here: "
            + str(os.cpu_count())
        )
    header = (
        f"{'variant':<24}{'pause/s':>8}{'decide/s':>9}{'end/s':>7}{'vs hw':>7}"
        f"{'pause p50/p99 ms':>18}{'decide p50/p99 ms':>19}{'cpu ms/inc':>12}"
        f"{'db cpu ms/inc':>15}{'stmts/inc':>11}{'rows/inc':>15}{'peak MB':>9}"
    )
    out += [header, "-" * len(header)]
    hand = summaries.get("handwritten")
    for variant in VARIANTS:
        s = summaries.get(variant)
        if s is None:
            if notes.get(variant):
                out.append(f"{LABELS[variant]:<24}{notes[variant]}")
            continue
        end = s.rate("end")
        vs = end / hand.rate("end") if hand and end and hand.rate("end") else None  # type: ignore[operator]
        out.append(
            f"{LABELS[variant]:<24}{fmt(s.rate('pause')):>8}{fmt(s.rate('decide')):>9}"
            f"{fmt(end):>7}{fmt(vs, '.2f'):>7}"
            f"{fmt(s.latency('pause', 50)) + '/' + fmt(s.latency('pause', 99)):>18}"
            f"{fmt(s.latency('decide', 50)) + '/' + fmt(s.latency('decide', 99)):>19}"
            f"{fmt(s.cpu_ms('pause')) + '+' + fmt(s.cpu_ms('decide')):>12}"
            f"{fmt(s.db_cpu_ms('pause')) + '+' + fmt(s.db_cpu_ms('decide')):>15}"
            f"{fmt(s.statements('pause'), '.0f') + '+' + fmt(s.statements('decide'), '.0f'):>11}"
            f"{s.rows():>15}{fmt(s.peak_rss(), '.0f'):>9}"
        )
    out += [
        "pause = alert→pause, decide = decide→end, end = alert→end (N / both phases' time); "
        "'vs hw' = end/s over hand-written's; 'hand-written, our saver' = the hand-written "
        "graph on durable-ir's InlineSerdePostgresSaver instead of AsyncPostgresSaver;",
        "cpu, db cpu and stmts are per incident for pause+decide; db cpu = all postgres "
        "processes on this host; stmts = SQL statements sent (executemany: one per row);",
        "rows/inc = checkpoints root+subgraph / writes / KiB the saver stored for one incident "
        "(DBOS: operation_outputs rows).",
    ]
    others = [
        r.other_cores
        for s in summaries.values()
        for r in (*s.pause, *s.decide)
        if r.other_cores is not None
    ]
    if others:
        out.append(
            f"other processes on this host kept {statistics.mean(others):.2f} cores busy on "
            f"average during the measured phases (max {max(others):.2f} in one phase; "
            f"{os.cpu_count()} cores here){disturbed(statistics.mean(others))}"
        )
    if len(args.rounds_order) > 1:
        out.append("round order: " + "; ".join(", ".join(o) for o in args.rounds_order))
    if args.statements:
        out += statements_report(summaries)
    return out


def statements_report(summaries: dict[str, Summary], top: int = 14) -> list[str]:
    out: list[str] = []
    for variant in VARIANTS:
        s = summaries.get(variant)
        if s is None:
            continue
        for phase in ("pause", "decide"):
            result = getattr(s, phase)[-1]
            counts = Counter(result.statements)
            total = sum(counts.values()) / result.n
            out.append(f"SQL per incident, {LABELS[variant]}, {phase} ({total:.1f} in all):")
            for text, count in counts.most_common(top):
                out.append(f"  {count / result.n:6.2f}  {text}")
            if len(counts) > top:
                rest = sum(c for _, c in counts.most_common()[top:]) / result.n
                out.append(f"  {rest:6.2f}  ({len(counts) - top} other statements)")
    return out


def last_line(summaries: dict[str, Summary], args: argparse.Namespace) -> str:
    ours, hand = summaries["ours"], summaries["handwritten"]
    ratios = [o / h for o, h in zip(ours.end_rates(), hand.end_rates(), strict=True)]
    dbos = summaries.get("dbos")
    dbos_rate = dbos.rate("end") if dbos else None
    return (
        f"throughput store={args.store} incidents={args.incidents} "
        f"ours_per_s={fmt(ours.rate('end'), '.2f')} "
        f"handwritten_per_s={fmt(hand.rate('end'), '.2f')} "
        f"ratio={statistics.median(ratios):.3f} "
        f"decide_p50_ms={fmt(ours.latency('decide', 50), '.1f')} "
        f"handwritten_resume_p50_ms={fmt(hand.latency('decide', 50), '.1f')} "
        f"dbos_per_s={fmt(dbos_rate, '.2f') if dbos_rate is not None else 'n/a'}"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--store", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--incidents", type=int, default=150, help="per phase and round")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=10, help="incidents run before measuring")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (medians are reported)")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated subset of handwritten,handwritten_inline,ours,dbos (handwritten "
        "and ours are needed for the last line)",
    )
    parser.add_argument("--pool-size", type=int, default=None, help="connections per process")
    parser.add_argument("--statements", action="store_true", help="print SQL per incident")
    parser.add_argument(
        "--synchronous-commit",
        choices=("server", "off"),
        default="server",
        help="off: the benchmark databases do not wait for the WAL flush at commit (shows how "
        "much of the time is commit latency); default: the server's setting",
    )
    parser.add_argument(
        "--url",
        default=None,
        help="PostgreSQL server URL (default: $DURABLE_IR_BENCH_POSTGRES_URL, else the server "
        "the tests use); a throwaway database per variant and round is created and dropped",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.incidents, args.concurrency, args.warmup, args.repeat = 6, 2, 2, 1
    if args.incidents < 1 or args.concurrency < 1 or args.repeat < 1 or args.warmup < 0:
        parser.error("--incidents, --concurrency and --repeat must be >= 1, --warmup >= 0")
    if args.pool_size is None:
        # durable-ir holds a lock connection per running incident besides the work ones.
        args.pool_size = default_pool_size(args.concurrency)
    chosen = [v for v in args.variants.split(",") if v]
    if not set(chosen) <= set(VARIANTS) or not {"ours", "handwritten"} <= set(chosen):
        parser.error("--variants must include handwritten and ours, and name only known ones")
    args.chosen = chosen
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    exit_cleanly_on_sigterm()
    started = time.perf_counter()
    shape = check_same_shape()
    server = server_url(args.url) if args.store == "postgres" else None
    settings = server_settings(server) if server else {}
    variants: list[Variant] = [v for v in VARIANTS if v in args.chosen]  # type: ignore[misc]
    inline_note = None
    if "handwritten_inline" in variants and args.store != "postgres":
        inline_note = "skipped: durable-ir's own saver is for PostgreSQL (SQLite: the stock one)"
        variants.remove("handwritten_inline")
    dbos_note = None
    if "dbos" in variants:
        if args.store != "postgres":
            dbos_note = "skipped: DBOS is measured on PostgreSQL only"
        elif importlib.util.find_spec("dbos") is None:
            dbos_note = "skipped: the dbos package is not installed (pip install -e '.[bench]')"
        if dbos_note:
            variants.remove("dbos")
    elif "dbos" not in args.chosen:
        dbos_note = "skipped: not in --variants"
    rounds: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    args.rounds_order = []
    for round_no in range(args.repeat):
        shift = round_no % len(variants)
        order = variants[shift:] + variants[:shift]
        args.rounds_order.append(order)
        for variant in order:
            result = run_variant(variant, args, server)
            rounds[variant].append(result)
            pause, decide = result["pause"], result["decide"]
            log(
                f"round {round_no + 1}/{args.repeat} {variant}: "
                f"pause {pause['n'] / pause['wall_s']:.1f}/s, "
                f"decide {decide['n'] / decide['wall_s']:.1f}/s "
                f"({result['total_s']:.1f}s in the child)"
            )
    summaries: dict[str, Summary] = {v: Summary(v, rounds[v]) for v in variants}
    notes = {"handwritten_inline": inline_note, "dbos": dbos_note}
    print("\n".join(report(summaries, args, shape, settings, notes)))
    log(f"total {time.perf_counter() - started:.1f}s")
    print(last_line(summaries, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
