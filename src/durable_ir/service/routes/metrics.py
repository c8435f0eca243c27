"""``GET /metrics``: the Prometheus exposition of :mod:`durable_ir.metrics` (and the Python
process's own metrics), without authentication — like ``/healthz``, for the scraper on the
operator's network; no label carries an incident id, a person or alert text."""

from __future__ import annotations

from fastapi import APIRouter, Response

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """The process's metrics in the Prometheus text format."""
    try:
        import prometheus_client
    except ImportError:  # pragma: no cover - the service extra brings it
        return Response("prometheus-client is not installed\n", status_code=404)
    return Response(
        prometheus_client.generate_latest(), media_type=prometheus_client.CONTENT_TYPE_LATEST
    )
