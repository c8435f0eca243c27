"""Who is calling: bearer tokens mapped to identities and roles, or your own authenticator.

Roles, each including the ones after it:

- ``lead``: decide on any approval, including P0 ones when ``DURABLE_IR_P0_ROLE=lead``;
- ``approver``: approve, edit and reject;
- ``viewer``: read incidents.

``ingest`` is separate: it may post alerts (give it to Alertmanager's token) and nothing else.

Tokens are configured hashed (SHA-256, hex): ``DURABLE_IR_API_TOKENS`` is a JSON list of
``{"identity": "alice", "roles": ["approver"], "token_sha256": "…"}``. A presented token is
hashed and compared with :func:`hmac.compare_digest` against every entry, so the time taken
does not depend on which entry (if any) matched. Identities starting with ``system:`` are
reserved for durable-ir itself and refused.

Example:
    >>> tokens = BearerTokens([TokenEntry("alice", frozenset({"approver"}), hash_token("s3cret"))])
    >>> tokens.principal_for("s3cret")
    Principal(identity='alice', roles=frozenset({'approver'}), anonymous=False)
    >>> tokens.principal_for("guess") is None
    True
    >>> tokens.principal_for("s3cret").can("viewer"), tokens.principal_for("s3cret").can("lead")
    (True, False)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol, get_args, runtime_checkable

from starlette.requests import HTTPConnection

from durable_ir.decisions import MAX_IDENTITY_CHARS, SYSTEM_PREFIX
from durable_ir.errors import ConfigurationError

__all__ = [
    "ANONYMOUS",
    "ROLES",
    "Authenticator",
    "BearerTokens",
    "Principal",
    "Role",
    "TokenEntry",
    "bearer_token",
    "check_identity",
    "hash_token",
    "parse_roles",
    "parse_token_entries",
]

Role = Literal["viewer", "approver", "lead", "ingest"]
ROLES: tuple[Role, ...] = get_args(Role)
_IMPLIED: dict[str, frozenset[str]] = {
    "lead": frozenset({"lead", "approver", "viewer"}),
    "approver": frozenset({"approver", "viewer"}),
    "viewer": frozenset({"viewer"}),
    "ingest": frozenset({"ingest"}),
}
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def hash_token(token: str) -> str:
    """The SHA-256 of ``token`` as lowercase hex: what ``DURABLE_IR_API_TOKENS`` stores
    (``durable-ir token hash`` prints the same).

    Example:
        >>> hash_token("s3cret")[:16]
        '1ec1c26b50d5d3c5'
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_identity(identity: object) -> str:
    """Return ``identity`` if a person may hold it, else raise ``ConfigurationError``.

    Example:
        >>> check_identity("alice")
        'alice'
        >>> check_identity("system:sla")
        Traceback (most recent call last):
        ...
        durable_ir.errors.ConfigurationError: identity 'system:sla' is reserved for durable-ir \
(system:*)
    """
    if not isinstance(identity, str) or not identity.strip():
        raise ConfigurationError("an identity must be a non-empty string")
    if len(identity) > MAX_IDENTITY_CHARS:
        raise ConfigurationError(f"identity is longer than {MAX_IDENTITY_CHARS} characters")
    if any(unicodedata.category(ch) == "Cc" for ch in identity):
        raise ConfigurationError(f"identity {identity[:40]!r} contains control characters")
    if identity.startswith(SYSTEM_PREFIX):
        raise ConfigurationError(f"identity {identity!r} is reserved for durable-ir (system:*)")
    return identity


def parse_roles(roles: object, *, where: str = "roles") -> frozenset[Role]:
    """A non-empty list of role names as a set, else ``ConfigurationError``.

    Example:
        >>> sorted(parse_roles(["viewer", "approver"]))
        ['approver', 'viewer']
    """
    if not isinstance(roles, list | tuple) or not roles:
        raise ConfigurationError(f"{where} must be a non-empty list of {', '.join(ROLES)}")
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise ConfigurationError(f"{where}: unknown role(s) {unknown!r}; known: {', '.join(ROLES)}")
    return frozenset(roles)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the identity recorded on its decisions, and its roles.

    ``anonymous`` marks the caller of a service with no credentials configured: it may read,
    never decide.

    Example:
        >>> Principal("bob", frozenset({"lead"})).can("approver")
        True
    """

    identity: str
    roles: frozenset[str] = field(default_factory=frozenset)
    anonymous: bool = False

    def can(self, role: str) -> bool:
        """True if any of this principal's roles is or includes ``role``."""
        return any(role in _IMPLIED.get(held, frozenset()) for held in self.roles)


ANONYMOUS = Principal("anonymous", frozenset({"viewer"}), anonymous=True)
"""Who calls a service that has no credentials configured."""


@dataclass(frozen=True)
class TokenEntry:
    """One configured API token: only its SHA-256 is kept."""

    identity: str
    roles: frozenset[str]
    token_sha256: str


def parse_token_entries(text: str | None) -> tuple[TokenEntry, ...]:
    """Parse ``DURABLE_IR_API_TOKENS`` (a JSON list; empty or unset: no tokens).

    Example:
        >>> entry = {"identity": "alice", "roles": ["approver"], "token_sha256": "ab" * 32}
        >>> parse_token_entries(json.dumps([entry]))[0].identity
        'alice'
        >>> parse_token_entries('[{"identity": "alice", "roles": ["approver"], "token": "x"}]')
        Traceback (most recent call last):
        ...
        durable_ir.errors.ConfigurationError: DURABLE_IR_API_TOKENS entry 1: unknown keys \
['token'] (store token_sha256, the token's SHA-256: durable-ir token hash)
    """
    if text is None or not text.strip():
        return ()
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"DURABLE_IR_API_TOKENS is not JSON: {exc}") from None
    if not isinstance(data, list):
        raise ConfigurationError("DURABLE_IR_API_TOKENS must be a JSON list of objects")
    entries: list[TokenEntry] = []
    for number, item in enumerate(data, start=1):
        where = f"DURABLE_IR_API_TOKENS entry {number}"
        if not isinstance(item, dict):
            raise ConfigurationError(f"{where} is not an object")
        unknown = sorted(set(item) - {"identity", "roles", "token_sha256"})
        if unknown:
            raise ConfigurationError(
                f"{where}: unknown keys {unknown!r} (store token_sha256, the token's SHA-256: "
                "durable-ir token hash)"
            )
        try:
            identity = check_identity(item.get("identity"))
        except ConfigurationError as exc:
            raise ConfigurationError(f"{where}: {exc}") from None
        digest = item.get("token_sha256")
        if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest.lower()):
            raise ConfigurationError(f"{where}: token_sha256 must be 64 hex digits")
        roles = parse_roles(item.get("roles"), where=f"{where}: roles")
        entries.append(TokenEntry(identity, roles, digest.lower()))
    digests = [e.token_sha256 for e in entries]
    if len(set(digests)) != len(digests):
        raise ConfigurationError("DURABLE_IR_API_TOKENS lists one token twice")
    return tuple(entries)


def bearer_token(connection: HTTPConnection) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, else ``None``."""
    header = connection.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


@runtime_checkable
class Authenticator(Protocol):
    """Turns a request into a :class:`Principal`, or ``None`` when its credentials are missing
    or invalid (the service answers 401). Pass your own to ``create_app(auth=…)``.

    ``configured`` is False for a service with no credentials at all: it then refuses every
    write with a 403 saying how to configure tokens.
    """

    @property
    def configured(self) -> bool:
        """True if any credential can authenticate."""
        ...

    async def authenticate(self, connection: HTTPConnection) -> Principal | None:
        """The caller, or ``None`` (401)."""
        ...


class BearerTokens:
    """The default :class:`Authenticator`: bearer tokens from ``DURABLE_IR_API_TOKENS``.

    With no entries, every caller is :data:`ANONYMOUS` (read-only).
    """

    def __init__(self, entries: Iterable[TokenEntry]) -> None:
        self._entries = tuple(entries)

    @property
    def configured(self) -> bool:
        """True if any token is configured."""
        return bool(self._entries)

    def principal_for(self, token: str) -> Principal | None:
        """The principal holding ``token``, comparing its hash with every entry."""
        presented = hash_token(token).encode()
        found: TokenEntry | None = None
        for entry in self._entries:  # no early exit: the same work whichever entry matches
            if hmac.compare_digest(presented, entry.token_sha256.encode()):
                found = entry
        return None if found is None else Principal(found.identity, found.roles)

    async def authenticate(self, connection: HTTPConnection) -> Principal | None:
        """The bearer token's principal; :data:`ANONYMOUS` when no tokens are configured."""
        if not self._entries:
            return ANONYMOUS
        token = bearer_token(connection)
        return None if token is None else self.principal_for(token)
