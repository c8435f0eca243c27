"""The approval ledger: one row per approval request, decided exactly once.

Example:
    >>> from durable_ir.ledger import MemoryLedger
    >>> isinstance(MemoryLedger(), ApprovalLedger)
    True
"""

from typing import TYPE_CHECKING, Any

from durable_ir.ledger.base import ApprovalLedger, DecisionWrite, VersionCount
from durable_ir.ledger.memory import MemoryLedger
from durable_ir.ledger.sqlite import SqliteLedger

if TYPE_CHECKING:
    from durable_ir.ledger.postgres import PostgresLedger

__all__ = [
    "ApprovalLedger",
    "DecisionWrite",
    "MemoryLedger",
    "PostgresLedger",
    "SqliteLedger",
    "VersionCount",
]


def __getattr__(name: str) -> Any:
    # PostgresLedger loads psycopg: only when asked for, so SQLite-only use never does.
    if name == "PostgresLedger":
        from durable_ir.ledger.postgres import PostgresLedger

        return PostgresLedger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
