"""Logging for processes that run durable-ir: durable-ir's own loggers at the level asked
for, every line either text or JSON (one object per line), and nothing a caller sent able
to break a line and forge another.

``durable-ir serve --log-level info --log-format json`` (or ``DURABLE_IR_LOG_FORMAT=json``)
uses :func:`logging_config`; a worker that is not the service calls
:func:`configure_logging`. The level applies to the ``durable_ir`` loggers (and uvicorn's);
other libraries log at WARNING and above.

A JSON line has ``time`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``; the ids the
record carries in ``extra=`` (:data:`CONTEXT_FIELDS`: ``incident_id``, ``approval_id``, …);
``exception`` with the traceback when there is one; and, for uvicorn's access lines,
``client``, ``method``, ``path`` and ``status``. In text mode, control characters in a
message (a newline, a carriage return, …) are written escaped (``\\n``).

Example:
    >>> import logging
    >>> record = logging.LogRecord("durable_ir.approval", logging.INFO, __file__, 1,
    ...                            "recorded %s on incident %s", ("approved", "inc-1"), None)
    >>> record.incident_id = "inc-1"
    >>> line = JsonFormatter().format(record)
    >>> entry = json.loads(line)
    >>> entry["level"], entry["logger"], entry["message"], entry["incident_id"]
    ('INFO', 'durable_ir.approval', 'recorded approved on incident inc-1', 'inc-1')
    >>> forged = logging.LogRecord("durable_ir", logging.WARNING, __file__, 1,
    ...                            "refused %s", ("x\\nERROR forged",), None)
    >>> TextFormatter("%(levelname)s %(message)s").format(forged)
    'WARNING refused x\\\\nERROR forged'
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TextIO, cast

from durable_ir.errors import ConfigurationError

__all__ = [
    "CONTEXT_FIELDS",
    "LOG_FORMAT_ENV",
    "LOG_LEVELS",
    "JsonFormatter",
    "LogFormat",
    "TextFormatter",
    "configure_logging",
    "escape_controls",
    "log_context",
    "log_format",
    "logging_config",
]

LogFormat = Literal["text", "json"]

LOG_FORMAT_ENV = "DURABLE_IR_LOG_FORMAT"
"""The environment variable that picks the format when no ``--log-format`` is given."""

LOG_LEVELS: dict[str, int] = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}

CONTEXT_FIELDS = ("incident_id", "approval_id", "decided_by", "event")
"""The ``extra=`` attributes a JSON line carries when the record has them."""

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def escape_controls(text: str) -> str:
    """``text`` with every control character (tab aside), line separator and unpaired
    surrogate written as its Python escape: one line, whatever it held.

    Example:
        >>> escape_controls("a\\r\\nb\\tc")
        'a\\\\r\\\\nb\\tc'
    """
    return _CONTROLS.sub(lambda found: repr(found.group())[1:-1], text)


def log_context(
    incident_id: str | None = None, approval_id: str | None = None, **fields: str | None
) -> dict[str, str]:
    """The ``extra=`` of a log call naming what it is about (``None`` values left out), so
    that JSON lines carry the ids as fields.

    Example:
        >>> log_context("inc-1", None)
        {'incident_id': 'inc-1'}
    """
    given = {"incident_id": incident_id, "approval_id": approval_id, **fields}
    return {key: value for key, value in given.items() if value is not None}


def log_format(value: str | None = None, environ: Mapping[str, str] | None = None) -> LogFormat:
    """The format asked for: ``value`` (``--log-format``), else ``$DURABLE_IR_LOG_FORMAT``,
    else ``text``; :class:`~durable_ir.errors.ConfigurationError` for anything else.

    Example:
        >>> log_format(None, {"DURABLE_IR_LOG_FORMAT": "JSON"}), log_format("text", {})
        ('json', 'text')
    """
    env = os.environ if environ is None else environ
    chosen = (value or env.get(LOG_FORMAT_ENV) or "text").strip().lower()
    if chosen not in ("text", "json"):
        raise ConfigurationError(f"{LOG_FORMAT_ENV} must be text or json, got {chosen!r}")
    return cast(LogFormat, chosen)


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    try:
        return LOG_LEVELS[level.lower()]
    except KeyError:
        raise ConfigurationError(
            f"log level must be one of {', '.join(LOG_LEVELS)}, got {level!r}"
        ) from None


class TextFormatter(logging.Formatter):
    """A ``logging.Formatter`` whose message part is always one line
    (:func:`escape_controls`); a traceback, if any, follows on its own lines as usual."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        message = record.message
        record.message = escape_controls(message)
        try:
            return super().formatMessage(record)
        finally:
            record.message = message


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module doc). Non-ASCII text is
    escaped, so any byte-oriented sink takes it."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CONTEXT_FIELDS:
            value = record.__dict__.get(field)
            if value is not None:
                entry[field] = value if isinstance(value, str | int | float | bool) else str(value)
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            client, method, path, _version, status = args
            entry.update(client=str(client), method=str(method), path=str(path))
            entry["status"] = status
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def logging_config(
    level: str | int = "info",
    fmt: LogFormat | None = None,
    *,
    uvicorn: bool = True,
) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` dictionary: the ``durable_ir`` loggers at
    ``level``, everything else at WARNING (or ``level`` if higher), on stderr, in ``fmt``
    (default :func:`log_format`). With ``uvicorn``, uvicorn's loggers too (pass it as
    ``uvicorn.run(log_config=…)``): in text mode as uvicorn formats them (access lines on
    stdout), in JSON mode as JSON on stderr."""
    chosen = log_format(fmt)
    numeric = _level(level)
    ours = "json" if chosen == "json" else "text"
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": "durable_ir.logs.JsonFormatter"},
            "text": {"()": "durable_ir.logs.TextFormatter", "fmt": TEXT_FORMAT},
        },
        "handlers": {
            "durable_ir": {
                "class": "logging.StreamHandler",
                "formatter": ours,
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {"durable_ir": {"level": numeric, "propagate": True}},
        "root": {"handlers": ["durable_ir"], "level": max(numeric, logging.WARNING)},
    }
    if uvicorn:
        if chosen == "json":
            for name in ("default", "access"):
                config["handlers"][name] = {
                    "class": "logging.StreamHandler",
                    "formatter": "json",
                    "stream": "ext://sys.stderr",
                }
        else:
            config["formatters"]["default"] = {
                "()": "uvicorn.logging.DefaultFormatter",
                "fmt": "%(levelprefix)s %(message)s",
                "use_colors": None,
            }
            config["formatters"]["access"] = {
                "()": "uvicorn.logging.AccessFormatter",
                "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
            }
            config["handlers"]["default"] = {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
            config["handlers"]["access"] = {
                "class": "logging.StreamHandler",
                "formatter": "access",
                "stream": "ext://sys.stdout",
            }
        config["loggers"].update(
            {
                "uvicorn": {"handlers": ["default"], "level": numeric, "propagate": False},
                "uvicorn.error": {"level": numeric},
                "uvicorn.access": {"handlers": ["access"], "level": numeric, "propagate": False},
            }
        )
    return config


def configure_logging(
    level: str | int = "info",
    fmt: LogFormat | None = None,
    *,
    stream: TextIO | None = None,
) -> None:
    """Set up logging for a process that runs durable-ir without serving HTTP (a worker, a
    script): :func:`logging_config` without uvicorn, written to ``stream`` (default
    stderr); Python warnings become log lines (``py.warnings``)."""
    config = logging_config(level, fmt, uvicorn=False)
    if stream is not None:
        config["handlers"]["durable_ir"]["stream"] = stream
    logging.config.dictConfig(config)
    logging.captureWarnings(True)  # Python warnings as log lines too
