"""Incident severities P0 (worst) to P3.

Example:
    >>> from durable_ir.severity import parse_severity
    >>> parse_severity("p1")
    'P1'
"""

from __future__ import annotations

from typing import Literal, cast

from durable_ir.errors import InvalidInput

__all__ = ["SEVERITIES", "Severity", "parse_severity"]

Severity = Literal["P0", "P1", "P2", "P3"]
SEVERITIES: tuple[Severity, ...] = ("P0", "P1", "P2", "P3")


def parse_severity(value: object) -> Severity:
    """Return ``value`` as a :data:`Severity`, accepting any case; raise ``InvalidInput`` else."""
    if isinstance(value, str) and value.strip().upper() in SEVERITIES:
        return cast(Severity, value.strip().upper())
    raise InvalidInput(f"unknown severity {value!r}: expected one of {', '.join(SEVERITIES)}")
