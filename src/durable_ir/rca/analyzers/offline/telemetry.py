"""Generic statistics over any metric series, as a real Prometheus returns them: what a series
measures (from its name and unit), its robust baseline, when it departed from it, the error
ratio of two series, and a resource's use against its limit.

Nothing here knows a scenario or a fixed metric name. A series' *role* is read from words in
its name (``errors``/``5xx``/``failed`` …, ``requests``/``rps``/``throughput`` …,
``latency``/``duration``/``p99`` …, ``usage``/``used``/``in_use``/``utilization`` …,
``limit``/``capacity``/``quota`` …); its baseline is the median of the points before the
departure, its spread the scaled median absolute deviation (MAD) of the same points, floored
by a share of the baseline (so that a flat series does not make every wiggle a departure);
a *departure* is a run of points beyond ``baseline + k x spread`` that begins somewhere in the
series and lasts (at least 80 % of its points beyond) until the end, at least a few points long.

Example:
    >>> from datetime import UTC, datetime, timedelta
    >>> t0 = datetime(2026, 3, 2, 12, tzinfo=UTC)
    >>> errors = [0.0] * 40 + [8.0] * 20
    >>> points = [(t0 + timedelta(seconds=i), v) for i, v in enumerate(errors)]
    >>> found = departure(points, role="errors")
    >>> found.onset == t0 + timedelta(seconds=40), found.baseline, found.level
    (True, 0.0, 8.0)
    >>> role_of("http_5xx_rate", "req/s"), role_of("http_request_rate", "req/s")
    ('errors', 'requests')
    >>> departure([(t0 + timedelta(seconds=i), 10.0 + (i % 3) * 0.2) for i in range(60)]) is None
    True
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

__all__ = [
    "LEGACY_METRICS",
    "Departure",
    "Role",
    "departure",
    "error_ratio",
    "limit_for",
    "resource_fault",
    "robust_baseline",
    "role_of",
    "saturation",
]

Role = Literal["errors", "error_ratio", "requests", "latency", "usage", "limit", "other"]

LEGACY_METRICS = frozenset(
    {
        "cpu_steal_pct",
        "cpu_usage_pct",
        "db_pool_in_use",
        "disk_used_gb",
        "error_ratio",
        "latency_p99_ms",
        "memory_used_mb",
        "request_rate",
        "tls_cert_days_remaining",
    }
)
"""The metric names the built-in test bed emits, which the analyzer reads with thresholds tuned to
their known baselines; every other series is read by this module's generic statistics."""

_ERRORS = re.compile(r"error|errs?\b|5xx|fail|fault|exception|panic", re.IGNORECASE)
_RATIO = re.compile(r"ratio|share|fraction|percent|pct|proportion", re.IGNORECASE)
_LIMIT = re.compile(r"limit|capacity|quota|(^|_)max(_|$)|size_bytes$", re.IGNORECASE)
_LATENCY = re.compile(r"latency|duration|response_?time|(^|_)p\d{2,3}(_|$)|quantile", re.I)
_REQUESTS = re.compile(r"request|rps|qps|throughput|traffic|calls|hits", re.IGNORECASE)
_USAGE = re.compile(
    r"usage|used|in_?use|utili[sz]ation|saturation|occupancy|busy|active|inflight|in_flight",
    re.IGNORECASE,
)


def role_of(metric: str, unit: str = "") -> Role:
    """What a series measures, read from its name and unit.

    Example:
        >>> role_of("error_share", ""), role_of("latency_p99_seconds", "s")
        ('error_ratio', 'latency')
        >>> role_of("pool_connections_in_use"), role_of("pool_connections_limit")
        ('usage', 'limit')
        >>> role_of("request_duration_max_seconds")
        'latency'
    """
    if _ERRORS.search(metric):
        ratio = _RATIO.search(metric) or unit.strip().lower() in ("ratio", "%", "percent")
        return "error_ratio" if ratio else "errors"
    if _LATENCY.search(metric):
        return "latency"
    if _LIMIT.search(metric):
        return "limit"
    if _USAGE.search(metric):
        return "usage"
    if _REQUESTS.search(metric):
        return "requests"
    return "other"


# How far a role's series must move, as (k, share of the baseline, absolute floor): a
# departure is beyond ``baseline + k * max(spread, share * |baseline|, floor)``.
_SENSITIVITY: dict[str, tuple[float, float, float]] = {
    "errors": (4.0, 0.25, 0.0),
    "error_ratio": (4.0, 0.75, 0.0025),
    "latency": (4.0, 0.1, 0.0),
    "usage": (4.0, 0.1, 0.0),
    "requests": (4.0, 0.15, 0.0),
    "other": (5.0, 0.2, 0.0),
}


@dataclass(frozen=True)
class Departure:
    """A series' current departure from its usual level."""

    onset: datetime
    index: int
    baseline: float
    """The median of the points before the onset."""
    spread: float
    """The unit of departure: the larger of the robust spread and the role's floors."""
    level: float
    """The median of the points since the onset."""
    from_start: bool
    """Whether too few points preceded the onset to know the usual level (it may have begun
    before the series)."""

    @property
    def score(self) -> float:
        """How many spreads the level lies beyond the baseline."""
        return (self.level - self.baseline) / self.spread if self.spread > 0 else math.inf


def robust_baseline(values: Sequence[float]) -> tuple[float, float]:
    """(median, 1.4826 x median absolute deviation): a level and spread that a few outliers
    do not move.

    Example:
        >>> robust_baseline([1.0, 1.2, 0.8, 1.0, 50.0])
        (1.0, 0.29652)
    """
    if not values:
        return 0.0, 0.0
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    return median, round(1.4826 * mad, 12)


def _floor(values: Sequence[float], role: str, median: float) -> float:
    _, share, absolute = _SENSITIVITY.get(role, _SENSITIVITY["other"])
    top = max((abs(v) for v in values), default=0.0)
    # A series flat at zero (no errors at all) departs once it is clearly above zero: a
    # hundredth of its largest value, not any positive sample.
    return max(share * abs(median), absolute, 0.01 * top, 1e-9)


def departure(
    points: Sequence[tuple[datetime, float]],
    *,
    role: str = "other",
    usual: float | None = None,
) -> Departure | None:
    """The current upward departure of ``points`` from its baseline, if there is one.

    The baseline is first estimated from the first third of the series, the departure found
    against it, and the baseline then re-estimated from every point before the onset (the
    departure must still stand against it). ``usual``, when known, replaces the estimate.
    """
    values = [v for _, v in points]
    n = len(values)
    if n < 5:
        return None
    k = _SENSITIVITY.get(role, _SENSITIVITY["other"])[0]
    head = values[: max(3, n // 3)]
    median, spread = robust_baseline(head)
    if usual is not None:
        median = usual
    unit = max(spread, _floor(values, role, median))
    start = _sustained_run(values, median + k * unit, n)
    if start is None:
        return None
    # Walk back over the points already rising (beyond half the threshold).
    while start > 0 and values[start - 1] > median + 0.5 * k * unit:
        start -= 1
    before = values[:start]
    from_start = len(before) < 3
    if not from_start and usual is None:
        median, spread = robust_baseline(before)
        unit = max(spread, _floor(values, role, median))
    level = statistics.median(values[start:])
    if level <= median + k * unit:
        return None
    return Departure(points[start][0], start, median, unit, level, from_start)


def _sustained_run(values: Sequence[float], threshold: float, n: int) -> int | None:
    """The earliest index from which at least 80 % of the points lie beyond ``threshold``, the
    run lasting to the end (two of the last three beyond it) and at least ``max(3, n/40)``
    points long."""
    beyond = [v > threshold for v in values]
    if sum(beyond[-3:]) < 2:
        return None
    count = 0
    start = None
    for i in range(n - 1, -1, -1):
        count += beyond[i]
        if beyond[i] and count >= 0.8 * (n - i):
            start = i
    if start is None or n - start < max(3, n // 40):
        return None
    return start


def error_ratio(
    errors: Sequence[tuple[datetime, float]], requests: Sequence[tuple[datetime, float]]
) -> list[tuple[datetime, float]]:
    """errors / requests at every timestamp of ``requests`` (where requests > 0), an error
    sample missing there counting as zero: exporters usually create a ``code="500"`` series
    only with the first error, so before it there is no series, not a zero.

    Example:
        >>> from datetime import UTC, datetime, timedelta
        >>> t = datetime(2026, 1, 1, tzinfo=UTC)
        >>> u = t + timedelta(seconds=1)
        >>> [v for _, v in error_ratio([(u, 2.0)], [(t, 8.0), (u, 8.0)])]
        [0.0, 0.25]
    """
    failed = dict(errors)
    return [(t, min(1.0, failed.get(t, 0.0) / r)) for t, r in requests if r > 0]


def limit_for(
    usage: str,
    unit: str,
    own: float | None,
    limits: Mapping[str, Sequence[tuple[datetime, float]]],
) -> float | None:
    """The capacity of the resource a usage series measures: its own ``limit``, else a limit
    series of the same service whose name shares the usage series' first word (or the only
    one), else 1 for a ratio and 100 for a percentage."""
    if own:
        return own
    stem = re.split(r"[_:.]", usage.lower())[0]
    matching = [p for name, p in limits.items() if name.lower().startswith(stem)]
    if not matching and len(limits) == 1:
        matching = list(limits.values())
    values = [v for p in matching[:1] for _, v in p if v > 0]
    if values:
        return statistics.median(values)
    if unit.strip().lower() == "ratio" or (_RATIO.search(usage) and "pct" not in usage):
        return 1.0
    if unit.strip() in ("%", "percent") or re.search(r"pct|percent", usage, re.IGNORECASE):
        return 100.0
    return None


def saturation(
    points: Sequence[tuple[datetime, float]], limit: float
) -> tuple[float, datetime] | None:
    """(recent use as a share of ``limit``, when the current run at ≥ 85 % of it began) when
    the resource's recent use (the last sixth of the series, at least three points) is at
    ≥ 90 % of its limit.

    Example:
        >>> from datetime import UTC, datetime, timedelta
        >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
        >>> use = [(t0 + timedelta(minutes=i), v) for i, v in enumerate([20] * 10 + [50] * 5)]
        >>> share, at = saturation(use, 50)
        >>> share, at == t0 + timedelta(minutes=10)
        (1.0, True)
    """
    if limit <= 0 or len(points) < 3:
        return None
    values = [v for _, v in points]
    recent = values[-max(3, len(values) // 6) :]
    share = statistics.fmean(recent) / limit
    if share < 0.9:
        return None
    start = len(values) - 1
    while start > 0 and values[start - 1] >= 0.85 * limit:
        start -= 1
    return round(share, 6), points[start][0]


_RESOURCE_FAULTS = (
    (re.compile(r"mem|heap|rss|oom", re.IGNORECASE), "memory_leak"),
    (re.compile(r"disk|filesystem|volume|storage|inode", re.IGNORECASE), "disk_full"),
    (re.compile(r"pool|connection|conn", re.IGNORECASE), "connection_pool_exhaustion"),
)


def resource_fault(metric: str) -> str | None:
    """The fault category a resource running out suggests, or ``None`` if none fits (a CPU
    or thread limit, say, is a symptom the categories do not name).

    Example:
        >>> resource_fault("container_memory_working_set_bytes"), resource_fault("cpu_usage")
        ('memory_leak', None)
    """
    for pattern, fault in _RESOURCE_FAULTS:
        if pattern.search(metric):
            return fault
    return None
