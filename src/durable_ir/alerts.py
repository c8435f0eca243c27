"""Alert intake: Prometheus Alertmanager webhooks and a documented generic JSON shape, parsed
into a typed :class:`Alert`. Malformed input raises ``InvalidInput`` naming the problem.

The generic shape::

    {"name": "HighErrorRate", "service": "checkout", "severity": "P1",
     "fired_at": "2026-03-01T12:00:00Z", "description": "5xx above 5%",
     "labels": {"team": "payments"}, "fingerprint": "optional-stable-id"}

Severity labels map ``P0``–``P3`` as they are, and ``critical``/``error``/``warning``/``info``
to P0/P1/P2/P3 (the inverse of the PagerDuty mapping). The fingerprint identifies "the same
alert" for deduplication: Alertmanager's own, else a hash of the alert's name and labels.

Example:
    >>> alert = parse_generic({"name": "DiskFull", "service": "db", "severity": "warning",
    ...                        "fired_at": "2026-03-01T12:00:00Z"})
    >>> alert.severity, alert.fired_at.isoformat(), len(alert.fingerprint)
    ('P2', '2026-03-01T12:00:00+00:00', 32)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from durable_ir.clock import UtcDatetime
from durable_ir.errors import InvalidInput
from durable_ir.severity import SEVERITIES, Severity
from durable_ir.text import check_json_text

__all__ = [
    "LINK_ANNOTATIONS",
    "MAX_ALERTS_PER_WEBHOOK",
    "Alert",
    "ParsedWebhook",
    "RefusedAlert",
    "check_alert",
    "parse_alert",
    "parse_alertmanager",
    "parse_generic",
    "parse_webhook",
    "safe_url",
]

MAX_ALERTS_PER_WEBHOOK = 1_000
_SEVERITY_WORDS: dict[str, Severity] = {
    "critical": "P0",
    "page": "P0",
    "error": "P1",
    "major": "P1",
    "high": "P1",
    "warning": "P2",
    "minor": "P2",
    "medium": "P2",
    "info": "P3",
    "low": "P3",
}
_SERVICE_LABELS = ("service", "app", "job", "namespace")
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"
_TEXT_FIELDS = {"name", "service", "description", "labels", "fingerprint", "group_key", "links"}
LINK_ANNOTATIONS: dict[str, str] = {
    "runbook_url": "runbook",
    "runbook": "runbook",
    "dashboard": "dashboard",
    "dashboard_url": "dashboard",
    "grafana_url": "dashboard",
}
"""Annotations kept as links (annotation name → link name); ``generatorURL`` becomes the
``source`` link. Only ``http``/``https`` URLs are kept."""
_MAX_URL = 2_000
_NOT_IN_URLS = frozenset('<>"`{}|\\^')
"""Characters RFC 3986 never allows unencoded in a URL (and that break out of HTML
attributes or Slack's ``<url|text>``)."""


def safe_url(value: object) -> str | None:
    """``value`` if it is an absolute ``http(s)`` URL without spaces, control characters or
    characters URLs never hold unencoded (``<>"`{}|\\^``), else ``None``
    (``javascript:``, ``data:`` and the like are never kept).

    Example:
        >>> safe_url("https://runbooks.example/disk"), safe_url("javascript:alert(1)")
        ('https://runbooks.example/disk', None)
    """
    if not isinstance(value, str) or not value or len(value) > _MAX_URL:
        return None
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest or rest[0] in "/\\":
        return None
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 or ch in _NOT_IN_URLS for ch in value):
        return None
    return value


class Alert(BaseModel):
    """One alert, whatever its source."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    service: str = Field(min_length=1, max_length=200, pattern=_NAME_PATTERN)
    severity: Severity
    fired_at: UtcDatetime
    description: str = Field(default="", max_length=4_000)
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)
    fingerprint: str = Field(min_length=1, max_length=128)
    status: Literal["firing", "resolved"] = "firing"
    source: Literal["alertmanager", "generic"] = "generic"
    group_key: str | None = Field(default=None, max_length=2_000)
    """Alertmanager's ``groupKey`` of the webhook that carried the alert."""
    links: dict[str, str] = Field(default_factory=dict, max_length=8)
    """``runbook``, ``dashboard``, ``source`` (``generatorURL``): http(s) URLs only."""

    @field_validator("links")
    @classmethod
    def _http_links(cls, links: dict[str, str]) -> dict[str, str]:
        for key, url in links.items():
            if not key or len(key) > 40 or safe_url(url) is None:
                raise ValueError(f"link {key[:40]!r} is not an http(s) URL")
        return links

    @field_validator("labels")
    @classmethod
    def _bounded_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key, value in labels.items():
            if not key or len(key) > 100 or len(value) > 1_000:
                raise ValueError(f"label {key[:40]!r} is empty or too long")
        return labels

    @model_validator(mode="after")
    def _storable(self) -> Alert:
        # An Alert built directly (not parsed) holds only text every backend stores.
        check_json_text("alert", self.model_dump(include=_TEXT_FIELDS))
        return self

    def as_state(self) -> dict[str, Any]:
        """The alert as JSON, for graph state."""
        return self.model_dump(mode="json")


def _severity(value: object) -> Severity:
    text = str(value).strip() if value is not None else ""
    if text.upper() in SEVERITIES:
        return text.upper()  # type: ignore[return-value]
    if text.lower() in _SEVERITY_WORDS:
        return _SEVERITY_WORDS[text.lower()]
    raise InvalidInput(f"unknown severity {text[:40]!r}: use P0–P3 or critical/error/warning/info")


def _fingerprint(name: str, service: object, labels: dict[str, str]) -> str:
    canonical = json.dumps({"name": name, "service": service, "labels": labels}, sort_keys=True)
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


def _build(**fields: Any) -> Alert:
    try:
        return Alert(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "alert"
        raise InvalidInput(f"invalid alert: {where}: {first['msg']}") from None


def _text_map(value: object, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidInput(f"{what} must be an object of strings")
    return dict(value)


def _storable(payload: object) -> None:
    """Refuse a payload with a NUL character or an unpaired surrogate anywhere — in a field,
    a label, a key, even one that is not kept — before anything else looks at it: every
    backend then answers alike (see :mod:`durable_ir.text`)."""
    check_json_text("alert", payload)


def parse_generic(payload: object) -> Alert:
    """Parse the generic JSON shape (see the module doc)."""
    if not isinstance(payload, dict):
        raise InvalidInput(f"an alert must be a JSON object, got {type(payload).__name__}")
    _storable(payload)
    known = {
        "name",
        "service",
        "severity",
        "fired_at",
        "description",
        "labels",
        "fingerprint",
        "status",
    }
    unknown = set(payload) - known
    if unknown:
        raise InvalidInput(f"unknown alert fields: {sorted(map(str, unknown))[:10]}")
    for required in ("name", "service", "fired_at"):
        if required not in payload:
            raise InvalidInput(f"an alert needs {required!r}")
    labels = _text_map(payload.get("labels"), "labels")
    name = payload["name"]
    if not isinstance(name, str):
        raise InvalidInput("an alert's name must be a string")
    return _build(
        name=name,
        service=payload["service"],
        severity=_severity(payload.get("severity", "P2")),
        fired_at=payload["fired_at"],
        description=payload.get("description", ""),
        labels=labels,
        fingerprint=payload.get("fingerprint") or _fingerprint(name, payload["service"], labels),
        status=payload.get("status", "firing"),
        source="generic",
    )


@dataclass(frozen=True)
class RefusedAlert:
    """An alert of a webhook that was refused: its ``index`` in the webhook's ``alerts``
    (from 0), its ``fingerprint`` if it had one, and why."""

    index: int
    fingerprint: str | None
    reason: str


@dataclass(frozen=True)
class ParsedWebhook:
    """A webhook's alerts, each accepted (``(index, alert)``) or refused on its own."""

    alerts: list[tuple[int, Alert]]
    refused: list[RefusedAlert]


def _links(annotations: dict[str, str], generator: object) -> dict[str, str]:
    links: dict[str, str] = {}
    for annotation, name in LINK_ANNOTATIONS.items():
        url = safe_url(annotations.get(annotation))
        if url is not None and name not in links:
            links[name] = url
    source = safe_url(generator)
    if source is not None:
        links["source"] = source
    return links


def _webhook_alert(item: object, common: dict[str, str], group_key: str | None) -> Alert:
    if not isinstance(item, dict):
        raise InvalidInput("the alert is not an object")
    labels = {**common, **_text_map(item.get("labels"), "labels")}
    annotations = _text_map(item.get("annotations"), "annotations")
    name = labels.get("alertname")
    if not name:
        raise InvalidInput("the alert has no 'alertname' label")
    service = next((labels[k] for k in _SERVICE_LABELS if labels.get(k)), None)
    if service is None:
        raise InvalidInput(f"{name} has none of the labels {', '.join(_SERVICE_LABELS)}")
    fingerprint = item.get("fingerprint") or _fingerprint(name, service, labels)
    return _build(
        name=name,
        service=service,
        severity=_severity(labels.get("severity", "P2")),
        fired_at=item.get("startsAt"),
        description=annotations.get("description") or annotations.get("summary", ""),
        labels=labels,
        fingerprint=fingerprint,
        status=item.get("status", "firing"),
        source="alertmanager",
        group_key=group_key,
        links=_links(annotations, item.get("generatorURL")),
    )


def parse_webhook(payload: object) -> ParsedWebhook:
    """Parse an Alertmanager webhook (``version`` 4) alert by alert: a malformed alert is
    refused on its own (:class:`RefusedAlert`), its neighbours are kept. A body that is not a
    webhook at all (no ``alerts`` list, none, too many, unstorable text, a malformed
    ``commonLabels``) raises ``InvalidInput``.

    Example:
        >>> parsed = parse_webhook({"groupKey": "{}:{alertname=\\"X\\"}", "alerts": [
        ...     {"labels": {"alertname": "X", "service": "api"},
        ...      "startsAt": "2026-03-01T12:00:00Z",
        ...      "annotations": {"runbook_url": "https://runbooks.example/x"}},
        ...     {"labels": {"alertname": "Y"}, "startsAt": "2026-03-01T12:00:00Z"}]})
        >>> [(i, a.links) for i, a in parsed.alerts]
        [(0, {'runbook': 'https://runbooks.example/x'})]
        >>> [(r.index, r.reason) for r in parsed.refused]
        [(1, 'Y has none of the labels service, app, job, namespace')]
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise InvalidInput("an Alertmanager webhook is an object with an 'alerts' list")
    _storable(payload)
    items = payload["alerts"]
    if not items:
        raise InvalidInput("the webhook carries no alerts")
    if len(items) > MAX_ALERTS_PER_WEBHOOK:
        raise InvalidInput(
            f"{len(items)} alerts in one webhook; the limit is {MAX_ALERTS_PER_WEBHOOK}"
        )
    common = _text_map(payload.get("commonLabels"), "commonLabels")
    group = payload.get("groupKey")
    group_key = group if isinstance(group, str) and group else None
    accepted: list[tuple[int, Alert]] = []
    refused: list[RefusedAlert] = []
    for index, item in enumerate(items):
        try:
            accepted.append((index, _webhook_alert(item, common, group_key)))
        except InvalidInput as exc:
            given = item.get("fingerprint") if isinstance(item, dict) else None
            fingerprint = given if isinstance(given, str) and 0 < len(given) <= 128 else None
            refused.append(RefusedAlert(index, fingerprint, str(exc)))
    return ParsedWebhook(accepted, refused)


def parse_alertmanager(payload: object) -> list[Alert]:
    """Parse an Alertmanager webhook (``version`` 4) into its alerts, all or nothing: the
    first malformed alert raises ``InvalidInput`` (:func:`parse_webhook` keeps the others)."""
    parsed = parse_webhook(payload)
    if parsed.refused:
        first = parsed.refused[0]
        raise InvalidInput(f"alert {first.index + 1}: {first.reason}")
    return [alert for _, alert in parsed.alerts]


def parse_alert(payload: object) -> list[Alert]:
    """Either shape: an Alertmanager webhook (it has ``alerts``) or one generic alert."""
    if isinstance(payload, dict) and "alerts" in payload:
        return parse_alertmanager(payload)
    return [parse_generic(payload)]


def check_alert(value: object) -> Alert:
    """``value`` as an :class:`Alert` (a model, its JSON, or the generic shape); an
    ``InvalidInput`` naming the problem otherwise.

    Example:
        >>> alert = {"name": "HighErrorRate", "service": "checkout",
        ...          "fired_at": "2026-03-01T12:00:00+00:00"}
        >>> check_alert(alert).service
        'checkout'
        >>> check_alert({"name": "HighErrorRate"})
        Traceback (most recent call last):
        ...
        durable_ir.errors.InvalidInput: an alert needs 'service'
    """
    if isinstance(value, Alert):
        return value
    try:
        return Alert.model_validate(value)
    except ValidationError:
        pass
    return parse_generic(value)  # the generic shape, or an error naming what is missing
