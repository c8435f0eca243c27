"""The service's routes, one module per area: ``health``, ``alerts``, ``incidents``,
``decisions``, ``slack``, and ``console`` (the approval console's page)."""

from durable_ir.service.routes import alerts, console, decisions, health, incidents, slack

__all__ = ["alerts", "console", "decisions", "health", "incidents", "slack"]
