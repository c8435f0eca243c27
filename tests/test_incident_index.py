"""The incident index and the notification outbox of the ledger, on every backend."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from _store_child import Child
from durable_ir import open_store
from durable_ir.errors import InvalidInput
from durable_ir.ledger import ApprovalLedger
from durable_ir.records import IncidentRecord, NewIncident, NotificationRecord

T0 = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
ALERT = {
    "labels": {"alertname": "HighErrorRate", "service": "api"},
    "summary": "api 5xx après déploiement ✓ — 🚨",
    "values": [0.25, 1, None, True],
    "日本語": {"nested": ["ü", "ß", "\u2603"]},
}
RESULT = {"ts": "1709285415.123456", "channel": "#incidents", "text": "résolu ✅ 💡"}


def incident(
    incident_id: str,
    fingerprint: str | None = None,
    *,
    opened_at: datetime = T0,
    alert: dict[str, Any] | None = None,
    title: str = "api error rate",
    severity: str | None = "P1",
    service: str | None = "api",
    graph: str = "incident",
) -> NewIncident:
    return NewIncident(
        incident_id=incident_id,
        graph=graph,
        opened_at=opened_at,
        fingerprint=fingerprint,
        title=title,
        service=service,
        severity=severity,
        alert=alert,
    )


def note(
    key: str,
    incident_id: str = "inc-1",
    *,
    kind: str = "opened",
    channel: str = "slack",
    sent_at: datetime = T0,
    result: dict[str, Any] | None = None,
) -> NotificationRecord:
    return NotificationRecord(
        key=key,
        incident_id=incident_id,
        kind=kind,
        channel=channel,
        sent_at=sent_at,
        result=RESULT if result is None else result,
    )


@pytest.fixture
async def ledger(database_url: str) -> AsyncIterator[ApprovalLedger]:
    async with open_store(database_url) as store:
        yield store.ledger


def ids(rows: list[IncidentRecord]) -> list[str]:
    return [r.incident_id for r in rows]


# --- open_incident ----------------------------------------------------------------------


async def test_open_incident_inserts_an_open_row(ledger: ApprovalLedger) -> None:
    inserted, row = await ledger.open_incident(incident("inc-1", "fp-1", alert=ALERT))
    assert inserted is True
    assert row == IncidentRecord(
        incident_id="inc-1",
        graph="incident",
        opened_at=T0,
        status="open",
        fingerprint="fp-1",
        title="api error rate",
        service="api",
        severity="P1",
        alert=ALERT,
        alerts_received=1,
        last_alert_at=T0,
        started_at=None,
        closed_at=None,
        outcome=None,
    )
    assert row.is_open
    assert await ledger.get_incident("inc-1") == row


async def test_open_incident_with_defaults_stores_nulls(ledger: ApprovalLedger) -> None:
    inserted, row = await ledger.open_incident(
        NewIncident(incident_id="inc-1", graph="g", opened_at=T0)
    )
    assert inserted
    assert row == IncidentRecord(incident_id="inc-1", graph="g", opened_at=T0, last_alert_at=T0)
    assert (row.fingerprint, row.service, row.severity, row.alert, row.title) == (
        None,
        None,
        None,
        None,
        "",
    )
    assert await ledger.get_incident("inc-1") == row


async def test_an_existing_id_is_returned_unchanged(ledger: ApprovalLedger) -> None:
    _, first = await ledger.open_incident(incident("inc-1", "fp-1", alert=ALERT))
    inserted, again = await ledger.open_incident(
        incident(
            "inc-1",
            "fp-other",
            opened_at=T0 + timedelta(hours=1),
            alert={"other": 1},
            title="something else",
            severity="P4",
            service=None,
            graph="other-graph",
        )
    )
    assert inserted is False
    assert again == first
    assert await ledger.get_incident("inc-1") == first
    # The other fingerprint opened nothing: it is free for a new incident.
    inserted, other = await ledger.open_incident(incident("inc-2", "fp-other"))
    assert inserted and other.alerts_received == 1


async def test_an_existing_id_without_fingerprint_is_not_counted(ledger: ApprovalLedger) -> None:
    _, first = await ledger.open_incident(incident("inc-1"))
    for _ in range(3):
        inserted, row = await ledger.open_incident(incident("inc-1", opened_at=T0 + timedelta(1)))
        assert (inserted, row) == (False, first)
    stored = await ledger.get_incident("inc-1")
    assert stored is not None and stored.alerts_received == 1 and stored.last_alert_at == T0


async def test_a_closed_id_is_returned_unchanged(ledger: ApprovalLedger) -> None:
    await ledger.open_incident(incident("inc-1", "fp-1"))
    closed = await ledger.close_incident("inc-1", "resolved", T0 + timedelta(minutes=5))
    assert closed is not None
    inserted, row = await ledger.open_incident(incident("inc-1", "fp-2"))
    assert (inserted, row) == (False, closed)
    assert await ledger.list_incidents() == [closed]


async def test_the_same_fingerprint_attaches_to_the_open_incident(ledger: ApprovalLedger) -> None:
    _, first = await ledger.open_incident(incident("inc-1", "fp-1", alert=ALERT))
    later = T0 + timedelta(minutes=3, microseconds=7)
    inserted, row = await ledger.open_incident(
        incident("inc-2", "fp-1", opened_at=later, alert={"second": True}, title="dup")
    )
    assert inserted is False
    assert row == replace(first, alerts_received=2, last_alert_at=later)
    assert row.alert == ALERT and row.title == "api error rate"
    assert await ledger.get_incident("inc-2") is None
    assert await ledger.get_incident("inc-1") == row
    # An alert stamped earlier than the last one counts, but does not move last_alert_at back.
    inserted, row = await ledger.open_incident(
        incident("inc-3", "fp-1", opened_at=T0 - timedelta(hours=1))
    )
    assert not inserted
    assert (row.alerts_received, row.last_alert_at, row.opened_at) == (3, later, T0)
    # A different fingerprint, or none, opens its own incident.
    assert (await ledger.open_incident(incident("inc-4", "fp-2")))[0]
    assert (await ledger.open_incident(incident("inc-5")))[0]
    assert (await ledger.open_incident(incident("inc-6")))[0]
    assert sorted(ids(await ledger.list_incidents())) == ["inc-1", "inc-4", "inc-5", "inc-6"]


async def test_the_fingerprint_wins_over_an_existing_id(ledger: ApprovalLedger) -> None:
    await ledger.open_incident(incident("inc-1", "fp-1"))
    _, other = await ledger.open_incident(incident("inc-2", "fp-2"))
    # inc-2 exists, but fp-1 is open on inc-1: the alert attaches to inc-1.
    inserted, row = await ledger.open_incident(
        incident("inc-2", "fp-1", opened_at=T0 + timedelta(seconds=1))
    )
    assert not inserted
    assert (row.incident_id, row.alerts_received) == ("inc-1", 2)
    assert await ledger.get_incident("inc-2") == other


async def test_a_closed_incident_no_longer_absorbs_its_fingerprint(ledger: ApprovalLedger) -> None:
    await ledger.open_incident(incident("inc-1", "fp-1"))
    await ledger.open_incident(incident("dup", "fp-1", opened_at=T0 + timedelta(minutes=1)))
    closed = await ledger.close_incident("inc-1", "resolved", T0 + timedelta(minutes=10))
    assert closed is not None and closed.alerts_received == 2
    reopened_at = T0 + timedelta(minutes=20)
    inserted, new_row = await ledger.open_incident(incident("inc-2", "fp-1", opened_at=reopened_at))
    assert inserted
    assert (new_row.incident_id, new_row.alerts_received, new_row.status) == ("inc-2", 1, "open")
    inserted, again = await ledger.open_incident(
        incident("inc-3", "fp-1", opened_at=reopened_at + timedelta(seconds=5))
    )
    assert not inserted and again.incident_id == "inc-2" and again.alerts_received == 2
    assert await ledger.get_incident("inc-1") == closed
    assert ids(await ledger.list_incidents(status="open")) == ["inc-2"]
    assert ids(await ledger.list_incidents(status="closed")) == ["inc-1"]


# --- concurrency ------------------------------------------------------------------------


async def test_concurrent_alerts_with_one_fingerprint_open_one_incident(
    ledger: ApprovalLedger,
) -> None:
    results = await asyncio.gather(
        *(
            ledger.open_incident(
                incident(f"inc-{i}", "fp-storm", opened_at=T0 + timedelta(microseconds=i))
            )
            for i in range(100)
        )
    )
    winners = [row for inserted, row in results if inserted]
    assert len(winners) == 1, winners
    # Every call saw its own increment: the counts handed back are exactly 1..100.
    assert sorted(row.alerts_received for _, row in results) == list(range(1, 101))
    assert {row.incident_id for _, row in results} == {winners[0].incident_id}
    (stored,) = await ledger.list_incidents()
    assert stored.incident_id == winners[0].incident_id
    assert stored.alerts_received == 100
    assert stored.last_alert_at == T0 + timedelta(microseconds=99)


async def test_concurrent_opens_of_one_id_and_fingerprint_count_every_alert(
    ledger: ApprovalLedger,
) -> None:
    results = await asyncio.gather(
        *(
            ledger.open_incident(incident("inc-1", "fp-1", opened_at=T0 + timedelta(seconds=i)))
            for i in range(50)
        )
    )
    assert sum(inserted for inserted, _ in results) == 1
    assert sorted(row.alerts_received for _, row in results) == list(range(1, 51))
    stored = await ledger.get_incident("inc-1")
    assert stored is not None and stored.alerts_received == 50
    assert stored.last_alert_at == T0 + timedelta(seconds=49)


async def test_concurrent_opens_of_one_id_without_fingerprint(ledger: ApprovalLedger) -> None:
    results = await asyncio.gather(
        *(
            ledger.open_incident(incident("inc-1", title=f"t{i}", opened_at=T0 + timedelta(i)))
            for i in range(30)
        )
    )
    winners = [row for inserted, row in results if inserted]
    assert len(winners) == 1
    assert all(row == winners[0] for _, row in results)
    assert winners[0].alerts_received == 1


@pytest.mark.slow
async def test_one_fingerprint_opens_one_incident_across_processes(durable_url: str) -> None:
    """Four OS processes, 25 concurrent calls each, one fingerprint, 100 different ids."""
    processes, per_process, rounds = 4, 25, 3
    children = [Child("open-incidents", durable_url) for _ in range(processes)]
    try:
        async with open_store(durable_url) as store:
            for child in children:
                assert child.read(timeout=60) == {"ready": True}
            for r in range(rounds):
                at = time.time() + 0.2
                for p, child in enumerate(children):
                    numbers = range(p * per_process, (p + 1) * per_process)
                    child.send(
                        {
                            "fingerprint": f"fp-{r}",
                            "graph": "incident",
                            "ids": [f"r{r}-inc-{n}" for n in numbers],
                            "opened_at": [
                                (T0 + timedelta(microseconds=n)).isoformat() for n in numbers
                            ],
                            "at": at,
                        }
                    )
                results = [pair for child in children for pair in child.read()["results"]]
                assert len(results) == processes * per_process
                winners = [row for inserted, row in results if inserted]
                assert len(winners) == 1, (r, winners)
                counts = sorted(row["alerts_received"] for _, row in results)
                assert counts == list(range(1, processes * per_process + 1)), r
                stored = await store.ledger.get_incident(winners[0]["incident_id"])
                assert stored is not None
                assert stored.alerts_received == processes * per_process
                assert stored.last_alert_at == T0 + timedelta(
                    microseconds=processes * per_process - 1
                )
                assert stored.fingerprint == f"fp-{r}"
                # Close it, so that the next round's fingerprint story starts from nothing
                # and this one cannot absorb anything more.
                await store.ledger.close_incident(stored.incident_id, "resolved", T0)
            listed = await store.ledger.list_incidents(limit=1000)
            assert len(listed) == rounds
            assert all(row.status == "closed" for row in listed)
    finally:
        for child in children:
            child.close()
    assert all(child.proc.returncode == 0 for child in children)


# --- mark_incident_started / unstarted_incidents ----------------------------------------


async def test_mark_incident_started_sets_started_at_once(ledger: ApprovalLedger) -> None:
    _, opened = await ledger.open_incident(incident("inc-1", "fp-1"))
    first = T0 + timedelta(seconds=2, microseconds=5)
    await ledger.mark_incident_started("inc-1", first)
    started = await ledger.get_incident("inc-1")
    assert started == replace(opened, started_at=first)
    await ledger.mark_incident_started("inc-1", T0 + timedelta(hours=1))
    assert await ledger.get_incident("inc-1") == started
    await ledger.mark_incident_started("no-such-incident", T0)
    assert await ledger.get_incident("no-such-incident") is None


async def test_unstarted_incidents_lists_open_unstarted_oldest_first(
    ledger: ApprovalLedger,
) -> None:
    for name, seconds in [("c", 3), ("a", 1), ("tie-b", 2), ("tie-a", 2), ("late", 10)]:
        await ledger.open_incident(incident(name, opened_at=T0 + timedelta(seconds=seconds)))
    await ledger.open_incident(incident("started", opened_at=T0))
    await ledger.mark_incident_started("started", T0 + timedelta(seconds=1))
    await ledger.open_incident(incident("closed", opened_at=T0))
    await ledger.close_incident("closed", "cancelled", T0 + timedelta(seconds=1))

    cutoff = T0 + timedelta(seconds=3)  # inclusive: "c" is opened exactly then
    assert ids(await ledger.unstarted_incidents(cutoff)) == ["a", "tie-a", "tie-b", "c"]
    assert ids(await ledger.unstarted_incidents(cutoff, limit=2)) == ["a", "tie-a"]
    just_before = cutoff - timedelta(microseconds=1)
    assert ids(await ledger.unstarted_incidents(just_before)) == ["a", "tie-a", "tie-b"]
    assert await ledger.unstarted_incidents(T0) == []
    later = await ledger.unstarted_incidents(T0 + timedelta(days=1))
    assert ids(later) == ["a", "tie-a", "tie-b", "c", "late"]
    assert later == [await ledger.get_incident(r.incident_id) for r in later]

    await ledger.mark_incident_started("a", T0 + timedelta(minutes=1))
    await ledger.close_incident("tie-a", "resolved", T0 + timedelta(minutes=1))
    assert ids(await ledger.unstarted_incidents(cutoff)) == ["tie-b", "c"]


# --- close_incident ---------------------------------------------------------------------


async def test_close_incident_is_idempotent(ledger: ApprovalLedger) -> None:
    _, opened = await ledger.open_incident(incident("inc-1", "fp-1", alert=ALERT))
    await ledger.mark_incident_started("inc-1", T0 + timedelta(seconds=1))
    at = T0 + timedelta(minutes=42, microseconds=1)
    closed = await ledger.close_incident("inc-1", "remediated", at)
    assert closed == replace(
        opened,
        status="closed",
        closed_at=at,
        outcome="remediated",
        started_at=T0 + timedelta(seconds=1),
    )
    assert closed is not None and not closed.is_open
    again = await ledger.close_incident("inc-1", "rejected", T0 + timedelta(hours=5))
    assert again == closed
    assert await ledger.get_incident("inc-1") == closed
    assert await ledger.close_incident("no-such-incident", "x", T0) is None
    assert await ledger.get_incident("no-such-incident") is None


async def test_concurrent_closes_agree_on_one_outcome(ledger: ApprovalLedger) -> None:
    await ledger.open_incident(incident("inc-1"))
    rows = await asyncio.gather(
        *(
            ledger.close_incident("inc-1", f"outcome-{i}", T0 + timedelta(seconds=i))
            for i in range(20)
        )
    )
    assert all(row is not None and row == rows[0] for row in rows)
    assert rows[0] is not None and rows[0].outcome is not None
    stored = await ledger.get_incident("inc-1")
    assert stored == rows[0]
    assert stored is not None and stored.outcome is not None
    # The winner's outcome and closed_at come from the same call.
    assert stored.closed_at == T0 + timedelta(seconds=int(stored.outcome.split("-")[1]))


# --- get_incident / list_incidents ------------------------------------------------------


async def test_list_incidents_newest_first_with_status_and_limit(ledger: ApprovalLedger) -> None:
    order = [("b", 2), ("e", 5), ("a", 1), ("tie-a", 3), ("tie-b", 3), ("d", 4)]
    for name, minutes in order:
        await ledger.open_incident(incident(name, opened_at=T0 + timedelta(minutes=minutes)))
    await ledger.close_incident("d", "resolved", T0 + timedelta(hours=1))
    await ledger.close_incident("a", "resolved", T0 + timedelta(hours=1))

    everything = await ledger.list_incidents()
    assert ids(everything) == ["e", "d", "tie-b", "tie-a", "b", "a"]
    assert everything == [await ledger.get_incident(r.incident_id) for r in everything]
    assert ids(await ledger.list_incidents(limit=2)) == ["e", "d"]
    assert ids(await ledger.list_incidents(limit=1)) == ["e"]
    assert ids(await ledger.list_incidents(limit=1000)) == ids(everything)
    assert ids(await ledger.list_incidents(status="open")) == ["e", "tie-b", "tie-a", "b"]
    assert ids(await ledger.list_incidents(status="open", limit=3)) == [
        "e",
        "tie-b",
        "tie-a",
    ]
    assert ids(await ledger.list_incidents(status="closed")) == ["d", "a"]
    assert ids(await ledger.list_incidents(status=None)) == ids(everything)


async def test_empty_index(ledger: ApprovalLedger) -> None:
    assert await ledger.list_incidents() == []
    assert await ledger.list_incidents(status="open") == []
    assert await ledger.unstarted_incidents(T0) == []
    assert await ledger.get_incident("inc-1") is None
    assert await ledger.get_notification("k") is None
    assert await ledger.list_notifications("inc-1") == []


@pytest.mark.parametrize("limit", [0, -1, 1001, 10**9, True, 2.5, "10", None])
async def test_limits_are_validated(ledger: ApprovalLedger, limit: Any) -> None:
    await ledger.open_incident(incident("inc-1"))
    with pytest.raises(InvalidInput):
        await ledger.list_incidents(limit=limit)
    with pytest.raises(InvalidInput):
        await ledger.unstarted_incidents(T0 + timedelta(days=1), limit=limit)
    assert len(await ledger.list_incidents(limit=1)) == 1


@pytest.mark.parametrize("status", ["OPEN", "pending", "", 1])
async def test_list_status_is_validated(ledger: ApprovalLedger, status: Any) -> None:
    with pytest.raises(InvalidInput):
        await ledger.list_incidents(status=status)


NAIVE = datetime(2026, 3, 1, 9, 30)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(incident("", "fp"), id="empty-id"),
        pytest.param(incident("inc-x", "fp", opened_at=NAIVE), id="naive-opened-at"),
        pytest.param(incident("inc-x", "fp", alert={"v": math.nan}), id="nan"),
        pytest.param(incident("inc-x", "fp", alert={"v": math.inf}), id="inf"),
        pytest.param(incident("inc-x", "fp", alert={"v": {1, 2}}), id="set"),
        pytest.param(incident("inc-x", "fp", alert={"v": ["a\x00b"]}), id="nul-value"),
        pytest.param(incident("inc-x", "fp", alert={"k\x00": 1}), id="nul-key"),
        pytest.param(incident("inc-x", "fp", alert=["not", "a", "dict"]), id="list"),  # type: ignore[arg-type]
    ],
)
async def test_open_incident_validates_its_input(ledger: ApprovalLedger, bad: NewIncident) -> None:
    _, before = await ledger.open_incident(incident("inc-1", "fp"))
    with pytest.raises(InvalidInput):
        await ledger.open_incident(bad)
    # Nothing changed: not even the open incident with the same fingerprint.
    assert await ledger.list_incidents() == [before]


async def test_naive_timestamps_are_refused(ledger: ApprovalLedger) -> None:
    _, row = await ledger.open_incident(incident("inc-1"))
    with pytest.raises(InvalidInput):
        await ledger.mark_incident_started("inc-1", NAIVE)
    with pytest.raises(InvalidInput):
        await ledger.close_incident("inc-1", "resolved", NAIVE)
    with pytest.raises(InvalidInput):
        await ledger.unstarted_incidents(NAIVE)
    with pytest.raises(InvalidInput):
        await ledger.record_notification(note("k", sent_at=NAIVE))
    assert await ledger.get_incident("inc-1") == row
    assert await ledger.get_notification("k") is None


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(note(""), id="empty-key"),
        pytest.param(note("k", ""), id="empty-incident"),
        pytest.param(note("k", result={"x": math.nan}), id="nan"),
        pytest.param(note("k", result={"x": "\x00"}), id="nul"),
        pytest.param(note("k", result={"x": object()}), id="object"),
        pytest.param(replace(note("k"), result=None), id="none"),  # type: ignore[arg-type]
    ],
)
async def test_record_notification_validates_its_input(
    ledger: ApprovalLedger, bad: NotificationRecord
) -> None:
    with pytest.raises(InvalidInput):
        await ledger.record_notification(bad)
    assert await ledger.get_notification(bad.key) is None
    assert await ledger.list_notifications("inc-1") == []


# --- notification outbox ----------------------------------------------------------------


async def test_record_notification_first_writer_wins(ledger: ApprovalLedger) -> None:
    first = note("inc-1|slack|opened", sent_at=T0 + timedelta(microseconds=3))
    stored = await ledger.record_notification(first)
    assert stored == first
    assert await ledger.get_notification(first.key) == first
    second = note(
        first.key,
        "inc-2",
        kind="escalated",
        channel="pagerduty",
        sent_at=T0 + timedelta(hours=1),
        result={"dedup_key": "other"},
    )
    assert await ledger.record_notification(second) == first
    assert await ledger.get_notification(first.key) == first
    assert await ledger.list_notifications("inc-2") == []


async def test_concurrent_record_notification_agree(ledger: ApprovalLedger) -> None:
    racers = [
        note("k", sent_at=T0 + timedelta(microseconds=i), result={"writer": i}) for i in range(20)
    ]
    rows = await asyncio.gather(*(ledger.record_notification(r) for r in racers))
    assert rows[0] in racers
    assert all(row == rows[0] for row in rows)
    assert await ledger.list_notifications("inc-1") == [rows[0]]


async def test_list_notifications_oldest_first(ledger: ApprovalLedger) -> None:
    rows = {}
    for key, seconds in [("c", 3), ("a", 1), ("tie-b", 2), ("tie-a", 2)]:
        rows[key] = await ledger.record_notification(
            note(key, sent_at=T0 + timedelta(seconds=seconds), kind=f"kind-{key}")
        )
        await ledger.record_notification(note(f"other-{key}", "inc-2", sent_at=T0))
    listed = await ledger.list_notifications("inc-1")
    assert [r.key for r in listed] == ["a", "tie-a", "tie-b", "c"]
    assert listed == [rows[k] for k in ("a", "tie-a", "tie-b", "c")]
    assert [r.key for r in await ledger.list_notifications("inc-2")] == [
        "other-a",
        "other-c",
        "other-tie-a",
        "other-tie-b",
    ]
    assert await ledger.list_notifications("inc-3") == []


# --- exact round trips ------------------------------------------------------------------

IST = timezone(timedelta(hours=5, minutes=30))
PST = timezone(timedelta(hours=-8))
MOMENTS = [
    T0,
    datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 7, 4, 12, 0, 0, 500000, tzinfo=IST),
    datetime(2026, 11, 1, 1, 30, 0, 250001, tzinfo=PST),
    datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2199, 6, 1, 12, 0, 21, 999999, tzinfo=UTC),
]


async def test_timestamps_round_trip_exactly_in_utc(ledger: ApprovalLedger) -> None:
    for i, moment in enumerate(MOMENTS):
        incident_id = f"inc-{i}"
        started = moment + timedelta(microseconds=1)
        closed_at = moment + timedelta(seconds=1, microseconds=7)
        sent = moment + timedelta(microseconds=11)
        _, opened = await ledger.open_incident(incident(incident_id, f"fp-{i}", opened_at=moment))
        _, attached = await ledger.open_incident(
            incident(f"dup-{i}", f"fp-{i}", opened_at=moment + timedelta(microseconds=3))
        )
        await ledger.mark_incident_started(incident_id, started)
        closed = await ledger.close_incident(incident_id, "resolved", closed_at)
        await ledger.record_notification(note(f"n-{i}", incident_id, sent_at=sent))
        stored = await ledger.get_incident(incident_id)
        (notification,) = await ledger.list_notifications(incident_id)
        assert stored is not None and closed is not None
        assert (opened.opened_at, opened.last_alert_at) == (moment, moment)
        assert attached.last_alert_at == moment + timedelta(microseconds=3)
        assert stored == closed
        assert stored.opened_at == moment
        assert stored.last_alert_at == moment + timedelta(microseconds=3)
        assert (stored.started_at, stored.closed_at) == (started, closed_at)
        assert notification.sent_at == sent
        assert await ledger.get_notification(f"n-{i}") == notification
        values = [
            stored.opened_at,
            stored.last_alert_at,
            stored.started_at,
            stored.closed_at,
            notification.sent_at,
        ]
        for value in values:
            assert value is not None and value.utcoffset() == timedelta(0), (moment, value)
    # The order comparisons see the instant, not the wall clock of the offset it came in.
    opened_order = sorted(range(len(MOMENTS)), key=lambda i: MOMENTS[i], reverse=True)
    listed = await ledger.list_incidents()
    assert [r.incident_id for r in listed] == [f"inc-{i}" for i in opened_order]


async def test_json_round_trips(ledger: ApprovalLedger) -> None:
    alerts: list[dict[str, Any]] = [
        ALERT,
        {},
        {"nested": {"a": [1, {"b": None}], "empty": {}}, "n": 1.5, "flag": False},
        {"text": 'quotes " and \\ backslashes, \\u0000 spelled out, tab\t, newline\n'},
        {"big": 2**53, "neg": -0.5, "exp": 1e-12},
    ]
    for i, alert in enumerate(alerts):
        _, opened = await ledger.open_incident(incident(f"inc-{i}", alert=alert))
        stored = await ledger.get_incident(f"inc-{i}")
        assert stored is not None
        for value in (opened.alert, stored.alert):
            assert value == alert
            assert type(value) is dict
        result = {"echo": alert, "ts": f"{i}.000100"}
        recorded = await ledger.record_notification(note(f"n-{i}", f"inc-{i}", result=result))
        fetched = await ledger.get_notification(f"n-{i}")
        (listed,) = await ledger.list_notifications(f"inc-{i}")
        for row in (recorded, fetched, listed):
            assert row is not None and row.result == result
    # The type of a float stays a float, and an int an int.
    stored = await ledger.get_incident("inc-4")
    assert stored is not None and stored.alert is not None
    assert type(stored.alert["big"]) is int and type(stored.alert["neg"]) is float


async def test_setup_is_idempotent_and_keeps_rows(durable_url: str) -> None:
    async with open_store(durable_url) as store:
        _, row = await store.ledger.open_incident(incident("inc-1", "fp-1", alert=ALERT))
        await store.ledger.record_notification(note("k"))
        await store.ledger.setup()
        await store.ledger.setup()
        assert await store.ledger.get_incident("inc-1") == row
    async with open_store(durable_url) as store:
        assert await store.ledger.get_incident("inc-1") == row
        assert await store.ledger.get_notification("k") == note("k")
        # The fingerprint's open incident survives a restart: the next alert attaches to it.
        inserted, again = await store.ledger.open_incident(incident("inc-2", "fp-1"))
        assert not inserted and again.alerts_received == 2


@pytest.mark.postgres
async def test_an_id_clash_behind_an_open_fingerprint_still_counts_the_alert(
    postgres_url: str,
) -> None:
    """The narrow PostgreSQL race, made wide: a second open_incident of the same id and
    fingerprint passes the fingerprint check before the first one's row is in that index,
    then meets it in the primary key. It must attach to it, not report it unchanged."""
    import psycopg

    async with open_store(postgres_url) as store:
        # Index order is creation order: pkey, then a slow index on titles "slow", then the
        # fingerprint index. The first insert holds the id for a second before its fingerprint
        # becomes visible.
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
            await conn.execute(
                """
                CREATE FUNCTION test_slow_key(t text) RETURNS text IMMUTABLE LANGUAGE plpgsql AS
                $$ BEGIN IF t = 'slow' THEN PERFORM pg_sleep(1); END IF; RETURN t; END $$;
                DROP INDEX durable_ir_incidents_open_fingerprint;
                CREATE INDEX test_slow ON durable_ir_incidents (test_slow_key(title));
                CREATE UNIQUE INDEX durable_ir_incidents_open_fingerprint
                    ON durable_ir_incidents (fingerprint)
                    WHERE status = 'open' AND fingerprint IS NOT NULL;
                """
            )
        ledger = store.ledger
        first = asyncio.create_task(ledger.open_incident(incident("inc-1", "fp-1", title="slow")))
        await asyncio.sleep(0.3)
        later = T0 + timedelta(seconds=1)
        second = await ledger.open_incident(incident("inc-1", "fp-1", opened_at=later, title="x"))
        inserted, row = await first
        assert inserted and row.alerts_received == 1
        assert second[0] is False
        assert (second[1].alerts_received, second[1].last_alert_at) == (2, later)
        stored = await ledger.get_incident("inc-1")
        assert stored == second[1] and stored.title == "slow"
