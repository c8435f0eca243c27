"""Start ``support.worker`` in its own OS process and talk to it in JSON lines."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TESTS_DIR = Path(__file__).resolve().parent.parent


class JsonLineProcess:
    """A child OS process spoken to in JSON lines on stdin/stdout.

    If it stalls, ``read`` asks it for its thread stacks (SIGUSR2) and asyncio task stacks
    (SIGUSR1) before killing it, so a hang in a test shows where it hung (children that did not
    register those handlers just die).
    """

    def __init__(self, argv: list[str], *, env: dict[str, str] | None = None) -> None:
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(TESTS_DIR), full_env.get("PYTHONPATH")])
        )
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            text=True,
            bufsize=1,
        )

    def send(self, payload: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(payload) + "\n")
        self.proc.stdin.flush()

    def read(self, timeout: float = 60.0) -> dict[str, Any]:
        """The next JSON line (fails with the child's stderr if it dies or stalls)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, remaining))
            if ready:
                line = self.proc.stdout.readline()
                if line:
                    return dict(json.loads(line))
            if not ready or self.proc.poll() is not None:
                break
        if self.proc.poll() is None:
            for diagnostic in (signal.SIGUSR2, signal.SIGUSR1):
                self.proc.send_signal(diagnostic)
                time.sleep(0.3)
        self.kill()
        err = self.proc.stderr.read()[-4000:] if self.proc.stderr else ""
        raise AssertionError(
            f"child {self.proc.args!r} gave no output within {timeout}s "
            f"(exit {self.proc.returncode}):\n{err}"
        )

    def wait(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)

    def close(self) -> None:
        """End the child, closing its stdin first so that loops reading it can finish."""
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


class Worker(JsonLineProcess):
    """A ``python -m support.worker …`` child process."""

    def __init__(self, *args: str) -> None:
        super().__init__([sys.executable, "-m", "support.worker", *args])


def incident_worker(*args: str) -> JsonLineProcess:
    """``support.incident_worker`` in its own process, with ``args``."""
    return JsonLineProcess([sys.executable, "-m", "support.incident_worker", *args])


def finish(child: JsonLineProcess) -> int:
    """Wait for ``child`` to exit and return its exit code (``-9`` for SIGKILL); then make sure
    it is gone and its pipes are closed."""
    try:
        return child.wait()
    finally:
        child.kill()
        child.close()
