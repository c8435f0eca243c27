"""The config file of ``durable-ir serve``: which graph, gatherer, analyzer, executor and
integrations the service runs. TOML (read with the standard library's ``tomllib``), given as
``durable-ir serve --config PATH`` or ``$DURABLE_IR_CONFIG``; see ``docs/service.md``
(*The config file*) and ``examples/serve.toml``.

Two steps, each with clear errors naming the file, the key and what is wrong
(:class:`ConfigFileError`, a :class:`~durable_ir.errors.ConfigurationError`):

- :func:`load_serve_config` reads and validates the file (unknown keys, wrong types, values
  out of range, sections that cannot go together) and touches nothing else;
- :func:`build_serve_plan` reads the secrets from the environment (the file only names the
  variables: ``routing_key_env = "PAGERDUTY_ROUTING_KEY"``), imports what the file names
  (``module:attribute``) and constructs the graph, without opening any database or
  connection.

Secrets are never written in the file: ``routing_key``, ``bot_token``, ``api_key``, ``token``,
``password``, ``signing_secret`` and any ``*_key``, ``*_token`` or ``*_secret`` key (in
``options`` tables too) are refused with a hint to use ``*_env``, and a value of a ``*_env``
key that is not a variable's name is refused without being echoed.

Example:
    >>> text = '''
    ... [graph.allow_list]
    ... actions = { restart = "low" }
    ... [gatherer]
    ... kind = "prometheus"
    ... base_url = "http://prometheus:9090"
    ... [gatherer.queries.errors]
    ... query = 'sum(rate(http_requests_total{service="{service}",code=~"5.."}[{window}]))'
    ... '''
    >>> config = parse_serve_config(text, source="serve.toml")
    >>> plan = build_serve_plan(config, environ={})
    >>> plan.graph_name, plan.demo, plan.describe()[1]
    (None, False, 'gatherer: Prometheus at http://prometheus:9090 (1 query)')
    >>> parse_serve_config('[graph]\\nnmae = "x"', source="serve.toml")
    Traceback (most recent call last):
    ...
    durable_ir.serve_config.ConfigFileError: serve.toml: graph.nmae: unknown key
"""

from __future__ import annotations

import itertools
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from durable_ir.errors import ConfigurationError
from durable_ir.imports import import_object
from durable_ir.rca.evidence import ChangeKind

__all__ = [
    "CONFIG_ENV",
    "ConfigFileError",
    "ServeConfig",
    "ServePlan",
    "build_serve_plan",
    "load_serve_config",
    "parse_serve_config",
    "validate_serve_config",
]

CONFIG_ENV = "DURABLE_IR_CONFIG"
"""The environment variable naming the config file when ``--config`` is not given."""

SECRET_KEYS = frozenset(
    {"routing_key", "bot_token", "api_key", "token", "password", "signing_secret", "secret"}
)
"""Keys that would hold a secret: the file names an environment variable instead."""


class ConfigFileError(ConfigurationError):
    """The config file is missing, not TOML, or invalid; ``source`` is the file and
    ``problems`` one ``key.path: what is wrong`` each. Nothing was started."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


# -- the file's shape ------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


_IMPORT_PATH = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$"
_HTTP_URL = r"^https?://[^\s]+$"
_DURATION = r"^[0-9]+(s|m|h|d)$"
_PATTERN_MEANS = {
    _IMPORT_PATH: "must be module:attribute, e.g. my_agent.graphs:build",
    _HTTP_URL: "must be an http:// or https:// URL",
    _DURATION: "must be a duration: a whole number and s, m, h or d, e.g. 15m",
}
ImportPath = Annotated[str, Field(pattern=_IMPORT_PATH, max_length=300)]
EnvName = Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$", max_length=200)]
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
HttpUrl = Annotated[str, Field(pattern=_HTTP_URL, max_length=2000)]
Duration = Annotated[str, Field(pattern=_DURATION)]
Risk = Literal["read_only", "low", "medium", "high"]
Severity = Literal["P0", "P1", "P2", "P3"]


class DemoSection(_Section):
    """``[demo]``: the demo agent on its simulated fleet (alerts need ``sim_*`` labels)."""

    analyzer: Literal["auto", "offline", "anthropic"] = "auto"


class AllowListSection(_Section):
    actions: dict[str, Risk] = Field(min_length=1)
    targets: list[str] | None = None


class RcaSection(_Section):
    threshold: Annotated[float, Field(ge=0, le=1)] = 0.7
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 3
    windows: list[Duration] | None = None
    growth: Annotated[float, Field(gt=1)] | None = None
    attempt_timeout: Seconds | None = None
    analyzer_retries: Annotated[int, Field(ge=0, le=10)] = 2


class SeverityRuleSection(_Section):
    severity: Severity
    service: str | None = None
    name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class SlaSection(_Section):
    windows: dict[Severity, Duration] = Field(default_factory=dict)
    escalate_to: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class GraphSection(_Section):
    """``[graph]``: the bundled builder graph (the default) or ``factory = "module:attr"``."""

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    factory: ImportPath | None = None
    allow_list: AllowListSection | None = None
    rca: RcaSection | None = None
    sla: SlaSection | None = None
    severity_rules: list[SeverityRuleSection] = Field(default_factory=list)


class QuerySection(_Section):
    query: Annotated[str, Field(min_length=1, max_length=10_000)]
    metric: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    unit: str = ""
    baseline: float | None = None
    limit: float | None = None
    service_label: str = "service"
    change: ChangeKind | None = None
    version_label: str = "version"
    services: list[str] = Field(default_factory=list)
    alerts: list[str] = Field(default_factory=list)


class PrometheusSection(_Section):
    kind: Literal["prometheus"]
    base_url: HttpUrl
    timeout: Seconds = 10.0
    step: Seconds = 60.0
    max_points: Annotated[int, Field(ge=1, le=10_000)] = 720
    bearer_token_env: EnvName | None = None
    queries: dict[str, QuerySection] = Field(min_length=1)


class OfflineAnalyzerSection(_Section):
    kind: Literal["offline"]


class AnthropicAnalyzerSection(_Section):
    kind: Literal["anthropic"]
    model: str | None = None
    max_tokens: Annotated[int, Field(ge=1)] = 2048
    timeout: Seconds = 60.0
    api_key_env: EnvName = "ANTHROPIC_API_KEY"
    base_url: HttpUrl | None = None


class ChatModelAnalyzerSection(_Section):
    kind: Literal["chat_model"]
    factory: ImportPath
    options: dict[str, Any] = Field(default_factory=dict)
    options_env: dict[str, EnvName] = Field(default_factory=dict)


AnalyzerSection = Annotated[
    OfflineAnalyzerSection | AnthropicAnalyzerSection | ChatModelAnalyzerSection,
    Field(discriminator="kind"),
]


class SuggestOnlyExecutorSection(_Section):
    kind: Literal["suggest_only"]


class ImportedExecutorSection(_Section):
    kind: Literal["import"]
    factory: ImportPath
    options: dict[str, Any] = Field(default_factory=dict)
    options_env: dict[str, EnvName] = Field(default_factory=dict)


class WebhookExecutorSection(_Section):
    """``[executor] kind = "webhook"``: each step POSTed to an automation endpoint."""

    kind: Literal["webhook"]
    url: HttpUrl
    timeout: Seconds = 30.0
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    backoff: Annotated[float, Field(ge=0, le=60, allow_inf_nan=False)] = 1.0
    token_env: EnvName | None = None


ExecutorSection = Annotated[
    SuggestOnlyExecutorSection | ImportedExecutorSection | WebhookExecutorSection,
    Field(discriminator="kind"),
]


class RecoveryCheckSection(_Section):
    query: Annotated[str, Field(min_length=1, max_length=10_000)]
    below: Annotated[float, Field(allow_inf_nan=False)] | None = None
    above: Annotated[float, Field(allow_inf_nan=False)] | None = None
    absent_ok: bool = False
    services: list[str] = Field(default_factory=list)
    alerts: list[str] = Field(default_factory=list)


class PrometheusVerifierSection(_Section):
    """``[verifier] kind = "prometheus"``: after apply, the symptom read back until it holds."""

    kind: Literal["prometheus"]
    base_url: HttpUrl | None = None
    wait: Duration = "2m"
    interval: Seconds = 5.0
    timeout: Seconds = 10.0
    bearer_token_env: EnvName | None = None
    checks: dict[str, RecoveryCheckSection] = Field(min_length=1)


class PagerDutySection(_Section):
    routing_key_env: EnvName
    base_url: HttpUrl = "https://events.pagerduty.com"
    page_on_open: list[Severity] = Field(default_factory=lambda: list[Severity](["P0"]))
    timeout: Seconds = 10.0
    name: Annotated[str, Field(min_length=1, max_length=100)] = "pagerduty"


class SlackSection(_Section):
    bot_token_env: EnvName
    channel: Annotated[str, Field(pattern=r"^[CGD][A-Z0-9]{2,}$")]
    base_url: HttpUrl | None = None
    name: Annotated[str, Field(min_length=1, max_length=100)] = "slack"
    signing_secret_env: EnvName | None = None


class IntegrationsSection(_Section):
    pagerduty: PagerDutySection | None = None
    slack: SlackSection | None = None


class ServeConfig(_Section):
    """A validated config file (see the module doc); ``source`` is where it came from."""

    source: str = "<config>"
    demo: DemoSection | None = None
    graph: GraphSection | None = None
    gatherer: PrometheusSection | None = None
    analyzer: AnalyzerSection | None = None
    executor: ExecutorSection | None = None
    verifier: PrometheusVerifierSection | None = None
    integrations: IntegrationsSection | None = None


_TAGGED = {"analyzer", "executor", "gatherer", "verifier"}
_TAGS = {"offline", "anthropic", "chat_model", "suggest_only", "import", "webhook", "prometheus"}


def _where(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for i, part in enumerate(loc):
        # Discriminated unions add the tag to the location: analyzer.anthropic.model → drop it.
        if (i == 1 and loc[0] in _TAGGED and part in _TAGS) or part == "[key]":
            continue  # "[key]": pydantic's mark of a refused table key; the key is named
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + part)
    return "".join(parts) or "(top level)"


def _secret_key(key: str) -> bool:
    return key in SECRET_KEYS or key.endswith(("_key", "_token", "_secret", "password"))


def _names_a_variable(loc: tuple[int | str, ...]) -> bool:
    return any(isinstance(p, str) and p.endswith("_env") for p in loc)


def _problem(error: Mapping[str, Any]) -> str:
    loc = tuple(error["loc"])
    where = _where(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else ""
        if _secret_key(key):
            return (
                f"{where}: secrets are not written in the config file: set {key}_env = "
                f'"SOME_VARIABLE" and put the secret in that environment variable'
            )
        return f"{where}: unknown key"
    if kind == "missing":
        if loc == ("verifier", "kind"):  # one kind today, so no tagged union names them
            return f"{where}: missing (required): prometheus"
        return f"{where}: missing (required)"
    if _names_a_variable(loc):
        # Never echo it: a secret pasted where its variable's name belongs is the likely case.
        return (
            f"{where}: must name an environment variable (A-Z, 0-9 and _, e.g. "
            "PAGERDUTY_ROUTING_KEY); the value is not shown in case it is the secret itself"
        )
    if kind == "union_tag_not_found":
        kinds = {
            "analyzer": "offline, anthropic or chat_model",
            "executor": "suggest_only, webhook or import",
            "verifier": "prometheus",
        }.get(str(loc[0]), "see docs/service.md")
        return f"{where}.kind: missing (required): {kinds}"
    if kind in ("model_type", "dict_type"):
        return f"{where}: must be a table ([{where}] or {{ … }})"
    message = str(error["msg"])
    if kind == "string_pattern_mismatch":
        message = _PATTERN_MEANS.get(str((error.get("ctx") or {}).get("pattern")), message)
    value = error.get("input")
    if isinstance(value, str | int | float | bool):
        return f"{where}: {message} (got {value!r})"
    return f"{where}: {message}"


def parse_serve_config(text: str, *, source: str = "<config>") -> ServeConfig:
    """Parse and validate config ``text`` (TOML); ``source`` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(source, [f"not valid TOML: {exc}"]) from None
    return validate_serve_config(data, source=source)


def validate_serve_config(data: Mapping[str, Any], *, source: str = "<config>") -> ServeConfig:
    """Validate a config already read into a mapping (what TOML parses to)."""
    if "source" in data:
        raise ConfigFileError(source, ["source: unknown key"])
    try:
        config = ServeConfig.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise ConfigFileError(source, [_problem(e) for e in exc.errors()]) from None
    problems = _combination_problems(config)
    if problems:
        raise ConfigFileError(source, problems)
    return config


def load_serve_config(path: str | os.PathLike[str]) -> ServeConfig:
    """Read and validate the config file at ``path``.

    Example:
        >>> load_serve_config("/nonexistent/serve.toml")
        Traceback (most recent call last):
        ...
        durable_ir.serve_config.ConfigFileError: /nonexistent/serve.toml: no such file
    """
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigFileError(source, ["no such file"]) from None
    except OSError as exc:
        raise ConfigFileError(source, [f"cannot be read: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigFileError(source, ["not UTF-8 text"]) from None
    return parse_serve_config(text, source=source)


def _combination_problems(config: ServeConfig) -> list[str]:
    problems = [
        f"{section}.options.{key}: secrets are not written in the config file: set "
        f'options_env = {{ {key} = "SOME_VARIABLE" }} and put the secret in that variable'
        for section, part in (("analyzer", config.analyzer), ("executor", config.executor))
        for key in getattr(part, "options", {})
        if _secret_key(key)
    ]
    return problems or _section_problems(config)


def _section_problems(config: ServeConfig) -> list[str]:
    builder_parts = [
        name
        for name in ("gatherer", "analyzer", "executor", "verifier", "integrations")
        if getattr(config, name) is not None
    ]
    graph = config.graph
    if graph is not None:
        builder_parts += [
            f"graph.{name}"
            for name in ("allow_list", "rca", "sla")
            if getattr(graph, name) is not None
        ] + (["graph.severity_rules"] if graph.severity_rules else [])
    if config.demo is not None:
        others = builder_parts + (["graph.factory"] if graph and graph.factory else [])
        if others:
            return [
                f"demo: [demo] serves the demo agent on its simulated fleet; it cannot be "
                f"combined with {', '.join(others)} (remove [demo] to serve your own)"
            ]
        return []
    if graph is not None and graph.factory is not None:
        if builder_parts:
            return [
                f"graph.factory: your graph brings its own gatherer, analyzer, executor and "
                f"integrations; {', '.join(builder_parts)} only configure the bundled graph "
                "(remove them, or remove graph.factory)"
            ]
        return []
    problems = []
    if graph is None or graph.allow_list is None:
        problems.append(
            "graph.allow_list: missing (required): the actions plans may take, each with its "
            'highest risk, e.g. actions = { restart = "low" } (or set graph.factory, or [demo])'
        )
    if config.gatherer is None:
        problems.append(
            "gatherer: missing (required): without evidence every alert escalates; configure "
            '[gatherer] kind = "prometheus" with base_url and queries (or set graph.factory, '
            "or [demo])"
        )
    problems += _verifier_problems(config)
    if graph is not None and graph.rca is not None:
        rca = graph.rca
        windows = len(rca.windows) if rca.windows is not None else 3
        if rca.max_attempts > windows and rca.growth is None:
            problems.append(
                f"graph.rca.growth: missing (required): max_attempts = {rca.max_attempts} is "
                f"more than the {windows} windows"
            )
        if rca.windows is not None:
            lengths = [_duration(w) for w in rca.windows]
            if not lengths or any(b <= a for a, b in itertools.pairwise(lengths)):
                problems.append("graph.rca.windows: must be strictly widening, e.g. 15m, 1h, 6h")
    return problems


def _verifier_problems(config: ServeConfig) -> list[str]:
    verifier = config.verifier
    if verifier is None:
        return []
    problems = [
        f"verifier.checks.{name}: needs exactly one of below or above (the bound every "
        "series must meet once recovered)"
        for name, check in verifier.checks.items()
        if (check.below is None) == (check.above is None)
    ]
    if verifier.base_url is None and config.gatherer is None:
        problems.append("verifier.base_url: missing (required): there is no [gatherer] to share")
    if isinstance(config.executor, SuggestOnlyExecutorSection) or config.executor is None:
        problems.append(
            "verifier: the suggest-only executor applies nothing, so there is nothing to "
            'verify; use [executor] kind = "webhook" (or "import"), or remove [verifier]'
        )
    return problems


def _duration(text: str) -> timedelta:
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[text[-1]]
    return timedelta(seconds=int(text[:-1]) * unit)


# -- building what the file describes --------------------------------------------------------


@dataclass(frozen=True)
class ServePlan:
    """What ``durable-ir serve`` runs, built from a :class:`ServeConfig`.

    ``graph`` is ``None`` for the demo agent (``create_app``'s demo default), else a graph
    or an :class:`~durable_ir.IncidentGraphBuilder`; ``slack_signing_secret`` (from
    ``[integrations.slack] signing_secret_env``) enables ``POST /slack/interactions``;
    ``graph_name`` is ``None`` when the file names none (``$DURABLE_IR_GRAPH_NAME``, else
    the default, applies).
    """

    source: str
    graph: Any
    graph_name: str | None
    demo: bool = False
    slack_signing_secret: str | None = field(default=None, repr=False)
    choices: tuple[tuple[str, str], ...] = ()
    components: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """The objects built for the bundled graph: ``gatherer``, ``analyzer``, ``executor``,
    ``notifiers`` (empty for the demo and for an imported graph)."""

    def describe(self) -> list[str]:
        """One line per choice, for the start-up log."""
        return [f"{what}: {how}" for what, how in self.choices]

    def warnings(self) -> list[str]:
        """What the start-up log should say loudly: that the fleet is simulated."""
        if not self.demo:
            return []
        return [
            f"{self.source} asks for [demo]: the demo agent on its SIMULATED fleet; alerts "
            "without sim_scenario and sim_seed labels escalate with nothing gathered, and "
            "nothing real is ever changed"
        ]


def _import(spec: str, where: str, source: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    try:
        target = import_object(spec)
    except ImportError as exc:
        raise ConfigFileError(source, [f"{where}: cannot import {spec!r}: {exc}"]) from None
    except AttributeError:
        raise ConfigFileError(
            source, [f"{where}: {module_name!r} has no attribute {attribute!r}"]
        ) from None
    return target


def _secret(environ: Mapping[str, str], variable: str, where: str, source: str) -> str:
    value = environ.get(variable, "")
    if not value.strip():
        raise ConfigFileError(
            source, [f"{where}: the environment variable {variable} is not set (or empty)"]
        )
    return value


def _call(factory: Any, options: Mapping[str, Any], where: str, source: str, what: str) -> Any:
    if not callable(factory):
        raise ConfigFileError(source, [f"{where}: {factory!r} is not callable"])
    try:
        return factory(**options)
    except Exception as exc:
        raise ConfigFileError(
            source, [f"{where}: calling it failed: {type(exc).__name__}: {exc} ({what})"]
        ) from None


def _options(
    options: Mapping[str, Any],
    options_env: Mapping[str, str],
    environ: Mapping[str, str],
    where: str,
    source: str,
) -> dict[str, Any]:
    merged = dict(options)
    for name, variable in options_env.items():
        if name in merged:
            raise ConfigFileError(source, [f"{where}.options_env.{name}: also in options"])
        merged[name] = _secret(environ, variable, f"{where}.options_env.{name}", source)
    return merged


def build_serve_plan(config: ServeConfig, environ: Mapping[str, str] | None = None) -> ServePlan:
    """Construct what ``config`` describes: secrets from ``environ`` (default
    ``os.environ``), imports resolved, the graph built. Opens nothing."""
    env = os.environ if environ is None else environ
    source = config.source
    if config.demo is not None:
        return _demo_plan(config, config.demo, source)
    graph_section = config.graph or GraphSection()
    if graph_section.factory is not None:
        return _imported_graph_plan(graph_section, graph_section.factory, source)
    try:
        return _builder_plan(config, graph_section, env, source)
    except ConfigFileError:
        raise
    except ConfigurationError as exc:  # a constructor refused a value the schema let through
        raise ConfigFileError(source, [str(exc)]) from None


def _demo_plan(config: ServeConfig, demo: DemoSection, source: str) -> ServePlan:
    from durable_ir.demo.agent import DEMO_GRAPH_NAME, build_demo_builder, describe_analyzer

    try:
        builder = build_demo_builder(demo.analyzer)
    except RuntimeError as exc:  # the anthropic extra is missing
        raise ConfigFileError(source, [f"demo.analyzer: {exc}"]) from None
    name = (config.graph.name if config.graph else None) or DEMO_GRAPH_NAME
    return ServePlan(
        source=source,
        graph=builder,
        graph_name=name,
        demo=True,
        choices=(
            ("graph", f"the demo agent {name!r} on its simulated fleet (alerts need sim_* labels)"),
            ("analyzer", describe_analyzer(demo.analyzer)),
        ),
    )


def _imported_graph_plan(section: GraphSection, factory: str, source: str) -> ServePlan:
    from langgraph.graph import StateGraph
    from langgraph.graph.state import CompiledStateGraph

    from durable_ir.builder import IncidentGraphBuilder

    target = _import(factory, "graph.factory", source)
    kinds = (StateGraph, CompiledStateGraph, IncidentGraphBuilder)
    if callable(target) and not isinstance(target, kinds):
        target = _call(target, {}, "graph.factory", source, "it is called without arguments")
    if not isinstance(target, kinds):
        raise ConfigFileError(
            source,
            [
                f"graph.factory: {factory} is a {type(target).__name__}, not a StateGraph, a "
                "compiled graph, an IncidentGraphBuilder or a function returning one"
            ],
        )
    return ServePlan(
        source=source,
        graph=target,
        graph_name=section.name,
        choices=(("graph", f"{factory} (its own gatherer, analyzer and executor)"),),
    )


def _builder_plan(
    config: ServeConfig, section: GraphSection, env: Mapping[str, str], source: str
) -> ServePlan:
    from durable_ir.builder import IncidentGraphBuilder, SeverityRule
    from durable_ir.rca_loop import RcaConfig
    from durable_ir.remediation import AllowList
    from durable_ir.sla import SlaPolicy

    assert section.allow_list is not None and config.gatherer is not None  # checked on load
    gatherer, gatherer_text = _gatherer(config.gatherer, env, source)
    analyzer, analyzer_text = _analyzer(config.analyzer, env, source)
    executor, executor_text = _executor(config.executor, env, source)
    verifier, verifier_text = _verifier(config, env, source)
    notifiers, notifier_text, signing_secret = _notifiers(config.integrations, env, source)
    rca = section.rca or RcaSection()
    rca_options: dict[str, Any] = {
        "threshold": rca.threshold,
        "max_attempts": rca.max_attempts,
        "growth": rca.growth,
        "attempt_timeout": rca.attempt_timeout,
        "analyzer_retries": rca.analyzer_retries,
    }
    if rca.windows is not None:
        rca_options["windows"] = tuple(_duration(w) for w in rca.windows)
    sla = None
    if section.sla is not None:
        windows = {k: _duration(v) for k, v in section.sla.windows.items()}
        escalate_to = section.sla.escalate_to
        sla = _made("graph.sla", source, SlaPolicy, windows=windows, escalate_to=escalate_to)
    allow = section.allow_list
    rules = [
        _made(
            f"graph.severity_rules[{i}]",
            source,
            SeverityRule,
            r.severity,
            service=r.service,
            name=r.name,
            labels=r.labels,
        )
        for i, r in enumerate(section.severity_rules)
    ]
    builder = IncidentGraphBuilder(
        gatherer=gatherer,
        analyzer=analyzer,
        executor=executor,
        verifier=verifier,
        allow_list=_made(
            "graph.allow_list", source, AllowList, allow.actions, targets=allow.targets
        ),
        rca=_made("graph.rca", source, RcaConfig, **rca_options),
        severity_rules=rules,
        notifiers=notifiers,
        sla=sla,
    )
    name = section.name or "incident"
    return ServePlan(
        source=source,
        graph=builder,
        graph_name=section.name,  # None: $DURABLE_IR_GRAPH_NAME, else the runtime's "incident"
        slack_signing_secret=signing_secret,
        components={
            "gatherer": gatherer,
            "analyzer": analyzer,
            "executor": executor,
            "verifier": verifier if verifier is not None else executor,
            "notifiers": tuple(notifiers),
        },
        choices=(
            (
                "graph",
                f"the bundled incident graph {name!r} (allow-list: "
                f"{', '.join(sorted(allow.actions))})",
            ),
            ("gatherer", gatherer_text),
            ("analyzer", analyzer_text),
            ("executor", executor_text),
            ("verifier", verifier_text),
            ("notifiers", notifier_text),
        ),
    )


def _made(where: str, source: str, factory: Any, *args: Any, **kwargs: Any) -> Any:
    """``factory(*args, **kwargs)``, a refusal of its values named by the key ``where``."""
    try:
        return factory(*args, **kwargs)
    except ConfigurationError as exc:
        raise ConfigFileError(source, [f"{where}: {exc}"]) from None


def _gatherer(section: PrometheusSection, env: Mapping[str, str], source: str) -> tuple[Any, str]:
    from durable_ir.rca.gatherers.prometheus import PromQuery
    from durable_ir.rca.gatherers.routed import RoutedPrometheusGatherer, RoutedQuery

    headers = {}
    if section.bearer_token_env is not None:
        token = _secret(env, section.bearer_token_env, "gatherer.bearer_token_env", source)
        headers["Authorization"] = f"Bearer {token}"
    queries = {}
    for name, q in section.queries.items():
        try:
            prom = PromQuery(
                q.query,
                metric=q.metric or name,
                unit=q.unit,
                baseline=q.baseline,
                limit=q.limit,
                service_label=q.service_label,
                change=q.change,
                version_label=q.version_label,
            )
        except ConfigurationError as exc:
            raise ConfigFileError(source, [f"gatherer.queries.{name}: {exc}"]) from None
        queries[name] = RoutedQuery(prom, frozenset(q.services), frozenset(q.alerts))
    try:
        gatherer = RoutedPrometheusGatherer(
            section.base_url,
            queries,
            step=timedelta(seconds=section.step),
            timeout=section.timeout,
            max_points=section.max_points,
            headers=headers,
        )
    except ConfigurationError as exc:
        raise ConfigFileError(source, [f"gatherer: {exc}"]) from None
    count = len(queries)
    return (
        gatherer,
        f"Prometheus at {section.base_url} ({count} quer{'y' if count == 1 else 'ies'})",
    )


def _analyzer(
    section: OfflineAnalyzerSection | AnthropicAnalyzerSection | ChatModelAnalyzerSection | None,
    env: Mapping[str, str],
    source: str,
) -> tuple[Any, str]:
    if section is None or isinstance(section, OfflineAnalyzerSection):
        from durable_ir.rca.analyzers import CorrelationAnalyzer

        return CorrelationAnalyzer(), "CorrelationAnalyzer (offline)"
    if isinstance(section, AnthropicAnalyzerSection):
        key = _secret(env, section.api_key_env, "analyzer.api_key_env", source)
        try:
            import anthropic

            from durable_ir.rca.analyzers.anthropic import DEFAULT_MODEL, AnthropicAnalyzer
        except ImportError:
            raise ConfigFileError(
                source,
                [
                    'analyzer: kind = "anthropic" needs the anthropic extra: '
                    "pip install 'durable-ir[anthropic]'"
                ],
            ) from None
        client = anthropic.AsyncAnthropic(api_key=key, max_retries=0, base_url=section.base_url)
        model = section.model or DEFAULT_MODEL
        analyzer = AnthropicAnalyzer(
            client, model=model, max_tokens=section.max_tokens, timeout=section.timeout
        )
        return analyzer, f"AnthropicAnalyzer ({model})"
    from durable_ir.rca.analyzers.langchain import ChatModelAnalyzer

    factory = _import(section.factory, "analyzer.factory", source)
    options = _options(section.options, section.options_env, env, "analyzer", source)
    model = _call(factory, options, "analyzer.factory", source, "with analyzer.options")
    try:
        chat = ChatModelAnalyzer(model)
    except (TypeError, ConfigurationError) as exc:
        raise ConfigFileError(source, [f"analyzer.factory: {exc}"]) from None
    return chat, f"ChatModelAnalyzer ({section.factory})"


def _executor(
    section: SuggestOnlyExecutorSection | ImportedExecutorSection | WebhookExecutorSection | None,
    env: Mapping[str, str],
    source: str,
) -> tuple[Any, str]:
    from durable_ir.remediation import Executor, SuggestOnlyExecutor, Verifier

    if section is None or isinstance(section, SuggestOnlyExecutorSection):
        return SuggestOnlyExecutor(), "suggest-only: approved plans are handed to a person"
    if isinstance(section, WebhookExecutorSection):
        from durable_ir.remediation.webhook import WebhookExecutor

        token = None
        if section.token_env is not None:
            token = _secret(env, section.token_env, "executor.token_env", source)
        webhook = _made(
            "executor",
            source,
            WebhookExecutor,
            section.url,
            token=token,
            timeout=section.timeout,
            retries=section.retries,
            backoff=section.backoff,
        )
        return webhook, f"webhook: each step POSTed to {section.url}"
    factory = _import(section.factory, "executor.factory", source)
    options = _options(section.options, section.options_env, env, "executor", source)
    executor = _call(factory, options, "executor.factory", source, "with executor.options")
    if not isinstance(executor, Executor) or not isinstance(executor, Verifier):
        raise ConfigFileError(
            source,
            [
                f"executor.factory: {section.factory} made a {type(executor).__name__}, which "
                "needs async dry_run, apply, rollback(step, context) and verify(context)"
            ],
        )
    return executor, section.factory


def _verifier(config: ServeConfig, env: Mapping[str, str], source: str) -> tuple[Any, str]:
    """The ``[verifier]``'s verifier, or ``None``: the executor verifies (suggest-only: never
    healthy; webhook: never healthy, configure one; imported: its own ``verify``)."""
    section = config.verifier
    if section is None:
        return None, "the executor's own"
    from durable_ir.remediation.prometheus import PrometheusVerifier, RecoveryCheck

    base_url = section.base_url
    if base_url is None:
        assert config.gatherer is not None  # checked on load
        base_url = config.gatherer.base_url
    headers = {}
    if section.bearer_token_env is not None:
        token = _secret(env, section.bearer_token_env, "verifier.bearer_token_env", source)
        headers["Authorization"] = f"Bearer {token}"
    checks = {
        name: _made(
            f"verifier.checks.{name}",
            source,
            RecoveryCheck,
            c.query,
            below=c.below,
            above=c.above,
            services=frozenset(c.services),
            alerts=frozenset(c.alerts),
            absent_ok=c.absent_ok,
        )
        for name, c in section.checks.items()
    }
    verifier = _made(
        "verifier",
        source,
        PrometheusVerifier,
        base_url,
        checks,
        wait=_duration(section.wait),
        interval=timedelta(seconds=section.interval),
        timeout=section.timeout,
        headers=headers,
    )
    count = len(checks)
    return verifier, (
        f"Prometheus at {base_url} ({count} recovery check{'' if count == 1 else 's'}, "
        f"waiting up to {section.wait})"
    )


def _notifiers(
    section: IntegrationsSection | None, env: Mapping[str, str], source: str
) -> tuple[list[Any], str, str | None]:
    if section is None:
        return [], "none", None
    notifiers: list[Any] = []
    names: list[str] = []
    secret = None
    if section.pagerduty is not None:
        from durable_ir.integrations.pagerduty import PagerDutyNotifier

        pd = section.pagerduty
        key = _secret(env, pd.routing_key_env, "integrations.pagerduty.routing_key_env", source)
        notifiers.append(
            PagerDutyNotifier(
                key,
                base_url=pd.base_url,
                page_on_open=tuple(pd.page_on_open),
                timeout=pd.timeout,
                name=pd.name,
            )
        )
        names.append(f"PagerDuty ({pd.name})")
    if section.slack is not None:
        sl = section.slack
        token = _secret(env, sl.bot_token_env, "integrations.slack.bot_token_env", source)
        if sl.signing_secret_env is not None:
            secret = _secret(
                env, sl.signing_secret_env, "integrations.slack.signing_secret_env", source
            )
        try:
            from slack_sdk.web.async_client import AsyncWebClient

            from durable_ir.integrations.slack import SlackNotifier
        except ImportError:
            raise ConfigFileError(
                source,
                ["integrations.slack: needs the slack extra: pip install 'durable-ir[slack]'"],
            ) from None
        client = (
            AsyncWebClient(token=token, base_url=sl.base_url)
            if sl.base_url
            else AsyncWebClient(token=token)
        )
        notifiers.append(SlackNotifier(client, sl.channel, name=sl.name))
        names.append(f"Slack ({sl.channel})")
    return notifiers, ", ".join(names) or "none", secret
