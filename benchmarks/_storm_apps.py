"""The two services ``alert_storm.py`` storms, each run as its own OS process.

- :func:`build_graph` — what ``durable-ir serve --graph _storm_apps:build_graph`` serves:
  durable-ir's incident graph (:class:`~durable_ir.IncidentGraphBuilder`) set up as for
  services whose telemetry is not wired in: the gatherer finds nothing, the analyzer is not
  confident, so after ``RcaConfig``'s attempts the incident escalates and the
  :class:`~durable_ir.integrations.pagerduty.PagerDutyNotifier` triggers — one page per
  incident, through the ledger's outbox, with the client's 429 retries. ``page_on_open`` is
  left at its default (P0 only) and the storm's alerts are P1/P2, so the escalation is the only
  page, as for a real incident that nobody can explain automatically.
- :func:`baseline_app` — the hand-written intake, as a team writes it by hand: FastAPI, one
  LangGraph thread per webhook on LangGraph's own saver (``AsyncPostgresSaver`` on a pool, or
  ``AsyncSqliteSaver``), run after the answer with FastAPI's ``BackgroundTasks``; its last node
  posts one trigger to PagerDuty with ``httpx`` (``dedup_key`` = the thread id) and logs a
  failure without retrying it.

Both read where PagerDuty is from ``STORM_PD_URL`` and ``STORM_PD_ROUTING_KEY``; the baseline
reads its database from ``STORM_DB`` (a PostgreSQL URL, or a SQLite file path).
"""

from __future__ import annotations

import logging
import operator
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypedDict

# At module level: FastAPI resolves the route's (postponed) annotations in this module.
from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import JSONResponse

log = logging.getLogger("storm.baseline")

_ROUTING_KEY = "R" * 32


def _pagerduty() -> tuple[str, str]:
    return (
        os.environ.get("STORM_PD_URL", "http://127.0.0.1:9"),
        os.environ.get("STORM_PD_ROUTING_KEY", _ROUTING_KEY),
    )


# --------------------------------------------------------------------------- durable-ir


class NoTelemetryGatherer:
    """The storm's services have no telemetry wired in: nothing is found."""

    async def gather(self, alert: dict[str, Any], window: Any) -> list[Any]:
        return []


class UnsureAnalyzer:
    """With no evidence, no confident root cause: the RCA loop tries again, then escalates."""

    async def analyze(self, request: Any) -> Any:
        from durable_ir.rca import Hypothesis

        return Hypothesis.model_validate(
            {
                "root_cause": "unknown: no evidence gathered",
                "fault": "unknown",
                "service": str(request.alert.get("service") or "unknown"),
                "confidence": 0.1,
                "cited_evidence": [],
                "remediation": [],
            }
        )


class NothingToDo:
    """Executor and verifier; never reached (every storm incident escalates before a plan)."""

    async def dry_run(self, step: Any, context: Any) -> Any:
        from durable_ir import StepResult

        return StepResult(True, "ok")

    apply = rollback = dry_run

    async def verify(self, context: Any) -> Any:
        from durable_ir import Verification

        return Verification(True, "healthy")


def build_graph() -> Any:
    """durable-ir's incident graph, paging PagerDuty (at ``STORM_PD_URL``) on escalation."""
    from durable_ir import AllowList, IncidentGraphBuilder
    from durable_ir.integrations.pagerduty import PagerDutyNotifier

    url, routing_key = _pagerduty()
    nothing = NothingToDo()
    return IncidentGraphBuilder(
        gatherer=NoTelemetryGatherer(),
        analyzer=UnsureAnalyzer(),
        executor=nothing,
        verifier=nothing,
        allow_list=AllowList({"restart": "low"}),
        notifiers=[PagerDutyNotifier(routing_key, base_url=url)],
    ).build()


# --------------------------------------------------------------------------- hand-written


class StormState(TypedDict, total=False):
    webhook: dict[str, Any]
    incident_id: str
    title: str
    severity: str
    timeline: Annotated[list[str], operator.add]
    paged: bool


_SEVERITY = {"critical": "critical", "error": "error", "warning": "warning", "info": "info"}


def _baseline_graph(client: Any) -> Any:
    from langgraph.graph import END, START, StateGraph

    def triage(state: StormState) -> dict[str, Any]:
        hook = state["webhook"]
        common = hook.get("commonLabels") or {}
        name = common.get("alertname", "alert")
        service = common.get("service", "unknown")
        firing = sum(1 for a in hook.get("alerts", []) if a.get("status") == "firing")
        return {
            "title": f"{name} on {service} ({firing} firing)",
            "severity": _SEVERITY.get(common.get("severity", ""), "warning"),
            "timeline": ["triaged"],
        }

    async def page(state: StormState) -> dict[str, Any]:
        url, routing_key = _pagerduty()
        event = {
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": state["incident_id"],
            "payload": {
                "summary": state["title"],
                "source": "storm-intake",
                "severity": state["severity"],
            },
        }
        try:
            reply = await client.post(url + "/v2/enqueue", json=event)
            paged = reply.status_code == 202
            if not paged:
                log.warning("PagerDuty answered %s", reply.status_code)
        except Exception as exc:  # a hand-written intake logs and moves on
            log.warning("PagerDuty unreachable: %s", exc)
            paged = False
        return {"paged": paged, "timeline": ["paged" if paged else "page failed"]}

    graph: StateGraph[Any, Any, Any, Any] = StateGraph(StormState)
    graph.add_node("triage", triage)
    graph.add_node("page", page)
    graph.add_edge(START, "triage")
    graph.add_edge("triage", "page")
    graph.add_edge("page", END)
    return graph


def baseline_app() -> Any:
    """The hand-written FastAPI + LangGraph intake (``uvicorn --factory``)."""
    import httpx

    db = os.environ["STORM_DB"]
    stats = {"opened": 0, "finished": 0, "failed": 0}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=10) as client:
            if db.startswith("postgresql://"):
                from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
                from psycopg.rows import dict_row
                from psycopg_pool import AsyncConnectionPool

                pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                    db,
                    max_size=20,
                    open=False,
                    kwargs={"autocommit": True, "row_factory": dict_row},
                )
                async with pool:
                    saver: Any = AsyncPostgresSaver(conn=pool)
                    await saver.setup()
                    app.state.graph = _baseline_graph(client).compile(checkpointer=saver)
                    yield
            else:
                from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

                async with AsyncSqliteSaver.from_conn_string(db) as saver:
                    await saver.setup()
                    app.state.graph = _baseline_graph(client).compile(checkpointer=saver)
                    yield

    app = FastAPI(lifespan=lifespan)

    async def run_incident(incident_id: str, webhook: dict[str, Any]) -> None:
        try:
            await app.state.graph.ainvoke(
                {"webhook": webhook, "incident_id": incident_id},
                {"configurable": {"thread_id": incident_id}},
                durability="sync",
            )
            stats["finished"] += 1
        except Exception:
            stats["failed"] += 1
            log.exception("incident %s failed", incident_id)

    @app.post("/alerts", status_code=202)
    async def alerts(request: Request, background: BackgroundTasks) -> JSONResponse:
        webhook = await request.json()
        incident_id = str(uuid.uuid4())
        stats["opened"] += 1
        background.add_task(run_incident, incident_id, webhook)
        return JSONResponse({"incident_id": incident_id, "created": 1}, status_code=202)

    @app.get("/stats")
    async def get_stats() -> dict[str, int]:
        return {**stats, "in_flight": stats["opened"] - stats["finished"] - stats["failed"]}

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app
