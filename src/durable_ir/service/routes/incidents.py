"""``GET /incidents`` and ``GET /incidents/{incident_id}``: reading incidents."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from durable_ir.approval.deciding import MAX_INCIDENT_ID_CHARS
from durable_ir.service.auth import Principal
from durable_ir.service.context import ServiceDep, require
from durable_ir.service.errors import error_responses
from durable_ir.service.models import IncidentDetail, IncidentList, StatusFilter
from durable_ir.service.views import incident_detail, list_incidents

__all__ = ["IncidentId", "router"]

router = APIRouter(tags=["incidents"])

IncidentId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_INCIDENT_ID_CHARS,
        description="the incident id",
        examples=["3f1b2c4d-0000-4000-8000-000000000001"],
    ),
]
Viewer = Annotated[Principal, Depends(require("viewer"))]


@router.get(
    "/incidents",
    response_model=IncidentList,
    summary="List incidents",
    responses=error_responses(401, 403, 422, 503),
)
async def get_incidents(
    service: ServiceDep,
    _principal: Viewer,
    status: Annotated[
        StatusFilter | None,
        Query(description="a run status, or the index's open/closed; default: all"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="at most this many")] = 100,
) -> IncidentList:
    """Incidents newest first, from the incident index, each open one with its pending
    approval and deadline (one ledger read per open incident; closed ones cost nothing
    more, and no checkpoint is read). ``status`` filters by where the run stands
    (``awaiting_approval``, ``running``, ``resuming``, ``finished``) or by ``open``/
    ``closed``."""
    incidents = await list_incidents(service.runtime, status=status, limit=limit)
    return IncidentList(incidents=incidents, count=len(incidents))


@router.get(
    "/incidents/{incident_id}",
    response_model=IncidentDetail,
    summary="One incident",
    responses=error_responses(401, 403, 404, 422, 503),
)
async def get_incident(
    incident_id: IncidentId, service: ServiceDep, _principal: Viewer
) -> IncidentDetail:
    """Title, severity, status and outcome; the timeline; the plan and its dry run; what
    root-cause analysis concluded; the pending approval with its deadline; every approval
    and its decision (the audit trail); and the report once it finished."""
    return await incident_detail(service.runtime, incident_id)
