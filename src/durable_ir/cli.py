"""The ``durable-ir`` command.

Example:
    >>> from durable_ir.cli import build_parser
    >>> build_parser().parse_args(["demo"]).command
    'demo'
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from durable_ir import __version__

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for ``durable-ir``."""
    parser = argparse.ArgumentParser(
        prog="durable-ir",
        description="Incident-response agents on LangGraph with durable human approvals.",
    )
    parser.add_argument("--version", action="version", version=f"durable-ir {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run the bundled demo (SQLite, no network, no API key)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "demo":
        from durable_ir.demo import run_demo  # imported on use: keeps `--help` fast

        return asyncio.run(run_demo())
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
