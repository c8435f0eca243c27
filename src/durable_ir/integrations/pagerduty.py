"""PagerDuty Events API v2 over ``httpx`` (the ``pagerduty`` extra installs it).

:class:`PagerDutyNotifier` triggers, acknowledges and resolves PagerDuty alerts for an
incident by POSTing events to ``/v2/enqueue``. Guarantees:

- **One page per incident.** The ``dedup_key`` is derived from the incident id alone
  (``durable-ir:<incident id>``, or ``durable-ir:sha256:<hex>`` when that would exceed
  PagerDuty's 255 characters), so a retried trigger, a re-run node or a second replica
  triggering the same incident all land on one PagerDuty alert; acknowledge and resolve find
  it by the same key.
- **Severity** P0–P3 maps to PagerDuty's ``critical``/``error``/``warning``/``info`` by
  default; a custom map must cover P0–P3 with PagerDuty severities or is refused with
  :class:`~durable_ir.errors.ConfigurationError`.
- **Retries.** 429 and 5xx answers and network errors are retried with exponential backoff
  (``backoff * 2**attempt``), honouring ``Retry-After`` when present, every wait capped at
  ``max_delay``. 5xx answers and network errors give up after ``max_retries`` retries with
  :class:`PagerDutyError`; a 429 (PagerDuty's rate limit, about 120 events a minute per
  routing key: an alert storm reaches it) is not a failure of the event, so it does not count
  against ``max_retries``: it is retried until ``throttle_patience`` seconds of waiting in all
  (300 by default), so that a page is delayed by the limit rather than lost. A 400 (invalid event)
  or another 4xx is a :class:`PagerDutyError` at once, with PagerDuty's message and errors,
  and is never retried: the same event would be refused again.
- The summary is truncated to PagerDuty's 1024 characters (ending in ``…``).

It is also an :class:`~durable_ir.notifications.IncidentNotifier` (``name`` ``"pagerduty"``),
so incident graph nodes can page through :func:`~durable_ir.notifications.send_once`:
``opened`` triggers only for the severities in ``page_on_open`` (P0 by default),
``escalated`` always triggers, ``resolved`` resolves only if this channel triggered for the
incident (its ``earlier`` holds ``opened`` or ``escalated``); approvals are not paged.

Example:
    >>> dedup_key("inc-42")
    'durable-ir:inc-42'
    >>> long_key = dedup_key("x" * 300)
    >>> long_key.startswith("durable-ir:sha256:"), len(long_key) <= 255
    (True, True)
    >>> long_key == dedup_key("x" * 300)
    True
    >>> PagerDutyNotifier("routing-key").severity_for("p0")
    'critical'
    >>> sorted(PagerDutyNotifier("routing-key", page_on_open=["p0", "P1"]).page_on_open)
    ['P0', 'P1']
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

import httpx

from durable_ir.clock import Clock, system_clock
from durable_ir.errors import ConfigurationError, DurableIRError, InvalidInput
from durable_ir.notifications import IncidentEvent
from durable_ir.severity import SEVERITIES, Severity, parse_severity

__all__ = [
    "DEFAULT_PAGE_ON_OPEN",
    "DEFAULT_SEVERITY_MAP",
    "PAGERDUTY_SEVERITIES",
    "PagerDutyError",
    "PagerDutyNotifier",
    "PagerDutySeverity",
    "dedup_key",
]

log = logging.getLogger(__name__)

PagerDutySeverity = Literal["critical", "error", "warning", "info"]
PAGERDUTY_SEVERITIES: Final[tuple[PagerDutySeverity, ...]] = (
    "critical",
    "error",
    "warning",
    "info",
)
DEFAULT_SEVERITY_MAP: Final[Mapping[Severity, PagerDutySeverity]] = {
    "P0": "critical",
    "P1": "error",
    "P2": "warning",
    "P3": "info",
}
MAX_SUMMARY: Final = 1024
MAX_DEDUP_KEY: Final = 255
DEFAULT_PAGE_ON_OPEN: Final[tuple[Severity, ...]] = ("P0",)
_DEFAULT_SOURCE: Final = "durable-ir"
_PREFIX: Final = "durable-ir:"

EventAction = Literal["trigger", "acknowledge", "resolve"]


class PagerDutyError(DurableIRError):
    """PagerDuty refused an event, or could not be reached after every retry.

    ``status`` is the last HTTP status (``None`` for a network error); ``errors`` lists the
    reasons PagerDuty gave for an invalid event.
    """

    def __init__(
        self, message: str, *, status: int | None = None, errors: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors or []


def dedup_key(incident_id: str) -> str:
    """The PagerDuty ``dedup_key`` for an incident: the same for every call and every process."""
    if not isinstance(incident_id, str) or not incident_id:
        raise InvalidInput(f"incident id must be a non-empty string, got {incident_id!r}")
    key = _PREFIX + incident_id
    if len(key) <= MAX_DEDUP_KEY:
        return key
    return f"{_PREFIX}sha256:{hashlib.sha256(incident_id.encode()).hexdigest()}"


def _validated_map(severity_map: Mapping[str, str]) -> dict[Severity, PagerDutySeverity]:
    if not isinstance(severity_map, Mapping):
        raise ConfigurationError(f"severity_map must be a mapping, got {severity_map!r}")
    result: dict[Severity, PagerDutySeverity] = {}
    for key, value in severity_map.items():
        if key not in SEVERITIES:
            raise ConfigurationError(
                f"severity_map key {key!r} is not a severity: expected {', '.join(SEVERITIES)}"
            )
        if value not in PAGERDUTY_SEVERITIES:
            raise ConfigurationError(
                f"severity_map[{key!r}] = {value!r} is not a PagerDuty severity: expected "
                f"{', '.join(PAGERDUTY_SEVERITIES)}"
            )
        result[key] = value
    missing = [s for s in SEVERITIES if s not in result]
    if missing:
        raise ConfigurationError(f"severity_map does not map {', '.join(missing)}")
    return result


def _validated_page_on_open(page_on_open: Collection[str]) -> frozenset[Severity]:
    if isinstance(page_on_open, str) or not isinstance(page_on_open, Collection):
        raise ConfigurationError(
            f"page_on_open must be a collection of severities, got {page_on_open!r}"
        )
    try:
        return frozenset(parse_severity(s) for s in page_on_open)
    except InvalidInput as exc:
        raise ConfigurationError(f"page_on_open: {exc}") from None


def _truncate(summary: str) -> str:
    return summary if len(summary) <= MAX_SUMMARY else summary[: MAX_SUMMARY - 1] + "…"


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds PagerDuty asked us to wait (``Retry-After`` as seconds or an HTTP date)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class PagerDutyNotifier:
    """Sends PagerDuty Events API v2 events for incidents through one integration.

    ``routing_key`` is the integration key of a PagerDuty service's Events API v2
    integration. ``severity_map`` replaces :data:`DEFAULT_SEVERITY_MAP` and must map all of
    P0–P3. Pass ``client`` to share an ``httpx.AsyncClient`` (its lifetime stays
    yours); without one, each event uses a short-lived client. ``sleep`` and ``clock`` are
    injectable for tests.

    As an :class:`~durable_ir.notifications.IncidentNotifier`, ``name`` (default
    ``"pagerduty"``) keys its rows in the outbox, and ``page_on_open`` lists the severities
    (default only ``P0``) paged as soon as an incident is opened; the others page when
    escalated.
    """

    name: str = "pagerduty"

    def __init__(
        self,
        routing_key: str,
        *,
        base_url: str = "https://events.pagerduty.com",
        client: httpx.AsyncClient | None = None,
        severity_map: Mapping[str, str] | None = None,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_delay: float = 30.0,
        throttle_patience: float = 300.0,
        timeout: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Clock = system_clock,
        name: str = "pagerduty",
        page_on_open: Collection[str] = DEFAULT_PAGE_ON_OPEN,
    ) -> None:
        if not isinstance(routing_key, str) or not routing_key.strip():
            raise ConfigurationError("PagerDuty routing_key must be a non-empty string")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"base_url must be an http(s) URL, got {base_url!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigurationError(f"max_retries must be an int ≥ 0, got {max_retries!r}")
        for option, value in (
            ("backoff", backoff),
            ("max_delay", max_delay),
            ("throttle_patience", throttle_patience),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigurationError(f"{option} must be a number ≥ 0, got {value!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ConfigurationError(f"timeout must be a number > 0, got {timeout!r}")
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"name must be a non-empty string, got {name!r}")
        self.name = name
        self.page_on_open = _validated_page_on_open(page_on_open)
        self.routing_key = routing_key
        self.url = base_url.rstrip("/") + "/v2/enqueue"
        self.severity_map = (
            dict(DEFAULT_SEVERITY_MAP) if severity_map is None else _validated_map(severity_map)
        )
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.max_delay = float(max_delay)
        self.throttle_patience = float(throttle_patience)
        self.timeout = float(timeout)
        self._client = client
        self._sleep = sleep
        self._clock = clock

    def severity_for(self, severity: str) -> PagerDutySeverity:
        """The PagerDuty severity for an incident severity (``P0``–``P3``, any case)."""
        return self.severity_map[parse_severity(severity)]

    async def trigger(
        self,
        incident_id: str,
        summary: str,
        severity: str,
        source: str,
        *,
        details: Mapping[str, Any] | None = None,
        timestamp: datetime | None = None,
    ) -> str:
        """Open (or, if already open, update) the incident's PagerDuty alert; return its
        ``dedup_key``. ``timestamp`` is when it happened (default: now, by ``clock``)."""
        if not isinstance(summary, str) or not summary.strip():
            raise InvalidInput("a PagerDuty summary must be a non-empty string")
        if not isinstance(source, str) or not source.strip():
            raise InvalidInput("a PagerDuty source must be a non-empty string")
        custom: dict[str, Any] = {"incident_id": incident_id, "severity": parse_severity(severity)}
        custom.update(details or {})
        payload = {
            "summary": _truncate(summary),
            "source": source,
            "severity": self.severity_for(severity),
            "timestamp": (self._clock() if timestamp is None else timestamp).isoformat(),
            "custom_details": custom,
        }
        return await self._send("trigger", incident_id, payload)

    async def acknowledge(self, incident_id: str) -> str:
        """Acknowledge the incident's PagerDuty alert; return its ``dedup_key``."""
        return await self._send("acknowledge", incident_id, None)

    async def resolve(self, incident_id: str) -> str:
        """Resolve the incident's PagerDuty alert; return its ``dedup_key``."""
        return await self._send("resolve", incident_id, None)

    async def notify(self, event: IncidentEvent) -> dict[str, Any] | None:
        """Page for ``event`` as an :class:`~durable_ir.notifications.IncidentNotifier`.

        - ``opened``: trigger if ``event.severity`` is in ``page_on_open``, else nothing;
        - ``escalated``: trigger, the summary being the title and the reason;
        - ``resolved``: resolve, if this channel triggered for the incident (``event.earlier``
          holds ``opened`` or ``escalated``), else nothing;
        - ``approval_requested``, ``decided``: nothing (chat channels carry approvals).

        The alert's source is ``event.service`` (else ``"durable-ir"``); its custom details
        hold ``event.details``, the incident summary and the reason. Returns
        ``{"dedup_key": …, "action": "trigger" | "resolve"}``, or ``None`` when nothing was
        sent. Raises :class:`PagerDutyError` as :meth:`trigger` and :meth:`resolve` do, and
        :class:`~durable_ir.errors.InvalidInput` for an unknown severity.
        """
        if event.kind == "resolved":
            if "opened" not in event.earlier and "escalated" not in event.earlier:
                return None
            return {"dedup_key": await self.resolve(event.incident_id), "action": "resolve"}
        if event.kind == "opened":
            if parse_severity(event.severity) not in self.page_on_open:
                return None
        elif event.kind != "escalated":
            return None
        title = event.title.strip() or f"incident {event.incident_id}"
        summary = f"{title}: {event.reason}" if event.reason else title
        details: dict[str, Any] = {
            k: v for k, v in event.details.items() if k not in ("incident_id", "severity")
        }
        details["event"] = event.kind
        if event.summary:
            details["summary"] = event.summary
        if event.reason:
            details["reason"] = event.reason
        key = await self.trigger(
            event.incident_id,
            summary,
            event.severity,
            (event.service or "").strip() or _DEFAULT_SOURCE,
            details=details,
            timestamp=event.at,
        )
        return {"dedup_key": key, "action": "trigger"}

    async def _send(
        self, action: EventAction, incident_id: str, payload: dict[str, Any] | None
    ) -> str:
        key = dedup_key(incident_id)
        event: dict[str, Any] = {
            "routing_key": self.routing_key,
            "event_action": action,
            "dedup_key": key,
        }
        if payload is not None:
            event["payload"] = payload
        if self._client is not None:
            return await self._deliver(self._client, event, key)
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            return await self._deliver(client, event, key)

    async def _deliver(self, client: httpx.AsyncClient, event: dict[str, Any], key: str) -> str:
        action = event["event_action"]
        attempt = 0  # every failed attempt: the backoff's exponent
        failures = 0  # those that were not 429s: bounded by max_retries
        throttled_for = 0.0  # seconds waited on 429s: bounded by throttle_patience
        while True:
            retry_after: float | None = None
            try:
                response = await client.post(self.url, json=event, timeout=self.timeout)
            except httpx.TransportError as exc:
                problem = f"PagerDuty unreachable: {type(exc).__name__}: {exc}"
                status: int | None = None
            else:
                status = response.status_code
                body = _json(response)
                if 200 <= status < 300:
                    returned = body.get("dedup_key")
                    return returned if isinstance(returned, str) and returned else key
                message = str(body.get("message") or response.reason_phrase or "no message")
                raw_errors = body.get("errors")
                errors = [str(e) for e in raw_errors] if isinstance(raw_errors, list) else []
                problem = f"PagerDuty answered {status} to {action} {key!r}: {message}"
                if errors:
                    problem += f" ({'; '.join(errors)})"
                if status != 429 and status < 500:
                    raise PagerDutyError(problem, status=status, errors=errors)
                retry_after = _retry_after(response)
            delay = self.backoff * 2**attempt if retry_after is None else retry_after
            delay = min(delay, self.max_delay)
            if status == 429:
                if throttled_for + delay > self.throttle_patience:
                    raise PagerDutyError(
                        f"{problem}; still throttled after {attempt + 1} attempts and "
                        f"{throttled_for:.0f}s of waiting (throttle_patience "
                        f"{self.throttle_patience:.0f}s)",
                        status=status,
                    )
                throttled_for += delay
            elif failures >= self.max_retries:
                raise PagerDutyError(
                    f"{problem}; gave up after {attempt + 1} attempts", status=status
                )
            else:
                failures += 1
            log.warning("%s; retrying in %.2fs", problem, delay)
            attempt += 1
            await self._sleep(delay)
