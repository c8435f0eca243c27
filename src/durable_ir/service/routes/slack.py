"""``POST /slack/interactions``: Approve / Reject clicks on the approval messages that
:class:`~durable_ir.integrations.slack.SlackNotifier` posts.

The request is verified with the Slack signing secret (``SLACK_SIGNING_SECRET``) by
:func:`~durable_ir.integrations.slack.parse_interaction`: a bad or missing signature, or a
timestamp more than five minutes off, is 401 and decides nothing. The Slack user is then
mapped to an approver identity (``DURABLE_IR_SLACK_USERS``); an unmapped user is 403. Slack
buttons carry no text, so a rejection from Slack records the reason "rejected in Slack".
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from durable_ir.decisions import Approve, Decision, Reject
from durable_ir.service.context import ServiceDep
from durable_ir.service.errors import ApiError, error_responses
from durable_ir.service.models import Approval, SlackDecisionReply
from durable_ir.service.routes.decisions import check_p0_policy

__all__ = ["SLACK_REJECT_REASON", "router"]

router = APIRouter(tags=["slack"])

SLACK_REJECT_REASON = "rejected in Slack"


@router.post(
    "/slack/interactions",
    response_model=SlackDecisionReply,
    summary="Slack interactivity (button clicks)",
    responses=error_responses(401, 403, 404, 409, 413, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["payload"],
                        "properties": {
                            "payload": {
                                "type": "string",
                                "description": "Slack's block_actions payload (JSON)",
                            }
                        },
                    }
                }
            },
        },
        "parameters": [
            {
                "name": "X-Slack-Signature",
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
                "description": "v0=HMAC-SHA256 of v0:{timestamp}:{body} with the signing secret",
            },
            {
                "name": "X-Slack-Request-Timestamp",
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
                "description": "Unix time; at most 300 s from now",
            },
        ],
    },
)
async def slack_interactions(request: Request, service: ServiceDep) -> JSONResponse:
    """Verify Slack's signature, map the Slack user to an approver, and record the decision
    on the approval the button belongs to (200: Slack wants 200 for success). Errors use the
    service's error shape; 404 when Slack is not configured here."""
    secret = service.settings.slack_signing_secret
    if not secret:
        raise ApiError(
            404, "not_configured", "Slack interactivity is not configured (SLACK_SIGNING_SECRET)"
        )
    from durable_ir.integrations.slack import SlackSignatureError, parse_interaction

    body = await request.body()
    try:
        click = parse_interaction(body, request.headers, secret)
    except SlackSignatureError as exc:
        raise ApiError(401, "bad_signature", str(exc)) from None
    principal = service.settings.slack_users.get(click.slack_user_id)
    if principal is None or not principal.can("approver"):
        raise ApiError(
            403,
            "forbidden",
            f"Slack user {click.slack_user_id} is not an approver here (DURABLE_IR_SLACK_USERS)",
        )
    decision: Decision = (
        Approve(by=principal.identity)
        if click.kind == "approve"
        else Reject(by=principal.identity, reason=SLACK_REJECT_REASON)
    )
    pinned = await check_p0_policy(service, principal, click.incident_id, click.approval_id)
    submitted = await service.decisions.submit(click.incident_id, decision, approval_id=pinned)
    reply = SlackDecisionReply(
        text=f"Incident {click.incident_id}: {submitted.record.describe()}",
        decision=Approval.of(submitted.record),
    )
    return JSONResponse(reply.model_dump(mode="json"), status_code=200)
