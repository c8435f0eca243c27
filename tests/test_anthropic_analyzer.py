"""AnthropicAnalyzer through the real ``anthropic`` client, pointed at a local server that speaks
the Messages API: what it sends (forced tool call, model, every evidence id, earlier
hypotheses) and how it reads every kind of answer and failure."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import anthropic
import pytest

from durable_ir.rca import (
    FAULTS,
    AnalysisRequest,
    AnalyzerError,
    ChangeEvidence,
    EventEvidence,
    EvidenceWindow,
    Hypothesis,
    LogEvidence,
    MetricEvidence,
    PriorAttempt,
)
from durable_ir.rca.analyzers.anthropic import DEFAULT_MODEL, AnthropicAnalyzer
from support.local_http import LocalHttpServer, serving

API_KEY = "test-key"
END = datetime(2026, 3, 1, 12, tzinfo=UTC)
WINDOW = EvidenceWindow.ending_at(END, timedelta(hours=1))
EVIDENCE: list[LogEvidence | MetricEvidence | ChangeEvidence | EventEvidence] = [
    LogEvidence(
        id="log-5xx",
        service="checkout",
        at=END - timedelta(minutes=20),
        summary="HTTP 500 from /pay",
        signature="NullPointerException in PaymentMapper",
        count=812,
    ),
    MetricEvidence(
        id="metric-error-ratio-1a2b",
        service="checkout",
        at=END,
        summary="error ratio",
        metric="http_error_ratio",
        points=[(END - timedelta(minutes=30), 0.01), (END - timedelta(minutes=10), 0.4)],
        baseline=0.01,
    ),
    ChangeEvidence(
        id="chg-v42",
        service="checkout",
        at=END - timedelta(minutes=22),
        summary="deploy v42",
        change="deploy",
        version="v42",
        author="alice",
    ),
    EventEvidence(
        id="ev-restarts",
        service="checkout",
        at=END - timedelta(minutes=5),
        summary="pods restarting",
        reason="CrashLoopBackOff",
        count=3,
    ),
]
ALERT = {"name": "HighErrorRate", "service": "checkout", "fired_at": END.isoformat()}
GOOD = {
    "root_cause": "deploy v42 introduced a NullPointerException in PaymentMapper",
    "fault": "bad_deploy",
    "service": "checkout",
    "confidence": 0.86,
    "cited_evidence": ["chg-v42", "log-5xx", "metric-error-ratio-1a2b"],
    "remediation": [
        {"action": "rollback", "target": "checkout", "parameters": {"to_version": "v41"}}
    ],
}

Reply = tuple[int, dict[str, str], dict[str, Any], float]
"""status, headers, JSON body, seconds to wait before answering"""


def tool_use(answer: dict[str, Any], *, model: str = DEFAULT_MODEL) -> Reply:
    body = {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [
            {"type": "text", "text": "The errors began two minutes after the deploy."},
            {
                "type": "tool_use",
                "id": "toolu_01A09q90qw90lq917835lq9",
                "name": "report_root_cause",
                "input": answer,
            },
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 1450, "output_tokens": 212},
    }
    return 200, {}, body, 0.0


def api_error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return status, headers or {}, body, 0.0


class MessagesApi(LocalHttpServer):
    """``POST /v1/messages`` answering from a script of replies; records every request."""

    def __init__(self) -> None:
        super().__init__(_Handler)
        self.script: list[Reply] = []
        self.received: list[dict[str, Any]] = []

    def prompts(self) -> list[str]:
        return [r["body"]["messages"][0]["content"] for r in self.received]


class _Handler(BaseHTTPRequestHandler):
    server: MessagesApi

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.server.received.append(
            {
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body,
            }
        )
        key = self.headers.get("x-api-key") or self.headers.get("authorization") or ""
        if self.path != "/v1/messages":
            reply = api_error(404, "not_found_error", f"Not found: {self.path}")
        elif key.removeprefix("Bearer ") != API_KEY:
            reply = api_error(401, "authentication_error", "invalid x-api-key")
        elif self.server.script:
            reply = self.server.script.pop(0)
        else:
            reply = tool_use(GOOD, model=body["model"])
        status, headers, payload, delay = reply
        if delay and self.server.stopping.wait(delay):
            return
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("request-id", f"req_{len(self.server.received):04d}")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (the time-out test)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[MessagesApi]:
    with serving(MessagesApi()) as server:
        yield server


@pytest.fixture
async def client(api: MessagesApi) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(base_url=api.url, api_key=API_KEY, max_retries=0)
    yield client
    await client.close()


def request(attempt: int = 1, previous: list[PriorAttempt] | None = None) -> AnalysisRequest:
    return AnalysisRequest(
        alert=ALERT, attempt=attempt, window=WINDOW, evidence=EVIDENCE, previous=previous or []
    )


async def failure(analyzer: AnthropicAnalyzer, req: AnalysisRequest | None = None) -> AnalyzerError:
    with pytest.raises(AnalyzerError) as caught:
        await analyzer.analyze(req or request())
    return caught.value


async def test_a_good_answer_becomes_a_checked_hypothesis(
    api: MessagesApi, client: anthropic.AsyncAnthropic
) -> None:
    hypothesis = await AnthropicAnalyzer(client).analyze(request())

    assert hypothesis == Hypothesis.model_validate(GOOD)
    [sent] = api.received
    assert sent["path"] == "/v1/messages"
    assert sent["headers"]["anthropic-version"]
    body = sent["body"]
    assert body["model"] == DEFAULT_MODEL == "claude-sonnet-5-5"
    assert body["tool_choice"]["type"] == "tool"
    assert body["tool_choice"]["name"] == "report_root_cause"
    [tool] = body["tools"]
    assert tool["name"] == "report_root_cause"
    schema = tool["input_schema"]
    assert schema["type"] == "object"
    assert schema["properties"]["fault"]["enum"] == list(FAULTS)
    assert schema["properties"]["confidence"]["minimum"] == 0
    assert schema["properties"]["confidence"]["maximum"] == 1
    assert {"action", "target", "parameters"} <= set(
        schema["properties"]["remediation"]["items"]["properties"]
    )
    assert "$ref" not in json.dumps(schema)
    assert "report_root_cause" in body["system"]
    prompt = api.prompts()[0]
    for item in EVIDENCE:
        assert f"[{item.id}]" in prompt
    assert "HighErrorRate" in prompt and "(1h)" in prompt
    assert "NullPointerException in PaymentMapper" in prompt
    assert "Earlier attempts" not in prompt


async def test_model_and_limits_are_configurable(
    api: MessagesApi, client: anthropic.AsyncAnthropic
) -> None:
    analyzer = AnthropicAnalyzer(client, model="claude-opus-5-5", max_tokens=777)
    await analyzer.analyze(request())
    assert api.received[0]["body"]["model"] == "claude-opus-5-5"
    assert api.received[0]["body"]["max_tokens"] == 777


async def test_a_low_confidence_answer_stays_low(
    api: MessagesApi, client: anthropic.AsyncAnthropic
) -> None:
    api.script.append(tool_use(GOOD | {"confidence": 0.35}))
    hypothesis = await AnthropicAnalyzer(client).analyze(request())
    assert hypothesis.confidence == 0.35
    assert hypothesis.cited_evidence == GOOD["cited_evidence"]


async def test_previous_hypotheses_reach_the_next_attempt(
    api: MessagesApi, client: anthropic.AsyncAnthropic
) -> None:
    first_window = EvidenceWindow.ending_at(END, timedelta(minutes=15))
    earlier = Hypothesis(
        root_cause="a noisy neighbour starves checkout of CPU",
        fault="noisy_neighbour",
        service="checkout",
        confidence=0.4,
        cited_evidence=["ev-restarts"],
    )
    previous = [
        PriorAttempt(attempt=1, window=first_window, hypothesis=earlier),
        PriorAttempt(
            attempt=2,
            window=EvidenceWindow.ending_at(END, timedelta(minutes=30)),
            hypothesis=None,
            error="analyzer failed: Anthropic API 529 overloaded_error: Overloaded",
        ),
    ]
    analyzer = AnthropicAnalyzer(client)
    await analyzer.analyze(request())
    await analyzer.analyze(request(attempt=3, previous=previous))

    first, second = api.prompts()
    assert "noisy neighbour" not in first
    assert "a noisy neighbour starves checkout of CPU" in second
    assert "confidence 0.40" in second and "fault noisy_neighbour" in second
    assert "529 overloaded_error" in second
    assert "Consider a different cause" in second
    assert "attempt 3" in second
    for item in EVIDENCE:
        assert f"[{item.id}]" in second


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ({k: v for k, v in GOOD.items() if k != "root_cause"}, "root_cause: Field required"),
        (GOOD | {"confidence": "very high"}, "confidence"),
        (GOOD | {"confidence": 1.7}, "confidence"),
        (GOOD | {"cited_evidence": "chg-v42"}, "cited_evidence"),
        (GOOD | {"remediation": [{"action": "rollback"}]}, "remediation.0.target"),
        ({}, "root_cause"),
    ],
    ids=["missing-field", "wrong-type", "out-of-range", "string-not-list", "bad-action", "empty"],
)
async def test_a_malformed_tool_call_is_a_retryable_error(
    api: MessagesApi, client: anthropic.AsyncAnthropic, answer: dict[str, Any], problem: str
) -> None:
    api.script.append(tool_use(answer))
    error = await failure(AnthropicAnalyzer(client))
    assert error.retryable
    assert str(error).startswith("malformed tool call")
    assert problem in str(error)


async def test_an_answer_without_the_tool_call_is_a_retryable_error(
    api: MessagesApi, client: anthropic.AsyncAnthropic
) -> None:
    status, headers, body, delay = tool_use(GOOD)
    body |= {"content": [{"type": "text", "text": "I think it was the deploy."}]}
    body["stop_reason"] = "max_tokens"
    api.script.append((status, headers, body, delay))
    error = await failure(AnthropicAnalyzer(client))
    assert error.retryable
    assert "did not call report_root_cause" in str(error) and "max_tokens" in str(error)


async def test_unknown_cited_ids_lower_the_confidence(
    api: MessagesApi, client: anthropic.AsyncAnthropic
) -> None:
    api.script.append(
        tool_use(GOOD | {"confidence": 0.8, "cited_evidence": ["chg-v42", "log-invented"]})
    )
    hypothesis = await AnthropicAnalyzer(client).analyze(request())
    assert hypothesis.cited_evidence == ["chg-v42"]
    assert hypothesis.confidence == 0.4


async def test_only_unknown_cited_ids_reject_the_answer(
    api: MessagesApi, client: anthropic.AsyncAnthropic
) -> None:
    api.script.append(tool_use(GOOD | {"cited_evidence": ["log-invented", "chg-v99"]}))
    error = await failure(AnthropicAnalyzer(client))
    assert error.retryable
    assert "log-invented" in str(error) and "chg-v42" in str(error)  # what it could have cited


async def test_an_uncited_answer_and_a_stray_fault_are_capped(
    api: MessagesApi, client: anthropic.AsyncAnthropic
) -> None:
    api.script.append(tool_use(GOOD | {"cited_evidence": []}))
    api.script.append(tool_use(GOOD | {"fault": "cosmic_rays"}))
    analyzer = AnthropicAnalyzer(client)
    uncited = await analyzer.analyze(request())
    stray = await analyzer.analyze(request())
    assert uncited.confidence == 0.3
    assert (stray.fault, stray.confidence) == ("unknown", 0.3)


async def test_429_is_retryable_and_the_next_call_succeeds(
    api: MessagesApi, client: anthropic.AsyncAnthropic
) -> None:
    api.script.append(
        api_error(429, "rate_limit_error", "Number of requests exceeded", {"retry-after": "7"})
    )
    analyzer = AnthropicAnalyzer(client)
    error = await failure(analyzer)
    assert error.retryable
    assert "429 rate_limit_error: Number of requests exceeded" in str(error)
    assert "retry after 7s" in str(error)
    assert len(api.received) == 1  # the SDK did not retry behind the loop's back

    assert (await analyzer.analyze(request())).confidence == GOOD["confidence"]
    assert len(api.received) == 2


async def test_a_slow_answer_times_out_as_a_retryable_error(
    api: MessagesApi, client: anthropic.AsyncAnthropic
) -> None:
    status, headers, body, _ = tool_use(GOOD)
    api.script.append((status, headers, body, 5.0))
    # Had the timeout not fired, the server's (late) good answer would have succeeded.
    error = await failure(AnthropicAnalyzer(client, timeout=0.3))
    assert error.retryable
    assert "timed out after 0.3s" in str(error)


async def test_401_is_not_retryable(api: MessagesApi) -> None:
    wrong = anthropic.AsyncAnthropic(base_url=api.url, api_key="sk-wrong", max_retries=0)
    try:
        error = await failure(AnthropicAnalyzer(wrong))
    finally:
        await wrong.close()
    assert not error.retryable
    assert "401 authentication_error: invalid x-api-key" in str(error)


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (400, "invalid_request_error", False),
        (403, "permission_error", False),
        (404, "not_found_error", False),
        (413, "request_too_large", False),
        (500, "api_error", True),
        (503, "api_error", True),
        (529, "overloaded_error", True),
    ],
)
async def test_status_codes_map_to_retryable_or_not(
    api: MessagesApi, client: anthropic.AsyncAnthropic, status: int, kind: str, retryable: bool
) -> None:
    api.script.append(api_error(status, kind, "something went wrong"))
    error = await failure(AnthropicAnalyzer(client))
    assert error.retryable is retryable
    assert f"{status} {kind}: something went wrong" in str(error)
    assert len(api.received) == 1


async def test_an_unreachable_api_is_retryable() -> None:
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = anthropic.AsyncAnthropic(
        base_url=f"http://127.0.0.1:{port}", api_key=API_KEY, max_retries=0
    )
    try:
        error = await failure(AnthropicAnalyzer(client))
    finally:
        await client.close()
    assert error.retryable
    assert "cannot reach the Anthropic API" in str(error)


async def test_the_default_client_leaves_retries_to_the_loop(
    api: MessagesApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
    api.script.append(api_error(429, "rate_limit_error", "slow down", {"retry-after": "0"}))
    analyzer = AnthropicAnalyzer()
    try:
        assert (await failure(analyzer)).retryable
        assert len(api.received) == 1  # max_retries=0: one request, not three
        assert (await analyzer.analyze(request())).fault == "bad_deploy"
    finally:
        await analyzer.aclose()


async def test_missing_credentials_are_not_retryable(
    api: MessagesApi, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        if name.startswith("ANTHROPIC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))  # no profile on disk either
    anonymous = anthropic.AsyncAnthropic(base_url=api.url, max_retries=0)
    try:
        error = await failure(AnthropicAnalyzer(anonymous))
    finally:
        await anonymous.close()
    assert not error.retryable
    assert "misconfigured" in str(error) and "authentication" in str(error)
    assert api.received == []


@pytest.mark.parametrize("options", [{"max_tokens": 0}, {"timeout": 0}, {"timeout": -1.0}])
async def test_invalid_options_are_refused(
    client: anthropic.AsyncAnthropic, options: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        AnthropicAnalyzer(client, **options)
