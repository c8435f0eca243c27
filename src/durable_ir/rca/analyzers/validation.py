"""Checks every analyzer's answer gets before the RCA loop trusts it.

- citations of evidence the analyzer was not given are dropped and the confidence is scaled by
  the share of citations that were real; if none were real the answer is rejected;
- an answer that cites nothing is capped at :data:`UNCITED_CONFIDENCE_CAP`;
- a fault outside :data:`~durable_ir.rca.analysis.FAULTS` becomes ``unknown``, capped likewise.

Example:
    >>> from datetime import UTC, datetime
    >>> from durable_ir.rca import AnalysisRequest, EventEvidence, EvidenceWindow, Hypothesis
    >>> at = datetime(2026, 1, 1, tzinfo=UTC)
    >>> request = AnalysisRequest(
    ...     alert={}, attempt=1, window=EvidenceWindow(start=at, end=at),
    ...     evidence=[EventEvidence(id="ev-1", service="api", at=at, summary="OOM", reason="OOM")])
    >>> answer = Hypothesis(root_cause="leak", fault="memory_leak", confidence=0.8,
    ...                     cited_evidence=["ev-1", "ev-404"])
    >>> checked = check_hypothesis(answer, request)
    >>> checked.cited_evidence, checked.confidence
    (['ev-1'], 0.4)
"""

from __future__ import annotations

from durable_ir.rca.analysis import FAULTS, AnalysisRequest, AnalyzerError, Hypothesis

__all__ = ["UNCITED_CONFIDENCE_CAP", "check_hypothesis"]

UNCITED_CONFIDENCE_CAP = 0.3
"""The most an answer without usable evidence (or with an unknown fault) may claim."""


def check_hypothesis(hypothesis: Hypothesis, request: AnalysisRequest) -> Hypothesis:
    """Return ``hypothesis`` with its claims cut to what the evidence supports, or raise a
    retryable :class:`AnalyzerError` if every citation is made up."""
    known = request.evidence_ids()
    cited = list(dict.fromkeys(hypothesis.cited_evidence))
    real = [c for c in cited if c in known]
    confidence = hypothesis.confidence
    if cited and not real:
        raise AnalyzerError(
            f"the answer cites only evidence it was not given: {sorted(cited)[:10]}",
            retryable=True,
        )
    if cited:
        confidence *= len(real) / len(cited)
    else:
        confidence = min(confidence, UNCITED_CONFIDENCE_CAP)
    fault = hypothesis.fault
    if fault not in FAULTS:
        fault = "unknown"
        confidence = min(confidence, UNCITED_CONFIDENCE_CAP)
    return hypothesis.model_copy(
        update={"cited_evidence": real, "confidence": round(confidence, 6), "fault": fault}
    )
