"""The app factory: :func:`create_app` returns the FastAPI application of the incident API.

Example:
    >>> from durable_ir.service import create_app
    >>> app = create_app(database_url="memory://")
    >>> sorted(path for path in app.openapi()["paths"] if "incidents" in path)
    ['/incidents', '/incidents/{incident_id}', '/incidents/{incident_id}/approve', \
'/incidents/{incident_id}/reject']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from fastapi import FastAPI

from durable_ir import __version__
from durable_ir.builder import IncidentGraphBuilder
from durable_ir.graphs import AnyGraph
from durable_ir.service.auth import Authenticator, BearerTokens
from durable_ir.service.errors import install_error_handlers
from durable_ir.service.headers import ApiHeaders
from durable_ir.service.lifespan import ServiceConfig, service_lifespan
from durable_ir.service.limits import BodySizeLimit
from durable_ir.service.routes import (
    alerts,
    console,
    decisions,
    health,
    incidents,
    metrics,
    slack,
    versions,
)
from durable_ir.service.settings import ServiceSettings

__all__ = ["create_app"]

DESCRIPTION = """\
Incident-response agents whose human approvals survive crashes and races.

Alerts open incidents (`POST /alerts`); the agent investigates, plans, dry-runs, and pauses
for approval; people approve or reject (`POST /incidents/{id}/approve|reject`, or Slack
buttons). A decision is recorded durably before it is acknowledged (202), exactly one
decision wins (the others get 409 naming the winner), and an approval nobody decides in time
expires and escalates.

Authenticate with `Authorization: Bearer <token>`. Every error is
`{"error": {"code", "message", "winner"?}}`.
"""


def _graph(graph: Any) -> tuple[AnyGraph, str | None]:
    if graph is None:
        from durable_ir.demo.agent import DEMO_GRAPH_NAME, build_demo_graph

        return build_demo_graph(), DEMO_GRAPH_NAME
    if isinstance(graph, IncidentGraphBuilder):
        return graph.build(), None
    return graph, None


def create_app(
    *,
    database_url: str | None = None,
    graph: AnyGraph | IncidentGraphBuilder | None = None,
    auth: Authenticator | None = None,
    settings: ServiceSettings | None = None,
    keep_graphs: Sequence[AnyGraph | IncidentGraphBuilder] = (),
) -> FastAPI:
    """The incident API as a FastAPI app (serve it with uvicorn; see ``docs/service.md``).

    - ``database_url``: overrides ``settings.database_url`` (default
      ``$DURABLE_IR_DATABASE_URL``, else ``sqlite:///durable_ir.db``);
    - ``graph``: the incident graph to run and resume (a ``StateGraph``, a compiled graph or
      an :class:`~durable_ir.IncidentGraphBuilder`, e.g. from
      :func:`durable_ir.serve_config.build_serve_plan`); default: the demo agent's, on its
      simulated fleet (a warning at start-up says so: real alerts get nothing gathered).
      Every replica serving one database must serve the same graph under the same name
      (``settings.graph_name``);
    - ``auth``: an :class:`~durable_ir.service.auth.Authenticator`; default: bearer tokens
      from ``settings.api_tokens``;
    - ``settings``: default :meth:`ServiceSettings.from_env`;
    - ``keep_graphs``: earlier versions of ``graph`` to keep running, under the same name,
      for the incidents that paused on them (new incidents start on ``graph``); see
      ``docs/versioning.md``.

    The runtime is opened when the app starts (its lifespan), not here.
    """
    settings = settings if settings is not None else ServiceSettings.from_env()
    if database_url is not None:
        settings = replace(settings, database_url=database_url)
    served, default_name = _graph(graph)
    authenticator = auth if auth is not None else BearerTokens(settings.api_tokens)
    config = ServiceConfig(
        settings=settings,
        graph=served,
        graph_name=settings.graph_name or default_name,
        auth=authenticator,
        keep_graphs=tuple(_graph(g)[0] for g in keep_graphs),
        simulated=graph is None,
    )
    app = FastAPI(
        title="durable-ir incident API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=service_lifespan(config),
        # Swagger UI and ReDoc load their code from a public CDN: /docs only when asked for
        # (DURABLE_IR_DOCS=1), ReDoc never; /openapi.json is always there.
        docs_url="/docs" if settings.docs else None,
        redoc_url=None,
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(ApiHeaders)  # nosniff everywhere, no-store on JSON
    install_error_handlers(app)
    for router in (
        health.router,
        alerts.router,
        incidents.router,
        decisions.router,
        slack.router,
        versions.router,
        metrics.router,
    ):
        app.include_router(router)
    app.include_router(console.router)  # GET /console: the approval console (not in the schema)
    return app
