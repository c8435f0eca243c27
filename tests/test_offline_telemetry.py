"""The offline analyzer's generic statistics on synthetic series named as a Prometheus setup
names them: onsets, departures from a robust baseline, error ratio, latency shifts,
saturation against a limit, correlation with changes near the onset — and noise, traffic
surges and changes after the onset that must not trigger anything."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from durable_ir.rca import (
    AnalysisRequest,
    ChangeEvidence,
    EvidenceWindow,
    Hypothesis,
    MetricEvidence,
)
from durable_ir.rca.analyzers import CorrelationAnalyzer
from durable_ir.rca.analyzers.offline.telemetry import (
    departure,
    error_ratio,
    limit_for,
    robust_baseline,
    role_of,
    saturation,
)

END = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
N = 120  # one point every 5 s over 10 minutes
STEP = timedelta(seconds=5)
WINDOW = EvidenceWindow.ending_at(END, N * STEP)
ONSET = 80  # index of the first faulty point (at END - 200 s)


def at(i: int) -> datetime:
    return WINDOW.start + i * STEP


def series(values: list[float]) -> list[tuple[datetime, float]]:
    return [(at(i), v) for i, v in enumerate(values)]


def noisy(level: float, spread: float, n: int = N, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [max(0.0, rng.gauss(level, spread)) for _ in range(n)]


def stepped(before: float, after: float, spread: float = 0.0, seed: int = 1) -> list[float]:
    values = noisy(before, spread, seed=seed)
    rng = random.Random(seed + 100)
    return values[:ONSET] + [max(0.0, rng.gauss(after, spread)) for _ in range(N - ONSET)]


def metric(id: str, name: str, values: list[float], **fields: object) -> MetricEvidence:
    return MetricEvidence(
        id=id,
        service=str(fields.pop("service", "checkout")),
        at=WINDOW.start,
        summary=f"{name} series",
        metric=name,
        points=series(values),
        **fields,  # type: ignore[arg-type]
    )


def deploy(
    minutes_before_onset: float, version: str = "v2", service: str = "checkout"
) -> ChangeEvidence:
    return ChangeEvidence(
        id=f"change-deploys-{version}",
        service=service,
        at=at(ONSET) - timedelta(minutes=minutes_before_onset),
        summary=f"deploy of {service} to {version}",
        change="deploy",
        version=version,
    )


def analyze(*evidence: MetricEvidence | ChangeEvidence, service: str = "checkout") -> Hypothesis:
    request = AnalysisRequest(
        alert={"service": service, "name": "HighErrorRate"},
        attempt=1,
        window=WINDOW,
        evidence=list(evidence),
    )
    return CorrelationAnalyzer().hypothesis(request)


# -- the statistics --------------------------------------------------------------------------


def test_roles_are_read_from_names_and_units() -> None:
    assert role_of("http_5xx_rate", "req/s") == "errors"
    assert role_of("grpc_failed_calls") == "errors"
    assert role_of("error_ratio_5m") == "error_ratio"
    assert role_of("http_errors", "ratio") == "error_ratio"
    assert role_of("http_request_rate") == "requests"
    assert role_of("latency_p99_seconds", "s") == "latency"
    assert role_of("request_duration_p95") == "latency"  # duration before request
    assert role_of("db_connections_in_use") == "usage"
    assert role_of("db_connections_limit") == "limit"
    assert role_of("queue_depth") == "other"


def test_the_onset_is_the_first_sustained_departure_and_the_baseline_precedes_it() -> None:
    found = departure(series(stepped(0.0, 8.0)), role="errors")
    assert found is not None
    assert (found.onset, found.index, found.baseline, found.level) == (at(ONSET), ONSET, 0, 8)
    assert not found.from_start

    # With noise: the median/MAD baseline of the points before the onset, not the window's.
    found = departure(series(stepped(100.0, 160.0, spread=4.0)), role="latency")
    assert found is not None and abs(found.index - ONSET) <= 1
    assert 97 < found.baseline < 103 and 155 < found.level < 165
    assert found.score > 4


def test_a_departure_present_from_the_start_says_so() -> None:
    values = [0.0] * 2 + [8.0] * (N - 2)
    found = departure(series(values), role="errors", usual=0.0)
    assert found is not None and found.from_start and found.index <= 2


@pytest.mark.parametrize("seed", range(20))
def test_noise_is_no_departure(seed: int) -> None:
    for role, level, spread in (("errors", 2.0, 0.4), ("latency", 0.12, 0.02), ("other", 50, 5)):
        values = noisy(level, spread, seed=seed)
        assert departure(series(values), role=role) is None, (role, seed)


def test_spikes_and_recoveries_are_no_current_departure() -> None:
    spike = [0.0] * N
    spike[-1] = 50.0  # one sample: not sustained
    assert departure(series(spike), role="errors") is None
    blip = [0.0] * N
    blip[40:60] = [9.0] * 20  # over before the end
    assert departure(series(blip), role="errors") is None
    gappy = stepped(0.0, 8.0)
    gappy[ONSET + 5] = gappy[ONSET + 20] = 0.0  # scrape gaps inside the spike are tolerated
    found = departure(series(gappy), role="errors")
    assert found is not None and found.index == ONSET


def test_robust_baseline_ignores_outliers() -> None:
    assert robust_baseline([1.0, 1.0, 1.0, 1.0, 1000.0]) == (1.0, 0.0)


def test_the_error_ratio_counts_missing_error_samples_as_zero() -> None:
    errors = series([0.0] * N)[ONSET:]  # the 5xx series appears with the first error
    errors = [(t, 8.0) for t, _ in errors]
    ratio = error_ratio(errors, series([20.0] * ONSET + [28.0] * (N - ONSET)))
    assert [v for _, v in ratio[:ONSET]] == [0.0] * ONSET
    assert {round(v, 4) for _, v in ratio[ONSET:]} == {round(8 / 28, 4)}
    found = departure(ratio, role="error_ratio")
    assert found is not None and found.index == ONSET


def test_saturation_against_a_limit_series_or_a_ratio() -> None:
    limits = {"db_connections_limit": series([50.0] * N)}
    assert limit_for("db_connections_in_use", "", None, limits) == 50
    assert limit_for("cpu_utilization", "ratio", None, {}) == 1.0
    assert limit_for("disk_used_pct", "", None, {}) == 100.0
    assert limit_for("db_connections_in_use", "", 80.0, limits) == 80.0
    assert limit_for("queue_depth", "", None, {}) is None
    full = saturation(series([10.0] * ONSET + [49.0] * (N - ONSET)), 50)
    assert full is not None and full == (0.98, at(ONSET))
    assert saturation(series(noisy(30.0, 3.0)), 50) is None


# -- the analyzer on such series -------------------------------------------------------------


def errors_and_requests(errors: list[float], requests: list[float]) -> list[MetricEvidence]:
    return [
        metric("metric-errors-1", "http_5xx_rate", errors, unit="req/s"),
        metric("metric-requests-1", "http_request_rate", requests, unit="req/s"),
    ]


def test_an_error_spike_right_after_a_deploy_is_a_confident_bad_deploy() -> None:
    change = deploy(minutes_before_onset=0.5, version="v1.5.0")
    h = analyze(*errors_and_requests(stepped(0.0, 8.0), noisy(20.0, 1.0)), change)
    assert (h.fault, h.service) == ("bad_deploy", "checkout")
    assert h.confidence >= 0.7
    assert {"change-deploys-v1.5.0", "metric-errors-1", "metric-requests-1"} <= set(
        h.cited_evidence
    )
    assert "v1.5.0" in h.root_cause and "error ratio" in h.root_cause
    assert h.remediation[0].action == "rollback"
    assert h.remediation[0].parameters == {"from_version": "v1.5.0"}


def test_a_latency_shift_after_a_deploy_is_blamed_on_it() -> None:
    latency = metric("metric-p99-1", "latency_p99_seconds", stepped(0.1, 0.45, 0.01), unit="s")
    h = analyze(latency, deploy(minutes_before_onset=1))
    assert (h.fault, h.service) == ("bad_deploy", "checkout") and h.confidence >= 0.7
    assert "metric-p99-1" in h.cited_evidence


def test_a_deploy_after_the_onset_or_long_before_it_is_not_blamed() -> None:
    evidence = errors_and_requests(stepped(0.0, 8.0), noisy(20.0, 1.0))
    for change in (deploy(minutes_before_onset=-2), deploy(minutes_before_onset=90)):
        h = analyze(*evidence, change)
        assert h.fault == "unknown" and h.confidence < 0.7, (change.at, h)
        assert "LLM analyzer" in h.root_cause
        assert "metric-errors-1" in h.cited_evidence  # it says what it did see


def test_a_deploy_of_another_service_is_not_blamed() -> None:
    evidence = errors_and_requests(stepped(0.0, 8.0), noisy(20.0, 1.0))
    h = analyze(*evidence, deploy(0.5, service="catalog"))
    assert h.fault == "unknown" and h.confidence < 0.7


def test_a_traffic_surge_is_no_error_ratio_departure() -> None:
    # Errors and requests both doubled: the ratio holds, nothing is failing more.
    errors = stepped(0.2, 0.4, 0.02)
    requests = stepped(20.0, 40.0, 1.0)
    h = analyze(*errors_and_requests(errors, requests), deploy(0.5))
    assert h.fault == "unknown" and h.confidence <= 0.05 and h.cited_evidence == []
    assert "LLM analyzer" in h.root_cause


def test_saturation_against_a_limit_series_is_a_resource_cause() -> None:
    in_use = metric("metric-pool-1", "db_connections_in_use", [10.0] * ONSET + [50.0] * 40)
    limit = metric("metric-pool-limit-1", "db_connections_limit", [50.0] * N)
    latency = metric("metric-p99-1", "latency_p99_seconds", stepped(0.1, 0.9, 0.01), unit="s")
    h = analyze(in_use, limit, latency)
    assert (h.fault, h.service) == ("connection_pool_exhaustion", "checkout")
    assert {"metric-pool-1", "metric-pool-limit-1"} <= set(h.cited_evidence)
    assert "100% of its limit" in h.root_cause


def test_healthy_noisy_series_find_no_culprit() -> None:
    evidence = [
        *errors_and_requests(noisy(0.1, 0.03), noisy(20.0, 2.0)),
        metric("metric-p99-1", "latency_p99_seconds", noisy(0.1, 0.01), unit="s"),
        metric("metric-pool-1", "db_connections_in_use", noisy(12.0, 2.0)),
        metric("metric-pool-limit-1", "db_connections_limit", [50.0] * N),
    ]
    h = analyze(*evidence, deploy(0.5))
    assert h.fault == "unknown" and h.confidence <= 0.05 and h.cited_evidence == []
    assert "5 metric series" in h.root_cause and "LLM analyzer" in h.root_cause


def test_an_error_series_that_begins_with_the_first_error_still_departs() -> None:
    # Only a 5xx rate (no request rate) whose series exists from the first error on, next to
    # a latency series covering the whole window.
    late = MetricEvidence(
        id="metric-errors-1",
        service="checkout",
        at=at(ONSET),
        summary="5xx",
        metric="http_5xx_rate",
        points=series([8.0] * N)[ONSET:],
    )
    latency = metric("metric-p99-1", "latency_p99_seconds", noisy(0.1, 0.005), unit="s")
    h = analyze(late, latency, deploy(0.5))
    assert (h.fault, h.service) == ("bad_deploy", "checkout") and h.confidence >= 0.7
    assert "metric-errors-1" in h.cited_evidence
