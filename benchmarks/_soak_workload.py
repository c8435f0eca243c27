"""The chaos soak's workload: the incident graph every soak process runs, and the incidents
the driver sends through it.

- :func:`chaos_graph`: :class:`~durable_ir.IncidentGraphBuilder` with counting parts — a
  confident analyzer whose plan has as many steps as the alert's ``chaos_steps`` label says,
  an executor (:class:`RecordingExecutor`) that traces every apply and rollback (with its
  ownership epoch and whether it ran in doubt) to a file of its process and acts on a target
  that deduplicates by idempotency key, failing the step the alert's ``chaos_fail_step``
  label names, and that the driver can hold inside a step to freeze its process — and the real
  :class:`~durable_ir.integrations.pagerduty.PagerDutyNotifier`, paging only on escalation;
- :func:`make_plan`: what happens to each incident, drawn from a seeded RNG.

Example:
    >>> plan = make_plan(200, seed=1, run="t", expire_window=(1.0, 4.0))
    >>> sorted({p.fate for p in plan}), plan[0].incident_id
    (['approve', 'expire', 'reject'], 'chaos-t-00000')
    >>> plan == make_plan(200, seed=1, run="t", expire_window=(1.0, 4.0))
    True
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from _common import OneEvidenceGatherer

from durable_ir import (
    AllowList,
    IncidentGraphBuilder,
    StepAction,
    StepContext,
    StepResult,
    Verification,
    VerificationContext,
    open_runtime,
)
from durable_ir.integrations.pagerduty import PagerDutyNotifier
from durable_ir.rca import Hypothesis, SuggestedAction
from durable_ir.rca.analysis import AnalysisRequest

__all__ = [
    "CRASH_LOOP",
    "GRAPH_NAME",
    "PlannedIncident",
    "RecordingExecutor",
    "chaos_graph",
    "make_plan",
    "runtime_options",
]

GRAPH_NAME = "chaos-soak"
ROUTING_KEY = "chaos-soak-routing-key-000000000"
"""A PagerDuty integration key has 32 characters; the local server checks."""
STEPS_LABEL = "chaos_steps"
FAIL_STEP_LABEL = "chaos_fail_step"
SERVICES = ("checkout", "payments", "search", "inventory", "auth", "gateway")
SEVERITIES = ("P0", "P1", "P2", "P3")
ACTIONS = ("scale", "restart", "drain_node")
"""Step k of a plan runs ``ACTIONS[(k - 1) % 3]``; ``scale`` and ``drain_node`` have a
rollback, ``restart`` has none."""
ALLOW = AllowList({"scale": "low", "restart": "low", "drain_node": "low", "uncordon": "low"})
CRASH_LOOP = "crash_loop"
"""The escalation reason of a run recovery gave up on (after ``max_run_attempts``)."""
DecisionKind = Literal["approve", "reject"]
Fate = Literal["approve", "reject", "expire"]
HOLD_AT_MOST_S = 300.0
"""How long a step waits for the driver to let it go (a bound for a driver that died)."""


class PlannedAnalyzer:
    """A confident root cause whose plan has as many steps as the alert's ``chaos_steps``
    label says (1–3), on the alert's service."""

    async def analyze(self, request: AnalysisRequest) -> Hypothesis:
        labels = request.alert.get("labels") or {}
        steps = int(labels.get(STEPS_LABEL, "1"))
        service = str(request.alert.get("service") or "checkout")
        return Hypothesis(
            root_cause=f"deploy v42 of {service} broke its clients",
            fault="bad_deploy",
            service=service,
            confidence=0.9,
            cited_evidence=["ev-1"],
            remediation=[
                SuggestedAction(action=ACTIONS[k % len(ACTIONS)], target=service)
                for k in range(steps)
            ],
        )


def _undo_scale(step: StepAction) -> StepAction:
    return StepAction(action="scale", target=step.target, parameters={"replicas": 2})


def _undo_drain(step: StepAction) -> StepAction:
    return StepAction(action="uncordon", target=step.target)


ROLLBACKS = {"scale": _undo_scale, "drain_node": _undo_drain}


def has_rollback(number: int) -> bool:
    """Whether plan step ``number`` (1-based) has a rollback step."""
    return ACTIONS[(number - 1) % len(ACTIONS)] in ROLLBACKS


class RecordingExecutor:
    """Executor and verifier whose every apply and rollback leaves a trace: a line when the
    call starts and one when it ends (its idempotency key, phase, step number, process id,
    ownership epoch, whether it ran in doubt, and time), appended to this process's file with
    ``O_APPEND`` — so the trace survives SIGKILL, and calls from every process can be counted
    afterwards. An apply takes ``step_seconds`` (a kill can land inside it); step
    ``chaos_fail_step`` of the alert fails. The service is healthy after every plan that was
    applied in full.

    The **target** the steps act on deduplicates by idempotency key, as a remediation API
    that takes one does: a step's effect is a file named after its key in ``effects_dir``,
    created with ``O_CREAT | O_EXCL`` (atomic across processes, kept through SIGKILL), so
    only the first call of a key takes effect; the end line records whether this call did
    (``applied``). An in-doubt re-run of a step whose first run had already taken effect is
    therefore refused by the target, not applied twice.

    ``hold_dir``: while ``hold-<pid>`` exists there, a step starting in process ``pid``
    appends its key and epoch to ``held-<pid>`` and waits (before taking effect) until the
    file is gone — so the chaos driver can freeze the process inside a step (a zombie).
    """

    def __init__(
        self,
        calls_file: Path,
        step_seconds: float,
        effects_dir: Path | None = None,
        hold_dir: Path | None = None,
    ) -> None:
        self.calls_file = calls_file
        self.step_seconds = step_seconds
        self.effects_dir = effects_dir
        self.hold_dir = hold_dir
        self._fd: int | None = None

    def _write(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            self._fd = os.open(self.calls_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(self._fd, (json.dumps(record) + "\n").encode())

    async def _hold_if_asked(self, trace: dict[str, Any]) -> None:
        """Wait inside the step while the driver's ``hold-<pid>`` file exists (bounded)."""
        if self.hold_dir is None:
            return
        hold = self.hold_dir / f"hold-{os.getpid()}"
        if not hold.exists():
            return
        held = os.open(
            self.hold_dir / f"held-{os.getpid()}", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
        )
        try:
            os.write(held, (json.dumps({**trace, "t": time.time()}) + "\n").encode())
        finally:
            os.close(held)
        deadline = time.monotonic() + HOLD_AT_MOST_S
        while True:  # bounded: a driver that died never lets go
            if not hold.exists() or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)

    def _take_effect(self, key: str, epoch: int | None) -> bool:
        """The target: apply ``key`` unless it was applied already; whether it was now."""
        if self.effects_dir is None:
            return True
        name = key.replace("/", "__")
        try:
            fd = os.open(self.effects_dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, json.dumps({"pid": os.getpid(), "epoch": epoch}).encode())
        finally:
            os.close(fd)
        return True

    async def _run(self, step: StepAction, context: StepContext) -> StepResult:
        epoch = getattr(context, "epoch", None)
        trace = {
            "key": context.idempotency_key,
            "incident": context.incident_id,
            "number": context.number,
            "phase": context.phase,
            "action": step.action,
            "pid": os.getpid(),
            "epoch": epoch,
            "in_doubt": bool(getattr(context, "in_doubt", False)),
        }
        self._write({**trace, "event": "start", "t": time.time()})
        await self._hold_if_asked(trace)
        await asyncio.sleep(self.step_seconds)
        labels = context.alert.get("labels") or {}
        failing = context.phase == "apply" and context.number == int(
            labels.get(FAIL_STEP_LABEL, "0")
        )
        applied = False if failing else self._take_effect(context.idempotency_key, epoch)
        self._write({**trace, "event": "end", "ok": not failing, "applied": applied,
                     "t": time.time()})  # fmt: skip
        if failing:
            return StepResult(False, f"{step.action} {step.target}: the API said no")
        if not applied:
            return StepResult(True, f"{step.action} {step.target}: already applied under this key")
        return StepResult(True, f"{step.action} {step.target} done")

    async def dry_run(self, step: StepAction, context: StepContext) -> StepResult:
        return StepResult(True, f"would {step.action} {step.target}")

    async def apply(self, step: StepAction, context: StepContext) -> StepResult:
        return await self._run(step, context)

    async def rollback(self, step: StepAction, context: StepContext) -> StepResult:
        return await self._run(step, context)

    async def verify(self, context: VerificationContext) -> Verification:
        return Verification(True, "healthy")


def chaos_graph(
    pagerduty_url: str,
    calls_file: Path,
    step_seconds: float,
    effects_dir: Path | None = None,
    hold_dir: Path | None = None,
) -> Any:
    """The soak's incident graph (uncompiled): the builder with the counting parts (the
    executor's target in ``effects_dir``, holds asked for in ``hold_dir``: see
    :class:`RecordingExecutor`) and the real PagerDuty notifier on the local server, paging
    only on escalation."""
    executor = RecordingExecutor(calls_file, step_seconds, effects_dir, hold_dir)
    return IncidentGraphBuilder(
        gatherer=OneEvidenceGatherer(),
        analyzer=PlannedAnalyzer(),
        executor=executor,
        verifier=executor,
        allow_list=ALLOW,
        rollbacks=ROLLBACKS,
        notifiers=[PagerDutyNotifier(ROUTING_KEY, base_url=pagerduty_url, page_on_open=())],
    ).build()


def runtime_options(lease_ttl: float) -> dict[str, Any]:
    """Options for ``open_runtime`` in every soak process: a short lock wait, and short
    leases where this version of the runtime has them (so a killed worker's runs are taken
    over within seconds)."""
    options: dict[str, Any] = {"lock_timeout": 10.0}
    if "lease_ttl" in inspect.signature(open_runtime).parameters:
        options["lease_ttl"] = lease_ttl
    return options


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class PlannedIncident:
    """What the driver does with one incident, drawn from the seeded RNG up front.

    ``fate`` is the decision sent (``expire``: none, the short window runs out); ``racy``
    incidents get a window about as long as the decision's delay, so the decision races the
    SLA monitor; ``contested`` ones get the opposite decision too, at the same moment.
    """

    number: int
    incident_id: str
    severity: str
    service: str
    steps: int
    fail_step: int
    fate: Fate
    window_s: float
    delay_s: float
    mode: Literal["decide", "record_apply"]
    racy: bool
    contested: bool

    def alert(self, run: str) -> dict[str, Any]:
        """The alert, in the generic JSON shape; its labels make its fingerprint unique."""
        return {
            "name": "ChaosSoak",
            "service": self.service,
            "severity": self.severity,
            "fired_at": datetime.now(UTC).isoformat(),
            "description": f"chaos soak incident {self.number}",
            "labels": {
                "chaos_run": run,
                "chaos_incident": str(self.number),
                STEPS_LABEL: str(self.steps),
                FAIL_STEP_LABEL: str(self.fail_step),
            },
        }


def make_plan(
    count: int, seed: int, run: str, *, expire_window: tuple[float, float]
) -> list[PlannedIncident]:
    """``count`` incidents: about half approved (some of whose plans fail a step), a quarter
    rejected, a quarter left to expire; a tenth of the decided ones race their deadline, a
    tenth get two opposite decisions."""
    rng = random.Random(seed)
    plan = []
    for number in range(count):
        fate: Fate = rng.choices(("approve", "reject", "expire"), weights=(50, 25, 25))[0]
        steps = rng.randint(1, 3)
        fail_step = rng.randint(1, steps) if fate == "approve" and rng.random() < 0.15 else 0
        delay = rng.uniform(0.0, 1.5)
        racy = fate != "expire" and rng.random() < 0.1
        if fate == "expire":
            window = rng.uniform(*expire_window)
        elif racy:
            window = delay + rng.uniform(-0.5, 0.5) + 1.0
        else:
            window = 90.0
        plan.append(
            PlannedIncident(
                number=number,
                incident_id=f"chaos-{run}-{number:05d}",
                severity=rng.choice(SEVERITIES),
                service=rng.choice(SERVICES),
                steps=steps,
                fail_step=fail_step,
                fate=fate,
                window_s=round(max(window, 0.5), 2),
                delay_s=round(delay, 2),
                mode=rng.choice(("decide", "record_apply")),
                racy=racy,
                contested=fate != "expire" and rng.random() < 0.1,
            )
        )
    return plan
