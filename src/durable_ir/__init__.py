"""durable-ir: incident-response agents on LangGraph whose human approvals, deadlines and
retries survive crashes, redeploys and races.

Example:
    >>> import durable_ir
    >>> durable_ir.Approve(by="alice").kind
    'approve'
"""

from typing import TYPE_CHECKING, Any

from durable_ir.alerts import Alert, parse_alert
from durable_ir.approval import (
    AUTO_APPROVE_IDENTITY,
    ApprovalNode,
    ApprovalRequest,
    AutoApprove,
    approval_node,
)
from durable_ir.approval.deciding import DecisionResult
from durable_ir.builder import IncidentGraphBuilder, IncidentState, SeverityRule, TriageResult
from durable_ir.clock import Clock, FixedClock, system_clock
from durable_ir.decisions import (
    Approve,
    Decision,
    Edit,
    Expire,
    Reject,
    parse_decision,
    validate_decision,
)
from durable_ir.errors import (
    ConfigurationError,
    Conflict,
    DecisionNotRecorded,
    DurableIRError,
    GraphVersionUnavailable,
    IncidentBusy,
    InvalidDecision,
    InvalidInput,
    NotFound,
    OwnershipLost,
)
from durable_ir.incident import IncidentSnapshot, IncidentStatus
from durable_ir.notifications import IncidentEvent, IncidentNotifier, send_once
from durable_ir.persistence import Store, open_store, parse_database_url
from durable_ir.rca_loop import RcaConfig, build_rca_loop, route_after_rca
from durable_ir.reconciliation import reconcile
from durable_ir.records import ApprovalRecord, ApprovalStatus, IncidentRecord, RunLease
from durable_ir.remediation import (
    AllowList,
    Executor,
    RemediationPlan,
    RemediationStep,
    StepAction,
    StepContext,
    StepResult,
    Verification,
    VerificationContext,
    Verifier,
)
from durable_ir.runtime import Intake, Runtime, open_runtime
from durable_ir.severity import SEVERITIES, Severity
from durable_ir.sla import Reminder, SlaMonitor, SlaPolicy, SweepReport

if TYPE_CHECKING:
    from durable_ir.postgres_saver import InlineSerdePostgresSaver

__version__ = "0.1.0"

__all__ = [
    "AUTO_APPROVE_IDENTITY",
    "SEVERITIES",
    "Alert",
    "AllowList",
    "ApprovalNode",
    "ApprovalRecord",
    "ApprovalRequest",
    "ApprovalStatus",
    "Approve",
    "AutoApprove",
    "Clock",
    "ConfigurationError",
    "Conflict",
    "Decision",
    "DecisionNotRecorded",
    "DecisionResult",
    "DurableIRError",
    "Edit",
    "Executor",
    "Expire",
    "FixedClock",
    "GraphVersionUnavailable",
    "IncidentBusy",
    "IncidentEvent",
    "IncidentGraphBuilder",
    "IncidentNotifier",
    "IncidentRecord",
    "IncidentSnapshot",
    "IncidentState",
    "IncidentStatus",
    "InlineSerdePostgresSaver",
    "Intake",
    "InvalidDecision",
    "InvalidInput",
    "NotFound",
    "OwnershipLost",
    "RcaConfig",
    "Reject",
    "RemediationPlan",
    "RemediationStep",
    "Reminder",
    "RunLease",
    "Runtime",
    "Severity",
    "SeverityRule",
    "SlaMonitor",
    "SlaPolicy",
    "StepAction",
    "StepContext",
    "StepResult",
    "Store",
    "SweepReport",
    "TriageResult",
    "Verification",
    "VerificationContext",
    "Verifier",
    "approval_node",
    "build_rca_loop",
    "open_runtime",
    "open_store",
    "parse_alert",
    "parse_database_url",
    "parse_decision",
    "reconcile",
    "route_after_rca",
    "send_once",
    "system_clock",
    "validate_decision",
]


def __getattr__(name: str) -> Any:
    # The PostgreSQL saver loads psycopg: only when asked for, so SQLite-only use never does.
    if name == "InlineSerdePostgresSaver":
        from durable_ir.postgres_saver import InlineSerdePostgresSaver

        return InlineSerdePostgresSaver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
