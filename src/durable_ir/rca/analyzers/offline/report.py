"""Writing the hypothesis: the best candidate's root cause, citations and remediation, or what
little can be said when no candidate was found."""

from __future__ import annotations

from durable_ir.rca.analysis import Hypothesis
from durable_ir.rca.analyzers.offline.patterns import _FAULT_PHRASES
from durable_ir.rca.analyzers.offline.remediation import _remediation
from durable_ir.rca.analyzers.offline.scoring import _Candidate
from durable_ir.rca.analyzers.offline.signals import _Analysis


def _hypothesis(candidate: _Candidate, analysis: _Analysis) -> Hypothesis:
    signals = sorted(candidate.best().values(), key=lambda s: s.strength, reverse=True)
    cited: list[str] = []
    for signal in sorted(candidate.signals, key=lambda s: s.strength, reverse=True):
        if signal.strength > 0.02:
            cited.extend(i for i in signal.ids if i not in cited)
    known = analysis.request.evidence_ids()
    cited = [i for i in cited if i in known][:50]
    reasons = "; ".join(s.note for s in signals if s.category != "origin")
    root_cause = f"{_FAULT_PHRASES[candidate.fault]} in {candidate.service}: {reasons}"
    if candidate.notes:
        root_cause += f" ({'; '.join(candidate.notes)})"
    return Hypothesis(
        root_cause=root_cause[:2000],
        fault=candidate.fault,
        service=candidate.service,
        confidence=round(candidate.confidence, 3),
        cited_evidence=cited,
        remediation=_remediation(candidate, analysis),
    )


def _nothing_found(analysis: _Analysis) -> Hypothesis:
    alerted = str(analysis.request.alert.get("service") or "") or None
    symptom = analysis.symptoms.get(alerted or "")
    if symptom is not None and symptom.anomalous:
        return Hypothesis(
            root_cause=f"{alerted} is failing, but no change, known error signature or "
            "exhausted resource explains it",
            fault="unknown",
            service=alerted,
            confidence=0.15,
            cited_evidence=symptom.ids,
        )
    return Hypothesis(
        root_cause="nothing in the evidence departs from its usual level",
        fault="unknown",
        service=alerted,
        confidence=0.05,
        cited_evidence=[],
    )
