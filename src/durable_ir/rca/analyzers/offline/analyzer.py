"""The analyzer: collects the signals, scores the candidates and reports the best.

Example:
    >>> import asyncio
    >>> from datetime import UTC, datetime, timedelta
    >>> from durable_ir.rca import AnalysisRequest, EvidenceWindow
    >>> end = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    >>> window = EvidenceWindow.ending_at(end, timedelta(minutes=15))
    >>> request = AnalysisRequest(alert={"service": "api"}, attempt=1, window=window, evidence=[])
    >>> h = asyncio.run(CorrelationAnalyzer().analyze(request))
    >>> h.fault, h.confidence
    ('unknown', 0.05)
"""

from __future__ import annotations

from durable_ir.rca.analysis import AnalysisRequest, Hypothesis
from durable_ir.rca.analyzers.offline.report import _hypothesis, _nothing_found
from durable_ir.rca.analyzers.offline.scoring import _adjust, _candidates
from durable_ir.rca.analyzers.offline.signals import _Analysis


class CorrelationAnalyzer:
    """Finds the root cause by correlating the evidence (see the package documentation).

    ``conflict_penalty`` scales how much a rival candidate of similar strength lowers the
    confidence; ``early_onset_factor`` multiplies the confidence when the symptoms predate the
    window with no change to explain them, and again when the alerted service shows no
    symptom at all; ``repeat_factor`` multiplies it for a hypothesis an
    earlier attempt already offered when nothing new supports it.
    """

    def __init__(
        self,
        *,
        conflict_penalty: float = 0.4,
        early_onset_factor: float = 0.8,
        repeat_factor: float = 0.9,
    ) -> None:
        self.conflict_penalty = conflict_penalty
        self.early_onset_factor = early_onset_factor
        self.repeat_factor = repeat_factor

    async def analyze(self, request: AnalysisRequest) -> Hypothesis:
        """A hypothesis citing only ids from ``request.evidence``."""
        return self.hypothesis(request)

    def hypothesis(self, request: AnalysisRequest) -> Hypothesis:
        """The same as :meth:`analyze`, synchronously."""
        analysis = _Analysis(request)
        analysis.collect()
        candidates = _candidates(analysis)
        if not candidates:
            return _nothing_found(analysis)
        for candidate in candidates:
            _adjust(
                candidate,
                candidates,
                analysis,
                request,
                conflict_penalty=self.conflict_penalty,
                early_onset_factor=self.early_onset_factor,
                repeat_factor=self.repeat_factor,
            )
        best = max(candidates, key=lambda c: c.confidence)
        return _hypothesis(best, analysis)
