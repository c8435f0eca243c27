"""Per-incident locks that hold across processes.

Only the holder of an incident's lock runs its graph: starting it, resuming it with a
decision, or recovering it. LangGraph itself locks nothing, and two concurrent resumes of one
thread would both run the downstream nodes.

- :class:`LeaseLocks`: the stores' lock (PostgreSQL, SQLite, memory): an ownership lease in
  the database with a fencing epoch, renewed by a heartbeat. It holds no session state, so it
  works behind transaction poolers; a holder that stops renewing (dead, paused, partitioned)
  is taken over after ``ttl`` seconds, and the epoch refuses its later writes.
- :class:`ProcessLocks`: within one process only, without epochs (for tests and custom
  stores).

Example:
    >>> import asyncio
    >>> async def demo():
    ...     locks = ProcessLocks()
    ...     async with locks.hold("inc-1"):
    ...         return await locks.try_acquire("inc-1")
    >>> asyncio.run(demo())
    False
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from typing import ClassVar

from durable_ir.clock import Clock, system_clock
from durable_ir.errors import IncidentBusy
from durable_ir.leases import owner_is_gone, worker_id
from durable_ir.ledger import ApprovalLedger
from durable_ir.records import OwnershipTake

__all__ = ["IncidentLocks", "LeaseLocks", "ProcessLocks", "Taking"]

log = logging.getLogger("durable_ir.locks")

_POLL_START_S = 0.005
_POLL_MAX_S = 0.1


class IncidentLocks(ABC):
    """Mutual exclusion per incident id."""

    @abstractmethod
    async def try_acquire(self, incident_id: str) -> bool:
        """Take the lock if it is free; never waits."""

    @abstractmethod
    async def release(self, incident_id: str) -> None:
        """Give back a lock this object holds."""

    def bind(self, *, owner: str, ttl: float, clock: Clock) -> None:  # noqa: B027 - optional
        """Hold locks as ``owner`` (a runtime's worker id), for ``ttl`` seconds between
        heartbeats, timed by ``clock``; locks without leases ignore it."""

    def epoch(self, incident_id: str) -> int | None:
        """The fencing epoch of this object's hold on ``incident_id`` (``None``: not held, or
        locks without epochs)."""
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook, default no-op
        """Release resources held for locking."""

    @asynccontextmanager
    async def hold(
        self, incident_id: str, *, wait: float | None = None
    ) -> AsyncIterator[int | None]:
        """Hold the lock for the ``async with`` block, waiting up to ``wait`` seconds
        (``None``: forever; ``0``: not at all), and give its fencing epoch (``None`` for locks
        without one). Raises ``IncidentBusy`` on time-out."""
        await self._acquire(incident_id, wait)
        try:
            yield self.epoch(incident_id)
        finally:
            await self.release(incident_id)

    @asynccontextmanager
    async def taking(self, incident_id: str, ledger: ApprovalLedger) -> AsyncIterator[Taking]:
        """Hold the lock for the ``async with`` block, taken if possible by a write to
        ``ledger`` that goes anyway (opening the incident, recording a decision): one round
        trip and one commit fewer than :meth:`hold` and then that write.

        Pass :attr:`Taking.request` to the ledger method that takes
        (:meth:`~durable_ir.ledger.base.ApprovalLedger.open_and_take`,
        :meth:`~durable_ir.ledger.base.ApprovalLedger.decide_and_take`), hand what it returned
        to :meth:`Taking.took`, then :meth:`Taking.acquire` — at once if the write took the
        incident, else as :meth:`hold` does. ``request`` is ``None`` (nothing to fold) for
        locks that are not leases in ``ledger``, and while this process holds the incident.
        """
        taking = Taking(self, incident_id, self._reserve(incident_id, ledger))
        try:
            yield taking
        finally:
            if taking.request is not None:
                self._adopt(incident_id, None)
            if taking.held:
                await self.release(incident_id)

    async def _acquire(self, incident_id: str, wait: float | None) -> None:
        deadline = None if wait is None else time.monotonic() + wait
        pause = _POLL_START_S
        while not await self.try_acquire(incident_id):
            if deadline is not None and time.monotonic() >= deadline:
                raise IncidentBusy(f"incident {incident_id!r} is being run by another worker")
            await asyncio.sleep(pause)
            pause = min(pause * 2, _POLL_MAX_S)

    def _reserve(self, incident_id: str, ledger: ApprovalLedger) -> OwnershipTake | None:
        """A take of ``incident_id`` to fold into a write to ``ledger`` (see :meth:`taking`);
        locks that cannot be taken that way have none."""
        return None

    def _adopt(self, incident_id: str, epoch: int | None) -> None:  # noqa: B027 - optional
        """What the folded take of a :meth:`_reserve` request returned (``None``: not taken)."""


class Taking:
    """An incident's lock being taken inside another write (see :meth:`IncidentLocks.taking`)."""

    def __init__(
        self, locks: IncidentLocks, incident_id: str, request: OwnershipTake | None
    ) -> None:
        self._locks = locks
        self.incident_id = incident_id
        self.request = request
        """The take to fold into the write, or ``None``: nothing to fold."""
        self.held = False
        self.epoch: int | None = None

    def took(self, epoch: int | None) -> None:
        """Hand over the epoch the folded write took (``None``: it did not take it)."""
        if self.request is None:
            return
        self.request = None
        self._locks._adopt(self.incident_id, epoch)
        if epoch is not None:
            self.held, self.epoch = True, epoch

    async def acquire(self, *, wait: float | None = None) -> int | None:
        """Hold the lock for the rest of the block: at once if the folded write took it, else
        waiting up to ``wait`` seconds as :meth:`IncidentLocks.hold` (``IncidentBusy`` on
        time-out). Returns the fencing epoch (``None`` for locks without one)."""
        if self.held:
            return self.epoch
        self.took(None)
        await self._locks._acquire(self.incident_id, wait)
        self.held = True
        self.epoch = self._locks.epoch(self.incident_id)
        return self.epoch


class ProcessLocks(IncidentLocks):
    """Locks shared by every object in this process that uses the same ``scope``."""

    _held: ClassVar[set[tuple[str, str]]] = set()

    def __init__(self, scope: str = "memory") -> None:
        self._scope = scope

    async def try_acquire(self, incident_id: str) -> bool:
        key = (self._scope, incident_id)
        if key in self._held:
            return False
        self._held.add(key)
        return True

    async def release(self, incident_id: str) -> None:
        self._held.discard((self._scope, incident_id))


class LeaseLocks(IncidentLocks):
    """Ownership leases in the database, each with a fencing epoch: the lock of the
    PostgreSQL, SQLite and memory stores.

    Taking an incident is one conditional write (:meth:`ApprovalLedger.take_ownership`) that
    bumps its epoch; a heartbeat renews this worker's holds every third of ``ttl``. A holder
    that stops renewing — dead, or paused (a long GC pause, a frozen VM, a partition) — loses
    its hold ``ttl`` seconds later, or at once if it was a process on this host that no longer
    exists; the next taker gets a higher epoch, and every write the old holder still tries
    names its epoch and is refused (:class:`~durable_ir.errors.OwnershipLost`).

    Nothing here is session state: it works the same directly, behind PgBouncer in session
    mode and in transaction mode, and across a PostgreSQL restart.
    """

    def __init__(
        self,
        ledger: ApprovalLedger,
        *,
        owner: str | None = None,
        ttl: float = 30.0,
        clock: Clock = system_clock,
    ) -> None:
        self._ledger = ledger
        self.owner = owner or worker_id()
        self.ttl = ttl
        self.clock = clock
        self._held: dict[str, int] = {}
        self._taking: set[str] = set()
        self._lost: set[str] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._failing = False
        self._bound = False

    def bind(self, *, owner: str, ttl: float, clock: Clock) -> None:
        """Take the first runtime's worker id, lease ttl and clock; later runtimes on the same
        store share them (one owner per store)."""
        if self._bound:
            return
        self._bound = True
        self.owner, self.ttl, self.clock = owner, ttl, clock

    def epoch(self, incident_id: str) -> int | None:
        return self._held.get(incident_id)

    async def try_acquire(self, incident_id: str) -> bool:
        if incident_id in self._held or incident_id in self._taking:
            return False
        self._taking.add(incident_id)
        try:
            # A hold in this worker's name that it does not hold (a release that failed, in
            # an outage) is stale: take it back at once.
            epoch = await self._take(incident_id, self.owner)
            if epoch is None:
                holder = await self._ledger.get_ownership(incident_id)
                if holder is not None and holder.owner and owner_is_gone(holder.owner):
                    epoch = await self._take(incident_id, holder.owner)
                    if epoch is not None:
                        log.warning(
                            "took incident %s over from %s, a process on this host that no "
                            "longer exists (epoch %d)",
                            incident_id,
                            holder.owner,
                            epoch,
                        )
            if epoch is None:
                return False
            self._held[incident_id] = epoch
            self._lost.discard(incident_id)
            self._start_heartbeat()
            return True
        finally:
            self._taking.discard(incident_id)

    def _reserve(self, incident_id: str, ledger: ApprovalLedger) -> OwnershipTake | None:
        if ledger is not self._ledger or incident_id in self._held or incident_id in self._taking:
            return None
        self._taking.add(incident_id)
        now = self.clock()
        # As try_acquire: a stale hold in this worker's own name is taken back.
        return OwnershipTake(self.owner, now, now + timedelta(seconds=self.ttl), self.owner)

    def _adopt(self, incident_id: str, epoch: int | None) -> None:
        self._taking.discard(incident_id)
        if epoch is not None:
            self._held[incident_id] = epoch
            self._lost.discard(incident_id)
            self._start_heartbeat()

    async def _take(self, incident_id: str, steal_from: str | None) -> int | None:
        now = self.clock()
        return await self._ledger.take_ownership(
            incident_id,
            self.owner,
            now,
            now + timedelta(seconds=self.ttl),
            steal_from=steal_from,
        )

    async def release(self, incident_id: str) -> None:
        """Give the incident back. If another worker took it over meanwhile, say so (once, as
        an error): whatever this worker still tried to write after that was refused."""
        epoch = self._held.pop(incident_id, None)
        if epoch is None:
            return
        try:
            released = await self._ledger.release_ownership(incident_id, self.owner, epoch)
        except Exception as exc:  # the hold expires by itself
            log.warning(
                "could not release incident %s (epoch %d; it expires in at most %.0fs): %s",
                incident_id,
                epoch,
                self.ttl,
                exc,
            )
            return
        if not released and incident_id not in self._lost:
            self._report_lost(incident_id, epoch)
        self._lost.discard(incident_id)

    def _report_lost(self, incident_id: str, epoch: int) -> None:
        self._lost.add(incident_id)
        log.error(
            "incident %s was taken over by another worker while this one held it (epoch %d): "
            "this worker's hold lapsed (paused or cut off for more than %.0fs); its further "
            "writes are refused",
            incident_id,
            epoch,
            self.ttl,
        )

    def _start_heartbeat(self) -> None:
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.get_running_loop().create_task(
                self._beat(), name="durable-ir ownership heartbeat"
            )

    async def _beat(self) -> None:
        interval = self.ttl / 3
        while self._held:
            await asyncio.sleep(interval)
            held = dict(self._held)
            if not held:
                return
            try:
                kept = await self._ledger.renew_ownership(
                    list(held), self.owner, self.clock() + timedelta(seconds=self.ttl)
                )
            except Exception as exc:
                if not self._failing:
                    log.error(
                        "ownership heartbeat failed (retrying every %.1fs): %s", interval, exc
                    )
                self._failing = True
                continue
            if self._failing:
                log.info("ownership heartbeat works again")
            self._failing = False
            for incident_id, epoch in held.items():
                lapsed = incident_id not in kept and incident_id not in self._lost
                if lapsed and self._held.get(incident_id) == epoch:
                    self._report_lost(incident_id, epoch)

    async def close(self) -> None:
        """Stop the heartbeat and give back what is still held."""
        task, self._heartbeat = self._heartbeat, None
        if task is not None and not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        for incident_id in list(self._held):
            with suppress(Exception):
                await self.release(incident_id)
