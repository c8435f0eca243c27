"""The incident API for your team: your graph, your authentication, one factory call.

Copy this file and replace the two parts marked YOURS. Run it with::

    pip install 'durable-ir[service]'
    export DURABLE_IR_DATABASE_URL=postgresql://ir@db/ir   # default: sqlite:///durable_ir.db
    export DURABLE_IR_API_TOKENS='[{"identity": "alertmanager", "roles": ["ingest"],
                                   "token_sha256": "…"}]'   # durable-ir token new …
    export PROXY_SHARED_SECRET=…                            # see ProxyAuth below
    python examples/service/app.py                          # or, with several workers/replicas:
    uvicorn --factory app:build_app --app-dir examples/service --host 0.0.0.0 --port 8000

Every replica serving one database runs the same graph under the same name.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import replace

from fastapi import FastAPI
from starlette.requests import HTTPConnection

from durable_ir import IncidentGraphBuilder, SeverityRule
from durable_ir.rca.analyzers import CorrelationAnalyzer
from durable_ir.service import BearerTokens, Principal, ServiceSettings, create_app
from durable_ir.service.auth import Authenticator, check_identity
from durable_ir.simulation import SimulatedFleet, simulated_allow_list

GRAPH_NAME = "storefront-incidents"


# -- YOURS: the incident graph -------------------------------------------------------------
def build_graph() -> IncidentGraphBuilder:
    """The team's incident agent. Here: the simulated fleet stands in for Prometheus and the
    deploy tooling (use PrometheusGatherer and your own Executor in production), and alerts
    on payments are P0 whatever their labels say."""
    fleet = SimulatedFleet()
    return IncidentGraphBuilder(
        gatherer=fleet,
        analyzer=CorrelationAnalyzer(),
        executor=fleet,
        allow_list=simulated_allow_list(),
        severity_rules=[SeverityRule("P0", service="payments")],
    )


# -- YOURS: who may do what -----------------------------------------------------------------
class ProxyAuth:
    """People sign in at an authenticating proxy (oauth2-proxy, an ingress with SSO, …) that
    forwards ``X-Forwarded-User`` and ``X-Forwarded-Groups`` and proves itself with a shared
    secret header; machines (Alertmanager) use bearer tokens from ``DURABLE_IR_API_TOKENS``.

    Never trust forwarded identity headers without such a proof: anyone who can reach the
    service directly could set them.
    """

    def __init__(
        self, secret: str, group_roles: dict[str, set[str]], fallback: Authenticator
    ) -> None:
        self.secret = secret.encode()
        self.group_roles = group_roles
        self.fallback = fallback

    @property
    def configured(self) -> bool:
        """Someone can authenticate: a proxy secret or a bearer token is configured."""
        return bool(self.secret) or self.fallback.configured

    async def authenticate(self, connection: HTTPConnection) -> Principal | None:
        """The proxy's user with the roles of their groups; else a bearer token's holder."""
        proof = connection.headers.get("x-proxy-secret", "").encode()
        if not proof:
            return await self.fallback.authenticate(connection)
        if not self.secret or not hmac.compare_digest(proof, self.secret):
            return None
        user = connection.headers.get("x-forwarded-user", "")
        groups = connection.headers.get("x-forwarded-groups", "").split(",")
        roles = set().union(*(self.group_roles.get(g.strip(), set()) for g in groups))
        if not user or not roles:
            return None
        try:
            return Principal(check_identity(user), frozenset(roles))
        except ValueError:  # e.g. a system:* name
            return None


def build_app(settings: ServiceSettings | None = None) -> FastAPI:
    """The app: what ``uvicorn --factory app:build_app`` serves."""
    settings = settings or ServiceSettings.from_env()
    auth = ProxyAuth(
        secret=os.environ.get("PROXY_SHARED_SECRET", ""),
        group_roles={
            "sre": {"approver"},
            "sre-leads": {"lead"},
            "engineering": {"viewer"},
        },
        fallback=BearerTokens(settings.api_tokens),
    )
    if settings.graph_name is None:
        settings = replace(settings, graph_name=GRAPH_NAME)
    return create_app(graph=build_graph(), auth=auth, settings=settings)


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(build_app(), host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
