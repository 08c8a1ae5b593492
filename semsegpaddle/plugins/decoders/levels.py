"""Checks the decoder heads share: picking a backbone level, validating simple option values.

Errors are ValueErrors naming the option as ``option=value``, which the config layer turns into a
one-line message pointing at the key that set it.
"""
from __future__ import annotations

from typing import Sequence


def level_index(feature_info: Sequence, option: str, index: int) -> int:
    """``index`` into the backbone's levels (negative counts from the deepest), as a non-negative int."""
    count = len(feature_info)
    if isinstance(index, bool) or not isinstance(index, int) or not -count <= index < count:
        raise ValueError(f"{option}={index!r} is out of range: the backbone returns {count} levels "
                         f"(use 0..{count - 1}, or -1 for the deepest)")
    return index % count


def nearest_stride_level(feature_info: Sequence, stride: int) -> int:
    """The level whose stride is closest to ``stride`` (the shallower one on a tie)."""
    return min(range(len(feature_info)), key=lambda i: (abs(feature_info[i].stride - stride), i))


def check_positive(option: str, value: int) -> None:
    """``value`` must be an integer ≥ 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{option}={value!r} must be a positive integer")


def check_positive_list(option: str, values: Sequence[int]) -> list[int]:
    """``values`` must be a non-empty list of integers ≥ 1; returned as a list."""
    values = list(values)
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"{option}={values!r} must be a non-empty list of positive integers")
    return values


def check_dropout(value: float) -> None:
    """A dropout probability must lie in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"dropout={value!r} must lie in [0, 1)")
