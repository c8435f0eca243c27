"""Real tests of the throwaway-database helpers in ``support.postgres``."""

from __future__ import annotations

import psycopg
import pytest

from support.postgres import (
    create_database,
    database_name,
    drop_database,
)

pytestmark = pytest.mark.postgres


def _database_exists(postgres_server: str, name: str) -> bool:
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
    assert row is not None
    return bool(row[0])


def test_create_use_and_drop_database(postgres_server: str) -> None:
    db_url = create_database(postgres_server)
    name = database_name(db_url)
    try:
        assert name.startswith("durable_ir_test_")
        assert _database_exists(postgres_server, name)
        with psycopg.connect(db_url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (name,)
            conn.execute("CREATE TABLE probe (id int PRIMARY KEY, note text)")
            conn.execute("INSERT INTO probe VALUES (1, 'hello')")
            conn.commit()
            assert conn.execute("SELECT note FROM probe").fetchone() == ("hello",)
    finally:
        drop_database(db_url)
    assert not _database_exists(postgres_server, name)
    drop_database(db_url)  # dropping again is a no-op


def test_drop_terminates_open_sessions_and_names_are_unique(postgres_server: str) -> None:
    first = create_database(postgres_server, prefix="durable_ir_prov")
    second = create_database(postgres_server, prefix="durable_ir_prov")
    try:
        assert database_name(first) != database_name(second)
        idle = psycopg.connect(first)
        in_tx = psycopg.connect(first)
        in_tx.execute("CREATE TABLE held (x int)")  # leave the transaction open
        try:
            drop_database(first)
            assert not _database_exists(postgres_server, database_name(first))
            assert _database_exists(postgres_server, database_name(second))
        finally:
            idle.close()
            in_tx.close()
    finally:
        drop_database(first)
        drop_database(second)
    assert not _database_exists(postgres_server, database_name(second))
