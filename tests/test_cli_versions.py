"""``durable-ir versions list|check|migrate`` and deciding from the CLI across a graph change,
on SQLite and PostgreSQL: incidents paused on the demo agent's graph, a deploy of a changed
graph checked, refused, migrated."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from durable_ir import open_runtime
from durable_ir.cli import EXIT_CONFLICT, EXIT_OK, main
from durable_ir.cli_versions import EXIT_STRANDED
from durable_ir.demo.agent import DEMO_GRAPH_NAME
from durable_ir.graphs import graph_fingerprint
from support.cli_graphs import FREEZE_MARKS_ENV, with_freeze_check
from test_cli import IDS, open_incidents

DEMO = "durable_ir.demo.agent:build_demo_graph"
NEXT = "support.cli_graphs:with_freeze_check"
BROKEN = "support.cli_graphs:without_approval"


@pytest.fixture
def url(durable_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv(FREEZE_MARKS_ENV, str(tmp_path / "freeze-marks"))
    asyncio.run(open_incidents(durable_url))
    return durable_url


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    capsys.readouterr()
    code = main([*args, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


async def ledger_rows(url: str) -> dict[str, Any]:
    async with open_runtime(url) as rt:
        return {i: await rt.store.ledger.latest(i) for i in IDS}


def test_list_shows_incidents_per_version(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, body, _ = run(capsys, "versions", "list", "--database-url", url)
    assert code == EXIT_OK
    (row,) = body["versions"]
    assert row["graph"] == DEMO_GRAPH_NAME and (row["open"], row["awaiting_approval"]) == (2, 2)
    assert row["registered"] is False  # this command registered no graph

    code, body, _ = run(capsys, "versions", "list", "--database-url", url, "--graph", NEXT)
    assert code == EXIT_OK
    by_version = {r["graph_version"]: r for r in body["versions"]}
    assert by_version[graph_fingerprint(with_freeze_check())]["default"] is True
    assert by_version[graph_fingerprint(with_freeze_check())]["open"] == 0


def test_check_fails_only_when_a_deploy_strands_incidents(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ("--database-url", url)
    code, body, err = run(capsys, "versions", "check", *common, "--graph", BROKEN)
    assert code == EXIT_STRANDED, err
    assert not body["ok"] and {i["incident_id"] for i in body["incidents"]} == set(IDS)
    assert all("approval" in i["reason"] for i in body["incidents"])

    code, body, err = run(capsys, "versions", "check", *common, "--graph", NEXT)
    assert code == EXIT_OK, err
    assert body["ok"] and all(i["can_move"] for i in body["incidents"]), body

    code, body, err = run(
        capsys, "versions", "check", *common, "--graph", BROKEN, "--keep-graph", DEMO
    )
    assert code == EXIT_OK, err
    assert body == {"ok": True, "incidents": []}


def test_a_changed_graph_refuses_then_migrates_then_runs_the_new_node(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    common = ("--database-url", url)
    approve = ("incidents", "approve", IDS[0], "--by", "alice", *common)

    code, body, err = run(capsys, *approve, "--graph", NEXT)
    assert code == EXIT_CONFLICT
    assert body["error"] == "conflict" and "not registered here" in body["message"], body
    assert all(r.is_pending for r in asyncio.run(ledger_rows(url)).values())

    code, body, err = run(capsys, "versions", "migrate", *common, "--graph", NEXT)
    assert code == EXIT_OK, err
    assert body["dry_run"] and [i["moved"] for i in body["items"]] == [False, False]
    code, body, err = run(capsys, *approve, "--graph", NEXT)
    assert code == EXIT_CONFLICT  # a dry run moved nothing

    code, body, err = run(
        capsys, "versions", "migrate", *common, "--graph", NEXT, "--incident", IDS[0], "--apply"
    )
    assert code == EXIT_OK, err
    assert [(i["incident_id"], i["moved"]) for i in body["items"]] == [(IDS[0], True)]

    code, body, err = run(capsys, *approve, "--graph", NEXT)
    assert code == EXIT_OK, err
    assert body["applied"] is True and body["status"] == "finished"
    marks = tmp_path / "freeze-marks"
    assert sorted(p.name for p in marks.iterdir()) == [IDS[0]]

    # The other incident stayed on the demo graph, and finishes there with it kept.
    code, body, err = run(
        capsys,
        "incidents", "approve", IDS[1], "--by", "bob", *common,
        "--graph", NEXT, "--keep-graph", DEMO,
    )  # fmt: skip
    assert code == EXIT_OK, err
    assert body["applied"] is True
    assert sorted(p.name for p in marks.iterdir()) == [IDS[0]]


def test_migrating_to_a_graph_without_the_paused_node_is_refused_and_changes_nothing(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = asyncio.run(ledger_rows(url))
    code, body, _ = run(
        capsys, "versions", "migrate", "--database-url", url, "--graph", BROKEN, "--apply"
    )
    assert code == EXIT_STRANDED
    assert [i["moved"] for i in body["items"]] == [False, False]
    assert all("does not have as an approval node" in i["reason"] for i in body["items"])
    assert asyncio.run(ledger_rows(url)) == before


def test_a_deploy_described_by_a_serve_config_is_checked(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`versions check --config`: the graph a `durable-ir serve` config file describes is the
    deploy checked (the demo file: the graph the incidents paused on; a file naming the broken
    graph: stranded); without a graph the command says what it needs."""
    common = ("--database-url", url)
    demo = Path(__file__).resolve().parent.parent / "examples" / "serve-demo.toml"
    code, body, err = run(capsys, "versions", "check", *common, "--config", str(demo))
    assert code == EXIT_OK and body["ok"], (body, err)

    broken = tmp_path / "broken.toml"
    broken.write_text(f'[graph]\nfactory = "{BROKEN}"\n')
    code, body, err = run(capsys, "versions", "check", *common, "--config", str(broken))
    assert code == EXIT_STRANDED and not body["ok"], err

    capsys.readouterr()
    assert main(["versions", "check", *common]) == 2
    assert "versions check needs the deploy's graph: --graph" in capsys.readouterr().err
    args = ["versions", "check", *common, "--graph", NEXT, "--config", str(demo)]
    assert main(args) == 2
    assert "--graph and --config both name the graph" in capsys.readouterr().err
