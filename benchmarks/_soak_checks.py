"""The chaos soak's evidence and the invariants checked on it.

After the drain, with every soak process stopped, :func:`collect_evidence` reads the incident
index, the approval ledger and the job table, every incident's graph state (through
``Runtime.get`` and ``aget_state``) and remediation step claims (``ledger.step_claims``), the
executors' traces and the local PagerDuty server's log. :func:`check` turns that into
:class:`Check` rows, each adding to one headline counter:

- **lost**: an alert without an incident; an acknowledged decision that is not the ledger's
  decision or was never applied; any decided approval never applied (or not the one in the
  graph state); an incident closed without an outcome (never resolved nor escalated); a
  resolved incident with an approved step never applied, or an apply failure whose finished
  steps were not all rolled back; an escalation never paged;
- **duplicated**: a remediation step (apply or rollback) run again by the same owner (one
  ownership epoch) with no fault in between, or two such runs of it at once
  (:func:`excused_replay`: re-running the step a kill, a freeze or a database fault cut off
  is the documented at-least-once window the idempotency key covers — counted in the facts,
  not here); a step recorded twice in the graph state; remediation without an approval or
  beyond the plan; index and graph disagreeing on the outcome, or an outcome the decision
  does not lead to; an incident the driver never asked for;
- **stuck**: an incident still open in the index, or closed while its checkpoint still holds
  work;
- **double_paged**: more than one PagerDuty trigger for an incident's ``dedup_key``, or a
  trigger for an incident that did not escalate;
- **double_applied** (:func:`double_applied`): a remediation step whose executor calls under
  two different owners (ownership epochs) both ran to completion, unless the later owner's
  calls were the documented *in-doubt re-run* — every one of them ``in_doubt`` and the
  earlier epoch's claim in ``durable_ir_step_claims`` never finished (its owner was killed,
  frozen or cut off in the middle of the step); or a step the target took effect for twice.
  In-doubt re-runs are counted apart (``in_doubt_reruns``): the target deduplicates by
  idempotency key, so they are not a second effect.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psycopg
from _local_pagerduty import LocalPagerDuty
from _soak_processes import Fault
from _soak_workload import (
    CRASH_LOOP,
    GRAPH_NAME,
    PlannedIncident,
    chaos_graph,
    has_rollback,
)

from durable_ir import open_runtime
from durable_ir.integrations.pagerduty import dedup_key
from durable_ir.records import StepClaim

__all__ = [
    "Check",
    "Evidence",
    "SoakResult",
    "StepCall",
    "check",
    "collect_evidence",
    "double_applied",
    "excused_replay",
]


@dataclass(frozen=True)
class StepCall:
    """One executor call, from the start and end lines of the traces: ``epoch`` and
    ``in_doubt`` from its ``StepContext``; ``ok`` what it returned and ``applied`` whether
    the target took effect for it (both ``None``: the call never ended)."""

    key: str
    incident: str
    number: int
    phase: str
    pid: int
    started: float
    ended: float | None
    epoch: int | None = None
    in_doubt: bool = False
    applied: bool | None = None
    ok: bool | None = None


@dataclass
class Evidence:
    """What the checks read after the soak: the database, the traces, the PagerDuty log."""

    incidents: dict[str, dict[str, Any]]
    approvals: dict[str, list[dict[str, Any]]]
    jobs: list[dict[str, Any]]
    states: dict[str, dict[str, Any]]
    state_errors: dict[str, str]
    calls: list[StepCall]
    triggers: Counter[str]
    alerts_opened: Counter[str]
    pagerduty_refused: int
    claims: dict[str, list[StepClaim]] = field(default_factory=dict)
    """Each incident's remediation step claims (``ledger.step_claims``)."""


async def collect_evidence(db: str, calls_dir: Path, pagerduty: LocalPagerDuty) -> Evidence:
    """Read everything the checks need, with every soak process stopped."""
    with psycopg.connect(db, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        incidents = {
            r["incident_id"]: r
            for r in conn.execute(
                "SELECT incident_id, status, outcome, started_at, closed_at,"
                " alerts_received, fingerprint FROM durable_ir_incidents"
            ).fetchall()
        }
        approvals: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in conn.execute(
            "SELECT approval_id, incident_id, status, decided_by, applied_at"
            " FROM durable_ir_approvals ORDER BY requested_at"
        ).fetchall():
            approvals[r["incident_id"]].append(r)
        jobs = conn.execute(
            "SELECT job_id, kind, incident_id, tag, payload, attempts, done_at, result"
            " FROM chaos_jobs ORDER BY job_id"
        ).fetchall()
    states, state_errors, claims = await read_states(db, list(incidents))
    return Evidence(
        incidents=incidents,
        approvals=dict(approvals),
        jobs=jobs,
        states=states,
        state_errors=state_errors,
        calls=read_calls(calls_dir),
        triggers=pagerduty.triggers_by_key(),
        alerts_opened=pagerduty.alerts_opened_by_key(),
        pagerduty_refused=pagerduty.refused,
        claims=claims,
    )


async def read_states(
    db: str, incident_ids: list[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, str], dict[str, list[StepClaim]]]:
    """Each incident's graph state and status (``Runtime.get``), the tasks its latest
    checkpoint still holds (``aget_state``), and its step claims (``ledger.step_claims``)."""
    # Only read: nothing runs, so neither the executor nor PagerDuty is ever called.
    graph = chaos_graph("http://127.0.0.1:9", Path(os.devnull), 0.0)
    states: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    claims: dict[str, list[StepClaim]] = {}
    async with open_runtime(db) as runtime:
        registered = runtime.register(graph, name=GRAPH_NAME)
        gate = asyncio.Semaphore(8)

        async def one(incident_id: str) -> None:
            async with gate:
                try:
                    snapshot = await runtime.get(incident_id)
                except Exception as exc:
                    errors[incident_id] = f"{type(exc).__name__}: {exc}"
                    return
                # Work left in the latest checkpoint: tasks not yet run, and tasks whose
                # writes are saved but whose next checkpoint is not (``next`` omits those).
                raw = await registered.compiled.aget_state(
                    runtime.config_for(incident_id, graph=GRAPH_NAME)
                )
                states[incident_id] = {
                    **snapshot.values,
                    "status": snapshot.status,
                    "pending_tasks": tuple(t.name for t in raw.tasks),
                }
                claims[incident_id] = list(await runtime.store.ledger.step_claims(incident_id))

        await asyncio.gather(*(one(i) for i in incident_ids))
    return states, errors, claims


def read_calls(calls_dir: Path) -> list[StepCall]:
    """Every executor call in the traces: a start line, and an end line unless its process
    died first."""
    starts: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    ends: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for path in sorted(calls_dir.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut off by SIGKILL
            target = starts if record.get("event") == "start" else ends
            target[(record["key"], record["pid"])].append(record)
    calls = []
    for (key, pid), started in starts.items():
        finished = sorted(ends.get((key, pid), []), key=lambda r: r["t"])
        for call in sorted(started, key=lambda r: r["t"]):
            end = next((e for e in finished if e["t"] >= call["t"]), None)
            applied = ok = None
            if end is not None:
                finished = [e for e in finished if e["t"] != end["t"]]
                ok = bool(end.get("ok"))
                applied = bool(end.get("applied", ok))
            calls.append(
                StepCall(
                    key,
                    call["incident"],
                    call["number"],
                    call["phase"],
                    pid,
                    call["t"],
                    None if end is None else end["t"],
                    epoch=call.get("epoch"),
                    in_doubt=bool(call.get("in_doubt")),
                    applied=applied,
                    ok=ok,
                )
            )
    return sorted(calls, key=lambda c: c.started)


def count_logged_errors(logs_dir: Path) -> int:
    """ERROR lines the soak's processes logged (database outages are expected to show)."""
    return sum(path.read_text(errors="replace").count(" ERROR ") for path in logs_dir.glob("*.log"))


# --------------------------------------------------------------------------- the checks


@dataclass
class Check:
    """One invariant: how many times it was broken, and which headline counter that adds to."""

    name: str
    counter: Literal["lost", "duplicated", "stuck", "double_paged", "double_applied"]
    failures: list[str] = field(default_factory=list)


@dataclass
class SoakResult:
    """The soak's counts and checks."""

    incidents: int
    kills: int
    pg_faults: int
    checks: list[Check]
    zombies: int = 0
    in_doubt_reruns: int = 0
    """Executor calls that re-ran a step in doubt (``StepContext.in_doubt``)."""
    facts: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    unexpected_exits: list[str] = field(default_factory=list)
    errors_logged: int = 0

    def count(self, counter: str) -> int:
        return sum(len(c.failures) for c in self.checks if c.counter == counter)


def excused_replay(first: StepCall, again: StepCall, faults: Sequence[Fault]) -> bool:
    """Whether ``again`` re-ran ``first``'s step because a fault cut ``first``'s run off: the
    documented at-least-once window of the step in flight, which the idempotency key covers.

    Only a re-run that began after the first call ended (or after its process was killed)
    qualifies; two calls of one step that overlap in time are two runs at once, never excused
    — unless the first caller was frozen (a zombie) when the second began: then the two only
    overlap on the wall clock.
    """
    if any(
        f.kind == "zombie" and f.pid == first.pid and first.started <= f.at <= again.started
        for f in faults
    ):
        return True
    if first.ended is None:
        return any(
            f.kind == "kill" and f.pid == first.pid and first.started <= f.at <= again.started
            for f in faults
        )
    if again.started < first.ended:
        return False
    for fault in faults:
        if fault.kind == "kill":
            if fault.pid == first.pid and first.started <= fault.at <= again.started:
                return True
        elif fault.at <= again.started and fault.until + 5.0 >= first.started:
            return True
    return False


class Invariants:
    """The soak's checks (see the module doc for what each headline counter means), filled
    in from the evidence by :func:`check`."""

    def __init__(self) -> None:
        self.alerts_lost = Check("alert queued, no incident opened", "lost")
        self.acked_lost = Check("acknowledged decision not the ledger's or unapplied", "lost")
        self.unapplied = Check("decided approval not applied, or not in the graph", "lost")
        self.dropped = Check("closed without an outcome (never resolved nor escalated)", "lost")
        self.steps_missing = Check("resolved, but an approved step never ran", "lost")
        self.unpaged = Check("escalated, but PagerDuty never triggered", "lost")
        self.replays = Check("step run again with no fault between, or at once", "duplicated")
        self.state_twice = Check("step recorded twice in the graph state", "duplicated")
        self.unapproved = Check("remediation without approval, or beyond the plan", "duplicated")
        self.two_outcomes = Check(
            "index and graph outcomes differ, or defy the decision", "duplicated"
        )
        self.extra_incidents = Check("incident nobody asked for (second per alert)", "duplicated")
        self.not_closed = Check("still open in the index", "stuck")
        self.not_finished = Check("checkpoint has work left (graph can still run)", "stuck")
        self.paged_twice = Check("more than one PagerDuty trigger for an incident", "double_paged")
        self.paged_wrongly = Check("PagerDuty triggered without an escalation", "double_paged")
        self.applied_twice = Check(
            "step completed under two owners, not an in-doubt re-run", "double_applied"
        )

    def all(self) -> list[Check]:
        """Every check, in the order of the report."""
        return [value for value in vars(self).values() if isinstance(value, Check)]


def check(
    plan: Sequence[PlannedIncident], faults: Sequence[Fault], evidence: Evidence
) -> SoakResult:
    """Every invariant, from the evidence (see the module doc for what each counter means)."""
    checks = Invariants()
    facts: dict[str, Any] = {"faults": [f"{f.kind}: {f.detail}" for f in faults]}
    calls_by_incident: dict[str, list[StepCall]] = defaultdict(list)
    for call in evidence.calls:
        calls_by_incident[call.incident].append(call)
    facts["step re-runs by the same owner after a fault"] = _check_step_calls(
        calls_by_incident, faults, checks
    )
    owners = double_applied(calls_by_incident, evidence.claims)
    checks.applied_twice.failures.extend(owners.failures)
    facts["in-doubt step re-runs by a new owner (same idempotency key)"] = (
        f"{owners.in_doubt_reruns}, {owners.both_completed} of them after a call of the old "
        f"owner's that also ran to its end; the target refused {owners.refused_by_target} "
        "repeated key(s)"
    )
    step_claims = [
        c for claims in evidence.claims.values() for c in claims if not c.key.startswith("notify/")
    ]
    facts["remediation step claims (never finished: owner lost mid-step)"] = (
        f"{len(step_claims)} ({sum(1 for c in step_claims if c.finished_at is None)})"
    )
    zombie_pids = {f.pid for f in faults if f.kind == "zombie"}
    facts["executor calls of frozen workers (ended after the freeze)"] = sum(
        1
        for c in evidence.calls
        if c.pid in zombie_pids
        and any(
            f.kind == "zombie" and f.pid == c.pid and c.started <= f.at and (c.ended or 0) > f.at
            for f in faults
        )
    )
    planned_ids = {p.incident_id for p in plan}
    checks.extra_incidents.failures.extend(sorted(set(evidence.incidents) - planned_ids))
    facts["alert deliveries (with redeliveries)"] = sum(
        job["attempts"] for job in evidence.jobs if job["kind"] == "alert"
    )
    results = [job["result"] or {} for job in evidence.jobs]
    facts["alerts redelivered after their incident closed (refused by id)"] = sum(
        1 for r in results if r.get("refused") == "closed"
    )
    facts["jobs acknowledged by a worker whose run was taken over"] = sum(
        1 for r in results if r.get("fenced")
    )
    facts.update(_check_acknowledged_decisions(evidence, checks))
    outcomes: Counter[str] = Counter()
    winners: Counter[str] = Counter()
    for planned in plan:
        outcome, winner = _check_incident(
            planned, evidence, calls_by_incident.get(planned.incident_id, []), checks
        )
        outcomes[outcome] += 1
        winners[winner] += 1
    facts["outcomes"] = dict(sorted(outcomes.items()))
    facts["winning decisions"] = dict(sorted(winners.items()))
    facts["PagerDuty triggers (alerts opened)"] = (
        f"{sum(evidence.triggers.values())} ({sum(evidence.alerts_opened.values())}); "
        f"{evidence.pagerduty_refused} events refused"
    )
    facts["remediation calls (apply + rollback)"] = len(evidence.calls)
    return SoakResult(
        incidents=len(plan),
        kills=sum(1 for f in faults if f.kind == "kill"),
        pg_faults=sum(1 for f in faults if f.kind not in ("kill", "zombie")),
        checks=checks.all(),
        facts=facts,
        zombies=sum(1 for f in faults if f.kind == "zombie"),
        in_doubt_reruns=owners.in_doubt_reruns,
    )


def _check_step_calls(
    calls_by_incident: Mapping[str, list[StepCall]], faults: Sequence[Fault], checks: Invariants
) -> int:
    """Flag every executor call that repeats an earlier one of the same step by the same
    owner (epoch) without a fault in between; return how many repeats a fault explains.
    Repeats by another owner are :func:`double_applied`'s."""
    excused = 0
    for calls in calls_by_incident.values():
        by_key: dict[str, list[StepCall]] = defaultdict(list)
        for call in calls:
            by_key[call.key].append(call)
        for key, same in by_key.items():
            for first, again in itertools.pairwise(same):
                if None not in (first.epoch, again.epoch) and first.epoch != again.epoch:
                    continue
                if excused_replay(first, again, faults):
                    excused += 1
                else:
                    checks.replays.failures.append(
                        f"{key}: pid {first.pid} at {first.started:.3f}, pid {again.pid} at "
                        f"{again.started:.3f}"
                    )
    return excused


@dataclass
class Owners:
    """What :func:`double_applied` found."""

    failures: list[str] = field(default_factory=list)
    in_doubt_reruns: int = 0
    both_completed: int = 0
    """In-doubt re-runs whose earlier owner's call also ran to its end (a zombie woken up)."""
    refused_by_target: int = 0
    """Successful calls the target did not take effect for (their key had already)."""


def _epoch_order(epoch: int | None) -> int:
    return -1 if epoch is None else epoch


def double_applied(
    calls_by_incident: Mapping[str, Sequence[StepCall]],
    claims: Mapping[str, Sequence[StepClaim]],
) -> Owners:
    """Steps that took effect under more than one owner, from the executors' traces and the
    step claims (``durable_ir_step_claims``).

    For every step (incident, idempotency key), the calls that ran to their end are grouped
    by ownership epoch. Two epochs ``lo < hi`` that both completed a call are a double apply
    unless ``hi``'s calls were all ``in_doubt`` and ``lo``'s claim was never finished: the
    documented in-doubt re-run of the step that was in flight when ``lo`` lost the incident
    (killed, frozen, cut off), which the idempotency key covers — counted in
    ``in_doubt_reruns``, with the calls that ran in doubt after a call that never ended. A
    step the target took effect for twice is a double apply whatever the claims say.

    Example (a zombie's call and its new owner's in-doubt re-run; then a broken fence):
        >>> from dataclasses import replace
        >>> from datetime import UTC, datetime
        >>> key = "i/step-2/apply"
        >>> zombie = StepCall(key, "i", 2, "apply", 7, 1.0, 30.0, epoch=1, applied=False)
        >>> rerun = StepCall(key, "i", 2, "apply", 8, 20.0, 20.1, 2, True, True)
        >>> unfinished = StepClaim("i", key, 1, "w7", datetime.now(UTC))
        >>> found = double_applied({"i": [zombie, rerun]}, {"i": [unfinished]})
        >>> found.failures, found.in_doubt_reruns
        ([], 1)
        >>> finished = replace(unfinished, finished_at=datetime.now(UTC), ok=True)
        >>> len(double_applied({"i": [zombie, rerun]}, {"i": [finished]}).failures)
        1
    """
    found = Owners()
    for incident, calls in calls_by_incident.items():
        claimed: dict[tuple[str, int | None], StepClaim] = {
            (c.key, c.epoch): c for c in claims.get(incident, [])
        }
        by_key: dict[str, list[StepCall]] = defaultdict(list)
        for call in calls:
            by_key[call.key].append(call)
        for key, same in by_key.items():
            doubted = [c for c in same if c.in_doubt]
            found.in_doubt_reruns += len(doubted)
            completed: dict[int | None, list[StepCall]] = defaultdict(list)
            for call in same:
                if call.ended is not None:
                    completed[call.epoch].append(call)
            found.refused_by_target += sum(
                1 for group in completed.values() for c in group if c.ok and not c.applied
            )
            problems = []
            effects = [c for c in same if c.applied]
            if len(effects) > 1:
                problems.append(f"the target took effect {len(effects)} times")
            epochs = sorted(completed, key=_epoch_order)
            for lo, hi in itertools.combinations(epochs, 2):
                claim = claimed.get((key, lo))
                rerun = all(c.in_doubt for c in completed[hi])
                if lo is not None and rerun and claim is not None and claim.finished_at is None:
                    found.both_completed += 1
                    continue
                state = (
                    "no claim" if claim is None
                    else "claim unfinished" if claim.finished_at is None
                    else "claim finished"
                )  # fmt: skip
                problems.append(
                    f"epoch {lo} (pid {completed[lo][0].pid}, {state}) and epoch {hi} (pid "
                    f"{completed[hi][0].pid}, in_doubt {[c.in_doubt for c in completed[hi]]}) "
                    "both completed it"
                )
            if problems:
                found.failures.append(f"{key}: " + "; ".join(problems))
    return found


def _check_acknowledged_decisions(evidence: Evidence, checks: Invariants) -> dict[str, int]:
    """Every decision a worker acknowledged is the ledger's decision, and applied."""
    acked = refused = 0
    for job in evidence.jobs:
        if job["kind"] != "decide" or job["result"] is None:
            continue
        result = job["result"]
        if not result.get("acked"):
            refused += 1
            continue
        acked += 1
        rows = {r["approval_id"]: r for r in evidence.approvals.get(job["incident_id"], [])}
        row = rows.get(result["approval_id"])
        if (
            row is None
            or row["status"] != result["status"]
            or row["decided_by"] != result["by"]
            or row["applied_at"] is None
        ):
            checks.acked_lost.failures.append(f"{job['incident_id']}: {result} vs ledger {row}")
    return {
        "decisions queued": sum(1 for j in evidence.jobs if j["kind"] == "decide"),
        "decisions acknowledged": acked,
        "decisions refused (a conflict: the other one won)": refused,
    }


def _check_incident(
    planned: PlannedIncident, evidence: Evidence, calls: list[StepCall], checks: Invariants
) -> tuple[str, str]:
    """The checks of one incident; returns its outcome and its winning decision, for the
    report."""
    incident_id = planned.incident_id
    row = evidence.incidents.get(incident_id)
    if row is None:
        checks.alerts_lost.failures.append(incident_id)
        return "no incident", "none"
    values = evidence.states.get(incident_id)
    if values is None:
        checks.not_finished.failures.append(
            f"{incident_id}: {evidence.state_errors.get(incident_id, 'no state')}"
        )
        return "unreadable", "none"
    outcome = values.get("outcome") or {}
    status = outcome.get("status")
    reason = (values.get("escalation") or {}).get("reason")
    closed = row["status"] == "closed"
    if closed and status is None:
        checks.dropped.failures.append(
            f"{incident_id}: index says {row['outcome']}; graph stopped before "
            f"{list(values['pending_tasks'])}"
        )
    elif not closed:
        checks.not_closed.failures.append(incident_id)
    elif values["pending_tasks"]:
        checks.not_finished.failures.append(f"{incident_id}: {list(values['pending_tasks'])}")
    if closed and status is not None and row["outcome"] != status:
        checks.two_outcomes.failures.append(
            f"{incident_id}: index {row['outcome']}, graph {status}"
        )

    decided = [r for r in evidence.approvals.get(incident_id, []) if r["status"] != "pending"]
    for r in decided:
        if r["applied_at"] is None:
            checks.unapplied.failures.append(f"{incident_id}: {r['status']} not applied")
    winner = decided[-1]["status"] if decided else None
    in_graph = (values.get("approval") or {}).get("status")
    if winner is not None and in_graph != winner and reason != CRASH_LOOP:
        checks.unapplied.failures.append(f"{incident_id}: ledger {winner}, graph {in_graph}")

    applied = {c.number for c in calls if c.phase == "apply"}
    if winner != "approved" and calls:
        checks.unapproved.failures.append(f"{incident_id}: {len(calls)} calls, {winner}")
    if any(n > (planned.fail_step or planned.steps) for n in applied):
        checks.unapproved.failures.append(f"{incident_id}: applied {sorted(applied)}")
    recorded = Counter(f"apply-{s.get('number')}" for s in values.get("applied_steps") or [])
    recorded.update(f"rollback-{s.get('number')}" for s in values.get("rolled_back") or [])
    twice = sorted(n for n, k in recorded.items() if k > 1)
    if twice:
        checks.state_twice.failures.append(f"{incident_id}: {twice}")
    expected = expected_outcome(planned, winner)
    if status and expected and reason != CRASH_LOOP and (status, reason) != expected:
        checks.two_outcomes.failures.append(
            f"{incident_id}: {status}/{reason}, but {winner} means {expected[0]}/{expected[1]}"
        )
    if status == "resolved" and applied != set(range(1, planned.steps + 1)):
        checks.steps_missing.failures.append(f"{incident_id}: applied {sorted(applied)}")
    rolled_back = {c.number for c in calls if c.phase == "rollback"}
    undo = {n for n in range(1, planned.fail_step) if has_rollback(n)}
    if (status, reason) == ("escalated", "apply_failed") and rolled_back != undo:
        checks.steps_missing.failures.append(
            f"{incident_id}: rolled back {sorted(rolled_back)}, should be {sorted(undo)}"
        )

    key = dedup_key(incident_id)
    triggers = evidence.triggers.get(key, 0)
    if status == "escalated" and triggers == 0:
        checks.unpaged.failures.append(incident_id)
    if triggers > 1:
        checks.paged_twice.failures.append(
            f"{incident_id}: {triggers} triggers ({evidence.alerts_opened.get(key, 0)} alert)"
        )
    if triggers and status != "escalated":
        checks.paged_wrongly.failures.append(f"{incident_id}: {status}, {triggers} triggers")
    label = f"{status} ({reason})" if status == "escalated" else str(status)
    return label, str(winner)


def expected_outcome(planned: PlannedIncident, winner: str | None) -> tuple[str, str | None] | None:
    """The ``(outcome, escalation reason)`` the winning decision leads to (``None``: no
    decision, nothing to compare)."""
    if winner == "approved":
        return ("escalated", "apply_failed") if planned.fail_step else ("resolved", None)
    if winner == "rejected":
        return ("escalated", "rejected")
    if winner == "expired":
        return ("escalated", "expired")
    return None
