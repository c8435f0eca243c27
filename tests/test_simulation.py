"""The simulated environment: deterministic per seed, each scenario's symptoms present at
sensible strengths among realistic noise, wide-window signals absent from narrow windows,
evidence gathered only from the window, and remediation that heals only when it addresses the
actual fault."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from durable_ir.rca import EvidenceWindow
from durable_ir.rca.evidence import ChangeEvidence, LogEvidence, MetricEvidence
from durable_ir.simulation import ACTIONS, SCENARIOS, SimulatedEnvironment, SimulatedGatherer
from durable_ir.simulation.topology import dependency_closure

SEEDS = range(5)
MIN = timedelta(minutes=1)


def window(env: SimulatedEnvironment, minutes: int) -> EvidenceWindow:
    return EvidenceWindow.ending_at(env.fired_at, timedelta(minutes=minutes))


def gather(
    env: SimulatedEnvironment, minutes: int, alert: dict[str, Any] | None = None
) -> list[Any]:
    return asyncio.run(SimulatedGatherer(env).gather(alert or env.alert, window(env, minutes)))


def series(env: SimulatedEnvironment, service: str, metric: str, minutes: int) -> list[float]:
    w = window(env, minutes)
    return [v for _, v in env.metric(service, metric, w.start, w.end)]


def recent(env: SimulatedEnvironment, service: str, metric: str, minutes: int = 3) -> float:
    values = series(env, service, metric, minutes)
    return sum(values) / len(values)


def logs(env: SimulatedEnvironment, service: str, minutes: int, pattern: str) -> int:
    w = window(env, minutes)
    regex = re.compile(pattern, re.IGNORECASE)
    return sum(
        log.count for log in env.logs(service, w.start, w.end) if regex.search(log.signature)
    )


def truth(env: SimulatedEnvironment) -> tuple[str, str]:
    assert env.ground_truth is not None
    return env.ground_truth.fault, env.ground_truth.service


# -- determinism ----------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_seed_always_builds_the_same_world(scenario: str) -> None:
    first, second = SimulatedEnvironment(scenario, seed=3), SimulatedEnvironment(scenario, seed=3)
    assert first.alert == second.alert and first.ground_truth == second.ground_truth
    dump = [e.model_dump(mode="json") for e in gather(first, 360)]
    assert dump == [e.model_dump(mode="json") for e in gather(second, 360)]
    other = SimulatedEnvironment(scenario, seed=4)
    assert [e.model_dump(mode="json") for e in gather(other, 360)] != dump


def test_values_do_not_depend_on_what_was_read_before() -> None:
    env_a, env_b = (
        SimulatedEnvironment("memory_leak", seed=1),
        SimulatedEnvironment("memory_leak", seed=1),
    )
    gather(env_a, 360)  # reads everything, in another order
    for service in ("payments", "db"):
        for metric in ("error_ratio", "memory_used_mb", "latency_p99_ms"):
            assert series(env_a, service, metric, 15) == series(env_b, service, metric, 15)


def test_the_alert_is_a_plain_description_of_the_symptom() -> None:
    for scenario in SCENARIOS:
        env = SimulatedEnvironment(scenario, seed=0)
        alert = env.alert
        assert set(alert) == {"name", "service", "severity", "fired_at", "description", "labels"}
        fired = datetime.fromisoformat(alert["fired_at"])
        assert fired.utcoffset() == timedelta(0) and fired == env.fired_at == env.now
        assert alert["severity"] in ("P1", "P2") and alert["labels"]["service"] == alert["service"]
        words = scenario.replace("_", " ")
        assert words not in alert["description"].lower() and scenario not in str(alert)


# -- each scenario's symptoms ---------------------------------------------------------------


def _alerting(env: SimulatedEnvironment) -> None:
    """The alert's service really is in trouble when the alert fires."""
    service = env.alert["service"]
    usual = env.metric_spec(service, "latency_p99_ms").baseline
    assert recent(env, service, "error_ratio", 5) >= 0.02 or (
        recent(env, service, "latency_p99_ms", 5) >= 1.5 * usual
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_bad_deploy(seed: int) -> None:
    env = SimulatedEnvironment("bad_deploy", seed=seed)
    _, service = truth(env)
    _alerting(env)
    deploys = [
        c for c in env.changes(*_span(env, 15)) if c.service == service and c.kind == "deploy"
    ]
    assert len(deploys) == 1
    before = [
        v for t, v in env.metric(service, "error_ratio", deploys[0].at - 30 * MIN, deploys[0].at)
    ]
    assert max(before) < 0.02  # healthy until the deploy
    assert 0.05 <= recent(env, service, "error_ratio") <= 0.3
    assert logs(env, service, 15, r"exception|error|panic") >= 100


@pytest.mark.parametrize("seed", SEEDS)
def test_memory_leak(seed: int) -> None:
    env = SimulatedEnvironment("memory_leak", seed=seed)
    _, service = truth(env)
    _alerting(env)
    limit = env.limit(service, "memory_used_mb")
    assert limit is not None
    memory = series(env, service, "memory_used_mb", 360)
    assert max(memory[-15:]) >= 0.9 * limit
    assert memory[0] < 0.55 * limit  # hours ago it was normal ...
    assert env.ground_truth is not None
    assert env.fired_at - env.ground_truth.started_at >= timedelta(hours=3)  # ... and leaking since
    assert logs(env, service, 60, r"out ?of ?memory|heap|GC overhead") > 0


@pytest.mark.parametrize("seed", SEEDS)
def test_connection_pool_exhaustion(seed: int) -> None:
    env = SimulatedEnvironment("connection_pool_exhaustion", seed=seed)
    _, service = truth(env)
    _alerting(env)
    assert recent(env, service, "db_pool_in_use") == env.limit(service, "db_pool_in_use")
    usual = env.baseline(service, "request_rate", env.fired_at)
    assert recent(env, service, "request_rate") >= 1.8 * usual
    assert logs(env, service, 15, r"pool|connection is not available") >= 100
    assert recent(env, service, "error_ratio") >= 0.05


@pytest.mark.parametrize("seed", SEEDS)
def test_disk_full(seed: int) -> None:
    env = SimulatedEnvironment("disk_full", seed=seed)
    _, service = truth(env)
    _alerting(env)
    size = env.limit(service, "disk_used_gb")
    assert size is not None
    disk = series(env, service, "disk_used_gb", 360)
    assert disk[-1] >= 0.99 * size and disk[0] <= 0.9 * size  # filled up over hours
    assert logs(env, service, 15, r"no space left on device") >= 100


@pytest.mark.parametrize("seed", SEEDS)
def test_expired_certificate(seed: int) -> None:
    env = SimulatedEnvironment("expired_certificate", seed=seed)
    _, service = truth(env)
    _alerting(env)
    days = series(env, service, "tls_cert_days_remaining", 15)
    assert days[0] > 0 >= days[-1] or days[0] <= 0
    assert series(env, service, "error_ratio", 15)[-1] >= 0.5
    callers = [s for s in env.services if service in env.dependencies(s)]
    assert any(logs(env, c, 15, r"x509: certificate has expired") >= 100 for c in callers)
    # Restarts and deploys are not what happened: the change history has no certificate entry.
    assert not [c for c in env.changes(*_span(env, 360)) if c.kind == "certificate"]


@pytest.mark.parametrize("seed", SEEDS)
def test_upstream_outage(seed: int) -> None:
    env = SimulatedEnvironment("upstream_outage", seed=seed)
    _, service = truth(env)
    assert service == "payment-provider"
    _alerting(env)
    assert recent(env, service, "error_ratio") >= 0.35
    assert recent(env, "payments", "error_ratio") >= 0.2
    assert logs(env, "payments", 15, r"payment-provider responded 503") >= 100
    assert not env.logs(service, *_span(env, 15))  # an outside service: no logs of its own


@pytest.mark.parametrize("seed", SEEDS)
def test_noisy_neighbour(seed: int) -> None:
    env = SimulatedEnvironment("noisy_neighbour", seed=seed)
    _, service = truth(env)
    _alerting(env)
    assert recent(env, service, "cpu_steal_pct") >= 20
    usual = env.metric_spec(service, "latency_p99_ms").baseline
    assert recent(env, service, "latency_p99_ms") >= 2 * usual
    assert recent(env, service, "error_ratio") < 0.05  # slow rather than failing
    assert recent(env, service, "request_rate") < 1.5 * env.baseline(
        service, "request_rate", env.fired_at
    )  # not a traffic surge


@pytest.mark.parametrize("seed", SEEDS)
def test_config_error(seed: int) -> None:
    env = SimulatedEnvironment("config_error", seed=seed)
    _, service = truth(env)
    _alerting(env)
    configs = [
        c for c in env.changes(*_span(env, 60)) if c.service == service and c.kind == "config"
    ]
    assert len(configs) == 1
    assert timedelta(minutes=45) <= env.fired_at - configs[0].at <= timedelta(minutes=58)
    errors = series(env, service, "error_ratio", 60)
    assert max(errors[:5]) < 0.02 and 0.04 <= recent(env, service, "error_ratio") <= 0.12
    assert logs(env, service, 60, r"invalid|unknown") >= 100


def _span(env: SimulatedEnvironment, minutes: int) -> tuple[datetime, datetime]:
    w = window(env, minutes)
    return w.start, w.end


# -- noise ------------------------------------------------------------------------------------


def test_every_world_has_background_noise() -> None:
    recent_unrelated = harmless_total = disturbed = 0
    for scenario in (*SCENARIOS, None):
        for seed in SEEDS:
            env = SimulatedEnvironment(scenario, seed=seed)
            faulty = env.ground_truth.service if env.ground_truth else None
            started = env.ground_truth.started_at if env.ground_truth else None
            changes = env.changes(*_span(env, 360))
            harmless = [c for c in changes if c.at != started]
            assert harmless  # deploys and config changes that did no harm
            harmless_total += len(harmless)
            recent_unrelated += any(
                c.at >= env.fired_at - 15 * MIN and c.service != faulty for c in harmless
            )
            for service in ("checkout", "db"):
                assert env.logs(service, *_span(env, 15))  # everyday warnings and errors
            slow = {d.service for d in env.slowdowns if d.ongoing(env.now)}
            disturbed += len(env.slowdowns)
            for service in env.services:  # services with nothing to do with it stay healthy
                involved = faulty is not None and (
                    service == faulty or faulty in dependency_closure(service)
                )
                if not involved and service not in slow:
                    assert env.health(service).healthy, (scenario, seed, service)
    assert harmless_total >= 2 * 5 * (len(SCENARIOS) + 1)
    assert recent_unrelated >= 5  # red herrings: unrelated changes right before some alerts
    assert disturbed >= 10  # unrelated slowdowns, past or ongoing


def test_a_healthy_world_is_unhealthy_only_where_something_unrelated_is_slow() -> None:
    slowed = 0
    for seed in range(10):
        env = SimulatedEnvironment(None, seed=seed)
        assert env.ground_truth is None
        slow = {d.service for d in env.slowdowns if d.ongoing(env.now)}
        slowed += len(slow)
        for service in env.services:
            assert env.health(service).healthy == (service not in slow), (seed, service)
        assert max(series(env, env.alert["service"], "error_ratio", 360)) < 0.05
    assert slowed  # some worlds have one


# -- what each window shows -------------------------------------------------------------------


def _ids(evidence: list[Any], kind: type[ChangeEvidence] | type[MetricEvidence]) -> set[str]:
    return {str(e.id) for e in evidence if isinstance(e, kind)}


@pytest.mark.parametrize("seed", SEEDS)
def test_a_config_change_50_minutes_back_is_missed_by_a_15_minute_window(seed: int) -> None:
    env = SimulatedEnvironment("config_error", seed=seed)
    _, service = truth(env)
    narrow, wide = gather(env, 15), gather(env, 60)
    config = [e for e in wide if isinstance(e, ChangeEvidence) and e.change == "config"]
    assert [c.service for c in config] == [service]
    assert config[0].id not in _ids(narrow, ChangeEvidence)
    # In the narrow window the errors are already there from its first minute.
    errors = next(
        e for e in narrow if isinstance(e, MetricEvidence) and e.id == f"met-{service}-error_ratio"
    )
    assert errors.points[0][1] > 0.02


@pytest.mark.parametrize("seed", SEEDS)
def test_a_memory_leak_shows_its_rise_and_its_deploy_only_in_the_wide_window(seed: int) -> None:
    env = SimulatedEnvironment("memory_leak", seed=seed)
    _, service = truth(env)
    limit = env.limit(service, "memory_used_mb")
    assert limit is not None
    narrow, hour, wide = (series(env, service, "memory_used_mb", m) for m in (15, 60, 360))
    assert max(narrow) - min(narrow[:3]) < 0.15 * limit  # no telling a leak from 15 minutes
    assert max(wide[-30:]) - wide[0] > 0.35 * limit
    deploys = [c for c in env.changes(*_span(env, 360)) if c.service == service]
    assert env.ground_truth is not None
    leak = [c for c in deploys if c.at == env.ground_truth.started_at]
    assert leak and leak[0].at < env.fired_at - timedelta(hours=1)
    assert leak[0] not in env.changes(*_span(env, 60))
    assert len(hour) == 60


@pytest.mark.parametrize("seed", SEEDS)
def test_noisy_neighbour_onset_shows_only_in_the_wider_window(seed: int) -> None:
    env = SimulatedEnvironment("noisy_neighbour", seed=seed)
    _, service = truth(env)
    assert min(series(env, service, "cpu_steal_pct", 15)) > 8  # high throughout 15 minutes
    assert min(series(env, service, "cpu_steal_pct", 60)[:10]) < 4  # the hour shows it start


# -- the gatherer -----------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_gathered_evidence_lies_in_the_window_with_stable_unique_ids(scenario: str) -> None:
    env = SimulatedEnvironment(scenario, seed=1)
    by_window = {m: gather(env, m) for m in (15, 60, 360)}
    for minutes, evidence in by_window.items():
        w = window(env, minutes)
        ids = [e.id for e in evidence]
        assert len(ids) == len(set(ids))
        for e in evidence:
            assert w.start <= e.at < w.end
            if isinstance(e, MetricEvidence):
                assert all(w.start <= t < w.end for t, _ in e.points)
                assert len(e.points) <= 120
            if isinstance(e, LogEvidence):
                assert e.first_seen is not None and w.start <= e.first_seen < w.end
    # The same thing keeps its id as the window widens.
    assert _ids(by_window[60], ChangeEvidence) <= _ids(by_window[360], ChangeEvidence)
    assert _ids(by_window[15], MetricEvidence) == _ids(by_window[360], MetricEvidence)
    assert by_window[15] == gather(env, 15)


def test_gathering_covers_the_alerted_service_and_its_dependencies_only() -> None:
    env = SimulatedEnvironment("upstream_outage", seed=0)
    alert = {**env.alert, "service": "payments"}
    services = {e.service for e in gather(env, 60, alert)}
    assert services == {"payments", "db", "payment-provider"}
    assert {e.service for e in gather(env, 60, {**alert, "service": "checkout"})} == set(
        env.services
    )
    with pytest.raises(ValueError, match="no known service"):
        gather(env, 15, {**alert, "service": "nope"})


def test_nothing_after_now_can_be_read() -> None:
    env = SimulatedEnvironment("bad_deploy", seed=0)
    later = EvidenceWindow(start=env.now - 5 * MIN, end=env.now + timedelta(hours=1))
    evidence = asyncio.run(SimulatedGatherer(env).gather(env.alert, later))
    assert evidence and all(e.at < env.now for e in evidence)
    assert env.metric("checkout", "error_ratio", env.now, env.now + timedelta(hours=1)) == []
    with pytest.raises(ValueError):
        env.advance(-MIN)


# -- remediation ------------------------------------------------------------------------------

RIGHT = {
    "bad_deploy": "rollback",
    "memory_leak": "rollback",
    "connection_pool_exhaustion": "scale",
    "disk_full": "clear_disk",
    "expired_certificate": "rotate_certificate",
    "upstream_outage": "failover_upstream",
    "noisy_neighbour": "reschedule",
    "config_error": "fix_config",
}
WRONG = {
    "bad_deploy": ("restart", "fix_config", "scale"),
    "memory_leak": ("scale", "fix_config"),
    "connection_pool_exhaustion": ("restart", "rollback"),
    "disk_full": ("restart", "rollback"),
    "expired_certificate": ("restart", "rollback"),
    "upstream_outage": ("restart", "scale"),
    "noisy_neighbour": ("restart", "scale", "rollback"),
    "config_error": ("restart", "rollback"),
}


def _after(
    scenario: str, seed: int, action: str | None, target: str | None = None
) -> SimulatedEnvironment:
    env = SimulatedEnvironment(scenario, seed=seed)
    if action is not None:
        env.remediate(action, target or truth(env)[1])
    env.advance(timedelta(minutes=30))
    return env


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("seed", range(3))
def test_the_right_action_heals_and_wrong_ones_do_not(scenario: str, seed: int) -> None:
    untouched = _after(scenario, seed, None)
    alerted = untouched.alert["service"]
    assert not untouched.health(alerted).healthy  # it does not heal by itself

    fixed = _after(scenario, seed, RIGHT[scenario])
    _, service = truth(fixed)
    assert fixed.health(alerted).healthy, fixed.health(alerted).issues
    if service != "payment-provider":  # an outside provider stays down: we route around it
        assert fixed.health(service).healthy, fixed.health(service).issues
    for action in WRONG[scenario]:
        wrong = _after(scenario, seed, action)
        assert not wrong.health(alerted).healthy or not wrong.health(service).healthy, action
    # The right action on the wrong service does nothing either.
    elsewhere = next(s for s in ("cache", "auth") if s != service)
    assert not _after(scenario, seed, RIGHT[scenario], elsewhere).health(alerted).healthy


def test_a_restart_relieves_a_memory_leak_only_for_a_while() -> None:
    env = SimulatedEnvironment("memory_leak", seed=2)
    _, service = truth(env)
    env.remediate("restart", service)
    env.advance(timedelta(minutes=30))
    health = env.health(service)
    assert health.error_ratio < 0.02  # relief ...
    assert not health.healthy and any("rising" in issue for issue in health.issues)  # ... for now
    env.advance(timedelta(hours=5))
    oom = [
        e
        for e in env.events(env.now - timedelta(hours=2), env.now, (service,))
        if e.reason == "OOMKilled"
    ]
    assert oom and not env.health(service).healthy
    env.remediate("rollback", service)
    env.advance(timedelta(minutes=30))
    assert env.health(service).healthy


def test_expanding_the_disk_also_fixes_a_full_disk() -> None:
    env = SimulatedEnvironment("disk_full", seed=1)
    _, service = truth(env)
    old = env.limit(service, "disk_used_gb")
    env.remediate("expand_disk", service, factor=2)
    env.advance(timedelta(minutes=30))
    assert env.limit(service, "disk_used_gb") == 2 * (old or 0)
    assert env.health(service).healthy


def test_remediation_is_recorded_and_validated() -> None:
    env = SimulatedEnvironment("bad_deploy", seed=0)
    _, service = truth(env)
    bad = [c for c in env.changes(*_span(env, 15)) if c.service == service][-1]
    done = env.remediate("rollback", service)
    assert done.action == "rollback" and done.at == env.now
    env.advance(MIN)
    rollback = env.changes(env.now - 2 * MIN, env.now)
    assert [c.kind for c in rollback] == ["deploy"] and rollback[0].version != bad.version
    assert rollback[0].seq > bad.seq
    with pytest.raises(ValueError, match="unknown action"):
        env.remediate("pray", service)
    with pytest.raises(ValueError, match="unknown service"):
        env.remediate("restart", "mainframe")
    assert set(RIGHT.values()) <= set(ACTIONS)


def test_health_reads_only_the_recent_past() -> None:
    env = SimulatedEnvironment("config_error", seed=0)
    _, service = truth(env)
    env.remediate("fix_config", service)
    assert not env.health(service).healthy  # nothing has happened since the fix yet
    env.advance(timedelta(minutes=15))
    assert env.health(service).healthy
    assert env.now == env.fired_at + timedelta(minutes=15)
    assert env.now.tzinfo is UTC or env.now.utcoffset() == timedelta(0)
