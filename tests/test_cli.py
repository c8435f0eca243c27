"""``durable-ir incidents list|show|approve|reject`` on SQLite and PostgreSQL, on incidents the
demo agent paused for approval, including every error exit (2 bad input, 3 not found,
4 conflict)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from durable_ir import open_runtime
from durable_ir.cli import EXIT_CONFLICT, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, main
from durable_ir.demo.agent import DEMO_GRAPH_NAME, DEMO_INCIDENTS, build_demo_graph, demo_alert

IDS = ["INC-1", "INC-2"]


async def open_incidents(url: str) -> None:
    """Two incidents of the demo agent, each paused for approval."""
    async with open_runtime(url) as rt:
        graph = build_demo_graph("offline")
        for incident_id, spec in zip(IDS, DEMO_INCIDENTS, strict=False):
            taken = await rt.ingest(
                graph, demo_alert(spec, run="CLI"), incident_id=incident_id,
                graph_name=DEMO_GRAPH_NAME,
            )  # fmt: skip
            assert taken.snapshot is not None
            assert taken.snapshot.status == "awaiting_approval"


async def pending(url: str, incident_id: str) -> bool:
    async with open_runtime(url) as rt:
        latest = await rt.store.ledger.latest(incident_id)
        return latest is not None and latest.is_pending


@pytest.fixture
def url(durable_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("COLUMNS", "160")
    asyncio.run(open_incidents(durable_url))
    return durable_url


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str], url: str) -> None:
        self.capsys = capsys
        self.url = url

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(["incidents", *args, "--database-url", self.url])
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *args: str) -> tuple[int, Any]:
        code, out, _ = self(*args, "--json")
        return code, json.loads(out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], url: str) -> Cli:
    return Cli(capsys, url)


def test_list(cli: Cli) -> None:
    code, rows = cli.json("list")
    assert code == EXIT_OK
    assert sorted(r["incident_id"] for r in rows) == IDS
    assert all(r["status"] == "open" and r["graph"] == DEMO_GRAPH_NAME for r in rows)
    assert all(r["pending_approval"]["status"] == "pending" for r in rows)

    assert cli.json("list", "--status", "closed") == (EXIT_OK, [])
    code, out, _ = cli("list", "--status", "open")
    assert code == EXIT_OK
    assert "2 incident(s), open" in out
    assert "INC-1" in out and "HighErrorRate on checkout" in out


def test_show(cli: Cli) -> None:
    code, shown = cli.json("show", "INC-1")
    assert code == EXIT_OK
    assert shown["incident"]["title"] == "HighErrorRate on checkout"
    (approval,) = shown["approvals"]
    assert approval["status"] == "pending" and approval["severity"] == "P1"
    state = shown["state"]
    assert state["plan"]["steps"][0]["action"] == "rollback"
    assert [e["stage"] for e in state["timeline"]] == ["ingest", "triage", "rca", "plan",
                                                        "dry_run"]  # fmt: skip
    code, out, _ = cli("show", "INC-1")
    assert code == EXIT_OK
    assert "approvals (ledger" in out and "pending" in out
    assert "P1 approval requested" in out  # the timeline, ledger rows merged in


def test_list_and_show_need_no_graph(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_graph(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("list and show must not build a graph")

    monkeypatch.setattr("durable_ir.demo.agent.build_demo_graph", no_graph)
    monkeypatch.setattr("durable_ir.cli.load_graph", no_graph)
    assert cli("list")[0] == EXIT_OK
    assert cli("show", "INC-2")[0] == EXIT_OK


def test_approve_then_a_second_decision_is_a_conflict_naming_the_winner(cli: Cli) -> None:
    code, out, err = cli("approve", "INC-1", "--by", "alice", "--reason", "safe")
    assert code == EXIT_OK, err
    assert "approved by alice" in out
    assert "incident status: finished, resolved" in out

    code, out, err = cli("approve", "INC-1", "--by", "bob")
    assert code == EXIT_CONFLICT
    assert out == ""
    (line,) = err.strip().splitlines()
    assert "not waiting for a decision: approved by alice" in line

    code, result = cli.json("reject", "INC-1", "--by", "bob", "--reason", "too late")
    assert code == EXIT_CONFLICT
    assert result["error"] == "conflict"
    assert result["winner"]["decided_by"] == "alice"
    assert result["winner"]["status"] == "approved"

    code, rows = cli.json("list", "--status", "closed")
    assert [(r["incident_id"], r["outcome"]) for r in rows] == [("INC-1", "resolved")]


def test_reject(cli: Cli) -> None:
    code, result = cli.json("reject", "INC-2", "--by", "carol", "--reason", "by hand")
    assert code == EXIT_OK
    assert result["decision"]["status"] == "rejected"
    assert result["decision"]["reason"] == "by hand"
    assert result["status"] == "finished"
    assert result["outcome"]["status"] == "escalated"
    assert result["outcome"]["reason"] == "rejected"


def test_bad_input_exits_2_and_records_nothing(
    cli: Cli, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as missing:
        main(["incidents", "reject", "INC-2", "--by", "carol", "--database-url", url])
    assert missing.value.code == EXIT_USAGE  # a rejection needs a reason
    assert "--reason" in capsys.readouterr().err

    code, _, err = cli("reject", "INC-2", "--by", "carol", "--reason", "   ")
    assert code == EXIT_USAGE
    assert "reason must not be empty" in err

    code, _, err = cli("approve", "INC-2", "--by", "carol", "--graph", "no_such_module:graph")
    assert code == EXIT_USAGE
    assert "--graph no_such_module:graph" in err

    code, _, err = cli("approve", "INC-2", "--by", "carol", "--graph", "durable_ir.cli:EXIT_OK")
    assert code == EXIT_USAGE
    assert "not a StateGraph" in err

    assert asyncio.run(pending(url, "INC-2"))  # none of these touched the incident


def test_unknown_incident_exits_3(cli: Cli) -> None:
    for args in (
        ["show", "INC-404"],
        ["approve", "INC-404", "--by", "alice"],
        ["reject", "INC-404", "--by", "alice", "--reason", "no"],
    ):
        code, out, err = cli(*args)
        assert code == EXIT_NOT_FOUND, args
        assert out == ""
        assert err.strip() == f"durable-ir incidents {args[0]}: no incident 'INC-404'"
    code, result = cli.json("approve", "INC-404", "--by", "alice")
    assert (code, result["error"]) == (EXIT_NOT_FOUND, "not_found")


def test_the_database_url_defaults_to_the_environment(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DURABLE_IR_DATABASE_URL", url)
    capsys.readouterr()
    assert main(["incidents", "list", "--json"]) == EXIT_OK
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_a_missing_sqlite_file_is_refused_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.db"
    assert main(["incidents", "list", "--database-url", f"sqlite:///{missing}"]) == EXIT_USAGE
    assert "no SQLite database at" in capsys.readouterr().err
    assert not missing.exists()


SERVE_DEMO = Path(__file__).resolve().parent.parent / "examples" / "serve-demo.toml"
SERVE_REAL = SERVE_DEMO.with_name("serve.toml")


def test_approve_and_reject_resume_the_graph_of_a_serve_config(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An incident served from a config file is decided with that file (--config, or
    $DURABLE_IR_CONFIG); a config whose graph is not the incident's records nothing."""
    code, out, err = cli("approve", "INC-1", "--by", "carol", "--config", str(SERVE_REAL))
    assert code == EXIT_CONFLICT and "which is not registered here" in err, (out, err)
    assert asyncio.run(pending(cli.url, "INC-1"))  # the wrong graph decided nothing

    code, out, err = cli("approve", "INC-1", "--by", "carol", "--config", str(SERVE_DEMO))
    assert code == EXIT_OK, err
    assert "approved by carol" in out and "resolved" in out

    monkeypatch.setenv("DURABLE_IR_CONFIG", str(SERVE_DEMO))
    code, out, err = cli("reject", "INC-2", "--by", "carol", "--reason", "not now")
    assert code == EXIT_OK, err
    assert "rejected by carol" in out and "escalated" in out


def test_graph_and_config_together_are_refused(cli: Cli) -> None:
    code, _, err = cli(
        "approve", "INC-1", "--by", "carol", "--config", str(SERVE_DEMO),
        "--graph", "durable_ir.demo.agent:build_demo_graph",
    )  # fmt: skip
    assert code == EXIT_USAGE and "--graph and --config both name the graph" in err
    assert asyncio.run(pending(cli.url, "INC-1"))
    code, _, err = cli("approve", "INC-1", "--by", "carol", "--config", "/nonexistent.toml")
    assert code == EXIT_USAGE and "/nonexistent.toml: no such file" in err
