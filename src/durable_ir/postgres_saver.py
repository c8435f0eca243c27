"""``InlineSerdePostgresSaver``: LangGraph's ``AsyncPostgresSaver`` without the thread hops.

``AsyncPostgresSaver`` serialises every checkpoint's channel values and every task's writes
with ``asyncio.to_thread`` — two trips to a worker thread and back per superstep, and one
more per checkpoint read. A hop costs 40–90 µs of CPU (futures, a thread wake-up, the GIL
handed over twice) while serialising an incident's state with msgpack takes a few µs; and
since serialising walks Python objects under the GIL, the worker thread never runs in
parallel with the event loop anyway. Measured on the incident graph, the hops were 15–20 %
of a worker's CPU (``docs/performance.md``).

This subclass does the same work in place: it writes exactly the rows ``AsyncPostgresSaver``
writes (same statements, same serialised bytes, same tables — a thread written by one is
read by the other), and only ``aput``, ``aput_writes`` and the loading of a checkpoint row
differ, by not leaving the event loop. :func:`durable_ir.open_store` uses it for
``postgresql://`` URLs; it can also stand alone wherever ``AsyncPostgresSaver`` is used.

**Fencing.** When the config of a run carries an ownership epoch (the runtime puts it under
``EPOCH_CONFIG_KEY``), the checkpoint row is written only while that epoch still owns the
incident — the condition folded into the same ``INSERT``, no extra round trip — and
:class:`~durable_ir.errors.OwnershipLost` is raised instead: a worker that was paused and
taken over cannot add a checkpoint after the new owner's. Configs without an epoch (the saver
used on its own) write exactly as ``AsyncPostgresSaver`` does.

A graph state of many megabytes would hold the event loop for its serialisation (a few ms
per MB) instead of a worker thread — where it would also hold the GIL.

Use it wherever ``AsyncPostgresSaver`` is used, with a pool configured the same way::

    pool = AsyncConnectionPool(url, kwargs={"autocommit": True, "row_factory": dict_row,
                                            "prepare_threshold": None})
    saver = InlineSerdePostgresSaver(pool)
    await saver.setup()
    graph = builder.compile(checkpointer=saver)

Example:
    >>> from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    >>> issubclass(InlineSerdePostgresSaver, AsyncPostgresSaver)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from durable_ir.errors import OwnershipLost
from durable_ir.ledger.ownership import EPOCH_CONFIG_KEY, FENCE

try:  # delta channels (beta): their snapshots are stored as blobs with a marker inline
    from langgraph.checkpoint.serde.types import _DeltaSnapshot
except ImportError:  # a langgraph-checkpoint without them: no value is one

    class _DeltaSnapshot:  # type: ignore[no-redef]
        """Stands in for LangGraph's delta-channel snapshot where there is none."""


__all__ = ["InlineSerdePostgresSaver"]

FENCED_UPSERT_CHECKPOINTS_SQL = f"""
    INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id,
                             checkpoint, metadata)
    SELECT %s, %s, %s, %s, %s, %s WHERE {FENCE}
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id)
    DO UPDATE SET
        checkpoint = EXCLUDED.checkpoint,
        metadata = EXCLUDED.metadata
    RETURNING 1 AS written
"""
"""LangGraph's checkpoint upsert, done only while the run's ownership epoch holds (the thread
id is the incident id)."""

_INLINE_TYPES = (str, int, float, bool)
"""Channel values the saver keeps in the checkpoint's own JSON rather than as blobs."""


def _split_channel_values(
    values: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(kept in the checkpoint JSON, stored as blobs)``, split as ``AsyncPostgresSaver``
    splits them: primitives and ``None`` stay inline; everything else becomes a blob; a
    delta channel's snapshot becomes a blob and leaves ``True`` as its marker inline."""
    inline: dict[str, Any] = {}
    blobs: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, _DeltaSnapshot):
            blobs[name] = value
            inline[name] = True
        elif value is None or isinstance(value, _INLINE_TYPES):
            inline[name] = value
        else:
            blobs[name] = value
    return inline, blobs


def _checkpoint_config(thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> RunnableConfig:
    """The config that names one checkpoint."""
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint_id,
        }
    }


class InlineSerdePostgresSaver(AsyncPostgresSaver):
    """``AsyncPostgresSaver`` that serialises and deserialises on the event loop (see the
    module doc). Construct it exactly like ``AsyncPostgresSaver``."""

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store ``checkpoint`` and the blobs of the channels that changed in it."""
        configurable = config["configurable"]
        thread_id = configurable["thread_id"]
        checkpoint_ns = configurable["checkpoint_ns"]
        parent_id = configurable.get("checkpoint_id")
        inline, blobs = _split_channel_values(checkpoint["channel_values"])
        changed = {name: v for name, v in new_versions.items() if name in blobs}
        stored = {**checkpoint, "channel_values": inline}
        row = (
            thread_id,
            checkpoint_ns,
            checkpoint["id"],
            parent_id,
            Jsonb(stored),
            Jsonb(get_serializable_checkpoint_metadata(config, metadata)),
        )
        epoch = configurable.get(EPOCH_CONFIG_KEY)
        async with self._cursor(pipeline=True) as cur:
            if changed:
                await cur.executemany(
                    self.UPSERT_CHECKPOINT_BLOBS_SQL,
                    self._dump_blobs(thread_id, checkpoint_ns, blobs, changed),
                )
            if epoch is None:
                await cur.execute(self.UPSERT_CHECKPOINTS_SQL, row)
            else:
                await cur.execute(FENCED_UPSERT_CHECKPOINTS_SQL, (*row, thread_id, epoch))
                if await cur.fetchone() is None:
                    raise OwnershipLost(str(thread_id), int(epoch), "checkpoint not written")
        return _checkpoint_config(thread_id, checkpoint_ns, checkpoint["id"])

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's ``writes`` against the checkpoint in ``config``. Writes to the
        special channels (errors, interrupts, resumes) replace earlier ones of the same task;
        others are kept first-come."""
        configurable = config["configurable"]
        special = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        query = self.UPSERT_CHECKPOINT_WRITES_SQL if special else self.INSERT_CHECKPOINT_WRITES_SQL
        rows = self._dump_writes(
            configurable["thread_id"],
            configurable["checkpoint_ns"],
            configurable["checkpoint_id"],
            task_id,
            task_path,
            writes,
        )
        async with self._cursor(pipeline=True) as cur:
            await cur.executemany(query, rows)

    async def _load_checkpoint_tuple(self, value: DictRow) -> CheckpointTuple:
        """A checkpoint row as a ``CheckpointTuple``, its blobs and pending writes
        deserialised in place."""
        stored = value["checkpoint"]
        thread_id, checkpoint_ns = value["thread_id"], value["checkpoint_ns"]
        parent_id = value["parent_checkpoint_id"]
        checkpoint = cast(
            Checkpoint,
            {
                **stored,
                "channel_values": {
                    **(stored.get("channel_values") or {}),
                    **self._load_blobs(value["channel_values"]),
                },
            },
        )
        return CheckpointTuple(
            config=_checkpoint_config(thread_id, checkpoint_ns, value["checkpoint_id"]),
            checkpoint=checkpoint,
            metadata=value["metadata"],
            parent_config=(
                _checkpoint_config(thread_id, checkpoint_ns, parent_id) if parent_id else None
            ),
            pending_writes=self._load_writes(value["pending_writes"]),
        )
