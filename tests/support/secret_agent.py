"""The full incident agent wired to every integration that takes a secret — Claude, PagerDuty,
Slack — configured from the environment as a deployment is, each pointed at a local server.

``agent_graph`` is what ``durable-ir serve --graph support.secret_agent:agent_graph`` serves;
tests build the same agent in-process with :func:`agent_from_env`.

========================  ====================================================
``ANTHROPIC_API_KEY``     read by the ``anthropic`` SDK (``AnthropicAnalyzer()``)
``ANTHROPIC_BASE_URL``    the local Messages API (read by the SDK too)
``PAGERDUTY_ROUTING_KEY`` the Events v2 integration key
``PAGERDUTY_URL``         the local Events API
``SLACK_BOT_TOKEN``       the bot token (``xoxb-…``)
``SLACK_API_URL``         the local Web API, ending in ``/api/``
``SECRET_AGENT_DIR``      where the executor records the steps it applies
========================  ====================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from langgraph.graph import StateGraph
from slack_sdk.web.async_client import AsyncWebClient

from durable_ir import IncidentGraphBuilder, RcaConfig
from durable_ir.integrations.pagerduty import PagerDutyNotifier
from durable_ir.integrations.slack import SlackNotifier
from durable_ir.rca.analyzers.anthropic import AnthropicAnalyzer
from support.incident_parts import ALLOW, FileExecutor, FixedVerifier, OneEventGatherer, undo_scale

SLACK_CHANNEL = "C0INCIDENTS"


def agent_from_env(env: Mapping[str, str] | None = None) -> IncidentGraphBuilder:
    """The agent, with its secrets and endpoints from ``env`` (default ``os.environ``)."""
    env = os.environ if env is None else env
    slack = AsyncWebClient(token=env["SLACK_BOT_TOKEN"], base_url=env["SLACK_API_URL"])
    notifiers: list[Any] = [
        SlackNotifier(slack, SLACK_CHANNEL),
        PagerDutyNotifier(
            env["PAGERDUTY_ROUTING_KEY"],
            base_url=env["PAGERDUTY_URL"],
            backoff=0.01,
            max_retries=1,
        ),
    ]
    return IncidentGraphBuilder(
        gatherer=OneEventGatherer(),
        analyzer=AnthropicAnalyzer(),
        executor=FileExecutor(Path(env["SECRET_AGENT_DIR"])),
        verifier=FixedVerifier(True),
        allow_list=ALLOW,
        rca=RcaConfig(retry_backoff=0),
        rollbacks={"scale": undo_scale},
        notifiers=notifiers,
    )


def agent_graph() -> StateGraph[Any, Any, Any, Any]:
    """The agent's graph, configured from the environment."""
    return agent_from_env().build()
