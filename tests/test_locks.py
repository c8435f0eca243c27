"""Per-incident locks: ownership leases with fencing epochs (every backend) and in-process
locks."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from _store_child import Child
from durable_ir import FixedClock, IncidentBusy, InvalidInput, OwnershipLost, Store, open_store
from durable_ir.ledger import DecisionWrite
from durable_ir.locks import IncidentLocks, LeaseLocks, ProcessLocks
from durable_ir.notifications import Fence, IncidentEvent, send_once
from durable_ir.records import ApprovalStatus, NewApproval, NewIncident, OwnershipTake


@pytest.fixture
async def two_views(database_url: str) -> AsyncIterator[tuple[IncidentLocks, IncidentLocks]]:
    """Two lock objects on one database: from two stores, or for ``memory://`` (where every
    store is its own database) two ``ProcessLocks`` of one scope."""
    async with AsyncExitStack() as stack:
        first: Store = await stack.enter_async_context(open_store(database_url))
        if first.backend == "memory":
            yield ProcessLocks("test-scope"), ProcessLocks("test-scope")
        else:
            second: Store = await stack.enter_async_context(open_store(database_url))
            assert second.locks is not first.locks
            yield first.locks, second.locks


async def test_a_held_lock_excludes_other_holders(
    two_views: tuple[IncidentLocks, IncidentLocks],
) -> None:
    mine, theirs = two_views
    assert await mine.try_acquire("inc-1")
    try:
        assert not await theirs.try_acquire("inc-1")
        assert not await mine.try_acquire("inc-1")  # not re-entrant either
        ran = False
        with pytest.raises(IncidentBusy, match="incident 'inc-1' is being run by another worker"):
            async with theirs.hold("inc-1", wait=0):
                ran = True
        assert not ran
        # Another incident is free.
        assert await theirs.try_acquire("inc-2")
        await theirs.release("inc-2")
        async with theirs.hold("inc-3", wait=0):
            assert not await mine.try_acquire("inc-3")
    finally:
        await mine.release("inc-1")
    # Released: free again, for either side, and the released ones too.
    assert await theirs.try_acquire("inc-1")
    assert not await mine.try_acquire("inc-1")
    await theirs.release("inc-1")
    async with mine.hold("inc-1", wait=0), mine.hold("inc-3", wait=0):
        assert not await theirs.try_acquire("inc-1")
        assert not await theirs.try_acquire("inc-3")
    assert await theirs.try_acquire("inc-1")
    await theirs.release("inc-1")


async def test_hold_releases_on_error(two_views: tuple[IncidentLocks, IncidentLocks]) -> None:
    mine, theirs = two_views
    with pytest.raises(RuntimeError, match="boom"):
        async with mine.hold("inc-1", wait=0):
            assert not await theirs.try_acquire("inc-1")
            raise RuntimeError("boom")
    assert await theirs.try_acquire("inc-1")
    await theirs.release("inc-1")


async def test_hold_with_a_wait_waits_then_gives_up(
    two_views: tuple[IncidentLocks, IncidentLocks],
) -> None:
    mine, theirs = two_views
    async with mine.hold("inc-1", wait=0):
        started = time.monotonic()
        with pytest.raises(IncidentBusy, match="inc-1"):
            async with theirs.hold("inc-1", wait=0.2):
                pytest.fail("the lock was held")
        assert time.monotonic() - started >= 0.2  # it did not give up early
    # And hold(wait=0) does not wait at all: one attempt, then IncidentBusy.
    attempts = 0
    real_try = theirs.try_acquire

    async def counting_try(incident_id: str) -> bool:
        nonlocal attempts
        attempts += 1
        return await real_try(incident_id)

    theirs.try_acquire = counting_try  # type: ignore[method-assign]
    async with mine.hold("inc-1", wait=0):
        with pytest.raises(IncidentBusy):
            async with theirs.hold("inc-1", wait=0):
                pass
    assert attempts == 1


async def test_hold_with_a_wait_gets_the_lock_once_it_is_released(
    two_views: tuple[IncidentLocks, IncidentLocks],
) -> None:
    mine, theirs = two_views
    assert await mine.try_acquire("inc-1")

    async def release_later() -> None:
        await asyncio.sleep(0.2)
        await mine.release("inc-1")

    releaser = asyncio.create_task(release_later())
    started = time.monotonic()
    async with theirs.hold("inc-1", wait=5):
        waited = time.monotonic() - started
        assert not await mine.try_acquire("inc-1")
    await releaser
    assert waited >= 0.2, waited  # it waited for the release rather than failing
    assert await mine.try_acquire("inc-1")
    await mine.release("inc-1")


async def test_many_incidents_at_once(two_views: tuple[IncidentLocks, IncidentLocks]) -> None:
    mine, theirs = two_views
    incidents = [f"inc-{i}" for i in range(8)]
    for incident in incidents:
        assert await mine.try_acquire(incident)
    assert [await theirs.try_acquire(i) for i in incidents] == [False] * len(incidents)
    for incident in incidents[::2]:
        await mine.release(incident)
    assert [await theirs.try_acquire(i) for i in incidents] == [True, False] * 4
    for incident in incidents[::2]:
        await theirs.release(incident)
    for incident in incidents[1::2]:
        await mine.release(incident)


async def test_process_locks_are_shared_by_scope() -> None:
    a, b, other = ProcessLocks("scope-1"), ProcessLocks("scope-1"), ProcessLocks("scope-2")
    assert await a.try_acquire("inc-1")
    assert not await b.try_acquire("inc-1")
    assert await other.try_acquire("inc-1")  # a different scope is a different database
    await a.release("inc-1")
    await other.release("inc-1")
    assert await b.try_acquire("inc-1")
    await b.release("inc-1")


async def test_memory_stores_have_separate_locks() -> None:
    async with (
        open_store("memory://") as first,
        open_store("memory://") as second,
        first.locks.hold("inc-1", wait=0),
    ):
        assert not await first.locks.try_acquire("inc-1")
        async with second.locks.hold("inc-1", wait=0):
            assert not await second.locks.try_acquire("inc-1")


# --- across processes -------------------------------------------------------------------


async def _acquire_within(locks: IncidentLocks, incident: str, seconds: float) -> float | None:
    """Poll until the lock is taken; how long it took, or ``None`` if it never was."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if await locks.try_acquire(incident):
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    return None


@pytest.mark.slow
async def test_a_killed_holder_releases_its_lock(durable_url: str) -> None:
    async with open_store(durable_url) as store:
        holder = Child("hold", durable_url, "inc-kill")
        try:
            assert holder.read(timeout=60) == {"held": True}
            assert not await store.locks.try_acquire("inc-kill")
            with pytest.raises(IncidentBusy):
                async with store.locks.hold("inc-kill", wait=0.1):
                    pass
            assert await store.locks.try_acquire("inc-other")  # only that incident is taken
            await store.locks.release("inc-other")
            holder.kill()
            assert holder.proc.returncode == -9
        finally:
            holder.close()
        took = await _acquire_within(store.locks, "inc-kill", 5)
        assert took is not None, "the dead holder's lock was never released"
        # Now we hold it, and another process cannot take it.
        rival = Child("hold", durable_url, "inc-kill")
        try:
            assert rival.read(timeout=60) == {"held": False}
        finally:
            rival.close()
        await store.locks.release("inc-kill")


@pytest.mark.slow
async def test_closing_one_store_keeps_the_locks_of_another_in_the_same_process(
    tmp_path: Path,
) -> None:
    """A second store's close gives back only its own holds, not the first store's."""
    url = f"sqlite:///{tmp_path}/incidents.db"
    async with open_store(url) as keeper:
        async with open_store(url) as passing:
            assert await keeper.locks.try_acquire("inc-1")
            assert await passing.locks.try_acquire("inc-2")
            await passing.locks.release("inc-2")
        rival = Child("hold", url, "inc-1")
        try:
            assert rival.read(timeout=60) == {"held": False}
        finally:
            rival.close()
        await keeper.locks.release("inc-1")
    rival = Child("hold", url, "inc-1")
    try:
        assert rival.read(timeout=60) == {"held": True}
    finally:
        rival.kill()
        rival.close()


# --- ownership leases: epochs and fencing -----------------------------------------------


@pytest.fixture
async def lease_store(database_url: str) -> AsyncIterator[Store]:
    async with open_store(database_url) as store:
        yield store


def _leases(store: Store, owner: str, clock: FixedClock, ttl: float = 30.0) -> LeaseLocks:
    locks = LeaseLocks(store.ledger)
    locks.bind(owner=owner, ttl=ttl, clock=clock)
    return locks


async def test_every_take_bumps_the_epoch_and_release_keeps_it(lease_store: Store) -> None:
    clock = FixedClock(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    first, second = _leases(lease_store, "w1", clock), _leases(lease_store, "w2", clock)
    async with first.hold("inc-1", wait=0) as epoch:
        assert epoch == 1 == first.epoch("inc-1")
        assert second.epoch("inc-1") is None
    assert first.epoch("inc-1") is None
    async with second.hold("inc-1", wait=0) as epoch:
        assert epoch == 2
    held = await lease_store.ledger.get_ownership("inc-1")
    assert held is not None and (held.owner, held.epoch, held.expires_at) == (None, 2, None)
    assert await lease_store.ledger.get_ownership("inc-never") is None


async def test_an_expired_hold_is_taken_over_and_the_old_holder_is_fenced(
    lease_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FixedClock(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    paused, live = _leases(lease_store, "paused", clock, 10), _leases(lease_store, "live", clock)
    ledger = lease_store.ledger
    assert await paused.try_acquire("inc-1")
    assert not await live.try_acquire("inc-1")
    clock.advance(seconds=9.9)
    assert not await live.try_acquire("inc-1")  # not yet expired
    clock.advance(seconds=0.2)
    assert await live.try_acquire("inc-1")
    assert (paused.epoch("inc-1"), live.epoch("inc-1")) == (1, 2)
    # The paused holder's writes, named by its epoch, are refused; the live one's go.
    now = clock()
    assert await ledger.claim_step("inc-1", "inc-1/step-1/apply", 1, "paused", now) is None
    claims = await ledger.claim_step("inc-1", "inc-1/step-1/apply", 2, "live", now)
    assert claims is not None and [(c.epoch, c.owner) for c in claims] == [(2, "live")]
    assert not await ledger.finish_step("inc-1", "inc-1/step-1/apply", 1, True, "x", now)
    assert await ledger.finish_step("inc-1", "inc-1/step-1/apply", 2, True, "done", now)
    later = now + timedelta(seconds=30)
    assert await ledger.renew_ownership(["inc-1"], "paused", later) == set()
    assert await ledger.renew_ownership(["inc-1"], "live", later) == {"inc-1"}
    # Its release changes nothing and says so.
    with caplog.at_level(logging.ERROR, logger="durable_ir.locks"):
        await paused.release("inc-1")
    assert "taken over by another worker" in caplog.text
    assert not await paused.try_acquire("inc-1")
    await live.release("inc-1")
    [claim] = await ledger.step_claims("inc-1")
    assert (claim.key, claim.epoch, claim.ok, claim.detail) == (
        "inc-1/step-1/apply",
        2,
        True,
        "done",
    )
    assert claim.finished_at == now


async def test_an_unfinished_claim_of_an_older_epoch_is_visible_to_the_next_owner(
    lease_store: Store,
) -> None:
    clock = FixedClock(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    ledger = lease_store.ledger
    first, second = _leases(lease_store, "a", clock, 5), _leases(lease_store, "b", clock, 5)
    assert await first.try_acquire("inc-1")
    assert await ledger.claim_step("inc-1", "k", 1, "a", clock()) is not None
    # The same epoch may claim again (a re-run of the node under one hold).
    again = await ledger.claim_step("inc-1", "k", 1, "a", clock())
    assert again is not None and len(again) == 1
    clock.advance(seconds=6)
    assert await second.try_acquire("inc-1")
    claims = await ledger.claim_step("inc-1", "k", 2, "b", clock())
    assert claims is not None
    assert [(c.epoch, c.finished_at is None) for c in claims] == [(1, True), (2, True)]
    await second.release("inc-1")
    await first.release("inc-1")


async def test_a_dead_holder_on_this_host_is_taken_over_at_once(lease_store: Store) -> None:
    clock = FixedClock(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    # A worker id of this host whose process does not exist (pid 2**22 + 1 is above the
    # default pid_max of small machines; if it exists, the test only loses its point).
    dead = f"{socket.gethostname()[:60]}:{2**22 + 1}:deadbeef"
    assert (
        await lease_store.ledger.take_ownership(
            "inc-1", dead, clock(), clock() + timedelta(hours=1)
        )
        == 1
    )
    live = _leases(lease_store, "live", clock)
    assert await live.try_acquire("inc-1")
    assert live.epoch("inc-1") == 2
    await live.release("inc-1")
    # A holder on another host is never presumed dead.
    assert (
        await lease_store.ledger.take_ownership(
            "inc-2", "elsewhere:1:x", clock(), clock() + timedelta(hours=1)
        )
        == 1
    )
    assert not await live.try_acquire("inc-2")


async def test_the_heartbeat_keeps_a_hold_and_notices_a_takeover(
    lease_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FixedClock(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    holder = _leases(lease_store, "holder", clock, ttl=0.3)
    rival = _leases(lease_store, "rival", clock, ttl=0.3)
    assert await holder.try_acquire("inc-1")
    # Renewed every 0.1 s from the (fixed) clock: it never lapses while the clock stands.
    await asyncio.sleep(0.35)
    clock.advance(seconds=0.25)
    assert not await rival.try_acquire("inc-1")  # renewed to clock + ttl
    # Another worker takes it by force (as if the holder had been paused past its expiry).
    held = await lease_store.ledger.get_ownership("inc-1")
    assert held is not None
    assert (
        await lease_store.ledger.take_ownership(
            "inc-1", "rival", clock(), clock() + timedelta(seconds=30), steal_from="holder"
        )
        == held.epoch + 1
    )
    with caplog.at_level(logging.ERROR, logger="durable_ir.locks"):
        for _ in range(100):
            if "taken over by another worker" in caplog.text:
                break
            await asyncio.sleep(0.05)
    assert "taken over by another worker" in caplog.text
    await holder.close()
    await rival.close()


async def test_a_taken_over_worker_sends_no_notification(lease_store: Store) -> None:
    """The outbox is fenced too: a send under an epoch that was taken over raises before the
    channel is called, and the new owner's send goes through once."""
    clock = FixedClock(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    sent: list[str] = []

    class Channel:
        name = "pager"

        async def notify(self, event: IncidentEvent) -> dict[str, str]:
            sent.append(event.kind)
            return {"dedup_key": event.incident_id}

    paused, live = _leases(lease_store, "paused", clock, 5), _leases(lease_store, "live", clock)
    assert await paused.try_acquire("inc-1")
    clock.advance(seconds=6)
    assert await live.try_acquire("inc-1")
    event = IncidentEvent(
        kind="escalated", incident_id="inc-1", severity="P1", title="t", at=clock()
    )
    with pytest.raises(OwnershipLost):
        await send_once(lease_store.ledger, Channel(), event, fence=Fence(1, "paused"))
    assert sent == []
    first = await send_once(lease_store.ledger, Channel(), event, fence=Fence(2, "live"))
    again = await send_once(lease_store.ledger, Channel(), event, fence=Fence(2, "live"))
    assert (sent, first.repeated, again.repeated) == (["escalated"], False, True)
    [claim] = await lease_store.ledger.step_claims("inc-1")
    assert (claim.key, claim.epoch, claim.ok) == ("notify/inc-1|pager|escalated", 2, True)
    await live.release("inc-1")
    await paused.release("inc-1")


# --- takes folded into the write that opens an incident or records a decision -------------


def _take(owner: str, clock: FixedClock, ttl: float = 30.0) -> OwnershipTake:
    now = clock()
    return OwnershipTake(owner, now, now + timedelta(seconds=ttl), steal_from=owner)


async def test_opening_an_incident_takes_it_in_the_same_write(lease_store: Store) -> None:
    clock = FixedClock(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    ledger = lease_store.ledger
    new = NewIncident("inc-1", "incident", clock(), fingerprint="fp-1")
    opened, row, epoch = await ledger.open_and_take(new, _take("w1", clock))
    assert opened and row.incident_id == "inc-1" and epoch == 1
    held = await ledger.get_ownership("inc-1")
    assert held is not None and (held.owner, held.epoch) == ("w1", 1)
    # An alert with the open fingerprint attaches and takes nothing; an existing id neither.
    again = replace(new, incident_id="inc-2")
    opened, row, epoch = await ledger.open_and_take(again, _take("w2", clock))
    assert (opened, row.incident_id, row.alerts_received, epoch) == (False, "inc-1", 2, None)
    assert await ledger.get_incident("inc-2") is None
    opened, _, epoch = await ledger.open_and_take(
        replace(new, fingerprint=None), _take("w2", clock)
    )
    assert (opened, epoch) == (False, None)
    held = await ledger.get_ownership("inc-1")
    assert held is not None and (held.owner, held.epoch) == ("w1", 1)
    # A hold that exists before the incident (another worker's) is not taken: opened, but
    # not held.
    assert await ledger.take_ownership("inc-3", "w2", clock(), clock() + timedelta(seconds=30))
    opened, _, epoch = await ledger.open_and_take(
        NewIncident("inc-3", "incident", clock()), _take("w1", clock)
    )
    assert (opened, epoch) == (True, None)
    # Bad input changes nothing.
    with pytest.raises(InvalidInput):
        await ledger.open_and_take(
            NewIncident("inc-4", "incident", clock()),
            OwnershipTake("w1", datetime(2026, 12, 7, 9, 0), clock()),  # naive
        )
    assert await ledger.get_incident("inc-4") is None


async def test_recording_a_decision_takes_its_incident_in_the_same_write(
    lease_store: Store,
) -> None:
    clock = FixedClock(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    ledger = lease_store.ledger
    for approval_id, incident_id in (("a-1", "inc-1"), ("a-2", "inc-2")):
        await ledger.register(
            NewApproval(
                approval_id=approval_id,
                incident_id=incident_id,
                graph="incident",
                node="approval",
                request={"plan": {}},
                severity="P1",
                requested_at=clock(),
                deadline_at=clock() + timedelta(hours=2),
            )
        )
    decision = DecisionWrite(ApprovalStatus.APPROVED, "alice", clock(), None)
    won, row, epoch = await ledger.decide_and_take("a-1", decision, None, _take("w1", clock))
    assert won and row.status is ApprovalStatus.APPROVED and epoch == 1
    # The loser takes nothing and learns the winner.
    rejected = DecisionWrite(ApprovalStatus.REJECTED, "bob", clock(), "no")
    won, row, epoch = await ledger.decide_and_take("a-1", rejected, None, _take("w2", clock))
    assert (won, row.decided_by, epoch) == (False, "alice", None)
    held = await ledger.get_ownership("inc-1")
    assert held is not None and (held.owner, held.epoch) == ("w1", 1)
    # The winner of an incident another worker holds records the decision without the hold:
    # that worker (or recovery) applies it.
    assert await ledger.take_ownership("inc-2", "w2", clock(), clock() + timedelta(seconds=30))
    won, row, epoch = await ledger.decide_and_take("a-2", decision, None, _take("w1", clock))
    assert (won, row.status, epoch) == (True, ApprovalStatus.APPROVED, None)
    held = await ledger.get_ownership("inc-2")
    assert held is not None and (held.owner, held.epoch) == ("w2", 1)


async def test_a_folded_take_respects_holds_in_this_process(lease_store: Store) -> None:
    """While a task of this worker holds an incident, a folded take offers nothing to fold:
    its stale-self-hold rule would take the incident from that task."""
    clock = FixedClock(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    locks = _leases(lease_store, "w1", clock)
    ledger = lease_store.ledger
    async with locks.hold("inc-1", wait=0) as epoch:
        assert epoch == 1
        async with locks.taking("inc-1", ledger) as taking:
            assert taking.request is None
            with pytest.raises(IncidentBusy):
                await taking.acquire(wait=0)
    async with locks.taking("inc-1", ledger) as taking:
        assert taking.request is not None
        # Reserved: another task of this process cannot take it meanwhile.
        assert not await locks.try_acquire("inc-1")
        taking.took(await ledger.take_ownership("inc-1", "w1", clock(), clock() + timedelta(1)))
        assert await taking.acquire(wait=0) == 2 == locks.epoch("inc-1")
    assert locks.epoch("inc-1") is None
    held = await ledger.get_ownership("inc-1")
    assert held is not None and (held.owner, held.epoch) == (None, 2)
    # Another store's locks fold nothing into this ledger.
    async with open_store("memory://") as other, locks.taking("inc-1", other.ledger) as taking:
        assert taking.request is None


async def test_a_new_firing_is_taken_by_its_opener_in_the_same_transaction(
    lease_store: Store,
) -> None:
    clock = FixedClock(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    ledger = lease_store.ledger
    new = NewIncident("inc-1", "incident", clock(), fingerprint="fp-1")
    opened = await ledger.open_firing(new, clock(), take=_take("w1", clock))
    assert opened.created and opened.kind == "fired" and opened.epoch == 1
    held = await ledger.get_ownership("inc-1")
    assert held is not None and (held.owner, held.epoch) == ("w1", 1)
    # A repeat of the firing attaches and takes nothing.
    again = await ledger.open_firing(
        replace(new, incident_id="inc-2"), clock(), take=_take("w2", clock)
    )
    assert (again.created, again.kind, again.epoch) == (False, "repeated", None)
    held = await ledger.get_ownership("inc-1")
    assert held is not None and (held.owner, held.epoch) == ("w1", 1)
    # Without a take, nothing is taken.
    other = NewIncident("inc-3", "incident", clock(), fingerprint="fp-3")
    assert (await ledger.open_firing(other, clock())).epoch is None
    assert await ledger.get_ownership("inc-3") is None
