"""``parse_database_url`` and ``open_store`` on real databases."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import sqlite3
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict

import psycopg
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph

from _store_child import Child
from durable_ir import ConfigurationError, InlineSerdePostgresSaver, open_store, parse_database_url
from durable_ir.ledger import MemoryLedger, PostgresLedger, SqliteLedger
from durable_ir.locks import LeaseLocks
from durable_ir.persistence import DATABASE_URL_ENV, DEFAULT_DATABASE_URL, DatabaseURL
from durable_ir.records import ApprovalStatus, NewApproval
from support.postgres import database_name, with_database

SECRET = "s3cr3t-Pa55"
T0 = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
LEDGER_INDEXES = {
    "durable_ir_approvals_by_incident",
    "durable_ir_approvals_pending_by_deadline",
    "durable_ir_approvals_unapplied",
}
SQLITE_TABLES = {"checkpoints", "writes", "durable_ir_approvals"}
POSTGRES_TABLES = {
    "checkpoints",
    "checkpoint_blobs",
    "checkpoint_writes",
    "checkpoint_migrations",
    "durable_ir_approvals",
}


# --- parse_database_url -----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:5432/incidents",
        "postgres://postgres@db.internal/incidents",
        "postgresql://user@host:6543/db?sslmode=require&application_name=ir",
        "POSTGRESQL://user@host/db",
        "postgresql:///incidents",
    ],
)
def test_postgres_urls(url: str) -> None:
    parsed = parse_database_url(url)
    assert parsed == DatabaseURL("postgres", url)
    assert parsed.backend == "postgres"
    assert str(parsed) == url


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("sqlite:///incidents.db", "incidents.db"),
        ("sqlite:///data/ir/incidents.db", "data/ir/incidents.db"),
        ("sqlite:////var/lib/ir/incidents.db", "/var/lib/ir/incidents.db"),
        ("sqlite:////tmp/x.db", "/tmp/x.db"),
        ("SQLITE:///incidents.db", "incidents.db"),
        ("  sqlite:///padded.db \n", "padded.db"),
    ],
)
def test_sqlite_urls(url: str, target: str) -> None:
    parsed = parse_database_url(url)
    assert parsed == DatabaseURL("sqlite", target)
    assert str(parsed) == f"sqlite:///{target}"
    assert parse_database_url(str(parsed)) == parsed  # str() is a URL that parses back


def test_sqlite_relative_and_absolute_paths_differ() -> None:
    relative = parse_database_url("sqlite:///tmp/x.db")
    absolute = parse_database_url("sqlite:////tmp/x.db")
    assert relative.target == "tmp/x.db" and not os.path.isabs(relative.target)
    assert absolute.target == "/tmp/x.db" and os.path.isabs(absolute.target)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite://host/x.db", "sqlite://x.db"])
def test_sqlite_urls_without_a_path_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="a SQLite URL needs a file") as caught:
        parse_database_url(url)
    assert repr(url) in str(caught.value)


@pytest.mark.parametrize(
    "url", ["sqlite:///:memory:", "sqlite:///file:x.db?mode=memory&cache=shared", "sqlite:///file:"]
)
def test_in_memory_sqlite_is_refused_pointing_at_memory_url(url: str) -> None:
    with pytest.raises(ConfigurationError, match="use memory:// instead"):
        parse_database_url(url)


@pytest.mark.parametrize("url", ["memory://", "memory:///", " memory:// "])
def test_memory_urls(url: str) -> None:
    parsed = parse_database_url(url)
    assert parsed == DatabaseURL("memory", "")
    assert str(parsed) == "memory://"


@pytest.mark.parametrize("url", ["memory://x", "memory://localhost/db", "memory:///x"])
def test_memory_urls_take_nothing_after_the_scheme(url: str) -> None:
    with pytest.raises(ConfigurationError, match="a memory URL takes nothing after the scheme"):
        parse_database_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379/0",
        "mysql://root@localhost/ir",
        "http://example.com/db",
        "incidents.db",
        "sqlite:incidents.db",
        "postgresql:/x",
        "://x",
    ],
)
def test_unknown_schemes_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_database_url(url)
    message = str(caught.value)
    assert message.startswith(f"unsupported database URL {url!r}")
    assert "postgresql://" in message and "sqlite:///path" in message and "memory://" in message


@pytest.mark.parametrize("url", ["", "   ", "\n\t"])
def test_empty_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="the database URL is empty"):
        parse_database_url(url)


def test_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, "memory://")
    assert parse_database_url() == DatabaseURL("memory", "")
    monkeypatch.setenv(DATABASE_URL_ENV, "postgresql://ir@db/ir")
    assert parse_database_url() == DatabaseURL("postgres", "postgresql://ir@db/ir")
    monkeypatch.setenv(DATABASE_URL_ENV, "sqlite:////srv/ir.db")
    assert parse_database_url() == DatabaseURL("sqlite", "/srv/ir.db")
    # An explicit URL wins over the environment.
    assert parse_database_url("memory://").backend == "memory"


def test_bad_url_in_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, "redis://cache")
    with pytest.raises(ConfigurationError, match="unsupported database URL 'redis://cache'"):
        parse_database_url()


@pytest.mark.parametrize("value", [None, ""])
def test_built_in_default(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    else:
        monkeypatch.setenv(DATABASE_URL_ENV, value)
    assert DEFAULT_DATABASE_URL == "sqlite:///durable_ir.db"
    assert parse_database_url() == DatabaseURL("sqlite", "durable_ir.db")
    assert parse_database_url(None) == DatabaseURL("sqlite", "durable_ir.db")


# --- passwords never shown --------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://ir:{SECRET}@db.internal:5432/ir",
        f"postgres://ir:{SECRET}@db.internal/ir?sslmode=require",
    ],
)
def test_str_redacts_the_password(url: str) -> None:
    parsed = parse_database_url(url)
    assert parsed.target == url  # the real password is kept for connecting
    shown = str(parsed)
    assert SECRET not in shown
    assert ":***@" in shown
    assert shown == url.replace(SECRET, "***")
    assert SECRET not in f"{parsed}"


def test_str_redacts_a_percent_encoded_password() -> None:
    url = "postgresql://ir:p%40ss%2Fw0rd@db/ir"
    shown = str(parse_database_url(url))
    assert "p%40ss" not in shown and "w0rd" not in shown
    assert shown == "postgresql://ir:***@db/ir"


@pytest.mark.parametrize(
    "url",
    [f"mysql://root:{SECRET}@db/ir", f"redis://:{SECRET}@cache:6379/0", f"mongodb://u:{SECRET}@m"],
)
def test_error_messages_redact_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_database_url(url)
    assert SECRET not in str(caught.value)
    assert ":***@" in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        f"host=db user=ir password={SECRET} dbname=ir",
        f"host=db PASSWORD = {SECRET} dbname=ir",
        f"host=db password='{SECRET} with spaces' dbname=ir",
        f"dbname=ir password={SECRET}",
    ],
)
def test_libpq_keyword_strings_have_their_password_redacted_in_errors(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_database_url(url)
    message = str(caught.value)
    assert SECRET not in message
    assert "with spaces" not in message
    assert "***" in message
    assert "dbname=ir" in message  # the rest is still shown, to help find the mistake


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            f"postgresql://ir@db/ir?password={SECRET}",
            "postgresql://ir@db/ir?password=***",
        ),
        (
            f"postgresql://ir@db/ir?sslmode=require&Password={SECRET}&application_name=x",
            "postgresql://ir@db/ir?sslmode=require&Password=***&application_name=x",
        ),
        (
            f"postgresql://ir:{SECRET}@db/ir?password={SECRET}",
            "postgresql://ir:***@db/ir?password=***",
        ),
        (f"postgresql://:{SECRET}@db/ir", "postgresql://:***@db/ir"),
        (f"postgresql://ir:pa:{SECRET}@db/ir", "postgresql://ir:***@db/ir"),
        ("postgresql://ir@db:5432/ir", "postgresql://ir@db:5432/ir"),
        ("postgresql://db:5432/ir?sslmode=require", "postgresql://db:5432/ir?sslmode=require"),
    ],
)
def test_str_redacts_every_spelling_of_a_password(url: str, shown: str) -> None:
    parsed = parse_database_url(url)
    assert parsed.target == url
    assert str(parsed) == shown
    assert SECRET not in str(parsed)


# --- open_store -------------------------------------------------------------------------

EXPECTED_TYPES: dict[str, tuple[type[Any], type[Any], type[Any]]] = {
    "memory": (InMemorySaver, MemoryLedger, LeaseLocks),
    "sqlite": (AsyncSqliteSaver, SqliteLedger, LeaseLocks),
    "postgres": (InlineSerdePostgresSaver, PostgresLedger, LeaseLocks),
}


def _new(approval_id: str, incident_id: str = "inc-1") -> NewApproval:
    return NewApproval(
        approval_id=approval_id,
        incident_id=incident_id,
        graph="g",
        node="approval",
        request={"plan": {"steps": []}},
        severity="P1",
        requested_at=T0,
        deadline_at=T0 + timedelta(hours=2),
    )


def _sessions(url: str) -> int:
    """Other sessions connected to the database of ``url``."""
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database_name(url),)
        ).fetchone()
    assert row is not None
    return int(row[0])


def _wait_for_no_sessions(url: str, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while _sessions(url) > 0:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


async def test_open_store_gives_the_backend_types_and_closes_cleanly(database_url: str) -> None:
    backend = parse_database_url(database_url).backend
    saver_type, ledger_type, locks_type = EXPECTED_TYPES[backend]
    async with open_store(database_url) as store:
        assert store.backend == backend
        assert store.url == parse_database_url(database_url)
        assert type(store.checkpointer) is saver_type
        assert type(store.ledger) is ledger_type
        assert type(store.locks) is locks_type
        # Usable: the ledger answers and a lock can be taken.
        assert await store.ledger.register(_new("a-1")) == await store.ledger.get("a-1")
        async with store.locks.hold("inc-1", wait=0):
            pass
        if backend == "postgres":
            assert _sessions(database_url) >= 1
        if backend == "sqlite":
            assert Path(store.url.target + "-wal").exists()  # WAL mode is on while open
    # Closed: nothing is left connected, and the store's connections refuse work.
    if backend == "postgres":
        assert _wait_for_no_sessions(database_url)
    if backend == "sqlite":
        # The last connection to close checkpoints and removes the WAL file.
        assert not Path(store.url.target + "-wal").exists()
        assert not Path(store.url.target + ".locks").exists()  # locks are rows now
    if backend != "memory":
        with pytest.raises(Exception) as caught:
            await store.ledger.get("a-1")
        assert not isinstance(caught.value, AssertionError)


async def test_memory_stores_do_not_share_data() -> None:
    async with open_store("memory://") as first, open_store("memory://") as second:
        await first.ledger.register(_new("a-1"))
        assert await first.ledger.get("a-1") is not None
        assert await second.ledger.get("a-1") is None
        assert await first.locks.try_acquire("inc-1")
        assert await second.locks.try_acquire("inc-1")
        await first.locks.release("inc-1")
        await second.locks.release("inc-1")


async def test_pool_size_below_two_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="pool_size must be at least 2"):
        async with open_store("memory://", pool_size=1):
            pass


class _Counter(TypedDict):
    n: int


def _graph() -> StateGraph[Any, Any, Any, Any]:
    builder: StateGraph[Any, Any, Any, Any] = StateGraph(_Counter)
    builder.add_node("bump", lambda state: {"n": state["n"] + 1})
    builder.add_edge(START, "bump")
    builder.add_edge("bump", END)
    return builder


def _schema(url: str) -> tuple[Counter[str], Counter[str], list[int]]:
    """Tables and indexes (name → how many) and the checkpointer's migration versions."""
    parsed = parse_database_url(url)
    if parsed.backend == "sqlite":
        with sqlite3.connect(parsed.target) as conn:
            rows = conn.execute("SELECT type, name FROM sqlite_master").fetchall()
        tables = Counter(name for kind, name in rows if kind == "table")
        indexes = Counter(name for kind, name in rows if kind == "index")
        return tables, indexes, []
    with psycopg.connect(url, autocommit=True) as conn:
        tables = Counter(
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        )
        indexes = Counter(
            r[0]
            for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
            ).fetchall()
        )
        versions = [r[0] for r in conn.execute("SELECT v FROM checkpoint_migrations ORDER BY v")]
    return tables, indexes, versions


def _activity(url: str) -> list[tuple[Any, ...]]:
    """What the database's sessions are doing (to explain a stall)."""
    if parse_database_url(url).backend != "postgres":
        return []
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        return conn.execute(
            "SELECT pid, state, wait_event_type, wait_event, left(query, 200)"
            " FROM pg_stat_activity WHERE datname = %s",
            (database_name(url),),
        ).fetchall()


def _assert_schema_once(url: str) -> None:
    tables, indexes, versions = _schema(url)
    expected = POSTGRES_TABLES if parse_database_url(url).backend == "postgres" else SQLITE_TABLES
    assert expected <= set(tables), tables
    assert all(count == 1 for count in tables.values()), tables
    assert set(indexes) >= LEDGER_INDEXES, indexes
    assert all(count == 1 for count in indexes.values()), indexes
    if parse_database_url(url).backend == "postgres":
        assert versions == list(range(len(AsyncPostgresSaver.MIGRATIONS)))


async def test_reopening_keeps_schema_and_data(durable_url: str) -> None:
    config: Any = {"configurable": {"thread_id": "thread-1"}}
    async with open_store(durable_url) as store:
        await store.ledger.register(_new("a-1"))
        graph = _graph().compile(checkpointer=store.checkpointer)
        assert await graph.ainvoke({"n": 1}, config) == {"n": 2}
    first_schema = _schema(durable_url)
    _assert_schema_once(durable_url)

    for _ in range(2):  # opening again runs setup again; nothing changes, nothing is lost
        async with open_store(durable_url) as store:
            row = await store.ledger.get("a-1")
            assert row is not None and row.status is ApprovalStatus.PENDING
            assert row.requested_at == T0
            graph = _graph().compile(checkpointer=store.checkpointer)
            assert (await graph.aget_state(config)).values == {"n": 2}
        assert _schema(durable_url) == first_schema


async def test_two_stores_open_at_once_on_one_database(durable_url: str) -> None:
    async with open_store(durable_url) as first, open_store(durable_url) as second:
        await first.ledger.register(_new("a-1"))
        row = await second.ledger.get("a-1")
        assert row is not None and row.approval_id == "a-1"
    _assert_schema_once(durable_url)


async def test_sqlite_directory_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    url = f"sqlite:///{missing / 'incidents.db'}"
    with pytest.raises(ConfigurationError) as caught:
        async with open_store(url):
            pass
    assert "the directory of the SQLite database does not exist" in str(caught.value)
    assert str(missing) in str(caught.value)
    assert not (tmp_path / "no").exists()  # nothing was created on the way


async def test_sqlite_relative_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    async with open_store("sqlite:///data/rel.db") as store:
        await store.ledger.register(_new("a-1"))
    assert (tmp_path / "data" / "rel.db").is_file()
    with sqlite3.connect(tmp_path / "data" / "rel.db") as conn:
        assert conn.execute("SELECT approval_id FROM durable_ir_approvals").fetchall() == [("a-1",)]


@pytest.mark.postgres
async def test_missing_postgres_database_fails_fast_with_the_servers_reason(
    postgres_server: str,
) -> None:
    url = with_database(postgres_server, "durable_ir_no_such_database")
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as caught:
        async with open_store(url):
            pass
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert message.startswith("cannot connect to PostgreSQL at")
    assert 'database "durable_ir_no_such_database" does not exist' in message


async def test_unreachable_postgres_fails_fast_and_hides_the_password() -> None:
    with socket_nobody_listens_on() as port:
        url = f"postgresql://ir:{SECRET}@127.0.0.1:{port}/ir"
        started = time.monotonic()
        with pytest.raises(ConfigurationError) as caught:
            async with open_store(url):
                pass
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert f"cannot connect to PostgreSQL at postgresql://ir:***@127.0.0.1:{port}/ir" in message
    assert "refused" in message.lower()
    assert SECRET not in message


@contextmanager
def socket_nobody_listens_on() -> Iterator[int]:
    """A local TCP port that is bound (so nobody else takes it) but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


# --- concurrent schema creation ---------------------------------------------------------


@pytest.mark.slow
def test_processes_creating_the_schema_at_once(durable_url: str) -> None:
    """Four OS processes open one fresh database at the same wall-clock moment."""
    start_at = time.time() + 2.5  # enough for every child to import durable_ir first
    children = [Child("open", durable_url, repr(start_at)) for _ in range(4)]
    try:
        try:
            results = [child.read(timeout=45) for child in children]
        except AssertionError as stalled:
            raise AssertionError(f"{stalled}\nserver sessions: {_activity(durable_url)}") from None
    finally:
        for child in children:
            child.close()
    backend = parse_database_url(durable_url).backend
    assert results == [{"opened": backend}] * 4, results
    assert all(child.proc.returncode == 0 for child in children)
    _assert_schema_once(durable_url)


def _aiosqlite_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "_connection_worker_thread" in t.name]


async def test_connections_opening_a_fresh_sqlite_file_at_once(tmp_path: Path) -> None:
    """Eight stores open each fresh file at once, sixty times: every open succeeds.

    Switching a new file to WAL can fail with 'database is locked' at once, without waiting
    on the busy handler, while other connections open it too (found by the test above, where
    it failed about one run in ten; this one failed nearly always)."""
    threads_before = len(_aiosqlite_threads())

    async def open_and_count(url: str) -> str:
        async with open_store(url) as store:
            return store.backend

    failures = []
    for round_ in range(60):
        url = f"sqlite:///{tmp_path / f'fresh-{round_}.db'}"
        results = await asyncio.gather(
            *(open_and_count(url) for _ in range(8)), return_exceptions=True
        )
        failures += [repr(r) for r in results if isinstance(r, BaseException)]
    gc.collect()
    assert failures == []
    assert len(_aiosqlite_threads()) == threads_before


async def test_a_failed_sqlite_open_closes_its_connections(tmp_path: Path) -> None:
    """An open that fails part-way must close the connections it made: an unclosed aiosqlite
    connection keeps a non-daemon thread that stops the interpreter from exiting."""
    path = tmp_path / "not-a-database.db"
    path.write_bytes(b"this is not a SQLite database " * 200)
    threads_before = len(_aiosqlite_threads())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            async with open_store(f"sqlite:///{path}"):
                pytest.fail("a file that is not a database was opened")
        except Exception as exc:
            message = str(exc)
        # Not even a traceback refers to the connections now: an unclosed one is collected
        # here, and aiosqlite warns that it was never closed.
        gc.collect()
        await asyncio.sleep(0.05)
    assert "not a database" in message
    assert len(_aiosqlite_threads()) == threads_before
    unclosed = [str(w.message) for w in caught if "deleted before being closed" in str(w.message)]
    assert unclosed == []


def test_repr_never_shows_the_password() -> None:
    from durable_ir.persistence import parse_database_url

    parsed = parse_database_url("postgresql://ir:s3cret@db/ir?password=s3cret")
    assert "s3cret" not in repr(parsed)
    assert parse_database_url("MEMORY://").backend == "memory"


async def test_a_file_that_is_not_a_database_is_a_configuration_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigurationError, match="not a usable SQLite database"):
        async with open_store(f"sqlite:///{junk}"):
            pass
