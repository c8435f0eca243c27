"""The incident graph's notifications through the real Slack and PagerDuty clients, against
local servers: each event is sent once although the approval node runs twice, Slack threads
its updates under the approval message, and triage can be overridden by a triager."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from durable_ir import Approve, Reject, SeverityRule, TriageResult, open_runtime
from durable_ir.integrations.pagerduty import PagerDutyNotifier
from durable_ir.integrations.slack import SlackNotifier
from durable_ir.ledger import MemoryLedger
from durable_ir.notifications import IncidentEvent
from durable_ir.records import NotificationRecord
from support.incident_parts import ALERT, build_incident_graph
from support.local_http import serving
from support.pagerduty_api import PagerDutyApi
from support.slack_api import SlackApi

ROUTING_KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def slack() -> Iterator[SlackApi]:
    with serving(SlackApi()) as server:
        yield server


@pytest.fixture
def pd() -> Iterator[PagerDutyApi]:
    with serving(PagerDutyApi()) as server:
        yield server


def channels(slack: SlackApi, pd: PagerDutyApi) -> list[Any]:
    client = AsyncWebClient(token="xoxb-test", base_url=slack.url + "/api/")
    return [
        SlackNotifier(client, "C0INCIDENTS"),
        PagerDutyNotifier(ROUTING_KEY, base_url=pd.url, backoff=0.01),
    ]


def methods(slack: SlackApi) -> list[str]:
    return [path.removeprefix("/api/") for path, _, _ in slack.requests]


async def test_approved_incident_notifies_each_step_once(
    durable_url: str, counter_dir: Path, slack: SlackApi, pd: PagerDutyApi
) -> None:
    builder = build_incident_graph(counter_dir, notifiers=channels(slack, pd))
    async with open_runtime(durable_url) as rt:
        await rt.start(builder.build(), {"alert": ALERT}, incident_id="inc-1")
        assert methods(slack) == ["chat.postMessage"]
        _, auth, request = slack.requests[0]
        assert auth == "Bearer xoxb-test"
        buttons = [
            element["action_id"]
            for block in request["blocks"]
            if block["type"] == "actions"
            for element in block["elements"]
        ]
        assert buttons and all(b.startswith("durable_ir_") for b in buttons)
        approval_ts = "1700000000.000100"

        await rt.decide("inc-1", Approve(by="alice"))  # the approval node runs again here
        values = (await rt.get("inc-1")).values
    assert values["outcome"]["status"] == "resolved"
    assert methods(slack) == ["chat.postMessage", "chat.update", "chat.postMessage",
                              "chat.postMessage"]  # fmt: skip
    assert slack.requests[1][2]["ts"] == approval_ts  # the approval message shows the decision
    assert all(r[2].get("thread_ts") == approval_ts for r in slack.requests[2:])
    assert "resolved" in slack.requests[-1][2]["text"].lower()
    assert pd.events() == []  # a P1 resolved by the agent pages nobody
    sent = [(n["channel"], n["kind"]) for n in values["notifications"]]
    assert sent.count(("slack", "decided")) == 1 and ("slack", "resolved") in sent


async def test_rejected_incident_pages_and_threads_the_escalation(
    durable_url: str, counter_dir: Path, slack: SlackApi, pd: PagerDutyApi
) -> None:
    builder = build_incident_graph(counter_dir, notifiers=channels(slack, pd))
    async with open_runtime(durable_url) as rt:
        await rt.start(builder.build(), {"alert": ALERT}, incident_id="inc-1")
        await rt.decide("inc-1", Reject(by="bob", reason="not during the sale"))
    (page,) = pd.events()
    assert page["event_action"] == "trigger" and page["dedup_key"] == "durable-ir:inc-1"
    assert page["payload"]["severity"] == "error"  # P1
    assert "rejected" in page["payload"]["summary"]
    escalation = slack.requests[-1][2]
    assert escalation["thread_ts"] == "1700000000.000100"
    assert "not during the sale" in escalation["text"]


async def test_a_triager_has_the_last_word_and_its_failure_is_not_fatal(
    counter_dir: Path,
) -> None:
    async def second_opinion(alert: Mapping[str, Any], by_rules: TriageResult) -> TriageResult:
        assert by_rules.severity == "P2"  # the rule below
        return TriageResult("P0", "checkout revenue at risk", by="analyzer")

    async def broken(alert: Mapping[str, Any], by_rules: TriageResult) -> TriageResult:
        raise TimeoutError("the model did not answer")

    rules = [SeverityRule(severity="P2", labels={"team": "payments"})]
    async with open_runtime("memory://") as rt:
        for name, triager, expected, by in (
            ("opinion", second_opinion, "P0", "analyzer"),
            ("broken", broken, "P2", "rules"),
        ):
            builder = build_incident_graph(counter_dir, severity_rules=rules, triager=triager)
            paused = await rt.start(builder.build(), {"alert": ALERT}, incident_id=name,
                                    graph_name=name)  # fmt: skip
            assert paused.values["severity"] == expected
            assert paused.values["triage"]["by"] == by
            assert paused.pending_approval is not None
            assert paused.pending_approval.severity == expected


async def test_an_outbox_write_that_fails_is_retried_so_the_page_is_not_sent_twice() -> None:
    """PagerDuty accepted the trigger; recording it failed (the database dropped the
    connection). send_once retries the write instead of failing the node, whose re-run would
    trigger PagerDuty again."""
    from durable_ir import notifications

    ledger = MemoryLedger()
    sent: list[str] = []

    class Pager:
        name = "pagerduty"

        async def notify(self, event: IncidentEvent) -> dict[str, Any]:
            sent.append(event.kind)
            return {"dedup_key": f"durable-ir:{event.incident_id}"}

    original = ledger.record_notification
    failures = 0

    async def record_notification(record: NotificationRecord) -> NotificationRecord:
        nonlocal failures
        if failures < 2:
            failures += 1
            raise ConnectionError("terminating connection due to administrator command")
        return await original(record)

    ledger.record_notification = record_notification  # type: ignore[method-assign]
    event = IncidentEvent(
        kind="escalated",
        incident_id="inc-1",
        severity="P1",
        title="checkout errors",
        at=datetime(2026, 3, 1, tzinfo=UTC),
    )
    first = await notifications.send_once(ledger, Pager(), event)
    again = await notifications.send_once(ledger, Pager(), event)
    assert sent == ["escalated"] and failures == 2
    assert first.result == {"dedup_key": "durable-ir:inc-1"} and again.repeated
