"""The incident API served for tests over real HTTP: in this process (uvicorn in a thread)
or as ``durable-ir serve`` child processes; tokens for every role."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from durable_ir.service import hash_token

TESTS_DIR = Path(__file__).resolve().parent.parent

TOKENS: dict[str, tuple[str, list[str]]] = {
    # identity: (token, roles)
    "alice": ("alice-token-0123456789", ["approver"]),
    "bob": ("bob-token-0123456789", ["approver"]),
    "carol": ("carol-token-0123456789", ["lead"]),
    "vic": ("vic-token-0123456789", ["viewer"]),
    "alertmanager": ("alertmanager-token-0123456789", ["ingest"]),
    "fuzzer": ("fuzzer-token-0123456789", ["lead", "ingest"]),
}


def tokens_json() -> str:
    """``DURABLE_IR_API_TOKENS`` for :data:`TOKENS` (hashed, as in production)."""
    return json.dumps(
        [
            {"identity": who, "roles": roles, "token_sha256": hash_token(token)}
            for who, (token, roles) in TOKENS.items()
        ]
    )


def auth(identity: str) -> dict[str, str]:
    """The Authorization header of ``identity``."""
    return {"Authorization": f"Bearer {TOKENS[identity][0]}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class InProcessServer:
    """``app`` served by uvicorn on a loopback port, in a thread of this process."""

    def __init__(self, app: FastAPI) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self, timeout: float = 60.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise AssertionError("the server thread died during start-up")
            if time.monotonic() > deadline:
                raise AssertionError("the server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
        self.sock.close()


@contextmanager
def serving(app: FastAPI) -> Iterator[InProcessServer]:
    """Serve ``app`` for the ``with`` block."""
    server = InProcessServer(app)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def service_env(**extra: str) -> dict[str, str]:
    """An environment for a ``durable-ir serve`` child: tokens, a fast SLA monitor."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DURABLE_IR_", "SLACK_", "ANTHROPIC_"))
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
    env.update(
        DURABLE_IR_API_TOKENS=tokens_json(),
        DURABLE_IR_SLA_INTERVAL="0.2",
        DURABLE_IR_SHUTDOWN_GRACE="1",
    )
    env.update(extra)
    return env


class ServiceProcess:
    """``durable-ir serve`` in a child process (``kill()`` is SIGKILL)."""

    def __init__(
        self,
        database_url: str,
        *args: str,
        env: dict[str, str] | None = None,
        log: Path,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._log_file = log.open("ab")
        argv = [sys.executable, "-m", "durable_ir.cli", "serve", "--host", "127.0.0.1",
                "--port", str(self.port), "--database-url", database_url, *args]  # fmt: skip
        self.proc = subprocess.Popen(
            argv,
            env=env or service_env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"serve did not become ready:\n{self.output()}")

    def output(self) -> str:
        self._log_file.flush()
        return self.log.read_text(errors="replace")[-6000:]

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log_file.close()


def wait_for(check: Callable[[], Any], *, timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy (fails after ``timeout``)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")
