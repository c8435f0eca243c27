"""A real PgBouncer (Debian's ``pgbouncer`` package, /usr/sbin/pgbouncer) for tests: started in
the foreground on a free loopback port, with a generated ini in a temporary directory, in front
of the test PostgreSQL server, in ``transaction`` or ``session`` pooling mode.

In transaction mode every transaction (with the store's autocommit connections: every
statement) may run on another server connection, and a server connection serves many clients
one after another, so nothing a client leaves in its session — session-level advisory locks
above all — stays with that client. The pool is kept small (``pool_size``) so that server
connections really are shared. In session mode a client keeps one server connection for as
long as it stays connected, and ``server_reset_query`` (``DISCARD ALL``, which also drops
advisory locks) cleans it before the next client gets it; the pool must then be as big as the
number of client connections alive at once, or clients queue.

PgBouncer refuses to run as root: as root it is started with ``-u USER`` (``postgres``, else
``nobody``), after it has read its configuration.
"""

from __future__ import annotations

import getpass
import os
import pwd
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict

from support.local_server import LocalServer, require_program

PGBOUNCER = Path("/usr/sbin/pgbouncer")
PoolMode = Literal["transaction", "session"]
POOL_MODES: tuple[PoolMode, ...] = ("transaction", "session")

TRANSACTION_POOL_SIZE = 4
"""Server connections per database in transaction mode: far fewer than the clients."""
SESSION_POOL_SIZE = 40
"""In session mode every live client connection holds a server connection: room for all of
the test's processes' pools (the server allows 100)."""


def require_pgbouncer() -> None:
    """Skip the test without /usr/sbin/pgbouncer; fail it in CI."""
    require_program(PGBOUNCER, "pgbouncer", "the tests of the postgres store behind pgbouncer")


def _run_as() -> str | None:
    """The user PgBouncer switches to when started as root (it refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise AssertionError("running as root, and there is no postgres or nobody user")


def _quoted(value: str) -> str:
    """A value for pgbouncer's auth_file (double quotes, doubled inside)."""
    return '"' + value.replace('"', '""') + '"'


def _connstr_value(value: str) -> str:
    """A value in a [databases] connection string (single quotes, escaped inside)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class PgBouncer(LocalServer):
    """``pgbouncer`` in a child process, pooling connections to ``server_url``'s server."""

    name = "pgbouncer"
    poll_interval = 0.05

    def __init__(
        self,
        workdir: Path,
        server_url: str,
        *,
        pool_mode: PoolMode,
        pool_size: int | None = None,
        max_client_conn: int = 500,
    ) -> None:
        if pool_mode not in POOL_MODES:
            raise ValueError(f"pool_mode must be one of {POOL_MODES}, not {pool_mode!r}")
        super().__init__(workdir, workdir / "pgbouncer.log")
        self.pool_mode = pool_mode
        if pool_size is None:
            pool_size = TRANSACTION_POOL_SIZE if pool_mode == "transaction" else SESSION_POOL_SIZE
        self.pool_size = pool_size
        self.max_client_conn = max_client_conn
        server = conninfo_to_dict(server_url)
        self.user = str(server.get("user") or getpass.getuser())
        self.password = str(server.get("password") or "")
        self.server_host = str(server.get("host") or "127.0.0.1")
        self.server_port = str(server.get("port") or "5432")
        self.dbname = str(server.get("dbname") or self.user)
        """The database ``start`` waits to reach through the bouncer: the server URL's."""
        self.config = workdir / "pgbouncer.ini"
        self.auth_file = workdir / "userlist.txt"

    # --- configuration ---------------------------------------------------------------

    def _write_config(self, port: int) -> None:
        target = f"host={_connstr_value(self.server_host)} port={self.server_port}"
        self.auth_file.write_text(f"{_quoted(self.user)} {_quoted(self.password)}\n")
        self.config.write_text(
            "\n".join(
                [
                    "[databases]",
                    # Any database name: the test's own, and the maintenance ones.
                    f"* = {target}",
                    "",
                    "[pgbouncer]",
                    "listen_addr = 127.0.0.1",
                    f"listen_port = {port}",
                    "unix_socket_dir =",
                    "pidfile =",
                    "logfile =",
                    "auth_type = trust",
                    f"auth_file = {self.auth_file}",
                    f"admin_users = {self.user}",
                    f"stats_users = {self.user}",
                    f"pool_mode = {self.pool_mode}",
                    f"default_pool_size = {self.pool_size}",
                    "min_pool_size = 0",
                    "reserve_pool_size = 0",
                    f"max_client_conn = {self.max_client_conn}",
                    "server_reset_query = DISCARD ALL",
                    # libpq and psycopg send these at start-up; pgbouncer would refuse them.
                    "ignore_startup_parameters = extra_float_digits,options",
                    # A client waiting this long for a server connection gets an error, not
                    # an endless stall.
                    "query_wait_timeout = 30",
                    "log_connections = 0",
                    "log_disconnections = 0",
                    "",
                ]
            )
        )
        # Read by pgbouncer as root before it switches user; readable anyway, for reloads.
        for path in (self.workdir, self.config, self.auth_file):
            path.chmod(0o755 if path.is_dir() else 0o644)

    # --- life cycle ------------------------------------------------------------------

    def _argv(self, port: int) -> list[str]:
        self._write_config(port)
        user = _run_as()
        return [str(PGBOUNCER), *(["-u", user] if user else []), str(self.config)]

    def _ready(self) -> bool:
        """True once a query through the bouncer works (the server is reachable through it)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
            with psycopg.connect(self.url(self.dbname), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except (OSError, psycopg.Error):
            return False

    # --- use -------------------------------------------------------------------------

    def url(self, dbname: str) -> str:
        """A libpq URL for ``dbname`` through this bouncer (as the server URL's user)."""
        credentials = quote(self.user, safe="")
        if self.password:
            credentials += ":" + quote(self.password, safe="")
        return f"postgresql://{credentials}@127.0.0.1:{self.port}/{quote(dbname, safe='')}"

    def show(self, what: str) -> list[dict[str, Any]]:
        """``SHOW <what>`` on the admin console (e.g. ``POOLS``, ``CONFIG``), as dicts."""
        with psycopg.connect(
            self.url("pgbouncer"),
            autocommit=True,
            connect_timeout=5,
            cursor_factory=psycopg.ClientCursor,
        ) as conn:
            cur = conn.execute(f"SHOW {what}")  # type: ignore[arg-type]
            names = [column.name for column in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def pool(self, dbname: str) -> dict[str, Any]:
        """The ``SHOW POOLS`` row of ``dbname`` (client and server connection counts)."""
        rows = [row for row in self.show("POOLS") if row["database"] == dbname]
        assert len(rows) == 1, rows
        return rows[0]


@contextmanager
def running_pgbouncer(workdir: Path, server_url: str, **kwargs: Any) -> Iterator[PgBouncer]:
    """A started :class:`PgBouncer` for the ``with`` block, stopped after it."""
    bouncer = PgBouncer(workdir, server_url, **kwargs)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()
