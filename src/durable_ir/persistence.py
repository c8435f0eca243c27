"""One place that turns a database URL into a LangGraph checkpointer, the approval ledger and
the per-incident locks, all in the same database.

=================================  ========================  ==============  ================
URL                                checkpointer              ledger          locks
=================================  ========================  ==============  ================
``postgresql://user@host/db``      InlineSerdePostgresSaver  PostgresLedger  ownership leases
``sqlite:///path/to/incidents.db`` AsyncSqliteSaver          SqliteLedger    ownership leases
``memory://``                      InMemorySaver             MemoryLedger    ownership leases
=================================  ========================  ==============  ================

``sqlite:///relative.db`` is relative to the working directory, ``sqlite:////abs.db`` is
absolute, and no URL at all means ``$DURABLE_IR_DATABASE_URL`` or else
``sqlite:///durable_ir.db``.

Example:
    >>> import asyncio
    >>> async def demo():
    ...     async with open_store("memory://") as store:
    ...         return store.backend
    >>> asyncio.run(demo())
    'memory'
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal

import aiosqlite
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from durable_ir.errors import ConfigurationError
from durable_ir.ledger.base import ApprovalLedger
from durable_ir.ledger.memory import MemoryLedger
from durable_ir.ledger.sqlite import SqliteLedger
from durable_ir.locks import IncidentLocks, LeaseLocks

__all__ = [
    "DATABASE_URL_ENV",
    "DEFAULT_DATABASE_URL",
    "Backend",
    "DatabaseURL",
    "Store",
    "open_store",
    "parse_database_url",
    "redact_url",
]

DATABASE_URL_ENV = "DURABLE_IR_DATABASE_URL"
DEFAULT_DATABASE_URL = "sqlite:///durable_ir.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Any constant works as long as every durable-ir process uses the same one.

Backend = Literal["postgres", "sqlite", "memory"]


@dataclass(frozen=True)
class DatabaseURL:
    """A parsed database URL: the backend and what it connects to (DSN or file path)."""

    backend: Backend
    target: str

    def __str__(self) -> str:
        if self.backend == "postgres":
            return redact_url(self.target)
        return f"sqlite:///{self.target}" if self.backend == "sqlite" else "memory://"

    def __repr__(self) -> str:  # never show a password, not even in a traceback's locals
        shown = redact_url(self.target) if self.backend == "postgres" else self.target
        return f"DatabaseURL(backend={self.backend!r}, target={shown!r})"


# Each pattern keeps group "keep", masks what follows it, and keeps group "tail".
_PASSWORD_PATTERNS = (
    re.compile(r"(?P<keep>://[^/?#@:]*:)[^/?#@]*(?P<tail>@)"),  # scheme://user:password@host
    re.compile(r"(?P<keep>[?&]password=)[^&#]*(?P<tail>)", re.IGNORECASE),  # ?password=…
    re.compile(  # libpq keyword/value strings: password=… or password='…'
        r"(?P<keep>\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s&]+)(?P<tail>)", re.IGNORECASE
    ),
)


def redact_url(url: str) -> str:
    """``url`` with any password masked (``user:password@``, a ``password=`` query parameter,
    or a libpq keyword string); everything else is left exactly as it was.

    Example:
        >>> redact_url("postgresql://ir:s3cret@db/ir?sslmode=require&password=s3cret")
        'postgresql://ir:***@db/ir?sslmode=require&password=***'
    """
    for pattern in _PASSWORD_PATTERNS:
        url = pattern.sub(r"\g<keep>***\g<tail>", url)
    return url


def parse_database_url(url: str | None = None) -> DatabaseURL:
    """Parse a database URL (see the module doc); ``ConfigurationError`` if it is unusable.

    Example:
        >>> parse_database_url("sqlite:///incidents.db")
        DatabaseURL(backend='sqlite', target='incidents.db')
        >>> parse_database_url("redis://x")
        Traceback (most recent call last):
        ...
        durable_ir.errors.ConfigurationError: unsupported database URL 'redis://x': \
use postgresql://…, sqlite:///path or memory://
    """
    if url is None:
        url = os.environ.get(DATABASE_URL_ENV) or DEFAULT_DATABASE_URL
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError("the database URL is empty")
    url = url.strip()
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("postgresql", "postgres"):
        return DatabaseURL("postgres", url)
    if scheme == "memory":
        if url.rstrip("/").lower() != "memory:":
            raise ConfigurationError(f"a memory URL takes nothing after the scheme: {url!r}")
        return DatabaseURL("memory", "")
    if scheme == "sqlite":
        rest = url[len("sqlite://") :]
        if not rest.startswith("/") or rest in ("/", ""):
            raise ConfigurationError(
                "a SQLite URL needs a file: sqlite:///relative.db or sqlite:////abs.db, "
                f"got {url!r}"
            )
        path = rest[1:]
        if path in (":memory:", "") or path.startswith("file:"):
            raise ConfigurationError(
                "an in-memory SQLite database cannot be shared by the checkpointer and the "
                "ledger: use memory:// instead"
            )
        return DatabaseURL("sqlite", path)
    shown = redact_url(url)
    raise ConfigurationError(
        f"unsupported database URL {shown!r}: use postgresql://…, sqlite:///path or memory://"
    )


@dataclass(frozen=True)
class Store:
    """What a runtime persists through: the checkpointer, the ledger and the incident locks."""

    url: DatabaseURL
    checkpointer: BaseCheckpointSaver[Any]
    ledger: ApprovalLedger
    locks: IncidentLocks

    @property
    def backend(self) -> Backend:
        """``"postgres"``, ``"sqlite"`` or ``"memory"``."""
        return self.url.backend


@asynccontextmanager
async def open_store(
    url: str | None = None,
    *,
    pool_size: int = 20,
    connect_timeout: float = 30.0,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    serde: SerializerProtocol | None = None,
) -> AsyncIterator[Store]:
    """Open (and set up, idempotently) the store behind ``url``; close everything on exit.

    ``pool_size`` bounds PostgreSQL connections (a lock holds none: it is a row).
    ``checkpointer`` replaces the URL's own saver with yours (any
    ``BaseCheckpointSaver``, set up and closed by you); the ledger and the locks still live
    behind ``url``.

    ``serde`` is the serializer the URL's own saver stores graph state with, e.g. LangGraph's
    ``EncryptedSerializer`` for encryption at rest (see ``docs/persistence.md`` for what it
    does not cover); default: LangGraph's ``JsonPlusSerializer``.
    """
    parsed = parse_database_url(url)
    if serde is not None and checkpointer is not None:
        raise ConfigurationError("pass serde to your own checkpointer, not to open_store")
    if serde is not None and not (callable(getattr(serde, "dumps_typed", None))
                                  and callable(getattr(serde, "loads_typed", None))):  # fmt: skip
        raise ConfigurationError(f"serde must have dumps_typed/loads_typed: {serde!r}")
    if pool_size < 2:
        raise ConfigurationError("pool_size must be at least 2")
    async with AsyncExitStack() as stack:
        if parsed.backend == "postgres":
            # Imported here: SQLite and memory stores never load psycopg.
            try:
                from durable_ir.postgres_store import open_postgres
            except ImportError as exc:
                raise ConfigurationError(
                    f"PostgreSQL needs psycopg with a libpq ({exc}): install "
                    "'durable-ir[postgres]' (psycopg's prebuilt binary), or libpq on this host"
                ) from exc

            saver, ledger, locks = await open_postgres(
                stack, parsed.target, str(parsed), pool_size, connect_timeout, serde
            )
            store = Store(parsed, saver, ledger, locks)
        elif parsed.backend == "sqlite":
            store = await _open_sqlite(stack, parsed, serde)
        else:
            memory = MemoryLedger()
            store = Store(parsed, InMemorySaver(serde=serde), memory, LeaseLocks(memory))
        if checkpointer is not None:
            if not isinstance(checkpointer, BaseCheckpointSaver):
                raise ConfigurationError(
                    f"checkpointer must be a BaseCheckpointSaver, got {type(checkpointer).__name__}"
                )
            store = replace(store, checkpointer=checkpointer)
        yield store


def _check_sqlite_directory(path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ConfigurationError(
            f"the directory of the SQLite database does not exist: {directory}"
        )


async def _connect_sqlite(path: str, *, isolation_level: str | None) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=isolation_level)
    try:
        # executescript finishes its statements: an open PRAGMA cursor would hold a read lock.
        await conn.executescript(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS};")
        # Switching a new file to WAL needs an exclusive lock, and SQLite may report "locked"
        # at once rather than wait when other processes are opening it too: retry, bounded.
        for attempt in range(50):
            try:
                await conn.executescript("PRAGMA journal_mode = WAL;")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 49:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
    except BaseException as exc:
        await conn.close()  # else its worker thread keeps the process from exiting
        if isinstance(exc, sqlite3.DatabaseError) and "locked" not in str(exc):
            raise ConfigurationError(f"{path} is not a usable SQLite database: {exc}") from exc
        raise
    return conn


async def _open_sqlite(
    stack: AsyncExitStack, url: DatabaseURL, serde: SerializerProtocol | None
) -> Store:
    _check_sqlite_directory(url.target)
    saver_conn = await _connect_sqlite(url.target, isolation_level="")
    stack.push_async_callback(saver_conn.close)
    ledger_conn = await _connect_sqlite(url.target, isolation_level=None)
    stack.push_async_callback(ledger_conn.close)
    saver = AsyncSqliteSaver(saver_conn, serde=serde)
    ledger = SqliteLedger(ledger_conn)
    try:
        await saver.setup()
        await ledger.setup()
    except sqlite3.DatabaseError as exc:
        raise ConfigurationError(f"{url.target} is not a usable SQLite database: {exc}") from exc
    locks = LeaseLocks(ledger)
    stack.push_async_callback(locks.close)
    return Store(url, saver, ledger, locks)
