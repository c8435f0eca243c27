"""A local stand-in for PagerDuty's Events API v2, for benchmarks that page.

:class:`LocalPagerDuty` listens on a free loopback port and answers ``POST /v2/enqueue`` the
way PagerDuty does: it validates the event (a 32-character ``routing_key``, a known
``event_action``, a ``dedup_key`` of at most 255 characters, and for a trigger a payload with
``summary``, ``source`` and ``severity``), answers 202 with the ``dedup_key``, and keeps one
alert per ``dedup_key`` — a trigger for an open alert is folded into it, as PagerDuty does. It
logs every accepted event, so a benchmark can count triggers per ``dedup_key`` afterwards.

With ``rate_limit_per_minute`` it also enforces PagerDuty's per-integration rate limit: at most
that many events per ``routing_key`` in any 60 s window (PagerDuty documents about 120 per
minute); beyond it the event is refused with 429 and a ``Retry-After`` header (whole seconds
until the oldest event in the window leaves it), and the refusal is logged, so a benchmark can
tell the 429s that a later delivery of the same ``dedup_key`` made good from the ones never
retried (:meth:`LocalPagerDuty.unretried_throttles`).

Events are validated by the test suite's PagerDuty stand-in
(``tests/support/pagerduty_api.py``'s ``validate``), so both refuse exactly the same events;
this server adds the per-``dedup_key`` accounting the chaos harness checks.

Example:
    >>> import httpx
    >>> with LocalPagerDuty() as pagerduty:
    ...     reply = httpx.post(pagerduty.url + "/v2/enqueue", json={
    ...         "routing_key": "r" * 32, "event_action": "trigger", "dedup_key": "k-1",
    ...         "payload": {"summary": "disk full", "source": "db-1", "severity": "error"}})
    ...     reply.status_code, dict(pagerduty.triggers_by_key())
    (202, {'k-1': 1})
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import _common  # noqa: F401 - puts tests/ (and src/) on sys.path

from support.pagerduty_api import validate as validate_event

__all__ = ["LocalPagerDuty", "PagerDutyEvent", "validate_event"]


@dataclass(frozen=True)
class PagerDutyEvent:
    """One event the server accepted: its action, ``dedup_key``, when it arrived (epoch
    seconds), and whether it opened a new alert (``False``: folded into an open one)."""

    action: str
    dedup_key: str
    at: float
    opened_alert: bool


class LocalPagerDuty(ThreadingHTTPServer):
    """PagerDuty's Events API v2 on ``127.0.0.1`` (see the module doc); serves in a
    background thread inside ``with``."""

    daemon_threads = True

    def __init__(self, rate_limit_per_minute: int | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _EnqueueHandler)
        self.lock = threading.Lock()
        self.events: list[PagerDutyEvent] = []
        self.refused = 0
        self.rate_limit_per_minute = rate_limit_per_minute
        self.throttled: list[PagerDutyEvent] = []
        """Events refused with 429 (``opened_alert`` is always False)."""
        self._window: dict[str, deque[float]] = {}
        self._open: set[str] = set()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL to give ``PagerDutyNotifier(base_url=…)``."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> LocalPagerDuty:
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.05,), name="local-pagerduty", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join()

    def throttle(self, event: dict[str, Any]) -> float | None:
        """Count ``event`` against its routing key's window; the seconds to wait (for
        ``Retry-After``) if the key is over its limit, else None (the event may be accepted)."""
        if self.rate_limit_per_minute is None:
            return None
        now = time.monotonic()
        with self.lock:
            window = self._window.setdefault(str(event["routing_key"]), deque())
            while window and window[0] <= now - 60.0:
                window.popleft()
            if len(window) < self.rate_limit_per_minute:
                window.append(now)
                return None
            key = str(event.get("dedup_key") or "")
            self.throttled.append(PagerDutyEvent(event["event_action"], key, time.time(), False))
            return max(1.0, math.ceil(window[0] + 60.0 - now))

    def unretried_throttles(self) -> int:
        """429s after which no event with the same action and ``dedup_key`` was ever accepted
        (a 429 for an event without a ``dedup_key`` counts as unretried)."""
        with self.lock:
            last_accepted: dict[tuple[str, str], float] = {}
            for e in self.events:
                last_accepted[(e.action, e.dedup_key)] = e.at
            return sum(
                1
                for t in self.throttled
                if not t.dedup_key or last_accepted.get((t.action, t.dedup_key), -1.0) < t.at
            )

    def accept(self, event: dict[str, Any]) -> str:
        """Log an event that passed validation and fold it into its alert; its dedup_key."""
        key = event.get("dedup_key") or f"srv-{len(self.events)}"
        action = event["event_action"]
        with self.lock:
            opened = action == "trigger" and key not in self._open
            if action == "trigger":
                self._open.add(key)
            elif action == "resolve":
                self._open.discard(key)
            self.events.append(PagerDutyEvent(action, key, time.time(), opened))
        return str(key)

    def triggers_by_key(self) -> Counter[str]:
        """How many trigger events arrived for each ``dedup_key``."""
        with self.lock:
            return Counter(e.dedup_key for e in self.events if e.action == "trigger")

    def alerts_opened_by_key(self) -> Counter[str]:
        """How many times a trigger opened a new alert for each ``dedup_key`` (a repeat
        trigger while the alert is open is folded into it, as PagerDuty does)."""
        with self.lock:
            return Counter(e.dedup_key for e in self.events if e.opened_alert)


class _EnqueueHandler(BaseHTTPRequestHandler):
    server: LocalPagerDuty

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            event: Any = json.loads(raw)
        except ValueError:
            event = None
        reply: dict[str, Any]
        headers: dict[str, str] = {}
        if self.path != "/v2/enqueue":
            status, reply = 404, {"status": "not found", "message": "no route"}
        elif errors := validate_event(event):
            status = 400
            reply = {
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": errors,
            }
            with self.server.lock:
                self.server.refused += 1
        elif (wait := self.server.throttle(event)) is not None:
            status, reply = 429, {"status": "throttle event", "message": "Requests throttled"}
            headers["retry-after"] = str(int(wait))
        else:
            key = self.server.accept(event)
            status, reply = (
                202,
                {"status": "success", "message": "Event processed", "dedup_key": key},
            )
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass
