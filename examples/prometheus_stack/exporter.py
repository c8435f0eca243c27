"""A small simulated fleet for the Prometheus stack example (and the tests): ``/metrics`` for
two services, a way to break one with a bad deploy, and the automation webhook durable-ir's
``[executor] kind = "webhook"`` calls to roll it back. Standard library only.

Run it by hand (see README.md)::

    python examples/prometheus_stack/exporter.py --port 9300
    curl -X POST localhost:9300/deploy -d '{"service": "checkout", "version": "v1.5.0",
                                            "errors_per_s": 8}'

Endpoints:

- ``GET /metrics`` — the text exposition format the way client libraries write it:
  ``app_build_info{service,version}``, ``http_requests_total{service,code}`` (counters that
  only grow; the ``code="500"`` series exists from the first error on), a latency histogram
  and a connection-pool gauge per service.
- ``POST /deploy`` ``{"service", "version", "errors_per_s"}`` — a deploy: the new version,
  failing ``errors_per_s`` requests a second on top of the healthy ones (0: harmless).
- ``POST /remediate`` — the webhook: durable-ir's JSON step (``phase``, ``action``,
  ``target``, ``idempotency_key``, ``epoch`` …). ``rollback`` puts the target back on its
  previous version and clears the fault; ``restart`` clears the fault. A dry run says what it
  would do. A repeated ``Idempotency-Key`` gets the first answer and changes nothing again;
  an ``epoch`` lower than one already seen for the incident is refused (409): a worker that was
  taken over cannot act. With ``--token`` (or ``$EXPORTER_TOKEN``) a request needs
  ``Authorization: Bearer <token>``.
- ``GET /remediations`` — every step the webhook received, in order (JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Service:
    """One service: requests per second (ok and failed), its version and the one before, and
    counters integrating the rates over monotonic time."""

    def __init__(self, name: str, version: str, ok_rate: float) -> None:
        self.name = name
        self.version = version
        self.previous: str | None = None
        self.ok_rate = ok_rate
        self.error_rate = 0.0
        self.ok = 0.0
        self.errors = 0.0
        self.seen_errors = False
        self.last = time.monotonic()

    def advance(self) -> None:
        now = time.monotonic()
        elapsed, self.last = now - self.last, now
        self.ok += self.ok_rate * elapsed
        self.errors += self.error_rate * elapsed
        self.seen_errors = self.seen_errors or self.errors > 0

    def exposition(self) -> list[str]:
        s = f'service="{self.name}"'
        total = self.ok + self.errors
        lines = [
            f'app_build_info{{{s},version="{self.version}"}} 1',
            f'http_requests_total{{{s},code="200"}} {self.ok:.3f}',
        ]
        if self.seen_errors:
            lines.append(f'http_requests_total{{{s},code="500"}} {self.errors:.3f}')
        # 90 % of requests under 0.1 s, all under 0.5 s: a steady p99.
        shares = (0.6, 0.9, 0.98, 1.0, 1.0, 1.0)
        for le, share in zip(BUCKETS, shares, strict=True):
            lines.append(f'http_request_duration_seconds_bucket{{{s},le="{le}"}} {total * share}')
        lines.append(f'http_request_duration_seconds_bucket{{{s},le="+Inf"}} {total}')
        lines.append(f"http_request_duration_seconds_count{{{s}}} {total}")
        lines.append(f"db_connections_in_use{{{s}}} {5 + int(total) % 3}")
        lines.append(f"db_connections_limit{{{s}}} 50")
        return lines


class Exporter(ThreadingHTTPServer):
    """The fleet on ``host:port`` (port 0: a free one): checkout and catalog."""

    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str | None = None) -> None:
        super().__init__((host, port), _Handler)
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.token = token
        self.services = {
            "checkout": Service("checkout", "v1.4.0", ok_rate=20.0),
            "catalog": Service("catalog", "v7", ok_rate=12.0),
        }
        self.remediations: list[dict[str, Any]] = []
        self._answers: dict[str, tuple[int, dict[str, Any]]] = {}
        self._epochs: dict[str, int] = {}

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}"

    def deploy(self, service: str, version: str, errors_per_s: float = 0.0) -> None:
        """Deploy ``version`` of ``service``, failing ``errors_per_s`` requests a second."""
        with self.lock:
            target = self.services[service]
            target.advance()
            target.previous, target.version = target.version, version
            target.error_rate = errors_per_s

    def render(self) -> bytes:
        with self.lock:
            lines = ["# TYPE app_build_info gauge", "# TYPE http_requests_total counter"]
            lines += ["# TYPE http_request_duration_seconds histogram"]
            lines += ["# TYPE db_connections_in_use gauge", "# TYPE db_connections_limit gauge"]
            for service in self.services.values():
                service.advance()
                lines += service.exposition()
        return ("\n".join(lines) + "\n").encode()

    def remediate(self, step: dict[str, Any], key: str) -> tuple[int, dict[str, Any]]:
        """One webhook call: ``(HTTP status, JSON answer)``."""
        with self.lock:
            self.remediations.append(step)
            if key and key in self._answers:
                status, answer = self._answers[key]
                return status, answer | {"detail": f"{answer['detail']} (already done: {key})"}
            incident, epoch = str(step.get("incident_id")), step.get("epoch")
            if isinstance(epoch, int):
                if epoch < self._epochs.get(incident, epoch):
                    return 409, {"ok": False, "detail": f"epoch {epoch} was taken over"}
                self._epochs[incident] = epoch
            status, answer = self._act(step)
            if key and step.get("phase") != "dry_run":
                self._answers[key] = (status, answer)
            return status, answer

    def _act(self, step: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        action, name, phase = step.get("action"), step.get("target"), step.get("phase")
        service = self.services.get(str(name))
        if service is None:
            return 404, {"ok": False, "detail": f"no service {name!r} here"}
        if action == "rollback":
            if service.previous is None:
                return 200, {"ok": False, "detail": f"{name} has no earlier version"}
            what = f"roll {name} back from {service.version} to {service.previous}"
            if phase == "dry_run":
                return 200, {"ok": True, "detail": f"would {what}"}
            service.advance()
            service.version, service.previous = service.previous, service.version
            service.error_rate = 0.0
            return 200, {"ok": True, "detail": f"rolled {name} back to {service.version}"}
        if action == "restart":
            if phase == "dry_run":
                return 200, {"ok": True, "detail": f"would restart {name}"}
            service.advance()
            service.error_rate = 0.0
            return 200, {"ok": True, "detail": f"restarted {name}"}
        return 422, {"ok": False, "detail": f"this fleet cannot {action!r}"}


class _Handler(BaseHTTPRequestHandler):
    server: Exporter

    def do_GET(self) -> None:
        if self.path == "/metrics":
            self._send(200, self.server.render(), "text/plain; version=0.0.4")
        elif self.path == "/remediations":
            with self.server.lock:
                body = json.dumps(self.server.remediations).encode()
            self._send(200, body, "application/json")
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        try:
            payload = json.loads(self.rfile.read(length) or b"{}")
            assert isinstance(payload, dict)
        except (ValueError, AssertionError):
            self._json(400, {"ok": False, "detail": "the body must be a JSON object"})
            return
        token = self.server.token
        if token and self.headers.get("authorization") != f"Bearer {token}":
            self._json(401, {"ok": False, "detail": "a bearer token is needed"})
            return
        if self.path == "/deploy":
            try:
                self.server.deploy(
                    str(payload["service"]),
                    str(payload["version"]),
                    float(payload.get("errors_per_s", 0)),
                )
            except (KeyError, ValueError) as exc:
                self._json(400, {"ok": False, "detail": f"bad deploy: {exc!r}"})
                return
            self._json(200, {"ok": True, "detail": f"deployed {payload['version']}"})
        elif self.path == "/remediate":
            key = self.headers.get("idempotency-key") or ""
            self._json(*self.server.remediate(payload, key))
        else:
            self.send_error(404)

    def _json(self, status: int, answer: dict[str, Any]) -> None:
        self._send(status, json.dumps(answer).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9300)
    parser.add_argument("--token", default=os.environ.get("EXPORTER_TOKEN"))
    args = parser.parse_args()
    server = Exporter(args.host, args.port, token=args.token)
    print(f"simulated fleet on {server.url}: /metrics, POST /deploy, POST /remediate", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
