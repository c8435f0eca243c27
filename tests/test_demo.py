"""The bundled demo and the command line: what a newcomer runs first must work."""

from __future__ import annotations

import subprocess
import sys

import pytest

from durable_ir.cli import main


def test_demo_command_shows_the_pause_surviving_a_kill() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "durable_ir.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "killed with SIGKILL" in out
    assert "incident status before deciding: awaiting_approval" in out
    assert "stage runs: investigate=1, plan=1, remediate=1, triage=1" in out
    assert "refused: incident 'INC-1042' is not waiting for a decision: approved by alice" in out
    assert "refused: no incident 'INC-9999'" in out
    assert "UNEXPECTED" not in out


def test_cli_rejects_unknown_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["launch-missiles"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
