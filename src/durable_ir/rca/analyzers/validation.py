"""What the LLM analyzers share: the prompt, the answer schema, and the check every answer
passes before the RCA loop trusts it.

:func:`check_hypothesis` is the gate. It never raises the confidence, only lowers it:

- cited ids the request did not contain are dropped and the confidence is scaled by the share
  of citations that were real (``0.8`` citing one real and one invented id becomes ``0.4``);
  an answer citing *only* invented ids is rejected with a retryable :class:`AnalyzerError`;
- an answer citing nothing is capped at :data:`UNCITED_CONFIDENCE_CAP` (0.3): a claim that rests
  on no evidence must not pass a confidence gate;
- a fault outside :data:`~durable_ir.rca.FAULTS` becomes ``"unknown"``, capped likewise (the
  plan node cannot act on a category it does not know).

Confidences are rounded to six decimals, so ``0.9`` citing two real ids of three is ``0.6``.

Checking twice changes nothing more than checking once, so the loop may check an answer the
analyzer already checked.

:class:`RootCauseReport` is the structured answer an LLM gives (the Anthropic tool's input, the
LangChain structured-output schema); :func:`render_prompt` and :data:`SYSTEM_PROMPT` are what it
is asked.

Example:
    >>> from datetime import UTC, datetime, timedelta
    >>> from durable_ir.rca import AnalysisRequest, EvidenceWindow, Hypothesis, LogEvidence
    >>> window = EvidenceWindow.ending_at(datetime(2026, 1, 1, 12, tzinfo=UTC), timedelta(hours=1))
    >>> log = LogEvidence(id="log-1", service="api", at=window.start, summary="HTTP 500s",
    ...                   signature="HTTP 500", count=40)
    >>> request = AnalysisRequest(alert={"service": "api"}, attempt=1, window=window,
    ...                           evidence=[log])
    >>> answer = Hypothesis(root_cause="bad deploy", fault="bad_deploy", confidence=0.8,
    ...                     cited_evidence=["log-1", "chg-404"])
    >>> checked = check_hypothesis(answer, request)
    >>> checked.cited_evidence, checked.confidence
    (['log-1'], 0.4)
    >>> "[log-1] log/error api" in render_prompt(request)
    True
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from durable_ir.rca.analysis import (
    FAULTS,
    AnalysisRequest,
    AnalyzerError,
    Hypothesis,
    PriorAttempt,
    SuggestedAction,
)
from durable_ir.rca.evidence import (
    ChangeEvidence,
    EventEvidence,
    LogEvidence,
    MetricEvidence,
)

__all__ = [
    "REPORT_TOOL_DESCRIPTION",
    "REPORT_TOOL_NAME",
    "SYSTEM_PROMPT",
    "UNCITED_CONFIDENCE_CAP",
    "RootCauseReport",
    "check_hypothesis",
    "render_evidence",
    "render_prompt",
    "report_json_schema",
]

UNCITED_CONFIDENCE_CAP = 0.3
"""The most an answer without usable evidence (or with an unknown fault) may claim: below the
loop's default 0.7 gate."""

REPORT_TOOL_NAME = "report_root_cause"
REPORT_TOOL_DESCRIPTION = (
    "Report the most likely root cause of the alert, how confident you are, the ids of the "
    "evidence items it rests on, and the remediation you suggest."
)

_MAX_SUMMARY = 300
_MAX_ALERT = 4_000


def check_hypothesis(hypothesis: Hypothesis, request: AnalysisRequest) -> Hypothesis:
    """``hypothesis`` with unknown citations dropped and its confidence lowered where it
    overreaches.

    Raises :class:`AnalyzerError` (retryable) when every cited id is unknown. The confidence is
    never raised; see the module docstring for the rules.

    Example:
        >>> from datetime import UTC, datetime
        >>> from durable_ir.rca import AnalysisRequest, EvidenceWindow, Hypothesis
        >>> now = datetime(2026, 1, 1, tzinfo=UTC)
        >>> request = AnalysisRequest(alert={}, attempt=1, evidence=[],
        ...                           window=EvidenceWindow(start=now, end=now))
        >>> vague = Hypothesis(root_cause="gremlins", fault="gremlins", confidence=0.9)
        >>> checked = check_hypothesis(vague, request)
        >>> checked.fault, checked.confidence
        ('unknown', 0.3)
        >>> invented = Hypothesis(root_cause="x", confidence=0.9, cited_evidence=["nope"])
        >>> try:
        ...     check_hypothesis(invented, request)
        ... except AnalyzerError as exc:
        ...     print(exc.retryable, exc)
        True the answer cites only evidence ids that were not given (nope); given: none
    """
    known = request.evidence_ids()
    cited = list(dict.fromkeys(hypothesis.cited_evidence))
    kept = [ref for ref in cited if ref in known]
    confidence = hypothesis.confidence
    if cited and not kept:
        given = ", ".join(sorted(known)[:20]) or "none"
        raise AnalyzerError(
            "the answer cites only evidence ids that were not given "
            f"({', '.join(cited[:10])}); given: {given}",
            retryable=True,
        )
    if cited:
        confidence *= len(kept) / len(cited)
    else:
        confidence = min(confidence, UNCITED_CONFIDENCE_CAP)
    fault = hypothesis.fault
    if fault not in FAULTS:
        fault = "unknown"
        confidence = min(confidence, UNCITED_CONFIDENCE_CAP)
    confidence = round(confidence, 6)
    if (
        kept == hypothesis.cited_evidence
        and fault == hypothesis.fault
        and confidence == hypothesis.confidence
    ):
        return hypothesis
    return hypothesis.model_copy(
        update={"cited_evidence": kept, "fault": fault, "confidence": confidence}
    )


class RootCauseReport(BaseModel):
    """The structured answer an LLM analyzer gives; :meth:`to_hypothesis` turns it into a
    :class:`~durable_ir.rca.Hypothesis` (``pydantic.ValidationError`` if it does not fit).

    ``fault`` is offered as an enum of :data:`~durable_ir.rca.FAULTS` in the schema but any
    string validates here: :func:`check_hypothesis` maps a stray category to ``unknown``.

    Example:
        >>> report = RootCauseReport(root_cause="disk full", fault="disk_full", service="db",
        ...                          confidence=0.8, cited_evidence=["m-1"])
        >>> report.to_hypothesis().fault
        'disk_full'
        >>> report_json_schema()["properties"]["fault"]["enum"][-1]
        'unknown'
    """

    model_config = ConfigDict(
        extra="ignore",
        title=REPORT_TOOL_NAME,
        json_schema_extra={"description": REPORT_TOOL_DESCRIPTION},
    )

    root_cause: str = Field(
        min_length=1,
        max_length=2_000,
        description="The root cause in one or two sentences: what broke, where, and why.",
    )
    fault: str = Field(
        max_length=64,
        description="The fault category that fits best; 'unknown' if none does.",
        json_schema_extra={"enum": list(FAULTS)},
    )
    service: str | None = Field(
        default=None, max_length=200, description="The service where the fault originates."
    )
    confidence: float = Field(
        ge=0.0,
        le=1.0,
        description=(
            "How sure you are, from 0 to 1. Above 0.7 only when the cited evidence directly "
            "supports this cause and rules out the likely alternatives."
        ),
    )
    cited_evidence: list[str] = Field(
        max_length=200,
        description="The ids (in square brackets in the prompt) of the evidence items relied on.",
    )
    remediation: list[SuggestedAction] = Field(
        default_factory=list,
        max_length=20,
        description=(
            "Suggested remediation steps, most important first, e.g. "
            '{"action": "rollback", "target": "checkout", "parameters": {"to_version": "v41"}}.'
        ),
    )

    def to_hypothesis(self) -> Hypothesis:
        """The report as a :class:`~durable_ir.rca.Hypothesis` (not yet checked)."""
        return Hypothesis.model_validate(self.model_dump())


def report_json_schema() -> dict[str, Any]:
    """The JSON schema of :class:`RootCauseReport`, self-contained (no ``$ref``, no titles)."""
    schema = RootCauseReport.model_json_schema()
    defs = schema.pop("$defs", {})
    schema.pop("description", None)  # the tool's description, given beside the schema

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {key: inline(value) for key, value in node.items() if key != "title"}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    result: dict[str, Any] = inline(schema)
    return result


SYSTEM_PROMPT = f"""\
You are a site reliability engineer finding the root cause of a production alert.
You get the alert, the time window that evidence was gathered over, and the evidence: log
signatures, metric series, changes (deploys, config, infrastructure, certificates) and events.
Each evidence item starts with its id in square brackets.

Rules:
- Answer by calling the {REPORT_TOOL_NAME} tool exactly once.
- Cite the ids of the evidence items your conclusion rests on, and only ids that appear in the
  evidence. Invented ids are removed and lower your confidence; an answer citing nothing is
  capped at {UNCITED_CONFIDENCE_CAP}.
- Pick the fault category that fits best: {", ".join(FAULTS)}.
- Be calibrated. A change shortly before the errors began, an error signature that names the
  cause, or a resource at its limit is strong evidence; a coincidence in time alone is weak.
  When the evidence does not single out one cause, say so with a low confidence: the system
  will gather evidence over a wider window and ask again.
- Suggest remediation only for the cause you report (e.g. rollback, restart, scale,
  rotate_certificate, revert_config), targeting the service named in the evidence.
"""


def render_prompt(request: AnalysisRequest) -> str:
    """The user message for one attempt: the alert, the window, every evidence item with its id,
    and what earlier attempts concluded (with an instruction to look beyond them).

    Example:
        >>> from datetime import UTC, datetime, timedelta
        >>> from durable_ir.rca import AnalysisRequest, EvidenceWindow
        >>> window = EvidenceWindow.ending_at(datetime(2026, 1, 1, 12, tzinfo=UTC),
        ...                                   timedelta(minutes=15))
        >>> request = AnalysisRequest(alert={"name": "HighErrorRate"}, attempt=1, evidence=[],
        ...                           window=window)
        >>> print(render_prompt(request).splitlines()[3])
        Evidence window (attempt 1): 2026-01-01T11:45:00Z to 2026-01-01T12:00:00Z (15m)
    """
    window = request.window
    alert = json.dumps(request.alert, sort_keys=True, default=str)
    if len(alert) > _MAX_ALERT:
        alert = alert[:_MAX_ALERT] + "…(truncated)"
    lines = [
        "Alert:",
        alert,
        "",
        f"Evidence window (attempt {request.attempt}): {_time(window.start)} to "
        f"{_time(window.end)} ({_duration(window.length)})",
        "",
        f"Evidence ({len(request.evidence)} items):",
    ]
    lines += [render_evidence(item) for item in request.evidence] or ["(none was found)"]
    if request.previous:
        lines += ["", "Earlier attempts (each over a narrower window):"]
        lines += [_render_prior(prior) for prior in request.previous]
        lines += [
            "",
            "None of those was confident enough. This attempt sees a wider window. Consider a "
            "different cause that fits the evidence better, or cite the new evidence that "
            "confirms or refutes an earlier hypothesis. Do not repeat an earlier answer "
            "unless the evidence now supports it more strongly.",
        ]
    lines += ["", f"Report the root cause with the {REPORT_TOOL_NAME} tool."]
    return "\n".join(lines)


def render_evidence(item: LogEvidence | MetricEvidence | ChangeEvidence | EventEvidence) -> str:
    """One line: ``[id] kind service @time: summary — details``.

    Example:
        >>> from datetime import UTC, datetime
        >>> from durable_ir.rca import ChangeEvidence
        >>> render_evidence(ChangeEvidence(id="chg-1", service="api", summary="deploy v42",
        ...     at=datetime(2026, 1, 1, tzinfo=UTC), change="deploy", version="v42"))
        '[chg-1] change/deploy api @2026-01-01T00:00:00Z: deploy v42 — version v42'
    """
    summary = item.summary if len(item.summary) <= _MAX_SUMMARY else item.summary[:_MAX_SUMMARY]
    if isinstance(item, LogEvidence):
        head = f"log/{item.level}"
        details = [f'signature "{item.signature[:_MAX_SUMMARY]}" ×{item.count}']
        if item.first_seen is not None:
            details.append(f"first seen {_time(item.first_seen)}")
    elif isinstance(item, MetricEvidence):
        head = "metric"
        details = [_render_series(item)]
    elif isinstance(item, ChangeEvidence):
        head = f"change/{item.change}"
        details = [f"version {item.version}"] if item.version else []
        if item.author:
            details.append(f"by {item.author}")
    else:
        head = "event"
        details = [f"{item.reason} ×{item.count}"]
    tail = f" — {'; '.join(details)}" if details else ""
    return f"[{item.id}] {head} {item.service} @{_time(item.at)}: {summary}{tail}"


def _render_series(item: MetricEvidence) -> str:
    unit = f" {item.unit}" if item.unit else ""
    parts = [item.metric]
    values = [value for _, value in item.points if math.isfinite(value)]
    if values:
        peak_at, peak = max(item.points, key=lambda point: point[1])
        parts.append(
            f"{len(values)} points: first {_num(values[0])}, min {_num(min(values))}, "
            f"max {_num(peak)}{unit} at {_time(peak_at)}, last {_num(values[-1])}{unit}"
        )
    else:
        parts.append("no samples")
    if item.baseline is not None:
        parts.append(f"baseline {_num(item.baseline)}{unit}")
    if item.limit is not None:
        parts.append(f"limit {_num(item.limit)}{unit}")
    return ", ".join(parts)


def _render_prior(prior: PriorAttempt) -> str:
    head = f"- attempt {prior.attempt} ({_duration(prior.window.length)} window): "
    h = prior.hypothesis
    if h is None:
        return head + f"no answer ({prior.error or 'failed'})"
    cited = ", ".join(h.cited_evidence) or "nothing"
    service = f", service {h.service}" if h.service else ""
    return (
        head + f'"{h.root_cause}" (fault {h.fault}{service}, confidence {h.confidence:.2f}, '
        f"cited {cited})"
    )


def _time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _duration(length: timedelta) -> str:
    seconds = int(length.total_seconds())
    days, seconds = divmod(seconds, 86_400)
    hours, seconds = divmod(seconds, 3_600)
    minutes, seconds = divmod(seconds, 60)
    text = "".join(
        f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")) if n
    )
    return text or "0s"


def _num(value: float) -> str:
    return f"{value:.4g}"
