"""Alertmanager's lifecycle over real HTTP (uvicorn on a loopback port, httpx), on SQLite and
PostgreSQL: a repeat of a firing attaches to its incident even after it closed (no new
incident, no new page at the local PagerDuty server), concurrent copies open one incident,
resolution notices land on the alert timeline and — per the approval's policy — annotate or
expire a pending approval (the graph then closes as ``alert_resolved`` without applying or
paging; a person racing that expiry: exactly one wins), a webhook's alerts are accepted or
refused one by one, and links are kept, checked and shown."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from durable_ir import open_runtime
from durable_ir.alerts import parse_webhook
from durable_ir.approval.request import AlertResolvedPolicy
from durable_ir.integrations.pagerduty import PagerDutyNotifier
from durable_ir.integrations.slack import SlackNotifier, approval_blocks
from durable_ir.records import ApprovalRecord
from durable_ir.service import ServiceSettings, create_app
from durable_ir.service.auth import parse_token_entries
from support.incident_parts import build_incident_graph, lines
from support.local_http import serving as serving_local
from support.pagerduty_api import PagerDutyApi
from support.service import auth, serving, tokens_json, wait_for
from support.slack_api import SlackApi

ROUTING_KEY = "0123456789abcdef0123456789abcdef"
STARTS_AT = "2026-03-01T12:00:00Z"


def am_alert(
    fingerprint: str,
    *,
    status: str = "firing",
    starts_at: str = STARTS_AT,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One alert of an Alertmanager webhook (version 4)."""
    return {
        "status": status,
        "labels": labels
        if labels is not None
        else {"alertname": "HighErrorRate", "service": "checkout", "severity": "error"},
        "annotations": annotations or {"summary": "5xx ratio 12% after deploy"},
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-03-01T12:30:00Z",
        "fingerprint": fingerprint,
        **extra,
    }


def webhook(*alerts: dict[str, Any]) -> dict[str, Any]:
    firing = any(a.get("status", "firing") == "firing" for a in alerts)
    return {
        "version": "4",
        "status": "firing" if firing else "resolved",
        "receiver": "durable-ir",
        "groupKey": '{}:{alertname="HighErrorRate"}',
        "alerts": list(alerts),
    }


class Api:
    """A client of one served app, plus direct reads of its database."""

    def __init__(self, url: str, database_url: str, counter_dir: Path) -> None:
        self.url = url
        self.database_url = database_url
        self.counter_dir = counter_dir
        self.client = httpx.Client(base_url=url, timeout=60)

    def post(self, path: str, who: str = "alertmanager", **kwargs: Any) -> httpx.Response:
        headers = {**auth(who), **kwargs.pop("headers", {})}
        return self.client.post(path, headers=headers, **kwargs)

    def alerts(self, body: Any) -> httpx.Response:
        return self.post("/alerts", json=body)

    def detail(self, incident_id: str) -> dict[str, Any]:
        response = self.client.get(f"/incidents/{incident_id}", headers=auth("vic"))
        assert response.status_code == 200, response.text
        return dict(response.json())

    def incidents(self) -> list[dict[str, Any]]:
        response = self.client.get("/incidents", headers=auth("vic"))
        assert response.status_code == 200, response.text
        return list(response.json()["incidents"])

    def wait_status(self, incident_id: str, status: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            detail = self.detail(incident_id)
            if detail["status"] == status:
                return detail
            assert time.monotonic() < deadline, f"{incident_id} stuck at {detail['status']}"
            time.sleep(0.05)

    def open(self, fingerprint: str) -> str:
        """Post one firing alert and wait until its incident waits for approval."""
        response = self.alerts(webhook(am_alert(fingerprint)))
        assert response.status_code == 202, response.text
        (item,) = response.json()["incidents"]
        assert item["created"] is True
        self.wait_status(item["incident_id"], "awaiting_approval")
        return str(item["incident_id"])

    def history(self, incident_id: str) -> list[ApprovalRecord]:
        async def read() -> list[ApprovalRecord]:
            async with open_runtime(self.database_url) as rt:
                return await rt.history(incident_id)

        return asyncio.run(read())

    def applied(self, incident_id: str) -> list[str]:
        """The remediation steps the executor ran for ``incident_id``."""
        log = self.counter_dir / f"{incident_id}.log"
        return [line for line in lines(log) if line.startswith("apply")] if log.exists() else []


@pytest.fixture
def slack() -> Iterator[SlackApi]:
    with serving_local(SlackApi()) as server:
        yield server


def slack_updates(slack: SlackApi) -> list[str]:
    """The blocks of every ``chat.update`` the local Slack server received, as JSON."""
    return [json.dumps(body.get("blocks")) for path, _, body in slack.requests if "update" in path]


@pytest.fixture
def pd() -> Iterator[PagerDutyApi]:
    with serving_local(PagerDutyApi()) as server:
        yield server


@pytest.fixture
def make_api(
    durable_url: str, counter_dir: Path, pd: PagerDutyApi, slack: SlackApi
) -> Iterator[Callable[..., Api]]:
    with ExitStack() as stack:

        def make(policy: AlertResolvedPolicy = "annotate") -> Api:
            client = AsyncWebClient(token="xoxb-test", base_url=slack.url + "/api/")
            builder = build_incident_graph(
                counter_dir,
                notifiers=[
                    PagerDutyNotifier(ROUTING_KEY, base_url=pd.url, backoff=0.01),
                    SlackNotifier(client, "C0INCIDENTS"),
                ],
                on_alert_resolved=policy,
            )
            settings = ServiceSettings(
                database_url=durable_url,
                api_tokens=parse_token_entries(tokens_json()),
                sla_interval=0.2,
                graph_name="lifecycle",
            )
            app = create_app(graph=builder, settings=settings)
            server = stack.enter_context(serving(app))
            return Api(server.url, durable_url, counter_dir)

        yield make


def fingerprint() -> str:
    return f"fp-{uuid.uuid4().hex[:12]}"


# -- 1. idempotent on (fingerprint, startsAt) -----------------------------------------------


def test_a_repeat_of_a_firing_after_close_attaches_without_a_new_incident_or_page(
    make_api: Callable[..., Api], pd: PagerDutyApi
) -> None:
    api = make_api()
    fp = fingerprint()
    incident = api.open(fp)
    again = api.alerts(webhook(am_alert(fp))).json()  # while open: attached as always
    assert [(i["incident_id"], i["event"], i["created"]) for i in again["incidents"]] == [
        (incident, "repeated", False)
    ]
    rejected = api.post(f"/incidents/{incident}/reject", who="alice", json={"reason": "not now"})
    assert rejected.status_code == 202, rejected.text
    closed = api.wait_status(incident, "finished")
    assert closed["outcome"] == "escalated"
    pages = len(pd.events())
    assert pages == 1  # the escalation paged once

    # Alertmanager re-sends the group (repeat_interval, or another alert of it changed).
    for _ in range(3):
        response = api.alerts(webhook(am_alert(fp)))
        assert response.status_code == 202, response.text
        (item,) = response.json()["incidents"]
        assert (item["incident_id"], item["created"], item["event"], item["state"]) == (
            incident,
            False,
            "repeated",
            "closed",
        )
    assert len(api.incidents()) == 1
    detail = api.detail(incident)
    assert detail["state"] == "closed" and detail["alerts_received"] == 5
    assert [e["kind"] for e in detail["alert_events"]] == ["fired", *["repeated"] * 4]
    assert len(pd.events()) == pages  # no new page

    # A new firing of the same alert (another startsAt) is a new incident.
    later = api.alerts(webhook(am_alert(fp, starts_at="2026-03-01T14:00:00Z"))).json()
    (item,) = later["incidents"]
    assert item["created"] is True and item["incident_id"] != incident
    api.wait_status(item["incident_id"], "awaiting_approval")


def test_concurrent_copies_of_a_webhook_open_one_incident(make_api: Callable[..., Api]) -> None:
    api = make_api()
    fp = fingerprint()
    body = webhook(am_alert(fp))
    barrier = threading.Barrier(8)
    answers: list[dict[str, Any]] = []
    lock = threading.Lock()

    def post() -> None:
        # Each thread its own connection: the server takes the copies concurrently.
        with httpx.Client(base_url=api.url, timeout=60) as client:
            barrier.wait()
            response = client.post("/alerts", headers=auth("alertmanager"), json=body)
        assert response.status_code == 202, response.text
        with lock:
            answers.append(response.json())

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    items = [item for answer in answers for item in answer["incidents"]]
    assert len(items) == 8 and sum(item["created"] for item in items) == 1
    assert len({item["incident_id"] for item in items}) == 1
    (row,) = api.incidents()
    assert row["alerts_received"] == 8
    kinds = [e["kind"] for e in api.detail(row["incident_id"])["alert_events"]]
    assert kinds == ["fired", *["repeated"] * 7]


# -- 2. resolution notices ------------------------------------------------------------------


def test_a_resolution_goes_on_the_timeline_and_annotates_the_pending_approval(
    make_api: Callable[..., Api], pd: PagerDutyApi, slack: SlackApi
) -> None:
    api = make_api()  # policy: annotate (the default)
    fp = fingerprint()
    incident = api.open(fp)
    response = api.alerts(webhook(am_alert(fp, status="resolved")))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["incidents"] == [] and body["ignored"] == 0
    assert body["resolved"] == [
        {
            "index": 0,
            "fingerprint": fp,
            "incident_id": incident,
            "recorded": True,
            "expired_approval": None,
        }
    ]
    detail = api.detail(incident)
    assert [e["kind"] for e in detail["alert_events"]] == ["fired", "resolved"]
    assert detail["alert_resolved_at"] is not None
    assert detail["status"] == "awaiting_approval"  # a person still decides
    assert detail["pending_approval"]["status"] == "pending"
    # Slack notes it on the approval message (after the answer), buttons kept.
    wait_for(lambda: slack_updates(slack), what="the Slack note")
    (update,) = slack_updates(slack)
    assert "The alert resolved" in update and "durable_ir_approve" in update

    # The notice again (Alertmanager re-sends resolved groups too): nothing more recorded.
    again = api.alerts(webhook(am_alert(fp, status="resolved"))).json()
    assert again["resolved"][0]["recorded"] is False
    assert [e["kind"] for e in api.detail(incident)["alert_events"]] == ["fired", "resolved"]

    # A resolution nobody knows: counted, reported, nothing written.
    unknown = api.alerts(webhook(am_alert(fingerprint(), status="resolved"))).json()
    assert unknown["ignored"] == 1 and unknown["resolved"][0]["incident_id"] is None
    assert len(api.incidents()) == 1
    assert pd.events() == []
    assert len(slack_updates(slack)) == 1  # noted once


def test_a_resolution_with_the_expire_policy_closes_without_remediation_or_page(
    make_api: Callable[..., Api], pd: PagerDutyApi, slack: SlackApi
) -> None:
    api = make_api("expire")
    fp = fingerprint()
    incident = api.open(fp)
    approval_id = api.detail(incident)["pending_approval"]["approval_id"]
    response = api.alerts(webhook(am_alert(fp, status="resolved")))
    assert response.status_code == 202, response.text
    (resolution,) = response.json()["resolved"]
    assert resolution["expired_approval"] == approval_id

    finished = api.wait_status(incident, "finished")
    assert finished["state"] == "closed" and finished["outcome"] == "alert_resolved"
    (decision,) = finished["approvals"]
    assert (decision["status"], decision["decided_by"], decision["reason"]) == (
        "expired",
        "system:alertmanager",
        "alert_resolved",
    )
    assert decision["applied_at"] is not None
    assert finished["report"]["outcome"] == "alert_resolved"
    assert finished["report"]["steps_applied"] == []
    assert api.applied(incident) == []  # nothing remediated
    assert pd.events() == []  # nobody paged
    (update,) = slack_updates(slack)  # the approval message says what happened
    assert "The alert resolved" in update and "durable_ir_approve" not in update
    assert [e["stage"] for e in finished["timeline"]][-3:] == [
        "approval",
        "stand_down",
        "summarize",
    ]

    # A person arriving late is told who won.
    late = api.post(f"/incidents/{incident}/approve", who="alice", json={})
    assert late.status_code == 409
    assert late.json()["error"]["winner"]["decided_by"] == "system:alertmanager"


def test_a_person_racing_the_resolved_expiry_exactly_one_wins(
    make_api: Callable[..., Api], pd: PagerDutyApi
) -> None:
    api = make_api("expire")
    for _ in range(3):
        fp = fingerprint()
        incident = api.open(fp)
        barrier = threading.Barrier(2)
        results: dict[str, httpx.Response] = {}

        def approve(
            incident: str = incident,
            barrier: threading.Barrier = barrier,
            results: dict[str, httpx.Response] = results,
        ) -> None:
            with httpx.Client(base_url=api.url, timeout=60) as client:
                barrier.wait()
                results["approve"] = client.post(
                    f"/incidents/{incident}/approve", headers=auth("alice"), json={}
                )

        def resolve(
            fp: str = fp,
            barrier: threading.Barrier = barrier,
            results: dict[str, httpx.Response] = results,
        ) -> None:
            with httpx.Client(base_url=api.url, timeout=60) as client:
                barrier.wait()
                results["resolved"] = client.post(
                    "/alerts",
                    headers=auth("alertmanager"),
                    json=webhook(am_alert(fp, status="resolved")),
                )

        threads = [threading.Thread(target=approve), threading.Thread(target=resolve)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results["resolved"].status_code == 202, results["resolved"].text
        expired = results["resolved"].json()["resolved"][0]["expired_approval"]
        approved = results["approve"].status_code == 202
        assert approved != (expired is not None), (results["approve"].text, expired)
        if not approved:
            assert results["approve"].status_code == 409
        finished = api.wait_status(incident, "finished")
        decided = [a for a in api.history(incident) if a.status.value != "pending"]
        assert len(decided) == 1
        if approved:
            assert decided[0].decided_by == "alice"
            assert finished["outcome"] == "resolved"
            assert len(api.applied(incident)) == 2  # each step once
        else:
            assert decided[0].decided_by == "system:alertmanager"
            assert finished["outcome"] == "alert_resolved"
            assert api.applied(incident) == []
    assert pd.events() == []


# -- 3. one by one --------------------------------------------------------------------------


def test_a_mixed_webhook_takes_the_good_alerts_and_lists_the_bad(
    make_api: Callable[..., Api],
) -> None:
    api = make_api()
    good_a, good_b, bad_fp = fingerprint(), fingerprint(), fingerprint()
    body = webhook(
        am_alert(good_a),
        am_alert(bad_fp, labels={"alertname": "NoService", "severity": "error"}),
        am_alert(good_b, labels={"alertname": "Other", "service": "search"}),
        {"labels": {"service": "x"}, "startsAt": STARTS_AT},  # no alertname, no fingerprint
        am_alert(fingerprint(), labels={"alertname": "Bad", "service": "x", "severity": "P9"}),
    )
    response = api.alerts(body)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert [(i["index"], i["fingerprint"], i["created"]) for i in answer["incidents"]] == [
        (0, good_a, True),
        (2, good_b, True),
    ]
    refused = answer["refused"]
    assert [(r["index"], r["fingerprint"]) for r in refused] == [
        (1, bad_fp),
        (3, None),
        (4, body["alerts"][4]["fingerprint"]),
    ]
    assert "none of the labels" in refused[0]["reason"]
    assert "alertname" in refused[1]["reason"]
    assert "severity" in refused[2]["reason"]
    assert (answer["created"], answer["attached"]) == (2, 0)
    assert len(api.incidents()) == 2


def test_a_body_with_nothing_acceptable_is_a_422_and_writes_nothing(
    make_api: Callable[..., Api],
) -> None:
    api = make_api()
    every_alert_bad = webhook(
        am_alert(fingerprint(), labels={"alertname": "NoService"}),
        {"labels": {}, "startsAt": STARTS_AT},
    )
    for body in (every_alert_bad, {"alerts": []}, {"alerts": "no"}, [1, 2], {"name": "x"}):
        response = api.alerts(body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["code"]
    not_json = api.post(
        "/alerts", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 422
    assert "every alert of the webhook was refused" in api.alerts(every_alert_bad).text
    assert api.incidents() == []


# -- 4. links -------------------------------------------------------------------------------


def test_links_are_kept_checked_and_shown(make_api: Callable[..., Api]) -> None:
    api = make_api()
    fp = fingerprint()
    alert = am_alert(
        fp,
        annotations={
            "summary": "5xx",
            "runbook_url": "https://runbooks.example/checkout?step=1&x=2",
            "grafana_url": "javascript:alert(document.cookie)",
            "dashboard": "https://grafana.example/d/checkout",
        },
        generatorURL="http://prometheus.example/graph?g0.expr=up",
    )
    response = api.alerts(webhook(alert))
    assert response.status_code == 202, response.text
    incident = response.json()["incidents"][0]["incident_id"]
    detail = api.wait_status(incident, "awaiting_approval")
    assert detail["links"] == {
        "runbook": "https://runbooks.example/checkout?step=1&x=2",
        "dashboard": "https://grafana.example/d/checkout",
        "source": "http://prometheus.example/graph?g0.expr=up",
    }
    assert detail["group_key"] == '{}:{alertname="HighErrorRate"}'

    # The Slack approval message links them, with Slack's escaping.
    (record,) = api.history(incident)
    assert record.request["action_requests"][0]["args"]["alert_links"] == detail["links"]
    text = " ".join(str(block.get("text", {}).get("text", "")) for block in approval_blocks(record))
    assert "<https://runbooks.example/checkout?step=1&amp;x=2|Runbook>" in text
    assert "<https://grafana.example/d/checkout|Dashboard>" in text
    assert "javascript" not in text


def test_a_hostile_link_is_never_kept() -> None:
    hostile = [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        'https://x.example/"><script>alert(1)</script>',
        "https://x.example/a b",
        "https:///no-host",
        "//x.example/relative",
        "https://x.example/|<!channel>",
    ]
    parsed = parse_webhook(
        webhook(
            *(
                am_alert(f"fp-{n}", annotations={"runbook_url": url}, generatorURL=url)
                for n, url in enumerate(hostile)
            )
        )
    )
    assert parsed.refused == []
    assert [alert.links for _, alert in parsed.alerts] == [{}] * len(hostile)


# -- the ledger contract, on every backend (memory included) --------------------------------


async def test_open_firing_and_resolve_firing_keep_the_contract_on_every_backend(
    database_url: str,
) -> None:
    from datetime import UTC, datetime, timedelta

    from durable_ir import InvalidInput, open_store
    from durable_ir.records import NewIncident

    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    start, later_start = at - timedelta(minutes=5), at + timedelta(hours=1)

    def new(incident_id: str, fp: str | None = "fp-1") -> NewIncident:
        return NewIncident(incident_id, "g", at, fingerprint=fp, alert={"alert": {}})

    async with open_store(database_url) as store:
        ledger = store.ledger
        with pytest.raises(InvalidInput):
            await ledger.open_firing(new("x", fp=None), start)
        with pytest.raises(InvalidInput):
            await ledger.open_firing(new("x"), start.replace(tzinfo=None))
        assert await ledger.get_incident("x") is None

        first = await ledger.open_firing(new("inc-1"), start)
        assert (first.created, first.kind, first.incident.incident_id) == (True, "fired", "inc-1")
        other = await ledger.open_firing(new("inc-2"), later_start)  # open: attaches
        assert (other.created, other.kind, other.incident.incident_id) == (False, "fired", "inc-1")
        await ledger.close_incident("inc-1", "resolved", at)
        by_id = await ledger.open_firing(new("inc-1"), start)  # a closed id: nothing
        assert (by_id.created, by_id.kind, by_id.incident.alerts_received) == (False, None, 2)
        repeat = await ledger.open_firing(new("inc-3"), start)
        assert (repeat.created, repeat.kind) == (False, "repeated")
        assert repeat.incident.status == "closed" and repeat.incident.alerts_received == 3
        also = await ledger.open_firing(new("inc-4"), later_start)  # a firing it absorbed
        assert (also.kind, also.incident.incident_id) == ("repeated", "inc-1")
        fresh = await ledger.open_firing(new("inc-5"), at + timedelta(hours=2))
        assert (fresh.created, fresh.incident.incident_id) == (True, "inc-5")
        clash = await ledger.open_firing(new("inc-5", fp="fp-other"), at)  # the id exists
        assert (clash.created, clash.kind, clash.incident.fingerprint) == (False, None, "fp-1")

        row, recorded = await ledger.resolve_firing("fp-1", start, at)
        assert row is not None and row.incident_id == "inc-1" and recorded
        assert (await ledger.resolve_firing("fp-1", start, at))[1] is False
        assert await ledger.resolve_firing("fp-unknown", start, at) == (None, False)
        kinds = [e.kind for e in await ledger.alert_events("inc-1")]
        assert kinds == ["fired", "fired", "repeated", "repeated", "resolved"]
        assert [e.kind for e in await ledger.alert_events("inc-1", limit=2)] == [
            "repeated",
            "resolved",
        ]
        assert await ledger.alert_events("inc-404") == []


async def test_runtime_ingest_of_a_resolution_applies_the_expiry_when_it_runs(
    durable_url: str, counter_dir: Path
) -> None:
    """Outside the service: ``rt.ingest`` of the resolution expires (policy ``expire``) and,
    with ``run=True``, hands the expiry to the graph at once."""
    from support.incident_parts import ALERT

    graph = build_incident_graph(counter_dir, on_alert_resolved="expire").build()
    async with open_runtime(durable_url) as rt:
        opened = await rt.ingest(graph, ALERT)
        assert opened.created and opened.incident is not None
        incident = opened.incident.incident_id
        assert (await rt.get(incident)).status == "awaiting_approval"
        resolved = await rt.ingest(graph, {**ALERT, "status": "resolved"})
        assert resolved.event == "resolved" and resolved.expired is not None
        assert resolved.expired.decided_by == "system:alertmanager"
        done = await rt.get(incident)
        assert done.status == "finished"
        assert done.values["outcome"]["status"] == "alert_resolved"
        assert (await rt.store.ledger.get_incident(incident)).outcome == "alert_resolved"  # type: ignore[union-attr]
        assert not (counter_dir / f"{incident}.log").exists() or not [
            line for line in lines(counter_dir / f"{incident}.log") if line.startswith("apply")
        ]
        # The annotate default: nothing expires.
        other = build_incident_graph(counter_dir).build()
        second = await rt.ingest(other, {**ALERT, "service": "search"})
        assert second.incident is not None
        note = await rt.ingest(other, {**ALERT, "service": "search", "status": "resolved"})
        assert note.event == "resolved" and note.expired is None
        assert (await rt.get(second.incident.incident_id)).status == "awaiting_approval"


async def test_slack_shows_the_links_and_that_the_alert_resolved(
    durable_url: str, counter_dir: Path
) -> None:
    """The Slack approval message (real ``slack-sdk`` client, local Slack server) links the
    alert's runbook and dashboard, and once the alert resolved under the ``expire`` policy
    its buttons are replaced by what happened: nothing applied, nobody paged."""
    from slack_sdk.web.async_client import AsyncWebClient

    from durable_ir.integrations.slack import SlackNotifier
    from support.slack_api import SlackApi

    parsed = parse_webhook(
        webhook(
            am_alert(
                fingerprint(),
                annotations={
                    "summary": "5xx",
                    "runbook_url": "https://runbooks.example/checkout",
                    "dashboard_url": "https://grafana.example/d/1?a=1&b=<2>",  # dropped
                },
            )
        )
    )
    ((_, alert),) = parsed.alerts
    assert alert.links == {"runbook": "https://runbooks.example/checkout"}
    with serving_local(SlackApi()) as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.url + "/api/")
        graph = build_incident_graph(
            counter_dir,
            notifiers=[SlackNotifier(client, "C0INCIDENTS")],
            on_alert_resolved="expire",
        ).build()
        async with open_runtime(durable_url) as rt:
            opened = await rt.ingest(graph, alert)
            assert opened.incident is not None
            posted = slack.requests[0][2]
            assert "<https://runbooks.example/checkout|Runbook>" in json.dumps(posted["blocks"])
            resolved = await rt.ingest(graph, alert.model_copy(update={"status": "resolved"}))
            assert resolved.expired is not None
        updates = [body for path, _, body in slack.requests if path.endswith("chat.update")]
        (update,) = updates
        text = json.dumps(update["blocks"])
        assert "The alert resolved" in text and "nobody was paged" in text
        assert "durable_ir_approve" not in text  # the buttons are gone


async def test_slack_notes_a_resolved_alert_on_a_pending_approval_under_annotate(
    durable_url: str, counter_dir: Path
) -> None:
    """``annotate`` (the default): the approval message gets a note that the alert resolved,
    keeps its buttons, and the thread says so — once, however often the notice comes."""
    from slack_sdk.web.async_client import AsyncWebClient

    from durable_ir.integrations.slack import SlackNotifier
    from support.incident_parts import ALERT
    from support.slack_api import SlackApi

    with serving_local(SlackApi()) as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.url + "/api/")
        graph = build_incident_graph(
            counter_dir, notifiers=[SlackNotifier(client, "C0INCIDENTS")]
        ).build()
        async with open_runtime(durable_url) as rt:
            opened = await rt.ingest(graph, ALERT)
            assert opened.incident is not None
            for _ in range(2):
                note = await rt.ingest(graph, {**ALERT, "status": "resolved"})
                assert note.expired is None
            assert (await rt.get(opened.incident.incident_id)).status == "awaiting_approval"
        paths = [path.removeprefix("/api/") for path, _, _ in slack.requests]
        assert paths == ["chat.postMessage", "chat.update", "chat.postMessage"]
        update = json.dumps(slack.requests[1][2]["blocks"])
        assert "The alert resolved" in update and "durable_ir_approve" in update  # buttons kept
        reply = slack.requests[2][2]
        assert reply["thread_ts"] == slack.requests[0][2].get("ts", reply["thread_ts"])
        assert "may no longer be needed" in reply["text"]
