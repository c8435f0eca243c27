"""The simulated fleet with ``/metrics``, bad deploys and a remediation webhook: the one of
``examples/prometheus_stack/exporter.py`` (a person runs it by hand from there), loaded from
that file so that the tests and the example are the same code."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "examples" / "prometheus_stack" / "exporter.py"
_NAME = "durable_ir_example_exporter"


def _load() -> object:
    if _NAME in sys.modules:
        return sys.modules[_NAME]
    spec = importlib.util.spec_from_file_location(_NAME, _PATH)
    assert spec is not None and spec.loader is not None, _PATH
    module = importlib.util.module_from_spec(spec)
    sys.modules[_NAME] = module
    spec.loader.exec_module(module)
    return module


_module = _load()
Exporter = _module.Exporter  # type: ignore[attr-defined]
Service = _module.Service  # type: ignore[attr-defined]

__all__ = ["Exporter", "Service"]
