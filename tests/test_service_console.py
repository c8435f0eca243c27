"""The approval console (``GET /console``) in a real browser: Debian's Chromium, headless,
driven by Playwright against the service served by uvicorn on a loopback port, on SQLite and
PostgreSQL, with the demo agent's graph.

Browser tests are marked ``browser``: without /usr/bin/chromium they skip, and under
``DURABLE_IR_REQUIRE_BROWSER`` (as ``.ci/run`` sets it) they fail instead."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Locator,
    Page,
    async_playwright,
    expect,
)
from starlette.testclient import TestClient

from durable_ir.demo.agent import DEMO_GRAPH_NAME, DEMO_INCIDENTS, DemoIncident, demo_alert
from durable_ir.service import ServiceSettings, create_app
from durable_ir.service.auth import parse_token_entries
from durable_ir.service.routes.console import console_file
from support.service import TOKENS, InProcessServer, auth, serving, tokens_json

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking"]
TOKEN_KEY = "durable-ir-console-token"  # console.js keeps the token under this key
SERVER_WAIT_MS = 60_000  # for what the server does: resuming, remediating, finishing


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def chromium() -> str:
    """Debian's Chromium, else skip (fail under ``DURABLE_IR_REQUIRE_BROWSER``)."""
    if not os.access(CHROMIUM, os.X_OK):
        reason = f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("DURABLE_IR_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    return str(CHROMIUM)


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def server(durable_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[InProcessServer]:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)  # the demo graph stays offline
    settings = ServiceSettings(
        database_url=durable_url,
        api_tokens=parse_token_entries(tokens_json()),
        sla_interval=0.2,
        graph_name=DEMO_GRAPH_NAME,
    )
    with serving(create_app(settings=settings)) as running:
        yield running


# -- helpers --------------------------------------------------------------------------------


async def open_incident(url: str, spec: DemoIncident, run: str, **fields: Any) -> str:
    """Post the demo alert of ``spec`` and wait until its incident waits for approval."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        alert = {**demo_alert(spec, run=run), **fields}
        response = await client.post("/alerts", json=alert, headers=auth("alertmanager"))
        assert response.status_code == 202, response.text
        incident = str(response.json()["incidents"][0]["incident_id"])
        while True:
            if (await read_incident(url, incident))["status"] == "awaiting_approval":
                return incident
            await asyncio.sleep(0.05)


async def read_incident(url: str, incident: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        response = await client.get(f"/incidents/{incident}", headers=auth("vic"))
        assert response.status_code == 200, response.text
        return dict(response.json())


# Chromium logs every 4xx answer to fetch() as a console error; those are expected here.
HTTP_ERROR_LOG = re.compile(r"Failed to load resource: the server responded with a status of 4")


async def open_console(browser: Browser, url: str, errors: list[str]) -> Page:
    """A fresh browser context (its own sessionStorage) on the console; script errors and
    console errors (a CSP violation is one) are collected in ``errors``."""
    context = await browser.new_context()
    page = await context.new_page()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not HTTP_ERROR_LOG.match(message.text):
            errors.append(f"console: {message.text}")

    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on("console", on_console)
    response = await page.goto(f"{url}/console")
    assert response is not None and response.status == 200
    await expect(page.get_by_role("heading", name="Approval console")).to_be_visible()
    return page


async def use_token(page: Page, token: str) -> None:
    await page.get_by_label("Bearer token").fill(token)
    await page.get_by_role("button", name="Use token").click()


def incident_card(page: Page, incident: str) -> Locator:
    return page.locator(f'article[data-incident-id="{incident}"]')


def seconds_left(text: str | None) -> int:
    """``1h 59m 58s left to decide`` as seconds."""
    match = re.fullmatch(r"(?:(\d+)h )?(?:(\d+)m )?(\d+)s left to decide", text or "")
    assert match, text
    hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return hours * 3600 + minutes * 60 + seconds


# -- the page itself (no browser) -----------------------------------------------------------


def test_the_console_is_served_without_credentials_and_kept_out_of_the_schema() -> None:
    client = TestClient(create_app(database_url="memory://"))  # no lifespan: no database
    page = client.get("/console")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert 'src="console/console.js"' in page.text and 'href="console/console.css"' in page.text
    for path, media in [("/console/console.js", "text/javascript"), ("/console/console.css",
                        "text/css")]:  # fmt: skip
        asset = client.get(path)
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(media)
        assert asset.headers["content-security-policy"] == csp
    # The page's relative URLs need /console without the slash.
    slash = client.get("/console/", follow_redirects=False)
    assert slash.status_code in (307, 308) and slash.headers["location"].endswith("/console")
    assert client.get("/console/other.js").status_code == 404
    assert not [path for path in client.get("/openapi.json").json()["paths"] if "console" in path]


def test_the_console_script_never_renders_data_as_html() -> None:
    script = console_file("console.js").decode()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
    assert "localStorage" not in script and "document.cookie" not in script
    assert f'"{TOKEN_KEY}"' in script


# -- in the browser -------------------------------------------------------------------------


@pytest.mark.browser
async def test_approve_from_the_console_and_a_second_approver_sees_the_conflict(
    browser: Browser, server: InProcessServer
) -> None:
    errors: list[str] = []
    incident = await open_incident(server.url, DEMO_INCIDENTS[0], run="console-approve")

    alice = await open_console(browser, server.url, errors)
    await use_token(alice, TOKENS["alice"][0])
    card = incident_card(alice, incident)
    await expect(card.get_by_role("heading", name="HighErrorRate on checkout")).to_be_visible()
    await expect(card).to_contain_text("Severity P1")
    await expect(card).to_contain_text("rollback payments")  # the plan's step
    await expect(card).to_contain_text("OK: would rollback payments")  # its dry run
    await expect(card).to_contain_text("a bad deploy in payments")  # the root cause
    await expect(card).to_contain_text("90% (confident, after 1 attempt(s))")

    # The countdown to the deadline (P1: two hours) counts down.
    countdown = card.get_by_role("timer")
    first = await countdown.text_content()
    assert 0 < seconds_left(first) <= 2 * 3600
    await expect(countdown).not_to_have_text(first or "")
    assert seconds_left(await countdown.text_content()) < seconds_left(first)

    # The token is in this tab's sessionStorage only, and out of the field.
    await expect(alice.get_by_label("Bearer token")).to_have_value("")
    kept = await alice.evaluate(
        "key => [sessionStorage.getItem(key), localStorage.length, document.cookie]", TOKEN_KEY
    )
    assert kept == [TOKENS["alice"][0], 0, ""]

    # Bob opens the console too, before alice decides: his own context, his own token.
    bob = await open_console(browser, server.url, errors)
    await expect(bob.get_by_role("status").first).to_contain_text("Enter a token")
    await use_token(bob, TOKENS["bob"][0])
    bobs_card = incident_card(bob, incident)
    await expect(bobs_card.get_by_role("button", name="Approve")).to_be_enabled()

    await card.get_by_role("button", name="Approve").click()
    await expect(card).to_contain_text("Recorded: approved by alice")
    await expect(card).to_contain_text("Finished: resolved", timeout=SERVER_WAIT_MS)
    await expect(card.get_by_role("button", name="Approve")).to_be_disabled()

    await bobs_card.get_by_role("button", name="Approve").click()
    (decision,) = (await read_incident(server.url, incident))["approvals"]
    assert decision["decided_by"] == "alice" and decision["status"] == "approved"
    decided_at = await bob.evaluate("iso => new Date(iso).toLocaleString()", decision["decided_at"])
    await expect(bobs_card).to_contain_text(
        f"Conflict: already approved by alice at {decided_at}: someone else decided first."
    )
    await expect(bobs_card).to_contain_text("Finished: resolved", timeout=SERVER_WAIT_MS)

    detail = await read_incident(server.url, incident)
    assert detail["outcome"] == "resolved"
    assert [a["decided_by"] for a in detail["approvals"]] == ["alice"]  # bob recorded nothing
    assert errors == []


@pytest.mark.browser
async def test_reject_needs_a_reason_and_everything_is_shown_as_text(
    browser: Browser, server: InProcessServer
) -> None:
    errors: list[str] = []
    markup = '<img src="x" onerror="window.pwned = 1">DiskFull'
    incident = await open_incident(server.url, DEMO_INCIDENTS[1], run="console-reject",
                                   name=markup)  # fmt: skip
    page = await open_console(browser, server.url, errors)

    await use_token(page, "not-a-token")
    await expect(page.get_by_role("status").first).to_contain_text(
        "The token was refused (HTTP 401"
    )
    await use_token(page, TOKENS["bob"][0])
    card = incident_card(page, incident)
    # The alert's name is data: shown as text, never parsed as HTML.
    await expect(card.get_by_role("heading", level=3)).to_have_text(f"{markup} on db")
    assert await page.locator("img").count() == 0
    assert await page.evaluate("() => window.pwned") is None

    await card.get_by_role("button", name="Reject").click()
    await expect(card).to_contain_text("A reason is required to reject.")
    reason = card.get_by_label("Reason (required to reject)")
    await expect(reason).to_have_attribute("aria-invalid", "true")
    await expect(reason).to_be_focused()
    assert (await read_incident(server.url, incident))["approvals"][0]["status"] == "pending"

    said = "clean up by hand <b>first</b>"
    await reason.fill(said)
    await card.get_by_role("button", name="Reject").click()
    await expect(card).to_contain_text("Recorded: rejected by bob")
    await expect(card).to_contain_text("Finished: escalated (rejected).", timeout=SERVER_WAIT_MS)

    (decision,) = (await read_incident(server.url, incident))["approvals"]
    assert (decision["status"], decision["decided_by"], decision["reason"]) == (
        "rejected",
        "bob",
        said,
    )
    assert errors == []


@pytest.mark.browser
async def test_links_the_alert_timeline_and_a_resolved_alert_are_shown_safely(
    browser: Browser, server: InProcessServer
) -> None:
    errors: list[str] = []
    alert = demo_alert(DEMO_INCIDENTS[0], run="console-links")
    hostile = "https://runbooks.example/x'onmouseover='window.pwned=1"
    item = {
        "labels": {"alertname": alert["name"], "service": alert["service"], **alert["labels"]},
        "annotations": {
            "summary": alert["description"],
            "runbook_url": hostile,
            "dashboard": "javascript:window.pwned=2",  # dropped: not http(s)
            "grafana_url": "https://grafana.example/d/checkout?from=now-1h&to=now",
        },
        "startsAt": alert["fired_at"],
        "generatorURL": "http://prometheus.example/graph?g0.expr=up",
        "fingerprint": "console-links-fp",
    }
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        response = await client.post(
            "/alerts", json={"version": "4", "alerts": [item]}, headers=auth("alertmanager")
        )
        assert response.status_code == 202, response.text
        incident = str(response.json()["incidents"][0]["incident_id"])
        while True:
            if (await read_incident(server.url, incident))["status"] == "awaiting_approval":
                break
            await asyncio.sleep(0.05)
        resolved = {**item, "status": "resolved", "endsAt": "2026-03-06T16:10:00Z"}
        response = await client.post(
            "/alerts", json={"version": "4", "alerts": [resolved]}, headers=auth("alertmanager")
        )
        assert response.status_code == 202 and response.json()["resolved"][0]["recorded"]

    page = await open_console(browser, server.url, errors)
    await use_token(page, TOKENS["alice"][0])
    card = incident_card(page, incident)
    await expect(card.get_by_role("note")).to_contain_text("The alert resolved at")
    await expect(card.get_by_role("link", name="Runbook")).to_have_attribute("href", hostile)
    await expect(card.get_by_role("link", name="Dashboard")).to_have_attribute(
        "href", "https://grafana.example/d/checkout?from=now-1h&to=now"
    )
    await expect(card.get_by_role("link", name="Alert source")).to_have_attribute(
        "href", "http://prometheus.example/graph?g0.expr=up"
    )
    await expect(card.locator(".alert-events li")).to_have_count(2)
    await expect(card.locator(".alert-events")).to_contain_text("resolved")
    await card.get_by_role("link", name="Runbook").hover()
    assert await page.evaluate("() => window.pwned") is None
    assert await page.locator("a[href^='javascript']").count() == 0
    assert errors == []
