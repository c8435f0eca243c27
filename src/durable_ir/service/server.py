"""``durable-ir serve``: the incident API under uvicorn.

Example:
    >>> callable(serve)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["serve"]


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    database_url: str | None = None,
    graph: Any = None,
    graph_name: str | None = None,
    log_level: str = "info",
    keep_graphs: Sequence[Any] = (),
    log_format: str | None = None,
    slack_signing_secret: str | None = None,
    startup_lines: Sequence[str] = (),
    startup_warnings: Sequence[str] = (),
) -> None:
    """Serve :func:`~durable_ir.service.create_app` (settings from the environment) until
    interrupted. ``graph`` as for ``create_app``; ``graph_name`` overrides
    ``DURABLE_IR_GRAPH_NAME``. ``log_level`` applies to durable-ir's loggers and uvicorn's;
    ``log_format`` is ``text`` or ``json`` (default ``$DURABLE_IR_LOG_FORMAT``, else text):
    see :mod:`durable_ir.logs`. ``slack_signing_secret`` (from a config file) replaces
    ``$SLACK_SIGNING_SECRET``; ``startup_lines`` (info) and ``startup_warnings`` are logged
    once logging is set up (what the config file chose). ``graph=None`` serves the demo agent
    on its simulated fleet: the ``durable-ir serve`` command passes it only for ``--demo``."""
    import logging
    import logging.config
    from dataclasses import replace

    import uvicorn

    from durable_ir.logs import log_format as chosen_format
    from durable_ir.logs import logging_config
    from durable_ir.service.app import create_app
    from durable_ir.service.settings import ServiceSettings

    log_config = logging_config(log_level, chosen_format(log_format))
    logging.captureWarnings(True)  # Python warnings as log lines too (JSON in JSON mode)
    settings = ServiceSettings.from_env()
    if graph_name is not None:
        settings = replace(settings, graph_name=graph_name)
    if slack_signing_secret is not None:
        settings = replace(settings, slack_signing_secret=slack_signing_secret)
    logging.config.dictConfig(log_config)
    log = logging.getLogger("durable_ir.service")
    for line in startup_lines:
        log.info("serving %s", line)
    for line in startup_warnings:
        log.warning("%s", line)
    app = create_app(
        database_url=database_url, graph=graph, settings=settings, keep_graphs=keep_graphs
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=log_config,
        proxy_headers=False,
    )
