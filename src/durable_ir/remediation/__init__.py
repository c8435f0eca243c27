"""Remediation: typed plans, the allow-list that bounds them, and the executor protocol.

Example:
    >>> from durable_ir.remediation import AllowList
    >>> sorted(AllowList({"restart": "low"}).actions)
    ['restart']
"""

from durable_ir.remediation.allow_list import AllowList
from durable_ir.remediation.executor import (
    Executor,
    StepContext,
    StepResult,
    Verification,
    VerificationContext,
    Verifier,
)
from durable_ir.remediation.plan import RISKS, RemediationPlan, RemediationStep, Risk, StepAction
from durable_ir.remediation.suggest_only import SuggestOnlyExecutor

__all__ = [
    "RISKS",
    "AllowList",
    "Executor",
    "RemediationPlan",
    "RemediationStep",
    "Risk",
    "StepAction",
    "StepContext",
    "StepResult",
    "SuggestOnlyExecutor",
    "Verification",
    "VerificationContext",
    "Verifier",
]
