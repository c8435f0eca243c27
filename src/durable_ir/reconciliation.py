"""Reconcile the approval ledger with a checkpointer: register every approval interrupt that is
pending in the checkpointer but missing from the ledger.

The SLA monitor reads deadlines from the ledger only. An incident that paused before the
ledger existed (or whose rows were lost: a restored backup, a ledger pointed at a new database,
a graph run without a runtime) is invisible to it. :func:`reconcile` walks the checkpointer
through its public API only — ``alist(None)`` to find every thread, ``aget_tuple`` for each
thread's latest root checkpoint — so it works with ``InMemorySaver``, ``AsyncSqliteSaver``,
``AsyncPostgresSaver`` or any other ``BaseCheckpointSaver``.

How a pending interrupt looks in a checkpoint tuple (langgraph 1.2): when a task calls
``interrupt()``, the runner stores a ``("__interrupt__", [Interrupt(value, id)])`` write for the
task against the checkpoint taken *before* the step. A task that is resumed and finishes gets
output writes next to that interrupt write in the same step, so a task's interrupt is pending
only while the task has no output write. An interrupt raised inside a subgraph is also written
for the parent task in the root checkpoint, with the same id, so root checkpoints are enough.

It is a repair pass, not a monitor: ``alist(None)`` deserialises every checkpoint of every
thread, so its cost grows with the whole history.

Example:
    >>> import asyncio
    >>> from datetime import timedelta
    >>> from typing import Any, TypedDict
    >>> from langgraph.graph import END, START, StateGraph
    >>> from durable_ir import SlaPolicy, approval_node, open_runtime, reconcile
    >>> from durable_ir.ledger import MemoryLedger
    >>> class State(TypedDict, total=False):
    ...     plan: Any
    ...     severity: str
    ...     approval: dict
    >>> builder = StateGraph(State)
    >>> _ = builder.add_node("approval", approval_node())
    >>> _ = builder.add_edge(START, "approval")
    >>> _ = builder.add_edge("approval", END)
    >>> async def main():
    ...     async with open_runtime("memory://") as rt:
    ...         await rt.start(builder, {"plan": ["restart api"], "severity": "P0"},
    ...                        incident_id="inc-1")
    ...         empty = MemoryLedger()  # a ledger that never heard of inc-1
    ...         policy = SlaPolicy(windows={"P0": timedelta(minutes=5)})
    ...         found = await reconcile(rt.store.checkpointer, empty, sla=policy)
    ...         again = await reconcile(rt.store.checkpointer, empty, sla=policy)
    ...         row = found[0]
    ...         return row.incident_id, row.status.value, row.deadline_at - row.requested_at, again
    >>> asyncio.run(main())
    ('inc-1', 'pending', datetime.timedelta(seconds=300), [])
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple

from durable_ir.errors import InvalidInput
from durable_ir.ledger import ApprovalLedger
from durable_ir.records import ApprovalRecord, NewApproval
from durable_ir.severity import parse_severity
from durable_ir.sla import SlaPolicy

__all__ = ["PendingInterrupt", "pending_interrupts", "reconcile"]

log = logging.getLogger("durable_ir.reconciliation")

# LangGraph's names for the control writes of a task (langgraph._internal._constants). They are
# part of what the savers persist, so they are stable; tests check them against LangGraph's own.
INTERRUPT_CHANNEL = "__interrupt__"
NULL_TASK_ID = "00000000-0000-0000-0000-000000000000"
CONTROL_CHANNELS = frozenset(
    (INTERRUPT_CHANNEL, "__resume__", "__error__", "__error_source_node__")
)


@dataclass(frozen=True)
class PendingInterrupt:
    """An interrupt that is waiting for an answer in a thread's latest root checkpoint."""

    thread_id: str
    task_id: str
    interrupt_id: str
    value: Any


def pending_interrupts(
    saved: CheckpointTuple, *, thread_id: str | None = None
) -> list[PendingInterrupt]:
    """The interrupts still waiting for an answer in ``saved`` (a thread's latest checkpoint);
    ``thread_id`` defaults to the one in ``saved.config``.

    Follows LangGraph's own reading of a step's writes: a task's ``__interrupt__`` write holds
    the most recent interrupts it raised, and they are pending only while the task has no output
    write (a write to any channel that is not a control channel). Writes of the null task are
    input to the step, not task activity.
    """
    if thread_id is None:
        thread_id = str(saved.config.get("configurable", {}).get("thread_id", ""))
    raised: dict[str, list[Any]] = {}
    finished: set[str] = set()
    for task_id, channel, value in saved.pending_writes or ():
        if task_id == NULL_TASK_ID:
            continue
        if channel == INTERRUPT_CHANNEL:
            items = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
            raised.setdefault(task_id, []).extend(items)
        elif channel not in CONTROL_CHANNELS:
            finished.add(task_id)
    found: list[PendingInterrupt] = []
    seen: set[str] = set()
    for task_id, items in raised.items():
        if task_id in finished:
            continue
        for item in items:
            interrupt_id = getattr(item, "id", None)
            if not isinstance(interrupt_id, str) or interrupt_id in seen:
                continue
            seen.add(interrupt_id)
            value = getattr(item, "value", None)
            found.append(PendingInterrupt(thread_id, task_id, interrupt_id, value))
    return found


class _Malformed(Exception):
    """A durable-ir section that cannot be registered; the message says why."""


def _text(section: Mapping[str, Any], key: str) -> str:
    value = section.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _Malformed(f"{key!r} must be a non-empty string, got {value!r}")
    return value


def _timestamp(section: Mapping[str, Any], key: str) -> datetime:
    raw = _text(section, key)
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise _Malformed(f"{key!r} is not an ISO 8601 timestamp: {raw!r}") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise _Malformed(f"{key!r} has no time zone: {raw!r}")
    return moment.astimezone(UTC)


def _new_approval(pending: PendingInterrupt, sla: SlaPolicy) -> NewApproval | None:
    """The ledger row for ``pending``; ``None`` if it is not a durable-ir request at all;
    ``_Malformed`` if it claims to be one but cannot be registered."""
    value = pending.value
    if not isinstance(value, Mapping) or "durable_ir" not in value:
        return None
    section = value["durable_ir"]
    if not isinstance(section, Mapping):
        raise _Malformed(f"the 'durable_ir' section is not a mapping: {section!r}")
    approval_id = _text(section, "approval_id")
    if approval_id != pending.interrupt_id:
        # The runtime resumes an approval by its interrupt id; a row under another id could
        # never be applied.
        raise _Malformed(
            f"approval_id {approval_id!r} is not the interrupt's id {pending.interrupt_id!r}"
        )
    incident_id = _text(section, "incident_id")
    if incident_id != pending.thread_id:
        raise _Malformed(
            f"incident_id {incident_id!r} is not the thread it is pending in "
            f"({pending.thread_id!r})"
        )
    graph = _text(section, "graph")
    node = _text(section, "node")
    try:
        severity = parse_severity(section.get("severity"))
    except InvalidInput as exc:
        raise _Malformed(str(exc)) from None
    requested_at = _timestamp(section, "requested_at")
    deadline_at = sla.deadline_for(severity, requested_at)
    return NewApproval(
        approval_id=approval_id,
        incident_id=pending.thread_id,
        graph=graph,
        node=node,
        request=dict(value),
        severity=severity,
        requested_at=requested_at,
        deadline_at=deadline_at,
        next_due_at=sla.due_times(requested_at, deadline_at)[0],
    )


async def _thread_ids(checkpointer: BaseCheckpointSaver[Any]) -> list[str]:
    """Every thread the checkpointer holds, in the order ``alist`` first shows it."""
    threads: dict[str, None] = {}
    async for saved in checkpointer.alist(None):
        thread_id = saved.config.get("configurable", {}).get("thread_id")
        if thread_id is not None:
            threads.setdefault(str(thread_id), None)
    return list(threads)


def _latest_root(thread_id: str) -> RunnableConfig:
    # No checkpoint_id: the saver returns the thread's latest checkpoint, with its pending
    # writes. checkpoint_ns "" is the root graph; subgraph interrupts are written there too.
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}


async def reconcile(
    checkpointer: BaseCheckpointSaver[Any],
    ledger: ApprovalLedger,
    *,
    sla: SlaPolicy | None = None,
) -> list[ApprovalRecord]:
    """Register every durable-ir approval that is pending in ``checkpointer`` but missing from
    ``ledger``; return the rows this call registered (see the module doc for an example).

    For each thread, only its latest root checkpoint counts: an interrupt is pending there if
    its task has not finished. A pending interrupt whose value is a durable-ir request
    (:func:`durable_ir.approval.request.build_request`) and whose ``approval_id`` the ledger
    does not hold is registered, insert-if-absent, with:

    - ``incident_id`` the thread id, ``request`` the interrupt's value, ``graph``, ``node``,
      ``severity`` and ``requested_at`` from the request;
    - ``deadline_at`` = ``requested_at`` + ``sla``'s window for the severity (default
      :class:`~durable_ir.sla.SlaPolicy`), computed now, not copied from the request. A
      deadline that has passed already is the SLA monitor's to expire.

    Interrupts of other nodes (values without a ``durable_ir`` section) are skipped. A
    ``durable_ir`` section that cannot be registered (not a mapping, missing or empty fields,
    an unknown severity, a timestamp without a time zone, an ``approval_id`` that is not the
    interrupt's id, an ``incident_id`` that is not the thread) is skipped with a warning on the
    ``durable_ir.reconciliation`` logger; the pass goes on. Errors of the checkpointer or the ledger
    themselves propagate: the pass can be run again, it registers each row once.

    Only ``checkpointer.alist`` and ``checkpointer.aget_tuple`` are called. Subgraphs: an
    approval node inside a subgraph that shares the parent's thread is found through the
    parent's root checkpoint. A graph run on a thread of its own is that thread's incident.

    Limits: the deadline comes from ``sla`` and the request's severity alone, so a node's own
    ``sla=`` policy or a per-incident window override that applied when the approval was asked
    is not reproduced. Interrupts whose pending writes never reached the checkpointer (a crash
    under ``durability="async"``/``"exit"``) are not visible here; recovery re-runs those.
    """
    policy = sla or SlaPolicy()
    registered: list[ApprovalRecord] = []
    threads = await _thread_ids(checkpointer)
    for thread_id in threads:
        saved = await checkpointer.aget_tuple(_latest_root(thread_id))
        if saved is None:  # deleted since it was listed
            continue
        pending = pending_interrupts(saved, thread_id=thread_id)
        registered.extend(await _reconcile_thread(thread_id, pending, ledger, policy))
    log.info(
        "reconcile: %d thread(s) checked, %d approval(s) registered", len(threads), len(registered)
    )
    return registered


async def _reconcile_thread(
    thread_id: str,
    pending: Iterable[PendingInterrupt],
    ledger: ApprovalLedger,
    policy: SlaPolicy,
) -> list[ApprovalRecord]:
    registered: list[ApprovalRecord] = []
    for item in pending:
        try:
            new = _new_approval(item, policy)
        except _Malformed as exc:
            log.warning(
                "reconcile skips interrupt %s of thread %r: its durable-ir request is "
                "malformed: %s",
                item.interrupt_id,
                thread_id,
                exc,
            )
            continue
        if new is None:
            continue
        existing = await ledger.get(new.approval_id)
        if existing is not None:
            if existing.incident_id != thread_id:
                log.warning(
                    "reconcile skips interrupt %s of thread %r: the ledger holds that approval "
                    "for incident %r (a copied thread?)",
                    new.approval_id,
                    thread_id,
                    existing.incident_id,
                )
            continue
        row = await ledger.register(new)
        if row.requested_at != new.requested_at or row.deadline_at != new.deadline_at:
            continue  # the approval node registered it first, just now
        log.info(
            "reconcile registered approval %s of incident %r (%s, deadline %s)",
            row.approval_id,
            thread_id,
            row.severity,
            row.deadline_at.isoformat(),
        )
        registered.append(row)
    return registered
