"""Validation of the options every backbone shares (output stride, BatchNorm, freezing)."""
from __future__ import annotations

OUTPUT_STRIDES = (8, 16, 32)


def invalid_option(family: str, option: str, value: object, expected: str) -> ValueError:
    """A one-line ValueError: ``resnet option depth=7 is invalid: expected 18, 34, 50, 101 or 152``."""
    return ValueError(f"{family} option {option}={value!r} is invalid: expected {expected}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_common_options(family: str, *, output_stride: int, norm_momentum: float, norm_eps: float,
                         frozen_stages: int, freeze_bn_stats: bool, num_stages: int) -> None:
    """Raise :func:`invalid_option` for the first bad shared option of a backbone ``family``."""
    if not _is_int(output_stride) or output_stride not in OUTPUT_STRIDES:
        raise invalid_option(family, "output_stride", output_stride, "8, 16 or 32")
    if isinstance(norm_momentum, bool) or not isinstance(norm_momentum, (int, float)) or not 0 <= norm_momentum < 1:
        raise invalid_option(family, "norm_momentum", norm_momentum,
                             "a number in [0, 1) (Paddle convention: weight of the running average, 0.9)")
    if isinstance(norm_eps, bool) or not isinstance(norm_eps, (int, float)) or not norm_eps > 0:
        raise invalid_option(family, "norm_eps", norm_eps, "a positive number")
    if not _is_int(frozen_stages) or not -1 <= frozen_stages <= num_stages:
        raise invalid_option(family, "frozen_stages", frozen_stages, f"an integer from -1 (none) to {num_stages}")
    if not isinstance(freeze_bn_stats, bool):
        raise invalid_option(family, "freeze_bn_stats", freeze_bn_stats, "true or false")
