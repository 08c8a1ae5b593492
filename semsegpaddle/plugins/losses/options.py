"""Checks of loss options, shared by the registration module and the implementations (no paddle)."""
from __future__ import annotations

from typing import Any, Sequence

from semsegpaddle.core.common.errors import ConfigError


class LossOptionError(ConfigError, ValueError):
    """A loss option, or an input a loss cannot score, that is not valid (one line: what and why)."""


def check_class_weights(class_weights: Sequence[float] | None) -> tuple[float, ...] | None:
    """``class_weights`` as a tuple of non-negative floats with a positive sum, or None."""
    if class_weights is None:
        return None
    values = tuple(class_weights)
    if not values or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in values):
        raise LossOptionError(f"loss option class_weights must be a non-empty list of numbers >= 0, "
                              f"got {class_weights!r}")
    if sum(values) <= 0:
        raise LossOptionError(f"loss option class_weights must have a weight > 0, got {class_weights!r}")
    return tuple(float(w) for w in values)


def check_auto_weight_options(class_weights: Any, method: str, max_weight: float, enet_c: float) -> None:
    """Check the options of ``class_weights: auto``; ``auto`` itself must have been replaced by the
    weights computed from the training data (``semseg train`` does) before the loss is built."""
    check_choice("class_weights_method", method, ("inverse_frequency", "inverse_sqrt", "median_frequency", "enet"))
    check_range("class_weights_max", max_weight, 1.0)
    check_range("class_weights_enet_c", enet_c, 1.0, low_open=True)
    if class_weights == "auto":
        raise LossOptionError("loss option class_weights: auto is computed from the training split by semseg train; "
                              "to build this loss on its own, give the weights as a list")


def check_range(name: str, value: Any, low: float, high: float | None = None, *, low_open: bool = False,
                high_open: bool = False) -> None:
    """Raise :class:`LossOptionError` unless ``low <= value <= high`` (ends open where asked)."""
    too_low = value <= low if low_open else value < low
    too_high = high is not None and (value >= high if high_open else value > high)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or too_low or too_high:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        upper = "inf)" if high is None else f"{high}{right}"
        raise LossOptionError(f"loss option {name} must be in {left}{low}, {upper}, got {value!r}")


def check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    """Raise :class:`LossOptionError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise LossOptionError(f"loss option {name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
