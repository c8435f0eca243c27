"""A local server speaking PagerDuty's Events API v2 (``POST /v2/enqueue``): it validates
events as PagerDuty does, keeps one alert per ``dedup_key``, and records every request."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from support.local_http import LocalHttpServer

Reply = tuple[int, dict[str, Any], dict[str, str]]
"""status, JSON body, extra headers"""


class PagerDutyApi(LocalHttpServer):
    """Validates events as PagerDuty does, keeps one alert per ``dedup_key`` (a trigger for an
    open key updates that alert), and records every request. ``scripted`` replies are sent,
    in order, before any event is processed; ``barrier`` holds requests until that many
    arrived, to make concurrent senders really concurrent."""

    def __init__(self) -> None:
        super().__init__(_Handler)
        self.lock = threading.Lock()
        self.received: list[dict[str, Any]] = []
        self.scripted: list[Reply] = []
        self.alerts: dict[str, dict[str, Any]] = {}
        self.barrier: threading.Barrier | None = None

    def events(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.received]

    def open_alerts(self) -> list[str]:
        return [k for k, a in self.alerts.items() if a["status"] != "resolved"]

    def process(self, event: Any) -> Reply:
        errors = validate(event)
        if errors:
            invalid = {"status": "invalid event", "message": "Event object is invalid"}
            return 400, {**invalid, "errors": errors}, {}
        key = event.get("dedup_key")
        action = event["event_action"]
        with self.lock:
            alert = self.alerts.get(key) if key else None
            if action == "trigger":
                if key is None:
                    key = f"srv-{len(self.alerts)}"
                if alert is None or alert["status"] == "resolved":
                    self.alerts[key] = {"status": "triggered", "events": [event]}
                else:
                    alert["events"].append(event)
            elif alert is not None and alert["status"] != "resolved":
                alert["status"] = "acknowledged" if action == "acknowledge" else "resolved"
                alert["events"].append(event)
        return 202, {"status": "success", "message": "Event processed", "dedup_key": key}, {}


def validate(event: Any) -> list[str]:
    if not isinstance(event, dict):
        return ["Event object is not a JSON object"]
    errors = []
    routing_key = event.get("routing_key")
    if not isinstance(routing_key, str) or len(routing_key) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        errors.append("'event_action' is invalid (must be trigger, acknowledge or resolve)")
    key = event.get("dedup_key")
    if key is not None and (not isinstance(key, str) or len(key) > 255):
        errors.append("'dedup_key' is too long (max 255 characters)")
    if action in ("acknowledge", "resolve") and not key:
        errors.append("'dedup_key' is required for acknowledge and resolve")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            return [*errors, "'payload' is missing or not an object"]
        summary = payload.get("summary")
        if not isinstance(summary, str) or not summary or len(summary) > 1024:
            errors.append("'payload.summary' is missing or longer than 1024 characters")
        if not isinstance(payload.get("source"), str) or not payload["source"]:
            errors.append("'payload.source' is missing")
        if payload.get("severity") not in ("critical", "error", "warning", "info"):
            errors.append("'payload.severity' is invalid")
    return errors


class _Handler(BaseHTTPRequestHandler):
    server: PagerDutyApi

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["content-length"]))
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        with self.server.lock:
            self.server.received.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                }
            )
            scripted = self.server.scripted.pop(0) if self.server.scripted else None
        if self.server.barrier is not None:
            self.server.barrier.wait(timeout=5)
        headers: dict[str, str]
        if self.path != "/v2/enqueue":
            status, reply, headers = 404, {"status": "not found", "message": "no route"}, {}
        elif scripted is not None:
            status, reply, headers = scripted
        elif body is None:
            status, reply, headers = 400, {"status": "invalid event", "message": "bad JSON"}, {}
        else:
            status, reply, headers = self.server.process(body)
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
