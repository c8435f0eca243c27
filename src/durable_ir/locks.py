"""Per-incident locks that hold across processes.

Only the holder of an incident's lock runs its graph: starting it, resuming it with a
decision, or recovering it. LangGraph itself locks nothing, and two concurrent resumes of one
thread would both run the downstream nodes.

- :class:`PostgresAdvisoryLocks`: a session-level ``pg_try_advisory_lock`` on a dedicated
  pooled connection. PostgreSQL releases it if the holder's process dies. (It needs a session,
  so behind pgbouncer point the lock pool at a session-mode port or at PostgreSQL itself.)
- :class:`FileRangeLocks`: a POSIX byte-range lock (``fcntl.lockf``) on one byte of a lock file
  next to the SQLite database, chosen by hashing the incident id. The kernel releases it if the
  holder dies.
- :class:`ProcessLocks`: within one process only, for ``memory://``.

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
import errno
import fcntl
import hashlib
import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, ClassVar

from durable_ir.errors import IncidentBusy

if TYPE_CHECKING:  # psycopg is loaded only by the PostgreSQL store
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

__all__ = ["FileRangeLocks", "IncidentLocks", "PostgresAdvisoryLocks", "ProcessLocks", "lock_key"]

log = logging.getLogger("durable_ir.locks")

_POLL_START_S = 0.005
_POLL_MAX_S = 0.1


def lock_key(incident_id: str) -> int:
    """A stable signed 63-bit key for ``incident_id`` (the same in every process)."""
    digest = hashlib.blake2b(f"durable-ir:incident:{incident_id}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") >> 1


class IncidentLocks(ABC):
    """Mutual exclusion per incident id."""

    @abstractmethod
    async def try_acquire(self, incident_id: str) -> bool:
        """Take the lock if it is free; never waits."""

    @abstractmethod
    async def release(self, incident_id: str) -> None:
        """Give back a lock this object holds."""

    async def close(self) -> None:  # noqa: B027 - optional hook, default no-op
        """Release resources held for locking."""

    @asynccontextmanager
    async def hold(self, incident_id: str, *, wait: float | None = None) -> AsyncIterator[None]:
        """Hold the lock for the ``async with`` block, waiting up to ``wait`` seconds
        (``None``: forever; ``0``: not at all). Raises ``IncidentBusy`` on time-out."""
        deadline = None if wait is None else time.monotonic() + wait
        pause = _POLL_START_S
        while not await self.try_acquire(incident_id):
            if deadline is not None and time.monotonic() >= deadline:
                raise IncidentBusy(f"incident {incident_id!r} is being run by another worker")
            await asyncio.sleep(pause)
            pause = min(pause * 2, _POLL_MAX_S)
        try:
            yield
        finally:
            await self.release(incident_id)


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


class FileRangeLocks(IncidentLocks):
    """Cross-process locks as byte-range locks on one file.

    POSIX record locks belong to the process, not to the file descriptor, so a
    :class:`ProcessLocks` with the file's path as scope excludes other holders in this
    process first, and one descriptor per path is shared by every user in the process (closing
    any descriptor of the file would drop all of the process's locks on it).
    """

    _files: ClassVar[dict[str, tuple[int, int]]] = {}  # path -> (fd, users)

    def __init__(self, path: str) -> None:
        self._path = os.path.abspath(path)
        self._local = ProcessLocks(scope=f"file:{self._path}")
        fd, users = self._files.get(self._path, (-1, 0))
        if fd < 0:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        self._files[self._path] = (fd, users + 1)
        self._fd = fd
        self._closed = False

    async def try_acquire(self, incident_id: str) -> bool:
        if not await self._local.try_acquire(incident_id):
            return False
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, lock_key(incident_id))
        except OSError as exc:
            await self._local.release(incident_id)
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                return False
            raise
        return True

    async def release(self, incident_id: str) -> None:
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, lock_key(incident_id))
        finally:
            await self._local.release(incident_id)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        fd, users = self._files[self._path]
        if users <= 1:
            del self._files[self._path]
            os.close(fd)
        else:
            self._files[self._path] = (fd, users - 1)


class PostgresAdvisoryLocks(IncidentLocks):
    """Session-level advisory locks, each held on its own pooled connection."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool
        self._held: dict[str, AsyncConnection[Any]] = {}

    async def try_acquire(self, incident_id: str) -> bool:
        if incident_id in self._held:
            return False
        conn = await self._pool.getconn()
        try:
            cur = await conn.execute(
                "SELECT pg_try_advisory_lock(%s) AS ok", (lock_key(incident_id),)
            )
            row = await cur.fetchone()
        except BaseException:
            await self._pool.putconn(conn)
            raise
        if row is None or not _first(row):
            await self._pool.putconn(conn)
            return False
        self._held[incident_id] = conn
        return True

    async def release(self, incident_id: str) -> None:
        """Unlock, and give the lock's connection back to the pool.

        If that connection died while the lock was held (PostgreSQL restarted, or
        ``pg_terminate_backend`` ended the session), the server released the lock when the
        session ended: that is logged, once, as a warning, and not raised, since whatever ran
        under the lock has finished by now. The pool discards the dead connection.
        """
        import psycopg  # loaded already: this connection is psycopg's

        conn = self._held.pop(incident_id, None)
        if conn is None:
            return
        try:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(incident_id),))
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            log.warning(
                "the lock of incident %s was lost with its database connection (%s: %s): "
                "PostgreSQL released it when the session ended, so another worker could "
                "have taken the incident while this one still ran it",
                incident_id,
                type(exc).__name__,
                (str(exc).strip().splitlines() or ["no message"])[0],
            )
        finally:
            await self._pool.putconn(conn)


def _first(row: object) -> Any:
    if isinstance(row, dict):
        return next(iter(row.values()))
    return row[0]  # type: ignore[index]
