"""Reading metric series: their usual level, when a departure from it began, steady rises and
resources near their limit."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from itertools import pairwise

from durable_ir.rca.evidence import MetricEvidence


def _baseline(metric: MetricEvidence) -> float:
    if metric.baseline is not None:
        return metric.baseline
    head = [v for _, v in metric.points[: max(1, len(metric.points) // 4)]]
    return statistics.median(head)


def _threshold(metric: str, usual: float) -> float | None:
    if metric == "error_ratio":
        return max(4 * usual, usual + 0.01)
    if metric == "latency_p99_ms":
        return 1.8 * usual
    if metric == "cpu_steal_pct":
        return max(8.0, 4 * usual)
    return None


def _current_run(
    values: Sequence[float], above: Callable[[float], bool], strong: Callable[[float], bool]
) -> tuple[int, int] | None:
    """The run of points beyond a threshold that lasts until (nearly) the end of the series,
    tolerating one-point gaps: at least three points, or fewer if all are far beyond it (a
    coarse series may hold only a point or two of a fresh incident)."""
    n = len(values)
    end = n - 1
    while end >= 0 and not above(values[end]):
        end -= 1
    if end < n - 2 or end < 0:
        return None
    start = end
    i = end - 1
    while i >= 0:
        if above(values[i]):
            start = i
        elif i == 0 or not above(values[i - 1]):
            break
        i -= 1
    if end - start + 1 >= min(3, n):
        return start, end
    if end == n - 1 and all(strong(v) for v in values[start : end + 1]):
        return start, end
    return None


def _onset(metric: MetricEvidence) -> tuple[datetime, bool] | None:
    """When the current departure of ``metric`` began, and whether it was there from the
    start of the series (so it may have begun earlier)."""
    usual = _baseline(metric)
    threshold = _threshold(metric.metric, usual)
    values = [v for _, v in metric.points]
    if threshold is None or not values:
        return None
    strong = usual + 2 * (threshold - usual)
    run = _current_run(values, lambda v: v > threshold, lambda v: v > strong)
    if run is None:
        return None
    start = run[0]
    low = usual + 0.35 * (threshold - usual)
    while start > 0 and values[start - 1] > low:
        start -= 1
    return metric.points[start][0], start == 0


def _step(metric: MetricEvidence) -> timedelta:
    """The spacing of the series' points."""
    if len(metric.points) < 2:
        return timedelta(minutes=1)
    return metric.points[1][0] - metric.points[0][0]


def _recent_mean(metric: MetricEvidence, minutes: int = 5) -> float:
    """The mean of the series over its last ``minutes`` (at least its last three points)."""
    if not metric.points:
        return 0.0
    since = metric.points[-1][0] - timedelta(minutes=minutes)
    recent = [v for t, v in metric.points if t > since]
    if len(recent) < 3:
        recent = [v for _, v in metric.points[-3:]]
    return sum(recent) / len(recent)


def _span_minutes(metric: MetricEvidence) -> float:
    if len(metric.points) < 2:
        return 0.0
    return (metric.points[-1][0] - metric.points[0][0]).total_seconds() / 60


def _steady_rise(metric: MetricEvidence) -> tuple[float, datetime] | None:
    """(rise as a share of the limit, when it began) if the series climbs steadily."""
    values = [v for _, v in metric.points]
    if len(values) < 12 or not metric.limit:
        return None
    size = len(values) // 6
    segments = [sum(values[i * size : (i + 1) * size]) / size for i in range(6)]
    ups = sum(1 for a, b in pairwise(segments) if b > a)
    rise = (max(segments[3:]) - segments[0]) / metric.limit
    if ups < 4 or rise < 0.08:
        return None
    usual = _baseline(metric)
    begin = next(
        (t for t, v in metric.points if v > usual + 0.05 * (metric.limit - usual)),
        metric.points[0][0],
    )
    return rise, begin


def _saturation(metric: MetricEvidence) -> tuple[float, datetime] | None:
    """(level as a share of the limit, when it got there) for a resource near its limit."""
    if not metric.limit or not metric.points:
        return None
    level = _recent_mean(metric) / metric.limit
    if level < 0.88:
        return None
    near = 0.85 * metric.limit
    run = _current_run([v for _, v in metric.points], lambda v: v >= near, lambda v: v >= near)
    at = metric.points[run[0]][0] if run else metric.points[-1][0]
    return level, at
