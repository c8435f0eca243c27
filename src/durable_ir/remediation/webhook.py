"""An executor that acts on real systems through an automation webhook: each dry-run, apply and
rollback step is one HTTP ``POST`` of JSON to the endpoint a Rundeck job, an AWX/Tower job
template, a StackStorm webhook or a small runbook service of your own exposes.

What ``durable-ir serve`` builds from ``[executor] kind = "webhook"`` (see docs/service.md,
*The config file*).

The request body (``Content-Type: application/json``)::

    {"phase": "apply",                      # "dry_run", "apply" or "rollback"
     "incident_id": "inc-…", "step": 1,
     "action": "rollback", "target": "checkout", "parameters": {"from_version": "v1.5.0"},
     "idempotency_key": "inc-…/step-1/apply",
     "epoch": 3,                            # the worker's fencing token (null on a dry run)
     "in_doubt": false,                     # an earlier owner ran this step and vanished
     "alert": {"name": "…", "service": "…", "severity": "P1", "labels": {…}}}

with the key and the epoch also as headers, ``Idempotency-Key`` and ``Durable-IR-Epoch``
(when there is one), so that an endpoint can deduplicate and fence without reading the body,
and ``Authorization: Bearer <token>`` when a token is configured.

The answer: any 2xx is success, unless its JSON body says ``"ok": false``; ``"detail"`` (a
string) is recorded as the step's detail. A 4xx is the endpoint refusing the step: a failure
with the status and the start of the body, never retried (the same request would be refused
again). A 5xx, ``429``, a timeout or a refused connection is retried up to ``retries`` times
with a growing pause: a repeat carries the same idempotency key, so an endpoint that honours
it runs the step once however many times it is asked. After the last try the step fails
with what went wrong; the graph escalates (apply) or records the failed undo (rollback).

:class:`WebhookExecutor` is not a verifier: pair it with one that reads the world, such as
:class:`~durable_ir.remediation.prometheus.PrometheusVerifier`. Its own ``verify`` never
claims the service is healthy.

Example:
    >>> import asyncio
    >>> from durable_ir.remediation import RemediationStep, StepContext
    >>> executor = WebhookExecutor("https://automation.example/hooks/durable-ir", token="t0k")
    >>> step = RemediationStep(action="rollback", target="checkout")
    >>> context = StepContext(incident_id="inc-1", alert={"service": "checkout"}, number=1)
    >>> body = executor.body(step, context)
    >>> body["action"], body["idempotency_key"], body["in_doubt"]
    ('rollback', 'inc-1/step-1/apply', False)
    >>> sorted(executor.headers(context))
    ['Authorization', 'Idempotency-Key']
    >>> WebhookExecutor("hooks.local")
    Traceback (most recent call last):
    ...
    durable_ir.errors.ConfigurationError: webhook url must be an http(s) URL, got 'hooks.local'
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

import httpx

from durable_ir.errors import ConfigurationError
from durable_ir.remediation.executor import (
    StepContext,
    StepResult,
    Verification,
    VerificationContext,
)
from durable_ir.remediation.plan import StepAction

__all__ = ["EPOCH_HEADER", "IDEMPOTENCY_HEADER", "WebhookExecutor"]

log = logging.getLogger("durable_ir.remediation.webhook")

IDEMPOTENCY_HEADER = "Idempotency-Key"
EPOCH_HEADER = "Durable-IR-Epoch"
_RETRIED_STATUS = frozenset({429, 500, 502, 503, 504})
_MAX_DETAIL = 500
_ALERT_FIELDS = ("name", "service", "severity", "fingerprint", "fired_at", "description")


class WebhookExecutor:
    """Posts each step to ``url``; see the module doc.

    ``token`` is sent as ``Authorization: Bearer``; ``timeout`` is seconds per request;
    ``retries`` is how many times a transient failure (5xx, 429, timeout, refused connection)
    is retried, pausing ``backoff`` seconds and doubling; ``client`` is used if given (and left
    open), else one is made per call.
    """

    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 2,
        backoff: float = 1.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"webhook url must be an http(s) URL, got {url!r}")
        if timeout <= 0:
            raise ConfigurationError(f"timeout must be positive seconds, got {timeout}")
        if not 0 <= retries <= 10:
            raise ConfigurationError(f"retries must be within 0..10, got {retries}")
        if backoff < 0:
            raise ConfigurationError(f"backoff must be ≥ 0 seconds, got {backoff}")
        self.url = url
        self._token = token
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.client = client

    def __repr__(self) -> str:
        return f"WebhookExecutor({self.url!r}, retries={self.retries})"  # never the token

    # -- the request ---------------------------------------------------------------------------

    def body(self, step: StepAction, context: StepContext) -> dict[str, Any]:
        """The JSON posted for ``step`` in ``context`` (see the module doc)."""
        alert = {k: context.alert[k] for k in _ALERT_FIELDS if k in context.alert}
        labels = context.alert.get("labels")
        if isinstance(labels, Mapping):
            alert["labels"] = dict(labels)
        return {
            "phase": context.phase,
            "incident_id": context.incident_id,
            "step": context.number,
            "action": step.action,
            "target": step.target,
            "parameters": dict(step.parameters),
            "idempotency_key": context.idempotency_key,
            "epoch": context.epoch,
            "in_doubt": context.in_doubt,
            "alert": alert,
        }

    def headers(self, context: StepContext) -> dict[str, str]:
        """The request's headers: the idempotency key, the epoch, the token."""
        headers = {IDEMPOTENCY_HEADER: context.idempotency_key}
        if context.epoch is not None:
            headers[EPOCH_HEADER] = str(context.epoch)
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    # -- the executor protocol -----------------------------------------------------------------

    async def dry_run(self, step: StepAction, context: StepContext) -> StepResult:
        """Asks the endpoint what ``step`` would do (``"phase": "dry_run"``)."""
        return await self._post(step, context)

    async def apply(self, step: StepAction, context: StepContext) -> StepResult:
        """Asks the endpoint to do ``step``."""
        return await self._post(step, context)

    async def rollback(self, step: StepAction, context: StepContext) -> StepResult:
        """Asks the endpoint to run the rollback action ``step``."""
        return await self._post(step, context)

    async def verify(self, context: VerificationContext) -> Verification:
        """Never healthy on its own: configure a verifier that reads the world."""
        return Verification(
            False,
            "the webhook executor cannot tell whether the service recovered: configure a "
            'verifier (e.g. [verifier] kind = "prometheus") or check by hand',
        )

    # -- HTTP ----------------------------------------------------------------------------------

    async def _post(self, step: StepAction, context: StepContext) -> StepResult:
        if self.client is not None:
            return await self._attempts(self.client, step, context)
        async with httpx.AsyncClient() as client:
            return await self._attempts(client, step, context)

    async def _attempts(
        self, client: httpx.AsyncClient, step: StepAction, context: StepContext
    ) -> StepResult:
        body, headers = self.body(step, context), self.headers(context)
        what = f"{context.phase} of {step.action} {step.target}"
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
                log.warning(
                    "webhook %s: %s; trying again (%d/%d) with idempotency key %s",
                    self.url,
                    problem,
                    attempt,
                    self.retries,
                    context.idempotency_key,
                )
            try:
                response = await client.post(
                    self.url, json=body, headers=headers, timeout=self.timeout
                )
            except httpx.TimeoutException:
                problem = f"no answer within {self.timeout:g}s"
                continue
            except httpx.TransportError as exc:
                problem = f"cannot reach it: {type(exc).__name__}: {exc}"
                continue
            if response.status_code in _RETRIED_STATUS:
                problem = f"HTTP {response.status_code}: {_text(response)}"
                continue
            return _result(response, what)
        tries = self.retries + 1
        return StepResult(
            False,
            f"webhook {self.url} failed the {what} after {tries} tr{'y' if tries == 1 else 'ies'}"
            f": {problem}",
        )


def _text(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return (text[:_MAX_DETAIL] + "…") if len(text) > _MAX_DETAIL else text or "(no body)"


def _result(response: httpx.Response, what: str) -> StepResult:
    status = response.status_code
    if not 200 <= status < 300:
        return StepResult(
            False, f"the webhook refused the {what}: HTTP {status}: {_text(response)}"
        )
    try:
        answer = response.json()
    except (ValueError, json.JSONDecodeError):
        answer = None
    if not isinstance(answer, dict):
        return StepResult(True, f"the webhook accepted the {what} (HTTP {status})")
    ok = answer.get("ok", True)
    detail = answer.get("detail")
    text = str(detail)[:_MAX_DETAIL] if detail is not None else f"HTTP {status}"
    if not isinstance(ok, bool):
        return StepResult(False, f"the webhook answered the {what} with a non-boolean ok: {ok!r}")
    return StepResult(ok, text if ok else f"the webhook failed the {what}: {text}")
