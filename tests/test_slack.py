"""Slack integration through the real ``AsyncWebClient`` against a local Web API server,
and interactivity request verification with signatures computed the way Slack does."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from durable_ir.approval.request import build_request
from durable_ir.errors import InvalidInput
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
from durable_ir.records import ApprovalRecord, ApprovalStatus
from support.local_http import LocalHttpServer, serving

TS = "1700000000.000100"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = 1_700_000_000


class SlackApi(LocalHttpServer):
    """Speaks the two Web API methods the notifier uses; records every request."""

    def __init__(self) -> None:
        super().__init__(SlackHandler)
        self.requests: list[tuple[str, str | None, dict[str, Any]]] = []
        self.error: str | None = None
        self.lock = threading.Lock()


class SlackHandler(BaseHTTPRequestHandler):
    server: SlackApi

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            body: dict[str, Any] = json.loads(raw)
        else:
            body = {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}
        if isinstance(body.get("blocks"), str):
            body["blocks"] = json.loads(body["blocks"])
        with self.server.lock:
            self.server.requests.append((self.path, self.headers.get("Authorization"), body))
        if self.path not in ("/api/chat.postMessage", "/api/chat.update"):
            answer: dict[str, Any] = {"ok": False, "error": "unknown_method"}
        elif self.server.error is not None:
            answer = {"ok": False, "error": self.server.error}
        else:
            answer = {
                "ok": True,
                "channel": body.get("channel"),
                "ts": body.get("ts", TS),
                "message": {"text": body.get("text"), "blocks": body.get("blocks", [])},
            }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


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
