"""Retention: delete the checkpoints of incidents that ended long ago, keep the audit record.

A closed incident's checkpoints are only history — every step's state, kept so a run could
resume — and they are most of what the database holds. :func:`prune_closed` deletes them
(``checkpointer.adelete_thread``: every namespace, subgraphs included) for incidents closed at
least ``older_than`` ago, and notes ``pruned_at`` in the incident index. The incident's index
row, its approvals and decisions (who, when, what, why) and its notifications stay: the
ledger remains the audit record (guarantee 8). After pruning, ``Runtime.get`` still answers
from the ledger, with empty state values.

Only closed incidents are touched, each under its lock, oldest first, ``limit`` per call;
run it from a daily job (``durable-ir prune --older-than-days 30``) or a loop.

Example:
    >>> import asyncio
    >>> from datetime import timedelta
    >>> from durable_ir import open_runtime
    >>> async def main():
    ...     async with open_runtime("memory://") as rt:
    ...         return await rt.prune(older_than=timedelta(days=30))
    >>> asyncio.run(main())
    []
"""

from __future__ import annotations

import logging
from datetime import timedelta

from durable_ir.clock import Clock
from durable_ir.errors import IncidentBusy, InvalidInput
from durable_ir.persistence import Store

__all__ = ["prune_closed"]

log = logging.getLogger("durable_ir.retention")


async def prune_closed(
    store: Store, clock: Clock, *, older_than: timedelta, limit: int = 100
) -> list[str]:
    """Delete the checkpoints of up to ``limit`` incidents closed at least ``older_than``
    ago (not pruned before); return their ids, oldest first. See the module docstring."""
    if not isinstance(older_than, timedelta) or older_than < timedelta(0):
        raise InvalidInput("older_than must be a non-negative timedelta")
    cutoff = clock() - older_than
    pruned: list[str] = []
    for row in await store.ledger.prunable_incidents(cutoff, limit):
        try:
            async with store.locks.hold(row.incident_id, wait=0):
                await store.checkpointer.adelete_thread(row.incident_id)
                await store.ledger.mark_pruned(row.incident_id, clock())
        except IncidentBusy:
            continue  # someone is reading or recovering it now: the next pass prunes it
        pruned.append(row.incident_id)
    if pruned:
        log.info("pruned the checkpoints of %d closed incident(s)", len(pruned))
    return pruned
