"""SQLite-only use needs no PostgreSQL driver: with psycopg, psycopg_pool and LangGraph's
PostgreSQL saver made unimportable, ``import durable_ir`` works, an incident pauses and is
approved on SQLite, and a ``postgresql://`` URL is refused with an error that says what to
install."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import asyncio, importlib.abc, sys

    class NoPostgres(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in ("psycopg", "psycopg_pool", "psycopg_binary") or (
                name.startswith("langgraph.checkpoint.postgres")
            ):
                raise ImportError(f"{name} is not installed here")

    sys.meta_path.insert(0, NoPostgres())

    from durable_ir import Approve, ConfigurationError, open_runtime
    from support.graphs import build_graph

    async def main(url, counters):
        async with open_runtime(url) as rt:
            snapshot = await rt.start(build_graph(counters), {}, incident_id="inc-1")
            assert snapshot.status == "awaiting_approval", snapshot
            assert (await rt.decide("inc-1", Approve(by="alice"))).applied
        try:
            async with open_runtime("postgresql://127.0.0.1:1/none"):
                pass
        except ConfigurationError as exc:
            print("refused:", exc)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("psycopg", "psycopg_pool"))
        print("loaded:", loaded)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def test_sqlite_only_use_loads_no_postgres_driver(tmp_path: Path, counter_dir: Path) -> None:
    tests = Path(__file__).resolve().parent
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, f"sqlite:///{tmp_path / 'incidents.db'}", str(counter_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tests,
        env={"PYTHONPATH": str(tests), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "loaded: []" in out.stdout, out.stdout
    assert "refused: PostgreSQL needs psycopg" in out.stdout, out.stdout
    assert "durable-ir[postgres]" in out.stdout
