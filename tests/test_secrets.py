"""Secrets never reach state, logs or the ledger.

The full agent — Claude through the ``anthropic`` SDK, PagerDuty Events v2, Slack — runs
behind the incident API, every integration pointed at a local server and configured with a
distinctive fake secret: the Anthropic API key, the PagerDuty routing key, the Slack bot token
and signing secret, the API bearer tokens, and (on PostgreSQL) the database password.
Incidents go through approval in Slack, rejection over HTTP, failing integrations and refused
requests. Then every log record (root logger at DEBUG: httpx, anthropic, slack_sdk, psycopg,
aiosqlite, uvicorn…), this process's stdout and stderr (or the ``durable-ir serve`` child's),
every HTTP answer, and every row of every table are searched for the secrets — and for the
marker every one of them carries, which finds a partial leak too.

Each test also checks that the secrets were really used (the local servers received them),
so a secret that never flowed through cannot make a search come back clean.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import sqlite3
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import anthropic
import httpx
import psycopg
import pytest
from psycopg import sql
from slack_sdk.web.async_client import AsyncWebClient

from durable_ir import open_runtime, parse_database_url
from durable_ir.integrations.pagerduty import PagerDutyError, PagerDutyNotifier
from durable_ir.integrations.slack import SlackError, SlackNotifier
from durable_ir.notifications import IncidentEvent
from durable_ir.rca import AnalysisRequest, AnalyzerError, EventEvidence, EvidenceWindow
from durable_ir.rca.analyzers.anthropic import AnthropicAnalyzer
from durable_ir.service import Principal, ServiceSettings, create_app, hash_token
from durable_ir.service.auth import parse_token_entries
from support.claude_api import ClaudeApi, api_error, api_key_of
from support.incident_parts import ALERT, fired_at
from support.local_http import serving
from support.pagerduty_api import PagerDutyApi
from support.secret_agent import agent_from_env
from support.service import ServiceProcess, free_port, service_env
from support.service import serving as serving_app
from support.slack_api import SlackApi

MARKER = "LeakProbe"
"""In every secret, and nowhere else: finding it (in any case) anywhere is a leak."""

ANTHROPIC_API_KEY = "sk-ant-api03-LeakProbe-anthropic-key-6f1e2d"
PAGERDUTY_ROUTING_KEY = "LeakProbePagerDutyRoutingKey0042"  # 32 characters, as PagerDuty's
SLACK_BOT_TOKEN = "xoxb-LeakProbe-slack-bot-token-7c3b9a"
SLACK_SIGNING_SECRET = "LeakProbe-slack-signing-secret-5d8e"
DATABASE_PASSWORD = "LeakProbe-database-password-9f0a"
API_TOKENS: dict[str, tuple[str, list[str]]] = {
    # identity: (token, roles)
    "alice": ("LeakProbe-api-token-alice-1a2b", ["approver"]),
    "vic": ("LeakProbe-api-token-vic-3c4d", ["viewer"]),
    "alertmanager": ("LeakProbe-api-token-alertmanager-5e6f", ["ingest"]),
}
SECRETS: dict[str, str] = {
    "ANTHROPIC_API_KEY": ANTHROPIC_API_KEY,
    "PagerDuty routing key": PAGERDUTY_ROUTING_KEY,
    "Slack bot token": SLACK_BOT_TOKEN,
    "Slack signing secret": SLACK_SIGNING_SECRET,
    "database password": DATABASE_PASSWORD,
    **{f"API token of {who}": token for who, (token, _) in API_TOKENS.items()},
}
SLACK_USERS = {"U-ALICE": {"identity": "alice", "roles": ["approver"]}}


# -- finding leaks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Leak:
    """Where a secret (or the marker) was found, and what was around it."""

    where: str
    what: str
    context: str


_MARKER_BYTES = re.compile(re.escape(MARKER.encode()), re.IGNORECASE)


def leaks_in(where: str, content: str | bytes) -> list[Leak]:
    """Every secret, and every occurrence of the marker, in ``content``."""
    found: list[Leak] = []
    data = content.encode("utf-8", "surrogateescape") if isinstance(content, str) else content
    for name, secret in SECRETS.items():
        at = data.find(secret.encode())
        if at >= 0:
            found.append(
                Leak(where, name, data[max(0, at - 80) : at + 80].decode(errors="replace"))
            )
    if not found:
        for match in _MARKER_BYTES.finditer(data):
            at = match.start()
            context = data[max(0, at - 80) : at + 80].decode(errors="replace")
            found.append(Leak(where, "part of a secret", context))
    return found


def assert_no_leaks(artifacts: Mapping[str, str | bytes]) -> None:
    """Fail, listing every leak, if any artifact holds a secret."""
    found = [leak for where, content in artifacts.items() for leak in leaks_in(where, content)]
    assert not found, "secrets leaked:\n" + "\n".join(
        f"- {leak.what} in {leak.where}: …{leak.context}…" for leak in found[:20]
    )


def test_the_search_finds_every_secret_whole_or_in_part() -> None:
    """The search itself: it would catch each secret, as text or bytes, and a partial one."""
    for name, secret in SECRETS.items():
        assert [leak.what for leak in leaks_in("text", f"x {secret} y")] == [name]
        assert [leak.what for leak in leaks_in("bytes", b"\x00" + secret.encode())] == [name]
    assert [leak.what for leak in leaks_in("cut", "token xoxb-LEAKPROBE-sla…")] == [
        "part of a secret"
    ]
    assert leaks_in("clean", "nothing to see: xoxb-***") == []


def log_artifacts(records: list[logging.LogRecord]) -> dict[str, str]:
    """Every log record as text: its message, exception and stack."""
    formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    return {f"log record {n} ({r.name})": formatter.format(r) for n, r in enumerate(records)}


def dump_database(url: str) -> dict[str, str | bytes]:
    """Every value of every row of every table (bytes as they are stored), keyed by
    ``table[row].column``."""
    parsed = parse_database_url(url)
    dump: dict[str, str | bytes] = {}

    def add(table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        for number, row in enumerate(rows):
            for column, value in zip(columns, row, strict=True):
                key = f"table {table}[{number}].{column}"
                if isinstance(value, bytes | bytearray | memoryview):
                    dump[key] = bytes(value)
                else:
                    dump[key] = json.dumps(value, default=str)

    if parsed.backend == "sqlite":
        with sqlite3.connect(parsed.target) as conn:
            tables = [
                name
                for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            for table in tables:
                cursor = conn.execute(f'SELECT * FROM "{table}"')
                add(table, [d[0] for d in cursor.description], cursor.fetchall())
        return dump
    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            " AND table_type = 'BASE TABLE'"
        ).fetchall()
        for schema, table in tables:
            cursor = conn.execute(
                sql.SQL("SELECT * FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
            )
            columns = [d.name for d in cursor.description or []]
            add(f"{schema}.{table}", columns, cursor.fetchall())
    return dump


def rows_per_table(dump: Mapping[str, Any]) -> dict[str, int]:
    """How many values of each table (by its name without schema) the dump holds."""
    counts: dict[str, int] = {}
    for key in dump:
        table = key.split("[", 1)[0].removeprefix("table ").split(".")[-1]
        counts[table] = counts.get(table, 0) + 1
    return counts


# -- the agent and its world ------------------------------------------------------------------


@dataclass
class World:
    """The local stand-ins for Claude, PagerDuty and Slack, and the agent's environment."""

    claude: ClaudeApi
    pagerduty: PagerDutyApi
    slack: SlackApi
    steps_dir: Path

    def env(self) -> dict[str, str]:
        return {
            "ANTHROPIC_API_KEY": ANTHROPIC_API_KEY,
            "ANTHROPIC_BASE_URL": self.claude.url,
            "PAGERDUTY_ROUTING_KEY": PAGERDUTY_ROUTING_KEY,
            "PAGERDUTY_URL": self.pagerduty.url,
            "SLACK_BOT_TOKEN": SLACK_BOT_TOKEN,
            "SLACK_API_URL": self.slack.url + "/api/",
            "SECRET_AGENT_DIR": str(self.steps_dir),
        }

    def check_the_secrets_were_used(self) -> None:
        """Each integration really sent its secret: a clean search means something."""
        assert self.claude.received, "Claude was never asked"
        assert ANTHROPIC_API_KEY in {api_key_of(r["headers"]) for r in self.claude.received}
        assert self.pagerduty.events(), "PagerDuty was never called"
        assert PAGERDUTY_ROUTING_KEY in {e["routing_key"] for e in self.pagerduty.events()}
        assert self.slack.requests, "Slack was never called"
        assert f"Bearer {SLACK_BOT_TOKEN}" in {auth for _, auth, _ in self.slack.requests}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    steps = tmp_path / "steps"
    steps.mkdir()
    with (
        serving(ClaudeApi(ANTHROPIC_API_KEY)) as claude,
        serving(PagerDutyApi()) as pagerduty,
        serving(SlackApi()) as slack,
    ):
        yield World(claude, pagerduty, slack, steps)


def with_password(url: str) -> str:
    """``url`` (PostgreSQL) with :data:`DATABASE_PASSWORD` in it: the test server trusts
    local connections, so the password is carried along and never checked."""
    if not url.startswith(("postgresql://", "postgres://")):
        return url
    parts = urllib.parse.urlsplit(url)
    user = parts.username or "postgres"
    netloc = f"{user}:{DATABASE_PASSWORD}@{parts.hostname}" + (
        f":{parts.port}" if parts.port else ""
    )
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def tokens_json() -> str:
    return json.dumps(
        [
            {"identity": who, "roles": roles, "token_sha256": hash_token(token)}
            for who, (token, roles) in API_TOKENS.items()
        ]
    )


def bearer(identity: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {API_TOKENS[identity][0]}"}


def slack_click(incident_id: str, approval_id: str, *, user: str = "U-ALICE") -> bytes:
    value = json.dumps({"incident_id": incident_id, "approval_id": approval_id})
    payload = {
        "type": "block_actions",
        "user": {"id": user},
        "actions": [{"action_id": "durable_ir_approve", "value": value}],
    }
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


def slack_signed(body: bytes, secret: str = SLACK_SIGNING_SECRET) -> dict[str, str]:
    timestamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256)
    return {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": "v0=" + digest.hexdigest(),
        "Content-Type": "application/x-www-form-urlencoded",
    }


class Client:
    """The incident API's client; keeps every answer it got, to be searched too."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=60)
        self.answers: list[httpx.Response] = []

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        self.answers.append(response)
        return response

    def detail(self, incident_id: str) -> dict[str, Any]:
        response = self.call("GET", f"/incidents/{incident_id}", headers=bearer("vic"))
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_for(
        self, incident_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            detail = self.detail(incident_id)
            if done(detail):
                return detail
            assert time.monotonic() < deadline, f"{incident_id} stuck: {detail['status']}"
            time.sleep(0.05)

    def open_incident(self, name: str, severity: str) -> dict[str, Any]:
        alert = {**ALERT, "name": name, "severity": severity}
        response = self.call("POST", "/alerts", json=alert, headers=bearer("alertmanager"))
        assert response.status_code == 202, response.text
        (item,) = response.json()["incidents"]
        detail = self.wait_for(
            item["incident_id"], lambda d: d["status"] == "awaiting_approval" or closed(d)
        )
        assert detail["status"] == "awaiting_approval", json.dumps(detail, default=str)[:3000]
        return detail

    def artifacts(self) -> dict[str, str]:
        return {
            f"HTTP answer {n} ({r.request.method} {r.request.url.path})": (
                f"{r.status_code} {dict(r.headers)} {r.text}"
            )
            for n, r in enumerate(self.answers)
        }


def closed(detail: dict[str, Any]) -> bool:
    """The incident's run ended (an incident opened but not yet started also reads as
    ``finished``, so the index's state tells)."""
    return bool(detail["state"] == "closed")


def run_incidents(client: Client, world: World) -> None:
    """Drive the agent behind ``client`` through every path that touches a secret."""
    # A P0: paged on open, approved with a signed Slack click, resolved (page resolved).
    paged = client.open_incident("CheckoutDown", "P0")
    approval = paged["pending_approval"]["approval_id"]
    body = slack_click(paged["incident_id"], approval)
    clicked = client.call("POST", "/slack/interactions", content=body, headers=slack_signed(body))
    assert clicked.status_code == 200, clicked.text
    done = client.wait_for(paged["incident_id"], closed)
    assert done["outcome"] == "resolved"

    # Refused requests: no token, a wrong one, too weak a role, a forged Slack signature.
    rejected = client.open_incident("HighLatency", "P1")
    path = f"/incidents/{rejected['incident_id']}/reject"
    refused = [
        client.call("POST", path, json={"reason": "no"}),
        client.call("POST", path, json={"reason": "no"}, headers={"Authorization": "Bearer x"}),
        client.call("POST", path, json={"reason": "no"}, headers=bearer("vic")),
        client.call(
            "POST",
            "/slack/interactions",
            content=body,
            headers=slack_signed(body, "not-the-secret"),
        ),
    ]
    assert [r.status_code for r in refused] == [401, 401, 403, 401]
    # Rejected over HTTP: escalated, paged.
    response = client.call("POST", path, json={"reason": "too risky"}, headers=bearer("alice"))
    assert response.status_code == 202, response.text
    assert client.wait_for(rejected["incident_id"], closed)["outcome"] == "escalated"

    # Claude overloaded once (the RCA loop retries), then Slack and PagerDuty failing while the
    # incident escalates: the errors end up in logs and state.
    world.claude.failures.append(api_error(529, "overloaded_error", "Overloaded"))
    failing = client.open_incident("DiskFull", "P1")
    world.slack.error = "invalid_auth"
    world.pagerduty.scripted.extend([(500, {"status": "error", "message": "boom"}, {})] * 2)
    path = f"/incidents/{failing['incident_id']}/reject"
    response = client.call("POST", path, json={"reason": "escalate"}, headers=bearer("alice"))
    assert response.status_code == 202, response.text
    assert client.wait_for(failing["incident_id"], closed)["outcome"] == "escalated"
    world.slack.error = None
    assert len(world.claude.received) >= 4  # three incidents, one retry


def check_the_failures_were_stored(dump: Mapping[str, str | bytes]) -> None:
    """The integrations' errors reached the database (state and index), so the search of
    the tables covered them."""
    stored = [v.encode() if isinstance(v, str) else v for v in dump.values()]
    for error in (b"Slack chat.postMessage failed: invalid_auth", b"PagerDuty answered 500"):
        assert any(error in value for value in stored), f"{error!r} is not in the database"


def service_settings(database_url: str) -> ServiceSettings:
    return ServiceSettings(
        database_url=database_url,
        api_tokens=parse_token_entries(tokens_json()),
        sla_interval=0.2,
        graph_name="secret-agent",
        slack_signing_secret=SLACK_SIGNING_SECRET,
        slack_users={"U-ALICE": Principal("alice", frozenset({"approver"}))},
    )


async def state_of_every_incident(database_url: str) -> dict[str, str]:
    async with open_runtime(database_url) as rt:
        rt.register(agent_from_env().build(), name="secret-agent")
        found = {}
        for row in await rt.incidents(limit=100):
            snapshot = await rt.get(row.incident_id)
            found[f"state of {row.incident_id}"] = json.dumps(snapshot.values, default=str)
            found[f"index row of {row.incident_id}"] = repr(row)
            found[f"approvals of {row.incident_id}"] = repr(snapshot.approvals)
        return found


# -- the tests --------------------------------------------------------------------------------


async def test_no_secret_in_logs_output_answers_state_or_tables(
    durable_url: str,
    world: World,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The service in this process, everything logged at DEBUG."""
    caplog.set_level(logging.DEBUG)
    for name, value in world.env().items():
        monkeypatch.setenv(name, value)
    database_url = with_password(durable_url)
    app = create_app(graph=agent_from_env(), settings=service_settings(database_url))
    with serving_app(app) as server:
        client = Client(server.url)
        run_incidents(client, world)
    world.check_the_secrets_were_used()

    out, err = capfd.readouterr()
    state = await state_of_every_incident(database_url)
    dump = dump_database(durable_url)
    dumped = rows_per_table(dump)
    for table in ("durable_ir_approvals", "durable_ir_incidents", "durable_ir_notifications"):
        assert dumped.get(table), f"nothing dumped from {table}: {dumped}"
    assert dumped.get("checkpoint_blobs") or dumped.get("writes"), dumped
    check_the_failures_were_stored(dump)
    records = list(caplog.records)
    loggers = {r.name.split(".")[0] for r in records}
    assert {
        "anthropic",
        "httpx",
        "slack_sdk",
        "durable_ir",
    } <= loggers, loggers
    assert_no_leaks(
        {
            **log_artifacts(records),
            "caplog text": caplog.text,
            "stdout": out,
            "stderr": err,
            **client.artifacts(),
            **state,
            **dump,
            "service settings": repr(service_settings(database_url)),
        }
    )


def test_no_secret_in_the_output_of_durable_ir_serve(
    durable_url: str, world: World, tmp_path: Path
) -> None:
    """``durable-ir serve --log-level debug`` with every secret in its environment."""
    env = service_env(
        **world.env(),
        DURABLE_IR_API_TOKENS=tokens_json(),
        SLACK_SIGNING_SECRET=SLACK_SIGNING_SECRET,
        DURABLE_IR_SLACK_USERS=json.dumps(SLACK_USERS),
    )
    database_url = with_password(durable_url)
    server = ServiceProcess(
        database_url,
        "--graph",
        "support.secret_agent:agent_graph",
        "--graph-name",
        "secret-agent",
        "--log-level",
        "debug",
        env=env,
        log=tmp_path / "serve.log",
    )
    try:
        server.wait_ready()
        client = Client(server.url)
        run_incidents(client, world)
    finally:
        server.stop()
    world.check_the_secrets_were_used()
    output = (tmp_path / "serve.log").read_bytes()
    assert b"Application startup complete" in output and b"POST /alerts" in output
    dump = dump_database(durable_url)
    check_the_failures_were_stored(dump)
    assert_no_leaks({"serve output": output, **client.artifacts(), **dump})


async def test_integration_errors_never_carry_their_secrets(world: World) -> None:
    """Failures of PagerDuty, Slack and Claude — refused, failing, unreachable — as the
    caller sees them: message, repr, attributes and the whole chained traceback."""
    closed = f"http://127.0.0.1:{free_port()}"
    failures: list[BaseException] = []

    async def failure(call: Callable[[], Any], kind: type[BaseException]) -> None:
        with pytest.raises(kind) as caught:
            await call()
        failures.append(caught.value)

    def pagerduty(url: str) -> PagerDutyNotifier:
        return PagerDutyNotifier(PAGERDUTY_ROUTING_KEY, base_url=url, backoff=0, max_retries=1)

    world.pagerduty.scripted.append((400, {"status": "invalid event", "message": "bad"}, {}))
    await failure(
        lambda: pagerduty(world.pagerduty.url).trigger("inc-1", "s", "P1", "x"), PagerDutyError
    )
    world.pagerduty.scripted.extend([(503, {"status": "error", "message": "down"}, {})] * 2)
    await failure(lambda: pagerduty(world.pagerduty.url).resolve("inc-1"), PagerDutyError)
    await failure(lambda: pagerduty(closed).trigger("inc-1", "s", "P1", "x"), PagerDutyError)

    def slack(url: str) -> SlackNotifier:
        return SlackNotifier(AsyncWebClient(token=SLACK_BOT_TOKEN, base_url=url), "C0INCIDENTS")

    escalated = IncidentEvent(
        kind="escalated",
        incident_id="inc-1",
        severity="P1",
        title="checkout 5xx",
        at=fired_at(),
        reason="rejected",
    )
    world.slack.error = "invalid_auth"
    await failure(lambda: slack(world.slack.url + "/api/").notify(escalated), SlackError)
    world.slack.error = None
    await failure(lambda: slack(closed + "/api/").notify(escalated), SlackError)

    request = analysis_request()
    for reply in (
        api_error(401, "authentication_error", "invalid x-api-key"),
        api_error(500, "api_error", "Internal server error"),
    ):
        world.claude.failures.append(reply)
        await failure(lambda: claude(world.claude.url).analyze(request), AnalyzerError)
    await failure(lambda: claude(closed).analyze(request), AnalyzerError)
    await failure(lambda: claude(world.claude.url, "wrong-key").analyze(request), AnalyzerError)
    await slack(world.slack.url + "/api/").notify(escalated)  # the token, really sent

    assert len(failures) == 9
    world.check_the_secrets_were_used()
    assert_no_leaks(
        {
            f"{type(exc).__name__} {n}": (
                f"{exc}\n{exc!r}\n{vars(exc)!r}\n" + "".join(traceback.format_exception(exc))
            )
            for n, exc in enumerate(failures)
        }
    )


def claude(url: str, key: str = ANTHROPIC_API_KEY) -> AnthropicAnalyzer:
    return AnthropicAnalyzer(anthropic.AsyncAnthropic(api_key=key, base_url=url, max_retries=0))


def analysis_request() -> AnalysisRequest:
    window = EvidenceWindow.ending_at(fired_at(), timedelta(minutes=15))
    evidence = EventEvidence(
        id="ev-1",
        service="checkout",
        at=window.start,
        summary="deploy v42 rolled out",
        reason="Deployed",
    )
    return AnalysisRequest(alert=ALERT, attempt=1, window=window, evidence=[evidence])
