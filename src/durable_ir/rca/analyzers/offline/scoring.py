"""Combining the signals into candidates and a confidence for each: signal categories count as
independent pieces of evidence, and the result is lowered for rivals, early onsets and repeats."""

from __future__ import annotations

from dataclasses import dataclass, field

from durable_ir.rca.analysis import AnalysisRequest
from durable_ir.rca.analyzers.offline.signals import _Analysis, _Signal


@dataclass
class _Candidate:
    fault: str
    service: str
    signals: list[_Signal] = field(default_factory=list)
    confidence: float = 0.0
    notes: list[str] = field(default_factory=list)

    def best(self) -> dict[str, _Signal]:
        found: dict[str, _Signal] = {}
        for s in self.signals:
            if s.category not in found or s.strength > found[s.category].strength:
                found[s.category] = s
        return found

    def raw(self) -> float:
        miss = 1.0
        for s in self.best().values():
            miss *= 1 - s.strength
        return 1 - miss

    def specific(self) -> bool:
        return any(s.category != "origin" and s.strength > 0.05 for s in self.signals)


def _candidates(analysis: _Analysis) -> list[_Candidate]:
    grouped: dict[tuple[str, str], _Candidate] = {}
    for signal in analysis.signals:
        key = (signal.fault, signal.service)
        grouped.setdefault(key, _Candidate(*key)).signals.append(signal)
    found = []
    for candidate in grouped.values():
        if not candidate.specific() or not _plausible(analysis, candidate):
            continue
        candidate.confidence = candidate.raw()
        found.append(candidate)
    return sorted(found, key=lambda c: c.confidence, reverse=True)


def _plausible(analysis: _Analysis, candidate: _Candidate) -> bool:
    """Something is wrong at the candidate's service or downstream of it in the blame
    chain, or one of its resources is exhausted."""
    if any(s.category == "resource" and s.strength > 0.1 for s in candidate.signals):
        return True
    return any(
        symptom.anomalous and analysis.root(name) == candidate.service
        for name, symptom in analysis.symptoms.items()
    )


def _early_onset(analysis: _Analysis, candidate: _Candidate) -> bool:
    """The symptoms were there when the window began and no change explains them."""
    categories = candidate.best()
    if "change" in categories or "timing" in categories:
        return False
    symptom = analysis.symptoms.get(candidate.service)
    alerted = analysis.symptoms.get(str(analysis.request.alert.get("service") or ""))
    return any(s is not None and s.anomalous and s.from_start for s in (symptom, alerted))


def _adjust(
    candidate: _Candidate,
    candidates: list[_Candidate],
    analysis: _Analysis,
    request: AnalysisRequest,
    *,
    conflict_penalty: float,
    early_onset_factor: float,
    repeat_factor: float,
) -> None:
    """Set the candidate's confidence: its combined signals, lowered for a rival of similar
    strength, for symptoms that predate the window or are absent at the alerted service, and
    for a repeat of an earlier attempt's hypothesis that nothing new supports (the factors are
    :class:`CorrelationAnalyzer`'s)."""
    raw = candidate.raw()
    confidence = raw
    rivals = [c.raw() for c in candidates if c is not candidate]
    rival = max(rivals, default=0.0)
    if rival > 0:
        confidence *= 1 - conflict_penalty * min(1.0, rival / raw) ** 2
        if rival >= 0.5 * raw:
            candidate.notes.append(f"a rival explanation scores {rival:.2f}")
    if _early_onset(analysis, candidate):
        confidence *= early_onset_factor
        candidate.notes.append("the symptoms predate this window")
    if not analysis.alert_visible():
        confidence *= early_onset_factor
        candidate.notes.append("the alerted service shows no symptom in this window")
    earlier = [
        p
        for p in request.previous
        if p.hypothesis is not None
        and (p.hypothesis.fault, p.hypothesis.service) == (candidate.fault, candidate.service)
    ]
    if earlier:
        seen_from = min(p.window.start for p in request.previous)
        new = [s for s in candidate.signals if s.observed_at < seen_from and s.strength > 0.05]
        if not new:
            before = max(p.hypothesis.confidence for p in earlier if p.hypothesis)
            confidence = min(confidence, before) * repeat_factor
            candidate.notes.append("already proposed, and the wider window adds nothing")
        else:
            kinds = sorted({s.category for s in new})
            candidate.notes.append(f"the wider window adds {', '.join(kinds)} evidence")
    candidate.confidence = max(0.0, min(1.0, confidence))
