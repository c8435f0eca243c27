"""Analyzers: what proposes a root cause from the evidence.

Example:
    >>> from durable_ir.rca.analysis import Analyzer
    >>> isinstance(CorrelationAnalyzer(), Analyzer)
    True
"""

from durable_ir.rca.analyzers.offline import CorrelationAnalyzer
from durable_ir.rca.analyzers.validation import check_hypothesis

__all__ = ["CorrelationAnalyzer", "check_hypothesis"]
