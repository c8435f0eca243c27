"""How well the confidence-gated RCA loop finds root causes with the offline analyzer.

Run from the repository root::

    python benchmarks/rca_eval.py              # every scenario x 5 seeds
    python benchmarks/rca_eval.py --seeds 20   # more seeds
    python benchmarks/rca_eval.py --smoke      # 1 seed each, for CI (a few seconds)
    python benchmarks/rca_eval.py --per-run    # also one row per run

For every fault scenario of ``durable_ir.simulation`` and every seed, it builds the simulated
environment, runs the real RCA loop (``build_rca_loop`` with its default config: windows of
15 min, 1 h and 6 h ending at the alert, threshold 0.7, 3 attempts) over a
``SimulatedGatherer`` and the ``CorrelationAnalyzer``, and scores the loop's final hypothesis:
it is *correct* when it names the scenario's fault and the service it was injected into. The
analyzer sees only the gathered evidence; the ground truth is read here, for scoring only.

It then applies the hypothesis's suggested remediation plan to the environment (its actions in
order, five simulated minutes apart), lets 30 more minutes pass and reads the alerting
service's health: *remediated* counts the runs that recovered.

The last line is machine-readable:
``rca_eval runs=… accuracy=… mean_attempts=… escalated=…``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from durable_ir.rca.analyzers import CorrelationAnalyzer  # noqa: E402
from durable_ir.rca_loop import RcaConfig, build_rca_loop  # noqa: E402
from durable_ir.simulation import (  # noqa: E402
    SCENARIOS,
    SimulatedEnvironment,
    SimulatedGatherer,
)


@dataclass(frozen=True)
class Run:
    scenario: str
    seed: int
    truth: str
    answer: str
    correct: bool
    attempts: int
    confidence: float
    escalated: bool
    remediated: bool
    seconds: float


async def evaluate(scenario: str, seed: int, config: RcaConfig) -> Run:
    """One run of the loop on one scenario and seed, scored against the ground truth."""
    started = time.perf_counter()
    env = SimulatedEnvironment(scenario, seed=seed)
    truth = env.ground_truth
    assert truth is not None
    graph = build_rca_loop(SimulatedGatherer(env), CorrelationAnalyzer(), config).compile()
    result: dict[str, Any] = await graph.ainvoke({"alert": env.alert})
    rca = result["rca"]
    hypothesis = rca["hypothesis"] or {}
    fault, service = hypothesis.get("fault", "-"), hypothesis.get("service") or "-"
    return Run(
        scenario=scenario,
        seed=seed,
        truth=f"{truth.fault}@{truth.service}",
        answer=f"{fault}@{service}",
        correct=(fault, service) == (truth.fault, truth.service),
        attempts=int(rca["attempts"]),
        confidence=float(rca["confidence"]),
        escalated=rca["status"] != "confident",
        remediated=_remediate(env, hypothesis),
        seconds=time.perf_counter() - started,
    )


def _remediate(env: SimulatedEnvironment, hypothesis: dict[str, Any]) -> bool:
    """Apply the suggested actions in order; does the alerting service recover within 30
    minutes of the last one?"""
    actions = hypothesis.get("remediation") or []
    if not actions:
        return False
    for action in actions:
        try:
            env.remediate(action["action"], action["target"], **(action.get("parameters") or {}))
        except ValueError:
            return False
        env.advance(timedelta(minutes=5))
    env.advance(timedelta(minutes=30))
    return env.health(str(env.alert["service"])).healthy


def table(runs: Sequence[Run]) -> list[str]:
    """The per-scenario summary, as lines of text."""
    header = (
        f"{'scenario':<28} {'runs':>4} {'correct':>8} {'attempts':>9} {'confidence':>11} "
        f"{'escalated':>10} {'remediated':>11}"
    )
    lines = [header, "-" * len(header)]
    groups = [(s, [r for r in runs if r.scenario == s]) for s in SCENARIOS]
    for name, group in [*groups, ("all", list(runs))]:
        if not group:
            continue
        if name == "all":
            lines.append("-" * len(header))
        lines.append(
            f"{name:<28} {len(group):>4} "
            f"{sum(r.correct for r in group) / len(group):>8.2f} "
            f"{statistics.mean(r.attempts for r in group):>9.2f} "
            f"{statistics.mean(r.confidence for r in group):>11.2f} "
            f"{sum(r.escalated for r in group):>10} "
            f"{sum(r.remediated for r in group):>11}"
        )
    return lines


def per_run(runs: Sequence[Run]) -> list[str]:
    """One line per run."""
    lines = []
    for r in runs:
        mark = "ok " if r.correct else "MISS"
        lines.append(
            f"{r.scenario:<28} seed={r.seed:<3} {mark} truth={r.truth:<40} "
            f"answer={r.answer:<40} attempts={r.attempts} confidence={r.confidence:.2f}"
            f"{' escalated' if r.escalated else ''}"
        )
    return lines


async def run_all(seeds: int) -> list[Run]:
    config = RcaConfig()
    return [
        await evaluate(scenario, seed, config) for scenario in SCENARIOS for seed in range(seeds)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per scenario (default 5)")
    parser.add_argument("--smoke", action="store_true", help="one seed per scenario, for CI")
    parser.add_argument("--per-run", action="store_true", help="also print one row per run")
    args = parser.parse_args(argv)
    seeds = 1 if args.smoke else args.seeds
    if seeds < 1:
        parser.error("--seeds must be at least 1")
    started = time.perf_counter()
    runs = asyncio.run(run_all(seeds))
    elapsed = time.perf_counter() - started
    if args.per_run:
        print("\n".join(per_run(runs)))
        print()
    print("\n".join(table(runs)))
    accuracy = sum(r.correct for r in runs) / len(runs)
    mean_attempts = statistics.mean(r.attempts for r in runs)
    escalated = sum(r.escalated for r in runs)
    print(f"\n{len(runs)} runs in {elapsed:.1f}s ({elapsed / len(runs) * 1000:.0f} ms per run)")
    print(
        f"rca_eval runs={len(runs)} accuracy={accuracy:.3f} "
        f"mean_attempts={mean_attempts:.2f} escalated={escalated}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
