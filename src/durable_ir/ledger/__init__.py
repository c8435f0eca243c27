"""The approval ledger: one row per approval request, decided exactly once.

Example:
    >>> from durable_ir.ledger import MemoryLedger
    >>> isinstance(MemoryLedger(), ApprovalLedger)
    True
"""

from durable_ir.ledger.base import ApprovalLedger, DecisionWrite, VersionCount
from durable_ir.ledger.memory import MemoryLedger
from durable_ir.ledger.postgres import PostgresLedger
from durable_ir.ledger.sqlite import SqliteLedger

__all__ = [
    "ApprovalLedger",
    "DecisionWrite",
    "MemoryLedger",
    "PostgresLedger",
    "SqliteLedger",
    "VersionCount",
]
