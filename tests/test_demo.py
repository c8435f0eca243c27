"""The bundled demo and the command line: what a newcomer runs first must work."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from durable_ir.cli import main

FINAL_LINE = re.compile(r"demo incidents=3 resolved=1 escalated=2 restarts_survived=[1-9]")


def durable_ir_command() -> list[str]:
    """The installed console script, else the same entry point through ``python -m``."""
    script = Path(sys.executable).parent / "durable-ir"
    return [str(script)] if script.exists() else [sys.executable, "-m", "durable_ir.cli"]


def offline_env() -> dict[str, str]:
    """No API key (so no network), and no database URL to pick up by accident."""
    env = dict(os.environ)
    env.pop("ANTHROPIC_API_KEY", None)
    env.pop("DURABLE_IR_DATABASE_URL", None)
    env["COLUMNS"] = "120"
    return env


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*durable_ir_command(), *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=offline_env(),
    )


def test_demo_runs_three_incidents_across_a_kill() -> None:
    done = run("demo")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.rstrip("\n").splitlines()
    assert FINAL_LINE.fullmatch(lines[-1]), lines[-1]
    out = " ".join(done.stdout.split())  # rich wraps long lines: match on words
    assert "CorrelationAnalyzer" in out  # says which analyzer, and it is the offline one
    # intake and dedup
    assert re.search(r"the same alert again: attached to INC-\w+-1 \(2 alerts received\)", out)
    # the kill and the restart, in the narration and on every incident's timeline
    assert "killed with SIGKILL" in out
    assert out.count("restarted after the kill: found awaiting_approval") == 3
    assert out.count("killed with SIGKILL") >= 4  # the narration, then each timeline
    # the three decisions, and the late one refused with the winner
    assert re.search(r"refused, Conflict: incident 'INC-\w+-1' is not waiting for a decision: "
                     r"approved by alice@oncall", out)  # fmt: skip
    assert "rejected by carol@dba" in out
    assert "expired by system:sla" in out
    assert "RESOLVED" in out and out.count("ESCALATED") >= 2
    assert "demo FAILED" not in done.stderr


@pytest.mark.postgres
def test_demo_on_a_database_url_leaves_the_incidents_for_the_cli(postgres_url: str) -> None:
    done = run("demo", "--database-url", postgres_url, "--offline")
    assert done.returncode == 0, done.stdout + done.stderr
    assert FINAL_LINE.fullmatch(done.stdout.rstrip("\n").splitlines()[-1])

    listed = run("incidents", "list", "--database-url", postgres_url, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert sorted((r["status"], r["outcome"]) for r in rows) == [
        ("closed", "escalated"),
        ("closed", "escalated"),
        ("closed", "resolved"),
    ]
    first = min(r["incident_id"] for r in rows)
    assert next(r for r in rows if r["incident_id"] == first)["alerts_received"] == 2


def test_demo_fails_clearly_when_the_database_is_unreachable() -> None:
    done = run("demo", "--database-url", "postgresql://nobody@127.0.0.1:1/nothing")
    assert done.returncode != 0
    assert "demo FAILED: worker A" in done.stderr


def test_cli_rejects_unknown_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["launch-missiles"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
