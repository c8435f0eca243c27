"""Triage: the incident's severity, by rules on the alert and optionally by an analyzer.

The alert's own severity is the starting point; the first :class:`SeverityRule` that matches
overrides it; a ``triager`` (an LLM, a service catalogue lookup) may have the last word, and if
it fails the rules' answer stands.

Example:
    >>> rules = [SeverityRule(severity="P0", service="payments"),
    ...          SeverityRule(severity="P3", labels={"env": "staging"})]
    >>> triage_by_rules({"service": "payments", "severity": "P2", "labels": {}}, rules)
    TriageResult(severity='P0', reason='rule 1 matched (service=payments)', by='rules')
    >>> triage_by_rules({"service": "api", "severity": "P1", "labels": {"env": "staging"}}, rules)
    TriageResult(severity='P3', reason='rule 2 matched (labels env=staging)', by='rules')
    >>> triage_by_rules({"service": "api", "severity": "P1", "labels": {}}, rules).reason
    "the alert's own severity"
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from durable_ir.errors import ConfigurationError, InvalidInput
from durable_ir.severity import Severity, parse_severity

__all__ = ["SeverityRule", "TriageResult", "Triager", "triage_by_rules"]


@dataclass(frozen=True)
class TriageResult:
    """A severity, why, and who decided it."""

    severity: Severity
    reason: str
    by: Literal["rules", "analyzer"] = "rules"


Triager = Callable[[Mapping[str, Any], TriageResult], Awaitable[TriageResult]]
"""``await triager(alert, by_rules)``: a second opinion on the rules' answer."""


@dataclass(frozen=True)
class SeverityRule:
    """Set ``severity`` for alerts matching every given condition (``None`` matches any)."""

    severity: str
    service: str | None = None
    name: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "severity", parse_severity(self.severity))
        except InvalidInput as exc:
            raise ConfigurationError(f"severity rule: {exc}") from None
        if self.service is None and self.name is None and not self.labels:
            raise ConfigurationError("a severity rule needs a service, a name or labels to match")

    def matches(self, alert: Mapping[str, Any]) -> bool:
        """True if ``alert`` meets every condition of this rule."""
        labels = alert.get("labels") or {}
        return (
            (self.service is None or alert.get("service") == self.service)
            and (self.name is None or alert.get("name") == self.name)
            and all(labels.get(k) == v for k, v in self.labels.items())
        )

    def describe(self) -> str:
        """The conditions, for the triage reason."""
        parts = []
        if self.service is not None:
            parts.append(f"service={self.service}")
        if self.name is not None:
            parts.append(f"name={self.name}")
        if self.labels:
            parts.append("labels " + ",".join(f"{k}={v}" for k, v in self.labels.items()))
        return " ".join(parts)


def triage_by_rules(alert: Mapping[str, Any], rules: Sequence[SeverityRule] = ()) -> TriageResult:
    """The first matching rule's severity, else the alert's own (P2 if it has none)."""
    for number, rule in enumerate(rules, start=1):
        if rule.matches(alert):
            return TriageResult(
                parse_severity(rule.severity), f"rule {number} matched ({rule.describe()})"
            )
    own = alert.get("severity")
    if own is None:
        return TriageResult("P2", "the alert has no severity; P2 by default")
    return TriageResult(parse_severity(own), "the alert's own severity")
