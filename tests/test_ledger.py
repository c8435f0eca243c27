"""The approval ledger on every backend (memory, SQLite, PostgreSQL), through ``open_store``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from _store_child import Child
from durable_ir import open_store
from durable_ir.ledger import ApprovalLedger, DecisionWrite
from durable_ir.records import ApprovalRecord, ApprovalStatus, NewApproval

T0 = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
PLAN = {"steps": [{"action": "rollback", "target": "api"}]}
REQUEST = {"plan": PLAN, "summary": "api 5xx après déploiement ✓", "allowed": ["approve", "edit"]}


def new(
    approval_id: str,
    incident_id: str = "inc-1",
    *,
    requested_at: datetime = T0,
    deadline_at: datetime | None = None,
    request: dict[str, Any] | None = None,
    severity: str = "P1",
) -> NewApproval:
    return NewApproval(
        approval_id=approval_id,
        incident_id=incident_id,
        graph="incident",
        node="approval",
        request=REQUEST if request is None else request,
        severity=severity,
        requested_at=requested_at,
        deadline_at=deadline_at or requested_at + timedelta(hours=2),
    )


def write(
    status: ApprovalStatus = ApprovalStatus.APPROVED,
    by: str = "alice",
    at: datetime = T0 + timedelta(minutes=5),
    reason: str | None = None,
    plan: Any = None,
) -> DecisionWrite:
    return DecisionWrite(
        status=status, decided_by=by, decided_at=at, reason=reason, edited_plan=plan
    )


@pytest.fixture
async def ledger(database_url: str) -> AsyncIterator[ApprovalLedger]:
    async with open_store(database_url) as store:
        yield store.ledger


# --- register / get / history / latest --------------------------------------------------


async def test_register_stores_a_pending_row(ledger: ApprovalLedger) -> None:
    row = await ledger.register(new("a-1", severity="P0"))
    assert row == ApprovalRecord(
        approval_id="a-1",
        incident_id="inc-1",
        graph="incident",
        node="approval",
        request=REQUEST,
        severity="P0",
        requested_at=T0,
        deadline_at=T0 + timedelta(hours=2),
        status=ApprovalStatus.PENDING,
        next_due_at=T0 + timedelta(hours=2),  # no reminder given: the deadline is next
        reminders_sent=0,
    )
    assert row.is_pending
    assert await ledger.get("a-1") == row


async def test_register_keeps_the_first_reminder_time(ledger: ApprovalLedger) -> None:
    first_reminder = T0 + timedelta(minutes=30)
    row = await ledger.register(replace(new("a-1"), next_due_at=first_reminder))
    assert row.next_due_at == first_reminder
    assert await ledger.due_reminders(first_reminder - timedelta(microseconds=1), 10) == []
    assert [r.approval_id for r in await ledger.due_reminders(first_reminder, 10)] == ["a-1"]
    # Exactly one of two sweepers claims the reminder.
    later = T0 + timedelta(hours=1)
    assert await ledger.advance_reminder("a-1", 0, 1, later) is True
    assert await ledger.advance_reminder("a-1", 0, 1, later) is False
    stored = await ledger.get("a-1")
    assert stored is not None and (stored.reminders_sent, stored.next_due_at) == (1, later)


async def test_expire_due_takes_only_overdue_pending_rows(ledger: ApprovalLedger) -> None:
    for name, hours in (("late-2", -2), ("late-1", -1), ("on-time", 1)):
        await ledger.register(
            replace(
                new(name),
                deadline_at=T0 + timedelta(hours=hours),
                requested_at=T0 - timedelta(hours=3),
            )
        )
    await ledger.register(replace(new("decided"), deadline_at=T0 - timedelta(hours=5)))
    await ledger.record_decision(
        "decided", DecisionWrite(ApprovalStatus.APPROVED, "alice", T0 - timedelta(hours=6), None)
    )
    expired = await ledger.expire_due(T0, 10, "system:sla", lambda r: f"due {r.approval_id}")
    assert [r.approval_id for r in expired] == ["late-2", "late-1"]  # earliest deadline first
    assert all(r.status is ApprovalStatus.EXPIRED and r.decided_by == "system:sla" for r in expired)
    assert [r.reason for r in expired] == ["due late-2", "due late-1"]
    assert await ledger.expire_due(T0, 10, "system:sla", lambda r: "again") == []
    decided = await ledger.get("decided")
    assert decided is not None and decided.decided_by == "alice"
    on_time = await ledger.get("on-time")
    assert on_time is not None and on_time.is_pending


async def test_register_is_idempotent(ledger: ApprovalLedger) -> None:
    original = await ledger.register(new("a-1"))
    again = await ledger.register(
        new(
            "a-1",
            "inc-other",
            requested_at=T0 + timedelta(hours=1),
            deadline_at=T0 + timedelta(days=3),
            request={"plan": {"steps": []}},
            severity="P3",
        )
    )
    assert again == original
    assert again.requested_at == T0
    assert again.deadline_at == T0 + timedelta(hours=2)
    assert await ledger.get("a-1") == original
    assert await ledger.history("inc-1") == [original]
    assert await ledger.history("inc-other") == []


async def test_register_after_a_decision_returns_the_decided_row(ledger: ApprovalLedger) -> None:
    await ledger.register(new("a-1"))
    _, decided = await ledger.record_decision("a-1", write(reason="ok"))
    assert await ledger.register(new("a-1", requested_at=T0 + timedelta(hours=5))) == decided


async def test_concurrent_registration_of_one_id(ledger: ApprovalLedger) -> None:
    for round_ in range(10):
        approval_id = f"a-{round_}"
        rows = await asyncio.gather(
            *(
                ledger.register(new(approval_id, requested_at=T0 + timedelta(seconds=i)))
                for i in range(20)
            )
        )
        assert len({row.requested_at for row in rows}) == 1
        assert all(row == rows[0] for row in rows)
        assert await ledger.get(approval_id) == rows[0]
    assert len(await ledger.history("inc-1")) == 10


async def test_unknown_ids(ledger: ApprovalLedger) -> None:
    await ledger.register(new("a-1"))
    assert await ledger.get("nope") is None
    assert await ledger.history("inc-nope") == []
    assert await ledger.latest("inc-nope") is None
    assert await ledger.unapplied() == []


async def test_latest_many_is_latest_for_each_incident_at_once(ledger: ApprovalLedger) -> None:
    expected = {}
    for n in range(600):  # more than one SQLite IN (...) chunk
        incident = f"inc-{n}"
        await ledger.register(new(f"{incident}-old", incident, requested_at=T0))
        if n % 3:
            late = T0 + timedelta(seconds=n)
            expected[incident] = await ledger.register(new(f"{incident}-new", incident,
                                                           requested_at=late))  # fmt: skip
        else:
            expected[incident] = await ledger.latest(incident)
    asked = [*expected, "inc-none", "inc-1", "inc-1"]
    found = await ledger.latest_many(asked)
    assert found == expected
    assert found == {i: await ledger.latest(i) for i in expected}
    assert await ledger.latest_many([]) == {}


async def test_history_and_latest_order_by_request_time(ledger: ApprovalLedger) -> None:
    # Registered out of order, with another incident interleaved and a tie on requested_at.
    order = [
        ("c", T0 + timedelta(seconds=2)),
        ("tie-b", T0 + timedelta(seconds=3)),
        ("a", T0),
        ("tie-a", T0 + timedelta(seconds=3)),
        ("b", T0 + timedelta(microseconds=1)),
    ]
    rows = {}
    for approval_id, at in order:
        rows[approval_id] = await ledger.register(new(approval_id, requested_at=at))
        await ledger.register(new(f"other-{approval_id}", "inc-2", requested_at=at))
    history = await ledger.history("inc-1")
    assert [r.approval_id for r in history] == ["a", "b", "c", "tie-a", "tie-b"]
    assert history == [rows[k] for k in ("a", "b", "c", "tie-a", "tie-b")]
    assert await ledger.latest("inc-1") == rows["tie-b"]
    other = await ledger.history("inc-2")
    assert [r.approval_id for r in other] == [
        "other-a",
        "other-b",
        "other-c",
        "other-tie-a",
        "other-tie-b",
    ]
    # Deciding the oldest one changes neither the order nor which is latest.
    _, decided = await ledger.record_decision("a", write(at=T0 + timedelta(hours=1)))
    history = await ledger.history("inc-1")
    assert [r.approval_id for r in history] == ["a", "b", "c", "tie-a", "tie-b"]
    assert history[0] == decided
    assert (await ledger.latest("inc-1")) == rows["tie-b"]


# --- record_decision: first writer wins -------------------------------------------------


def _racers(count: int) -> list[DecisionWrite]:
    racers = []
    for i in range(count):
        status = [ApprovalStatus.APPROVED, ApprovalStatus.REJECTED, ApprovalStatus.EXPIRED][i % 3]
        racers.append(
            write(
                status=status,
                by=f"system:sla-{i}" if status is ApprovalStatus.EXPIRED else f"user-{i}",
                at=T0 + timedelta(minutes=5, microseconds=7 * i + 1),
                reason=None if i % 6 == 0 else f"reason {i}",
                plan={"steps": [{"action": "scale", "target": f"svc-{i}"}]} if i % 6 == 3 else None,
            )
        )
    return racers


async def test_record_decision_first_writer_wins(ledger: ApprovalLedger) -> None:
    pending = await ledger.register(new("a-1"))
    racers = _racers(20)
    results = await asyncio.gather(*(ledger.record_decision("a-1", w) for w in racers))
    winners = [i for i, (won, _) in enumerate(results) if won]
    assert len(winners) == 1, winners
    chosen = racers[winners[0]]
    winner_row = results[winners[0]][1]
    assert winner_row == ApprovalRecord(
        **{
            **pending.__dict__,
            "status": chosen.status,
            "decided_by": chosen.decided_by,
            "decided_at": chosen.decided_at,
            "reason": chosen.reason,
            "edited_plan": chosen.edited_plan,
        }
    )
    # Every loser was told who won, with the winner's full row.
    for _, row in results:
        assert row == winner_row
    assert await ledger.get("a-1") == winner_row
    assert await ledger.history("inc-1") == [winner_row]


@pytest.mark.parametrize("first", list(ApprovalStatus)[1:], ids=lambda s: s.value)
async def test_a_decided_row_never_goes_back(ledger: ApprovalLedger, first: ApprovalStatus) -> None:
    await ledger.register(new("a-1"))
    won, decided = await ledger.record_decision(
        "a-1", write(status=first, by="system:sla", reason="first", plan=None)
    )
    assert won and decided.status is first and not decided.is_pending
    for later in (*ApprovalStatus, first):
        won, row = await ledger.record_decision(
            "a-1", write(status=later, by="mallory", at=T0 + timedelta(hours=9), reason="late")
        )
        assert not won
        assert row == decided
    await ledger.mark_applied("a-1", T0 + timedelta(hours=1))
    won, row = await ledger.record_decision("a-1", write(by="mallory"))
    assert not won
    assert (row.status, row.decided_by, row.reason) == (first, "system:sla", "first")
    assert row.applied_at == T0 + timedelta(hours=1)


async def test_the_winning_row_holds_what_was_written(ledger: ApprovalLedger) -> None:
    await ledger.register(new("a-1"))
    edited = {"steps": [{"action": "scale", "target": "api", "replicas": 6}], "note": "ünïcode"}
    at = datetime(2026, 3, 1, 9, 41, 2, 654321, tzinfo=UTC)
    won, row = await ledger.record_decision(
        "a-1", write(by="bob@example.com", at=at, reason="scale, don't roll back", plan=edited)
    )
    assert won
    assert row.status is ApprovalStatus.APPROVED
    assert row.decided_by == "bob@example.com"
    assert row.decided_at == at
    assert row.reason == "scale, don't roll back"
    assert row.edited_plan == edited
    assert row.applied_at is None
    assert await ledger.get("a-1") == row


async def test_record_decision_on_an_unknown_id_is_a_lookup_error(ledger: ApprovalLedger) -> None:
    await ledger.register(new("a-1"))
    with pytest.raises(LookupError):
        await ledger.record_decision("no-such-approval", write())
    assert await ledger.get("no-such-approval") is None
    assert (await ledger.get("a-1")).is_pending  # type: ignore[union-attr]


# --- mark_applied / unapplied -----------------------------------------------------------


async def test_mark_applied_sets_applied_at_once(ledger: ApprovalLedger) -> None:
    await ledger.register(new("a-1"))
    _, decided = await ledger.record_decision("a-1", write(reason="ok"))
    first = T0 + timedelta(minutes=6, microseconds=42)
    await ledger.mark_applied("a-1", first)
    applied = await ledger.get("a-1")
    assert applied is not None
    assert applied.applied_at == first
    assert applied == ApprovalRecord(**{**decided.__dict__, "applied_at": first})
    await ledger.mark_applied("a-1", T0 + timedelta(hours=3))
    assert await ledger.get("a-1") == applied


async def test_unapplied_lists_decided_rows_not_yet_applied_oldest_first(
    ledger: ApprovalLedger,
) -> None:
    for i in range(1, 7):
        await ledger.register(new(f"u{i}", f"inc-{i}", requested_at=T0 + timedelta(seconds=i)))
    # Decided in an order unrelated to the ids or request times; u4 stays pending.
    decided_at = {"u3": 1, "u1": 2, "u6": 3, "u5": 4, "u2": 5}
    for approval_id, minutes in decided_at.items():
        await ledger.record_decision(
            approval_id,
            write(
                status=ApprovalStatus.REJECTED,
                by="carol",
                at=T0 + timedelta(minutes=minutes),
                reason="no",
            ),
        )
    await ledger.mark_applied("u6", T0 + timedelta(minutes=10))

    rows = await ledger.unapplied()
    assert [r.approval_id for r in rows] == ["u3", "u1", "u5", "u2"]
    assert all(r.status is ApprovalStatus.REJECTED and r.applied_at is None for r in rows)
    assert rows == [await ledger.get(r.approval_id) for r in rows]
    assert [r.approval_id for r in await ledger.unapplied(limit=2)] == ["u3", "u1"]
    assert [r.approval_id for r in await ledger.unapplied(limit=1)] == ["u3"]
    assert [r.approval_id for r in await ledger.unapplied(limit=100)] == ["u3", "u1", "u5", "u2"]

    await ledger.mark_applied("u3", T0 + timedelta(minutes=11))
    assert [r.approval_id for r in await ledger.unapplied()] == ["u1", "u5", "u2"]
    for approval_id in ("u1", "u5", "u2"):
        await ledger.mark_applied(approval_id, T0 + timedelta(minutes=12))
    assert await ledger.unapplied() == []
    pending = await ledger.get("u4")
    assert pending is not None and pending.is_pending and pending.applied_at is None


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
    datetime(1900, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    datetime(2038, 1, 19, 3, 14, 8, 7, tzinfo=UTC),
    datetime(2199, 6, 1, 12, 0, 21, 999999, tzinfo=UTC),
]


async def _assert_round_trip(ledger: ApprovalLedger, approval_id: str, moment: datetime) -> None:
    deadline = moment + timedelta(hours=2, microseconds=1)
    decided = moment + timedelta(microseconds=3)
    applied = moment + timedelta(seconds=1, microseconds=5)
    registered = await ledger.register(new(approval_id, requested_at=moment, deadline_at=deadline))
    _, after_decision = await ledger.record_decision(approval_id, write(at=decided, reason="ok"))
    await ledger.mark_applied(approval_id, applied)
    stored = await ledger.get(approval_id)
    assert stored is not None
    assert (registered.requested_at, registered.deadline_at) == (moment, deadline)
    assert after_decision.decided_at == decided
    assert (stored.requested_at, stored.deadline_at) == (moment, deadline), moment
    assert (stored.decided_at, stored.applied_at) == (decided, applied), moment
    if moment.utcoffset() == timedelta(0):
        for value in (stored.requested_at, stored.deadline_at, stored.decided_at):
            assert value is not None and value.utcoffset() == timedelta(0)


async def test_timestamps_round_trip_exactly(ledger: ApprovalLedger) -> None:
    for i, moment in enumerate(MOMENTS):
        await _assert_round_trip(ledger, f"a-{i}", moment)


async def test_far_future_timestamps_round_trip_exactly(ledger: ApprovalLedger) -> None:
    await _assert_round_trip(ledger, "a-9000", datetime(9000, 6, 1, 12, 0, 21, 12, tzinfo=UTC))


async def _assert_plans_round_trip(ledger: ApprovalLedger, plans: list[Any]) -> None:
    for i, plan in enumerate(plans):
        await ledger.register(new(f"a-{i}"))
        won, row = await ledger.record_decision(f"a-{i}", write(plan=plan))
        assert won
        stored = await ledger.get(f"a-{i}")
        assert stored is not None
        for value in (row.edited_plan, stored.edited_plan):
            assert value == plan
            assert type(value) is type(plan)


async def test_edited_plans_round_trip(ledger: ApprovalLedger) -> None:
    await _assert_plans_round_trip(
        ledger,
        [
            {"steps": [{"action": "restart", "target": "db"}]},
            [1, 2.5, None, True, "x"],
            [],
            {},
            0,
            False,
            12.75,
        ],
    )


async def test_string_plans_round_trip(ledger: ApprovalLedger) -> None:
    await _assert_plans_round_trip(ledger, ["restart api", "123", "", '{"steps": []}'])


async def test_requests_round_trip(ledger: ApprovalLedger) -> None:
    request = {
        "plan": {"steps": [{"action": "scale", "target": "api", "replicas": 3}]},
        "nested": {"a": [1, {"b": None}], "empty": {}},
        "text": 'quotes " and \\ backslashes, emoji 🚨, nul-free',
        "number": 1.5,
        "flag": False,
    }
    registered = await ledger.register(new("a-1", request=request))
    assert registered.request == request
    assert (await ledger.get("a-1")).request == request  # type: ignore[union-attr]


# --- across processes -------------------------------------------------------------------


@pytest.mark.slow
async def test_compare_and_set_is_atomic_across_processes(durable_url: str) -> None:
    """Four OS processes decide the same pending row at the same wall-clock moment."""
    rounds = 10
    statuses = ["approved", "rejected", "expired", "approved"]
    children = [Child("decide", durable_url) for _ in range(4)]
    try:
        async with open_store(durable_url) as store:
            for r in range(rounds):
                await store.ledger.register(new(f"race-{r}", f"inc-{r}"))
            for child in children:
                assert child.read(timeout=60) == {"ready": True}
            for r in range(rounds):
                at = time.time() + 0.1
                for i, child in enumerate(children):
                    by = f"system:proc-{i}" if statuses[i] == "expired" else f"proc-{i}"
                    child.send(
                        {"approval_id": f"race-{r}", "status": statuses[i], "by": by, "at": at}
                    )
                replies = [child.read() for child in children]
                winners = [i for i, reply in enumerate(replies) if reply["won"]]
                assert len(winners) == 1, (r, replies)
                winner_row = replies[winners[0]]["row"]
                assert winner_row["decided_by"].endswith(f"proc-{winners[0]}")
                assert winner_row["status"] == statuses[winners[0]]
                assert all(reply["row"] == winner_row for reply in replies), replies
                stored = await store.ledger.get(f"race-{r}")
                assert stored is not None and stored.to_dict() == winner_row
    finally:
        for child in children:
            child.close()
    assert all(child.proc.returncode == 0 for child in children)


async def test_mark_applied_leaves_a_pending_row_alone(ledger: ApprovalLedger) -> None:
    await ledger.register(new("a-1"))
    await ledger.mark_applied("a-1", T0)
    row = await ledger.get("a-1")
    assert row is not None and row.applied_at is None
    await ledger.record_decision("a-1", DecisionWrite(ApprovalStatus.APPROVED, "alice", T0, None))
    assert [r.approval_id for r in await ledger.unapplied()] == ["a-1"]


# --- SQLite: a task cancelled mid-transaction ---------------------------------------------


def cancel_at(conn: Any, statement: str) -> None:
    """Make the task that sends ``statement`` on ``conn`` be cancelled while it waits for it:
    the statement is queued on aiosqlite's thread (and runs there) as it would be when a
    cancellation lands at that very moment, e.g. a monitor stopped mid-sweep."""
    real = conn.execute

    def execute(sql: str, *args: Any) -> Any:
        if sql == statement:
            conn.execute = real  # once
            current = asyncio.current_task()
            assert current is not None
            current.cancel()
        return real(sql, *args)

    conn.execute = execute


@pytest.mark.parametrize("statement", ["BEGIN IMMEDIATE", "COMMIT"])
async def test_a_sqlite_transaction_cancelled_mid_statement_propagates_and_leaves_no_lock(
    tmp_path: Any, statement: str
) -> None:
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    async with open_store(url) as store, open_store(url) as other:
        ledger = store.ledger
        await ledger.register(new("a-1"))
        cancel_at(ledger._conn, statement)  # type: ignore[attr-defined]
        with pytest.raises(asyncio.CancelledError):
            await ledger.record_decision("a-1", write())
        # The cancellation surfaced (not the rollback's "no transaction is active"), and the
        # connection is out of its transaction: this ledger writes again, and so does another
        # process's (the write lock is not held).
        won, row = await ledger.record_decision("a-1", write(by="bob"))
        committed = statement == "COMMIT"  # a cancelled COMMIT still commits on the thread
        assert won is not committed and row.decided_by == ("alice" if committed else "bob")
        await other.ledger.register(new("a-2"))
        assert (await other.ledger.get("a-2")) is not None
