"""OpenTelemetry spans for what durable-ir does: ingesting an alert, each graph run, each
decision, each SLA sweep and recovery pass — each with the incident's and the approval's ids.

Spans go through the OpenTelemetry API (the ``observability`` extra) to whatever tracer
provider the application configured; with none, or without the package, they cost next to
nothing. A decision's span is opened inside the HTTP request that carried it, and the run that
applies it in the background starts inside the same context (asyncio tasks copy it), so the
run's span is a child of the request's trace.

Example:
    >>> with span("durable_ir.example", incident_id="inc-1") as current:
    ...     set_attributes(current, approval_id="a-1")
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["set_attributes", "span"]

try:
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - the extras bring it
    _trace = None  # type: ignore[assignment]

_TRACER_NAME = "durable_ir"


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """A span named ``name`` around the block, with ``attributes`` (``None`` values left
    out); an exception leaving the block is recorded on it. Yields the span (or ``None``
    without OpenTelemetry)."""
    if _trace is None:
        yield None
        return
    tracer = _trace.get_tracer(_TRACER_NAME)
    with tracer.start_as_current_span(name, attributes=_clean(attributes)) as current:
        yield current


def set_attributes(current: Any, **attributes: Any) -> None:
    """Add ``attributes`` to ``current`` (a span from :func:`span`, or ``None``)."""
    if current is not None:
        current.set_attributes(_clean(attributes))


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        f"durable_ir.{key}": value if isinstance(value, bool | int | float) else str(value)[:256]
        for key, value in attributes.items()
        if value is not None
    }
