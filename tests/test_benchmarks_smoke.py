"""The benchmarks keep running: each script's ``--smoke`` mode, as a subprocess, ends with its
machine-readable line. No timing is asserted (the numbers are for people, not for CI)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
NUMBER = r"\d+(?:\.\d+)?"

pytestmark = pytest.mark.slow


def run_smoke(script: str, *args: str) -> list[str]:
    """Run ``benchmarks/<script> --smoke args…``; its stdout lines (fails with stderr)."""
    env = dict(os.environ)
    env.pop("DURABLE_IR_BENCH_POSTGRES_URL", None)
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--smoke", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, f"{script} exited with {proc.returncode}:\n{proc.stderr[-5000:]}"
    lines = proc.stdout.strip().splitlines()
    assert lines, f"{script} printed nothing:\n{proc.stderr[-5000:]}"
    return lines


@pytest.mark.postgres
def test_throughput_smoke_postgres(postgres_server: str) -> None:
    lines = run_smoke("throughput.py", "--store", "postgres", "--url", postgres_server)
    dbos = r"n/a" if importlib.util.find_spec("dbos") is None else NUMBER
    pattern = (
        rf"throughput store=postgres incidents=\d+ ours_per_s={NUMBER} "
        rf"handwritten_per_s={NUMBER} ratio={NUMBER} decide_p50_ms={NUMBER} "
        rf"handwritten_resume_p50_ms={NUMBER} dbos_per_s={dbos}"
    )
    assert re.fullmatch(pattern, lines[-1]), lines[-1]
    table = "\n".join(lines)
    assert "hand-written LangGraph" in table and "durable-ir" in table
    assert "hand-written, our saver" in table
    if dbos == "n/a":
        assert "DBOS" in table and "skipped" in table


def test_throughput_smoke_sqlite() -> None:
    lines = run_smoke("throughput.py", "--store", "sqlite")
    pattern = (
        rf"throughput store=sqlite incidents=\d+ ours_per_s={NUMBER} "
        rf"handwritten_per_s={NUMBER} ratio={NUMBER} decide_p50_ms={NUMBER} "
        rf"handwritten_resume_p50_ms={NUMBER} dbos_per_s=n/a"
    )
    assert re.fullmatch(pattern, lines[-1]), lines[-1]
    assert any("DBOS" in line and "skipped" in line for line in lines)
    assert any("our saver" in line and "skipped" in line for line in lines)


@pytest.mark.postgres
def test_scale_out_smoke(postgres_server: str) -> None:
    lines = run_smoke("scale_out.py", "--url", postgres_server)
    pattern = rf"scale_out workers1_per_s={NUMBER} workers2_per_s={NUMBER} scaling={NUMBER}"
    assert re.fullmatch(pattern, lines[-1]), lines[-1]


@pytest.mark.postgres
def test_paused_memory_smoke(postgres_server: str) -> None:
    lines = run_smoke("paused_memory.py", "--url", postgres_server)
    pattern = rf"paused_memory rss_mb_\w+={NUMBER} rss_mb_\w+={NUMBER} growth={NUMBER}"
    assert re.fullmatch(pattern, lines[-1]), lines[-1]


ALERT_STORM = (
    r"alert_storm store={store} incidents=\d+ pd_triggers=\d+ unretried_429=\d+ "
    rf"intake_per_s={NUMBER} baseline_incidents=\d+ alerts=\d+ offered_per_s={NUMBER} "
    rf"p99_ms={NUMBER} baseline_pd_triggers=\d+ baseline_unretried_429=\d+ "
    rf"baseline_intake_per_s={NUMBER}"
)


def _check_alert_storm(lines: list[str], store: str) -> None:
    assert re.fullmatch(ALERT_STORM.format(store=store), lines[-1]), lines[-1]
    fields = dict(item.split("=", 1) for item in lines[-1].split()[1:])
    # Every alert the smoke workload sends is taken, and the hand-written intake opens one
    # incident per webhook (so more than durable-ir, which attaches repeats to open ones).
    assert fields["alerts"] == "300"
    assert int(fields["baseline_incidents"]) > int(fields["incidents"]) > 0
    table = "\n".join(lines)
    assert "hand-written" in table and "durable-ir" in table and "ours/hand" in table


def test_alert_storm_smoke_sqlite() -> None:
    _check_alert_storm(run_smoke("alert_storm.py", "--store", "sqlite"), "sqlite")


@pytest.mark.postgres
def test_alert_storm_smoke_postgres(postgres_server: str) -> None:
    lines = run_smoke("alert_storm.py", "--store", "postgres", "--url", postgres_server)
    _check_alert_storm(lines, "postgres")


def test_local_pagerduty_rate_limit() -> None:
    """The alert storm's PagerDuty enforces its per-routing-key limit with 429 + Retry-After,
    and tells a 429 that a later delivery made good from one that was never retried."""
    import httpx

    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    from _local_pagerduty import LocalPagerDuty

    def event(key: str, routing_key: str = "a" * 32) -> dict[str, object]:
        return {
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": key,
            "payload": {"summary": "disk full", "source": "db-1", "severity": "error"},
        }

    with LocalPagerDuty(rate_limit_per_minute=2) as pagerduty:
        url = pagerduty.url + "/v2/enqueue"
        assert [httpx.post(url, json=event(k)).status_code for k in "ab"] == [202, 202]
        refused = httpx.post(url, json=event("c"))
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        # Another routing key has its own window.
        assert httpx.post(url, json=event("d", "b" * 32)).status_code == 202
        assert len(pagerduty.throttled) == 1 and pagerduty.unretried_throttles() == 1
        with pagerduty.lock:  # a minute later: the window is empty again
            pagerduty._window.clear()
        assert httpx.post(url, json=event("c")).status_code == 202
        assert pagerduty.unretried_throttles() == 0
    with LocalPagerDuty() as unlimited:  # no limit unless asked for
        url = unlimited.url + "/v2/enqueue"
        assert {httpx.post(url, json=event(str(i))).status_code for i in range(5)} == {202}
