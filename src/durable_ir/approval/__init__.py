"""The durable approval node around ``interrupt()``, and the request it pauses with.

Decisions enter through :meth:`durable_ir.Runtime.decide`, the one safe way to decide.

Example:
    >>> from durable_ir.approval import approval_node
    >>> approval_node(plan_key="remediation").plan_key
    'remediation'
"""

from durable_ir.approval.node import (
    ApprovalNode,
    ApprovalRoute,
    PlanValidator,
    RequestHook,
    approval_node,
)
from durable_ir.approval.policy import AUTO_APPROVE_IDENTITY, AutoApprove, AutoApprovePolicy
from durable_ir.approval.request import ApprovalRequest, build_request

__all__ = [
    "AUTO_APPROVE_IDENTITY",
    "ApprovalNode",
    "ApprovalRequest",
    "ApprovalRoute",
    "AutoApprove",
    "AutoApprovePolicy",
    "PlanValidator",
    "RequestHook",
    "approval_node",
    "build_request",
]
