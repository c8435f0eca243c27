"""A real Alertmanager (Debian's ``prometheus-alertmanager`` package) for tests: on a free
loopback port, with a temporary configuration and storage, clustering off, routing every alert
to one webhook receiver with timings short enough for a test (``group_wait`` and
``group_interval`` of a second or two) and ``send_resolved`` on — the lifecycle durable-ir's
intake must honour: whole groups re-sent on every change and every ``repeat_interval``, and a
resolved notice when the alert clears."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from support.local_server import LocalServer, require_program

ALERTMANAGER = Path("/usr/bin/prometheus-alertmanager")


def require_alertmanager() -> None:
    """Skip the test without Alertmanager; fail it in CI."""
    require_program(ALERTMANAGER, "prometheus-alertmanager", "the tests through Alertmanager")


class AlertmanagerServer(LocalServer):
    """``prometheus-alertmanager`` in a child process, posting every group to ``webhook``
    (with ``Authorization: Bearer token`` when given)."""

    name = "alertmanager"

    def __init__(
        self,
        workdir: Path,
        webhook: str,
        *,
        token: str | None = None,
        group_by: Sequence[str] = ("alertname", "service"),
        group_wait: str = "1s",
        group_interval: str = "2s",
        repeat_interval: str = "4s",
    ) -> None:
        super().__init__(workdir, workdir / "alertmanager.log")
        self.config = workdir / "alertmanager.yml"
        receiver: dict[str, Any] = {"url": webhook, "send_resolved": True, "max_alerts": 0}
        if token is not None:
            receiver["http_config"] = {"authorization": {"type": "Bearer", "credentials": token}}
        config = {
            "route": {
                "receiver": "durable-ir",
                "group_by": list(group_by),
                "group_wait": group_wait,
                "group_interval": group_interval,
                "repeat_interval": repeat_interval,
            },
            "receivers": [{"name": "durable-ir", "webhook_configs": [receiver]}],
        }
        # JSON is YAML: no YAML writer needed.
        self.config.write_text(json.dumps(config, indent=2))
        self.url = ""

    def _argv(self, port: int) -> list[str]:
        self.url = f"http://127.0.0.1:{port}"
        return [
            str(ALERTMANAGER),
            f"--config.file={self.config}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # one instance: no gossip port
            "--log.level=warn",
        ]

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def address(self) -> str:
        """``host:port``, as Prometheus's ``alerting`` configuration names it."""
        return self.url.removeprefix("http://")

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds now (API v2)."""
        response = httpx.get(f"{self.url}/api/v2/alerts", timeout=10)
        response.raise_for_status()
        return list(response.json())


@contextmanager
def running_alertmanager(
    workdir: Path, webhook: str, **kwargs: Any
) -> Iterator[AlertmanagerServer]:
    """A started :class:`AlertmanagerServer` for the ``with`` block, stopped after it."""
    server = AlertmanagerServer(workdir, webhook, **kwargs)
    try:
        server.start()
        yield server
    finally:
        server.stop()
