"""PagerDutyNotifier against a local server that speaks PagerDuty's Events API v2
(``POST /v2/enqueue``, 202 / 400 "invalid event" / 429): the events it sends, the dedup key
that keeps one incident to one alert across retries and replicas, and its retries."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
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
from durable_ir.notifications import EventKind, IncidentEvent, IncidentNotifier, send_once
from durable_ir.persistence import open_store
from support.local_http import serving
from support.pagerduty_api import PagerDutyApi, Reply

ROUTING_KEY = "0123456789abcdef0123456789abcdef"  # Events v2 integration keys are 32 chars
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)

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


async def test_429s_do_not_count_against_max_retries(pd: PagerDutyApi, sleeps: list[float]) -> None:
    """A rate limit delays a page; it does not lose it (an alert storm meets the limit)."""
    pd.scripted = [RATE_LIMITED] * 6
    key = await notifier(pd, sleeps, max_retries=2).trigger("inc-5", "s", "P3", "src")
    assert key == "durable-ir:inc-5" and pd.open_alerts() == [key]
    assert len(pd.received) == 7 and sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]


async def test_429s_past_the_throttle_patience_raise(pd: PagerDutyApi, sleeps: list[float]) -> None:
    pd.scripted = [RATE_LIMITED] * 10
    with pytest.raises(PagerDutyError, match="still throttled") as caught:
        await notifier(pd, sleeps, throttle_patience=10).trigger("inc-5", "s", "P3", "src")
    assert caught.value.status == 429
    assert sleeps == [0.5, 1.0, 2.0, 4.0]  # the next wait (8 s) would pass 10 s in all
    assert len(pd.received) == 5 and pd.alerts == {}


async def test_5xx_past_max_retries_raise_whatever_429s_came_first(
    pd: PagerDutyApi, sleeps: list[float]
) -> None:
    unavailable = (503, {"status": "unavailable", "message": "try again"}, {})
    pd.scripted = [RATE_LIMITED, RATE_LIMITED, unavailable, unavailable, unavailable]
    with pytest.raises(PagerDutyError, match="gave up after 5 attempts") as caught:
        await notifier(pd, sleeps, max_retries=2).trigger("inc-5", "s", "P3", "src")
    assert caught.value.status == 503 and len(sleeps) == 4


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


# --- As an IncidentNotifier ------------------------------------------------------------

EVENT_AT = datetime(2026, 3, 1, 11, 58, tzinfo=UTC)


def event(kind: EventKind, **changes: Any) -> IncidentEvent:
    fields: dict[str, Any] = {
        "kind": kind,
        "incident_id": "inc-20",
        "severity": "P0",
        "title": "checkout 5xx rate above 5%",
        "at": EVENT_AT,
        "service": "checkout",
    }
    fields.update(changes)
    return IncidentEvent(**fields)


def test_it_is_an_incident_notifier() -> None:
    default = PagerDutyNotifier(ROUTING_KEY)
    assert isinstance(default, IncidentNotifier)
    assert default.name == "pagerduty"
    assert default.page_on_open == {"P0"}
    assert PagerDutyNotifier(ROUTING_KEY, name="pagerduty-db").name == "pagerduty-db"


@pytest.mark.parametrize("name", ["", "  ", None])
def test_an_empty_name_is_refused(name: Any) -> None:
    with pytest.raises(ConfigurationError, match="name"):
        PagerDutyNotifier(ROUTING_KEY, name=name)


@pytest.mark.parametrize("page_on_open", [["P0", "P9"], ["sev1"], [0], "P0", None])
def test_a_bad_page_on_open_is_refused(page_on_open: Any) -> None:
    with pytest.raises(ConfigurationError, match="page_on_open"):
        PagerDutyNotifier(ROUTING_KEY, page_on_open=page_on_open)


async def test_opened_p0_pages(pd: PagerDutyApi, sleeps: list[float]) -> None:
    result = await notifier(pd, sleeps).notify(
        event("opened", summary="error rate 12% since deploy v42", details={"alerts": 3})
    )

    assert result == {"dedup_key": "durable-ir:inc-20", "action": "trigger"}
    [request] = pd.received
    assert request["path"] == "/v2/enqueue"
    assert request["body"] == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": "durable-ir:inc-20",
        "payload": {
            "summary": "checkout 5xx rate above 5%",
            "source": "checkout",
            "severity": "critical",
            "timestamp": "2026-03-01T11:58:00+00:00",  # when it happened, not the clock
            "custom_details": {
                "incident_id": "inc-20",
                "severity": "P0",
                "alerts": 3,
                "event": "opened",
                "summary": "error rate 12% since deploy v42",
            },
        },
    }
    assert pd.open_alerts() == ["durable-ir:inc-20"]


@pytest.mark.parametrize("severity", ["P1", "P2", "P3"])
async def test_opened_below_p0_does_not_page(
    pd: PagerDutyApi, sleeps: list[float], severity: str
) -> None:
    assert await notifier(pd, sleeps).notify(event("opened", severity=severity)) is None
    assert pd.received == []


async def test_page_on_open_chooses_the_severities_paged_on_open(
    pd: PagerDutyApi, sleeps: list[float]
) -> None:
    n = notifier(pd, sleeps, page_on_open=["p0", "P1"])
    for severity in ["P0", "P1", "P2"]:
        await n.notify(event("opened", incident_id=f"inc-{severity}", severity=severity))
    assert [e["dedup_key"] for e in pd.events()] == ["durable-ir:inc-P0", "durable-ir:inc-P1"]
    assert [e["payload"]["severity"] for e in pd.events()] == ["critical", "error"]

    never = notifier(pd, sleeps, page_on_open=())
    assert await never.notify(event("opened", incident_id="inc-x")) is None
    assert len(pd.received) == 2


async def test_opened_with_an_unknown_severity_sends_nothing(
    pd: PagerDutyApi, sleeps: list[float]
) -> None:
    with pytest.raises(InvalidInput, match="severity"):
        await notifier(pd, sleeps).notify(event("opened", severity="SEV1"))
    assert pd.received == []


async def test_escalated_pages_with_the_reason(pd: PagerDutyApi, sleeps: list[float]) -> None:
    result = await notifier(pd, sleeps).notify(
        event(
            "escalated",
            severity="P2",
            reason="approval expired after 15 min",
            service=None,
            details={"approval_id": "appr-1", "severity": "spoofed"},
        )
    )

    assert result == {"dedup_key": "durable-ir:inc-20", "action": "trigger"}
    [sent] = pd.events()
    assert sent["event_action"] == "trigger"
    assert sent["payload"]["summary"] == "checkout 5xx rate above 5%: approval expired after 15 min"
    assert sent["payload"]["severity"] == "warning"
    assert sent["payload"]["source"] == "durable-ir"
    assert sent["payload"]["custom_details"] == {
        "incident_id": "inc-20",
        "severity": "P2",
        "approval_id": "appr-1",
        "event": "escalated",
        "reason": "approval expired after 15 min",
    }


async def test_escalated_summary_is_truncated(pd: PagerDutyApi, sleeps: list[float]) -> None:
    await notifier(pd, sleeps).notify(event("escalated", title="t" * 1000, reason="r" * 1000))
    summary = pd.events()[0]["payload"]["summary"]
    assert len(summary) == 1024
    assert summary == ("t" * 1000 + ": " + "r" * 1000)[:1023] + "…"
    assert pd.open_alerts() == ["durable-ir:inc-20"]


async def test_escalated_without_a_title_names_the_incident(
    pd: PagerDutyApi, sleeps: list[float]
) -> None:
    await notifier(pd, sleeps).notify(event("escalated", title="", reason=None))
    assert pd.events()[0]["payload"]["summary"] == "incident inc-20"


@pytest.mark.parametrize("paged_for", ["opened", "escalated"])
async def test_resolved_resolves_after_a_page(
    pd: PagerDutyApi, sleeps: list[float], paged_for: EventKind
) -> None:
    n = notifier(pd, sleeps)
    paged = await n.notify(event(paged_for, reason="approval expired"))
    assert paged is not None
    result = await n.notify(event("resolved", earlier={paged_for: paged}))

    assert result == {"dedup_key": "durable-ir:inc-20", "action": "resolve"}
    assert pd.events()[1] == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": "durable-ir:inc-20",
    }
    assert pd.open_alerts() == []


async def test_resolved_without_a_page_sends_nothing(pd: PagerDutyApi, sleeps: list[float]) -> None:
    n = notifier(pd, sleeps)
    assert await n.notify(event("resolved")) is None
    earlier = {"approval_requested": {"ts": "1.2"}, "decided": {"ts": "1.3"}}
    assert await n.notify(event("resolved", earlier=earlier)) is None
    assert pd.received == []


@pytest.mark.parametrize("kind", ["approval_requested", "decided"])
async def test_approval_events_are_not_paged(
    pd: PagerDutyApi, sleeps: list[float], kind: EventKind
) -> None:
    assert await notifier(pd, sleeps).notify(event(kind)) is None
    assert pd.received == []


async def test_send_once_pages_once_for_a_repeated_event(
    pd: PagerDutyApi, sleeps: list[float]
) -> None:
    n = notifier(pd, sleeps)
    escalated = event("escalated", reason="approval expired")
    async with open_store("memory://") as store:
        first = await send_once(store.ledger, n, escalated)
        again = await send_once(store.ledger, n, escalated)  # e.g. the node re-ran

        assert (first.error, first.repeated) == (None, False)
        assert first.result == {"dedup_key": "durable-ir:inc-20", "action": "trigger"}
        assert again.repeated and again.result == first.result
        [row] = await store.ledger.list_notifications("inc-20")
        assert (row.channel, row.kind, row.result) == ("pagerduty", "escalated", first.result)
    assert len(pd.received) == 1


async def test_send_once_resolves_what_it_escalated(pd: PagerDutyApi, sleeps: list[float]) -> None:
    n = notifier(pd, sleeps)
    async with open_store("memory://") as store:
        await send_once(store.ledger, n, event("escalated", reason="approval expired"))
        resolved = await send_once(store.ledger, n, event("resolved"))  # earlier from the ledger

    assert resolved.result == {"dedup_key": "durable-ir:inc-20", "action": "resolve"}
    assert [e["event_action"] for e in pd.events()] == ["trigger", "resolve"]
    assert pd.open_alerts() == []


async def test_send_once_does_not_resolve_what_it_did_not_page(
    pd: PagerDutyApi, sleeps: list[float]
) -> None:
    n = notifier(pd, sleeps)
    async with open_store("memory://") as store:
        opened = await send_once(store.ledger, n, event("opened", severity="P2"))
        resolved = await send_once(store.ledger, n, event("resolved", severity="P2"))
        assert await store.ledger.list_notifications("inc-20") == []

    assert opened.result is None and resolved.result is None
    assert pd.received == []


async def test_send_once_reports_a_refused_page_without_raising(
    pd: PagerDutyApi, sleeps: list[float]
) -> None:
    n = notifier(pd, sleeps, routing_key="too-short")
    escalated = event("escalated", reason="approval expired")
    async with open_store("memory://") as store:
        sent = await send_once(store.ledger, n, escalated)
        assert await store.ledger.list_notifications("inc-20") == []

    assert sent.result is None
    assert sent.error is not None and "PagerDutyError" in sent.error and "400" in sent.error
    assert len(pd.received) == 1
