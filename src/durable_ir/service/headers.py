"""The headers every API answer carries: ``X-Content-Type-Options: nosniff`` on every
response, and ``Cache-Control: no-store`` on JSON ones (incidents, decisions and errors are
neither to be sniffed into something else nor kept by a proxy or a browser's cache).

A response that sets its own value keeps it: the console's pages
(:mod:`durable_ir.service.routes.console`) keep their ``Cache-Control: no-cache`` and
Content-Security-Policy. The 500 answer, which Starlette sends from outside the app's
middleware, carries the same headers itself
(:data:`~durable_ir.service.errors.INTERNAL_ERROR_HEADERS`).

Example:
    >>> from fastapi import FastAPI
    >>> from fastapi.testclient import TestClient
    >>> app = FastAPI()
    >>> @app.get("/thing")
    ... async def thing() -> dict[str, str]:
    ...     return {"ok": "yes"}
    >>> app.add_middleware(ApiHeaders)
    >>> answer = TestClient(app).get("/thing")
    >>> answer.headers["x-content-type-options"], answer.headers["cache-control"]
    ('nosniff', 'no-store')
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ApiHeaders"]


def _is_json(media_type: str) -> bool:
    kind = media_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


class ApiHeaders:
    """ASGI middleware adding the API's headers (see the module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                if _is_json(headers.get("content-type", "")):
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, with_headers)
