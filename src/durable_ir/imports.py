"""``module:attribute`` references, as the CLI's ``--graph`` and the serve config's
``factory`` keys name a graph, an analyzer or an executor.

Example:
    >>> import_object("durable_ir.severity:SEVERITIES")
    ('P0', 'P1', 'P2', 'P3')
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

__all__ = ["import_object"]


def import_object(spec: str) -> Any:
    """The object ``spec`` (``module:attribute``, the attribute possibly dotted) names, with
    the working directory importable (as ``python -m`` has it). Raises ``ImportError`` or
    ``AttributeError`` as importing or looking it up does; callers say which key was wrong."""
    module_name, _, attribute = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target
