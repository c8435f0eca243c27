"""Database faults on PostgreSQL: sessions killed with ``pg_terminate_backend`` and outages
(the database refusing connections while every session of it is ended, as in a restart) in
the middle of incident runs, decisions and SLA sweeps.

What must hold: the pool replaces dead connections by itself; a run cut off either completes
or is finished by ``recover(stalled=True)``, with no finished step applied again and no
decision lost; a decision whose write died is not half-recorded, and a retry wins; the SLA
monitor rides out an outage, says so once, and expires what fell due meanwhile. Faults only
ever touch the test's own database. (One test, of how the monitor logs failures that are not
the database's, runs on ``memory://``.)

The incident lock is a row (an ownership lease with a fencing epoch), not session state: ending
every session while a holder runs the incident leaves the lock held and nothing is logged as
lost; see docs/persistence.md, "Database faults".
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langchain_core.runnables import RunnableConfig

from durable_ir import (
    Approve,
    Conflict,
    FixedClock,
    IncidentGraphBuilder,
    Runtime,
    SlaMonitor,
    SweepReport,
    open_runtime,
)
from support.incident_parts import ALERT, build_incident_graph, lines
from support.outages import Outage, once_reachable, terminate_sessions

STEPS = 3
POOL_TIMEOUT_S = 1.0
"""How long a checkout from the pool waits during an outage before it fails (PoolTimeout):
short, so that the runtime's own calls fail fast while the database is down. The tests' own
reads after an outage do not rely on it: they retry until the pool has reconnected
(:func:`support.outages.once_reachable`), however long a loaded machine makes that."""

Fault = Callable[[], Awaitable[Any]]


@pytest.fixture
def outage(postgres_server: str, postgres_url: str) -> Iterator[Outage]:
    """An :class:`Outage` of the test's database, always over by teardown."""
    fault = Outage(postgres_server, postgres_url)
    try:
        yield fault
    finally:
        fault.end()


def once_before(node_name: str, fault: Fault, when: Callable[[dict[str, Any]], bool]) -> Any:
    """A builder wrapper that runs ``fault`` the first time ``node_name`` starts in a state
    for which ``when`` holds, then runs the node."""
    fired: list[str] = []

    def wrap(node: Any) -> Any:
        async def run(state: dict[str, Any], config: RunnableConfig) -> Any:
            if not fired and when(state):
                fired.append(node_name)
                await fault()
            return await node(state, config)

        return run

    return wrap


def before_step(number: int) -> Callable[[dict[str, Any]], bool]:
    """For ``apply``: true when step ``number`` is next."""
    return lambda state: len(state.get("applied_steps") or []) == number - 1


def graph_with_fault(
    directory: Path,
    node: str,
    fault: Fault,
    when: Callable[[dict[str, Any]], bool] = lambda state: True,
) -> IncidentGraphBuilder:
    return build_incident_graph(directory, step_count=STEPS).wrap(
        node, once_before(node, fault, when)
    )


def applied(directory: Path, incident_id: str) -> list[str]:
    return lines(directory / f"{incident_id}.log")


ALL_STEPS_ONCE = [f"apply {n} scale checkout-{n}" for n in range(1, STEPS + 1)]


def durable_ir_records(
    caplog: pytest.LogCaptureFixture, logger: str = "durable_ir"
) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger or r.name.startswith(logger + ".")]


async def finished_once(rt: Runtime, incident_id: str, directory: Path) -> None:
    """The incident resolved, every step applied once, its one decision applied."""
    done = await rt.get(incident_id)
    assert done.status == "finished", done
    assert done.values["outcome"]["status"] == "resolved"
    assert [r["number"] for r in done.values["applied_steps"]] == list(range(1, STEPS + 1))
    assert applied(directory, incident_id) == ALL_STEPS_ONCE
    (decision,) = await rt.history(incident_id)
    assert decision.decided_by == "alice" and decision.applied_at is not None
    row = await rt.store.ledger.get_incident(incident_id)
    assert row is not None and not row.is_open


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("node", "when"),
    [
        pytest.param("triage", None, id="triage"),
        pytest.param("dry_run", None, id="dry_run"),
        pytest.param("apply", before_step(2), id="apply-step-2"),
        pytest.param("verify", None, id="verify"),
        pytest.param("summarize", None, id="summarize"),
    ],
)
async def test_sessions_killed_at_a_node_boundary_the_run_goes_on(
    postgres_url: str,
    counter_dir: Path,
    caplog: pytest.LogCaptureFixture,
    node: str,
    when: Callable[[dict[str, Any]], bool] | None,
) -> None:
    """Every session of the database ended while a node starts (mid-start for the nodes
    before the approval, mid-decide for those after): the run carries on through the pool's
    new connections and finishes, each step applied once; the incident's lock, a row, is
    not lost with the sessions, so nothing is logged as lost."""
    caplog.set_level(logging.INFO, logger="durable_ir")
    killed: list[int] = []

    async def kill_sessions() -> None:
        killed.append(await asyncio.to_thread(terminate_sessions, postgres_url))

    incident = f"inc-{uuid.uuid4().hex[:8]}"
    builder = graph_with_fault(counter_dir, node, kill_sessions, when or (lambda state: True))
    async with open_runtime(postgres_url, connect_timeout=POOL_TIMEOUT_S) as rt:
        paused = await rt.start(builder.build(), {"alert": ALERT}, incident_id=incident)
        assert paused.status == "awaiting_approval"
        result = await rt.decide(incident, Approve(by="alice"))
        assert result.applied
        assert killed and killed[0] >= 1, "the pool's sessions were ended"
        await finished_once(rt, incident, counter_dir)

    lost = [
        r for r in durable_ir_records(caplog, "durable_ir.locks") if r.levelno >= logging.WARNING
    ]
    assert lost == [], [r.message for r in lost]
    errors = [r for r in durable_ir_records(caplog) if r.levelno >= logging.ERROR]
    assert errors == []


@pytest.mark.postgres
async def test_an_outage_after_the_last_step_is_finished_by_recovery_without_reapplying(
    postgres_url: str, counter_dir: Path, outage: Outage
) -> None:
    """The database goes down as ``verify`` starts: the decide() that resumed the graph fails
    with psycopg's connection error, but the decision is durable (a retry is a Conflict naming
    it); once the database is back, recovery finishes the run and no step runs again."""

    async def go_down() -> None:
        await asyncio.to_thread(outage.begin)

    incident = f"inc-{uuid.uuid4().hex[:8]}"
    builder = graph_with_fault(counter_dir, "verify", go_down)
    async with open_runtime(postgres_url, connect_timeout=POOL_TIMEOUT_S) as rt:
        await rt.start(builder.build(), {"alert": ALERT}, incident_id=incident)
        with pytest.raises(psycopg.OperationalError):
            await rt.decide(incident, Approve(by="alice"))
        assert outage.ended_sessions >= 1
        outage.end()

        assert applied(counter_dir, incident) == ALL_STEPS_ONCE
        (decision,) = await once_reachable(lambda: rt.history(incident))
        assert decision.decided_by == "alice" and decision.status.value == "approved"
        with pytest.raises(Conflict) as retried:
            await rt.decide(incident, Approve(by="alice"))
        assert retried.value.winner is not None
        assert retried.value.winner.approval_id == decision.approval_id
        assert (await rt.get(incident)).status != "finished"

        await rt.recover(stalled=True)
        await finished_once(rt, incident, counter_dir)


@pytest.mark.postgres
async def test_an_outage_as_a_step_starts_runs_that_step_once_after_it(
    postgres_url: str, counter_dir: Path, outage: Outage
) -> None:
    """The database goes down as step 2 starts: its claim cannot be written, so its executor
    never runs (no effect without a claim); recovery then runs step 2 and step 3 — each once,
    and never step 1 again. (A step whose claim was written before the fault and whose result
    was not is in doubt and runs again with the same key: tests/test_zombie.py.)"""

    async def go_down() -> None:
        await asyncio.to_thread(outage.begin)

    incident = f"inc-{uuid.uuid4().hex[:8]}"
    builder = graph_with_fault(counter_dir, "apply", go_down, before_step(2))
    async with open_runtime(postgres_url, connect_timeout=POOL_TIMEOUT_S) as rt:
        await rt.start(builder.build(), {"alert": ALERT}, incident_id=incident)
        with pytest.raises(psycopg.OperationalError):
            await rt.decide(incident, Approve(by="alice"))
        outage.end()
        assert applied(counter_dir, incident) == ALL_STEPS_ONCE[:1]

        await once_reachable(lambda: rt.history(incident))  # the pool has reconnected
        await rt.recover(stalled=True)
        done = await rt.get(incident)
        assert done.status == "finished" and done.values["outcome"]["status"] == "resolved"
        assert applied(counter_dir, incident) == ALL_STEPS_ONCE
        assert [r["number"] for r in done.values["applied_steps"]] == [1, 2, 3]
        (decision,) = await rt.history(incident)
        assert decision.applied_at is not None


SLOW_DECISION_TRIGGER = """
CREATE FUNCTION test_slow_decision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(60);
    RETURN NEW;
END $$;
CREATE TRIGGER test_slow_decision BEFORE UPDATE ON durable_ir_approvals FOR EACH ROW
    WHEN (OLD.status = 'pending' AND NEW.status <> 'pending')
    EXECUTE FUNCTION test_slow_decision();
"""


def sleeping_sessions(url: str) -> int:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event = 'PgSleep'"
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.postgres
async def test_a_decision_whose_connection_dies_mid_write_changes_nothing_and_a_retry_wins(
    postgres_url: str, counter_dir: Path
) -> None:
    """The session writing a decision is ended in the middle of its UPDATE: decide() fails
    with psycopg's error, the approval is still pending and the graph still paused (nothing
    half-written), and deciding again, on the pool's new connections, wins and runs
    remediation once."""
    incident = f"inc-{uuid.uuid4().hex[:8]}"
    async with open_runtime(postgres_url, connect_timeout=POOL_TIMEOUT_S) as rt:
        builder = build_incident_graph(counter_dir, step_count=STEPS)
        await rt.start(builder.build(), {"alert": ALERT}, incident_id=incident)
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(SLOW_DECISION_TRIGGER)

        deciding = asyncio.create_task(rt.decide(incident, Approve(by="alice")))
        for _ in range(500):
            if await asyncio.to_thread(sleeping_sessions, postgres_url):
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the decision's UPDATE never started")
        assert await asyncio.to_thread(terminate_sessions, postgres_url) >= 1
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("DROP TRIGGER test_slow_decision ON durable_ir_approvals")
        with pytest.raises(psycopg.OperationalError):
            await deciding

        waiting = await rt.get(incident)
        assert waiting.status == "awaiting_approval"
        assert waiting.pending_approval is not None
        assert [r.status.value for r in waiting.approvals] == ["pending"]
        assert applied(counter_dir, incident) == []

        result = await rt.decide(incident, Approve(by="alice"))
        assert result.applied
        await finished_once(rt, incident, counter_dir)


class CountingMonitor(SlaMonitor):
    """An SLA monitor that counts its sweeps, started and finished."""

    def __init__(self, runtime: Runtime, **options: Any) -> None:
        super().__init__(runtime, **options)
        self.started = 0
        self.finished = 0

    async def sweep(self, now: datetime | None = None) -> SweepReport:
        self.started += 1
        report = await super().sweep(now)
        self.finished += 1
        return report


async def wait_until(check: Callable[[], Any], what: str, within: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


class FailingMonitor(SlaMonitor):
    """An SLA monitor whose first sweeps raise ``failures``, one each, then work."""

    def __init__(self, runtime: Runtime, failures: list[Exception], **options: Any) -> None:
        super().__init__(runtime, **options)
        self.failures = failures
        self.worked = 0

    async def sweep(self, now: datetime | None = None) -> SweepReport:
        if self.failures:
            raise self.failures.pop(0)
        report = await super().sweep(now)
        self.worked += 1
        return report


async def test_the_monitor_logs_other_failures_once_with_their_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failure that is not the database's (a bug, say): its first occurrence at error level
    with its traceback, a repeat at debug level, a different failure at error level again, and
    one info line once a sweep works."""
    caplog.set_level(logging.DEBUG, logger="durable_ir.sla")
    boom, again, other = RuntimeError("boom"), RuntimeError("boom"), KeyError("graph")
    async with open_runtime("memory://") as rt:
        monitor = FailingMonitor(rt, [boom, again, other], interval=0.01)
        loop = asyncio.create_task(monitor.run())
        try:
            await wait_until(lambda: monitor.worked >= 2, "sweeps that work")
        finally:
            loop.cancel()
            with pytest.raises(asyncio.CancelledError):
                await loop

    records = [r for r in caplog.records if r.name == "durable_ir.sla"]
    failed = [
        (r.levelname, r.exc_info[1] if r.exc_info else None, r.message)
        for r in records
        if r.message.startswith("SLA sweep failed")
    ]
    assert failed == [
        ("ERROR", boom, "SLA sweep failed; the monitor keeps retrying every 0.01s"),
        ("DEBUG", None, "SLA sweep failed again (2 in a row): RuntimeError: boom"),
        ("ERROR", other, "SLA sweep failed; the monitor keeps retrying every 0.01s"),
    ]
    back = [r for r in records if "works again" in r.message]
    assert [(r.levelname, r.message) for r in back] == [
        ("INFO", "SLA sweep works again after 3 failed sweeps")
    ]


@pytest.mark.postgres
async def test_the_sla_monitor_rides_out_killed_sessions_and_an_outage_and_logs_it_once(
    postgres_url: str, counter_dir: Path, outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    """The monitor loop keeps going through killed sessions and through an outage of several
    sweeps: the outage is one error line (no traceback), the repeats are debug lines, one info
    line says the database is back; then the approval that fell due meanwhile is expired."""
    caplog.set_level(logging.DEBUG, logger="durable_ir")
    clock = FixedClock(datetime.now(UTC))
    incident = f"inc-{uuid.uuid4().hex[:8]}"
    async with open_runtime(postgres_url, clock=clock, connect_timeout=POOL_TIMEOUT_S) as rt:
        builder = build_incident_graph(counter_dir, step_count=STEPS)
        paused = await rt.start(builder.build(), {"alert": ALERT}, incident_id=incident)
        assert paused.pending_approval is not None
        monitor = CountingMonitor(rt, interval=0.05)
        loop = asyncio.create_task(monitor.run())
        try:
            await wait_until(lambda: monitor.finished >= 2, "two sweeps")
            assert await asyncio.to_thread(terminate_sessions, postgres_url) >= 1
            swept = monitor.finished
            await wait_until(lambda: monitor.finished >= swept + 3, "sweeps after the kill")

            caplog.clear()
            await asyncio.to_thread(outage.begin)
            failing_from = monitor.started
            await wait_until(lambda: monitor.started >= failing_from + 3, "failed sweeps")
            clock.advance(hours=3)  # past the P1 deadline of two hours, during the outage
            assert not loop.done()
            await asyncio.to_thread(outage.end)

            async def expired() -> bool:
                latest = (await once_reachable(lambda: rt.history(incident)))[-1]
                return latest.status.value == "expired" and latest.applied_at is not None

            deadline = asyncio.get_running_loop().time() + 180  # a bound, not a claim
            while not await expired():
                assert asyncio.get_running_loop().time() < deadline, "never expired"
                await asyncio.sleep(0.02)
            # Let the loop finish the sweep that expired it — its recover() and the line saying
            # the database is back come after the expiry — before stopping it.
            swept = monitor.started
            await wait_until(lambda: monitor.started > swept, "the next sweep")
            assert not loop.done()
        finally:
            loop.cancel()
            with pytest.raises(asyncio.CancelledError):
                await loop

        done = await rt.get(incident)
        assert done.values["outcome"]["status"] == "escalated"
        assert (await rt.history(incident))[-1].decided_by == "system:sla"
        assert applied(counter_dir, incident) == []

    records = durable_ir_records(caplog, "durable_ir.sla")
    errors = [r for r in records if r.levelno >= logging.WARNING]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    (outage_line,) = errors
    assert outage_line.levelno == logging.ERROR
    assert "the database is unreachable" in outage_line.message
    assert "keeps retrying" in outage_line.message
    assert outage_line.exc_info is None and "\n" not in outage_line.message
    repeats = [r for r in records if r.levelno == logging.DEBUG and "failed again" in r.message]
    assert len(repeats) >= 2
    back = [r for r in records if "reachable again" in r.message]
    assert len(back) == 1 and back[0].levelno == logging.INFO
    assert back[0].message == f"database reachable again after {len(repeats) + 1} failed sweeps"


@pytest.mark.postgres
async def test_ending_the_sessions_does_not_free_an_incident_lock(
    postgres_url: str, counter_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every session is ended while the lock's holder still runs the incident: the lock is
    a row with an epoch, not session state, so another runtime still cannot take it (with
    session advisory locks it could, and mutual exclusion was gone); the holder finishes and
    releases it normally."""
    caplog.set_level(logging.INFO, logger="durable_ir")
    incident = f"inc-{uuid.uuid4().hex[:8]}"
    async with (
        open_runtime(postgres_url, connect_timeout=POOL_TIMEOUT_S) as holder,
        open_runtime(postgres_url, connect_timeout=POOL_TIMEOUT_S) as other,
    ):
        observed: dict[str, bool] = {}

        async def kill_then_try_from_the_other_runtime() -> None:
            observed["free_before"] = await other.store.locks.try_acquire(incident)
            await asyncio.to_thread(terminate_sessions, postgres_url)
            observed["free_after"] = await other.store.locks.try_acquire(incident)
            if observed["free_after"]:
                await other.store.locks.release(incident)

        builder = graph_with_fault(
            counter_dir, "apply", kill_then_try_from_the_other_runtime, before_step(2)
        )
        await holder.start(builder.build(), {"alert": ALERT}, incident_id=incident)
        assert (await holder.decide(incident, Approve(by="alice"))).applied
        await finished_once(holder, incident, counter_dir)

    assert observed == {"free_before": False, "free_after": False}
    lost = [
        r for r in durable_ir_records(caplog, "durable_ir.locks") if r.levelno >= logging.WARNING
    ]
    assert lost == [], [r.message for r in lost]


@pytest.mark.postgres
@pytest.mark.parametrize(
    "stalled",
    [
        pytest.param(False, id="recover"),
        pytest.param(True, id="recover-stalled"),
    ],
)
async def test_recovery_elsewhere_never_reruns_a_run_whose_holder_lost_its_lock(
    postgres_url: str, counter_dir: Path, stalled: bool
) -> None:
    """The consequence of a lost lock: while the holder is between steps of a decided run,
    another runtime runs recovery — as its SLA monitor loop does every sweep
    (``recover()``), and as every runtime does at start-up (``recover(stalled=True)``). It
    must not take over a run that is still going."""
    incident = f"inc-{uuid.uuid4().hex[:8]}"
    async with (
        open_runtime(postgres_url, connect_timeout=POOL_TIMEOUT_S) as holder,
        open_runtime(postgres_url, connect_timeout=POOL_TIMEOUT_S) as other,
    ):
        other.register(build_incident_graph(counter_dir, step_count=STEPS).build())

        async def kill_then_recover_elsewhere() -> None:
            await asyncio.to_thread(terminate_sessions, postgres_url)
            await other.recover(stalled=stalled)

        builder = graph_with_fault(
            counter_dir, "apply", kill_then_recover_elsewhere, before_step(2)
        )
        await holder.start(builder.build(), {"alert": ALERT}, incident_id=incident)
        await holder.decide(incident, Approve(by="alice"))
        assert applied(counter_dir, incident) == ALL_STEPS_ONCE
