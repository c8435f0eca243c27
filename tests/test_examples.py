"""The scripts in ``examples/`` run as a user would run them: as separate processes, offline,
with no integration configured, each on a temporary SQLite database."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from durable_ir import open_runtime

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
INTEGRATION_VARIABLES = (
    "ANTHROPIC_API_KEY",
    "PAGERDUTY_ROUTING_KEY",
    "SLACK_BOT_TOKEN",
    "SLACK_CHANNEL",
    "DURABLE_IR_DATABASE_URL",
)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'examples.db'}"


def offline_env(**extra: str) -> dict[str, str]:
    """This environment without any integration configured."""
    return {k: v for k, v in os.environ.items() if k not in INTEGRATION_VARIABLES} | extra


def run_example(name: str, *args: str, cwd: Path, database_url: str) -> str:
    env = offline_env(DURABLE_IR_DATABASE_URL=database_url)
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_every_example_has_a_docstring_saying_how_to_run_it() -> None:
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts == ["approval_only.py", "full_agent.py", "rca_only.py"]
    for script in scripts:
        text = (EXAMPLES / script).read_text()
        assert text.startswith('"""') and f"python examples/{script}" in text, script


def test_approval_only(tmp_path: Path, database_url: str) -> None:
    out = run_example("approval_only.py", cwd=tmp_path, database_url=database_url)
    assert "status: awaiting_approval" in out
    assert "plan:   {'action': 'scale_consumers', 'queue': 'orders'" in out
    assert "(P2)" in out
    assert "decided: approved by alice" in out and "(applied: True)" in out
    assert "bob was too late: approved by alice" in out
    assert "status: finished" in out
    assert "  - scaled orders to 12 (approved by alice)" in out
    assert "backlog is growing, go" in out  # the audit trail keeps the reason
    assert "handed to on-call" not in out
    assert list(tmp_path.iterdir()) == []  # its database lived in its own temporary directory


def test_rca_only(tmp_path: Path, database_url: str) -> None:
    out = run_example("rca_only.py", cwd=tmp_path, database_url=database_url)
    config_error, noise = out.split("healthy (noise only):", 1)
    # The 15-minute window misses the config change; the 1-hour window finds it.
    assert "attempt 1: window 0:15:00" in config_error
    assert "attempt 2: window 1:00:00" in config_error
    assert "(config_error)" in config_error
    assert "→ confident after 2 attempt(s)" in config_error
    assert "suggested:  fix_config auth" in config_error
    assert "route:      confident" in config_error
    # Noise widens to the last window, then escalates with the best it had.
    assert "attempt 3: window 6:00:00" in noise
    assert "→ exhausted after 3 attempt(s)" in noise
    assert "route:      escalate" in noise
    # Embedded in the team's graph, routed by route_after_rca.
    assert "memory_leak in the team's graph: ticket opened → assigned to the owning team" in out
    assert "(noise only) in the team's graph: ticket opened → paged on-call: no confident" in out
    assert list(tmp_path.iterdir()) == []  # no database, no runtime


async def test_full_agent_once(tmp_path: Path, database_url: str) -> None:
    out = run_example("full_agent.py", "--once", cwd=tmp_path, database_url=database_url)
    assert f"database:  {database_url} (DURABLE_IR_DATABASE_URL)" in out
    assert "analyzer:  CorrelationAnalyzer, offline" in out
    assert "pagerduty: off" in out and "slack:     off" in out
    assert "waiting for approval (P1" in out
    assert "rotate_certificate payments [medium risk]: would rotate_certificate payments" in out
    assert "self-check: approved by self-check" in out
    assert "resolved" in out and "applied:      step 1 rotate_certificate payments" in out
    assert "verification: healthy" in out
    assert "durable-ir incidents approve" not in out  # --once does not wait for anyone

    # What it left in the database: a closed incident, and who approved it.
    async with open_runtime(database_url) as rt:
        (incident,) = await rt.incidents()
        assert incident.status == "closed" and incident.outcome == "resolved"
        assert f"opened incident {incident.incident_id}" in out
        (approval,) = await rt.history(incident.incident_id)
        assert approval.decided_by == "self-check" and approval.applied_at is not None


def test_full_agent_waits_for_the_printed_command_from_another_process(tmp_path: Path) -> None:
    """Without --once: the agent pauses and prints a command; running that command in another
    process approves the incident, and the waiting agent reports it resolved."""
    agent = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "full_agent.py"), "--monitor-interval", "0.5"],
        cwd=tmp_path,  # no DURABLE_IR_DATABASE_URL: the default file, in the working directory
        env=offline_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert agent.stdout is not None
        seen = []
        for line in agent.stdout:
            seen.append(line)
            if "durable-ir incidents approve" in line:
                break
        printed = "".join(seen)
        assert "durable-ir incidents approve" in printed, printed
        assert f"database:  sqlite:///{tmp_path / 'durable_ir.db'} (default)" in printed
        words = shlex.split(line.replace("'<your name>'", "carol"))
        assert words[0].startswith("PYTHONPATH=") and words[1] == "durable-ir", words
        approver = subprocess.run(
            [sys.executable, "-m", "durable_ir.cli", *words[2:]],
            cwd=tmp_path.parent,  # the command works from any directory
            env=offline_env(PYTHONPATH=words[0].removeprefix("PYTHONPATH=")),
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert approver.returncode == 0, approver.stdout + approver.stderr
        assert "approved by carol" in approver.stdout
        rest, _ = agent.communicate(timeout=120)
    finally:
        agent.kill()
        agent.wait()
    assert agent.returncode == 0, printed + rest
    assert "decision:     approved by carol" in rest
    assert "verification: healthy" in rest


def test_full_agent_reports_half_configured_slack(tmp_path: Path, database_url: str) -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import full_agent; "
        "print(dict(full_agent.from_environment().report))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(EXAMPLES)],
        cwd=tmp_path,
        env=offline_env(DURABLE_IR_DATABASE_URL=database_url, SLACK_CHANNEL="C0123456789"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "'slack': 'off: SLACK_BOT_TOKEN is not set'" in done.stdout
