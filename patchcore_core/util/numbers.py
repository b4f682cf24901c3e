"""Numbers as JSON and people need them: finite, and NaN/infinity written as null."""

from __future__ import annotations

import math

__all__ = ["is_number", "json_safe"]


def is_number(v) -> bool:
    """A finite int or float (``True`` is no number here, NaN and infinity neither)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def json_safe(data):
    """``data`` with every NaN or infinity (a metric undefined here) as None, in nested dicts,
    lists and tuples too: JSON has no NaN, and strict parsers refuse it."""
    if isinstance(data, dict):
        return {k: json_safe(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(v) for v in data]
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data
