"""Start-up and shutdown: open the runtime, register the graph, recover, run the SLA monitor.

At start-up: ``open_runtime``; the graph registered (for deciding, resuming and recovering);
``rt.recover(stalled=True)`` once — decisions a dead process recorded but never applied,
incidents whose first run never began, runs that stopped mid-stage; then
``SlaMonitor(rt).run()`` as a background task, which expires overdue approvals and recovers
unapplied decisions after every sweep. At shutdown: the runs in flight get
``shutdown_grace`` seconds, the monitor is cancelled, the runtime closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from durable_ir.graphs import AnyGraph
from durable_ir.runtime import open_runtime
from durable_ir.service.auth import Authenticator
from durable_ir.service.background import BackgroundRuns
from durable_ir.service.context import SERVICE_STATE_KEY, Service
from durable_ir.service.deciding import DecisionRecorder
from durable_ir.service.intake import AlertIntake
from durable_ir.service.settings import ServiceSettings
from durable_ir.sla import SlaMonitor

__all__ = ["ServiceConfig", "service_lifespan"]

log = logging.getLogger("durable_ir.service")


@dataclass(frozen=True)
class ServiceConfig:
    """What ``create_app`` was given: the settings, the graph and its name, the auth."""

    settings: ServiceSettings
    graph: AnyGraph
    graph_name: str | None
    auth: Authenticator
    keep_graphs: tuple[AnyGraph, ...] = ()
    """Earlier versions of ``graph``, registered beside it (not as the default)."""
    simulated: bool = False
    """``graph`` is the demo agent on its simulated fleet (``create_app()`` without a graph):
    said loudly at start-up, since real alerts get nothing gathered and nothing applied."""


def service_lifespan(
    config: ServiceConfig,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The FastAPI lifespan that runs the service described by ``config``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings = config.settings
        async with open_runtime(settings.database_url, pool_size=settings.pool_size) as rt:
            registered = rt.register(config.graph, name=config.graph_name)
            for kept in config.keep_graphs:
                rt.register(kept, name=registered.name, default=False)
            runs = BackgroundRuns(settings.max_concurrent_runs)
            decisions = DecisionRecorder(rt, runs, lock_wait=settings.lock_wait)
            if config.simulated:
                log.warning(
                    "serving the demo agent on its SIMULATED fleet: alerts without sim_scenario "
                    "and sim_seed labels escalate with nothing gathered, and nothing real is "
                    "ever changed (serve a config file for real use: docs/service.md)"
                )
            if not config.auth.configured:
                log.warning(
                    "no API tokens are configured: reads are open, decisions and alerts are "
                    "refused (set DURABLE_IR_API_TOKENS)"
                )
            try:
                await rt.recover(stalled=True)
            except Exception:  # the monitor's loop recovers again after its first sweep
                log.exception("start-up recovery failed")
            service = Service(
                settings=settings,
                runtime=rt,
                graph_name=registered.name,
                auth=config.auth,
                decisions=decisions,
                intake=AlertIntake(rt, config.graph, registered.name, runs),
                runs=runs,
            )
            service.monitor = asyncio.create_task(
                SlaMonitor(rt, interval=settings.sla_interval).run(), name="durable-ir SLA monitor"
            )
            setattr(app.state, SERVICE_STATE_KEY, service)
            log.info(
                "durable-ir service up: graph %r version %s (also runs %s) on %s",
                registered.name,
                registered.version,
                ", ".join(v for v in rt.graphs.versions(registered.name) if v != registered.version)
                or "no other version",
                rt.store.url,
            )
            try:
                yield
            finally:
                setattr(app.state, SERVICE_STATE_KEY, None)
                await runs.drain(settings.shutdown_grace)
                service.monitor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await service.monitor

    return lifespan
