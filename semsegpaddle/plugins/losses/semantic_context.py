"""The semantic-context loss of GINet (Wu et al., ECCV 2020): does each class appear in the image?"""
from __future__ import annotations

import paddle
import paddle.nn.functional as F


def class_presence(label: paddle.Tensor, num_classes: int, ignore_index: int) -> tuple[paddle.Tensor, paddle.Tensor]:
    """Which classes each image's label contains, and which images have any labelled pixel.

    ``label`` is N×H×W (int). Returns (N×num_classes float32, 1.0 where class k labels at least one
    pixel of image n; N bool, True where image n has a pixel that is not ``ignore_index``).
    Ignored pixels (and any value outside [0, num_classes)) count for no class.
    """
    n = label.shape[0]
    flat = label.reshape([n, -1]).astype("int64")
    valid = (flat != ignore_index) & (flat >= 0) & (flat < num_classes)
    # one bincount over the batch: image i's classes go to bins i·(K+1) … i·(K+1)+K−1, the rest to bin i·(K+1)+K
    bins = paddle.where(valid, flat, paddle.full_like(flat, num_classes))
    bins = bins + paddle.arange(n, dtype="int64").unsqueeze(1) * (num_classes + 1)
    counts = paddle.bincount(bins.flatten(), minlength=n * (num_classes + 1)).reshape([n, num_classes + 1])
    return (counts[:, :num_classes] > 0).astype("float32"), valid.any(axis=1)


def semantic_context_loss(context_logits: paddle.Tensor, label: paddle.Tensor, num_classes: int,
                          ignore_index: int) -> paddle.Tensor:
    """Binary cross-entropy between predicted class presence and the classes each label contains.

    ``context_logits`` is N×num_classes (one logit per class: "class k is in image n"), ``label``
    N×H×W at any resolution. The target of class k in image n is 1 if some non-ignored pixel of the
    label is k, else 0. The loss averages over classes, then over the images that have at least one
    labelled pixel (an image whose pixels are all ignored says nothing about its classes); it is 0
    when no image has one.
    """
    if context_logits.ndim != 2 or context_logits.shape[1] != num_classes:
        raise ValueError(f"context_logits must be N×{num_classes}, got shape {list(context_logits.shape)}")
    targets, labelled = class_presence(label, num_classes, ignore_index)
    per_image = F.binary_cross_entropy_with_logits(context_logits, targets, reduction="none").mean(axis=1)
    weight = labelled.astype(per_image.dtype)
    return (per_image * weight).sum() / paddle.clip(weight.sum(), min=1.0)
