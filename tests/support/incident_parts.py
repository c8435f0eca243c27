"""Scripted parts for the incident graph: each records what it did in files, so tests (and
child processes that are killed mid-run) can count side effects.

``build_incident_graph`` builds the full graph with them; a child process builds the same
graph from the same arguments.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from durable_ir import AllowList, IncidentGraphBuilder, RcaConfig
from durable_ir.notifications import IncidentNotifier
from durable_ir.rca import EventEvidence, EvidenceWindow, Hypothesis
from durable_ir.rca.analysis import AnalysisRequest
from durable_ir.remediation import (
    StepAction,
    StepContext,
    StepResult,
    Verification,
    VerificationContext,
)

ALERT = {
    "name": "HighErrorRate",
    "service": "checkout",
    "severity": "P1",
    "fired_at": "2026-03-01T12:00:00+00:00",
    "description": "5xx ratio 12% after deploy",
    "labels": {"team": "payments", "env": "prod"},
}
ALLOW = AllowList(
    {"rollback": "medium", "restart": "low", "scale": "medium", "snapshot": "read_only"}
)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


class OneEventGatherer:
    """Evidence: one deploy event on the alert's service."""

    async def gather(self, alert: dict[str, Any], window: EvidenceWindow) -> list[EventEvidence]:
        return [
            EventEvidence(
                id="ev-1",
                service=alert["service"],
                at=window.start,
                summary="deploy v42 rolled out",
                reason="Deployed",
            )
        ]


class ScriptedAnalyzer:
    """Always the same root cause, at ``confidence``, suggesting ``actions``."""

    def __init__(self, confidence: float, actions: Sequence[dict[str, Any]]) -> None:
        self.confidence = confidence
        self.actions = list(actions)

    async def analyze(self, request: AnalysisRequest) -> Hypothesis:
        return Hypothesis(
            root_cause="deploy v42 of checkout broke the payment client",
            fault="bad_deploy",
            service="checkout",
            confidence=self.confidence,
            cited_evidence=["ev-1"],
            remediation=self.actions,  # type: ignore[arg-type]
        )


class FileExecutor:
    """Appends ``apply N action target`` / ``rollback N …`` to ``<dir>/<incident>.log``.

    ``fail_step`` reports that step as failed; ``kill_before_step`` SIGKILLs this process as
    that step starts (before it does anything).
    """

    def __init__(
        self, directory: Path, *, fail_step: int | None = None, kill_before_step: int | None = None
    ) -> None:
        self.directory = Path(directory)
        self.fail_step = fail_step
        self.kill_before_step = kill_before_step

    def _write(self, context: StepContext, text: str) -> None:
        with open(self.directory / f"{context.incident_id}.log", "a") as log:
            log.write(text + "\n")
            log.flush()
            os.fsync(log.fileno())

    async def dry_run(self, step: StepAction, context: StepContext) -> StepResult:
        return StepResult(True, f"would {step.action} {step.target}")

    async def apply(self, step: StepAction, context: StepContext) -> StepResult:
        if context.number == self.kill_before_step:
            os.kill(os.getpid(), signal.SIGKILL)
        if context.number == self.fail_step:
            self._write(context, f"fail {context.number} {step.action} {step.target}")
            return StepResult(False, f"{step.action} {step.target}: timed out")
        self._write(context, f"apply {context.number} {step.action} {step.target}")
        return StepResult(True, f"{step.action} {step.target} done")

    async def rollback(self, step: StepAction, context: StepContext) -> StepResult:
        self._write(context, f"rollback {context.number} {step.action} {step.target}")
        return StepResult(True, f"undid with {step.action} {step.target}")


class FixedVerifier:
    def __init__(self, ok: bool) -> None:
        self.ok = ok

    async def verify(self, context: VerificationContext) -> Verification:
        return Verification(
            self.ok,
            "error ratio back under 1%" if self.ok else "error ratio still 12%",
            {"error_ratio": 0.004 if self.ok else 0.12},
        )


def steps(count: int) -> list[dict[str, Any]]:
    """``count`` suggested actions, each undoable."""
    return [{"action": "scale", "target": f"checkout-{n}", "parameters": {"replicas": n + 2}}
            for n in range(1, count + 1)]  # fmt: skip


def undo_scale(step: StepAction) -> StepAction:
    return StepAction(action="scale", target=step.target, parameters={"replicas": 1})


def build_incident_graph(
    directory: Path | str,
    *,
    confidence: float = 0.9,
    actions: Sequence[dict[str, Any]] | None = None,
    step_count: int = 2,
    fail_step: int | None = None,
    kill_before_step: int | None = None,
    verify_ok: bool = True,
    notifiers: Sequence[IncidentNotifier] = (),
    **options: Any,
) -> IncidentGraphBuilder:
    return IncidentGraphBuilder(
        gatherer=OneEventGatherer(),
        analyzer=ScriptedAnalyzer(confidence, steps(step_count) if actions is None else actions),
        executor=FileExecutor(
            Path(directory), fail_step=fail_step, kill_before_step=kill_before_step
        ),
        verifier=FixedVerifier(verify_ok),
        allow_list=ALLOW,
        rca=RcaConfig(retry_backoff=0),
        rollbacks={"scale": undo_scale},
        notifiers=notifiers,
        **options,
    )


def fired_at() -> datetime:
    return datetime.fromisoformat(ALERT["fired_at"]).astimezone(UTC)
