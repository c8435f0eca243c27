"""The webhook executor and the Prometheus verifier against local HTTP servers speaking their
wire formats: what is sent (body, idempotency key and epoch as headers, the token), what an
answer means, which failures are retried (only those the idempotency key makes safe) and
which are not; and recovery read until it holds, within a bounded wait."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from durable_ir.errors import ConfigurationError
from durable_ir.remediation import RemediationPlan, RemediationStep, StepContext
from durable_ir.remediation.executor import VerificationContext
from durable_ir.remediation.prometheus import PrometheusVerifier, RecoveryCheck
from durable_ir.remediation.webhook import WebhookExecutor
from support.local_http import LocalHttpServer, serving

Reply = tuple[int, Any]


class Scripted(LocalHttpServer):
    """Answers POSTs with ``replies`` in order (the last one repeated), recording each."""

    def __init__(self, replies: list[Reply]) -> None:
        super().__init__(_Handler)
        self.replies = replies
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def next(self, request: dict[str, Any]) -> Reply:
        with self.lock:
            self.received.append(request)
            return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]


class _Handler(BaseHTTPRequestHandler):
    server: Scripted

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        ctype = self.headers.get("content-type", "")
        body: Any = json.loads(raw) if "json" in ctype else raw.decode()
        status, answer = self.server.next(
            {"path": self.path, "headers": dict(self.headers.items()), "body": body}
        )
        data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


STEP = RemediationStep(action="rollback", target="checkout", parameters={"from_version": "v2"})
ALERT = {"name": "HighErrorRatio", "service": "checkout", "severity": "P1",
         "labels": {"team": "shop"}, "secret_field": 3}  # fmt: skip


def context(**kw: Any) -> StepContext:
    return StepContext(incident_id="inc-9", alert=ALERT, number=1, **kw)


async def test_a_step_is_posted_with_its_key_epoch_and_token() -> None:
    with serving(Scripted([(200, {"ok": True, "detail": "rolled back to v1"})])) as hook:
        executor = WebhookExecutor(f"{hook.url}/hooks/ir", token="s3cret", backoff=0)
        result = await executor.apply(STEP, context(epoch=7, in_doubt=True))
    assert (result.ok, result.detail) == (True, "rolled back to v1")
    (request,) = hook.received
    assert request["path"] == "/hooks/ir"
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["idempotency-key"] == "inc-9/step-1/apply"
    assert headers["durable-ir-epoch"] == "7"
    assert headers["authorization"] == "Bearer s3cret"
    assert request["body"] == {
        "phase": "apply",
        "incident_id": "inc-9",
        "step": 1,
        "action": "rollback",
        "target": "checkout",
        "parameters": {"from_version": "v2"},
        "idempotency_key": "inc-9/step-1/apply",
        "epoch": 7,
        "in_doubt": True,
        "alert": {
            "name": "HighErrorRatio",
            "service": "checkout",
            "severity": "P1",
            "labels": {"team": "shop"},
        },
    }
    assert "s3cret" not in repr(executor)


async def test_a_dry_run_has_no_epoch_header_and_says_its_phase() -> None:
    with serving(Scripted([(200, {"detail": "would roll back"})])) as hook:
        result = await WebhookExecutor(hook.url).dry_run(STEP, context(phase="dry_run"))
    assert (result.ok, result.detail) == (True, "would roll back")
    (request,) = hook.received
    assert request["body"]["phase"] == "dry_run" and request["body"]["epoch"] is None
    assert "durable-ir-epoch" not in {k.lower() for k in request["headers"]}
    assert "authorization" not in {k.lower() for k in request["headers"]}


async def test_transient_failures_are_retried_with_the_same_key() -> None:
    replies: list[Reply] = [(503, {"detail": "busy"}), (429, {}), (200, {"ok": True})]
    with serving(Scripted(replies)) as hook:
        result = await WebhookExecutor(hook.url, retries=2, backoff=0).apply(STEP, context())
    assert result.ok, result
    keys = {r["headers"]["Idempotency-Key"] for r in hook.received}
    assert len(hook.received) == 3 and keys == {"inc-9/step-1/apply"}


async def test_after_the_last_retry_the_step_fails_saying_why() -> None:
    with serving(Scripted([(502, {"detail": "bad gateway"})])) as hook:
        result = await WebhookExecutor(hook.url, retries=1, backoff=0).apply(STEP, context())
    assert not result.ok
    assert "failed the apply of rollback checkout after 2 tries: HTTP 502" in result.detail
    assert len(hook.received) == 2


async def test_a_refusal_is_not_retried() -> None:
    with serving(Scripted([(422, {"detail": "no such service"})])) as hook:
        result = await WebhookExecutor(hook.url, retries=3, backoff=0).apply(STEP, context())
    assert not result.ok and len(hook.received) == 1
    assert "refused the apply of rollback checkout: HTTP 422" in result.detail
    assert "no such service" in result.detail


async def test_ok_false_fails_and_a_body_that_is_not_json_is_plain_success() -> None:
    with serving(Scripted([(200, {"ok": False, "detail": "pods stuck"})])) as hook:
        failed = await WebhookExecutor(hook.url).apply(STEP, context())
    assert (failed.ok, failed.detail) == (False, "the webhook failed the apply of rollback "
                                                 "checkout: pods stuck")  # fmt: skip
    with serving(Scripted([(202, b"queued")])) as hook:
        queued = await WebhookExecutor(hook.url).apply(STEP, context())
    assert queued.ok and "accepted" in queued.detail
    with serving(Scripted([(200, {"ok": "yes"})])) as hook:
        odd = await WebhookExecutor(hook.url).apply(STEP, context())
    assert not odd.ok and "non-boolean ok" in odd.detail


async def test_an_unreachable_endpoint_fails_the_step() -> None:
    with serving(Scripted([(200, {})])) as hook:
        url = hook.url  # closed after the block: nothing listens there
    result = await WebhookExecutor(url, retries=1, backoff=0, timeout=2).apply(STEP, context())
    assert not result.ok and "cannot reach it" in result.detail


async def test_the_webhook_executor_alone_never_claims_recovery() -> None:
    plan = RemediationPlan(steps=[STEP])
    verdict = await WebhookExecutor("http://127.0.0.1:9").verify(
        VerificationContext(incident_id="inc-9", alert=ALERT, plan=plan)
    )
    assert not verdict.ok and "configure a verifier" in verdict.detail


def test_bad_settings_are_clear_errors() -> None:
    with pytest.raises(ConfigurationError, match="http"):
        WebhookExecutor("ftp://x")
    with pytest.raises(ConfigurationError, match="retries"):
        WebhookExecutor("http://x", retries=99)
    with pytest.raises(ConfigurationError, match="exactly one of below or above"):
        RecoveryCheck("up")
    with pytest.raises(ConfigurationError, match="at least one check"):
        PrometheusVerifier("http://x", {})


# -- the verifier ---------------------------------------------------------------------------


def vector(*values: str) -> dict[str, Any]:
    result = [{"metric": {"service": "checkout"}, "value": [0, v]} for v in values]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def verification_context(alert: dict[str, Any] | None = None) -> VerificationContext:
    return VerificationContext(
        incident_id="inc-9", alert=alert or ALERT, plan=RemediationPlan(steps=[STEP])
    )


def verifier(url: str, **kw: Any) -> PrometheusVerifier:
    check = RecoveryCheck('ratio{service="{service}"}', below=0.05, **kw)
    return PrometheusVerifier(
        url, {"ratio": check}, wait=timedelta(seconds=5), interval=timedelta(seconds=0.05)
    )


async def test_recovery_is_read_until_it_holds() -> None:
    replies: list[Reply] = [(200, vector("0.3")), (200, vector("0.2", "0.01")),
                            (200, vector("0.01", "0.0"))]  # fmt: skip
    with serving(Scripted(replies)) as prometheus:
        verdict = await verifier(prometheus.url).verify(verification_context())
    assert verdict.ok, verdict
    assert verdict.detail == "recovered in Prometheus (ratio 0.01 < 0.05; read 3×)"
    assert verdict.readings["ratio"]["query"] == 'ratio{service="checkout"}'
    assert prometheus.received[0]["body"] == "query=ratio%7Bservice%3D%22checkout%22%7D"
    assert prometheus.received[0]["path"] == "/api/v1/query"


async def test_no_recovery_within_the_wait_is_not_verified() -> None:
    with serving(Scripted([(200, vector("0.3"))])) as prometheus:
        slow = PrometheusVerifier(
            prometheus.url,
            {"ratio": RecoveryCheck("ratio", below=0.05)},
            wait=timedelta(seconds=0.3),
            interval=timedelta(seconds=0.1),
        )
        verdict = await slow.verify(verification_context())
    assert not verdict.ok
    assert verdict.detail.startswith("not recovered in Prometheus after 0.3s")
    assert "ratio: 0.3 is not < 0.05" in verdict.detail


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ((200, vector()), "no series (no data yet)"),
        ((200, vector("NaN")), "NaN is not < 0.05"),
        ((400, {"status": "error", "error": "parse error"}), "refused the query (HTTP 400)"),
        ((200, b"<html>"), "did not answer"),
    ],
    ids=["no-data", "nan", "promql-error", "not-json"],
)
async def test_what_is_not_a_recovery(reply: Reply, problem: str) -> None:
    with serving(Scripted([reply])) as prometheus:
        quick = PrometheusVerifier(
            prometheus.url,
            {"ratio": RecoveryCheck("ratio", below=0.05)},
            wait=timedelta(0),
        )
        verdict = await quick.verify(verification_context())
    assert not verdict.ok and problem in verdict.detail, verdict


async def test_absent_may_count_as_recovered_and_no_applicable_check_is_said() -> None:
    with serving(Scripted([(200, vector())])) as prometheus:
        verdict = await verifier(prometheus.url, absent_ok=True).verify(verification_context())
        assert verdict.ok, verdict
        only_search = PrometheusVerifier(
            prometheus.url, {"r": RecoveryCheck("r", below=1, services=frozenset({"search"}))}
        )
        verdict = await only_search.verify(verification_context())
    assert not verdict.ok and "no recovery check applies" in verdict.detail


async def test_a_placeholder_the_alert_cannot_fill_is_named() -> None:
    check = RecoveryCheck('up{namespace="{namespace}"}', above=0)
    verdict = await PrometheusVerifier("http://127.0.0.1:9", {"up": check}).verify(
        verification_context()
    )
    assert not verdict.ok and "recovery check 'up'" in verdict.detail
    assert "needs {namespace}" in verdict.detail
