"""The kill matrix (``benchmarks/_chaos_matrix.py``): the full incident graph SIGKILLed at
every node boundary and inside apply, rollback and the RCA loop, on every decision path, then
recovered by another process with ``rt.recover(stalled=True)``. Every incident must reach
exactly one terminal state, with its decision applied, no remediation step applied twice (but
for the one a kill cut off after its side effect, re-run with the same idempotency key), no
finished node run again, and PagerDuty paged once per escalation.

No timing is asserted. The last test shows that the harness catches a broken recovery.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from _chaos_matrix import (  # noqa: E402
    GRAPH_NAME,
    NEXT_VERSION_NODE,
    PATHS,
    Journal,
    KillPoint,
    MatrixReport,
    Parking,
    all_kill_points,
    at_rest,
    matrix_builder,
    recover_until_at_rest,
    run_kill_matrix,
)

from durable_ir import Runtime  # noqa: E402
from durable_ir.versioning import migrate  # noqa: E402


def explain(report: MatrixReport) -> str:
    return f"{report.summary_line()}\n{report.table()}"


@pytest.mark.slow
async def test_every_node_boundary_survives_sigkill_and_recovery(
    durable_url: str, tmp_path: Path
) -> None:
    workdir = tmp_path / "matrix"
    report = await run_kill_matrix(durable_url, workdir=workdir)

    assert report.ok, explain(report)
    assert report.errors == [], explain(report)
    assert report.kills == report.incidents == len(report.rows) > 0
    counts = (report.lost, report.duplicated, report.stuck, report.double_paged)
    assert counts == (0, 0, 0, 0), explain(report)
    others = (report.unpaged, report.rerun, report.missing, report.wrong_outcome)
    assert others == (0, 0, 0, 0), explain(report)

    # Every node of the builder was killed before it ran and after it returned, on some path;
    # so were the side effects of apply, rollback and the RCA analysis, an approval request
    # registered but not yet paused on, and — on every path — a decision recorded and never
    # applied, and a run that ended before the index was closed.
    killed = {(r.cell.point.where, r.cell.point.node) for r in report.rows if r.killed}
    nodes = matrix_builder(tmp_path, "probe", Parking()).node_names
    for node in nodes:
        assert {("before", node), ("after", node)} <= killed, node
    for phase in ("rca", "apply", "rollback"):
        assert {("before_effect", phase), ("after_effect", phase)} <= killed, phase
    assert ("registered", "") in killed
    for moment in ("decided", "ended"):
        on = {r.cell.path.name for r in report.rows if r.cell.point.where == moment}
        assert on == {p.name for p in PATHS}, moment
    # Kills between remediation steps and after each one's side effect, on both apply paths.
    for path in ("approve", "apply_failed"):
        hits = {
            (r.cell.point.where, r.cell.point.hit)
            for r in report.rows
            if r.cell.path.name == path and r.cell.point.node == "apply"
        }
        for step in (1, 2, 3):
            assert {("before", step), ("after_effect", step)} <= hits, (path, step)
    endings = {(r.outcome, r.reason) for r in report.rows}
    assert endings == {
        ("resolved", None),
        ("escalated", "rejected"),
        ("escalated", "expired"),
        ("escalated", "apply_failed"),
        ("alert_resolved", "alert_resolved"),
    }

    # The kills really cut runs off: a step killed after its side effect ran twice, with the
    # same idempotency key (the documented re-run), the steps before it once.
    journal = Journal(workdir, "test")
    cut = next(
        r
        for r in report.rows
        if r.cell.path.name == "approve" and r.cell.point == KillPoint("after_effect", "apply", 2)
    )
    calls = [e for e in journal.read(cut.cell.incident_id) if e.kind == "call"]
    applied = [(e.role, e.detail) for e in calls if e.detail.startswith("apply")]
    assert applied == [
        ("child", "apply 1"),
        ("child", "apply 2"),
        ("recovery", "apply 2"),
        ("recovery", "apply 3"),
    ]
    assert len({e.key for e in calls if e.detail == "apply 2"}) == 1


def test_the_matrix_covers_a_node_added_to_the_builder(tmp_path: Path) -> None:
    async def page_owner(state: dict[str, object]) -> dict[str, object]:
        return {}

    builder = matrix_builder(tmp_path, "probe", Parking()).insert_after(
        "triage", "page_owner", page_owner
    )
    points = all_kill_points(builder)
    assert KillPoint("before", "page_owner") in points
    assert KillPoint("after", "page_owner") in points
    assert {p.node for p in points if p.where == "before"} == set(builder.node_names)


async def replay_from_before_apply(rt: Runtime, incident_ids: Sequence[str]) -> None:
    """A broken recovery: it continues each run from a stale checkpoint (the one before the
    first remediation step) instead of the last one, and never touches runs that were not in
    apply."""
    for incident in incident_ids:
        if await at_rest(rt, incident):
            continue
        row = await rt.store.ledger.get_incident(incident)
        version = row.graph_version if row is not None else None
        graph = rt.graphs.get(GRAPH_NAME, version).compiled
        config = rt.config_for(incident, graph=GRAPH_NAME, version=version)
        stale = [s async for s in graph.aget_state_history(config) if "apply" in s.next]
        if not stale:
            continue
        configurable = {**config["configurable"], **stale[-1].config["configurable"]}
        await graph.ainvoke(None, {**config, "configurable": configurable}, durability="sync")


@pytest.mark.slow
async def test_a_broken_recovery_is_caught(tmp_path: Path) -> None:
    points = [KillPoint("after_effect", "apply", 2), KillPoint("after", "escalate", 1)]
    paths = [PATHS[0], PATHS[1]]  # approve (resolved), reject (escalated)
    url = f"sqlite:///{tmp_path / 'incidents.db'}"

    report = await run_kill_matrix(
        url, points=points, paths=paths, recovery=replay_from_before_apply
    )

    assert report.kills == report.incidents == 2, explain(report)
    assert not report.ok
    # The replay applied step 1 again (and re-ran finished nodes); neither incident was
    # recovered through the runtime, so both are still open with their decisions unapplied.
    assert report.duplicated >= 1 and report.rerun >= 1, explain(report)
    assert report.stuck == report.lost == 2, explain(report)
    assert report.missing >= 1, explain(report)  # the rejected one never escalated again

    # The same cells with the real recovery are clean.
    again = f"sqlite:///{tmp_path / 'again.db'}"
    fixed = await run_kill_matrix(again, points=points, paths=paths, recovery=recover_until_at_rest)
    assert fixed.ok, explain(fixed)


async def migrate_then_recover(rt: Runtime, incident_ids: Sequence[str]) -> None:
    """A broken recovery: it moves every paused incident to the next deploy's graph version
    (the default in the recovering process) before recovering, so their decisions run on a
    graph they did not pause on."""
    await migrate(rt, graph=GRAPH_NAME, incident_ids=incident_ids, dry_run=False)
    await recover_until_at_rest(rt, incident_ids)


@pytest.mark.slow
async def test_an_incident_run_on_another_graph_version_is_caught(tmp_path: Path) -> None:
    """The matrix registers the next deploy's graph beside the one incidents start on; an
    incident that runs the next version's inserted node is reported."""
    points = [KillPoint("decided", "")]
    url = f"sqlite:///{tmp_path / 'incidents.db'}"

    report = await run_kill_matrix(
        url, points=points, paths=[PATHS[0]], recovery=migrate_then_recover
    )

    assert report.kills == report.incidents == 1, explain(report)
    assert not report.ok
    assert any(NEXT_VERSION_NODE in error for error in report.errors), explain(report)
