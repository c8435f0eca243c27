"""``SlaPolicy`` windows and deadlines, ``parse_severity``, and ``FixedClock``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from durable_ir import ConfigurationError, FixedClock, InvalidInput, SlaPolicy
from durable_ir.severity import SEVERITIES, parse_severity
from durable_ir.sla import DEFAULT_WINDOWS

START = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)


def test_default_windows() -> None:
    policy = SlaPolicy()
    assert policy.window_for("P0") == timedelta(minutes=15)
    for severity in ("P1", "P2", "P3"):
        assert policy.window_for(severity) == timedelta(hours=2)
    assert dict(policy.windows) == {
        "P0": timedelta(minutes=15),
        "P1": timedelta(hours=2),
        "P2": timedelta(hours=2),
        "P3": timedelta(hours=2),
    }
    assert dict(DEFAULT_WINDOWS) == dict(policy.windows)


def test_default_deadlines() -> None:
    policy = SlaPolicy()
    assert policy.deadline_for("P0", START) == START + timedelta(seconds=900)
    assert policy.deadline_for("P3", START) == datetime(2026, 3, 1, 11, 30, 15, 123456, tzinfo=UTC)


def test_overrides_replace_only_the_severities_given() -> None:
    policy = SlaPolicy(windows={"P0": timedelta(minutes=5), "P2": timedelta(hours=8)})
    assert policy.window_for("P0") == timedelta(minutes=5)
    assert policy.window_for("P1") == timedelta(hours=2)
    assert policy.window_for("P2") == timedelta(hours=8)
    assert policy.window_for("P3") == timedelta(hours=2)
    assert policy.deadline_for("P2", START) == START + timedelta(hours=8)
    # The defaults themselves are untouched.
    assert SlaPolicy().window_for("P0") == timedelta(minutes=15)
    assert DEFAULT_WINDOWS["P2"] == timedelta(hours=2)


def test_policy_windows_are_read_only() -> None:
    given = {"P1": timedelta(minutes=30)}
    policy = SlaPolicy(windows=given)
    given["P1"] = timedelta(days=9)  # the caller's dict no longer matters
    assert policy.window_for("P1") == timedelta(minutes=30)
    with pytest.raises(TypeError):
        policy.windows["P1"] = timedelta(days=1)  # type: ignore[index]


@pytest.mark.parametrize("key", ["p0", " P0 ", "p0\n"])
def test_override_keys_are_case_insensitive(key: str) -> None:
    policy = SlaPolicy(windows={key: timedelta(minutes=1)})
    assert policy.window_for("P0") == timedelta(minutes=1)
    assert set(policy.windows) == set(SEVERITIES)


@pytest.mark.parametrize("severity", ["p1", "P1", " p1 ", "p1\t"])
def test_lookups_are_case_insensitive(severity: str) -> None:
    policy = SlaPolicy(windows={"P1": timedelta(minutes=42)})
    assert policy.window_for(severity) == timedelta(minutes=42)
    assert policy.deadline_for(severity, START) == START + timedelta(minutes=42)


@pytest.mark.parametrize("key", ["P4", "critical", "", "P", "P00", "sev1"])
def test_unknown_severity_keys_are_a_configuration_error(key: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        SlaPolicy(windows={key: timedelta(minutes=5)})
    message = str(caught.value)
    assert f"SLA window for {key!r}" in message
    assert "unknown severity" in message


@pytest.mark.parametrize(
    "window",
    [timedelta(0), timedelta(microseconds=-1), timedelta(minutes=-15)],
    ids=["zero", "minus-1us", "minus-15min"],
)
def test_non_positive_windows_are_a_configuration_error(window: timedelta) -> None:
    with pytest.raises(ConfigurationError, match="SLA window for P1 must be a positive timedelta"):
        SlaPolicy(windows={"p1": window})


@pytest.mark.parametrize("window", [900, 900.0, "15m", None, "PT15M"])
def test_non_timedelta_windows_are_a_configuration_error(window: Any) -> None:
    with pytest.raises(ConfigurationError) as caught:
        SlaPolicy(windows={"P0": window})
    assert "must be a positive timedelta" in str(caught.value)
    assert repr(window) in str(caught.value)


def test_smallest_positive_window_is_accepted() -> None:
    policy = SlaPolicy(windows={"P0": timedelta(microseconds=1)})
    assert policy.deadline_for("P0", START) == START + timedelta(microseconds=1)


def test_configuration_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        SlaPolicy(windows={"P9": timedelta(minutes=1)})


def test_deadline_override_replaces_the_window() -> None:
    policy = SlaPolicy(windows={"P0": timedelta(minutes=5)})
    assert policy.deadline_for("P0", START, override=timedelta(hours=6)) == START + timedelta(
        hours=6
    )
    assert policy.deadline_for("P3", START, override=timedelta(seconds=1)) == START + timedelta(
        seconds=1
    )
    # Without the override the policy's window still applies.
    assert policy.deadline_for("P0", START) == START + timedelta(minutes=5)


@pytest.mark.parametrize("override", [timedelta(0), timedelta(seconds=-1)])
def test_non_positive_override_is_refused(override: timedelta) -> None:
    with pytest.raises(InvalidInput, match="an approval window must be positive"):
        SlaPolicy().deadline_for("P1", START, override=override)


def test_deadline_keeps_the_time_zone_of_the_request() -> None:
    tz = timezone(timedelta(hours=5, minutes=30))
    requested = datetime(2026, 3, 1, 15, 0, tzinfo=tz)
    deadline = SlaPolicy().deadline_for("P0", requested)
    assert deadline == requested + timedelta(minutes=15)
    assert deadline - requested == timedelta(minutes=15)


@pytest.mark.parametrize("severity", ["P5", "high", "", None, 1, ["P1"]])
def test_unknown_severity_lookups_are_invalid_input(severity: Any) -> None:
    policy = SlaPolicy()
    with pytest.raises(InvalidInput, match="unknown severity"):
        policy.window_for(severity)
    with pytest.raises(InvalidInput, match="unknown severity"):
        policy.deadline_for(severity, START)


# --- parse_severity ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("P0", "P0"), ("p0", "P0"), (" p2 ", "P2"), ("P3\n", "P3"), ("p1", "P1")],
)
def test_parse_severity_normalises(value: str, expected: str) -> None:
    assert parse_severity(value) == expected


@pytest.mark.parametrize(
    "value", ["P4", "P-1", "", "   ", "0", "PP1", "P 1", None, 0, 1.0, b"P1", ["P1"], {"P1": 1}]
)
def test_parse_severity_refuses_anything_else(value: Any) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_severity(value)
    message = str(caught.value)
    assert f"unknown severity {value!r}" in message
    assert "expected one of P0, P1, P2, P3" in message


def test_severities_are_ordered_worst_first() -> None:
    assert SEVERITIES == ("P0", "P1", "P2", "P3")


# --- FixedClock -------------------------------------------------------------------------


def test_fixed_clock_stands_still_until_advanced() -> None:
    clock = FixedClock(START)
    assert clock() == START
    assert clock() == START
    assert clock.advance(minutes=5) == START + timedelta(minutes=5)
    assert clock() == START + timedelta(minutes=5)
    assert clock.advance(hours=1, seconds=30, microseconds=7) == START + timedelta(
        hours=1, minutes=5, seconds=30, microseconds=7
    )
    assert clock.advance() == clock()  # a zero step is allowed
    assert clock() == START + timedelta(hours=1, minutes=5, seconds=30, microseconds=7)


def test_fixed_clock_reports_utc() -> None:
    tz = timezone(timedelta(hours=-7))
    clock = FixedClock(datetime(2026, 3, 1, 2, 0, tzinfo=tz))
    now = clock()
    assert now == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    assert now.utcoffset() == timedelta(0)


def test_fixed_clock_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="aware datetime"):
        FixedClock(datetime(2026, 3, 1, 9, 30))


@pytest.mark.parametrize("step", [{"seconds": -1}, {"microseconds": -1}, {"days": -1, "hours": 23}])
def test_fixed_clock_refuses_to_go_backwards(step: dict[str, float]) -> None:
    clock = FixedClock(START)
    clock.advance(minutes=1)
    with pytest.raises(ValueError, match="does not go backwards"):
        clock.advance(**step)
    assert clock() == START + timedelta(minutes=1)  # unchanged by the refused step


def test_fixed_clock_refuses_unknown_units() -> None:
    clock = FixedClock(START)
    with pytest.raises(TypeError):
        clock.advance(fortnights=1)
    assert clock() == START
