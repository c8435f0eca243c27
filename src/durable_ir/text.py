"""Text that every backend stores as it is: the one check behind every id, alert field,
label, decision and JSON value that comes from outside.

PostgreSQL refuses a NUL character in ``text`` and ``jsonb`` (psycopg raises before the
query is sent), and an unpaired UTF-16 surrogate (``"\\ud800"``, which a JSON body can carry
as an escape) is not text at all: it cannot be encoded as UTF-8, so PostgreSQL refuses it
while SQLite and the in-memory store would keep it. Checking here, before anything is read
or written, gives every backend the same answer: :class:`~durable_ir.errors.InvalidInput`
(HTTP 422), with nothing changed.

Example:
    >>> check_text("reason", "fine ✓")
    'fine ✓'
    >>> check_text("incident_id", "a\\x00b")
    Traceback (most recent call last):
    ...
    durable_ir.errors.InvalidInput: incident_id holds a NUL character, which cannot be stored
    >>> check_json_text("labels", {"team": "x\\ud800"})
    Traceback (most recent call last):
    ...
    durable_ir.errors.InvalidInput: labels['team'] holds an unpaired UTF-16 surrogate (U+D800), \
which is not text
"""

from __future__ import annotations

import re

from durable_ir.errors import InvalidInput

__all__ = ["check_json_text", "check_text", "unstorable"]

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable(text: str) -> str | None:
    """Why some backend cannot store ``text`` as it is (a NUL character, an unpaired
    surrogate), or ``None`` if every backend can.

    Example:
        >>> unstorable("ok"), unstorable("\\udc80")
        (None, 'an unpaired UTF-16 surrogate (U+DC80), which is not text')
    """
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    char = found.group()
    if char == "\x00":
        return "a NUL character, which cannot be stored"
    return f"an unpaired UTF-16 surrogate (U+{ord(char):04X}), which is not text"


def check_text(name: str, value: str, error: type[InvalidInput] = InvalidInput) -> str:
    """``value`` if every backend can store it, else ``error`` (an :class:`InvalidInput`)
    naming ``name`` — never the value itself. Non-strings are the caller's to refuse."""
    if isinstance(value, str):
        problem = unstorable(value)
        if problem is not None:
            raise error(f"{name} holds {problem}")
    return value


def check_json_text(name: str, value: object, error: type[InvalidInput] = InvalidInput) -> None:
    """Raise ``error`` if any string in ``value`` — a key or a value, at any depth of dicts,
    lists and tuples — cannot be stored (see :func:`check_text`); the message names where,
    e.g. ``alert['labels']['team']``. Iterative: a deeply nested value costs no recursion.

    Example:
        >>> check_json_text("plan", {"steps": [{"target": "db\\x00"}]})
        Traceback (most recent call last):
        ...
        durable_ir.errors.InvalidInput: plan['steps'][0]['target'] holds a NUL character, \
which cannot be stored
    """
    stack: list[tuple[object, str]] = [(value, name)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            check_text(where, item, error)
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str):
                    check_text(f"a key of {where}", key, error)
                stack.append((child, f"{where}[{_shown(key)}]"))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(item))


def _shown(key: object) -> str:
    """A key as an error message shows it: its repr, at most 40 characters of it."""
    return repr(key[:40] if isinstance(key, str) else key)
