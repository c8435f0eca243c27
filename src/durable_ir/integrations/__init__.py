"""Integrations with outside services: PagerDuty (Events API v2) and Slack, each optional."""
