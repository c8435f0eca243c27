"""Scripted gatherers and analyzers for RCA loop tests: real implementations of the
protocols that record what they were given."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from durable_ir.rca import (
    AnalysisRequest,
    AnalyzerError,
    ChangeEvidence,
    EventEvidence,
    EvidenceWindow,
    Hypothesis,
    LogEvidence,
)

ALERT = {"name": "HighErrorRate", "service": "checkout", "fired_at": "2026-03-01T12:00:00+00:00"}


class WindowedGatherer:
    """One log line per call, plus a deploy only once the window reaches 50 minutes back."""

    def __init__(self, log_path: str | os.PathLike[str] | None = None) -> None:
        self.windows: list[EvidenceWindow] = []
        self.log_path = Path(log_path) if log_path else None

    async def gather(self, alert: dict[str, Any], window: EvidenceWindow) -> list[Any]:
        self.windows.append(window)
        if self.log_path:
            with self.log_path.open("a") as out:
                out.write(f"gather {int(window.length.total_seconds())}\n")
        found: list[Any] = [
            LogEvidence(
                id="log-5xx",
                service="checkout",
                at=window.end,
                summary="HTTP 500s",
                signature="HTTP 500",
                count=120,
            )
        ]
        if window.length.total_seconds() >= 50 * 60:
            found.append(
                ChangeEvidence(
                    id="chg-42",
                    service="checkout",
                    at=window.start,
                    summary="deploy v42",
                    change="deploy",
                    version="v42",
                )
            )
        return found


class ScriptedAnalyzer:
    """Answers with the confidences given, one per call, citing all the evidence; records every
    request. An entry that is an exception instance is raised instead."""

    def __init__(self, script: Sequence[float | BaseException], *, delay: float = 0.0) -> None:
        self.script = list(script)
        self.requests: list[AnalysisRequest] = []
        self.delay = delay

    async def analyze(self, request: AnalysisRequest) -> Hypothesis:
        self.requests.append(request)
        step = self.script[min(len(self.requests), len(self.script)) - 1]
        if self.delay:
            await asyncio.sleep(self.delay)
        if isinstance(step, BaseException):
            raise step
        return Hypothesis(
            root_cause=f"guess {len(self.requests)}",
            fault="bad_deploy",
            service="checkout",
            confidence=step,
            cited_evidence=sorted(request.evidence_ids()),
        )


def retryable(message: str = "429 rate limited") -> AnalyzerError:
    return AnalyzerError(message, retryable=True)


def fatal(message: str = "401 invalid key") -> AnalyzerError:
    return AnalyzerError(message, retryable=False)


EVENT = EventEvidence
