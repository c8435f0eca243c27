"""What the analyzer knows about faults: the error signatures and events that suggest each, the
resource metrics that run out in each, and how to name each in a sentence.

Example:
    >>> from durable_ir.rca.analyzers.offline.patterns import SIGNATURES
    >>> next(p.fault for p in SIGNATURES if p.regex.search("No space left on device"))
    'disk_full'
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class _Pattern:
    fault: str
    regex: re.Pattern[str]
    weight: float


def _pattern(fault: str, regex: str, weight: float) -> _Pattern:
    return _Pattern(fault, re.compile(regex, re.IGNORECASE), weight)


SIGNATURES: tuple[_Pattern, ...] = (
    _pattern("disk_full", r"no space left on device|disk (is )?full|could not extend file", 0.6),
    _pattern(
        "expired_certificate",
        r"x509|certificate (has )?expired|certificate verify failed|tls: bad certificate",
        0.55,
    ),
    _pattern(
        "memory_leak",
        r"out ?of ?memory|outofmemoryerror|heap out of memory|heap space|oomkill",
        0.5,
    ),
    _pattern(
        "connection_pool_exhaustion",
        r"pool.{0,40}(exhausted|limit|not available|timed out)|connection is not available|"
        r"too many (clients|connections)|remaining connection slots|waiting for a free "
        r"connection",
        0.55,
    ),
    _pattern(
        "config_error",
        r"invalid (value|syntax|config)|unknown (key|option|field|setting|ruleset)|"
        r"is not a (valid )?duration|config(uration)? (error|invalid)|misconfigur",
        0.45,
    ),
    _pattern(
        "bad_deploy",
        r"nullpointer|typeerror|attributeerror|keyerror|nil pointer|panic:|sigsegv|"
        r"classcastexception|indexerror|cannot read propert",
        0.35,
    ),
    _pattern("upstream_outage", r"circuit breaker.{0,60}open", 0.4),
    _pattern("upstream_outage", r"upstream.{0,60}\b50[234]\b|\b50[234]\b.{0,60}upstream", 0.45),
    _pattern(
        "upstream_outage",
        r"\b50[234]\b|service unavailable|bad gateway|gateway timeout",
        0.3,
    ),
    _pattern("memory_leak", r"gc overhead|full (gc|collection) pause", 0.25),
    _pattern("noisy_neighbour", r"cpu steal|noisy neighbou?r", 0.4),
)
"""Known error signatures: the fault each suggests and how specific it is."""

_EVENT_PATTERNS: tuple[_Pattern, ...] = (
    _pattern("memory_leak", r"oom", 0.45),
    _pattern("disk_full", r"disk ?space|disk ?pressure|volume .* full", 0.3),
    _pattern("upstream_outage", r"status ?page|provider incident", 0.45),
)

_RESOURCES = {
    "db_pool_in_use": "connection_pool_exhaustion",
    "disk_used_gb": "disk_full",
    "memory_used_mb": "memory_leak",
}

_FAULT_PHRASES = {
    "bad_deploy": "a bad deploy",
    "memory_leak": "a memory leak",
    "connection_pool_exhaustion": "database connection pool exhaustion",
    "disk_full": "a full disk",
    "expired_certificate": "an expired TLS certificate",
    "upstream_outage": "an outage of an upstream dependency",
    "noisy_neighbour": "CPU contention from a noisy neighbour",
    "config_error": "a bad configuration change",
}
