"""Hypothesis strategies shared by the property tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def json_scalars(*, allow_nan: bool = True) -> st.SearchStrategy[Any]:
    """JSON scalars: null, booleans, numbers, short text."""
    numbers = st.integers() | st.floats(allow_nan=allow_nan)
    return st.none() | st.booleans() | numbers | st.text(max_size=20)


def json_values(*, allow_nan: bool = True, max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Arbitrary JSON-like values: scalars, and lists and objects nesting them."""

    def nest(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        objects = st.dictionaries(st.text(max_size=8), inner, max_size=4)
        return st.lists(inner, max_size=4) | objects

    return st.recursive(json_scalars(allow_nan=allow_nan), nest, max_leaves=max_leaves)
