"""Schema migrations: a database made by the previous release upgrades in place, and its
paused incidents resume and decide correctly; the version table says where a database is.

"The previous release" is frozen in ``tests/fixtures/previous_release/`` (its ledger DDL,
from before the version table existed). The upgrade test pauses incidents with today's code,
turns the database back into exactly what the previous release leaves — checked table by
table, column by column, index by index against a database made from the frozen DDL — and
then opens it with today's code, which must migrate it and carry on.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from durable_ir import Approve, open_runtime, open_store
from durable_ir.ledger.postgres import POSTGRES_MIGRATIONS
from durable_ir.ledger.sqlite import SQLITE_MIGRATIONS
from support.incident_parts import ALERT, build_incident_graph, lines
from support.postgres import create_database, drop_database

FIXTURES = Path(__file__).parent / "fixtures" / "previous_release"
STEPS = 2
LIFECYCLE_TABLES = ("durable_ir_firings", "durable_ir_alert_events")
"""Tables migration 3 (the alert lifecycle) added."""
ADDED_SINCE = (
    "durable_ir_owners",
    "durable_ir_step_claims",
    "durable_ir_migrations",
    *LIFECYCLE_TABLES,
)
"""Tables the previous release did not have."""


# --- reading a schema back -------------------------------------------------------------


def _postgres_schema(url: str) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default"
            " FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name LIKE 'durable_ir_%'"
            " ORDER BY table_name, column_name"
        ).fetchall()
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes"
            " WHERE schemaname = 'public' AND tablename LIKE 'durable_ir_%' ORDER BY indexname"
        ).fetchall()
    return {"columns": columns, "indexes": indexes}


def _sqlite_schema(path: str) -> dict[str, Any]:
    with sqlite3.connect(path) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name LIKE 'durable_ir_%' ORDER BY name"
            )
        ]
        columns = {
            table: sorted(conn.execute(f"PRAGMA table_info({table})").fetchall())
            for table in tables
        }
        indexes = conn.execute(
            "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'"
            " AND tbl_name LIKE 'durable_ir_%' ORDER BY name"
        ).fetchall()
    return {"columns": columns, "indexes": indexes}


def _without(schema: dict[str, Any], tables: tuple[str, ...]) -> dict[str, Any]:
    """``schema`` minus what belongs to ``tables`` (either reader's shape)."""
    columns = schema["columns"]
    if isinstance(columns, dict):
        kept_columns: Any = {t: c for t, c in columns.items() if t not in tables}
        kept_indexes = [i for i in schema["indexes"] if i[1] not in tables]
    else:
        kept_columns = [c for c in columns if c[0] not in tables]
        kept_indexes = [i for i in schema["indexes"] if not any(f".{t} " in i[1] for t in tables)]
    return {"columns": kept_columns, "indexes": kept_indexes}


# --- databases --------------------------------------------------------------------------


@pytest.fixture
def scratch_postgres(postgres_server: str) -> Iterator[str]:
    """A second, empty database on the test server."""
    url = create_database(postgres_server)
    try:
        yield url
    finally:
        drop_database(url)


def _frozen_schema(
    backend: str, database_url: str, tmp_path: Path, release: str = ""
) -> dict[str, Any]:
    """The schema a frozen DDL makes, read back: the previous release's (``release`` empty)
    or schema version 2's (``release="v2_"``)."""
    ddl = (FIXTURES / f"{release}{backend}.sql").read_text()
    if backend == "postgres":
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(ddl)
        return _postgres_schema(database_url)
    path = str(tmp_path / f"{release or 'previous'}.db")
    with sqlite3.connect(path) as conn:
        conn.executescript(ddl)
    return _sqlite_schema(path)


def _roll_back_to_previous_release(backend: str, url: str) -> None:
    """Drop what this release added, leaving what the previous release would have left."""
    drops = [f"DROP TABLE {table}" for table in ADDED_SINCE]
    if backend == "postgres":
        with psycopg.connect(url, autocommit=True) as conn:
            for drop in [*drops, "DROP TABLE IF EXISTS durable_ir_setup_lease"]:
                conn.execute(drop)
    else:
        with sqlite3.connect(url) as conn:
            for drop in drops:
                conn.execute(drop)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_previous_release_database_with_paused_incidents_upgrades_in_place(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, counter_dir: Path
) -> None:
    if backend == "postgres":
        url = str(request.getfixturevalue("postgres_url"))
        scratch = str(request.getfixturevalue("scratch_postgres"))
        target = url
    else:
        url = f"sqlite:///{tmp_path}/incidents.db"
        scratch = ""
        target = f"{tmp_path}/incidents.db"
    migrations = POSTGRES_MIGRATIONS if backend == "postgres" else SQLITE_MIGRATIONS
    incidents = [f"old-{n}-{uuid.uuid4().hex[:6]}" for n in range(2)]

    # Incidents paused the way the previous release pauses them (the rows are the same).
    async with open_runtime(url) as rt:
        graph = build_incident_graph(counter_dir, step_count=STEPS).build()
        for incident in incidents:
            paused = await rt.start(graph, {"alert": ALERT}, incident_id=incident)
            assert paused.status == "awaiting_approval"
        assert await rt.store.ledger.schema_version() == len(migrations)
    _roll_back_to_previous_release(backend, target)
    reader = _postgres_schema if backend == "postgres" else _sqlite_schema
    previous = _frozen_schema(backend, scratch, tmp_path)
    assert reader(target) == previous, "the rolled-back database is not the previous release's"

    # Today's code opens it: it migrates, and the paused incidents decide and finish.
    async with open_runtime(url) as rt:
        assert await rt.store.ledger.schema_version() == len(migrations)
        # Only additions (and, on PostgreSQL, the table that serialises set-up).
        added = (*ADDED_SINCE, "durable_ir_setup_lease")
        assert _without(reader(target), added) == previous
        rt.register(build_incident_graph(counter_dir, step_count=STEPS).build())
        for incident in incidents:
            result = await rt.decide(incident, Approve(by="alice"))
            assert result.applied
            done = await rt.get(incident)
            assert done.status == "finished" and done.values["outcome"]["status"] == "resolved"
            assert lines(counter_dir / f"{incident}.log") == [
                f"apply {n} scale checkout-{n}" for n in range(1, STEPS + 1)
            ]
            claims = await rt.store.ledger.step_claims(incident)
            assert [(c.key, c.ok) for c in claims] == [
                (f"{incident}/step-{n}/apply", True) for n in range(1, STEPS + 1)
            ]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_version_2_database_with_incidents_upgrades_to_the_alert_lifecycle(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, counter_dir: Path
) -> None:
    """Migration 3 only adds: a v2 database with an open incident upgrades in place, and
    that incident goes on absorbing its alerts (now remembered by firing)."""
    if backend == "postgres":
        url = str(request.getfixturevalue("postgres_url"))
        scratch = str(request.getfixturevalue("scratch_postgres"))
        target = url
    else:
        url = f"sqlite:///{tmp_path}/incidents.db"
        scratch = ""
        target = f"{tmp_path}/incidents.db"
    alert = {**ALERT, "fingerprint": f"fp-{uuid.uuid4().hex[:8]}"}
    async with open_runtime(url) as rt:
        graph = build_incident_graph(counter_dir, step_count=STEPS).build()
        first = await rt.ingest(graph, alert, run=False)
        assert first.created and first.incident is not None
    # Back to what a v2 release leaves: no lifecycle tables, no version 3.
    drops = [f"DROP TABLE {table}" for table in LIFECYCLE_TABLES]
    drops.append("DELETE FROM durable_ir_migrations WHERE version = 3")
    if backend == "postgres":
        with psycopg.connect(target, autocommit=True) as conn:
            for drop in drops:
                conn.execute(drop)
    else:
        with sqlite3.connect(target) as conn:
            for drop in drops:
                conn.execute(drop)
    reader = _postgres_schema if backend == "postgres" else _sqlite_schema
    lease = ("durable_ir_setup_lease",)
    v2 = _without(_frozen_schema(backend, scratch, tmp_path, "v2_"), lease)
    assert _without(reader(target), lease) == v2, "the rolled-back database is not v2's"

    async with open_runtime(url) as rt:
        assert await rt.store.ledger.schema_version() == 3
        assert _without(reader(target), (*LIFECYCLE_TABLES, *lease)) == v2
        graph = build_incident_graph(counter_dir, step_count=STEPS).build()
        again = await rt.ingest(graph, alert, run=False)
        assert not again.created and again.incident is not None
        assert again.incident.incident_id == first.incident.incident_id
        assert again.incident.alerts_received == 2
        events = await rt.store.ledger.alert_events(first.incident.incident_id)
        assert [e.kind for e in events] == ["fired"]  # the v2 firing was never recorded


async def test_setup_records_each_migration_once_and_is_idempotent(durable_url: str) -> None:
    for _ in range(2):
        async with open_store(durable_url) as store:
            assert await store.ledger.schema_version() == 3
            await store.ledger.setup()  # again: nothing to do
    async with open_store(durable_url) as store:
        if store.backend == "postgres":
            with psycopg.connect(store.url.target) as conn:
                rows = conn.execute(
                    "SELECT version, name FROM durable_ir_migrations ORDER BY version"
                ).fetchall()
        else:
            with sqlite3.connect(store.url.target) as conn:
                rows = conn.execute(
                    "SELECT version, name FROM durable_ir_migrations ORDER BY version"
                ).fetchall()
    assert [tuple(r) for r in rows] == [(1, "ledger"), (2, "ownership"), (3, "alert lifecycle")]


async def test_a_database_newer_than_this_release_is_used_with_one_warning(
    durable_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_store(durable_url) as store:
        target = store.url.target
    insert = "INSERT INTO durable_ir_migrations (version, name, applied_at) VALUES (9, 'later', 0)"
    if durable_url.startswith("postgresql"):
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute(insert.replace(", 0)", ", now())"))
    else:
        with sqlite3.connect(target) as conn:
            conn.execute(insert)
    with caplog.at_level(logging.WARNING, logger="durable_ir.ledger.migrations"):
        async with open_store(durable_url) as store:
            assert await store.ledger.schema_version() == 9
    warnings = [r.message for r in caplog.records if "newer than this release" in r.message]
    assert len(warnings) == 1, warnings
