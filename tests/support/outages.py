"""PostgreSQL faults for tests, confined to the test's own database: its sessions ended
(``pg_terminate_backend``), or an outage (it refuses new connections and every session of it
is ended, as in a restart); and a read that waits out the pool's reconnection afterwards."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg_pool import PoolTimeout

from support.postgres import database_name

T = TypeVar("T")

UNREACHABLE = (psycopg.OperationalError, PoolTimeout)
"""What a read raises while the database is down, or while the pool reconnects after."""


def terminate_sessions(url: str) -> int:
    """End every other session of ``url``'s database (waiting until each is gone); return
    how many there were."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return sum(1 for (ended,) in rows if ended)


def end_sessions(url: str, application_name: str) -> int:
    """End every session named ``application_name`` on ``url``'s server (waiting until each
    is gone); return how many there were."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()",
            (application_name,),
        ).fetchall()
    return sum(1 for (ended,) in rows if ended)


class Outage:
    """The test database down, as far as its clients can tell: it refuses new connections
    and every session of it is ended. Nothing else on the server is touched."""

    def __init__(self, server_url: str, url: str) -> None:
        self.server_url = server_url
        self.name = database_name(url)
        self.ended_sessions = 0

    def _alter(self, conn: psycopg.Connection[Any], allow: bool) -> None:
        conn.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                sql.Identifier(self.name), sql.Literal(allow)
            )
        )

    def begin(self) -> None:
        with psycopg.connect(self.server_url, autocommit=True, connect_timeout=10) as conn:
            self._alter(conn, False)
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = %s",
                (self.name,),
            ).fetchall()
        self.ended_sessions += sum(1 for (ended,) in rows if ended)

    def end(self) -> None:
        with psycopg.connect(self.server_url, autocommit=True, connect_timeout=10) as conn:
            self._alter(conn, True)


async def once_reachable(
    read: Callable[[], Awaitable[T]], *, what: str = "the database", within: float = 180.0
) -> T:
    """``read()``, retried while the database is unreachable — as after an outage, while the
    pool's reconnection backs off (1, 2, 4 … s apart) and a checkout with a short pool
    timeout fails meanwhile — until it works. ``within`` only bounds a test that would
    otherwise hang: it is no claim about how fast reconnection is, so it is generous."""
    deadline = time.monotonic() + within
    pause = 0.05
    while True:
        try:
            return await read()
        except UNREACHABLE:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} still unreachable after {within:g}s") from None
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)
