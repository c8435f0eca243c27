"""The service's routes, one module per area: ``health``, ``alerts``, ``incidents``,
``decisions``, ``slack``."""

from durable_ir.service.routes import alerts, decisions, health, incidents, slack

__all__ = ["alerts", "decisions", "health", "incidents", "slack"]
