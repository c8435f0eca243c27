"""A gatherer over Prometheus's HTTP API (the ``prometheus`` extra: ``httpx``).

Each configured :class:`PromQuery` is a PromQL template, run as a range query
(``/api/v1/query_range``) over the attempt's window; every series it returns becomes one
:class:`~durable_ir.rca.MetricEvidence`. Evidence ids are stable across windows and runs —
``metric-<query name>-<hash of the series labels>`` — so an analyzer's citation of a series
means the same series on every attempt.

- Placeholders ``{service}`` and ``{<label>}`` in a template are filled from the alert (its
  ``service`` and string fields, then its ``labels``), escaped for a PromQL string literal; a
  placeholder the alert cannot fill is a ``ConfigurationError``. PromQL's own braces
  (``up{job="api"}``) are left alone: only ``{name}`` with nothing else inside is a placeholder.
- The step is ``step``, widened when the window would need more than ``max_points`` samples.
- ``NaN`` and ``±Inf`` samples (no data, a division by zero) are dropped from the points and
  counted in the summary; a series with no finite sample is still reported, as such.
- A query that returns no series adds no evidence (that is an answer, not an error).
- A query with ``change=`` set (``"deploy"``, ``"config"`` …) reads *changes* instead of a
  measurement, and yields :class:`~durable_ir.rca.ChangeEvidence`: a series that appears
  after the query's earliest sample (a new ``version`` label of a ``*_build_info`` metric, a
  new config hash) is a change at its first sample; a series whose value steps (a counter of
  deploys, a ``*_last_deploy_timestamp_seconds`` gauge) is a change at each step — at the
  timestamp it holds, when its value is a Unix time within the window. Their ids are stable
  too: ``change-<query name>-<hash of the labels>-<unix time>``.
- A Prometheus error (``"status": "error"``), a non-JSON answer, or an unreachable server raise
  :class:`PrometheusError` naming the query: the RCA loop records the attempt as failed and
  widens, and the message says which query to fix.

Example:
    >>> from datetime import timedelta
    >>> errors = PromQuery('sum by (pod) (rate(http_requests_total{service="{service}",'
    ...                    'code=~"5.."}[5m]))', metric="http_5xx_rate", unit="req/s")
    >>> errors.render({"service": "checkout"})
    'sum by (pod) (rate(http_requests_total{service="checkout",code=~"5.."}[5m]))'
    >>> gatherer = PrometheusGatherer("http://prometheus:9090", {"errors": errors},
    ...                               step=timedelta(seconds=30))
    >>> gatherer.step_for(timedelta(hours=6))
    datetime.timedelta(seconds=30)
    >>> evidence_id("errors", {"pod": "checkout-7f9c"})
    'metric-errors-981c4c1eaa'
    >>> deploys = PromQuery('app_build_info{service="{service}"}', metric="build",
    ...                     change="deploy", version_label="version")
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import httpx

from durable_ir.errors import ConfigurationError, DurableIRError
from durable_ir.rca.evidence import (
    ChangeEvidence,
    ChangeKind,
    EventEvidence,
    EvidenceWindow,
    LogEvidence,
    MetricEvidence,
)

__all__ = ["PromQuery", "PrometheusError", "PrometheusGatherer", "evidence_id"]

log = logging.getLogger("durable_ir.rca.prometheus")

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_QUERY_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,80}")
_MAX_SUMMARY = 2_000

AnyEvidence = LogEvidence | MetricEvidence | ChangeEvidence | EventEvidence


class PrometheusError(DurableIRError):
    """A range query failed: ``query`` is the query's name, ``error_type`` Prometheus's
    ``errorType`` (``bad_data``, ``execution``, ``timeout`` …) or ``None`` if Prometheus did not
    answer with one."""

    def __init__(self, message: str, *, query: str, error_type: str | None = None) -> None:
        super().__init__(message)
        self.query = query
        self.error_type = error_type


@dataclass(frozen=True)
class PromQuery:
    """A PromQL template and what its series measure.

    ``metric`` names the measurement in evidence; ``baseline`` is its usual level and ``limit``
    the resource's capacity, where known. The evidence's service is the series'
    ``service_label`` label, else the alert's service.

    The offline analyzer reads what a series measures from words in ``metric`` (``errors``,
    ``5xx``, ``requests``, ``latency``/``duration``, ``in_use``/``usage``, ``limit`` …: see
    :func:`~durable_ir.rca.analyzers.offline.telemetry.role_of`), so name them accordingly.

    With ``change`` set, the query's series are read as changes of that kind (see the module
    documentation); ``version_label`` names the label holding the version, if any.

    Example:
        >>> PromQuery('up{job="{job}"}', metric="up").render({"labels": {"job": "api"}})
        'up{job="api"}'
    """

    query: str
    metric: str
    unit: str = ""
    baseline: float | None = None
    limit: float | None = None
    service_label: str = "service"
    change: ChangeKind | None = None
    version_label: str = "version"

    def __post_init__(self) -> None:
        if not self.query.strip():
            raise ConfigurationError("a PromQuery needs a PromQL query")
        if not self.metric.strip() or len(self.metric) > 200:
            raise ConfigurationError(
                f"a PromQuery needs a metric name (≤ 200), got {self.metric!r}"
            )

    def render(self, alert: Mapping[str, Any]) -> str:
        """The PromQL for ``alert``, placeholders filled (``ConfigurationError`` if one can't)."""
        values = _alert_values(alert)

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in values:
                raise ConfigurationError(
                    f"query {self.query!r} needs {{{name}}} but the alert has no {name!r} "
                    f"(it has: {', '.join(sorted(values)) or 'nothing usable'})"
                )
            return values[name].replace("\\", "\\\\").replace('"', '\\"')

        return _PLACEHOLDER.sub(fill, self.query)


def evidence_id(query_name: str, labels: Mapping[str, str]) -> str:
    """The evidence id of one series: the same labels give the same id in every window."""
    canonical = json.dumps(dict(labels), sort_keys=True, separators=(",", ":"))
    return f"metric-{query_name}-{hashlib.sha256(canonical.encode()).hexdigest()[:10]}"


class PrometheusGatherer:
    """Runs ``queries`` (name → :class:`PromQuery`) against the Prometheus at ``base_url``.

    ``client`` is used if given (and left open), else one is made per gathering. ``timeout`` is
    seconds per query; queries run concurrently.
    """

    def __init__(
        self,
        base_url: str,
        queries: Mapping[str, PromQuery],
        *,
        client: httpx.AsyncClient | None = None,
        step: timedelta = timedelta(seconds=60),
        timeout: float = 10.0,
        max_points: int = 720,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"base_url must be an http(s) URL, got {base_url!r}")
        if not queries:
            raise ConfigurationError("a PrometheusGatherer needs at least one query")
        for name in queries:
            if not _QUERY_NAME.fullmatch(name):
                raise ConfigurationError(
                    f"query name {name!r} must be 1-80 letters, digits or _ . : - (it goes into "
                    "evidence ids)"
                )
        if step <= timedelta(0):
            raise ConfigurationError(f"step must be positive, got {step}")
        if timeout <= 0:
            raise ConfigurationError(f"timeout must be positive seconds, got {timeout}")
        if not 1 <= max_points <= 10_000:
            raise ConfigurationError(f"max_points must be within 1..10000, got {max_points}")
        self.url = base_url.rstrip("/") + "/api/v1/query_range"
        self.queries = dict(queries)
        self.client = client
        self.step = step
        self.timeout = timeout
        self.max_points = max_points

    def step_for(self, length: timedelta) -> timedelta:
        """The resolution used over a window of ``length``: ``step``, or coarser if needed."""
        needed = timedelta(seconds=math.ceil(length.total_seconds() / self.max_points))
        return max(self.step, needed)

    async def gather(self, alert: dict[str, Any], window: EvidenceWindow) -> list[AnyEvidence]:
        """One :class:`~durable_ir.rca.MetricEvidence` per series of every query."""
        promql = {name: q.render(alert) for name, q in self.queries.items()}
        if self.client is not None:
            series = await self._run_all(self.client, window, promql)
        else:
            async with httpx.AsyncClient() as client:
                series = await self._run_all(client, window, promql)
        service = _alert_values(alert).get("service", "unknown")
        evidence: list[AnyEvidence] = []
        for name, found in series.items():
            if not found:
                log.debug("Prometheus query %r returned no series over %s", name, window)
            query = self.queries[name]
            if query.change is not None:
                evidence += _changes(name, query, found, service, window)
            else:
                evidence += [_evidence(name, query, s, service, window) for s in found]
        return evidence

    async def _run_all(
        self, client: httpx.AsyncClient, window: EvidenceWindow, promql: dict[str, str]
    ) -> dict[str, list[_Series]]:
        form = {
            "start": window.start.astimezone(UTC).isoformat(),
            "end": window.end.astimezone(UTC).isoformat(),
            "step": f"{self.step_for(window.length).total_seconds():g}",
        }
        results = await asyncio.gather(
            *(self._series(client, name, form | {"query": q}) for name, q in promql.items()),
            return_exceptions=True,
        )
        found: dict[str, list[_Series]] = {}
        failures: list[PrometheusError] = []
        for name, result in zip(promql, results, strict=True):
            if isinstance(result, PrometheusError):
                failures.append(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                found[name] = result
        if failures:
            first = failures[0]
            message = "; ".join(str(f) for f in failures)
            raise PrometheusError(message, query=first.query, error_type=first.error_type) from (
                first
            )
        return found

    async def _series(
        self, client: httpx.AsyncClient, name: str, form: dict[str, str]
    ) -> list[_Series]:
        try:
            response = await client.post(
                self.url, data=form, headers={"accept": "application/json"}, timeout=self.timeout
            )
        except httpx.HTTPError as exc:
            raise PrometheusError(
                f"query {name!r}: cannot reach Prometheus at {self.url}: "
                f"{type(exc).__name__}: {exc}",
                query=name,
            ) from exc
        try:
            body = response.json()
        except ValueError:
            raise PrometheusError(
                f"query {name!r}: HTTP {response.status_code} with a non-JSON body: "
                f"{response.text[:200]!r}",
                query=name,
            ) from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error_type = body.get("errorType") if isinstance(body, dict) else None
            error = body.get("error") if isinstance(body, dict) else None
            detail = error if isinstance(error, str) and error else json.dumps(body)[:200]
            raise PrometheusError(
                f"query {name!r} failed: {error_type or 'error'}: {detail} "
                f"(HTTP {response.status_code}; PromQL {form['query']!r})",
                query=name,
                error_type=error_type if isinstance(error_type, str) else None,
            )
        for warning in body.get("warnings") or []:
            log.warning("Prometheus query %r: %s", name, warning)
        data = body.get("data") or {}
        if data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
            raise PrometheusError(
                f"query {name!r}: expected a matrix result, got {data.get('resultType')!r}",
                query=name,
            )
        try:
            return [_Series.parse(item) for item in data["result"]]
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise PrometheusError(
                f"query {name!r}: malformed series in the answer: {type(exc).__name__}: {exc}",
                query=name,
            ) from exc


@dataclass
class _Series:
    labels: dict[str, str]
    points: list[tuple[datetime, float]]
    dropped: dict[str, int]
    """Non-finite samples left out, by kind (``NaN``, ``+Inf``, ``-Inf``)."""

    @classmethod
    def parse(cls, item: dict[str, Any]) -> _Series:
        labels = {str(k): str(v) for k, v in (item.get("metric") or {}).items()}
        points: list[tuple[datetime, float]] = []
        dropped: dict[str, int] = {}
        for timestamp, raw in item.get("values") or []:
            value = float(raw)  # sample values come as strings: "1.5", "NaN", "+Inf", "-Inf"
            if math.isfinite(value):
                points.append((datetime.fromtimestamp(float(timestamp), UTC), value))
            else:
                kind = "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
                dropped[kind] = dropped.get(kind, 0) + 1
        return cls(labels, points, dropped)


def _evidence(
    name: str, query: PromQuery, series: _Series, alert_service: str, window: EvidenceWindow
) -> MetricEvidence:
    points, labels = series.points, series.labels
    selector = _selector(labels)
    unit = f" {query.unit}" if query.unit else ""
    if points:
        values = [v for _, v in points]
        summary = (
            f"{query.metric} {selector}: last {values[-1]:.4g}{unit}, "
            f"max {max(values):.4g}{unit}, min {min(values):.4g}{unit} over {len(values)} samples"
        )
    else:
        summary = f"{query.metric} {selector}: no finite sample"
    if query.baseline is not None:
        summary += f"; baseline {query.baseline:.4g}{unit}"
    if query.limit is not None:
        summary += f"; limit {query.limit:.4g}{unit}"
    if series.dropped:
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(series.dropped.items()))
        summary += f"; dropped non-finite samples: {counts}"
    return MetricEvidence(
        id=evidence_id(name, labels),
        service=labels.get(query.service_label) or alert_service,
        at=points[-1][0] if points else window.end,
        summary=summary[:_MAX_SUMMARY],
        metric=query.metric,
        unit=query.unit,
        points=points,
        baseline=query.baseline,
        limit=query.limit,
    )


_MAX_CHANGES = 50  # per query and gathering: a gauge that keeps moving is no change log


def _changes(
    name: str, query: PromQuery, found: list[_Series], alert_service: str, window: EvidenceWindow
) -> list[ChangeEvidence]:
    """The changes a change query's series show: series that appear after the first sample of
    any of them, and steps in a series' value."""
    assert query.change is not None
    firsts = [s.points[0][0] for s in found if s.points]
    if not firsts:
        return []
    earliest = min(firsts)
    changes: list[ChangeEvidence] = []

    def add(series: _Series, at: datetime, what: str) -> None:
        labels = series.labels
        service = labels.get(query.service_label) or alert_service
        version = labels.get(query.version_label) or None
        summary = f"{query.change} of {service}" + (f" to {version}" if version else "")
        changes.append(
            ChangeEvidence(
                id=f"change-{name}-{evidence_id(name, labels)[-10:]}-{int(at.timestamp())}",
                service=service,
                at=at,
                summary=f"{summary} ({what} {_selector(labels)})"[:_MAX_SUMMARY],
                change=query.change or "other",
                version=version[:200] if version else None,
            )
        )

    low, high = window.start.timestamp(), window.end.timestamp()
    for series in found:
        if not series.points:
            continue
        if series.points[0][0] > earliest:
            add(series, series.points[0][0], "new series")
        for (_, before), (at, value) in pairwise(series.points):
            if value == before or (value < before and before > 1e9):
                continue  # unchanged, or a timestamp gauge going back (a reset)
            when = datetime.fromtimestamp(value, UTC) if low <= value <= high else at
            add(series, min(when, at), f"value {before:g} -> {value:g} in")
    changes.sort(key=lambda c: c.at)
    return changes[-_MAX_CHANGES:]


def _selector(labels: Mapping[str, str]) -> str:
    name = labels.get("__name__", "")
    rest = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}"


def _alert_values(alert: Mapping[str, Any]) -> dict[str, str]:
    labels = alert.get("labels")
    values = {
        k: v
        for k, v in (labels.items() if isinstance(labels, Mapping) else ())
        if isinstance(v, str)
    }
    values.update({k: v for k, v in alert.items() if isinstance(v, str)})
    return values
