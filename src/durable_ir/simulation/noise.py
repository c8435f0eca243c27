"""Deterministic noise: the same seed, key and minute always give the same number, whatever
order values are read in.

Example:
    >>> a, b = NoiseField(7), NoiseField(7)
    >>> a.gauss("checkout/latency", 30) == b.gauss("checkout/latency", 30)
    True
    >>> 0.0 <= a.uniform("x", -5) < 1.0
    True
"""

from __future__ import annotations

import random

__all__ = ["NoiseField"]

_BLOCK = 512


class NoiseField:
    """Independent streams of standard-normal and uniform numbers, one per key, indexed by an
    integer (a minute). Each block of a stream comes from its own seeded generator."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._blocks: dict[tuple[str, str, int], list[float]] = {}

    def _block(self, kind: str, key: str, index: int) -> list[float]:
        block = index // _BLOCK
        found = self._blocks.get((kind, key, block))
        if found is None:
            rng = random.Random(f"{self.seed}|{kind}|{key}|{block}")
            if kind == "gauss":
                found = [rng.gauss(0.0, 1.0) for _ in range(_BLOCK)]
            else:
                found = [rng.random() for _ in range(_BLOCK)]
            self._blocks[(kind, key, block)] = found
        return found

    def gauss(self, key: str, index: int) -> float:
        """A standard-normal number for ``key`` at ``index``."""
        return self._block("gauss", key, index)[index % _BLOCK]

    def uniform(self, key: str, index: int) -> float:
        """A number in [0, 1) for ``key`` at ``index``."""
        return self._block("uniform", key, index)[index % _BLOCK]
