"""``GET /healthz``: liveness and readiness, no authentication."""

from __future__ import annotations

from fastapi import APIRouter

from durable_ir.service.context import ServiceDep
from durable_ir.service.errors import ApiError, error_responses
from durable_ir.service.models import Health

__all__ = ["router"]

router = APIRouter(tags=["health"])


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
