"""The service's settings, read from the environment (every one has a default).

=================================  ==================================================  ========
variable                           meaning                                              default
=================================  ==================================================  ========
``DURABLE_IR_DATABASE_URL``        the database (as everywhere in durable-ir)          SQLite
``DURABLE_IR_API_TOKENS``          JSON list of ``{identity, roles, token_sha256}``    none
``DURABLE_IR_P0_ROLE``             role needed to decide P0 approvals                  approver
``DURABLE_IR_MAX_BODY_BYTES``      request bodies larger than this are refused (413)   262144
``DURABLE_IR_SLA_INTERVAL``        seconds between SLA monitor sweeps                  15
``DURABLE_IR_GRAPH_NAME``          name the served graph is registered under           see below
``DURABLE_IR_MAX_CONCURRENT_RUNS`` alerts whose first run may go on at once            8
``DURABLE_IR_LOCK_WAIT``           seconds a decision waits for a busy incident        30
``DURABLE_IR_SHUTDOWN_GRACE``      seconds shutdown waits for runs in flight           10
``DURABLE_IR_POOL_SIZE``           PostgreSQL connections at most                      20
``SLACK_SIGNING_SECRET``           verifies ``POST /slack/interactions``               none
``DURABLE_IR_SLACK_USERS``         JSON ``{"U…": {"identity": …, "roles": […]}}``      none
``DURABLE_IR_DOCS``                ``1``: Swagger UI at ``/docs`` (from a CDN)         off
=================================  ==================================================  ========

The graph name defaults to the demo agent's (``demo-agent``) when the service runs the demo
graph, else to the runtime's default (``incident`` for a ``StateGraph``).

Example:
    >>> settings = ServiceSettings.from_env({"DURABLE_IR_P0_ROLE": "lead",
    ...                                      "DURABLE_IR_SLA_INTERVAL": "2.5"})
    >>> settings.p0_role, settings.sla_interval, settings.max_body_bytes
    ('lead', 2.5, 262144)
    >>> ServiceSettings.from_env({"DURABLE_IR_P0_ROLE": "boss"})
    Traceback (most recent call last):
    ...
    durable_ir.errors.ConfigurationError: DURABLE_IR_P0_ROLE must be approver or lead, got 'boss'
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from durable_ir.errors import ConfigurationError
from durable_ir.service.auth import (
    Principal,
    TokenEntry,
    check_identity,
    parse_roles,
    parse_token_entries,
)

__all__ = ["DEFAULT_MAX_BODY_BYTES", "ServiceSettings", "parse_slack_users"]

DEFAULT_MAX_BODY_BYTES = 256 * 1024


def parse_slack_users(text: str | None) -> dict[str, Principal]:
    """Parse ``DURABLE_IR_SLACK_USERS``: Slack user id → approver identity and roles (roles
    default to ``["approver"]``).

    Example:
        >>> users = parse_slack_users('{"U024BE7LH": {"identity": "alice"}}')
        >>> users["U024BE7LH"].identity, sorted(users["U024BE7LH"].roles)
        ('alice', ['approver'])
    """
    if text is None or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"DURABLE_IR_SLACK_USERS is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigurationError("DURABLE_IR_SLACK_USERS must be a JSON object keyed by user id")
    users: dict[str, Principal] = {}
    for user_id, item in data.items():
        where = f"DURABLE_IR_SLACK_USERS[{user_id!r}]"
        if not isinstance(item, dict) or set(item) - {"identity", "roles"}:
            raise ConfigurationError(f"{where} must be an object with identity and roles")
        try:
            identity = check_identity(item.get("identity"))
        except ConfigurationError as exc:
            raise ConfigurationError(f"{where}: {exc}") from None
        roles = parse_roles(item.get("roles", ["approver"]), where=f"{where}.roles")
        users[str(user_id)] = Principal(identity, roles)
    return users


def _number(environ: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if not value >= minimum:  # also refuses NaN
        raise ConfigurationError(f"{name} must be at least {minimum:g}, got {raw!r}")
    return value


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def _flag(environ: Mapping[str, str], name: str) -> bool:
    raw = (environ.get(name) or "").strip().lower()
    if raw not in _TRUE + _FALSE:
        raise ConfigurationError(f"{name} must be 1 or 0 (true/false), got {raw!r}")
    return raw in _TRUE


@dataclass(frozen=True)
class ServiceSettings:
    """Everything the service reads from its environment; see the module doc.

    Build it with :meth:`from_env`, or directly (tests, embedding) — values are checked in
    both cases.
    """

    # May hold a password: kept out of repr(), so that logging the settings cannot leak it.
    database_url: str | None = field(default=None, repr=False)
    api_tokens: tuple[TokenEntry, ...] = ()
    p0_role: Literal["approver", "lead"] = "approver"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    sla_interval: float = 15.0
    graph_name: str | None = None
    max_concurrent_runs: int = 8
    lock_wait: float = 30.0
    shutdown_grace: float = 10.0
    pool_size: int = 20
    # A secret: kept out of repr() too.
    slack_signing_secret: str | None = field(default=None, repr=False)
    slack_users: Mapping[str, Principal] = field(default_factory=dict)
    # Swagger UI at /docs: its page loads script and style from a public CDN, so it is off
    # unless asked for (GET /openapi.json is always served).
    docs: bool = False

    def __post_init__(self) -> None:
        if self.p0_role not in ("approver", "lead"):
            raise ConfigurationError(
                f"DURABLE_IR_P0_ROLE must be approver or lead, got {self.p0_role!r}"
            )
        if self.max_body_bytes < 1024:
            raise ConfigurationError("the body size limit must be at least 1024 bytes")
        if not self.sla_interval > 0:
            raise ConfigurationError("the SLA interval must be positive")
        if self.max_concurrent_runs < 1:
            raise ConfigurationError("max_concurrent_runs must be at least 1")
        if self.lock_wait < 0 or self.shutdown_grace < 0:
            raise ConfigurationError("lock_wait and shutdown_grace must be >= 0 seconds")
        if self.graph_name is not None and not self.graph_name.strip():
            raise ConfigurationError("the graph name must not be empty")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServiceSettings:
        """Read the settings from ``environ`` (default: ``os.environ``)."""
        env = os.environ if environ is None else environ
        role = env.get("DURABLE_IR_P0_ROLE") or "approver"
        if role not in ("approver", "lead"):
            raise ConfigurationError(f"DURABLE_IR_P0_ROLE must be approver or lead, got {role!r}")
        return cls(
            database_url=env.get("DURABLE_IR_DATABASE_URL") or None,
            api_tokens=parse_token_entries(env.get("DURABLE_IR_API_TOKENS")),
            p0_role=role,  # type: ignore[arg-type]
            max_body_bytes=int(
                _number(env, "DURABLE_IR_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, minimum=1024)
            ),
            sla_interval=_number(env, "DURABLE_IR_SLA_INTERVAL", 15.0, minimum=0.01),
            graph_name=env.get("DURABLE_IR_GRAPH_NAME") or None,
            max_concurrent_runs=int(_number(env, "DURABLE_IR_MAX_CONCURRENT_RUNS", 8, minimum=1)),
            lock_wait=_number(env, "DURABLE_IR_LOCK_WAIT", 30.0, minimum=0),
            shutdown_grace=_number(env, "DURABLE_IR_SHUTDOWN_GRACE", 10.0, minimum=0),
            pool_size=int(_number(env, "DURABLE_IR_POOL_SIZE", 20, minimum=2)),
            slack_signing_secret=env.get("SLACK_SIGNING_SECRET") or None,
            slack_users=parse_slack_users(env.get("DURABLE_IR_SLACK_USERS")),
            docs=_flag(env, "DURABLE_IR_DOCS"),
        )
