"""PrometheusGatherer against a local server that speaks Prometheus's HTTP API
(``/api/v1/query_range``, ``resultType: "matrix"``): the queries it sends, the evidence it
builds, and every way an answer can be empty or wrong."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from durable_ir.errors import ConfigurationError
from durable_ir.rca import (
    ChangeEvidence,
    EvidenceWindow,
    Hypothesis,
    MetricEvidence,
    parse_evidence,
)
from durable_ir.rca.gatherers.prometheus import (
    PrometheusError,
    PrometheusGatherer,
    PromQuery,
    evidence_id,
)
from durable_ir.rca_loop import RcaConfig, build_rca_loop
from support.local_http import LocalHttpServer, serving

END = datetime(2026, 3, 1, 12, tzinfo=UTC)
WINDOW = EvidenceWindow.ending_at(END, timedelta(minutes=15))
ALERT = {
    "name": "HighErrorRate",
    "service": "checkout",
    "fired_at": END.isoformat(),
    "labels": {"namespace": "shop", "severity": "P1"},
}
ERRORS = PromQuery(
    'sum by (pod, service) (rate(http_requests_total{service="{service}",code=~"5.."}[5m]))',
    metric="http_5xx_rate",
    unit="req/s",
    baseline=0.1,
)
POOL = PromQuery(
    'db_pool_in_use{namespace="{namespace}",service="{service}"}',
    metric="db_pool_in_use",
    unit="connections",
    limit=50,
)


def ts(minutes_before_end: float) -> float:
    return (END - timedelta(minutes=minutes_before_end)).timestamp()


def matrix(*series: tuple[dict[str, str], list[tuple[float, str]]]) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {"metric": labels, "values": [[t, v] for t, v in values]}
                for labels, values in series
            ],
        },
    }


def prom_error(kind: str, message: str) -> dict[str, Any]:
    return {"status": "error", "errorType": kind, "error": message}


Reply = tuple[int, Any, float]
"""status, body (JSON-able, or bytes sent as they are), seconds to wait first"""


class PrometheusApi(LocalHttpServer):
    """Answers each range query with the reply registered for its PromQL (default: no series)
    and records every request's method, path, headers and parameters."""

    def __init__(self) -> None:
        super().__init__(_Handler)
        self.replies: dict[str, Reply] = {}
        self.received: list[dict[str, Any]] = []

    def queries(self) -> list[str]:
        return [r["params"]["query"] for r in self.received]


class _Handler(BaseHTTPRequestHandler):
    server: PrometheusApi

    def do_GET(self) -> None:
        self._answer(urlsplit(self.path).query)

    def do_POST(self) -> None:
        self._answer(self.rfile.read(int(self.headers["content-length"])).decode())

    def _answer(self, encoded: str) -> None:
        params = {k: v[0] for k, v in parse_qs(encoded, keep_blank_values=True).items()}
        path = urlsplit(self.path).path
        self.server.received.append(
            {
                "method": self.command,
                "path": path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "params": params,
            }
        )
        body: Any
        if path != "/api/v1/query_range":
            status, body, delay = 404, b"404 page not found\n", 0.0
        elif "query" not in params:
            status, body, delay = 400, prom_error("bad_data", 'invalid parameter "query"'), 0.0
        else:
            status, body, delay = self.server.replies.get(params["query"], (200, matrix(), 0.0))
        if delay and self.server.stopping.wait(delay):
            return
        is_json = not isinstance(body, bytes)
        data = json.dumps(body).encode() if is_json else body
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json" if is_json else "text/plain")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def prom() -> Iterator[PrometheusApi]:
    with serving(PrometheusApi()) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(headers={"authorization": "Bearer prom-token"}) as client:
        yield client


async def metrics(g: PrometheusGatherer, window: EvidenceWindow = WINDOW) -> list[MetricEvidence]:
    """What ``g`` gathers for ALERT over ``window``, checked to be metric evidence only."""
    found = await g.gather(ALERT, window)
    assert all(isinstance(e, MetricEvidence) for e in found)
    return [e for e in found if isinstance(e, MetricEvidence)]


def gatherer(prom: PrometheusApi, **options: Any) -> PrometheusGatherer:
    queries = options.pop("queries", {"errors": ERRORS, "pool": POOL})
    return PrometheusGatherer(prom.url, queries, **options)


async def test_series_become_metric_evidence(prom: PrometheusApi) -> None:
    errors_q, pool_q = ERRORS.render(ALERT), POOL.render(ALERT)
    pod_a = {"pod": "checkout-a", "service": "checkout"}
    pod_b = {"pod": "checkout-b", "service": "checkout"}
    pool_labels = {"__name__": "db_pool_in_use", "namespace": "shop", "instance": "db-1"}
    prom.replies[errors_q] = (
        200,
        matrix((pod_a, [(ts(10), "0.1"), (ts(5), "4.5"), (ts(0), "3")]), (pod_b, [(ts(0), "0")])),
        0.0,
    )
    prom.replies[pool_q] = (200, matrix((pool_labels, [(ts(1), "50")])), 0.0)

    evidence = await metrics(gatherer(prom))

    assert sorted(prom.queries()) == sorted(
        [
            'sum by (pod, service) (rate(http_requests_total{service="checkout",code=~"5.."}[5m]))',
            'db_pool_in_use{namespace="shop",service="checkout"}',
        ]
    )
    for sent in prom.received:
        assert (sent["method"], sent["path"]) == ("POST", "/api/v1/query_range")
        assert sent["headers"]["content-type"] == "application/x-www-form-urlencoded"
        params = sent["params"]
        assert datetime.fromisoformat(params["start"]) == WINDOW.start
        assert datetime.fromisoformat(params["end"]) == WINDOW.end
        assert params["step"] == "60"

    a, b, pool = evidence
    assert [a.id, b.id, pool.id] == [
        evidence_id("errors", pod_a),
        evidence_id("errors", pod_b),
        evidence_id("pool", pool_labels),
    ]
    assert len({a.id, b.id, pool.id}) == 3
    assert a.points == [
        (END - timedelta(minutes=10), 0.1),
        (END - timedelta(minutes=5), 4.5),
        (END, 3.0),
    ]
    assert (a.service, a.at, a.metric, a.unit, a.baseline) == (
        "checkout",
        END,
        "http_5xx_rate",
        "req/s",
        0.1,
    )
    assert 'http_5xx_rate {pod="checkout-a",service="checkout"}' in a.summary
    assert "last 3 req/s, max 4.5 req/s" in a.summary and "baseline 0.1 req/s" in a.summary
    # no service label on the series: the alert's service
    assert (pool.service, pool.limit, pool.at) == ("checkout", 50, END - timedelta(minutes=1))
    assert "db_pool_in_use{instance=" in pool.summary and "limit 50 connections" in pool.summary
    for item in evidence:
        assert parse_evidence(item.model_dump(mode="json")) == item


async def test_ids_are_stable_across_windows(prom: PrometheusApi) -> None:
    labels = {"pod": "checkout-a", "service": "checkout"}
    prom.replies[ERRORS.render(ALERT)] = (200, matrix((labels, [(ts(0), "1")])), 0.0)
    g = gatherer(prom, queries={"errors": ERRORS})
    narrow = await g.gather(ALERT, WINDOW)
    wide = await g.gather(ALERT, EvidenceWindow.ending_at(END, timedelta(hours=6)))
    assert [e.id for e in narrow] == [e.id for e in wide] == [evidence_id("errors", labels)]
    assert evidence_id("errors", labels) != evidence_id("errors", labels | {"pod": "other"})
    assert evidence_id("errors", labels) != evidence_id("latency", labels)


async def test_non_finite_samples_are_dropped_and_counted(prom: PrometheusApi) -> None:
    ratio = {"service": "checkout", "route": "/pay"}
    idle = {"service": "checkout", "route": "/refund"}
    values = [(ts(3), "0.2"), (ts(2), "NaN"), (ts(1), "+Inf"), (ts(0.5), "-Inf"), (ts(0), "NaN")]
    prom.replies[ERRORS.render(ALERT)] = (
        200,
        matrix((ratio, values), (idle, [(ts(1), "NaN"), (ts(0), "NaN")])),
        0.0,
    )
    busy, empty = await metrics(gatherer(prom, queries={"ratio": ERRORS}))

    assert busy.points == [(END - timedelta(minutes=3), 0.2)]
    assert "dropped non-finite samples: 1 +Inf, 1 -Inf, 2 NaN" in busy.summary
    assert empty.points == [] and empty.at == WINDOW.end
    assert "no finite sample" in empty.summary and "2 NaN" in empty.summary
    for item in (busy, empty):  # nothing non-finite reaches graph state
        assert parse_evidence(json.loads(json.dumps(item.model_dump(mode="json")))) == item


async def test_an_empty_result_is_no_evidence_not_an_error(prom: PrometheusApi) -> None:
    assert await gatherer(prom).gather(ALERT, WINDOW) == []
    assert len(prom.received) == 2


@pytest.mark.parametrize(
    ("status", "body", "error_type", "text"),
    [
        (400, prom_error("bad_data", '1:42: parse error: unexpected "}"'), "bad_data", "parse"),
        (422, prom_error("execution", "many-to-many matching not allowed"), "execution", "many"),
        (503, prom_error("timeout", "query timed out in expression evaluation"), "timeout", "out"),
        (
            200,
            {"status": "success", "data": {"resultType": "vector", "result": []}},
            None,
            "vector",
        ),
        (502, b"<html>502 Bad Gateway</html>", None, "non-JSON body"),
        (200, matrix(({"pod": "a"}, [(ts(0), "lots")])), None, "malformed series"),
    ],
    ids=["bad-data", "execution", "timeout", "wrong-result-type", "proxy-html", "bad-sample"],
)
async def test_error_answers_raise_a_clear_error(
    prom: PrometheusApi, status: int, body: Any, error_type: str | None, text: str
) -> None:
    prom.replies[POOL.render(ALERT)] = (status, body, 0.0)
    with pytest.raises(PrometheusError) as caught:
        await gatherer(prom).gather(ALERT, WINDOW)
    error = caught.value
    assert (error.query, error.error_type) == ("pool", error_type)
    assert str(error).startswith("query 'pool'")
    assert text in str(error)
    if error_type:
        assert f"HTTP {status}" in str(error) and POOL.render(ALERT) in str(error)


async def test_every_failing_query_is_named(prom: PrometheusApi) -> None:
    prom.replies[ERRORS.render(ALERT)] = (400, prom_error("bad_data", "bad one"), 0.0)
    prom.replies[POOL.render(ALERT)] = (400, prom_error("bad_data", "bad two"), 0.0)
    with pytest.raises(
        PrometheusError,
        match=r"query 'errors' failed: bad_data: bad one .*; query 'pool' failed: bad_data: bad",
    ):
        await gatherer(prom).gather(ALERT, WINDOW)


async def test_a_slow_prometheus_times_out(prom: PrometheusApi) -> None:
    prom.replies[POOL.render(ALERT)] = (200, matrix(), 5.0)
    # ReadTimeout in the error shows the client gave up rather than waiting for the reply.
    with pytest.raises(PrometheusError, match=r"query 'pool': cannot reach .*ReadTimeout"):
        await gatherer(prom, timeout=0.2).gather(ALERT, WINDOW)


async def test_an_unreachable_prometheus_is_a_clear_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    g = PrometheusGatherer(f"http://127.0.0.1:{port}", {"errors": ERRORS})
    with pytest.raises(PrometheusError, match=r"cannot reach Prometheus at .*ConnectError"):
        await g.gather(ALERT, WINDOW)


async def test_long_windows_get_a_coarser_step(prom: PrometheusApi) -> None:
    g = gatherer(prom, queries={"errors": ERRORS}, step=timedelta(seconds=15), max_points=720)
    await g.gather(ALERT, WINDOW)
    await g.gather(ALERT, EvidenceWindow.ending_at(END, timedelta(days=1)))
    assert [r["params"]["step"] for r in prom.received] == ["15", "120"]


async def test_a_given_client_is_used_and_left_open(
    prom: PrometheusApi, http: httpx.AsyncClient
) -> None:
    await gatherer(prom, client=http).gather(ALERT, WINDOW)
    assert {r["headers"]["authorization"] for r in prom.received} == {"Bearer prom-token"}
    assert not http.is_closed


def test_placeholders_come_from_the_alert_and_are_escaped() -> None:
    query = PromQuery('up{service="{service}",ns="{namespace}"} or vector(0){}', metric="up")
    assert query.render({"service": 'a"b\\c', "labels": {"namespace": "shop"}}) == (
        'up{service="a\\"b\\\\c",ns="shop"} or vector(0){}'
    )
    assert query.render({"labels": {"service": "from-labels", "namespace": "x"}}).startswith(
        'up{service="from-labels"'
    )
    with pytest.raises(ConfigurationError, match=r"needs \{namespace\} but the alert has no"):
        query.render({"service": "checkout"})


@pytest.mark.parametrize(
    ("args", "options"),
    [
        (("prometheus:9090", {"q": ERRORS}), {}),
        (("http://p:9090", {}), {}),
        (("http://p:9090", {"bad name!": ERRORS}), {}),
        (("http://p:9090", {"q": ERRORS}), {"step": timedelta(0)}),
        (("http://p:9090", {"q": ERRORS}), {"timeout": 0}),
        (("http://p:9090", {"q": ERRORS}), {"max_points": 0}),
    ],
)
def test_invalid_configs_are_refused(args: tuple[Any, ...], options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        PrometheusGatherer(*args, **options)
    with pytest.raises(ConfigurationError):
        PromQuery("", metric="x")


async def test_it_feeds_the_rca_loop_over_widening_windows(prom: PrometheusApi) -> None:
    labels = {"pod": "checkout-a", "service": "checkout"}
    prom.replies[ERRORS.render(ALERT)] = (200, matrix((labels, [(ts(0), "9")])), 0.0)

    class Unsure:
        async def analyze(self, request: Any) -> Hypothesis:
            return Hypothesis(
                root_cause="errors up",
                confidence=0.5,
                fault="bad_deploy",
                cited_evidence=sorted(request.evidence_ids()),
            )

    loop = build_rca_loop(gatherer(prom, queries={"errors": ERRORS}), Unsure(), RcaConfig())
    result = await loop.compile().ainvoke({"alert": ALERT})

    starts = [datetime.fromisoformat(r["params"]["start"]) for r in prom.received]
    assert [END - s for s in starts] == [
        timedelta(minutes=15),
        timedelta(hours=1),
        timedelta(hours=6),
    ]
    assert [a["evidence_ids"] for a in result["rca_attempts"]] == [
        [evidence_id("errors", labels)]
    ] * 3
    assert result["rca"]["status"] == "exhausted"


# -- changes read from Prometheus ------------------------------------------------------------

BUILD = PromQuery('app_build_info{service="{service}"}', metric="build", change="deploy")
DEPLOYS = PromQuery(
    'deploys_total{service="{service}"}', metric="deploys", change="deploy", version_label="sha"
)
LAST_CONFIG = PromQuery(
    'config_last_reload_success_timestamp_seconds{service="{service}"}',
    metric="config_reload",
    change="config",
)


async def test_change_queries_become_change_evidence(prom: PrometheusApi) -> None:
    old = {"__name__": "app_build_info", "service": "checkout", "version": "v1"}
    new = {"__name__": "app_build_info", "service": "checkout", "version": "v2"}
    prom.replies[BUILD.render(ALERT)] = (
        200,
        matrix(
            (old, [(ts(m), "1") for m in range(15, 3, -1)]),  # stale after the rollout
            (new, [(ts(m), "1") for m in range(4, -1, -1)]),  # appears 4 minutes before the end
        ),
        0.0,
    )
    counter = {"service": "checkout", "sha": "abc123"}
    prom.replies[DEPLOYS.render(ALERT)] = (
        200,
        matrix((counter, [(ts(10), "3"), (ts(9), "3"), (ts(8), "4"), (ts(0), "4")])),
        0.0,
    )
    reload = {"service": "checkout"}
    reloaded_at = ts(6.5)
    prom.replies[LAST_CONFIG.render(ALERT)] = (
        200,
        matrix(
            (reload, [(ts(10), str(ts(60))), (ts(6), str(reloaded_at)), (ts(0), str(reloaded_at))])
        ),
        0.0,
    )
    queries = {"build": BUILD, "deploys": DEPLOYS, "config": LAST_CONFIG}

    found = await gatherer(prom, queries=queries).gather(ALERT, WINDOW)

    assert all(isinstance(e, ChangeEvidence) for e in found)
    changes = sorted((e for e in found if isinstance(e, ChangeEvidence)), key=lambda c: c.at)
    assert [(c.change, c.service, c.version, c.at) for c in changes] == [
        ("deploy", "checkout", "abc123", END - timedelta(minutes=8)),  # the counter stepped
        ("config", "checkout", None, END - timedelta(minutes=6.5)),  # the timestamp it holds
        ("deploy", "checkout", "v2", END - timedelta(minutes=4)),  # the new version appeared
    ]
    assert "deploy of checkout to v2" in changes[-1].summary
    # Stable ids: the same change seen from a wider window is the same evidence.
    wider = await gatherer(prom, queries=queries).gather(
        ALERT, EvidenceWindow.ending_at(END, timedelta(minutes=30))
    )
    assert {e.id for e in wider} == {e.id for e in found}
    assert len({e.id for e in found}) == 3
    # A query whose series all begin with the window shows no change (they predate it).
    prom.replies[BUILD.render(ALERT)] = (200, matrix((old, [(ts(15), "1"), (ts(0), "1")])), 0.0)
    assert await gatherer(prom, queries={"build": BUILD}).gather(ALERT, WINDOW) == []
