"""``POST /alerts``: Alertmanager webhooks and the generic alert JSON."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from durable_ir.alerts import MAX_ALERTS_PER_WEBHOOK, Alert, parse_generic, parse_webhook
from durable_ir.errors import Conflict, InvalidInput
from durable_ir.service.auth import Principal
from durable_ir.service.context import Service, ServiceDep, require
from durable_ir.service.errors import error_responses
from durable_ir.service.models import (
    AlertIntakeItem,
    AlertRefused,
    AlertResolution,
    AlertsAccepted,
)

__all__ = ["ALERT_BODY_SCHEMA", "router"]

router = APIRouter(tags=["alerts"])

_TEXT_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_GENERIC = {
    "title": "GenericAlert",
    "type": "object",
    "required": ["name", "service", "fired_at"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "service": {"type": "string", "minLength": 1, "maxLength": 200},
        "severity": {
            "type": "string",
            "description": "P0–P3, or critical/error/warning/info (default P2)",
        },
        "fired_at": {"type": "string", "format": "date-time"},
        "description": {"type": "string", "maxLength": 4000},
        "labels": _TEXT_MAP,
        "fingerprint": {"type": "string", "description": "default: a hash of name and labels"},
        "status": {"type": "string", "enum": ["firing", "resolved"]},
    },
}
_ALERTMANAGER = {
    "title": "AlertmanagerWebhook",
    "type": "object",
    "required": ["alerts"],
    "properties": {
        "version": {"type": "string"},
        "status": {"type": "string"},
        "receiver": {"type": "string"},
        "groupKey": {"type": "string"},
        "commonLabels": _TEXT_MAP,
        "commonAnnotations": _TEXT_MAP,
        "alerts": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_ALERTS_PER_WEBHOOK,
            "items": {
                "type": "object",
                "required": ["labels", "startsAt"],
                "properties": {
                    "status": {"type": "string", "enum": ["firing", "resolved"]},
                    "labels": _TEXT_MAP,
                    "annotations": _TEXT_MAP,
                    "startsAt": {"type": "string", "format": "date-time"},
                    "endsAt": {"type": "string"},
                    "fingerprint": {"type": "string"},
                    "generatorURL": {
                        "type": "string",
                        "description": "kept as the alert's source link if http(s)",
                    },
                },
            },
        },
    },
}
ALERT_BODY_SCHEMA: dict[str, Any] = {"oneOf": [_GENERIC, _ALERTMANAGER]}
"""The documented request body: one generic alert, or an Alertmanager webhook (version 4)."""

_EXAMPLES = {
    "generic": {
        "summary": "one alert in the generic shape",
        "value": {
            "name": "HighErrorRate",
            "service": "checkout",
            "severity": "P1",
            "fired_at": "2026-03-06T15:55:00Z",
            "description": "5xx ratio 4.3% over 5m",
            "labels": {"team": "storefront"},
        },
    },
    "alertmanager": {
        "summary": "an Alertmanager webhook",
        "value": {
            "version": "4",
            "status": "firing",
            "receiver": "durable-ir",
            "commonLabels": {"alertname": "DiskFull", "service": "db", "severity": "warning"},
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"instance": "db-1"},
                    "annotations": {"summary": "disk 97% full"},
                    "startsAt": "2026-03-06T15:55:00Z",
                    "fingerprint": "c0ffee0123456789",
                }
            ],
        },
    },
}


@router.post(
    "/alerts",
    status_code=202,
    response_model=AlertsAccepted,
    summary="Take alerts in",
    response_description="each alert accepted or refused on its own; first runs go on",
    responses=error_responses(401, 403, 413, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ALERT_BODY_SCHEMA, "examples": _EXAMPLES}},
        }
    },
)
async def post_alerts(
    request: Request,
    service: ServiceDep,
    _principal: Annotated[Principal, Depends(require("ingest"))],
) -> JSONResponse:
    """Take each alert of the body on its own, answered as soon as each is indexed (202)
    while new incidents' first runs go on. Needs the role ``ingest``.

    - a firing alert opens an incident, or attaches to the open incident with its
      fingerprint, or — the same firing again (fingerprint and ``startsAt``), as
      Alertmanager re-sends it — attaches to the incident it reached before, even a closed
      one (counted; never reopened, never a new incident or page);
    - a resolution notice is noted on its incident's alert timeline (and, with the approval
      policy ``expire``, expires its pending approval as ``system:alertmanager``); one that
      matches no incident is counted in ``ignored``;
    - a malformed alert of an Alertmanager webhook is listed in ``refused`` with its index,
      and its neighbours are still taken.

    A body that is not JSON, not a webhook or a generic alert, or whose every alert is
    refused changes nothing (422)."""
    raw = await request.body()
    try:
        payload = json.loads(raw)
    except ValueError as exc:  # includes UnicodeDecodeError
        raise InvalidInput(f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise InvalidInput("the body is JSON nested too deeply") from None
    if isinstance(payload, dict) and "alerts" in payload:
        parsed = parse_webhook(payload)  # a body that is no webhook at all: 422
        alerts, refused = parsed.alerts, list(parsed.refused)
    else:
        alerts, refused = [(0, parse_generic(payload))], []
    if not alerts:
        reasons = "; ".join(f"alert {r.index}: {r.reason}" for r in refused[:5])
        raise InvalidInput(f"every alert of the webhook was refused: {reasons}")
    items: list[AlertIntakeItem] = []
    resolutions: list[AlertResolution] = []
    refusals = [
        AlertRefused(index=r.index, fingerprint=r.fingerprint, reason=r.reason) for r in refused
    ]
    for index, alert in alerts:
        try:
            if alert.status == "resolved":
                resolutions.append(await _resolve(service, index, alert))
                continue
            accepted = await service.intake.accept(alert)
        except (InvalidInput, Conflict) as exc:
            refusals.append(
                AlertRefused(index=index, fingerprint=alert.fingerprint, reason=str(exc))
            )
            continue
        row = accepted.row
        items.append(
            AlertIntakeItem(
                index=index,
                incident_id=row.incident_id,
                created=accepted.created,
                event="repeated" if accepted.event == "repeated" else "fired",
                state=row.status,
                fingerprint=row.fingerprint,
                title=row.title or row.incident_id,
                severity=row.severity,
                alerts_received=row.alerts_received,
            )
        )
    created = sum(1 for item in items if item.created)
    body = AlertsAccepted(
        incidents=items,
        resolved=resolutions,
        refused=sorted(refusals, key=lambda r: r.index),
        created=created,
        attached=len(items) - created,
        ignored=sum(1 for r in resolutions if r.incident_id is None),
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=202)


async def _resolve(service: Service, index: int, alert: Alert) -> AlertResolution:
    intake = await service.intake.resolve(alert)
    return AlertResolution(
        index=index,
        fingerprint=alert.fingerprint,
        incident_id=intake.incident.incident_id if intake.incident else None,
        recorded=intake.event == "resolved",
        expired_approval=intake.expired.approval_id if intake.expired else None,
    )
