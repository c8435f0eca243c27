"""Approval deadlines: the policy per severity, and the monitor that enforces it from the
database.

Example:
    >>> from durable_ir.sla import SlaPolicy
    >>> SlaPolicy().window_for("P0")
    datetime.timedelta(seconds=900)
"""

from durable_ir.sla.monitor import SLA_IDENTITY, ReminderSender, SlaMonitor, SweepReport
from durable_ir.sla.policy import DEFAULT_WINDOWS, Reminder, SlaPolicy

__all__ = [
    "DEFAULT_WINDOWS",
    "SLA_IDENTITY",
    "Reminder",
    "ReminderSender",
    "SlaMonitor",
    "SlaPolicy",
    "SweepReport",
]
