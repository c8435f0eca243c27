"""``GET /console``: the approval console, a page of plain HTML, CSS and JavaScript shipped in
``durable_ir/service/console/`` (package data; no build step, nothing fetched from elsewhere).

Loading the page needs no credentials: it holds no data. Its script calls the API with the
bearer token the user pastes (kept in the tab's ``sessionStorage`` only), so what it shows
and what it may decide are the token's, exactly as for any client. The routes are left out
of the OpenAPI schema (they are not API). Every answer carries a Content-Security-Policy
that allows only this origin's own script, style and API: no inline script, no framing.

Example:
    >>> sorted(route.path for route in router.routes)
    ['/console', '/console/console.css', '/console/console.js']
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import Response

__all__ = ["CONSOLE_HEADERS", "console_file", "router"]

router = APIRouter(include_in_schema=False)

CONSOLE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
"""Sent with every console file."""


@cache
def console_file(name: str) -> bytes:
    """The bytes of one file of the console (package data, read once).

    Example:
        >>> console_file("index.html").startswith(b"<!doctype html>")
        True
    """
    return files("durable_ir.service").joinpath("console", name).read_bytes()


def _serve(name: str, media_type: str) -> Response:
    return Response(console_file(name), media_type=media_type, headers=CONSOLE_HEADERS)


@router.get("/console")
async def console_page() -> Response:
    """The console page (no credentials needed to load it)."""
    return _serve("index.html", "text/html; charset=utf-8")


@router.get("/console/console.js")
async def console_script() -> Response:
    """The console's script."""
    return _serve("console.js", "text/javascript; charset=utf-8")


@router.get("/console/console.css")
async def console_style() -> Response:
    """The console's style sheet."""
    return _serve("console.css", "text/css; charset=utf-8")
