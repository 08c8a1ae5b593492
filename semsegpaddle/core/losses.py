"""Segmentation losses."""
from __future__ import annotations

import paddle
import paddle.nn.functional as F


def cross_entropy(logits: paddle.Tensor, label: paddle.Tensor, ignore_index: int) -> paddle.Tensor:
    """Pixel-wise cross-entropy averaged over non-ignored pixels (0, not NaN, if all are ignored)."""
    per_pixel = F.cross_entropy(logits, label, axis=1, ignore_index=ignore_index, reduction="none")
    valid = (label != ignore_index).astype(per_pixel.dtype)
    return per_pixel.sum() / paddle.clip(valid.sum(), min=1.0)


def weighted_loss(outputs: list[paddle.Tensor], label: paddle.Tensor, weights: tuple[float, ...],
                  ignore_index: int) -> tuple[paddle.Tensor, list[float]]:
    """Σ weight_i · CE(output_i); also returns each term's value for logging."""
    terms = [cross_entropy(o, label, ignore_index) for o in outputs]
    total = paddle.add_n([w * t for w, t in zip(weights, terms)])
    return total, [float(t) for t in terms]
