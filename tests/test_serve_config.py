"""``durable-ir serve``'s config file: every way it can be wrong gives one clear message (the
file, the key, what is wrong), exit status 2 and nothing started; without a config, --graph or
--demo, serve refuses; and a service started from a config really uses the configured
gatherer (a real Prometheus), analyzer (Claude's API, served locally), executor and
PagerDuty."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest

from durable_ir import open_runtime
from durable_ir.builder import IncidentGraphBuilder
from durable_ir.cli import main
from durable_ir.errors import ConfigurationError
from durable_ir.rca.analyzers import CorrelationAnalyzer
from durable_ir.rca.gatherers.routed import RoutedPrometheusGatherer
from durable_ir.remediation import (
    RemediationPlan,
    RemediationStep,
    StepContext,
    SuggestOnlyExecutor,
)
from durable_ir.remediation.executor import VerificationContext
from durable_ir.remediation.prometheus import PrometheusVerifier
from durable_ir.serve_config import (
    ConfigFileError,
    build_serve_plan,
    load_serve_config,
    parse_serve_config,
)
from support.claude_api import ClaudeApi, api_key_of
from support.local_http import LocalHttpServer, serving
from support.pagerduty_api import PagerDutyApi
from support.prometheus import require_prometheus, running_prometheus
from support.service import ServiceProcess, auth, service_env, wait_for

MINIMAL = """
[graph.allow_list]
actions = { restart = "low" }

[gatherer]
kind = "prometheus"
base_url = "http://127.0.0.1:9090"

[gatherer.queries.errors]
query = 'sum(rate(http_requests_total{service="{service}",code=~"5.."}[{window}]))'
"""


def problem(text: str, environ: dict[str, str] | None = None) -> str:
    """The message of the ConfigFileError that loading (and building) ``text`` raises."""
    with pytest.raises(ConfigFileError) as caught:
        build_serve_plan(parse_serve_config(text, source="serve.toml"), environ=environ or {})
    message = str(caught.value)
    assert message.startswith("serve.toml: "), message
    assert isinstance(caught.value, ConfigurationError)
    return message


# -- validation ------------------------------------------------------------------------------


def test_the_minimal_config_builds_the_bundled_graph_with_what_it_names() -> None:
    plan = build_serve_plan(parse_serve_config(MINIMAL, source="serve.toml"), environ={})
    assert isinstance(plan.graph, IncidentGraphBuilder) and plan.graph_name is None
    assert not plan.demo and not plan.warnings()
    assert isinstance(plan.components["gatherer"], RoutedPrometheusGatherer)
    assert isinstance(plan.components["analyzer"], CorrelationAnalyzer)  # offline unless told
    assert isinstance(
        plan.components["executor"], SuggestOnlyExecutor
    )  # applies nothing unless told
    assert plan.describe()[3].startswith("executor: suggest-only")


def test_approval_deadlines_per_severity() -> None:
    text = MINIMAL + '\n[graph.sla]\nwindows = { P0 = "10m", P1 = "1h" }\nescalate_to = "sre-2"\n'
    plan = build_serve_plan(parse_serve_config(text, source="serve.toml"), environ={})
    assert plan.graph.approval.sla.window_for("P0") == timedelta(minutes=10)
    assert plan.graph.approval.sla.escalate_to == "sre-2"
    assert "graph.sla.windows.P9: Input should be 'P0', 'P1', 'P2' or 'P3'" in problem(
        MINIMAL + '\n[graph.sla]\nwindows = { P9 = "10m" }\n'
    )
    assert "graph.sla.windows.P0: must be a duration: a whole number and s, m, h or d" in (
        problem(MINIMAL + '\n[graph.sla]\nwindows = { P0 = "10 minutes" }\n')
    )


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match=r"serve\.toml: no such file"):
        load_serve_config(tmp_path / "serve.toml")


def test_bad_toml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "serve.toml"
    path.write_text('[graph]\nname = "x\n')
    with pytest.raises(ConfigFileError) as caught:
        load_serve_config(path)
    assert str(caught.value).startswith(f"{path}: not valid TOML: ")
    assert "line 2" in str(caught.value)


def test_an_unknown_key_is_named_by_its_path() -> None:
    text = MINIMAL.replace("[gatherer.queries.errors]", "[gatherer.queries.errors]\nqurey = 'x'")
    assert problem(text) == "serve.toml: gatherer.queries.errors.qurey: unknown key"
    assert problem(MINIMAL + "\n[analyser]\nkind = 'offline'\n") == (
        "serve.toml: analyser: unknown key"
    )


def test_a_wrong_type_says_what_was_expected_and_what_it_got() -> None:
    text = MINIMAL.replace('kind = "prometheus"', 'kind = "prometheus"\ntimeout = "10"')
    assert problem(text) == (
        "serve.toml: gatherer.timeout: Input should be a valid number (got '10')"
    )
    text = MINIMAL.replace('restart = "low"', 'restart = "risky"')
    assert "graph.allow_list.actions.restart: Input should be 'read_only', 'low'" in problem(text)
    text = MINIMAL + '\n[analyzer]\nkind = "gpt"\n'
    assert "serve.toml: analyzer: Input tag 'gpt' found using 'kind'" in problem(text)
    text = MINIMAL + '\n[analyzer]\nmodel = "x"\n'
    assert "serve.toml: analyzer.kind: missing (required): offline, anthropic or" in problem(text)
    text = MINIMAL.replace("http://127.0.0.1:9090", "127.0.0.1:9090")
    assert problem(text) == (
        "serve.toml: gatherer.base_url: must be an http:// or https:// URL (got '127.0.0.1:9090')"
    )
    assert problem("graph = 3\n").startswith("serve.toml: graph: must be a table")


def test_a_secret_written_in_the_file_is_refused_without_echoing_it() -> None:
    text = MINIMAL + '\n[integrations.pagerduty]\nrouting_key = "R0UT1NGKEY-SECRET"\n'
    message = problem(text)
    assert "integrations.pagerduty.routing_key: secrets are not written in the config file" in (
        message
    )
    assert "routing_key_env" in message and "R0UT1NGKEY-SECRET" not in message


def test_a_secret_pasted_where_its_variable_belongs_is_not_echoed() -> None:
    pasted = "0123456789abcdef0123456789abcdef"  # a PagerDuty routing key, not a variable
    text = MINIMAL + f'\n[integrations.pagerduty]\nrouting_key_env = "{pasted}"\n'
    message = problem(text)
    assert "integrations.pagerduty.routing_key_env: must name an environment variable" in message
    assert pasted not in message
    text = MINIMAL + (
        '\n[analyzer]\nkind = "chat_model"\nfactory = "support.serve_parts:chat_model"\n'
        'options = { model = "m", api_key = "sk-SECRET" }\n'
    )
    message = problem(text)
    assert "analyzer.options.api_key: secrets are not written in the config file" in message
    assert "sk-SECRET" not in message


def test_a_missing_secret_variable_is_named() -> None:
    text = MINIMAL + '\n[integrations.pagerduty]\nrouting_key_env = "IR_TEST_PD_KEY"\n'
    assert problem(text) == (
        "serve.toml: integrations.pagerduty.routing_key_env: the environment variable "
        "IR_TEST_PD_KEY is not set (or empty)"
    )
    plan = build_serve_plan(
        parse_serve_config(text, source="serve.toml"), environ={"IR_TEST_PD_KEY": "k" * 32}
    )
    assert "PagerDuty" in plan.describe()[-1]


def test_bad_import_paths_are_named() -> None:
    assert problem('[graph]\nfactory = "no_such_module_xyz:build"\n').startswith(
        "serve.toml: graph.factory: cannot import 'no_such_module_xyz:build': No module named"
    )
    assert problem('[graph]\nfactory = "durable_ir.demo.agent:no_such_builder"\n') == (
        "serve.toml: graph.factory: 'durable_ir.demo.agent' has no attribute 'no_such_builder'"
    )
    assert problem('[graph]\nfactory = "durable_ir.demo.agent:DEMO_GRAPH_NAME"\n') == (
        "serve.toml: graph.factory: durable_ir.demo.agent:DEMO_GRAPH_NAME is a str, not a "
        "StateGraph, a compiled graph, an IncidentGraphBuilder or a function returning one"
    )
    assert problem('[graph]\nfactory = "x"\n') == (
        "serve.toml: graph.factory: must be module:attribute, e.g. my_agent.graphs:build (got 'x')"
    )
    text = MINIMAL + (
        '\n[executor]\nkind = "import"\nfactory = "durable_ir.remediation:SuggestOnlyExecutor"'
        "\noptions = { dry = true }\n"
    )
    assert problem(text).startswith("serve.toml: executor.factory: calling it failed: TypeError: ")
    text = MINIMAL + '\n[executor]\nkind = "import"\nfactory = "builtins:dict"\n'
    assert problem(text) == (
        "serve.toml: executor.factory: builtins:dict made a dict, which needs async dry_run, "
        "apply, rollback(step, context) and verify(context)"
    )


def test_sections_that_cannot_go_together_or_are_missing() -> None:
    assert problem("[demo]\n" + MINIMAL).startswith(
        "serve.toml: demo: [demo] serves the demo agent on its simulated fleet; it cannot be "
        "combined with gatherer, graph.allow_list"
    )
    assert problem(
        '[graph]\nfactory = "durable_ir.demo.agent:build_demo_graph"\n'
        '[analyzer]\nkind = "offline"\n'
    ).startswith("serve.toml: graph.factory: your graph brings its own gatherer, analyzer")
    message = problem('[graph]\nname = "x"\n')
    assert "serve.toml: graph.allow_list: missing (required)" in message
    assert "serve.toml: gatherer: missing (required): without evidence every alert escalates" in (
        message
    )
    text = MINIMAL + '\n[[graph.severity_rules]]\nseverity = "P1"\n'
    assert problem(text) == (
        "serve.toml: graph.severity_rules[0]: a severity rule needs a service, a name or labels "
        "to match"
    )
    text = MINIMAL + "\n[graph.rca]\nmax_attempts = 5\n"
    assert "graph.rca.growth: missing (required)" in problem(text)
    text = MINIMAL + '\n[graph.rca]\nwindows = ["1h", "15m"]\n'
    assert "graph.rca.windows: must be strictly widening" in problem(text)


def test_demo_and_an_imported_graph() -> None:
    plan = build_serve_plan(parse_serve_config('[demo]\nanalyzer = "offline"\n'), environ={})
    assert plan.demo and plan.graph_name == "demo-agent"
    assert "SIMULATED fleet" in plan.warnings()[0]
    text = '[graph]\nfactory = "durable_ir.demo.agent:build_demo_graph"\nname = "mine"\n'
    plan = build_serve_plan(parse_serve_config(text), environ={})
    assert plan.graph_name == "mine" and "approval" in plan.graph.nodes


# -- the command: exit 2, nothing started ----------------------------------------------------


@pytest.fixture
def nothing_served(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn must not start: every case here is refused before it would."""
    import uvicorn

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the server was started")

    monkeypatch.setattr(uvicorn, "run", refuse)
    monkeypatch.delenv("DURABLE_IR_CONFIG", raising=False)


def serve_fails(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> str:
    database = tmp_path / "never.db"
    code = main(["serve", "--database-url", f"sqlite:///{database}", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert not database.exists()  # no database opened
    assert err.startswith("durable-ir serve: ") and "Traceback" not in err
    return err


@pytest.mark.usefixtures("nothing_served")
def test_serve_without_config_graph_or_demo_refuses_and_says_how(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    err = serve_fails(capsys, tmp_path)
    assert "nothing to serve: give a config file (--config PATH, or $DURABLE_IR_CONFIG)" in err
    assert "examples/serve.toml" in err and "--demo" in err


@pytest.mark.usefixtures("nothing_served")
def test_serve_with_a_bad_config_exits_2_naming_the_file_and_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "serve.toml"
    path.write_text(MINIMAL.replace("base_url", "base_ulr"))
    err = serve_fails(capsys, tmp_path, "--config", str(path))
    assert err.startswith(f"durable-ir serve: {path}: ")
    assert f"{path}: gatherer.base_ulr: unknown key" in err
    assert f"{path}: gatherer.base_url: missing (required)" in err
    # The same file through $DURABLE_IR_CONFIG.
    monkeypatch.setenv("DURABLE_IR_CONFIG", str(path))
    assert f"{path}: gatherer.base_ulr: unknown key" in serve_fails(capsys, tmp_path)
    # A missing file, a missing secret.
    monkeypatch.delenv("DURABLE_IR_CONFIG")
    err = serve_fails(capsys, tmp_path, "--config", str(tmp_path / "nope.toml"))
    assert f"{tmp_path / 'nope.toml'}: no such file" in err
    path.write_text(MINIMAL + '\n[integrations.slack]\nbot_token_env = "IR_TEST_SLACK_TOKEN"\n'
                    'channel = "C0123456789"\n')  # fmt: skip
    monkeypatch.delenv("IR_TEST_SLACK_TOKEN", raising=False)
    err = serve_fails(capsys, tmp_path, "--config", str(path))
    assert "integrations.slack.bot_token_env: the environment variable IR_TEST_SLACK_TOKEN" in err


@pytest.mark.usefixtures("nothing_served")
def test_serve_refuses_two_answers_to_what_to_serve(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "serve.toml"
    path.write_text(MINIMAL)
    err = serve_fails(capsys, tmp_path, "--config", str(path), "--demo")
    assert "--demo and a config file (--config" in err
    monkeypatch.setenv("DURABLE_IR_CONFIG", str(path))
    err = serve_fails(capsys, tmp_path, "--demo")
    assert f"--demo and a config file ($DURABLE_IR_CONFIG={path})" in err
    err = serve_fails(capsys, tmp_path, "--graph", "durable_ir.demo.agent:build_demo_graph")
    assert "--graph and a config file" in err


# -- a service started from a config uses what it configures ---------------------------------


class _Exporter(BaseHTTPRequestHandler):
    """``/metrics`` of a shop: checkout fails 8 requests a second, search is slow."""

    def do_GET(self) -> None:
        body = (
            b"# TYPE shop_http_5xx_per_second gauge\n"
            b'shop_http_5xx_per_second{service="checkout"} 8\n'
            b"# TYPE shop_latency_seconds gauge\n"
            b'shop_latency_seconds{service="search"} 1.5\n'
        )
        self.send_response(200)
        self.send_header("content-type", "text/plain; version=0.0.4")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


CLAUDE_KEY = "sk-ant-test-serve-config-0123456789"
PD_KEY = "R0UTINGKEY0123456789abcdef012345"

CONFIG = """
[graph]
name = "shop"

[graph.allow_list]
actions = {{ scale = "medium" }}

[graph.rca]
threshold = 0.7

[gatherer]
kind = "prometheus"
base_url = "{prometheus}"
step = 1

[gatherer.queries.errors]
query = 'max_over_time(shop_http_5xx_per_second{{service="{{service}}"}}[{{window}}])'
unit = "req/s"
services = ["checkout"]

[gatherer.queries.by_alert]
query = '''label_replace(shop_http_5xx_per_second{{service="{{service}}"}},
           "alert", "{{alertname}}", "", "")'''
alerts = ["CheckoutErrors"]

[gatherer.queries.search_latency]
query = 'shop_latency_seconds{{service="{{service}}"}}'
services = ["search"]

[gatherer.queries.other_alert]
query = 'shop_http_5xx_per_second'
alerts = ["SomethingElse"]

[analyzer]
kind = "anthropic"
base_url = "{claude}"
api_key_env = "IR_TEST_CLAUDE_KEY"

[integrations.pagerduty]
routing_key_env = "IR_TEST_PD_KEY"
base_url = "{pagerduty}"
"""


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[Any, ClaudeApi, PagerDutyApi]]:
    require_prometheus()
    with (
        serving(LocalHttpServer(_Exporter)) as exporter,
        running_prometheus(
            tmp_path / "prometheus", [exporter.url.removeprefix("http://")], job="shop"
        ) as prometheus,
        serving(ClaudeApi(CLAUDE_KEY)) as claude,
        serving(PagerDutyApi()) as pagerduty,
    ):
        wait_for(
            lambda: prometheus.query("shop_http_5xx_per_second"),
            what="Prometheus to scrape the shop",
        )
        yield prometheus, claude, pagerduty


def test_serve_with_a_config_gathers_from_prometheus_analyzes_and_suggests_only(
    tmp_path: Path, shop: tuple[Any, ClaudeApi, PagerDutyApi]
) -> None:
    prometheus, claude, pagerduty = shop
    config = tmp_path / "serve.toml"
    config.write_text(
        CONFIG.format(prometheus=prometheus.url, claude=claude.url, pagerduty=pagerduty.url)
    )
    database = f"sqlite:///{tmp_path / 'incidents.db'}"
    env = service_env(IR_TEST_CLAUDE_KEY=CLAUDE_KEY, IR_TEST_PD_KEY=PD_KEY)
    log = tmp_path / "serve.log"
    server = ServiceProcess(database, "--config", str(config), "--log-level", "debug", env=env,
                            log=log)  # fmt: skip
    try:
        server.wait_ready()
        alert = {
            "name": "CheckoutErrors",
            "service": "checkout",
            "severity": "P1",
            "fired_at": datetime.now(UTC).isoformat(),
            "description": "checkout answers 5xx",
        }
        with httpx.Client(base_url=server.url, timeout=30) as client:
            response = client.post("/alerts", json=alert, headers=auth("alertmanager"))
            assert response.status_code == 202, response.text
            incident_id = response.json()["incidents"][0]["incident_id"]

            def detail() -> dict[str, Any]:
                got = client.get(f"/incidents/{incident_id}", headers=auth("vic"))
                return dict(got.json())

            paused = wait_for(
                lambda: (d := detail())["status"] in ("awaiting_approval", "finished") and d,
                timeout=120,
                what="the incident to pause for approval",
            )
            assert paused["status"] == "awaiting_approval", paused
            # The analyzer is the configured one (Claude's API at the configured URL), and it
            # was given the evidence of exactly the queries configured for this alert.
            assert paused["rca"]["root_cause"].startswith("deploy v42 of checkout")
            prompts = [str(r["body"]["messages"][0]["content"]) for r in claude.received]
            assert prompts and all(api_key_of(r["headers"]) == CLAUDE_KEY
                                   for r in claude.received)  # fmt: skip
            first = prompts[0]
            assert "metric-errors-" in first and "metric-by_alert-" in first
            assert "metric-search_latency-" not in first and "metric-other_alert-" not in first
            assert "CheckoutErrors" in first and "8" in first
            # The executor is the suggest-only one: the dry run says it applies nothing.
            (step,) = paused["dry_run"]
            assert "durable-ir only suggests (suggest-only executor)" in step["detail"], step

            decided = client.post(
                f"/incidents/{incident_id}/approve?wait=true",
                json={"reason": "scale it"},
                headers=auth("alice"),
            )
            assert decided.status_code == 200, decided.text
            done = decided.json()
            assert done["status"] == "finished" and done["outcome"] == "escalated", done
            assert "durable-ir applied nothing (suggest-only executor)" in str(
                done["outcome_reason"]
            ) + str(done["timeline"])
        # PagerDuty is the configured one: the escalation paged it with the incident's key.
        wait_for(
            lambda: any(e.get("event_action") == "trigger" for e in pagerduty.events()),
            what="a PagerDuty trigger",
        )
        assert all(e["routing_key"] == PD_KEY for e in pagerduty.events())
    finally:
        server.stop()

    async def evidence_ids() -> list[str]:
        async with open_runtime(database) as rt:
            snapshot = await rt.get(incident_id)
            return [i for a in snapshot.values["rca_attempts"] for i in a["evidence_ids"]]

    # What the file chose is logged; the secrets it read from the environment are not, even
    # at debug level (httpx, the anthropic SDK and uvicorn all log there).
    output = log.read_text(errors="replace")
    assert (
        "serving gatherer: Prometheus at" in output and "serving executor: suggest-only" in output
    )
    assert CLAUDE_KEY not in output and PD_KEY not in output

    ids = asyncio.run(evidence_ids())
    assert {i.split("-")[1] for i in ids} == {"errors", "by_alert"}, ids


def test_imported_analyzer_and_executor_get_their_options_and_secrets() -> None:
    text = MINIMAL + (
        '\n[analyzer]\nkind = "chat_model"\nfactory = "support.serve_parts:chat_model"\n'
        'options = { model = "m-1", temperature = 0 }\noptions_env = { api_key = "IR_TEST_LLM" }\n'
        '\n[executor]\nkind = "import"\nfactory = "support.serve_parts:OptionsExecutor"\n'
        'options = { dry = true }\noptions_env = { token = "IR_TEST_EXEC" }\n'
    )
    config = parse_serve_config(text, source="serve.toml")
    assert "options_env.api_key: the environment variable IR_TEST_LLM" in problem(text)
    plan = build_serve_plan(config, environ={"IR_TEST_LLM": "llm-key", "IR_TEST_EXEC": "ex"})
    analyzer, executor = plan.components["analyzer"], plan.components["executor"]
    expected = {"model": "m-1", "temperature": 0, "api_key": "llm-key"}
    assert expected.items() <= analyzer.model.metadata.items()
    assert executor.options == {"dry": True, "token": "ex"}
    assert dict(plan.choices)["analyzer"] == "ChatModelAnalyzer (support.serve_parts:chat_model)"
    # A chat model factory that returns something else is named.
    bad = text.replace("support.serve_parts:chat_model", "support.serve_parts:OptionsExecutor")
    assert "analyzer.factory: ChatModelAnalyzer needs a LangChain BaseChatModel instance" in (
        problem(bad, {"IR_TEST_LLM": "k", "IR_TEST_EXEC": "e"})
    )


def test_check_validates_prints_the_choices_and_starts_nothing(
    nothing_served: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "serve.toml"
    path.write_text(MINIMAL)
    database = tmp_path / "never.db"
    url = f"sqlite:///{database}"
    assert main(["serve", "--config", str(path), "--check", "--database-url", url]) == 0
    out = capsys.readouterr().out
    assert f"config {path}\n" in out
    assert "gatherer: Prometheus at http://127.0.0.1:9090 (1 query)" in out
    assert "executor: suggest-only" in out and out.endswith("ok, it would start\n")
    assert not database.exists()
    path.write_text("[demo]\n")
    assert main(["serve", "--config", str(path), "--check"]) == 0
    assert "warning: " in capsys.readouterr().out
    path.write_text(MINIMAL + "\nextra = 1\n")
    assert main(["serve", "--config", str(path), "--check"]) == 2
    # TOML puts a key after a table header in that table: the path says so.
    assert f"{path}: gatherer.queries.errors.extra: unknown key" in capsys.readouterr().err


def test_no_secret_reaches_the_plan_or_its_description() -> None:
    text = MINIMAL + (
        '\n[integrations.pagerduty]\nrouting_key_env = "IR_TEST_PD_KEY"\n'
        '\n[integrations.slack]\nbot_token_env = "IR_TEST_SLACK"\nchannel = "C0123456789"\n'
        'signing_secret_env = "IR_TEST_SIGNING"\n'
    )
    secrets = {"IR_TEST_PD_KEY": "pd-SECRET-1", "IR_TEST_SLACK": "xoxb-SECRET-2",
               "IR_TEST_SIGNING": "sign-SECRET-3"}  # fmt: skip
    plan = build_serve_plan(parse_serve_config(text, source="serve.toml"), environ=secrets)
    assert plan.slack_signing_secret == "sign-SECRET-3"
    shown = repr(plan) + "\n".join(plan.describe() + plan.warnings())
    assert "SECRET" not in shown, shown


EXAMPLE_CONFIGS = sorted(
    p
    for p in (Path(__file__).resolve().parent.parent / "examples").glob("**/*.toml")
    if "[gatherer]" in p.read_text()
)


async def test_the_example_configs_queries_are_valid_promql_on_a_real_prometheus(
    tmp_path: Path,
) -> None:
    """Each query of each example config, run as the service runs it (templates filled from
    an alert it applies to, over an attempt's window), against a real Prometheus scraping a
    durable-ir service: Prometheus accepts every one (a PromQL error would raise), and the
    observability example's `up` query finds the scraped service."""
    import tomllib

    from durable_ir.rca.evidence import EvidenceWindow
    from durable_ir.serve_config import validate_serve_config
    from durable_ir.service import ServiceSettings, create_app
    from support.service import serving as serving_app

    require_prometheus()
    assert len(EXAMPLE_CONFIGS) >= 2, EXAMPLE_CONFIGS
    settings = ServiceSettings(database_url=f"sqlite:///{tmp_path / 'watched.db'}")
    with (
        serving_app(create_app(settings=settings)) as watched,
        running_prometheus(
            tmp_path / "prometheus", [watched.url.removeprefix("http://")], job="durable-ir"
        ) as prometheus,
    ):
        wait_for(lambda: prometheus.query('up{job="durable-ir"}'), what="a scrape")
        found: dict[str, int] = {}
        for path in EXAMPLE_CONFIGS:
            data = tomllib.loads(path.read_text())
            data["gatherer"]["base_url"] = prometheus.url
            if "verifier" in data:
                data["verifier"]["base_url"] = prometheus.url
            config = validate_serve_config(data, source=str(path))
            plan = build_serve_plan(config, environ=AnyVariable())
            gatherer = plan.components["gatherer"]
            for name, routed in gatherer.queries.items():
                alert_name = min(routed.alerts) if routed.alerts else "AnyAlert"
                alert = {
                    "name": alert_name,
                    "service": min(routed.services) if routed.services else "durable-ir",
                    "labels": {"job": "durable-ir", "namespace": "default"},
                }
                window = EvidenceWindow.ending_at(datetime.now(UTC), timedelta(minutes=15))
                evidence = await gatherer.gather(alert, window)  # PrometheusError if refused
                found[f"{path.parent.name}/{path.name}:{name}"] = len(evidence)
            verifier = plan.components["verifier"]
            if isinstance(verifier, PrometheusVerifier):  # its checks are valid PromQL too
                verifier.wait = timedelta(0)
                for name, check in verifier.checks.items():
                    alert = {"name": "AnyAlert", "service": min(check.services, default="x")}
                    context = VerificationContext("inc", alert, RemediationPlan(steps=[STEP_ANY]))
                    verdict = await verifier.verify(context)
                    assert "refused the query" not in verdict.detail, (path, name, verdict)
                    found[f"{path.parent.name}/{path.name}:verify:{name}"] = 1
    assert found["observability/serve.toml:up"] >= 1, found
    assert "prometheus_stack/serve.toml:verify:error_ratio" in found, found


STEP_ANY = RemediationStep(action="restart", target="x")


class AnyVariable(dict[str, str]):
    """An environment in which every variable a config names is set (to a test value)."""

    def get(self, key: str, default: Any = None) -> str:  # type: ignore[override]
        return f"test-value-of-{key}"


WEBHOOK = """
[executor]
kind = "webhook"
url = "https://automation.example/hooks/durable-ir"
token_env = "IR_TEST_AUTOMATION"
retries = 1

[verifier]
kind = "prometheus"
wait = "90s"
interval = 2

[verifier.checks.error_ratio]
query = 'sum(rate(http_requests_total{service="{service}",code=~"5.."}[1m]))'
below = 0.05
services = ["checkout"]
"""


def test_a_webhook_executor_and_a_prometheus_verifier() -> None:
    from durable_ir.remediation.prometheus import PrometheusVerifier
    from durable_ir.remediation.webhook import WebhookExecutor

    config = parse_serve_config(MINIMAL + WEBHOOK, source="serve.toml")
    plan = build_serve_plan(config, environ={"IR_TEST_AUTOMATION": "auto-SECRET"})
    executor, verifier = plan.components["executor"], plan.components["verifier"]
    assert isinstance(executor, WebhookExecutor) and executor.retries == 1
    assert executor.headers(StepContext("i", {}, 1))["Authorization"] == "Bearer auto-SECRET"
    assert isinstance(verifier, PrometheusVerifier)
    assert verifier.url == "http://127.0.0.1:9090/api/v1/query"  # the gatherer's Prometheus
    assert verifier.wait == timedelta(seconds=90) and set(verifier.checks) == {"error_ratio"}
    assert plan.graph.parts.verifier is verifier
    choices = dict(plan.choices)
    assert (
        choices["executor"]
        == "webhook: each step POSTed to https://automation.example/hooks/durable-ir"
    )
    assert choices["verifier"].startswith("Prometheus at http://127.0.0.1:9090 (1 recovery check")
    assert "SECRET" not in repr(plan) + "\n".join(plan.describe())
    # The token's variable must be set.
    assert "executor.token_env: the environment variable IR_TEST_AUTOMATION is not set" in (
        problem(MINIMAL + WEBHOOK)
    )


def test_webhook_and_verifier_mistakes_are_named() -> None:
    env = {"IR_TEST_AUTOMATION": "t"}
    assert "executor.url: must be an http:// or https:// URL" in problem(
        MINIMAL + WEBHOOK.replace("https://automation.example", "automation.example"), env
    )
    assert "executor.token: secrets are not written in the config file" in problem(
        MINIMAL + WEBHOOK.replace('token_env = "IR_TEST_AUTOMATION"', 'token = "abc"'), env
    )
    assert "verifier.checks.error_ratio: needs exactly one of below or above" in problem(
        MINIMAL + WEBHOOK.replace("below = 0.05", ""), env
    )
    assert "verifier.checks.error_ratio: needs exactly one of below or above" in problem(
        MINIMAL + WEBHOOK.replace("below = 0.05", "below = 0.05\nabove = 0.01"), env
    )
    assert "verifier.wait: must be a duration" in problem(
        MINIMAL + WEBHOOK.replace('"90s"', '"soon"'), env
    )
    suggest_only = MINIMAL + WEBHOOK.replace('kind = "webhook"', 'kind = "suggest_only"')
    suggest_only = suggest_only.replace('url = "https://automation.example/hooks/durable-ir"\n', "")
    suggest_only = suggest_only.replace('token_env = "IR_TEST_AUTOMATION"\nretries = 1\n', "")
    assert "verifier: the suggest-only executor applies nothing" in problem(suggest_only, env)
    assert "serve.toml: verifier.kind: missing (required): prometheus" in problem(
        MINIMAL + WEBHOOK.replace('kind = "prometheus"\nwait', "wait"), env
    )
