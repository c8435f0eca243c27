"""``InlineSerdePostgresSaver`` on a real PostgreSQL: LangGraph's checkpointer conformance
suite, the same rows as ``AsyncPostgresSaver`` byte for byte, threads written by either saver
read and resumed by the other, and no worker thread on any path."""

from __future__ import annotations

import asyncio
import concurrent.futures
import operator
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypedDict

import psycopg
import pytest
from langgraph.checkpoint.base import (
    ERROR,
    INTERRUPT,
    RESUME,
    BaseCheckpointSaver,
    empty_checkpoint,
)
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from durable_ir import InlineSerdePostgresSaver

pytestmark = pytest.mark.postgres

SaverClass = type[AsyncPostgresSaver]


@asynccontextmanager
async def saver_on(url: str, cls: SaverClass) -> AsyncIterator[AsyncPostgresSaver]:
    """``cls`` on a pool configured as ``open_store`` configures it, tables set up."""
    async with AsyncConnectionPool(
        url,
        min_size=1,
        max_size=4,
        open=False,
        kwargs={"autocommit": True, "row_factory": dict_row, "prepare_threshold": None},
    ) as pool:
        saver = cls(pool)
        await saver.setup()
        yield saver


def table_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the savers store, in a stable order (``thread_id`` included)."""
    queries = {
        "checkpoints": "SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id,"
        " checkpoint::text, metadata::text FROM checkpoints ORDER BY 1, 2, 3",
        "checkpoint_blobs": "SELECT thread_id, checkpoint_ns, channel, version, type, blob"
        " FROM checkpoint_blobs ORDER BY 1, 2, 3, 4",
        "checkpoint_writes": "SELECT thread_id, checkpoint_ns, checkpoint_id, task_id,"
        " task_path, idx, channel, type, blob FROM checkpoint_writes ORDER BY 1, 2, 3, 4, 6",
    }
    with psycopg.connect(url, autocommit=True) as conn:
        return {table: conn.execute(query).fetchall() for table, query in queries.items()}


# --- LangGraph's conformance suite ----------------------------------------------------------


async def conformance_report(url: str, cls: SaverClass) -> dict[str, Any]:
    async def factory() -> AsyncIterator[BaseCheckpointSaver[Any]]:
        async with saver_on(url, cls) as saver:
            yield saver
        with psycopg.connect(url, autocommit=True) as conn:  # next suite starts empty
            conn.execute("TRUNCATE checkpoints, checkpoint_blobs, checkpoint_writes")

    registered = checkpointer_test(name=cls.__name__)(factory)
    report = await validate(registered)
    return {
        name: (result.passed, result.tests_passed, result.tests_failed, result.failures)
        for name, result in report.results.items()
    }


async def test_passes_langgraphs_checkpointer_conformance_suite_as_the_stock_saver_does(
    postgres_url: str,
) -> None:
    ours = await conformance_report(postgres_url, InlineSerdePostgresSaver)
    stock = await conformance_report(postgres_url, AsyncPostgresSaver)
    for capability in ("put", "put_writes", "get_tuple", "list", "delete_thread"):
        passed, n_passed, n_failed, failures = ours[capability]
        assert passed is True and n_failed == 0 and n_passed > 0, (capability, failures)
    assert ours == stock


# --- the same rows as AsyncPostgresSaver ----------------------------------------------------


def checkpoint_with(step: int, values: dict[str, Any], parent: str | None) -> Any:
    checkpoint = empty_checkpoint()
    checkpoint["id"] = f"1ef00000-0000-6000-8000-{step:012d}"
    checkpoint["ts"] = f"2026-12-05T10:00:{step:02d}+00:00"
    checkpoint["channel_values"] = values
    checkpoint["channel_versions"] = {name: f"{step:032d}.0.5" for name in values}
    return checkpoint


async def write_history(saver: AsyncPostgresSaver, thread: str) -> list[Any]:
    """The same calls on any saver: primitives, None, containers, a delta snapshot, a subgraph
    namespace, ordinary and special (error, interrupt, resume) writes, a rewrite of the
    latter."""
    steps: list[tuple[str, dict[str, Any]]] = [
        ("", {"alert": {"name": "HighErrorRate", "labels": {"env": "prod"}}, "count": 1}),
        ("", {"alert": {"name": "HighErrorRate"}, "title": "t", "ok": True, "none": None}),
        ("rca:7", {"attempts": [{"confidence": 0.4}, {"confidence": 0.9}], "ratio": 0.5}),
        ("", {"timeline": [{"at": "10:00", "stage": "ingest"}], "plan": {"steps": ["x"]}}),
        # A delta channel's snapshot (LangGraph's DeltaChannel, beta): a blob, marked inline.
        ("", {"history": _DeltaSnapshot([{"stage": "ingest"}]), "plan": {"steps": ["y"]}}),
    ]
    parent: str | None = None
    configs = []
    for step, (ns, values) in enumerate(steps, start=1):
        checkpoint = checkpoint_with(step, values, parent)
        config: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ns}}
        if parent is not None:
            config["configurable"]["checkpoint_id"] = parent
        metadata: Any = {"source": "loop", "step": step, "parents": {}}
        versions = {name: f"{step:032d}.0.5" for name in list(values)[:2]}
        stored = await saver.aput(config, checkpoint, metadata, versions)
        configs.append(stored)
        await saver.aput_writes(
            stored, [("timeline", [{"stage": f"s{step}"}]), ("count", step)], f"task-{step}", "p"
        )
        await saver.aput_writes(stored, [(ERROR, ValueError(f"boom {step}"))], f"task-{step}")
        await saver.aput_writes(stored, [(INTERRUPT, {"question": step})], f"task-{step}")
        await saver.aput_writes(stored, [(RESUME, {"answer": step})], f"task-{step}")
        # Special writes are upserts: a second one replaces the first, ordinary ones stay.
        await saver.aput_writes(stored, [(RESUME, {"answer": -step})], f"task-{step}")
        await saver.aput_writes(stored, [("count", 99)], f"task-{step}", "p")
        parent = checkpoint["id"] if ns == "" else parent
    return configs


async def test_writes_exactly_the_rows_async_postgres_saver_writes(postgres_url: str) -> None:
    async with saver_on(postgres_url, AsyncPostgresSaver) as stock:
        stock_configs = await write_history(stock, "thread")
    stock_rows = table_rows(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("TRUNCATE checkpoints, checkpoint_blobs, checkpoint_writes")
    async with saver_on(postgres_url, InlineSerdePostgresSaver) as ours:
        our_configs = await write_history(ours, "thread")
    assert table_rows(postgres_url) == stock_rows
    assert our_configs == stock_configs
    assert all(stock_rows.values())


async def test_reads_back_what_either_saver_wrote_as_the_stock_saver_does(
    postgres_url: str,
) -> None:
    async with (
        saver_on(postgres_url, AsyncPostgresSaver) as stock,
        saver_on(postgres_url, InlineSerdePostgresSaver) as ours,
    ):
        await write_history(stock, "by-stock")
        await write_history(ours, "by-ours")
        for thread in ("by-stock", "by-ours"):
            for ns in ("", "rca:7"):
                config: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ns}}
                seen = [
                    [_comparable(t) async for t in saver.alist(config)] for saver in (stock, ours)
                ]
                assert seen[0] == seen[1] and seen[0]
                latest = [_comparable(await s.aget_tuple(config)) for s in (stock, ours)]
                assert latest[0] == latest[1] == seen[0][0]
        # What both hold for the two threads is the same, whatever saver wrote it.
        assert _comparable(
            await ours.aget_tuple({"configurable": {"thread_id": "by-stock", "checkpoint_ns": ""}})
        ) == _comparable(
            await ours.aget_tuple({"configurable": {"thread_id": "by-ours", "checkpoint_ns": ""}})
        )


def _comparable(t: Any) -> Any:
    """A checkpoint tuple with exceptions (which do not compare equal) as their text, and the
    thread id left out."""
    assert t is not None
    writes = [
        (task, ch, repr(v) if isinstance(v, Exception) else v) for task, ch, v in t.pending_writes
    ]
    return (t.config["configurable"]["checkpoint_id"], t.checkpoint, t.metadata, writes)


# --- a graph paused by one saver resumes on the other ----------------------------------------


class Flow(TypedDict, total=False):
    alert: dict[str, Any]
    attempts: Annotated[list[dict[str, Any]], operator.add]
    approval: dict[str, Any]
    applied: int
    ran: Annotated[list[str], operator.add]


class RcaFlow(TypedDict, total=False):
    alert: dict[str, Any]
    attempts: Annotated[list[dict[str, Any]], operator.add]


def flow_graph() -> StateGraph[Any, Any, Any, Any]:
    sub: StateGraph[Any, Any, Any, Any] = StateGraph(RcaFlow)
    sub.add_node("analyze", lambda s: {"attempts": [{"confidence": 0.9}]})
    sub.add_edge(START, "analyze")
    sub.add_edge("analyze", END)

    def approve(state: Flow) -> dict[str, Any]:
        return {"approval": interrupt({"plan": "restart"}), "ran": ["approval"]}

    graph: StateGraph[Any, Any, Any, Any] = StateGraph(Flow)
    graph.add_node("ingest", lambda s: {"ran": ["ingest"]})
    graph.add_node("rca", sub.compile())
    graph.add_node("approval", approve)
    graph.add_node("apply", lambda s: {"applied": 1, "ran": ["apply"]})
    graph.add_edge(START, "ingest")
    graph.add_edge("ingest", "rca")
    graph.add_edge("rca", "approval")
    graph.add_edge("approval", "apply")
    graph.add_edge("apply", END)
    return graph


@pytest.mark.parametrize(
    ("pause_with", "resume_with"),
    [
        (AsyncPostgresSaver, InlineSerdePostgresSaver),  # an upgrade while incidents wait
        (InlineSerdePostgresSaver, AsyncPostgresSaver),  # and a downgrade
    ],
)
async def test_a_graph_paused_on_one_saver_resumes_on_the_other(
    postgres_url: str, pause_with: SaverClass, resume_with: SaverClass
) -> None:
    config: Any = {"configurable": {"thread_id": "inc-1"}}
    async with saver_on(postgres_url, pause_with) as saver:
        graph = flow_graph().compile(checkpointer=saver)
        paused = await graph.ainvoke({"alert": {"name": "x"}}, config, durability="sync")
        assert "__interrupt__" in paused
    async with saver_on(postgres_url, resume_with) as saver:
        graph = flow_graph().compile(checkpointer=saver)
        state = await graph.aget_state(config)
        assert state.next == ("approval",) and len(state.interrupts) == 1
        done = await graph.ainvoke(
            Command(resume={"status": "approved"}), config, durability="sync"
        )
    assert done["ran"] == ["ingest", "approval", "apply"]
    assert done["attempts"] == [{"confidence": 0.9}]
    assert done["approval"] == {"status": "approved"} and done["applied"] == 1


# --- no worker thread -------------------------------------------------------------------------


class RefusingExecutor(concurrent.futures.ThreadPoolExecutor):
    """A default executor that counts what was sent to it, and refuses it."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.refused: list[str] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        self.refused.append(getattr(fn, "__name__", repr(fn)))
        raise RuntimeError("no worker threads here")


async def saver_calls_that_hop(url: str, cls: SaverClass, thread: str) -> list[str]:
    """Run a paused graph, its resume and the reads on ``cls`` with a default executor that
    refuses work (the graph's nodes are coroutines, so LangGraph itself needs no thread)."""

    async def step(state: Flow) -> dict[str, Any]:
        return {"ran": ["step"]}

    async def gate(state: Flow) -> dict[str, Any]:
        return {"approval": interrupt("ok?")}

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(Flow)
    builder.add_node("step", step)
    builder.add_node("gate", gate)
    builder.add_edge(START, "step")
    builder.add_edge("step", "gate")
    builder.add_edge("gate", END)
    loop = asyncio.get_running_loop()
    executor = RefusingExecutor()
    async with saver_on(url, cls) as saver:
        graph = builder.compile(checkpointer=saver)
        config: Any = {"configurable": {"thread_id": thread}}
        loop.set_default_executor(executor)
        try:
            await graph.ainvoke({"alert": {}}, config, durability="sync")
            await graph.ainvoke(Command(resume={"status": "approved"}), config, durability="sync")
            await graph.aget_state(config)
            [_ async for _ in saver.alist(config)]
        except RuntimeError as exc:
            assert "no worker threads" in str(exc)
        finally:
            loop.set_default_executor(concurrent.futures.ThreadPoolExecutor())
            executor.shutdown()
    return executor.refused


async def test_serialises_on_the_event_loop_where_the_stock_saver_hops_to_a_thread(
    postgres_url: str,
) -> None:
    assert await saver_calls_that_hop(postgres_url, AsyncPostgresSaver, "stock")
    assert await saver_calls_that_hop(postgres_url, InlineSerdePostgresSaver, "ours") == []
