"""The offline analyzer on real telemetry: a real Prometheus (Debian's /usr/bin/prometheus)
scrapes a small exporter every second; a "deploy" of checkout (a new ``version`` label on
``app_build_info``) makes 8 of every 28 requests a 5xx; PrometheusGatherer reads the series
back over the RCA loop's window, and CorrelationAnalyzer must name the deploy of checkout,
confidently, citing the evidence. Catalog, deployed at the same time without harm, is the
healthy negative: no culprit, low confidence, and the analyzer says an LLM analyzer is needed.

The exporter (tests/support/exporter.py, the simulated fleet of examples/prometheus_stack)
speaks the text exposition format the way client libraries do: counters that only grow, and a
``code="500"`` series that exists only from the first error on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from durable_ir.rca import ChangeEvidence, EvidenceWindow, MetricEvidence
from durable_ir.rca.analyzers import CorrelationAnalyzer
from durable_ir.rca.gatherers.prometheus import PrometheusGatherer, PromQuery
from durable_ir.rca_loop import RcaConfig, build_rca_loop
from support.exporter import Exporter
from support.local_http import serving
from support.prometheus import PrometheusServer, require_prometheus, running_prometheus

pytestmark = pytest.mark.slow

TIMEOUT = 120.0  # every wait below is bounded by this (monotonic)
BASELINE_SCRAPES = 40  # healthy samples before the deploy
FAULT_SCRAPES = 15  # samples of the spike before the alert fires
QUERIES = {
    "errors": PromQuery(
        'sum by (service) (rate(http_requests_total{service="{service}",code=~"5.."}[5s]))',
        metric="http_5xx_rate",
        unit="req/s",
    ),
    "requests": PromQuery(
        'sum by (service) (rate(http_requests_total{service="{service}"}[5s]))',
        metric="http_request_rate",
        unit="req/s",
    ),
    "latency": PromQuery(
        "histogram_quantile(0.99, sum by (service, le) "
        '(rate(http_request_duration_seconds_bucket{service="{service}"}[5s])))',
        metric="latency_p99_seconds",
        unit="s",
    ),
    "pool": PromQuery('db_connections_in_use{service="{service}"}', metric="db_connections_in_use"),
    "pool_limit": PromQuery(
        'db_connections_limit{service="{service}"}', metric="db_connections_limit"
    ),
    "deploys": PromQuery('app_build_info{service="{service}"}', metric="build", change="deploy"),
}


def poll(check: Callable[[], Any], what: str, deadline: float) -> Any:
    """``check()`` until it returns something truthy, or fail at ``deadline`` (monotonic)."""
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {last!r}")
        time.sleep(0.25)


def samples(prom: PrometheusServer, expr: str) -> int:
    result = prom.query(f"count_over_time(({expr})[5m:1s])")
    return int(float(result[0]["value"][1])) if result else 0


@pytest.fixture(scope="module")
def episode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Prometheus scraping the exporter through a healthy stretch, the deploys, and the
    spike; yields the Prometheus URL and the alerts' firing time."""
    require_prometheus()
    workdir = tmp_path_factory.mktemp("prometheus")
    with (
        serving(Exporter()) as exporter,
        running_prometheus(workdir, [exporter.url.removeprefix("http://")]) as prom,
    ):
        deadline = time.monotonic() + TIMEOUT
        healthy = 'up{job="durable-ir"} == 1'
        poll(lambda: samples(prom, healthy) >= BASELINE_SCRAPES, "the baseline", deadline)
        deployed = datetime.now(UTC)
        exporter.deploy("checkout", "v1.5.0", errors_per_s=8.0)
        exporter.deploy("catalog", "v8")  # harmless: the red herring
        failing = 'rate(http_requests_total{service="checkout",code="500"}[5s]) > 1'
        poll(lambda: samples(prom, failing) >= FAULT_SCRAPES, "the spike", deadline)
        yield {"url": prom.url, "fired_at": datetime.now(UTC), "deployed": deployed}


class Keeping:
    """The real gatherer, keeping what it gathered (the loop's state drops it at the end)."""

    def __init__(self, inner: PrometheusGatherer) -> None:
        self.inner = inner
        self.gathered: dict[str, Any] = {}

    async def gather(self, alert: dict[str, Any], window: EvidenceWindow) -> list[Any]:
        found = await self.inner.gather(alert, window)
        self.gathered.update((e.id, e) for e in found)
        return found


async def run_loop(episode: dict[str, Any], service: str) -> dict[str, Any]:
    gatherer = Keeping(PrometheusGatherer(episode["url"], QUERIES, step=timedelta(seconds=1)))
    config = RcaConfig(
        windows=(timedelta(seconds=60), timedelta(seconds=120), timedelta(seconds=240))
    )
    alert = {
        "name": "HighErrorRate",
        "service": service,
        "fired_at": episode["fired_at"].isoformat(),
    }
    graph = build_rca_loop(gatherer, CorrelationAnalyzer(), config).compile()
    result: dict[str, Any] = await graph.ainvoke({"alert": alert})
    result["gathered"] = gatherer.gathered
    return result


async def test_an_error_spike_after_a_deploy_is_named_confidently(episode: dict[str, Any]) -> None:
    result = await run_loop(episode, "checkout")
    rca = result["rca"]
    hypothesis = rca["hypothesis"]
    assert rca["status"] == "confident", rca
    assert (hypothesis["fault"], hypothesis["service"]) == ("bad_deploy", "checkout"), rca
    assert hypothesis["confidence"] >= 0.7, rca
    assert "v1.5.0" in hypothesis["root_cause"], hypothesis["root_cause"]
    assert hypothesis["remediation"][0]["action"] == "rollback"
    # It cites the deploy and the error series, every one of them gathered in the attempt.
    cited = [result["gathered"][i] for i in hypothesis["cited_evidence"]]
    deploys = [e for e in cited if isinstance(e, ChangeEvidence)]
    assert [(d.service, d.version) for d in deploys] == [("checkout", "v1.5.0")], cited
    metrics = {e.metric for e in cited if isinstance(e, MetricEvidence)}
    assert {"http_5xx_rate", "http_request_rate"} <= metrics, cited
    # The deploy came from Prometheus's own series, at its first sample: after the exporter
    # changed version (Prometheus's timestamps have millisecond precision), and inside the
    # window of the attempt that concluded.
    window = EvidenceWindow.model_validate(result["rca_attempts"][-1]["window"])
    assert episode["deployed"] - timedelta(milliseconds=1) <= deploys[0].at, deploys
    assert window.start < deploys[0].at < window.end, (window, deploys)


async def test_a_healthy_service_gets_no_invented_culprit(episode: dict[str, Any]) -> None:
    result = await run_loop(episode, "catalog")
    rca = result["rca"]
    hypothesis = rca["hypothesis"]
    assert rca["status"] == "exhausted" and rca["attempts"] == 3, rca
    assert hypothesis["fault"] == "unknown" and hypothesis["confidence"] <= 0.15, rca
    assert hypothesis["cited_evidence"] == [], rca
    assert "LLM analyzer" in hypothesis["root_cause"], hypothesis["root_cause"]
    # The harmless deploy was gathered, and not blamed.
    gathered = result["gathered"].values()
    assert any(isinstance(e, ChangeEvidence) and e.version == "v8" for e in gathered)
    assert "v8" not in hypothesis["root_cause"]
