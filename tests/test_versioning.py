"""Guarantee 9, redeploys are safe (issue 14): an incident finishes on the graph version it
paused on, or the operation is refused loudly; no decision is ever marked applied unless the
graph ran it.

The multi-process tests pause incidents in one OS process (the old deploy, "v1"), then drive
them from a process that registers only the new graph ("v2") — which must refuse, touch
nothing and run nothing — and then from a process that registers both, where each decision
completes on v1 exactly once. Side effects are counted in files across processes
(:class:`support.graphs.Counters`); the ledger is read from this process.

In bare LangGraph, a thread paused at a node the new graph renamed or removed shows no
interrupt, and ``Command(resume=...)`` or ``ainvoke(None)`` silently runs nothing (inside a
subgraph it may run the next node): a runtime that inferred "moved on" from the missing
interrupt would mark the decision applied, and ``get()`` would say ``finished``. The
assertions on ``applied_at``, on the counters and on the status catch exactly that.
"""

from __future__ import annotations

import signal
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from durable_ir import (
    Approve,
    ConfigurationError,
    Conflict,
    GraphVersionUnavailable,
    IncidentRecord,
    Reject,
    open_runtime,
)
from durable_ir.records import ApprovalRecord
from durable_ir.service import ServiceSettings, create_app
from durable_ir.service.auth import parse_token_entries
from durable_ir.versioning import migrate, takeover_check, version_report
from support.graphs import Counters
from support.processes import JsonLineProcess
from support.service import auth, serving, tokens_json
from support.versioned_graphs import (
    AFTER_PAUSE,
    ALERT,
    CHANGES,
    GRAPH_NAME,
    PRE_PAUSE,
    VARIANTS,
)

LATER = 3600.0
"""The later deploys' clocks run this far ahead: the leases the old deploy wrote (30 s) have
expired by them, so plain ``recover()`` may take those runs over — if it runs their version."""
READ_TIMEOUT = 60.0


class Deploy(JsonLineProcess):
    """``support.versioned_worker`` in its own OS process: one deploy of the graph."""

    def __init__(self, url: str, counter_dir: Path, *, clock_offset: float = 0.0) -> None:
        module = "support.versioned_worker"
        super().__init__([sys.executable, "-m", module, url, str(counter_dir), str(clock_offset)])
        self.ready = False

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        if not self.ready:
            assert self.read(READ_TIMEOUT) == {"ready": True}
            self.ready = True
        self.send({"op": op, **args})
        answer = self.read(READ_TIMEOUT)
        assert "crash" not in answer, answer["crash"]
        return answer


@pytest.fixture
def deploys(durable_url: str, counter_dir: Path) -> Iterator[Any]:
    """Starts deploys (each in its own process); ends them all after the test."""
    with ExitStack() as stack:

        def start(*, clock_offset: float = 0.0) -> Deploy:
            deploy = Deploy(durable_url, counter_dir, clock_offset=clock_offset)
            stack.callback(deploy.close)
            stack.callback(deploy.kill)
            return deploy

        yield start


def counts(counter_dir: Path, incident: str) -> Counter[str]:
    return Counters(counter_dir).read(incident)


def only_pre_pause_ran(counter_dir: Path, incident: str) -> None:
    """The incident ran up to its pause, once, and nothing after it."""
    ran = counts(counter_dir, incident)
    assert {n: ran[n] for n in PRE_PAUSE} == dict.fromkeys(PRE_PAUSE, 1), ran
    assert not any(ran[n] for n in AFTER_PAUSE), ran


async def ledger_rows(
    url: str, incidents: list[str]
) -> dict[str, tuple[list[ApprovalRecord], IncidentRecord]]:
    """Each incident's approvals and index row, read with no graph registered."""
    async with open_runtime(url) as rt:
        rows = {}
        for incident in incidents:
            row = await rt.store.ledger.get_incident(incident)
            assert row is not None
            rows[incident] = (await rt.history(incident), row)
        return rows


def decision_fields(record: ApprovalRecord) -> tuple[Any, ...]:
    """What a decision is (reminder bookkeeping left out: any monitor may advance it)."""
    return (
        record.approval_id,
        record.node,
        record.status.value,
        record.decided_by,
        record.decided_at,
        record.applied_at,
        record.graph_version,
    )


def iso(moment: datetime) -> str:
    return moment.isoformat()


AFTER_EVERY_DEADLINE = datetime.now(UTC) + timedelta(days=2)


def refused_as_missing(answer: dict[str, Any], v1: str) -> None:
    assert answer.get("error") == "GraphVersionUnavailable", answer
    assert answer["needed"] == v1, answer
    assert v1 in answer["message"], answer


# --- the acceptance, one process per deploy ------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("change", list(CHANGES))
async def test_an_incident_paused_on_v1_is_refused_by_v2_and_finishes_on_v1(
    change: str, durable_url: str, counter_dir: Path, deploys: Any
) -> None:
    old_variant, new_variant = CHANGES[change]
    run = uuid.uuid4().hex[:8]
    inc = {k: f"{change}-{k}-{run}" for k in ("approve", "reject", "expire", "killed")}
    migrating = f"{change}-migrate-{run}" if change == "insert" else None
    paused = [*inc.values(), *([migrating] if migrating else [])]

    # Started together so that their imports overlap; each waits for its first request.
    old = deploys()
    new = deploys(clock_offset=LATER)
    both = deploys(clock_offset=LATER)

    # --- the old deploy: v1 pauses every incident, then dies deciding one -----------------
    v1 = old.call("register", variant=old_variant)["version"]
    for incident in paused:
        started = old.call("start", variant=old_variant, incident=incident)
        assert started["status"] == "awaiting_approval", started
        assert started["graph_version"] == v1
    old.send({"op": "decide-then-die", "incident": inc["killed"]})
    assert old.read(READ_TIMEOUT) == {"deciding": inc["killed"]}
    assert old.wait() == -signal.SIGKILL
    for incident in paused:
        only_pre_pause_ran(counter_dir, incident)

    before = await ledger_rows(durable_url, paused)
    for incident, (history, row) in before.items():
        (record,) = history
        assert record.graph_version == v1 and row.graph_version == v1 and row.is_open
        assert record.applied_at is None
        assert record.status.value == ("approved" if incident == inc["killed"] else "pending")

    # --- the new deploy, v2 only: every path refuses or leaves v1's incidents alone -------
    v2 = new.call("register", variant=new_variant)["version"]
    assert v2 != v1
    refused_as_missing(new.call("decide", incident=inc["approve"], decision="approve"), v1)
    refused_as_missing(new.call("decide", incident=inc["reject"], decision="reject"), v1)
    refused_as_missing(new.call("decide", incident=inc["expire"], decision="approve"), v1)
    swept = new.call("sweep", now=iso(AFTER_EVERY_DEADLINE))
    assert swept == {"expired": [], "applied": [], "deferred": []}
    assert new.call("recover", stalled=False) == {"recovered": []}
    assert new.call("recover", stalled=True) == {"recovered": []}
    for incident in paused:
        seen = new.call("get", incident=incident)
        assert seen["status"] == ("resuming" if incident == inc["killed"] else "awaiting_approval")
        assert seen["graph_version"] == v1 and seen["runnable_here"] is False, seen

    if migrating is None:
        # No target without the paused approval node (or, for (d), that cannot read the
        # stored state) moves it.
        report = new.call("migrate", dry_run=False)
        assert report["to_version"] == v2
        assert sorted(i["incident_id"] for i in report["items"]) == sorted(paused)
        for item in report["items"]:
            assert item["can_move"] is False and item["moved"] is False, item
            why = "does not validate" if change == "pydantic" else "approval node"
            assert item["from_version"] == v1 and why in item["reason"], item
        takeover = new.call("report")["takeover"]
        assert {i["incident_id"] for i in takeover} == set(paused)
        assert not any(i["can_move"] for i in takeover)
    elif migrating is not None:
        # (e): the node after the approval is new, the paused node is not: refused until
        # migrated, then it can move.
        refused_as_missing(new.call("decide", incident=migrating, decision="approve"), v1)
        (item,) = new.call("migrate", dry_run=True, incident_ids=[migrating])["items"]
        assert item["can_move"] is True and item["moved"] is False, item
        assert item["node"] == "approval" and item["to_version"] == v2
        assert new.call("get", incident=migrating)["graph_version"] == v1  # dry run: unmoved
        (item,) = new.call("migrate", dry_run=False, incident_ids=[migrating])["items"]
        assert item["moved"] is True, item
        done = new.call("decide", incident=migrating, decision="approve")
        assert done["applied"] is True and done["record"]["graph_version"] == v2, done
        assert new.call("get", incident=migrating)["status"] == "finished"
        ran = counts(counter_dir, migrating)
        assert ran["audit"] == 1 and ran["apply"] == 1 and ran["finish"] == 1, ran
        assert ran["escalate"] == 0 and all(ran[n] == 1 for n in PRE_PAUSE), ran

    after_new = await ledger_rows(durable_url, paused)
    for incident in inc.values():
        (record,), row = after_new[incident]
        (was,), was_row = before[incident]
        assert decision_fields(record) == decision_fields(was), incident
        assert record.applied_at is None and row.is_open and row.graph_version == v1
        # Not even claimed: the killed deploy's expired lease is left for a deploy with v1.
        assert (row.lease_owner, row.lease_expires_at, row.run_attempts) == (
            was_row.lease_owner,
            was_row.lease_expires_at,
            was_row.run_attempts,
        ), incident
        only_pre_pause_ran(counter_dir, incident)

    # --- a deploy with v1 kept beside v2: each completes on v1, exactly once --------------
    assert both.call("register", variant=old_variant, default=False)["version"] == v1
    assert both.call("register", variant=new_variant)["version"] == v2
    approved = both.call("decide", incident=inc["approve"], decision="approve")
    assert approved["applied"] is True and approved["record"]["graph_version"] == v1
    rejected = both.call("decide", incident=inc["reject"], decision="reject")
    assert rejected["applied"] is True and rejected["record"]["graph_version"] == v1
    killed_id = before[inc["killed"]][0][0].approval_id
    assert both.call("recover", stalled=False) == {"recovered": [killed_id]}
    expire_id = before[inc["expire"]][0][0].approval_id
    swept = both.call("sweep", now=iso(AFTER_EVERY_DEADLINE))
    assert swept == {"expired": [expire_id], "applied": [expire_id], "deferred": []}
    # Nothing is left to do, and a second decision is told who won.
    assert both.call("recover", stalled=True) == {"recovered": []}
    assert both.call("sweep", now=iso(AFTER_EVERY_DEADLINE))["expired"] == []
    again = both.call("decide", incident=inc["approve"], decision="reject")
    assert again["error"] == "Conflict" and "approved by alice" in again["message"], again
    for incident in inc.values():
        seen = both.call("get", incident=incident)
        assert seen["status"] == "finished" and seen["graph_version"] == v1, seen

    final = await ledger_rows(durable_url, paused)
    for key, incident in inc.items():
        (record,), row = final[incident]
        assert record.applied_at is not None and not row.is_open, incident
        assert record.graph_version == v1 and row.graph_version == v1
        ran = counts(counter_dir, incident)
        assert all(ran[n] == 1 for n in PRE_PAUSE), (incident, ran)  # nothing re-ran
        assert ran["finish"] == 1 and ran["audit"] == 0, (incident, ran)
        if key in ("approve", "killed"):
            assert record.status.value == "approved"
            assert (ran["apply"], ran["escalate"]) == (1, 0), (incident, ran)
        else:
            assert record.status.value == ("rejected" if key == "reject" else "expired")
            assert (ran["apply"], ran["escalate"]) == (0, 1), (incident, ran)
    assert final[inc["expire"]][0][0].decided_by == "system:sla"
    if migrating is not None:
        (record,), row = final[migrating]
        assert record.graph_version == v2 and row.graph_version == v2 and not row.is_open
        assert counts(counter_dir, migrating)["audit"] == 1  # not run again


@pytest.mark.slow
async def test_approving_over_http_an_incident_whose_version_is_not_served_is_409(
    durable_url: str, counter_dir: Path, deploys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    incident = f"http-{uuid.uuid4().hex[:8]}"
    old = deploys()
    v1 = old.call("register", variant="flat")["version"]
    assert old.call("start", variant="flat", incident=incident)["status"] == "awaiting_approval"
    old.close()
    (was,) = (await ledger_rows(durable_url, [incident]))[incident][0]

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    settings = ServiceSettings(
        database_url=durable_url,
        api_tokens=parse_token_entries(tokens_json()),
        graph_name=GRAPH_NAME,
        sla_interval=0.2,  # the service's monitor (and its recovery) runs meanwhile too
    )
    app = create_app(graph=VARIANTS["renamed"](counter_dir), settings=settings)
    with serving(app) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        for path, body in (("approve", {}), ("reject", {"reason": "no"})):
            answer = client.post(f"/incidents/{incident}/{path}", json=body, headers=auth("alice"))
            assert answer.status_code == 409, answer.text
            error = answer.json()["error"]
            assert error["code"] == "graph_version_unavailable", error
            assert v1 in error["message"] and "winner" not in error, error  # nobody decided
        detail = client.get(f"/incidents/{incident}", headers=auth("vic"))
        assert detail.status_code == 200, detail.text
        assert detail.json()["status"] == "awaiting_approval", detail.json()

    (record,), row = (await ledger_rows(durable_url, [incident]))[incident]
    assert decision_fields(record) == decision_fields(was)
    assert record.is_pending and record.applied_at is None and row.is_open
    only_pre_pause_ran(counter_dir, incident)

    # A deploy that keeps v1 beside v2 takes the decision, and it runs on v1, once.
    app = create_app(
        graph=VARIANTS["renamed"](counter_dir),
        keep_graphs=[VARIANTS["flat"](counter_dir)],
        settings=settings,
    )
    with serving(app) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        answer = client.post(
            f"/incidents/{incident}/approve", params={"wait": "true"}, headers=auth("alice")
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "finished", answer.json()
    (record,), row = (await ledger_rows(durable_url, [incident]))[incident]
    assert record.status.value == "approved" and record.decided_by == "alice"
    assert record.applied_at is not None and record.graph_version == v1 and not row.is_open
    ran = counts(counter_dir, incident)
    assert (ran["apply"], ran["finish"], ran["escalate"]) == (1, 1, 0), ran


# --- in one process: the checks that need no second deploy ---------------------------------


async def test_migrating_to_a_version_without_the_paused_node_is_refused_and_changes_nothing(
    durable_url: str, counter_dir: Path
) -> None:
    incident = f"bad-{uuid.uuid4().hex[:8]}"
    async with open_runtime(durable_url) as rt:
        flat = VARIANTS["flat"](counter_dir)
        v1 = rt.register(flat).version
        await rt.start(flat, {"alert": ALERT}, incident_id=incident)
        removed = rt.register(VARIANTS["removed"](counter_dir)).version
        renamed = rt.register(VARIANTS["renamed"](counter_dir), default=False).version
        (was,) = await rt.history(incident)

        for target, dry_run in ((removed, False), (renamed, False), (removed, True)):
            report = await migrate(rt, graph=GRAPH_NAME, to_version=target, dry_run=dry_run)
            (item,) = report.items
            assert (item.incident_id, item.from_version, item.to_version) == (incident, v1, target)
            assert item.can_move is False and item.moved is False
            assert item.reason and "'approval'" in item.reason and target in item.reason
            assert report.refused == [item] and report.moved == []
        with pytest.raises(ConfigurationError, match="no-such-version"):
            await migrate(rt, graph=GRAPH_NAME, to_version="no-such-version", dry_run=False)

        (record,) = await rt.history(incident)
        row = await rt.store.ledger.get_incident(incident)
        assert decision_fields(record) == decision_fields(was) and record.is_pending
        assert row is not None and row.graph_version == v1 and row.is_open
        census = {s.graph_version: s for s in await version_report(rt)}
        assert census[v1].open == 1 and census[v1].awaiting_approval == 1
        assert census[removed].open == 0 and census[removed].default
        only_pre_pause_ran(counter_dir, incident)

        # Unmoved, it still finishes on v1.
        assert (await rt.decide(incident, Approve(by="alice"))).applied
        assert (await rt.get(incident)).status == "finished"
    ran = counts(counter_dir, incident)
    assert (ran["apply"], ran["finish"], ran["escalate"]) == (1, 1, 0)


async def test_migrating_to_a_stricter_pydantic_state_is_refused_and_changes_nothing(
    durable_url: str, counter_dir: Path
) -> None:
    incident = f"pyd-{uuid.uuid4().hex[:8]}"
    async with open_runtime(durable_url) as rt:
        pydantic_v1 = VARIANTS["pydantic"](counter_dir)
        v1 = rt.register(pydantic_v1).version
        await rt.start(pydantic_v1, {"alert": ALERT}, incident_id=incident)
        (was,) = await rt.history(incident)
    async with open_runtime(durable_url) as rt:
        v2 = rt.register(VARIANTS["pydantic-required"](counter_dir)).version  # + ticket: str
        (item,) = (await takeover_check(rt)) or [None]
        assert item is not None and item.can_move is False and item.from_version == v1
        report = await migrate(rt, graph=GRAPH_NAME, dry_run=False)
        (item,) = report.items
        assert item.can_move is False and item.moved is False and item.to_version == v2
        assert item.reason and "validate" in item.reason, item
        (record,) = await rt.history(incident)
        row = await rt.store.ledger.get_incident(incident)
        assert decision_fields(record) == decision_fields(was)
        assert row is not None and row.graph_version == v1
    only_pre_pause_ran(counter_dir, incident)


async def test_a_renamed_node_under_the_same_version_string_is_refused_before_recording(
    durable_url: str, counter_dir: Path
) -> None:
    incident = f"same-{uuid.uuid4().hex[:8]}"
    async with open_runtime(durable_url) as rt:
        v1 = VARIANTS["flat"](counter_dir)
        rt.register(v1, version="2026.1")
        await rt.start(v1, {"alert": ALERT}, incident_id=incident)
    async with open_runtime(durable_url) as rt:
        rt.register(VARIANTS["renamed"](counter_dir), version="2026.1")  # same label, new graph
        for decision in (Approve(by="alice"), Reject(by="bob", reason="no")):
            with pytest.raises(GraphVersionUnavailable, match="'approval'") as refused:
                await rt.decide(incident, decision)
            assert refused.value.needed == "2026.1" and refused.value.incident_id == incident
        assert await rt.recover(stalled=True) == []
        (record,) = await rt.history(incident)
        assert record.is_pending and record.applied_at is None
        assert (await rt.get(incident)).status != "finished"
    only_pre_pause_ran(counter_dir, incident)


async def test_a_graph_that_cannot_see_the_pause_never_marks_the_decision_applied(
    durable_url: str, counter_dir: Path
) -> None:
    """Same version string, and a node named ``approval`` exists — but inside a subgraph, so
    the new graph cannot see the top-level pause. The decision is recorded (nothing showed
    the graph could not take it), then running the graph finds it did not take it: it is
    left recorded and unapplied for a process with the real v1, never marked applied."""
    incident = f"blind-{uuid.uuid4().hex[:8]}"
    async with open_runtime(durable_url) as rt:
        v1 = VARIANTS["flat"](counter_dir)
        rt.register(v1, version="2026.1")
        await rt.start(v1, {"alert": ALERT}, incident_id=incident)
    async with open_runtime(durable_url) as rt:
        rt.register(VARIANTS["subgraph"](counter_dir), version="2026.1")
        with pytest.raises(GraphVersionUnavailable, match="cannot see") as refused:
            await rt.decide(incident, Approve(by="alice"))
        assert refused.value.needed == "2026.1"
        assert await rt.recover() == []
        assert await rt.recover(stalled=True) == []
        (record,) = await rt.history(incident)
        assert record.status.value == "approved" and record.applied_at is None
        snapshot = await rt.get(incident)
        assert snapshot.status != "finished", snapshot
        row = await rt.store.ledger.get_incident(incident)
        assert row is not None and row.is_open
        with pytest.raises(Conflict):  # decided already: nobody decides twice
            await rt.decide(incident, Reject(by="bob", reason="no"))
    only_pre_pause_ran(counter_dir, incident)

    async with open_runtime(durable_url) as rt:
        rt.register(VARIANTS["flat"](counter_dir), version="2026.1")
        (applied,) = await rt.recover()
        assert applied.approval_id == record.approval_id
        assert await rt.recover() == []
        assert (await rt.get(incident)).status == "finished"
        (record,) = await rt.history(incident)
        assert record.applied_at is not None
    ran = counts(counter_dir, incident)
    assert (ran["apply"], ran["finish"], ran["escalate"]) == (1, 1, 0)
    assert all(ran[n] == 1 for n in PRE_PAUSE)
