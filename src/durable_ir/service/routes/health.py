"""Health, no authentication: ``GET /livez`` (the process answers), ``GET /readyz`` (the
database answers within :data:`READY_TIMEOUT_S` seconds, with every table this version
reads) and ``GET /healthz`` (up, with the database reachable, and what it serves).

Point a liveness probe at ``/livez`` — it touches nothing, so a database outage never gets
the process restarted — and a readiness probe at ``/readyz``, which answers 503 within about
two seconds when the database is gone or its schema is behind, instead of making the probe
wait out the connection pool's timeout.

Example:
    >>> sorted(route.path for route in router.routes)
    ['/healthz', '/livez', '/readyz']
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time

from fastapi import APIRouter, Request

from durable_ir.runtime import Runtime
from durable_ir.service.context import ServiceDep
from durable_ir.service.errors import ApiError, error_responses
from durable_ir.service.models import Health, Live, Ready

__all__ = ["READY_TIMEOUT_S", "check_database", "router"]

router = APIRouter(tags=["health"])

log = logging.getLogger("durable_ir.service")

READY_TIMEOUT_S = 2.0
"""How long ``/readyz`` waits for the database before it answers 503."""

_PROBE_ID = "durable-ir-readyz-probe"
_READY_STATE_KEY = "durable_ir_ready_problem"
_UNDEFINED_TABLE_OR_COLUMN = ("42P01", "42703")  # PostgreSQL's SQLSTATEs


async def check_database(runtime: Runtime) -> None:
    """One trivial read of each table the runtime uses — the incident index, the approval
    ledger, the notification outbox, the checkpoints — each reading every column this
    version reads (so a table or column a migration adds and the database lacks fails too),
    after a round trip for the database's clock. Raises what the database raises."""
    store = runtime.store
    ledger = store.ledger
    await ledger.server_time()
    await ledger.list_incidents(limit=1)
    await ledger.get(_PROBE_ID)
    await ledger.get_notification(_PROBE_ID)
    await store.checkpointer.aget_tuple({"configurable": {"thread_id": _PROBE_ID}})


def _schema_behind(exc: BaseException) -> bool:
    if getattr(exc, "sqlstate", None) in _UNDEFINED_TABLE_OR_COLUMN:
        return True
    text = str(exc)
    return isinstance(exc, sqlite3.OperationalError) and (
        "no such table" in text or "no such column" in text
    )


def _problem(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"the database did not answer within {READY_TIMEOUT_S:g}s"
    if _schema_behind(exc):
        return (
            f"the database lacks tables or columns this version reads ({type(exc).__name__}); "
            "starting the service (or open_runtime) against it migrates it"
        )
    return f"the database is unreachable: {type(exc).__name__}"


def _note(request: Request, problem: str | None) -> None:
    """Log readiness changes once each (probes come every few seconds)."""
    before = getattr(request.app.state, _READY_STATE_KEY, None)
    if problem != before:
        if problem is not None:
            log.warning("not ready: %s", problem)
        elif before is not None:
            log.info("ready again: the database answers")
        setattr(request.app.state, _READY_STATE_KEY, problem)


@router.get("/livez", response_model=Live, summary="Is the process up")
async def livez() -> Live:
    """200 while the process serves requests. Reads nothing: for a liveness probe."""
    return Live(status="ok")


@router.get(
    "/readyz",
    response_model=Ready,
    summary="Can the service take requests",
    responses=error_responses(503),
)
async def readyz(request: Request, service: ServiceDep) -> Ready:
    """200 once the service has started and its database answered a trivial read of every
    table it uses within two seconds; otherwise 503 saying why — starting or stopping, the
    database unreachable or too slow, or its schema behind this version. No credentials
    needed."""
    started = time.monotonic()
    try:
        await asyncio.wait_for(check_database(service.runtime), timeout=READY_TIMEOUT_S)
    except Exception as exc:
        problem = _problem(exc)
        _note(request, problem)
        raise ApiError(503, "unavailable", problem) from None
    _note(request, None)
    return Ready(
        status="ready",
        database=service.runtime.store.backend,
        checked_in_ms=round((time.monotonic() - started) * 1000, 1),
    )


@router.get(
    "/healthz",
    response_model=Health,
    summary="Is the service up",
    responses=error_responses(503),
)
async def healthz(service: ServiceDep) -> Health:
    """Up, with its database reachable (one index read). No credentials needed."""
    try:
        await service.runtime.incidents(limit=1)
    except Exception as exc:
        raise ApiError(
            503, "unavailable", f"the database is unreachable: {type(exc).__name__}"
        ) from None
    monitor = service.monitor
    return Health(
        status="ok",
        database=service.runtime.store.backend,
        graph=service.graph_name,
        sla_monitor=monitor is not None and not monitor.done(),
    )
