"""A server program the tests run as a child process on a free loopback port: the start that
retries another port when the one picked was taken meanwhile, the wait until it answers, the
stop (SIGTERM, then SIGKILL) and the tail of its log. :class:`~support.pgbouncer.PgBouncer`
and :class:`~support.prometheus.PrometheusServer` are two."""

from __future__ import annotations

import os
import subprocess
import time
from abc import ABC, abstractmethod
from pathlib import Path

import pytest

from support.service import free_port


def require_program(program: Path, package: str, needed_for: str) -> None:
    """Skip the test when ``program`` (from Debian's ``package``) is missing; fail it in CI,
    where ``.ci/run`` installs the package and sets ``DURABLE_IR_REQUIRE_POSTGRES``."""
    if program.is_file() and os.access(program, os.X_OK):
        return
    reason = (
        f"{program} is missing (apt-get install --no-install-recommends {package}): "
        f"{needed_for} cannot run"
    )
    if os.environ.get("DURABLE_IR_REQUIRE_POSTGRES"):
        pytest.fail(reason)
    pytest.skip(reason)


class LocalServer(ABC):
    """A child server process whose output goes to ``log``; subclasses say how to launch it
    on a port (:meth:`_argv`) and how to tell it is ready (:meth:`_ready`)."""

    name = "server"
    """How messages call it."""
    poll_interval = 0.1
    """Seconds between two readiness probes."""
    stop_timeout = 10.0
    """Seconds :meth:`stop` waits after SIGTERM (and after SIGKILL)."""

    def __init__(self, workdir: Path, log: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self.port = 0

    @abstractmethod
    def _argv(self, port: int) -> list[str]:
        """The command line that serves on ``port`` (after writing whatever it reads)."""

    @abstractmethod
    def _ready(self) -> bool:
        """One probe: True once the server answers as the tests need."""

    def start(self, timeout: float = 30.0, attempts: int = 3) -> None:
        """Start on a free loopback port and wait until ready (another port if the one picked
        was taken meanwhile)."""
        for _ in range(attempts):
            self.port = free_port()
            argv = self._argv(self.port)
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen(
                    argv,
                    cwd=self.workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if self._wait_ready(timeout):
                return
            if "address already in use" not in self.output().lower():
                break
        raise AssertionError(f"{self.name} did not become ready:\n{self.output()}")

    def _wait_ready(self, timeout: float) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self._ready():
                return True
            time.sleep(self.poll_interval)
        self.stop()
        return False

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds (default :attr:`stop_timeout`);
        ``returncode`` says which worked (0: a clean shutdown, -9: killed)."""
        if self.proc is None:
            return
        wait = self.stop_timeout if timeout is None else timeout
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=wait)
        self.returncode = self.proc.returncode
        self.proc = None

    def output(self) -> str:
        """The end of the server's log."""
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""
