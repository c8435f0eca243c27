"""The service's answers as a browser or a proxy sees them, and its error log as an operator
reads it: ``nosniff`` and ``no-store`` on API answers (the console keeps its own headers),
no Swagger UI from a third-party CDN unless asked for, and a 500 whose log line no request
can break or forge."""

from __future__ import annotations

import io
import logging

import pytest
from fastapi import FastAPI

from durable_ir.logs import TextFormatter
from durable_ir.service import create_app
from durable_ir.service.routes.console import CONSOLE_HEADERS
from support.served import served, settings_for


def api_headers_ok(headers: object) -> bool:
    assert hasattr(headers, "get")
    return (
        headers.get("x-content-type-options") == "nosniff"
        and headers.get("cache-control") == "no-store"
    )


def test_api_answers_are_nosniff_and_no_store_and_the_console_keeps_its_own(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with served(database_url, max_body_bytes=2048) as api:
        incident = api.open_incident()
        answers = {
            "healthz": api.get("/healthz", who=None),
            "livez": api.get("/livez", who=None),
            "readyz": api.get("/readyz", who=None),
            "list": api.get("/incidents"),
            "detail": api.get(f"/incidents/{incident}"),
            "openapi": api.get("/openapi.json", who=None),
            "401": api.get("/incidents", who=None),
            "403": api.get("/incidents", who="alertmanager"),
            "404": api.get("/incidents/no-such-incident"),
            "404 no route": api.get("/nowhere", who=None),
            "405": api.http.delete("/incidents"),
            "413": api.post("/alerts", {"pad": "x" * 4096}, who="alertmanager"),
            "422": api.post(f"/incidents/{incident}/reject", {"reason": ""}),
            "409": api.post(f"/incidents/{incident}/approve", {"approval_id": "other"}),
        }
        for what, response in answers.items():
            assert response.headers["content-type"].startswith("application/json"), what
            assert api_headers_ok(response.headers), (what, dict(response.headers))
        for path in ("/console", "/console/console.js", "/console/console.css"):
            page = api.get(path, who=None)
            assert page.status_code == 200
            for name, value in CONSOLE_HEADERS.items():
                assert page.headers[name] == value, (path, name)
        metrics = api.get("/metrics", who=None)
        assert metrics.headers["x-content-type-options"] == "nosniff"


def test_swagger_ui_is_off_unless_asked_for_and_openapi_json_stays(tmp_path: object) -> None:
    with served("memory://") as api:
        assert api.get("/docs", who=None).status_code == 404
        assert api.get("/redoc", who=None).status_code == 404
        assert api.get("/openapi.json", who=None).status_code == 200
    with served("memory://", docs=True) as api:
        page = api.get("/docs", who=None)
        assert page.status_code == 200 and "swagger-ui" in page.text
        assert page.headers["x-content-type-options"] == "nosniff"


def broken_app(database_url: str) -> FastAPI:
    app = create_app(settings=settings_for(database_url))

    async def boom(anything: str) -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/boom/{anything}", boom, methods=["GET"])
    return app


def test_a_500_logs_the_route_template_never_the_path_as_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A request whose path holds ``%0A`` and a fake log line hits a bug: the answer is the
    service's 500 (with the API's headers), and its log line names the route's template —
    one line, with nothing of what the caller sent."""
    caplog.set_level(logging.ERROR, logger="durable_ir.service")
    forged = "x%0A2026-01-01 00:00:00 ERROR durable_ir.approval: approved by mallory"
    with served("memory://", app=broken_app("memory://")) as api:
        response = api.get(f"/boom/{forged}", who=None)
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert api_headers_ok(response.headers), dict(response.headers)
    (record,) = [r for r in caplog.records if r.name == "durable_ir.service"]
    assert record.getMessage() == "unexpected error answering GET /boom/{anything}"
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter("%(levelname)s %(name)s: %(message)s"))
    handler.emit(record)
    first_line = stream.getvalue().splitlines()[0]
    assert first_line == (
        "ERROR durable_ir.service: unexpected error answering GET /boom/{anything}"
    )
    assert "mallory" not in stream.getvalue()
