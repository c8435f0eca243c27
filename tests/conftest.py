"""Shared fixtures: one database URL per backend, real servers only.

PostgreSQL tests get a fresh database each (created and dropped here) on the server that
``support.postgres`` resolves: ``$DURABLE_IR_TEST_POSTGRES_URL``, else 127.0.0.1:5432, else an
embedded pgserver. With ``DURABLE_IR_REQUIRE_POSTGRES`` set (as ``.ci/run`` does), a missing
server fails the tests instead of skipping them. Tests marked ``browser`` drive
/usr/bin/chromium; with ``DURABLE_IR_REQUIRE_BROWSER`` set, its absence fails them too.

``pgbouncer`` puts a real PgBouncer (``support.pgbouncer``) in front of the test's database,
once in transaction and once in session pooling mode; ``pgbouncer_url`` is the database's URL
through it. Without /usr/sbin/pgbouncer those tests skip, or fail under
``DURABLE_IR_REQUIRE_POSTGRES``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from support.pgbouncer import POOL_MODES, PgBouncer, require_pgbouncer, running_pgbouncer
from support.postgres import (
    create_database,
    database_name,
    drop_database,
    resolution_errors,
    resolve_server_url,
)

ALL_BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
DURABLE_BACKENDS = ALL_BACKENDS[1:]


# Markers .ci/run must see in the junit report: a skipped test carrying one fails CI.
CI_REQUIRED_MARKERS = ("postgres", "browser")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Lets .ci/run see, from the junit report, which skipped tests needed PostgreSQL or a
    # browser (DURABLE_IR_REQUIRE_POSTGRES / DURABLE_IR_REQUIRE_BROWSER make them fail).
    for item in items:
        for marker in CI_REQUIRED_MARKERS:
            if item.get_closest_marker(marker):
                item.user_properties.append(("markers", marker))


# Logs of the test's external servers, added to the report of a test that fails.
FAILURE_LOGS = pytest.StashKey[list[tuple[str, Callable[[], str]]]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for name, read in item.stash.get(FAILURE_LOGS, []):
            report.sections.append((name, read()))
    return report


@pytest.fixture(scope="session")
def postgres_server() -> str:
    url = resolve_server_url()
    if url is None:
        reason = "no PostgreSQL server available: " + "; ".join(resolution_errors())
        if os.environ.get("DURABLE_IR_REQUIRE_POSTGRES"):
            pytest.fail(reason)
        pytest.skip(reason)
    return url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database, dropped after the test."""
    url = create_database(postgres_server)
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(params=[pytest.param(mode, id=mode) for mode in POOL_MODES])
def pgbouncer(
    request: pytest.FixtureRequest, postgres_url: str, tmp_path: Path
) -> Iterator[PgBouncer]:
    """A real PgBouncer in front of the test's database, in ``transaction`` or ``session``
    pooling mode (parametrize ``pgbouncer`` indirectly to pick one). Its log is added to the
    report of a test that fails."""
    require_pgbouncer()
    with running_pgbouncer(
        tmp_path / "pgbouncer", postgres_url, pool_mode=request.param
    ) as bouncer:
        request.node.stash.setdefault(FAILURE_LOGS, []).append(
            (f"pgbouncer log ({bouncer.pool_mode} mode)", bouncer.output)
        )
        (mode,) = [row["value"] for row in bouncer.show("CONFIG") if row["key"] == "pool_mode"]
        assert mode == request.param, mode
        yield bouncer


@pytest.fixture
def pgbouncer_url(pgbouncer: PgBouncer, postgres_url: str) -> str:
    """The test database's URL through ``pgbouncer``."""
    return pgbouncer.url(database_name(postgres_url))


def _database_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'incidents.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(params=ALL_BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL on each backend: memory, SQLite, PostgreSQL."""
    return _database_url(request, request.param, tmp_path)


@pytest.fixture(params=DURABLE_BACKENDS)
def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL that several processes can share: SQLite, PostgreSQL."""
    return _database_url(request, request.param, tmp_path)


@pytest.fixture
def counter_dir(tmp_path: Path) -> Path:
    """Where the test graph's nodes record each time they run."""
    path = tmp_path / "counters"
    path.mkdir()
    return path
