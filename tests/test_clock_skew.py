"""One clock: replicas whose host clocks run minutes apart (libfaketime, Debian's
``faketime`` package) judge deadlines and leases by the PostgreSQL server's clock — no early
expiry, no deadline registered in the past, no early takeover. The same processes timed by
their own clocks (``--local-clock``) do all three, which shows the tests can fail.

On SQLite, one machine, the local clock is the database's: nothing to test there.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from durable_ir import open_runtime
from support.processes import JsonLineProcess

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
SKEW = timedelta(minutes=20)


def deploy(
    url: str, counters: Path, *, shift: str | None, local_clock: bool = False
) -> JsonLineProcess:
    """A ``support.clock_worker`` process, its host clock shifted by ``shift`` (e.g. "+20m")."""
    env: dict[str, str] = {}
    if shift is not None:
        if not LIBFAKETIME.exists():
            if os.environ.get("DURABLE_IR_REQUIRE_POSTGRES"):
                pytest.fail(f"{LIBFAKETIME} is missing: apt-get install faketime")
            pytest.skip(f"{LIBFAKETIME} is missing (apt-get install faketime)")
        env = {
            "LD_PRELOAD": str(LIBFAKETIME),
            "FAKETIME": shift,
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "FAKETIME_NO_CACHE": "1",
        }
    argv = [sys.executable, "-m", "support.clock_worker", url, str(counters)]
    child = JsonLineProcess([*argv, *(["--local-clock"] if local_clock else [])], env=env)
    assert child.read() == {"ready": True}
    return child


async def owner_of(url: str, incident: str) -> str | None:
    async with open_runtime(url) as rt:
        row = await rt.store.ledger.get_incident(incident)
        assert row is not None
        return row.lease_owner


def call(child: JsonLineProcess, **request: object) -> dict[str, object]:
    child.send(request)
    return child.read()


def at(text: object) -> datetime:
    assert isinstance(text, str)
    return datetime.fromisoformat(text)


@pytest.mark.parametrize("local_clock", [False, True], ids=["database-clock", "local-clock"])
def test_a_fast_replica_neither_expires_early_nor_takes_over_early(
    postgres_url: str, counter_dir: Path, local_clock: bool
) -> None:
    normal = deploy(postgres_url, counter_dir, shift=None)
    fast = deploy(postgres_url, counter_dir, shift="+20m", local_clock=local_clock)
    paused, running = f"skew-{uuid.uuid4().hex[:8]}", f"held-{uuid.uuid4().hex[:8]}"
    try:
        started = call(normal, do="start", incident=paused)  # P0: 15 minutes
        if not local_clock:
            # (Timed by its own clock, a fast replica would also find the live run's lease
            # and its hold of the incident expired, and take the run over while it runs.)
            assert call(normal, do="hold", incident=running) == {"holding": running}

        swept = call(fast, do="sweep")
        assert at(swept["local"]) - datetime.now(UTC) > SKEW - timedelta(minutes=1)  # faked
        if local_clock:
            # Timed by its own clock, the fast replica expires the approval 5 minutes after
            # it was asked for.
            assert swept["expired"] == [paused], swept
        else:
            lease_owner = asyncio.run(owner_of(postgres_url, running))
            assert swept["expired"] == [] and swept["recovered"] == [], swept
            assert lease_owner != swept["owner"] and lease_owner is not None
            assert abs(at(swept["now"]) - datetime.now(UTC)) < timedelta(seconds=10), swept
            assert at(started["deadline_at"]) > at(swept["now"])
        if not local_clock:
            assert call(normal, do="release") == {"released": True}
            # The skewed host was told, once.
            assert fast.proc.stdin is not None and fast.proc.stderr is not None
            fast.proc.stdin.close()
            fast.wait()
            warnings = [line for line in fast.proc.stderr.read().splitlines() if "clock" in line]
            assert len(warnings) == 1 and "ahead of the database's" in warnings[0], warnings
    finally:
        normal.close()
        fast.close()


@pytest.mark.parametrize("local_clock", [False, True], ids=["database-clock", "local-clock"])
def test_a_slow_replica_registers_deadlines_by_the_database_clock(
    postgres_url: str, counter_dir: Path, local_clock: bool
) -> None:
    slow = deploy(postgres_url, counter_dir, shift="-20m", local_clock=local_clock)
    incident = f"slow-{uuid.uuid4().hex[:8]}"
    try:
        started = call(slow, do="start", incident=incident)
    finally:
        slow.close()
    deadline = at(started["deadline_at"])
    expected = datetime.now(UTC) + timedelta(minutes=15)
    if local_clock:
        assert deadline < datetime.now(UTC), started  # registered already in the past
    else:
        assert abs(deadline - expected) < timedelta(seconds=30), started


async def test_the_database_clock_is_the_default_on_postgres(postgres_url: str) -> None:
    async with open_runtime(postgres_url) as rt:
        server = await rt.store.ledger.server_time()
        assert server is not None
        assert abs(rt.clock() - server) < timedelta(seconds=2)
        assert type(rt.clock).__name__ == "DatabaseClock"
