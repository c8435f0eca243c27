"""``POST /incidents/{id}/approve`` and ``/reject``: decisions, by the caller's identity."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import JSONResponse

from durable_ir.approval.deciding import validate_incident_id
from durable_ir.decisions import Approve, Decision, Edit, Reject
from durable_ir.service.auth import Principal
from durable_ir.service.context import Service, ServiceDep, require
from durable_ir.service.errors import ApiError, error_responses
from durable_ir.service.models import (
    Approval,
    ApproveBody,
    DecisionAccepted,
    IncidentDetail,
    RejectBody,
)
from durable_ir.service.routes.incidents import IncidentId
from durable_ir.service.views import incident_detail
from durable_ir.text import check_text

__all__ = ["check_p0_policy", "router", "submit_decision"]

router = APIRouter(tags=["decisions"])

Approver = Annotated[Principal, Depends(require("approver"))]
Wait = Annotated[
    bool,
    Query(
        description="wait until the incident pauses again or ends, and answer 200 with it "
        "(instead of 202 as soon as the decision is recorded)"
    ),
]
_RESPONSES = {
    200: {"model": IncidentDetail, "description": "with ?wait=true: the incident afterwards"},
    **error_responses(401, 403, 404, 409, 413, 422, 503),
}


async def check_p0_policy(
    service: Service, principal: Principal, incident_id: str, approval_id: str | None
) -> str | None:
    """Refuse (403) a P0 decision by someone without the role ``DURABLE_IR_P0_ROLE`` names;
    return the approval id to pin the decision to (the one whose severity was checked).

    The ids are checked first (422 for a NUL or an unpaired surrogate, on every backend):
    nothing the caller sent reaches the database unchecked."""
    incident_id = validate_incident_id(incident_id)
    if approval_id is not None:
        check_text("approval_id", approval_id)
    ledger = service.runtime.store.ledger
    record = await ledger.get(approval_id) if approval_id else await ledger.latest(incident_id)
    if record is None or record.incident_id != incident_id:
        return approval_id  # decide() says NotFound, writing nothing
    role = service.settings.p0_role
    if record.is_pending and record.severity == "P0" and not principal.can(role):
        raise ApiError(
            403, "forbidden", f"deciding a P0 approval needs the role {role} (DURABLE_IR_P0_ROLE)"
        )
    return record.approval_id


async def submit_decision(
    service: Service,
    principal: Principal,
    incident_id: str,
    decision: Decision,
    approval_id: str | None,
    *,
    wait: bool,
) -> JSONResponse:
    """Check the P0 policy, record the decision, and answer 202 (or, with ``wait``, 200 once
    the graph paused again or ended)."""
    pinned = await check_p0_policy(service, principal, incident_id, approval_id)
    submitted = await service.decisions.submit(incident_id, decision, approval_id=pinned)
    if wait:
        await submitted.done()
        detail = await incident_detail(service.runtime, incident_id)
        return JSONResponse(detail.model_dump(mode="json"), status_code=200)
    body = DecisionAccepted(
        incident_id=incident_id,
        decision=Approval.of(submitted.record),
        applied=False,  # the background task hands it to the graph after this answer
        status="resuming",
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=202)


@router.post(
    "/incidents/{incident_id}/approve",
    status_code=202,
    response_model=DecisionAccepted,
    summary="Approve (or edit) the pending plan",
    response_description="recorded durably; the graph resumes in the background",
    responses=_RESPONSES,
)
async def approve(
    incident_id: IncidentId,
    service: ServiceDep,
    principal: Approver,
    body: Annotated[ApproveBody | None, Body()] = None,
    wait: Wait = False,
) -> JSONResponse:
    """Approve the pending plan as the caller's identity (``plan`` in the body: approve that
    edited plan instead, validated like the original). The decision is recorded durably
    before the answer (202); the graph then resumes in the background. A late or repeated
    decision is 409 naming the decision that won. P0 approvals may need the role ``lead``."""
    body = body or ApproveBody.model_validate({})
    decision: Decision
    if "plan" in body.model_fields_set:
        decision = Edit(by=principal.identity, plan=body.plan, reason=body.reason)
    else:
        decision = Approve(by=principal.identity, reason=body.reason)
    return await submit_decision(
        service, principal, incident_id, decision, body.approval_id, wait=wait
    )


@router.post(
    "/incidents/{incident_id}/reject",
    status_code=202,
    response_model=DecisionAccepted,
    summary="Reject the pending plan",
    response_description="recorded durably; the graph escalates in the background",
    responses=_RESPONSES,
)
async def reject(
    incident_id: IncidentId,
    body: RejectBody,
    service: ServiceDep,
    principal: Approver,
    wait: Wait = False,
) -> JSONResponse:
    """Reject the pending plan as the caller's identity, with a reason (the incident
    escalates). Recorded before the answer (202); 409 names the winner if it was decided
    already."""
    decision = Reject(by=principal.identity, reason=body.reason)
    return await submit_decision(
        service, principal, incident_id, decision, body.approval_id, wait=wait
    )
