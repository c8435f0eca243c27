"""Decisions on an approval: :class:`Approve`, :class:`Edit`, :class:`Reject`, :class:`Expire`.

A decision names who took it (``by``); for people that identity comes from their credential,
for the system it starts with ``system:`` (``system:sla`` for the deadline monitor).
:func:`parse_decision` turns untrusted JSON into a decision or raises ``InvalidDecision``.

Example:
    >>> from durable_ir.decisions import parse_decision
    >>> parse_decision({"type": "reject", "by": "alice", "reason": "wrong service"})
    Reject(by='alice', reason='wrong service')
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from durable_ir.errors import InvalidDecision
from durable_ir.records import ApprovalStatus
from durable_ir.text import check_json_text, check_text

__all__ = [
    "ALERTMANAGER_IDENTITY",
    "ALERT_RESOLVED",
    "MAX_IDENTITY_CHARS",
    "MAX_PLAN_BYTES",
    "MAX_PLAN_DEPTH",
    "MAX_REASON_CHARS",
    "SYSTEM_PREFIX",
    "Approve",
    "Decision",
    "DecisionKind",
    "Edit",
    "Expire",
    "Reject",
    "json_depth",
    "parse_decision",
    "validate_decision",
]

DecisionKind = Literal["approve", "edit", "reject", "expire"]

SYSTEM_PREFIX = "system:"
ALERTMANAGER_IDENTITY = "system:alertmanager"
"""Who expires an approval whose incident's alert resolved (policy ``expire``)."""
ALERT_RESOLVED = "alert_resolved"
"""The reason recorded on such an expiry, and the outcome of the incident it closes."""
MAX_IDENTITY_CHARS = 200
MAX_REASON_CHARS = 4_000
MAX_PLAN_BYTES = 256 * 1024
MAX_PLAN_DEPTH = 32


def json_depth(value: object, limit: int = MAX_PLAN_DEPTH) -> int:
    """How deeply ``value`` nests lists and dicts, counted without recursion and without
    looking deeper than ``limit + 1`` levels (so hostile input costs little).

    Example:
        >>> json_depth({"steps": [{"action": "restart"}]})
        3
    """
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth > limit:
                return depth
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


@dataclass(frozen=True)
class Approve:
    """Approve the plan as requested.

    Example:
        >>> Approve(by="alice").kind
        'approve'
    """

    by: str
    reason: str | None = None
    kind: ClassVar[DecisionKind] = "approve"
    status: ClassVar[ApprovalStatus] = ApprovalStatus.APPROVED


@dataclass(frozen=True)
class Edit:
    """Approve a changed plan; the plan is validated like the original before it is recorded.

    Example:
        >>> Edit(by="alice", plan={"steps": []}).status.value
        'approved'
    """

    by: str
    plan: Any
    reason: str | None = None
    kind: ClassVar[DecisionKind] = "edit"
    status: ClassVar[ApprovalStatus] = ApprovalStatus.APPROVED


@dataclass(frozen=True)
class Reject:
    """Reject the plan; a reason is required.

    Example:
        >>> Reject(by="bob", reason="too risky").status.value
        'rejected'
    """

    by: str
    reason: str
    kind: ClassVar[DecisionKind] = "reject"
    status: ClassVar[ApprovalStatus] = ApprovalStatus.REJECTED


@dataclass(frozen=True)
class Expire:
    """The deadline passed: recorded by the system (``by`` must start with ``system:``).

    Example:
        >>> Expire(reason="deadline passed").by
        'system:sla'
    """

    reason: str
    by: str = "system:sla"
    kind: ClassVar[DecisionKind] = "expire"
    status: ClassVar[ApprovalStatus] = ApprovalStatus.EXPIRED


Decision = Approve | Edit | Reject | Expire
_KINDS: dict[str, type[Approve] | type[Edit] | type[Reject] | type[Expire]] = {
    "approve": Approve,
    "edit": Edit,
    "reject": Reject,
    "expire": Expire,
}


def _check_text(field: str, value: object, *, limit: int, required: bool) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str):
        raise InvalidDecision(f"{field} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise InvalidDecision(f"{field} must not be empty")
    if len(value) > limit:
        raise InvalidDecision(f"{field} is {len(value)} characters; the limit is {limit}")
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in value):
        raise InvalidDecision(f"{field} contains control characters")
    check_text(field, value, InvalidDecision)  # unpaired surrogates: not text on any backend


def validate_decision(decision: object) -> Decision:
    """Check a decision object's fields; return it unchanged or raise ``InvalidDecision``.

    Example:
        >>> validate_decision(Approve(by=""))
        Traceback (most recent call last):
        ...
        durable_ir.errors.InvalidDecision: decided_by must not be empty
    """
    if not isinstance(decision, Approve | Edit | Reject | Expire):
        raise InvalidDecision(
            f"a decision must be Approve, Edit, Reject or Expire, got {type(decision).__name__}"
        )
    _check_text("decided_by", decision.by, limit=MAX_IDENTITY_CHARS, required=True)
    _check_text(
        "reason",
        decision.reason,
        limit=MAX_REASON_CHARS,
        required=isinstance(decision, Reject | Expire),
    )
    if isinstance(decision, Expire) and not decision.by.startswith(SYSTEM_PREFIX):
        raise InvalidDecision(f"only the system may expire an approval (by={decision.by!r})")
    if not isinstance(decision, Expire) and decision.by.startswith(SYSTEM_PREFIX):
        # The audit trail must tell people from the system: system:* approvals are written
        # only by durable-ir itself (the auto-approve policy), never through decide().
        raise InvalidDecision(
            f"{decision.by!r} is reserved for the system; a {decision.kind} needs a person"
        )
    if isinstance(decision, Edit):
        if decision.plan is None:
            raise InvalidDecision("an edit needs the edited plan")
        depth = json_depth(decision.plan)
        if depth > MAX_PLAN_DEPTH:
            raise InvalidDecision(
                f"the edited plan is nested {depth} levels deep; the limit is {MAX_PLAN_DEPTH}"
            )
        try:
            size = len(json.dumps(decision.plan, allow_nan=False).encode())
        except (TypeError, ValueError, RecursionError) as exc:
            raise InvalidDecision(f"the edited plan is not JSON: {exc}") from None
        if size > MAX_PLAN_BYTES:
            raise InvalidDecision(f"the edited plan is {size} bytes; the limit is {MAX_PLAN_BYTES}")
        check_json_text("the edited plan", decision.plan, InvalidDecision)
    return decision


def parse_decision(data: object) -> Decision:
    """Build a decision from untrusted JSON-like data, or raise ``InvalidDecision``.

    Accepted shape: ``{"type": "approve" | "edit" | "reject" | "expire", "by": str,
    "reason"?: str, "plan"?: any}``; unknown keys are refused.

    Example:
        >>> parse_decision({"type": "approve", "by": "alice"})
        Approve(by='alice', reason=None)
    """
    if not isinstance(data, dict):
        raise InvalidDecision(f"a decision must be a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise InvalidDecision(f"decision type must be one of {sorted(_KINDS)}, got {kind!r}")
    allowed = {"type", "by", "reason"} | ({"plan"} if kind == "edit" else set())
    unknown = set(data) - allowed
    if unknown:
        raise InvalidDecision(f"unknown fields in a {kind} decision: {sorted(map(str, unknown))}")
    fields = {k: v for k, v in data.items() if k != "type"}
    if "by" not in fields:
        raise InvalidDecision("a decision needs 'by', the identity of who decided")
    try:
        decision = _KINDS[kind](**fields)
    except TypeError as exc:
        raise InvalidDecision(f"malformed {kind} decision: {exc}") from None
    return validate_decision(decision)
