"""What an analyzer is asked and what it answers, and the analyzer protocol.

Example:
    >>> h = Hypothesis(root_cause="deploy v42 broke checkout", fault="bad_deploy",
    ...                service="checkout", confidence=0.9, cited_evidence=["chg-1"])
    >>> h.confidence
    0.9
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from durable_ir.errors import DurableIRError
from durable_ir.rca.evidence import (
    ChangeEvidence,
    EventEvidence,
    EvidenceWindow,
    LogEvidence,
    MetricEvidence,
)

__all__ = [
    "FAULTS",
    "AnalysisRequest",
    "Analyzer",
    "AnalyzerError",
    "Hypothesis",
    "PriorAttempt",
    "SuggestedAction",
]

FAULTS = (
    "bad_deploy",
    "memory_leak",
    "connection_pool_exhaustion",
    "disk_full",
    "expired_certificate",
    "upstream_outage",
    "noisy_neighbour",
    "config_error",
    "unknown",
)
"""The fault categories a hypothesis may name (``unknown`` when none fits)."""


class SuggestedAction(BaseModel):
    """A remediation step an analyzer suggests (the plan node decides what is allowed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: str = Field(min_length=1, max_length=100)
    target: str = Field(min_length=1, max_length=200)
    parameters: dict[str, Any] = Field(default_factory=dict)


class Hypothesis(BaseModel):
    """A root cause with a confidence in [0, 1] and the evidence ids it rests on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    root_cause: str = Field(min_length=1, max_length=2_000)
    fault: str = Field(default="unknown", max_length=64)
    service: str | None = Field(default=None, max_length=200)
    confidence: float = Field(ge=0.0, le=1.0)
    cited_evidence: list[str] = Field(default_factory=list, max_length=200)
    remediation: list[SuggestedAction] = Field(default_factory=list, max_length=20)


class PriorAttempt(BaseModel):
    """What an earlier attempt concluded, fed back into the next one."""

    model_config = ConfigDict(frozen=True)

    attempt: int
    window: EvidenceWindow
    hypothesis: Hypothesis | None
    error: str | None = None


class AnalysisRequest(BaseModel):
    """Everything an analyzer gets for one attempt."""

    model_config = ConfigDict(frozen=True)

    alert: dict[str, Any]
    attempt: int = Field(ge=1)
    window: EvidenceWindow
    evidence: list[LogEvidence | MetricEvidence | ChangeEvidence | EventEvidence]
    previous: list[PriorAttempt] = Field(default_factory=list)

    def evidence_ids(self) -> set[str]:
        """The ids an answer may cite."""
        return {e.id for e in self.evidence}


class AnalyzerError(DurableIRError):
    """An analyzer could not produce a valid answer (the loop retries, then records a failed
    attempt with confidence 0). ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@runtime_checkable
class Analyzer(Protocol):
    """Proposes a root cause for one attempt; raises :class:`AnalyzerError` on failure."""

    async def analyze(self, request: AnalysisRequest) -> Hypothesis:
        """A hypothesis citing only ids from ``request.evidence``."""
        ...
