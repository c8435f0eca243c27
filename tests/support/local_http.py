"""Local HTTP servers that tests start on 127.0.0.1 to stand in for external APIs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar


class LocalHttpServer(ThreadingHTTPServer):
    """A threading HTTP server on a free loopback port. ``stopping`` is set on shutdown, so
    handlers that delay a reply (time-out tests) can stop waiting."""

    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


Server = TypeVar("Server", bound=LocalHttpServer)


@contextmanager
def serving(server: Server) -> Iterator[Server]:
    """Serve in a background thread for the ``with`` block, then stop and close."""
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join()
