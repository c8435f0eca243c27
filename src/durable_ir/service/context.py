"""What the routes share: the running service (runtime, graph, auth, background runs) and
the dependencies that hand it and the caller to them.

Example:
    >>> dependency = require("approver")
    >>> callable(dependency)
    True
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from durable_ir.runtime import Runtime
from durable_ir.service.auth import Authenticator, Principal, Role
from durable_ir.service.background import BackgroundRuns
from durable_ir.service.deciding import DecisionRecorder
from durable_ir.service.errors import ApiError
from durable_ir.service.intake import AlertIntake
from durable_ir.service.settings import ServiceSettings

__all__ = ["SERVICE_STATE_KEY", "Service", "ServiceDep", "get_service", "require"]

SERVICE_STATE_KEY = "durable_ir_service"

HOW_TO_CONFIGURE = (
    "no API tokens are configured, so this service only reads: set DURABLE_IR_API_TOKENS to "
    'a JSON list of {"identity": …, "roles": ["approver"], "token_sha256": …} entries '
    "(`durable-ir token new NAME --role approver` makes one) and restart"
)

_bearer = HTTPBearer(
    auto_error=False,
    description="An API token from DURABLE_IR_API_TOKENS (or what your own authenticator accepts).",
)


@dataclass
class Service:
    """The running service, created by the app's lifespan."""

    settings: ServiceSettings
    runtime: Runtime
    graph_name: str
    auth: Authenticator
    decisions: DecisionRecorder
    intake: AlertIntake
    runs: BackgroundRuns
    monitor: asyncio.Task[Any] | None = None


def get_service(request: Request) -> Service:
    """The service of the app serving ``request`` (503 before start-up finished)."""
    service = getattr(request.app.state, SERVICE_STATE_KEY, None)
    if not isinstance(service, Service):
        raise ApiError(503, "unavailable", "the service is starting or stopping")
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency answering 401 without valid credentials and 403 without ``role``."""

    async def dependency(
        request: Request,
        service: ServiceDep,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        principal = await service.auth.authenticate(request)
        if principal is None:
            raise ApiError(
                401,
                "unauthorized",
                "missing or invalid credentials (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not principal.can(role):
            if principal.anonymous:
                raise ApiError(403, "no_credentials_configured", HOW_TO_CONFIGURE)
            raise ApiError(403, "forbidden", f"{principal.identity} lacks the role {role}")
        return principal

    dependency.__name__ = f"require_{role}"
    return dependency
