"""Per-incident locks: in-process, SQLite file range locks, PostgreSQL advisory locks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from _store_child import Child
from durable_ir import IncidentBusy, Store, open_store
from durable_ir.locks import IncidentLocks, ProcessLocks, lock_key


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
    """POSIX record locks belong to the process: closing any descriptor of the lock file
    would drop them all. A second store's close must not release the first store's lock."""
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


# --- lock_key ---------------------------------------------------------------------------

KNOWN_KEYS = {
    "inc-1": 7137340844259137133,
    "INC-2026-0001": 444456396183130748,
    "": 4945174118024475047,
}


def test_lock_key_is_pinned() -> None:
    """Workers of different versions must agree on keys during a rolling deploy."""
    assert {incident: lock_key(incident) for incident in KNOWN_KEYS} == KNOWN_KEYS


def test_lock_key_is_the_same_in_another_process() -> None:
    incidents = ["inc-1", "inc-2", "ünïcode-🚨", "x" * 500]
    child = Child("lock-key", *incidents, env={"PYTHONHASHSEED": "12345"})
    try:
        assert child.read(timeout=60) == {"keys": [lock_key(i) for i in incidents]}
    finally:
        child.close()


def test_lock_key_range_and_spread() -> None:
    incidents = [f"inc-{i}" for i in range(20_000)] + ["INC-1", "inc-1 ", " inc-1", "inc-01"]
    keys = [lock_key(i) for i in incidents]
    assert all(0 <= key < 2**63 for key in keys)  # a signed 64-bit PostgreSQL bigint, >= 0
    assert len(set(keys)) == len(incidents)
    assert lock_key("inc-1") == lock_key("inc-1")
    assert lock_key("inc-1") != lock_key("INC-1")
