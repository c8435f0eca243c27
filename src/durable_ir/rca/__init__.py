"""Root-cause analysis: evidence, analyzers, and the confidence-gated retry loop.

Example:
    >>> from durable_ir.rca import FAULTS
    >>> "bad_deploy" in FAULTS
    True
"""

from durable_ir.rca.analysis import (
    FAULTS,
    AnalysisRequest,
    Analyzer,
    AnalyzerError,
    Hypothesis,
    PriorAttempt,
    SuggestedAction,
)
from durable_ir.rca.evidence import (
    ChangeEvidence,
    EventEvidence,
    Evidence,
    EvidenceWindow,
    Gatherer,
    LogEvidence,
    MetricEvidence,
    parse_evidence,
)

__all__ = [
    "FAULTS",
    "AnalysisRequest",
    "Analyzer",
    "AnalyzerError",
    "ChangeEvidence",
    "EventEvidence",
    "Evidence",
    "EvidenceWindow",
    "Gatherer",
    "Hypothesis",
    "LogEvidence",
    "MetricEvidence",
    "PriorAttempt",
    "SuggestedAction",
    "parse_evidence",
]
