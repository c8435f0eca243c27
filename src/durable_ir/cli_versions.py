"""``durable-ir versions``: graph versions across deploys, for operators and deploy pipelines.

::

    durable-ir versions list    [--graph SPEC | --config PATH] [--keep-graph SPEC …]
    durable-ir versions check   (--graph SPEC | --config PATH) [--keep-graph SPEC …]
    durable-ir versions migrate (--graph SPEC | --config PATH) [--keep-graph SPEC …] [--to V]
                                [--from V …] [--incident ID …] [--apply]

``--graph`` is the graph the (new) deploy serves (or ``--config PATH``, else
``$DURABLE_IR_CONFIG``: the graph a ``durable-ir serve`` config file describes),
``--keep-graph`` each older version it keeps registered; ``--graph-name`` the name they run under
(default: the only name in the database, else ``incident``). ``list`` shows open and paused
incidents per version; ``check`` exits 1 when the deploy described would strand incidents: open
on a version it does not register, and not movable to its graph by ``migrate`` (exit 0
otherwise, naming the incidents that need a migration); ``migrate`` is a dry run unless
``--apply``. See ``docs/versioning.md``.

Example:
    >>> from durable_ir.cli import build_parser
    >>> args = build_parser().parse_args(["versions", "check", "--graph", "m:g"])
    >>> args.command, args.action, args.graph, args.keep_graph
    ('versions', 'check', 'm:g', [])
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_versions_parser", "run_versions"]

EXIT_OK = 0
EXIT_STRANDED = 1

CONFIG_HELP = (
    "the `durable-ir serve` config file whose graph the deploy serves, instead of --graph "
    "(default: $DURABLE_IR_CONFIG)"
)


def add_versions_parser(commands: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``versions list|check|migrate`` to ``commands`` (the top-level subparsers)."""
    versions: argparse.ArgumentParser = commands.add_parser(
        "versions",
        help="incidents per graph version; the deploy check; migrations",
        description="Exit codes: 0 done, 1 the deploy would strand incidents (check) or a "
        "migration refused some, 2 bad input.",
    )
    graphs = argparse.ArgumentParser(add_help=False)
    graphs.add_argument(
        "--graph-name", help="the name the graphs run under (default: the only one in use)"
    )
    graphs.add_argument(
        "--keep-graph",
        action="append",
        default=[],
        metavar="SPEC",
        help="module:attribute of an older graph version the deploy keeps (repeatable)",
    )
    actions = versions.add_subparsers(dest="action", required=True)
    listing = actions.add_parser(
        "list", parents=[common, graphs], help="open and paused incidents per graph version"
    )
    listing.add_argument("--graph", help="module:attribute of the served graph (optional)")
    listing.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    check = actions.add_parser(
        "check",
        parents=[common, graphs],
        help="exit 1 if a deploy of --graph (and --keep-graph) would strand incidents",
    )
    check.add_argument("--graph", help="module:attribute of the new graph (or --config)")
    check.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    migrate = actions.add_parser(
        "migrate",
        parents=[common, graphs],
        help="move paused incidents to a graph version (dry run unless --apply)",
    )
    migrate.add_argument("--graph", help="module:attribute of the target graph (or --config)")
    migrate.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    migrate.add_argument("--to", help="the target version (default: --graph's)")
    migrate.add_argument(
        "--from",
        dest="from_versions",
        action="append",
        help="only incidents on this version (repeatable; default: every other version)",
    )
    migrate.add_argument(
        "--incident", dest="incidents", action="append", help="only this incident (repeatable)"
    )
    migrate.add_argument("--apply", action="store_true", help="move them (default: dry run)")
    return versions


async def run_versions(args: argparse.Namespace) -> int:
    """Run ``durable-ir versions …``; returns the exit code (errors raise, as for
    ``incidents``)."""
    from durable_ir.cli_common import EXIT_USAGE, CliError, configured_graph, load_graph
    from durable_ir.cli_common import console as _console
    from durable_ir.cli_common import print_json as _print_json
    from durable_ir.runtime import open_runtime
    from durable_ir.versioning import migrate, takeover_check, version_report

    served = configured_graph(args.graph, args.config)
    if served is None and args.action != "list":
        raise CliError(
            f"versions {args.action} needs the deploy's graph: --graph module:attribute, or "
            "--config PATH (or $DURABLE_IR_CONFIG) for a `durable-ir serve` config file",
            EXIT_USAGE,
        )
    kept = [load_graph(spec) for spec in args.keep_graph]
    async with open_runtime(args.database_url) as rt:
        name = args.graph_name or await _graph_name(rt)
        for graph in kept:
            rt.register(graph, name=name, default=False)
        target = rt.register(served, name=name) if served is not None else None
        if args.action == "list":
            rows = [r.to_dict() for r in await version_report(rt)]
            if args.json:
                _print_json({"versions": rows})
            else:
                _table(_console(), "graph versions", rows, _VERSION_COLUMNS)
            return EXIT_OK
        if args.action == "check":
            items = [i.to_dict() for i in await takeover_check(rt)]
            stranded = [i for i in items if not i["can_move"]]
            if args.json:
                _print_json({"ok": not stranded, "incidents": items})
            else:
                console = _console()
                if items:
                    _table(console, "incidents on versions this deploy drops", items, _ITEMS)
                if stranded:
                    console.print(
                        f"{len(stranded)} incident(s) would be stranded: keep their version "
                        "registered (--keep-graph) or finish them first"
                    )
                elif items:
                    console.print(
                        f"{len(items)} incident(s) must be migrated after the deploy: "
                        f"durable-ir versions migrate --graph {args.graph} --apply"
                    )
                else:
                    version = target.version if target is not None else "?"
                    console.print(f"ok: this deploy runs every open incident ({version})")
            return EXIT_STRANDED if stranded else EXIT_OK
        report = await migrate(
            rt,
            graph=name,
            to_version=args.to,
            from_versions=args.from_versions,
            incident_ids=args.incidents,
            dry_run=not args.apply,
        )
        if args.json:
            _print_json(report.to_dict())
        else:
            console = _console()
            verb = "moved" if args.apply else "would move (dry run; --apply to move)"
            _table(console, f"migration to {report.to_version}", report.to_dict()["items"], _ITEMS)
            movable = report.moved if args.apply else [i for i in report.items if i.can_move]
            console.print(f"{verb}: {len(movable)}; refused: {len(report.refused)}")
        return EXIT_STRANDED if report.refused else EXIT_OK


async def _graph_name(rt: Any) -> str:
    from durable_ir.cli_common import EXIT_USAGE, CliError
    from durable_ir.graphs import DEFAULT_GRAPH_NAME

    names = sorted({row.graph for row in await rt.store.ledger.version_census()})
    if len(names) > 1:
        raise CliError(
            f"several graphs have open incidents ({', '.join(names)}): pass --graph-name",
            EXIT_USAGE,
        )
    return names[0] if names else DEFAULT_GRAPH_NAME


_VERSION_COLUMNS = ("graph", "graph_version", "open", "awaiting_approval", "registered", "default")
_ITEMS = ("incident_id", "from_version", "to_version", "node", "can_move", "moved", "reason")


def _table(console: Any, title: str, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column.replace("_", " "))
    for row in rows:
        table.add_row(*("—" if row[c] is None else str(row[c]) for c in columns))
    console.print(table)
