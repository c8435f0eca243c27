"""Run leases: who is running which incident, kept alive by a heartbeat.

Every run an incident is owed — its first run, the run that applies a decision, a retry after
a failure — is a lease in the incident index (``lease_owner``, ``lease_expires_at``), written
in the same statement that makes the run owed (opening the incident, recording the decision).
While this process runs the incident, :class:`LeaseKeeper` moves the expiry forward every
third of ``ttl``; when the run pauses or ends, the lease goes. A lease that expires belongs to
a run whose worker died (or hung): any runtime's recovery claims it (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL) and continues the run from its last checkpoint.

The lease says which runs need an owner; the incident's lock (see :mod:`durable_ir.locks`)
still decides who runs one, so a slow heartbeat never lets two workers run an incident.

Example:
    >>> import asyncio
    >>> from durable_ir.ledger import MemoryLedger
    >>> async def main():
    ...     keeper = LeaseKeeper(MemoryLedger(), ttl=30.0, owner="worker-1")
    ...     async with keeper.running("inc-1"):
    ...         held = keeper.held()
    ...     await keeper.aclose()
    ...     return held, keeper.lease().owner
    >>> asyncio.run(main())
    (('inc-1',), 'worker-1')
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import timedelta

from durable_ir.clock import Clock, system_clock
from durable_ir.errors import ConfigurationError
from durable_ir.ledger import ApprovalLedger
from durable_ir.records import RunLease

__all__ = ["LeaseKeeper", "owner_is_gone", "worker_id"]

log = logging.getLogger("durable_ir.leases")


def worker_id() -> str:
    """A name for this process that no other process shares: ``host:pid:random``."""
    return f"{_host()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _host() -> str:
    return socket.gethostname()[:60]


def owner_is_gone(owner: str) -> bool:
    """True if ``owner`` (a :func:`worker_id`) is a process on this host that no longer
    exists. False when that cannot be told — another host, this process, a live (or reused)
    pid, an id of another form — so callers err on the side of "maybe alive"."""
    host, _, rest = owner.partition(":")
    pid_text, _, _ = rest.partition(":")
    if host != _host() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, but not ours to signal
        return False
    return False


class LeaseKeeper:
    """Hands out this runtime's leases and keeps those of its running incidents alive.

    ``ttl`` is how long a lease lasts without a heartbeat: the longest a dead worker's
    incident waits before another runtime takes it over.
    """

    def __init__(
        self,
        ledger: ApprovalLedger,
        *,
        ttl: float = 30.0,
        clock: Clock = system_clock,
        owner: str | None = None,
    ) -> None:
        if not ttl > 0:
            raise ConfigurationError("lease_ttl must be a positive number of seconds")
        self.ledger = ledger
        self.ttl = ttl
        self.clock = clock
        self.owner = owner or worker_id()
        self._running: Counter[str] = Counter()
        self._idle = asyncio.Event()
        self._heartbeat: asyncio.Task[None] | None = None
        self._failing = False

    def lease(self) -> RunLease:
        """A lease owned by this runtime, expiring ``ttl`` seconds from now."""
        return RunLease(self.owner, self.clock() + timedelta(seconds=self.ttl))

    def held(self) -> tuple[str, ...]:
        """The incidents this runtime is running now."""
        return tuple(self._running)

    @asynccontextmanager
    async def running(self, incident_id: str) -> AsyncIterator[None]:
        """Keep ``incident_id``'s lease alive while the ``async with`` block runs it."""
        self._running[incident_id] += 1
        self._idle.clear()
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.get_running_loop().create_task(
                self._beat(), name="durable-ir lease heartbeat"
            )
        try:
            yield
        finally:
            self._running[incident_id] -= 1
            if self._running[incident_id] <= 0:
                del self._running[incident_id]
            if not self._running:
                self._idle.set()

    async def _beat(self) -> None:
        interval = self.ttl / 3
        while self._running:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), interval)
            if not self._running:
                return
            try:
                await self.ledger.extend_leases(
                    list(self._running), self.owner, self.lease().expires_at
                )
            except Exception as exc:
                # Logged once per outage: the leases expire if it lasts, and recovery (here or
                # on another replica) takes the runs over; the lock keeps that safe.
                if not self._failing:
                    log.error("lease heartbeat failed (retrying every %.1fs): %s", interval, exc)
                self._failing = True
            else:
                if self._failing:
                    log.info("lease heartbeat works again")
                self._failing = False

    async def aclose(self) -> None:
        """Stop the heartbeat (the leases of runs still going then expire)."""
        task, self._heartbeat = self._heartbeat, None
        if task is not None and not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
