"""The ``durable-ir`` command: the demo, and the operator's view of incidents.

::

    durable-ir demo [--database-url URL] [--offline]
    durable-ir incidents list [--status open|closed] [--limit N]
    durable-ir incidents show ID
    durable-ir incidents approve ID --by NAME [--reason R] [--graph MODULE:ATTR | --config PATH]
    durable-ir incidents reject ID --by NAME --reason R [--graph MODULE:ATTR | --config PATH]
    durable-ir versions list|check|migrate …   (graph versions: see durable_ir.cli_versions)
    durable-ir serve (--config PATH | --graph MODULE:ATTRIBUTE | --demo) [--host H] [--port P]
                     [--database-url URL] [--keep-graph MODULE:ATTRIBUTE …] [--check]
                     [--log-level LEVEL] [--log-format text|json]
    durable-ir token hash            (the token on stdin; prints its SHA-256)
    durable-ir token new NAME --role ROLE [--role ROLE …]

Every ``incidents`` command takes ``--database-url`` (default ``$DURABLE_IR_DATABASE_URL``,
else ``sqlite:///durable_ir.db``) and ``--json`` (machine-readable output on stdout).

``list`` and ``show`` read the incident index, the approval ledger and the latest checkpoint;
they need no graph code. ``approve`` and ``reject`` record the decision with
:meth:`durable_ir.Runtime.decide`, which then resumes the incident's graph (apply, verify, or
escalate) in this process, so they need the graph: ``--graph module:attribute`` names a
``StateGraph``, a compiled graph, an :class:`~durable_ir.IncidentGraphBuilder`, or a function
returning one, called without arguments; ``--config PATH`` (or ``$DURABLE_IR_CONFIG``) takes
the graph a ``serve`` config file describes. Without either it is the demo agent,
``durable_ir.demo.agent:build_demo_graph``; it is registered under the graph name the incident
was recorded with. The current directory is importable, so ``--graph my_agent:build`` works
from a project's root.

``serve`` runs the incident API (the ``service`` extra: ``pip install 'durable-ir[service]'``)
on what a config file chooses (``--config PATH`` or ``$DURABLE_IR_CONFIG``; see
:mod:`durable_ir.serve_config`), on your own graph (``--graph``), or on the demo agent's
simulated fleet (``--demo``); given none of them it refuses to start (exit 2) rather than
simulate. Other settings come from the environment (see ``docs/service.md``). ``token hash``
prints the SHA-256 that ``DURABLE_IR_API_TOKENS`` stores for a token read from stdin;
``token new`` makes a random token and prints it with its ``DURABLE_IR_API_TOKENS`` entry.

Exit codes: 0 done; 1 unexpected failure (e.g. the database is unreachable); 2 bad input (a
malformed or refused decision, an unknown option, a ``--graph`` that does not load, a SQLite
file that does not exist); 3 no such incident; 4 conflict: the incident is not waiting for a
decision (the message, and ``winner`` in ``--json`` output, name the decision that won).
Errors are one line on stderr.

Example:
    >>> from durable_ir.cli import build_parser
    >>> build_parser().parse_args(["demo"]).command
    'demo'
    >>> args = build_parser().parse_args(["incidents", "approve", "INC-1", "--by", "alice"])
    >>> args.action, args.incident, args.by, args.graph, args.config
    ('approve', 'INC-1', 'alice', None, None)
    >>> args = build_parser().parse_args(["serve", "--port", "9000", "--config", "serve.toml"])
    >>> args.command, args.host, args.port, args.config, args.demo
    ('serve', '127.0.0.1', 9000, 'serve.toml', False)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from durable_ir import __version__
from durable_ir.cli_common import (
    DEFAULT_GRAPH,
    EXIT_CONFLICT,
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    configured_graph,
    load_graph,
)
from durable_ir.cli_common import (
    console as _console,
)
from durable_ir.cli_common import (
    print_json as _print_json,
)
from durable_ir.cli_versions import add_versions_parser, run_versions

__all__ = [
    "DEFAULT_GRAPH",
    "EXIT_CONFLICT",
    "EXIT_FAILED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
    "build_parser",
    "load_graph",
    "main",
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for ``durable-ir``."""
    parser = argparse.ArgumentParser(
        prog="durable-ir",
        description="Incident-response agents on LangGraph with durable human approvals.",
    )
    parser.add_argument("--version", action="version", version=f"durable-ir {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the bundled demo (SQLite, no network, no API key)")
    demo.add_argument(
        "--database-url",
        help="run on this database instead of a fresh temporary SQLite file (use a scratch "
        "database: the demo's SLA sweep expires every overdue approval in it)",
    )
    demo.add_argument(
        "--offline",
        action="store_true",
        help="use the offline CorrelationAnalyzer even if ANTHROPIC_API_KEY is set",
    )

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--database-url",
        help="default: $DURABLE_IR_DATABASE_URL, else sqlite:///durable_ir.db",
    )
    common.add_argument("--json", action="store_true", help="machine-readable output")
    deciding = argparse.ArgumentParser(add_help=False)
    deciding.add_argument("incident", help="the incident id")
    deciding.add_argument("--by", required=True, help="who decides (recorded in the ledger)")
    deciding.add_argument(
        "--graph",
        help="module:attribute of the incident's graph (a StateGraph, a compiled graph, an "
        "IncidentGraphBuilder, or a function returning one); needed to resume it "
        f"(default: the --config file's graph, else {DEFAULT_GRAPH})",
    )
    deciding.add_argument(
        "--config",
        metavar="PATH",
        help="the `durable-ir serve` config file whose graph the incident runs (default: "
        "$DURABLE_IR_CONFIG, unless --graph is given)",
    )
    deciding.add_argument(
        "--keep-graph",
        action="append",
        default=[],
        metavar="MODULE:ATTRIBUTE",
        help="an older version of the graph, for incidents that paused on it (repeatable)",
    )

    incidents = commands.add_parser(
        "incidents",
        help="list, show, approve and reject incidents",
        description="Exit codes: 0 done, 1 failure, 2 bad input, 3 no such incident, "
        "4 conflict (not waiting for a decision; the winner is named).",
    )
    actions = incidents.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", parents=[common], help="incidents, newest first")
    listing.add_argument("--status", choices=["open", "closed"], help="only open or closed ones")
    listing.add_argument("--limit", type=_limit, default=100, help="at most this many (1–1000)")
    show = actions.add_parser("show", parents=[common], help="one incident, its approvals")
    show.add_argument("incident", help="the incident id")
    approve = actions.add_parser(
        "approve", parents=[common, deciding], help="approve the pending plan, then resume"
    )
    approve.add_argument("--reason", help="why (optional)")
    reject = actions.add_parser(
        "reject", parents=[common, deciding], help="reject the pending plan (escalates)"
    )
    reject.add_argument("--reason", required=True, help="why (required)")
    prune = actions.add_parser(
        "prune",
        parents=[common],
        help="delete the checkpoints of incidents closed long ago (the ledger stays)",
    )
    prune.add_argument(
        "--older-than-days",
        type=_days,
        required=True,
        help="prune incidents closed at least this many days ago",
    )

    serve = commands.add_parser(
        "serve",
        help="run the incident API (needs the service extra)",
        description="Serve the incident API with uvicorn. What it runs comes from a config "
        "file (--config or $DURABLE_IR_CONFIG), --graph, or --demo; without one of them it "
        "refuses to start. Settings (API tokens, SLA interval, body limit, …) come from the "
        "environment: see docs/service.md.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--database-url",
        help="default: $DURABLE_IR_DATABASE_URL, else sqlite:///durable_ir.db",
    )
    serve.add_argument(
        "--config",
        metavar="PATH",
        help="the config file (TOML) choosing the graph, gatherer, analyzer, executor and "
        "integrations (default: $DURABLE_IR_CONFIG); see docs/service.md and examples/serve.toml",
    )
    serve.add_argument(
        "--demo",
        action="store_true",
        help="serve the demo agent on its simulated fleet (alerts need sim_scenario and "
        "sim_seed labels: nothing real is investigated or changed)",
    )
    serve.add_argument(
        "--check",
        action="store_true",
        help="validate what would be served (the config file: its keys, secrets' variables, "
        "imports), print it and exit: 0 if it would start, 2 if not; opens nothing",
    )
    serve.add_argument(
        "--graph",
        help="module:attribute of your own incident graph to serve (as for `incidents "
        "approve`), instead of a config file",
    )
    serve.add_argument(
        "--keep-graph",
        action="append",
        default=[],
        metavar="MODULE:ATTRIBUTE",
        help="an older version of --graph to keep running for the incidents that paused on it "
        "(repeatable; see docs/versioning.md)",
    )
    serve.add_argument(
        "--graph-name",
        help="the name the graph is registered under (default: $DURABLE_IR_GRAPH_NAME, else "
        "demo-agent for the demo graph, incident for others)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="for durable-ir's loggers and uvicorn's (default info; other libraries: warning)",
    )
    serve.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="json: one JSON object per line (default: $DURABLE_IR_LOG_FORMAT, else text)",
    )

    add_versions_parser(commands, common)

    token = commands.add_parser("token", help="API tokens for the service")
    token_actions = token.add_subparsers(dest="action", required=True)
    token_actions.add_parser(
        "hash",
        help="print the SHA-256 of the token read from stdin (what DURABLE_IR_API_TOKENS keeps)",
    )
    new = token_actions.add_parser(
        "new", help="make a random token; print it and its DURABLE_IR_API_TOKENS entry"
    )
    new.add_argument("identity", help="who holds it (recorded on their decisions)")
    new.add_argument(
        "--role",
        action="append",
        required=True,
        choices=["viewer", "approver", "lead", "ingest"],
        help="repeat for several roles",
    )
    return parser


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number (0–65535), got {text!r}")
    return value


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 36500:
        raise argparse.ArgumentTypeError(f"must be a number of days from 0 to 36500, got {text!r}")
    return value


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 1000, got {text!r}")
    return value


# -- loading a graph ------------------------------------------------------------------------


# -- output ---------------------------------------------------------------------------------


def _when(value: datetime | None, *, short: bool = False) -> str:
    return value.strftime("%Y-%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S") if value else "—"


def _decision_json(record: Any) -> dict[str, Any]:
    """A ledger record without its (large) request: ``show --json`` has that."""
    return {k: v for k, v in record.to_dict().items() if k != "request"}


def _state_summary(values: Mapping[str, Any]) -> dict[str, Any]:
    rca = values.get("rca") or {}
    return {
        "title": values.get("title"),
        "severity": values.get("severity"),
        "root_cause": (rca.get("hypothesis") or {}).get("root_cause"),
        "confidence": rca.get("confidence"),
        "plan": values.get("plan"),
        "approval": values.get("approval"),
        "outcome": values.get("outcome"),
        "timeline": list(values.get("timeline") or []),
    }


# -- commands -------------------------------------------------------------------------------


def _check_database(url: str | None) -> None:
    """Refuse a SQLite file that does not exist (opening it would create an empty one)."""
    from durable_ir.persistence import parse_database_url

    parsed = parse_database_url(url)
    if parsed.backend == "sqlite" and not Path(parsed.target).exists():
        raise CliError(
            f"no SQLite database at {parsed.target} (pass --database-url or set "
            "$DURABLE_IR_DATABASE_URL)",
            EXIT_USAGE,
        )


async def _list(args: argparse.Namespace) -> None:
    from durable_ir.incident import run_status
    from durable_ir.runtime import open_runtime

    async with open_runtime(args.database_url) as rt:
        rows = await rt.incidents(status=args.status, limit=args.limit)
        found = await rt.store.ledger.latest_many([row.incident_id for row in rows])
    latest = {row.incident_id: found.get(row.incident_id) for row in rows}
    pending = {i: a if a is not None and a.is_pending else None for i, a in latest.items()}
    if args.json:
        _print_json(
            [
                {k: v for k, v in row.to_dict().items() if k != "alert"}
                | {
                    "run_status": run_status(row.status, latest[row.incident_id]),
                    "pending_approval": _decision_json(p)
                    if (p := pending[row.incident_id])
                    else None,
                }
                for row in rows
            ]
        )
        return
    from rich.table import Table

    title = f"{len(rows)} incident(s)" + (f", {args.status}" if args.status else "")
    table = Table(title=title + " (times UTC)")
    for column, wrap in (
        ("id", False), ("status", False), ("outcome", True), ("approval due", True),
        ("sev", False), ("title", True), ("alerts", False), ("opened", True),
    ):  # fmt: skip
        table.add_column(column, no_wrap=not wrap)
    for row in rows:
        waiting = pending[row.incident_id]
        table.add_row(
            row.incident_id,
            run_status(row.status, latest[row.incident_id]),
            row.outcome or "—",
            _when(waiting.deadline_at, short=True) if waiting else "—",
            row.severity or "—",
            row.title,
            str(row.alerts_received),
            _when(row.opened_at, short=True),
        )
    _console().print(table)


async def _prune(args: argparse.Namespace) -> None:
    from datetime import timedelta

    from durable_ir.runtime import open_runtime

    batch = 100
    pruned: list[str] = []
    async with open_runtime(args.database_url) as rt:
        while True:
            done = await rt.prune(older_than=timedelta(days=args.older_than_days), limit=batch)
            pruned += done
            if len(done) < batch:
                break
    if args.json:
        _print_json({"pruned": pruned})
    else:
        print(
            f"pruned the checkpoints of {len(pruned)} incident(s) closed at least "
            f"{args.older_than_days:g} day(s) ago; their ledger rows are kept"
        )


async def _show(args: argparse.Namespace) -> None:
    from durable_ir.approval.deciding import validate_incident_id
    from durable_ir.errors import NotFound
    from durable_ir.incident import run_status
    from durable_ir.runtime import open_runtime

    incident_id = validate_incident_id(args.incident)
    async with open_runtime(args.database_url) as rt:
        row = await rt.store.ledger.get_incident(incident_id)
        approvals = await rt.history(incident_id)
        values = await rt.stored_values(incident_id)
    if row is None and not approvals and values is None:
        raise NotFound(f"no incident {incident_id!r}")
    if args.json:
        _print_json(
            {
                "incident_id": incident_id,
                "incident": row.to_dict() if row else None,
                "run_status": run_status(
                    row.status if row else "open", approvals[-1] if approvals else None
                ),
                "approvals": [a.to_dict() for a in approvals],
                "state": _state_summary(values) if values is not None else None,
            }
        )
        return
    from rich.table import Table

    from durable_ir.demo.timeline import IncidentView, clock_time, render_incident

    console = _console()
    facts = Table.grid(padding=(0, 1))
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    if row is not None:
        facts.add_row("incident", f"{row.incident_id} ({row.status}, graph {row.graph})")
        facts.add_row("title", row.title or "—")
        facts.add_row("severity", row.severity or "—")
        facts.add_row("alerts", f"{row.alerts_received} received")
        facts.add_row("opened", _when(row.opened_at))
        facts.add_row("closed", f"{_when(row.closed_at)} ({row.outcome})" if row.closed_at else "—")
    else:
        facts.add_row("incident", f"{incident_id} (not in the index)")
    console.print(facts)
    table = Table(title="approvals (ledger, times UTC)")
    for column in ("approval", "status", "requested", "deadline", "decided", "reason", "applied"):
        table.add_column(column, overflow="fold")
    for record in approvals:
        table.add_row(
            record.approval_id[:12],
            record.status.value,
            _when(record.requested_at),
            _when(record.deadline_at),
            f"{record.decided_by} at {clock_time(record.decided_at)}" if record.decided_at else "—",
            record.reason or "—",
            "yes" if record.applied_at else ("no" if not record.is_pending else "—"),
        )
    console.print(table)
    if values is not None:
        console.print(render_incident(IncidentView(incident_id, values, approvals)))


async def _decide(args: argparse.Namespace) -> None:
    from durable_ir.approval.deciding import validate_incident_id
    from durable_ir.decisions import Approve, Decision, Reject, validate_decision
    from durable_ir.errors import NotFound
    from durable_ir.runtime import open_runtime

    incident_id = validate_incident_id(args.incident)
    decision: Decision = (
        Approve(by=args.by, reason=args.reason)
        if args.action == "approve"
        else Reject(by=args.by, reason=args.reason)
    )
    validate_decision(decision)  # bad input fails before any graph code is loaded
    async with open_runtime(args.database_url) as rt:
        row = await rt.store.ledger.get_incident(incident_id)
        latest = await rt.store.ledger.latest(incident_id)
        if row is None and latest is None:
            raise NotFound(f"no incident {incident_id!r}")
        graph_name = latest.graph if latest is not None else row.graph  # type: ignore[union-attr]
        for kept in args.keep_graph:
            rt.register(load_graph(kept), name=graph_name, default=False)
        rt.register(_decision_graph(args), name=graph_name)
        result = await rt.decide(incident_id, decision)
        snapshot = await rt.get(incident_id)
    outcome = snapshot.values.get("outcome") or {}
    if args.json:
        _print_json(
            {
                "incident_id": incident_id,
                "decision": _decision_json(result.record),
                "applied": result.applied,
                "status": snapshot.status,
                "outcome": outcome or None,
            }
        )
        return
    console = _console()
    console.print(f"{incident_id}: {result.record.describe()}")
    if not result.applied:
        console.print(
            "the incident is busy in another worker: the decision is recorded, and that worker "
            "or recovery applies it"
        )
    ended = outcome.get("status")
    reason = f" ({outcome['reason']})" if outcome.get("reason") else ""
    console.print(f"incident status: {snapshot.status}" + (f", {ended}{reason}" if ended else ""))


def _decision_graph(args: argparse.Namespace) -> Any:
    """The graph ``approve``/``reject`` resume: ``--graph``, else the config file's (``--config``
    or ``$DURABLE_IR_CONFIG``), else the demo agent's."""
    graph = configured_graph(args.graph, args.config)
    return graph if graph is not None else load_graph(DEFAULT_GRAPH)


def _as_cli_error(exc: BaseException) -> CliError | None:
    from durable_ir.errors import ConfigurationError, Conflict, InvalidInput, NotFound

    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, NotFound):
        return CliError(str(exc), EXIT_NOT_FOUND, kind="not_found")
    if isinstance(exc, Conflict):
        return CliError(str(exc), EXIT_CONFLICT, kind="conflict", winner=exc.winner)
    if isinstance(exc, InvalidInput | ConfigurationError):
        return CliError(str(exc), EXIT_USAGE, kind="invalid")
    return None


def _run_incidents(args: argparse.Namespace) -> int:
    command = {
        "list": _list,
        "show": _show,
        "approve": _decide,
        "reject": _decide,
        "prune": _prune,
    }[args.action]

    async def run() -> int:
        await command(args)
        return EXIT_OK

    return _run_command(args, "incidents", run)


def _run_command(
    args: argparse.Namespace, group: str, run: Callable[[], Coroutine[Any, Any, int]]
) -> int:
    """Run one ``group`` subcommand: its errors as one line on stderr (and JSON with
    ``--json``) and an exit code."""
    try:
        _check_database(args.database_url)
        code = asyncio.run(run())
    except BrokenPipeError:  # `| head`: the reader is gone, and so is stdout
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as exc:
        error = _as_cli_error(exc)
        if error is None:
            error = CliError(f"{type(exc).__name__}: {exc}", EXIT_FAILED)
        if args.json:
            winner = _decision_json(error.winner) if error.winner is not None else None
            _print_json({"error": error.kind, "message": str(error), "winner": winner})
        print(f"durable-ir {group} {args.action}: {error}", file=sys.stderr)
        return int(error.code)
    return code


NOTHING_TO_SERVE = (
    "nothing to serve: give a config file (--config PATH, or $DURABLE_IR_CONFIG) choosing the "
    "graph, the Prometheus gatherer, the analyzer and the executor (start from "
    "examples/serve.toml; see docs/service.md, 'The config file'), or --graph module:attribute "
    "for your own graph, or --demo for the demo agent on its simulated fleet"
)


def _serve_choice(
    args: argparse.Namespace,
) -> tuple[Any, str | None, str | None, list[str], list[str]]:
    """(graph, graph name, Slack signing secret, lines to log, warnings to log) for
    ``serve``'s arguments; ``CliError`` or ``ConfigurationError`` when they do not say what
    to serve."""
    from durable_ir.serve_config import CONFIG_ENV, build_serve_plan, load_serve_config

    from_env = not args.config and bool(os.environ.get(CONFIG_ENV, "").strip())
    path = args.config or (os.environ[CONFIG_ENV].strip() if from_env else None)
    where = f"${CONFIG_ENV}={path}" if from_env else f"--config {path}"
    if path and args.demo:
        raise CliError(
            f"--demo and a config file ({where}) both say what to serve: choose one (a config "
            "file can ask for the demo with [demo])",
            EXIT_USAGE,
        )
    if path and args.graph:
        raise CliError(
            f"--graph and a config file ({where}) both say what to serve: choose one (a config "
            'file names your graph with [graph] factory = "module:attribute")',
            EXIT_USAGE,
        )
    if args.demo and args.graph:
        raise CliError("--demo and --graph both say what to serve: choose one", EXIT_USAGE)
    if path:
        plan = build_serve_plan(load_serve_config(path))
        lines = [f"config {plan.source}", *plan.describe()]
        return plan.graph, plan.graph_name, plan.slack_signing_secret, lines, plan.warnings()
    if args.demo:  # create_app() warns that the fleet is simulated
        return None, None, None, ["--demo: the demo agent on its simulated fleet"], []
    if args.graph:
        return load_graph(args.graph), None, None, [f"--graph {args.graph}"], []
    raise CliError(NOTHING_TO_SERVE, EXIT_USAGE)


def _serve(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        print(
            "durable-ir serve: needs the service extra: pip install 'durable-ir[service]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    from durable_ir.errors import ConfigurationError
    from durable_ir.service.server import serve

    try:
        if args.database_url:
            _check_url(args.database_url)
        graph, graph_name, signing_secret, lines, warnings = _serve_choice(args)
        kept = [load_graph(spec) for spec in args.keep_graph]
        if args.check:
            for line in [*lines, *(f"warning: {w}" for w in warnings)]:
                print(line)
            print("durable-ir serve: ok, it would start")
            return EXIT_OK
        serve(
            keep_graphs=kept,
            host=args.host,
            port=args.port,
            database_url=args.database_url,
            graph=graph,
            graph_name=args.graph_name or graph_name,
            log_level=args.log_level,
            log_format=args.log_format,
            slack_signing_secret=signing_secret,
            startup_lines=lines,
            startup_warnings=warnings,
        )
    except (CliError, ConfigurationError) as exc:
        print(f"durable-ir serve: {exc}", file=sys.stderr)
        return exc.code if isinstance(exc, CliError) else EXIT_USAGE
    return EXIT_OK


def _check_url(url: str) -> None:
    from durable_ir.persistence import parse_database_url

    parse_database_url(url)  # ConfigurationError naming the problem


def _token(args: argparse.Namespace) -> int:
    import hashlib
    import secrets

    if args.action == "hash":
        token = sys.stdin.readline().strip()
        if not token:
            print("durable-ir token hash: no token on stdin", file=sys.stderr)
            return EXIT_USAGE
        print(hashlib.sha256(token.encode("utf-8")).hexdigest())
        return EXIT_OK
    if not args.identity.strip() or args.identity.startswith("system:"):
        print(
            "durable-ir token new: identities starting with system: are reserved", file=sys.stderr
        )
        return EXIT_USAGE
    token = secrets.token_urlsafe(32)
    entry = {
        "identity": args.identity,
        "roles": sorted(set(args.role)),
        "token_sha256": hashlib.sha256(token.encode("utf-8")).hexdigest(),
    }
    print(f"token (give it to {args.identity}; it is not stored anywhere): {token}")
    print(f"DURABLE_IR_API_TOKENS entry: {json.dumps(entry)}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "demo":
        from durable_ir.demo.runner import run_demo  # imported on use: keeps `--help` fast

        return asyncio.run(
            run_demo(args.database_url, analyzer="offline" if args.offline else "auto")
        )
    if args.command == "incidents":
        return _run_incidents(args)
    if args.command == "versions":
        return _run_command(args, "versions", lambda: run_versions(args))
    if args.command == "serve":
        return _serve(args)
    if args.command == "token":
        return _token(args)
    return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
