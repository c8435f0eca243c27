"""The simulated fleet: many incidents' environments in one process, each found again from its
alert alone, serving as gatherer, executor and verifier; and the simulation's allow-list."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from durable_ir.alerts import parse_generic
from durable_ir.errors import InvalidInput
from durable_ir.rca import EvidenceWindow, Gatherer
from durable_ir.remediation import (
    Executor,
    RemediationPlan,
    RemediationStep,
    StepContext,
    Verification,
    VerificationContext,
    Verifier,
)
from durable_ir.simulation import (
    ACTIONS,
    SCENARIOS,
    SIMULATED_ACTION_RISKS,
    SimulatedEnvironment,
    SimulatedFleet,
    SimulatedGatherer,
    simulated_allow_list,
)
from durable_ir.simulation.topology import SERVICES, dependency_closure

RIGHT = {
    "bad_deploy": "rollback",
    "connection_pool_exhaustion": "scale",
    "disk_full": "clear_disk",
    "expired_certificate": "rotate_certificate",
    "noisy_neighbour": "reschedule",
    "config_error": "fix_config",
}
"""The action that fixes each scenario's fault on its faulty service (and heals within the
default settle time)."""


def _context(alert: dict[str, Any], number: int = 1) -> StepContext:
    return StepContext(incident_id="inc-1", alert=alert, number=number)


async def _remediate(
    fleet: SimulatedFleet, alert: dict[str, Any], action: str, target: str
) -> Verification:
    step = RemediationStep(action=action, target=target, risk=SIMULATED_ACTION_RISKS[action])
    preview = await fleet.dry_run(step, _context(alert))
    assert preview.ok, preview.detail
    done = await fleet.apply(step, _context(alert))
    assert done.ok, done.detail
    plan = RemediationPlan(summary=f"{action} {target}", steps=[step])
    return await fleet.verify(VerificationContext(incident_id="inc-1", alert=alert, plan=plan))


def test_the_fleet_is_a_gatherer_an_executor_and_a_verifier() -> None:
    fleet = SimulatedFleet()
    assert isinstance(fleet, Gatherer)
    assert isinstance(fleet, Executor)
    assert isinstance(fleet, Verifier)


@pytest.mark.parametrize("scenario", [*SCENARIOS, None])
def test_the_same_scenario_and_seed_give_the_same_alert(scenario: str | None) -> None:
    payload = SimulatedFleet().alert(scenario, 4)
    again = SimulatedFleet().alert(scenario, 4)
    assert payload == again
    assert payload["labels"]["sim_scenario"] == (scenario or "healthy")
    assert payload["labels"]["sim_seed"] == "4"
    env = SimulatedEnvironment(scenario, seed=4)
    assert {k: v for k, v in payload.items() if k != "labels"} == {
        k: v for k, v in env.alert.items() if k != "labels"
    }
    alert = parse_generic(payload)
    assert alert.fingerprint == parse_generic(again).fingerprint
    assert alert.service == env.alert["service"] and alert.fired_at == env.fired_at
    assert alert.labels["team"] == SERVICES[alert.service].team
    assert SimulatedFleet().alert(scenario, 5) != payload  # another seed, another incident


def test_the_payload_is_a_fresh_copy() -> None:
    fleet = SimulatedFleet()
    payload = fleet.alert("disk_full", 1)
    payload["labels"]["sim_seed"] = "99"
    payload["service"] = "mainframe"
    assert fleet.alert("disk_full", 1)["labels"]["sim_seed"] == "1"
    assert fleet.environment_for(fleet.alert("disk_full", 1)).alert["service"] != "mainframe"


def test_environments_are_built_once_per_scenario_and_seed() -> None:
    fleet = SimulatedFleet()
    payload = fleet.alert("bad_deploy", 1)
    env = fleet.environment_for(payload)
    assert env.scenario == "bad_deploy" and env.seed == 1
    assert fleet.environment_for(parse_generic(payload).as_state()) is env
    assert fleet.environment_for(fleet.alert("bad_deploy", 1)) is env
    assert fleet.environment_for(fleet.alert("bad_deploy", 2)) is not env
    assert fleet.environment_for(fleet.alert("disk_full", 1)) is not env
    healthy = fleet.environment_for(fleet.alert(None, 1))
    assert healthy.scenario is None and healthy.ground_truth is None
    assert fleet.environment_for(fleet.alert("healthy", 1)) is healthy
    # Another process (another fleet) rebuilds it from the alert alone, as it was.
    assert SimulatedFleet().environment_for(payload) is not env


async def test_gather_reads_the_alerts_environment_within_the_window() -> None:
    fleet = SimulatedFleet(max_points=10)
    for scenario, seed in (("bad_deploy", 1), ("disk_full", 2)):
        alert = parse_generic(fleet.alert(scenario, seed)).as_state()
        env = fleet.environment_for(alert)
        window = EvidenceWindow.ending_at(env.fired_at, timedelta(minutes=30))
        evidence = await fleet.gather(alert, window)
        assert evidence and all(window.start <= e.at < window.end for e in evidence)
        assert {e.kind for e in evidence} >= {"metric", "log"}
        direct = SimulatedGatherer(SimulatedEnvironment(scenario, seed=seed), max_points=10)
        assert evidence == await direct.gather(alert, window)  # the alert's own world
        services = {alert["service"], *dependency_closure(alert["service"])}
        assert {e.service for e in evidence} <= services
        metrics = [e for e in evidence if e.kind == "metric"]
        assert all(len(e.points) <= 10 for e in metrics)
        assert len({e.id for e in evidence}) == len(evidence)


@pytest.mark.parametrize("scenario", RIGHT)
@pytest.mark.parametrize("seed", range(2))
async def test_the_right_action_verifies_and_a_wrong_one_does_not(scenario: str, seed: int) -> None:
    fleet = SimulatedFleet()
    alert = parse_generic(fleet.alert(scenario, seed)).as_state()
    truth = fleet.environment_for(alert).ground_truth
    assert truth is not None and truth.fault == scenario

    verified = await _remediate(fleet, alert, RIGHT[scenario], truth.service)
    assert verified.ok, verified.detail
    assert verified.readings[alert["service"]]["healthy"]
    env = fleet.environment_for(alert)
    assert env.now == env.fired_at + fleet.settle  # verification let time pass

    # A fresh fleet (as after a crash) starts again from before the remediation.
    other = SimulatedFleet()
    wrong = next(a for a in ("restart", "scale", "rollback") if a != RIGHT[scenario])
    not_fixed = await _remediate(other, alert, wrong, truth.service)
    assert not not_fixed.ok and "still unhealthy" in not_fixed.detail


async def test_remediation_touches_only_its_own_incident() -> None:
    fleet = SimulatedFleet()
    first = fleet.alert("config_error", 0)
    second = fleet.alert("config_error", 1)
    first_env, second_env = fleet.environment_for(first), fleet.environment_for(second)
    assert first_env.ground_truth is not None and second_env.ground_truth is not None
    assert not second_env.health(second["service"]).healthy
    verified = await _remediate(fleet, first, "fix_config", first_env.ground_truth.service)
    assert verified.ok
    assert first_env.now == first_env.fired_at + fleet.settle
    assert second_env.now == second_env.fired_at  # untouched: its clock did not move ...
    assert not second_env.health(second["service"]).healthy  # ... and it is still broken


async def test_a_longer_settle_lets_a_memory_leak_rollback_verify() -> None:
    fleet = SimulatedFleet(settle=timedelta(minutes=30))
    alert = fleet.alert("memory_leak", 2)
    truth = fleet.environment_for(alert).ground_truth
    assert truth is not None
    verified = await _remediate(fleet, alert, "rollback", truth.service)
    assert verified.ok, verified.detail


async def test_executor_failures_are_still_results() -> None:
    fleet = SimulatedFleet()
    alert = fleet.alert("disk_full", 0)
    unknown = RemediationStep(action="teleport", target="db")
    assert not (await fleet.dry_run(unknown, _context(alert))).ok
    assert not (await fleet.apply(unknown, _context(alert))).ok
    back = await fleet.rollback(RemediationStep(action="restart", target="db"), _context(alert))
    assert back.ok and "restart" in back.detail


@pytest.mark.parametrize(
    ("alert", "message"),
    [
        ({"name": "HighErrorRate", "service": "checkout"}, "no labels"),
        ({"labels": "sim_scenario=bad_deploy"}, "no labels"),
        ({"labels": {}}, "sim_scenario, sim_seed"),
        ({"labels": {"sim_scenario": "bad_deploy"}}, "sim_seed"),
        ({"labels": {"sim_seed": "1"}}, "sim_scenario"),
        ({"labels": {"sim_scenario": "meteor_strike", "sim_seed": "1"}}, "unknown simulated"),
        ({"labels": {"sim_scenario": "bad_deploy", "sim_seed": "one"}}, "whole number"),
        ({"labels": {"sim_scenario": "bad_deploy", "sim_seed": "1.5"}}, "whole number"),
        ({"labels": {"sim_scenario": "bad_deploy", "sim_seed": ""}}, "whole number"),
        ({"labels": {"sim_scenario": 3, "sim_seed": "1"}}, "unknown simulated"),
    ],
)
async def test_alerts_without_valid_labels_are_refused(alert: dict[str, Any], message: str) -> None:
    fleet = SimulatedFleet()
    with pytest.raises(InvalidInput, match=message):
        fleet.environment_for(alert)
    step = RemediationStep(action="restart", target="checkout")
    with pytest.raises(InvalidInput, match=message):
        await fleet.apply(step, _context(alert))
    window = EvidenceWindow.ending_at(SimulatedEnvironment().fired_at, timedelta(minutes=15))
    with pytest.raises(InvalidInput, match=message):
        await fleet.gather(alert, window)


def test_bad_fleet_arguments_are_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown simulated scenario"):
        SimulatedFleet().alert("meteor_strike", 1)
    with pytest.raises(InvalidInput, match="whole number"):
        SimulatedFleet().alert("bad_deploy", True)
    with pytest.raises(ValueError, match="max_points"):
        SimulatedFleet(max_points=1)
    with pytest.raises(ValueError, match="settle"):
        SimulatedFleet(settle=timedelta(minutes=-1))


def test_every_simulated_action_has_a_risk() -> None:
    assert set(SIMULATED_ACTION_RISKS) == set(ACTIONS)
    assert SIMULATED_ACTION_RISKS["restart"] == "low"
    assert SIMULATED_ACTION_RISKS["failover_upstream"] == "high"


def test_the_allow_list_bounds_plans_to_the_simulation() -> None:
    allow = simulated_allow_list()
    assert set(allow.actions) == set(ACTIONS)
    assert allow.targets == frozenset(SERVICES)
    checked = allow.validate(
        {
            "summary": "roll back payments",
            "steps": [
                {
                    "action": "rollback",
                    "target": "payments",
                    "risk": "medium",
                    "rollback": {"action": "restart", "target": "payments"},
                },
                {"action": "failover_upstream", "target": "payment-provider", "risk": "high"},
            ],
        }
    )
    assert [s["action"] for s in checked["steps"]] == ["rollback", "failover_upstream"]
    refused = [
        ({"action": "drop_table", "target": "db"}, "action 'drop_table' is not allowed"),
        ({"action": "restart", "target": "mainframe"}, "target 'mainframe' is not one"),
        ({"action": "restart", "target": "checkout", "risk": "high"}, "at most 'low' risk"),
    ]
    for step, message in refused:
        with pytest.raises(ValueError, match=message):
            allow.validate({"steps": [step]})
