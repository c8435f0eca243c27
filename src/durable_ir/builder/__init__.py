"""The full incident graph, assembled from replaceable parts.

Example:
    >>> from durable_ir.builder import IncidentGraphBuilder, SeverityRule
    >>> SeverityRule(severity="p0", service="payments").severity
    'P0'
"""

from durable_ir.builder.graph import IncidentGraphBuilder
from durable_ir.builder.nodes import IncidentNodes, check_alert
from durable_ir.builder.planning import Planner, RollbackRule, plan_from_hypothesis
from durable_ir.builder.state import EscalationReason, IncidentState, Outcome
from durable_ir.builder.triage import SeverityRule, Triager, TriageResult, triage_by_rules

__all__ = [
    "EscalationReason",
    "IncidentGraphBuilder",
    "IncidentNodes",
    "IncidentState",
    "Outcome",
    "Planner",
    "RollbackRule",
    "SeverityRule",
    "TriageResult",
    "Triager",
    "check_alert",
    "plan_from_hypothesis",
    "triage_by_rules",
]
