"""Whether a plan needs a human at all: the auto-approve policy.

Off by default. When a policy says a plan may go ahead without a human, the approval node still
registers the request and records the decision in the ledger — approved by
``system:auto-approve``, with the policy's reason — so the audit trail reads like any other
decision.

Example:
    >>> policy = AutoApprove(max_risk="read_only")
    >>> read_only = {"steps": [{"action": "snapshot", "target": "db", "risk": "read_only"}]}
    >>> policy(read_only, {"severity": "P3"})
    'every step is at most read_only risk (P3 incident)'
    >>> policy(read_only, {"severity": "P0"}) is None        # P0 always goes to a human
    True
    >>> policy({"steps": [{"action": "restart", "target": "db", "risk": "low"}]},
    ...        {"severity": "P3"}) is None
    True
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from pydantic import ValidationError

from durable_ir.errors import ConfigurationError, InvalidInput
from durable_ir.remediation.plan import RISKS, RemediationPlan, Risk
from durable_ir.severity import Severity, parse_severity

__all__ = ["AUTO_APPROVE_IDENTITY", "AutoApprove", "AutoApprovePolicy"]

AUTO_APPROVE_IDENTITY = "system:auto-approve"
"""Who the ledger says approved a plan the policy let through."""

AutoApprovePolicy = Callable[[Any, Any], str | None]
"""``policy(plan, state)``: a reason to approve without a human, or ``None`` to ask one."""


class AutoApprove:
    """Let low-risk plans through without a human.

    A plan is approved automatically when every step is at most ``max_risk``, the incident's
    severity is one of ``severities`` (P2 and P3 by default: P0 and P1 always ask), and — if
    ``actions`` is given — every step's action is one of them. Anything that does not parse as
    a :class:`~durable_ir.remediation.RemediationPlan` asks a human.
    """

    def __init__(
        self,
        *,
        max_risk: Risk = "read_only",
        severities: Collection[str] = ("P2", "P3"),
        actions: Collection[str] | None = None,
        severity_key: str = "severity",
    ) -> None:
        if max_risk not in RISKS:
            raise ConfigurationError(f"max_risk must be one of {RISKS}, got {max_risk!r}")
        try:
            self.severities: frozenset[Severity] = frozenset(parse_severity(s) for s in severities)
        except InvalidInput as exc:
            raise ConfigurationError(str(exc)) from None
        self.max_risk: Risk = max_risk
        self.actions = None if actions is None else frozenset(actions)
        self.severity_key = severity_key

    def __call__(self, plan: Any, state: Any) -> str | None:
        """A reason to approve ``plan`` without a human, or ``None``."""
        try:
            parsed = RemediationPlan.model_validate(plan)
        except ValidationError:
            return None
        raw = state.get(self.severity_key) if isinstance(state, Mapping) else None
        try:
            severity = parse_severity(raw)
        except InvalidInput:
            return None
        if severity not in self.severities:
            return None
        if RISKS.index(parsed.max_risk) > RISKS.index(self.max_risk):
            return None
        if self.actions is not None and any(s.action not in self.actions for s in parsed.steps):
            return None
        return f"every step is at most {self.max_risk} risk ({severity} incident)"
