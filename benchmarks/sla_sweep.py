"""How the SLA sweep scales with the number of pending approvals, against the generic way.

Run from the repository root::

    python benchmarks/sla_sweep.py            # 1k, 10k, 100k pending; generic at 1k, 10k
    python benchmarks/sla_sweep.py --smoke    # tiny sizes, for CI (< 30 s)

What it measures, on PostgreSQL (a throwaway database it creates, and drops at the end):

- **Seeding.** The real schema comes from ``open_runtime`` (the saver's migrations and the
  ledger's table with its partial indexes). Three real incidents of
  ``tests/support/graphs.build_graph`` are run on that database: one left at its approval
  pause, one approved and finished, one expired by a real ``SlaMonitor`` sweep and escalated.
  Their rows in ``checkpoints``, ``checkpoint_blobs``, ``checkpoint_writes`` and
  ``durable_ir_approvals`` are the templates; each size N gets N pending incidents (``overdue``
  of them past their deadline, the rest due within the SLA window) and N decided ones (history:
  approved or expired over the past two years, all applied). Clones keep the template payloads
  byte for byte, except that the thread id, approval id and timestamps are replaced wherever
  they occur (jsonb on the server; msgpack blobs in Python, same-length substitutions; a sample
  of clones is read back through the checkpointer and checked). Sizes are reached by growing
  one database; ``VACUUM ANALYZE`` after each.
- **One sweep** is the database part of ``SlaMonitor.sweep()``: ``ledger.expire_due`` (find
  and claim with the compare-and-set) plus ``ledger.due_reminders``, with the monitor's own
  arguments. No graph is resumed (the seeded incidents have no runnable graph). A sweep expires
  the overdue approvals, so they are put back to pending between repeats, outside the timed
  region; one untimed warm-up sweep precedes the timed ones.
- **The generic way** finds overdue approvals with LangGraph only: ``saver.alist(None)`` over
  every checkpoint, each thread's latest root checkpoint, its pending ``__interrupt__`` writes,
  and their ``durable_ir.deadline_at``. Both ways must find the same ``overdue`` approvals.
- The plans of the sweep's statements at the largest N come from ``auto_explain`` (``ANALYZE``,
  ``BUFFERS``) on the ledger's own statements.

The last line is machine-readable:
``sla_sweep sweep_ms_1k=… sweep_ms_100k=… growth=… generic_ms_10k=… speedup_10k=…``
(keys are named after the smallest and largest sizes, and the largest generic size).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT / "tests", ROOT / "src"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import psycopg  # noqa: E402
from psycopg import AsyncConnection, sql  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402
from psycopg_pool import AsyncConnectionPool  # noqa: E402

from durable_ir import Approve, SlaMonitor, SlaPolicy, open_runtime  # noqa: E402
from durable_ir.ledger import PostgresLedger  # noqa: E402
from durable_ir.ledger.base import ApprovalLedger  # noqa: E402
from durable_ir.records import ApprovalRecord  # noqa: E402
from durable_ir.sla import SLA_IDENTITY  # noqa: E402
from support.graphs import ALERT, build_graph  # noqa: E402
from support.postgres import with_database  # noqa: E402

URL_ENV = "DURABLE_IR_BENCH_POSTGRES_URL"
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SWEEP_INDEX = "durable_ir_approvals_pending_by_deadline"

# LangGraph's control channels (what the savers persist for a task besides its output).
INTERRUPT = "__interrupt__"
CONTROL_CHANNELS = frozenset((INTERRUPT, "__resume__", "__error__", "__error_source_node__"))
NULL_TASK_ID = "00000000-0000-0000-0000-000000000000"

PENDING, APPROVED, EXPIRED = "p", "a", "x"
ID_DIGITS = 9  # thread ids are "inc-<kind>-<9 digits>": all the same length


def thread_id(kind: str, number: int) -> str:
    return f"inc-{kind}-{number:0{ID_DIGITS}d}"


def approval_id(thread: str) -> str:
    # 32 hex digits, like the interrupt ids LangGraph gives approvals.
    return hashlib.md5(thread.encode()).hexdigest()


def with_micros(moment: datetime) -> datetime:
    """``isoformat()`` drops a zero microsecond field; keep every timestamp 32 characters."""
    return moment if moment.microsecond else moment + timedelta(microseconds=1)


def iso(moment: datetime) -> str:
    text = moment.astimezone(UTC).isoformat()
    if len(text) != 32:
        raise AssertionError(f"unexpected timestamp format {text!r}")
    return text


def size_label(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class StepClock:
    """A clock for the template incidents: wall time, moving forward on every call, with a
    non-zero microsecond field (so that every stored timestamp has the same length)."""

    def __init__(self) -> None:
        self._now = with_micros(datetime.now(UTC).replace(microsecond=123457))

    def __call__(self) -> datetime:
        self._now = with_micros(self._now + timedelta(seconds=1, microseconds=1))
        return self._now


# --------------------------------------------------------------------------- templates


@dataclass
class Template:
    """One real incident's rows, to be cloned."""

    kind: str
    thread: str
    ledger_row: dict[str, Any]
    request_json: str
    # Rows whose blob mentions the incident (ids, timestamps): rewritten per clone in Python.
    varying_blobs: list[tuple[Any, ...]] = field(default_factory=list)
    varying_writes: list[tuple[Any, ...]] = field(default_factory=list)
    varying_checkpoints: int = 0

    def strings(self) -> dict[str, str]:
        """What identifies this incident in its payloads, by role."""
        section = self.ledger_row["request"]["durable_ir"]
        found = {
            "thread": self.thread,
            "approval": self.ledger_row["approval_id"],
            "requested": section["requested_at"],
            "deadline": section["deadline_at"],
        }
        if self.ledger_row["decided_at"] is not None:
            found["decided"] = iso(self.ledger_row["decided_at"])
        return found


@dataclass(frozen=True)
class Clone:
    kind: str
    thread: str
    approval: str
    requested_at: datetime
    deadline_at: datetime
    decided_at: datetime | None

    def strings(self) -> dict[str, str]:
        found = {
            "thread": self.thread,
            "approval": self.approval,
            "requested": iso(self.requested_at),
            "deadline": iso(self.deadline_at),
        }
        if self.decided_at is not None:
            found["decided"] = iso(self.decided_at)
        return found


def substitutions(template: Template, clone: Clone) -> list[tuple[str, str]]:
    old, new = template.strings(), clone.strings()
    pairs = [(old[role], new[role]) for role in old]
    for a, b in pairs:
        if len(a.encode()) != len(b.encode()):  # msgpack strings carry their length
            raise AssertionError(f"substitution {a!r} -> {b!r} would change a length")
    return pairs


def rewrite_bytes(blob: bytes, pairs: Sequence[tuple[bytes, bytes]]) -> bytes:
    for old, new in pairs:
        blob = blob.replace(old, new)
    return blob


async def make_templates(db_url: str, conn: AsyncConnection[Any]) -> dict[str, Template]:
    """Run the three real incidents and keep their rows (in TEMP tables and in Python)."""
    clock = StepClock()
    threads = {EXPIRED: thread_id("t", 2), APPROVED: thread_id("t", 1), PENDING: thread_id("t", 0)}
    with tempfile.TemporaryDirectory() as counters:
        async with open_runtime(db_url, clock=clock) as rt:
            graph = build_graph(counters)
            # Expired first: the monitor's sweep must find nothing else overdue.
            await rt.start(graph, {"alert": ALERT}, incident_id=threads[EXPIRED])
            report = await SlaMonitor(rt).sweep(now=clock() + timedelta(hours=3))
            if len(report.applied) != 1:
                raise AssertionError(f"the expiry template was not escalated: {report}")
            await rt.start(graph, {"alert": ALERT}, incident_id=threads[APPROVED])
            await rt.decide(threads[APPROVED], Approve(by="alice"))
            paused = await rt.start(graph, {"alert": ALERT}, incident_id=threads[PENDING])
            statuses = {kind: (await rt.get(thread)).status for kind, thread in threads.items()}
    if paused.status != "awaiting_approval" or statuses != {
        EXPIRED: "finished",
        APPROVED: "finished",
        PENDING: "awaiting_approval",
    }:
        raise AssertionError(f"template incidents ended up as {statuses}")

    templates: dict[str, Template] = {}
    dict_cur = conn.cursor(row_factory=dict_row)
    for kind, thread in threads.items():
        await dict_cur.execute(
            "SELECT * FROM durable_ir_approvals WHERE incident_id = %s", (thread,)
        )
        rows = await dict_cur.fetchall()
        if len(rows) != 1:
            raise AssertionError(f"template {thread} has {len(rows)} ledger rows")
        row = rows[0]
        templates[kind] = Template(kind, thread, row, json.dumps(row["request"]))

    # Server-side templates: every row, with a flag for payloads that mention the incident.
    await conn.execute(
        """
        CREATE TEMP TABLE tmpl_checkpoints AS
            SELECT ''::text AS kind, false AS varies, * FROM checkpoints WITH NO DATA;
        CREATE TEMP TABLE tmpl_blobs AS
            SELECT ''::text AS kind, * FROM checkpoint_blobs WITH NO DATA;
        CREATE TEMP TABLE tmpl_writes AS
            SELECT ''::text AS kind, * FROM checkpoint_writes WITH NO DATA;
        CREATE TEMP TABLE bench_clones (
            kind text, thread_id text, approval_id text,
            requested text, deadline text, decided text
        );
        """
    )
    for kind, template in templates.items():
        strings = template.strings()
        like_any = [f"%{text}%" for text in strings.values()]
        cur = await conn.execute(
            """
            INSERT INTO tmpl_checkpoints
            SELECT %s, (checkpoint::text || metadata::text) LIKE ANY (%s), *
              FROM checkpoints WHERE thread_id = %s
            RETURNING varies
            """,
            (kind, like_any, template.thread),
        )
        template.varying_checkpoints = sum(bool(r[0]) for r in await cur.fetchall())
        needles = [text.encode() for text in strings.values()]
        cur = await conn.execute(
            "SELECT thread_id, checkpoint_ns, channel, version, type, blob"
            " FROM checkpoint_blobs WHERE thread_id = %s",
            (template.thread,),
        )
        for blob_row in await cur.fetchall():
            blob = bytes(blob_row[5] or b"")
            if any(n in blob for n in needles):
                template.varying_blobs.append(tuple(blob_row))
            else:
                await conn.execute(
                    "INSERT INTO tmpl_blobs VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (kind, *blob_row),
                )
        cur = await conn.execute(
            "SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob,"
            " task_path FROM checkpoint_writes WHERE thread_id = %s",
            (template.thread,),
        )
        for write_row in await cur.fetchall():
            blob = bytes(write_row[7] or b"")
            if any(n in blob for n in needles):
                template.varying_writes.append(tuple(write_row))
            else:
                await conn.execute(
                    "INSERT INTO tmpl_writes VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (kind, *write_row),
                )
        if not any(w[5] == INTERRUPT for w in template.varying_writes):
            raise AssertionError(f"template {template.thread} has no interrupt naming it")
    # The templates themselves are not part of the data set.
    for table, column in (
        ("checkpoints", "thread_id"),
        ("checkpoint_blobs", "thread_id"),
        ("checkpoint_writes", "thread_id"),
        ("durable_ir_approvals", "incident_id"),
    ):
        await conn.execute(
            sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)").format(
                sql.Identifier(table), sql.Identifier(column)
            ),
            (list(threads.values()),),
        )
    return templates


# --------------------------------------------------------------------------- seeding


class Seeder:
    """Makes clones of the templates and writes them, stage by stage."""

    def __init__(
        self, templates: Mapping[str, Template], overdue: int, base: datetime, seed: int = 7
    ) -> None:
        self.templates = templates
        self.overdue = overdue
        self.base = base
        self.policy = SlaPolicy()
        self.random = random.Random(seed)
        self.pending = 0
        self.history = 0
        self.overdue_ids: set[str] = set()
        severity = templates[PENDING].ledger_row["severity"]
        self.window = self.policy.window_for(severity)

    def _pending(self, number: int) -> Clone:
        thread = thread_id(PENDING, number)
        if number < self.overdue:
            # Past deadlines, one every 37 s, the latest a minute ago.
            deadline = self.base - timedelta(minutes=1, seconds=37 * number)
        else:
            # Due somewhere in the rest of the window (at least 30 minutes from now).
            margin = timedelta(minutes=30)
            deadline = self.base + margin + (self.window - margin) * self.random.random()
        deadline = with_micros(deadline.replace(microsecond=self.random.randrange(1, 10**6)))
        return Clone(PENDING, thread, approval_id(thread), deadline - self.window, deadline, None)

    def _history(self, number: int) -> Clone:
        kind = EXPIRED if number % 4 == 0 else APPROVED
        thread = thread_id(kind, number)
        requested = self.base - timedelta(days=1 + 730 * self.random.random())
        requested = with_micros(requested)
        deadline = requested + self.window
        if kind == APPROVED:
            decided = requested + (self.window / 2) * self.random.random()
        else:
            decided = deadline + timedelta(seconds=1 + 14 * self.random.random())
        return Clone(kind, thread, approval_id(thread), requested, deadline, with_micros(decided))

    def grow_to(self, n: int) -> list[Clone]:
        clones = [self._pending(i) for i in range(self.pending, n)]
        clones += [self._history(i) for i in range(self.history, n)]
        for clone in clones:
            if clone.kind == PENDING and clone.deadline_at <= self.base:
                self.overdue_ids.add(clone.approval)
        self.pending = self.history = n
        return clones

    def ledger_row(self, clone: Clone) -> tuple[Any, ...]:
        template = self.templates[clone.kind]
        row = template.ledger_row
        request = template.request_json
        for old, new in substitutions(template, clone):
            request = request.replace(old, new)
        status, decided_by, reason, applied_at = "pending", None, None, None
        if clone.kind == APPROVED:
            status, decided_by, reason = "approved", row["decided_by"], row["reason"]
        elif clone.kind == EXPIRED:
            status, decided_by = "expired", SLA_IDENTITY
            reason = self.policy.expiry_reason(
                row["severity"], clone.deadline_at, clone.deadline_at - clone.requested_at
            )
        if clone.decided_at is not None:
            applied_at = clone.decided_at + timedelta(seconds=1.5)
        next_due = self.policy.due_times(clone.requested_at, clone.deadline_at)[0]
        return (
            clone.approval,
            clone.thread,
            row["graph"],
            row["node"],
            request,
            row["severity"],
            clone.requested_at,
            clone.deadline_at,
            status,
            decided_by,
            clone.decided_at,
            reason,
            None,
            applied_at,
            next_due,
            0,
        )

    async def write(self, conn: AsyncConnection[Any], clones: Sequence[Clone]) -> None:
        async with conn.transaction():
            await conn.execute("TRUNCATE bench_clones")
            cur = conn.cursor()
            async with cur.copy(
                "COPY bench_clones (kind, thread_id, approval_id, requested, deadline, decided)"
                " FROM STDIN"
            ) as copy:
                for clone in clones:
                    s = clone.strings()
                    await copy.write_row(
                        (
                            clone.kind,
                            s["thread"],
                            s["approval"],
                            s["requested"],
                            s["deadline"],
                            s.get("decided"),
                        )
                    )
            await conn.execute("ANALYZE bench_clones")
            # Rows that do not mention the incident: copied on the server, payloads as they are.
            # Rows whose jsonb mentions it get the clone's strings in place of the template's.
            await conn.execute(
                """
                INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id,
                                         parent_checkpoint_id, type, checkpoint, metadata)
                SELECT c.thread_id, t.checkpoint_ns, t.checkpoint_id, t.parent_checkpoint_id,
                       t.type,
                       CASE WHEN t.varies THEN replace(replace(replace(replace(replace(
                           t.checkpoint::text, m.thread_id, c.thread_id),
                           m.approval_id, c.approval_id), m.requested, c.requested),
                           m.deadline, c.deadline), coalesce(m.decided, ''),
                           coalesce(c.decided, ''))::jsonb
                       ELSE t.checkpoint END,
                       CASE WHEN t.varies THEN replace(replace(replace(replace(replace(
                           t.metadata::text, m.thread_id, c.thread_id),
                           m.approval_id, c.approval_id), m.requested, c.requested),
                           m.deadline, c.deadline), coalesce(m.decided, ''),
                           coalesce(c.decided, ''))::jsonb
                       ELSE t.metadata END
                  FROM bench_clones c
                  JOIN tmpl_checkpoints t ON t.kind = c.kind
                  JOIN tmpl_meta m ON m.kind = c.kind
                 ORDER BY c.thread_id, t.checkpoint_id
                """
            )
            await conn.execute(
                """
                INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type,
                                              blob)
                SELECT c.thread_id, t.checkpoint_ns, t.channel, t.version, t.type, t.blob
                  FROM bench_clones c JOIN tmpl_blobs t ON t.kind = c.kind
                 ORDER BY c.thread_id
                """
            )
            await conn.execute(
                """
                INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id,
                                               idx, channel, type, blob, task_path)
                SELECT c.thread_id, t.checkpoint_ns, t.checkpoint_id, t.task_id, t.idx,
                       t.channel, t.type, t.blob, t.task_path
                  FROM bench_clones c JOIN tmpl_writes t ON t.kind = c.kind
                 ORDER BY c.thread_id, t.checkpoint_id
                """
            )
            # Rows whose msgpack blob mentions the incident: rewritten here, same length.
            async with cur.copy(
                "COPY checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)"
                " FROM STDIN"
            ) as copy:
                for clone in clones:
                    template = self.templates[clone.kind]
                    pairs = self._byte_pairs(template, clone)
                    for _, ns, channel, version, type_, blob in template.varying_blobs:
                        await copy.write_row(
                            (clone.thread, ns, channel, version, type_, rewrite_bytes(blob, pairs))
                        )
            async with cur.copy(
                "COPY checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx,"
                " channel, type, blob, task_path) FROM STDIN"
            ) as copy:
                for clone in clones:
                    template = self.templates[clone.kind]
                    pairs = self._byte_pairs(template, clone)
                    for w in template.varying_writes:
                        blob = rewrite_bytes(bytes(w[7]), pairs)
                        await copy.write_row((clone.thread, *w[1:7], blob, w[8]))
            async with cur.copy(
                "COPY durable_ir_approvals (approval_id, incident_id, graph, node, request,"
                " severity, requested_at, deadline_at, status, decided_by, decided_at, reason,"
                " edited_plan, applied_at, next_due_at, reminders_sent) FROM STDIN"
            ) as copy:
                for clone in clones:
                    await copy.write_row(self.ledger_row(clone))

    @staticmethod
    def _byte_pairs(template: Template, clone: Clone) -> list[tuple[bytes, bytes]]:
        return [(a.encode(), b.encode()) for a, b in substitutions(template, clone)]

    async def load_meta(self, conn: AsyncConnection[Any]) -> None:
        """The templates' strings, for the server-side substitutions in jsonb."""
        await conn.execute(
            "CREATE TEMP TABLE tmpl_meta (kind text, thread_id text, approval_id text,"
            " requested text, deadline text, decided text)"
        )
        for kind, template in self.templates.items():
            s = template.strings()
            await conn.execute(
                "INSERT INTO tmpl_meta VALUES (%s, %s, %s, %s, %s, %s)",
                (kind, s["thread"], s["approval"], s["requested"], s["deadline"], s.get("decided")),
            )


async def verify_clones(saver: Any, clones: Sequence[Clone], sample: int = 30) -> None:
    """Read a sample of clones back through the checkpointer: each must be its own incident
    (the rewritten msgpack decodes, and names the clone's approval, thread and deadline)."""
    rng = random.Random(len(clones))
    picked = [c for c in clones if c.kind == PENDING][:1] + rng.sample(
        list(clones), min(sample, len(clones))
    )
    for clone in picked:
        saved = await saver.aget_tuple(
            {"configurable": {"thread_id": clone.thread, "checkpoint_ns": ""}}
        )
        if saved is None:
            raise AssertionError(f"clone {clone.thread} has no checkpoint")
        if clone.kind == PENDING:
            values = pending_interrupt_values(saved.pending_writes)
            got = [v["durable_ir"] for v in values if isinstance(v, Mapping)]
            want = {
                "approval_id": clone.approval,
                "incident_id": clone.thread,
                "deadline_at": iso(clone.deadline_at),
            }
            if len(got) != 1 or any(got[0].get(k) != v for k, v in want.items()):
                raise AssertionError(f"clone {clone.thread}: pending interrupt {got}")
        else:
            outcome = saved.checkpoint["channel_values"].get("approval") or {}
            status = "expired" if clone.kind == EXPIRED else "approved"
            if (outcome.get("approval_id"), outcome.get("status")) != (clone.approval, status):
                raise AssertionError(f"clone {clone.thread}: decided state {outcome}")
            if pending_interrupt_values(saved.pending_writes):
                raise AssertionError(f"clone {clone.thread} is decided but still paused")


async def vacuum_analyze(conn: AsyncConnection[Any]) -> None:
    for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes", "durable_ir_approvals"):
        await conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))


async def count_rows(conn: AsyncConnection[Any]) -> dict[str, int]:
    cur = await conn.execute(
        """
        SELECT (SELECT count(*) FROM checkpoints),
               (SELECT count(*) FROM checkpoint_blobs),
               (SELECT count(*) FROM checkpoint_writes),
               (SELECT count(*) FROM durable_ir_approvals WHERE status = 'pending'),
               (SELECT count(*) FROM durable_ir_approvals WHERE status <> 'pending'),
               pg_database_size(current_database())
        """
    )
    row = await cur.fetchone()
    assert row is not None
    keys = ("checkpoints", "blobs", "writes", "pending", "decided", "bytes")
    return dict(zip(keys, (int(v) for v in row), strict=True))


# --------------------------------------------------------------------------- measuring


async def sweep_once(ledger: ApprovalLedger, limit: int, now: datetime) -> list[ApprovalRecord]:
    """The database part of ``SlaMonitor.sweep()``: expire what is due, read due reminders."""
    policy = SlaPolicy()
    expired = await ledger.expire_due(
        now,
        limit,
        SLA_IDENTITY,
        lambda row: policy.expiry_reason(
            row.severity, row.deadline_at, row.deadline_at - row.requested_at
        ),
    )
    await ledger.due_reminders(now, limit)
    return expired


async def rearm(conn: AsyncConnection[Any], ids: Iterable[str]) -> None:
    wanted = sorted(ids)
    cur = await conn.execute(
        "UPDATE durable_ir_approvals"
        " SET status = 'pending', decided_by = NULL, decided_at = NULL, reason = NULL"
        " WHERE approval_id = ANY(%s) AND status = 'expired'",
        (wanted,),
    )
    if cur.rowcount != len(wanted):
        raise AssertionError(f"re-armed {cur.rowcount} of {len(wanted)} approvals")


async def time_sweeps(
    ledger: ApprovalLedger,
    conn: AsyncConnection[Any],
    expected: set[str],
    limit: int,
    repeats: int,
) -> list[float]:
    timings: list[float] = []
    for attempt in range(repeats + 1):  # the first one warms up, untimed
        gc.collect()  # not the generic walk's garbage, collected mid-sweep
        now = datetime.now(UTC)
        started = time.perf_counter()
        expired = await sweep_once(ledger, limit, now)
        elapsed = (time.perf_counter() - started) * 1000
        found = {row.approval_id for row in expired}
        if found != expected:
            raise AssertionError(
                f"the sweep expired {len(found)} approvals, {len(found ^ expected)} unexpected"
            )
        await rearm(conn, found)
        if attempt:
            timings.append(elapsed)
    return timings


def pending_interrupt_values(writes: Iterable[tuple[str, str, Any]] | None) -> list[Any]:
    """Values of the interrupts still waiting in a checkpoint's writes: a task's interrupts are
    pending while the task has no output write (LangGraph's own reading)."""
    raised: dict[str, list[Any]] = {}
    finished: set[str] = set()
    for task_id, channel, value in writes or ():
        if task_id == NULL_TASK_ID:
            continue
        if channel == INTERRUPT:
            items = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
            raised.setdefault(task_id, []).extend(items)
        elif channel not in CONTROL_CHANNELS:
            finished.add(task_id)
    return [
        getattr(item, "value", None)
        for task_id, items in raised.items()
        if task_id not in finished
        for item in items
    ]


async def generic_overdue(saver: Any, now: datetime) -> tuple[set[str], int]:
    """Overdue approvals found with LangGraph alone: walk every checkpoint with ``alist``."""
    seen: set[str] = set()
    overdue: set[str] = set()
    walked = 0
    async for saved in saver.alist(None):
        walked += 1
        configurable = saved.config.get("configurable", {})
        if configurable.get("checkpoint_ns", ""):
            continue
        thread = str(configurable["thread_id"])
        if thread in seen:
            continue  # newest first: only a thread's latest checkpoint counts
        seen.add(thread)
        for value in pending_interrupt_values(saved.pending_writes):
            section = value.get("durable_ir") if isinstance(value, Mapping) else None
            if not isinstance(section, Mapping):
                continue
            if datetime.fromisoformat(section["deadline_at"]) <= now:
                overdue.add(str(section["approval_id"]))
    return overdue, walked


async def time_generic(saver: Any, expected: set[str], repeats: int) -> tuple[list[float], int]:
    timings: list[float] = []
    walked = 0
    for _ in range(repeats):
        now = datetime.now(UTC)
        started = time.perf_counter()
        found, walked = await generic_overdue(saver, now)
        timings.append((time.perf_counter() - started) * 1000)
        if found != expected:
            raise AssertionError(
                f"the generic walk found {len(found)} overdue approvals, "
                f"{len(found ^ expected)} differ from the ledger's"
            )
    return timings, walked


_INDEX_RE = re.compile(r"(?:Index (?:Only )?Scan(?: Backward)? using|Bitmap Index Scan on) (\S+)")
_DURATION_RE = re.compile(r"duration: ([\d.]+) ms")
_ACTUAL_RE = re.compile(r"\(actual time=[\d.]+\.\.([\d.]+) rows=(\d+)")


def summarize_plan(message: str) -> str:
    """One statement's ``auto_explain`` output, in two lines."""
    lines = message.splitlines()
    nodes = [i for i, line in enumerate(lines) if "(cost=" in line]
    first = nodes[0] if nodes else len(lines)
    start = next((i for i, line in enumerate(lines) if line.startswith("Query Text:")), 0)
    query = " ".join(" ".join(lines[start:first]).removeprefix("Query Text:").split())
    top = lines[first].split("  (cost")[0].strip() if nodes else "?"
    actual = _ACTUAL_RE.search(lines[first]) if nodes else None
    buffers = next((line.strip() for line in lines[first:] if "Buffers:" in line), "Buffers: ?")
    indexes = sorted(set(_INDEX_RE.findall(message)))
    duration = _DURATION_RE.search(message)
    return (
        f"{query[:70]}…\n"
        f"      top node: {top}"
        + (f" (rows={actual.group(2)})" if actual else "")
        + f"; indexes: {', '.join(indexes) or 'none'}"
        + f"; {duration.group(1) if duration else '?'} ms; {buffers}"
    )


async def explain_sweep(db_url: str, conn: AsyncConnection[Any], limit: int) -> list[str]:
    """Run one sweep through a ledger whose connection has ``auto_explain`` (ANALYZE, BUFFERS)
    on, and return a summary of each statement's plan, as the server executed it."""
    notices: list[str] = []

    async def configure(c: AsyncConnection[Any]) -> None:
        await c.execute("LOAD 'auto_explain'")
        for setting in (
            "auto_explain.log_min_duration = 0",
            "auto_explain.log_analyze = on",
            "auto_explain.log_buffers = on",
            "auto_explain.log_timing = on",
            "client_min_messages = log",
        ):
            await c.execute(f"SET {setting}")
        c.add_notice_handler(lambda d: notices.append(d.message_primary or ""))

    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        db_url,
        min_size=1,
        max_size=1,
        open=False,
        configure=configure,
        kwargs={"autocommit": True, "row_factory": dict_row, "prepare_threshold": None},
    )
    try:
        await pool.open(wait=True, timeout=30)
    except Exception as exc:
        await pool.close()
        return [f"(auto_explain unavailable: {exc})"]
    try:
        notices.clear()
        expired = await sweep_once(PostgresLedger(pool), limit, datetime.now(UTC))
    finally:
        await pool.close()
    await rearm(conn, {row.approval_id for row in expired})
    return [summarize_plan(n) for n in notices if "plan:" in n]


# --------------------------------------------------------------------------- main


@dataclass
class StageResult:
    n: int
    rows: dict[str, int]
    seed_s: float
    sweep_ms: list[float] = field(default_factory=list)
    generic_ms: list[float] = field(default_factory=list)
    plans: list[str] = field(default_factory=list)


async def run(db_url: str, args: argparse.Namespace) -> list[StageResult]:
    stages = sorted(set(args.sizes) | set(args.generic_sizes))
    results: list[StageResult] = []
    conn = await AsyncConnection.connect(db_url, autocommit=True)
    try:
        await conn.execute("SET synchronous_commit = off")
        started = time.perf_counter()
        templates = await make_templates(db_url, conn)
        seeder = Seeder(templates, args.overdue, base=datetime.now(UTC))
        await seeder.load_meta(conn)
        log(
            f"templates ready in {time.perf_counter() - started:.1f}s: "
            + ", ".join(
                f"{k}: {t.varying_checkpoints} checkpoint(s), {len(t.varying_writes)} write(s), "
                f"{len(t.varying_blobs)} blob(s) rewritten"
                for k, t in templates.items()
            )
        )
        async with open_runtime(db_url) as rt:
            ledger = rt.store.ledger
            for n in stages:
                started = time.perf_counter()
                clones = seeder.grow_to(n)
                await seeder.write(conn, clones)
                await verify_clones(rt.store.checkpointer, clones)
                await vacuum_analyze(conn)
                rows = await count_rows(conn)
                result = StageResult(n, rows, time.perf_counter() - started)
                results.append(result)
                log(
                    f"N={n}: seeded {len(clones)} incidents in {result.seed_s:.1f}s "
                    f"({rows['checkpoints']} checkpoints, {rows['writes']} writes, "
                    f"{rows['bytes'] / 2**20:.0f} MiB)"
                )
                expected = set(seeder.overdue_ids)
                if n in args.generic_sizes:
                    result.generic_ms, walked = await time_generic(
                        rt.store.checkpointer, expected, args.generic_repeats
                    )
                    if walked != rows["checkpoints"]:
                        raise AssertionError(f"alist walked {walked} of {rows['checkpoints']}")
                    log(f"N={n}: generic walk {statistics.median(result.generic_ms):.0f} ms")
                if n in args.sizes:
                    result.sweep_ms = await time_sweeps(
                        ledger, conn, expected, args.overdue, args.repeats
                    )
                    log(f"N={n}: sweep {statistics.median(result.sweep_ms):.2f} ms")
                if n == max(args.sizes):
                    result.plans = await explain_sweep(db_url, conn, args.overdue)
    finally:
        await conn.close()
    return results


def report(results: Sequence[StageResult], args: argparse.Namespace) -> str:
    header = (
        f"{'N pending':>10} {'decided':>8} {'checkpoints':>12} {'sweep med ms':>13}"
        f" {'sweep max ms':>13} {'generic ms':>11} {'speedup':>8}"
    )
    out = [
        f"SLA sweep benchmark: {args.overdue} overdue, sweep = expire_due + due_reminders, "
        f"median of {args.repeats} (after 1 warm-up); generic = alist walk, "
        f"median of {args.generic_repeats}",
        header,
        "-" * len(header),
    ]
    for r in results:
        sweep = statistics.median(r.sweep_ms) if r.sweep_ms else None
        generic = statistics.median(r.generic_ms) if r.generic_ms else None
        out.append(
            f"{r.n:>10} {r.rows['decided']:>8} {r.rows['checkpoints']:>12}"
            f" {f'{sweep:.2f}' if sweep is not None else '-':>13}"
            f" {f'{max(r.sweep_ms):.2f}' if r.sweep_ms else '-':>13}"
            f" {f'{generic:.1f}' if generic is not None else '-':>11}"
            f" {f'{generic / sweep:.1f}x' if generic and sweep else '-':>8}"
        )
    plans = [p for r in results for p in r.plans]
    if plans:
        out.append(f"plans of one sweep at N={max(args.sizes)} (auto_explain, ANALYZE, BUFFERS):")
        out.extend(f"  - {p}" for p in plans)
        used = any(SWEEP_INDEX in p for p in plans)
        out.append(f"  partial index {SWEEP_INDEX} used: {'yes' if used else 'NO'}")

    by_n = {r.n: r for r in results}
    small, large = min(args.sizes), max(args.sizes)
    sweep_small = statistics.median(by_n[small].sweep_ms)
    sweep_large = statistics.median(by_n[large].sweep_ms)
    growth = sweep_large / sweep_small
    parts = [
        f"sweep_ms_{size_label(small)}={sweep_small:.2f}",
        f"sweep_ms_{size_label(large)}={sweep_large:.2f}",
        f"growth={growth:.2f}",
    ]
    if args.generic_sizes:
        g = max(args.generic_sizes)
        generic = statistics.median(by_n[g].generic_ms)
        parts.append(f"generic_ms_{size_label(g)}={generic:.1f}")
        if by_n[g].sweep_ms:
            speedup = generic / statistics.median(by_n[g].sweep_ms)
            parts.append(f"speedup_{size_label(g)}={speedup:.2f}")
    out.append(
        f"targets: growth <= 3: {'ok' if growth <= 3 else 'MISSED'}; "
        f"sweep_ms_{size_label(large)} <= 100: {'ok' if sweep_large <= 100 else 'MISSED'}"
    )
    out.append("sla_sweep " + " ".join(parts))
    return "\n".join(out)


def parse_sizes(text: str) -> list[int]:
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=parse_sizes, default=[1000, 10000, 100000])
    parser.add_argument("--overdue", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--generic-sizes", type=parse_sizes, default=[1000, 10000])
    parser.add_argument("--generic-repeats", type=int, default=2)
    parser.add_argument(
        "--url",
        default=os.environ.get(URL_ENV),
        help=f"PostgreSQL server URL (default: ${URL_ENV}, else the server the tests use: "
        f"{DEFAULT_SERVER_URL} or an embedded pgserver); a throwaway database is created on "
        "it and dropped",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    args = parser.parse_args(argv)
    if args.url is None:
        from support.postgres import resolution_errors, resolve_server_url

        args.url = resolve_server_url()
        if args.url is None:
            parser.error("no PostgreSQL server: " + "; ".join(resolution_errors()))
    if args.smoke:
        args.sizes, args.generic_sizes, args.repeats = [200, 1000], [200], 2
    if args.overdue < 1 or args.repeats < 1 or args.generic_repeats < 1:
        parser.error("--overdue, --repeats and --generic-repeats must be at least 1")
    if not args.sizes:
        parser.error("--sizes is empty")
    if min(args.sizes + args.generic_sizes) < args.overdue:
        parser.error("every size must be at least --overdue")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    name = f"durable_ir_bench_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(args.url, autocommit=True, connect_timeout=10) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    try:
        results = asyncio.run(run(with_database(args.url, name), args))
    finally:
        try:
            with psycopg.connect(args.url, autocommit=True, connect_timeout=10) as admin:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        except psycopg.Error as exc:
            log(f"could not drop the benchmark database {name}: {exc}")
    log(f"total {time.perf_counter() - started:.1f}s")
    print(report(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
