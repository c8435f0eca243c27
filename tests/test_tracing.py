"""OpenTelemetry spans (in-memory exporter): one incident's span tree through the runtime —
ingest, its run, the decision and the run that applies it, the SLA sweep — every span with
the incident's id, decisions with the approval's; and over HTTP, the background run that
applies a decision is a child of the request's decision span."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from durable_ir import Approve, open_runtime
from durable_ir.service import ServiceSettings, create_app
from durable_ir.service.auth import parse_token_entries
from durable_ir.sla import SlaMonitor
from support.graphs import build_graph
from support.incident_parts import ALERT
from support.service import auth, serving, tokens_json

EXPORTER = InMemorySpanExporter()


class _WhileTesting(SimpleSpanProcessor):
    """Exports only while a test of this module runs: the provider, once set, stays for the
    whole session (OpenTelemetry allows setting it once), and other tests' spans would pile
    up in memory."""

    enabled = False

    def on_end(self, span: ReadableSpan) -> None:
        if self.enabled:
            super().on_end(span)


PROCESSOR = _WhileTesting(EXPORTER)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())
    current = trace.get_tracer_provider()
    assert isinstance(current, TracerProvider)
    if not getattr(current, "_durable_ir_test_processor", False):
        current.add_span_processor(PROCESSOR)
        current._durable_ir_test_processor = True  # type: ignore[attr-defined]
    EXPORTER.clear()
    PROCESSOR.enabled = True
    try:
        yield EXPORTER
    finally:
        PROCESSOR.enabled = False
        EXPORTER.clear()


def of(spans: InMemorySpanExporter, incident: str) -> list[ReadableSpan]:
    return [
        s
        for s in spans.get_finished_spans()
        if (s.attributes or {}).get("durable_ir.incident_id") == incident
    ]


def parent_of(span: ReadableSpan, among: list[ReadableSpan]) -> ReadableSpan | None:
    if span.parent is None:
        return None
    return next((s for s in among if s.context.span_id == span.parent.span_id), None)


async def test_one_incident_span_tree(
    database_url: str, counter_dir: Path, spans: InMemorySpanExporter
) -> None:
    incident = f"trace-{uuid.uuid4().hex[:8]}"
    async with open_runtime(database_url) as rt:
        await rt.ingest(build_graph(counter_dir), ALERT, incident_id=incident)
        result = await rt.decide(incident, Approve(by="alice"))
        await SlaMonitor(rt).sweep()

    mine = of(spans, incident)
    names = [s.name for s in mine]
    assert names.count("durable_ir.run") == 2, names
    ingest = next(s for s in mine if s.name == "durable_ir.ingest")
    decide = next(s for s in mine if s.name == "durable_ir.decide")
    first, second = (s for s in mine if s.name == "durable_ir.run")
    assert parent_of(first, mine) is ingest  # the run that paused, inside the ingest
    assert parent_of(second, mine) is decide  # the run that applied the decision
    attributes = decide.attributes or {}
    assert attributes["durable_ir.approval_id"] == result.record.approval_id
    assert attributes["durable_ir.decider_type"] == "human"
    assert attributes["durable_ir.applied"] is True
    assert (ingest.attributes or {})["durable_ir.created"] is True
    for run in (first, second):
        assert (run.attributes or {})["durable_ir.graph_version"]
    sweeps = [s for s in spans.get_finished_spans() if s.name == "durable_ir.sla.sweep"]
    assert sweeps and (sweeps[-1].attributes or {})["durable_ir.expired"] == 0


def test_the_background_run_of_an_http_decision_is_in_the_requests_trace(
    durable_url: str, counter_dir: Path, spans: InMemorySpanExporter, monkeypatch: Any
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    settings = ServiceSettings(
        database_url=durable_url,
        api_tokens=parse_token_entries(tokens_json()),
        sla_interval=60,
        graph_name="incident",
    )
    incident = f"trace-{uuid.uuid4().hex[:8]}"
    app = create_app(graph=build_graph(counter_dir), settings=settings)
    with serving(app) as server:

        async def start() -> None:
            async with open_runtime(durable_url) as rt:
                await rt.start(build_graph(counter_dir), {"alert": ALERT}, incident_id=incident)

        asyncio.run(start())
        with httpx.Client(base_url=server.url, timeout=60) as client:
            answer = client.post(
                f"/incidents/{incident}/approve", params={"wait": "true"}, headers=auth("alice")
            )
            assert answer.status_code == 200, answer.text

    mine = of(spans, incident)
    submit = next(s for s in mine if s.name == "durable_ir.submit_decision")
    apply = next(s for s in mine if s.name == "durable_ir.apply_decision")
    runs = [s for s in mine if s.name == "durable_ir.run"]
    assert apply.context.trace_id == submit.context.trace_id
    assert parent_of(apply, mine) is submit
    assert any(parent_of(run, mine) is apply for run in runs)


async def test_runs_carry_the_incident_and_the_decision_as_langgraph_metadata(
    database_url: str, counter_dir: Path
) -> None:
    """What LangSmith shows on a run (config metadata), as the checkpoints keep it."""
    incident = f"meta-{uuid.uuid4().hex[:8]}"
    async with open_runtime(database_url) as rt:
        await rt.start(build_graph(counter_dir), {"alert": ALERT}, incident_id=incident)
        result = await rt.decide(incident, Approve(by="alice"))
        config = {"configurable": {"thread_id": incident, "checkpoint_ns": ""}}
        latest = await rt.store.checkpointer.aget_tuple(config)  # type: ignore[arg-type]
    assert latest is not None
    metadata = latest.metadata
    assert metadata["durable_ir_incident_id"] == incident
    assert metadata["durable_ir_approval_id"] == result.record.approval_id
    assert metadata["durable_ir_decided_by"] == "alice"
    assert metadata["durable_ir_decision"] == "approved"
    assert metadata["durable_ir_graph_version"] == rt.graphs.get("incident").version
