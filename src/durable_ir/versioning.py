"""Graph versions across deploys: which incidents run on which version, whether a new deploy
can take them over, and the explicit migration that moves paused incidents to another version.

An incident runs on the graph version it paused on (see :mod:`durable_ir.graphs`). During a
rollout the old version stays registered (``runtime.register(old, version=…, default=False)``)
until its incidents have drained; :func:`version_report` shows what is left on each version,
and :func:`migrate` moves paused incidents to a version that can take them over — checked
first (dry run by default), refused when the target cannot see the pause.

Example:
    >>> import asyncio
    >>> from durable_ir import open_runtime
    >>> async def main():
    ...     async with open_runtime("memory://") as rt:
    ...         return await version_report(rt)
    >>> asyncio.run(main())
    []
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from durable_ir.errors import IncidentBusy
from durable_ir.graphs import RegisteredGraph
from durable_ir.ledger.base import MAX_LIST_LIMIT
from durable_ir.records import ApprovalRecord, IncidentRecord
from durable_ir.runtime import Runtime

__all__ = [
    "MigrationItem",
    "MigrationReport",
    "VersionStatus",
    "migrate",
    "takeover_check",
    "version_report",
]

log = logging.getLogger("durable_ir.versioning")


@dataclass(frozen=True)
class VersionStatus:
    """Open incidents on one graph version, and whether this process can run them."""

    graph: str
    graph_version: str | None
    open: int
    awaiting_approval: int
    registered: bool
    default: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return asdict(self)


async def version_report(runtime: Runtime) -> list[VersionStatus]:
    """Open incidents per graph version (from the index: one grouped query), with the
    registered versions that have none listed too."""
    graphs = runtime.graphs
    seen: set[tuple[str, str | None]] = set()
    report: list[VersionStatus] = []
    for count in await runtime.store.ledger.version_census():
        seen.add((count.graph, count.graph_version))
        report.append(
            VersionStatus(
                graph=count.graph,
                graph_version=count.graph_version,
                open=count.open,
                awaiting_approval=count.awaiting_approval,
                registered=graphs.can_run(count.graph, count.graph_version),
                default=count.graph_version == graphs.default_version(count.graph),
            )
        )
    for registered in graphs.all():
        if (registered.name, registered.version) not in seen:
            report.append(
                VersionStatus(
                    registered.name,
                    registered.version,
                    0,
                    0,
                    registered=True,
                    default=registered.version == graphs.default_version(registered.name),
                )
            )
    return sorted(report, key=lambda s: (s.graph, s.graph_version or ""))


@dataclass(frozen=True)
class MigrationItem:
    """One incident a migration looked at: whether it can move (``reason`` says why not) and
    whether it moved."""

    incident_id: str
    graph: str
    from_version: str | None
    to_version: str
    node: str | None
    can_move: bool
    moved: bool = False
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return asdict(self)


@dataclass(frozen=True)
class MigrationReport:
    """What :func:`migrate` found and did."""

    graph: str
    to_version: str
    dry_run: bool
    items: list[MigrationItem] = field(default_factory=list)

    @property
    def refused(self) -> list[MigrationItem]:
        """The incidents that cannot move to ``to_version``."""
        return [i for i in self.items if not i.can_move]

    @property
    def moved(self) -> list[MigrationItem]:
        """The incidents this call moved."""
        return [i for i in self.items if i.moved]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "graph": self.graph,
            "to_version": self.to_version,
            "dry_run": self.dry_run,
            "items": [i.to_dict() for i in self.items],
        }


async def _open_incidents(
    runtime: Runtime, graph: str, versions: Sequence[str | None] | None
) -> list[IncidentRecord]:
    """Up to 1,000 open incidents of ``graph`` per version of ``versions`` (default: every
    version with open incidents), oldest first."""
    ledger = runtime.store.ledger
    if versions is None:
        versions = [c.graph_version for c in await ledger.version_census() if c.graph == graph]
    rows: list[IncidentRecord] = []
    for version in dict.fromkeys(versions):
        rows += await ledger.open_on_version(graph, version, MAX_LIST_LIMIT)
    return rows


async def _why_not(
    runtime: Runtime, row: IncidentRecord, paused: ApprovalRecord | None, target: RegisteredGraph
) -> str | None:
    """Why ``row`` cannot move to ``target``, or ``None`` if it can: it must be paused at an
    approval whose node ``target`` has, as an approval node, and ``target`` must see the pause
    in the stored checkpoint (and, for a Pydantic state, accept the stored values)."""
    if paused is None:
        return "it is not paused at an approval (only paused incidents are migrated)"
    if target.approval_node(paused.node) is None:
        return (
            f"it is paused at node {paused.node!r}, which version {target.version!r} does not "
            "have as an approval node"
        )
    config = runtime.config_for(row.incident_id, graph=target.name, version=target.version)
    try:
        # LangGraph reads the stored values into the target's state schema: a Pydantic state
        # that gained a required field fails here already.
        state = await target.compiled.aget_state(config)
        validate = getattr(target.compiled.builder.state_schema, "model_validate", None)
        if callable(validate):
            validate(dict(state.values) if isinstance(state.values, dict) else state.values)
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        lines = str(exc).strip().splitlines()
        detail = " ".join(lines[:3]) if lines else type(exc).__name__
        return f"its state does not validate against version {target.version!r}: {detail}"
    if paused.is_pending and not any(i.id == paused.approval_id for i in state.interrupts):
        return (
            f"version {target.version!r} cannot see its pause at {paused.node!r} "
            f"(approval {paused.approval_id}) in the stored checkpoint"
        )
    return None


async def migrate(
    runtime: Runtime,
    *,
    graph: str,
    to_version: str | None = None,
    from_versions: Sequence[str | None] | None = None,
    incident_ids: Sequence[str] | None = None,
    dry_run: bool = True,
) -> MigrationReport:
    """Move paused incidents of ``graph`` to ``to_version`` (default: the default version).

    Looks at the open incidents on ``from_versions`` (default: every version but the target;
    ``None`` in the list means incidents recorded before versions were), or only
    ``incident_ids``. Each must be paused at an approval that the target has and can see in
    the stored checkpoint; others are refused with the reason. With ``dry_run`` (the default)
    nothing changes; otherwise each movable incident is moved under its lock, by a
    compare-and-set on its current version, with its pending approval — the decision then
    runs on the target. Up to 1,000 open incidents per version per call (run it again
    for more).

    Raises:
        ConfigurationError: ``graph`` or ``to_version`` is not registered here.
    """
    target = runtime.graphs.get(graph, to_version)
    rows = await _open_incidents(runtime, graph, from_versions)
    if incident_ids is not None:
        wanted = set(incident_ids)
        rows = [r for r in rows if r.incident_id in wanted]
    rows = [r for r in rows if r.graph_version != target.version]
    report = MigrationReport(graph=graph, to_version=target.version, dry_run=dry_run)
    for row in rows:
        history = await runtime.store.ledger.history(row.incident_id)
        paused = next((a for a in reversed(history) if a.applied_at is None), None)
        reason = await _why_not(runtime, row, paused, target)
        item = MigrationItem(
            incident_id=row.incident_id,
            graph=graph,
            from_version=row.graph_version,
            to_version=target.version,
            node=paused.node if paused else None,
            can_move=reason is None,
            reason=reason,
        )
        if reason is None and not dry_run:
            item = await _move(runtime, row, target, item)
        report.items.append(item)
    return report


async def _move(
    runtime: Runtime, row: IncidentRecord, target: RegisteredGraph, item: MigrationItem
) -> MigrationItem:
    try:
        async with runtime.store.locks.hold(row.incident_id, wait=0):
            moved = await runtime.store.ledger.move_to_version(
                row.incident_id, row.graph, row.graph_version, target.version
            )
    except IncidentBusy:
        return _refuse(item, "it is being run by another worker; try again")
    if not moved:
        return _refuse(item, "it closed or moved to another version meanwhile")
    log.info(
        "migrated incident %s of graph %r from version %r to %r",
        row.incident_id,
        row.graph,
        row.graph_version,
        target.version,
    )
    return replace(item, moved=True)


def _refuse(item: MigrationItem, reason: str) -> MigrationItem:
    return replace(item, can_move=False, reason=reason)


async def takeover_check(runtime: Runtime) -> list[MigrationItem]:
    """For a deploy pipeline: every open incident on a graph version that ``runtime`` (set up
    as the new deploy: its graphs registered) would not run, with whether its name's default
    version could take it over by :func:`migrate`. An item with ``can_move`` False is an
    incident the new deploy strands: keep its version registered, or do not deploy."""
    items: list[MigrationItem] = []
    for status in await version_report(runtime):
        if status.registered or status.open == 0:
            continue
        if status.graph not in runtime.graphs:
            rows = await _open_incidents(runtime, status.graph, [status.graph_version])
            items.extend(
                MigrationItem(
                    incident_id=r.incident_id,
                    graph=r.graph,
                    from_version=r.graph_version,
                    to_version="",
                    node=None,
                    can_move=False,
                    reason=f"graph {r.graph!r} is not registered at all",
                )
                for r in rows
            )
            continue
        report = await migrate(
            runtime, graph=status.graph, from_versions=[status.graph_version], dry_run=True
        )
        items.extend(report.items)
    return items
