"""A real PostgreSQL restart (``pg_ctlcluster … restart``) in the middle of remediation: the
pool replaces the connections the restart dropped, the run goes on or recovery finishes it,
and every step is applied exactly once.

``test_db_faults.py`` models outages of one test database without touching the server; this
restarts the whole local cluster, so it runs only where that cluster is this machine's
Debian cluster (as on CI), and the suite runs its tests one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from durable_ir import Approve, open_runtime
from support.incident_parts import ALERT
from test_db_faults import before_step, finished_once, graph_with_fault

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from _soak_processes import local_cluster_for, restart_cluster

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


async def test_a_postgresql_restart_before_a_step_loses_nothing_and_repeats_nothing(
    postgres_server: str,
    postgres_url: str,
    counter_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cluster = local_cluster_for(postgres_server)
    if cluster is None:
        pytest.skip(f"{postgres_server} is not a local cluster that pg_ctlcluster can restart")
    restarts: list[str] = []

    async def restart() -> None:
        restarts.append(await asyncio.to_thread(restart_cluster, cluster))

    incident = f"inc-{uuid.uuid4().hex[:8]}"
    builder = graph_with_fault(counter_dir, "apply", restart, before_step(2))
    caplog.set_level(logging.WARNING, logger="durable_ir")
    async with open_runtime(postgres_url, connect_timeout=10) as rt:
        await rt.start(builder.build(), {"alert": ALERT}, incident_id=incident)
        # If a write meets the restart, decide() fails after recording the decision, which
        # stays durable: recovery then finishes the run.
        with contextlib.suppress(psycopg.OperationalError):
            await rt.decide(incident, Approve(by="alice"))
        assert len(restarts) == 1, "the cluster was not restarted mid-run"
        for _ in range(5):
            if (await rt.get(incident)).status == "finished":
                break
            await rt.recover(stalled=True)
        await finished_once(rt, incident, counter_dir)
    # The lock's session ended with the restart: reported, once, not raised.
    lost = [r for r in caplog.records if "was lost with its database connection" in r.message]
    assert len(lost) <= 1
