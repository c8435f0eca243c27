"""One error shape for every route: ``{"error": {"code", "message", "winner"?}}``.

Library errors map to HTTP statuses here: ``NotFound`` 404, ``Conflict`` 409 (with the
winning decision when there is one), ``InvalidInput``/``InvalidDecision`` and malformed
bodies 422, ``ConfigurationError`` 503. Authentication is 401, roles 403, bodies over the
limit 413 (see :mod:`durable_ir.service.limits`).

Example:
    >>> error_body("not_found", "no incident 'x'")
    {'error': {'code': 'not_found', 'message': "no incident 'x'"}}
    >>> sorted(error_responses(404, 409))
    [404, 409]
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from durable_ir.errors import (
    ConfigurationError,
    Conflict,
    GraphVersionUnavailable,
    InvalidDecision,
    InvalidInput,
    NotFound,
)
from durable_ir.records import ApprovalRecord
from durable_ir.service.models import Approval

__all__ = [
    "ApiError",
    "ErrorDetail",
    "ErrorResponse",
    "error_body",
    "error_response",
    "error_responses",
    "install_error_handlers",
    "request_for_log",
]

log = logging.getLogger("durable_ir.service")


class ErrorDetail(BaseModel):
    """What went wrong. ``winner`` (409 only) is the decision that was recorded first."""

    code: str = Field(description="machine-readable, e.g. not_found, conflict, invalid_input")
    message: str
    winner: Approval | None = Field(
        None, description="409: the decision that won (absent when nothing was decided)"
    )


class ErrorResponse(BaseModel):
    """Every error the service answers."""

    error: ErrorDetail


class ApiError(Exception):
    """An HTTP error with the service's error shape; raise it from routes and dependencies.

    Example:
        >>> ApiError(403, "forbidden", "needs role approver").status
        403
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        winner: ApprovalRecord | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.winner = winner
        self.headers = headers


def error_body(code: str, message: str, winner: ApprovalRecord | None = None) -> dict[str, Any]:
    """The JSON of an error (``winner`` only when given)."""
    detail: dict[str, Any] = {"code": code, "message": message}
    if winner is not None:
        detail["winner"] = Approval.of(winner).model_dump(mode="json")
    return {"error": detail}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    winner: ApprovalRecord | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSON error response."""
    return JSONResponse(error_body(code, message, winner), status_code=status, headers=headers)


_DESCRIPTIONS = {
    401: ("missing or invalid credentials", "unauthorized", "missing or invalid bearer token"),
    403: ("the credential lacks the role", "forbidden", "this needs the role approver"),
    404: ("no such incident", "not_found", "no incident 'INC-9'"),
    409: (
        "not waiting for a decision; ``winner`` is the decision that was recorded first",
        "conflict",
        "incident 'INC-1' is not waiting for a decision: approved by alice at 2026-…",
    ),
    413: ("body over the size limit", "payload_too_large", "request body over 262144 bytes"),
    422: ("malformed or refused input; nothing changed", "invalid_input", "body.reason: …"),
    503: (
        "starting or stopping, the database unreachable, or the incident's graph not served here",
        "unavailable",
        "the service is starting or stopping",
    ),
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entries of these error statuses (with examples)."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, code, message = _DESCRIPTIONS[status]
        example: dict[str, Any] = {"error": {"code": code, "message": message}}
        if status == 409:
            example["error"]["winner"] = Approval.model_json_schema()["examples"][0]
        responses[status] = {
            "model": ErrorResponse,
            "description": description,
            "content": {"application/json": {"example": example}},
        }
    return responses


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in list(exc.errors())[:3]:
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


_HTTP_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


_PATH_SAFE = "/:@!$&'()*+,;=~-._"
_MAX_LOGGED_PATH = 200


def request_for_log(request: Request) -> str:
    """How a log line names ``request``: its method and its route's template
    (``POST /incidents/{incident_id}/approve``) — or, when no route matched, its path
    percent-encoded and cut to 200 characters. Nothing the caller sent is logged as it came:
    a ``%0A`` in the path stays ``%0A``, so it cannot end the line and forge another.

    Example:
        >>> from starlette.requests import Request
        >>> forged = "/x\\nERROR durable_ir: forged"
        >>> request_for_log(Request({"type": "http", "method": "GET", "path": forged}))
        'GET /x%0AERROR%20durable_ir:%20forged (no route)'
    """
    method = quote(str(request.scope.get("method", "?")), safe="")
    template = getattr(request.scope.get("route"), "path", None)
    if isinstance(template, str):
        return f"{method} {template}"
    path = quote(str(request.scope.get("path", "")), safe=_PATH_SAFE)
    if len(path) > _MAX_LOGGED_PATH:
        path = path[:_MAX_LOGGED_PATH] + "…"
    return f"{method} {path} (no route)"


INTERNAL_ERROR_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
"""The 500 answer is sent by Starlette's outermost middleware, outside the app's own: it
carries the API's headers itself (see :mod:`durable_ir.service.headers`)."""


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error in the service's shape."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(
            exc.status, exc.code, exc.message, winner=exc.winner, headers=exc.headers
        )

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return error_response(404, "not_found", str(exc))

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> JSONResponse:
        return error_response(409, "conflict", str(exc), winner=exc.winner)

    @app.exception_handler(GraphVersionUnavailable)
    async def _version(request: Request, exc: GraphVersionUnavailable) -> JSONResponse:
        # Nothing was recorded: a replica (or a later deploy) that runs the version can.
        return error_response(409, "graph_version_unavailable", str(exc))

    @app.exception_handler(InvalidInput)
    async def _invalid(request: Request, exc: InvalidInput) -> JSONResponse:
        code = "invalid_decision" if isinstance(exc, InvalidDecision) else "invalid_input"
        return error_response(422, code, str(exc))

    @app.exception_handler(ConfigurationError)
    async def _configuration(request: Request, exc: ConfigurationError) -> JSONResponse:
        log.error("configuration error answering %s: %s", request_for_log(request), exc)
        return error_response(503, "unavailable", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_input", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI: a body it could not decode (not UTF-8 JSON)
            return error_response(422, "invalid_input", f"malformed body: {exc.detail}")
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        return error_response(
            exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, exc: RecursionError) -> JSONResponse:
        # Raised by the JSON decoder (FastAPI's body parsing) on absurdly nested input.
        log.warning("refused %s: %s", request_for_log(request), exc)
        return error_response(422, "invalid_input", "the body is JSON nested too deeply")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error answering %s", request_for_log(request), exc_info=exc)
        return error_response(
            500,
            "internal_error",
            "internal error (logged by the service)",
            headers=INTERNAL_ERROR_HEADERS,
        )
