"""Prometheus queries chosen per alert: each query may be limited to some services and some
alert names, and its template may use the attempt's window. What ``durable-ir serve``'s
config file builds from ``[gatherer.queries.*]``.

On each gathering, the queries that apply to the alert (a query with no ``services`` applies
to every service, one with no ``alerts`` to every alert name) run through a
:class:`~durable_ir.rca.gatherers.prometheus.PrometheusGatherer`, with two more placeholders
than it fills itself:

- ``{window}``: the attempt's window as a PromQL duration (``15m``, ``1h``, ``6h``) — it
  widens on every attempt, like the range the query reads;
- ``{alertname}``: the alert's name (an Alertmanager alert's ``alertname`` label is the same).

``{service}`` and ``{<label>}`` are filled from the alert as ``PrometheusGatherer`` does
(``{window}`` is always the window, even for an alert with a ``window`` label).
An alert no query applies to gathers no evidence (logged): the analyzer then says so.

Example:
    >>> from datetime import timedelta
    >>> errors = RoutedQuery(PromQuery('rate(http_errors_total{job="{service}"}[{window}])',
    ...                                metric="errors"), services=frozenset({"checkout"}))
    >>> gatherer = RoutedPrometheusGatherer("http://prometheus:9090", {"errors": errors})
    >>> sorted(gatherer.queries_for({"name": "HighErrors", "service": "checkout"}))
    ['errors']
    >>> gatherer.queries_for({"name": "HighErrors", "service": "search"})
    {}
    >>> promql_duration(timedelta(minutes=15)), promql_duration(timedelta(hours=6))
    ('15m', '6h')
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import httpx

from durable_ir.rca.evidence import (
    ChangeEvidence,
    EventEvidence,
    EvidenceWindow,
    LogEvidence,
    MetricEvidence,
)
from durable_ir.rca.gatherers.prometheus import PrometheusGatherer, PromQuery

__all__ = ["RoutedPrometheusGatherer", "RoutedQuery", "promql_duration"]

log = logging.getLogger("durable_ir.rca.prometheus")

AnyEvidence = LogEvidence | MetricEvidence | ChangeEvidence | EventEvidence


def promql_duration(length: timedelta) -> str:
    """``length`` as a PromQL duration, in the largest whole unit (at least one second)."""
    seconds = max(1, round(length.total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class RoutedQuery:
    """A :class:`PromQuery` and the alerts it is for (empty: all)."""

    query: PromQuery
    services: frozenset[str] = frozenset()
    alerts: frozenset[str] = frozenset()

    def applies_to(self, alert: Mapping[str, Any]) -> bool:
        """Whether this query runs for ``alert``."""
        service, name = alert.get("service"), alert.get("name")
        return (not self.services or service in self.services) and (
            not self.alerts or name in self.alerts
        )


class RoutedPrometheusGatherer:
    """The queries of ``queries`` that apply to each alert, run against ``base_url``.

    ``step``, ``timeout`` and ``max_points`` are :class:`PrometheusGatherer`'s; ``headers``
    are sent with every query (e.g. ``Authorization`` for a Prometheus behind a proxy).
    Invalid options raise :class:`~durable_ir.errors.ConfigurationError` here, not later.
    """

    def __init__(
        self,
        base_url: str,
        queries: Mapping[str, RoutedQuery],
        *,
        step: timedelta = timedelta(seconds=60),
        timeout: float = 10.0,
        max_points: int = 720,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        # Validates the URL, the query names and the options once, at construction.
        PrometheusGatherer(
            base_url,
            {n: q.query for n, q in queries.items()},
            step=step,
            timeout=timeout,
            max_points=max_points,
        )
        self.base_url = base_url
        self.queries = dict(queries)
        self.step = step
        self.timeout = timeout
        self.max_points = max_points
        self.headers = dict(headers or {})

    def queries_for(self, alert: Mapping[str, Any]) -> dict[str, PromQuery]:
        """The queries that run for ``alert``, by name."""
        return {n: q.query for n, q in self.queries.items() if q.applies_to(alert)}

    async def gather(self, alert: dict[str, Any], window: EvidenceWindow) -> list[AnyEvidence]:
        """One :class:`~durable_ir.rca.MetricEvidence` per series of every applicable query."""
        chosen = self.queries_for(alert)
        if not chosen:
            log.warning(
                "no Prometheus query applies to alert %r of service %r: no evidence gathered",
                alert.get("name"),
                alert.get("service"),
            )
            return []
        duration = promql_duration(window.length)
        rendered = {
            name: replace(q, query=q.query.replace("{window}", duration))
            for name, q in chosen.items()
        }
        labels = alert.get("labels") if isinstance(alert.get("labels"), Mapping) else {}
        filled = dict(alert)
        if "alertname" not in (labels or {}) and isinstance(alert.get("name"), str):
            filled["alertname"] = alert["name"]
        async with httpx.AsyncClient(headers=self.headers) as client:
            gatherer = PrometheusGatherer(
                self.base_url,
                rendered,
                client=client,
                step=self.step,
                timeout=self.timeout,
                max_points=self.max_points,
            )
            return await gatherer.gather(filled, window)
