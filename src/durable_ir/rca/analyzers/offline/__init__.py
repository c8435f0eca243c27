"""An offline analyzer that correlates evidence — no model, no network.

:class:`CorrelationAnalyzer` reads the symptoms off the metric series (when errors, latency or
CPU steal departed from their usual level), then collects *signals* for candidate root causes
(a fault category at a service):

- **change**: a deploy, configuration or infrastructure change on a service shortly before its
  symptoms began (a memory leak's rise starting with a deploy counts too);
- **novelty**: an error signature first seen right after such a change;
- **signature**: error lines matching known signatures ("No space left on device",
  "certificate has expired", "OutOfMemoryError", "pool exhausted", "503 from upstream", …),
  weighted by their rate and attributed to the service they name, if any;
- **resource**: a resource at its limit (connection pool, disk, memory), CPU steal, an expired
  serving certificate; **trend**: memory or disk rising steadily, a traffic surge;
- **event**: OOM kills, disk-space failures, a provider's status-page incident;
- **timing**: CPU steal rising just before latency did;
- **origin**: the service where the chain of blame ends (callers' errors name it) and whose
  symptoms began first;
- **shift**: on series a real Prometheus returns (any name but the test bed's), a clear
  departure — error ratio, error rate, latency — beginning right after a change (see
  :mod:`~durable_ir.rca.analyzers.offline.telemetry` for the statistics: robust baselines,
  onsets, error ratios, saturation against limits).

When nothing explains the symptoms, the answer says what was checked and what departed, at low
confidence, and that an LLM analyzer is needed: it never claims more than the evidence shows.

A candidate's confidence combines its signal categories as independent pieces of evidence
(``1 - Π(1 - strength)``, strongest signal per category), and is then lowered when a rival
candidate is nearly as strong, when the symptoms were already present at the start of the
window with no change to explain them (the cause may lie earlier), and when the same
hypothesis was already offered in an earlier attempt and nothing new supports it.

Example:
    >>> import asyncio
    >>> from datetime import UTC, datetime, timedelta
    >>> from durable_ir.rca import AnalysisRequest, ChangeEvidence, EvidenceWindow
    >>> from durable_ir.rca import LogEvidence, MetricEvidence
    >>> end = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    >>> window = EvidenceWindow.ending_at(end, timedelta(minutes=15))
    >>> minutes = [window.start + timedelta(minutes=i) for i in range(15)]
    >>> errors = [0.002] * 6 + [0.12] * 9
    >>> evidence = [
    ...     MetricEvidence(id="met-api-errors", service="api", at=window.start, summary="5xx",
    ...                    metric="error_ratio", points=list(zip(minutes, errors)),
    ...                    baseline=0.002, limit=1.0),
    ...     ChangeEvidence(id="chg-7", service="api", at=minutes[5], summary="deploy v8",
    ...                    change="deploy", version="v8"),
    ...     LogEvidence(id="log-npe", service="api", at=minutes[6], summary="NPE x 900",
    ...                 signature="NullPointerException at Cart.total", count=900,
    ...                 first_seen=minutes[6]),
    ... ]
    >>> request = AnalysisRequest(alert={"service": "api"}, attempt=1, window=window,
    ...                           evidence=evidence)
    >>> h = asyncio.run(CorrelationAnalyzer().analyze(request))
    >>> h.fault, h.service, h.confidence >= 0.7, sorted(h.cited_evidence)
    ('bad_deploy', 'api', True, ['chg-7', 'log-npe', 'met-api-errors'])
    >>> h.remediation[0].action
    'rollback'

    The same from series named as a Prometheus setup names them, at a 5 s resolution:

    >>> seconds = [window.start + timedelta(seconds=5 * i) for i in range(120)]
    >>> five_xx = [0.0] * 80 + [8.0] * 40
    >>> series = [
    ...     MetricEvidence(id="metric-errors", service="api", at=window.start, summary="5xx",
    ...                    metric="http_5xx_rate", points=list(zip(seconds, five_xx))),
    ...     MetricEvidence(id="metric-requests", service="api", at=window.start,
    ...                    summary="requests", metric="http_request_rate",
    ...                    points=[(t, 28.0) for t in seconds]),
    ...     ChangeEvidence(id="change-build", service="api", at=seconds[78], summary="deploy v9",
    ...                    change="deploy", version="v9"),
    ... ]
    >>> request = AnalysisRequest(alert={"service": "api"}, attempt=1, window=window,
    ...                           evidence=series)
    >>> h = asyncio.run(CorrelationAnalyzer().analyze(request))
    >>> h.fault, h.confidence >= 0.7, sorted(h.cited_evidence)
    ('bad_deploy', True, ['change-build', 'metric-errors', 'metric-requests'])
"""

from durable_ir.rca.analyzers.offline.analyzer import CorrelationAnalyzer
from durable_ir.rca.analyzers.offline.patterns import SIGNATURES

__all__ = ["SIGNATURES", "CorrelationAnalyzer"]
