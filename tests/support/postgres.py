"""Find or start a PostgreSQL server for tests and hand out throwaway databases.

Resolution order (first that works wins, cached per process):

1. ``DURABLE_IR_TEST_POSTGRES_URL`` if set (used as given, not probed);
2. a local server on ``127.0.0.1:5432`` (probed with a short connect timeout);
3. an embedded server from the ``pgserver`` package, stopped at interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import getpass
import os
import shutil
import subprocess
import tempfile
import threading
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

ENV_URL = "DURABLE_IR_TEST_POSTGRES_URL"
PROBE_TIMEOUT_S = 2
MAX_IDENTIFIER_LEN = 63  # PostgreSQL NAMEDATALEN - 1

_lock = threading.RLock()
_resolved = False
_server_url: str | None = None
_errors: list[str] = []

_embedded_server: PostgresServer | None = None
_embedded_base_dir: Path | None = None
_embedded_owner_pid: int | None = None


def local_candidate_urls() -> list[str]:
    """Return the local-server URLs to probe, in order."""
    candidates = ["postgresql://postgres@127.0.0.1:5432/postgres"]
    user = getpass.getuser()
    if user != "postgres":
        candidates.append(f"postgresql://{quote(user, safe='')}@127.0.0.1:5432/postgres")
    return candidates


def probe(url: str, timeout_s: int = PROBE_TIMEOUT_S) -> str | None:
    """Return None if ``url`` accepts connections and may create databases, else why not."""
    try:
        with psycopg.connect(url, connect_timeout=timeout_s, autocommit=True) as conn:
            row = conn.execute(
                "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
    except psycopg.Error as exc:
        return f"{type(exc).__name__}: {str(exc).strip()}"
    if row is None or not row[0]:
        return "connected, but the role may not create databases"
    return None


def resolve_server_url() -> str | None:
    """Return a PostgreSQL server URL for tests, or None if no server can be had."""
    global _resolved, _server_url
    with _lock:
        if _resolved:
            return _server_url
        _errors.clear()
        _server_url = _resolve_uncached()
        _resolved = True
        return _server_url


def resolution_errors() -> tuple[str, ...]:
    """Return why each option failed during the last resolution (for skip/fail messages)."""
    with _lock:
        return tuple(_errors)


def _resolve_uncached() -> str | None:
    env_url = os.environ.get(ENV_URL, "").strip()
    if env_url:
        return env_url
    for url in local_candidate_urls():
        problem = probe(url)
        if problem is None:
            return url
        _errors.append(f"{url}: {problem}")
    try:
        return start_embedded_server()
    except Exception as exc:  # any failure here means "no embedded server"
        _errors.append(f"pgserver: {type(exc).__name__}: {exc}")
        return None


def start_embedded_server() -> str:
    """Start (once per process) an embedded pgserver instance and return its URL.

    The data lives in a fresh temp dir. As root, pgserver itself creates a
    ``pgserver`` system user (via ``useradd``) and runs initdb/postgres as it.
    """
    global _embedded_server, _embedded_base_dir, _embedded_owner_pid
    with _lock:
        if _embedded_server is not None:
            return str(_embedded_server.get_uri())
        with warnings.catch_warnings():
            # platformdirs warns at import time when XDG_RUNTIME_DIR is unset.
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import get_server

        base_dir = Path(tempfile.mkdtemp(prefix="durable-ir-pg-"))
        pgdata = base_dir / "pgdata"
        server: PostgresServer | None = None
        try:
            server = get_server(pgdata, cleanup_mode="delete")
            url = str(server.get_uri())
            problem = probe(url, timeout_s=5)
            if problem is not None:
                raise RuntimeError(f"embedded server at {url} is not usable: {problem}")
        except BaseException:
            if server is not None:
                with contextlib.suppress(Exception):
                    server.cleanup()
            _force_stop(pgdata)
            shutil.rmtree(base_dir, ignore_errors=True)
            raise
        _embedded_server = server
        _embedded_base_dir = base_dir
        _embedded_owner_pid = os.getpid()
        atexit.register(stop_embedded_server)
        return url


def stop_embedded_server() -> None:
    """Stop the embedded server started by this process (if any) and delete its data."""
    global _embedded_server, _embedded_base_dir, _embedded_owner_pid, _resolved, _server_url
    with _lock:
        server, base_dir = _embedded_server, _embedded_base_dir
        if server is None or _embedded_owner_pid != os.getpid():
            return  # nothing started, or we are a forked child: the parent owns it
        _embedded_server = None
        _embedded_base_dir = None
        _embedded_owner_pid = None
        atexit.unregister(stop_embedded_server)
        url: str | None
        try:
            url = str(server.get_uri())
        except Exception:
            url = None
        if url is not None and _server_url == url:
            _resolved = False
            _server_url = None
        try:
            server.cleanup()
        finally:
            if base_dir is not None:
                _force_stop(base_dir / "pgdata")
                shutil.rmtree(base_dir, ignore_errors=True)


def _force_stop(pgdata: Path) -> None:
    """Best effort: stop a postmaster still running on ``pgdata``."""
    if not (pgdata / "postmaster.pid").exists():
        return
    from pgserver._commands import POSTGRES_BIN_PATH

    cmd = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop"]
    user = "pgserver" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    with contextlib.suppress(Exception):
        subprocess.run(cmd, user=user, timeout=30, check=False, capture_output=True)


def database_name(db_url: str) -> str:
    """Return the database name a connection URL (or conninfo string) points at."""
    params = conninfo_to_dict(db_url)
    dbname = params.get("dbname") or params.get("user") or getpass.getuser()
    return str(dbname)


def with_database(url: str, dbname: str) -> str:
    """Return ``url`` with its database replaced by ``dbname`` (URI or key=value form)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        return make_conninfo(url, dbname=dbname)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "dbname"]
    return urlunsplit(
        (parts.scheme, parts.netloc, "/" + quote(dbname, safe=""), urlencode(query), "")
    )


def create_database(server_url: str, prefix: str = "durable_ir_test") -> str:
    """Create a fresh, uniquely named database on the server and return its URL."""
    name = f"{prefix}_{uuid.uuid4().hex}"[:MAX_IDENTIFIER_LEN]
    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    return with_database(server_url, name)


def _connect_maintenance(db_url: str, avoid: str) -> psycopg.Connection[Any]:
    """Connect (autocommit) to a maintenance database on the same server, not ``avoid``."""
    last_error: psycopg.OperationalError | None = None
    for candidate in ("postgres", "template1"):
        if candidate == avoid:
            continue
        try:
            return psycopg.connect(
                with_database(db_url, candidate), autocommit=True, connect_timeout=10
            )
        except psycopg.OperationalError as exc:
            last_error = exc
    assert last_error is not None
    raise last_error


def drop_database(db_url: str) -> None:
    """Terminate sessions on the database named by ``db_url`` and drop it (no-op if gone)."""
    name = database_name(db_url)
    with _connect_maintenance(db_url, avoid=name) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        ident = sql.Identifier(name)
        if conn.info.server_version >= 130000:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        else:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(ident))
