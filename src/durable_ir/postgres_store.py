"""The PostgreSQL store: one connection pool for LangGraph's checkpoints (through
:class:`~durable_ir.postgres_saver.InlineSerdePostgresSaver`), the ledger and the incident
locks. Imported only when a ``postgresql://`` URL is opened, so that SQLite and in-memory use
never load psycopg.

Example (needs a server)::

    async with AsyncExitStack() as stack:
        saver, ledger, locks = await open_postgres(
            stack, "postgresql://localhost/incidents", "postgresql://localhost/incidents",
            pool_size=20, connect_timeout=30.0, serde=None,
        )
"""

from __future__ import annotations

import asyncio
import select
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, LiteralString

import psycopg
from langgraph.checkpoint.serde.base import SerializerProtocol
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from durable_ir.errors import ConfigurationError
from durable_ir.leases import owner_is_gone, worker_id
from durable_ir.ledger.postgres import PostgresLedger
from durable_ir.locks import LeaseLocks
from durable_ir.postgres_saver import InlineSerdePostgresSaver

__all__ = ["open_postgres"]

_SETUP_LOCK_KEY = 0x6475726162_6C65  # "durable"
"""The transaction-scoped advisory lock key under which the setup lease table is created."""


async def open_postgres(
    stack: AsyncExitStack,
    target: str,
    shown: str,
    pool_size: int,
    connect_timeout: float,
    serde: SerializerProtocol | None,
) -> tuple[InlineSerdePostgresSaver, PostgresLedger, LeaseLocks]:
    """Connect to ``target`` (a libpq URL; ``shown`` is how messages name it, without a
    password), set up the saver's and the ledger's tables (once, under an advisory lock,
    however many processes start at once) and return the saver, the ledger and the locks on
    one pool, which ``stack`` closes."""
    # One direct connection first: a wrong URL fails now, with the server's own message,
    # instead of after the pool's retries.
    try:
        probe = await AsyncConnection.connect(target, connect_timeout=int(connect_timeout))
    except psycopg.Error as exc:
        raise ConfigurationError(f"cannot connect to PostgreSQL at {shown}: {exc}") from None
    await probe.close()
    check = _DroppedConnectionCheck()
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        target,
        min_size=1,
        max_size=pool_size,
        open=False,
        timeout=connect_timeout,
        # After an outage, a reconnection attempt (psycopg_pool retries 1, 2, 4, … s apart)
        # lasts no longer than a request waits; the next request starts a fresh one.
        reconnect_timeout=connect_timeout,
        # What the saver needs, and what works behind a transaction pooler.
        kwargs={"autocommit": True, "row_factory": dict_row, "prepare_threshold": None},
        # Connections the server dropped while they sat in the pool (a restart,
        # pg_terminate_backend) are replaced before anyone gets them.
        check=check,
        name="durable-ir",
    )
    check.pool = pool
    try:
        await pool.open(wait=True, timeout=connect_timeout)
    except Exception as exc:
        await pool.close()
        raise ConfigurationError(f"cannot connect to PostgreSQL at {shown}: {exc}") from exc
    stack.push_async_callback(pool.close)
    # AsyncPostgresSaver, minus its thread hop for every (de)serialisation: see its module.
    saver = InlineSerdePostgresSaver(conn=pool, serde=serde)
    ledger = PostgresLedger(pool)
    locks = LeaseLocks(ledger)
    stack.push_async_callback(locks.close)
    async with _setup_lease(pool):
        await saver.setup()
        await ledger.setup()
    return saver, ledger, locks


_SETUP_TABLE: LiteralString = (
    "CREATE TABLE IF NOT EXISTS durable_ir_setup_lease"
    " (id int PRIMARY KEY, owner text, expires_at timestamptz)"
)
_TAKE_SETUP: LiteralString = (
    "INSERT INTO durable_ir_setup_lease AS l (id, owner, expires_at)"
    " VALUES (1, %s, clock_timestamp() + make_interval(secs => %s))"
    " ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at"
    " WHERE l.owner IS NULL OR l.expires_at < clock_timestamp() OR l.owner = %s"
    " RETURNING id"
)
_SETUP_HOLDER: LiteralString = "SELECT owner FROM durable_ir_setup_lease WHERE id = 1"
_RELEASE_SETUP: LiteralString = (
    "UPDATE durable_ir_setup_lease SET owner = NULL, expires_at = NULL WHERE id = 1 AND owner = %s"
)
_SETUP_LEASE_S = 120.0
"""How long a process setting up the schema may take before another may start over."""


@asynccontextmanager
async def _setup_lease(pool: AsyncConnectionPool[Any]) -> AsyncIterator[None]:
    """Serialise schema setup across processes without session state (so it works behind a
    transaction pooler): a lease row, taken by a conditional upsert and polled for. Its table
    is created under a transaction-scoped advisory lock, which a pooler keeps on one server
    connection for the transaction. ``setup()`` runs ``CREATE INDEX CONCURRENTLY``, which waits
    for every open snapshot: polling holds none between attempts."""
    me = worker_id()
    async with pool.connection() as conn:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SETUP_LOCK_KEY,))
            await conn.execute(_SETUP_TABLE)
        pause = 0.01
        while True:
            cur = await conn.execute(_TAKE_SETUP, (me, _SETUP_LEASE_S, ""))
            if await cur.fetchone():
                break
            cur = await conn.execute(_SETUP_HOLDER)
            row = await cur.fetchone()
            holder = row["owner"] if row else None
            if holder and owner_is_gone(holder):
                cur = await conn.execute(_TAKE_SETUP, (me, _SETUP_LEASE_S, holder))
                if await cur.fetchone():
                    break
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)
    try:
        yield
    finally:
        async with pool.connection() as conn:
            await conn.execute(_RELEASE_SETUP, (me,))


class _DroppedConnectionCheck:
    """The pool's check of every connection it hands out: raise if the server dropped it.

    An idle connection has nothing to read unless the server closed it: when PostgreSQL
    restarts or ``pg_terminate_backend`` ends the session, the server sends a FATAL error and
    closes the socket. So a poll of the socket (no round trip) finds those, and only a
    readable socket costs a full check (an empty query, which raises on a dead connection).

    What drops one idle connection drops them all, and psycopg_pool backs off for a second,
    then two, … before each further check that fails within one request: so on the first dead
    connection the pool is drained (every idle connection replaced, the ones in use replaced
    when they come back), and the request waits only for a fresh connection.
    """

    def __init__(self) -> None:
        self.pool: AsyncConnectionPool[Any] | None = None

    async def __call__(self, conn: AsyncConnection[Any]) -> None:
        if not _socket_readable(conn):
            return
        try:
            await AsyncConnectionPool.check_connection(conn)
        except Exception:
            if self.pool is not None:
                await self.pool.drain()
            raise


def _socket_readable(conn: AsyncConnection[Any]) -> bool:
    """True if ``conn``'s socket has something to read (or is not usable): never blocks."""
    try:
        fd = conn.fileno()
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(fd, select.POLLIN | select.POLLPRI)
            return bool(poller.poll(0))
        readable, _, _ = select.select([fd], [], [], 0)
        return bool(readable)
    except (OSError, ValueError, psycopg.Error):
        return True
