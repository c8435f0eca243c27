"""Arbitrary JSON as an answer never approves and never advances the graph.

Two doors are tried: the safe one (``Runtime.decide``, which must refuse anything that is not a
well-formed decision) and the back door (resuming the interrupt directly with
``Command(resume=...)``, bypassing the ledger), which the approval node must refuse too.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.types import Command

from durable_ir import DecisionNotRecorded, InvalidDecision, Runtime, open_runtime, parse_decision
from support import strategies
from support.graphs import Counters, build_graph

json_values = strategies.json_values(allow_nan=False)
# Answers shaped like decisions, to get past shallow checks more often.
decision_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["approve", "edit", "reject", "expire", "APPROVE", "yes", ""])},
    optional={
        "by": json_values,
        "reason": json_values,
        "plan": json_values,
        "approved": st.booleans(),
        "decisions": json_values,
    },
)
answers = json_values | decision_like


async def assert_still_waiting(rt: Runtime, incident: str, counters: Counters) -> None:
    snapshot = await rt.get(incident)
    assert snapshot.status == "awaiting_approval"
    assert snapshot.pending_approval is not None and snapshot.pending_approval.is_pending
    assert "approval" not in snapshot.values
    assert counters.read(incident)["apply"] == 0 and counters.read(incident)["escalate"] == 0


@pytest.mark.parametrize("url", ["memory://", "sqlite"])
def test_arbitrary_answers_never_approve(url: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite:///{tmp}/incidents.db" if url == "sqlite" else url
        counters = Counters(tmp)

        @settings(
            max_examples=60 if url == "memory://" else 25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(answer=answers, pass_through_parse=st.booleans())
        def check(answer: Any, pass_through_parse: bool) -> None:
            asyncio.run(one_answer(database_url, counters, answer, pass_through_parse))

        check()


async def one_answer(url: str, counters: Counters, answer: Any, pass_through_parse: bool) -> None:
    incident = f"prop-{uuid.uuid4()}"
    async with open_runtime(url) as rt:
        graph = rt.register(build_graph(counters.directory))
        paused = await rt.start(graph.compiled, {}, incident_id=incident)
        assert paused.pending_approval is not None
        approval_id = paused.pending_approval.approval_id

        # The safe door: anything but a valid decision object is refused.
        if pass_through_parse:
            try:
                decision = parse_decision(answer)
            except InvalidDecision:
                pass
            else:  # a well-formed decision by its own rules: that one may legitimately decide
                assert isinstance(answer, dict) and answer["type"] in {
                    "approve",
                    "edit",
                    "reject",
                    "expire",
                }
                assert isinstance(decision.by, str) and decision.by.strip()
                return
        else:
            with pytest.raises(InvalidDecision):
                await rt.decide(incident, answer)
        await assert_still_waiting(rt, incident, counters)

        # The back door: resuming the interrupt directly, bypassing the ledger.
        config = rt.config_for(incident)
        with pytest.raises(DecisionNotRecorded):
            await graph.compiled.ainvoke(
                Command(resume={approval_id: answer}), config, durability="sync"
            )
        await assert_still_waiting(rt, incident, counters)
        # Continuing the run either re-delivers the stored junk (refused again) or, where the
        # saver could not store it (e.g. ints beyond 64 bits), pauses on the same interrupt.
        try:
            result = await graph.compiled.ainvoke(None, config, durability="sync")
        except DecisionNotRecorded:
            pass
        else:
            assert [i.id for i in result["__interrupt__"]] == [approval_id]
        await assert_still_waiting(rt, incident, counters)
