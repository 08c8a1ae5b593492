"""Lovász-Softmax loss (Berman, Rannen Triki, Blaschko, CVPR 2018): a convex surrogate of 1 − IoU."""
from __future__ import annotations

import paddle
import paddle.nn.functional as F

from semsegpaddle.plugins.losses.pixels import pixel_targets, safe_ratio


def lovasz_jaccard_gradient(foreground_sorted: paddle.Tensor) -> paddle.Tensor:
    """The Jaccard loss's increments along pixels sorted by decreasing error (the paper's Alg. 1).

    ``foreground_sorted`` is B×P×C (1 where the pixel belongs to the class). Entry i of a column is
    Δ_J(first i+1 pixels mispredicted) − Δ_J(first i), with Δ_J(M) = |M| / |F ∪ M| for the class's
    foreground F.
    """
    total = foreground_sorted.sum(axis=1, keepdim=True)
    intersection = total - foreground_sorted.cumsum(axis=1)
    union = total + (1.0 - foreground_sorted).cumsum(axis=1)
    jaccard = 1.0 - intersection / union  # union >= 1: the first pixel is foreground or adds to the union
    return paddle.concat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], axis=1)


class LovaszSoftmaxLoss:
    """Lovász extension of the Jaccard loss applied to the softmax errors |1[y = c] − p_c| per class.

    ``classes="present"`` averages over the classes that label a pixel (of the image, with
    ``per_image``; of the batch otherwise), ``"all"`` over every class. With ``per_image`` the loss
    is averaged over the images that have a labelled pixel. Ignored pixels take no part; 0 when
    every pixel is ignored.
    """

    def __init__(self, ignore_index: int, classes: str = "present", per_image: bool = False) -> None:
        self.ignore_index = ignore_index
        self.classes = classes
        self.per_image = bool(per_image)

    def __call__(self, logits: paddle.Tensor, label: paddle.Tensor) -> paddle.Tensor:
        """The Lovász-Softmax loss of ``logits`` (N×C×H×W) against ``label`` (N×H×W)."""
        targets = pixel_targets("lovasz_softmax", logits, label, self.ignore_index)
        n, num_classes = logits.shape[:2]
        valid = targets.valid.astype(logits.dtype).reshape([n, -1, 1])
        prob = F.softmax(logits, axis=1).transpose([0, 2, 3, 1]).reshape([n, -1, num_classes])
        foreground = F.one_hot(targets.classes.reshape([n, -1]), num_classes).astype(logits.dtype) * valid
        # an ignored pixel gets error 0 and no class: it sorts after every pixel with an error and
        # changes no increment before it, so it adds nothing to the loss
        errors = (foreground - prob).abs() * valid
        if not self.per_image:
            errors, foreground, valid = (t.reshape([1, -1, t.shape[-1]]) for t in (errors, foreground, valid))
        order = paddle.argsort(errors.detach(), axis=1, descending=True)
        errors_sorted = paddle.take_along_axis(errors, order, axis=1)
        foreground_sorted = paddle.take_along_axis(foreground, order, axis=1)
        per_class = (errors_sorted * lovasz_jaccard_gradient(foreground_sorted)).sum(axis=1)  # B×C
        if self.classes == "present":
            counted = (foreground.sum(axis=1) > 0).astype(per_class.dtype)
        else:
            counted = paddle.ones_like(per_class)
        per_group = safe_ratio((per_class * counted).sum(axis=1), counted.sum(axis=1))
        labelled = (valid.sum(axis=[1, 2]) > 0).astype(per_group.dtype)
        return safe_ratio((per_group * labelled).sum(), labelled.sum())
