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
    if candidate.confidence < 0.5:
        root_cause += f"; the evidence is weak, and {LLM_NEEDED}"
    return Hypothesis(
        root_cause=root_cause[:2000],
        fault=candidate.fault,
        service=candidate.service,
        confidence=round(candidate.confidence, 3),
        cited_evidence=cited,
        remediation=_remediation(candidate, analysis),
    )


LLM_NEEDED = (
    "this is beyond the offline analyzer, which reads only onsets, departures from a baseline, "
    "error ratios, latency shifts, resources against their limits, changes near the onset and "
    "known error signatures: an LLM analyzer (AnthropicAnalyzer, ChatModelAnalyzer) is needed "
    "to reason about it"
)
"""What a low-confidence answer of the offline analyzer says about its own limits."""


def _nothing_found(analysis: _Analysis) -> Hypothesis:
    alerted = str(analysis.request.alert.get("service") or "") or None
    symptom = analysis.symptoms.get(alerted or "")
    unnamed = [
        f"{s.metric} on {s.service} at {s.share:.0%} of its limit" for s in analysis.saturated
    ]
    if symptom is not None and symptom.anomalous:
        seen = [f.note for f in symptom.findings] + unnamed
        return Hypothesis(
            root_cause=f"{alerted} is failing"
            + (f" ({'; '.join(seen)})" if seen else "")
            + ", but no change, known error signature or exhausted resource explains it; "
            + LLM_NEEDED,
            fault="unknown",
            service=alerted,
            confidence=0.15,
            cited_evidence=symptom.ids,
        )
    elsewhere = sorted(s for s, found in analysis.symptoms.items() if found.anomalous)
    series = len(analysis.metrics)
    checked = (
        f"{series} metric series, {len(analysis.logs)} log signatures and "
        f"{len(analysis.changes)} changes checked"
    )
    if elsewhere:
        found_text = f"{', '.join(elsewhere)} departed from its usual level but"
    else:
        found_text = "no series departs from its usual level and"
    return Hypothesis(
        root_cause=f"no root cause found ({checked}): {found_text} "
        f"{alerted or 'the alerted service'} shows no symptom the offline analyzer can read"
        + (f" ({'; '.join(unnamed)})" if unnamed else "")
        + "; if the alert is real, the evidence gathered does not show why — widen or add "
        "queries, or " + LLM_NEEDED,
        fault="unknown",
        service=alerted,
        confidence=0.05,
        cited_evidence=[],
    )
