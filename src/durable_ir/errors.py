"""The exceptions durable-ir raises: one small hierarchy, all under :class:`DurableIRError`.

::

    DurableIRError
    ├── ConfigurationError (ValueError)      a runtime, URL, policy or node that cannot work
    ├── InvalidInput (ValueError)            bad input from outside; nothing changed
    │   └── InvalidDecision                  a decision that is malformed or not allowed
    │       └── DecisionNotRecorded          a resume that bypassed Runtime.decide()
    ├── NotFound (LookupError)               no such incident or approval
    ├── Conflict                             not in a state that accepts the operation
    │   └── GraphVersionUnavailable          its graph version is not runnable here
    ├── IncidentBusy                         another worker holds the incident
    └── OwnershipLost                        this worker's hold was taken over (fenced)

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
    "GraphVersionUnavailable",
    "IncidentBusy",
    "InvalidDecision",
    "InvalidInput",
    "NotFound",
    "OwnershipLost",
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


class GraphVersionUnavailable(Conflict):
    """The incident must run on a graph version this process cannot run; nothing was changed.

    Raised before anything is recorded when the version the incident paused on (or runs on)
    is not registered here, or when the registered graph cannot see where the incident is
    paused (its approval node was renamed or removed under the same version string). A
    process that registers ``needed`` can run it; so can an explicit migration
    (:func:`durable_ir.versioning.migrate`).

    Example:
        >>> err = GraphVersionUnavailable(
        ...     "inc-1", graph="incident", needed="v1", registered=["v2"])
        >>> err.needed, err.registered
        ('v1', ['v2'])
        >>> isinstance(err, Conflict)
        True
    """

    def __init__(
        self,
        incident_id: str,
        *,
        graph: str,
        needed: str | None,
        registered: list[str],
        detail: str | None = None,
    ) -> None:
        listed = ", ".join(repr(v) for v in registered) or "none"
        message = detail or (
            f"incident {incident_id!r} runs on graph {graph!r} version {needed!r}, which is "
            f"not registered here (registered: {listed})"
        )
        super().__init__(message)
        self.incident_id = incident_id
        self.graph = graph
        self.needed = needed
        self.registered = list(registered)


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


class OwnershipLost(DurableIRError):
    """This worker no longer owns the incident: its ownership lease expired (the process was
    paused, partitioned or too slow to renew it) and another worker took the incident over
    with a higher epoch. The write that found out did not happen, and the run stops there
    without a further side effect; the new owner carries the incident on.

    Example:
        >>> err = OwnershipLost("inc-1", 3)
        >>> err.incident_id, err.epoch
        ('inc-1', 3)
    """

    def __init__(self, incident_id: str, epoch: int, detail: str = "") -> None:
        message = (
            f"incident {incident_id!r}: ownership epoch {epoch} was taken over by another worker"
        )
        super().__init__(message + (f" ({detail})" if detail else ""))
        self.incident_id = incident_id
        self.epoch = epoch
