"""A local server speaking the two Slack Web API methods the notifier uses
(``chat.postMessage``, ``chat.update``), recording every request."""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import Any

from support.local_http import LocalHttpServer


class SlackApi(LocalHttpServer):
    """Speaks the two Web API methods the notifier uses; records every request. Each posted
    message gets the next ``ts`` (the first is ``TS``), as Slack's are unique per channel."""

    def __init__(self) -> None:
        super().__init__(SlackHandler)
        self.requests: list[tuple[str, str | None, dict[str, Any]]] = []
        self.error: str | None = None
        self.lock = threading.Lock()
        self.posted = 0

    def next_ts(self) -> str:
        with self.lock:
            self.posted += 1
            return f"1700000000.{99 + self.posted:06d}"


class SlackHandler(BaseHTTPRequestHandler):
    server: SlackApi

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            body: dict[str, Any] = json.loads(raw)
        else:
            body = {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}
        if isinstance(body.get("blocks"), str):
            body["blocks"] = json.loads(body["blocks"])
        with self.server.lock:
            self.server.requests.append((self.path, self.headers.get("Authorization"), body))
        if self.path not in ("/api/chat.postMessage", "/api/chat.update"):
            answer: dict[str, Any] = {"ok": False, "error": "unknown_method"}
        elif self.server.error is not None:
            answer = {"ok": False, "error": self.server.error}
        else:
            answer = {
                "ok": True,
                "channel": body.get("channel"),
                "ts": body.get("ts") or self.server.next_ts(),
                "message": {"text": body.get("text"), "blocks": body.get("blocks", [])},
            }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
