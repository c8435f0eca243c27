"""Schemathesis against the service's own OpenAPI schema, over real HTTP, on SQLite and
PostgreSQL: generated requests to every operation (valid ones, and ones that break the
schema) never get a 5xx, and every response matches the schema — status code, content type,
headers and body."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from durable_ir.demo.agent import DEMO_GRAPH_NAME, DEMO_INCIDENTS, demo_alert
from durable_ir.service import ServiceSettings, create_app
from durable_ir.service.auth import parse_token_entries
from support.service import InProcessServer, auth, serving, tokens_json, wait_for

pytestmark = [
    pytest.mark.slow,
    # schemathesis's own negative-case strategies use `random` (its concern, not ours)
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = {GenerationMode.POSITIVE: 60, GenerationMode.NEGATIVE: 30}


@pytest.fixture
def server(durable_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[InProcessServer]:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    settings = replace(
        ServiceSettings(
            database_url=durable_url,
            api_tokens=parse_token_entries(tokens_json()),
            slack_signing_secret="fuzz-secret",
        ),
        graph_name=DEMO_GRAPH_NAME,
        sla_interval=0.5,
    )
    with serving(create_app(settings=settings)) as running:
        yield running


def fuzz(operation: Any, mode: GenerationMode, base_url: str, incidents: list[str]) -> int:
    """Run up to ``EXAMPLES[mode]`` generated requests to ``operation``, check each answer;
    return how many were sent. Every other request naming an incident names a real one."""
    sent = 0
    checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS
    headers = auth("fuzzer")

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES[mode],
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        nonlocal sent
        sent += 1
        if case.path_parameters and "incident_id" in case.path_parameters and sent % 2:
            case.path_parameters["incident_id"] = incidents[sent % len(incidents)]
        if "authorization" not in {k.lower() for k in (case.headers or {})}:
            case.headers = {**(case.headers or {}), **headers}
        case.call_and_validate(base_url=base_url, checks=checks, timeout=60)

    try:
        check()
    except Unsatisfiable:
        # Nothing can break the schema of an operation without inputs (GET /healthz).
        assert mode is GenerationMode.NEGATIVE, operation.label
    return sent


def open_incidents(url: str) -> list[str]:
    """Three demo incidents waiting for approval, for the fuzzer to decide on and read."""
    client = httpx.Client(base_url=url, timeout=60)
    ids = []
    for spec in DEMO_INCIDENTS:
        response = client.post("/alerts", json=demo_alert(spec, run="fuzz"), headers=auth("fuzzer"))
        assert response.status_code == 202, response.text
        ids.append(response.json()["incidents"][0]["incident_id"])
    for incident in ids:
        wait_for(
            lambda incident=incident: (
                client.get(f"/incidents/{incident}", headers=auth("fuzzer")).json()["status"]
                == "awaiting_approval"
            ),
            what=f"{incident} to wait for approval",
        )
    return ids


def test_the_api_keeps_its_own_schema(server: InProcessServer) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    # A body over the service's limit is refused for its size (413) before it is parsed:
    # that is a rejection of bad input too, whatever else is wrong with the body.
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 10  # GET /versions, /livez and /readyz too
    incidents = open_incidents(server.url)
    sent = {
        op.label: sum(fuzz(op, mode, server.url, incidents) for mode in EXAMPLES)
        for op in operations
    }
    without_inputs = {"GET /healthz", "GET /livez", "GET /readyz"}
    assert all(count >= 10 for label, count in sent.items() if label not in without_inputs), sent
