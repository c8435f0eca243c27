"""``/livez``, ``/readyz`` and ``/healthz`` over real HTTP: liveness reads nothing; readiness
answers 503 within three seconds when the database is gone (SQLite: its file unusable;
PostgreSQL: an outage of the test's own database) or lacks a table this version reads, and
200 again once it is back."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import psycopg
import pytest

from durable_ir.persistence import parse_database_url
from durable_ir.service.routes.health import READY_TIMEOUT_S
from support.outages import Outage
from support.served import Client, served
from support.service import wait_for

READY_WITHIN_S = 3.0
"""The acceptance bound for a 503 with the database gone. The service gives up on the
database after READY_TIMEOUT_S (2 s); the rest is the margin for the request itself on a
loaded machine. No other timing is asserted."""


def timed_get(api: Client, path: str) -> tuple[int, dict[str, object], float]:
    started = time.monotonic()
    response = api.get(path, who=None)
    return response.status_code, response.json(), time.monotonic() - started


def test_livez_readyz_and_healthz_need_no_credentials(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    backend = parse_database_url(database_url).backend
    with served(database_url) as api:
        assert api.get("/livez", who=None).json() == {"status": "ok"}
        ready = api.get("/readyz", who=None)
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["status"] == "ready" and body["database"] == backend
        assert body["checked_in_ms"] >= 0
        health = api.get("/healthz", who=None).json()
        assert health["status"] == "ok" and health["database"] == backend


def test_readyz_is_503_at_once_when_the_sqlite_file_is_unusable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file under the service is overwritten (a disk that returned garbage): every read
    fails, /readyz says so with 503, and /livez still answers — the process is fine."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    path = tmp_path / "incidents.db"
    with served(f"sqlite:///{path}") as api:
        assert api.get("/readyz", who=None).status_code == 200
        for suffix in ("", "-wal", "-shm"):
            target = Path(f"{path}{suffix}")
            with target.open("r+b") as file:
                file.write(os.urandom(target.stat().st_size))
        status, body, took = timed_get(api, "/readyz")
        assert status == 503, body
        assert body["error"] == {
            "code": "unavailable",
            "message": "the database is unreachable: DatabaseError",
        }
        assert took < READY_WITHIN_S, took
        assert api.get("/livez", who=None).status_code == 200


def drop_table(database_url: str, table: str) -> None:
    parsed = parse_database_url(database_url)
    if parsed.backend == "sqlite":
        with sqlite3.connect(parsed.target) as conn:
            conn.execute(f"DROP TABLE {table}")
    else:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE {table}")


def test_readyz_is_503_when_a_table_this_version_reads_is_missing(
    durable_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migrations not current — here the outbox table is gone: 503 naming the problem (and
    what fixes it), where /healthz, which reads the incident index only, still says ok."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with served(durable_url) as api:
        assert api.get("/readyz", who=None).status_code == 200
        drop_table(durable_url, "durable_ir_notifications")
        status, body, _ = timed_get(api, "/readyz")
        assert status == 503, body
        error = body["error"]
        assert isinstance(error, dict) and error["code"] == "unavailable"
        assert error["message"].startswith("the database lacks tables or columns"), error
        assert "migrates it" in error["message"]
        assert api.get("/healthz", who=None).status_code == 200


@pytest.mark.postgres
def test_readyz_is_503_within_3s_during_an_outage_and_200_after(
    postgres_server: str, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test's database refuses connections and its sessions are ended: the pool would
    wait 30 s for a connection; /readyz gives up after two and answers 503 saying so,
    /livez keeps answering 200, and /readyz is 200 again once the database is back."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    outage = Outage(postgres_server, postgres_url)
    with served(postgres_url) as api:
        api.open_incident()
        assert api.get("/readyz", who=None).status_code == 200
        try:
            outage.begin()
            assert outage.ended_sessions >= 1
            status, body, took = timed_get(api, "/readyz")
            assert status == 503, body
            assert body["error"] == {
                "code": "unavailable",
                "message": f"the database did not answer within {READY_TIMEOUT_S:g}s",
            }
            assert took < READY_WITHIN_S, took
            again = timed_get(api, "/readyz")
            assert again[0] == 503 and again[2] < READY_WITHIN_S, again
            assert api.get("/livez", who=None).status_code == 200
        finally:
            outage.end()
        wait_for(
            lambda: api.get("/readyz", who=None).status_code == 200,
            timeout=180,  # the pool's reconnection backs off; a bound, not a claim
            what="/readyz to be 200 again",
        )
