"""A local server speaking the Anthropic Messages API (``POST /v1/messages``) for a whole
incident agent: it answers every request with a ``report_root_cause`` tool call citing the
first evidence id of the prompt, refuses a wrong API key with 401 as the real API does, and
records every request. ``failures`` are sent first, one per request."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from support.local_http import LocalHttpServer

Reply = tuple[int, dict[str, Any]]
"""status, JSON body"""

EVIDENCE_ID = re.compile(r"^\[([^\]\s]+)\]", re.MULTILINE)


def api_error(status: int, kind: str, message: str) -> Reply:
    """An error answer, shaped as the Messages API shapes them."""
    return status, {"type": "error", "error": {"type": kind, "message": message}}


def api_key_of(headers: dict[str, str]) -> str:
    """The API key a request carries: ``x-api-key``, or ``Authorization: Bearer`` (which the
    SDK sends instead in newer versions)."""
    return headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")


class ClaudeApi(LocalHttpServer):
    """``POST /v1/messages`` for requests carrying ``api_key``; see the module doc."""

    def __init__(self, api_key: str, *, confidence: float = 0.9) -> None:
        super().__init__(_Handler)
        self.api_key = api_key
        self.confidence = confidence
        self.lock = threading.Lock()
        self.received: list[dict[str, Any]] = []
        self.failures: list[Reply] = []

    def answer(self, body: dict[str, Any]) -> Reply:
        """The tool call for the request ``body``: the first evidence id of the prompt."""
        prompt = str(body["messages"][0]["content"])
        cited = EVIDENCE_ID.findall(prompt)[:1]
        report = {
            "root_cause": "deploy v42 of checkout broke the payment client",
            "fault": "bad_deploy",
            "service": "checkout",
            "confidence": self.confidence,
            "cited_evidence": cited,
            "remediation": [
                {"action": "scale", "target": "checkout-1", "parameters": {"replicas": 3}}
            ],
        }
        message = {
            "id": f"msg_{len(self.received):04d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude"),
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "report_root_cause", "input": report}
            ],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {"input_tokens": 100, "output_tokens": 50},
        }
        return 200, message


class _Handler(BaseHTTPRequestHandler):
    server: ClaudeApi

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        headers = {k.lower(): v for k, v in self.headers.items()}
        with self.server.lock:
            self.server.received.append({"path": self.path, "headers": headers, "body": body})
            failure = self.server.failures.pop(0) if self.server.failures else None
        if self.path != "/v1/messages":
            status, reply = api_error(404, "not_found_error", f"Not found: {self.path}")
        elif api_key_of(headers) != self.server.api_key:
            status, reply = api_error(401, "authentication_error", "invalid x-api-key")
        elif failure is not None:
            status, reply = failure
        else:
            status, reply = self.server.answer(body)
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", f"req_{len(self.server.received):04d}")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass
