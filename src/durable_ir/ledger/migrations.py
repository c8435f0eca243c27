"""The ledger's schema as an ordered list of migrations, with a version table.

Each backend lists its migrations (its own DDL: only column types differ) in
:data:`durable_ir.ledger.postgres.POSTGRES_MIGRATIONS` and
:data:`durable_ir.ledger.sqlite.SQLITE_MIGRATIONS`; ``setup()`` applies those newer than the
highest version recorded in ``durable_ir_migrations``, each in one transaction with its
version row, so a process that dies half-way leaves either the old or the new version.

Every migration is written to be idempotent (``IF NOT EXISTS``): a database made before the
version table existed (the releases up to and including the one that introduced graph
versions) has the tables of migration 1 already; it is upgraded by running every migration
from 1, which changes nothing that is there and adds what is missing. Migrations only add
(tables, columns, indexes): a replica still running the previous release works on an
upgraded database during a rolling deploy. A database newer than this code is used as it
is, with one warning.

Example:
    >>> pending_migrations(1, (Migration(1, "ledger", ""), Migration(2, "ownership", "")))
    (Migration(version=2, name='ownership', script=''),)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MIGRATIONS_TABLE", "Migration", "pending_migrations"]

log = logging.getLogger(__name__)

MIGRATIONS_TABLE = "durable_ir_migrations"
"""Where each applied migration's version is recorded (``version``, ``name``, ``applied_at``)."""


@dataclass(frozen=True)
class Migration:
    """One step of the schema: ``version`` (1, 2, …), a ``name`` and its DDL ``script``."""

    version: int
    name: str
    script: str


def pending_migrations(current: int, migrations: Sequence[Migration]) -> tuple[Migration, ...]:
    """The migrations to apply to a database at version ``current``, in order.

    Warns once if the database is newer than ``migrations`` know (a later release upgraded it:
    this code runs on it unchanged, since migrations only add)."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migrations must be numbered 1, 2, … in order: {versions}")
    if current > len(migrations):
        log.warning(
            "the durable-ir schema in this database is at version %d, newer than this "
            "release's %d: using it as it is (migrations only add)",
            current,
            len(migrations),
        )
    return tuple(m for m in migrations if m.version > current)
