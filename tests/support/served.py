"""The incident API with the demo agent's graph, served over real HTTP for the duration of a
``with`` block, with a client speaking for the tokens of :data:`support.service.TOKENS`."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import httpx
from fastapi import FastAPI

from durable_ir.demo.agent import DEMO_GRAPH_NAME, DEMO_INCIDENTS, demo_alert
from durable_ir.service import ServiceSettings, create_app
from durable_ir.service.auth import parse_token_entries
from support.service import auth, serving, tokens_json


def settings_for(database_url: str, **overrides: Any) -> ServiceSettings:
    """Settings for tests: every test token, a fast SLA monitor, the demo graph's name."""
    base = ServiceSettings(
        database_url=database_url,
        api_tokens=parse_token_entries(tokens_json()),
        sla_interval=0.2,
        graph_name=DEMO_GRAPH_NAME,
    )
    return replace(base, **overrides)


class Client:
    """httpx on the served app; ``who`` names the token (``None``: no credentials)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=60)

    def get(self, path: str, who: str | None = "vic", **kwargs: Any) -> httpx.Response:
        return self.http.get(path, headers=auth(who) if who else {}, **kwargs)

    def post(
        self, path: str, body: Any = None, who: str | None = "alice", **kwargs: Any
    ) -> httpx.Response:
        """POST ``body`` as JSON written by ``json.dumps`` (ASCII: an unpaired surrogate goes
        out as its ``\\ud800`` escape, as a hostile client would send it)."""
        headers = {**(auth(who) if who else {}), **kwargs.pop("headers", {})}
        if body is not None:
            kwargs["content"] = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        return self.http.post(path, headers=headers, **kwargs)

    def detail(self, incident_id: str) -> dict[str, Any]:
        response = self.get(f"/incidents/{incident_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def open_incident(self) -> str:
        """Post a demo alert; return its incident once it waits for approval."""
        alert = demo_alert(DEMO_INCIDENTS[0], run=uuid.uuid4().hex[:8])
        response = self.post("/alerts", alert, who="alertmanager")
        assert response.status_code == 202, response.text
        incident = str(response.json()["incidents"][0]["incident_id"])
        deadline = time.monotonic() + 120
        while self.detail(incident)["status"] != "awaiting_approval":
            assert time.monotonic() < deadline, f"{incident} never paused for approval"
            time.sleep(0.05)
        return incident


@contextmanager
def served(database_url: str, *, app: FastAPI | None = None, **overrides: Any) -> Iterator[Client]:
    """Serve ``app`` (default: :func:`create_app` with :func:`settings_for`) on a loopback
    port and hand out a client of it."""
    app = app or create_app(settings=settings_for(database_url, **overrides))
    with serving(app) as server:
        client = Client(server.url)
        try:
            yield client
        finally:
            client.http.close()
