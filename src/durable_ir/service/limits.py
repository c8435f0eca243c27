"""Refuse oversized request bodies (413) before anything parses them.

:class:`BodySizeLimit` is plain ASGI middleware: a ``Content-Length`` over the limit is
answered at once without reading the body; a body without one (chunked) is counted as it
streams, and the moment it passes the limit the request is answered 413 and the application
sees the client as gone, so nothing it parsed so far is used.

Example:
    >>> import asyncio
    >>> async def app(scope, receive, send):
    ...     raise AssertionError("never called for an oversized body")
    >>> sent = []
    >>> async def send(message):
    ...     sent.append(message)
    >>> async def receive():
    ...     return {"type": "http.request", "body": b"", "more_body": False}
    >>> scope = {"type": "http", "headers": [(b"content-length", b"5000")]}
    >>> asyncio.run(BodySizeLimit(app, max_bytes=1024)(scope, receive, send))
    >>> sent[0]["status"]
    413
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodySizeLimit"]


def _too_large(max_bytes: int) -> tuple[Message, Message]:
    body = json.dumps(
        {
            "error": {
                "code": "payload_too_large",
                "message": f"request body over the limit of {max_bytes} bytes",
            }
        }
    ).encode()
    start: Message = {
        "type": "http.response.start",
        "status": 413,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    }
    return start, {"type": "http.response.body", "body": body, "more_body": False}


class BodySizeLimit:
    """ASGI middleware answering 413 to request bodies over ``max_bytes``."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain_bytes = max(4 * max_bytes, 1024 * 1024)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, counting its body."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self.max_bytes:
            await self._refuse(receive, send, drain=length <= self.drain_bytes)
            return
        state: dict[str, Any] = {"received": 0, "started": False, "refused": False}

        async def counting_receive() -> Message:
            if state["refused"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_bytes and not state["started"]:
                    state["refused"] = True
                    more = bool(message.get("more_body", False))
                    await self._refuse(receive, send, drain=more)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if state["refused"]:
                return  # the 413 went out; whatever the app answers now is dropped
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not state["refused"]:
                raise  # a refused request's app failing to read its body is expected

    async def _refuse(self, receive: Receive, send: Send, *, drain: bool) -> None:
        """Answer 413. With ``drain``, the rest of the body (up to ``drain_bytes``) is read
        first and dropped, so that the client reads the answer rather than a connection
        reset; a larger body is not read at all."""
        if drain:
            drained = 0
            while drained <= self.drain_bytes:
                message = await receive()
                if message["type"] != "http.request":
                    break
                drained += len(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        for reply in _too_large(self.max_bytes):
            await send(reply)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
