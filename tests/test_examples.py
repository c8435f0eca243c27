"""The scripts in ``examples/`` run as a user would run them: as separate processes, offline,
with no integration configured, each on a temporary SQLite database."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from durable_ir import open_runtime
from durable_ir.cli import build_parser
from durable_ir.serve_config import ConfigFileError, build_serve_plan, validate_serve_config
from support.service import ServiceProcess, auth, service_env, wait_for

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


# -- the docs' serve and config examples work as written -------------------------------------

ROOT = EXAMPLES.parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *EXAMPLES.glob("**/*.md")])
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def fenced(language: str) -> list[tuple[Path, str]]:
    """Every fenced block of ``language`` in the docs, with its file."""
    return [
        (path, block)
        for path in DOCS
        for lang, block in FENCE.findall(path.read_text(encoding="utf-8"))
        if lang == language
    ]


class AnySecret(Mapping[str, str]):
    """An environment in which every variable a config names is set."""

    def __getitem__(self, name: str) -> str:
        return f"test-value-of-{name}"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` laid over it, table by table."""
    out = dict(base)
    for key, value in extra.items():
        old = out.get(key)
        both = isinstance(old, Mapping) and isinstance(value, Mapping)
        out[key] = merged(old, value) if both else value  # type: ignore[arg-type]
    return out


def importable(spec: str) -> bool:
    return importlib.util.find_spec(spec.partition(":")[0].split(".")[0]) is not None


def test_every_config_example_validates_and_builds() -> None:
    """Each TOML block of the docs and each examples/*.toml is a valid config; those whose
    imports are installed here also build (secrets' variables set to test values)."""
    examples = [(p, p.read_text(encoding="utf-8")) for p in sorted(EXAMPLES.glob("**/*.toml"))]
    assert {p.name for p, _ in examples} >= {"serve.toml", "serve-demo.toml"}
    blocks = fenced("toml") + examples
    assert len(blocks) >= 9, [str(p) for p, _ in blocks]
    base = tomllib.loads(blocks[0][1])  # docs/service.md's smallest config for real use
    assert set(base) == {"graph", "gatherer"}, base
    for path, text in blocks:
        data = tomllib.loads(text)
        if "demo" not in data and "factory" not in data.get("graph", {}):
            data = merged(base, data)  # a block showing one section: on the smallest config
        config = validate_serve_config(data, source=str(path))
        factories = [
            section.factory
            for section in (config.graph, config.analyzer, config.executor)
            if section is not None and getattr(section, "factory", None)
        ]
        if all(importable(f) for f in factories):
            try:
                build_serve_plan(config, environ=AnySecret())
            except ConfigFileError as exc:
                # Only a docs' illustration of your own graph may name a module that is not here.
                assert "my_agent" in str(exc), (path, text, exc)


def serve_commands() -> list[tuple[Path, str]]:
    lines = [
        (path, line.strip())
        for path, block in fenced("bash")
        for line in block.splitlines()
        if "durable-ir serve" in line
    ]
    prometheus_yml = EXAMPLES / "observability" / "prometheus.yml"
    lines += [
        (prometheus_yml, line.lstrip("# ").strip())
        for line in prometheus_yml.read_text().splitlines()
        if "durable-ir serve" in line and line.lstrip().startswith("#   durable-ir")
    ]
    return lines


def test_every_serve_command_in_the_docs_says_what_to_serve() -> None:
    """serve refuses to start without a config, --graph or --demo: no example may omit them,
    and every one parses."""
    commands = serve_commands()
    assert len(commands) >= 6, commands
    for path, line in commands:
        words = shlex.split(line, comments=True)
        words = [w for w in words if w != "&"]
        start = words.index("durable-ir")
        prefix, argv = words[:start], words[start + 1 :]
        assert argv[0] == "serve", (path, line)
        from_env = any(w.startswith("DURABLE_IR_CONFIG=") for w in prefix)
        assert from_env or {"--config", "--graph", "--demo"} & set(argv), (path, line)
        build_parser().parse_args(argv)


@pytest.mark.parametrize(
    "what", [["--demo"], ["--config", str(EXAMPLES / "serve-demo.toml")]], ids=["flag", "file"]
)
def test_the_demo_alert_example_runs_as_written(tmp_path: Path, what: list[str]) -> None:
    """docs/service.md's `durable-ir serve --demo` (and examples/serve-demo.toml) and its
    curl alert: the alert is investigated (root cause found, plan and dry run ready) and
    waits for approval."""
    (block,) = [b for _, b in fenced("bash") if "durable-ir serve --demo &" in b]
    body = json.loads(block.split("-d '", 1)[1].split("'", 1)[0])
    server = ServiceProcess(
        f"sqlite:///{tmp_path / 'demo.db'}",
        *what,
        env=service_env(),
        log=tmp_path / "serve.log",
    )
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            posted = client.post("/alerts", json=body, headers=auth("alertmanager"))
            assert posted.status_code == 202, posted.text
            incident_id = posted.json()["incidents"][0]["incident_id"]
            detail = wait_for(
                lambda: (
                    (d := client.get(f"/incidents/{incident_id}", headers=auth("vic")).json())[
                        "status"
                    ]
                    in ("awaiting_approval", "finished")
                    and d
                ),
                timeout=120,
                what="the demo incident to pause",
            )
    finally:
        server.stop()
    assert detail["status"] == "awaiting_approval", detail
    assert detail["rca"]["fault"] == "bad_deploy", detail["rca"]  # as the docs say
    assert [s["action"] for s in detail["plan"]["steps"]] == ["rollback"], detail["plan"]
    assert all(d["ok"] for d in detail["dry_run"]), detail["dry_run"]


STACK = EXAMPLES / "prometheus_stack"


def test_the_prometheus_stack_example_parses_with_the_real_tools() -> None:
    """examples/prometheus_stack: Prometheus's own promtool accepts its config and rules,
    Alertmanager's amtool its config, and serve.toml builds the webhook executor and the
    Prometheus verifier (the loop itself runs in tests/test_prometheus_stack.py)."""
    from durable_ir.remediation.prometheus import PrometheusVerifier
    from durable_ir.remediation.webhook import WebhookExecutor
    from durable_ir.serve_config import load_serve_config
    from support.alertmanager import require_alertmanager
    from support.prometheus import require_prometheus

    require_prometheus()
    require_alertmanager()
    checks = [
        ["/usr/bin/promtool", "check", "config", "prometheus.yml"],  # and its rule files
        ["/usr/bin/promtool", "check", "rules", "rules.yml"],
        ["/usr/bin/amtool", "check-config", "alertmanager.yml"],
    ]
    for argv in checks:
        done = subprocess.run(argv, cwd=STACK, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (argv, done.stdout, done.stderr)
    plan = build_serve_plan(load_serve_config(STACK / "serve.toml"), environ=AnySecret())
    assert isinstance(plan.components["executor"], WebhookExecutor)
    assert plan.components["executor"].url == "http://127.0.0.1:9300/remediate"
    verifier = plan.components["verifier"]
    assert isinstance(verifier, PrometheusVerifier) and verifier.url.startswith(
        "http://127.0.0.1:9090/"
    )
    assert plan.components["gatherer"].queries["build"].query.change == "deploy"
    # The files the README's commands name are the ones here.
    readme = (STACK / "README.md").read_text()
    for name in ("exporter.py", "prometheus.yml", "alertmanager.yml", "serve.toml"):
        assert f"examples/prometheus_stack/{name}" in readme, name


def test_the_prometheus_stack_exporter_runs_as_a_script(tmp_path: Path) -> None:
    """exporter.py as README.md starts it: /metrics answers, a deploy breaks checkout, the
    webhook rolls it back (a token required when one is set)."""
    from support.service import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, str(STACK / "exporter.py"), "--port", str(port), "--token", "tok"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def metrics() -> str:
            try:
                return httpx.get(f"{url}/metrics", timeout=2).text
            except httpx.HTTPError:
                return ""

        assert 'app_build_info{service="checkout",version="v1.4.0"} 1' in wait_for(
            metrics, what="the exporter"
        )
        deploy = {"service": "checkout", "version": "v1.5.0", "errors_per_s": 8}
        assert httpx.post(f"{url}/deploy", json=deploy, timeout=5).status_code == 401
        bearer = {"Authorization": "Bearer tok"}
        assert httpx.post(f"{url}/deploy", json=deploy, headers=bearer).status_code == 200
        assert 'version="v1.5.0"' in metrics()
        step = {"phase": "apply", "incident_id": "i", "action": "rollback",
                "target": "checkout", "epoch": 1}  # fmt: skip
        headers = bearer | {"Idempotency-Key": "i/step-1/apply"}
        first = httpx.post(f"{url}/remediate", json=step, headers=headers, timeout=5).json()
        again = httpx.post(f"{url}/remediate", json=step, headers=headers, timeout=5).json()
        assert first["detail"] == "rolled checkout back to v1.4.0", first
        assert again["ok"] and "already done" in again["detail"], again
        assert 'version="v1.4.0"' in metrics()
        stale = httpx.post(f"{url}/remediate", json=step | {"epoch": 0}, headers=bearer)
        assert stale.status_code == 409, stale.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
