"""Logs as an operator gets them: ``durable-ir serve --log-level`` applies to durable-ir's
loggers (its INFO lines show), ``--log-format json`` or ``DURABLE_IR_LOG_FORMAT=json`` makes
every line one JSON object, and the lines for an incident's decisions and expiry name the
incident and the approval. Plus :mod:`durable_ir.logs` on its own: the JSON fields, the
escaping of text mode, the levels."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from durable_ir.demo.agent import DEMO_INCIDENTS, WINDOW_LABEL, demo_alert
from durable_ir.errors import ConfigurationError
from durable_ir.logs import configure_logging, log_context, log_format
from support.service import ServiceProcess, auth, service_env, wait_for

# -- durable-ir serve, over real HTTP ---------------------------------------------------------


def drive(url: str) -> dict[str, tuple[str, str]]:
    """Three incidents through the service: one approved, one rejected, one left to expire
    (a one-second approval window). Returns {kind: (incident id, approval id)}."""
    client = httpx.Client(base_url=url, timeout=60)
    run = uuid.uuid4().hex[:8]
    opened = {}
    for kind, spec in zip(("approve", "reject", "expire"), DEMO_INCIDENTS, strict=True):
        alert = demo_alert(spec, run=run)
        if kind == "expire":
            alert["labels"][WINDOW_LABEL] = "1"
        response = client.post("/alerts", json=alert, headers=auth("alertmanager"))
        assert response.status_code == 202, response.text
        opened[kind] = response.json()["incidents"][0]["incident_id"]

    def detail(incident: str) -> dict[str, Any]:
        return dict(client.get(f"/incidents/{incident}", headers=auth("vic")).json())

    ids = {}
    for kind in ("approve", "reject"):
        incident = opened[kind]
        wait_for(
            lambda incident=incident: detail(incident)["status"] == "awaiting_approval",
            what=f"{incident} to wait for approval",
        )
        body = {"reason": "not now"} if kind == "reject" else {}
        response = client.post(
            f"/incidents/{incident}/{kind}?wait=true", json=body, headers=auth("alice")
        )
        assert response.status_code == 200, response.text
        ids[kind] = (incident, response.json()["approvals"][-1]["approval_id"])
    incident = opened["expire"]
    expired = wait_for(
        lambda: [a for a in detail(incident)["approvals"] if a["status"] == "expired"],
        what=f"{incident}'s approval to expire",
    )
    ids["expire"] = (incident, expired[0]["approval_id"])
    wait_for(lambda: detail(incident)["status"] == "finished", what=f"{incident} to escalate")
    # A path with a newline and a fake log line: refused (422), and no line is forged.
    forged = client.get("/incidents/x%0AERROR%20durable_ir:%20forged", headers=auth("vic"))
    assert forged.status_code == 422
    return ids


@pytest.fixture
def serve_logs(durable_url: str, tmp_path: Path) -> Iterator[Any]:
    """Run ``durable-ir serve`` with extra arguments and environment, drive it, stop it;
    yield a function returning (ids, the output's lines)."""
    started: list[ServiceProcess] = []

    def run(*args: str, **env: str) -> tuple[dict[str, tuple[str, str]], list[str]]:
        log = tmp_path / f"serve-{len(started)}.log"
        # The demo agent, asked for explicitly: serve simulates nothing by default.
        server = ServiceProcess(durable_url, "--demo", *args, env=service_env(**env), log=log)
        started.append(server)
        server.wait_ready()
        try:
            ids = drive(server.url)
        finally:
            server.stop()
        return ids, log.read_text(encoding="utf-8").splitlines()

    yield run
    for server in started:
        server.stop()


def json_lines(lines: list[str]) -> list[dict[str, Any]]:
    """Every line of the output as JSON: a line that is not one object fails the test."""
    entries = []
    for line in lines:
        entry = json.loads(line)
        assert isinstance(entry, dict), line
        assert {"time", "level", "logger", "message"} <= set(entry), entry
        entries.append(entry)
    return entries


def one(entries: list[dict[str, Any]], logger: str, message: str) -> dict[str, Any]:
    found = [e for e in entries if e["logger"] == logger and e["message"].startswith(message)]
    assert len(found) == 1, (logger, message, [e["message"] for e in entries])
    return found[0]


def names_ids(entry: dict[str, Any], incident: str, approval: str) -> None:
    """The line names the incident and the approval: in its message, and in the fields
    when the call passed them with ``extra=`` (never different ones)."""
    assert incident in entry["message"] and approval in entry["message"], entry
    assert entry.get("incident_id", incident) == incident, entry
    assert entry.get("approval_id", approval) == approval, entry


@pytest.mark.slow
@pytest.mark.parametrize("how", ["flag", "environment"])
def test_serve_json_logs_one_object_per_line_with_each_decision(serve_logs: Any, how: str) -> None:
    if how == "flag":
        ids, lines = serve_logs("--log-format", "json", "--log-level", "info")
    else:
        ids, lines = serve_logs(DURABLE_IR_LOG_FORMAT="json")
    entries = json_lines(lines)
    assert all(e["time"].endswith("Z") for e in entries)
    assert not [e for e in entries if e["level"] == "DEBUG"]

    one(entries, "durable_ir.service", "durable-ir service up")
    one(entries, "uvicorn.error", "Application startup complete")
    incident, approval = ids["approve"]
    recorded = one(entries, "durable_ir.approval", f"recorded approved on incident {incident}")
    assert recorded["level"] == "INFO"
    names_ids(recorded, incident, approval)
    names_ids(one(entries, "durable_ir.approval", f"applied approved on incident {incident}"),
              incident, approval)  # fmt: skip
    incident, approval = ids["reject"]
    names_ids(one(entries, "durable_ir.approval", f"recorded rejected on incident {incident}"),
              incident, approval)  # fmt: skip
    incident, approval = ids["expire"]
    expired = one(entries, "durable_ir.sla", f"expired approval {approval} of incident {incident}")
    assert expired["level"] == "INFO"
    names_ids(expired, incident, approval)

    access = [e for e in entries if e["logger"] == "uvicorn.access"]
    assert {"client", "method", "path", "status"} <= set(access[0])
    assert any(e["method"] == "POST" and e["path"] == "/alerts" and e["status"] == 202
               for e in access)  # fmt: skip
    (refused,) = [e for e in access if "forged" in e["path"]]
    assert refused["path"] == "/incidents/x%0AERROR%20durable_ir:%20forged"
    assert refused["status"] == 422


@pytest.mark.slow
def test_serve_text_logs_show_durable_ir_info_lines(serve_logs: Any) -> None:
    """The default: text, at info — durable-ir's INFO lines are there (before, only
    warnings got through), each on one line."""
    ids, lines = serve_logs()
    incident, approval = ids["approve"]
    recorded = [line for line in lines if f"recorded approved on incident {incident}" in line]
    assert len(recorded) == 1, lines
    assert " INFO durable_ir.approval: " in recorded[0] and approval in recorded[0]
    incident, approval = ids["expire"]
    assert any(
        " INFO durable_ir.sla: " in line and f"expired approval {approval}" in line
        for line in lines
    )
    assert not [line for line in lines if line.startswith("ERROR durable_ir: forged")]


# -- durable_ir.logs on its own ------------------------------------------------------------


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """configure_logging() changes the process's logging: put it back afterwards."""
    root = logging.getLogger()
    ours = logging.getLogger("durable_ir")
    saved = (root.handlers[:], root.level, ours.handlers[:], ours.level, ours.propagate)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.handlers[:], root.level = saved[0], saved[1]
        ours.handlers[:], ours.level, ours.propagate = saved[2], saved[3], saved[4]


def test_configure_logging_json_carries_ids_and_leaves_other_libraries_at_warning(
    restored_logging: None,
) -> None:
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream)
    log = logging.getLogger("durable_ir.test")
    log.debug("a detail")
    log.info(
        "recorded %s on incident %s",
        "approved",
        "inc-1",
        extra=log_context("inc-1", "appr-1", decided_by="alice"),
    )
    try:
        raise ValueError("line one\nline two")
    except ValueError:
        log.exception("it broke on %s", "inc\nforged")
    logging.getLogger("httpx").info("a third-party detail")
    logging.getLogger("httpx").warning("a third-party warning")
    lines = stream.getvalue().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [(e["logger"], e["level"]) for e in entries] == [
        ("durable_ir.test", "DEBUG"),
        ("durable_ir.test", "INFO"),
        ("durable_ir.test", "ERROR"),
        ("httpx", "WARNING"),
    ]
    assert entries[1]["message"] == "recorded approved on incident inc-1"
    assert (entries[1]["incident_id"], entries[1]["approval_id"]) == ("inc-1", "appr-1")
    assert entries[1]["decided_by"] == "alice"
    assert "incident_id" not in entries[0]
    assert entries[2]["message"] == "it broke on inc\nforged"  # one line: JSON escapes it
    assert "ValueError: line one\nline two" in entries[2]["exception"]


def test_configure_logging_text_escapes_what_could_forge_a_line(restored_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("info", "text", stream=stream)
    logging.getLogger("durable_ir.test").warning("refused %r and %s", "a", "b\r\nERROR x")
    logging.getLogger("durable_ir.test").debug("not at info")
    (line,) = stream.getvalue().splitlines()
    assert line.endswith(" WARNING durable_ir.test: refused 'a' and b\\r\\nERROR x")


def test_log_format_comes_from_the_flag_then_the_environment() -> None:
    assert log_format(None, {}) == "text"
    assert log_format(None, {"DURABLE_IR_LOG_FORMAT": "json"}) == "json"
    assert log_format("text", {"DURABLE_IR_LOG_FORMAT": "json"}) == "text"
    with pytest.raises(ConfigurationError, match="text or json"):
        log_format(None, {"DURABLE_IR_LOG_FORMAT": "yaml"})


def test_serve_refuses_an_unknown_log_format_from_the_environment(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = service_env(DURABLE_IR_LOG_FORMAT="xml")
    done = subprocess.run(
        [sys.executable, "-m", "durable_ir.cli", "serve", "--demo", "--database-url", "memory://"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done
    assert "DURABLE_IR_LOG_FORMAT must be text or json" in done.stderr


async def test_json_lines_for_every_incident_event_carry_its_ids(
    restored_logging: None, tmp_path: Path
) -> None:
    """Opened, decision recorded and applied, escalation; a run taken over, and then stopped
    as a crash loop: one INFO (takeover: WARNING, crash loop: ERROR) JSON line each, with
    the incident's id (and the approval's) as fields."""
    from datetime import UTC, datetime

    from langgraph.graph import END, START, StateGraph

    from durable_ir import FixedClock, Reject, open_runtime
    from support.graphs import IncidentState
    from support.incident_parts import ALERT, build_incident_graph

    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    clock = FixedClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    counters = tmp_path / "counters"
    counters.mkdir()

    def broken(state: Any) -> dict[str, Any]:
        raise RuntimeError("node broke")

    crashing: StateGraph[Any, Any, Any, Any] = StateGraph(IncidentState)
    crashing.add_node("broken", broken)
    crashing.add_node("escalate", lambda state: {"escalated": True})
    crashing.add_edge(START, "broken")
    crashing.add_edge("broken", END)
    crashing.add_edge("escalate", END)

    async with open_runtime(
        f"sqlite:///{tmp_path / 'logs.db'}", clock=clock, max_run_attempts=1
    ) as rt:
        intake = await rt.ingest(
            build_incident_graph(counters).build(), ALERT, incident_id="inc-log"
        )
        snapshot = intake.snapshot
        assert snapshot is not None and snapshot.pending_approval is not None
        approval = snapshot.pending_approval.approval_id
        await rt.decide("inc-log", Reject(by="bob", reason="wrong pool"))
        with pytest.raises(RuntimeError):
            await rt.start(crashing, {}, incident_id="inc-crash", graph_name="crashing")
        for _ in range(2):  # the retry is taken over, fails again, then it is a crash loop
            clock.advance(minutes=5)
            with contextlib.suppress(Exception):
                await rt.recover_runs()

    entries = [json.loads(line) for line in stream.getvalue().splitlines()]

    def event(name: str, incident: str) -> dict[str, Any]:
        found = [e for e in entries if e.get("event") == name and e.get("incident_id") == incident]
        assert len(found) >= 1, (name, incident, [e["message"] for e in entries])
        return found[0]

    assert event("opened", "inc-log")["level"] == "INFO"
    recorded = event("decision", "inc-log")
    assert (recorded["approval_id"], recorded["decided_by"]) == (approval, "bob")
    assert event("applied", "inc-log")["approval_id"] == approval
    assert event("escalated", "inc-log")["level"] == "INFO"
    assert event("takeover", "inc-crash")["level"] == "WARNING"
    assert event("crash_loop", "inc-crash")["level"] == "ERROR"
