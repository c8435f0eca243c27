"""The chaos soak (``benchmarks/chaos.py``): incidents through several worker processes and an
SLA monitor on one PostgreSQL database while a worker is SIGKILLed and restarted, another is
frozen inside a remediation step until its run is taken over (a zombie), and every connection
to the database is terminated; one worker goes through PgBouncer in transaction mode. Nothing
may be lost, done twice, left stuck, paged twice or applied by two owners.

``test_reduced_soak_loses_nothing`` runs the harness itself, reduced (``--smoke``: 60
incidents, 2 workers — one through PgBouncer —, 1 monitor, 1 kill, 1 zombie,
``pg_terminate_backend`` instead of a cluster restart, without the kill matrix, which
``test_kill_matrix.py`` runs), as a subprocess. The other tests show that the harness's
checks catch what they are for, on planted evidence. No timing is asserted.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from _soak_checks import Evidence, StepCall, check, excused_replay  # noqa: E402
from _soak_processes import Fault  # noqa: E402
from _soak_workload import PlannedIncident, make_plan  # noqa: E402

from durable_ir.integrations.pagerduty import dedup_key  # noqa: E402
from durable_ir.records import StepClaim  # noqa: E402
from support.pgbouncer import PGBOUNCER  # noqa: E402

LAST_LINE = re.compile(
    r"chaos incidents=(?P<incidents>\d+) kills=(?P<kills>\d+) zombies=(?P<zombies>\d+) "
    r"pg_restarts=(?P<pg>\d+) in_doubt_reruns=(?P<in_doubt>\d+) "
    r"lost=(?P<lost>\d+) duplicated=(?P<duplicated>\d+) stuck=(?P<stuck>\d+) "
    r"double_paged=(?P<double_paged>\d+) double_applied=(?P<double_applied>\d+)"
)
HEADLINE = ("lost", "duplicated", "stuck", "double_paged", "double_applied")


@pytest.mark.postgres
@pytest.mark.slow
def test_reduced_soak_loses_nothing(postgres_server: str) -> None:
    env = dict(os.environ)
    env.pop("DURABLE_IR_BENCH_POSTGRES_URL", None)
    argv = [sys.executable, str(BENCHMARKS / "chaos.py"), "--smoke", "--url", postgres_server]
    bouncer = PGBOUNCER.is_file() and os.access(PGBOUNCER, os.X_OK)
    if not bouncer:
        # CI installs pgbouncer (and sets DURABLE_IR_REQUIRE_POSTGRES): there it must run.
        assert not os.environ.get("DURABLE_IR_REQUIRE_POSTGRES"), f"{PGBOUNCER} is missing"
        argv += ["--pgbouncer-workers", "0"]
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    report = f"{proc.stdout[-8000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
    lines = proc.stdout.strip().splitlines()
    assert lines, report
    found = LAST_LINE.fullmatch(lines[-1])
    assert found, report
    counts = {name: int(value) for name, value in found.groupdict().items()}
    assert counts["incidents"] == 60, report
    assert counts["kills"] >= 1 and counts["zombies"] == 1 and counts["pg"] == 1, report
    assert {k: counts[k] for k in HEADLINE} == dict.fromkeys(HEADLINE, 0), report
    if bouncer:
        assert "(1 through PgBouncer in transaction mode)" in proc.stderr, report
    assert proc.returncode == 0, report


# --------------------------------------------------------------------------- the checks


def approved(steps: int = 2, fail_step: int = 0) -> PlannedIncident:
    """An incident the driver approves."""
    plan = make_plan(1, seed=0, run="t", expire_window=(1.0, 2.0))[0]
    return replace(plan, fate="approve", steps=steps, fail_step=fail_step)


def call(
    number: int,
    pid: int,
    started: float,
    ended: float | None,
    phase: str = "apply",
    *,
    epoch: int | None = None,
    in_doubt: bool = False,
    applied: bool | None = None,
) -> Any:
    if applied is None and ended is not None:
        applied = not in_doubt
    return StepCall(f"chaos-t-00000/step-{number}/{phase}", "chaos-t-00000", number, phase, pid,
                    started, ended, epoch, in_doubt, applied)  # fmt: skip


def claim(number: int, epoch: int, *, finished: bool, phase: str = "apply") -> StepClaim:
    """The ledger's claim of step ``number`` by ``epoch``."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    key = f"chaos-t-00000/step-{number}/{phase}"
    done = at if finished else None
    return StepClaim("chaos-t-00000", key, epoch, f"owner-{epoch}", at, done, finished or None)


def evidence_of(
    planned: PlannedIncident,
    *,
    calls: list[StepCall],
    outcome: dict[str, Any] | None,
    index: str = "closed",
    triggers: int = 0,
    pending_tasks: tuple[str, ...] = (),
    claims: list[StepClaim] | None = None,
) -> Evidence:
    """What the database, the traces and PagerDuty would hold for one approved incident."""
    incident = planned.incident_id
    status = outcome["status"] if outcome else None
    return Evidence(
        incidents={incident: {"incident_id": incident, "status": index, "outcome": status}},
        approvals={
            incident: [
                {"approval_id": "a-1", "status": "approved", "decided_by": "x", "applied_at": 1}
            ]
        },
        jobs=[],
        states={
            incident: {
                "status": "finished",
                "pending_tasks": pending_tasks,
                "outcome": outcome,
                "escalation": {"reason": outcome.get("reason")} if outcome else None,
                "approval": {"status": "approved"},
                # Each step once in the state: a re-run's record replaces the lost one.
                "applied_steps": [
                    {"number": n} for n in sorted({c.number for c in calls if c.phase == "apply"})
                ],
            }
        },
        state_errors={},
        calls=calls,
        triggers=Counter({dedup_key(incident): triggers} if triggers else {}),
        alerts_opened=Counter(),
        pagerduty_refused=0,
        claims={incident: claims or []},
    )


def broken(result: Any) -> dict[str, int]:
    return {name: result.count(name) for name in HEADLINE}


CLEAN = dict.fromkeys(HEADLINE, 0)


def test_a_clean_resolved_incident_breaks_nothing() -> None:
    planned = approved()
    evidence = evidence_of(
        planned, calls=[call(1, 7, 1.0, 1.1), call(2, 7, 1.2, 1.3)], outcome={"status": "resolved"}
    )
    result = check([planned], [], evidence)
    assert broken(result) == CLEAN


def test_a_step_applied_twice_is_duplicated_unless_a_fault_cut_the_first_run_off() -> None:
    planned = approved()
    calls = [call(1, 7, 1.0, 1.1), call(2, 7, 1.2, 1.3), call(2, 8, 5.0, 5.1)]
    evidence = evidence_of(planned, calls=calls, outcome={"status": "resolved"})
    assert broken(check([planned], [], evidence))["duplicated"] == 1
    # A kill of the first caller while the step ran: the documented re-run, not a duplicate.
    killed = [call(1, 7, 1.0, 1.1), call(2, 7, 1.2, None), call(2, 8, 5.0, 5.1)]
    evidence = evidence_of(planned, calls=killed, outcome={"status": "resolved"})
    assert broken(check([planned], [Fault("kill", 1.25, 1.25, 7)], evidence))["duplicated"] == 0


def test_two_runs_of_one_step_at_once_are_never_excused() -> None:
    first, again = call(1, 7, 1.0, 2.0), call(1, 8, 1.5, 2.5)
    restart = Fault("pg_restart", 1.2, 1.4)
    assert not excused_replay(first, again, [restart])
    assert excused_replay(first, call(1, 8, 3.0, 3.1), [Fault("pg_restart", 2.1, 2.5)])
    assert not excused_replay(first, call(1, 8, 3.0, 3.1), [Fault("kill", 2.1, 2.1, pid=99)])


def test_an_incident_closed_without_an_outcome_is_lost() -> None:
    planned = approved()
    evidence = evidence_of(planned, calls=[], outcome=None, pending_tasks=("__start__",))
    evidence.incidents[planned.incident_id]["outcome"] = "finished"
    assert broken(check([planned], [], evidence)) == CLEAN | {"lost": 1}


def test_open_or_unfinished_incidents_are_stuck() -> None:
    planned = approved()
    calls = [call(1, 7, 1.0, 1.1), call(2, 7, 1.2, 1.3)]
    still_open = evidence_of(planned, calls=calls, outcome={"status": "resolved"}, index="open")
    assert broken(check([planned], [], still_open))["stuck"] == 1
    work_left = evidence_of(
        planned, calls=calls, outcome={"status": "resolved"}, pending_tasks=("summarize",)
    )
    assert broken(check([planned], [], work_left))["stuck"] == 1


def test_pages_are_counted_per_escalation() -> None:
    planned = approved(steps=2, fail_step=1)
    failed = {"status": "escalated", "reason": "apply_failed"}
    calls = [call(1, 7, 1.0, 1.1)]
    assert (
        broken(check([planned], [], evidence_of(planned, calls=calls, outcome=failed)))["lost"] == 1
    )  # escalated, never paged
    twice = evidence_of(planned, calls=calls, outcome=failed, triggers=2)
    assert broken(check([planned], [], twice))["double_paged"] == 1
    once = evidence_of(planned, calls=calls, outcome=failed, triggers=1)
    assert broken(check([planned], [], once)) == CLEAN
    resolved = approved()
    paged = evidence_of(
        resolved,
        calls=[call(1, 7, 1.0, 1.1), call(2, 7, 1.2, 1.3)],
        outcome={"status": "resolved"},
        triggers=1,
    )
    assert broken(check([resolved], [], paged))["double_paged"] == 1


def test_an_outcome_the_decision_does_not_lead_to_is_caught() -> None:
    planned = approved()
    calls = [call(1, 7, 1.0, 1.1), call(2, 7, 1.2, 1.3)]
    rejected_outcome = {"status": "escalated", "reason": "rejected"}
    evidence = evidence_of(planned, calls=calls, outcome=rejected_outcome, triggers=1)
    assert broken(check([planned], [], evidence))["duplicated"] == 1


# --------------------------------------------------------------------------- two owners


def test_a_zombies_step_rerun_in_doubt_by_its_new_owner_is_not_double_applied() -> None:
    # Epoch 1 (pid 7) froze inside step 2; epoch 2 (pid 8) took over, re-ran step 2 in
    # doubt (the target took effect) and ran step 3; pid 7 woke, its call of step 2 ended
    # (the target refused the repeat) and its result was fenced off: claim unfinished.
    planned = approved(steps=3)
    calls = [
        call(1, 7, 1.0, 1.1, epoch=1),
        call(2, 7, 1.2, 30.0, epoch=1, applied=False),
        call(2, 8, 20.0, 20.1, epoch=2, in_doubt=True, applied=True),
        call(3, 8, 20.2, 20.3, epoch=2),
    ]
    claims = [claim(1, 1, finished=True), claim(2, 1, finished=False), claim(2, 2, finished=True),
              claim(3, 2, finished=True)]  # fmt: skip
    evidence = evidence_of(planned, calls=calls, outcome={"status": "resolved"}, claims=claims)
    zombie = Fault("zombie", 1.25, 25.0, 7)
    result = check([planned], [zombie], evidence)
    assert broken(result) == CLEAN
    assert (result.zombies, result.in_doubt_reruns) == (1, 1)
    # The epochs tell the two owners apart even without the fault to explain the overlap.
    assert broken(check([planned], [], evidence)) == CLEAN


def test_a_step_completed_under_two_owners_is_double_applied() -> None:
    planned = approved(steps=3)
    base = [call(1, 7, 1.0, 1.1, epoch=1), call(2, 7, 1.2, 30.0, epoch=1, applied=False)]
    rerun = call(2, 8, 20.0, 20.1, epoch=2, in_doubt=True, applied=True)
    third = call(3, 8, 20.2, 20.3, epoch=2)
    fenced = [claim(1, 1, finished=True), claim(2, 2, finished=True), claim(3, 2, finished=True)]
    # A broken fence: the zombie recorded its result of step 2 after the takeover ...
    claims = [*fenced, claim(2, 1, finished=True)]
    evidence = evidence_of(
        planned, calls=[*base, rerun, third], outcome={"status": "resolved"}, claims=claims
    )
    assert broken(check([planned], [], evidence)) == CLEAN | {"double_applied": 1}
    # ... or went on to step 3, which its new owner had run already (not in doubt).
    late = call(3, 7, 31.0, 31.1, epoch=1, applied=False)
    claims = [*fenced, claim(2, 1, finished=False), claim(3, 1, finished=True)]
    evidence = evidence_of(
        planned, calls=[*base, rerun, third, late], outcome={"status": "resolved"}, claims=claims
    )
    assert broken(check([planned], [], evidence)) == CLEAN | {"double_applied": 1}
    # A re-run that the new owner did not mark in doubt is a second application.
    blind = call(2, 8, 20.0, 20.1, epoch=2, in_doubt=False, applied=True)
    claims = [*fenced, claim(2, 1, finished=False)]
    evidence = evidence_of(
        planned, calls=[*base, blind, third], outcome={"status": "resolved"}, claims=claims
    )
    assert broken(check([planned], [], evidence)) == CLEAN | {"double_applied": 1}


def test_a_target_taking_effect_twice_is_double_applied() -> None:
    planned = approved(steps=1)
    calls = [call(1, 7, 1.0, 1.1, epoch=1), call(1, 8, 5.0, 5.1, epoch=2, in_doubt=True,
                                                   applied=True)]  # fmt: skip
    claims = [claim(1, 1, finished=False), claim(1, 2, finished=True)]
    evidence = evidence_of(planned, calls=calls, outcome={"status": "resolved"}, claims=claims)
    assert broken(check([planned], [], evidence)) == CLEAN | {"double_applied": 1}


def test_a_killed_owners_step_rerun_in_doubt_is_counted_apart() -> None:
    planned = approved(steps=1)
    calls = [call(1, 7, 1.0, None, epoch=1), call(1, 8, 5.0, 5.1, epoch=2, in_doubt=True)]
    claims = [claim(1, 1, finished=False), claim(1, 2, finished=True)]
    evidence = evidence_of(planned, calls=calls, outcome={"status": "resolved"}, claims=claims)
    result = check([planned], [Fault("kill", 1.05, 1.05, 7)], evidence)
    assert broken(result) == CLEAN and result.in_doubt_reruns == 1
