"""Reading incidents for the API: cheap lists from the index and the ledger, and one
incident's detail from its latest checkpoint.

Example:
    >>> from durable_ir.service import create_app
    >>> callable(incident_detail) and callable(list_incidents)
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from durable_ir.alerts import safe_url
from durable_ir.approval.deciding import validate_incident_id
from durable_ir.errors import ConfigurationError, NotFound
from durable_ir.incident import IncidentStatus, run_status
from durable_ir.records import ApprovalRecord, IncidentRecord
from durable_ir.runtime import Runtime
from durable_ir.service.models import (
    AlertEventEntry,
    Approval,
    IncidentDetail,
    IncidentSummary,
    RcaConclusion,
    StatusFilter,
    TimelineEntry,
)

__all__ = ["incident_detail", "list_incidents"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SCAN_LIMIT = 1000  # the index's page limit: how many open incidents a status filter reads


def _summary_fields(
    row: IncidentRecord, status: IncidentStatus, pending: ApprovalRecord | None, *, full: bool
) -> dict[str, Any]:
    return {
        "incident_id": row.incident_id,
        "graph": row.graph,
        "title": row.title or row.incident_id,
        "service": row.service,
        "severity": row.severity,
        "state": row.status,
        "status": status,
        "outcome": row.outcome,
        "fingerprint": row.fingerprint,
        "alerts_received": row.alerts_received,
        "opened_at": row.opened_at,
        "started_at": row.started_at,
        "last_alert_at": row.last_alert_at,
        "closed_at": row.closed_at,
        "pending_approval": Approval.of(pending, with_request=full) if pending else None,
    }


async def list_incidents(
    runtime: Runtime, *, status: StatusFilter | None, limit: int
) -> list[IncidentSummary]:
    """Incidents newest first: one index read and one ledger read (the latest approval of the
    open ones, all at once); closed ones are the index row alone."""
    if status in ("open", "closed"):
        rows = await runtime.incidents(status=status, limit=limit)
    elif status == "finished":
        rows = await runtime.incidents(status="closed", limit=limit)
    elif status is None:
        rows = await runtime.incidents(limit=limit)
    else:
        rows = await runtime.incidents(status="open", limit=_SCAN_LIMIT)
    latest = await runtime.store.ledger.latest_many([r.incident_id for r in rows if r.is_open])
    summaries = []
    for row in rows:
        last = latest.get(row.incident_id)
        row_status = run_status(row.status, last)
        if status not in (None, "open", "closed") and row_status != status:
            continue
        pending = last if last is not None and last.is_pending else None
        summaries.append(IncidentSummary(**_summary_fields(row, row_status, pending, full=False)))
    return summaries[:limit]


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _dict(value: object) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) else None


def _rca(values: Mapping[str, Any]) -> RcaConclusion | None:
    rca = _dict(values.get("rca"))
    if rca is None:
        return None
    hypothesis = _dict(rca.get("hypothesis")) or {}
    confidence = rca.get("confidence")
    attempts = rca.get("attempts")
    return RcaConclusion(
        status=_text(rca.get("status")),
        root_cause=_text(hypothesis.get("root_cause")),
        fault=_text(hypothesis.get("fault")),
        service=_text(hypothesis.get("service")),
        confidence=float(confidence) if isinstance(confidence, int | float) else None,
        attempts=attempts if isinstance(attempts, int) else None,
    )


def _timeline(values: Mapping[str, Any]) -> list[TimelineEntry]:
    entries = values.get("timeline")
    if not isinstance(entries, list):
        return []
    return [
        TimelineEntry(
            at=_text(e.get("at")), stage=_text(e.get("stage")), event=_text(e.get("event"))
        )
        for e in entries
        if isinstance(e, Mapping)
    ]


async def incident_detail(runtime: Runtime, incident_id: str) -> IncidentDetail:
    """One incident: index row, graph state highlights, approvals; ``NotFound`` if unknown."""
    incident_id = validate_incident_id(incident_id)
    ledger = runtime.store.ledger
    values: dict[str, Any] | None = None
    next_nodes: list[str] = []
    status: IncidentStatus | None = None
    # The run's state first, the index row after it: a run that ends in between is then seen
    # finished *and* closed (the runtime closes the row before it marks the decision applied).
    try:
        snapshot = await runtime.get(incident_id)
    except NotFound:
        snapshot = None
    except ConfigurationError:  # its graph is not served here: read the checkpoint raw
        snapshot = None
        values = await runtime.stored_values(incident_id)
    if snapshot is not None:
        values, next_nodes, status = snapshot.values, list(snapshot.next), snapshot.status
    row = await ledger.get_incident(incident_id)
    approvals = snapshot.approvals if snapshot is not None else await ledger.history(incident_id)
    latest = approvals[-1] if approvals else None
    if row is None and values is None and not approvals:
        raise NotFound(f"no incident {incident_id!r}")
    values = values or {}
    if status is None:  # not started yet, or its graph is not served here
        status = run_status(row.status if row else "open", latest)
    if row is None:  # started outside the index (e.g. by an older version): describe it
        row = IncidentRecord(
            incident_id=incident_id,
            graph=latest.graph if latest else "",
            opened_at=latest.requested_at if latest else _EPOCH,
            title=str(values.get("title") or incident_id),
            severity=_text(values.get("severity")),
        )
    pending = latest if latest is not None and latest.is_pending else None
    outcome = _dict(values.get("outcome")) or {}
    fields = _summary_fields(row, status, pending, full=True)
    fields["title"] = _text(values.get("title")) or fields["title"]
    fields["severity"] = _text(values.get("severity")) or fields["severity"]
    fields["outcome"] = fields["outcome"] or _text(outcome.get("status"))
    dry_run = values.get("dry_run")
    events = await ledger.alert_events(incident_id)
    resolved = [e.at for e in events if e.kind == "resolved"]
    alert = _alert_of(row, values)
    links = alert.get("links")
    return IncidentDetail(
        **fields,
        next=next_nodes,
        summary=_text(values.get("summary")),
        outcome_reason=_text(outcome.get("reason")),
        timeline=_timeline(values),
        plan=_dict(values.get("plan")),
        dry_run=[dict(d) for d in dry_run if isinstance(d, Mapping)]
        if isinstance(dry_run, list)
        else None,
        rca=_rca(values),
        approvals=[Approval.of(a) for a in approvals],
        report=_dict(values.get("report")) if status == "finished" else None,
        alert_events=[AlertEventEntry.model_validate(e.to_dict()) for e in events],
        alert_resolved_at=max(resolved) if resolved else None,
        links={
            str(k): str(v)
            for k, v in (links.items() if isinstance(links, Mapping) else ())
            if safe_url(v) is not None
        },
        group_key=_text(alert.get("group_key")),
    )


def _alert_of(row: IncidentRecord, values: Mapping[str, Any]) -> Mapping[str, Any]:
    """The incident's alert (as :meth:`~durable_ir.Alert.as_state` made it): from the
    graph state, else the run input the index kept."""
    alert = values.get("alert")
    if isinstance(alert, Mapping):
        return alert
    given = (row.alert or {}).get("alert")
    return given if isinstance(given, Mapping) else {}
