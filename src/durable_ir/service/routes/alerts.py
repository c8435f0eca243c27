"""``POST /alerts``: Alertmanager webhooks and the generic alert JSON."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from durable_ir.alerts import MAX_ALERTS_PER_WEBHOOK, parse_alert
from durable_ir.errors import InvalidInput
from durable_ir.service.auth import Principal
from durable_ir.service.context import ServiceDep, require
from durable_ir.service.errors import error_responses
from durable_ir.service.models import AlertIntakeItem, AlertsAccepted

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
                    "generatorURL": {"type": "string"},
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
    response_description="every alert indexed; new incidents' first runs go on",
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
    """Open an incident per firing alert, or attach the alert to the open incident with the
    same fingerprint; answered as soon as each alert is indexed (202), while the new
    incidents' first runs go on. Resolution notices are counted and ignored. Needs the role
    ``ingest``. A malformed body changes nothing (422)."""
    raw = await request.body()
    try:
        payload = json.loads(raw)
    except ValueError as exc:  # includes UnicodeDecodeError
        raise InvalidInput(f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise InvalidInput("the body is JSON nested too deeply") from None
    alerts = parse_alert(payload)  # all or nothing: a malformed one refuses the whole body
    items: list[AlertIntakeItem] = []
    ignored = 0
    for alert in alerts:
        if alert.status == "resolved":
            ignored += 1
            continue
        accepted = await service.intake.accept(alert)
        row = accepted.row
        items.append(
            AlertIntakeItem(
                incident_id=row.incident_id,
                created=accepted.created,
                fingerprint=row.fingerprint,
                title=row.title or row.incident_id,
                severity=row.severity,
                alerts_received=row.alerts_received,
            )
        )
    created = sum(1 for item in items if item.created)
    body = AlertsAccepted(
        incidents=items, created=created, attached=len(items) - created, ignored=ignored
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=202)
