"""``parse_decision`` / ``validate_decision``: untrusted JSON in, a valid decision or
``InvalidDecision`` out."""

from __future__ import annotations

import dataclasses
import json
import math
import unicodedata
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durable_ir import InvalidDecision, InvalidInput
from durable_ir.decisions import (
    MAX_IDENTITY_CHARS,
    MAX_PLAN_BYTES,
    MAX_PLAN_DEPTH,
    MAX_REASON_CHARS,
    SYSTEM_PREFIX,
    Approve,
    Edit,
    Expire,
    Reject,
    json_depth,
    parse_decision,
    validate_decision,
)
from durable_ir.records import ApprovalStatus
from support import strategies

KIND_CLASSES: dict[str, type[Any]] = {
    "approve": Approve,
    "edit": Edit,
    "reject": Reject,
    "expire": Expire,
}
PLAN = {"steps": [{"action": "rollback", "target": "api"}]}


def as_json(decision: Any) -> dict[str, Any]:
    """The JSON shape ``parse_decision`` accepts for ``decision``."""
    return {"type": decision.kind, **dataclasses.asdict(decision)}


# --- every kind round-trips -------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected", "status"),
    [
        ({"type": "approve", "by": "alice"}, Approve(by="alice"), ApprovalStatus.APPROVED),
        (
            {"type": "approve", "by": "alice", "reason": "looks right"},
            Approve(by="alice", reason="looks right"),
            ApprovalStatus.APPROVED,
        ),
        (
            {"type": "edit", "by": "bob", "plan": PLAN, "reason": "scale instead"},
            Edit(by="bob", plan=PLAN, reason="scale instead"),
            ApprovalStatus.APPROVED,
        ),
        (
            {"type": "reject", "by": "carol", "reason": "wrong service"},
            Reject(by="carol", reason="wrong service"),
            ApprovalStatus.REJECTED,
        ),
        (
            {"type": "expire", "by": "system:sla", "reason": "deadline passed"},
            Expire(reason="deadline passed"),
            ApprovalStatus.EXPIRED,
        ),
        (
            {"type": "expire", "by": "system:oncall-bot", "reason": "shift ended"},
            Expire(reason="shift ended", by="system:oncall-bot"),
            ApprovalStatus.EXPIRED,
        ),
    ],
    ids=["approve", "approve-reason", "edit", "reject", "expire-sla", "expire-other-system"],
)
def test_every_kind_round_trips(
    data: dict[str, Any], expected: Any, status: ApprovalStatus
) -> None:
    parsed = parse_decision(data)
    assert parsed == expected
    assert type(parsed) is type(expected)
    assert parsed.kind == data["type"]
    assert parsed.status is status
    # Back to JSON and parsed again: the same decision.
    again = parse_decision(json.loads(json.dumps(as_json(parsed))))
    assert again == parsed
    assert validate_decision(parsed) is parsed


def test_edit_keeps_the_plan_it_was_given() -> None:
    plan = {"steps": [{"action": "scale", "target": "api", "replicas": 6}], "note": "é ✓"}
    parsed = parse_decision({"type": "edit", "by": "dana", "plan": plan})
    assert isinstance(parsed, Edit)
    assert parsed.plan == plan
    assert parsed.reason is None


@pytest.mark.parametrize("plan", [[], 0, False, "", "restart api", {"steps": []}])
def test_edit_accepts_any_json_plan_that_is_not_null(plan: Any) -> None:
    parsed = parse_decision({"type": "edit", "by": "dana", "plan": plan})
    assert isinstance(parsed, Edit)
    assert parsed.plan == plan and type(parsed.plan) is type(plan)


def test_newline_and_tab_are_allowed_in_a_reason() -> None:
    parsed = parse_decision({"type": "reject", "by": "erin", "reason": "line 1\n\tline 2"})
    assert parsed.reason == "line 1\n\tline 2"


def test_limits_are_inclusive() -> None:
    by = "a" * MAX_IDENTITY_CHARS
    reason = "r" * MAX_REASON_CHARS
    parsed = parse_decision({"type": "reject", "by": by, "reason": reason})
    assert (parsed.by, parsed.reason) == (by, reason)
    plan = "x" * (MAX_PLAN_BYTES - 2)  # json.dumps adds the two quotes
    assert len(json.dumps(plan).encode()) == MAX_PLAN_BYTES
    assert parse_decision({"type": "edit", "by": "a", "plan": plan}).plan == plan


# --- refusals, each naming its problem --------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"type": "approve"}, "'by'"),
        ({"type": "reject", "reason": "no"}, "'by'"),
        ({"type": "approve", "by": ""}, "decided_by must not be empty"),
        ({"type": "approve", "by": "   \t\n"}, "decided_by must not be empty"),
        ({"type": "approve", "by": None}, "decided_by must be a string, got NoneType"),
        ({"type": "approve", "by": 42}, "decided_by must be a string, got int"),
        ({"type": "approve", "by": ["alice"]}, "decided_by must be a string, got list"),
        (
            {"type": "approve", "by": "a" * (MAX_IDENTITY_CHARS + 1)},
            f"decided_by is {MAX_IDENTITY_CHARS + 1} characters; the limit is {MAX_IDENTITY_CHARS}",
        ),
        (
            {"type": "reject", "by": "a", "reason": "r" * (MAX_REASON_CHARS + 1)},
            f"reason is {MAX_REASON_CHARS + 1} characters; the limit is {MAX_REASON_CHARS}",
        ),
        ({"type": "approve", "by": "ali\x00ce"}, "decided_by contains control characters"),
        ({"type": "approve", "by": "\x1b[31malice"}, "decided_by contains control characters"),
        ({"type": "approve", "by": "alice\x7f"}, "decided_by contains control characters"),
        ({"type": "approve", "by": "alice\x85"}, "decided_by contains control characters"),
        (
            {"type": "reject", "by": "a", "reason": "ok\r\nSet-Cookie: x"},
            "reason contains control characters",
        ),
        (
            {"type": "approve", "by": "a", "reason": "bell\x07"},
            "reason contains control characters",
        ),
        ({"type": "approve", "by": "a", "reason": ""}, "reason must not be empty"),
        ({"type": "approve", "by": "a", "reason": 3}, "reason must be a string, got int"),
        ({"type": "reject", "by": "bob"}, "reason"),
        ({"type": "reject", "by": "bob", "reason": None}, "reason must be a string"),
        ({"type": "reject", "by": "bob", "reason": "  "}, "reason must not be empty"),
        ({"type": "expire", "by": "system:sla"}, "reason"),
        (
            {"type": "expire", "by": "alice", "reason": "late"},
            "only the system may expire an approval (by='alice')",
        ),
        (
            {"type": "expire", "by": "System:sla", "reason": "late"},
            "only the system may expire",
        ),
        (
            {"type": "expire", "by": " system:sla", "reason": "late"},
            "only the system may expire",
        ),
        (
            {"type": "approve", "by": "a", "extra": 1},
            "unknown fields in a approve decision: ['extra']",
        ),
        ({"type": "approve", "by": "a", "plan": PLAN}, "unknown fields in a approve decision"),
        ({"type": "reject", "by": "a", "reason": "r", "plan": PLAN}, "['plan']"),
        ({"type": "approve", "by": "a", "kind": "edit"}, "['kind']"),
        ({"type": "approve", "by": "a", "status": "approved"}, "['status']"),
        ({"type": "edit", "by": "a"}, "plan"),
        ({"type": "edit", "by": "a", "plan": None}, "an edit needs the edited plan"),
        ({"by": "a"}, "decision type must be one of"),
        ({"type": "APPROVE", "by": "a"}, "got 'APPROVE'"),
        ({"type": "approve ", "by": "a"}, "got 'approve '"),
        ({"type": "approved", "by": "a"}, "got 'approved'"),
        ({"type": None, "by": "a"}, "got None"),
        ({"type": ["approve"], "by": "a"}, "got ['approve']"),
        ({"type": 1, "by": "a"}, "got 1"),
    ],
)
def test_invalid_decisions_are_refused_with_a_message_naming_the_problem(
    data: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(InvalidDecision) as caught:
        parse_decision(data)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("data", "type_name"),
    [
        (None, "NoneType"),
        ("approve", "str"),
        (["approve", "alice"], "list"),
        ([{"type": "approve", "by": "alice"}], "list"),
        (1, "int"),
        (True, "bool"),
        (1.5, "float"),
    ],
)
def test_non_objects_are_refused(data: Any, type_name: str) -> None:
    with pytest.raises(InvalidDecision, match=f"must be a JSON object, got {type_name}"):
        parse_decision(data)


@pytest.mark.parametrize(
    ("plan", "fragment"),
    [
        ({"a", "b"}, "not JSON"),
        ({"steps": [{1, 2}]}, "not JSON"),
        (float("nan"), "not JSON"),
        ({"ratio": float("inf")}, "not JSON"),
        ([float("-inf")], "not JSON"),
        (object(), "not JSON"),
        (b"bytes", "not JSON"),
    ],
    ids=["set", "nested-set", "nan", "inf", "-inf", "object", "bytes"],
)
def test_non_json_plans_are_refused(plan: Any, fragment: str) -> None:
    with pytest.raises(InvalidDecision, match="the edited plan is not JSON"):
        parse_decision({"type": "edit", "by": "a", "plan": plan})
    with pytest.raises(InvalidDecision, match=fragment):
        validate_decision(Edit(by="a", plan=plan))


def test_oversized_plan_is_refused_with_its_size() -> None:
    plan = "x" * (MAX_PLAN_BYTES - 1)  # MAX_PLAN_BYTES + 1 bytes once quoted
    with pytest.raises(InvalidDecision) as caught:
        parse_decision({"type": "edit", "by": "a", "plan": plan})
    assert str(caught.value) == (
        f"the edited plan is {MAX_PLAN_BYTES + 1} bytes; the limit is {MAX_PLAN_BYTES}"
    )
    big = {"steps": [{"action": "scale", "target": "x" * 1000}] * 300}
    with pytest.raises(InvalidDecision, match="bytes; the limit is"):
        parse_decision({"type": "edit", "by": "a", "plan": big})


def test_invalid_decision_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        parse_decision({"type": "approve"})
    with pytest.raises(ValueError):  # InvalidInput is a ValueError too
        parse_decision({"type": "approve"})


def _nested_lists(depth: int) -> Any:
    """A plan that nests lists ``depth`` levels deep (``[]`` is one level)."""
    plan: Any = []
    for _ in range(depth - 1):
        plan = [plan]
    return plan


def test_plan_nesting_limit_is_inclusive() -> None:
    assert json_depth(_nested_lists(MAX_PLAN_DEPTH)) == MAX_PLAN_DEPTH
    plan = _nested_lists(MAX_PLAN_DEPTH)
    assert parse_decision({"type": "edit", "by": "a", "plan": plan}).plan == plan


@pytest.mark.parametrize("depth", [MAX_PLAN_DEPTH + 1, 1_000, 5_000, 100_000])
def test_deeply_nested_plans_are_refused_as_invalid_decisions(depth: int) -> None:
    with pytest.raises(InvalidDecision) as caught:
        parse_decision({"type": "edit", "by": "a", "plan": _nested_lists(depth)})
    assert f"the limit is {MAX_PLAN_DEPTH}" in str(caught.value)
    assert "nested" in str(caught.value)


def test_deeply_nested_objects_are_refused_too() -> None:
    plan: Any = {"leaf": 1}
    for _ in range(10_000):
        plan = {"steps": [plan]}
    with pytest.raises(InvalidDecision, match="nested"):
        validate_decision(Edit(by="a", plan=plan))


@pytest.mark.parametrize(
    ("value", "depth"),
    [(1, 0), ("x", 0), (None, 0), ([], 1), ({}, 1), ({"a": [1, {"b": []}]}, 4), ([[], [[]]], 3)],
)
def test_json_depth(value: Any, depth: int) -> None:
    assert json_depth(value) == depth


# --- validate_decision on objects -------------------------------------------------------


@pytest.mark.parametrize(
    ("decision", "fragment"),
    [
        (Approve(by=""), "decided_by must not be empty"),
        (Approve(by="a", reason=" "), "reason must not be empty"),
        (Reject(by="a", reason=""), "reason must not be empty"),
        (Reject(by="a", reason=None), "reason must be a string"),  # type: ignore[arg-type]
        (Expire(reason="late", by="mallory"), "only the system may expire"),
        (Expire(reason=""), "reason must not be empty"),
        (Edit(by="a", plan=None), "an edit needs the edited plan"),
        (Edit(by="a\x00", plan=PLAN), "decided_by contains control characters"),
        ({"type": "approve", "by": "a"}, "got dict"),
        ("approve", "got str"),
        (None, "got NoneType"),
    ],
)
def test_validate_decision_refuses_bad_objects(decision: Any, fragment: str) -> None:
    with pytest.raises(InvalidDecision) as caught:
        validate_decision(decision)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    "decision",
    [
        Approve(by="alice"),
        Edit(by="alice", plan=PLAN),
        Reject(by="bob", reason="no"),
        Expire(reason="deadline passed"),
        Expire(reason="x", by=SYSTEM_PREFIX + "janitor"),
    ],
)
def test_validate_decision_returns_valid_objects_unchanged(decision: Any) -> None:
    assert validate_decision(decision) is decision


@pytest.mark.parametrize(
    "decision",
    [
        Approve(by="system:auto-approve"),
        Edit(by="system:", plan=PLAN),
        Reject(by="system:sla", reason="impersonating the monitor"),
    ],
)
def test_system_identities_are_reserved_for_the_system(decision: Any) -> None:
    with pytest.raises(InvalidDecision, match="reserved for the system"):
        validate_decision(decision)


# --- properties -------------------------------------------------------------------------

JSON_SCALARS = strategies.json_scalars()
JSON_VALUES = strategies.json_values()
KIND_NAMES = ["approve", "edit", "reject", "expire"]
# Values that make near-misses likely: right and wrong kinds, system and human identities,
# whitespace, control characters and over-long text.
INTERESTING_TEXT = st.sampled_from(
    [
        *KIND_NAMES,
        "Approve",
        "approve ",
        "approved",
        "alice",
        "system:sla",
        "system:",
        "",
        " ",
        "\n",
        "bob\x00",
        "carol\x1b",
        "x" * (MAX_IDENTITY_CHARS + 1),
    ]
)
PLAIN_TEXT = st.text(
    alphabet=st.characters(categories=["L", "N", "P", "Zs"]), min_size=1, max_size=12
)
IDENTITIES = INTERESTING_TEXT | PLAIN_TEXT | PLAIN_TEXT.map(lambda s: SYSTEM_PREFIX + s)
FIELD_VALUES = INTERESTING_TEXT | st.text(max_size=12) | JSON_VALUES
FIELD_NAMES = st.sampled_from(["type", "by", "reason", "plan", "extra"]) | st.text(max_size=5)
DECISION_LIKE = st.dictionaries(FIELD_NAMES, FIELD_VALUES, max_size=5)
NEAR_VALID = st.one_of(
    *(
        st.fixed_dictionaries(
            {"type": st.just(kind), "by": IDENTITIES},
            optional={
                "reason": IDENTITIES | st.none() | JSON_SCALARS,
                **({"plan": JSON_VALUES} if kind == "edit" else {}),
            },
        )
        for kind in KIND_NAMES
    )
)
ANY_INPUT = JSON_VALUES | DECISION_LIKE | NEAR_VALID


def _assert_valid_text(value: object, limit: int) -> None:
    assert isinstance(value, str)
    assert value.strip()
    assert len(value) <= limit
    assert not any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in value)


def test_parse_decision_returns_only_valid_decisions_and_approvals_only_when_asked() -> None:
    outcomes: Counter[str] = Counter()

    @settings(
        max_examples=600,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(ANY_INPUT)
    def check(data: Any) -> None:
        try:
            decision = parse_decision(data)
        except InvalidDecision:
            outcomes["refused"] += 1
            return
        assert isinstance(data, dict)
        assert type(decision) is KIND_CLASSES[data["type"]]
        assert set(data) <= {"type", "by", "reason", "plan"}
        assert decision.by == data["by"]
        assert decision.reason == data.get("reason")
        _assert_valid_text(decision.by, MAX_IDENTITY_CHARS)
        if decision.reason is not None or isinstance(decision, Reject | Expire):
            _assert_valid_text(decision.reason, MAX_REASON_CHARS)
        if isinstance(decision, Approve | Edit):
            # Never an approval unless exactly asked for, by someone.
            assert data["type"] in ("approve", "edit")
            assert isinstance(data["by"], str) and data["by"].strip()
            assert decision.status is ApprovalStatus.APPROVED
            outcomes["approval"] += 1
        if isinstance(decision, Edit):
            assert decision.plan is not None
            assert decision.plan == data["plan"]
            encoded = json.dumps(decision.plan, allow_nan=False).encode()
            assert len(encoded) <= MAX_PLAN_BYTES
            assert json_depth(decision.plan) <= MAX_PLAN_DEPTH
        else:
            assert "plan" not in data
        # Only the system expires, and the system never approves, edits or rejects.
        assert decision.by.startswith(SYSTEM_PREFIX) == isinstance(decision, Expire)
        if isinstance(decision, Expire):
            outcomes["expire"] += 1
        if isinstance(decision, Reject):
            outcomes["reject"] += 1
        assert validate_decision(decision) is decision
        outcomes["accepted"] += 1

    check()
    # The property is not vacuous: both branches, and every kind of outcome, were exercised.
    assert outcomes["refused"] > 0
    assert outcomes["approval"] > 0
    assert outcomes["reject"] > 0
    assert outcomes["expire"] > 0


def _has_valid_type(data: Any) -> bool:
    return (
        isinstance(data, dict) and isinstance(data.get("type"), str) and data["type"] in KIND_NAMES
    )


WITHOUT_VALID_TYPE = (
    JSON_VALUES
    | DECISION_LIKE
    | st.builds(
        lambda base, kind: {**base, "type": kind},
        NEAR_VALID,
        INTERESTING_TEXT.filter(lambda s: s not in KIND_NAMES) | JSON_VALUES,
    )
    | NEAR_VALID.map(lambda d: {k: v for k, v in d.items() if k != "type"})
).filter(lambda data: not _has_valid_type(data))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(WITHOUT_VALID_TYPE)
def test_json_without_a_valid_type_is_always_refused(data: Any) -> None:
    with pytest.raises(InvalidDecision):
        parse_decision(data)


@settings(max_examples=100, deadline=None)
@given(JSON_VALUES, st.sampled_from([math.nan, math.inf, -math.inf]))
def test_non_finite_numbers_anywhere_in_a_plan_are_refused(plan: Any, value: float) -> None:
    with pytest.raises(InvalidDecision, match="not JSON"):
        parse_decision({"type": "edit", "by": "a", "plan": {"steps": [plan, {"weight": value}]}})
