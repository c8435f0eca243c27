"""Notifying people about an incident — paging, chat — from graph nodes, at most once each.

A node can run more than once: the approval node re-runs from its first line when resumed, and
a node that was running when its process died runs again on recovery. So a node never calls a
channel directly; it calls :func:`send_once`, which looks the notification up in the ledger's
outbox (keyed by incident, channel, event and approval), sends only if it is not there, and
records what the channel answered.

The one window left is a crash after the channel accepted a message and before the outbox row
was written: the re-run sends it again. PagerDuty folds that repeat into the same alert (its
``dedup_key`` is derived from the incident); a chat message can appear twice. Failures of a
channel are logged and returned, never raised: a Slack outage must not stop remediation, and
PagerDuty's own retries have already run.

Example:
    >>> import asyncio
    >>> from datetime import UTC, datetime
    >>> from durable_ir.ledger import MemoryLedger
    >>> class Printer:
    ...     name = "printer"
    ...     async def notify(self, event):
    ...         print(event.kind, event.incident_id)
    ...         return {"printed": True}
    >>> event = IncidentEvent(kind="escalated", incident_id="inc-1", severity="P1",
    ...                       title="checkout 5xx", at=datetime(2026, 1, 1, tzinfo=UTC))
    >>> ledger = MemoryLedger()
    >>> asyncio.run(send_once(ledger, Printer(), event))
    escalated inc-1
    Sent(channel='printer', kind='escalated', result={'printed': True}, error=None, repeated=False)
    >>> asyncio.run(send_once(ledger, Printer(), event)).repeated
    True
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from durable_ir.errors import InvalidInput, OwnershipLost
from durable_ir.ledger.base import ApprovalLedger
from durable_ir.metrics import METRICS
from durable_ir.records import ApprovalRecord, NotificationRecord

__all__ = [
    "EventKind",
    "Fence",
    "IncidentEvent",
    "IncidentNotifier",
    "Sent",
    "notification_key",
    "send_once",
]

log = logging.getLogger("durable_ir.notifications")

EventKind = Literal[
    "opened", "approval_requested", "decided", "escalated", "resolved", "alert_resolved"
]
"""What happened: an incident was opened (after triage), asked for approval, was decided on,
was escalated to humans, or was resolved."""


@dataclass(frozen=True)
class IncidentEvent:
    """One thing that happened to an incident, as channels are told about it.

    ``earlier`` holds what this channel answered to its earlier notifications on the incident,
    by event kind (e.g. ``{"approval_requested": {"ts": "1712.0001"}}``), so a channel can
    thread updates under its first message or resolve the alert it raised.
    """

    kind: EventKind
    incident_id: str
    severity: str
    title: str
    at: datetime
    service: str | None = None
    summary: str = ""
    reason: str | None = None
    approval: ApprovalRecord | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    earlier: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@runtime_checkable
class IncidentNotifier(Protocol):
    """A channel: PagerDuty, Slack, or your own.

    ``name`` identifies the channel in the outbox (keep it stable across deploys).
    ``notify`` returns what the channel answered (JSON-ready), or ``None`` when this channel
    has nothing to send for the event.
    """

    name: str

    async def notify(self, event: IncidentEvent) -> dict[str, Any] | None:
        """Send what this channel sends for ``event``."""
        ...


@dataclass(frozen=True)
class Sent:
    """What :func:`send_once` did for one channel."""

    channel: str
    kind: str
    result: dict[str, Any] | None
    error: str | None = None
    repeated: bool = False
    """True when the outbox already held this notification, so nothing was sent now."""


def notification_key(event: IncidentEvent, channel: str) -> str:
    """The outbox key of ``event`` on ``channel``: one per incident, channel, kind and
    approval (an incident may ask for approval, and be decided on, more than once)."""
    key = f"{event.incident_id}|{channel}|{event.kind}"
    if event.approval is not None and event.kind in (
        "approval_requested",
        "decided",
        "alert_resolved",
    ):
        key += f"|{event.approval.approval_id}"
    return key


@dataclass(frozen=True)
class Fence:
    """The ownership a run sends under: its ``epoch`` and its worker id (``owner``)."""

    epoch: int
    owner: str


async def send_once(
    ledger: ApprovalLedger,
    notifier: IncidentNotifier,
    event: IncidentEvent,
    *,
    fence: Fence | None = None,
) -> Sent:
    """Send ``event`` on ``notifier`` unless the outbox shows it was sent; record the answer.

    With ``fence`` (a run under a runtime), the send is claimed first like a remediation
    step (key ``notify/<outbox key>``), conditional on the run's ownership epoch: a worker
    that was taken over gets :class:`~durable_ir.errors.OwnershipLost` instead of sending.
    """
    key = notification_key(event, notifier.name)
    done = await ledger.get_notification(key)
    if done is not None:
        METRICS.notification(notifier.name, "repeated")
        return Sent(notifier.name, event.kind, done.result, repeated=True)
    claim_key = f"notify/{key}"
    if fence is not None and (
        await ledger.claim_step(event.incident_id, claim_key, fence.epoch, fence.owner, event.at)
        is None
    ):
        raise OwnershipLost(event.incident_id, fence.epoch, f"notification {key} not sent")
    earlier = {
        row.kind: row.result
        for row in await ledger.list_notifications(event.incident_id)
        if row.channel == notifier.name
    }
    if earlier:
        event = _with_earlier(event, earlier)
    try:
        result = await notifier.notify(event)
    except Exception as exc:  # a channel outage must not stop the incident
        error = f"{type(exc).__name__}: {exc}"
        METRICS.notification(notifier.name, "failed")
        log.error(
            "%s notification %r for incident %s failed: %s",
            notifier.name,
            event.kind,
            event.incident_id,
            error,
        )
        return Sent(notifier.name, event.kind, None, error=error)
    if result is None:
        return Sent(notifier.name, event.kind, None)
    record = NotificationRecord(
        key=key,
        incident_id=event.incident_id,
        kind=event.kind,
        channel=notifier.name,
        sent_at=event.at,
        result=dict(result),
    )
    stored = await _record_sent(ledger, record)
    METRICS.notification(notifier.name, "sent")
    if fence is not None and not await ledger.finish_step(
        event.incident_id, claim_key, fence.epoch, True, "sent", event.at
    ):
        raise OwnershipLost(event.incident_id, fence.epoch, f"notification {key} sent, then")
    return Sent(notifier.name, event.kind, stored.result)


OUTBOX_RETRY_S = 60.0
"""How long :func:`send_once` keeps trying to record a notification the channel accepted."""


async def _record_sent(ledger: ApprovalLedger, record: NotificationRecord) -> NotificationRecord:
    """Write the outbox row of a notification that went out, retrying through a database
    outage (a restart, a dropped connection) for up to :data:`OUTBOX_RETRY_S`: if this write
    failed, the node would fail, run again, and send the notification a second time."""
    deadline = time.monotonic() + OUTBOX_RETRY_S
    pause = 0.1
    while True:
        try:
            return await ledger.record_notification(record)
        except InvalidInput:
            raise
        except Exception as exc:
            if time.monotonic() + pause > deadline:
                raise
            METRICS.notification(record.channel, "retried")
            log.warning(
                "recording the %s notification %r of incident %s failed (%s); retrying in %.1fs",
                record.channel,
                record.kind,
                record.incident_id,
                exc,
                pause,
            )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)


def _with_earlier(event: IncidentEvent, earlier: dict[str, dict[str, Any]]) -> IncidentEvent:
    return IncidentEvent(
        kind=event.kind,
        incident_id=event.incident_id,
        severity=event.severity,
        title=event.title,
        at=event.at,
        service=event.service,
        summary=event.summary,
        reason=event.reason,
        approval=event.approval,
        details=event.details,
        earlier={**earlier, **event.earlier},
    )
