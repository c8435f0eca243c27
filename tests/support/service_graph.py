"""A demo-agent graph for service tests whose remediation waits at a gate: a node before
``apply`` that notes each start in ``$SERVICE_GATE_DIR/gate.log`` and waits until the file
``$SERVICE_GATE_DIR/open`` exists. A process killed while its run waits there has recorded
the decision but not applied it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from durable_ir.demo.agent import build_demo_builder


async def gate(state: dict[str, Any]) -> dict[str, Any]:
    directory = Path(os.environ["SERVICE_GATE_DIR"])
    with (directory / "gate.log").open("a") as log:
        log.write(f"{os.getpid()}\n")
    while not (directory / "open").exists():  # noqa: ASYNC110 - another process opens it
        await asyncio.sleep(0.05)
    return {}


def build_gated_graph() -> Any:
    return build_demo_builder("offline").insert_before("apply", "gate", gate).build()
