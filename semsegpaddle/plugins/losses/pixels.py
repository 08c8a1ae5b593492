"""What every pixel loss needs first: checked inputs, the mask of labelled pixels, safe class indices."""
from __future__ import annotations

from typing import NamedTuple

import paddle

from semsegpaddle.plugins.losses.options import LossOptionError


class PixelTargets(NamedTuple):
    """Labels prepared for indexing: ``valid`` (N×H×W bool) marks labelled pixels, ``classes`` (N×H×W
    int64) is the label with ignored pixels set to class 0 so that gathers stay in range."""

    valid: paddle.Tensor
    classes: paddle.Tensor


def pixel_targets(name: str, logits: paddle.Tensor, label: paddle.Tensor, ignore_index: int) -> PixelTargets:
    """Check that ``logits`` (N×C×H×W) and ``label`` (N×H×W) fit, and that every label is a class or
    ``ignore_index``; return the valid mask and the safe class indices. ``name`` is the loss's name
    for the one-line errors."""
    if logits.ndim != 4 or label.ndim != 3 or list(logits.shape[2:]) != list(label.shape[1:]) \
            or logits.shape[0] != label.shape[0]:
        raise LossOptionError(f"loss {name} needs N×C×H×W logits and N×H×W labels of the same N, H, W; "
                              f"got {list(logits.shape)} and {list(label.shape)}")
    label = label.astype("int64")
    num_classes = logits.shape[1]
    valid = label != ignore_index
    bad = valid & ((label < 0) | (label >= num_classes))
    if bool(bad.any()):
        value = int(paddle.masked_select(label, bad)[0])
        raise LossOptionError(f"loss {name}: label value {value} is neither a class in [0, {num_classes}) "
                              f"nor ignore_index {ignore_index}")
    return PixelTargets(valid, paddle.where(valid, label, paddle.zeros_like(label)))


def safe_ratio(numerator: paddle.Tensor, denominator: paddle.Tensor) -> paddle.Tensor:
    """numerator / denominator, and 0 where the denominator is 0 (nothing to average)."""
    positive = denominator > 0
    return paddle.where(positive, numerator, paddle.zeros_like(numerator)) / paddle.where(
        positive, denominator, paddle.ones_like(denominator))
