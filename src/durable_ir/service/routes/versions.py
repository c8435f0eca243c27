"""``GET /versions``: open and paused incidents per graph version (the drain check's view)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from durable_ir.service.auth import Principal
from durable_ir.service.context import ServiceDep, require
from durable_ir.service.errors import error_responses
from durable_ir.service.models import GraphVersionRow, GraphVersions
from durable_ir.versioning import version_report

__all__ = ["router"]

router = APIRouter(tags=["versions"])
Viewer = Annotated[Principal, Depends(require("viewer"))]


@router.get(
    "/versions",
    response_model=GraphVersions,
    summary="Incidents per graph version",
    responses=error_responses(401, 403, 503),
)
async def get_versions(service: ServiceDep, _principal: Viewer) -> GraphVersions:
    """Open incidents and those waiting for approval, per graph version (one grouped index
    query), with whether this service runs each version and which one new incidents start
    on. An old version with open incidents must stay registered (``keep_graphs``) or its
    incidents be migrated before it is removed: see ``docs/versioning.md``."""
    rows = await version_report(service.runtime)
    return GraphVersions(versions=[GraphVersionRow(**row.to_dict()) for row in rows])
