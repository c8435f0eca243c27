"""Real tests of the throwaway-database helpers in ``support.postgres``."""

from __future__ import annotations

import os

import psycopg
import pytest

from support.postgres import (
    create_database,
    database_name,
    drop_database,
    resolution_errors,
    resolve_server_url,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def server_url() -> str:
    """The test PostgreSQL server; skip (or fail if required) when there is none."""
    url = resolve_server_url()
    if url is None:
        reason = "no PostgreSQL server available: " + "; ".join(resolution_errors())
        if os.environ.get("DURABLE_IR_REQUIRE_POSTGRES"):
            pytest.fail(reason)
        pytest.skip(reason)
    return url


def _database_exists(server_url: str, name: str) -> bool:
    with psycopg.connect(server_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
    assert row is not None
    return bool(row[0])


def test_create_use_and_drop_database(server_url: str) -> None:
    db_url = create_database(server_url)
    name = database_name(db_url)
    try:
        assert name.startswith("durable_ir_test_")
        assert _database_exists(server_url, name)
        with psycopg.connect(db_url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (name,)
            conn.execute("CREATE TABLE probe (id int PRIMARY KEY, note text)")
            conn.execute("INSERT INTO probe VALUES (1, 'hello')")
            conn.commit()
            assert conn.execute("SELECT note FROM probe").fetchone() == ("hello",)
    finally:
        drop_database(db_url)
    assert not _database_exists(server_url, name)
    drop_database(db_url)  # dropping again is a no-op


def test_drop_terminates_open_sessions_and_names_are_unique(server_url: str) -> None:
    first = create_database(server_url, prefix="durable_ir_prov")
    second = create_database(server_url, prefix="durable_ir_prov")
    try:
        assert database_name(first) != database_name(second)
        idle = psycopg.connect(first)
        in_tx = psycopg.connect(first)
        in_tx.execute("CREATE TABLE held (x int)")  # leave the transaction open
        try:
            drop_database(first)
            assert not _database_exists(server_url, database_name(first))
            assert _database_exists(server_url, database_name(second))
        finally:
            idle.close()
            in_tx.close()
    finally:
        drop_database(first)
        drop_database(second)
    assert not _database_exists(server_url, database_name(second))
