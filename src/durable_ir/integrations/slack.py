"""Slack: approval requests as Block Kit messages, a thread of updates, and button clicks.

Uses the official ``slack-sdk`` (the ``slack`` extra installs it with ``aiohttp``, which its
:class:`~slack_sdk.web.async_client.AsyncWebClient` needs).

- :func:`approval_blocks` renders a pending approval: incident, severity, deadline, the plan's
  steps, and Approve / Reject buttons whose ``value`` carries the incident and approval ids.
- :class:`SlackNotifier` posts that message (``chat.postMessage``), replies in its thread,
  and replaces the buttons with the decision once one is recorded (``chat.update``). Slack
  API and transport errors become :class:`SlackError` with Slack's error code. Posting is
  not idempotent: call it from a node whose re-run cannot post twice, and keep the returned
  ``ts``. It is also an :class:`~durable_ir.notifications.IncidentNotifier` (``name``
  ``"slack"``): through :func:`~durable_ir.notifications.send_once`, it posts approval
  requests, marks them decided, and threads escalations and resolutions under them.
- :func:`parse_interaction` verifies an interactivity request's signature and timestamp and
  parses the button click into a :class:`SlackDecisionRequest`. It decides nothing: the
  service maps the Slack user to an approver identity and calls ``Runtime.decide``.

Example:
    >>> from datetime import UTC, datetime
    >>> from durable_ir.approval.request import build_request
    >>> from durable_ir.records import ApprovalRecord, ApprovalStatus
    >>> at, deadline = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 2, tzinfo=UTC)
    >>> request = build_request(
    ...     approval_id="a1", incident_id="inc-1", severity="P1", requested_at=at,
    ...     deadline_at=deadline, plan={"steps": ["restart api"]}, summary="api 5xx",
    ... )
    >>> record = ApprovalRecord(
    ...     approval_id="a1", incident_id="inc-1", graph="incident", node="approval",
    ...     request=dict(request), severity="P1", requested_at=at, deadline_at=deadline,
    ...     status=ApprovalStatus.PENDING,
    ... )
    >>> buttons = approval_blocks(record)[-1]["elements"]
    >>> [(b["action_id"], b["style"]) for b in buttons]
    [('durable_ir_approve', 'primary'), ('durable_ir_reject', 'danger')]
    >>> buttons[0]["value"]
    '{"incident_id":"inc-1","approval_id":"a1"}'
"""

from __future__ import annotations

import json
import logging
import math
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, cast

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from durable_ir.alerts import safe_url
from durable_ir.decisions import ALERT_RESOLVED, ALERTMANAGER_IDENTITY
from durable_ir.errors import ConfigurationError, DurableIRError, InvalidInput
from durable_ir.notifications import IncidentEvent
from durable_ir.records import ApprovalRecord, ApprovalStatus

__all__ = [
    "APPROVE_ACTION_ID",
    "MAX_TIMESTAMP_SKEW",
    "REJECT_ACTION_ID",
    "SlackDecisionRequest",
    "SlackError",
    "SlackNotifier",
    "SlackSignatureError",
    "approval_blocks",
    "parse_interaction",
]

log = logging.getLogger(__name__)

APPROVE_ACTION_ID: Final = "durable_ir_approve"
REJECT_ACTION_ID: Final = "durable_ir_reject"
ACTIONS_BLOCK_ID: Final = "durable_ir_decision"
MAX_TIMESTAMP_SKEW: Final = 300
"""Seconds a request timestamp may be from now (Slack's and ``SignatureVerifier``'s window)."""

_KINDS: Final[dict[str, Literal["approve", "reject"]]] = {
    APPROVE_ACTION_ID: "approve",
    REJECT_ACTION_ID: "reject",
}
_HEADER_MAX: Final = 150  # plain_text in a header block
_SECTION_MAX: Final = 3000  # text in a section block
_BUTTON_VALUE_MAX: Final = 2000
_ID_MAX: Final = 256
_MAX_STEPS: Final = 20
_TEXT_MAX: Final = 3000  # keep messages readable; Slack truncates text past 40,000


class SlackError(DurableIRError):
    """A Slack Web API call failed. ``code`` is Slack's error code (``channel_not_found``,
    ``ratelimited``, …) or ``request_failed`` when no answer arrived."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class SlackSignatureError(InvalidInput):
    """An interactivity request is not signed by Slack with this signing secret, or its
    timestamp is missing or more than :data:`MAX_TIMESTAMP_SKEW` seconds from now."""


@dataclass(frozen=True)
class SlackDecisionRequest:
    """A verified Approve / Reject click. Not a decision: the service maps ``slack_user_id``
    to an approver identity (or refuses) before calling ``Runtime.decide``."""

    incident_id: str
    approval_id: str
    kind: Literal["approve", "reject"]
    slack_user_id: str
    response_url: str | None


def _escape(text: str) -> str:
    """Escape Slack's control characters so text from alerts cannot mention or link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _slack_date(at: datetime) -> str:
    """``<!date^…>``: shown in each reader's time zone, with an ISO fallback."""
    return f"<!date^{math.floor(at.timestamp())}^{{date_short_pretty}} {{time}}|{at.isoformat()}>"


def _plan_of(record: ApprovalRecord) -> tuple[Any, str]:
    try:
        action = record.request["action_requests"][0]
        return action["args"]["plan"], str(action.get("description") or "")
    except (KeyError, IndexError, TypeError) as exc:
        raise InvalidInput(
            f"approval {record.approval_id!r} has no action_requests[0].args.plan"
        ) from exc


def _step_line(number: int, step: Any) -> str:
    if not isinstance(step, Mapping):
        return f"{number}. {_escape(str(step))}"
    line = f"{number}. *{_escape(str(step.get('action', '?')))}*"
    if step.get("target"):
        line += f" `{_escape(str(step['target']))}`"
    if step.get("parameters"):
        line += f" {_escape(json.dumps(step['parameters'], sort_keys=True, default=str))}"
    if step.get("risk"):
        line += f" (risk: {_escape(str(step['risk']))})"
    rollback = step.get("rollback")
    if isinstance(rollback, Mapping) and rollback.get("action"):
        line += f" — rollback: {_escape(str(rollback['action']))}"
    return line


def _plan_text(plan: Any) -> str:
    steps = plan.get("steps") if isinstance(plan, Mapping) else plan
    if isinstance(steps, list) and steps:
        lines = [_step_line(n, s) for n, s in enumerate(steps[:_MAX_STEPS], start=1)]
        if len(steps) > _MAX_STEPS:
            lines.append(f"… and {len(steps) - _MAX_STEPS} more steps")
        text = "\n".join(lines)
    else:
        text = "```" + _escape(json.dumps(plan, indent=2, sort_keys=True, default=str)) + "```"
    return _truncate("*Plan*\n" + text, _SECTION_MAX)


def _button_value(record: ApprovalRecord) -> str:
    value = json.dumps(
        {"incident_id": record.incident_id, "approval_id": record.approval_id},
        separators=(",", ":"),
    )
    if len(value) > _BUTTON_VALUE_MAX:
        raise InvalidInput("incident and approval ids are too long for a Slack button value")
    return value


def _summary_blocks(record: ApprovalRecord) -> list[dict[str, Any]]:
    plan, description = _plan_of(record)
    fields = record.request.get("durable_ir")
    severity = record.severity
    if isinstance(fields, Mapping) and isinstance(fields.get("severity"), str):
        severity = fields["severity"]
    facts = (
        f"*Incident* `{_escape(record.incident_id)}`\n"
        f"*Severity* {_escape(severity)}\n"
        f"*Decide by* {_slack_date(record.deadline_at)}"
    )
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": _truncate(f"Approval needed: {record.incident_id}", _HEADER_MAX),
            },
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": _truncate(facts, _SECTION_MAX)}},
    ]
    if description:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _truncate(_escape(description), _SECTION_MAX)},
            }
        )
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _plan_text(plan)}})
    links = _links_text(record)
    if links:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": links}})
    return blocks


_LINK_NAMES = {"runbook": "Runbook", "dashboard": "Dashboard", "source": "Alert source"}


def _slack_url(url: str) -> str:
    """An http(s) URL as Slack's ``<url|text>`` can hold it: ``&``, ``<``, ``>`` escaped as
    Slack asks, and ``|`` (which would end the URL) percent-encoded."""
    return _escape(url).replace("|", "%7C")


def _links_text(record: ApprovalRecord) -> str:
    """The alert's links (runbook, dashboard, source) as Slack links; only http(s) URLs."""
    try:
        links = record.request["action_requests"][0]["args"].get("alert_links")
    except (KeyError, IndexError, TypeError, AttributeError):
        return ""
    if not isinstance(links, Mapping):
        return ""
    parts = [
        f"<{_slack_url(url)}|{_escape(_LINK_NAMES.get(str(name), str(name)))}>"
        for name, url in links.items()
        if isinstance(url, str) and safe_url(url) is not None
    ]
    return _truncate("*Links* " + " · ".join(parts), _SECTION_MAX) if parts else ""


def approval_blocks(record: ApprovalRecord) -> list[dict[str, Any]]:
    """The Block Kit message for a pending approval: header, incident / severity / deadline,
    the summary, the plan's steps, and Approve (primary) / Reject (danger) buttons.

    Text from the request is escaped (``&``, ``<``, ``>``), so an alert cannot ``@channel``
    or smuggle links; long text is truncated to Slack's limits. Raises
    :class:`~durable_ir.errors.InvalidInput` if the request holds no plan.
    """
    value = _button_value(record)
    buttons = [
        {
            "type": "button",
            "action_id": action_id,
            "text": {"type": "plain_text", "text": label},
            "style": style,
            "value": value,
        }
        for action_id, label, style in (
            (APPROVE_ACTION_ID, "Approve", "primary"),
            (REJECT_ACTION_ID, "Reject", "danger"),
        )
    ]
    return [
        *_summary_blocks(record),
        {"type": "actions", "block_id": ACTIONS_BLOCK_ID, "elements": buttons},
    ]


def _approval_of(event: IncidentEvent) -> ApprovalRecord:
    if event.approval is None:
        raise InvalidInput(f"a {event.kind!r} event must carry its approval record")
    return event.approval


def _fallback_text(record: ApprovalRecord) -> str:
    return _escape(
        f"Approval needed for incident {record.incident_id} ({record.severity}), "
        f"deadline {record.deadline_at.isoformat()}"
    )


def _incident_line(event: IncidentEvent) -> str:
    title = event.title.strip() or "(untitled)"
    line = f"*{event.severity}* {title} (incident `{event.incident_id}`"
    if event.service:
        line += f", service {event.service}"
    return line + ")"


def _event_text(event: IncidentEvent) -> str:
    """The message for an escalation or resolution: what happened, the reason code, and the
    detail (why it escalated, what verification read)."""
    if event.kind == "escalated":
        text = f"🚨 *Escalated to on-call*: {_incident_line(event)}"
    else:
        text = f"✅ *Resolved*: {_incident_line(event)}"
    if event.reason:
        text += f"\n*Reason*: {event.reason}"
    if event.summary:
        text += f"\n{event.summary}"
    return _truncate(text, _TEXT_MAX)


def _decision_text(record: ApprovalRecord) -> str:
    icon = {"approved": "✅", "rejected": "❌", "expired": "⌛"}.get(record.status.value, "•")
    if record.decided_by == ALERTMANAGER_IDENTITY and record.reason == ALERT_RESOLVED:
        return "✅ *The alert resolved* before a decision: the plan was not applied, nobody paged"
    text = f"{icon} *Decision*: {record.describe()}"
    if record.reason:
        text += f": {record.reason}"
    return text


def _approval_message(event: IncidentEvent, record: ApprovalRecord) -> str | None:
    """The ``ts`` of ``record``'s approval message, to update in place. ``earlier`` holds the
    incident's latest approval message: it is this approval's if its ``approval_id`` says so
    (or it predates ``approval_id`` in the result); else ``None``."""
    requested = event.earlier.get("approval_requested") or {}
    message = requested.get("ts")
    if not isinstance(message, str) or not message:
        return None
    return (
        message if requested.get("approval_id", record.approval_id) == record.approval_id else None
    )


def _thread_root(earlier: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The ``ts`` of the incident's thread: the approval request's, else a top-level
    escalation's (a reply's result carries its ``thread_ts``)."""
    for kind in ("approval_requested", "escalated"):
        result = earlier.get(kind)
        if not isinstance(result, Mapping):
            continue
        root = result.get("thread_ts") or result.get("ts")
        if isinstance(root, str) and root:
            return root
    return None


class SlackNotifier:
    """Posts approval requests to one channel and keeps their threads up to date.

    Pass the channel's ID (``C…``), not its name: ``chat.update`` accepts only IDs. ``name``
    (default ``"slack"``) keys this channel's rows in the notification outbox when it is used
    as an :class:`~durable_ir.notifications.IncidentNotifier`; give each of several Slack
    notifiers its own.

    Example:
        >>> notifier = SlackNotifier(AsyncWebClient(token="xoxb-test"), "C0123")
        >>> notifier.channel, notifier.name
        ('C0123', 'slack')
    """

    name: str = "slack"

    def __init__(self, client: AsyncWebClient, channel: str, *, name: str = "slack") -> None:
        if not channel:
            raise ConfigurationError("SlackNotifier needs a channel ID")
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"name must be a non-empty string, got {name!r}")
        self.client = client
        self.channel = channel
        self.name = name

    async def notify(self, event: IncidentEvent) -> dict[str, Any] | None:
        """Post what Slack shows for ``event``, as an
        :class:`~durable_ir.notifications.IncidentNotifier`.

        - ``approval_requested``: the approval message (:meth:`post_approval` with
          ``event.approval``) → ``{"ts", "channel", "approval_id"}``;
        - ``decided``: replace that message's buttons with the decision (:meth:`mark_decided`)
          and say so in its thread → ``{"ts", "thread_ts", "channel"}``. Without an approval
          message for this approval in ``event.earlier``, the decision is posted in the
          incident's thread, or top level if there is none;
        - ``alert_resolved``: note on the pending approval message that the alert resolved
          (its buttons stay) and say so in its thread;
        - ``escalated``, ``resolved``: severity, title, incident and reason, in the incident's
          thread (under the approval message, else under a top-level escalation), or top
          level if there is none → ``{"ts", "channel"}`` (and ``"thread_ts"`` for a reply);
        - ``opened``: nothing (``None``).

        Raises :class:`SlackError` when Slack refuses or cannot be reached, and
        :class:`~durable_ir.errors.InvalidInput` when an approval event carries no approval.
        """
        if event.kind == "opened":
            return None
        if event.kind == "approval_requested":
            record = _approval_of(event)
            ts = await self.post_approval(record)
            return {"ts": ts, "channel": self.channel, "approval_id": record.approval_id}
        thread = _thread_root(event.earlier)
        if event.kind == "decided":
            record = _approval_of(event)
            message = _approval_message(event, record)
            if message is not None:
                await self.mark_decided(message, record)
            text = _decision_text(record)
            if thread is None:
                text = f"{text} — {_incident_line(event)}"
        elif event.kind in ("escalated", "resolved"):
            text = _event_text(event)
        elif event.kind == "alert_resolved":
            record = _approval_of(event)
            message = _approval_message(event, record)
            if message is not None:
                await self.mark_alert_resolved(message, record, event.at)
            text = (
                f"🔕 *The alert resolved* {_slack_date(event.at)}: this approval may no longer "
                "be needed (it is still open)."
            )
        else:
            return None
        if thread is None:
            return {"ts": await self.post_message(text), "channel": self.channel}
        reply = await self.post_update(thread, text)
        return {"ts": reply, "thread_ts": thread, "channel": self.channel}

    async def post_message(self, text: str) -> str:
        """Post a top-level message; returns its ``ts``. ``text`` is escaped as in
        :meth:`post_update`."""
        return await self._post(text, None)

    async def post_approval(self, record: ApprovalRecord) -> str:
        """Post the approval message; returns its ``ts`` (the thread to reply in)."""
        response = await self._call(
            "chat.postMessage",
            lambda: self.client.chat_postMessage(
                channel=self.channel, text=_fallback_text(record), blocks=approval_blocks(record)
            ),
        )
        ts = response.get("ts")
        if not isinstance(ts, str) or not ts:
            raise SlackError("chat.postMessage answered without a message ts", code="no_ts")
        return ts

    async def post_update(self, thread_ts: str, text: str) -> str:
        """Reply in the approval's thread; returns the reply's ``ts``. ``text`` is escaped;
        ``*bold*`` etc. still work."""
        return await self._post(text, thread_ts)

    async def _post(self, text: str, thread_ts: str | None) -> str:
        message: dict[str, Any] = {"channel": self.channel, "text": _escape(text)}
        if thread_ts is not None:
            message["thread_ts"] = thread_ts
        response = await self._call(
            "chat.postMessage", lambda: self.client.chat_postMessage(**message)
        )
        ts = response.get("ts")
        if not isinstance(ts, str) or not ts:
            raise SlackError("chat.postMessage answered without a message ts", code="no_ts")
        return ts

    async def mark_alert_resolved(self, ts: str, record: ApprovalRecord, at: datetime) -> None:
        """Note on the pending approval message ``ts`` that the alert resolved at ``at``;
        its buttons stay (a person still decides)."""
        note = {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"🔕 *The alert resolved* {_slack_date(at)}: "
                    "this plan may no longer be needed.",
                }
            ],
        }
        blocks = approval_blocks(record)
        blocks.insert(len(blocks) - 1, note)
        text = _escape(f"Incident {record.incident_id}: the alert resolved; approval still open")
        await self._call(
            "chat.update",
            lambda: self.client.chat_update(channel=self.channel, ts=ts, text=text, blocks=blocks),
        )

    async def mark_decided(self, ts: str, record: ApprovalRecord) -> None:
        """Replace the buttons of message ``ts`` with who decided what, and when.

        Raises :class:`~durable_ir.errors.InvalidInput` if ``record`` is still pending.
        """
        if record.status is ApprovalStatus.PENDING:
            raise InvalidInput(f"approval {record.approval_id!r} is still pending")
        icon = {"approved": "✅", "rejected": "❌", "expired": "⌛"}[record.status.value]
        outcome = f"{icon} *{record.status.value.capitalize()}*"
        if record.edited_plan is not None:
            outcome += " with an edited plan"
        if record.decided_by:
            outcome += f" by {_escape(record.decided_by)}"
        if record.decided_at is not None:
            outcome += f" at {_slack_date(record.decided_at)}"
        if record.reason:
            outcome += f": {_escape(record.reason)}"
        if record.decided_by == ALERTMANAGER_IDENTITY and record.reason == ALERT_RESOLVED:
            outcome = (
                "✅ *The alert resolved* before a decision"
                + (f" ({_slack_date(record.decided_at)})" if record.decided_at else "")
                + ": the plan was not applied and nobody was paged"
                + f" (expired by {ALERTMANAGER_IDENTITY})"
            )
        blocks = [
            *_summary_blocks(record),
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _truncate(outcome, 3000)}]},
        ]
        text = _escape(f"Incident {record.incident_id}: {record.describe()}")
        await self._call(
            "chat.update",
            lambda: self.client.chat_update(channel=self.channel, ts=ts, text=text, blocks=blocks),
        )

    async def _call(
        self, method: str, call: Callable[[], Awaitable[AsyncSlackResponse]]
    ) -> AsyncSlackResponse:
        try:
            return await call()
        except SlackApiError as exc:
            data = exc.response.data if isinstance(exc.response.data, dict) else {}
            code = str(data.get("error") or f"http_{exc.response.status_code}")
            raise SlackError(f"Slack {method} failed: {code}", code=code) from exc
        except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
            raise SlackError(f"Slack {method} failed: {exc!r}", code="request_failed") from exc


class _FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _verify(body: bytes, headers: Mapping[str, str], signing_secret: str, now: float) -> None:
    try:
        verifier = SignatureVerifier(signing_secret, clock=_FixedClock(now))
    except ValueError as exc:
        raise ConfigurationError(f"Slack signing secret: {exc}") from exc
    timestamp = _header(headers, "x-slack-request-timestamp")
    signature = _header(headers, "x-slack-signature")
    if not timestamp or not signature:
        raise SlackSignatureError("missing X-Slack-Request-Timestamp or X-Slack-Signature")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise SlackSignatureError("X-Slack-Request-Timestamp is not a Unix time")
    if abs(now - int(timestamp)) > MAX_TIMESTAMP_SKEW:
        raise SlackSignatureError(
            f"X-Slack-Request-Timestamp is more than {MAX_TIMESTAMP_SKEW} s from now (replay?)"
        )
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SlackSignatureError("request body is not UTF-8") from exc
    if not verifier.is_valid(body, timestamp, signature):
        raise SlackSignatureError("X-Slack-Signature does not match the request body")


def _str_field(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value or len(value) > _ID_MAX:
        raise InvalidInput(f"{where}.{key} must be a non-empty string of at most {_ID_MAX}")
    return value


def _payload(body: bytes) -> dict[str, Any]:
    try:
        form = urllib.parse.parse_qs(
            body.decode("utf-8"), strict_parsing=True, errors="strict", max_num_fields=10
        )
    except ValueError as exc:  # includes UnicodeDecodeError
        raise InvalidInput(f"interaction body is not a form: {exc}") from exc
    values = form.get("payload")
    if values is None or len(values) != 1:
        raise InvalidInput("interaction body must hold exactly one 'payload' field")
    try:
        payload = json.loads(values[0])
    except ValueError as exc:
        raise InvalidInput(f"interaction payload is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise InvalidInput("interaction payload must be a JSON object")
    return cast(dict[str, Any], payload)


def parse_interaction(
    body: bytes,
    headers: Mapping[str, str],
    signing_secret: str,
    *,
    now: float | None = None,
) -> SlackDecisionRequest:
    """Verify and parse a Slack interactivity request (an Approve / Reject click).

    Checks, in order: the ``X-Slack-Request-Timestamp`` is within :data:`MAX_TIMESTAMP_SKEW`
    seconds of ``now`` (default: the current time) and ``X-Slack-Signature`` is Slack's
    HMAC-SHA256 of ``v0:{timestamp}:{body}`` with ``signing_secret`` (via
    :class:`slack_sdk.signature.SignatureVerifier`), else :class:`SlackSignatureError`;
    then that the body is a form with one ``payload`` field holding a ``block_actions``
    payload with exactly one durable-ir button action, else
    :class:`~durable_ir.errors.InvalidInput`. An empty ``signing_secret`` is a
    :class:`~durable_ir.errors.ConfigurationError`.

    This does **not** decide. The caller (the service) must map ``slack_user_id`` to an
    approver identity it trusts, refuse unknown users, and then call
    ``Runtime.decide(incident_id, …, approval_id=approval_id)`` with that identity as ``by``.

    Example:
        >>> import hashlib, hmac, json, urllib.parse
        >>> payload = {"type": "block_actions", "user": {"id": "U1"}, "actions": [{
        ...     "action_id": "durable_ir_reject",
        ...     "value": json.dumps({"incident_id": "inc-1", "approval_id": "a1"})}]}
        >>> body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        >>> base = b"v0:1700000000:" + body
        >>> headers = {"X-Slack-Request-Timestamp": "1700000000", "X-Slack-Signature":
        ...     "v0=" + hmac.new(b"secret", base, hashlib.sha256).hexdigest()}
        >>> parse_interaction(body, headers, "secret", now=1700000010)
        SlackDecisionRequest(incident_id='inc-1', approval_id='a1', kind='reject', \
slack_user_id='U1', response_url=None)
        >>> parse_interaction(body, headers, "other secret", now=1700000010)
        Traceback (most recent call last):
        ...
        durable_ir.integrations.slack.SlackSignatureError: X-Slack-Signature does not match \
the request body
    """
    _verify(body, headers, signing_secret, time.time() if now is None else now)
    payload = _payload(body)
    if payload.get("type") != "block_actions":
        raise InvalidInput(f"unsupported interaction type {payload.get('type')!r}")
    user = payload.get("user")
    if not isinstance(user, dict):
        raise InvalidInput("interaction payload has no user")
    slack_user_id = _str_field(user, "id", "user")
    actions = payload.get("actions")
    if not isinstance(actions, list) or len(actions) != 1 or not isinstance(actions[0], dict):
        raise InvalidInput("interaction payload must hold exactly one action")
    action = actions[0]
    action_id = action.get("action_id")
    kind = _KINDS.get(action_id) if isinstance(action_id, str) else None
    if kind is None:
        raise InvalidInput(f"unknown action_id {action_id!r}")
    raw_value = action.get("value")
    if not isinstance(raw_value, str) or len(raw_value) > _BUTTON_VALUE_MAX:
        raise InvalidInput("action value must be a string of at most 2000 characters")
    try:
        value = json.loads(raw_value)
    except ValueError as exc:
        raise InvalidInput(f"action value is not JSON: {exc}") from exc
    if not isinstance(value, dict) or set(value) != {"incident_id", "approval_id"}:
        raise InvalidInput("action value must be an object with incident_id and approval_id")
    response_url = payload.get("response_url")
    if response_url is not None and (
        not isinstance(response_url, str) or not response_url.startswith("https://")
    ):
        raise InvalidInput("response_url must be an https URL")
    return SlackDecisionRequest(
        incident_id=_str_field(value, "incident_id", "value"),
        approval_id=_str_field(value, "approval_id", "value"),
        kind=kind,
        slack_user_id=slack_user_id,
        response_url=response_url,
    )
