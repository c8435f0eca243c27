"""The incident API over real HTTP (uvicorn on a loopback port, httpx), on SQLite and
PostgreSQL, with the demo agent's graph: the lifecycle, every error status, racing
decisions, alert dedup, Slack, the no-credentials mode and the P0 policy."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

import httpx
import pytest

from durable_ir import open_runtime
from durable_ir.cli import main
from durable_ir.demo.agent import DEMO_GRAPH_NAME, DEMO_INCIDENTS, DemoIncident, demo_alert
from durable_ir.records import ApprovalRecord
from durable_ir.service import Principal, ServiceSettings, create_app, hash_token
from durable_ir.service.auth import parse_token_entries
from durable_ir.service.routes.slack import SLACK_REJECT_REASON
from support.service import auth, serving, tokens_json

SLACK_SECRET = "slack-signing-secret-for-tests"


class Api:
    """A client of one served app, plus direct reads of its database."""

    def __init__(self, url: str, database_url: str) -> None:
        self.url = url
        self.database_url = database_url
        self.client = httpx.Client(base_url=url, timeout=60)

    def get(self, path: str, who: str | None = "vic", **kwargs: Any) -> httpx.Response:
        return self.client.get(path, headers=auth(who) if who else {}, **kwargs)

    def post(self, path: str, who: str | None = "alice", **kwargs: Any) -> httpx.Response:
        headers = {**(auth(who) if who else {}), **kwargs.pop("headers", {})}
        return self.client.post(path, headers=headers, **kwargs)

    def alert(
        self, spec: DemoIncident = DEMO_INCIDENTS[0], *, run: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        payload = demo_alert(spec, run=run or uuid.uuid4().hex[:8])
        return {**payload, **fields}

    def open_incident(self, spec: DemoIncident = DEMO_INCIDENTS[0], **fields: Any) -> str:
        """Post an alert and wait until its incident waits for approval."""
        response = self.post("/alerts", who="alertmanager", json=self.alert(spec, **fields))
        assert response.status_code == 202, response.text
        (item,) = response.json()["incidents"]
        assert item["created"] is True
        self.wait_status(item["incident_id"], "awaiting_approval")
        return str(item["incident_id"])

    def detail(self, incident_id: str) -> dict[str, Any]:
        response = self.get(f"/incidents/{incident_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_status(self, incident_id: str, status: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            detail = self.detail(incident_id)
            if detail["status"] == status:
                return detail
            assert time.monotonic() < deadline, f"{incident_id} stuck at {detail['status']}"
            time.sleep(0.05)

    def history(self, incident_id: str) -> list[ApprovalRecord]:
        async def read() -> list[ApprovalRecord]:
            async with open_runtime(self.database_url) as rt:
                return await rt.history(incident_id)

        return asyncio.run(read())


def settings_for(database_url: str, **overrides: Any) -> ServiceSettings:
    base = ServiceSettings(
        database_url=database_url,
        api_tokens=parse_token_entries(tokens_json()),
        sla_interval=0.2,
        graph_name=DEMO_GRAPH_NAME,
        slack_signing_secret=SLACK_SECRET,
        slack_users={"U-ALICE": Principal("alice", frozenset({"approver"}))},
    )
    return replace(base, **overrides)


@pytest.fixture
def make_api(durable_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Api]]:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)  # the demo graph stays offline
    with ExitStack() as stack:

        def make(**overrides: Any) -> Api:
            app = create_app(settings=settings_for(durable_url, **overrides))
            server = stack.enter_context(serving(app))
            return Api(server.url, durable_url)

        yield make


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()


def decided(history: list[ApprovalRecord]) -> list[ApprovalRecord]:
    return [r for r in history if not r.is_pending]


# -- the lifecycle --------------------------------------------------------------------------


def test_alert_to_approval_to_resolved(api: Api) -> None:
    incident = api.open_incident()
    detail = api.detail(incident)
    assert detail["title"] == "HighErrorRate on checkout"
    assert detail["severity"] == "P1" and detail["state"] == "open"
    assert detail["plan"]["steps"][0]["action"] == "rollback"
    assert detail["dry_run"][0]["ok"] is True
    assert detail["rca"]["status"] == "confident" and detail["rca"]["fault"] == "bad_deploy"
    pending = detail["pending_approval"]
    assert pending["status"] == "pending" and pending["deadline_at"]
    assert pending["request"]["action_requests"][0]["args"]["plan"] == detail["plan"]
    assert [e["stage"] for e in detail["timeline"]][:3] == ["ingest", "triage", "rca"]

    listed = api.get("/incidents", params={"status": "awaiting_approval"}).json()
    assert [i["incident_id"] for i in listed["incidents"]] == [incident]
    assert listed["incidents"][0]["pending_approval"]["deadline_at"] == pending["deadline_at"]
    assert listed["incidents"][0]["pending_approval"]["request"] is None  # lists stay small

    response = api.post(f"/incidents/{incident}/approve", json={"reason": "rollback is safe"})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["decision"]["status"] == "approved"
    assert accepted["decision"]["decided_by"] == "alice"  # from the token, not the body
    assert accepted["decision"]["reason"] == "rollback is safe"

    finished = api.wait_status(incident, "finished")
    assert finished["state"] == "closed" and finished["outcome"] == "resolved"
    assert finished["pending_approval"] is None
    assert [a["decided_by"] for a in finished["approvals"]] == ["alice"]
    assert finished["approvals"][0]["applied_at"] is not None
    assert finished["report"]["outcome"] == "resolved"
    assert finished["report"]["decision"]["decided_by"] == "alice"
    closed = api.get("/incidents", params={"status": "closed"}).json()["incidents"]
    assert [(i["incident_id"], i["status"], i["outcome"]) for i in closed] == [
        (incident, "finished", "resolved")
    ]
    assert api.get("/incidents", params={"status": "open"}).json()["count"] == 0


def test_reject_escalates(api: Api) -> None:
    incident = api.open_incident(DEMO_INCIDENTS[1])
    response = api.post(f"/incidents/{incident}/reject", who="bob", json={"reason": "by hand"})
    assert response.status_code == 202, response.text
    assert response.json()["decision"]["status"] == "rejected"
    finished = api.wait_status(incident, "finished")
    assert finished["outcome"] == "escalated" and finished["outcome_reason"] == "rejected"
    (record,) = api.history(incident)
    assert (record.decided_by, record.reason) == ("bob", "by hand")


def test_wait_true_answers_200_with_the_incident_afterwards(api: Api) -> None:
    incident = api.open_incident()
    response = api.post(f"/incidents/{incident}/approve", params={"wait": "true"})
    assert response.status_code == 200, response.text
    detail = response.json()
    assert detail["status"] == "finished" and detail["outcome"] == "resolved"
    assert detail["approvals"][0]["applied_at"] is not None


def test_an_edited_plan_is_recorded_and_applied_and_a_bad_one_changes_nothing(api: Api) -> None:
    incident = api.open_incident()
    plan = api.detail(incident)["plan"]
    bad = {"steps": [{"action": "delete_database", "target": "payments"}]}
    refused = api.post(f"/incidents/{incident}/approve", json={"plan": bad})
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "invalid_decision"
    assert decided(api.history(incident)) == []

    edited = {**plan, "summary": "roll back payments (edited)"}
    response = api.post(f"/incidents/{incident}/approve", json={"plan": edited, "reason": "ok"})
    assert response.status_code == 202, response.text
    assert response.json()["decision"]["edited_plan"]["summary"] == "roll back payments (edited)"
    assert api.wait_status(incident, "finished")["outcome"] == "resolved"


# -- errors ---------------------------------------------------------------------------------


def test_unknown_incidents_are_404_and_write_nothing(api: Api) -> None:
    for response in (
        api.get("/incidents/INC-404"),
        api.post("/incidents/INC-404/approve"),
        api.post("/incidents/INC-404/reject", json={"reason": "no"}),
    ):
        assert response.status_code == 404, response.text
        assert response.json() == {
            "error": {"code": "not_found", "message": "no incident 'INC-404'"}
        }
    assert api.history("INC-404") == []
    assert api.get("/incidents").json()["count"] == 0


def test_a_second_decision_is_409_naming_the_winner(api: Api) -> None:
    incident = api.open_incident()
    first = api.post(f"/incidents/{incident}/approve")
    assert first.status_code == 202
    for response in (
        api.post(f"/incidents/{incident}/approve", who="bob"),
        api.post(f"/incidents/{incident}/reject", who="bob", json={"reason": "late"}),
    ):
        assert response.status_code == 409, response.text
        error = response.json()["error"]
        assert error["code"] == "conflict"
        assert error["winner"]["decided_by"] == "alice"
        assert error["winner"]["approval_id"] == first.json()["decision"]["approval_id"]
    assert len(decided(api.history(incident))) == 1


def test_malformed_bodies_are_422_and_change_nothing(api: Api) -> None:
    incident = api.open_incident()
    cases = [
        api.post(f"/incidents/{incident}/approve", json={"by": "mallory"}),
        api.post(f"/incidents/{incident}/reject", json={"reason": "no", "by": "mallory"}),
        api.post(f"/incidents/{incident}/reject", json={}),
        api.post(f"/incidents/{incident}/reject", json={"reason": ""}),
        api.post(f"/incidents/{incident}/reject", json={"reason": "   "}),
        api.post(f"/incidents/{incident}/approve", json={"plan": None}),
        api.post(f"/incidents/{incident}/approve", json=["approve"]),
        api.post(
            f"/incidents/{incident}/approve",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        ),
        api.post("/alerts", who="alertmanager", content=b"{not json"),
        # Deeply nested JSON (past the parser's recursion limit) and bytes that are not UTF-8.
        api.post(
            "/alerts",
            who="alertmanager",
            content=b'{"a": ' * 20_000 + b"1" + b"}" * 20_000,
            headers={"Content-Type": "application/json"},
        ),
        api.post(
            f"/incidents/{incident}/reject",
            content=b'{"reason": "\xff\xfe broken"}',
            headers={"Content-Type": "application/json"},
        ),
        api.post(
            "/alerts",
            who="alertmanager",
            content=b'{"name": "x\xc3", "service": "api", "severity": "P1"}',
            headers={"Content-Type": "application/json"},
        ),
        api.post("/alerts", who="alertmanager", json={"name": "x"}),
        api.post("/alerts", who="alertmanager", json={"alerts": []}),
        api.get("/incidents", params={"status": "sleeping"}),
        api.get("/incidents", params={"limit": 0}),
        api.get("/incidents/bad%01id"),
    ]
    for response in cases:
        assert response.status_code == 422, (response.request.url, response.text)
        assert response.json()["error"]["code"] in ("invalid_input", "invalid_decision")
    assert decided(api.history(incident)) == []
    assert api.get("/incidents").json()["count"] == 1


def test_oversized_bodies_are_413(api: Api) -> None:
    incident = api.open_incident()
    big = json.dumps({"reason": "x" * 300_000}).encode()
    declared = api.post(
        f"/incidents/{incident}/approve",
        content=big,
        headers={"Content-Type": "application/json"},
    )
    assert declared.status_code == 413
    assert declared.json()["error"]["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"reason": "'
        for _ in range(40):
            yield b"x" * 10_000
        yield b'"}'

    streamed = api.post(
        f"/incidents/{incident}/approve",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert streamed.status_code == 413
    alerts = api.post("/alerts", who="alertmanager", content=b"[" + b"1," * 200_000 + b"1]")
    assert alerts.status_code == 413
    assert decided(api.history(incident)) == []
    assert api.get("/incidents").json()["count"] == 1


def test_credentials_401_and_roles_403(api: Api) -> None:
    incident = api.open_incident()
    approve = f"/incidents/{incident}/approve"
    for response in (
        api.get("/incidents", who=None),
        api.post(approve, who=None),
        api.post(approve, who=None, headers={"Authorization": "Bearer not-a-token"}),
        api.post(approve, who=None, headers={"Authorization": "Basic YWxpY2U6eA=="}),
        api.post("/alerts", who=None, json=api.alert()),
    ):
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"] == "Bearer"
    for response in (
        api.post(approve, who="vic"),  # a viewer cannot decide
        api.post("/alerts", who="alice", json=api.alert()),  # an approver does not ingest
        api.get("/incidents", who="alertmanager"),  # the ingest token reads nothing
    ):
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "forbidden"
    assert api.get("/healthz", who=None).json()["status"] == "ok"  # no auth
    assert decided(api.history(incident)) == []


def test_p0_decisions_need_a_lead_when_the_policy_says_so(make_api: Callable[..., Api]) -> None:
    api = make_api(p0_role="lead")
    incident = api.open_incident(severity="P0")
    assert api.detail(incident)["pending_approval"]["severity"] == "P0"
    refused = api.post(f"/incidents/{incident}/approve", who="alice")
    assert refused.status_code == 403
    assert "lead" in refused.json()["error"]["message"]
    assert decided(api.history(incident)) == []
    accepted = api.post(f"/incidents/{incident}/approve", who="carol")
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["decision"]["decided_by"] == "carol"
    # A P1 is decided by any approver under the same policy.
    other = api.open_incident(DEMO_INCIDENTS[1])
    assert api.post(f"/incidents/{other}/reject", json={"reason": "no"}).status_code == 202


# -- races ----------------------------------------------------------------------------------


def concurrently(*calls: Callable[[], httpx.Response]) -> list[httpx.Response]:
    barrier = threading.Barrier(len(calls))
    results: list[httpx.Response | None] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def test_double_click_approve_is_one_202_and_one_409_with_the_winner(api: Api) -> None:
    for round_, (first, second) in enumerate([("alice", "alice"), ("alice", "bob")] * 2):
        incident = api.open_incident(run=f"double-{round_}")
        clients = [httpx.Client(base_url=api.url, timeout=60) for _ in range(2)]
        path = f"/incidents/{incident}/approve"
        responses = concurrently(
            *(
                lambda c=c, who=who, path=path: c.post(path, headers=auth(who))
                for c, who in zip(clients, (first, second), strict=True)
            )
        )
        assert sorted(r.status_code for r in responses) == [202, 409], [r.text for r in responses]
        won = next(r for r in responses if r.status_code == 202).json()["decision"]
        lost = next(r for r in responses if r.status_code == 409).json()["error"]
        assert lost["winner"]["approval_id"] == won["approval_id"]
        assert lost["winner"]["decided_by"] == won["decided_by"]
        assert lost["winner"]["decided_at"] == won["decided_at"]
        finished = api.wait_status(incident, "finished")
        assert finished["outcome"] == "resolved"
        (record,) = decided(api.history(incident))
        assert record.decided_by == won["decided_by"] and record.applied_at is not None
        applied = [e for e in finished["timeline"] if e["stage"] == "apply"]
        assert len(applied) == 1  # remediation ran once


def test_approve_racing_the_sla_monitor_has_one_winner(make_api: Callable[..., Api]) -> None:
    api = make_api(sla_interval=0.05)
    window = DemoIncident("bad_deploy", 3, "expire", approval_window_s=1)
    outcomes = []
    for round_, offset in enumerate([-0.2, -0.05, 0.0, 0.05, 0.15, 0.4]):
        incident = api.open_incident(window, run=f"race-{round_}")
        deadline = api.detail(incident)["pending_approval"]["deadline_at"]
        due = time.time() + max(0.0, _epoch(deadline) - time.time() + offset)
        time.sleep(max(0.0, due - time.time()))
        response = api.post(f"/incidents/{incident}/approve")
        assert response.status_code in (202, 409), response.text
        finished = api.wait_status(incident, "finished")
        (record,) = decided(api.history(incident))  # exactly one decision, whoever won
        if response.status_code == 202:
            assert record.decided_by == "alice" and finished["outcome"] == "resolved"
        else:
            assert response.json()["error"]["winner"]["decided_by"] == "system:sla"
            assert record.decided_by == "system:sla" and finished["outcome"] == "escalated"
        assert record.applied_at is not None
        outcomes.append(record.decided_by)
    assert set(outcomes) <= {"alice", "system:sla"}


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# -- alerts ---------------------------------------------------------------------------------


def test_the_same_alert_again_attaches_to_the_open_incident(api: Api) -> None:
    alert = api.alert(run="dedup")
    first = api.post("/alerts", who="alertmanager", json=alert).json()
    second = api.post("/alerts", who="alertmanager", json=alert).json()
    assert (first["created"], first["attached"]) == (1, 0)
    assert (second["created"], second["attached"]) == (0, 1)
    (opened,), (attached,) = first["incidents"], second["incidents"]
    assert attached["incident_id"] == opened["incident_id"]
    assert attached["alerts_received"] == 2
    assert api.get("/incidents").json()["count"] == 1

    # An Alertmanager webhook: two copies of one alert, one other, one resolution notice.
    labels = {"alertname": "DiskFull", "service": "db", "severity": "warning"}
    item = {"labels": labels, "startsAt": "2026-03-06T15:55:00Z", "fingerprint": "fp-disk"}
    webhook = {
        "version": "4",
        "alerts": [
            item,
            item,
            {**item, "labels": {**labels, "service": "api"}, "fingerprint": "fp-api"},
            {**item, "status": "resolved", "fingerprint": "fp-old"},
        ],
    }
    response = api.post("/alerts", who="alertmanager", json=webhook)
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["created"], body["attached"], body["ignored"]) == (2, 1, 0 + 1)
    ids = [i["incident_id"] for i in body["incidents"]]
    assert ids[0] == ids[1] != ids[2]
    assert api.get("/incidents").json()["count"] == 3


# -- Slack ----------------------------------------------------------------------------------


def slack_click(
    incident_id: str, approval_id: str, *, kind: str = "approve", user: str = "U-ALICE"
) -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": user},
        "actions": [
            {
                "action_id": f"durable_ir_{kind}",
                "value": json.dumps({"incident_id": incident_id, "approval_id": approval_id}),
            }
        ],
    }
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


def signed(body: bytes, secret: str = SLACK_SECRET) -> dict[str, str]:
    timestamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256)
    return {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": "v0=" + digest.hexdigest(),
        "Content-Type": "application/x-www-form-urlencoded",
    }


def test_slack_clicks_are_verified_and_mapped_to_approvers(api: Api) -> None:
    incident = api.open_incident()
    approval = api.detail(incident)["pending_approval"]["approval_id"]
    body = slack_click(incident, approval)

    forged = api.post("/slack/interactions", who=None, content=body,
                      headers=signed(body, "not-the-secret"))  # fmt: skip
    assert forged.status_code == 401
    assert forged.json()["error"]["code"] == "bad_signature"
    unsigned = api.post("/slack/interactions", who=None, content=body)
    assert unsigned.status_code == 401
    stranger = slack_click(incident, approval, user="U-STRANGER")
    refused = api.post("/slack/interactions", who=None, content=stranger,
                       headers=signed(stranger))  # fmt: skip
    assert refused.status_code == 403
    assert decided(api.history(incident)) == []

    response = api.post("/slack/interactions", who=None, content=body, headers=signed(body))
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["decision"]["decided_by"] == "alice" and reply["response_type"] == "ephemeral"
    assert api.wait_status(incident, "finished")["outcome"] == "resolved"
    again = api.post("/slack/interactions", who=None, content=body, headers=signed(body))
    assert again.status_code == 409
    assert again.json()["error"]["winner"]["decided_by"] == "alice"


def test_slack_reject(api: Api) -> None:
    incident = api.open_incident(DEMO_INCIDENTS[1])
    approval = api.detail(incident)["pending_approval"]["approval_id"]
    body = slack_click(incident, approval, kind="reject")
    response = api.post("/slack/interactions", who=None, content=body, headers=signed(body))
    assert response.status_code == 200, response.text
    assert api.wait_status(incident, "finished")["outcome"] == "escalated"
    (record,) = api.history(incident)
    assert (record.decided_by, record.reason) == ("alice", SLACK_REJECT_REASON)


def test_slack_not_configured_is_404(make_api: Callable[..., Api]) -> None:
    api = make_api(slack_signing_secret=None)
    body = slack_click("inc", "a1")
    response = api.post("/slack/interactions", who=None, content=body, headers=signed(body))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_configured"


# -- no credentials configured ---------------------------------------------------------------


def test_without_tokens_reads_are_open_and_decisions_refused(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(api_tokens=())
    listed = api.get("/incidents", who=None)
    assert listed.status_code == 200 and listed.json()["count"] == 0
    for response in (
        api.post("/incidents/INC-1/approve", who=None),
        api.post("/incidents/INC-1/reject", who=None, json={"reason": "no"}),
        api.post("/alerts", who=None, json=api.alert()),
        api.post("/incidents/INC-1/approve", who="alice"),  # no token is valid
    ):
        assert response.status_code == 403, response.text
        error = response.json()["error"]
        assert error["code"] == "no_credentials_configured"
        assert "DURABLE_IR_API_TOKENS" in error["message"]
        assert "durable-ir token new" in error["message"]


# -- the schema, the CLI helpers, the import boundary ---------------------------------------


def test_openapi_documents_every_status_with_the_error_model(api: Api) -> None:
    schema = api.get("/openapi.json", who=None).json()
    assert "ErrorResponse" in schema["components"]["schemas"]
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    deciding = {"200", "202", "401", "403", "404", "409", "413", "422", "503"}
    expected = {
        ("post", "/alerts"): {"202", "401", "403", "413", "422", "503"},
        ("get", "/incidents"): {"200", "401", "403", "422", "503"},
        ("get", "/incidents/{incident_id}"): {"200", "401", "403", "404", "422", "503"},
        ("post", "/incidents/{incident_id}/approve"): deciding,
        ("post", "/incidents/{incident_id}/reject"): deciding,
        ("post", "/slack/interactions"): deciding - {"202"},
        ("get", "/healthz"): {"200", "503"},
        ("get", "/readyz"): {"200", "503"},
        ("get", "/livez"): {"200"},
    }
    for (method, path), statuses in expected.items():
        responses = schema["paths"][path][method]["responses"]
        assert set(responses) == statuses, (method, path, set(responses))
        for status in statuses - {"200", "202"}:
            ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorResponse"), (method, path, status)
            assert responses[status]["content"]["application/json"]["example"]["error"]["code"]
    approve = schema["paths"]["/incidents/{incident_id}/approve"]["post"]
    assert approve["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/DecisionAccepted"
    )
    body = schema["components"]["schemas"]["ApproveBody"]
    assert body["additionalProperties"] is False and "by" not in body["properties"]
    assert "/console" not in schema["paths"]


def test_token_helpers(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret\n"))
    assert main(["token", "hash"]) == 0
    assert capsys.readouterr().out.strip() == hash_token("s3cret")

    assert main(["token", "new", "dana", "--role", "approver", "--role", "viewer"]) == 0
    out = capsys.readouterr().out.splitlines()
    token = out[0].rsplit(" ", 1)[1]
    entry = json.loads(out[1].split(": ", 1)[1])
    assert entry == {"identity": "dana", "roles": ["approver", "viewer"],
                     "token_sha256": hash_token(token)}  # fmt: skip
    (parsed,) = parse_token_entries(json.dumps([entry]))
    assert parsed.identity == "dana"
    assert main(["token", "new", "system:sla", "--role", "approver"]) == 2


def test_system_identities_cannot_hold_tokens() -> None:
    entry = {"identity": "system:sla", "roles": ["approver"], "token_sha256": "ab" * 32}
    with pytest.raises(ValueError, match="reserved"):
        parse_token_entries(json.dumps([entry]))


def test_importing_durable_ir_does_not_import_fastapi() -> None:
    code = "import sys, durable_ir, durable_ir.cli; assert 'fastapi' not in sys.modules, 'fastapi'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# -- the example a team copies ----------------------------------------------------------------


def load_example() -> Any:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "service" / "app.py"
    spec = importlib.util.spec_from_file_location("service_example_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_app_with_its_own_graph_and_auth(
    durable_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROXY_SHARED_SECRET", "proxy-secret")
    example = load_example()
    settings = replace(settings_for(durable_url), graph_name=None)
    with serving(example.build_app(settings)) as server:
        client = httpx.Client(base_url=server.url, timeout=60)
        assert client.get("/healthz").json()["graph"] == example.GRAPH_NAME

        def person(user: str, groups: str, secret: str = "proxy-secret") -> dict[str, str]:
            return {"X-Proxy-Secret": secret, "X-Forwarded-User": user,
                    "X-Forwarded-Groups": groups}  # fmt: skip

        # Alertmanager keeps its bearer token; payments alerts are P0 by the team's rule.
        alert = {**demo_alert(DEMO_INCIDENTS[0], run="example"), "service": "payments"}
        response = client.post("/alerts", json=alert, headers=auth("alertmanager"))
        assert response.status_code == 202, response.text
        incident = response.json()["incidents"][0]["incident_id"]
        detail = wait_until(
            lambda: (
                (d := client.get(f"/incidents/{incident}", headers=person("erin", "sre")))
                .json()
                .get("status")
                == "awaiting_approval"
                and d.json()
            )
        )
        assert detail["pending_approval"]["severity"] == "P0"

        forged = person("mallory", "sre-leads", secret="guess")
        assert client.post(f"/incidents/{incident}/approve", headers=forged).status_code == 401
        engineer = person("dev", "engineering")
        assert client.post(f"/incidents/{incident}/approve", headers=engineer).status_code == 403
        lead = person("frank", "sre-leads,engineering")
        approved = client.post(f"/incidents/{incident}/approve", headers=lead)
        assert approved.status_code == 202, approved.text
        assert approved.json()["decision"]["decided_by"] == "frank"


def wait_until(check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return result
