"""Rendering an incident's story with rich: what the agent found, what it planned, who decided,
how it ended, and every step on one timeline.

The timeline merges three sources, by time: the graph's own ``state["timeline"]``, the approval
ledger (when each approval was requested and its deadline), and markers the caller adds (the
demo marks when its worker was killed and when the new one took over).

Example:
    >>> from datetime import UTC, datetime
    >>> at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    >>> values = {"timeline": [{"at": at.isoformat(), "stage": "ingest", "event": "alert"}],
    ...           "outcome": {"status": "resolved", "reason": None}}
    >>> view = IncidentView("INC-1", values, approvals=())
    >>> [(row.stage, row.event) for row in view.rows([Marker(at, "worker killed")])]
    [('ingest', 'alert'), ('process', 'worker killed')]
    >>> view.outcome
    ('resolved', None)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from durable_ir.records import ApprovalRecord

__all__ = ["IncidentView", "Marker", "Row", "clock_time", "render_incident"]


def clock_time(at: datetime) -> str:
    """``HH:MM:SS.mmm`` (UTC).

    Example:
        >>> from datetime import UTC, datetime
        >>> clock_time(datetime(2026, 3, 1, 12, 0, 5, 123456, tzinfo=UTC))
        '12:00:05.123'
    """
    return at.strftime("%H:%M:%S.%f")[:-3]


@dataclass(frozen=True)
class Marker:
    """Something that happened outside the graph, shown on the incident's timeline."""

    at: datetime
    event: str
    stage: str = "process"


@dataclass(frozen=True)
class Row:
    """One timeline row; ``source`` is ``graph``, ``ledger`` or ``process``."""

    at: datetime
    stage: str
    event: str
    source: str


def _parse(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class IncidentView:
    """One incident as read back from the database: its final graph state (``values``), its
    approvals from the ledger, and a label (e.g. the simulated scenario)."""

    incident_id: str
    values: Mapping[str, Any]
    approvals: Sequence[ApprovalRecord] = ()
    label: str = ""
    alerts_received: int = 1
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def outcome(self) -> tuple[str | None, str | None]:
        """``(status, reason)`` of the incident's outcome, ``(None, None)`` while it runs."""
        outcome = self.values.get("outcome") or {}
        return outcome.get("status"), outcome.get("reason")

    def rows(self, markers: Sequence[Marker] = ()) -> list[Row]:
        """The merged timeline, oldest first (ties keep the graph's order)."""
        rows: list[Row] = []
        for entry in self.values.get("timeline") or []:
            at = _parse(entry.get("at"))
            if at is not None:
                rows.append(Row(at, str(entry.get("stage")), str(entry.get("event")), "graph"))
        for record in self.approvals:
            window = record.deadline_at - record.requested_at
            rows.append(
                Row(
                    record.requested_at,
                    "approval",
                    f"{record.severity} approval requested, due by "
                    f"{clock_time(record.deadline_at)} (window {window}); paused",
                    "ledger",
                )
            )
        rows.extend(Row(m.at, m.stage, m.event, "process") for m in markers)
        return sorted(rows, key=lambda row: row.at)

    def facts(self) -> list[tuple[str, str]]:
        """What a reader wants first: root cause, plan, decision, outcome."""
        values = self.values
        rca = values.get("rca") or {}
        hypothesis = rca.get("hypothesis") or {}
        facts: list[tuple[str, str]] = []
        if self.label:
            facts.append(("scenario", self.label))
        if self.alerts_received > 1:
            facts.append(("alerts", f"{self.alerts_received} received, one incident"))
        if hypothesis:
            facts.append(
                (
                    "root cause",
                    f"{hypothesis.get('root_cause')} (confidence "
                    f"{float(rca.get('confidence') or 0):.2f}, {rca.get('attempts')} attempt(s))",
                )
            )
        plan = values.get("plan") or {}
        steps = plan.get("steps") or []
        if steps:
            facts.append(
                (
                    "plan",
                    "; ".join(
                        f"{n}. {s['action']} {s['target']} ({s.get('risk')} risk)"
                        for n, s in enumerate(steps, 1)
                    ),
                )
            )
        approval = values.get("approval") or {}
        if approval.get("status"):
            decided_at = _parse(approval.get("decided_at"))
            text = f"{approval['status']} by {approval.get('decided_by')}"
            if decided_at:
                text += f" at {clock_time(decided_at)}"
            if approval.get("reason"):
                text += f": {approval['reason']}"
            facts.append(("decision", text))
        status, reason = self.outcome
        if status:
            detail = ""
            if status == "resolved":
                detail = str((values.get("verification") or {}).get("detail") or "")
            else:
                detail = str((values.get("escalation") or {}).get("detail") or "")
            text = status.upper() + (f" ({reason})" if reason else "")
            facts.append(("outcome", text + (f": {detail}" if detail else "")))
        facts.extend(self.extra.items())
        return facts


_SOURCE_STYLE = {"graph": "", "ledger": "cyan", "process": "bold magenta"}
_OUTCOME_STYLE = {"resolved": "green", "escalated": "yellow"}


def _clip(text: str, limit: int | None) -> str:
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def render_incident(
    view: IncidentView, markers: Sequence[Marker] = (), *, event_chars: int | None = 160
) -> RenderableType:
    """A panel: the facts, then the timeline table (events cut at ``event_chars``; the facts
    above it hold the full root cause and plan).

    Example:
        >>> import io
        >>> from rich.console import Console
        >>> console = Console(width=100, record=True, file=io.StringIO())
        >>> console.print(render_incident(IncidentView("INC-1", {"timeline": []})))
        >>> "INC-1" in console.export_text()
        True
    """
    facts = Table.grid(padding=(0, 1))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column(overflow="fold")
    for name, text in view.facts():
        facts.add_row(name, Text(text))

    timeline = Table(box=box.SIMPLE_HEAD, expand=True, pad_edge=False)
    timeline.add_column("time (UTC)", no_wrap=True, style="dim")
    timeline.add_column("stage", no_wrap=True)
    timeline.add_column("event", overflow="fold", ratio=1)
    for row in view.rows(markers):
        style = _SOURCE_STYLE.get(row.source, "")
        timeline.add_row(
            clock_time(row.at), Text(row.stage, style), Text(_clip(row.event, event_chars), style)
        )

    status, _ = view.outcome
    title = view.incident_id
    title_text = view.values.get("title")
    if title_text:
        title += f" · {title_text}"
    if view.values.get("severity"):
        title += f" · {view.values['severity']}"
    return Panel(
        Group(facts, timeline),
        title=Text(title, style="bold"),
        title_align="left",
        subtitle=Text((status or "open").upper()),
        subtitle_align="right",
        border_style=_OUTCOME_STYLE.get(status or "", "red"),
    )
