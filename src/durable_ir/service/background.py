"""Graph runs the service starts after answering: tracked, bounded, drained at shutdown.

Example:
    >>> import asyncio
    >>> async def main():
    ...     runs = BackgroundRuns(limit=2)
    ...     async def work():
    ...         return 42
    ...     task = runs.spawn(work(), name="demo")
    ...     await runs.drain(grace=1.0)
    ...     return task.result(), len(runs)
    >>> asyncio.run(main())
    (42, 0)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["BackgroundRuns"]

log = logging.getLogger("durable_ir.service")

T = TypeVar("T")


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # logged in _guard; retrieved here so asyncio does not warn again


class BackgroundRuns:
    """The tasks that resume and start graphs after a request was answered.

    ``slots`` bounds how many alert intakes run their first graph run at once (each holds a
    database connection for its incident's lock). :meth:`drain` gives the runs in flight
    ``grace`` seconds at shutdown, then cancels them: a decision whose run is cancelled stays
    recorded, and recovery (any replica's SLA monitor loop, or the next start) applies it.
    """

    def __init__(self, limit: int) -> None:
        self.slots = asyncio.Semaphore(limit)
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
        """Run ``coro`` as a tracked task; its failure is logged."""
        task = asyncio.create_task(self._guard(coro, name), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_retrieve)
        return task

    @staticmethod
    async def _guard(coro: Coroutine[Any, Any, T], name: str) -> T:
        try:
            return await coro
        except asyncio.CancelledError:
            log.warning("%s cancelled (recovery finishes what it left)", name)
            raise
        except Exception:
            log.exception("%s failed", name)
            raise

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the runs in flight, then cancel the rest."""
        pending = set(self._tasks)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=grace)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
