"""The confidence-gated RCA loop: widening windows, fed-back hypotheses, a bounded search that
ends in escalation with the best answer, and analyzers that fail in every way."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from durable_ir import ConfigurationError
from durable_ir.persistence import open_store
from durable_ir.rca import AnalysisRequest, Hypothesis
from durable_ir.rca_loop import RcaConfig, build_rca_loop, route_after_rca
from support.processes import TESTS_DIR
from support.rca import ALERT, ScriptedAnalyzer, WindowedGatherer, fatal, retryable
from support.rca_worker import build_parent


async def no_sleep(seconds: float) -> None:
    return None


async def run(gatherer: Any, analyzer: Any, config: RcaConfig | None = None) -> dict[str, Any]:
    graph = build_rca_loop(gatherer, analyzer, config, sleep=no_sleep).compile()
    return dict(await graph.ainvoke({"alert": ALERT}))


async def test_window_widens_and_previous_hypotheses_reach_the_next_attempt() -> None:
    gatherer, analyzer = WindowedGatherer(), ScriptedAnalyzer([0.3, 0.5, 0.9])
    result = await run(gatherer, analyzer)

    lengths = [w.length for w in gatherer.windows]
    assert lengths == [timedelta(minutes=15), timedelta(hours=1), timedelta(hours=6)]
    assert all(w.end.isoformat() == ALERT["fired_at"] for w in gatherer.windows)
    first, second, third = analyzer.requests
    assert [r.attempt for r in analyzer.requests] == [1, 2, 3]
    assert first.previous == []
    assert [p.hypothesis.root_cause for p in second.previous if p.hypothesis] == ["guess 1"]
    assert [p.hypothesis.confidence for p in third.previous if p.hypothesis] == [0.3, 0.5]
    assert third.previous[1].window.length == timedelta(hours=1)
    # The wider window brought new evidence, which the analyzer saw.
    assert first.evidence_ids() == {"log-5xx"}
    assert second.evidence_ids() == {"log-5xx", "chg-42"}

    assert result["rca"]["status"] == "confident"
    assert result["rca"]["attempts"] == 3 and result["rca"]["confidence"] == 0.9
    assert route_after_rca(result) == "confident"  # type: ignore[arg-type]
    records = result["rca_attempts"]
    assert [r["window_s"] for r in records] == [900, 3600, 21600]
    assert [r["evidence_ids"] for r in records][1] == ["log-5xx", "chg-42"]
    assert all(r["error"] is None and r["duration_s"] >= 0 for r in records)


async def test_stops_at_the_first_confident_attempt() -> None:
    gatherer, analyzer = WindowedGatherer(), ScriptedAnalyzer([0.4, 0.7, 0.99])
    result = await run(gatherer, analyzer)
    assert len(analyzer.requests) == 2  # 0.7 meets the default threshold
    assert result["rca"]["status"] == "confident" and result["rca"]["attempts"] == 2


async def test_attempt_limit_escalates_with_the_best_hypothesis() -> None:
    analyzer = ScriptedAnalyzer([0.2, 0.6, 0.4])
    result = await run(WindowedGatherer(), analyzer)
    assert len(analyzer.requests) == 3
    rca = result["rca"]
    assert rca["status"] == "exhausted" and route_after_rca(result) == "escalate"  # type: ignore[arg-type]
    assert rca["confidence"] == 0.6 and rca["best_attempt"] == 2
    assert rca["hypothesis"]["root_cause"] == "guess 2"


async def test_retryable_failures_are_retried_then_succeed() -> None:
    analyzer = ScriptedAnalyzer([retryable(), retryable(), 0.95])
    result = await run(WindowedGatherer(), analyzer)
    (record,) = result["rca_attempts"]
    assert record["tries"] == 3 and record["error"] is None and record["confidence"] == 0.95


@pytest.mark.parametrize(
    ("failure", "tries", "message"),
    [
        (retryable("503 overloaded"), 3, "analyzer failed: 503 overloaded"),
        (fatal(), 1, "analyzer failed: 401 invalid key"),
        (RuntimeError("bug in analyzer"), 1, "analyzer crashed: RuntimeError: bug in analyzer"),
        (ValueError("not JSON"), 3, "analyzer gave a malformed answer: not JSON"),
    ],
)
async def test_analyzer_failures_become_failed_attempts_never_a_crash(
    failure: BaseException, tries: int, message: str
) -> None:
    analyzer = ScriptedAnalyzer([failure])
    result = await run(WindowedGatherer(), analyzer)
    assert result["rca"]["status"] == "exhausted"
    assert result["rca"]["hypothesis"] is None and result["rca"]["confidence"] == 0.0
    assert len(result["rca_attempts"]) == 3  # the loop went on after each failure
    for record in result["rca_attempts"]:
        assert record["confidence"] == 0.0 and record["hypothesis"] is None
        assert record["tries"] == tries and record["error"] == message


async def test_a_slow_analyzer_times_out_and_the_loop_goes_on() -> None:
    analyzer = ScriptedAnalyzer([0.9], delay=5)
    config = RcaConfig(
        attempt_timeout=0.05, max_attempts=2, windows=(timedelta(minutes=5), timedelta(hours=1))
    )
    result = await run(WindowedGatherer(), analyzer, config)
    assert [r["error"] for r in result["rca_attempts"]] == ["analysis timed out after 0.05s"] * 2
    assert result["rca"]["status"] == "exhausted"


async def test_a_failing_gatherer_fails_the_attempt_only() -> None:
    class Flaky(WindowedGatherer):
        async def gather(self, alert: dict[str, Any], window: Any) -> list[Any]:
            found = await super().gather(alert, window)
            if len(self.windows) == 1:
                raise ConnectionError("loki unreachable")
            return found

    analyzer = ScriptedAnalyzer([0.9])
    result = await run(Flaky(), analyzer)
    first, second = result["rca_attempts"]
    assert first["error"] == "gathering evidence failed: ConnectionError: loki unreachable"
    assert len(analyzer.requests) == 1 and second["confidence"] == 0.9
    assert analyzer.requests[0].previous[0].error == first["error"]


async def test_unknown_citations_lower_the_confidence() -> None:
    class Inventive(ScriptedAnalyzer):
        async def analyze(self, request: AnalysisRequest) -> Hypothesis:
            self.requests.append(request)
            return Hypothesis(
                root_cause="x",
                fault="bad_deploy",
                service="checkout",
                confidence=0.9,
                cited_evidence=["log-5xx", "made-up-1"],
            )

    result = await run(WindowedGatherer(), Inventive([]))
    first = result["rca_attempts"][0]
    assert first["confidence"] < 0.9
    assert first["hypothesis"]["cited_evidence"] == ["log-5xx"]


async def test_growth_factor_widens_past_the_schedule() -> None:
    gatherer = WindowedGatherer()
    config = RcaConfig(max_attempts=5, windows=(timedelta(minutes=10),), growth=3)
    await run(gatherer, ScriptedAnalyzer([0.1]), config)
    assert [w.length.total_seconds() / 60 for w in gatherer.windows] == [10, 30, 90, 270, 810]


@pytest.mark.parametrize(
    "options",
    [
        {"threshold": -0.1},
        {"threshold": 1.01},
        {"max_attempts": 0},
        {"windows": ()},
        {"windows": (timedelta(hours=1), timedelta(minutes=15))},
        {"windows": (timedelta(hours=1), timedelta(hours=1))},
        {"windows": (timedelta(0),)},
        {"max_attempts": 4},  # three windows and no growth factor
        {"growth": 1.0, "max_attempts": 4},
        {"attempt_timeout": 0},
        {"analyzer_retries": -1},
    ],
)
def test_invalid_configs_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        RcaConfig(**options)


def test_non_protocol_parts_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="gatherer"):
        build_rca_loop(object(), ScriptedAnalyzer([0.5]))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="analyzer"):
        build_rca_loop(WindowedGatherer(), object())  # type: ignore[arg-type]


@pytest.mark.postgres
async def test_killed_mid_loop_it_resumes_at_the_attempt_it_was_on(
    postgres_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")])
    )
    child = subprocess.Popen(
        [sys.executable, "-m", "support.rca_worker", postgres_url, "inc-rca", str(log)], env=env
    )
    try:
        for _ in range(600):
            if log.exists() and "analyze 2" in log.read_text():
                break
            assert child.poll() is None, "the worker died before attempt 2"
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the worker never reached attempt 2")
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()

    async with open_store(postgres_url) as store:
        graph = build_parent(log, hang=False).compile(checkpointer=store.checkpointer)
        config = {"configurable": {"thread_id": "inc-rca"}}
        result = await graph.ainvoke(None, config, durability="sync")  # type: ignore[arg-type]

    assert result["outcome"] == "plan" and result["rca"]["status"] == "confident"
    assert [r["attempt"] for r in result["rca_attempts"]] == [1, 2]
    runs = log.read_text().split("\n")
    # Nothing before the kill ran again; attempt 2's analysis, cut off, ran again.
    assert runs.count("triage") == 1
    assert runs.count("gather 900") == 1 and runs.count("gather 3600") == 1
    assert runs.count("analyze 1") == 1 and runs.count("analyze 2") == 2
