"""PagerDutyNotifier against a local server that speaks PagerDuty's Events API v2
(``POST /v2/enqueue``, 202 / 400 "invalid event" / 429): the events it sends, the dedup key
that keeps one incident to one alert across retries and replicas, and its retries."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest

from durable_ir.clock import FixedClock
from durable_ir.errors import ConfigurationError, InvalidInput
from durable_ir.integrations.pagerduty import (
    PagerDutyError,
    PagerDutyNotifier,
    dedup_key,
)
from support.local_http import LocalHttpServer, serving

ROUTING_KEY = "0123456789abcdef0123456789abcdef"  # Events v2 integration keys are 32 chars
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)

Reply = tuple[int, dict[str, Any], dict[str, str]]
"""status, JSON body, extra headers"""


class PagerDutyApi(LocalHttpServer):
    """Validates events as PagerDuty does, keeps one alert per ``dedup_key`` (a trigger for an
    open key updates that alert), and records every request. ``scripted`` replies are sent,
    in order, before any event is processed; ``barrier`` holds requests until that many
    arrived, to make concurrent senders really concurrent."""

    def __init__(self) -> None:
        super().__init__(_Handler)
        self.lock = threading.Lock()
        self.received: list[dict[str, Any]] = []
        self.scripted: list[Reply] = []
        self.alerts: dict[str, dict[str, Any]] = {}
        self.barrier: threading.Barrier | None = None

    def events(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.received]

    def open_alerts(self) -> list[str]:
        return [k for k, a in self.alerts.items() if a["status"] != "resolved"]

    def process(self, event: Any) -> Reply:
        errors = validate(event)
        if errors:
            invalid = {"status": "invalid event", "message": "Event object is invalid"}
            return 400, {**invalid, "errors": errors}, {}
        key = event.get("dedup_key")
        action = event["event_action"]
        with self.lock:
            alert = self.alerts.get(key) if key else None
            if action == "trigger":
                if key is None:
                    key = f"srv-{len(self.alerts)}"
                if alert is None or alert["status"] == "resolved":
                    self.alerts[key] = {"status": "triggered", "events": [event]}
                else:
                    alert["events"].append(event)
            elif alert is not None and alert["status"] != "resolved":
                alert["status"] = "acknowledged" if action == "acknowledge" else "resolved"
                alert["events"].append(event)
        return 202, {"status": "success", "message": "Event processed", "dedup_key": key}, {}


def validate(event: Any) -> list[str]:
    if not isinstance(event, dict):
        return ["Event object is not a JSON object"]
    errors = []
    routing_key = event.get("routing_key")
    if not isinstance(routing_key, str) or len(routing_key) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        errors.append("'event_action' is invalid (must be trigger, acknowledge or resolve)")
    key = event.get("dedup_key")
    if key is not None and (not isinstance(key, str) or len(key) > 255):
        errors.append("'dedup_key' is too long (max 255 characters)")
    if action in ("acknowledge", "resolve") and not key:
        errors.append("'dedup_key' is required for acknowledge and resolve")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            return [*errors, "'payload' is missing or not an object"]
        summary = payload.get("summary")
        if not isinstance(summary, str) or not summary or len(summary) > 1024:
            errors.append("'payload.summary' is missing or longer than 1024 characters")
        if not isinstance(payload.get("source"), str) or not payload["source"]:
            errors.append("'payload.source' is missing")
        if payload.get("severity") not in ("critical", "error", "warning", "info"):
            errors.append("'payload.severity' is invalid")
    return errors


class _Handler(BaseHTTPRequestHandler):
    server: PagerDutyApi

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["content-length"]))
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        with self.server.lock:
            self.server.received.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                }
            )
            scripted = self.server.scripted.pop(0) if self.server.scripted else None
        if self.server.barrier is not None:
            self.server.barrier.wait(timeout=5)
        headers: dict[str, str]
        if self.path != "/v2/enqueue":
            status, reply, headers = 404, {"status": "not found", "message": "no route"}, {}
        elif scripted is not None:
            status, reply, headers = scripted
        elif body is None:
            status, reply, headers = 400, {"status": "invalid event", "message": "bad JSON"}, {}
        else:
            status, reply, headers = self.server.process(body)
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


RATE_LIMITED: Reply = (429, {"status": "throttle event", "message": "Requests throttled"}, {})


@pytest.fixture
def pd() -> Iterator[PagerDutyApi]:
    with serving(PagerDutyApi()) as server:
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def notifier(pd: PagerDutyApi, sleeps: list[float], **options: Any) -> PagerDutyNotifier:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    options.setdefault("clock", FixedClock(NOW))
    return PagerDutyNotifier(
        options.pop("routing_key", ROUTING_KEY), base_url=pd.url, sleep=sleep, **options
    )


async def test_trigger_sends_an_events_v2_trigger(pd: PagerDutyApi, sleeps: list[float]) -> None:
    key = await notifier(pd, sleeps).trigger(
        "inc-1",
        "checkout 5xx rate above 5%",
        "P1",
        "checkout.prod",
        details={"runbook": "https://runbooks/checkout"},
    )

    assert key == "durable-ir:inc-1"
    [request] = pd.received
    assert (request["method"], request["path"]) == ("POST", "/v2/enqueue")
    assert request["headers"]["content-type"] == "application/json"
    assert request["body"] == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": "durable-ir:inc-1",
        "payload": {
            "summary": "checkout 5xx rate above 5%",
            "source": "checkout.prod",
            "severity": "error",
            "timestamp": "2026-03-01T12:00:00+00:00",
            "custom_details": {
                "incident_id": "inc-1",
                "severity": "P1",
                "runbook": "https://runbooks/checkout",
            },
        },
    }
    assert pd.open_alerts() == ["durable-ir:inc-1"]
    assert sleeps == []


async def test_acknowledge_and_resolve_reach_the_same_alert(
    pd: PagerDutyApi, sleeps: list[float], http: httpx.AsyncClient
) -> None:
    n = notifier(pd, sleeps, client=http)
    key = await n.trigger("inc-2", "db pool exhausted", "P0", "db-1")
    assert await n.acknowledge("inc-2") == key
    assert pd.alerts[key]["status"] == "acknowledged"
    assert await n.resolve("inc-2") == key

    ack, resolve = pd.events()[1:]
    assert ack == {"routing_key": ROUTING_KEY, "event_action": "acknowledge", "dedup_key": key}
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": key}
    assert pd.alerts[key]["status"] == "resolved"
    assert pd.open_alerts() == []


async def test_two_replicas_triggering_one_incident_page_once(
    pd: PagerDutyApi, sleeps: list[float]
) -> None:
    pd.barrier = threading.Barrier(2)  # both triggers are in flight at the same time
    async with httpx.AsyncClient() as a, httpx.AsyncClient() as b:
        replica_a = notifier(pd, sleeps, client=a)
        replica_b = notifier(pd, sleeps, client=b)
        keys = await asyncio.gather(
            replica_a.trigger("inc-3", "latency SLO burn", "P1", "api"),
            replica_b.trigger("inc-3", "latency SLO burn", "P1", "api"),
        )

    assert list(keys) == ["durable-ir:inc-3", "durable-ir:inc-3"]
    assert [e["dedup_key"] for e in pd.events()] == ["durable-ir:inc-3"] * 2
    assert pd.open_alerts() == ["durable-ir:inc-3"]
    assert len(pd.alerts) == 1


def test_dedup_key_is_deterministic_and_bounded() -> None:
    assert dedup_key("inc-1") == dedup_key("inc-1") == "durable-ir:inc-1"
    assert dedup_key("inc-1") != dedup_key("inc-2")
    edge = "x" * (255 - len("durable-ir:"))
    assert dedup_key(edge) == "durable-ir:" + edge
    long_a, long_b = dedup_key("a" * 300), dedup_key("a" * 299 + "b")
    assert long_a.startswith("durable-ir:sha256:") and len(long_a) <= 255
    assert long_a != long_b
    with pytest.raises(InvalidInput):
        dedup_key("")


async def test_a_long_incident_id_is_hashed_on_the_wire(
    pd: PagerDutyApi, sleeps: list[float]
) -> None:
    n = notifier(pd, sleeps)
    key = await n.trigger("i" * 400, "summary", "P2", "src")
    assert key == dedup_key("i" * 400)
    assert await n.resolve("i" * 400) == key
    assert pd.open_alerts() == [] and list(pd.alerts) == [key]


async def test_429_is_retried_with_backoff_and_retry_after(
    pd: PagerDutyApi, sleeps: list[float]
) -> None:
    pd.scripted = [
        RATE_LIMITED,
        (*RATE_LIMITED[:2], {"retry-after": "7"}),
        (*RATE_LIMITED[:2], {"retry-after": "3600"}),
        (503, {"status": "unavailable", "message": "try again"}, {}),
    ]
    key = await notifier(pd, sleeps, backoff=0.5, max_delay=30).trigger(
        "inc-4", "disk full", "P2", "node-7"
    )

    assert key == "durable-ir:inc-4"
    assert sleeps == [0.5, 7.0, 30.0, 4.0]  # backoff, Retry-After, capped, backoff
    assert len(pd.received) == 5
    assert all(e == pd.events()[0] for e in pd.events())
    assert pd.open_alerts() == ["durable-ir:inc-4"]


async def test_429_past_max_retries_raises(pd: PagerDutyApi, sleeps: list[float]) -> None:
    pd.scripted = [RATE_LIMITED] * 10
    with pytest.raises(PagerDutyError, match="429") as caught:
        await notifier(pd, sleeps, max_retries=2).trigger("inc-5", "s", "P3", "src")
    assert caught.value.status == 429
    assert len(pd.received) == 3 and len(sleeps) == 2
    assert pd.alerts == {}


async def test_400_raises_without_retry(pd: PagerDutyApi, sleeps: list[float]) -> None:
    n = notifier(pd, sleeps, routing_key="too-short")
    with pytest.raises(PagerDutyError, match="routing_key") as caught:
        await n.trigger("inc-6", "s", "P1", "src")

    assert caught.value.status == 400
    assert caught.value.errors == ["Length of 'routing_key' is incorrect (should be 32 characters)"]
    assert len(pd.received) == 1
    assert sleeps == []


async def test_network_errors_are_retried_then_raise(sleeps: list[float]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    n = PagerDutyNotifier(
        ROUTING_KEY, base_url=f"http://127.0.0.1:{port}", max_retries=3, sleep=sleep
    )
    with pytest.raises(PagerDutyError, match="unreachable") as caught:
        await n.resolve("inc-7")
    assert caught.value.status is None
    assert sleeps == [0.5, 1.0, 2.0]


@pytest.mark.parametrize(
    ("severity", "expected"),
    [("P0", "critical"), ("P1", "error"), ("p2", "warning"), ("P3", "info")],
)
async def test_default_severity_map(
    pd: PagerDutyApi, sleeps: list[float], severity: str, expected: str
) -> None:
    await notifier(pd, sleeps).trigger("inc-8", "s", severity, "src")
    assert pd.events()[0]["payload"]["severity"] == expected


async def test_custom_severity_map(pd: PagerDutyApi, sleeps: list[float]) -> None:
    custom = {"P0": "critical", "P1": "critical", "P2": "error", "P3": "warning"}
    n = notifier(pd, sleeps, severity_map=custom)
    for i, severity in enumerate(["P0", "P1", "P2", "P3"]):
        await n.trigger(f"inc-{i}", "s", severity, "src")
    sent = [e["payload"]["severity"] for e in pd.events()]
    assert sent == ["critical", "critical", "error", "warning"]


@pytest.mark.parametrize(
    "bad_map",
    [
        {"P0": "critical", "P1": "error", "P2": "warning", "P3": "high"},
        {"P0": "critical", "P1": "error", "P2": "warning"},
        {"P0": "critical", "P1": "error", "P2": "warning", "P3": "info", "P4": "info"},
        {"p0": "critical", "P1": "error", "P2": "warning", "P3": "info"},
    ],
)
def test_a_bad_severity_map_is_refused(bad_map: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="severity_map"):
        PagerDutyNotifier(ROUTING_KEY, severity_map=bad_map)


@pytest.mark.parametrize("routing_key", ["", "   "])
def test_an_empty_routing_key_is_refused(routing_key: str) -> None:
    with pytest.raises(ConfigurationError, match="routing_key"):
        PagerDutyNotifier(routing_key)


async def test_an_unknown_severity_sends_nothing(pd: PagerDutyApi, sleeps: list[float]) -> None:
    with pytest.raises(InvalidInput, match="severity"):
        await notifier(pd, sleeps).trigger("inc-9", "s", "P9", "src")
    assert pd.received == []


async def test_summary_is_truncated_to_1024_chars(pd: PagerDutyApi, sleeps: list[float]) -> None:
    n = notifier(pd, sleeps)
    await n.trigger("inc-10", "x" * 5000, "P1", "src")
    await n.trigger("inc-11", "y" * 1024, "P1", "src")

    long_summary, exact = (e["payload"]["summary"] for e in pd.events())
    assert len(long_summary) == 1024
    assert long_summary == "x" * 1023 + "…"
    assert exact == "y" * 1024
    assert len(pd.open_alerts()) == 2  # the server accepted both
