"""The incident API: a FastAPI service over a durable-ir runtime (``pip install
'durable-ir[service]'``). ``import durable_ir`` does not import it.

- :func:`create_app` (``app.py``): the app factory;
- ``settings.py``: :class:`ServiceSettings` from the environment;
- ``auth.py``: bearer tokens, roles, the :class:`Authenticator` protocol for your own;
- ``routes/``: alerts, incidents, decisions, Slack, health, and ``GET /console``, the
  approval console (``console/``: plain HTML, CSS and JS);
- ``models.py``, ``errors.py``: the JSON and the one error shape;
- ``deciding.py``: record a decision, answer, apply it in the background;
- ``intake.py``: alerts indexed before the answer, first runs after it;
- ``lifespan.py``: runtime, recovery and the SLA monitor; ``limits.py``: the body limit;
- ``server.py``: ``durable-ir serve``.

See ``docs/service.md``.

Example:
    >>> from durable_ir.service import Principal
    >>> Principal("alice", frozenset({"approver"})).can("viewer")
    True
"""

from durable_ir.service.app import create_app
from durable_ir.service.auth import (
    Authenticator,
    BearerTokens,
    Principal,
    TokenEntry,
    hash_token,
)
from durable_ir.service.settings import ServiceSettings

__all__ = [
    "Authenticator",
    "BearerTokens",
    "Principal",
    "ServiceSettings",
    "TokenEntry",
    "create_app",
    "hash_token",
]
