"""Alert intake: Alertmanager webhooks and the generic shape, and hostile input."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from durable_ir import InvalidInput
from durable_ir.alerts import parse_alert, parse_alertmanager, parse_generic
from support import strategies

WEBHOOK: dict[str, Any] = {
    "version": "4",
    "groupKey": '{}:{alertname="HighErrorRate"}',
    "status": "firing",
    "receiver": "durable-ir",
    "groupLabels": {"alertname": "HighErrorRate"},
    "commonLabels": {"alertname": "HighErrorRate", "severity": "critical", "team": "payments"},
    "commonAnnotations": {"summary": "5xx above 5%"},
    "externalURL": "http://alertmanager:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {"service": "checkout", "instance": "checkout-1"},
            "annotations": {"description": "5xx ratio 12% for 10m"},
            "startsAt": "2026-03-01T12:00:00.123Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": "c0ffee1234",
        },
        {
            "status": "firing",
            "labels": {"job": "payments", "severity": "warning"},
            "annotations": {"summary": "latency up"},
            "startsAt": "2026-03-01T12:01:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
        },
    ],
}


def test_an_alertmanager_webhook_becomes_typed_alerts() -> None:
    first, second = parse_alertmanager(WEBHOOK)
    assert (first.name, first.service, first.severity) == ("HighErrorRate", "checkout", "P0")
    assert first.fired_at.isoformat() == "2026-03-01T12:00:00.123000+00:00"
    assert first.description == "5xx ratio 12% for 10m" and first.fingerprint == "c0ffee1234"
    assert first.labels["team"] == "payments" and first.source == "alertmanager"
    assert (second.service, second.severity, second.description) == ("payments", "P2", "latency up")
    # No fingerprint given: one derived from name and labels, stable across calls.
    assert second.fingerprint == parse_alertmanager(WEBHOOK)[1].fingerprint
    assert parse_alert(WEBHOOK) == [first, second]


def test_the_generic_shape() -> None:
    (alert,) = parse_alert(
        {
            "name": "DiskFull",
            "service": "db",
            "severity": "p1",
            "fired_at": "2026-03-01T12:00:00+02:00",
            "labels": {"volume": "/data"},
        }
    )
    assert alert.severity == "P1" and alert.fired_at.hour == 10 and alert.source == "generic"
    same = parse_generic(
        {
            "name": "DiskFull",
            "service": "db",
            "fired_at": "2026-03-01T13:00:00Z",
            "labels": {"volume": "/data"},
        }
    )
    assert same.fingerprint == alert.fingerprint  # same alert, later firing: same fingerprint
    other = parse_generic(
        {
            "name": "DiskFull",
            "service": "db",
            "fired_at": "2026-03-01T13:00:00Z",
            "labels": {"volume": "/logs"},
        }
    )
    assert other.fingerprint != alert.fingerprint


def broken(change: Any) -> dict[str, Any]:
    payload = copy.deepcopy(WEBHOOK)
    change(payload)
    return payload


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"alerts": []}, "no alerts"),
        ("not json object", "must be a JSON object"),
        (broken(lambda p: p["alerts"][0]["labels"].update(service="x; rm -rf /")), "service"),
        (broken(lambda p: p["commonLabels"].pop("alertname")), "no 'alertname'"),
        (broken(lambda p: p["alerts"][1]["labels"].pop("job")), "has none of the labels"),
        (broken(lambda p: p["alerts"][0].update(startsAt="yesterday")), "fired_at"),
        (broken(lambda p: p["alerts"][0].update(startsAt="2026-03-01T12:00:00")), "timezone"),
        (broken(lambda p: p["commonLabels"].update(severity="apocalyptic")), "unknown severity"),
        (broken(lambda p: p["alerts"][0]["labels"].update(count=3)), "object of strings"),
        (broken(lambda p: p.update(alerts=[{"labels": {}}] * 1001)), "the limit is 1000"),
        ({"name": "X", "service": "api"}, "needs 'fired_at'"),
        (
            {"name": "X", "service": "api", "fired_at": "2026-03-01T12:00:00Z", "run": "rm"},
            "unknown alert fields",
        ),
        ({"name": "X" * 300, "service": "api", "fired_at": "2026-03-01T12:00:00Z"}, "name"),
    ],
)
def test_malformed_alerts_are_refused_clearly(payload: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_alert(payload)


json_values = strategies.json_values(max_leaves=20)
alert_like = st.fixed_dictionaries(
    {},
    optional={
        "name": json_values,
        "service": json_values,
        "severity": json_values,
        "fired_at": json_values | st.just("2026-03-01T12:00:00Z"),
        "labels": json_values,
        "alerts": st.lists(json_values, max_size=3),
        "description": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(payload=json_values | alert_like)
def test_arbitrary_json_is_parsed_or_refused_with_invalid_input(payload: Any) -> None:
    try:
        alerts = parse_alert(payload)
    except InvalidInput:
        return
    for alert in alerts:  # anything accepted is fully valid
        assert alert.severity in ("P0", "P1", "P2", "P3") and alert.fired_at.tzinfo is not None
        assert alert.name and alert.service and alert.fingerprint
