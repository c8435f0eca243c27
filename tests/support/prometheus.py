"""A real Prometheus server (Debian's ``prometheus`` package, /usr/bin/prometheus) for tests:
on a free loopback port, with a temporary configuration and TSDB, scraping given targets,
evaluating given rule files and sending their alerts to given Alertmanagers; its HTTP API read
with httpx."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from support.local_server import LocalServer, require_program

PROMETHEUS = Path("/usr/bin/prometheus")


def require_prometheus() -> None:
    """Skip the test without /usr/bin/prometheus; fail it in CI."""
    require_program(PROMETHEUS, "prometheus", "the tests against a real Prometheus")


class PrometheusServer(LocalServer):
    """``prometheus`` in a child process, scraping ``targets`` (``host:port``) every
    ``interval`` and evaluating ``rule_files`` as often."""

    name = "prometheus"
    stop_timeout = 15.0

    def __init__(
        self,
        workdir: Path,
        targets: Sequence[str],
        rule_files: Sequence[Path] = (),
        *,
        job: str = "durable-ir",
        interval: str = "1s",
        alertmanagers: Sequence[str] = (),
    ) -> None:
        super().__init__(workdir, workdir / "prometheus.log")
        self.config = workdir / "prometheus.yml"
        # JSON is YAML: no YAML writer needed.
        config = {
            "global": {
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "evaluation_interval": interval,
            },
            "rule_files": [str(path.resolve()) for path in rule_files],
            "alerting": {
                "alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]
                if alertmanagers
                else []
            },
            "scrape_configs": [
                {
                    "job_name": job,
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": list(targets)}],
                }
            ],
        }
        self.config.write_text(json.dumps(config, indent=2))
        self.url = ""

    def _argv(self, port: int) -> list[str]:
        self.url = f"http://127.0.0.1:{port}"
        return [
            str(PROMETHEUS),
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
            # Firing alerts go to Alertmanager again every second, not every minute: an
            # episode of a test lasts seconds.
            "--rules.alert.resend-delay=1s",
        ]

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>``'s ``data``; raises on an API error (a PromQL syntax error
        is a 400 with ``status: error``)."""
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {response.status_code} {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector: ``[{"metric": {...}, "value": [t, "v"]}, ...]``."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])


@contextmanager
def running_prometheus(
    workdir: Path, targets: Sequence[str], rule_files: Sequence[Path] = (), **kwargs: Any
) -> Iterator[PrometheusServer]:
    """A started :class:`PrometheusServer` for the ``with`` block, stopped after it."""
    server = PrometheusServer(workdir, targets, rule_files, **kwargs)
    try:
        server.start()
        yield server
    finally:
        server.stop()
