"""The exceptions durable-ir raises: one small hierarchy, all under :class:`DurableIRError`.

Example:
    >>> from durable_ir.errors import Conflict, DurableIRError
    >>> issubclass(Conflict, DurableIRError)
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from durable_ir.records import ApprovalRecord

__all__ = [
    "ConfigurationError",
    "Conflict",
    "DecisionNotRecorded",
    "DurableIRError",
    "IncidentBusy",
    "InvalidDecision",
    "InvalidInput",
    "NotFound",
]


class DurableIRError(Exception):
    """Base class of every error durable-ir raises on purpose."""


class ConfigurationError(DurableIRError, ValueError):
    """A runtime, URL, policy or node was configured with values that cannot work."""


class InvalidInput(DurableIRError, ValueError):
    """Input from outside (an alert, a decision, an id) failed validation; nothing was changed."""


class InvalidDecision(InvalidInput):
    """A decision is malformed, oversized, not allowed for its request, or its edit does not
    validate. Nothing was recorded."""


class NotFound(DurableIRError, LookupError):
    """No incident (or approval) with that id exists. Nothing was written."""


class Conflict(DurableIRError):
    """The incident is not in a state that accepts the operation; nothing was changed.

    ``winner`` is the decision that was recorded first when the conflict is a lost race or
    an already-decided approval, else ``None`` (the incident is still running or finished
    without an approval).

    Example:
        >>> err = Conflict("incident 'inc-1' is not waiting for a decision")
        >>> err.winner is None
        True
    """

    def __init__(self, message: str, *, winner: ApprovalRecord | None = None) -> None:
        super().__init__(message)
        self.winner = winner


class DecisionNotRecorded(InvalidDecision):
    """The approval node was resumed with an answer that the ledger does not hold.

    Raised inside the graph when something resumes the approval interrupt directly instead of
    going through :func:`durable_ir.Runtime.decide`: the answer is ignored, nothing is
    approved, and the incident stays waiting.
    """


class IncidentBusy(DurableIRError):
    """Another worker holds the incident's lock and did not release it in time.

    A decision that met this is recorded already; the holder, or ``Runtime.recover()``,
    applies it.
    """
