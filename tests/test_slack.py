"""Slack integration through the real ``AsyncWebClient`` against a local Web API server,
and interactivity request verification with signatures computed the way Slack does."""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from durable_ir.approval.request import build_request
from durable_ir.errors import ConfigurationError, InvalidInput
from durable_ir.integrations.slack import (
    APPROVE_ACTION_ID,
    REJECT_ACTION_ID,
    SlackDecisionRequest,
    SlackError,
    SlackNotifier,
    SlackSignatureError,
    approval_blocks,
    parse_interaction,
)
from durable_ir.notifications import EventKind, IncidentEvent, IncidentNotifier, send_once
from durable_ir.persistence import open_store
from durable_ir.records import ApprovalRecord, ApprovalStatus
from support.local_http import serving
from support.slack_api import SlackApi

TS = "1700000000.000100"
TS2 = "1700000000.000101"
TS3 = "1700000000.000102"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = 1_700_000_000


@pytest.fixture
def slack() -> Iterator[SlackApi]:
    with serving(SlackApi()) as server:
        yield server


def notifier(server: SlackApi) -> SlackNotifier:
    client = AsyncWebClient(token="xoxb-test", base_url=server.url + "/api/")
    return SlackNotifier(client, "C0INCIDENTS")


PLAN = {
    "summary": "roll back checkout",
    "steps": [
        {"action": "rollback_deploy", "target": "checkout", "parameters": {"to": "v41"}},
        {"action": "restart", "target": "checkout <!channel>", "risk": "low"},
    ],
}


def record(**changes: Any) -> ApprovalRecord:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    deadline = datetime(2026, 1, 1, 0, 15, tzinfo=UTC)
    request = build_request(
        approval_id="appr-7",
        incident_id="inc-42",
        severity="P0",
        requested_at=at,
        deadline_at=deadline,
        plan=PLAN,
        summary="checkout 5xx after deploy v42",
    )
    fields: dict[str, Any] = {
        "approval_id": "appr-7",
        "incident_id": "inc-42",
        "graph": "incident",
        "node": "approval",
        "request": dict(request),
        "severity": "P0",
        "requested_at": at,
        "deadline_at": deadline,
        "status": ApprovalStatus.PENDING,
    }
    fields.update(changes)
    return ApprovalRecord(**fields)


def buttons(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]


def all_text(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks)


# --- Block Kit ---------------------------------------------------------------------------


def test_approval_blocks_show_incident_severity_deadline_plan_and_buttons() -> None:
    blocks = approval_blocks(record())
    assert blocks[0]["type"] == "header"
    text = all_text(blocks)
    assert "inc-42" in text and "P0" in text
    assert f"<!date^{int(datetime(2026, 1, 1, 0, 15, tzinfo=UTC).timestamp())}^" in text
    assert "rollback_deploy" in text and "restart" in text
    assert "<!channel>" not in text  # text from the plan is escaped
    approve, reject = buttons(blocks)
    assert (approve["action_id"], approve["style"]) == (APPROVE_ACTION_ID, "primary")
    assert (reject["action_id"], reject["style"]) == (REJECT_ACTION_ID, "danger")
    for button in (approve, reject):
        assert json.loads(button["value"]) == {"incident_id": "inc-42", "approval_id": "appr-7"}


def test_approval_blocks_refuse_a_request_without_a_plan() -> None:
    with pytest.raises(InvalidInput):
        approval_blocks(record(request={"durable_ir": {}}))


# --- Web API through the real client ------------------------------------------------------


async def test_post_approval_sends_blocks_and_returns_ts(slack: SlackApi) -> None:
    ts = await notifier(slack).post_approval(record())
    assert ts == TS
    [(path, auth, body)] = slack.requests
    assert path == "/api/chat.postMessage"
    assert auth == "Bearer xoxb-test"
    assert body["channel"] == "C0INCIDENTS"
    assert "inc-42" in body["text"]  # fallback for notifications
    sent = buttons(body["blocks"])
    assert [b["action_id"] for b in sent] == [APPROVE_ACTION_ID, REJECT_ACTION_ID]
    assert [json.loads(b["value"]) for b in sent] == [
        {"incident_id": "inc-42", "approval_id": "appr-7"}
    ] * 2


async def test_post_update_replies_in_the_thread(slack: SlackApi) -> None:
    await notifier(slack).post_update(TS, "dry-run finished <@U123>")
    [(path, _, body)] = slack.requests
    assert path == "/api/chat.postMessage"
    assert body["channel"] == "C0INCIDENTS"
    assert body["thread_ts"] == TS
    assert body["text"] == "dry-run finished &lt;@U123&gt;"


async def test_mark_decided_replaces_the_buttons_with_the_decision(slack: SlackApi) -> None:
    decided = record(
        status=ApprovalStatus.REJECTED,
        decided_by="alice",
        decided_at=datetime(2026, 1, 1, 0, 5, tzinfo=UTC),
        reason="wrong service",
    )
    await notifier(slack).mark_decided(TS, decided)
    [(path, _, body)] = slack.requests
    assert path == "/api/chat.update"
    assert (body["channel"], body["ts"]) == ("C0INCIDENTS", TS)
    assert buttons(body["blocks"]) == []
    text = all_text(body["blocks"])
    assert "Rejected" in text and "alice" in text and "wrong service" in text
    assert "rollback_deploy" in text  # the plan stays visible


async def test_mark_decided_refuses_a_pending_record(slack: SlackApi) -> None:
    with pytest.raises(InvalidInput):
        await notifier(slack).mark_decided(TS, record())
    assert slack.requests == []


async def test_api_error_becomes_slack_error_with_the_code(slack: SlackApi) -> None:
    slack.error = "channel_not_found"
    with pytest.raises(SlackError) as caught:
        await notifier(slack).post_approval(record())
    assert caught.value.code == "channel_not_found"
    with pytest.raises(SlackError) as caught:
        await notifier(slack).post_update(TS, "x")
    assert caught.value.code == "channel_not_found"


async def test_unreachable_slack_is_a_slack_error() -> None:
    server = SlackApi()
    url = server.url
    server.server_close()  # nothing listens there any more
    client = AsyncWebClient(token="xoxb-test", base_url=url + "/api/", retry_handlers=[])
    with pytest.raises(SlackError) as caught:
        await SlackNotifier(client, "C0INCIDENTS").post_update(TS, "x")
    assert caught.value.code == "request_failed"


# --- As an IncidentNotifier ------------------------------------------------------------

DECIDED_AT = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)


def event(kind: EventKind, **changes: Any) -> IncidentEvent:
    fields: dict[str, Any] = {
        "kind": kind,
        "incident_id": "inc-42",
        "severity": "P0",
        "title": "checkout 5xx after deploy v42",
        "at": datetime(2026, 1, 1, tzinfo=UTC),
        "service": "checkout",
    }
    fields.update(changes)
    return IncidentEvent(**fields)


def approved() -> ApprovalRecord:
    return record(
        status=ApprovalStatus.APPROVED,
        decided_by="alice",
        decided_at=DECIDED_AT,
        reason="rollback is safe",
    )


REQUESTED = {"approval_requested": {"ts": TS, "channel": "C0INCIDENTS", "approval_id": "appr-7"}}


def test_it_is_an_incident_notifier() -> None:
    client = AsyncWebClient(token="xoxb-test")
    default = SlackNotifier(client, "C0INCIDENTS")
    assert isinstance(default, IncidentNotifier)
    assert default.name == "slack"
    assert SlackNotifier(client, "C0INCIDENTS", name="slack-sre").name == "slack-sre"
    with pytest.raises(ConfigurationError, match="name"):
        SlackNotifier(client, "C0INCIDENTS", name="")


async def test_approval_requested_posts_the_approval_message(slack: SlackApi) -> None:
    result = await notifier(slack).notify(event("approval_requested", approval=record()))

    assert result == {"ts": TS, "channel": "C0INCIDENTS", "approval_id": "appr-7"}
    [(path, _, body)] = slack.requests
    assert path == "/api/chat.postMessage"
    assert body["channel"] == "C0INCIDENTS" and "thread_ts" not in body
    assert [b["action_id"] for b in buttons(body["blocks"])] == [
        APPROVE_ACTION_ID,
        REJECT_ACTION_ID,
    ]


@pytest.mark.parametrize("kind", ["approval_requested", "decided"])
async def test_an_approval_event_without_its_record_sends_nothing(
    slack: SlackApi, kind: EventKind
) -> None:
    with pytest.raises(InvalidInput, match="approval"):
        await notifier(slack).notify(event(kind, earlier=REQUESTED))
    assert slack.requests == []


async def test_decided_marks_the_approval_message_and_replies_in_its_thread(
    slack: SlackApi,
) -> None:
    result = await notifier(slack).notify(event("decided", approval=approved(), earlier=REQUESTED))

    assert result == {"ts": TS, "thread_ts": TS, "channel": "C0INCIDENTS"}
    (update_path, _, update), (post_path, _, reply) = slack.requests
    assert update_path == "/api/chat.update"
    assert (update["channel"], update["ts"]) == ("C0INCIDENTS", TS)
    assert buttons(update["blocks"]) == []
    assert "Approved" in all_text(update["blocks"]) and "alice" in all_text(update["blocks"])
    assert post_path == "/api/chat.postMessage"
    assert reply["thread_ts"] == TS
    assert reply["text"] == (
        "✅ *Decision*: approved by alice at 2026-01-01T00:05:00+00:00: rollback is safe"
    )


async def test_decided_leaves_another_approvals_message_alone(slack: SlackApi) -> None:
    earlier = {"approval_requested": {**REQUESTED["approval_requested"], "approval_id": "appr-6"}}
    result = await notifier(slack).notify(event("decided", approval=approved(), earlier=earlier))

    [(path, _, reply)] = slack.requests  # no chat.update of appr-6's message
    assert path == "/api/chat.postMessage"
    assert reply["thread_ts"] == TS
    assert result is not None and result["thread_ts"] == TS


async def test_decided_without_an_approval_message_posts_top_level(slack: SlackApi) -> None:
    result = await notifier(slack).notify(event("decided", approval=approved()))

    assert result == {"ts": TS, "channel": "C0INCIDENTS"}
    [(path, _, body)] = slack.requests
    assert path == "/api/chat.postMessage" and "thread_ts" not in body
    assert "approved by alice" in body["text"]
    assert "*P0* checkout 5xx after deploy v42 (incident `inc-42`" in body["text"]


async def test_escalated_replies_in_the_approval_thread(slack: SlackApi) -> None:
    result = await notifier(slack).notify(
        event("escalated", reason="approval expired after 15 min", earlier=REQUESTED)
    )

    assert result == {"ts": TS, "thread_ts": TS, "channel": "C0INCIDENTS"}
    [(path, _, body)] = slack.requests
    assert path == "/api/chat.postMessage"
    assert (body["channel"], body["thread_ts"]) == ("C0INCIDENTS", TS)
    assert body["text"] == (
        "🚨 *Escalated to on-call*: *P0* checkout 5xx after deploy v42 "
        "(incident `inc-42`, service checkout)\n*Reason*: approval expired after 15 min"
    )


async def test_escalated_without_a_thread_posts_top_level_escaped(slack: SlackApi) -> None:
    result = await notifier(slack).notify(
        event(
            "escalated",
            severity="P1",
            title="db <!channel> & replicas",
            service=None,
            summary="replication lag > 5 min",
            reason="remediation failed: <@U123>",
        )
    )

    assert result == {"ts": TS, "channel": "C0INCIDENTS"}
    [(path, _, body)] = slack.requests
    assert path == "/api/chat.postMessage" and "thread_ts" not in body
    assert body["text"] == (
        "🚨 *Escalated to on-call*: *P1* db &lt;!channel&gt; &amp; replicas "
        "(incident `inc-42`)\n*Reason*: remediation failed: &lt;@U123&gt;\n"
        "replication lag &gt; 5 min"
    )


async def test_resolved_replies_in_the_approval_thread(slack: SlackApi) -> None:
    result = await notifier(slack).notify(
        event("resolved", reason="rolled back to v41", earlier=REQUESTED)
    )
    assert result == {"ts": TS, "thread_ts": TS, "channel": "C0INCIDENTS"}
    [(_, _, body)] = slack.requests
    assert body["thread_ts"] == TS
    assert body["text"].startswith("✅ *Resolved*: *P0* checkout 5xx after deploy v42")
    assert "rolled back to v41" in body["text"]


async def test_resolved_threads_under_a_top_level_escalation(slack: SlackApi) -> None:
    n = notifier(slack)
    escalated = await n.notify(event("escalated", reason="approval expired"))
    assert escalated == {"ts": TS, "channel": "C0INCIDENTS"}
    resolved = await n.notify(event("resolved", earlier={"escalated": escalated}))

    assert resolved == {"ts": TS2, "thread_ts": TS, "channel": "C0INCIDENTS"}
    assert slack.requests[1][2]["thread_ts"] == TS


async def test_opened_posts_nothing(slack: SlackApi) -> None:
    assert await notifier(slack).notify(event("opened")) is None
    assert slack.requests == []


async def test_a_slack_error_propagates_from_notify(slack: SlackApi) -> None:
    slack.error = "not_in_channel"
    with pytest.raises(SlackError) as caught:
        await notifier(slack).notify(event("escalated"))
    assert caught.value.code == "not_in_channel"


async def test_send_once_posts_the_approval_once(slack: SlackApi) -> None:
    n = notifier(slack)
    requested = event("approval_requested", approval=record())
    async with open_store("memory://") as store:
        first = await send_once(store.ledger, n, requested)
        again = await send_once(store.ledger, n, requested)  # the approval node re-ran

    assert first.result == {"ts": TS, "channel": "C0INCIDENTS", "approval_id": "appr-7"}
    assert again.repeated and again.result == first.result
    assert len(slack.requests) == 1


async def test_send_once_threads_the_incident_under_its_approval(slack: SlackApi) -> None:
    n = notifier(slack)
    steps: list[tuple[int, EventKind, dict[str, Any]]] = [
        (0, "approval_requested", {"approval": record()}),
        (5, "decided", {"approval": approved()}),
        (9, "escalated", {"reason": "remediation failed"}),
        (30, "resolved", {"reason": "fixed by hand"}),
    ]
    async with open_store("memory://") as store:
        for minute, kind, changes in steps:
            at = datetime(2026, 1, 1, 0, minute, tzinfo=UTC)
            sent = await send_once(store.ledger, n, event(kind, at=at, **changes))
            assert sent.error is None
        rows = await store.ledger.list_notifications("inc-42")

    paths = [path for path, _, _ in slack.requests]
    assert paths == ["/api/chat.postMessage", "/api/chat.update"] + ["/api/chat.postMessage"] * 3
    assert slack.requests[1][2]["ts"] == TS
    assert [body.get("thread_ts") for _, _, body in slack.requests] == [None, None, TS, TS, TS]
    assert [(row.kind, row.result["ts"]) for row in rows] == [
        ("approval_requested", TS),
        ("decided", TS2),
        ("escalated", TS3),
        ("resolved", "1700000000.000103"),
    ]


async def test_send_once_reports_a_slack_outage_without_raising(slack: SlackApi) -> None:
    slack.error = "ratelimited"
    async with open_store("memory://") as store:
        sent = await send_once(store.ledger, notifier(slack), event("escalated"))
        assert await store.ledger.list_notifications("inc-42") == []
    assert sent.result is None
    assert sent.error is not None and "ratelimited" in sent.error


# --- Interactivity -----------------------------------------------------------------------


def click(action_id: str = APPROVE_ACTION_ID, **overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": "U0ALICE", "username": "alice"},
        "response_url": "https://hooks.slack.com/actions/T1/1/abc",
        "actions": [
            {
                "action_id": action_id,
                "block_id": "durable_ir_decision",
                "type": "button",
                "value": json.dumps({"incident_id": "inc-42", "approval_id": "appr-7"}),
            }
        ],
    }
    payload.update(overrides)
    return payload


def form(payload: Any) -> bytes:
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    return urllib.parse.urlencode({"payload": raw}).encode()


def signed(body: bytes, timestamp: int = NOW, secret: str = SECRET) -> dict[str, str]:
    base = f"v0:{timestamp}:".encode() + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": signature}


@pytest.mark.parametrize(
    ("action_id", "kind"), [(APPROVE_ACTION_ID, "approve"), (REJECT_ACTION_ID, "reject")]
)
def test_a_signed_click_parses(action_id: str, kind: str) -> None:
    body = form(click(action_id))
    got = parse_interaction(body, signed(body), SECRET, now=NOW + 30)
    assert got == SlackDecisionRequest(
        incident_id="inc-42",
        approval_id="appr-7",
        kind=kind,  # type: ignore[arg-type]
        slack_user_id="U0ALICE",
        response_url="https://hooks.slack.com/actions/T1/1/abc",
    )


def test_header_names_are_case_insensitive() -> None:
    body = form(click())
    headers = {k.lower(): v for k, v in signed(body).items()}
    assert parse_interaction(body, headers, SECRET, now=NOW).kind == "approve"


def test_a_wrong_signature_is_refused() -> None:
    body = form(click())
    with pytest.raises(SlackSignatureError):
        parse_interaction(body, signed(body, secret="not-the-secret"), SECRET, now=NOW)
    tampered = form(click(REJECT_ACTION_ID))  # signed approve, sent reject
    with pytest.raises(SlackSignatureError):
        parse_interaction(tampered, signed(body), SECRET, now=NOW)
    with pytest.raises(InvalidInput):  # SlackSignatureError is an InvalidInput
        parse_interaction(body, {}, SECRET, now=NOW)


@pytest.mark.parametrize("age", [301, -301, 86_400])
def test_a_stale_timestamp_is_refused_even_when_signed(age: int) -> None:
    body = form(click())
    with pytest.raises(SlackSignatureError, match="from now"):
        parse_interaction(body, signed(body, timestamp=NOW - age), SECRET, now=NOW)


def test_a_non_numeric_timestamp_is_refused() -> None:
    body = form(click())
    headers = signed(body)
    headers["X-Slack-Request-Timestamp"] = "soon"
    with pytest.raises(SlackSignatureError):
        parse_interaction(body, headers, SECRET, now=NOW)


def test_the_default_clock_is_now() -> None:
    body = form(click())
    with pytest.raises(SlackSignatureError, match="from now"):
        parse_interaction(body, signed(body, timestamp=NOW), SECRET)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not a form",
        b"payload=%7Bnot+json",
        form([1, 2]),
        form(click(type="view_submission")),
        form(click(user="U0ALICE")),
        form(click(user={"id": ""})),
        form(click(actions=[])),
        form(click(actions=[click()["actions"][0]] * 2)),
        form(click(response_url="http://evil.example/")),
        form({**click(), "actions": [{"action_id": APPROVE_ACTION_ID, "value": "{not json"}]}),
        form(
            {
                **click(),
                "actions": [{"action_id": APPROVE_ACTION_ID, "value": '{"incident_id":"i"}'}],
            }
        ),
        form({**click(), "actions": [{"action_id": APPROVE_ACTION_ID, "value": 7}]}),
        form(
            {
                **click(),
                "actions": [
                    {
                        "action_id": APPROVE_ACTION_ID,
                        "value": '{"incident_id":"","approval_id":"a"}',
                    }
                ],
            }
        ),
        form(click()) + b"&payload=x",
    ],
)
def test_a_malformed_payload_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_interaction(body, signed(body), SECRET, now=NOW)
    assert not isinstance(caught.value, SlackSignatureError)


@pytest.mark.parametrize("action_id", ["durable_ir_edit", "", None, 3])
def test_an_unknown_action_id_is_refused(action_id: Any) -> None:
    body = form(click(action_id))
    with pytest.raises(InvalidInput, match="unknown action_id"):
        parse_interaction(body, signed(body), SECRET, now=NOW)
