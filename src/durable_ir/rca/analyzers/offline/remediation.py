"""The actions suggested for a root cause."""

from __future__ import annotations

from typing import Any

from durable_ir.rca.analysis import SuggestedAction
from durable_ir.rca.analyzers.offline.scoring import _Candidate
from durable_ir.rca.analyzers.offline.signals import _Analysis


def _remediation(candidate: _Candidate, analysis: _Analysis) -> list[SuggestedAction]:
    service = candidate.service
    changes = [
        c
        for s in candidate.signals
        if s.category == "change"
        for c in analysis.changes
        if c.id in s.ids
    ]
    if candidate.fault == "bad_deploy":
        params = {"from_version": changes[0].version} if changes and changes[0].version else {}
        return [SuggestedAction(action="rollback", target=service, parameters=params)]
    if candidate.fault == "memory_leak":
        # A restart buys time; the leak goes only with the code that brought it.
        version = changes[0].version if changes else None
        rollback = SuggestedAction(
            action="rollback",
            target=service,
            parameters={"from_version": version} if version else {},
        )
        restart = SuggestedAction(action="restart", target=service)
        return [rollback, restart] if changes else [restart, rollback]
    if candidate.fault == "config_error":
        params = {"revert_change": changes[0].id} if changes else {}
        return [SuggestedAction(action="fix_config", target=service, parameters=params)]
    simple: dict[str, list[tuple[str, dict[str, Any]]]] = {
        "connection_pool_exhaustion": [("scale", {"factor": 2})],
        "disk_full": [("clear_disk", {}), ("expand_disk", {"factor": 2})],
        "expired_certificate": [("rotate_certificate", {})],
        "upstream_outage": [("failover_upstream", {})],
        "noisy_neighbour": [("reschedule", {})],
    }
    return [
        SuggestedAction(action=action, target=service, parameters=params)
        for action, params in simple.get(candidate.fault, [])
    ]
