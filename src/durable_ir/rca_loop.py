"""The confidence-gated RCA loop: gather evidence over a window, analyze, and — below the
confidence threshold — widen the window and try again, feeding earlier hypotheses back in, up
to a bounded number of attempts; then conclude with the best hypothesis, never an exception.

``build_rca_loop`` returns a ``StateGraph`` with three nodes (``gather_evidence``, ``analyze``,
``conclude``). Compile it on its own, or add it compiled as a node of a parent graph whose
state has the same keys (:class:`RcaState`); route on ``state["rca"]["status"]`` with
:func:`route_after_rca`. Each node's result is checkpointed, so a run killed mid-loop resumes
at the attempt it was on, with the evidence it had gathered.

Example:
    >>> import asyncio
    >>> from datetime import UTC, datetime
    >>> from durable_ir.rca import EventEvidence, Hypothesis
    >>> class OneEvent:
    ...     async def gather(self, alert, window):
    ...         return [EventEvidence(id="ev-1", service="api", at=window.start,
    ...                               summary="OOM kill", reason="OOMKilled")]
    >>> class Sure:
    ...     async def analyze(self, request):
    ...         return Hypothesis(root_cause="api leaks memory", fault="memory_leak",
    ...                           service="api", confidence=0.9, cited_evidence=["ev-1"])
    >>> graph = build_rca_loop(OneEvent(), Sure()).compile()
    >>> alert = {"service": "api", "fired_at": "2026-01-01T12:00:00+00:00"}
    >>> result = asyncio.run(graph.ainvoke({"alert": alert}))
    >>> result["rca"]["status"], result["rca"]["attempts"]
    ('confident', 1)
"""

from __future__ import annotations

import asyncio
import logging
import operator
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Annotated, Any, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from pydantic import ValidationError

from durable_ir.clock import Clock, system_clock
from durable_ir.errors import ConfigurationError, InvalidInput
from durable_ir.metrics import METRICS
from durable_ir.rca.analysis import (
    AnalysisRequest,
    Analyzer,
    AnalyzerError,
    Hypothesis,
    PriorAttempt,
)
from durable_ir.rca.analyzers.validation import check_hypothesis
from durable_ir.rca.evidence import EvidenceWindow, Gatherer, parse_evidence

__all__ = [
    "RcaConfig",
    "RcaOutput",
    "RcaRoute",
    "RcaState",
    "build_rca_loop",
    "route_after_rca",
]

log = logging.getLogger("durable_ir.rca")

RcaRoute = Literal["confident", "escalate"]
DEFAULT_WINDOWS = (timedelta(minutes=15), timedelta(hours=1), timedelta(hours=6))


class RcaState(TypedDict, total=False):
    """The keys the loop reads and writes (a parent graph's state must have them)."""

    alert: dict[str, Any]
    rca_evidence: dict[str, Any]
    """The current attempt's window and evidence (JSON), between gathering and analysis."""
    rca_attempts: Annotated[list[dict[str, Any]], operator.add]
    """One record per attempt: window, evidence ids, hypothesis, confidence, duration, error."""
    rca: dict[str, Any]
    """The conclusion: status (confident / exhausted), best hypothesis, confidence, attempts."""


@dataclass(frozen=True)
class RcaConfig:
    """How the loop searches.

    ``windows`` is the schedule of evidence windows, strictly widening; attempts beyond it
    multiply the last window by ``growth`` (which must then be > 1). ``attempt_timeout`` bounds
    one attempt's analysis (all its tries); ``analyzer_retries`` retries a retryable analyzer
    failure with exponential backoff from ``retry_backoff`` seconds.

    Example:
        >>> RcaConfig(max_attempts=4, growth=4).window_for(4)
        datetime.timedelta(days=1)
        >>> RcaConfig(threshold=1.5)
        Traceback (most recent call last):
        ...
        durable_ir.errors.ConfigurationError: threshold must be within 0 and 1, got 1.5
    """

    threshold: float = 0.7
    max_attempts: int = 3
    windows: tuple[timedelta, ...] = DEFAULT_WINDOWS
    growth: float | None = None
    attempt_timeout: float | None = None
    analyzer_retries: int = 2
    retry_backoff: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not 0.0 <= self.threshold <= 1.0:
            raise ConfigurationError(f"threshold must be within 0 and 1, got {self.threshold}")
        if isinstance(self.max_attempts, bool) or self.max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be at least 1, got {self.max_attempts}")
        windows = tuple(self.windows)
        if not windows or any(not isinstance(w, timedelta) or w <= timedelta(0) for w in windows):
            raise ConfigurationError("windows must be a non-empty sequence of positive timedeltas")
        if any(later <= earlier for earlier, later in pairwise(windows)):
            raise ConfigurationError(
                f"windows must widen on every attempt, got {[str(w) for w in windows]}"
            )
        object.__setattr__(self, "windows", windows)
        if self.growth is not None and self.growth <= 1:
            raise ConfigurationError(f"growth must be greater than 1, got {self.growth}")
        if self.max_attempts > len(windows) and self.growth is None:
            raise ConfigurationError(
                f"{self.max_attempts} attempts need {self.max_attempts} windows, or a growth "
                f"factor to widen past the {len(windows)} given"
            )
        if self.attempt_timeout is not None and self.attempt_timeout <= 0:
            raise ConfigurationError("attempt_timeout must be positive seconds, or None")
        if self.analyzer_retries < 0 or self.retry_backoff < 0:
            raise ConfigurationError("analyzer_retries and retry_backoff must be >= 0")

    def window_for(self, attempt: int) -> timedelta:
        """The evidence window of attempt ``attempt`` (1-based)."""
        if attempt <= len(self.windows):
            return self.windows[attempt - 1]
        assert self.growth is not None
        return self.windows[-1] * self.growth ** (attempt - len(self.windows))


class RcaOutput(TypedDict, total=False):
    """What the loop hands back (to a parent graph, or from ``ainvoke``): its attempts and its
    conclusion — not the alert or the working evidence, which a parent would only store
    again."""

    rca_attempts: Annotated[list[dict[str, Any]], operator.add]
    rca: dict[str, Any]


def _alert_time(alert: dict[str, Any], clock: Clock) -> datetime:
    fired = alert.get("fired_at")
    if fired is None:
        return clock()
    try:
        moment = datetime.fromisoformat(str(fired))
    except ValueError:
        raise InvalidInput(f"alert fired_at is not an ISO-8601 time: {fired!r}") from None
    if moment.tzinfo is None:
        raise InvalidInput(f"alert fired_at needs a time zone: {fired!r}")
    return moment.astimezone(UTC)


def _prior_attempts(records: list[dict[str, Any]]) -> list[PriorAttempt]:
    return [
        PriorAttempt(
            attempt=r["attempt"],
            window=EvidenceWindow.model_validate(r["window"]),
            hypothesis=Hypothesis.model_validate(r["hypothesis"]) if r["hypothesis"] else None,
            error=r["error"],
        )
        for r in records
    ]


def route_after_rca(state: RcaState) -> RcaRoute:
    """For a parent graph's ``add_conditional_edges``: ``"confident"`` or ``"escalate"``."""
    rca = state.get("rca") or {}
    return "confident" if rca.get("status") == "confident" else "escalate"


def build_rca_loop(
    gatherer: Gatherer,
    analyzer: Analyzer,
    config: RcaConfig | None = None,
    *,
    clock: Clock = system_clock,
    sleep: Callable[[float], Any] = asyncio.sleep,
) -> StateGraph[RcaState, Any, RcaState, RcaOutput]:
    """The RCA loop as an uncompiled ``StateGraph`` (see the module doc).

    ``clock`` supplies the window's end when the alert has no ``fired_at``; ``sleep`` is the
    backoff between analyzer retries (tests pass a no-op).
    """
    config = config or RcaConfig()
    if not isinstance(gatherer, Gatherer):
        raise ConfigurationError(f"gatherer must have an async gather(alert, window): {gatherer!r}")
    if not isinstance(analyzer, Analyzer):
        raise ConfigurationError(f"analyzer must have an async analyze(request): {analyzer!r}")

    async def gather_evidence(state: RcaState) -> dict[str, Any]:
        alert = state.get("alert")
        if not isinstance(alert, dict):
            raise InvalidInput("the RCA loop needs state['alert'] to be an alert object")
        attempt = len(state.get("rca_attempts") or []) + 1
        window = EvidenceWindow.ending_at(_alert_time(alert, clock), config.window_for(attempt))
        started = time.monotonic()
        error = None
        evidence: list[dict[str, Any]] = []
        try:
            found = await asyncio.wait_for(
                gatherer.gather(alert, window), timeout=config.attempt_timeout
            )
            evidence = [item.model_dump(mode="json") for item in found]
            if len({item["id"] for item in evidence}) != len(evidence):
                raise ValueError("the gatherer returned duplicate evidence ids")
        except Exception as exc:  # a broken gatherer fails the attempt, not the run
            error = f"gathering evidence failed: {type(exc).__name__}: {exc}"
            evidence = []
            log.warning("RCA attempt %d: %s", attempt, error)
        return {
            "rca_evidence": {
                "attempt": attempt,
                "window": window.model_dump(mode="json"),
                "evidence": evidence,
                "error": error,
                "gather_s": time.monotonic() - started,
            }
        }

    async def analyze(state: RcaState) -> dict[str, Any]:
        current = state.get("rca_evidence") or {}
        attempt = int(current["attempt"])
        window = EvidenceWindow.model_validate(current["window"])
        started = time.monotonic()
        hypothesis: Hypothesis | None = None
        error: str | None = current.get("error")
        tries = 0
        if error is None:
            request = AnalysisRequest(
                alert=state["alert"],
                attempt=attempt,
                window=window,
                evidence=[parse_evidence(item) for item in current["evidence"]],
                previous=_prior_attempts(state.get("rca_attempts") or []),
            )
            hypothesis, error, tries = await _analyze_with_retries(request)
        record = {
            "attempt": attempt,
            "window": window.model_dump(mode="json"),
            "window_s": window.length.total_seconds(),
            "evidence_ids": [item["id"] for item in current.get("evidence", [])],
            "hypothesis": hypothesis.model_dump(mode="json") if hypothesis else None,
            "confidence": hypothesis.confidence if hypothesis else 0.0,
            "duration_s": float(current.get("gather_s", 0.0)) + time.monotonic() - started,
            "tries": tries,
            "error": error,
        }
        log.info(
            "RCA attempt %d over %s: confidence %.2f%s",
            attempt,
            window.length,
            record["confidence"],
            f" ({error})" if error else "",
        )
        return {"rca_attempts": [record]}

    async def _analyze_with_retries(
        request: AnalysisRequest,
    ) -> tuple[Hypothesis | None, str | None, int]:
        async def tries_in_order() -> tuple[Hypothesis | None, str | None, int]:
            error = "no try was made"
            for tried in range(1, config.analyzer_retries + 2):
                try:
                    answer = await analyzer.analyze(request)
                    if not isinstance(answer, Hypothesis):
                        raise AnalyzerError(
                            f"the analyzer returned {type(answer).__name__}, not a Hypothesis"
                        )
                    return check_hypothesis(answer, request), None, tried
                except AnalyzerError as exc:
                    METRICS.integration_error("analyzer")
                    error = f"analyzer failed: {exc}"
                    if not exc.retryable:
                        return None, error, tried
                except (ValidationError, ValueError, TypeError) as exc:
                    METRICS.integration_error("analyzer")
                    error = f"analyzer gave a malformed answer: {exc}"
                except Exception as exc:  # never let an analyzer crash the run
                    METRICS.integration_error("analyzer")
                    return None, f"analyzer crashed: {type(exc).__name__}: {exc}", tried
                if tried <= config.analyzer_retries:
                    await sleep(config.retry_backoff * 2 ** (tried - 1))
            return None, error, config.analyzer_retries + 1

        try:
            return await asyncio.wait_for(tries_in_order(), timeout=config.attempt_timeout)
        except TimeoutError:
            METRICS.integration_error("analyzer")
            return None, f"analysis timed out after {config.attempt_timeout}s", 0

    # Both are coroutine functions although they only read the state: LangGraph runs a plain
    # function on a thread pool when the graph runs asynchronously.
    async def assess(state: RcaState) -> Literal["gather_evidence", "conclude"]:
        attempts = state.get("rca_attempts") or []
        if attempts and attempts[-1]["confidence"] >= config.threshold:
            return "conclude"
        return "gather_evidence" if len(attempts) < config.max_attempts else "conclude"

    async def conclude(state: RcaState) -> dict[str, Any]:
        attempts = state.get("rca_attempts") or []
        answered = [a for a in attempts if a["hypothesis"] is not None]
        # The most confident hypothesis; among equals, the latest (it saw the most evidence).
        best = max(answered, key=lambda a: (a["confidence"], a["attempt"]), default=None)
        confident = best is not None and attempts[-1]["confidence"] >= config.threshold
        if confident:
            best = attempts[-1]
        return {
            "rca_evidence": {},
            "rca": {
                "status": "confident" if confident else "exhausted",
                "hypothesis": best["hypothesis"] if best else None,
                "confidence": best["confidence"] if best else 0.0,
                "best_attempt": best["attempt"] if best else None,
                "attempts": len(attempts),
                "threshold": config.threshold,
            },
        }

    builder: StateGraph[RcaState, Any, RcaState, RcaOutput] = StateGraph(
        RcaState, output_schema=RcaOutput
    )
    builder.add_node("gather_evidence", gather_evidence)
    builder.add_node("analyze", analyze)
    builder.add_node("conclude", conclude)
    builder.add_edge(START, "gather_evidence")
    builder.add_edge("gather_evidence", "analyze")
    builder.add_conditional_edges("analyze", assess, ["gather_evidence", "conclude"])
    builder.add_edge("conclude", END)
    return builder
